// Followers outlast a restart of `grid up` (coordinator, its only store and its worker in one process): `grid run
// --follow`, `grid submit --follow` and `grid tail` keep reading while the store holding the log is away, and end
// with the build's outcome once it re-ran. Before, the log reader gave up on the one holder at once, and `grid run
// --follow` then held the process for two minutes and exited 1 without a word, on a pipeline that succeeded.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { grid, removeDir, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'

interface Ctx { dir: string, data: string, port: number, up?: CliProcess, url?: string }

const follow = suite<Ctx>('following across a restart of grid up')

async function freePort (): Promise<number> {
  return await new Promise(resolve => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as any).port; s.close(() => resolve(p)) })
  })
}

/** `grid up` on fixed addresses, so the join code the followers hold stays valid across the restart. */
async function up (ctx: Ctx): Promise<void> {
  ctx.up = grid(['up', '--data', ctx.data, '--http', '127.0.0.1:0', '--listen', `/ip4/127.0.0.1/tcp/${ctx.port}`])
  ctx.url = (await ctx.up.line(/^web: (http:\/\/\S+)$/m, 30_000))[1]
  await ctx.up.line(/^join: /m)
}

follow.before(async ctx => {
  ctx.dir = await tempDir('follow-restart')
  ctx.data = join(ctx.dir, 'data')
  ctx.port = await freePort()
  await up(ctx)
})

follow.after(async ctx => {
  await ctx.up?.stop()
  await removeDir(ctx.dir)
})

const TICKS = 'i=0; while [ $i -lt 16 ]; do i=$((i+1)); echo tick $i; sleep 0.25; done'

follow('grid run --follow, grid submit --follow and grid tail each end with the outcome after grid up restarts', async ctx => {
  const project = join(ctx.dir, 'project')
  await mkdir(project)
  await writeFile(join(project, '.grid.yml'), `jobs:\n  slow:\n    steps: [ { run: "${TICKS}" } ]\n`)
  const run = grid(['run', project, '--follow', '--data', ctx.data])
  const submit = grid(['submit', '--run', TICKS, '--follow', '--data', ctx.data])
  const id = (await submit.line(/^grid: build (\w+) queued$/m, 30_000))[1]
  const tail = grid(['tail', id, '--data', ctx.data])
  await waitFor('all three followers to print', () => [run, submit, tail].every(p => /tick 2\n/.test(p.stdout())), 30_000)

  // The whole grid goes away and comes back on the same addresses and data dir.
  await ctx.up!.stop()
  await up(ctx)

  for (const [name, p] of [['grid run --follow', run], ['grid submit --follow', submit]] as const) {
    const code = await Promise.race([p.exited, new Promise(resolve => setTimeout(() => resolve('still running'), 90_000))])
    assert.is(code, 0, `${name} exited ${String(code)}:\n${p.stderr()}`)
    assert.match(p.stdout(), /tick 16\n/, `${name} printed the re-run to its end`)
  }
  assert.match(run.stderr(), /pipeline \w+ succeeded/)
  assert.match(submit.stderr(), /build \w+ succeeded/)
  const code = await Promise.race([tail.exited, new Promise(resolve => setTimeout(() => resolve('still running'), 30_000))])
  assert.is(code, 0, `grid tail exited ${String(code)}:\n${tail.stderr()}`)
  assert.match(tail.stdout(), /tick 16\n/)
})

follow.run()

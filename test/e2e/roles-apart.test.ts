// Every role in its own process: `grid coordinator` (no store of its own), `grid store`, `grid worker`.
// Logs go worker → store; the coordinator's HTTP API and `grid tail` read them back from the store over libp2p.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { grid, gridRun, removeDir, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'

const apart = suite<{ dir: string, procs: CliProcess[] }>('roles in separate processes')

apart.before(async ctx => {
  ctx.dir = await tempDir('apart')
  ctx.procs = []
})

apart.after(async ctx => {
  for (const p of ctx.procs.reverse()) await p.stop()
  await removeDir(ctx.dir)
})

apart('coordinator, store and worker apart: a build\'s log reaches the HTTP API and grid tail through the store', async ctx => {
  const coordinator = grid(['coordinator', '--data', join(ctx.dir, 'c'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
  ctx.procs.push(coordinator)
  const url = (await coordinator.line(/^web: (\S+)$/m, 30_000))[1]
  await coordinator.line(/^join: /m)
  const joinFile = join(ctx.dir, 'c', 'join')

  const store = grid(['store', '--join', joinFile, '--data', join(ctx.dir, 's'), '--listen', '/ip4/127.0.0.1/tcp/0'])
  ctx.procs.push(store)
  await store.line(/store 12D3KooW\w+ joined the grid/, 30_000)
  await waitFor('the store in capacity', async () => (await (await fetch(`${url}/api/capacity`)).json()).stores === 1)

  const worker = grid(['worker', '--join', joinFile, '--data', join(ctx.dir, 'w')])
  ctx.procs.push(worker)
  await worker.line(/joined the grid/, 30_000)

  const submitted = await gridRun(['submit', '--join', joinFile, '--run', 'for i in 1 2 3; do echo line-$i; done'])
  assert.is(submitted.code, 0, submitted.stderr)
  const id = submitted.stdout.trim()
  const build = await waitFor('the build', async () => {
    const b = await (await fetch(`${url}/api/builds/${id}`)).json() as Build
    return FINISHED.has(b.status) ? b : undefined
  }, 30_000)
  assert.is(build.status, 'succeeded')
  assert.is(await (await fetch(`${url}/api/logs/${build.steps[0].log}`)).text(), 'line-1\nline-2\nline-3\n')
  const tail = await gridRun(['tail', '--join', joinFile, id])
  assert.is(tail.stdout, '--- step 1/1: run ---\nline-1\nline-2\nline-3\n')

  // The store leaving is noticed; it comes back by itself with its data.
  await store.stop()
  await waitFor('the store to leave', async () => (await (await fetch(`${url}/api/capacity`)).json()).stores === 0, 15_000)
  const again = grid(['store', '--join', joinFile, '--data', join(ctx.dir, 's'), '--listen', '/ip4/127.0.0.1/tcp/0'])
  ctx.procs.push(again)
  await waitFor('the store to return', async () => (await (await fetch(`${url}/api/capacity`)).json()).stores === 1, 30_000)
  assert.is(await (await fetch(`${url}/api/logs/${build.steps[0].log}`)).text(), 'line-1\nline-2\nline-3\n', 'its logs survived')
})

apart.run()

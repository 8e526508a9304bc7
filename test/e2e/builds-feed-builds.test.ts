// End to end: builds that feed builds over a real grid (libp2p on loopback, LevelDB, real processes). A build
// waiting for another build's artifact holds no slot and says why; one whose input build failed ends at once; a
// job the worker would refuse is refused at submit; a cancel while the worker is away still seals the log.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gridRun, removeDir, startTestGrid, tempDir, waitFor } from '../helpers.ts'
import { within } from '../wait.ts'
import type { TestGrid } from '../helpers.ts'
import type { Build } from '../../grid/build.ts'
import { startCoordinatorNode } from '../../node/roles.ts'

const feed = suite<{ grid: TestGrid }>('builds that feed builds, one worker with one slot')
feed.before(async ctx => { ctx.grid = await startTestGrid({ workers: [{ capabilities: { foo: 'bar' }, slots: 1 }] }) })
feed.after(async ctx => { await ctx.grid?.stop() })

const build = async (grid: TestGrid, id: string): Promise<Build> => await (await grid.api(`/api/builds/${id}`)).json() as Build

feed('X, then A, then B (priority 10, input build:A/out.txt): A runs before B, both succeed', async ({ grid }) => {
  // X holds the only slot until the test lets it go, so A and B are both queued behind it.
  const gate = join(grid.dir, 'release-x')
  const x = await grid.submit({ requires: { foo: 'bar' }, steps: [{ run: `while [ ! -e ${gate} ]; do sleep 0.05; done` }] })
  await waitFor('X running', async () => (await build(grid, x)).status === 'running')
  const a = await grid.submit({ requires: { foo: 'bar' }, steps: [{ run: 'echo from-a > out.txt' }], artifacts: ['out.txt'] })
  const b = await grid.submit({ requires: { foo: 'bar' }, priority: 10, inputs: { 'in/out.txt': `build:${a}/out.txt` }, steps: [{ run: 'cat in/out.txt' }] })
  const waiting = await waitFor('B to say what it waits for', async () => (await build(grid, b)).waiting)
  assert.is(waiting, `waiting for build ${a} (queued)`)
  await writeFile(gate, '')
  const doneB = await grid.finished(b)
  const doneA = await grid.finished(a)
  assert.is(doneA.status, 'succeeded')
  assert.is(doneB.status, 'succeeded')
  assert.ok(doneA.finished! <= doneB.started!, 'B started only after A finished')
  assert.is(await (await grid.api(`/api/logs/${doneB.steps[0].log}`)).text(), 'from-a\n')
})

feed('an input build that fails ends the waiting build at once, with a reason naming it and no attempt', async ({ grid }) => {
  const a = await grid.submit({ requires: { foo: 'bar' }, steps: [{ run: 'exit 3' }], artifacts: ['out.txt'] })
  const b = await grid.submit({ requires: { foo: 'bar' }, inputs: { 'out.txt': `build:${a}/out.txt` }, steps: [{ run: 'cat out.txt' }] })
  const done = await grid.finished(b)
  assert.is(done.status, 'failed')
  assert.equal(done.attempts, [])
  assert.match(done.error ?? '', `input out.txt: build ${a} ended failed`)
})

feed('grid submit --follow of a build whose input build failed exits 1 at once, saying why on stderr', async ({ grid }) => {
  const a = await grid.submit({ steps: [{ run: 'exit 1' }], artifacts: ['o'] })
  await grid.finished(a)
  const job = join(grid.dir, 'b.json')
  await writeFile(job, JSON.stringify({ inputs: { o: `build:${a}/o` }, steps: [{ run: 'cat o' }] }))
  const run = await gridRun(['submit', job, '--join', join(grid.dir, 'join-trusted'), '--follow'], undefined, 30_000)
  assert.is(run.code, 1)
  assert.match(run.stderr, `build ${a} ended failed`)
})

feed('a NUL byte the worker could not pass to the OS: 400 over HTTP naming the field, nothing queued', async ({ grid }) => {
  const before = (await (await grid.api('/api/builds?limit=1000')).json()).length
  for (const [job, field] of [
    [{ env: { BAD: 'a\u0000b' }, steps: [{ run: 'echo hi' }] }, 'env.BAD'],
    [{ steps: [{ run: 'echo a\u0000b' }] }, 'steps.0.run']
  ] as const) {
    const res = await grid.api('/api/builds', { method: 'POST', headers: { authorization: `Bearer ${grid.token}`, 'content-type': 'application/json' }, body: JSON.stringify(job) })
    assert.is(res.status, 400)
    const body = await res.json()
    assert.ok(body.error.startsWith(`${field}:`), body.error)
  }
  assert.is((await (await grid.api('/api/builds?limit=1000')).json()).length, before)
})

feed('the same job through grid submit (libp2p): one line on stderr naming the field, exit non-zero', async ({ grid }) => {
  const job = join(grid.dir, 'nul.json')
  await writeFile(job, JSON.stringify({ env: { BAD: 'a\u0000b' }, steps: [{ run: 'echo hi' }] }))
  const run = await gridRun(['submit', job, '--join', join(grid.dir, 'join-trusted')])
  assert.is.not(run.code, 0)
  assert.match(run.stderr, /^grid: env\.BAD: .*NUL/)
  assert.is(run.stderr.trim().split('\n').length, 1)
})

feed('a step that never ran (an earlier step failed) has its log sealed: a follower of it ends', async ({ grid }) => {
  const done = await grid.finished(await grid.submit({ steps: [{ run: 'echo one; exit 1' }, { run: 'echo never' }] }))
  assert.is(done.status, 'failed')
  const text = await within(20_000, 'the follower of the unrun step\'s log to end', (async () => await (await grid.api(`/api/logs/${done.steps[1].log}?follow=1`)).text())())
  assert.is(text, '')
  assert.is(await within(20_000, 'the build log follower to end', (async () => await (await grid.api(`/api/builds/${done.id}/log?follow=1`)).text())()), '--- step 1/2: step 1 ---\none\n')
})

feed('a follower gets the log to its end: the lines keeping the artifacts writes after the last step exited', async ({ grid }) => {
  // Keeping 300 files takes seconds after the step's exit code is reported; a follower that stopped at the exit
  // code (or 2 s after it) lost the last line.
  const job = join(grid.dir, 'many.json')
  await writeFile(job, JSON.stringify({ steps: [{ run: 'mkdir m; for i in $(seq 1 300); do echo $i > m/$i; done' }], artifacts: ['m/*'] }))
  const run = await gridRun(['submit', job, '--join', join(grid.dir, 'join-trusted'), '--follow'], undefined, 120_000)
  assert.is(run.code, 0, run.stderr)
  assert.match(run.stdout, /\ngrid: kept 300 artifacts \(/)
  const id = /build (\w+) succeeded/.exec(run.stderr)?.[1]
  assert.ok(id !== undefined, run.stderr)
  assert.is(run.stdout, await (await grid.api(`/api/builds/${id}/log`)).text())
})

feed('a step sees the host\'s environment, not what npm gave the worker (npm_* variables, node_modules/.bin)', async ({ grid }) => {
  // This test runs under npm (npm test, or npx node …): the worker in it inherited npm's environment.
  assert.ok(process.env.npm_lifecycle_event !== undefined, 'run through npm, as npm test and npx do')
  const done = await grid.finished(await grid.submit({ steps: [{ run: 'echo "pkg=$npm_package_json"; case ":$PATH:" in *node_modules/.bin*) echo npm-path;; *) echo host-path;; esac' }] }))
  assert.is(done.status, 'succeeded')
  assert.is(await (await grid.api(`/api/logs/${done.steps[0].log}`)).text(), 'pkg=\nhost-path\n')
})

const away = suite<{ dir: string }>('a cancel while the worker is away')
away.before(async ctx => { ctx.dir = await tempDir('away') })
away.after(async ctx => { await removeDir(ctx.dir) })

away('seals the attempt\'s logs, so a follower of its log ends', async ({ dir }) => {
  const grid = await startTestGrid({ dir })
  const id = await grid.submit({ steps: [{ run: 'echo started; sleep 60' }] })
  const running = await waitFor('the build to print', async () => {
    const b = await build(grid, id)
    return b.steps[0]?.log !== undefined && (await (await grid.api(`/api/logs/${b.steps[0].log}`)).text()).includes('started') ? b : undefined
  })
  await grid.stop()
  // The coordinator comes back on the same data dir; the worker does not (the reclaim window is open).
  const node = await startCoordinatorNode({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', withStore: true })
  try {
    const url = node.web!.url
    const res = await fetch(`${url}/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${node.token}` } })
    assert.is(res.status, 200)
    const cancelled = await res.json() as Build
    assert.is(cancelled.status, 'cancelled')
    assert.match(cancelled.attempts[0].reason ?? '', /while its worker was away/, JSON.stringify(cancelled.attempts))
    const text = await within(20_000, 'the log follower to end', (async () => await (await fetch(`${url}/api/logs/${running.steps[0].log}?follow=1`)).text())())
    // The worker, stopped mid-step, may have said so before its log was cut off.
    assert.match(text, /^started\n(grid: the worker is stopping: sent SIGTERM[^\n]*\n)?$/)
  } finally {
    await node.stop()
  }
})

feed.run()
away.run()

// End to end in one process, as `grid up` runs: coordinator + store + HTTP API on one libp2p node,
// workers on their own nodes dialling it over TCP loopback (and once over the memory transport).
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startTestGrid, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import type { Build } from '../../grid/build.ts'

const builds = suite<{ grid: TestGrid }>('builds end to end')

builds.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{ capabilities: { pool: 'cpu' } }, { capabilities: { pool: 'gpu', gpu: 'a100' }, slots: 2 }] })
})
builds.after(async ctx => { await ctx.grid?.stop() })

builds('capacity shows what the grid can build, grouped by capabilities', async ({ grid }) => {
  const capacity = await (await grid.api('/api/capacity')).json()
  assert.is(capacity.nodes, 2)
  assert.is(capacity.slots, 3)
  assert.is(capacity.busy, 0)
  assert.is(capacity.stores, 1)
  assert.is(capacity.groups.length, 2)
  const gpu = capacity.groups.find((g: any) => g.capabilities.gpu === 'a100')
  assert.equal({ nodes: gpu.nodes, slots: gpu.slots }, { nodes: 1, slots: 2 })
})

builds('echo hello succeeds; its log and history (with the worker peer ID) are served', async ({ grid }) => {
  const id = await grid.submit({ name: 'hello', steps: [{ name: 'greet', run: 'echo hello' }] })
  const build = await grid.finished(id)
  assert.is(build.status, 'succeeded')
  assert.is(build.steps[0].exitCode, 0)
  assert.is(build.attempts.length, 1)
  const workers = grid.workers.map(w => w.host.peerId.toString())
  assert.ok(workers.includes(build.attempts[0].worker), 'attempt names a real worker peer ID')
  assert.match(build.attempts[0].worker, /^12D3KooW/)
  assert.is(build.attempts[0].outcome, 'succeeded')
  assert.ok(build.started !== undefined && build.finished !== undefined)

  const log = await (await grid.api(`/api/builds/${id}/log`)).text()
  assert.is(log, '--- step 1/1: greet ---\nhello\n')
  const stepLog = await grid.api(`/api/logs/${build.steps[0].log}`)
  assert.is(stepLog.headers.get('content-type'), 'text/plain; charset=utf-8')
  assert.is(await stepLog.text(), 'hello\n')

  const listed = await (await grid.api('/api/builds?limit=5')).json() as Build[]
  assert.is(listed[0].id, id, 'newest first')
})

builds('a failing step fails the build with its exit code, and later steps do not run', async ({ grid }) => {
  const id = await grid.submit({ steps: [{ run: 'echo one' }, { run: 'echo two; exit 3' }, { run: 'echo never' }] })
  const build = await grid.finished(id)
  assert.is(build.status, 'failed')
  assert.equal(build.steps.map(s => s.exitCode), [0, 3, undefined])
  assert.is(build.steps[2].started, undefined)
  assert.is(build.attempts[0].outcome, 'failed')
  const log = await (await grid.api(`/api/builds/${id}/log`)).text()
  assert.match(log, /one\n/)
  assert.match(log, /two\n/)
  assert.not.match(log, /never/)
})

builds('steps share one fresh work dir per build, and see the job env', async ({ grid }) => {
  const first = await grid.submit({ env: { GREETING: 'hi there' }, steps: [{ run: 'echo "$GREETING" > note; ls' }, { run: 'cat note; echo "$GRID_BUILD_ID"' }] })
  const build = await grid.finished(first)
  assert.is(build.status, 'succeeded')
  const log = await (await grid.api(`/api/builds/${first}/log`)).text()
  assert.match(log, /hi there\n/)
  assert.ok(log.includes(first), 'GRID_BUILD_ID is set')
  const second = await grid.submit({ steps: [{ run: 'test ! -e note' }] })
  assert.is((await grid.finished(second)).status, 'succeeded', 'the next build starts in a fresh dir')
})

builds('a job runs only on a worker whose capabilities match', async ({ grid }) => {
  const gpuWorker = grid.workers[1].host.peerId.toString()
  const ids = await Promise.all([1, 2, 3].map(async () => await grid.submit({ requires: { gpu: '*' }, steps: [{ run: 'true' }] })))
  for (const id of ids) assert.is((await grid.finished(id)).attempts[0].worker, gpuWorker)
  const exact = await grid.submit({ requires: { pool: 'cpu' }, steps: [{ run: 'true' }] })
  assert.is((await grid.finished(exact)).attempts[0].worker, grid.workers[0].host.peerId.toString())
})

builds('a job no worker can run stays queued, says why, and can be cancelled', async ({ grid }) => {
  const id = await grid.submit({ requires: { os: 'plan9' }, steps: [{ run: 'true' }] })
  const queued = await waitFor('a waiting reason', async () => {
    const b = await (await grid.api(`/api/builds/${id}`)).json() as Build
    return b.waiting !== undefined ? b : undefined
  })
  assert.is(queued.status, 'queued')
  assert.is(queued.waiting, 'no worker has os=plan9')
  const res = await grid.api(`/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${grid.token}` } })
  assert.is(res.status, 200)
  assert.is((await res.json()).status, 'cancelled')
  assert.is((await grid.finished(id)).attempts.length, 0)
})

builds('a running build is cancelled on its worker', async ({ grid }) => {
  const id = await grid.submit({ requires: { pool: 'cpu' }, steps: [{ run: 'echo started; sleep 30' }] })
  await waitFor('the step to start', async () => (await (await grid.api(`/api/builds/${id}/log`)).text()).includes('started'))
  const res = await grid.api(`/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${grid.token}` } })
  assert.is((await res.json()).status, 'cancelled')
  // The worker is free again: a next build on it runs to the end.
  const next = await grid.submit({ requires: { pool: 'cpu' }, steps: [{ run: 'echo after' }] })
  assert.is((await grid.finished(next)).status, 'succeeded')
})

builds('the log follows a running build live and ends when the build ends', async ({ grid }) => {
  const id = await grid.submit({ steps: [{ name: 'slow', run: 'echo first; sleep 1; echo second' }, { name: 'after', run: 'echo third' }] })
  const res = await grid.api(`/api/builds/${id}/log?follow=1`)
  const text = await res.text()
  assert.is(text, '--- step 1/2: slow ---\nfirst\nsecond\n--- step 2/2: after ---\nthird\n')
  const from = await (await grid.api(`/api/builds/${id}/log?from=${'--- step 1/2: slow ---\n'.length}`)).text()
  assert.ok(from.startsWith('first\nsecond\n'), 'from skips that many bytes')
})

builds('status changes arrive as Server-Sent Events', async ({ grid }) => {
  // Bounded: if the event never comes the read is aborted and the test fails instead of hanging.
  const controller = new AbortController()
  const bound = setTimeout(() => controller.abort(), 15_000)
  const res = await grid.api('/api/events', { signal: controller.signal })
  assert.is(res.headers.get('content-type'), 'text/event-stream')
  const reader = res.body!.getReader()
  let seen = ''
  const id = await grid.submit({ steps: [{ run: 'true' }] })
  await waitFor('a build event for the new build', async () => {
    const { value } = await reader.read()
    if (value === undefined) throw new Error(`events ended before the build finished: ${JSON.stringify(await (await grid.api(`/api/builds/${id}`)).json())}`)
    seen += new TextDecoder().decode(value)
    return seen.includes('event: build') && seen.includes(id) && seen.includes('"succeeded"')
  })
  assert.match(seen, /event: capacity/)
  clearTimeout(bound)
  controller.abort()
})

builds.run()

const memory = suite('the memory transport')

memory('a grid on the in-process transport runs a build too', async () => {
  const grid = await startTestGrid({ transport: 'memory' })
  try {
    const id = await grid.submit({ steps: [{ run: 'echo over memory' }] })
    assert.is((await grid.finished(id)).status, 'succeeded')
    assert.match(await (await grid.api(`/api/builds/${id}/log`)).text(), /over memory/)
  } finally {
    await grid.stop()
  }
})

memory.run()

// Scheduling that survives, with every worker its own `grid worker` process: killed, frozen, drained,
// timed out, cancelled, and a coordinator restarted under a queue. Uses the real heartbeat limits.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { grid, processGone, removeDir, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { WORKER_SILENCE_LIMIT_MS } from '../../grid/constants.ts'

interface Ctx {
  dir: string
  port: number
  up: CliProcess
  url: string
  token: string
  joinFile: string
  workers: Map<string, CliProcess>
}

const scheduling = suite<Ctx>('scheduling with worker processes')

async function freePort (): Promise<number> {
  return await new Promise(resolve => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as any).port; s.close(() => resolve(p)) })
  })
}

async function startCoordinator (ctx: Ctx): Promise<void> {
  // A fixed port, so the join code the workers hold stays valid across the restart test.
  ctx.up = grid(['up', '--workers', '0', '--data', join(ctx.dir, 'coordinator'), '--http', '127.0.0.1:0', '--listen', `/ip4/127.0.0.1/tcp/${ctx.port}`])
  ctx.url = (await ctx.up.line(/^web: (http:\/\/\S+)$/m, 30_000))[1]
  await ctx.up.line(/^join: /m)
}

/** Start a worker process; resolves with its peer ID once it joined. */
async function startWorker (ctx: Ctx, name: string, ...caps: string[]): Promise<string> {
  const p = grid(['worker', '--join', ctx.joinFile, '--data', join(ctx.dir, name), ...caps.flatMap(c => ['--cap', c])])
  const peer = (await p.line(/worker (12D3KooW\w+) joined the grid/, 30_000))[1]
  ctx.workers.set(peer, p)
  return peer
}

async function submit (ctx: Ctx, job: unknown): Promise<string> {
  const res = await fetch(`${ctx.url}/api/builds`, { method: 'POST', headers: { authorization: `Bearer ${ctx.token}` }, body: JSON.stringify(job) })
  assert.is(res.status, 201)
  return (await res.json()).id
}

async function getBuild (ctx: Ctx, id: string): Promise<Build> {
  return await (await fetch(`${ctx.url}/api/builds/${id}`)).json() as Build
}

async function until (ctx: Ctx, id: string, what: string, check: (b: Build) => boolean, timeoutMs = 30_000): Promise<Build> {
  return await waitFor(`build ${id}: ${what}`, async () => { const b = await getBuild(ctx, id); return check(b) ? b : undefined }, timeoutMs)
}

const finished = (b: Build): boolean => FINISHED.has(b.status)

async function logOf (ctx: Ctx, id: string): Promise<string> {
  return await (await fetch(`${ctx.url}/api/builds/${id}/log`)).text()
}

scheduling.before(async ctx => {
  ctx.dir = await tempDir('sched')
  ctx.port = await freePort()
  ctx.workers = new Map()
  await startCoordinator(ctx)
  ctx.joinFile = join(ctx.dir, 'coordinator', 'join')
  ctx.token = (await readFile(join(ctx.dir, 'coordinator', 'api-token'), 'utf8')).trim()
})

scheduling.after(async ctx => {
  for (const w of ctx.workers.values()) {
    try { w.child.kill('SIGCONT') } catch {}
    await w.stop()
  }
  await ctx.up?.stop()
  await removeDir(ctx.dir)
})

scheduling('a SIGKILLed busy worker: the build is re-queued and succeeds on another, two attempts, two peer IDs', async ctx => {
  const a = await startWorker(ctx, 'kill-a', 'pool=kill')
  const b = await startWorker(ctx, 'kill-b', 'pool=kill')
  const id = await submit(ctx, { requires: { pool: 'kill' }, retries: 1, steps: [{ run: 'echo started; sleep 2; echo done' }] })
  const running = await until(ctx, id, 'running', b => b.status === 'running')
  await waitFor('output', async () => (await logOf(ctx, id)).includes('started'))
  const victim = running.attempts[0].worker
  ctx.workers.get(victim)!.child.kill('SIGKILL')
  const done = await until(ctx, id, 'finished', finished)
  assert.is(done.status, 'succeeded')
  assert.is(done.attempts.length, 2)
  assert.is(done.attempts[0].outcome, 'lost')
  assert.is(done.attempts[1].outcome, 'succeeded')
  assert.is(done.attempts[0].worker, victim)
  assert.is(done.attempts[1].worker, victim === a ? b : a)
  assert.match(await logOf(ctx, id), /done\n/)
  ctx.workers.delete(victim)
  for (const w of [a, b]) { await ctx.workers.get(w)?.stop(); ctx.workers.delete(w) }
})

scheduling('a SIGSTOPped busy worker is lost within 15 s, the build re-runs, and after SIGCONT the result is unchanged', async ctx => {
  const a = await startWorker(ctx, 'stop-a', 'pool=stop')
  const b = await startWorker(ctx, 'stop-b', 'pool=stop')
  const id = await submit(ctx, { requires: { pool: 'stop' }, retries: 1, steps: [{ run: 'echo started; sleep 4; echo finished-$GRID_ATTEMPT' }] })
  const running = await until(ctx, id, 'running', b => b.status === 'running')
  await waitFor('output', async () => (await logOf(ctx, id)).includes('started'))
  const frozen = running.attempts[0].worker
  const frozenProcess = ctx.workers.get(frozen)!
  frozenProcess.child.kill('SIGSTOP')
  const requeued = await until(ctx, id, 'the frozen attempt lost', b => b.attempts[0].outcome === 'lost', 15_000)
  assert.ok(WORKER_SILENCE_LIMIT_MS < 15_000)
  assert.is(requeued.attempts[0].worker, frozen)
  const done = await until(ctx, id, 'finished on the other worker', finished)
  assert.is(done.status, 'succeeded')
  assert.is(done.attempts.length, 2)
  assert.is(done.attempts[1].worker, frozen === a ? b : a)

  // Wake the frozen worker: its step has ended meanwhile and it will try to report; the build must not change.
  const joinsBefore = (frozenProcess.stderr().match(/joined the grid/g) ?? []).length
  frozenProcess.child.kill('SIGCONT')
  await waitFor('the woken worker to reconnect', () => (frozenProcess.stderr().match(/joined the grid/g) ?? []).length > joinsBefore, 20_000)
  await new Promise(resolve => setTimeout(resolve, 1_000))
  assert.equal(await getBuild(ctx, id), done)
  assert.ok((await logOf(ctx, id)).includes(`finished-${done.attempts[1].id}`), 'the log is the current attempt\'s')
  // The frozen attempt's log was fenced when it was lost: what the woken worker tried to append was refused,
  // and a follower of that log ends instead of waiting for a seal that would never come.
  const stale = await (await fetch(`${ctx.url}/api/logs/${done.attempts[0].logs[0]}?follow=1`, { signal: AbortSignal.timeout(10_000) })).text()
  assert.is(stale, 'started\n')
  for (const w of [a, b]) { await ctx.workers.get(w)?.stop(); ctx.workers.delete(w) }
})

scheduling('a build past its timeout ends `timeout`, and everything it started is killed', async ctx => {
  const w = await startWorker(ctx, 'timeout', 'pool=timeout')
  const pidFile = join(ctx.dir, 'timeout-pid')
  const id = await submit(ctx, { requires: { pool: 'timeout' }, timeout: 1, steps: [{ run: `sleep 60 & echo $! > ${pidFile}; wait` }] })
  const done = await until(ctx, id, 'finished', finished)
  assert.is(done.status, 'timeout')
  assert.is(done.attempts[0].outcome, 'timeout')
  const pid = Number(await readFile(pidFile, 'utf8'))
  await waitFor('the background sleep to be gone', async () => await processGone(pid), 5_000)
  await ctx.workers.get(w)?.stop()
  ctx.workers.delete(w)
})

scheduling('cancel: a queued build never runs; a running one is stopped on its worker', async ctx => {
  const w = await startWorker(ctx, 'cancel', 'pool=cancel')
  const cancel = async (id: string): Promise<Response> => await fetch(`${ctx.url}/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ctx.token}` } })
  const queued = await submit(ctx, { requires: { pool: 'nobody' }, steps: [{ run: 'true' }] })
  assert.is((await (await cancel(queued)).json()).status, 'cancelled')
  const pidFile = join(ctx.dir, 'cancel-pid')
  const running = await submit(ctx, { requires: { pool: 'cancel' }, steps: [{ run: `sleep 60 & echo $! > ${pidFile}; echo started; wait` }] })
  await waitFor('output', async () => (await logOf(ctx, running)).includes('started'))
  assert.is((await (await cancel(running)).json()).status, 'cancelled')
  const pid = Number(await readFile(pidFile, 'utf8'))
  await waitFor('the step to be killed on the worker', async () => await processGone(pid), 5_000)
  assert.is((await getBuild(ctx, queued)).attempts.length, 0)
  const after = await submit(ctx, { requires: { pool: 'cancel' }, steps: [{ run: 'echo free again' }] })
  assert.is((await until(ctx, after, 'finished', finished)).status, 'succeeded')
  await ctx.workers.get(w)?.stop()
  ctx.workers.delete(w)
})

scheduling('SIGTERM drains a worker: its running build finishes, new builds go elsewhere, then it exits 0', async ctx => {
  const draining = await startWorker(ctx, 'drain-a', 'pool=drain')
  const id = await submit(ctx, { requires: { pool: 'drain' }, steps: [{ run: 'echo started; sleep 2; echo finished' }] })
  await waitFor('output', async () => (await logOf(ctx, id)).includes('started'))
  const p = ctx.workers.get(draining)!
  p.child.kill('SIGTERM')
  await p.line(/draining/)
  const other = await startWorker(ctx, 'drain-b', 'pool=drain')
  const next = await submit(ctx, { requires: { pool: 'drain' }, steps: [{ run: 'true' }] })
  const done = await until(ctx, id, 'finished', finished)
  assert.is(done.status, 'succeeded')
  assert.is(done.attempts.length, 1)
  assert.is(await p.exited, 0)
  assert.is((await until(ctx, next, 'finished', finished)).attempts[0].worker, other)
  ctx.workers.delete(draining)
  await ctx.workers.get(other)?.stop()
  ctx.workers.delete(other)
})

scheduling('a coordinator restart mid-queue loses nothing: workers come back, the running build is reclaimed, queued builds run', async ctx => {
  const busy = await startWorker(ctx, 'restart-a', 'pool=restart')
  const running = await submit(ctx, { requires: { pool: 'restart' }, steps: [{ run: 'echo started; sleep 3; echo finished' }] })
  const queued = await Promise.all([1, 2, 3].map(async () => await submit(ctx, { requires: { pool: 'restart' }, steps: [{ run: 'echo queued-ran' }] })))
  await waitFor('output', async () => (await logOf(ctx, running)).includes('started'))
  await ctx.up.stop()
  assert.is(await ctx.up.exited, 0)
  await startCoordinator(ctx)
  const busyProcess = ctx.workers.get(busy)!
  await waitFor('the worker to come back', () => (busyProcess.stderr().match(/joined the grid/g) ?? []).length >= 2, 20_000)
  const done = await until(ctx, running, 'finished', finished)
  assert.is(done.status, 'succeeded')
  assert.is(done.attempts.length, 1, 'reclaimed, not re-run')
  for (const id of queued) {
    const b = await until(ctx, id, 'finished', finished)
    assert.is(b.status, 'succeeded')
    assert.is(b.attempts[0].worker, busy)
  }
  const listed = await (await fetch(`${ctx.url}/api/builds?limit=1000`)).json() as Build[]
  assert.ok(listed.some(b => b.id === running) && queued.every(id => listed.some(b => b.id === id)), 'history survived')
})

scheduling.run()

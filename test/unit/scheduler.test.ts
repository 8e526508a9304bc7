// The coordinator's state machine alone: a memory history and stub worker links, no network.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { attemptId, newBuildId } from '../../grid/ids.ts'
import type { Build } from '../../grid/build.ts'
import { LevelBuildHistory } from '../../coordinator/history.ts'
import { NO_STORE } from '../../coordinator/scheduler.ts'
import type { PeerAddress } from '../../net/dial.ts'
import { MemoryHistory, STORES, StubLink, finishAttempt, job, rejection, scheduler, stopAll, stored, until } from '../scheduler-fixtures.ts'

// ---------------------------------------------------------------- queue and assignment

const queue = suite('scheduler: queue and assignment')
queue.after.each(stopAll)

queue('a build submitted with no worker is queued and says why', async () => {
  const { scheduler: s, history } = scheduler()
  const build = await s.submit(job())
  assert.is(build.status, 'queued')
  assert.is(build.waiting, 'no worker is connected')
  assert.equal(build.attempts, [])
  assert.type(build.created, 'string')
  assert.ok(!Number.isNaN(Date.parse(build.created)))
  assert.is(build.started, undefined)
  assert.is((await stored(history, build.id)).status, 'queued')
  assert.is((await s.get(build.id))?.status, 'queued')
  assert.is(s.capacity().queued, 1)
})

queue('a worker that joins takes the queued build', async () => {
  const { scheduler: s, history } = scheduler()
  const build = await s.submit(job())
  const link = new StubLink({ os: 'linux', arch: 'x64' })
  s.workerJoined(link)

  assert.is(link.assigned.length, 1)
  const a = link.assigned[0]
  assert.is(a.build, build.id)
  assert.equal(a.job, build.job)
  assert.equal(a.stores, STORES)
  assert.is(a.logs.length, 2, 'one log id per step')
  assert.is(new Set(a.logs).size, 2, 'log ids are distinct')

  assert.is(build.status, 'running')
  assert.is(build.waiting, undefined)
  assert.type(build.started, 'string')
  assert.is(build.attempts.length, 1)
  const attempt = build.attempts[0]
  assert.is(attempt.id, a.attempt)
  assert.is(attempt.worker, link.worker)
  assert.equal(attempt.capabilities, { os: 'linux', arch: 'x64' })
  assert.equal(attempt.logs, a.logs)
  assert.is(attempt.outcome, undefined)
  assert.equal(build.steps.map(st => st.name), ['build', 'step 2'])
  assert.equal(build.steps.map(st => st.log), a.logs)

  const saved = await stored(history, build.id)
  assert.is(saved.status, 'running')
  assert.is(saved.attempts[0].worker, link.worker)
  assert.is(link.cancelled.length, 0)
})

queue('a build submitted while a worker is free is assigned at once', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink()
  s.workerJoined(link)
  const build = await s.submit(job())
  assert.is(link.assigned.length, 1)
  assert.is(link.assigned[0].build, build.id)
  assert.is(build.status, 'running')
})

queue('stores are asked at each assignment', async () => {
  let stores: PeerAddress[] = [{ peer: 'A', addrs: [] }]
  const { scheduler: s } = scheduler({ stores: () => stores })
  const link = new StubLink({ os: 'linux' }, 2)
  s.workerJoined(link)
  await s.submit(job())
  stores = [{ peer: 'B', addrs: ['/ip4/10.0.0.2/tcp/1'] }]
  await s.submit(job())
  assert.equal(link.assigned.map(a => a.stores), [[{ peer: 'A', addrs: [] }], [{ peer: 'B', addrs: ['/ip4/10.0.0.2/tcp/1'] }]])
})

queue('with no store yet a build waits (and says why) even with a free worker; a store joining starts it', async () => {
  let stores: PeerAddress[] = []
  const { scheduler: s } = scheduler({ stores: () => stores })
  const link = new StubLink({ os: 'linux' }, 1)
  s.workerJoined(link)
  const build = await s.submit(job())
  assert.is(link.assigned.length, 0)
  assert.is((await s.get(build.id))?.status, 'queued')
  assert.is((await s.get(build.id))?.waiting, NO_STORE)
  stores = STORES
  s.storesChanged()
  assert.is(link.assigned.length, 1)
  assert.is((await s.get(build.id))?.status, 'running')
  assert.is((await s.get(build.id))?.waiting, undefined)
})

queue('a resent step report (after a worker reconnects) changes nothing', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink({ os: 'linux' }, 1)
  s.workerJoined(link)
  const build = await s.submit(job())
  const attempt = link.attempt()
  s.stepStarted(link, attempt, 0)
  s.stepFinished(link, attempt, 0, 0, 'bafkreigyc4skelum46nlnl7zulfyn5v2srv2dm4vhg3clj2fb3z4pgmysq')
  const first = structuredClone((await s.get(build.id))!.steps[0])
  await sleep(5)
  s.stepStarted(link, attempt, 0)
  s.stepFinished(link, attempt, 0, 1)
  assert.equal((await s.get(build.id))!.steps[0], first)
})

queue('list is newest first and get finds live and finished builds', async () => {
  const { scheduler: s } = scheduler()
  const first = await s.submit(job())
  const second = await s.submit(job())
  const listed = await s.list(10)
  assert.equal(listed.map(b => b.id), [second.id, first.id])
  assert.is(await s.get('000000000nope0000'), undefined)
})

queue.run()

// ---------------------------------------------------------------- capabilities

const matching = suite('scheduler: capability matching')
matching.after.each(stopAll)

matching('a job requiring gpu=* goes only to the worker with a gpu, even when another has more free slots', async () => {
  const { scheduler: s } = scheduler()
  const plain = new StubLink({ os: 'linux' }, 4)
  const gpu = new StubLink({ os: 'linux', gpu: 'a100' }, 1)
  s.workerJoined(plain)
  s.workerJoined(gpu)
  const build = await s.submit(job({ requires: { gpu: '*' } }))
  assert.is(plain.assigned.length, 0)
  assert.is(gpu.assigned.length, 1)
  assert.is(build.attempts[0].worker, gpu.worker)

  // The gpu worker is full: the next gpu job waits rather than go to the plain worker.
  const next = await s.submit(job({ requires: { gpu: '*' } }))
  assert.is(next.status, 'queued')
  assert.is(plain.assigned.length, 0)
  assert.type(next.waiting, 'string')
})

matching('a job nobody can run waits, says which capability is missing, and does not block others', async () => {
  const { scheduler: s } = scheduler()
  const linux = new StubLink({ os: 'linux' }, 2)
  s.workerJoined(linux)
  const gpuJob = await s.submit(job({ requires: { gpu: '*' } }))
  const plainJob = await s.submit(job())
  assert.is(gpuJob.status, 'queued')
  assert.match(gpuJob.waiting ?? '', /gpu/)
  assert.is(plainJob.status, 'running')
  assert.equal(linux.assigned.map(a => a.build), [plainJob.id])

  const gpu = new StubLink({ os: 'linux', gpu: 'rtx' })
  s.workerJoined(gpu)
  assert.is(gpuJob.status, 'running')
  assert.is(gpuJob.waiting, undefined)
  assert.equal(gpu.assigned.map(a => a.build), [gpuJob.id])
})

matching('equality requirements pick the worker with that exact value', async () => {
  const { scheduler: s } = scheduler()
  const x64 = new StubLink({ os: 'linux', arch: 'x64' }, 2)
  const arm = new StubLink({ os: 'linux', arch: 'arm64' }, 1)
  s.workerJoined(x64)
  s.workerJoined(arm)
  const build = await s.submit(job({ requires: { os: 'linux', arch: 'arm64' } }))
  assert.is(x64.assigned.length, 0)
  assert.equal(arm.assigned.map(a => a.build), [build.id])

  const darwin = await s.submit(job({ requires: { os: 'darwin' } }))
  assert.is(darwin.status, 'queued')
  assert.match(darwin.waiting ?? '', /os=darwin/)
  assert.is(x64.assigned.length, 0)
})

matching.run()

// ---------------------------------------------------------------- slots

const slots = suite('scheduler: slots')
slots.after.each(stopAll)

slots('a worker with 2 slots gets 2 builds; the 3rd waits until one finishes', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink({ os: 'linux' }, 2)
  s.workerJoined(link)
  const b1 = await s.submit(job())
  const b2 = await s.submit(job())
  const b3 = await s.submit(job())
  assert.equal(link.assigned.map(a => a.build), [b1.id, b2.id])
  assert.is(b3.status, 'queued')
  assert.type(b3.waiting, 'string')
  assert.is(s.capacity().busy, 2)
  assert.is(s.capacity().queued, 1)

  finishAttempt(s, link, link.attempt(1))
  assert.is(b2.status, 'succeeded')
  assert.is(b3.status, 'running')
  assert.equal(link.assigned.map(a => a.build), [b1.id, b2.id, b3.id])
  assert.is(s.capacity().busy, 2)
  assert.is(s.capacity().queued, 0)
})

slots('queued builds start oldest first', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink({ os: 'linux' }, 1)
  s.workerJoined(link)
  const builds: Build[] = []
  for (let i = 0; i < 4; i++) builds.push(await s.submit(job()))
  for (let i = 0; i < 3; i++) finishAttempt(s, link, link.attempt(i))
  assert.equal(link.assigned.map(a => a.build), builds.map(b => b.id))
})

slots('a build re-queued after a lost worker goes ahead of newer ones', async () => {
  const { scheduler: s } = scheduler()
  const a = new StubLink({ os: 'linux' }, 1)
  s.workerJoined(a)
  const old = await s.submit(job())
  const newer = await s.submit(job())
  assert.is(newer.status, 'queued')
  s.workerLeft(a)
  assert.is(old.status, 'queued')
  const b = new StubLink({ os: 'linux' }, 1)
  s.workerJoined(b)
  assert.equal(b.assigned.map(x => x.build), [old.id])
  assert.is(newer.status, 'queued')
})

slots.run()

// ---------------------------------------------------------------- reports

const reports = suite('scheduler: reports from workers')
reports.after.each(stopAll)

reports('step and attempt reports fill the build in; success', async () => {
  const { scheduler: s, history } = scheduler()
  const link = new StubLink()
  s.workerJoined(link)
  const build = await s.submit(job())
  const attempt = link.attempt()

  s.stepStarted(link, attempt, 0)
  assert.type(build.steps[0].started, 'string')
  assert.is(build.steps[0].finished, undefined)
  s.stepFinished(link, attempt, 0, 0, 'bafkreilogcid0')
  assert.is(build.steps[0].exitCode, 0)
  assert.is(build.steps[0].logCid, 'bafkreilogcid0')
  assert.type(build.steps[0].finished, 'string')
  s.stepStarted(link, attempt, 1)
  s.stepFinished(link, attempt, 1, 0)
  assert.is(build.steps[1].exitCode, 0)
  assert.is(build.steps[1].logCid, undefined)
  assert.is(build.status, 'running')

  s.attemptFinished(link, attempt, 'succeeded')
  assert.is(build.status, 'succeeded')
  assert.type(build.finished, 'string')
  assert.is(build.attempts[0].outcome, 'succeeded')
  assert.is(build.attempts[0].worker, link.worker)
  assert.type(build.attempts[0].finished, 'string')
  assert.is(link.cancelled.length, 0)

  const saved = await stored(history, build.id)
  assert.is(saved.status, 'succeeded')
  assert.is(saved.steps[0].logCid, 'bafkreilogcid0')
  assert.is((await s.get(build.id))?.status, 'succeeded')
  assert.is(s.capacity().busy, 0)
})

reports('a failing step fails the build', async () => {
  const { scheduler: s, history } = scheduler()
  const link = new StubLink()
  s.workerJoined(link)
  const build = await s.submit(job())
  const attempt = link.attempt()
  s.stepStarted(link, attempt, 0)
  s.stepFinished(link, attempt, 0, 2)
  s.attemptFinished(link, attempt, 'failed')
  assert.is(build.status, 'failed')
  assert.is(build.steps[0].exitCode, 2)
  assert.is(build.steps[1].exitCode, undefined)
  assert.is(build.attempts[0].outcome, 'failed')
  assert.is((await stored(history, build.id)).status, 'failed')
})

reports('a step index out of range changes nothing', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink()
  s.workerJoined(link)
  const build = await s.submit(job())
  const before = structuredClone(build)
  s.stepFinished(link, link.attempt(), 7, 0)
  s.stepStarted(link, link.attempt(), -1)
  assert.equal(build, before)
})

reports.run()

// ---------------------------------------------------------------- fencing

const fencing = suite('scheduler: fencing')
fencing.after.each(stopAll)

fencing('a link that does not hold the attempt is refused and told to stop', async () => {
  const { scheduler: s, history } = scheduler()
  const holder = new StubLink()
  const other = new StubLink()
  s.workerJoined(holder)
  const build = await s.submit(job())
  s.workerJoined(other)
  const attempt = holder.attempt()
  const before = structuredClone(build)
  const savesBefore = (history as MemoryHistory).saves

  s.stepStarted(other, attempt, 0)
  s.stepFinished(other, attempt, 0, 0, 'bafkreiforged')
  s.attemptFinished(other, attempt, 'succeeded')

  assert.equal(build, before)
  assert.is((history as MemoryHistory).saves, savesBefore)
  assert.equal(other.cancelled, [
    { attempt, reason: 'stale' }, { attempt, reason: 'stale' }, { attempt, reason: 'stale' }
  ])
  assert.is(holder.cancelled.length, 0)
  assert.is((await stored(history, build.id)).status, 'running')
})

fencing('a report for an attempt nobody knows is refused', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink()
  s.workerJoined(link)
  const made = attemptId(newBuildId(), 1)
  s.attemptFinished(link, made, 'succeeded')
  assert.equal(link.cancelled, [{ attempt: made, reason: 'stale' }])
})

fencing('a late report for an attempt that is no longer current changes nothing', async () => {
  const { scheduler: s, history } = scheduler()
  const a = new StubLink()
  s.workerJoined(a)
  const build = await s.submit(job())
  const first = a.attempt()
  s.workerLeft(a)
  const b = new StubLink()
  s.workerJoined(b)
  const second = b.attempt()
  assert.is.not(first, second)

  const before = structuredClone(build)
  // The old session talks again (it was only slow), and the new holder reports on the old attempt.
  s.stepFinished(a, first, 0, 0)
  s.attemptFinished(a, first, 'succeeded')
  s.attemptFinished(b, first, 'failed')
  assert.equal(build, before)
  assert.is(build.status, 'running')
  assert.equal(a.cancelled, [{ attempt: first, reason: 'stale' }, { attempt: first, reason: 'stale' }])
  assert.equal(b.cancelled, [{ attempt: first, reason: 'stale' }])

  // The current attempt still counts.
  s.attemptFinished(b, second, 'succeeded')
  assert.is(build.status, 'succeeded')
  assert.is((await stored(history, build.id)).status, 'succeeded')
})

fencing('a worker that claims an attempt it does not hold is told to stop it', async () => {
  const { scheduler: s } = scheduler()
  const a = new StubLink()
  s.workerJoined(a)
  const build = await s.submit(job())
  const attempt = a.attempt()
  const impostor = new StubLink()
  s.workerJoined(impostor, [attempt, 'zzzzzzzzzzzz.a1'])
  assert.equal(impostor.cancelled, [{ attempt, reason: 'stale' }, { attempt: 'zzzzzzzzzzzz.a1', reason: 'stale' }])
  s.attemptFinished(impostor, attempt, 'succeeded')
  assert.is(build.status, 'running')
  s.attemptFinished(a, attempt, 'succeeded')
  assert.is(build.status, 'succeeded')
})

fencing('a worker that reconnects claims its attempt; the old session closing loses nothing', async () => {
  const { scheduler: s } = scheduler()
  const old = new StubLink({ os: 'linux' }, 1, '12D3KooWreconnecting')
  s.workerJoined(old)
  const build = await s.submit(job())
  const attempt = old.attempt()
  const fresh = new StubLink({ os: 'linux' }, 1, '12D3KooWreconnecting')
  s.workerJoined(fresh, [attempt])
  assert.is(fresh.cancelled.length, 0)
  s.workerLeft(old)
  assert.is(build.status, 'running')
  assert.is(build.attempts.length, 1)
  assert.is(build.attempts[0].outcome, undefined)
  s.attemptFinished(old, attempt, 'failed')
  assert.is(build.status, 'running')
  s.attemptFinished(fresh, attempt, 'succeeded')
  assert.is(build.status, 'succeeded')
  assert.is(build.attempts.length, 1)
})

fencing.run()

// ---------------------------------------------------------------- lost workers and retries

const lost = suite('scheduler: lost workers and retries')
lost.after.each(stopAll)

lost('a lost worker\'s build is queued again and runs on another worker as a second attempt', async () => {
  const { scheduler: s, history } = scheduler()
  const a = new StubLink()
  s.workerJoined(a)
  const build = await s.submit(job({ retries: 2 }))
  s.workerLeft(a)

  assert.is(build.status, 'queued')
  assert.is(build.attempts.length, 1)
  assert.is(build.attempts[0].outcome, 'lost')
  assert.type(build.attempts[0].finished, 'string')
  assert.is(build.finished, undefined)
  assert.is((await stored(history, build.id)).status, 'queued')
  assert.is(s.capacity().nodes, 0)

  const b = new StubLink()
  s.workerJoined(b)
  assert.is(build.status, 'running')
  assert.is(build.attempts.length, 2)
  assert.equal(build.attempts.map(x => x.worker), [a.worker, b.worker])
  assert.is.not(a.worker, b.worker)
  assert.is.not(build.attempts[0].id, build.attempts[1].id)
  assert.is(b.assigned[0].attempt, build.attempts[1].id)
  // A new attempt gets new log ids; the lost attempt's logs stay named on it.
  assert.is(b.assigned[0].logs.filter(l => a.assigned[0].logs.includes(l)).length, 0)
  assert.equal(build.steps.map(st => st.log), b.assigned[0].logs)
  assert.equal(build.attempts[0].logs, a.assigned[0].logs)

  s.attemptFinished(b, b.attempt(), 'succeeded')
  assert.is(build.status, 'succeeded')
  assert.equal(build.attempts.map(x => x.outcome), ['lost', 'succeeded'])
})

lost('retries: 0 makes the build lost after the first lost attempt', async () => {
  const { scheduler: s, history } = scheduler()
  const a = new StubLink()
  s.workerJoined(a)
  const build = await s.submit(job({ retries: 0 }))
  s.workerLeft(a)
  assert.is(build.status, 'lost')
  assert.type(build.finished, 'string')
  assert.is((await stored(history, build.id)).status, 'lost')
  const b = new StubLink()
  s.workerJoined(b)
  assert.is(b.assigned.length, 0)
  assert.is(build.attempts.length, 1)
})

lost('retries: 1 makes the build lost after the second lost attempt', async () => {
  const { scheduler: s } = scheduler()
  const a = new StubLink()
  s.workerJoined(a)
  const build = await s.submit(job({ retries: 1 }))
  s.workerLeft(a)
  assert.is(build.status, 'queued')
  const b = new StubLink()
  s.workerJoined(b)
  assert.is(build.status, 'running')
  s.workerLeft(b)
  assert.is(build.status, 'lost')
  assert.equal(build.attempts.map(x => x.outcome), ['lost', 'lost'])
  const c = new StubLink()
  s.workerJoined(c)
  assert.is(c.assigned.length, 0)
})

lost('a failed attempt is not retried', async () => {
  const { scheduler: s } = scheduler()
  const a = new StubLink({ os: 'linux' }, 2)
  s.workerJoined(a)
  const build = await s.submit(job({ retries: 3 }))
  s.attemptFinished(a, a.attempt(), 'failed')
  assert.is(build.status, 'failed')
  assert.is(a.assigned.length, 1)
})

lost('workerLeft for a link that never joined, or twice, changes nothing', async () => {
  const { scheduler: s } = scheduler()
  const a = new StubLink()
  s.workerJoined(a)
  const build = await s.submit(job({ retries: 5 }))
  s.workerLeft(new StubLink())
  assert.is(build.status, 'running')
  s.workerLeft(a)
  s.workerLeft(a)
  assert.equal(build.attempts.map(x => x.outcome), ['lost'])
})

lost.run()

// ---------------------------------------------------------------- cancel

const cancel = suite('scheduler: cancel')
cancel.after.each(stopAll)

cancel('cancelling a queued build finishes it and it is never assigned', async () => {
  const { scheduler: s, history } = scheduler()
  const build = await s.submit(job())
  const answer = await s.cancel(build.id)
  assert.is(answer.status, 'cancelled')
  assert.type(answer.finished, 'string')
  assert.is(answer.waiting, undefined)
  assert.is((await stored(history, build.id)).status, 'cancelled')
  const link = new StubLink()
  s.workerJoined(link)
  assert.is(link.assigned.length, 0)
  assert.is(s.capacity().queued, 0)
  assert.is((await s.get(build.id))?.status, 'cancelled')
})

cancel('cancelling a running build tells its worker, keeps how its stopped step ended, and ignores its late result', async () => {
  const { scheduler: s, history } = scheduler()
  const link = new StubLink()
  s.workerJoined(link)
  const build = await s.submit(job())
  const attempt = link.attempt()
  const answer = await s.cancel(build.id)
  assert.is(answer.status, 'cancelled')
  assert.type(answer.finished, 'string')
  assert.equal(link.cancelled, [{ attempt, reason: 'cancelled', why: 'cancelled by an API client' }])
  assert.is(answer.attempts[0].outcome, 'cancelled')
  assert.is(s.capacity().busy, 0)

  // The worker winds the cancel down: the step it stopped reports how it ended (exit code, sealed log), which
  // the record keeps; its late result changes nothing, and it is not told it is stale (that would cut its log short).
  s.stepFinished(link, attempt, 0, 143, 'bafkreistoppedlog')
  assert.is(build.steps[0].exitCode, 143)
  assert.is(build.steps[0].logCid, 'bafkreistoppedlog')
  s.attemptFinished(link, attempt, 'succeeded')
  assert.is(build.status, 'cancelled')
  assert.is((await stored(history, build.id)).status, 'cancelled')
  assert.is((await s.get(build.id))?.status, 'cancelled')
  assert.is(link.cancelled.length, 1)
  // Once it reported its end, a report about that attempt is stale like any other.
  s.stepFinished(link, attempt, 1, 0)
  assert.equal(link.cancelled.at(-1), { attempt, reason: 'stale' })
  assert.is(build.steps[1].exitCode, undefined)
})

cancel('cancelling a running build frees its slot for the next queued build', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink({ os: 'linux' }, 1)
  s.workerJoined(link)
  const first = await s.submit(job())
  const second = await s.submit(job())
  assert.is(second.status, 'queued')
  await s.cancel(first.id)
  assert.is(s.capacity().busy, 1, "the freed slot is taken at once")
  assert.is(second.status, 'running', 'the queued build takes the freed slot')
  assert.equal(link.assigned.map(a => a.build), [first.id, second.id])
})

cancel('cancelling an unknown build throws UnknownBuildError', async () => {
  const { scheduler: s } = scheduler()
  const err = await rejection(s.cancel('000000000deadbeef'))
  assert.is(err.name, 'UnknownBuildError')
})

cancel('cancelling a finished build throws BuildFinishedError and leaves it as it was', async () => {
  const { scheduler: s, history } = scheduler()
  const link = new StubLink()
  s.workerJoined(link)
  const build = await s.submit(job())
  s.attemptFinished(link, link.attempt(), 'succeeded')
  const err = await rejection(s.cancel(build.id))
  assert.is(err.name, 'BuildFinishedError')
  assert.is((await stored(history, build.id)).status, 'succeeded')
  assert.is(link.cancelled.length, 0)

  const queued = await s.submit(job())
  await s.cancel(queued.id)
  assert.is((await rejection(s.cancel(queued.id))).name, 'BuildFinishedError')
})

cancel.run()

// ---------------------------------------------------------------- capacity and listeners

const capacity = suite('scheduler: capacity and listeners')
capacity.after.each(stopAll)

capacity('capacity groups workers with identical capabilities', async () => {
  const { scheduler: s } = scheduler()
  assert.equal(s.capacity(), { nodes: 0, slots: 0, busy: 0, queued: 0, groups: [] })
  const l1 = new StubLink({ os: 'linux', arch: 'x64' }, 2)
  const l2 = new StubLink({ arch: 'x64', os: 'linux' }, 1)
  const mac = new StubLink({ os: 'darwin', arch: 'arm64' }, 3)
  s.workerJoined(l1)
  s.workerJoined(l2)
  s.workerJoined(mac)
  await s.submit(job({ requires: { os: 'darwin' } }))
  await s.submit(job({ requires: { os: 'linux' } }))
  await s.submit(job({ requires: { gpu: '*' } }))

  const c = s.capacity()
  assert.is(c.nodes, 3)
  assert.is(c.slots, 6)
  assert.is(c.busy, 2)
  assert.is(c.queued, 1)
  assert.is(c.groups.length, 2)
  const linux = c.groups.find(g => g.capabilities.os === 'linux')
  const darwin = c.groups.find(g => g.capabilities.os === 'darwin')
  assert.ok(linux !== undefined && darwin !== undefined)
  assert.equal({ ...linux, capabilities: undefined }, { capabilities: undefined, nodes: 2, trusted: 0, slots: 3, busy: 1 })
  assert.equal(linux.capabilities, { os: 'linux', arch: 'x64' })
  assert.equal(darwin, { capabilities: { os: 'darwin', arch: 'arm64' }, nodes: 1, trusted: 0, slots: 3, busy: 1 })

  s.workerLeft(mac)
  const after = s.capacity()
  assert.is(after.nodes, 2)
  assert.is(after.groups.length, 1)
  assert.is(after.busy, 1)
})

capacity('onBuild hears every change until unsubscribed; onCapacity hears joins', async () => {
  const { scheduler: s } = scheduler()
  const heard: Array<{ id: string, status: string }> = []
  const off = s.onBuild(b => heard.push({ id: b.id, status: b.status }))
  const capacities: number[] = []
  const offCapacity = s.onCapacity(c => capacities.push(c.nodes))

  const build = await s.submit(job())
  assert.ok(heard.some(h => h.id === build.id && h.status === 'queued'))
  const link = new StubLink()
  s.workerJoined(link)
  assert.ok(capacities.includes(1))
  assert.ok(heard.some(h => h.status === 'running'))
  s.stepFinished(link, link.attempt(), 0, 0)
  s.attemptFinished(link, link.attempt(), 'succeeded')
  assert.equal(heard.at(-1), { id: build.id, status: 'succeeded' })
  const statuses = heard.map(h => h.status)
  assert.ok(statuses.indexOf('queued') < statuses.indexOf('running'))
  assert.ok(statuses.indexOf('running') < statuses.indexOf('succeeded'))

  off()
  offCapacity()
  const count = heard.length
  const capacityCount = capacities.length
  await s.submit(job())
  s.workerJoined(new StubLink())
  assert.is(heard.length, count)
  assert.is(capacities.length, capacityCount)
})

capacity.run()

// ---------------------------------------------------------------- restart

const restart = suite('scheduler: restart with the same history')
restart.after.each(stopAll)

restart('queued builds are queued again and dispatched, oldest first', async () => {
  const { scheduler: before, history } = scheduler()
  const b1 = await before.submit(job())
  const b2 = await before.submit(job())
  before.stop()

  const { scheduler: after } = scheduler({ history })
  await after.start()
  assert.is(after.capacity().queued, 2)
  assert.is((await after.get(b1.id))?.status, 'queued')
  const link = new StubLink({ os: 'linux' }, 1)
  after.workerJoined(link)
  assert.equal(link.assigned.map(a => a.build), [b1.id])
  assert.is((await after.get(b1.id))?.status, 'running')
  after.attemptFinished(link, link.attempt(), 'succeeded')
  assert.equal(link.assigned.map(a => a.build), [b1.id, b2.id])
  assert.is((await stored(history, b1.id)).status, 'succeeded')
})

restart('a running build is reclaimed by its worker coming back with the attempt', async () => {
  const { scheduler: before, history } = scheduler()
  const w = new StubLink({ os: 'linux' }, 1, '12D3KooWsameworker')
  before.workerJoined(w)
  const build = await before.submit(job())
  const attempt = w.attempt()
  before.stop()

  const { scheduler: after } = scheduler({ history, reclaimWindowMs: 200 })
  await after.start()
  const back = new StubLink({ os: 'linux' }, 1, '12D3KooWsameworker')
  after.workerJoined(back, [attempt])
  assert.is(back.cancelled.length, 0)
  assert.is(back.assigned.length, 0, 'no second attempt is assigned')
  assert.is(after.capacity().busy, 1)

  // Outlive the reclaim window: the claimed attempt must not be declared lost.
  await sleep(400)
  const live = await after.get(build.id)
  assert.is(live?.status, 'running')
  assert.is(live?.attempts.length, 1)
  assert.is(live?.attempts[0].outcome, undefined)

  after.stepFinished(back, attempt, 0, 0)
  after.attemptFinished(back, attempt, 'succeeded')
  const done = await stored(history, build.id)
  assert.is(done.status, 'succeeded')
  assert.is(done.attempts.length, 1)
  assert.equal(done.attempts.map(a => a.outcome), ['succeeded'])
  assert.is(back.cancelled.length, 0)
})

restart('a running build nobody claims within the window is lost and queued again', async () => {
  const { scheduler: before, history } = scheduler()
  const w = new StubLink({ os: 'linux' }, 1, '12D3KooWgoneworker')
  before.workerJoined(w)
  const build = await before.submit(job({ retries: 2 }))
  const first = w.attempt()
  before.stop()

  const { scheduler: after } = scheduler({ history, reclaimWindowMs: 200 })
  await after.start()
  const other = new StubLink({ os: 'linux' }, 1)
  after.workerJoined(other)
  assert.is(other.assigned.length, 0, 'the attempt is still reserved for its worker')

  await until(() => other.assigned.length > 0, 'the unclaimed build to be run again')
  const live = await after.get(build.id)
  assert.is(live?.status, 'running')
  assert.equal(live?.attempts.map(a => a.worker), [w.worker, other.worker])
  assert.equal(live?.attempts.map(a => a.outcome), ['lost', undefined])
  assert.is(other.assigned[0].attempt, live?.attempts[1].id)

  // The old worker turns up late: its attempt is no longer current.
  const late = new StubLink({ os: 'linux' }, 1, '12D3KooWgoneworker')
  after.workerJoined(late, [first])
  assert.equal(late.cancelled, [{ attempt: first, reason: 'stale' }])
})

restart('a worker that comes back after a restart without its attempt lost it: re-run now, not after the window', async () => {
  const { scheduler: before, history } = scheduler()
  const w = new StubLink({ os: 'linux' }, 1, '12D3KooWrestarted')
  before.workerJoined(w)
  const build = await before.submit(job({ retries: 1 }))
  before.stop()

  // A window far longer than the test: only the worker's return can end the attempt.
  const { scheduler: after } = scheduler({ history, reclaimWindowMs: 600_000 })
  await after.start()
  const again = new StubLink({ os: 'linux' }, 1, '12D3KooWrestarted')
  after.workerJoined(again, [])
  const live = await after.get(build.id)
  assert.equal(live?.attempts.map(a => a.outcome), ['lost', undefined])
  assert.match(live?.attempts[0].reason ?? '', /came back after a coordinator restart without it/)
  assert.is(again.assigned.length, 1, 'the build runs again at once, on the worker that came back')
})

restart('an unclaimed running build with no retries left is lost', async () => {
  const { scheduler: before, history } = scheduler()
  const w = new StubLink()
  before.workerJoined(w)
  const build = await before.submit(job({ retries: 0 }))
  before.stop()

  const { scheduler: after } = scheduler({ history, reclaimWindowMs: 200 })
  await after.start()
  await until(async () => (await stored(history, build.id)).status !== 'running', 'the build to end')
  const done = await stored(history, build.id)
  assert.is(done.status, 'lost')
  assert.type(done.finished, 'string')
  assert.equal(done.attempts.map(a => a.outcome), ['lost'])
  const other = new StubLink()
  after.workerJoined(other)
  assert.is(other.assigned.length, 0)
})

restart.run()

// ---------------------------------------------------------------- LevelDB

const level = suite('LevelBuildHistory')
const dirs: string[] = []
level.after.each(stopAll)
level.after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'grid-history-'))
  dirs.push(dir)
  return dir
}

function fakeBuild (status: Build['status']): Build {
  return {
    id: newBuildId(),
    status,
    job: job(),
    created: new Date().toISOString(),
    attempts: status === 'queued' ? [] : [{ id: 'x.a1', worker: '12D3KooWx', capabilities: { os: 'linux' }, started: new Date().toISOString(), logs: ['x.a1.s0'] }],
    steps: [],
    artifacts: status === 'succeeded' ? [{ path: 'dist/app.js', cid: 'bafkreiapp', size: 3, sha256: 'ab'.repeat(32) }] : []
  }
}

level('builds survive close and reopen: get, list newest first, active', async () => {
  const dir = await tempDir()
  const first = new LevelBuildHistory(dir)
  await first.open()
  const done = fakeBuild('succeeded')
  const queued = fakeBuild('queued')
  const runningBuild = fakeBuild('running')
  await first.save(done)
  await first.save(queued)
  await first.save(runningBuild)
  // Snapshot on save: changing the object afterwards does not change what was stored.
  queued.waiting = 'mutated after save'
  await first.close()
  delete queued.waiting

  const second = new LevelBuildHistory(dir)
  await second.open()
  assert.equal(await second.get(done.id), done)
  assert.equal(await second.get(queued.id), queued)
  assert.equal(await second.get(runningBuild.id), runningBuild)
  assert.is(await second.get('000000000nothere'), undefined)
  assert.equal((await second.list(10)).map(b => b.id), [runningBuild.id, queued.id, done.id])
  assert.equal((await second.list(2)).map(b => b.id), [runningBuild.id, queued.id])
  assert.equal((await second.active()).map(b => b.id).sort(), [queued.id, runningBuild.id].sort())

  // Finishing a build takes it out of the active index, across a reopen too.
  runningBuild.status = 'failed'
  runningBuild.finished = new Date().toISOString()
  await second.save(runningBuild)
  assert.equal((await second.active()).map(b => b.id), [queued.id])
  await second.close()

  const third = new LevelBuildHistory(dir)
  await third.open()
  assert.equal((await third.active()).map(b => b.id), [queued.id])
  assert.is((await third.get(runningBuild.id))?.status, 'failed')
  await third.close()
})

level('saves of one build land in the order they were made', async () => {
  const dir = await tempDir()
  const history = new LevelBuildHistory(dir)
  await history.open()
  const build = fakeBuild('queued')
  const writes: Array<Promise<void>> = []
  for (const status of ['queued', 'running', 'queued', 'running', 'succeeded'] as const) {
    build.status = status
    writes.push(history.save(build))
  }
  await Promise.all(writes)
  assert.is((await history.get(build.id))?.status, 'succeeded')
  assert.equal(await history.active(), [])
  await history.close()
})

level('a scheduler on LevelDB keeps its queue across a restart', async () => {
  const dir = await tempDir()
  const history = new LevelBuildHistory(dir)
  await history.open()
  const { scheduler: before } = scheduler({ history })
  const b1 = await before.submit(job())
  const b2 = await before.submit(job({ requires: { gpu: '*' } }))
  before.stop()
  await history.close()

  const reopened = new LevelBuildHistory(dir)
  await reopened.open()
  const { scheduler: after } = scheduler({ history: reopened })
  await after.start()
  const link = new StubLink({ os: 'linux', gpu: 'a100' }, 2)
  after.workerJoined(link)
  assert.equal(link.assigned.map(a => a.build), [b1.id, b2.id])
  after.attemptFinished(link, link.attempt(0), 'succeeded')
  after.attemptFinished(link, link.attempt(1), 'failed')
  await reopened.close()

  const last = new LevelBuildHistory(dir)
  await last.open()
  assert.is((await last.get(b1.id))?.status, 'succeeded')
  assert.is((await last.get(b2.id))?.status, 'failed')
  assert.equal(await last.active(), [])
  await last.close()
})

level('a scheduler on LevelDB reads a finished build back at once', async () => {
  const dir = await tempDir()
  const history = new LevelBuildHistory(dir)
  await history.open()
  try {
    const { scheduler: s } = scheduler({ history })
    const link = new StubLink()
    s.workerJoined(link)
    const build = await s.submit(job())
    s.attemptFinished(link, link.attempt(), 'succeeded')
    // The build left the live map; the answer now comes from history, which must already hold the last save.
    assert.is((await s.get(build.id))?.status, 'succeeded')
  } finally {
    await history.close()
  }
})

level('on LevelDB, cancelling a build that just succeeded is refused and does not rewrite it', async () => {
  const dir = await tempDir()
  const history = new LevelBuildHistory(dir)
  await history.open()
  let id = ''
  try {
    const { scheduler: s } = scheduler({ history })
    const link = new StubLink()
    s.workerJoined(link)
    const build = await s.submit(job())
    id = build.id
    s.attemptFinished(link, link.attempt(), 'succeeded')
    const err = await rejection(s.cancel(build.id))
    assert.is(err.name, 'BuildFinishedError')
  } finally {
    await history.close()
  }
  const reopened = new LevelBuildHistory(dir)
  await reopened.open()
  try {
    const saved = await reopened.get(id)
    assert.is(saved?.status, 'succeeded')
    assert.equal(saved?.attempts.map(a => a.outcome), ['succeeded'])
  } finally {
    await reopened.close()
  }
})

level.run()

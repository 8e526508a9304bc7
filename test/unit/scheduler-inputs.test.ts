// The scheduler alone, on builds that feed builds: a build waiting for another build's artifact holds no slot,
// says what it waits for, and ends at once (naming the build) when that build cannot give it. Also: every attempt
// says why it ended, and every way an attempt ends seals its logs.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { MemoryHistory, StubLink, finishAttempt, job, rejection, scheduler, stopAll, until } from '../scheduler-fixtures.ts'
import type { Scheduler } from '../../coordinator/scheduler.ts'
import type { Build } from '../../grid/build.ts'

/** The worker reports an attempt that succeeded and kept `artifacts` (paths). */
function succeedWith (s: Scheduler, link: StubLink, attempt: string, artifacts: string[]): void {
  s.stepFinished(link, attempt, 0, 0)
  s.attemptFinished(link, attempt, 'succeeded', artifacts.map(path => ({ path, cid: 'bafkreiaaaa', size: 1, sha256: '0'.repeat(64) })))
}

const fooBar = { os: 'linux', foo: 'bar' }
const oneStep = (extra: Record<string, unknown> = {}): ReturnType<typeof job> => job({ requires: { foo: 'bar' }, steps: [{ run: 'true' }], ...extra })

const waits = suite('scheduler: a build waiting for a build: input')
waits.after.each(stopAll)

waits('the issue\'s case: B (priority 10) waits for A without its slot, A runs first, then B', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(fooBar, 1)
  s.workerJoined(link)
  const x = await s.submit(oneStep({ name: 'X' }))
  const a = await s.submit(oneStep({ name: 'A', artifacts: ['out.txt'] }))
  const b = await s.submit(oneStep({ name: 'B', priority: 10, inputs: { 'out.txt': `build:${a.id}/out.txt` } }))
  assert.is(link.assigned.length, 1)
  assert.is(link.assigned[0].build, x.id)
  assert.is(b.status, 'queued')
  assert.is(b.waiting, `waiting for build ${a.id} (queued)`)

  finishAttempt(s, link, link.attempt(0))
  assert.is(link.assigned.length, 2, 'the freed slot went to someone')
  assert.is(link.assigned[1].build, a.id, 'to A, though B has the higher priority: B cannot run before A')
  assert.is(b.status, 'queued')
  assert.is(b.waiting, `waiting for build ${a.id} (running)`)
  assert.is(s.capacity().busy, 1)

  succeedWith(s, link, link.attempt(1), ['out.txt'])
  assert.is(link.assigned.length, 3)
  assert.is(link.assigned[2].build, b.id)
  assert.is(b.status, 'running')
  assert.is(b.waiting, undefined)
  finishAttempt(s, link, link.attempt(2))
  assert.is(b.status, 'succeeded')
})

waits('a waiting build does not hold up the builds queued behind it', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(fooBar, 1)
  const a = await s.submit(oneStep({ requires: { gpu: 'a100' }, artifacts: ['o'] }))
  const b = await s.submit(oneStep({ priority: 5, inputs: { o: `build:${a.id}/o` } }))
  const c = await s.submit(oneStep())
  s.workerJoined(link)
  assert.equal(link.assigned.map(x => x.build), [c.id])
  assert.is(a.waiting, 'no worker has gpu=a100')
  assert.is(b.waiting, `waiting for build ${a.id} (queued)`)
})

waits('one waiting reason names every unfinished input build once', async () => {
  const { scheduler: s } = scheduler()
  const a = await s.submit(oneStep({ artifacts: ['x', 'y'] }))
  const c = await s.submit(oneStep({ artifacts: ['z'] }))
  const b = await s.submit(oneStep({ inputs: { x: `build:${a.id}/x`, y: `build:${a.id}/y`, z: `build:${c.id}/z` } }))
  assert.is(b.waiting, `waiting for builds ${a.id} (queued), ${c.id} (queued)`)
})

const ends = suite('scheduler: an input build that cannot give its artifact ends the build at once')
ends.after.each(stopAll)

for (const [how, end] of [
  ['fails', (s: Scheduler, link: StubLink, _a: Build) => { finishAttempt(s, link, link.attempt(0), 'failed') }],
  ['times out', (s: Scheduler, link: StubLink, _a: Build) => { finishAttempt(s, link, link.attempt(0), 'timeout') }],
  ['is cancelled', async (s: Scheduler, _link: StubLink, a: Build) => { await s.cancel(a.id) }],
  ['is lost for good (no retries left)', (s: Scheduler, link: StubLink, _a: Build) => { s.workerLeft(link, 'test: cut off') }],
  ['succeeds without that artifact', (s: Scheduler, link: StubLink, _a: Build) => { succeedWith(s, link, link.attempt(0), ['other.txt']) }]
] as const) {
  ends(`input build ${how}: the waiting build fails now, without an attempt, naming it`, async () => {
    const { scheduler: s, history } = scheduler()
    const link = new StubLink(fooBar, 1)
    s.workerJoined(link)
    const a = await s.submit(oneStep({ retries: 0, artifacts: ['out.txt'] }))
    const b = await s.submit(oneStep({ inputs: { 'in/out.txt': `build:${a.id}/out.txt` } }))
    await end(s, link, a)
    assert.is(b.status, 'failed')
    assert.equal(b.attempts, [])
    assert.type(b.finished, 'string')
    assert.is(b.waiting, undefined)
    assert.match(b.error ?? '', `input in/out.txt: build ${a.id}`)
    assert.ok(!link.assigned.some(x => x.build === b.id), 'it never reached a worker')
    await until(async () => (await history.get(b.id))?.status === 'failed', 'the failure saved')
  })
}

ends('a chain fails down its length: C waits for B waits for A; A fails', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(fooBar, 1)
  s.workerJoined(link)
  const a = await s.submit(oneStep({ artifacts: ['a'] }))
  const b = await s.submit(oneStep({ inputs: { a: `build:${a.id}/a` }, artifacts: ['b'] }))
  const c = await s.submit(oneStep({ inputs: { b: `build:${b.id}/b` } }))
  finishAttempt(s, link, link.attempt(0), 'failed')
  assert.is(b.status, 'failed')
  assert.is(c.status, 'failed')
  assert.match(c.error ?? '', `build ${b.id} ended failed`)
  assert.is(link.assigned.length, 1)
})

ends('an input build that already failed: the build is recorded and fails at submit', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(fooBar, 1)
  s.workerJoined(link)
  const a = await s.submit(oneStep({ artifacts: ['out.txt'] }))
  finishAttempt(s, link, link.attempt(0), 'failed')
  const b = await s.submit(oneStep({ inputs: { o: `build:${a.id}/out.txt` } }))
  assert.is(b.status, 'failed')
  assert.match(b.error ?? '', `build ${a.id} ended failed`)
  assert.is(link.assigned.length, 1)
})

ends('an input naming a build the grid never had is refused at submit', async () => {
  const { scheduler: s } = scheduler()
  const err = await rejection(s.submit(oneStep({ inputs: { o: 'build:0mxnotabuild00/out.txt' } })))
  assert.is(err.name, 'InvalidJobError')
  assert.is((await s.list(10)).length, 0, 'nothing was recorded')
})

ends('after a restart a queued build still waits for its input build, which runs first', async () => {
  const history = new MemoryHistory()
  const first = scheduler({ history }).scheduler
  const a = await first.submit(oneStep({ artifacts: ['out.txt'] }))
  const b = await first.submit(oneStep({ priority: 10, inputs: { o: `build:${a.id}/out.txt` } }))
  first.stop()
  const { scheduler: s } = scheduler({ history })
  await s.start()
  const link = new StubLink(fooBar, 1)
  s.workerJoined(link)
  assert.equal(link.assigned.map(x => x.build), [a.id])
  assert.is((await s.get(b.id))?.waiting, `waiting for build ${a.id} (running)`)
  succeedWith(s, link, link.attempt(0), ['out.txt'])
  assert.equal(link.assigned.map(x => x.build), [a.id, b.id])
})

const why = suite('scheduler: every ending says why, and seals its logs')
why.after.each(stopAll)

why('a lost attempt records why; the re-queued build says it waits to run again', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(fooBar, 1)
  s.workerJoined(link)
  const build = await s.submit(oneStep({ retries: 1 }))
  s.workerLeft(link, 'its worker sent no heartbeat for 5.0 s (frozen or cut off)')
  assert.is(build.status, 'queued')
  assert.is(build.attempts[0].outcome, 'lost')
  assert.is(build.attempts[0].reason, 'its worker sent no heartbeat for 5.0 s (frozen or cut off)')
  assert.match(build.waiting ?? '', /^queued again after attempt 1 was lost \(its worker sent no heartbeat for 5.0 s \(frozen or cut off\); retry 1 of 1\): no worker is connected$/)
  const other = new StubLink(fooBar, 1)
  s.workerJoined(other)
  s.workerLeft(other, 'its worker disconnected (the connection closed)')
  assert.is(build.status, 'lost')
  assert.match(build.error ?? '', /no retries left \(last: its worker disconnected/)
})

why('a failed attempt names its step; a timed-out one its limit; a worker\'s error becomes the build\'s', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(fooBar, 3)
  s.workerJoined(link)
  const failed = await s.submit(oneStep())
  const timedOut = await s.submit(oneStep({ timeout: 7 }))
  const broken = await s.submit(oneStep())
  s.stepFinished(link, link.attempt(0), 0, 3)
  s.attemptFinished(link, link.attempt(0), 'failed')
  assert.is(failed.attempts[0].reason, 'step 1 exited with 3')
  assert.is(failed.error, undefined, 'an exit code decided it: no error')
  s.attemptFinished(link, link.attempt(1), 'timeout')
  assert.is(timedOut.attempts[0].reason, 'the build ran past its timeout of 7 s')
  s.attemptFinished(link, link.attempt(2), 'failed', [], { error: 'could not keep artifacts: the store is full', warnings: ['skipped x'] })
  assert.is(broken.error, 'could not keep artifacts: the store is full')
  assert.equal(broken.warnings, ['skipped x'])
})

why('cancelling while the worker is away seals the attempt\'s logs at once', async () => {
  const history = new MemoryHistory()
  const first = scheduler({ history }).scheduler
  const link = new StubLink(fooBar, 1)
  first.workerJoined(link)
  const build = await first.submit(oneStep())
  const logs = build.attempts[0].logs
  first.stop()
  // A restarted coordinator: the worker has not reconnected (the reclaim window is open).
  const fenced: string[][] = []
  const { scheduler: s } = scheduler({ history, fenceLogs: l => { fenced.push(l) } })
  await s.start()
  const cancelled = await s.cancel(build.id)
  assert.is(cancelled.status, 'cancelled')
  assert.equal(fenced, [logs])
  assert.match(cancelled.attempts[0].reason ?? '', /while its worker was away/)
})

why('cancelling a running build: the worker is told why, and a worker that never seals is sealed after its grace', async () => {
  const fenced: string[][] = []
  const { scheduler: s } = scheduler({ fenceLogs: l => { fenced.push(l) }, cancelSealMarginMs: 50 })
  const link = new StubLink(fooBar, 1)
  s.workerJoined(link)
  const build = await s.submit(oneStep({ killGrace: 0 }))
  await s.cancel(build.id, 'the test')
  assert.equal(link.cancelled, [{ attempt: link.attempt(0), reason: 'cancelled', why: 'cancelled by the test' }])
  assert.is(build.error, 'cancelled by the test')
  await until(() => fenced.length === 1, 'the logs sealed from the coordinator')
  assert.equal(fenced[0], build.attempts[0].logs)
})

why('a cancelled queued build says who cancelled it', async () => {
  const { scheduler: s } = scheduler()
  const build = await s.submit(oneStep())
  await s.cancel(build.id)
  assert.is(build.error, 'cancelled by an API client while queued')
})

waits.run()
ends.run()
why.run()

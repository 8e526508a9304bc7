// The scheduler alone, on builds that run after builds (job `after`, which pipelines fill from `needs`): such a
// build holds no slot until those succeed, then gets their artifacts as inputs; if one does not succeed it ends
// `skipped`, without an attempt, and so does everything after it.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { MemoryHistory, StubLink, finishAttempt, job, rejection, scheduler, stopAll, until } from '../scheduler-fixtures.ts'
import type { Scheduler } from '../../coordinator/scheduler.ts'

function succeedWith (s: Scheduler, link: StubLink, attempt: string, artifacts: string[]): void {
  s.stepFinished(link, attempt, 0, 0)
  s.attemptFinished(link, attempt, 'succeeded', artifacts.map(path => ({ path, cid: 'bafkreiaaaa', size: 1, sha256: '0'.repeat(64) })))
}

const linux = { os: 'linux' }
const oneStep = (extra: Record<string, unknown> = {}): ReturnType<typeof job> => job({ steps: [{ run: 'true' }], ...extra })

const after = suite('scheduler: a build that runs after builds')
after.after.each(stopAll)

after('waits without a slot, then runs with the artifacts of what it ran after placed as inputs', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(linux, 1)
  s.workerJoined(link)
  const a = await s.submit(oneStep({ artifacts: ['lib.a', 'include/z.h'] }), { pipeline: 'p1', jobName: 'build' })
  const b = await s.submit(oneStep({ priority: 10, after: [{ build: a.id }], inputs: { 'include/z.h': 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy' } }), { pipeline: 'p1', jobName: 'test (cc=gcc)' })
  assert.is(b.pipeline, 'p1')
  assert.is(b.jobName, 'test (cc=gcc)')
  assert.equal(link.assigned.map(x => x.build), [a.id], 'B waits though it has the higher priority')
  assert.is(b.waiting, `waiting for build ${a.id} (running)`)
  assert.is(s.capacity().busy, 1)
  succeedWith(s, link, link.attempt(0), ['lib.a', 'include/z.h'])
  assert.equal(link.assigned.map(x => x.build), [a.id, b.id])
  assert.equal(link.assigned[1].job.inputs, {
    'lib.a': `build:${a.id}/lib.a`,
    'include/z.h': 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
  }, 'its own input wins a clash of paths')
  assert.equal(b.job.inputs, { 'include/z.h': 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy' }, 'the recorded job stays as submitted')
})

after('artifacts: false orders the builds without placing anything', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(linux, 1)
  s.workerJoined(link)
  const a = await s.submit(oneStep({ artifacts: ['x'] }))
  const b = await s.submit(oneStep({ after: [{ build: a.id, artifacts: false }] }))
  succeedWith(s, link, link.attempt(0), ['x'])
  assert.equal(link.assigned.map(x => x.build), [a.id, b.id])
  assert.equal(link.assigned[1].job.inputs, {})
})

after('fan-in: a build after two waits for both and gets both their artifacts', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(linux, 2)
  s.workerJoined(link)
  const a = await s.submit(oneStep({ artifacts: ['a.o'] }))
  const b = await s.submit(oneStep({ artifacts: ['b.o'] }))
  const c = await s.submit(oneStep({ after: [{ build: a.id }, { build: b.id }] }))
  succeedWith(s, link, link.attempt(0), ['a.o'])
  assert.is(c.status, 'queued')
  assert.is(c.waiting, `waiting for build ${b.id} (running)`)
  succeedWith(s, link, link.attempt(1), ['b.o'])
  assert.is(c.status, 'running')
  assert.equal(link.assigned[2].job.inputs, { 'a.o': `build:${a.id}/a.o`, 'b.o': `build:${b.id}/b.o` })
})

for (const [how, end] of [
  ['fails', async (s: Scheduler, link: StubLink) => { finishAttempt(s, link, link.attempt(0), 'failed') }],
  ['times out', async (s: Scheduler, link: StubLink) => { finishAttempt(s, link, link.attempt(0), 'timeout') }],
  ['is cancelled', async (s: Scheduler, _link: StubLink, id: string) => { await s.cancel(id) }],
  ['is lost for good', async (s: Scheduler, link: StubLink) => { s.workerLeft(link, 'test: cut off') }]
] as const) {
  after(`what it runs after ${how}: it and everything after it end skipped, with no attempt, naming the cause`, async () => {
    const { scheduler: s, history } = scheduler()
    const link = new StubLink(linux, 1)
    s.workerJoined(link)
    const a = await s.submit(oneStep({ retries: 0 }), { jobName: 'build' })
    const b = await s.submit(oneStep({ after: [{ build: a.id }] }), { jobName: 'test' })
    const c = await s.submit(oneStep({ after: [{ build: b.id }] }), { jobName: 'package' })
    await end(s, link, a.id)
    for (const x of [b, c]) {
      assert.is(x.status, 'skipped', `${x.jobName} skipped`)
      assert.is(x.attempts.length, 0)
      assert.ok(x.finished !== undefined)
    }
    assert.match(b.error ?? '', new RegExp(`^skipped: build \\(build ${a.id}\\), which it runs after, ended ${(await s.get(a.id))?.status}`))
    assert.match(c.error ?? '', new RegExp(`^skipped: test \\(build ${b.id}\\), which it runs after, ended skipped`))
    assert.equal(link.assigned.map(x => x.build), [a.id], 'no slot was taken')
    await until(async () => (await history.get(c.id))?.status === 'skipped', 'the skip saved')
  })
}

after('a failure skips every sibling, even when one of them has builds after it (no sibling slips out to a worker)', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(linux, 2)
  s.workerJoined(link)
  const a = await s.submit(oneStep(), { jobName: 'build' })
  const b = await s.submit(oneStep({ after: [{ build: a.id }] }), { jobName: 'test (cc=gcc)' })
  const c = await s.submit(oneStep({ after: [{ build: a.id }] }), { jobName: 'test (cc=clang)' })
  const d = await s.submit(oneStep({ after: [{ build: b.id }, { build: c.id }] }), { jobName: 'package' })
  finishAttempt(s, link, link.attempt(0), 'failed')
  assert.equal([b, c, d].map(x => x.status), ['skipped', 'skipped', 'skipped'])
  assert.equal(link.assigned.map(x => x.build), [a.id], 'nothing after the failure reached the worker')
})

after('two builds it runs after kept the same path: the one listed later in after wins, whichever ended last', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(linux, 2)
  s.workerJoined(link)
  const a = await s.submit(oneStep())
  const b = await s.submit(oneStep())
  const c = await s.submit(oneStep({ after: [{ build: a.id }, { build: b.id }] }))
  // b ends first, a last: a's report.txt must still lose to b's.
  succeedWith(s, link, link.attempt(1), ['report.txt', 'b-only'])
  succeedWith(s, link, link.attempt(0), ['report.txt', 'a-only'])
  assert.is(c.status, 'running')
  assert.equal(link.assigned[2].job.inputs, { 'report.txt': `build:${b.id}/report.txt`, 'a-only': `build:${a.id}/a-only`, 'b-only': `build:${b.id}/b-only` })
})

after('a build submitted after one that already succeeded gets its artifacts; after one that already failed, it is skipped at once', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(linux, 1)
  s.workerJoined(link)
  const good = await s.submit(oneStep())
  succeedWith(s, link, link.attempt(0), ['out'])
  const bad = await s.submit(oneStep())
  finishAttempt(s, link, link.attempt(1), 'failed')
  const b = await s.submit(oneStep({ after: [{ build: good.id }] }))
  assert.is(b.status, 'running')
  assert.equal(link.assigned[2].job.inputs, { out: `build:${good.id}/out` })
  const c = await s.submit(oneStep({ after: [{ build: good.id }, { build: bad.id }] }))
  assert.is(c.status, 'skipped')
  assert.equal(link.assigned.length, 3)
})

after('an after naming a build the grid never had is refused at submit, naming the entry', async () => {
  const { scheduler: s } = scheduler()
  const err = await rejection(s.submit(oneStep({ after: [{ build: '000000000deadbeef' }] })))
  assert.is(err.name, 'InvalidJobError')
  assert.match(err.message, /^after\.0\.build: there is no build 000000000deadbeef$/)
})

after('a bad after entry is refused by the job schema', () => {
  assert.throws(() => job({ steps: [{ run: 'true' }], after: [{ build: 'not an id!' }] } as any), /after\.0\.build/)
  assert.throws(() => job({ steps: [{ run: 'true' }], after: [{ build: '000000000deadbeef', extra: 1 }] } as any), /after\.0/)
})

after('after a restart a build still waits for what it runs after, then gets its artifacts', async () => {
  const history = new MemoryHistory()
  const first = scheduler({ history }).scheduler
  const a = await first.submit(oneStep({ artifacts: ['out'] }))
  const b = await first.submit(oneStep({ after: [{ build: a.id }] }), { pipeline: 'p9', jobName: 'next' })
  first.stop()
  const { scheduler: s } = scheduler({ history })
  await s.start()
  const link = new StubLink(linux, 1)
  s.workerJoined(link)
  assert.equal(link.assigned.map(x => x.build), [a.id])
  succeedWith(s, link, link.attempt(0), ['out'])
  assert.equal(link.assigned.map(x => x.build), [a.id, b.id])
  assert.equal(link.assigned[1].job.inputs, { out: `build:${a.id}/out` })
  assert.is((await s.get(b.id))?.pipeline, 'p9')
})

after('a build queued again after a lost attempt still gets the artifacts', async () => {
  const { scheduler: s } = scheduler()
  const link = new StubLink(linux, 1)
  s.workerJoined(link)
  const a = await s.submit(oneStep())
  succeedWith(s, link, link.attempt(0), ['out'])
  const b = await s.submit(oneStep({ after: [{ build: a.id }], retries: 1 }))
  s.workerLeft(link, 'test: gone')
  assert.is(b.status, 'queued')
  const again = new StubLink(linux, 1)
  s.workerJoined(again)
  assert.equal(again.assigned[0].job.inputs, { out: `build:${a.id}/out` })
})

after.run()

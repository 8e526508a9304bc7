// Reuse alone: the action key (what is in it and what is not), the index over a store, and the scheduler's
// decision with stub links and a memory history: a second identical build ends at once with the first one's
// outputs and no attempt; a changed input CID, env or step, an output the grid no longer holds, or a build with
// secrets in another scope runs instead.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { StubLink, StubSecrets, job, scheduler, stopAll, stored } from '../scheduler-fixtures.ts'
import type { Scheduler, SchedulerInit } from '../../coordinator/scheduler.ts'
import { ReuseIndex, actionKey, canonicalJson } from '../../coordinator/reuse.ts'
import type { ReuseEntry, ReuseStore } from '../../coordinator/reuse.ts'
import type { Build } from '../../grid/build.ts'
import type { BuildHistory } from '../../coordinator/history.ts'
import { join } from 'node:path'

const CID_A = 'bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
const CID_B = 'bafkreibbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'
const SRC_1 = 'bafkreisrconeaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
const SRC_2 = 'bafkreisrctwoaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'

// --- the action key -------------------------------------------------------------------------------------------

const key = suite('reuse: the action key')

const base = (extra: Record<string, unknown> = {}): ReturnType<typeof job> => job({ steps: [{ run: 'make' }], env: { A: '1', B: '2' }, src: SRC_1, artifacts: ['out/*'], ...extra })
const keyOf = (extra: Record<string, unknown> = {}, inputs: Record<string, string> = {}, more: { source?: { repo: string | null, ref?: string }, untrusted?: boolean } = {}): string =>
  actionKey({ job: base(extra), inputs, ...more })

key('is 64 hex digits, and the same for the same job whatever the order of its keys', () => {
  const k = keyOf()
  assert.match(k, /^[0-9a-f]{64}$/)
  assert.is(keyOf({ env: { B: '2', A: '1' } }), k)
  assert.is(actionKey({ job: base(), inputs: { y: CID_B, x: CID_A } }), actionKey({ job: base(), inputs: { x: CID_A, y: CID_B } }))
  assert.is(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] }), '{"a":[{"c":3,"d":2}],"b":1}')
})

key('changes with what decides the outputs: steps, env, requires, src, input CIDs, globs, secrets, limits', () => {
  const k = keyOf()
  const changed: Array<[string, string]> = [
    ['a step', keyOf({ steps: [{ run: 'make all' }] })],
    ['a step\'s name', keyOf({ steps: [{ name: 'compile', run: 'make' }] })],
    ['env', keyOf({ env: { A: '1', B: '3' } })],
    ['requires', keyOf({ requires: { arch: 'arm64' } })],
    ['src', keyOf({ src: SRC_2 })],
    ['an input CID', keyOf({}, { 'dep.tar': CID_A })],
    ['an input path', keyOf({}, { 'other.tar': CID_A })],
    ['artifact globs', keyOf({ artifacts: ['out/**'] })],
    ['secret names', keyOf({ secrets: ['TOKEN'] })],
    ['timeout', keyOf({ timeout: 61 })],
    ['logLimit', keyOf({ logLimit: 1000 })],
    ['killGrace', keyOf({ killGrace: 3 })],
    ['trust', keyOf({}, {}, { untrusted: true })]
  ]
  const seen = new Set([k])
  for (const [what, other] of changed) {
    assert.is.not(other, k, `${what} changes the key`)
    seen.add(other)
  }
  assert.is(seen.size, changed.length + 1, 'every change gives a key of its own')
})

key('does not change with name, priority, retries, reuse, or (without secrets) the source', () => {
  const k = keyOf()
  assert.is(keyOf({ name: 'another name' }), k)
  assert.is(keyOf({ priority: 7 }), k)
  assert.is(keyOf({ retries: 3 }), k)
  assert.is(keyOf({ reuse: true }), k)
  assert.is(keyOf({}, {}, { source: { repo: 'r1', ref: 'refs/heads/main' } }), k)
})

key('with secrets, includes the scope: another repository or ref is another key', () => {
  const s = { secrets: ['TOKEN'] }
  const main = keyOf(s, {}, { source: { repo: 'r1', ref: 'refs/heads/main' } })
  assert.is(keyOf(s, {}, { source: { repo: 'r1', ref: 'refs/heads/main' } }), main)
  assert.is.not(keyOf(s, {}, { source: { repo: 'r2', ref: 'refs/heads/main' } }), main)
  assert.is.not(keyOf(s, {}, { source: { repo: 'r1', ref: 'refs/heads/dev' } }), main)
  assert.is.not(keyOf(s, {}, {}), main)
})

key.run()

// --- the index -----------------------------------------------------------------------------------------------

const index = suite('reuse: the index over a store')

class MemoryStore implements ReuseStore {
  readonly map = new Map<string, ReuseEntry>()
  failing = false
  async * iterator (): AsyncIterable<[string, ReuseEntry]> { yield * this.map.entries() }
  async put (key: string, value: ReuseEntry): Promise<void> {
    if (this.failing) throw new Error('disk full')
    this.map.set(key, structuredClone(value))
  }

  async del (key: string): Promise<void> { this.map.delete(key) }
}

const entry = (build: string): ReuseEntry => ({ build, artifacts: [{ path: 'o', cid: CID_A, size: 1, sha256: '0'.repeat(64) }], steps: [{ name: 's', exitCode: 0, log: 'l', logCid: CID_B }] })

index('keeps the newest entry per key, persists it in order, and loads it back', async () => {
  const store = new MemoryStore()
  const one = new ReuseIndex({ store })
  await one.load()
  one.record('k1', entry('b1'))
  one.record('k1', entry('b2'))
  one.record('k2', entry('b3'))
  one.forget('k2')
  assert.is(one.get('k1')?.build, 'b2')
  assert.is(one.get('k2'), undefined)
  await one.flushed()
  const two = new ReuseIndex({ store })
  await two.load()
  assert.is(two.size, 1)
  assert.equal(two.get('k1'), entry('b2'))
})

index('past its limit it forgets the least recently used entry (a hit counts as a use), in the store too', async () => {
  const store = new MemoryStore()
  const small = new ReuseIndex({ store, maxEntries: 2 })
  small.record('k1', entry('b1'))
  small.record('k2', entry('b2'))
  assert.ok(small.get('k1') !== undefined, 'k1 used: k2 is now the least recently used')
  small.record('k3', entry('b3'))
  assert.is(small.size, 2)
  assert.is(small.get('k2'), undefined)
  assert.ok(small.get('k1') !== undefined && small.get('k3') !== undefined)
  await small.flushed()
  assert.equal([...store.map.keys()].sort(), ['k1', 'k3'])
  store.map.set('k4', entry('b4'))
  const reloaded = new ReuseIndex({ store, maxEntries: 2 })
  await reloaded.load()
  await reloaded.flushed()
  assert.is(reloaded.size, 2)
  assert.is(store.map.size, 2, 'what did not fit is dropped from the store')
})

index('a write that fails is logged, and the entry stays in memory', async () => {
  const store = new MemoryStore()
  store.failing = true
  const lines: string[] = []
  const one = new ReuseIndex({ store, log: l => lines.push(l) })
  one.record('k', entry('b'))
  await one.flushed()
  assert.is(one.get('k')?.build, 'b')
  assert.is(store.map.size, 0)
  assert.match(lines.join('\n'), /could not save a reuse entry: disk full/)
})

index.run()

// --- the scheduler's decision ---------------------------------------------------------------------------------

const decide = suite('reuse: the scheduler')
decide.after.each(stopAll)

interface Setup { s: Scheduler, history?: BuildHistory, link: StubLink, held: Set<string>, reuse: ReuseIndex, log: string[] }

function setup (init: Partial<SchedulerInit> = {}, trusted = false): Setup {
  const held = new Set<string>()
  const log: string[] = []
  const reuse = new ReuseIndex()
  const { scheduler: s, history } = scheduler({ reuse: { index: reuse, held: cid => held.has(cid) }, log: l => log.push(l), ...init })
  const link = new StubLink({ os: 'linux' }, 1)
  link.trusted = trusted
  s.workerJoined(link)
  return { s, history, link, held, reuse, log }
}

let cidCount = 0
/** A fresh CID-looking name (the grid never checks one here). */
function cid (): string {
  return `bafkrei${String(++cidCount).replace(/[0-9]/g, d => 'abcdefghij'[Number(d)]).padStart(52, 'x')}`
}

/** The worker runs the n-th assignment to success: every step exits 0 with a sealed log; `artifacts` (path → CID) kept. */
function runs (x: Setup, n: number, artifacts: Record<string, string> = { 'out/app': cid() }): void {
  const assignment = x.link.assigned[n]
  assert.ok(assignment !== undefined, `assignment #${n} exists`)
  for (let i = 0; i < assignment.job.steps.length; i++) {
    const logCid = cid()
    x.held.add(logCid)
    x.s.stepFinished(x.link, assignment.attempt, i, 0, logCid)
  }
  for (const c of Object.values(artifacts)) x.held.add(c)
  x.s.attemptFinished(x.link, assignment.attempt, 'succeeded', Object.entries(artifacts).map(([path, c]) => ({ path, cid: c, size: 3, sha256: '1'.repeat(64), mode: 420 })))
}

const reusing = (extra: Record<string, unknown> = {}): ReturnType<typeof job> => job({ src: SRC_1, artifacts: ['out/*'], reuse: true, ...extra })

decide('a second identical build ends succeeded at once: reused, same artifacts and logs, no attempt, no slot', async () => {
  const x = setup()
  const first = await x.s.submit(reusing())
  runs(x, 0)
  assert.is(first.status, 'succeeded')
  const second = await x.s.submit(reusing({ name: 'renamed', priority: 3 }))
  assert.is(x.link.assigned.length, 1, 'no worker was given the second build')
  assert.is(second.status, 'succeeded')
  assert.is(second.reused, first.id)
  assert.equal(second.attempts, [])
  assert.equal(second.artifacts, first.artifacts)
  assert.equal(second.steps.map(s => [s.name, s.exitCode, s.log, s.logCid]), first.steps.map(s => [s.name, s.exitCode, s.log, s.logCid]))
  assert.ok(second.started !== undefined && second.started === second.finished, 'started = finished')
  assert.is(second.error, undefined)
  const saved = await stored(x.history!, second.id)
  assert.is(saved.reused, first.id, 'history has the mark')
  assert.is(x.s.capacity().busy, 0)
  assert.match(x.log.join('\n'), new RegExp(`build ${second.id}: reused the outputs of build ${first.id}`))
})

decide('a reused build takes no slot: it ends while the only worker is busy, or with no worker at all', async () => {
  const x = setup()
  const first = await x.s.submit(reusing())
  runs(x, 0)
  const blocker = await x.s.submit(job({ steps: [{ run: 'sleep 100' }] }))
  assert.is(blocker.status, 'running')
  const second = await x.s.submit(reusing())
  assert.is(second.reused, first.id)
  x.s.workerLeft(x.link)
  const third = await x.s.submit(reusing())
  assert.is(third.reused, first.id)
})

decide('without reuse: true, or without a reuse index, an identical build runs', async () => {
  const x = setup()
  await x.s.submit(reusing())
  runs(x, 0)
  const plain = await x.s.submit(reusing({ reuse: false }))
  assert.is(plain.status, 'running')
  assert.is(plain.reused, undefined)

  const { scheduler: bare } = scheduler()
  const link = new StubLink({ os: 'linux' }, 1)
  bare.workerJoined(link)
  const a = await bare.submit(reusing())
  bare.attemptFinished(link, link.attempt(0), 'succeeded')
  assert.is(a.status, 'succeeded')
  const b = await bare.submit(reusing())
  assert.is(b.status, 'running', 'a scheduler given no index reuses nothing')
})

decide('a changed env, step, src or input CID runs; the unchanged job is still reused after', async () => {
  const x = setup()
  const first = await x.s.submit(reusing({ inputs: { 'dep.tar': CID_A } }))
  runs(x, 0)
  const variants = [
    reusing({ inputs: { 'dep.tar': CID_B } }),
    reusing({ inputs: { 'dep.tar': CID_A }, env: { CFLAGS: '-O2' } }),
    reusing({ inputs: { 'dep.tar': CID_A }, steps: [{ run: 'make' }, { run: 'make check' }] }),
    reusing({ inputs: { 'dep.tar': CID_A }, src: SRC_2 })
  ]
  for (const [i, v] of variants.entries()) {
    const b = await x.s.submit(v)
    assert.is(b.status, 'running', `variant ${i} runs`)
    assert.is(b.reused, undefined)
    runs(x, i + 1)
  }
  const again = await x.s.submit(reusing({ inputs: { 'dep.tar': CID_A } }))
  assert.is(again.reused, first.id)
})

decide('the newest succeeded build with the key is the one reused; a failed one is never recorded', async () => {
  const x = setup()
  await x.s.submit(reusing({ steps: [{ run: 'flaky' }] }))
  x.s.stepFinished(x.link, x.link.attempt(0), 0, 1, cid())
  x.s.attemptFinished(x.link, x.link.attempt(0), 'failed')
  const second = await x.s.submit(reusing({ steps: [{ run: 'flaky' }] }))
  assert.is(second.status, 'running', 'a failed build is not reused')
  runs(x, 1)
  const third = await x.s.submit(reusing({ steps: [{ run: 'flaky' }] }))
  assert.is(third.reused, second.id)
})

decide('an artifact or a log the grid no longer holds: the build runs, and the entry is forgotten', async () => {
  const x = setup()
  const art = cid()
  await x.s.submit(reusing())
  runs(x, 0, { 'out/app': art })
  x.held.delete(art)
  const second = await x.s.submit(reusing())
  assert.is(second.status, 'running')
  assert.is(second.reused, undefined)
  assert.match(x.log.join('\n'), /no longer all held: it runs/)
  x.held.add(art)
  runs(x, 1, { 'out/app': art })
  const third = await x.s.submit(reusing())
  assert.is(third.reused, second.id, 'the build that ran again is the new entry')

  const logCid = third.steps[0].logCid
  assert.ok(logCid !== undefined)
  x.held.delete(logCid)
  const fourth = await x.s.submit(reusing())
  assert.is(fourth.status, 'running', 'a step log gone: it runs')
})

decide('a pipeline-like chain: a build fed another build\'s artifact is reused when that artifact\'s CID is the same', async () => {
  const x = setup()
  const lib = cid()
  const a1 = await x.s.submit(reusing({ name: 'lib' }))
  const b1 = await x.s.submit(reusing({ name: 'app', after: [{ build: a1.id }] }))
  const c1 = await x.s.submit(reusing({ name: 'test', inputs: { 'app.bin': `build:${b1.id}/out/app` } }))
  runs(x, 0, { 'out/lib': lib })
  runs(x, 1, { 'out/app': cid() })
  runs(x, 2, { 'out/report': cid() })
  assert.equal([a1, b1, c1].map(b => b.status), ['succeeded', 'succeeded', 'succeeded'])

  // The second run: new build ids in `after` and `inputs`, the same bytes: every build is reused.
  const a2 = await x.s.submit(reusing({ name: 'lib' }))
  const b2 = await x.s.submit(reusing({ name: 'app', after: [{ build: a2.id }] }))
  const c2 = await x.s.submit(reusing({ name: 'test', inputs: { 'app.bin': `build:${b2.id}/out/app` } }))
  assert.equal([a2, b2, c2].map(b => b.reused), [a1.id, b1.id, c1.id])
  assert.is(x.link.assigned.length, 3, 'no new assignment')

  // A third run whose first build makes other bytes (its source changed): every build after it runs.
  const a3 = await x.s.submit(reusing({ name: 'lib', src: SRC_2 }))
  const b3 = await x.s.submit(reusing({ name: 'app', after: [{ build: a3.id }] }))
  assert.is(a3.status, 'running')
  runs(x, 3, { 'out/lib': cid() })
  assert.is(b3.status, 'running', 'its input\'s CID changed')
  assert.is(b3.reused, undefined)
  // Its `after` artifact went into the assignment as usual.
  assert.equal(x.link.assigned[4].job.inputs, { 'out/lib': `build:${a3.id}/out/lib` })
})

decide('a chain whose first build is reused: what follows is reused too, in order, with no worker connected', async () => {
  const x = setup()
  const a1 = await x.s.submit(reusing({ name: 'lib' }))
  const b1 = await x.s.submit(reusing({ name: 'app', after: [{ build: a1.id }] }))
  runs(x, 0)
  runs(x, 1)
  x.s.workerLeft(x.link)
  const a2 = await x.s.submit(reusing({ name: 'lib' }))
  const b2 = await x.s.submit(reusing({ name: 'app', after: [{ build: a2.id }] }))
  assert.is(a2.reused, a1.id)
  assert.is(b2.reused, b1.id)
})

decide('a build with secrets is reused in its own scope, never in another repository\'s or ref\'s', async () => {
  const secrets = new StubSecrets({ TOKEN: { value: 'v-123456', repos: ['r1', 'r2'] } })
  const x = setup({ secrets }, true)
  const scope = { source: { repo: 'r1', ref: 'refs/heads/main' } }
  const first = await x.s.submit(reusing({ secrets: ['TOKEN'] }), scope)
  runs(x, 0)
  const same = await x.s.submit(reusing({ secrets: ['TOKEN'] }), scope)
  assert.is(same.reused, first.id)
  const otherRepo = await x.s.submit(reusing({ secrets: ['TOKEN'] }), { source: { repo: 'r2', ref: 'refs/heads/main' } })
  assert.is(otherRepo.status, 'running')
  assert.is(otherRepo.reused, undefined)
  runs(x, 1)
  const otherRef = await x.s.submit(reusing({ secrets: ['TOKEN'] }), { source: { repo: 'r1', ref: 'refs/heads/evil' } })
  assert.is(otherRef.reused, undefined)
  assert.is(otherRef.status, 'running')
})

decide('a build whose secret was taken out of its scope since is not reused: it fails saying so', async () => {
  const secrets = new StubSecrets({ TOKEN: { value: 'v-123456', repos: ['r1'] } })
  const x = setup({ secrets }, true)
  const scope = { source: { repo: 'r1', ref: 'refs/heads/main' } }
  await x.s.submit(reusing({ secrets: ['TOKEN'] }), scope)
  runs(x, 0)
  const blocker = await x.s.submit(job({ steps: [{ run: 'sleep 100' }] }))
  assert.is(blocker.status, 'running')
  // Queued behind a busy worker? No: reuse needs no slot, so take the secret away before submitting.
  secrets.secrets.set('TOKEN', { value: 'v-123456', repos: ['r9'] })
  const later = await x.s.submit(reusing({ secrets: ['TOKEN'] }), scope)
  assert.is(later.status, 'failed')
  assert.is(later.reused, undefined)
  assert.match(later.error ?? '', /secret TOKEN is not available/)
})

decide('an untrusted member\'s build never takes a trusted build\'s outputs, nor the reverse', async () => {
  const x = setup()
  const trusted = await x.s.submit(reusing())
  runs(x, 0)
  const untrusted = await x.s.submit(reusing(), { untrusted: true })
  assert.is(untrusted.status, 'running')
  assert.is(untrusted.reused, undefined)
  runs(x, 1)
  const again = await x.s.submit(reusing())
  assert.is(again.reused, trusted.id)
})

decide('after a restart, the index loaded from its store decides at once for a queued build', async () => {
  const store = new Map<string, ReuseEntry>()
  const persistent: ReuseStore = {
    async * iterator () { yield * store.entries() },
    async put (k, v) { store.set(k, structuredClone(v)) },
    async del (k) { store.delete(k) }
  }
  const held = new Set<string>()
  const first = new ReuseIndex({ store: persistent })
  const { scheduler: s, history } = scheduler({ reuse: { index: first, held: c => held.has(c) } })
  const link = new StubLink({ os: 'linux' }, 1)
  s.workerJoined(link)
  const x: Setup = { s, link, held, reuse: first, log: [] }
  const original = await s.submit(reusing())
  runs(x, 0)
  await first.flushed()
  s.stop()

  const { scheduler: again } = scheduler({ history, reuse: { index: new ReuseIndex({ store: persistent }), held: c => held.has(c) } })
  await again.start()
  const b: Build = await again.submit(reusing())
  assert.is(b.reused, original.id)
})

decide.run()

// --- the pipeline graph's reuse marks -------------------------------------------------------------------------

// The browser's module, loaded as the page loads it (a path the type checker does not follow).
const { buildsToAskReuse, reusedLabel } = await import(join(import.meta.dirname, '../../web/ui/pipeline-graph.js'))
const graph = suite('reuse: the pipeline graph\'s marks')

graph('asks about each succeeded build once, and never about one queued, running, failed or without a build', () => {
  const pipeline = {
    jobs: [
      { build: 'b1', status: 'succeeded' },
      { build: 'b2', status: 'running' },
      { build: 'b3', status: 'succeeded' },
      { build: 'b4', status: 'failed' },
      { status: 'queued' },
      { build: 'b5', status: 'succeeded' }
    ]
  }
  assert.equal(buildsToAskReuse(pipeline, new Map()), ['b1', 'b3', 'b5'])
  assert.equal(buildsToAskReuse(pipeline, new Map<string, string | null>([['b1', null], ['b3', 'b0']])), ['b5'])
  assert.equal(buildsToAskReuse({}, new Map()), [])
  assert.is(reusedLabel('01ABC'), 'reused from 01ABC')
})

graph.run()

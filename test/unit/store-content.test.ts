// What the coordinator does with the stores' content reports, alone: a stub build history (live builds and the
// eviction marks it is asked to set), stub copy and drop functions, and a list of live stores the test changes.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { StoreContent } from '../../coordinator/store-content.ts'
import type { ContentHistory } from '../../coordinator/store-content.ts'
import { FINISHED } from '../../grid/build.ts'
import type { ArtifactRecord, Build, BuildStatus } from '../../grid/build.ts'
import { parseJob } from '../../grid/job.ts'
import type { JobInput } from '../../grid/job.ts'
import { placeFor } from '../../grid/placement.ts'
import type { PeerAddress } from '../../net/dial.ts'
import { waitFor } from '../wait.ts'

/** A CID-shaped name the job schema takes: `b` and lowercase letters. */
const cid = (label: string): string => 'b' + label.replace(/[^a-z]/g, '').padEnd(40, 'a')

const address = (peer: string): PeerAddress => ({ peer, addrs: [] })

let buildCount = 0
function build (job: Partial<JobInput>, status: BuildStatus = 'queued', artifacts: ArtifactRecord[] = []): Build {
  return {
    id: `0mwv1se3l${String(++buildCount).padStart(4, '0')}abcd`,
    status,
    job: parseJob({ steps: [{ run: 'make' }], ...job }),
    created: new Date().toISOString(),
    attempts: [],
    steps: [],
    artifacts
  }
}

/** Build history as far as StoreContent reads it, recording the eviction marks it sets and clears. */
class StubHistory implements ContentHistory {
  readonly builds = new Map<string, Build>()
  readonly marked: Array<{ cid: string, at: string }> = []
  readonly cleared: string[] = []
  activeReads = 0

  add (...builds: Build[]): void {
    for (const b of builds) this.builds.set(b.id, b)
  }

  async active (): Promise<Build[]> {
    this.activeReads++
    return [...this.builds.values()].filter(b => !FINISHED.has(b.status))
  }

  async get (id: string): Promise<Build | undefined> {
    return this.builds.get(id)
  }

  async markEvicted (cid: string, at: string): Promise<void> {
    this.marked.push({ cid, at })
  }

  async clearEvicted (cid: string): Promise<void> {
    this.cleared.push(cid)
  }
}

interface Harness {
  content: StoreContent
  history: StubHistory
  live: PeerAddress[]
  copies: Array<{ from: string, root: string, to: string }>
  drops: Array<{ store: string, roots: string[] }>
  logged: string[]
}

const made: StoreContent[] = []

function harness (peers: string[], replicas = 2): Harness {
  const h: Harness = { content: undefined as unknown as StoreContent, history: new StubHistory(), live: peers.map(address), copies: [], drops: [], logged: [] }
  h.content = new StoreContent({
    stores: () => h.live,
    replicas,
    history: h.history,
    copy: async (from, root, to) => { h.copies.push({ from, root, to: to.peer }) },
    drop: (store, roots) => { h.drops.push({ store, roots }) },
    log: line => h.logged.push(line)
  })
  made.push(h.content)
  return h
}

const stopAll = (): void => { for (const c of made.splice(0)) c.stop() }

const report = (cids: string[]) => cids.map(c => ({ cid: c, size: 100, bytes: 120 }))

// ---------------------------------------------------------------- reports and eviction marks

const reports = suite('store content: reports and eviction marks')
reports.after.each(stopAll)

reports('content new to the grid clears its eviction mark; content already known does not', async () => {
  const h = harness(['A', 'B'])
  h.content.held('A', report([cid('one')]))
  h.content.held('B', report([cid('one'), cid('two')]))
  await waitFor('the marks to be cleared', () => h.history.cleared.length === 2)
  assert.equal(h.history.cleared, [cid('one'), cid('two')])
  assert.equal(h.content.index.holders(cid('one')).sort(), ['A', 'B'])
})

reports('the last copy evicted is marked in history, with the time and a log line', async () => {
  const h = harness(['A', 'B'])
  h.content.held('A', report([cid('kept'), cid('last')]))
  h.content.held('B', report([cid('kept')]))
  const before = Date.now()
  h.content.dropped('A', [cid('kept'), cid('last')], true)
  await waitFor('the mark', () => h.history.marked.length === 1)
  assert.is(h.history.marked[0].cid, cid('last'), 'only the root no store holds any more')
  const at = Date.parse(h.history.marked[0].at)
  assert.ok(at >= before - 1000 && at <= Date.now(), 'an ISO time of now')
  assert.equal(h.logged, [`the last copy of ${cid('last')} was evicted`])
  assert.not.ok(h.content.index.has(cid('last')))
})

reports('a last copy dropped for another reason than room is not marked evicted', async () => {
  const h = harness(['A'])
  h.content.held('A', report([cid('moved')]))
  h.content.dropped('A', [cid('moved')], false)
  // An eviction after it, of another root, is marked: the first was not skipped for lack of time.
  h.content.held('A', report([cid('other')]))
  h.content.dropped('A', [cid('other')], true)
  await waitFor('the second mark', () => h.history.marked.length === 1)
  assert.equal(h.history.marked.map(m => m.cid), [cid('other')])
  assert.ok(h.content.index.has(cid('moved')), 'unavailable, still known')
})

reports('content put again after its last copy was evicted is no longer marked evicted', async () => {
  const h = harness(['A'])
  h.content.held('A', report([cid('again')]))
  h.content.dropped('A', [cid('again')], true)
  h.content.held('A', report([cid('again')]))
  await waitFor('the clear after the put', () => h.history.cleared.length === 2)
  assert.equal(h.history.cleared, [cid('again'), cid('again')])
  assert.not.ok(h.content.index.isCold(cid('again')), 'forgotten when evicted, so new again')
})

// ---------------------------------------------------------------- eviction consent

const consent = suite('store content: eviction consent')
consent.after.each(stopAll)

consent('roots no live build needs may all go, and count as gone at once', async () => {
  const h = harness(['A', 'B'])
  h.content.held('A', report([cid('x'), cid('y')]))
  h.content.held('B', report([cid('y')]))
  assert.equal(await h.content.consent('A', [cid('x'), cid('y')]), [cid('x'), cid('y')])
  assert.equal(h.content.index.rootsOf('A'), [])
  assert.equal(h.content.index.holders(cid('y')), ['B'])
  await waitFor('the mark of the last copy', () => h.history.marked.length === 1)
  assert.is(h.history.marked[0].cid, cid('x'))
})

consent('the last copy of a queued build\'s src is refused; a copy with another live holder may go', async () => {
  const h = harness(['A', 'B'])
  h.history.add(build({ src: cid('src') }))
  h.content.held('A', report([cid('src'), cid('shared')]))
  h.history.add(build({ src: cid('shared') }, 'running'))
  h.content.held('B', report([cid('shared')]))
  assert.equal(await h.content.consent('A', [cid('src'), cid('shared')]), [cid('shared')])
  assert.equal(h.content.index.holders(cid('src')), ['A'], 'the refused root is still A\'s')
  assert.not.ok(h.content.index.isCold(cid('src')))
})

consent('inputs by CID and the artifacts `build:` inputs name are needed too; a missing build or artifact is not', async () => {
  const h = harness(['A'])
  const maker = build({}, 'succeeded', [{ path: 'out/app', cid: cid('artifact'), size: 1, sha256: '00' }])
  h.history.add(maker)
  h.history.add(build({
    inputs: {
      'lib.tar': cid('input'),
      app: `build:${maker.id}/out/app`,
      nothing: `build:${maker.id}/out/none`,
      ghost: 'build:0mwv1se3l9999abcd/file'
    }
  }))
  const all = [cid('input'), cid('artifact'), cid('loose')]
  h.content.held('A', report(all))
  assert.equal(await h.content.consent('A', all), [cid('loose')])
})

consent('another holder counts only while it is a live store', async () => {
  const h = harness(['A', 'B'])
  h.history.add(build({ src: cid('src') }))
  h.content.held('A', report([cid('src')]))
  h.content.held('B', report([cid('src')]))
  // B is away (its session ended) though the index has not heard it left yet.
  h.live = [address('A')]
  assert.equal(await h.content.consent('A', [cid('src')]), [])
  assert.equal(h.content.index.holders(cid('src')).sort(), ['A', 'B'])
})

consent('two stores asking together about the last two copies of a needed root: only one may evict', async () => {
  const h = harness(['A', 'B'])
  h.history.add(build({ src: cid('src') }))
  h.content.held('A', report([cid('src')]))
  h.content.held('B', report([cid('src')]))
  const [a, b] = await Promise.all([h.content.consent('A', [cid('src')]), h.content.consent('B', [cid('src')])])
  assert.equal([a, b].map(allowed => allowed.length).sort(), [0, 1], `one of them: A ${JSON.stringify(a)}, B ${JSON.stringify(b)}`)
  assert.is(h.content.index.holders(cid('src')).length, 1, 'one copy stays')
})

consent('asks arriving together read build history once', async () => {
  const h = harness(['A'])
  h.history.add(build({ src: cid('src') }))
  h.content.held('A', report([cid('src'), cid('other')]))
  const answers = await Promise.all([h.content.consent('A', [cid('src')]), h.content.consent('A', [cid('other')])])
  assert.equal(answers, [[], [cid('other')]])
  assert.is(h.history.activeReads, 1)
})

consent('a root a store asks about but never reported is allowed and changes nothing else', async () => {
  const h = harness(['A', 'B'])
  h.content.held('B', report([cid('bs')]))
  assert.equal(await h.content.consent('A', [cid('unknown')]), [cid('unknown')])
  assert.not.ok(h.content.index.has(cid('unknown')))
  assert.equal(h.content.index.holders(cid('bs')), ['B'])
})

// ---------------------------------------------------------------- state and repair

const state = suite('store content: state and repair')
state.after.each(stopAll)

state('state reports replicas, the summary, each live store\'s usage and roots', () => {
  const h = harness(['A', 'B'])
  h.content.usage('A', { bytes: 500, maxBytes: 1000, roots: 2, received: 10, served: 20 })
  h.content.usage('gone', { bytes: 1, roots: 1, received: 1, served: 1 })
  h.content.held('A', report([cid('one'), cid('two')]))
  h.content.held('B', report([cid('two')]))
  h.content.held('gone', report([cid('three')]))
  const s = h.content.state()
  assert.is(s.replicas, 2)
  assert.equal({ roots: s.roots, underReplicated: s.underReplicated, unavailable: s.unavailable, cold: s.cold }, { roots: 3, underReplicated: 1, unavailable: 1, cold: 0 })
  assert.is(s.repairing, 3, 'the three reported roots wait for repair to look at them')
  assert.equal(s.stores, [
    { peer: 'A', bytes: 500, maxBytes: 1000, roots: 2, received: 10, served: 20 },
    { peer: 'B', bytes: 0, roots: 1, received: 0, served: 0 }
  ], 'a store with no usage report has zeros and no maxBytes; a store that is not live is not listed')
})

state('a store leaving: its roots are copied to the store that takes its place', async () => {
  const h = harness(['A', 'B', 'C'])
  const root = cid('moving')
  const placed = placeFor(root, h.live, 2).map(s => s.peer)
  const third = ['A', 'B', 'C'].find(p => !placed.includes(p))!
  h.content.held(placed[0], report([root]))
  h.content.held(placed[1], report([root]))
  h.live = h.live.filter(s => s.peer !== placed[0])
  h.content.left(placed[0])
  await waitFor('the copy', () => h.copies.length === 1)
  assert.equal(h.copies, [{ from: placed[1], root, to: third }])
  await waitFor('repair to settle', () => h.content.state().repairing === 0)
  assert.equal(h.content.index.holders(root).sort(), [placed[1], third].sort())
  assert.equal(h.drops, [])
})

state('a store joining: the roots placed on it are copied to it and dropped from the store it displaces', async () => {
  const h = harness(['A', 'B'])
  // A root that D, once it joins, is placed for.
  let root = ''
  for (let i = 0; root === ''; i++) {
    const c = cid(`join${'abcdefghijklmnopqrstuvwxyz'[i % 26]}${'abcdefghijklmnopqrstuvwxyz'[Math.floor(i / 26) % 26]}`)
    if (placeFor(c, [address('A'), address('B'), address('D')], 2).some(s => s.peer === 'D')) root = c
  }
  h.content.held('A', report([root]))
  h.content.held('B', report([root]))
  await waitFor('repair to look at the reports', () => h.content.state().repairing === 0)
  h.live = [...h.live, address('D')]
  h.content.joined('D')
  await waitFor('the copy to D', () => h.copies.length === 1)
  assert.is(h.copies[0].to, 'D')
  await waitFor('the drop', () => h.drops.length === 1)
  const displaced = ['A', 'B'].find(p => !placeFor(root, h.live, 2).some(s => s.peer === p))!
  assert.equal(h.drops, [{ store: displaced, roots: [root] }])
})

reports.run()
consent.run()
state.run()

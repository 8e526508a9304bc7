// The coordinator's index of content alone: which store holds which root, as the stores report it. No stream, no
// disk: reports in, answers out (holders, the replication summary, whether a store is placed for a root).
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { ContentIndex } from '../../coordinator/content-index.ts'
import type { RootReport } from '../../coordinator/content-index.ts'
import { placeFor } from '../../grid/placement.ts'
import type { PeerAddress } from '../../net/dial.ts'

const stores = (...peers: string[]): PeerAddress[] => peers.map(peer => ({ peer, addrs: [] }))
const root = (cid: string, size = 10, bytes = size + 100): RootReport => ({ cid, size, bytes })

// ---------------------------------------------------------------- held, dropped, left

const reports = suite('content index: reports')

reports('a held root lists its holders; a second store adds to them; the first report sets its size', () => {
  const index = new ContentIndex()
  assert.not.ok(index.has('r1'))
  assert.equal(index.holders('r1'), [])
  index.held('A', [root('r1', 10, 110)])
  index.held('B', [root('r1', 99, 999)])
  assert.ok(index.has('r1'))
  assert.equal(index.holders('r1').sort(), ['A', 'B'])
  assert.is(index.sizeOf('r1'), 110, 'the bytes on a store come from the first report')
  assert.equal(index.rootsOf('A'), ['r1'])
  assert.equal(index.rootsOf('B'), ['r1'])
  assert.is(index.sizeOf('unknown'), 0)
})

reports('a repeated report of the same root changes nothing', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1')])
  index.held('A', [root('r1'), root('r1')])
  assert.equal(index.holders('r1'), ['A'])
  assert.equal(index.rootsOf('A'), ['r1'])
  assert.equal([...index.all()], ['r1'])
})

reports('an empty report registers the store with no roots', () => {
  const index = new ContentIndex()
  index.held('A', [])
  assert.equal(index.rootsOf('A'), [])
  assert.equal([...index.all()], [])
})

reports('a drop that is not an eviction leaves the root known (unavailable) when its last holder drops it', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1')])
  index.held('B', [root('r1')])
  assert.equal(index.dropped('A', ['r1'], false), [], 'B still holds it')
  assert.equal(index.holders('r1'), ['B'])
  assert.equal(index.rootsOf('A'), [])
  assert.equal(index.dropped('B', ['r1'], false), ['r1'], 'no store holds it any more')
  assert.ok(index.has('r1'), 'kept: it may come back')
  assert.not.ok(index.isCold('r1'))
  assert.equal(index.holders('r1'), [])
})

reports('an eviction makes the root cold; evicting its last copy forgets it', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1')])
  index.held('B', [root('r1')])
  assert.equal(index.dropped('A', ['r1'], true), [])
  assert.ok(index.isCold('r1'), 'one copy evicted: the rest is cold, not copied back')
  assert.equal(index.holders('r1'), ['B'])
  assert.equal(index.dropped('B', ['r1'], true), ['r1'])
  assert.not.ok(index.has('r1'))
  assert.not.ok(index.isCold('r1'))
  assert.equal([...index.all()], [])
})

reports('dropping a root nobody reported, or from a store that never reported, is ignored', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1')])
  assert.equal(index.dropped('A', ['nope'], true), [])
  assert.equal(index.dropped('Z', ['nope'], false), [])
  assert.equal(index.holders('r1'), ['A'])
  assert.equal([...index.all()], ['r1'])
})

reports('a store leaving returns what it held; its roots stay known, its usage goes', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1'), root('r2')])
  index.held('B', [root('r2')])
  index.usage.set('A', { bytes: 5, roots: 2, received: 0, served: 0 })
  assert.equal(index.storeLeft('A').sort(), ['r1', 'r2'])
  assert.equal(index.holders('r1'), [])
  assert.equal(index.holders('r2'), ['B'])
  assert.ok(index.has('r1'), 'r1 is unavailable, not forgotten: A may come back with it')
  assert.equal(index.rootsOf('A'), [])
  assert.not.ok(index.usage.has('A'))
  assert.equal(index.storeLeft('A'), [], 'leaving twice returns nothing')
  assert.equal(index.storeLeft('never-seen'), [])
})

reports('a store that comes back and reports again holds its roots again', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1')])
  index.storeLeft('A')
  index.held('A', [root('r1')])
  assert.equal(index.holders('r1'), ['A'])
  assert.equal(index.rootsOf('A'), ['r1'])
})

// ---------------------------------------------------------------- summary

const summary = suite('content index: replication summary')

summary('counts roots under-replicated, unavailable and cold against the live stores', () => {
  const index = new ContentIndex()
  index.held('A', [root('full'), root('under'), root('cold')])
  index.held('B', [root('full'), root('cold'), root('away')])
  index.held('C', [root('away')])
  index.dropped('B', ['cold'], true)
  // C is not live: 'away' is held only by B (live) and C (gone); then B drops it.
  index.dropped('B', ['away'], false)
  index.held('C', [root('only-on-c')])
  assert.equal(index.summary(stores('A', 'B'), 2), { roots: 5, underReplicated: 1, unavailable: 2, cold: 1 })
})

summary('a holder that is not among the live stores does not count', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1')])
  index.held('gone', [root('r1')])
  assert.equal(index.summary(stores('A', 'B'), 2), { roots: 1, underReplicated: 1, unavailable: 0, cold: 0 })
  assert.equal(index.summary(stores('B'), 2), { roots: 1, underReplicated: 0, unavailable: 1, cold: 0 })
})

summary('with fewer stores than replicas, all the stores are enough', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1')])
  assert.equal(index.summary(stores('A'), 3), { roots: 1, underReplicated: 0, unavailable: 0, cold: 0 })
  assert.equal(index.summary(stores('A', 'B'), 3), { roots: 1, underReplicated: 1, unavailable: 0, cold: 0 })
})

summary('with no live store every root is unavailable', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1'), root('r2')])
  assert.equal(index.summary([], 2), { roots: 2, underReplicated: 0, unavailable: 2, cold: 0 })
})

summary('a cold root with one live copy is cold, not under-replicated; with none it is unavailable', () => {
  const index = new ContentIndex()
  index.held('A', [root('r1')])
  index.held('B', [root('r1')])
  index.dropped('A', ['r1'], true)
  assert.equal(index.summary(stores('A', 'B'), 2), { roots: 1, underReplicated: 0, unavailable: 0, cold: 1 })
  assert.equal(index.summary(stores('A'), 2), { roots: 1, underReplicated: 0, unavailable: 1, cold: 0 })
})

// ---------------------------------------------------------------- placement

const placement = suite('content index: placement')

placement('placedOn agrees with placeFor for every store', () => {
  const index = new ContentIndex()
  const live = stores('A', 'B', 'C', 'D')
  for (let i = 0; i < 20; i++) {
    const cid = `root-${i}`
    const placed = placeFor(cid, live, 2).map(s => s.peer)
    assert.is(placed.length, 2)
    for (const s of live) assert.is(index.placedOn(cid, s.peer, live, 2), placed.includes(s.peer), `${cid} on ${s.peer}`)
  }
})

placement('a store not among the stores is placed for nothing', () => {
  const index = new ContentIndex()
  assert.not.ok(index.placedOn('r1', 'Z', stores('A', 'B'), 2))
  assert.ok(index.placedOn('r1', 'A', stores('A'), 2))
})

reports.run()
summary.run()
placement.run()

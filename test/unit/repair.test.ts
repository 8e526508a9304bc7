// Repair alone: a content index filled by hand, stub copy and drop functions that record what repair asks of the
// stores, and a list of live stores the test changes. No stream, no store process.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { ContentIndex } from '../../coordinator/content-index.ts'
import { REPAIR_ATTEMPTS, REPAIR_COPIES_AT_ONCE, REPAIR_RETRY_MS, Repair } from '../../coordinator/repair.ts'
import { placeFor } from '../../grid/placement.ts'
import type { PeerAddress } from '../../net/dial.ts'
import { waitFor } from '../wait.ts'

const address = (peer: string): PeerAddress => ({ peer, addrs: [`/ip4/10.0.0.1/tcp/4001/p2p/${peer}`] })

interface Copy {
  from: string
  root: string
  to: PeerAddress
  resolve: () => void
  reject: (err: Error) => void
}

interface Harness {
  index: ContentIndex
  repair: Repair
  live: PeerAddress[]
  copies: Copy[]
  drops: Array<{ store: string, roots: string[] }>
  logged: string[]
  /** Copies in flight now, and the most there ever were. */
  running: { now: number, most: number }
  /** From now on copies finish at once; those waiting are finished too. */
  finishAll: () => void
}

const repairs: Repair[] = []

/**
 * A repair over `peers` with `replicas`. Copies finish at once unless `manual` (then the test resolves or rejects
 * each); `fail` makes the copy reject. Every copy notes the root on its target only through repair itself.
 */
function harness (peers: string[], replicas: number, options: { manual?: boolean, fail?: (copy: Copy) => boolean } = {}): Harness {
  const h: Harness = {
    index: new ContentIndex(),
    repair: undefined as unknown as Repair,
    live: peers.map(address),
    copies: [],
    drops: [],
    logged: [],
    running: { now: 0, most: 0 },
    finishAll: () => {
      options.manual = false
      for (const copy of h.copies) copy.resolve()
    }
  }
  h.repair = new Repair({
    index: h.index,
    stores: () => h.live,
    replicas,
    settleMs: 1,
    log: line => h.logged.push(line),
    drop: (store, roots) => { h.drops.push({ store, roots }) },
    copy: async (from, root, to) => {
      const done = Promise.withResolvers<void>()
      const copy: Copy = { from, root, to, resolve: done.resolve, reject: done.reject }
      h.copies.push(copy)
      h.running.now++
      h.running.most = Math.max(h.running.most, h.running.now)
      if (options.fail?.(copy) === true) done.reject(new Error('the target refused a block'))
      else if (options.manual !== true) done.resolve()
      try {
        await done.promise
      } finally {
        h.running.now--
      }
    }
  })
  repairs.push(h.repair)
  return h
}

/** Roots named `prefix-N`, each reported held on the stores placeFor picks among `peers`. */
function placedRoots (h: Harness, prefix: string, count: number, peers: string[], replicas: number): string[] {
  const roots = Array.from({ length: count }, (_, i) => `${prefix}-${i}`)
  for (const cid of roots) {
    for (const store of placeFor(cid, peers.map(address), replicas)) h.index.held(store.peer, [{ cid, size: 1000, bytes: 1100 }])
  }
  return roots
}

/** A root and the two stores among `peers` it is placed on, best first; any other store is surplus. */
function placedRoot (peers: string[], cid = 'root'): { cid: string, placed: string[] } {
  return { cid, placed: placeFor(cid, peers.map(address), 2).map(s => s.peer) }
}

const settled = async (h: Harness, what: string): Promise<void> => {
  await waitFor(what, () => h.repair.pending === 0 && h.running.now === 0)
}

const stopAll = (): void => { for (const r of repairs.splice(0)) r.stop() }

// ---------------------------------------------------------------- under-replication

const under = suite('repair: under-replicated roots')
under.after.each(stopAll)

under('a root on one of its two stores is copied from there to the other, once', async () => {
  const h = harness(['A', 'B', 'C'], 2)
  const { cid, placed } = placedRoot(['A', 'B', 'C'])
  h.index.held(placed[1], [{ cid, size: 10, bytes: 110 }])
  h.repair.mark([cid])
  assert.is(h.repair.pending, 1)
  await waitFor('the copy', () => h.copies.length === 1)
  await settled(h, 'repair to settle')
  assert.is(h.copies.length, 1)
  assert.is(h.copies[0].from, placed[1])
  assert.is(h.copies[0].root, cid)
  assert.equal(h.copies[0].to, address(placed[0]), 'the target is given with its addresses')
  assert.equal(h.index.holders(cid).sort(), [...placed].sort(), 'the target is noted as a holder before it reports')
  assert.equal(h.drops, [])
  assert.is(h.repair.copies, 1)
  assert.is(h.repair.copiedBytes, 110, 'bytes on a store, not content bytes')
})

under('a root on all its placed stores is left alone', async () => {
  const h = harness(['A', 'B', 'C'], 2)
  const roots = placedRoots(h, 'whole', 10, ['A', 'B', 'C'], 2)
  h.repair.mark(roots)
  await settled(h, 'repair to look at every root')
  assert.equal(h.copies, [])
  assert.equal(h.drops, [])
})

under('with three replicas and one holder, the two copies go one after the other, each from the placed holder', async () => {
  const h = harness(['A', 'B', 'C', 'D'], 3, { manual: true })
  const cid = 'three-copies'
  const placed = placeFor(cid, h.live, 3).map(s => s.peer)
  h.index.held(placed[2], [{ cid, size: 5, bytes: 5 }])
  h.repair.mark([cid])
  await waitFor('the first copy', () => h.copies.length === 1)
  assert.is(h.copies[0].to.peer, placed[0])
  assert.is(h.repair.pending, 1, 'the second copy waits for the first')
  h.copies[0].resolve()
  await waitFor('the second copy', () => h.copies.length === 2)
  assert.is(h.copies[1].to.peer, placed[1])
  assert.ok([placed[0], placed[2]].includes(h.copies[1].from))
  h.copies[1].resolve()
  await settled(h, 'repair to settle')
  assert.is(h.running.most, 1, 'one copy of a root at a time')
  assert.equal(h.index.holders(cid).sort(), [...placed].sort())
})

under('a root whose only copies are on stores that are away is not copied (there is no source)', async () => {
  const h = harness(['A', 'B', 'C'], 2)
  h.index.held('gone', [{ cid: 'stranded', size: 1, bytes: 1 }])
  const { cid } = placedRoot(['A', 'B', 'C'], 'warm')
  h.index.held(placeFor(cid, h.live, 2)[0].peer, [{ cid, size: 1, bytes: 1 }])
  h.repair.mark(['stranded', cid, 'never-reported'])
  await settled(h, 'repair to look at all three')
  assert.equal(h.copies.map(c => c.root), [cid], 'only the root with a live holder is copied')
})

under('a cold root (a copy of it was evicted) is not copied back, nor is its surplus dropped', async () => {
  const h = harness(['A', 'B', 'C'], 2)
  const cold = placedRoot(['A', 'B', 'C'], 'cold')
  const surplus = ['A', 'B', 'C'].find(p => !cold.placed.includes(p))!
  h.index.held(cold.placed[0], [{ cid: cold.cid, size: 1, bytes: 1 }])
  h.index.held(surplus, [{ cid: cold.cid, size: 1, bytes: 1 }])
  h.index.held(cold.placed[1], [{ cid: cold.cid, size: 1, bytes: 1 }])
  h.index.dropped(cold.placed[1], [cold.cid], true)
  const warm = placedRoot(['A', 'B', 'C'], 'warm')
  h.index.held(warm.placed[0], [{ cid: warm.cid, size: 1, bytes: 1 }])
  h.repair.mark([cold.cid, warm.cid])
  await settled(h, 'repair to look at both')
  assert.equal(h.copies.map(c => c.root), [warm.cid])
  assert.equal(h.drops, [])
  assert.equal(h.index.holders(cold.cid).sort(), [cold.placed[0], surplus].sort())
})

under('with fewer stores than replicas, the root goes to every store and no further', async () => {
  const h = harness(['A', 'B'], 3)
  h.index.held('A', [{ cid: 'r', size: 1, bytes: 1 }])
  h.repair.mark(['r'])
  await settled(h, 'repair to settle')
  assert.equal(h.copies.map(c => `${c.from}->${c.to.peer}`), ['A->B'])
})

// ---------------------------------------------------------------- surplus copies

const surplus = suite('repair: surplus copies')
surplus.after.each(stopAll)

surplus('a root held only off its placement is copied to both placed stores, then dropped where it was', async () => {
  const h = harness(['A', 'B', 'C'], 2, { manual: true })
  const { cid, placed } = placedRoot(['A', 'B', 'C'])
  const off = ['A', 'B', 'C'].find(p => !placed.includes(p))!
  h.index.held(off, [{ cid, size: 1, bytes: 1 }])
  h.repair.mark([cid])
  await waitFor('the first copy', () => h.copies.length === 1)
  assert.equal([h.copies[0].from, h.copies[0].to.peer], [off, placed[0]])
  h.copies[0].resolve()
  await waitFor('the second copy', () => h.copies.length === 2)
  assert.is(h.copies[1].to.peer, placed[1])
  assert.is(h.copies[1].from, placed[0], 'a placed holder is the source once there is one')
  assert.equal(h.drops, [], 'nothing is dropped while a placed store still lacks the root')
  h.copies[1].resolve()
  await settled(h, 'the drop')
  assert.equal(h.drops, [{ store: off, roots: [cid] }])
  assert.equal(h.index.holders(cid).sort(), [...placed].sort())
  assert.equal(h.index.rootsOf(off), [])
})

surplus('the source is a placed holder even when an unplaced one reported first', async () => {
  const h = harness(['A', 'B', 'C'], 2)
  const { cid, placed } = placedRoot(['A', 'B', 'C'])
  const off = ['A', 'B', 'C'].find(p => !placed.includes(p))!
  h.index.held(off, [{ cid, size: 1, bytes: 1 }])
  h.index.held(placed[1], [{ cid, size: 1, bytes: 1 }])
  assert.is(h.index.holders(cid)[0], off)
  h.repair.mark([cid])
  await settled(h, 'the copy and the drop')
  assert.equal(h.copies.map(c => `${c.from}->${c.to.peer}`), [`${placed[1]}->${placed[0]}`])
  assert.equal(h.drops, [{ store: off, roots: [cid] }])
})

surplus('a root on its placed stores and one more is dropped from the extra store without a copy', async () => {
  const h = harness(['A', 'B', 'C'], 2)
  const { cid, placed } = placedRoot(['A', 'B', 'C'])
  const off = ['A', 'B', 'C'].find(p => !placed.includes(p))!
  for (const s of ['A', 'B', 'C']) h.index.held(s, [{ cid, size: 1, bytes: 1 }])
  h.repair.mark([cid])
  await settled(h, 'the drop')
  assert.equal(h.copies, [])
  assert.equal(h.drops, [{ store: off, roots: [cid] }])
})

// ---------------------------------------------------------------- stores joining and leaving

const membership = suite('repair: stores joining and leaving')
membership.after.each(stopAll)

membership('a store leaving: only the roots it held are copied, each to its new placed store from the survivor', async () => {
  const before = ['A', 'B', 'C', 'D']
  const h = harness(before, 2)
  const roots = placedRoots(h, 'r', 60, before, 2)
  const onC = roots.filter(cid => h.index.holders(cid).includes('C'))
  assert.ok(onC.length > 5 && onC.length < 60, `C holds a share (${onC.length})`)
  h.live = h.live.filter(s => s.peer !== 'C')
  h.repair.storeLeft('C')
  await settled(h, 'repair after C left')
  assert.equal(h.copies.map(c => c.root).sort(), [...onC].sort(), 'exactly the roots C held, once each')
  for (const copy of h.copies) {
    const placed = placeFor(copy.root, h.live, 2).map(s => s.peer)
    assert.ok(placed.includes(copy.from), `${copy.root} copied from a store that stays placed`)
    assert.ok(placed.includes(copy.to.peer) && copy.to.peer !== copy.from)
  }
  assert.equal(h.drops, [])
  for (const cid of roots) assert.equal(h.index.holders(cid).sort(), placeFor(cid, h.live, 2).map(s => s.peer).sort(), `${cid} on its placement`)
})

membership('a store joining: only its share moves to it, and each moved root is dropped from the store it displaced', async () => {
  const before = ['A', 'B', 'C']
  const h = harness(before, 2)
  const roots = placedRoots(h, 'r', 60, before, 2)
  h.live = [...h.live, address('D')]
  const share = roots.filter(cid => placeFor(cid, h.live, 2).some(s => s.peer === 'D'))
  assert.ok(share.length > 5 && share.length < 60, `D is placed for a share (${share.length})`)
  await h.repair.storeJoined('D')
  await settled(h, 'repair after D joined')
  assert.equal(h.copies.map(c => c.root).sort(), [...share].sort(), 'only D\'s share is copied')
  assert.ok(h.copies.every(c => c.to.peer === 'D'), 'every copy goes to D')
  assert.equal(h.drops.map(d => d.roots[0]).sort(), [...share].sort(), 'one drop per moved root')
  for (const drop of h.drops) {
    const cid = drop.roots[0]
    assert.is(drop.roots.length, 1)
    assert.ok(!placeFor(cid, h.live, 2).some(s => s.peer === drop.store), `${cid} dropped from ${drop.store}, no longer placed there`)
  }
  for (const cid of roots) assert.equal(h.index.holders(cid).sort(), placeFor(cid, h.live, 2).map(s => s.peer).sort(), `${cid} on its placement`)
})

membership('a store joining that is placed for no known root leaves repair idle', async () => {
  const h = harness(['A'], 1)
  h.index.held('A', [{ cid: 'r', size: 1, bytes: 1 }])
  // Only 'A' is live: the joining store is not among the stores yet, so it is placed for nothing.
  await h.repair.storeJoined('Z')
  assert.is(h.repair.pending, 0)
  assert.equal(h.copies, [])
})

// ---------------------------------------------------------------- pacing and failures

const pacing = suite('repair: pacing and failures')
pacing.after.each(stopAll)

pacing(`copies run ${REPAIR_COPIES_AT_ONCE} at a time; the rest wait for one to finish`, async () => {
  const h = harness(['A', 'B'], 2, { manual: true })
  const roots = Array.from({ length: 10 }, (_, i) => `many-${i}`)
  for (const cid of roots) h.index.held('A', [{ cid, size: 1, bytes: 1 }])
  h.repair.mark(roots)
  await waitFor('the first copies', () => h.copies.length === REPAIR_COPIES_AT_ONCE)
  assert.is(h.repair.pending, 10, 'four copying, six waiting')
  h.copies[0].resolve()
  await waitFor('one more copy', () => h.copies.length === REPAIR_COPIES_AT_ONCE + 1)
  assert.is(h.running.now, REPAIR_COPIES_AT_ONCE)
  h.finishAll()
  await settled(h, 'all copies')
  assert.is(h.running.most, REPAIR_COPIES_AT_ONCE)
  assert.equal(h.copies.map(c => c.root).sort(), [...roots].sort(), 'each root copied once')
  assert.is(h.repair.copies, 10)
})

pacing('a failed copy is logged, counted as no copy, and tried again after the retry delay', async () => {
  let failures = 1
  const h = harness(['A', 'B'], 2, { fail: () => failures-- > 0 })
  h.index.held('A', [{ cid: 'flaky', size: 1, bytes: 7 }])
  h.repair.mark(['flaky'])
  await waitFor('the failed copy', () => h.logged.length === 1)
  assert.match(h.logged[0], `copying flaky from A to B failed (1 of ${REPAIR_ATTEMPTS}): the target refused a block`)
  assert.is(h.repair.copies, 0)
  assert.equal(h.index.holders('flaky'), ['A'], 'a failed copy notes no holder')
  await waitFor('the retry', () => h.copies.length === 2, REPAIR_RETRY_MS + 5_000)
  await settled(h, 'the retry to finish')
  assert.is(h.repair.copies, 1)
  assert.is(h.repair.copiedBytes, 7)
  assert.equal(h.index.holders('flaky').sort(), ['A', 'B'])
})

pacing('a stopped repair copies nothing, while another marked after it does', async () => {
  const stopped = harness(['A', 'B'], 2)
  const running = harness(['A', 'B'], 2)
  for (const h of [stopped, running]) h.index.held('A', [{ cid: 'r', size: 1, bytes: 1 }])
  stopped.repair.mark(['r'])
  stopped.repair.stop()
  // Marked after the stopped one, with the same settle delay: its copy comes after the other's would have.
  running.repair.mark(['r'])
  await settled(running, 'the running repair')
  assert.is(running.copies.length, 1)
  assert.equal(stopped.copies, [])
  assert.is(stopped.repair.pending, 1, 'the mark is kept, never looked at')
})

under.run()
surplus.run()
membership.run()
pacing.run()

// Repair: keep every root on the stores placement.ts says should hold it. Only roots a change touches are looked
// at: those the leaving store held, those whose placement now includes a joining store (one hash per root, in
// memory, no store is scanned), and those a store reports held or dropped. A surviving holder copies a root to a
// store that lacks it (store to store, only the blocks the target lacks, checked by the target, paced by the
// source's REPAIR_BYTES_PER_SECOND); once the placed stores all hold it, a copy on a store it is no longer placed
// on is dropped, so adding a store moves only its share of the content.
import { placeFor } from '../grid/placement.ts'
import type { PeerAddress } from '../net/dial.ts'
import type { ContentIndex } from './content-index.ts'

/** Copies in flight across the grid: a few at a time, so repair never crowds out builds. */
export const REPAIR_COPIES_AT_ONCE = 4
/** Changes are gathered this long before repair looks at them: a store's summary arrives in several reports. */
export const REPAIR_SETTLE_MS = 500
/** A failed copy is tried again after this long, up to REPAIR_ATTEMPTS times, then left until the next change. */
export const REPAIR_RETRY_MS = 5_000
export const REPAIR_ATTEMPTS = 5
/** Roots checked per turn of the event loop when a store joins. */
const JOIN_SCAN_CHUNK = 2_000

export interface RepairInit {
  index: ContentIndex
  /** The live stores. */
  stores: () => PeerAddress[]
  replicas: number
  /** Have store `from` copy `root` to `to`; resolves once `to` acknowledged all of it. */
  copy: (from: string, root: string, to: PeerAddress) => Promise<void>
  /** Tell a store to drop copies it is no longer placed for. */
  drop: (store: string, roots: string[]) => void
  settleMs?: number
  log?: (line: string) => void
}

export class Repair {
  private readonly init: RepairInit
  private readonly dirty = new Set<string>()
  private readonly inflight = new Map<string, string>()
  private readonly failures = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  /** Copies done and their bytes, since the coordinator started. */
  copies = 0
  copiedBytes = 0

  constructor (init: RepairInit) {
    this.init = init
  }

  /** Roots waiting to be looked at or being copied. */
  get pending (): number {
    return this.dirty.size + this.inflight.size
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  mark (roots: Iterable<string>): void {
    for (const root of roots) this.dirty.add(root)
    this.schedule()
  }

  /** A store joined: the roots whose placement now includes it (about replicas/stores of them) need a look. */
  async storeJoined (peer: string): Promise<void> {
    let n = 0
    const found: string[] = []
    for (const cid of [...this.init.index.all()]) {
      if (this.init.index.placedOn(cid, peer, this.init.stores(), this.init.replicas)) found.push(cid)
      if (++n % JOIN_SCAN_CHUNK === 0) await new Promise(resolve => setImmediate(resolve))
    }
    this.mark(found)
  }

  storeLeft (peer: string): void {
    this.mark(this.init.index.storeLeft(peer))
  }

  private schedule (): void {
    if (this.timer !== undefined || this.stopped || this.dirty.size === 0) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.run()
    }, this.init.settleMs ?? REPAIR_SETTLE_MS)
  }

  private run (): void {
    for (const cid of this.dirty) {
      if (this.inflight.size >= REPAIR_COPIES_AT_ONCE) break
      this.dirty.delete(cid)
      if (!this.inflight.has(cid)) this.plan(cid)
    }
    // What is left waits for a copy to finish (which schedules again).
  }

  private plan (cid: string): void {
    const { index, replicas } = this.init
    const stores = this.init.stores()
    const live = new Set(stores.map(s => s.peer))
    const holders = index.holders(cid).filter(h => live.has(h))
    if (holders.length === 0) return
    const placed = placeFor(cid, stores, replicas)
    const lacking = placed.filter(p => !holders.includes(p.peer))
    if (lacking.length > 0) {
      if (index.isCold(cid)) return
      const target = lacking[0]
      // A placed holder first: it is the copy that stays.
      const source = holders.find(h => placed.some(p => p.peer === h)) ?? holders[0]
      this.inflight.set(cid, target.peer)
      const bytes = index.sizeOf(cid)
      this.init.copy(source, cid, target).then(() => {
        this.copies++
        this.copiedBytes += bytes
        this.failures.delete(cid)
        // The target reports it too; noting it now saves copying it twice if that report comes late.
        if (index.has(cid)) index.held(target.peer, [{ cid, size: 0, bytes }])
        this.dirty.add(cid)
      }, (err: any) => {
        const failures = (this.failures.get(cid) ?? 0) + 1
        this.failures.set(cid, failures)
        this.init.log?.(`repair: copying ${cid} from ${source} to ${target.peer} failed (${failures} of ${REPAIR_ATTEMPTS}): ${err.message}`)
        if (failures < REPAIR_ATTEMPTS) setTimeout(() => { this.mark([cid]) }, REPAIR_RETRY_MS).unref()
        else this.failures.delete(cid)
      }).finally(() => {
        this.inflight.delete(cid)
        this.schedule()
      })
      return
    }
    for (const surplus of holders.filter(h => !placed.some(p => p.peer === h))) {
      index.dropped(surplus, [cid], false)
      this.init.drop(surplus, [cid])
    }
  }
}

// The coordinator's view of content: which store holds which root (a whole piece of content, see
// artifact-store/root-catalog.ts), kept in memory from what stores report (a summary when they join, then each
// root held or dropped as it happens). Nothing here touches a stream or a disk: store-content.ts feeds it,
// repair.ts and /api/capacity read it. Stores are never scanned to answer a question.
import { placeFor } from '../grid/placement.ts'
import type { PeerAddress } from '../net/dial.ts'

export interface RootReport {
  cid: string
  /** Content bytes. */
  size: number
  /** Bytes it takes on a store (blocks and manifest). */
  bytes: number
}

interface IndexedRoot {
  size: number
  bytes: number
  holders: Set<string>
  /**
   * A store evicted a copy for room: the content is cold, and is not copied back to other stores (that would make
   * full stores evict each other's old content in turn). It lives on where it is until those copies go too.
   */
  cold: boolean
}

export interface StoreUsage {
  bytes: number
  maxBytes?: number
  roots: number
  /** Block bytes the store took in and served since it started. */
  received: number
  served: number
}

export interface ReplicationSummary {
  roots: number
  /** Roots on fewer live stores than they should be (replicas, or all stores if fewer), not counting cold ones. */
  underReplicated: number
  /** Roots no live store holds now (their stores are away). */
  unavailable: number
  cold: number
}

export class ContentIndex {
  private readonly roots = new Map<string, IndexedRoot>()
  private readonly byStore = new Map<string, Set<string>>()
  readonly usage = new Map<string, StoreUsage>()

  held (store: string, reports: RootReport[]): void {
    let mine = this.byStore.get(store)
    if (mine === undefined) this.byStore.set(store, mine = new Set())
    for (const report of reports) {
      let root = this.roots.get(report.cid)
      if (root === undefined) this.roots.set(report.cid, root = { size: report.size, bytes: report.bytes, holders: new Set(), cold: false })
      root.holders.add(store)
      mine.add(report.cid)
    }
  }

  /** A store no longer holds these roots; returns those no store holds any more. */
  dropped (store: string, cids: string[], evicted: boolean): string[] {
    const gone: string[] = []
    const mine = this.byStore.get(store)
    for (const cid of cids) {
      mine?.delete(cid)
      const root = this.roots.get(cid)
      if (root === undefined) continue
      root.holders.delete(store)
      if (evicted) root.cold = true
      if (root.holders.size === 0) {
        gone.push(cid)
        if (evicted) this.roots.delete(cid)
      }
    }
    return gone
  }

  /** A store left: it holds nothing as far as the grid can tell. Returns the roots it held (for repair). */
  storeLeft (store: string): string[] {
    const mine = [...this.byStore.get(store) ?? []]
    this.byStore.delete(store)
    this.usage.delete(store)
    for (const cid of mine) this.roots.get(cid)?.holders.delete(store)
    return mine
  }

  holders (cid: string): string[] {
    return [...this.roots.get(cid)?.holders ?? []]
  }

  has (cid: string): boolean {
    return this.roots.has(cid)
  }

  isCold (cid: string): boolean {
    return this.roots.get(cid)?.cold ?? false
  }

  rootsOf (store: string): string[] {
    return [...this.byStore.get(store) ?? []]
  }

  sizeOf (cid: string): number {
    return this.roots.get(cid)?.bytes ?? 0
  }

  /** Every root, for the one-hash-per-root check when a store joins. */
  * all (): Generator<string> {
    yield * this.roots.keys()
  }

  summary (stores: readonly PeerAddress[], replicas: number): ReplicationSummary {
    const live = new Set(stores.map(s => s.peer))
    const wanted = Math.min(replicas, live.size)
    const summary: ReplicationSummary = { roots: this.roots.size, underReplicated: 0, unavailable: 0, cold: 0 }
    for (const root of this.roots.values()) {
      let n = 0
      for (const h of root.holders) if (live.has(h)) n++
      if (n === 0) summary.unavailable++
      else if (root.cold) summary.cold++
      else if (n < wanted) summary.underReplicated++
    }
    return summary
  }

  /** Whether `store` is among the stores `cid` should be on. */
  placedOn (cid: string, store: string, stores: readonly PeerAddress[], replicas: number): boolean {
    return placeFor(cid, stores, replicas).some(s => s.peer === store)
  }
}

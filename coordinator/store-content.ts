// What the coordinator does with the stores' reports about content: keeps the index (content-index.ts), runs
// repair (repair.ts), answers a full store asking which old roots it may evict, and marks in build history an
// artifact whose last copy was evicted, so a later download is told so rather than given a bare 404.
import type { PeerAddress } from '../net/dial.ts'
import type { Build } from '../grid/build.ts'
import { parseArtifactRef } from '../grid/ids.ts'
import { ContentIndex } from './content-index.ts'
import type { ReplicationSummary, RootReport, StoreUsage } from './content-index.ts'
import { Repair } from './repair.ts'

/** What live builds need is read from history at most this often while stores ask about eviction. */
const NEEDED_CACHE_MS = 1_000

/** The parts of build history this needs (history.ts). */
export interface ContentHistory {
  active (): Promise<Build[]>
  get (id: string): Promise<Build | undefined>
  markEvicted (cid: string, at: string): Promise<void>
  clearEvicted (cid: string): Promise<void>
}

export interface StoreContentInit {
  stores: () => PeerAddress[]
  replicas: number
  history: ContentHistory
  /** Have store `from` copy `root` to `to` (StoreControl.copy). */
  copy: (from: string, root: string, to: PeerAddress) => Promise<void>
  /** Tell a store to drop roots it is no longer placed for (StoreControl.drop). */
  drop: (store: string, roots: string[]) => void
  log?: (line: string) => void
}

export interface StorageState extends ReplicationSummary {
  replicas: number
  /** Roots waiting for repair or being copied now. */
  repairing: number
  /** Each store: block bytes held, its cap, roots, and block bytes pushed to it and fetched from it since it started. */
  stores: Array<{ peer: string, bytes: number, maxBytes?: number, roots: number, received: number, served: number }>
}

export class StoreContent {
  readonly index = new ContentIndex()
  readonly repair: Repair
  private readonly init: StoreContentInit
  private needed: { at: number, cids: Promise<Set<string>> } | undefined

  constructor (init: StoreContentInit) {
    this.init = init
    this.repair = new Repair({ index: this.index, stores: init.stores, replicas: init.replicas, copy: init.copy, drop: init.drop, log: init.log })
  }

  stop (): void {
    this.repair.stop()
  }

  joined (store: string): void {
    this.repair.storeJoined(store).catch(() => {})
  }

  left (store: string): void {
    this.repair.storeLeft(store)
  }

  held (store: string, reports: RootReport[]): void {
    const fresh = reports.filter(r => !this.index.has(r.cid))
    this.index.held(store, reports)
    // Content put again after its last copy was evicted is no longer evicted.
    for (const r of fresh) this.init.history.clearEvicted(r.cid).catch(() => {})
    this.repair.mark(reports.map(r => r.cid))
  }

  dropped (store: string, cids: string[], evicted: boolean): void {
    const gone = this.index.dropped(store, cids, evicted)
    if (evicted) {
      const at = new Date().toISOString()
      for (const cid of gone) {
        this.init.log?.(`the last copy of ${cid} was evicted`)
        this.init.history.markEvicted(cid, at).catch(() => {})
      }
    }
    this.repair.mark(cids)
  }

  usage (store: string, usage: StoreUsage): void {
    this.index.usage.set(store, usage)
  }

  /**
   * Of these roots a full store would evict, the ones it may: all but the last live copy of content a queued or
   * running build needs (its src, its inputs, the artifacts its `build:` inputs name). Those allowed count as
   * gone at once, so two stores asking together cannot both take the last copy.
   */
  async consent (store: string, roots: string[]): Promise<string[]> {
    const needed = await this.neededByLiveBuilds()
    const live = new Set(this.init.stores().map(s => s.peer))
    const allowed = roots.filter(cid => !needed.has(cid) || this.index.holders(cid).some(h => h !== store && live.has(h)))
    this.dropped(store, allowed, true)
    return allowed
  }

  state (): StorageState {
    const stores = this.init.stores()
    return {
      replicas: this.init.replicas,
      ...this.index.summary(stores, this.init.replicas),
      repairing: this.repair.pending,
      stores: stores.map(s => {
        const usage = this.index.usage.get(s.peer)
        return { peer: s.peer, bytes: usage?.bytes ?? 0, ...(usage?.maxBytes !== undefined ? { maxBytes: usage.maxBytes } : {}), roots: this.index.rootsOf(s.peer).length, received: usage?.received ?? 0, served: usage?.served ?? 0 }
      })
    }
  }

  private async neededByLiveBuilds (): Promise<Set<string>> {
    if (this.needed === undefined || Date.now() - this.needed.at > NEEDED_CACHE_MS) {
      this.needed = { at: Date.now(), cids: this.readNeeded() }
    }
    return await this.needed.cids
  }

  private async readNeeded (): Promise<Set<string>> {
    const cids = new Set<string>()
    for (const build of await this.init.history.active()) {
      if (build.job.src !== undefined) cids.add(build.job.src)
      for (const from of Object.values(build.job.inputs ?? {})) {
        const ref = parseArtifactRef(from)
        if (ref === undefined) {
          cids.add(from)
          continue
        }
        const made = await this.init.history.get(ref.build)
        const artifact = made?.artifacts.find(a => a.path === ref.artifact)
        if (artifact !== undefined) cids.add(artifact.cid)
      }
    }
    return cids
  }
}

// The roots a store holds: whole pieces of content, named by a manifest's CID or (for content of one block) by
// that block's CID. A writer names the root once every block is sent (block-put's `root` message); the store
// checks it holds all of it before listing it. Roots are what the coordinator places, repairs and lets a store
// evict: always whole, a root and the blocks only it uses dropped in one LevelDB batch, blocks another root
// still uses kept (a reference per block and root says who uses what).
import type { Level } from 'level'
import type { CID } from 'multiformats/cid'
import type { BatchOperation, Blockstore } from './blockstore.ts'
import { decodeManifest, isManifestCid, parseCid } from '../grid/content.ts'
import { ACCESS_FLUSH_MS, EVICTION_BATCH_ROOTS, EVICTION_HEADROOM, UNCLAIMED_GRACE_MS, UNCLAIMED_SWEEP_MS } from './constants.ts'
import { GridError } from '../net/errors.ts'

export class RootIncompleteError extends GridError {
  name = 'RootIncompleteError'
  readonly status = 409
}

/** A root as the store reports it: content bytes (`size`) and bytes it takes on disk here (blocks + manifest). */
export interface RootEntry {
  cid: string
  size: number
  bytes: number
}

interface KeptRoot {
  size: number
  bytes: number
  /** Last access, ms since the epoch: eviction goes oldest first (LRU). */
  used: number
}

export interface RootChange {
  held?: RootEntry[]
  dropped?: string[]
  /** The drop was an eviction for room (the coordinator marks content whose last copy went this way). */
  evicted?: boolean
}

export class RootCatalog {
  private readonly blocks: Blockstore
  private readonly roots
  private readonly refs
  private readonly kept = new Map<string, KeptRoot>()
  private readonly touched = new Set<string>()
  private readonly listeners = new Set<(change: RootChange) => void>()
  private flushTimer: NodeJS.Timeout | undefined
  private sweepTimer: NodeJS.Timeout | undefined
  /**
   * Which of these roots the grid lets this store evict (the coordinator refuses the last copy of content a
   * live build needs). Without it, nothing is evicted.
   */
  consent: ((roots: string[]) => Promise<string[]>) | undefined

  constructor (db: Level<string, string>, blocks: Blockstore) {
    this.blocks = blocks
    this.roots = db.sublevel<string, KeptRoot>('roots', { valueEncoding: 'json' })
    // `${block}!${root}` for every block a root uses (its manifest included): a block goes when no key names it.
    this.refs = db.sublevel<string, string>('block-refs', {})
  }

  async open (): Promise<void> {
    for await (const [cid, kept] of this.roots.iterator()) this.kept.set(cid, kept)
    this.blocks.makeRoom = async bytes => { await this.evictFor(bytes) }
    this.flushTimer = setInterval(() => { this.flushAccess().catch(() => {}) }, ACCESS_FLUSH_MS)
    this.flushTimer.unref()
    this.sweepTimer = setInterval(() => { this.sweep().catch(() => {}) }, UNCLAIMED_SWEEP_MS)
    this.sweepTimer.unref()
  }

  async close (): Promise<void> {
    clearInterval(this.flushTimer)
    clearInterval(this.sweepTimer)
    this.blocks.makeRoom = undefined
    await this.flushAccess().catch(() => {})
  }

  onChange (listener: (change: RootChange) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  list (): RootEntry[] {
    return [...this.kept].map(([cid, k]) => ({ cid, size: k.size, bytes: k.bytes }))
  }

  has (cid: string): boolean {
    return this.kept.has(cid)
  }

  get count (): number {
    return this.kept.size
  }

  /** A reader asked for this content: it is used, so it goes later under eviction. */
  touch (cid: string): void {
    const kept = this.kept.get(cid)
    if (kept === undefined) return
    kept.used = Date.now()
    this.touched.add(cid)
  }

  /**
   * List `cid` as a root once every block of it is here. Throws RootIncompleteError (changing nothing) if any is
   * missing, BadManifestError if the root block is not a manifest. Listing a root twice is harmless.
   */
  async add (cid: CID): Promise<RootEntry> {
    const key = cid.toString()
    return await this.blocks.exclusive(async () => {
      const root = await this.blocks.get(cid)
      if (root === undefined) throw new RootIncompleteError(`this store does not hold ${key}`)
      const members = new Map<string, number>([[key, root.length]])
      let size = root.length
      if (isManifestCid(cid)) {
        const manifest = decodeManifest(root)
        const lacking = await this.blocks.missing(manifest.blocks.map(b => b.cid))
        if (lacking.length > 0) throw new RootIncompleteError(`this store lacks ${lacking.length} of the ${manifest.blocks.length} blocks of ${key}`)
        for (const block of manifest.blocks) members.set(block.cid.toString(), block.size)
        size = manifest.size
      }
      const bytes = [...members.values()].reduce((n, b) => n + b, 0)
      const already = this.kept.get(key)
      const kept: KeptRoot = { size, bytes, used: Date.now() }
      // Claimed even when the root was already here: a block of it may have rotted and been sent again.
      const operations = await this.blocks.claim([...members.keys()])
      if (already === undefined) {
        operations.push({ type: 'put', key, value: kept, sublevel: this.roots as any })
        for (const [block, blockBytes] of members) operations.push({ type: 'put', key: `${block}!${key}`, value: String(blockBytes), sublevel: this.refs as any })
      }
      if (operations.length > 0) await this.blocks.commit(operations, 0)
      this.kept.set(key, kept)
      this.blocks.unpin([...members.keys()])
      const entry = { cid: key, size, bytes }
      if (already === undefined) this.emit({ held: [entry] })
      return entry
    })
  }

  /**
   * Delete the blocks no root claimed within `graceMs` of being written: an aborted put's, which nothing would
   * ever evict (eviction goes by roots). Runs every UNCLAIMED_SWEEP_MS; returns the bytes freed.
   */
  async sweep (graceMs: number = UNCLAIMED_GRACE_MS): Promise<number> {
    return await this.blocks.sweepUnclaimed(Date.now() - graceMs, async block => {
      return (await this.refs.keys({ gt: `${block}!`, lt: `${block}!\xff`, limit: 1 }).all()).length > 0
    })
  }

  /** Drop whole roots on the coordinator's word (a copy no longer placed here after a move). Returns those dropped. */
  async drop (cids: string[]): Promise<string[]> {
    return await this.blocks.exclusive(async () => (await this.dropNow(cids, false)).dropped)
  }

  /** Evict least recently used roots, with the grid's consent, until `bytes` more fit (plus headroom). */
  async evict (bytes: number): Promise<number> {
    return await this.blocks.exclusive(async () => await this.evictFor(bytes))
  }

  /** Inside the blockstore's lock (its makeRoom hook): evict oldest roots first, a batch at a time. */
  private async evictFor (need: number): Promise<number> {
    const goal = need + Math.floor((this.blocks.maxBytes ?? 0) * EVICTION_HEADROOM)
    const asked = new Set<string>()
    let freed = 0
    while (freed < goal) {
      const oldest = [...this.kept].filter(([cid]) => !asked.has(cid)).sort((a, b) => a[1].used - b[1].used).slice(0, EVICTION_BATCH_ROOTS)
      if (oldest.length === 0) break
      const ask: string[] = []
      let expected = 0
      for (const [cid, kept] of oldest) {
        ask.push(cid)
        asked.add(cid)
        expected += kept.bytes
        if (freed + expected >= goal) break
      }
      const allowed = this.consent === undefined ? [] : await this.consent(ask).catch(() => [])
      const askedNow = new Set(ask)
      freed += (await this.dropNow(allowed.filter(c => askedNow.has(c)), true)).freed
    }
    return freed
  }

  /** The blocks a root uses with their sizes (its manifest included); just the root if its manifest is unreadable. */
  private async members (cid: string): Promise<Map<string, number>> {
    const parsed = parseCid(cid)
    if (!isManifestCid(parsed)) return new Map([[cid, this.kept.get(cid)?.bytes ?? 0]])
    const root = await this.blocks.get(parsed)
    const members = new Map<string, number>([[cid, root?.length ?? 0]])
    if (root !== undefined) {
      try {
        for (const block of decodeManifest(root).blocks) members.set(block.cid.toString(), block.size)
      } catch {}
    }
    return members
  }

  /** Inside the lock: one batch removes the roots, their references, and every block no other root uses. */
  private async dropNow (cids: string[], evicted: boolean): Promise<{ dropped: string[], freed: number }> {
    const dropping = new Set(cids.filter(c => this.kept.has(c)))
    if (dropping.size === 0) return { dropped: [], freed: 0 }
    const operations: BatchOperation[] = []
    const doomed = new Map<string, number>()
    for (const root of dropping) {
      operations.push({ type: 'del', key: root, sublevel: this.roots as any })
      for (const [block, size] of await this.members(root)) {
        operations.push({ type: 'del', key: `${block}!${root}`, sublevel: this.refs as any })
        if (doomed.has(block) || this.blocks.pinned(block)) continue
        // Up to one more user than is being dropped: if any is outside the drop, the block stays.
        const users = await this.refs.keys({ gt: `${block}!`, lt: `${block}!\xff`, limit: dropping.size + 1 }).all()
        if (users.some(k => !dropping.has(k.slice(block.length + 1)))) continue
        doomed.set(block, size)
      }
    }
    const blocks = [...doomed.keys()]
    const present = blocks.length > 0 ? await this.blocks.holds(blocks) : []
    let freed = 0
    const gone: string[] = []
    for (const [i, block] of blocks.entries()) {
      if (!present[i]) continue
      gone.push(block)
      freed += doomed.get(block)!
    }
    await this.blocks.commit(operations, -freed, gone)
    for (const root of dropping) {
      this.kept.delete(root)
      this.touched.delete(root)
    }
    const dropped = [...dropping]
    this.emit({ dropped, evicted })
    return { dropped, freed }
  }


  /** Write last-access times of roots read lately, under the lock so a dropped root is never written back. */
  private async flushAccess (): Promise<void> {
    if (this.touched.size === 0) return
    await this.blocks.exclusive(async () => {
      const operations: BatchOperation[] = []
      for (const cid of this.touched) {
        const kept = this.kept.get(cid)
        if (kept !== undefined) operations.push({ type: 'put', key: cid, value: kept, sublevel: this.roots as any })
      }
      this.touched.clear()
      if (operations.length > 0) await this.blocks.commit(operations, 0)
    })
  }

  private emit (change: RootChange): void {
    for (const listener of this.listeners) listener(change)
  }
}

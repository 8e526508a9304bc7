// Blocks kept in LevelDB by CID (the layout is explained at Blockstore). Every block is checked against its CID
// before it is kept (the sender may lie) and again when it is read (the disk may rot): a bad local copy is dropped,
// never served. Buildbarn checks on read too; IPFS checks what it receives.
import type { Level } from 'level'
import type { AbstractBatchOperation } from 'abstract-level'
import type { CID } from 'multiformats/cid'
import { matches } from '../grid/content.ts'
import { BLOCK_PIN_MS, MIGRATE_BATCH_BLOCKS, UNCLAIMED_SWEEP_BATCH } from './constants.ts'
import { MAX_BLOCK_BYTES } from '../grid/constants.ts'
import { GridError } from '../net/errors.ts'

export class BlockMismatchError extends GridError {
  name = 'BlockMismatchError'
}

/** How checkBlock says a block's bytes are not what its CID names; a store's refusal carries it to the writer. */
const MISMATCH = 'bytes do not hash to'

/** Whether a failure is a block refused for not matching its CID, here (BlockMismatchError) or by a store. */
export function isBlockMismatch (err: Error): boolean {
  return err instanceof BlockMismatchError || err.message.includes(MISMATCH)
}

export class BlockTooLargeError extends GridError {
  name = 'BlockTooLargeError'
  readonly status = 413
}

/** The block itself if its bytes are those its CID names and within the size limit; throws otherwise. */
export function checkBlock (cid: CID, bytes: Uint8Array): { cid: CID, bytes: Uint8Array } {
  if (bytes.length > MAX_BLOCK_BYTES) throw new BlockTooLargeError(`block ${cid} is ${bytes.length} bytes; the limit is ${MAX_BLOCK_BYTES}`)
  if (!matches(cid, bytes)) throw new BlockMismatchError(`${MISMATCH} ${cid}`)
  return { cid, bytes }
}

/** A write the store cannot make room for under its size cap (`grid store --max-size`). */
export class StoreFullError extends GridError {
  name = 'StoreFullError'
  readonly status = 507
}

/** Key of the running total of block bytes, kept in the same batch as every block write and deletion. */
const BYTES_KEY = 'bytes'
/** Key of the last sequence number whose bytes are indexed (see Blockstore). */
const SEQUENCE_KEY = 'sequence'

export type BatchOperation = AbstractBatchOperation<Level<string, string>, string, any>

/** A LevelDB (or a sublevel) that holds block bytes by sequence number: what the blockstore uses of it. */
export interface BlockData {
  get: (key: string) => Promise<Uint8Array | undefined>
  del: (key: string) => Promise<void>
  batch: (operations: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }>) => Promise<void>
  clear: (range: { gte: string }) => Promise<void>
}

/** Sequence numbers as keys that sort as numbers do. */
function sequenceKey (sequence: number): string {
  return sequence.toString(16).padStart(13, '0')
}

/** An index entry: where a block's bytes are, and how many there are. */
interface IndexEntry { sequence: number, size: number }

function encodeEntry (entry: IndexEntry): string {
  return `${sequenceKey(entry.sequence)} ${entry.size}`
}

function decodeEntry (value: string): IndexEntry {
  const [sequence, size] = value.split(' ')
  return { sequence: parseInt(sequence, 16), size: Number(size) }
}

/**
 * Blocks by CID. The bytes live apart from the index, keyed by a sequence number that only grows (`data`: a
 * LevelDB of their own in a store and a worker cache), while a small index (CID to sequence number and size)
 * lives in `db` with the rest of the node's state. Keyed by CID, which is random, every table LevelDB flushed
 * overlapped every other, and its compactions rewrote each block three or four times over: a third of a store's
 * CPU during a put, and more as the store grows. Keyed in write order, tables never overlap, and compaction moves
 * them down the levels without rewriting them. The index is the commit point: bytes are written first, indexed
 * second, and bytes nobody indexed (a crash between the two) are cleared when the store opens.
 */
export class Blockstore {
  private readonly db: Level<string, string>
  private readonly index
  private readonly data: BlockData
  private readonly meta
  /** Sequence numbers whose bytes are to go: written with the index change, cleared once the bytes are gone. */
  private readonly doomed
  /** Blocks written and not yet part of a root (CID to the time written): what sweepUnclaimed looks at. */
  private readonly unclaimed
  private held = 0
  private nextSequence = 0
  private loaded: Promise<void> | undefined
  /** Block writes and deletions run one at a time, so the byte total and the size cap stay exact. */
  private lock: Promise<unknown> = Promise.resolve()
  /** Blocks a writer asked about or sent lately: eviction leaves them alone (see BLOCK_PIN_MS). */
  private readonly pins = new Map<string, number>()
  /** The size cap in bytes (`--max-size`); none when undefined. */
  maxBytes: number | undefined
  /**
   * Called inside the write lock when a write of `bytes` would pass the cap: frees room (root-catalog.ts evicts
   * whole roots). The write is refused with StoreFullError if there is still no room afterwards.
   */
  makeRoom: ((bytes: number) => Promise<void>) | undefined
  /** Bytes taken in and served, since this store started (for /metrics). */
  received = 0
  served = 0

  /** `data` holds the bytes; without it they go in a sublevel of `db` (right, but compacted as CIDs were). */
  constructor (db: Level<string, string>, data?: BlockData) {
    this.db = db
    this.index = db.sublevel<string, string>('block-index', {})
    this.data = data ?? db.sublevel<string, Uint8Array>('block-data', { valueEncoding: 'view' })
    this.meta = db.sublevel<string, string>('block-meta', {})
    this.doomed = db.sublevel<string, string>('block-doomed', {})
    this.unclaimed = db.sublevel<string, string>('block-unclaimed', {})
  }

  /** Bytes of blocks held. A store made before the total was kept counts once, from the index. */
  async bytesHeld (): Promise<number> {
    await this.load()
    return this.held
  }

  /** The byte total as last loaded or changed (0 before the first write or bytesHeld()). */
  get bytes (): number {
    return this.held
  }

  private async load (): Promise<void> {
    this.loaded ??= (async () => {
      await this.migrate()
      const sequence = await this.meta.get(SEQUENCE_KEY)
      this.nextSequence = sequence === undefined ? 0 : Number(sequence) + 1
      // Bytes written past the last indexed ones belong to a write cut short: nobody can name them.
      await this.data.clear({ gte: sequenceKey(this.nextSequence) })
      await this.clearDoomed()
      const kept = await this.meta.get(BYTES_KEY)
      if (kept !== undefined) {
        this.held = Number(kept)
        return
      }
      let total = 0
      for await (const value of this.index.values()) total += decodeEntry(value).size
      this.held = total
      await this.meta.put(BYTES_KEY, String(total))
    })()
    await this.loaded
  }

  /** A store written before bytes and index were apart kept the bytes under their CIDs: move them, a batch at a time. */
  private async migrate (): Promise<void> {
    const old = this.db.sublevel<string, Uint8Array>('blocks', { valueEncoding: 'view' })
    while (true) {
      const batch = await old.iterator({ limit: MIGRATE_BATCH_BLOCKS }).all()
      if (batch.length === 0) return
      const sequence = Number(await this.meta.get(SEQUENCE_KEY) ?? -1) + 1
      await this.data.batch(batch.map(([, bytes], i) => ({ type: 'put' as const, key: sequenceKey(sequence + i), value: bytes })))
      await this.db.batch([
        ...batch.map(([cid, bytes], i) => ({ type: 'put' as const, key: cid, value: encodeEntry({ sequence: sequence + i, size: bytes.length }), sublevel: this.index as any })),
        ...batch.map(([cid]) => ({ type: 'del' as const, key: cid, sublevel: old as any })),
        { type: 'put', key: SEQUENCE_KEY, value: String(sequence + batch.length - 1), sublevel: this.meta as any }
      ])
    }
  }

  /** Carry out deletions the index already made (all of them, or those a crash interrupted). */
  private async clearDoomed (): Promise<void> {
    const doomed = await this.doomed.keys().all()
    if (doomed.length === 0) return
    await this.data.batch(doomed.map(key => ({ type: 'del' as const, key })))
    await this.doomed.batch(doomed.map(key => ({ type: 'del' as const, key })))
  }

  /** Run `work` with block writes and deletions held off; root-catalog.ts uses it to drop whole roots in one batch. */
  async exclusive<T> (work: () => Promise<T>): Promise<T> {
    const run = this.lock.then(async () => {
      await this.load()
      return await work()
    })
    this.lock = run.catch(() => {})
    return await run
  }

  /**
   * Inside `exclusive`: write `operations` (on any sublevel of the store's db), drop the blocks `dropping`, and
   * set the new byte total, all in one batch of the index; the dropped blocks' bytes are cleared right after.
   */
  async commit (operations: BatchOperation[], deltaBytes: number, dropping: string[] = []): Promise<void> {
    const entries = dropping.length > 0 ? await this.index.getMany(dropping) : []
    const doomed: string[] = []
    const unindexed: BatchOperation[] = []
    for (const [i, entry] of entries.entries()) {
      if (entry === undefined) continue
      doomed.push(sequenceKey(decodeEntry(entry).sequence))
      unindexed.push({ type: 'del', key: dropping[i], sublevel: this.index as any })
      unindexed.push({ type: 'del', key: dropping[i], sublevel: this.unclaimed as any })
    }
    const total = this.held + deltaBytes
    await this.db.batch([
      ...operations,
      ...unindexed,
      ...doomed.map(key => ({ type: 'put' as const, key, value: '', sublevel: this.doomed as any })),
      { type: 'put', key: BYTES_KEY, value: String(total), sublevel: this.meta as any }
    ])
    this.held = total
    if (doomed.length > 0) await this.clearDoomed()
  }

  /** Whether a writer touched this block within BLOCK_PIN_MS: its put may still be on the way to naming a root. */
  pinned (cid: string): boolean {
    const until = this.pins.get(cid)
    if (until === undefined) return false
    if (until > Date.now()) return true
    this.pins.delete(cid)
    return false
  }

  /** The put these blocks belong to has named its root: they are that root's now, and evictable with it. */
  unpin (cids: string[]): void {
    for (const cid of cids) this.pins.delete(cid)
  }

  private pin (cids: string[]): void {
    const until = Date.now() + BLOCK_PIN_MS
    for (const cid of cids) {
      this.pins.delete(cid)
      this.pins.set(cid, until)
    }
    // Oldest first (insertion order): drop the expired ones so the map stays as large as recent traffic.
    for (const [cid, at] of this.pins) {
      if (at > Date.now()) break
      this.pins.delete(cid)
    }
  }

  /**
   * Operations that mark these blocks claimed by a root (root-catalog.ts adds them to the root's batch), for those
   * still marked unclaimed.
   */
  async claim (cids: string[]): Promise<BatchOperation[]> {
    const marked = await this.unclaimed.getMany(cids)
    return cids.filter((_, i) => marked[i] !== undefined).map(key => ({ type: 'del' as const, key, sublevel: this.unclaimed as any }))
  }

  /**
   * Delete blocks written before `cutoff` that no root claimed (what an aborted put leaves behind), unless a writer
   * touched them lately (pinned) or `used` says a root does use them (a block written again after its copy rotted
   * is marked unclaimed while its root still stands). A batch at a time under the write lock; returns the bytes
   * freed.
   */
  async sweepUnclaimed (cutoff: number, used: (cid: string) => Promise<boolean>): Promise<number> {
    let freed = 0
    let after: string | undefined
    while (true) {
      const page = await this.unclaimed.iterator({ ...(after !== undefined ? { gt: after } : {}), limit: UNCLAIMED_SWEEP_BATCH }).all()
      if (page.length === 0) return freed
      after = page[page.length - 1][0]
      freed += await this.exclusive(async () => {
        const stale = page.filter(([cid, at]) => Number(at) < cutoff && !this.pinned(cid)).map(([cid]) => cid)
        if (stale.length === 0) return 0
        const orphans: string[] = []
        for (const cid of stale) if (!await used(cid)) orphans.push(cid)
        const sizes = orphans.length > 0 ? await this.index.getMany(orphans) : []
        const bytes = sizes.reduce((n, entry) => n + (entry === undefined ? 0 : decodeEntry(entry).size), 0)
        await this.commit(stale.map(key => ({ type: 'del' as const, key, sublevel: this.unclaimed as any })), -bytes, orphans)
        return bytes
      })
    }
  }

  /** Whether each block is here, without pinning (eviction asks this). */
  async holds (cids: string[]): Promise<boolean[]> {
    await this.load()
    return await this.index.hasMany(cids)
  }

  async has (cid: CID): Promise<boolean> {
    await this.load()
    return await this.index.has(cid.toString())
  }

  /**
   * Of these CIDs, the ones this store lacks (REAPI's FindMissingBlobs: ask before sending). A writer asking
   * passes `pin`: told "you need not send this", it must find the block still here when it names its root.
   */
  async missing (cids: CID[], pin = false): Promise<CID[]> {
    if (cids.length === 0) return []
    const keys = cids.map(c => c.toString())
    if (pin) this.pin(keys)
    await this.load()
    const held = await this.index.hasMany(keys)
    return cids.filter((_, i) => !held[i])
  }

  /**
   * Keep blocks after checking each against its CID; one batch, so a failure keeps none of them. Blocks already
   * held are skipped (the byte total counts each block once). Past the size cap, room is made first or the
   * write is refused with StoreFullError.
   */
  async putMany (blocks: Array<{ cid: CID, bytes: Uint8Array }>, options: { checked?: boolean } = {}): Promise<void> {
    if (blocks.length === 0) return
    // `checked`: the caller ran checkBlock on each already (the put protocol does, to refuse the right block);
    // hashing a megabyte twice cost a store a fifth of its write rate.
    if (options.checked !== true) for (const { cid, bytes } of blocks) checkBlock(cid, bytes)
    const keys = blocks.map(b => b.cid.toString())
    this.pin(keys)
    await this.exclusive(async () => {
      const held = await this.index.hasMany(keys)
      const fresh = blocks.filter((_, i) => !held[i])
      if (fresh.length === 0) return
      const bytes = fresh.reduce((n, b) => n + b.bytes.length, 0)
      if (this.maxBytes !== undefined && this.held + bytes > this.maxBytes) {
        await this.makeRoom?.(this.held + bytes - this.maxBytes)
        if (this.held + bytes > this.maxBytes) {
          throw new StoreFullError(`the store is full: ${this.held} of ${this.maxBytes} bytes held and nothing more may be evicted now`)
        }
      }
      const first = this.nextSequence
      // Taken even if the write fails, so a number is never used for two different blocks' bytes.
      this.nextSequence += fresh.length
      const places = fresh.map((_, i) => sequenceKey(first + i))
      await this.data.batch(fresh.map(({ bytes }, i) => ({ type: 'put' as const, key: places[i], value: bytes })))
      const now = String(Date.now())
      await this.commit([
        ...fresh.map(({ cid, bytes }, i) => ({ type: 'put' as const, key: cid.toString(), value: encodeEntry({ sequence: first + i, size: bytes.length }), sublevel: this.index as any })),
        ...fresh.map(({ cid }) => ({ type: 'put' as const, key: cid.toString(), value: now, sublevel: this.unclaimed as any })),
        { type: 'put', key: SEQUENCE_KEY, value: String(first + fresh.length - 1), sublevel: this.meta as any }
      ], bytes).catch(async (err: unknown) => {
        // Not indexed, so nobody can name these bytes: remove them now (a later write's higher numbers would
        // keep them from being cleared on the next open).
        await this.data.batch(places.map(key => ({ type: 'del' as const, key }))).catch(() => {})
        throw err
      })
      this.received += bytes
    })
  }

  async put (cid: CID, bytes: Uint8Array): Promise<void> {
    await this.putMany([{ cid, bytes }])
  }

  /** The block's bytes, checked; undefined if absent. A block that no longer matches its CID is deleted. */
  async get (cid: CID): Promise<Uint8Array | undefined> {
    const key = cid.toString()
    // Opened (and an older layout moved over) before the first read, not only before the first write.
    await this.load()
    const entry = await this.index.get(key)
    if (entry === undefined) return undefined
    const { sequence, size } = decodeEntry(entry)
    const bytes = await this.data.get(sequenceKey(sequence))
    if (bytes === undefined || !matches(cid, bytes)) {
      // Dropped at once, outside the write lock (a reader may be inside it: root-catalog.ts checks roots there);
      // the byte total on disk catches up with the next write.
      await this.index.del(key)
      await this.data.del(sequenceKey(sequence))
      this.held = Math.max(0, this.held - size)
      return undefined
    }
    return bytes
  }
}

/** A LevelDB another process holds open: two nodes given the same data dir. */
export class DataDirInUseError extends GridError {
  name = 'DataDirInUseError'
  readonly status = 409
}

/**
 * Open a LevelDB, saying plainly when another process holds it (LevelDB's lock): two workers or stores started with
 * the same --data, where classic-level says only "Database failed to open". Throws DataDirInUseError then; other
 * failures as they come.
 */
export async function openLevel (db: { open: () => Promise<void>, location: string }): Promise<void> {
  try {
    await db.open()
  } catch (err: any) {
    if (err?.code === 'LEVEL_LOCKED' || err?.cause?.code === 'LEVEL_LOCKED') {
      throw new DataDirInUseError(`${db.location} is in use by another grid process: give each worker, store and grid its own --data DIR`)
    }
    throw err
  }
}

// Blocks kept in LevelDB by CID. Every block is checked against its CID before it is kept (the sender may lie)
// and again when it is read (the disk may rot): a bad local copy is dropped, never served. Buildbarn checks on
// read too; IPFS checks what it receives.
import type { Level } from 'level'
import type { AbstractBatchOperation } from 'abstract-level'
import type { CID } from 'multiformats/cid'
import { matches } from './content.ts'
import { BLOCK_PIN_MS, MAX_BLOCK_BYTES } from './constants.ts'

export class BlockMismatchError extends Error {
  name = 'BlockMismatchError'
}

export class BlockTooLargeError extends Error {
  name = 'BlockTooLargeError'
}

/** The block itself if its bytes are those its CID names and within the size limit; throws otherwise. */
export function checkBlock (cid: CID, bytes: Uint8Array): { cid: CID, bytes: Uint8Array } {
  if (bytes.length > MAX_BLOCK_BYTES) throw new BlockTooLargeError(`block ${cid} is ${bytes.length} bytes; the limit is ${MAX_BLOCK_BYTES}`)
  if (!matches(cid, bytes)) throw new BlockMismatchError(`bytes do not hash to ${cid}`)
  return { cid, bytes }
}

/** A write the store cannot make room for under its size cap (`grid store --max-size`). */
export class StoreFullError extends Error {
  name = 'StoreFullError'
}

/** Key of the running total of block bytes, kept in the same batch as every block write and deletion. */
const BYTES_KEY = 'bytes'

export type BatchOperation = AbstractBatchOperation<Level<string, string>, string, any>

export class Blockstore {
  private readonly db: Level<string, string>
  private readonly blocks
  private readonly meta
  private held = 0
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

  constructor (db: Level<string, string>) {
    this.db = db
    this.blocks = db.sublevel<string, Uint8Array>('blocks', { valueEncoding: 'view' })
    this.meta = db.sublevel<string, string>('block-meta', {})
  }

  /** Bytes of blocks held. A store made before the total was kept counts once, by reading every block. */
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
      const kept = await this.meta.get(BYTES_KEY)
      if (kept !== undefined) {
        this.held = Number(kept)
        return
      }
      let total = 0
      for await (const value of this.blocks.values()) total += value.length
      this.held = total
      await this.meta.put(BYTES_KEY, String(total))
    })()
    await this.loaded
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

  /** Inside `exclusive`: write `operations` (on any sublevel of the store's db) and the new byte total in one batch. */
  async commit (operations: BatchOperation[], deltaBytes: number): Promise<void> {
    const total = this.held + deltaBytes
    await this.db.batch([...operations, { type: 'put', key: BYTES_KEY, value: String(total), sublevel: this.meta as any }])
    this.held = total
  }

  /** The delete operation for a block, for a batch passed to `commit`. */
  deletion (cid: string): BatchOperation {
    return { type: 'del', key: cid, sublevel: this.blocks as any }
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

  /** Whether each block is here, without pinning (eviction asks this). */
  async holds (cids: string[]): Promise<boolean[]> {
    return await this.blocks.hasMany(cids)
  }

  async has (cid: CID): Promise<boolean> {
    return await this.blocks.has(cid.toString())
  }

  /**
   * Of these CIDs, the ones this store lacks (REAPI's FindMissingBlobs: ask before sending). A writer asking
   * passes `pin`: told "you need not send this", it must find the block still here when it names its root.
   */
  async missing (cids: CID[], pin = false): Promise<CID[]> {
    if (cids.length === 0) return []
    const keys = cids.map(c => c.toString())
    if (pin) this.pin(keys)
    // hasMany answers from the index without reading a megabyte per block.
    const held = await this.blocks.hasMany(keys)
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
      const held = await this.blocks.hasMany(keys)
      const fresh = blocks.filter((_, i) => !held[i])
      if (fresh.length === 0) return
      const bytes = fresh.reduce((n, b) => n + b.bytes.length, 0)
      if (this.maxBytes !== undefined && this.held + bytes > this.maxBytes) {
        await this.makeRoom?.(this.held + bytes - this.maxBytes)
        if (this.held + bytes > this.maxBytes) {
          throw new StoreFullError(`the store is full: ${this.held} of ${this.maxBytes} bytes held and nothing more may be evicted now`)
        }
      }
      await this.commit(fresh.map(({ cid, bytes }) => ({ type: 'put' as const, key: cid.toString(), value: bytes, sublevel: this.blocks as any })), bytes)
      this.received += bytes
    })
  }

  async put (cid: CID, bytes: Uint8Array): Promise<void> {
    await this.putMany([{ cid, bytes }])
  }

  /** The block's bytes, checked; undefined if absent. A block that no longer matches its CID is deleted. */
  async get (cid: CID): Promise<Uint8Array | undefined> {
    const key = cid.toString()
    const bytes = await this.blocks.get(key)
    if (bytes === undefined) return undefined
    if (!matches(cid, bytes)) {
      // Deleted at once, outside the write lock (a reader may be inside it: root-catalog.ts checks roots there);
      // the byte total on disk catches up with the next write.
      await this.blocks.del(key)
      this.held = Math.max(0, this.held - bytes.length)
      return undefined
    }
    return bytes
  }
}

// A sealed log becomes content: its bytes are named by the rule artifacts are named by (grid/content.ts), so the
// log gets a CID like any artifact and is fetched, verified and copied the same way (`grid get CID`).
// The bytes are named as they are appended: the whole log's sha256 runs along, and each block is cut and kept as
// soon as the log holds it whole. Sealing then only cuts the last block and writes the manifest, where it used to
// read the whole log back, hash it again and write it a second time. A block that arrives whole (a worker sends a
// backlog as whole blocks) is kept once, as a content block, and the log store only notes it (BlockKeeper); one
// that came in pieces is put together from the log. Memory is a hash state and a list of block CIDs per log being
// named, and one block while it is cut.
// Until the seal makes them a root, the blocks a log keeps are pinned (the blockstore's eviction and its sweep of
// unclaimed blocks leave pinned blocks alone), every PIN_REFRESH_MS while the log is open. After it they are the
// sealed log's content, under the store's size cap like any other: evicting it takes those bytes of the log along
// (reading them then throws LogBlockMissingError; another holder may have them). A fenced log's blocks go back
// into its file (LogStore.fence). What was named lives in memory only: a log whose naming did not start
// with its first byte in this process (the store restarted, the naming was dropped for room or failed) is named at
// its seal as it always was, read back from the start a block at a time. Sealing again returns the CID noted the
// first time.
import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'
import type { CID } from 'multiformats/cid'
import type { Blockstore } from './blockstore.ts'
import { BLOCK_PIN_MS } from './constants.ts'
import { BLOCK_BYTES } from '../grid/constants.ts'
import { MANIFEST_TYPE, blockCid, encodeManifest, nameContent, parseCid } from '../grid/content.ts'
import type { Block } from '../grid/content.ts'
import type { BlockKeeper, KeptBlock, LogInfo, LogStore } from './log-store.ts'

/**
 * Logs named as they are appended, at most: past it the least recently appended one is dropped and named at its
 * seal instead (reading it back). Each costs a hash state and its blocks' CIDs (about 200 KiB for a 1 GiB log).
 */
export const MAX_NAMED_LOGS = 256
/** How often the blocks kept for open logs are pinned again: well within BLOCK_PIN_MS, so a pin never lapses. */
const PIN_REFRESH_MS = BLOCK_PIN_MS / 3
/**
 * Open logs whose kept blocks are pinned, at most: one per running step, and then some. Past it the oldest is left
 * unpinned (its blocks still go at the earliest a day after they came, by the sweep of unclaimed blocks).
 */
const MAX_PINNED_LOGS = 4096

/** What a store does with a whole piece of content once all its blocks are in (root-catalog.ts lists it). */
export interface RootList {
  add (cid: CID): Promise<unknown>
}

export interface SealedLog {
  info: LogInfo
  /** Undefined for a fenced log (its attempt was lost: nobody waits for its CID) or when the blocks could not be kept. */
  cid?: string
}

/** A log named from its first byte, as far as `size`. */
interface Naming {
  /** Bytes of the log hashed into `whole`. */
  size: number
  /** The whole log's sha256 so far (the manifest carries it). */
  whole: Hash
  /** The blocks cut and kept, in order: the log's first `blocks.length` × BLOCK_BYTES bytes. */
  blocks: Array<{ cid: CID, size: number }>
}

/** A log that is not being named as it grows: its seal reads it back. */
const UNNAMED = 'unnamed'

export class LogSealer implements BlockKeeper {
  private readonly logs: LogStore
  private readonly blocks: Blockstore
  private readonly roots: RootList | undefined
  /** Logs being named, least recently appended first. */
  private readonly namings = new Map<string, Naming | typeof UNNAMED>()
  /** One cut per log at a time: a resent seal waits for the first one's CID instead of cutting again. */
  private readonly cutting = new Map<string, Promise<string>>()
  /** Logs that may have blocks kept and are not sealed: their blocks are pinned every PIN_REFRESH_MS. */
  private readonly open = new Set<string>()
  private pinning: NodeJS.Timeout | undefined

  /** Names the logs of `logs` as they are appended (it keeps their whole blocks: LogStore.keepBlocks), in `blocks`. */
  constructor (logs: LogStore, blocks: Blockstore, roots?: RootList) {
    this.logs = logs
    this.blocks = blocks
    this.roots = roots
    logs.keepBlocks(this)
  }

  async block (cid: string): Promise<Uint8Array | undefined> {
    return await this.blocks.get(parseCid(cid))
  }

  async take (id: string, at: number, bytes: Uint8Array): Promise<KeptBlock[]> {
    const known = this.namings.get(id)
    this.namings.delete(id)
    // Named from its first byte here, or not at all: catching up on a long log would hold this append for long.
    const naming = known ?? (at === 0 ? { size: 0, whole: createHash('sha256'), blocks: [] } : UNNAMED)
    this.namings.set(id, naming)
    while (this.namings.size > MAX_NAMED_LOGS) this.namings.delete(this.namings.keys().next().value!)
    // A log seen here first past its start may have kept blocks before a restart: they are pinned from now on.
    if (known === undefined) this.watch(id)
    if (naming === UNNAMED) return []
    try {
      if (naming.size !== at) throw new Error(`log ${id}: named as far as ${naming.size}, appended at ${at}`)
      naming.whole.update(bytes)
      const end = at + bytes.length
      const kept: KeptBlock[] = []
      while (end - naming.blocks.length * BLOCK_BYTES >= BLOCK_BYTES) {
        const start = naming.blocks.length * BLOCK_BYTES
        // A block that began before these bytes is put together from what the log holds and what they add.
        const block = start >= at
          ? bytes.subarray(start - at, start - at + BLOCK_BYTES)
          : Buffer.concat([await this.logs.range(id, start, at), bytes.subarray(0, start + BLOCK_BYTES - at)])
        const cid = await this.keep(block)
        naming.blocks.push({ cid, size: block.length })
        if (start >= at) kept.push({ start, cid: cid.toString() })
      }
      naming.size = end
      return kept
    } catch {
      // A block that could not be kept (a full store): the seal tries again, reading the log back.
      if (this.namings.get(id) === naming) this.namings.set(id, UNNAMED)
      return []
    }
  }

  /** Seal `id` at `size` (LogGapError, changing nothing, if the log holds another size) and name its content. */
  async seal (id: string, size: number): Promise<SealedLog> {
    const info = await this.logs.seal(id, size)
    if (info.fenced === true) {
      this.namings.delete(id)
      return { info }
    }
    if (info.cid !== undefined) return { info, cid: info.cid }
    let cut = this.cutting.get(id)
    if (cut === undefined) {
      cut = this.cut(id, size).finally(() => this.cutting.delete(id))
      this.cutting.set(id, cut)
    }
    const cid = await cut
    // A root now: its blocks are its content's, which eviction takes or leaves whole.
    this.open.delete(id)
    return { info: await this.logs.named(id, size, cid), cid }
  }

  private watch (id: string): void {
    this.open.delete(id)
    this.open.add(id)
    if (this.open.size > MAX_PINNED_LOGS) this.open.delete(this.open.values().next().value!)
    this.pinning ??= setInterval(() => { this.pinOpen().catch(() => {}) }, PIN_REFRESH_MS).unref()
  }

  /** Pin the kept blocks of every open log again; forget sealed logs, and stop when none is left. */
  private async pinOpen (): Promise<void> {
    try {
      for (const id of [...this.open]) {
        const info = await this.logs.info(id)
        if (info === undefined || info.sealed) {
          this.open.delete(id)
          continue
        }
        const cids = await this.logs.keptBlocks(id)
        if (cids.length > 0) await this.blocks.missing(cids.map(cid => parseCid(cid)), true)
      }
    } catch {
      // The store is closing (its database with it): nothing is left to pin.
      this.open.clear()
    }
    if (this.open.size === 0) {
      clearInterval(this.pinning)
      this.pinning = undefined
    }
  }

  /** Hash a block, keep it, and give its CID. */
  private async keep (bytes: Uint8Array): Promise<CID> {
    const cid = blockCid(bytes)
    await this.blocks.putMany([{ cid, bytes }], { checked: true })
    return cid
  }

  private async cut (id: string, size: number): Promise<string> {
    const naming = this.namings.get(id)
    this.namings.delete(id)
    if (naming !== undefined && naming !== UNNAMED && naming.size === size) {
      const named = await this.finish(id, naming).catch(() => undefined)
      // Listed as a root only once every block is here: one kept as the log grew may have been swept or evicted since.
      if (named !== undefined && await this.listed(named)) return named.toString()
    }
    return await this.cutAgain(id, size)
  }

  /**
   * The log's name, as ContentNamer gives it (and nameContent, which a test compares): the last, short block is cut;
   * one block names itself (none: the empty block, kept like any other), more are listed in a manifest kept last.
   */
  private async finish (id: string, naming: Naming): Promise<CID> {
    const cut = naming.blocks.length * BLOCK_BYTES
    if (naming.size > cut || naming.size === 0) {
      const last = await this.logs.range(id, cut, naming.size)
      naming.blocks.push({ cid: await this.keep(last), size: last.length })
    }
    if (naming.blocks.length === 1) return naming.blocks[0].cid
    const manifest = encodeManifest({ type: MANIFEST_TYPE, size: naming.size, sha256: naming.whole.digest('hex'), blocks: naming.blocks })
    await this.blocks.putMany([manifest], { checked: true })
    return manifest.cid
  }

  /** List the content as a root; false if some block of it is missing. */
  private async listed (cid: CID): Promise<boolean> {
    try {
      await this.roots?.add(cid)
      return true
    } catch (err: any) {
      if (err.name === 'RootIncompleteError') return false
      throw err
    }
  }

  /** Read the whole log back and name it, keeping each block as it is cut (memory stays at one block). */
  private async cutAgain (id: string, size: number): Promise<string> {
    const keep = async (block: Block): Promise<void> => { await this.blocks.put(block.cid, block.bytes) }
    const named = await nameContent(this.logs.read(id, { from: 0 }), { keep })
    if (named.size !== size) throw new Error(`log ${id} read back ${named.size} bytes, not the ${size} it was sealed at`)
    // The manifest goes in last, and only then is the content a root.
    if (named.manifest !== undefined) await keep(named.manifest)
    await this.roots?.add(named.cid)
    return named.cid.toString()
  }
}

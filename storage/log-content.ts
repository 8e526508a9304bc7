// A sealed log becomes content: its bytes are named by the same ContentNamer artifacts use, so the log gets
// a CID like any artifact and is fetched, verified and copied the same way (`grid get CID`). The log is read back
// from LevelDB a chunk at a time and each block is written as soon as it is cut: memory stays at one block,
// whatever the log's size. Sealing again returns the CID noted the first time; a crash halfway just cuts again.
import type { CID } from 'multiformats/cid'
import type { Blockstore } from './blockstore.ts'
import { nameContent } from '../grid/content.ts'
import type { Block } from '../grid/content.ts'
import type { LogInfo, LogStore } from './log-store.ts'

/** What a store does with a whole piece of content once all its blocks are in (root-catalog.ts lists it). */
export interface RootList {
  add (cid: CID): Promise<unknown>
}

export interface SealedLog {
  info: LogInfo
  /** Undefined for a fenced log (its attempt was lost: nobody waits for its CID) or when the blocks could not be kept. */
  cid?: string
}

export class LogSealer {
  private readonly logs: LogStore
  private readonly blocks: Blockstore
  private readonly roots: RootList | undefined
  /** One cut per log at a time: a resent seal waits for the first one's CID instead of cutting again. */
  private readonly cutting = new Map<string, Promise<string>>()

  constructor (logs: LogStore, blocks: Blockstore, roots?: RootList) {
    this.logs = logs
    this.blocks = blocks
    this.roots = roots
  }

  /** Seal `id` at `size` (LogGapError, changing nothing, if the log holds another size) and name its content. */
  async seal (id: string, size: number): Promise<SealedLog> {
    const info = await this.logs.seal(id, size)
    if (info.fenced === true) return { info }
    if (info.cid !== undefined) return { info, cid: info.cid }
    let cut = this.cutting.get(id)
    if (cut === undefined) {
      cut = this.cut(id, size).finally(() => this.cutting.delete(id))
      this.cutting.set(id, cut)
    }
    const cid = await cut
    return { info: await this.logs.named(id, size, cid), cid }
  }

  private async cut (id: string, size: number): Promise<string> {
    const keep = async (block: Block): Promise<void> => { await this.blocks.put(block.cid, block.bytes) }
    const named = await nameContent(this.logs.read(id, { from: 0 }), { keep })
    if (named.size !== size) throw new Error(`log ${id} read back ${named.size} bytes, not the ${size} it was sealed at`)
    // The manifest goes in last, and only then is the content a root.
    if (named.manifest !== undefined) await keep(named.manifest)
    await this.roots?.add(named.cid)
    return named.cid.toString()
  }
}

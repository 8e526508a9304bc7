// Blocks kept in LevelDB by CID. Every block is checked against its CID before it is kept (the sender may lie)
// and again when it is read (the disk may rot): a bad local copy is dropped, never served. Buildbarn checks on
// read too; IPFS checks what it receives.
import type { Level } from 'level'
import type { CID } from 'multiformats/cid'
import { matches } from './content.ts'
import { MAX_BLOCK_BYTES } from './constants.ts'

export class BlockMismatchError extends Error {
  name = 'BlockMismatchError'
}

export class BlockTooLargeError extends Error {
  name = 'BlockTooLargeError'
}

export class Blockstore {
  private readonly blocks

  constructor (db: Level<string, string>) {
    this.blocks = db.sublevel<string, Uint8Array>('blocks', { valueEncoding: 'view' })
  }

  async has (cid: CID): Promise<boolean> {
    return await this.blocks.has(cid.toString())
  }

  /** Of these CIDs, the ones this store lacks (REAPI's FindMissingBlobs: ask before sending). */
  async missing (cids: CID[]): Promise<CID[]> {
    if (cids.length === 0) return []
    // hasMany answers from the index without reading a megabyte per block.
    const held = await this.blocks.hasMany(cids.map(c => c.toString()))
    return cids.filter((_, i) => !held[i])
  }

  /** Keep blocks after checking each against its CID; one batch, so a failure keeps none of them. */
  async putMany (blocks: Array<{ cid: CID, bytes: Uint8Array }>): Promise<void> {
    for (const { cid, bytes } of blocks) {
      if (bytes.length > MAX_BLOCK_BYTES) throw new BlockTooLargeError(`block ${cid} is ${bytes.length} bytes; the limit is ${MAX_BLOCK_BYTES}`)
      if (!matches(cid, bytes)) throw new BlockMismatchError(`bytes do not hash to ${cid}`)
    }
    // The array form waits for a sublevel that is still opening; a chained batch would throw.
    await this.blocks.batch(blocks.map(({ cid, bytes }) => ({ type: 'put' as const, key: cid.toString(), value: bytes })))
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
      await this.blocks.del(key)
      return undefined
    }
    return bytes
  }
}

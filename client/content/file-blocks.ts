// Reading a file to put it without a fresh buffer per block: a put from a file (and the first pass that names it)
// reads a block at a time into a few buffers that go back to a pool once the block is hashed or stored, so a put
// of any size allocates about as much as a few groups of blocks (see buffer-pool.ts for why that matters).
import { open } from 'node:fs/promises'
import { BufferPool } from '../../net/buffer-pool.ts'
import { BLOCK_BYTES } from '../../grid/constants.ts'
import { PUT_GROUP_BLOCKS, PUT_WINDOW } from '../../storage/constants.ts'

/**
 * Buffers a put from a file keeps for reuse: the group being filled, the group handed to each lane before it, and
 * a window of blocks awaiting acknowledgement. More may be in use for a moment; those are simply not kept.
 */
const PUT_POOL_BLOCKS = 2 * PUT_GROUP_BLOCKS + PUT_WINDOW

/**
 * A file's bytes, read a block at a time into buffers from `pool` (sized BLOCK_BYTES): the chunker takes each read
 * as a block without copying it, and putContent, given the same pool, hands each buffer back once the block is
 * stored. Without the pool's buffers coming back it still works, allocating as a plain read stream would.
 */
export async function * readFileBlocks (path: string, pool: BufferPool): AsyncGenerator<Uint8Array> {
  const handle = await open(path)
  try {
    let position = 0
    while (true) {
      const buffer = pool.take()
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, position)
      if (bytesRead === 0) {
        pool.give(buffer)
        return
      }
      position += bytesRead
      yield buffer.subarray(0, bytesRead)
    }
  } finally {
    await handle.close()
  }
}

/** A pool for one put from readFileBlocks: enough buffers for the blocks a put holds at once (see Lane.enqueue). */
export function putPool (): BufferPool {
  return new BufferPool(BLOCK_BYTES, PUT_POOL_BLOCKS)
}

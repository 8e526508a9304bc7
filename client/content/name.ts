// Naming content without storing it: a first pass over a file, so a put knows where the content is placed (its
// CID ranks the stores) before sending a byte, and the second pass, given what this one found, hashes nothing.
import type { BufferPool } from '../../net/buffer-pool.ts'
import { nameContent } from '../../grid/content.ts'
import type { Named } from '../../grid/content.ts'

/**
 * The CID, size and sha256 content would have, and its blocks' CIDs, storing nothing: a first pass over a file, to
 * place it. Passed to the put as `named`, it spares the second pass all hashing.
 */
export async function nameOf (source: AsyncIterable<Uint8Array>, pool?: BufferPool): Promise<Named> {
  const named = await nameContent(givingBack(source, pool))
  return { cid: named.cid.toString(), size: named.size, sha256: named.sha256, blocks: named.blocks.map(b => b.cid) }
}

/**
 * Each chunk of `source`, handed back to `pool` once it is hashed (when the next one is asked for) and nothing is
 * kept of it: readFileBlocks may read the next block into the same buffer.
 */
async function * givingBack (source: AsyncIterable<Uint8Array>, pool: BufferPool | undefined): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    yield chunk
    pool?.give(chunk)
  }
}

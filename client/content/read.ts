// Reading content as a client: `grid get`, the HTTP API's downloads, workers fetching inputs, and a placed put
// copying content to a replacement store. A range of a CID's bytes, each block verified against its CID, from this
// node's own blockstore when it holds them all, else from holders in the order given (the placed stores first:
// see placement.ts), moving on to the next holder only before the first byte.
import type { CID } from 'multiformats/cid'
import type { GridHost } from '../../net/host.ts'
import type { PeerAddress } from '../../net/dial.ts'
import { decodeManifest, isManifestCid } from '../../grid/content.ts'
import type { Blockstore } from '../../storage/blockstore.ts'
import { ContentUnavailableError, blocksFor, fetchFrom } from '../../protocols/block-get.ts'
import type { Range } from '../../protocols/block-get.ts'

/** Where content is read from: this node's blockstore first, then the holders. */
export interface ContentSources {
  host: GridHost
  local?: Blockstore
  /** Peers that may hold it, asked in order. */
  holders: () => PeerAddress[]
}

/** Verified bytes of `cid` in the range, from this node if it holds them, else from the first holder that does. */
export async function * readContent (sources: ContentSources, cid: CID, range: Range = {}, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  if (sources.local !== undefined && await sources.local.has(cid)) {
    const local = await readLocal(sources.local, cid, range)
    if (local !== undefined) {
      yield * local
      return
    }
  }
  let last: Error | undefined
  for (const holder of otherHolders(sources)) {
    let yielded = false
    try {
      for await (const chunk of fetchFrom(sources.host, holder, cid, range, signal)) {
        yielded = true
        yield chunk
      }
      return
    } catch (err: any) {
      // Halfway through, a switch would repeat bytes: fail instead. Before any byte, try the next holder.
      if (yielded) throw err
      last = err
    }
  }
  throw last ?? new ContentUnavailableError(`no peer holds ${cid}`)
}

/** The holders to ask over the network: all but this node itself. */
export function otherHolders (sources: ContentSources): PeerAddress[] {
  return sources.holders().filter(h => h.peer !== sources.host.peerId.toString())
}

/** The content from this node's own blockstore, or undefined if any block is missing here. */
async function readLocal (blocks: Blockstore, cid: CID, range: Range): Promise<AsyncGenerator<Uint8Array> | undefined> {
  const root = await blocks.get(cid)
  if (root === undefined) return undefined
  const from = range.from ?? 0
  if (!isManifestCid(cid)) {
    const to = Math.min(range.to ?? root.length, root.length)
    return (async function * () { if (from < to) yield root.subarray(from, to) })()
  }
  const manifest = decodeManifest(root)
  const lacking = await blocks.missing(manifest.blocks.map(b => b.cid))
  if (lacking.length > 0) return undefined
  const to = Math.min(range.to ?? manifest.size, manifest.size)
  const { first, last, skip } = blocksFor(manifest, from, to)
  return (async function * () {
    let position = from - skip
    for (let i = first; i >= 0 && i <= last; i++) {
      const bytes = await blocks.get(manifest.blocks[i].cid)
      if (bytes === undefined) throw new ContentUnavailableError(`block ${manifest.blocks[i].cid} of ${cid} went bad here`)
      const start = Math.max(0, from - position)
      const end = Math.min(bytes.length, to - position)
      if (start < end) yield bytes.subarray(start, end)
      position += bytes.length
    }
  })()
}

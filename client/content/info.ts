// What content is without reading it: its size and sha256, from the root block alone (a manifest lists both; a
// single block is its own size and hash). `grid get` sizes its progress bar with them and checks the download's
// sha256 against them; the HTTP API answers ranges and sends Content-Length before the first byte.
import type { CID } from 'multiformats/cid'
import { ContentUnavailableError, fetchRoot, rootInfo } from '../../protocols/block-get.ts'
import { otherHolders } from './read.ts'
import type { ContentSources } from './read.ts'

/** Size and sha256 of `cid`, from this node's blockstore or the first holder that has it. */
export async function contentInfo (sources: ContentSources, cid: CID, signal?: AbortSignal): Promise<{ size: number, sha256: string }> {
  const root = await sources.local?.get(cid)
  if (root !== undefined) return rootInfo(cid, root)
  let last: Error | undefined
  for (const holder of otherHolders(sources)) {
    try {
      return await fetchRoot(sources.host, holder, cid, signal)
    } catch (err: any) {
      last = err
    }
  }
  throw last ?? new ContentUnavailableError(`no peer holds ${cid}`)
}

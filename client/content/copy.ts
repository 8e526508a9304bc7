// Copying content a store holds whole to another store, block for block: the store-to-store repair that keeps a
// CID on as many stores as it should be. Unlike a put it never re-cuts the bytes, so content named with any block
// size keeps its CID, and it sends only what the target lacks, paced by the repair's throttle.
import type { CID } from 'multiformats/cid'
import type { GridHost } from '../../net/host.ts'
import type { PeerAddress } from '../../net/dial.ts'
import { decodeManifest, isManifestCid } from '../../grid/content.ts'
import type { Blockstore } from '../../storage/blockstore.ts'
import type { Throttle } from '../../storage/throttle.ts'
import { PUT_GROUP_BLOCKS } from '../../storage/constants.ts'
import { askMissing } from '../../protocols/block-missing.ts'
import { BlockSender } from '../../protocols/block-put.ts'
import { ContentUnavailableError } from '../../protocols/block-get.ts'

/**
 * Copy a root this node holds whole to another store, block for block (so content named with any block size
 * keeps its CID), sending only what the target lacks and ending with the root message; store-to-store repair.
 * `throttle` paces the bytes sent.
 */
export async function copyContent (host: GridHost, blocks: Blockstore, cid: CID, to: PeerAddress, throttle?: Throttle, signal?: AbortSignal): Promise<{ sentBytes: number }> {
  const root = await blocks.get(cid)
  if (root === undefined) throw new ContentUnavailableError(`this store does not hold ${cid}`)
  const members: CID[] = isManifestCid(cid) ? [...decodeManifest(root).blocks.map(b => b.cid), cid] : [cid]
  let sender: BlockSender | undefined
  let sentBytes = 0
  try {
    for (let i = 0; i < members.length; i += PUT_GROUP_BLOCKS) {
      const group = members.slice(i, i + PUT_GROUP_BLOCKS)
      const lacking = new Set(await askMissing(host, to, group.map(String)))
      for (const member of group) {
        if (!lacking.has(member.toString())) continue
        const bytes = await blocks.get(member)
        if (bytes === undefined) throw new ContentUnavailableError(`block ${member} of ${cid} is gone from this store`)
        await throttle?.take(bytes.length, signal)
        sender ??= await BlockSender.open(host, to)
        await sender.send({ cid: member, bytes })
        sentBytes += bytes.length
      }
    }
    sender ??= await BlockSender.open(host, to)
    await sender.sendRoot(cid.toString())
    await sender.finish()
    return { sentBytes }
  } catch (err) {
    sender?.abort()
    throw err
  }
}

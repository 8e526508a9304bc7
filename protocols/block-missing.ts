// /nameless-grid/block-missing: "which of these blocks do you lack?" asked before sending any (REAPI's
// FindMissingBlobs), so re-putting content a store already holds sends almost nothing.
import { z } from 'zod'
import type { Stream } from '@libp2p/interface'
import { MessageChannel } from '../net/wire.ts'
import type { GridHost } from '../net/host.ts'
import { ProtocolService } from '../net/protocol-service.ts'
import type { PeerAddress } from '../net/dial.ts'
import { openStream } from '../net/dial.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import type { Blockstore } from '../storage/blockstore.ts'
import { parseCid } from '../grid/content.ts'
import { MAX_BLOCK_STREAMS, MAX_CIDS_PER_ASK } from '../storage/constants.ts'

export const BLOCK_MISSING_PROTOCOL = '/nameless-grid/block-missing/1.0.0'

const cids = z.array(z.string().max(200)).max(MAX_CIDS_PER_ASK)
export const missingRequest = z.object({ t: z.literal('missing?'), cids })
export const missingReply = z.object({ t: z.literal('missing'), cids })
type Request = z.infer<typeof missingRequest>
type Reply = z.infer<typeof missingReply>

export interface BlockMissingComponents {
  host: GridHost
  blocks: Blockstore
}

/** The store's side: says which of the asked blocks it lacks, at most MAX_BLOCK_STREAMS streams per connection. */
export class BlockMissingService extends ProtocolService<BlockMissingComponents> {
  constructor (components: BlockMissingComponents) {
    super(components, BLOCK_MISSING_PROTOCOL, MAX_BLOCK_STREAMS)
  }

  protected async serve (stream: Stream): Promise<void> {
    const channel = new MessageChannel<Request, Reply>(stream, missingRequest)
    try {
      const request = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
      const asked = request.cids.map(parseCid)
      await channel.send({ t: 'missing', cids: (await this.components.blocks.missing(asked, true)).map(String) })
      await channel.close()
    } catch (err: any) {
      channel.abort(err)
    }
  }
}

export async function askMissing (host: GridHost, store: PeerAddress, asked: string[]): Promise<string[]> {
  const channel = new MessageChannel<Reply, Request>(await openStream(host, store, BLOCK_MISSING_PROTOCOL), missingReply)
  try {
    await channel.send({ t: 'missing?', cids: asked })
    const reply = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
    // A store can only lack what it was asked about.
    const set = new Set(asked)
    return reply.cids.filter(c => set.has(c))
  } finally {
    await channel.close().catch(() => {})
  }
}

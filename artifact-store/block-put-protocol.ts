// /nameless-grid/block-put: a writer streams blocks to a store, PUT_WINDOW of them in flight; the store hashes
// each before keeping it and answers in order. A block whose bytes do not match its CID is refused, nothing of
// it is kept, and the stream ends: the writer may retry on a new one.
import { z } from 'zod'
import type { Stream } from '@libp2p/interface'
import { MessageChannel, bytesField } from '../node/wire.ts'
import type { GridHost } from '../node/host.ts'
import type { PeerAddress } from '../node/dial.ts'
import { openStream } from '../node/dial.ts'
import { REQUEST_TIMEOUT_MS } from '../node/constants.ts'
import type { Blockstore } from './blockstore.ts'
import { parseCid } from './content.ts'
import type { Block } from './content.ts'
import { MAX_BLOCK_BYTES, MAX_BLOCK_FRAME_BYTES, MAX_BLOCK_STREAMS, PUT_WINDOW } from './constants.ts'

export const BLOCK_PUT_PROTOCOL = '/nameless-grid/block-put/1.0.0'

export const putRequest = z.object({ t: z.literal('block'), cid: z.string().max(200), bytes: bytesField(MAX_BLOCK_BYTES) })
export const putReply = z.discriminatedUnion('t', [
  z.object({ t: z.literal('stored'), cid: z.string().max(200) }),
  z.object({ t: z.literal('refused'), cid: z.string().max(200), error: z.string().max(500) })
])
type Request = z.infer<typeof putRequest>
type Reply = z.infer<typeof putReply>

export class BlockRefusedError extends Error {
  name = 'BlockRefusedError'
}

export async function handlePuts (host: GridHost, blocks: Blockstore): Promise<void> {
  await host.handle(BLOCK_PUT_PROTOCOL, stream => { serve(stream, blocks).catch(() => {}) }, { maxInboundStreams: MAX_BLOCK_STREAMS })
}

async function serve (stream: Stream, blocks: Blockstore): Promise<void> {
  const channel = new MessageChannel<Request, Reply>(stream, putRequest, { maxMessageBytes: MAX_BLOCK_FRAME_BYTES })
  try {
    for await (const request of channel) {
      try {
        await blocks.put(parseCid(request.cid), request.bytes)
      } catch (err: any) {
        await channel.send({ t: 'refused', cid: request.cid, error: err.message })
        throw err
      }
      await channel.send({ t: 'stored', cid: request.cid })
    }
    await channel.close()
  } catch (err: any) {
    channel.abort(err)
  }
}

/** Sends blocks to one store with a window of acknowledgements outstanding. */
export class BlockSender {
  private readonly channel: MessageChannel<Reply, Request>
  private readonly unacked: string[] = []
  private readonly waiters: Array<() => void> = []
  private failure: Error | undefined

  private constructor (channel: MessageChannel<Reply, Request>) {
    this.channel = channel
    // Acknowledgements are read for as long as the stream lives; failures land in `failure`.
    void this.readAcks()
  }

  static async open (host: GridHost, store: PeerAddress): Promise<BlockSender> {
    const stream = await openStream(host, store, BLOCK_PUT_PROTOCOL)
    return new BlockSender(new MessageChannel<Reply, Request>(stream, putReply, { maxMessageBytes: MAX_BLOCK_FRAME_BYTES }))
  }

  async send (block: Block): Promise<void> {
    while (this.unacked.length >= PUT_WINDOW && this.failure === undefined) await new Promise<void>(resolve => this.waiters.push(resolve))
    if (this.failure !== undefined) throw this.failure
    this.unacked.push(block.cid.toString())
    await this.channel.send({ t: 'block', cid: block.cid.toString(), bytes: block.bytes })
  }

  /** Wait until every block sent is acknowledged; throws if the store refused one or went away. */
  async finish (): Promise<void> {
    while (this.unacked.length > 0 && this.failure === undefined) await new Promise<void>(resolve => this.waiters.push(resolve))
    await this.channel.close().catch(() => {})
    if (this.failure !== undefined) throw this.failure
  }

  abort (): void {
    this.channel.abort(new Error('sender aborted'))
  }

  private async readAcks (): Promise<void> {
    try {
      while (true) {
        const reply = await this.channel.receive({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS * 3) }).catch(err => {
          // Idle with nothing outstanding is fine; the timeout only matters while acks are owed.
          if (this.unacked.length === 0 && err?.name === 'TimeoutError') return 'idle' as const
          throw err
        })
        if (reply === 'idle') continue
        if (reply === undefined) {
          if (this.unacked.length > 0) throw new BlockRefusedError('store closed the stream with blocks unacknowledged')
          return
        }
        if (reply.cid !== this.unacked[0]) throw new BlockRefusedError(`store acknowledged ${reply.cid} out of order`)
        if (reply.t === 'refused') throw new BlockRefusedError(`store refused block ${reply.cid}: ${reply.error}`)
        this.unacked.shift()
        this.wake()
      }
    } catch (err: any) {
      this.failure ??= err
      this.wake()
    }
  }

  private wake (): void {
    for (const resolve of this.waiters.splice(0)) resolve()
  }
}

// /nameless-grid/block-put: a writer streams blocks to a store, PUT_WINDOW of them in flight; the store hashes
// each before keeping it and answers in order. A block whose bytes do not match its CID is refused, nothing of
// it is kept, and the stream ends: the writer may retry on a new one.
import { z } from 'zod'
import type { Stream } from '@libp2p/interface'
import { MessageChannel, bytesField } from '../net/wire.ts'
import { BufferPool } from '../net/buffer-pool.ts'
import type { GridHost } from '../net/host.ts'
import { ProtocolService } from '../net/protocol-service.ts'
import type { PeerAddress } from '../net/dial.ts'
import { openStream } from '../net/dial.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import type { Blockstore } from '../storage/blockstore.ts'
import type { RootCatalog } from '../storage/root-catalog.ts'
import { StoreFullError, checkBlock } from '../storage/blockstore.ts'
import { parseCid } from '../grid/content.ts'
import type { Block } from '../grid/content.ts'
import { MAX_BLOCK_FRAME_BYTES, MAX_BLOCK_STREAMS, POOLED_FRAME_BYTES, PUT_BATCH_BLOCKS, PUT_WINDOW } from '../storage/constants.ts'
import { MAX_BLOCK_BYTES } from '../grid/constants.ts'
import { GridError } from '../net/errors.ts'

export const BLOCK_PUT_PROTOCOL = '/nameless-grid/block-put/1.0.0'

const blockRequest = z.object({ t: z.literal('block'), cid: z.string().max(200), bytes: bytesField(MAX_BLOCK_BYTES) })
export const putRequest = z.discriminatedUnion('t', [
  blockRequest,
  /**
   * The put is whole: list this CID as a root (see root-catalog.ts). Acknowledged in order like a block, and
   * refused, changing nothing, unless the store holds the manifest and every block it lists.
   */
  z.object({ t: z.literal('root'), cid: z.string().max(200) })
])
export const putReply = z.discriminatedUnion('t', [
  z.object({ t: z.literal('stored'), cid: z.string().max(200) }),
  /** `full`: the store is at its --max-size and could not make room; the writer then fails with StoreFullError. */
  z.object({ t: z.literal('refused'), cid: z.string().max(200), error: z.string().max(500), full: z.boolean().optional() })
])
type Request = z.infer<typeof putRequest>
type BlockRequest = z.infer<typeof blockRequest>
type Reply = z.infer<typeof putReply>

export class BlockRefusedError extends GridError {
  name = 'BlockRefusedError'
  readonly status = 502
}

/** A store owed acknowledgements for ACK_TIMEOUT_MS and sent none: its host is likely gone without a word. */
export class StoreSilentError extends GridError {
  name = 'StoreSilentError'
  readonly status = 504
}

export interface BlockPutComponents {
  host: GridHost
  blocks: Blockstore
  /** Where a put's root message lists its root; without it, root messages are refused. */
  roots?: RootCatalog
}

/** The store's side: checks and keeps the blocks writers send, at most MAX_BLOCK_STREAMS streams per connection. */
export class BlockPutService extends ProtocolService<BlockPutComponents> {
  private readonly pool: BufferPool

  constructor (components: BlockPutComponents) {
    super(components, BLOCK_PUT_PROTOCOL, MAX_BLOCK_STREAMS)
    // Blocks arrive in buffers used again once LevelDB has them (see buffer-pool.ts); one pool for every writer,
    // holding a window's worth. Sized for the grid's own blocks, not the largest a peer may send: with buffers of
    // MAX_BLOCK_FRAME_BYTES the pool alone held 40 MiB, and that much long-lived buffer memory sent V8 into
    // back-to-back mark-compacts for whole puts (a third more store CPU), where 20 MiB did so only rarely.
    this.pool = new BufferPool(POOLED_FRAME_BYTES, PUT_WINDOW + PUT_BATCH_BLOCKS)
  }

  protected async serve (stream: Stream): Promise<void> {
    const { blocks, roots } = this.components
    const { pool } = this
    const channel = new MessageChannel<Request, Reply>(stream, putRequest, { maxMessageBytes: MAX_BLOCK_FRAME_BYTES, pool })
    // Reading the next blocks overlaps writing the last ones: whatever arrived while a write ran goes in the next
    // batch (group commit), so LevelDB sees a few large writes instead of one per block.
    const arrived: Request[] = []
    let wake: (() => void) | undefined
    let reading = true
    let readFailure: Error | undefined
    const reader = (async () => {
      try {
        for await (const request of channel) {
          arrived.push(request)
          wake?.()
          // The writer's window (PUT_WINDOW) bounds this; a peer that ignores it is simply not read further.
          while (arrived.length >= PUT_WINDOW) await new Promise<void>(resolve => { wake = resolve })
        }
      } catch (err: any) {
        readFailure = err
      } finally {
        reading = false
        wake?.()
      }
    })()
    // One batch is written while the next is checked: LevelDB copies and logs on its own threads while this one
    // hashes. A batch's acknowledgements go out before the next batch is written, so they stay in order.
    // `writing` settles to false once the store has said why it stops (a full store) and closed its side.
    let writing: Promise<boolean> = Promise.resolve(true)
    const write = async (batch: BlockRequest[], checked: Block[], good: number, refusal: Error | undefined): Promise<boolean> => {
      try {
        await blocks.putMany(checked, { checked: true })
      } catch (err: any) {
        // A full store (StoreFullError) says so and ends its side cleanly, so the writer reads why.
        await channel.send({ t: 'refused', cid: batch[0].cid, error: err.message, ...(err instanceof StoreFullError ? { full: true } : {}) })
        await channel.close().catch(() => {})
        return false
      }
      // LevelDB copied the blocks into its batch: their buffers may take the next ones.
      for (const request of batch) channel.release(request.bytes)
      for (const request of batch.slice(0, good)) await channel.send({ t: 'stored', cid: request.cid })
      if (refusal !== undefined) {
        await channel.send({ t: 'refused', cid: batch[good].cid, error: refusal.message })
        throw refusal
      }
      return true
    }
    try {
      while (true) {
        if (arrived.length === 0) {
          if (!reading) break
          await new Promise<void>(resolve => { wake = resolve })
          continue
        }
        const taken = arrived.splice(0, PUT_BATCH_BLOCKS)
        wake?.()
        // A root message ends a put: the blocks before it are written first, then the root is listed.
        const cut = taken.findIndex(r => r.t === 'root')
        if (cut === 0) {
          arrived.unshift(...taken.slice(1))
          if (!await writing) return
          const cid = taken[0].cid
          try {
            if (roots === undefined) throw new Error('this node does not list roots')
            await roots.add(parseCid(cid))
          } catch (err: any) {
            await channel.send({ t: 'refused', cid, error: err.message })
            throw err
          }
          await channel.send({ t: 'stored', cid })
          continue
        }
        if (cut > 0) arrived.unshift(...taken.splice(cut))
        const batch = taken as BlockRequest[]
        let good = batch.length
        let refusal: Error | undefined
        const checked: Block[] = []
        for (const [i, request] of batch.entries()) {
          try {
            checked.push(checkBlock(parseCid(request.cid), request.bytes))
          } catch (err: any) {
            good = i
            refusal = err
            break
          }
        }
        if (!await writing) return
        writing = write(batch, checked, good, refusal)
        // Handled here and again when awaited: a failure while this loop waits for blocks must not go unhandled.
        writing.catch(() => {})
        if (refusal !== undefined) await writing
      }
      if (!await writing) return
      await reader
      if (readFailure !== undefined) throw readFailure
      await channel.close()
    } catch (err: any) {
      channel.abort(err)
    }
  }
}

/** How long a store may owe an acknowledgement before a writer gives it up (see BlockSender's ackTimeoutMs). */
export const ACK_TIMEOUT_MS = REQUEST_TIMEOUT_MS * 3

/**
 * Sends blocks to one store with a window of acknowledgements outstanding. A store that owes an acknowledgement
 * for `ackTimeoutMs` (ACK_TIMEOUT_MS by default) with none coming fails the sender with StoreSilentError: a store
 * whose host died without closing the connection is given up after that long.
 */
export class BlockSender {
  private readonly channel: MessageChannel<Reply, Request>
  private readonly ackTimeoutMs: number
  /**
   * When the store last made progress: its last acknowledgement, or the send that found nothing outstanding. The
   * timeout counts from here, not from when the read began: a read begun while idle, long before the next send,
   * would otherwise time out a store that was answering promptly (seen with a put resuming after its other store
   * died).
   */
  private progressAt = Date.now()
  private readonly unacked: string[] = []
  private readonly waiters: Array<() => void> = []
  private failure: Error | undefined
  /** Messages sent and acknowledged so far, and who waits for the count to reach a mark (see acknowledged()). */
  private sentCount = 0
  private ackedCount = 0
  private marks: Array<{ at: number, resolve: () => void }> = []

  private constructor (channel: MessageChannel<Reply, Request>, ackTimeoutMs: number) {
    this.channel = channel
    this.ackTimeoutMs = ackTimeoutMs
    // Acknowledgements are read for as long as the stream lives; failures land in `failure`.
    void this.readAcks()
  }

  /** `ackTimeoutMs`: a test knob; production uses ACK_TIMEOUT_MS. */
  static async open (host: GridHost, store: PeerAddress, options: { ackTimeoutMs?: number } = {}): Promise<BlockSender> {
    const stream = await openStream(host, store, BLOCK_PUT_PROTOCOL)
    return new BlockSender(new MessageChannel<Reply, Request>(stream, putReply, { maxMessageBytes: MAX_BLOCK_FRAME_BYTES }), options.ackTimeoutMs ?? ACK_TIMEOUT_MS)
  }

  /** Note an outstanding message: when none was owed before, the store's time to answer starts now. */
  private owe (cid: string): void {
    if (this.unacked.length === 0) this.progressAt = Date.now()
    this.unacked.push(cid)
    this.sentCount++
  }

  async send (block: Block): Promise<void> {
    while (this.unacked.length >= PUT_WINDOW && this.failure === undefined) await new Promise<void>(resolve => this.waiters.push(resolve))
    if (this.failure !== undefined) throw this.failure
    this.owe(block.cid.toString())
    await this.channel.send({ t: 'block', cid: block.cid.toString(), bytes: block.bytes })
  }

  /**
   * Resolves once the store acknowledged everything sent so far, or the stream failed: either way nothing reads
   * those blocks' bytes any more, and their buffers may be used again. Never rejects (failures surface in
   * send and finish).
   */
  acknowledged (): Promise<void> {
    if (this.ackedCount >= this.sentCount || this.failure !== undefined) return Promise.resolve()
    return new Promise(resolve => this.marks.push({ at: this.sentCount, resolve }))
  }

  /** Name the root of what was sent (after its last block): the store lists it once it checks it holds all of it. */
  async sendRoot (cid: string): Promise<void> {
    while (this.unacked.length >= PUT_WINDOW && this.failure === undefined) await new Promise<void>(resolve => this.waiters.push(resolve))
    if (this.failure !== undefined) throw this.failure
    this.owe(cid)
    await this.channel.send({ t: 'root', cid })
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
        // While acknowledgements are owed, wait only what is left of the store's time since its last progress.
        const wait = this.unacked.length === 0 ? this.ackTimeoutMs : Math.max(1, this.progressAt + this.ackTimeoutMs - Date.now())
        const reply = await this.channel.receive({ signal: AbortSignal.timeout(wait) }).catch(err => {
          if (err?.name !== 'TimeoutError') throw err
          // Idle with nothing outstanding is fine, and so is a store that answered within its time.
          if (this.unacked.length === 0 || Date.now() - this.progressAt < this.ackTimeoutMs) return 'idle' as const
          throw new StoreSilentError(`the store acknowledged nothing for ${Math.round(this.ackTimeoutMs / 1000)} s with ${this.unacked.length} message(s) outstanding`)
        })
        if (reply === 'idle') continue
        if (reply === undefined) {
          if (this.unacked.length > 0) throw new BlockRefusedError('store closed the stream with blocks unacknowledged')
          return
        }
        if (reply.cid !== this.unacked[0]) throw new BlockRefusedError(`store acknowledged ${reply.cid} out of order`)
        if (reply.t === 'refused') {
          // A full store is the user's to fix (a bigger --max-size, another store): said as such, not as a peer fault.
          if (reply.full === true) throw new StoreFullError(`a store is full: ${reply.error}`)
          throw new BlockRefusedError(`store refused block ${reply.cid}: ${reply.error}`)
        }
        this.unacked.shift()
        this.ackedCount++
        this.progressAt = Date.now()
        this.wake()
      }
    } catch (err: any) {
      this.failure ??= err
      // A send waiting for the stream to drain would wait forever on a store that went silent: end the stream so
      // it fails now (seen with a store host killed mid-put).
      this.channel.abort(err)
      this.wake()
    }
  }

  private wake (): void {
    for (const resolve of this.waiters.splice(0)) resolve()
    const reached = this.failure !== undefined ? this.marks : this.marks.filter(m => m.at <= this.ackedCount)
    if (reached.length === 0) return
    this.marks = this.marks.filter(m => !reached.includes(m))
    for (const mark of reached) mark.resolve()
  }
}

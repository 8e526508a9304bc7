// /nameless-grid/block-get: "give me the content named by this CID, from byte A to byte B". The holder sends
// the manifest (if any) and then whole blocks in order, covering the range; flow control on the stream bounds
// memory on both sides. The reader checks the manifest against the CID and every block against the manifest,
// so a holder can withhold content but never make a reader accept wrong bytes.
import { z } from 'zod'
import type { Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { MessageChannel, bytesField } from '../net/wire.ts'
import type { GridHost } from '../net/host.ts'
import { ProtocolService } from '../net/protocol-service.ts'
import type { PeerAddress } from '../net/dial.ts'
import { openStream } from '../net/dial.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import type { Blockstore } from '../storage/blockstore.ts'
import { decodeManifest, isManifestCid, matches, parseCid } from '../grid/content.ts'
import type { Manifest } from '../grid/content.ts'
import { MAX_BLOCK_FRAME_BYTES, MAX_BLOCK_STREAMS } from '../storage/constants.ts'
import { MAX_BLOCK_BYTES } from '../grid/constants.ts'
import { GridError } from '../net/errors.ts'

export const BLOCK_GET_PROTOCOL = '/nameless-grid/block-get/1.0.0'

const offset = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
export const getRequest = z.object({ t: z.literal('get'), cid: z.string().max(200), from: offset, to: offset.optional() })
export const getReply = z.discriminatedUnion('t', [
  z.object({ t: z.literal('manifest'), bytes: bytesField(MAX_BLOCK_BYTES) }),
  z.object({ t: z.literal('block'), bytes: bytesField(MAX_BLOCK_BYTES) }),
  /** The holder lacks this content (or, mid-way, one of its blocks). */
  z.object({ t: z.literal('unknown'), cid: z.string().max(200) }),
  z.object({ t: z.literal('end') })
])
type Request = z.infer<typeof getRequest>
type Reply = z.infer<typeof getReply>

export class ContentUnavailableError extends GridError {
  name = 'ContentUnavailableError'
  readonly status = 404
}

export class WrongBytesError extends GridError {
  name = 'WrongBytesError'
  readonly status = 502
}

export interface BlockGetComponents {
  host: GridHost
  blocks: Blockstore
}

export interface BlockGetInit {
  /** Told which content a reader asked for (the store's roots go least recently used first). */
  read?: (cid: string) => void
}

/** The holder's side: serves the content in `blocks` to any peer, at most MAX_BLOCK_STREAMS streams per connection. */
export class BlockGetService extends ProtocolService<BlockGetComponents> {
  private readonly init: BlockGetInit

  constructor (components: BlockGetComponents, init: BlockGetInit = {}) {
    super(components, BLOCK_GET_PROTOCOL, MAX_BLOCK_STREAMS)
    this.init = init
  }

  protected async serve (stream: Stream): Promise<void> {
    const { blocks } = this.components
    const { read } = this.init
    const channel = new MessageChannel<Request, Reply>(stream, getRequest, { maxMessageBytes: MAX_BLOCK_FRAME_BYTES })
    const gone = new AbortController()
    stream.addEventListener('close', () => gone.abort(), { once: true })
    try {
      const request = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
      const cid = parseCid(request.cid)
      const root = await blocks.get(cid)
      if (root !== undefined) read?.(request.cid)
      if (root === undefined) {
        await channel.send({ t: 'unknown', cid: request.cid })
      } else if (!isManifestCid(cid)) {
        blocks.served += root.length
        await channel.send({ t: 'block', bytes: root })
        await channel.send({ t: 'end' })
      } else {
        await channel.send({ t: 'manifest', bytes: root })
        const manifest = decodeManifest(root)
        const { first, last } = blocksFor(manifest, request.from, request.to ?? manifest.size)
        for (let i = first; i >= 0 && i <= last && !gone.signal.aborted; i++) {
          const bytes = await blocks.get(manifest.blocks[i].cid)
          if (bytes === undefined) {
            await channel.send({ t: 'unknown', cid: manifest.blocks[i].cid.toString() })
            break
          }
          blocks.served += bytes.length
          await channel.send({ t: 'block', bytes })
        }
        await channel.send({ t: 'end' })
      }
      await channel.close()
    } catch (err: any) {
      channel.abort(err)
    }
  }
}

/** Which blocks of a manifest cover bytes [from, to). */
export function blocksFor (manifest: Manifest, from: number, to: number): { first: number, last: number, skip: number } {
  let at = 0
  let first = -1
  let skip = 0
  let last = -1
  for (const [i, block] of manifest.blocks.entries()) {
    if (first < 0 && from < at + block.size) { first = i; skip = from - at }
    if (to > at) last = i
    at += block.size
  }
  return { first, last, skip }
}

export interface Range {
  from?: number
  /** Exclusive end; the content's end when absent. */
  to?: number
}

/** Verified bytes of `cid` in [from, to) from one holder. Throws ContentUnavailableError if it lacks them. */
export async function * fetchFrom (host: GridHost, holder: PeerAddress, cid: CID, range: Range = {}, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const from = range.from ?? 0
  const stream = await openStream(host, holder, BLOCK_GET_PROTOCOL, signal)
  const channel = new MessageChannel<Reply, Request>(stream, getReply, { maxMessageBytes: MAX_BLOCK_FRAME_BYTES })
  const stop = (): void => { channel.abort(new Error('reader stopped')) }
  signal?.addEventListener('abort', stop, { once: true })
  try {
    await channel.send({ t: 'get', cid: cid.toString(), from, to: range.to })
    const first = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
    if (first.t === 'unknown') throw new ContentUnavailableError(`${holder.peer} does not hold ${cid}`)
    if (!isManifestCid(cid)) {
      if (first.t !== 'block' || !matches(cid, first.bytes)) throw new WrongBytesError(`${holder.peer} sent bytes that are not ${cid}`)
      const to = Math.min(range.to ?? first.bytes.length, first.bytes.length)
      if (from < to) yield first.bytes.subarray(from, to)
      return
    }
    if (first.t !== 'manifest' || !matches(cid, first.bytes)) throw new WrongBytesError(`${holder.peer} sent a manifest that is not ${cid}`)
    const manifest = decodeManifest(first.bytes)
    const to = Math.min(range.to ?? manifest.size, manifest.size)
    const { first: firstBlock, last, skip } = blocksFor(manifest, from, to)
    let position = from - skip
    for (let i = firstBlock; i >= 0 && i <= last; i++) {
      const reply = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
      if (reply.t === 'unknown') throw new ContentUnavailableError(`${holder.peer} lacks block ${reply.cid} of ${cid}`)
      const entry = manifest.blocks[i]
      if (reply.t !== 'block' || reply.bytes.length !== entry.size || !matches(entry.cid, reply.bytes)) {
        throw new WrongBytesError(`${holder.peer} sent wrong bytes for block ${i} of ${cid}`)
      }
      const start = Math.max(0, from - position)
      const end = Math.min(reply.bytes.length, to - position)
      if (start < end) yield reply.bytes.subarray(start, end)
      position += reply.bytes.length
    }
  } finally {
    signal?.removeEventListener('abort', stop)
    channel.abort(new Error('done'))
  }
}

/** Size and sha256 of `cid` from one holder, reading only its root (the manifest, or the single block). */
export async function fetchRoot (host: GridHost, holder: PeerAddress, cid: CID, signal?: AbortSignal): Promise<{ size: number, sha256: string }> {
  const stream = await openStream(host, holder, BLOCK_GET_PROTOCOL, signal)
  const channel = new MessageChannel<Reply, Request>(stream, getReply, { maxMessageBytes: MAX_BLOCK_FRAME_BYTES })
  try {
    await channel.send({ t: 'get', cid: cid.toString(), from: 0, to: 0 })
    const first = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
    if (first.t === 'unknown') throw new ContentUnavailableError(`${holder.peer} does not hold ${cid}`)
    if ((first.t !== 'block' && first.t !== 'manifest') || !matches(cid, first.bytes)) throw new WrongBytesError(`${holder.peer} sent bytes that are not ${cid}`)
    return rootInfo(cid, first.bytes)
  } finally {
    channel.abort(new Error('done'))
  }
}

/** Size and sha256 of content from its verified root bytes. */
export function rootInfo (cid: CID, root: Uint8Array): { size: number, sha256: string } {
  if (!isManifestCid(cid)) return { size: root.length, sha256: Buffer.from(cid.multihash.digest).toString('hex') }
  const manifest = decodeManifest(root)
  return { size: manifest.size, sha256: manifest.sha256 }
}

// How content is named: split into blocks of BLOCK_BYTES, each a raw-codec CIDv1 of its sha2-256 (IPFS's
// "raw leaves"); a small dag-cbor manifest lists them, and the manifest's CID names the content. Content that
// fits in one block is named by that block's CID alone. The whole content's sha256 is kept in the manifest too,
// for users who check downloads with `sha256sum`.
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import * as dagCbor from '@ipld/dag-cbor'
import { z } from 'zod'
import { BLOCK_BYTES, MAX_BLOCK_BYTES, MAX_MANIFEST_BLOCKS } from './constants.ts'
import { GridError } from '../net/errors.ts'

export class BadCidError extends GridError {
  name = 'BadCidError'
}

export class BadManifestError extends GridError {
  name = 'BadManifestError'
  readonly status = 502
}

export const MANIFEST_TYPE = 'nameless-grid/manifest@1'

export interface Manifest {
  type: typeof MANIFEST_TYPE
  /** Bytes of the whole content. */
  size: number
  /** sha256 of the whole content, hex. */
  sha256: string
  /** The blocks in order, with their sizes (so a byte range maps to blocks without fetching them). */
  blocks: Array<{ cid: CID, size: number }>
}

/** The CID a block of bytes must have. */
export function blockCid (bytes: Uint8Array): CID {
  const digest = sha256.digest(bytes)
  if (digest instanceof Promise) throw new Error('sha256 must be synchronous here')
  return CID.createV1(raw.code, digest)
}

/** Whether `bytes` are what `cid` names: the receiver's check on every block, on write and on read. */
export function matches (cid: CID, bytes: Uint8Array): boolean {
  if (cid.multihash.code !== sha256.code) return false
  const digest = createHash('sha256').update(bytes).digest()
  return Buffer.compare(digest, cid.multihash.digest) === 0
}

/** Parse a CID from a user or a peer: CIDv1, sha2-256, raw or dag-cbor; anything else is refused. */
export function parseCid (text: string): CID {
  let cid: CID
  try {
    cid = CID.parse(text)
  } catch {
    throw new BadCidError(`${text.slice(0, 100)} is not a CID`)
  }
  if (cid.version !== 1 || cid.multihash.code !== sha256.code || (cid.code !== raw.code && cid.code !== dagCbor.code)) {
    throw new BadCidError(`${text.slice(0, 100)} is not a CIDv1 sha2-256 of raw or dag-cbor content`)
  }
  return cid
}

export function isManifestCid (cid: CID): boolean {
  return cid.code === dagCbor.code
}

export function encodeManifest (manifest: Manifest): { cid: CID, bytes: Uint8Array } {
  const bytes = dagCbor.encode(manifest)
  const digest = sha256.digest(bytes)
  if (digest instanceof Promise) throw new Error('sha256 must be synchronous here')
  return { cid: CID.createV1(dagCbor.code, digest), bytes }
}

const manifestSchema = z.object({
  type: z.literal(MANIFEST_TYPE),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  blocks: z.array(z.object({
    cid: z.custom<CID>(c => CID.asCID(c) !== null && (c as CID).code === raw.code, 'a raw block CID'),
    size: z.number().int().min(1).max(MAX_BLOCK_BYTES)
  })).max(MAX_MANIFEST_BLOCKS)
}).refine(m => m.blocks.reduce((n, b) => n + b.size, 0) === m.size, 'block sizes must add up to the size')

/** Decode a manifest block, checking its shape: a manifest comes from peers like any other bytes. */
export function decodeManifest (bytes: Uint8Array): Manifest {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err: any) {
    throw new BadManifestError(`manifest is not dag-cbor: ${err.message}`)
  }
  const parsed = manifestSchema.safeParse(value)
  if (!parsed.success) throw new BadManifestError(`manifest is malformed: ${parsed.error.issues[0]?.message}`)
  return parsed.data as Manifest
}

/** One block of content as the chunker makes it. */
export interface Block {
  cid: CID
  bytes: Uint8Array
}

/** What a first pass over content found (client/content/name.ts nameOf): its name, and each block's CID in order. */
export interface Named {
  cid: string
  size: number
  sha256: string
  blocks: CID[]
}

/**
 * Content read again for sending is not what was named: a file or directory changed between the two passes. The
 * stores refuse the blocks that no longer match their CIDs, so nothing of it is ever named.
 */
export class ContentChangedError extends GridError {
  name = 'ContentChangedError'
  readonly status = 409
}

/**
 * Cut a byte stream into blocks of exactly `blockBytes` (the last one shorter), hashing as it goes, without
 * ever holding more than one block. `done()` gives the whole content's size and sha256 afterwards.
 *
 * Given `named` (a first pass already hashed the same content), it hashes nothing: each block takes its CID from
 * the list, and whoever receives a block checks it against that CID, as they check every block. Hashing twice
 * cost `grid put` and a worker's artifact push a second of CPU per gigabyte.
 */
export class Chunker {
  private readonly blockBytes: number
  private readonly named: Named | undefined
  private readonly whole = createHash('sha256')
  private size = 0
  private blocks = 0
  /** The block being filled; made on first use (a log of a few lines never fills one: GC of a 1 MiB buffer per log). */
  private buffer: Uint8Array | undefined
  private filled = 0

  constructor (blockBytes: number = BLOCK_BYTES, named?: Named) {
    if (blockBytes < 1 || blockBytes > MAX_BLOCK_BYTES) throw new RangeError(`block size must be 1 to ${MAX_BLOCK_BYTES} bytes`)
    this.blockBytes = blockBytes
    this.named = named
  }

  /** Blocks completed by this chunk of input. A block the chunk holds whole is a view of it, not a copy. */
  * push (chunk: Uint8Array): Generator<Block> {
    if (this.named === undefined) this.whole.update(chunk)
    this.size += chunk.length
    if (this.named !== undefined && this.size > this.named.size) throw this.changed(`is longer than the ${this.named.size} bytes first read`)
    let at = 0
    while (at < chunk.length) {
      // Aligned input (a file read in BLOCK_BYTES pieces) becomes blocks with no copy at all: sources hand over
      // the chunks they yield (streams never reuse a chunk once pushed).
      if (this.filled === 0 && chunk.length - at >= this.blockBytes) {
        const bytes = chunk.subarray(at, at + this.blockBytes)
        at += this.blockBytes
        yield { cid: this.cidOf(bytes), bytes }
        continue
      }
      const take = Math.min(this.blockBytes - this.filled, chunk.length - at)
      this.buffer ??= new Uint8Array(this.blockBytes)
      this.buffer.set(chunk.subarray(at, at + take), this.filled)
      this.filled += take
      at += take
      if (this.filled === this.blockBytes) yield this.cut()
    }
  }

  /** The last, short block (if any) and the whole content's size and sha256. */
  finish (): { last: Block | undefined, size: number, sha256: string } {
    const last = this.filled > 0 ? this.cut() : undefined
    if (this.named === undefined) return { last, size: this.size, sha256: this.whole.digest('hex') }
    if (this.size !== this.named.size) throw this.changed(`is ${this.size} bytes, not the ${this.named.size} first read`)
    return { last, size: this.size, sha256: this.named.sha256 }
  }

  private cut (): Block {
    // A full buffer is handed over as the block and a new one started: one copy per byte, not two.
    const buffer = this.buffer!
    const bytes = this.filled === this.blockBytes ? buffer : buffer.slice(0, this.filled)
    if (bytes === buffer) this.buffer = undefined
    this.filled = 0
    return { cid: this.cidOf(bytes), bytes }
  }

  private cidOf (bytes: Uint8Array): CID {
    const n = this.blocks++
    if (this.named === undefined) return blockCid(bytes)
    // Sizes agree here (a longer read failed in push): block boundaries fall where they did the first time.
    return this.named.blocks[n]
  }

  private changed (how: string): ContentChangedError {
    return new ContentChangedError(`the content changed after it was named ${this.named!.cid}: it ${how}`)
  }
}

/** Content as named: what `grid get CID` fetches by, and what a manifest of it lists. */
export interface NamedContent {
  cid: CID
  size: number
  sha256: string
  /** Every block's CID and size in order (none for empty content): what the manifest lists. */
  blocks: Array<{ cid: CID, size: number }>
  /**
   * The manifest naming content of more than one block, to be kept like a block and after all of them: whoever
   * holds a manifest holds every block it lists.
   */
  manifest?: Block
}

export interface ContentNamerOptions {
  /** @default BLOCK_BYTES */
  blockBytes?: number
  /** What a first pass over the same content found: nothing is hashed again (see Chunker). */
  named?: Named
}

/**
 * Names content as it passes, without holding more than a block of it: the one place that decides a name, so a
 * put, a first pass (nameOf), a store sealing a log and a worker writing one give the same bytes the same CID.
 * The content's name is the single block's own CID when there is exactly one, a manifest's otherwise; empty
 * content is named by the empty block, which must be stored like any other to be fetched.
 */
export class ContentNamer {
  private readonly chunker: Chunker
  private readonly listed: Array<{ cid: CID, size: number }> = []

  constructor (options: ContentNamerOptions = {}) {
    this.chunker = new Chunker(options.blockBytes, options.named)
  }

  /** Blocks completed by this chunk of input, each to be kept by whoever keeps the content (Chunker.push). */
  * push (chunk: Uint8Array): Generator<Block> {
    for (const block of this.chunker.push(chunk)) {
      this.listed.push({ cid: block.cid, size: block.bytes.length })
      yield block
    }
  }

  /** Take a chunk of content whose blocks are kept elsewhere (a worker's log: its stores cut their own). */
  add (chunk: Uint8Array): void {
    for (const _block of this.push(chunk)) continue
  }

  /**
   * The name, and `tail`: the blocks to keep that push did not give, namely the last short block, or the empty
   * block for empty content. ContentChangedError if the content is not what `named` said.
   */
  finish (): NamedContent & { tail: Block[] } {
    const { last, size, sha256: sha256Hex } = this.chunker.finish()
    if (last !== undefined) this.listed.push({ cid: last.cid, size: last.bytes.length })
    const blocks = this.listed
    const tail = last !== undefined ? [last] : blocks.length === 0 ? [{ cid: blockCid(new Uint8Array(0)), bytes: new Uint8Array(0) }] : []
    if (blocks.length <= 1) return { cid: (blocks[0] ?? tail[0]).cid, size, sha256: sha256Hex, blocks, tail }
    const manifest = encodeManifest({ type: MANIFEST_TYPE, size, sha256: sha256Hex, blocks })
    return { cid: manifest.cid, size, sha256: sha256Hex, blocks, manifest, tail }
  }
}

export interface NameContentOptions extends ContentNamerOptions {
  /**
   * Given every block of the content in order, the last one included, and awaited before the next is cut; not
   * the manifest, which the caller keeps once every block it lists is kept.
   */
  keep?: (block: Block) => void | Promise<void>
}

/** Name content read from `source` (ContentNamer), handing each block to `keep` as it is cut. */
export async function nameContent (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: NameContentOptions = {}): Promise<NamedContent> {
  const namer = new ContentNamer(options)
  for await (const chunk of source) {
    for (const block of namer.push(chunk)) await options.keep?.(block)
  }
  const { tail, ...named } = namer.finish()
  for (const block of tail) await options.keep?.(block)
  return named
}

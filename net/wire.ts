// The framing every grid protocol speaks: length-prefixed CBOR messages, each checked against a schema
// before the protocol sees it. CBOR rather than JSON because log appends and blocks carry raw bytes.
//
// Frames are read here rather than through @libp2p/utils' lpStream: its reader buffers whatever arrives and aborts
// the stream past 4 MiB, while yamux grants the sender more window as soon as bytes arrive, not when they are
// read. A slow reader (a store writing blocks to LevelDB) therefore killed fast transfers. This reader pauses the
// stream once it holds `bufferBytes` unread, which stops yamux's window updates and so the sender: memory per
// stream stays at `bufferBytes` plus one yamux window, however fast the peer writes.
import { randomBytes } from 'node:crypto'
import { encode, decode, Tokenizer, Token, Type } from 'cborg'
import { Uint8ArrayList } from 'uint8arraylist'
import * as varint from 'uint8-varint'
import type { AbortOptions, Stream } from '@libp2p/interface'
import { z } from 'zod'
import { MAX_MESSAGE_BYTES, MAX_PREFIX_BYTES, ZERO_COPY_BYTES } from './constants.ts'
import { sendWithBackpressure } from './backpressure.ts'
import type { BufferPool } from './buffer-pool.ts'
import { GridError } from './errors.ts'

/** A peer sent bytes that are not a valid message of the protocol: the stream is dropped, the node goes on. */
export class BadMessageError extends GridError {
  name = 'BadMessageError'
  readonly status = 502
}

export interface ChannelInit {
  /** @default MAX_MESSAGE_BYTES */
  maxMessageBytes?: number
  /** Unread bytes held before the stream is paused. @default twice maxMessageBytes */
  bufferBytes?: number
  /**
   * Large frames (ZERO_COPY_BYTES up to the pool's buffer size) are put together in buffers from this pool; the
   * receiver gives each back with `release` once done with the message (a store, after writing the block).
   */
  pool?: BufferPool
}

/**
 * A stream seen as a sequence of typed messages. `In` is what the peer may send (validated), `Out` what we send.
 * Sends are serialised so concurrent callers never interleave frames.
 */
export class MessageChannel<In, Out> {
  readonly stream: Stream
  private readonly schema: z.ZodType<In>
  private readonly maxMessageBytes: number
  private readonly bufferBytes: number
  private sending: Promise<void> = Promise.resolve()
  private readonly unread = new Uint8ArrayList()
  /** The peer closed its side (cleanly: `failure` unset) or the stream died (`failure` set). */
  private ended = false
  private failure: Error | undefined
  private wake: (() => void) | undefined
  private pausing = false
  private readonly pool: BufferPool | undefined
  /** A large frame being put together in a pool buffer as its bytes arrive (see ChannelInit.pool). */
  private partial: { buffer: Uint8Array, length: number, filled: number } | undefined
  /** Large frames put together and not yet read, in order; they come before anything still in `unread`. */
  private readonly ready: Uint8Array[] = []
  private readyBytes = 0

  constructor (stream: Stream, schema: z.ZodType<In>, init: ChannelInit = {}) {
    this.stream = stream
    this.schema = schema
    this.maxMessageBytes = init.maxMessageBytes ?? MAX_MESSAGE_BYTES
    this.bufferBytes = init.bufferBytes ?? 2 * this.maxMessageBytes
    this.pool = init.pool
    stream.addEventListener('message', event => {
      this.unread.append(event.data)
      this.assemble()
      // Paused a moment later, not here: resume() hands over what arrived while paused by calling this listener,
      // then grants the sender a new window; a pause from inside that call would be undone by the grant, and the
      // stream would fill past its read buffer and abort.
      if (this.held >= this.bufferBytes && !this.pausing) {
        this.pausing = true
        queueMicrotask(() => {
          this.pausing = false
          if (this.held >= this.bufferBytes && stream.readStatus === 'readable') stream.pause()
        })
      }
      this.notify()
    })
    stream.addEventListener('remoteCloseWrite', () => { this.ended = true; this.notify() })
    stream.addEventListener('close', event => {
      this.ended = true
      if (event.error !== undefined) this.failure ??= event.error
      this.notify()
    })
    if (stream.readStatus === 'closed' || stream.remoteWriteStatus === 'closed') this.ended = true
  }

  /** Queue a message; resolves once it is handed to the transport. */
  send (message: Out, options?: AbortOptions): Promise<void> {
    const parts = encodeParts(message)
    const length = parts.reduce((n, p) => n + p.byteLength, 0)
    const sent = this.sending.then(async () => {
      await sendWithBackpressure(this.stream, new Uint8ArrayList(varint.encode(length), ...parts), options)
    })
    this.sending = sent.catch(() => {})
    return sent
  }

  /** The next message, or undefined when the peer closed its side cleanly. */
  async receive (options?: AbortOptions): Promise<In | undefined> {
    const frame = await this.nextFrame(options)
    if (frame === undefined) return undefined
    return parseMessage(frame, this.schema)
  }

  /** The next message, which must exist: a clean close here is a protocol error. */
  async expect (options?: AbortOptions): Promise<In> {
    const message = await this.receive(options)
    if (message === undefined) throw new BadMessageError('stream ended before the expected message')
    return message
  }

  async * [Symbol.asyncIterator] (): AsyncGenerator<In> {
    while (true) {
      const message = await this.receive()
      if (message === undefined) return
      yield message
    }
  }

  async close (): Promise<void> {
    await this.sending
    await this.stream.close().catch(() => { this.stream.abort(new Error('close failed')) })
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }

  /**
   * Done with a received message whose large byte field is `bytes`: the frame's buffer goes back to the pool (see
   * ChannelInit.pool). Every large field of a message is a view of that one buffer: release once, when done with all.
   */
  release (bytes: Uint8Array): void {
    this.pool?.give(bytes)
  }

  private async nextFrame (options?: AbortOptions): Promise<Uint8Array | undefined> {
    while (true) {
      const frame = this.takeFrame()
      if (frame !== undefined) {
        // Below half the buffer again: let the peer send more.
        if (this.stream.readStatus === 'paused' && this.held < this.bufferBytes / 2) this.stream.resume()
        return frame
      }
      if (this.failure !== undefined) throw this.failure
      if (this.ended) {
        if (this.held === 0 && this.partial === undefined) return undefined
        throw new BadMessageError(`stream ended inside a message (${this.held} bytes of it arrived)`)
      }
      // A frame larger than what we hold while paused cannot complete: never the case, as bufferBytes > max frame.
      if (this.stream.readStatus === 'paused') this.stream.resume()
      await this.more(options)
    }
  }

  /** Bytes received and not yet read as messages. */
  private get held (): number {
    return this.unread.byteLength + this.readyBytes + (this.partial?.filled ?? 0)
  }

  /** One whole frame, or undefined if the next one has not all arrived. */
  private takeFrame (): Uint8Array | undefined {
    const assembled = this.ready.shift()
    if (assembled !== undefined) {
      this.readyBytes -= assembled.byteLength
      return assembled
    }
    if (this.partial !== undefined || this.unread.byteLength === 0) return undefined
    const length = this.frameLength()
    if (length === undefined) return undefined
    const prefix = varint.encodingLength(length)
    if (this.unread.byteLength < prefix + length) return undefined
    const frame = this.unread.subarray(prefix, prefix + length)
    this.unread.consume(prefix + length)
    // A small frame read: a large one behind it can now be put together.
    this.assemble()
    return frame
  }

  /** The length the next frame in `unread` announces; undefined until its prefix has arrived. */
  private frameLength (): number | undefined {
    let length: number
    try {
      length = varint.decode(this.unread)
    } catch (err) {
      if (err instanceof RangeError && this.unread.byteLength < MAX_PREFIX_BYTES) return undefined
      throw new BadMessageError('unreadable message length')
    }
    if (length > this.maxMessageBytes) throw new BadMessageError(`message larger than ${this.maxMessageBytes} bytes`)
    return length
  }

  /**
   * With a pool: move the bytes of large frames out of `unread` into pool buffers as they arrive (the one copy a
   * frame spread over many transport chunks needs anyway), so those chunks are garbage at once instead of waiting
   * in `unread` for the rest of their frame. Small frames, and anything malformed, stay in `unread` for takeFrame.
   */
  private assemble (): void {
    const pool = this.pool
    if (pool === undefined) return
    while (true) {
      if (this.partial === undefined) {
        if (this.unread.byteLength === 0) return
        let length: number | undefined
        try {
          length = this.frameLength()
        } catch {
          return
        }
        if (length === undefined || length < ZERO_COPY_BYTES || length > pool.size) return
        this.unread.consume(varint.encodingLength(length))
        this.partial = { buffer: pool.take(), length, filled: 0 }
      }
      const partial = this.partial
      let copied = 0
      for (const chunk of this.unread) {
        const part = chunk.subarray(0, partial.length - partial.filled)
        partial.buffer.set(part, partial.filled)
        partial.filled += part.byteLength
        copied += part.byteLength
        if (partial.filled === partial.length) break
      }
      this.unread.consume(copied)
      if (partial.filled < partial.length) return
      this.partial = undefined
      const frame = partial.buffer.subarray(0, partial.length)
      this.ready.push(frame)
      this.readyBytes += frame.byteLength
    }
  }

  private async more (options?: AbortOptions): Promise<void> {
    const signal = options?.signal
    signal?.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { this.wake = undefined; reject(signal?.reason) }
      this.wake = () => {
        this.wake = undefined
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  private notify (): void {
    this.wake?.()
  }
}

/**
 * `encode(message)` as pieces whose concatenation is exactly its bytes, with a large byte field (a block, a log
 * batch) left in place instead of copied: cborg copies every byte string into one new buffer, and at a megabyte
 * a block that copy and its garbage cost a bulk transfer much of its speed. The field is encoded as a unique
 * 16-byte marker, found again in the output and replaced by the CBOR byte-string header and the bytes themselves.
 */
export function encodeParts (message: unknown): Uint8Array[] {
  if (message === null || typeof message !== 'object') return [encode(message)]
  let field: string | undefined
  for (const [key, value] of Object.entries(message)) {
    if (value instanceof Uint8Array && value.byteLength >= ZERO_COPY_BYTES && (field === undefined || value.byteLength > (message as any)[field].byteLength)) field = key
  }
  if (field === undefined) return [encode(message)]
  const bytes: Uint8Array = (message as any)[field]
  const marker = randomBytes(16)
  const encoded = encode({ ...message, [field]: marker })
  const needle = Buffer.concat([Buffer.from([0x50]), marker])
  const at = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength).indexOf(needle)
  if (at < 0) return [encode(message)]
  return [encoded.subarray(0, at), byteStringHeader(bytes.byteLength), bytes, encoded.subarray(at + needle.length)]
}

/** CBOR major type 2 (byte string) header for `length` bytes. */
function byteStringHeader (length: number): Uint8Array {
  if (length < 24) return Uint8Array.of(0x40 + length)
  if (length < 0x100) return Uint8Array.of(0x58, length)
  if (length < 0x10000) return Uint8Array.of(0x59, length >> 8, length & 0xff)
  const header = new Uint8Array(5)
  header[0] = 0x5a
  new DataView(header.buffer).setUint32(1, length)
  return header
}

/** Raw bytes in a message, at most `max` of them. */
export function bytesField (max: number): z.ZodType<Uint8Array> {
  return z.custom<Uint8Array>(b => b instanceof Uint8Array && b.length <= max, `expected at most ${max} bytes`)
}

/** cborg's own defaults, which its tokenizer would be given. */
const CBOR_DECODE_OPTIONS = { strict: false, allowIndefinite: true, allowUndefined: true, allowBigInt: true }

/**
 * cborg's tokenizer, except that a byte string of ZERO_COPY_BYTES or more comes out as a view of the frame
 * instead of a copy (cborg copies every byte string): the receiving half of encodeParts. The view keeps its frame
 * alive for as long as the field is used; a frame that lay whole in one chunk from the transport keeps that
 * chunk, which holds at most the rest of one Noise message (64 KiB) besides.
 */
class ViewTokenizer extends Tokenizer {
  // cborg 6's tokenizer keeps its input and position in `data` and `_pos`; the view tests in test/wire.test.ts
  // fail if a cborg upgrade changes that.
  next (): Token {
    const self = this as unknown as { data: Uint8Array, _pos: number }
    const { data, _pos: at } = self
    // 0x5a: a byte string with a 32-bit length, the form byteStringHeader (and cborg) use from 64 KiB on.
    if (data[at] === 0x5a && at + 5 <= data.length) {
      const length = ((data[at + 1] << 24) | (data[at + 2] << 16) | (data[at + 3] << 8) | data[at + 4]) >>> 0
      if (length >= ZERO_COPY_BYTES && at + 5 + length <= data.length) {
        self._pos = at + 5 + length
        return new Token(Type.bytes, data.subarray(at + 5, at + 5 + length), 5 + length)
      }
    }
    return super.next()
  }
}

export function parseMessage<T> (bytes: Uint8Array, schema: z.ZodType<T>): T {
  let value: unknown
  try {
    const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    value = decode(view, { tokenizer: new ViewTokenizer(view, CBOR_DECODE_OPTIONS) })
  } catch (err: any) {
    throw new BadMessageError(`undecodable message: ${err?.message ?? err}`)
  }
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new BadMessageError(`invalid message: ${issue?.path.join('.') || 'message'}: ${issue?.message}`)
  }
  return parsed.data
}

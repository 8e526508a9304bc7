// The framing every grid protocol speaks: length-prefixed CBOR messages, each checked against a schema
// before the protocol sees it. CBOR rather than JSON because log appends and blocks carry raw bytes.
//
// Frames are read here rather than through @libp2p/utils' lpStream: its reader buffers whatever arrives and aborts
// the stream past 4 MiB, while yamux grants the sender more window as soon as bytes arrive, not when they are
// read. A slow reader (a store writing blocks to LevelDB) therefore killed fast transfers. This reader pauses the
// stream once it holds `bufferBytes` unread, which stops yamux's window updates and so the sender: memory per
// stream stays at `bufferBytes` plus one yamux window, however fast the peer writes.
import { randomBytes } from 'node:crypto'
import { encode, decode } from 'cborg'
import { Uint8ArrayList } from 'uint8arraylist'
import * as varint from 'uint8-varint'
import type { AbortOptions, Stream } from '@libp2p/interface'
import { z } from 'zod'
import { MAX_MESSAGE_BYTES } from './constants.ts'
import { sendWithBackpressure } from './backpressure.ts'

/** A peer sent bytes that are not a valid message of the protocol: the stream is dropped, the node goes on. */
export class BadMessageError extends Error {
  name = 'BadMessageError'
}

export interface ChannelInit {
  /** @default MAX_MESSAGE_BYTES */
  maxMessageBytes?: number
  /** Unread bytes held before the stream is paused. @default twice maxMessageBytes */
  bufferBytes?: number
}

/** A length prefix is a varint; a 10-byte one already describes more than any frame we take. */
const MAX_PREFIX_BYTES = 10

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

  constructor (stream: Stream, schema: z.ZodType<In>, init: ChannelInit = {}) {
    this.stream = stream
    this.schema = schema
    this.maxMessageBytes = init.maxMessageBytes ?? MAX_MESSAGE_BYTES
    this.bufferBytes = init.bufferBytes ?? 2 * this.maxMessageBytes
    stream.addEventListener('message', event => {
      this.unread.append(event.data)
      // Paused a moment later, not here: resume() hands over what arrived while paused by calling this listener,
      // then grants the sender a new window; a pause from inside that call would be undone by the grant, and the
      // stream would fill past its read buffer and abort.
      if (this.unread.byteLength >= this.bufferBytes && !this.pausing) {
        this.pausing = true
        queueMicrotask(() => {
          this.pausing = false
          if (this.unread.byteLength >= this.bufferBytes && stream.readStatus === 'readable') stream.pause()
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

  private async nextFrame (options?: AbortOptions): Promise<Uint8Array | undefined> {
    while (true) {
      const frame = this.takeFrame()
      if (frame !== undefined) {
        // Below half the buffer again: let the peer send more.
        if (this.stream.readStatus === 'paused' && this.unread.byteLength < this.bufferBytes / 2) this.stream.resume()
        return frame
      }
      if (this.failure !== undefined) throw this.failure
      if (this.ended) {
        if (this.unread.byteLength === 0) return undefined
        throw new BadMessageError(`stream ended inside a message (${this.unread.byteLength} bytes of it arrived)`)
      }
      // A frame larger than what we hold while paused cannot complete: never the case, as bufferBytes > max frame.
      if (this.stream.readStatus === 'paused') this.stream.resume()
      await this.more(options)
    }
  }

  /** One whole frame from the unread bytes, or undefined if it has not all arrived. */
  private takeFrame (): Uint8Array | undefined {
    if (this.unread.byteLength === 0) return undefined
    let length: number
    try {
      length = varint.decode(this.unread)
    } catch (err) {
      if (err instanceof RangeError && this.unread.byteLength < MAX_PREFIX_BYTES) return undefined
      throw new BadMessageError('unreadable message length')
    }
    if (length > this.maxMessageBytes) throw new BadMessageError(`message larger than ${this.maxMessageBytes} bytes`)
    const prefix = varint.encodingLength(length)
    if (this.unread.byteLength < prefix + length) return undefined
    const frame = this.unread.subarray(prefix, prefix + length)
    this.unread.consume(prefix + length)
    return frame
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

/** Byte fields at least this large are sent from where they lie rather than copied into the encoding. */
const ZERO_COPY_BYTES = 64 * 1024

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

export function parseMessage<T> (bytes: Uint8Array, schema: z.ZodType<T>): T {
  let value: unknown
  try {
    value = decode(bytes)
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

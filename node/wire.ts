// The framing every grid protocol speaks: length-prefixed CBOR messages, each checked against a schema
// before the protocol sees it. CBOR rather than JSON because log appends and blocks carry raw bytes.
import { encode, decode } from 'cborg'
import { lpStream } from '@libp2p/utils'
import type { LengthPrefixedStream } from '@libp2p/utils'
import type { AbortOptions, Stream } from '@libp2p/interface'
import { z } from 'zod'
import { MAX_MESSAGE_BYTES } from './constants.ts'

/** A peer sent bytes that are not a valid message of the protocol: the stream is dropped, the node goes on. */
export class BadMessageError extends Error {
  name = 'BadMessageError'
}

export interface ChannelInit {
  /** @default MAX_MESSAGE_BYTES */
  maxMessageBytes?: number
}

/**
 * A stream seen as a sequence of typed messages. `In` is what the peer may send (validated), `Out` what we send.
 * Sends are serialised so concurrent callers never interleave frames.
 */
export class MessageChannel<In, Out> {
  readonly stream: Stream
  private readonly lp: LengthPrefixedStream<Stream>
  private readonly schema: z.ZodType<In>
  private readonly maxMessageBytes: number
  private sending: Promise<void> = Promise.resolve()

  constructor (stream: Stream, schema: z.ZodType<In>, init: ChannelInit = {}) {
    this.stream = stream
    this.schema = schema
    this.maxMessageBytes = init.maxMessageBytes ?? MAX_MESSAGE_BYTES
    this.lp = lpStream(stream, { maxDataLength: this.maxMessageBytes })
  }

  /** Queue a message; resolves once it is handed to the transport. */
  send (message: Out, options?: AbortOptions): Promise<void> {
    const bytes = encode(message)
    const sent = this.sending.then(async () => { await this.lp.write(bytes, options) })
    this.sending = sent.catch(() => {})
    return sent
  }

  /** The next message, or undefined when the peer closed its side cleanly. */
  async receive (options?: AbortOptions): Promise<In | undefined> {
    let frame
    try {
      frame = await this.lp.read(options)
    } catch (err: any) {
      if (err?.name === 'UnexpectedEOFError') return undefined
      if (err?.name === 'InvalidDataLengthError' || err?.name === 'InvalidDataLengthLengthError' || err?.name === 'InvalidMessageLengthError') {
        throw new BadMessageError(`message larger than ${this.maxMessageBytes} bytes`)
      }
      throw err
    }
    return parseMessage(frame.subarray(), this.schema)
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

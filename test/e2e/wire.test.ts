// The wire every protocol speaks (length-prefixed CBOR checked against a schema), and hostile input
// against a real store node over TCP + Noise (admitting by the grid's secret) + Yamux: bad frames end one stream, never the node.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encode } from 'cborg'
import * as varint from 'uint8-varint'
import { z } from 'zod'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { lpStream, streamPair } from '@libp2p/utils'
import type { LengthPrefixedStream } from '@libp2p/utils'
import type { PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { issueGrant } from '../../grid/write-grant.ts'
import { attemptId, attemptOfLog, buildOf, logId } from '../../grid/ids.ts'
import type { Multiaddr } from '@multiformats/multiaddr'
import { MessageChannel, parseMessage, bytesField, BadMessageError, encodeParts } from '../../net/wire.ts'
import { BufferPool } from '../../net/buffer-pool.ts'
import { sendWithBackpressure } from '../../net/backpressure.ts'
import { createHost } from '../../net/host.ts'
import type { GridHost } from '../../net/host.ts'
import { newSecret } from '../../net/join-code.ts'
import { MAX_MESSAGE_BYTES, REQUEST_TIMEOUT_MS } from '../../net/constants.ts'
import { Store } from '../../artifact-store/index.ts'
import { LOG_APPEND_PROTOCOL, appendReply } from '../../protocols/log-append.ts'
import type { AppendReply, AppendRequest } from '../../protocols/log-append.ts'
import { LOG_READ_PROTOCOL, readReply } from '../../protocols/log-read.ts'
import type { ReadReply, ReadRequest } from '../../protocols/log-read.ts'
import { MAX_APPEND_BYTES } from '../../storage/constants.ts'
import { rejection } from '../wait.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

function throwsName (fn: () => unknown, name: string): any {
  try {
    fn()
  } catch (err: any) {
    assert.is(err?.name, name, `threw ${err?.name}: ${err?.message}`)
    return err
  }
  assert.unreachable(`expected ${name}, nothing was thrown`)
}

// ---------------------------------------------------------------------------------------------------------
// parseMessage and bytesField

const parse = suite('wire: parseMessage and bytesField')

const sample = z.object({ t: z.literal('hello'), n: z.number().int().min(0), data: bytesField(8) })

parse('valid CBOR matching the schema is returned typed', () => {
  const message = parseMessage(encode({ t: 'hello', n: 3, data: new Uint8Array([1, 2, 3]) }), sample)
  assert.is(message.t, 'hello')
  assert.is(message.n, 3)
  assert.instance(message.data, Uint8Array)
  assert.equal([...message.data], [1, 2, 3])
})

parse('undecodable bytes are a BadMessageError', () => {
  const full = encode({ t: 'hello', n: 3, data: new Uint8Array(2) })
  const cases: Array<[string, Uint8Array]> = [
    ['a lone break', new Uint8Array([0xff])],
    ['a reserved minor', new Uint8Array([0x1c])],
    ['a truncated message', full.subarray(0, full.length - 2)],
    ['two messages in one frame', new Uint8Array([...encode(1), ...encode(2)])],
    ['an unknown tag', new Uint8Array([0xd8, 42, 0x41, 0x00])],
    ['an array claiming 2^32 entries', new Uint8Array([0x9b, 0, 0, 0, 1, 0, 0, 0, 0])],
    ['nothing at all', new Uint8Array(0)],
    ['random bytes', new Uint8Array([0x5f, 0x42, 0x00])]
  ]
  for (const [what, bytes] of cases) {
    const err = throwsName(() => parseMessage(bytes, sample), 'BadMessageError')
    assert.instance(err, BadMessageError, what)
  }
})

parse('deeply nested CBOR is a BadMessageError, not a crash', () => {
  const deep = new Uint8Array(200_001).fill(0x81)
  deep[200_000] = 0x00
  throwsName(() => parseMessage(deep, sample), 'BadMessageError')
})

parse('valid CBOR that fails the schema is a BadMessageError', () => {
  const cases: unknown[] = [
    { t: 'bye', n: 3, data: new Uint8Array(1) },
    { t: 'hello', n: -1, data: new Uint8Array(1) },
    { t: 'hello', n: 1.5, data: new Uint8Array(1) },
    { t: 'hello', n: '3', data: new Uint8Array(1) },
    { t: 'hello', n: 3 },
    { t: 'hello', n: 3, data: 'not bytes' },
    { t: 'hello', n: 3, data: [1, 2, 3] },
    { t: 'hello', n: 3, data: new Uint8Array(9) },
    [1, 2, 3],
    'hello',
    null
  ]
  for (const value of cases) {
    throwsName(() => parseMessage(encode(value), sample), 'BadMessageError')
  }
})

parse('bytesField takes Uint8Arrays up to its limit and nothing else', () => {
  const field = bytesField(4)
  assert.ok(field.safeParse(new Uint8Array(0)).success)
  assert.ok(field.safeParse(new Uint8Array(4)).success)
  assert.ok(field.safeParse(Buffer.from('abcd')).success, 'a Buffer is a Uint8Array')
  assert.not.ok(field.safeParse(new Uint8Array(5)).success)
  assert.not.ok(field.safeParse('abcd').success)
  assert.not.ok(field.safeParse([1, 2]).success)
  assert.not.ok(field.safeParse(undefined).success)
  assert.not.ok(field.safeParse(new Uint16Array(2)).success)
})

parse('encodeParts is byte for byte what cborg encodes, with a large byte field left uncopied', () => {
  for (const size of [0, 100, 65_535, 65_536, 65_537, 1024 * 1024, 2 * 1024 * 1024]) {
    const bytes = randomBytes(size)
    for (const message of [
      { t: 'block', cid: 'bafk', bytes },
      { t: 'append', log: 'abc.a1.s0', offset: 12, bytes, grant: randomBytes(100) },
      { t: 'data', offset: 7, bytes, nested: { more: [1, 2] } }
    ]) {
      const parts = encodeParts(message)
      assert.equal(Buffer.concat(parts), Buffer.from(encode(message)), `size ${size}, ${message.t}`)
      if (size >= 65_536) assert.ok(parts.some(p => p === bytes), `size ${size}: the field itself is one of the parts`)
    }
  }
  assert.equal(Buffer.concat(encodeParts('just a string')), Buffer.from(encode('just a string')))
})

// A message carrying bulk bytes, two large fields and a number after them in the encoding (cborg sorts keys by
// length): decoding past a field taken as a view must land exactly on what follows it.
const bulk = z.object({ t: z.literal('block'), n: z.number().int(), bytes: bytesField(2 * 1024 * 1024), extra: bytesField(2 * 1024 * 1024) })

/** `encoded` placed inside a larger buffer, as a transport chunk or a pool buffer holds a frame. */
function framed (encoded: Uint8Array): { holder: Uint8Array, frame: Uint8Array } {
  const holder = new Uint8Array(encoded.length + 10)
  holder.set(encoded, 7)
  return { holder, frame: holder.subarray(7, 7 + encoded.length) }
}

parse('a byte field of 64 KiB or more decodes as a view of the frame, not a copy', () => {
  for (const size of [65_536, 100 * 1024, 1024 * 1024]) {
    const bytes = new Uint8Array(randomBytes(size))
    const extra = new Uint8Array(randomBytes(size + 1))
    const { holder, frame } = framed(encode({ t: 'block', n: 42, bytes, extra }))
    const message = parseMessage(frame, bulk)
    assert.ok(Buffer.from(bytes).equals(message.bytes), `${size}: the bytes that were sent`)
    assert.ok(Buffer.from(extra).equals(message.extra), `${size + 1}: the bytes that were sent`)
    assert.is(message.bytes.buffer, holder.buffer, `${size}: a view of the frame`)
    assert.is(message.extra.buffer, holder.buffer, `${size + 1}: a view of the frame`)
    assert.is(message.n, 42)
  }
})

parse('a byte field under 64 KiB decodes as before', () => {
  for (const size of [0, 23, 24, 255, 256, 65_535]) {
    const bytes = new Uint8Array(randomBytes(size))
    const { frame } = framed(encode({ t: 'block', n: size, bytes, extra: new Uint8Array(0) }))
    const message = parseMessage(frame, bulk)
    assert.ok(Buffer.from(bytes).equals(message.bytes), `${size}: the bytes that were sent`)
    assert.is(message.bytes.length, size)
    assert.is(message.n, size)
  }
})

parse('a large byte string cut short, or followed by more bytes, is a BadMessageError', () => {
  const whole = encode({ t: 'block', n: 1, bytes: new Uint8Array(100 * 1024), extra: new Uint8Array(1) })
  const cases: Array<[string, Uint8Array]> = [
    ['a 100 KiB byte string with half its bytes', whole.subarray(0, whole.length - 50 * 1024)],
    ['a 100 KiB byte string and one byte after the message', new Uint8Array([...whole, 0x00])],
    ['a 32-bit byte string header cut short', new Uint8Array([0x5a, 0x00, 0x01])],
    ['a header claiming 4 GiB', new Uint8Array([0x5a, 0xff, 0xff, 0xff, 0xff, 0x00])]
  ]
  for (const [what, bytes] of cases) {
    const err = throwsName(() => parseMessage(bytes, bulk), 'BadMessageError')
    assert.instance(err, BadMessageError, what)
  }
})

parse.run()

// ---------------------------------------------------------------------------------------------------------
// BufferPool: the buffers large frames are put together in

const buffers = suite('wire: BufferPool')

buffers('a buffer given back is handed out again', () => {
  const pool = new BufferPool(1024, 4)
  const taken = pool.take()
  assert.is(taken.byteLength, 1024)
  pool.give(taken)
  assert.is(pool.waiting, 1)
  assert.is(pool.take().buffer, taken.buffer, 'the same memory, not a new buffer')
  assert.is(pool.waiting, 0)
  assert.is.not(pool.take().buffer, taken.buffer, 'none waiting: a new one')
})

buffers('a view of any part of a pool buffer gives the whole buffer back', () => {
  const pool = new BufferPool(1024, 4)
  const taken = pool.take()
  pool.give(taken.subarray(100, 200))
  assert.is(pool.waiting, 1)
  const again = pool.take()
  assert.is(again.buffer, taken.buffer)
  assert.is(again.byteOffset, 0)
  assert.is(again.byteLength, 1024, 'all of it, not the part that was given')
})

buffers('a buffer the pool did not make is ignored', () => {
  const pool = new BufferPool(1024, 4)
  const foreign = [new Uint8Array(1024), Buffer.alloc(1024), new Uint8Array(4096).subarray(0, 1024), new Uint8Array(new SharedArrayBuffer(1024))]
  for (const bytes of foreign) pool.give(bytes)
  assert.is(pool.waiting, 0)
  const taken = pool.take()
  assert.ok(foreign.every(bytes => bytes.buffer !== taken.buffer), 'never handed out')
})

buffers('a buffer given back twice waits once, so it never goes to two takers', () => {
  const pool = new BufferPool(1024, 4)
  const taken = pool.take()
  pool.give(taken)
  pool.give(taken)
  pool.give(taken.subarray(10))
  assert.is(pool.waiting, 1)
  const first = pool.take()
  const second = pool.take()
  assert.is(first.buffer, taken.buffer)
  assert.is.not(second.buffer, taken.buffer)
})

buffers('no more than `keep` buffers wait', () => {
  const pool = new BufferPool(1024, 2)
  const taken = [pool.take(), pool.take(), pool.take()]
  for (const bytes of taken) pool.give(bytes)
  assert.is(pool.waiting, 2)
  const reused = [pool.take(), pool.take(), pool.take()].filter(bytes => taken.some(t => t.buffer === bytes.buffer))
  assert.is(reused.length, 2, 'the third was dropped, not kept')
})

buffers.run()

// ---------------------------------------------------------------------------------------------------------
// MessageChannel over an in-process stream pair

const channel = suite('wire: MessageChannel')

const ping = z.object({ t: z.literal('ping'), seq: z.number().int(), body: bytesField(MAX_MESSAGE_BYTES) })
type Ping = z.infer<typeof ping>

async function pair (): Promise<[Stream, Stream]> {
  return await streamPair()
}

channel('messages sent are received in order, then a clean close reads as undefined', async () => {
  const [a, b] = await pair()
  const out = new MessageChannel<Ping, Ping>(a, ping)
  const into = new MessageChannel<Ping, Ping>(b, ping)
  // Sent without awaiting in between, with sizes that straddle chunking: frames must not interleave.
  const sizes = [0, 1, 100, 70_000, 3, 300_000, 17]
  await Promise.all(sizes.map(async (size, seq) => { await out.send({ t: 'ping', seq, body: new Uint8Array(size).fill(seq) }) }))
  await out.close()
  const got: Ping[] = []
  for await (const message of into) got.push(message)
  assert.equal(got.map(m => m.seq), sizes.map((_, i) => i))
  got.forEach((m, i) => {
    assert.is(m.body.length, sizes[i])
    assert.ok(m.body.every(x => x === i), `message ${i} carries its own bytes`)
  })
  assert.is(await into.receive(), undefined)
})

channel('expect after a clean close is a BadMessageError', async () => {
  const [a, b] = await pair()
  await new MessageChannel<Ping, Ping>(a, ping).close()
  const err = await rejection(new MessageChannel<Ping, Ping>(b, ping).expect())
  assert.is(err.name, 'BadMessageError')
})

channel('a frame of garbage is a BadMessageError', async () => {
  const [a, b] = await pair()
  await lpStream(a).write(new Uint8Array([0xff, 0xfe, 0xfd]))
  const err = await rejection(new MessageChannel<Ping, Ping>(b, ping).receive())
  assert.is(err.name, 'BadMessageError')
})

channel('a frame failing the schema is a BadMessageError', async () => {
  const [a, b] = await pair()
  await lpStream(a).write(encode({ t: 'ping', seq: 'one', body: new Uint8Array(1) }))
  const err = await rejection(new MessageChannel<Ping, Ping>(b, ping).receive())
  assert.is(err.name, 'BadMessageError')
})

channel('a frame just over the limit is a BadMessageError', async () => {
  const [a, b] = await pair()
  const into = new MessageChannel<Ping, Ping>(b, ping, { maxMessageBytes: 100 })
  // 101 still fits the one-byte length prefix the limit allows.
  lpStream(a).write(new Uint8Array(101)).catch(() => {})
  const err = await rejection(into.receive())
  assert.is(err.name, 'BadMessageError')
})

channel('a frame whose length prefix is longer than the limit allows is a BadMessageError', async () => {
  const [a, b] = await pair()
  const into = new MessageChannel<Ping, Ping>(b, ping, { maxMessageBytes: 100 })
  // 200 needs a two-byte varint where a 100-byte limit allows one: the peer is just as wrong as above.
  lpStream(a).write(new Uint8Array(200)).catch(() => {})
  const err = await rejection(into.receive())
  assert.is(err.name, 'BadMessageError', `got ${err.name}: ${err.message}`)
})

channel('a frame over MAX_MESSAGE_BYTES whose length needs a longer varint is a BadMessageError', async () => {
  const [a, b] = await pair()
  const into = new MessageChannel<Ping, Ping>(b, ping)
  // Only the length prefix is sent: 3 MiB, a four-byte varint where MAX_MESSAGE_BYTES needs three.
  const prefix = new Uint8Array([0x80, 0x80, 0xc0, 0x01])
  a.send(prefix)
  const err = await rejection(into.receive())
  assert.is(err.name, 'BadMessageError', `got ${err.name}: ${err.message}`)
})

/** A pool whose buffers take a frame carrying a 1 MiB body, as the store's put protocol sizes its own. */
function framePool (keep = 8): BufferPool {
  return new BufferPool(1024 * 1024 + 64, keep)
}

/**
 * Bodies of every kind of frame a pooled channel sees: pooled (64 KiB up to the pool's size), small, and one
 * larger than a pool buffer but within MAX_MESSAGE_BYTES.
 */
const MIXED = [100 * 1024, 3, 1024 * 1024, 0, 700 * 1024, 70_000, 1024 * 1024 + 2048, 17]
/** Of MIXED, the frames put together in pool buffers. */
const MIXED_POOLED = 4

/** A frame as the wire carries it: the varint length, then the CBOR message. */
function frameOf (message: unknown): Uint8Array {
  const encoded = encode(message)
  return Buffer.concat([varint.encode(encoded.length), encoded])
}

/** `bytes` cut at `cuts` (offsets into it, any order; those outside it ignored). */
function piecesOf (bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts)].filter(c => c > 0 && c < bytes.length).sort((x, y) => x - y)
  return [0, ...at].map((from, i) => bytes.subarray(from, at[i] ?? bytes.length))
}

async function all (channel: MessageChannel<Ping, Ping>): Promise<Ping[]> {
  const got: Ping[] = []
  for await (const message of channel) got.push(message)
  return got
}

function assertArrived (got: Ping[], bodies: Uint8Array[], how: string): void {
  assert.equal(got.map(m => m.seq), bodies.map((_, i) => i), `${how}: every message, in order`)
  got.forEach((m, i) => {
    assert.ok(Buffer.from(bodies[i]).equals(m.body), `${how}: message ${i} (${bodies[i].length} bytes) byte for byte`)
  })
}

channel('with a pool, small and large messages arrive whole and in order, the large ones in pool buffers', async () => {
  const [a, b] = await pair()
  const pool = framePool()
  const out = new MessageChannel<Ping, Ping>(a, ping)
  const into = new MessageChannel<Ping, Ping>(b, ping, { pool })
  const bodies = MIXED.map(size => new Uint8Array(randomBytes(size)))
  // Read while sending: several megabytes would otherwise fill the reader's buffer and hold the sender.
  const received = all(into)
  await Promise.all(bodies.map(async (body, seq) => { await out.send({ t: 'ping', seq, body }) }))
  await out.close()
  const got = await received
  assertArrived(got, bodies, 'sent by a channel')
  assert.is(pool.waiting, 0, 'nothing given back yet')
  for (const message of got) into.release(message.body)
  assert.is(pool.waiting, MIXED_POOLED, 'each large frame within the pool size had a pool buffer of its own')
})

channel('with a pool, frames cut at awkward places arrive whole and in order', async () => {
  const bodies = MIXED.map(size => new Uint8Array(randomBytes(size)))
  const frames = bodies.map((body, seq) => frameOf({ t: 'ping', seq, body }))
  const wire = Buffer.concat(frames)
  const awkward: number[] = []
  let start = 0
  for (const frame of frames) {
    const middle = start + Math.floor(frame.length / 2)
    // A piece across the end of the previous frame and the first byte of this one's length prefix, single bytes
    // through the prefix and the CBOR header, then 7-byte pieces; in the middle a lone byte and a 7-byte piece;
    // the last byte of the frame with the next one's first.
    awkward.push(start - 3, start + 1, start + 2, start + 3, start + 4, start + 11, start + 18, middle, middle + 1, middle + 8, start + frame.length - 1)
    start += frame.length
  }
  const cuttings: Array<[string, number[]]> = [
    ['cut around every boundary', awkward],
    ['cut every 65,541 bytes', Array.from({ length: Math.ceil(wire.length / 65_541) }, (_, i) => (i + 1) * 65_541)],
    ['in one piece', []]
  ]
  for (const [how, cuts] of cuttings) {
    const [a, b] = await pair()
    const pool = framePool()
    const into = new MessageChannel<Ping, Ping>(b, ping, { pool })
    let single = 0
    b.addEventListener('message', event => { if (event.data.byteLength === 1) single++ })
    const received = all(into)
    for (const piece of piecesOf(wire, cuts)) await sendWithBackpressure(a, piece)
    await a.close()
    const got = await received
    assertArrived(got, bodies, how)
    for (const message of got) into.release(message.body)
    assert.is(pool.waiting, MIXED_POOLED, `${how}: the large frames were put together in pool buffers`)
    if (how === 'cut around every boundary') assert.ok(single > frames.length, `${how}: the pieces arrived apart (${single} single bytes)`)
  }
})

channel('a released buffer takes the next large frame, and a message still held is not written over', async () => {
  const [a, b] = await pair()
  const pool = framePool()
  const out = new MessageChannel<Ping, Ping>(a, ping)
  const into = new MessageChannel<Ping, Ping>(b, ping, { pool })
  const [first, second, third] = [900 * 1024, 300 * 1024, 200 * 1024].map(size => new Uint8Array(randomBytes(size)))
  await out.send({ t: 'ping', seq: 0, body: first })
  const one = await into.expect()
  await out.send({ t: 'ping', seq: 1, body: second })
  const two = await into.expect()
  assert.is.not(two.body.buffer, one.body.buffer, 'nothing given back yet: a buffer of its own')
  into.release(one.body)
  assert.is(pool.waiting, 1)
  // Smaller than the frame the buffer held before: what is left of that one must not show through.
  await out.send({ t: 'ping', seq: 2, body: third })
  const three = await into.expect()
  assert.is(three.body.buffer, one.body.buffer, 'the released buffer was used again')
  assert.is(pool.waiting, 0)
  assert.ok(Buffer.from(third).equals(three.body), 'the third message, byte for byte, and no more')
  assert.ok(Buffer.from(second).equals(two.body), 'the message still held is untouched')
})

/** What receive() on a pooled channel does when the peer sends `sent` bytes of a 500 KiB frame and closes. */
async function endedAfter (sent: number): Promise<any> {
  const frame = frameOf({ t: 'ping', seq: 0, body: new Uint8Array(randomBytes(500 * 1024)) })
  const [a, b] = await pair()
  const into = new MessageChannel<Ping, Ping>(b, ping, { pool: framePool() })
  await sendWithBackpressure(a, frame.subarray(0, sent))
  await a.close()
  return await rejection(into.receive({ signal: AbortSignal.timeout(10_000) }))
}

channel('with a pool, a stream that ends inside a large frame is a BadMessageError', async () => {
  // The prefix and the CBOR header, most of the frame.
  for (const sent of [20, 300_000]) {
    const err = await endedAfter(sent)
    assert.is(err.name, 'BadMessageError', `after ${sent} bytes: got ${err.name}: ${err.message}`)
  }
})

channel('with a pool, a stream that ends right after the length prefix of a large frame is a BadMessageError, not a clean end', async () => {
  // The 3-byte prefix announces 500 KiB; none of it comes. Without a pool this is the error it always was.
  const err = await endedAfter(3)
  assert.is(err.name, 'BadMessageError', `got ${err.name}: ${err.message}`)
})

channel('with a pool, a frame over maxMessageBytes is a BadMessageError even if a pool buffer would hold it', async () => {
  const [a, b] = await pair()
  const into = new MessageChannel<Ping, Ping>(b, ping, { maxMessageBytes: 200_000, pool: framePool() })
  // A valid message: only the limit can refuse it.
  sendWithBackpressure(a, frameOf({ t: 'ping', seq: 0, body: new Uint8Array(250_000) })).catch(() => {})
  const err = await rejection(into.receive({ signal: AbortSignal.timeout(10_000) }))
  assert.is(err.name, 'BadMessageError', `got ${err.name}: ${err.message}`)
})

channel.run()

// ---------------------------------------------------------------------------------------------------------
// Hostile input against a real store node

interface NetCtx {
  dir: string
  secret: Uint8Array
  server: GridHost
  store: Store
  client: GridHost
  outsider: GridHost
  addr: Multiaddr
  /** The grid's coordinator key: the store honours write grants it signed. */
  coordinatorKey: PrivateKey
}

const network = suite<NetCtx>('wire: hostile peers against a store node', {} as NetCtx)

let logCounter = 0
/** A fresh, realistic log id: step 0 of a build's first attempt. */
function newLogId (): string {
  return logId(attemptId(`0mwv1se3l2c9ee${String(100 + logCounter++).padStart(3, '0')}`, 1), 0)
}

/** How a stream the test wrote junk into ended. */
interface Ending { ended: true, by: string }

/**
 * Read from a raw stream until the server ends it. A reply means the server took the junk as valid,
 * and our own deadline means it neither answered nor dropped the stream: both fail the test.
 */
async function endingOf (lp: LengthPrefixedStream<Stream>, deadlineMs = 10_000): Promise<Ending> {
  const deadline = AbortSignal.timeout(deadlineMs)
  try {
    const frame = await lp.read({ signal: deadline })
    throw new Error(`the server answered junk with a ${frame.byteLength}-byte reply`)
  } catch (err: any) {
    if (deadline.aborted) throw new Error(`the server neither answered nor ended the stream within ${deadlineMs} ms`)
    if (err?.message?.startsWith('the server answered') === true) throw err
    return { ended: true, by: err?.name ?? String(err) }
  }
}

async function rawStream (ctx: NetCtx, protocol: string): Promise<{ stream: Stream, lp: LengthPrefixedStream<Stream> }> {
  const stream = await ctx.client.dialProtocol(ctx.addr, protocol, { signal: AbortSignal.timeout(10_000) })
  // Our side may write frames of any size: only the server's limit is under test.
  return { stream, lp: lpStream(stream, { maxDataLength: 16 * 1024 * 1024 }) }
}

/** Send one raw frame on a new stream of `protocol` and wait for the server to end that stream. */
async function junk (ctx: NetCtx, protocol: string, frame: Uint8Array): Promise<Ending> {
  const { lp } = await rawStream(ctx, protocol)
  lp.write(frame).catch(() => {})
  return await endingOf(lp)
}

/** The coordinator's grant for the client node to write `id`'s attempt. */
async function grantFor (ctx: NetCtx, id: string, worker: string = ctx.client.peerId.toString()): Promise<Uint8Array> {
  return await issueGrant(ctx.coordinatorKey, attemptOfLog(id)!, worker)
}

/** A correct writer on a fresh stream: append `text` to a new log, seal it, and check the replies. */
async function appendLog (ctx: NetCtx, id: string, text: string): Promise<void> {
  const stream = await ctx.client.dialProtocol(ctx.addr, LOG_APPEND_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
  const ch = new MessageChannel<AppendReply, AppendRequest>(stream, appendReply)
  const bytes = enc.encode(text)
  const half = Math.floor(bytes.length / 2)
  const opts = { signal: AbortSignal.timeout(10_000) }
  const grant = await grantFor(ctx, id)
  await ch.send({ t: 'append', log: id, offset: 0, bytes: bytes.subarray(0, half), grant })
  assert.equal(await ch.expect(opts), { t: 'ok', size: half })
  await ch.send({ t: 'append', log: id, offset: half, bytes: bytes.subarray(half), grant })
  assert.equal(await ch.expect(opts), { t: 'ok', size: bytes.length })
  await ch.send({ t: 'seal', log: id, size: bytes.length, grant })
  const sealed = await ch.expect(opts)
  assert.is(sealed.t, 'sealed')
  assert.is((sealed as { size: number }).size, bytes.length)
  // The sealed log is content now, named by a CID.
  assert.match(String((sealed as { cid?: string }).cid), /^baf/)
  await ch.close()
}

/** A correct reader on a fresh stream: the whole log and its end. */
async function readLog (ctx: NetCtx, id: string, from = 0): Promise<{ text: string, end: ReadReply }> {
  const stream = await ctx.client.dialProtocol(ctx.addr, LOG_READ_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
  const ch = new MessageChannel<ReadReply, ReadRequest>(stream, readReply)
  await ch.send({ t: 'read', log: id, from, follow: false })
  const parts: Uint8Array[] = []
  let offset = from
  while (true) {
    const reply = await ch.expect({ signal: AbortSignal.timeout(10_000) })
    if (reply.t === 'data') {
      assert.is(reply.offset, offset, 'data frames are contiguous')
      offset += reply.bytes.length
      parts.push(reply.bytes)
      continue
    }
    assert.is(reply.t, 'end')
    await ch.close()
    return { text: dec.decode(Buffer.concat(parts)), end: reply }
  }
}

/** The store still serves correct peers: a fresh log written and read back on new streams. */
async function storeStillWorks (ctx: NetCtx): Promise<void> {
  const id = newLogId()
  const text = `still serving ${id}\n`.repeat(20)
  await appendLog(ctx, id, text)
  const { text: got, end } = await readLog(ctx, id)
  assert.is(got, text)
  assert.equal(end, { t: 'end', size: text.length, sealed: true })
  assert.is((await readLog(ctx, id, 5)).text, text.slice(5))
}

network.before(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-wire-'))
  ctx.secret = newSecret()
  const listen = ['/ip4/127.0.0.1/tcp/0']
  ctx.server = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.secret, listen })
  ctx.coordinatorKey = await generateKeyPair('Ed25519')
  ctx.store = new Store({ host: ctx.server, dataDir: ctx.dir, coordinator: peerIdFromPrivateKey(ctx.coordinatorKey) })
  await ctx.store.start()
  ctx.client = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.secret, listen })
  ctx.outsider = await createHost({ identity: await generateKeyPair('Ed25519'), secret: newSecret(), listen })
  ctx.addr = ctx.server.getMultiaddrs()[0]
  assert.ok(ctx.addr !== undefined, 'the server listens')
})

network.after(async ctx => {
  await ctx.store?.stop().catch(() => {})
  for (const host of [ctx.outsider, ctx.client, ctx.server]) {
    try { await host?.stop() } catch {}
  }
  if (ctx.dir !== undefined) await rm(ctx.dir, { recursive: true, force: true })
})

network('a correct append and read work before any junk', async ctx => {
  await storeStillWorks(ctx)
})

network('a member without the grant for a log cannot append to it or seal it', async ctx => {
  const id = newLogId()
  const other = logId(attemptId(buildOf(id), 2), 0)
  const forged = new Uint8Array(64).fill(7)
  const notMine = await grantFor(ctx, id, ctx.outsider.peerId.toString())
  const otherAttempts = await grantFor(ctx, other)
  const selfSigned = await issueGrant(await generateKeyPair('Ed25519'), attemptOfLog(id)!, ctx.client.peerId.toString())
  for (const grant of [forged, notMine, otherAttempts, selfSigned]) {
    for (const request of [
      { t: 'append' as const, log: id, offset: 0, bytes: enc.encode('intruder\n'), grant },
      { t: 'seal' as const, log: id, size: 0, grant }
    ]) {
      const stream = await ctx.client.dialProtocol(ctx.addr, LOG_APPEND_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      const ch = new MessageChannel<AppendReply, AppendRequest>(stream, appendReply)
      await ch.send(request)
      const reply = await ch.expect({ signal: AbortSignal.timeout(10_000) })
      assert.is(reply.t, 'error')
      assert.match((reply as { error: string }).error, /no write grant/)
      stream.abort(new Error('done'))
    }
  }
  const { end } = await readLog(ctx, id)
  assert.equal(end, { t: 'end', size: 0, sealed: false }, 'the log holds nothing and is not sealed')
  await appendLog(ctx, id, 'the rightful writer\n')
  assert.is((await readLog(ctx, id)).text, 'the rightful writer\n')
})

network('log-append: a frame of garbage ends the stream, the store goes on', async ctx => {
  await junk(ctx, LOG_APPEND_PROTOCOL, new Uint8Array(randomBytes(64)).fill(0xff, 0, 1))
  await storeStillWorks(ctx)
})

network('log-append: a frame over MAX_MESSAGE_BYTES ends the stream, the store goes on', async ctx => {
  await junk(ctx, LOG_APPEND_PROTOCOL, new Uint8Array(MAX_MESSAGE_BYTES + 1))
  await storeStillWorks(ctx)
})

network('log-append: a length prefix for a huge frame (never sent) ends the stream', async ctx => {
  const { stream, lp } = await rawStream(ctx, LOG_APPEND_PROTOCOL)
  // 3 MiB announced, nothing more: the store must not wait for (or buffer) bytes it would refuse.
  stream.send(new Uint8Array([0x80, 0x80, 0xc0, 0x01]))
  await endingOf(lp)
  await storeStillWorks(ctx)
})

network('log-append: well-formed CBOR with the wrong fields ends the stream', async ctx => {
  await junk(ctx, LOG_APPEND_PROTOCOL, encode({ t: 'append', log: newLogId(), at: 0, data: enc.encode('x') }))
  await junk(ctx, LOG_APPEND_PROTOCOL, encode({ t: 'delete', log: newLogId() }))
  await junk(ctx, LOG_APPEND_PROTOCOL, encode({ t: 'append', log: newLogId(), offset: 0, bytes: 'a string, not bytes' }))
  await junk(ctx, LOG_APPEND_PROTOCOL, encode(['append', newLogId(), 0]))
  await storeStillWorks(ctx)
})

network('log-append: a log id that fails ID_PATTERN is refused and nothing is stored', async ctx => {
  for (const log of ['../../etc', '../../etc/passwd', '', 'A'.repeat(12), `${newLogId()}!000000000000`, `${newLogId()}\u0000x`]) {
    // A real grant rides along: the id itself must be what is refused.
    await junk(ctx, LOG_APPEND_PROTOCOL, encode({ t: 'append', log, offset: 0, bytes: enc.encode('pwned'), grant: await grantFor(ctx, newLogId()) }))
    assert.is(await ctx.store.logs.info(log), undefined, `nothing stored under ${JSON.stringify(log)}`)
  }
  await storeStillWorks(ctx)
})

network('log-append: a negative, fractional or oversized offset is refused and nothing is stored', async ctx => {
  for (const offset of [-1, -1_000_000, 0.5, Number.MAX_SAFE_INTEGER, Number.NaN, Number.POSITIVE_INFINITY]) {
    const log = newLogId()
    await junk(ctx, LOG_APPEND_PROTOCOL, encode({ t: 'append', log, offset, bytes: enc.encode('x'), grant: await grantFor(ctx, log) }))
    assert.is(await ctx.store.logs.info(log), undefined, `nothing stored at offset ${offset}`)
  }
  const log = newLogId()
  await junk(ctx, LOG_APPEND_PROTOCOL, encode({ t: 'seal', log, size: -1, grant: await grantFor(ctx, log) }))
  assert.is(await ctx.store.logs.info(log), undefined)
  await storeStillWorks(ctx)
})

network('log-append: an append over MAX_APPEND_BYTES is refused', async ctx => {
  const log = newLogId()
  await junk(ctx, LOG_APPEND_PROTOCOL, encode({ t: 'append', log, offset: 0, bytes: new Uint8Array(MAX_APPEND_BYTES + 1), grant: await grantFor(ctx, log) }))
  assert.is(await ctx.store.logs.info(log), undefined)
  await storeStillWorks(ctx)
})

network('log-append: junk after a good append ends the stream but keeps what was appended', async ctx => {
  const log = newLogId()
  const { lp } = await rawStream(ctx, LOG_APPEND_PROTOCOL)
  await lp.write(encode({ t: 'append', log, offset: 0, bytes: enc.encode('kept'), grant: await grantFor(ctx, log) }))
  const reply = await lp.read({ signal: AbortSignal.timeout(10_000) })
  assert.equal(parseMessage(reply.subarray(), appendReply), { t: 'ok', size: 4 })
  lp.write(new Uint8Array([0xff])).catch(() => {})
  await endingOf(lp)
  assert.is((await readLog(ctx, log)).text, 'kept')
  await storeStillWorks(ctx)
})

network('log-read: garbage, wrong fields, a bad log id, a negative offset and a huge frame each end the stream', async ctx => {
  const good = newLogId()
  await appendLog(ctx, good, 'readable\n')
  const frames: Array<[string, Uint8Array]> = [
    ['garbage', new Uint8Array([0xff, 0x00, 0x13, 0x37])],
    ['wrong fields', encode({ t: 'read', log: good, offset: 0 })],
    ['an unknown type', encode({ t: 'write', log: good })],
    ['a bad log id', encode({ t: 'read', log: '../../etc', from: 0, follow: false })],
    ['a bad stat id', encode({ t: 'stat', log: '../../etc' })],
    ['a negative offset', encode({ t: 'read', log: good, from: -1, follow: false })],
    ['a string offset', encode({ t: 'read', log: good, from: '0', follow: false })],
    ['over the size limit', new Uint8Array(MAX_MESSAGE_BYTES + 1)]
  ]
  for (const [what, frame] of frames) {
    try {
      await junk(ctx, LOG_READ_PROTOCOL, frame)
    } catch (err: any) {
      throw new Error(`${what}: ${err.message}`)
    }
  }
  assert.is((await readLog(ctx, good)).text, 'readable\n')
  await storeStillWorks(ctx)
})

network('log-read: a reader that never finishes its request is dropped after REQUEST_TIMEOUT_MS', async ctx => {
  const silent = await rawStream(ctx, LOG_READ_PROTOCOL)
  const partial = await rawStream(ctx, LOG_READ_PROTOCOL)
  // A length prefix of 100 and only 10 bytes of the frame.
  partial.stream.send(new Uint8Array([100, ...new Uint8Array(10)]))
  const bound = REQUEST_TIMEOUT_MS + 10_000
  await Promise.all([endingOf(silent.lp, bound), endingOf(partial.lp, bound)])
  await storeStillWorks(ctx)
})

network('many junk streams at once do not take the store down', async ctx => {
  const endings = await Promise.all(Array.from({ length: 40 }, async (_, i) => await junk(
    ctx,
    i % 2 === 0 ? LOG_APPEND_PROTOCOL : LOG_READ_PROTOCOL,
    i % 4 < 2 ? new Uint8Array([0xff, i]) : encode({ t: 'append', log: '../../etc', offset: -i, bytes: new Uint8Array(1) })
  )))
  assert.is(endings.length, 40)
  assert.ok(endings.every(e => e.ended))
  await storeStillWorks(ctx)
})

network('a node with a different secret cannot open a stream at all', async ctx => {
  // Refused by the handshake: at once when the garbled bytes break it, or when the server gives up on an
  // upgrade that cannot finish (seen at about 6 s). Our own deadline lies well past both.
  const deadline = 20_000
  const err = await rejection(ctx.outsider.dialProtocol(ctx.addr, LOG_READ_PROTOCOL, { signal: AbortSignal.timeout(deadline) }))
  assert.ok(err instanceof Error)
  assert.is.not(err.name, 'AbortError', 'refused by the handshake, not by our own deadline')
  assert.is.not(err.name, 'TimeoutError', 'refused by the handshake, not by our own deadline')
  assert.is(ctx.outsider.getConnections(ctx.server.peerId).length, 0)
  assert.is(ctx.server.getConnections(ctx.outsider.peerId).length, 0)
  const again = await rejection(ctx.outsider.dialProtocol(ctx.addr, LOG_APPEND_PROTOCOL, { signal: AbortSignal.timeout(deadline) }))
  assert.ok(again instanceof Error)
  assert.is.not(again.name, 'AbortError')
  assert.is.not(again.name, 'TimeoutError')
  assert.is(ctx.server.getConnections(ctx.outsider.peerId).length, 0)
  // The members of the grid are not disturbed by the attempt.
  await storeStillWorks(ctx)
})

network.run()

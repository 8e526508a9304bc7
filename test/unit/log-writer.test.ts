// The worker's log writer alone: stub stores behind a stub AppendStreams whose channels answer appends and seals
// as a store does (offsets, gaps, the log's CID), with faults the test chooses: a stream that breaks, a reply that
// is lost, a wrong answer, replies held back. No libp2p.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { APPENDS_IN_FLIGHT, LogWriter, PIECE_BYTES } from '../../worker/log-writer.ts'
import type { LogWriterInit } from '../../worker/log-writer.ts'
import type { AppendStreams } from '../../worker/append-streams.ts'
import type { AppendReply, AppendRequest } from '../../protocols/log-append.ts'
import { ContentNamer } from '../../grid/content.ts'
import { LOG_APPEND_TRIES, LOG_BUFFER_LIMIT } from '../../net/constants.ts'
import type { PeerAddress } from '../../net/dial.ts'
import { rejection, waitFor } from '../wait.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()
const LOG = '0mwv1se3l2c9ee100.a1.s0'
const GRANT = new Uint8Array(64).fill(7)

/** The CID a store names these bytes by when it seals them (storage/log-content.ts cuts them the same way). */
function nameOf (bytes: Uint8Array): string {
  const namer = new ContentNamer()
  namer.add(bytes)
  return namer.finish().cid.toString()
}

/** More requests than any test makes to one store. */
const MAX_REQUESTS = 1_000

/** What a stub store does with one request: go on, break the stream before it arrives, lose the reply, or answer this. */
type Fault = undefined | 'break' | 'lose-reply' | AppendReply

interface Seen { t: 'append' | 'seal', offset: number, text: string, length: number }

class StubStore {
  readonly address: PeerAddress
  bytes = new Uint8Array(0)
  sealed = false
  /** Every request that reached the store (or was lost on its way), in order. */
  readonly requests: Seen[] = []
  /** Streams taken for this store, and those given back to the pool. */
  readonly channels: StubChannel[] = []
  readonly given: StubChannel[] = []
  fault: (request: AppendRequest, n: number) => Fault = () => undefined
  /** Replies wait for this while it is set (the store is slow). */
  hold: Promise<void> | undefined

  constructor (peer: string) {
    this.address = { peer, addrs: [] }
  }

  get text (): string {
    return dec.decode(this.bytes)
  }

  get appends (): Seen[] {
    return this.requests.filter(r => r.t === 'append')
  }

  get seals (): Seen[] {
    return this.requests.filter(r => r.t === 'seal')
  }

  /** As LogStore.append and LogSealer.seal answer. */
  answer (request: AppendRequest): AppendReply {
    if (request.t === 'append') {
      if (this.sealed) return { t: 'error', error: `log ${request.log} is sealed` }
      const size = this.bytes.length
      if (request.offset > size) return { t: 'gap', size }
      const end = request.offset + request.bytes.length
      if (end <= size) return { t: 'ok', size }
      const grown = new Uint8Array(end)
      grown.set(this.bytes)
      grown.set(request.bytes.subarray(size - request.offset), size)
      this.bytes = grown
      return { t: 'ok', size: end }
    }
    if (request.size !== this.bytes.length) return { t: 'gap', size: this.bytes.length }
    this.sealed = true
    return { t: 'sealed', size: this.bytes.length, cid: nameOf(this.bytes) }
  }
}

class StubChannel {
  readonly stream = { status: 'open', writeStatus: 'writable' }
  aborted: Error | undefined
  private readonly store: StubStore
  /** Answers to requests sent and not yet taken, in order: a writer may send several appends before the first answer. */
  private readonly replies: Array<() => Promise<AppendReply>> = []

  constructor (store: StubStore) {
    this.store = store
  }

  async send (request: AppendRequest): Promise<void> {
    if (this.aborted !== undefined) throw this.aborted
    const n = this.store.requests.length
    // A writer resending without end fails its test instead of filling the memory.
    if (n >= MAX_REQUESTS) throw new Error(`more than ${MAX_REQUESTS} requests to store ${this.store.address.peer}`)
    this.store.requests.push(request.t === 'append'
      ? { t: 'append', offset: request.offset, text: dec.decode(request.bytes), length: request.bytes.length }
      : { t: 'seal', offset: request.size, text: '', length: 0 })
    const fault = this.store.fault(request, n)
    if (fault === 'break') {
      this.abort(new Error('stream reset'))
      throw this.aborted
    }
    if (typeof fault === 'object') {
      this.replies.push(async () => fault)
      return
    }
    const answer = this.store.answer(request)
    const hold = this.store.hold
    this.replies.push(fault === 'lose-reply'
      ? async () => { throw new Error('connection lost before the reply') }
      : async () => { await hold; return answer })
  }

  async expect (): Promise<AppendReply> {
    const reply = this.replies.shift()
    if (reply === undefined) throw new Error('expect without a request')
    return await reply()
  }

  abort (err: Error): void {
    this.aborted ??= err
    this.stream.status = 'aborted'
  }

  async close (): Promise<void> {
    this.stream.status = 'closed'
  }
}

function streamsFor (stores: StubStore[]): AppendStreams {
  const byPeer = new Map(stores.map(s => [s.address.peer, s]))
  const streams = {
    take: async (address: PeerAddress) => {
      const store = byPeer.get(address.peer)!
      const channel = new StubChannel(store)
      store.channels.push(channel)
      return channel
    },
    give: (address: PeerAddress, channel: StubChannel) => { byPeer.get(address.peer)!.given.push(channel) },
    closeAll: () => {}
  }
  return streams as unknown as AppendStreams
}

interface Setup { writer: LogWriter, stores: StubStore[], reported: string[] }

function setup (peers: string[], init: Partial<LogWriterInit> = {}, configure: (stores: StubStore[]) => void = () => {}): Setup {
  const stores = peers.map(p => new StubStore(p))
  configure(stores)
  const reported: string[] = []
  const writer = new LogWriter({
    streams: streamsFor(stores),
    log: LOG,
    grant: GRANT,
    stores: stores.map(s => s.address),
    report: line => reported.push(line),
    ...init
  })
  return { writer, stores, reported }
}

const write = (writer: LogWriter, text: string): boolean => writer.write(enc.encode(text))

// ---------------------------------------------------------------- batching and offsets

const batching = suite('log writer: batching and offsets')

batching('output written within the flush delay goes in one append, then the seal names the log', async () => {
  const { writer, stores } = setup(['A', 'B'])
  write(writer, 'one ')
  write(writer, 'two ')
  write(writer, 'three\n')
  assert.is(writer.size, 14)
  await waitFor('the timed flush', () => stores.every(s => s.appends.length === 1))
  for (const store of stores) assert.equal(store.appends, [{ t: 'append', offset: 0, text: 'one two three\n', length: 14 }])
  const sealed = await writer.seal()
  assert.equal(sealed, { size: 14, cid: nameOf(enc.encode('one two three\n')) })
  for (const store of stores) {
    assert.equal(store.seals.map(s => s.offset), [14], 'sealed at the final size')
    assert.ok(store.sealed)
  }
})

batching('a batch goes once batchBytes are buffered; output arriving meanwhile goes in the next append, from where it starts', async () => {
  const gate = Promise.withResolvers<void>()
  const { writer, stores: [store] } = setup(['A'], { batchBytes: 4, flushMs: 60_000 }, ([s]) => { s.hold = gate.promise })
  write(writer, '12345')
  await waitFor('the first append, with no timer', () => store.appends.length === 1)
  write(writer, '67')
  write(writer, '89')
  write(writer, 'ab')
  assert.is(store.appends.length, 1, 'one append at a time per store')
  store.hold = undefined
  gate.resolve()
  await waitFor('the second append', () => store.appends.length === 2)
  assert.equal(store.appends.map(a => [a.offset, a.text]), [[0, '12345'], [5, '6789ab']])
  await writer.seal()
  assert.is(store.text, '123456789ab')
})

batching('every replica gets every byte once, each append at the offset its store holds', async () => {
  const { writer, stores } = setup(['A', 'B', 'C'], { batchBytes: 16 })
  let expected = ''
  for (let i = 0; i < 50; i++) {
    const line = `line ${i} of the step's output\n`
    expected += line
    write(writer, line)
    if (i % 10 === 0) await waitFor('a store to take a batch', () => stores[0].appends.length > i / 10)
  }
  const sealed = await writer.seal()
  assert.is(sealed.size, enc.encode(expected).length)
  assert.is(sealed.cid, nameOf(enc.encode(expected)))
  for (const store of stores) {
    assert.is(store.text, expected)
    let at = 0
    for (const append of store.appends) {
      assert.is(append.offset, at, `${store.address.peer}: contiguous offsets`)
      at += append.length
    }
    assert.ok(store.appends.length > 1, 'several batches')
  }
})

batching('whole pieces (the log\'s blocks) go several at once; a part-filled one waits for their answers', async () => {
  const gate = Promise.withResolvers<void>()
  const { writer, stores: [store] } = setup(['A'], {}, ([s]) => { s.hold = gate.promise })
  const bytes = new Uint8Array(2.5 * PIECE_BYTES)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 13 + (i >> 12)) & 255
  writer.write(bytes)
  await waitFor('the whole pieces', () => store.appends.length === 2)
  assert.equal(store.appends.map(a => [a.offset, a.length]), [[0, PIECE_BYTES], [PIECE_BYTES, PIECE_BYTES]], 'each a block, aligned')
  store.hold = undefined
  gate.resolve()
  const sealed = await writer.seal()
  assert.equal(store.appends.map(a => [a.offset, a.length]), [[0, PIECE_BYTES], [PIECE_BYTES, PIECE_BYTES], [2 * PIECE_BYTES, PIECE_BYTES / 2]])
  assert.equal(sealed, { size: bytes.length, cid: nameOf(bytes) })
  assert.ok(Buffer.from(store.bytes).equals(Buffer.from(bytes)))
})

batching('a one-block log is named as IPFS names the block', async () => {
  const { writer } = setup(['A'])
  write(writer, 'hello\n')
  // `printf 'hello\n' | ipfs add --raw-leaves --cid-version 1`
  assert.equal(await writer.seal(), { size: 6, cid: 'bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am' })
})

batching('an empty write sends nothing', async () => {
  const { writer, stores: [store] } = setup(['A'])
  assert.ok(writer.write(new Uint8Array(0)))
  const sealed = await writer.seal()
  assert.equal(store.appends, [])
  assert.equal(sealed, { size: 0, cid: nameOf(new Uint8Array(0)) })
})

// ---------------------------------------------------------------- resends

const resends = suite('log writer: broken streams and resends')

resends('a stream that breaks: the batch is resent on a new stream from the offset the store acknowledged', async () => {
  const { writer, stores: [a, b], reported } = setup(['A', 'B'], {}, ([s]) => { s.fault = (_req, n) => n === 1 ? 'break' : undefined })
  write(writer, 'hello ')
  await waitFor('the first batch on both', () => a.bytes.length === 6 && b.bytes.length === 6)
  write(writer, 'world\n')
  await writer.seal()
  assert.equal(a.appends.map(r => [r.offset, r.text]), [[0, 'hello '], [6, 'world\n'], [6, 'world\n']])
  assert.is(a.text, 'hello world\n')
  assert.is(a.channels.length, 2, 'a second stream for the resend')
  assert.ok(a.channels[0].aborted !== undefined, 'the broken stream is aborted, not reused')
  assert.equal(a.given, [a.channels[1]], 'only the working stream goes back to the pool')
  assert.is(b.channels.length, 1)
  assert.equal(b.given, [b.channels[0]])
  assert.equal(reported, [], 'a resend that works is no news')
})

resends('a lost reply: the resend finds the store past the batch, and no byte is doubled', async () => {
  const { writer, stores: [store] } = setup(['A'], {}, ([s]) => { s.fault = (_req, n) => n === 0 ? 'lose-reply' : undefined })
  write(writer, 'hello\n')
  await waitFor('the resend', () => store.appends.length === 2)
  write(writer, 'more\n')
  const sealed = await writer.seal()
  assert.equal(store.appends.map(r => [r.offset, r.text]), [[0, 'hello\n'], [0, 'hello\n'], [6, 'more\n']])
  assert.is(store.text, 'hello\nmore\n')
  assert.is(sealed.cid, nameOf(enc.encode('hello\nmore\n')))
})

resends('a store holding less than acknowledged answers a gap, and is resent from what it holds', async () => {
  const { writer, stores: [store] } = setup(['A'])
  write(writer, 'abcdef')
  await waitFor('the first batch', () => store.bytes.length === 6)
  // The store lost its tail (say it restarted before its write reached the disk).
  store.bytes = store.bytes.slice(0, 2)
  write(writer, 'ghi')
  await writer.seal()
  assert.equal(store.appends.map(r => r.offset), [0, 6, 2])
  assert.is(store.text, 'abcdefghi')
})

resends('a gap with appends in flight: their answers are read, and the writer resends from what the store holds', async () => {
  const { writer, stores: [store] } = setup(['A'], {}, ([s]) => { s.fault = (_req, n) => n === 0 ? { t: 'gap', size: 0 } : undefined })
  const bytes = new Uint8Array(3 * PIECE_BYTES)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 11)) & 255
  writer.write(bytes)
  const sealed = await writer.seal()
  assert.equal(store.appends.map(a => a.offset / PIECE_BYTES), [0, 1, 2, 0, 1, 2], 'the later two found a gap as well, and all three went again')
  assert.ok(Buffer.from(store.bytes).equals(Buffer.from(bytes)))
  assert.equal(sealed, { size: bytes.length, cid: nameOf(bytes) })
  assert.is(store.channels.length, 1, 'on the same stream')
})

resends('a gap past what the writer wrote drops that store at once; the others go on', async () => {
  const { writer, stores: [a, b], reported } = setup(['A', 'B'], {}, ([s]) => { s.fault = () => ({ t: 'gap', size: 999 }) })
  write(writer, 'abc')
  await waitFor('A to be dropped', () => reported.length === 1)
  assert.match(reported[0], `log ${LOG}: store A dropped (store answered gap 999 to an append at 0); 1 store(s) left`)
  assert.equal(writer.holders, [b.address])
  write(writer, 'def')
  const sealed = await writer.seal()
  assert.is(a.appends.length, 1, 'a wrong answer is not retried')
  assert.equal(a.seals, [])
  assert.is(b.text, 'abcdef')
  assert.is(sealed.cid, nameOf(enc.encode('abcdef')))
})

resends('an acknowledgement short of the batch or past what was written drops that store', async () => {
  const { writer, stores: [short, past, good], reported } = setup(['A', 'B', 'C'], {}, ([a, b]) => {
    a.fault = () => ({ t: 'ok', size: 2 })
    b.fault = () => ({ t: 'ok', size: 999 })
  })
  write(writer, 'abcdef')
  await waitFor('both to be dropped', () => reported.length === 2)
  assert.ok(reported.some(line => line.startsWith(`log ${LOG}: store A dropped (store answered ok 2 to an append at 0)`)), reported.join('; '))
  assert.ok(reported.some(line => line.startsWith(`log ${LOG}: store B dropped (store answered ok 999 to an append at 0)`)), reported.join('; '))
  assert.equal(writer.holders.map(h => h.peer), ['C'])
  const sealed = await writer.seal()
  assert.equal([short.seals, past.seals], [[], []])
  assert.is(good.text, 'abcdef')
  assert.is(sealed.cid, nameOf(enc.encode('abcdef')))
})

resends(`a store that fails ${LOG_APPEND_TRIES} tries is dropped; the log goes on with the others`, async () => {
  const { writer, stores: [a, b], reported } = setup(['A', 'B'], {}, ([s]) => { s.fault = () => 'break' })
  write(writer, 'first\n')
  await waitFor('A to be given up', () => reported.length === 1, 15_000)
  assert.match(reported[0], /store A dropped \(could not reach store A: stream reset\); 1 store\(s\) left/)
  assert.equal(a.appends.map(r => r.offset), Array(LOG_APPEND_TRIES).fill(0), 'each try resends the same batch')
  assert.is(a.channels.length, LOG_APPEND_TRIES, 'each try on a fresh stream')
  write(writer, 'second\n')
  const sealed = await writer.seal()
  assert.is(a.appends.length, LOG_APPEND_TRIES, 'nothing more goes to a dropped store')
  assert.equal(a.seals, [])
  assert.is(b.text, 'first\nsecond\n')
  assert.equal(sealed, { size: 13, cid: nameOf(enc.encode('first\nsecond\n')) })
  assert.equal(writer.holders, [b.address])
})

resends('every store failing: writes never block, and the seal throws LogUnwritableError', async () => {
  const { writer, reported } = setup(['A'], {}, ([s]) => { s.fault = () => ({ t: 'error', error: 'no write grant' }) })
  write(writer, 'x')
  await waitFor('the store to be dropped', () => reported.length === 1)
  assert.ok(write(writer, 'y'.repeat(LOG_BUFFER_LIMIT + 1)), 'no backpressure on a log nobody takes')
  await writer.drain()
  const err = await rejection(writer.seal())
  assert.is(err.name, 'LogUnwritableError')
  assert.match(err.message, `could not write log ${LOG} to any store`)
})

resends('no store at all: the seal throws LogUnwritableError', async () => {
  const { writer } = setup([])
  assert.ok(write(writer, 'lost'))
  const err = await rejection(writer.seal())
  assert.is(err.name, 'LogUnwritableError')
  assert.match(err.message, `no store to write log ${LOG} to`)
})

// ---------------------------------------------------------------- the limit

const limit = suite('log writer: the log limit')

limit('past the limit the output is cut, one line says so, and the rest is dropped without blocking', async () => {
  const { writer, stores: [store] } = setup(['A'], { limit: 10 })
  assert.ok(write(writer, 'abcdefghijklmnop'))
  assert.ok(write(writer, 'more output\n'))
  const line = 'grid: log limit of 10 bytes reached; further output of this step is dropped\n'
  const expected = `abcdefghij\n${line}`
  const sealed = await writer.seal()
  assert.is(store.text, expected)
  assert.is(writer.size, expected.length)
  assert.equal(sealed, { size: expected.length, cid: nameOf(enc.encode(expected)) })
})

limit('output ending on a newline right at the limit gets the line with no blank line before it', async () => {
  const { writer, stores: [store] } = setup(['A'], { limit: 10 })
  write(writer, 'abcdefghi\n')
  write(writer, 'x')
  await writer.seal()
  assert.is(store.text, 'abcdefghi\ngrid: log limit of 10 bytes reached; further output of this step is dropped\n')
})

limit('output exactly the limit long is kept whole, with no line', async () => {
  const { writer, stores: [store] } = setup(['A'], { limit: 10 })
  write(writer, '0123456789')
  await writer.seal()
  assert.is(store.text, '0123456789')
})

// ---------------------------------------------------------------- the seal

const seal = suite('log writer: the seal')

seal('a store naming the log otherwise is reported and not trusted; the CID stands on the store that agrees', async () => {
  const { writer, stores: [, b], reported } = setup(['A', 'B'], {}, ([, s]) => {
    s.fault = req => req.t === 'seal' ? { t: 'sealed', size: req.size, cid: 'bafkreiwrongwrongwrongwrong' } : undefined
  })
  write(writer, 'output\n')
  const sealed = await writer.seal()
  const cid = nameOf(enc.encode('output\n'))
  assert.equal(sealed, { size: 7, cid })
  assert.equal(reported, [`log ${LOG}: store B named it bafkreiwrongwrongwrongwrong, the worker wrote ${cid}; its copy is not trusted`])
  assert.is(b.given.length, 1, 'its stream is fine: it goes back to the pool')
})

seal('no store agreeing: the log is sealed with its size and no CID', async () => {
  const { writer, reported } = setup(['A', 'B'], {}, stores => {
    stores[0].fault = req => req.t === 'seal' ? { t: 'sealed', size: req.size, cid: 'bafkreiotherotherotherother' } : undefined
    // A fenced copy names nothing.
    stores[1].fault = req => req.t === 'seal' ? { t: 'sealed', size: req.size } : undefined
  })
  write(writer, 'output\n')
  const sealed = await writer.seal()
  assert.is(sealed.size, 7)
  assert.is(sealed.cid, undefined)
  assert.is(reported.length, 2)
  assert.match(reported[1], 'store B named it nothing')
})

seal('a store refusing the seal is dropped; one that seals is enough', async () => {
  const { writer, stores: [a, b], reported } = setup(['A', 'B'], {}, ([s]) => {
    s.fault = req => req.t === 'seal' ? { t: 'error', error: 'log sealed but not kept as content: store full' } : undefined
  })
  write(writer, 'output\n')
  const sealed = await writer.seal()
  assert.is(sealed.cid, nameOf(enc.encode('output\n')))
  assert.equal(reported, [`log ${LOG}: store A dropped (store answered log sealed but not kept as content: store full to the seal); 1 store(s) left`])
  assert.equal(a.given, [], 'a failed replica\'s stream is not pooled')
  assert.ok(a.channels[0].aborted !== undefined)
  assert.is(b.given.length, 1)
})

seal('every store refusing the seal: it throws LogUnwritableError', async () => {
  const { writer } = setup(['A', 'B'], {}, stores => {
    for (const s of stores) s.fault = req => req.t === 'seal' ? { t: 'error', error: 'nope' } : undefined
  })
  write(writer, 'output\n')
  const err = await rejection(writer.seal())
  assert.is(err.name, 'LogUnwritableError')
})

seal('writing after the seal throws LogUnwritableError', async () => {
  const { writer } = setup(['A'])
  await writer.seal()
  try {
    write(writer, 'late')
    assert.unreachable('write after seal')
  } catch (err: any) {
    assert.is(err.name, 'LogUnwritableError')
  }
})

seal('an abandoned log aborts its streams, seals nowhere and reports nothing', async () => {
  const gate = Promise.withResolvers<void>()
  const { writer, stores, reported } = setup(['A', 'B'], { batchBytes: 1 }, ss => { for (const s of ss) s.hold = gate.promise })
  write(writer, 'partial')
  await waitFor('appends in flight', () => stores.every(s => s.appends.length === 1))
  writer.abort()
  gate.resolve()
  const err = await rejection(writer.seal())
  assert.is(err.name, 'LogUnwritableError')
  assert.match(err.message, 'abandoned')
  for (const s of stores) {
    assert.ok(s.channels.every(c => c.aborted !== undefined), `${s.address.peer}: streams aborted`)
    assert.equal(s.seals, [])
  }
  assert.equal(reported, [])
})

// ---------------------------------------------------------------- backpressure

const backpressure = suite('log writer: backpressure')

backpressure('past the buffer limit write() says pause, and drain() resolves once the slow store catches up', async () => {
  const gate = Promise.withResolvers<void>()
  const { writer, stores: [store] } = setup(['A'], {}, ([s]) => { s.hold = gate.promise })
  const mib = new Uint8Array(1024 * 1024).fill(0x61)
  const answers: boolean[] = []
  for (let written = 0; written < LOG_BUFFER_LIMIT; written += mib.length) answers.push(writer.write(mib))
  assert.equal(answers, [true, true, true, false])
  let drained = false
  const draining = writer.drain().then(() => { drained = true })
  // Whole pieces do not wait for answers: all four are on their way, and the store holds every answer back.
  await waitFor('the appends the store holds', () => store.appends.length === APPENDS_IN_FLIGHT)
  assert.equal(store.appends.map(a => [a.offset, a.length]), Array.from({ length: APPENDS_IN_FLIGHT }, (_, i) => [i * PIECE_BYTES, PIECE_BYTES]))
  assert.not.ok(drained, 'no drain while the store holds every byte back')
  store.hold = undefined
  gate.resolve()
  await draining
  const sealed = await writer.seal()
  assert.is(sealed.size, LOG_BUFFER_LIMIT)
  assert.is(store.bytes.length, LOG_BUFFER_LIMIT)
  assert.ok(store.bytes.every(b => b === 0x61))
})

batching.run()
resends.run()
limit.run()
seal.run()
backpressure.run()

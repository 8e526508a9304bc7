// The log reader alone: a stub host whose every dial is answered, over an in-memory stream pair, by a stub store
// speaking /nameless-grid/log-read (stat, read, follow) from a log the test grows, seals, or cuts short mid-read.
// Which copy is read (longest, sealed on a tie, a fenced empty one never while a longer one exists) and failover
// mid-read without a byte repeated or skipped.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { EventEmitter } from 'node:events'
import { streamPair } from '@libp2p/utils'
import type { PeerId, Stream } from '@libp2p/interface'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { LogReader } from '../../client/log-reader.ts'
import { MessageChannel } from '../../net/wire.ts'
import type { GridHost } from '../../net/host.ts'
import type { PeerAddress } from '../../net/dial.ts'
import { readRequest } from '../../protocols/log-read.ts'
import type { ReadReply, ReadRequest } from '../../protocols/log-read.ts'
import { rankFor } from '../../grid/placement.ts'
import type { LogInfo, LogStore, ReadOptions } from '../../storage/log-store.ts'
import { rejection, waitFor, within } from '../wait.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()
const LOG = '0mwv1se3l2c9ee100.a1.s0'

/** How a stub store stops serving a read once it has sent `after` bytes of it. */
interface Cut {
  after: number
  /** reset: the stream is aborted; close: it ends cleanly with no `end`; misorder: a frame names the wrong offset. */
  how: 'reset' | 'close' | 'misorder'
}

class StubStore {
  readonly peer: PeerId
  /** The log as this store holds it; undefined: never heard of it. */
  bytes: Uint8Array | undefined
  sealed = false
  frameBytes = 3
  cut: Cut | undefined
  unreachable = false
  stats = 0
  readonly reads: Array<{ from: number, follow: boolean }> = []
  private readonly changes = new EventEmitter()

  constructor (peer: PeerId) {
    this.peer = peer
  }

  get address (): PeerAddress {
    return { peer: this.peer.toString(), addrs: [] }
  }

  holds (text: string, sealed = false): this {
    this.bytes = enc.encode(text)
    this.sealed = sealed
    return this
  }

  append (text: string): void {
    const more = enc.encode(text)
    const grown = new Uint8Array((this.bytes?.length ?? 0) + more.length)
    grown.set(this.bytes ?? new Uint8Array(0))
    grown.set(more, this.bytes?.length ?? 0)
    this.bytes = grown
    this.changes.emit('change')
  }

  seal (): void {
    this.bytes ??= new Uint8Array(0)
    this.sealed = true
    this.changes.emit('change')
  }

  /** The store's side of one stream, as protocols/log-read.ts serves it. */
  async serve (stream: Stream): Promise<void> {
    const channel = new MessageChannel<ReadRequest, ReadReply>(stream, readRequest)
    const closed = new Promise<void>(resolve => stream.addEventListener('close', () => resolve(), { once: true }))
    try {
      const request = await channel.expect()
      if (request.t === 'stat') {
        this.stats++
        await channel.send({ t: 'info', known: this.bytes !== undefined, size: this.bytes?.length ?? 0, sealed: this.sealed })
      } else {
        this.reads.push({ from: request.from, follow: request.follow })
        let offset = request.from
        let sent = 0
        while (true) {
          const change = new Promise<void>(resolve => this.changes.once('change', resolve))
          while (offset < (this.bytes?.length ?? 0)) {
            if (this.cut !== undefined && sent >= this.cut.after) {
              if (this.cut.how === 'reset') {
                stream.abort(new Error('the store crashed'))
                return
              }
              if (this.cut.how === 'close') {
                await channel.close()
                return
              }
              await channel.send({ t: 'data', offset: offset + 1, bytes: this.bytes!.subarray(offset + 1, offset + 1 + this.frameBytes) })
              await channel.close()
              return
            }
            const bytes = this.bytes!.subarray(offset, offset + this.frameBytes)
            await channel.send({ t: 'data', offset, bytes })
            offset += bytes.length
            sent += bytes.length
          }
          if (!request.follow || this.sealed) break
          await Promise.race([change, closed])
          if (stream.status !== 'open') return
        }
        await channel.send({ t: 'end', size: this.bytes?.length ?? 0, sealed: this.sealed })
      }
      await channel.close()
    } catch (err: any) {
      channel.abort(err)
    }
  }
}

/** A local log store as the reader uses it: info and read, recording each read. */
function localStore (text: string, info: Partial<LogInfo>): { store: LogStore, reads: ReadOptions[] } {
  const bytes = enc.encode(text)
  const reads: ReadOptions[] = []
  const store = {
    info: async (id: string) => id === LOG ? { size: bytes.length, sealed: false, created: new Date().toISOString(), ...info } : undefined,
    read: async function * (_id: string, options: ReadOptions = {}) {
      reads.push(options)
      if ((options.from ?? 0) < bytes.length) yield bytes.subarray(options.from ?? 0)
    }
  }
  return { store: store as unknown as LogStore, reads }
}

async function peerId (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

interface Grid {
  /** The stores, in rankFor order for LOG: the first is the one the reader asks first. */
  ranked: StubStore[]
  reader: LogReader
  reported: string[]
  dials: number
  self: PeerId
}

async function grid (count: number, init: { local?: LogStore, withSelf?: boolean } = {}): Promise<Grid> {
  const self = await peerId()
  const stores = await Promise.all(Array.from({ length: count }, async () => new StubStore(await peerId())))
  const byPeer = new Map(stores.map(s => [s.peer.toString(), s]))
  const addresses = stores.map(s => s.address)
  // This node is among the grid's stores when it runs one: it is never dialled.
  if (init.withSelf === true) addresses.push({ peer: self.toString(), addrs: [] })
  const g: Grid = { ranked: [], reader: undefined as unknown as LogReader, reported: [], dials: 0, self }
  g.ranked = rankFor(LOG, stores.map(s => s.address)).map(a => byPeer.get(a.peer)!)
  const host = {
    peerId: self,
    peerStore: { merge: async () => {} },
    dialProtocol: async (peer: PeerId) => {
      g.dials++
      const store = byPeer.get(peer.toString())
      if (store === undefined || store.unreachable) throw new Error('connection refused')
      const [readerEnd, storeEnd] = await streamPair()
      void store.serve(storeEnd)
      return readerEnd
    }
  }
  g.reader = new LogReader({ host: host as unknown as GridHost, local: init.local, stores: () => addresses, report: line => g.reported.push(line) })
  return g
}

async function readAll (reader: LogReader, options: ReadOptions = {}): Promise<string> {
  let text = ''
  for await (const chunk of reader.read(LOG, options)) text += dec.decode(chunk)
  return text
}

/** Read in the background, for following: the text so far, and the end of the read. */
function follow (reader: LogReader, options: ReadOptions = {}): { text: () => string, done: Promise<void> } {
  let text = ''
  const done = (async () => {
    for await (const chunk of reader.read(LOG, { ...options, follow: true })) text += dec.decode(chunk)
  })()
  return { text: () => text, done }
}

// ---------------------------------------------------------------- which copy

const choice = suite('log reader: which copy is read')

choice('the longest copy is read, whatever its rank; the others are only asked its size', async () => {
  const { ranked: [first, second, third], reader } = await grid(3)
  first.holds('abcde')
  second.holds('abcdefg', true)
  third.holds('abcdefghij')
  assert.is(await readAll(reader), 'abcdefghij')
  assert.equal(third.reads, [{ from: 0, follow: false }])
  assert.equal([first.reads, second.reads], [[], []])
  assert.equal([first.stats, second.stats, third.stats], [1, 1, 1])
})

choice('on equal length a sealed copy is read before an unsealed one ranked above it', async () => {
  const { ranked: [first, second], reader } = await grid(2)
  first.holds('0123456789')
  second.holds('0123456789', true)
  assert.is(await readAll(reader), '0123456789')
  assert.equal(first.reads, [])
  assert.is(second.reads.length, 1)
})

choice('among equal copies the first in rank order is read', async () => {
  const { ranked: [first, second], reader } = await grid(2)
  first.holds('same', true)
  second.holds('same', true)
  assert.is(await readAll(reader), 'same')
  assert.is(first.reads.length, 1)
  assert.equal(second.reads, [])
})

choice('a fenced empty copy, on a store the writer never reached, is not read while a longer copy exists', async () => {
  const { ranked: [first, second], reader } = await grid(2)
  first.holds('', true)
  second.holds('output of a lost attempt\n')
  assert.is(await readAll(reader), 'output of a lost attempt\n')
  assert.equal(first.reads, [])
})

choice('a store that cannot be reached is passed over', async () => {
  const { ranked: [first, second], reader } = await grid(2)
  first.holds('the longest copy, away')
  first.unreachable = true
  second.holds('short')
  assert.is(await readAll(reader), 'short')
})

choice('a log no store has: without follow the read is empty and nothing is read', async () => {
  const { ranked, reader } = await grid(2)
  assert.is(await readAll(reader), '')
  assert.ok(ranked.every(s => s.reads.length === 0 && s.stats === 1))
})

choice('reading from an offset asks the store from there', async () => {
  const { ranked: [first], reader } = await grid(1)
  first.holds('0123456789', true)
  assert.is(await readAll(reader, { from: 4 }), '456789')
  assert.equal(first.reads, [{ from: 4, follow: false }])
})

// ---------------------------------------------------------------- this node's own copy

const local = suite('log reader: this node\'s own copy')

local('a sealed copy here is read at once, no store asked', async () => {
  const { store, reads } = localStore('sealed here', { sealed: true })
  const g = await grid(2, { local: store })
  g.ranked[0].holds('sealed here and longer elsewhere')
  assert.is(await readAll(g.reader, { from: 2 }), 'aled here')
  assert.is(reads[0].from, 2)
  assert.is(g.dials, 0)
})

local('a fenced copy here (sealed empty by the coordinator) is not read while a store holds more', async () => {
  const { store, reads } = localStore('', { sealed: true, fenced: true, size: 0 })
  const g = await grid(1, { local: store, withSelf: true })
  g.ranked[0].holds('what the writer wrote\n')
  assert.is(await readAll(g.reader), 'what the writer wrote\n')
  assert.equal(reads, [])
})

local('a partial copy here is read only when no other store has the log; this node is never dialled', async () => {
  const { store, reads } = localStore('partial', {})
  const g = await grid(2, { local: store, withSelf: true })
  assert.is(await readAll(g.reader), 'partial')
  assert.is(reads.length, 1)
  assert.is(g.dials, 2, 'each store asked once; this node never')
})

local('a partial copy here gives way to a longer one on a store', async () => {
  const { store, reads } = localStore('part', {})
  const g = await grid(1, { local: store, withSelf: true })
  g.ranked[0].holds('part and the rest')
  assert.is(await readAll(g.reader), 'part and the rest')
  assert.equal(reads, [])
})

// Skipped: fails today. The reader asks the other stores first whenever this node's copy is unsealed, and reads the
// longest of theirs however short: a writer that dropped the other replica (it was away) and goes on writing here
// leaves a stale prefix there, which is read instead (and, with follow, waited on for bytes that never come).
local('a longer unsealed copy here is read rather than a shorter copy on a store', async () => {
  const { store } = localStore('partial output\n', {})
  const g = await grid(1, { local: store, withSelf: true })
  g.ranked[0].holds('part')
  assert.is(await readAll(g.reader), 'partial output\n')
})

// ---------------------------------------------------------------- failover

const failover = suite('log reader: failover mid-read')

failover('a holder that ends the stream mid-read: the read goes on from that byte on another holder', async () => {
  const g = await grid(2)
  const [first, second] = g.ranked
  first.holds('abcdefghijkl')
  first.cut = { after: 6, how: 'close' }
  second.holds('abcdefghijkl')
  assert.is(await readAll(g.reader), 'abcdefghijkl')
  assert.equal(second.reads, [{ from: 6, follow: false }])
  assert.is(g.reported.length, 1)
  assert.match(g.reported[0], `log ${LOG}: lost store ${first.peer.toString()} at byte 6`)
})

failover('a holder that crashes mid-read: nothing repeated, nothing skipped', async () => {
  const g = await grid(2)
  const [first, second] = g.ranked
  const text = 'the quick brown fox jumps over the lazy dog\n'
  first.holds(text)
  first.cut = { after: 9, how: 'reset' }
  second.holds(text)
  assert.is(await readAll(g.reader), text)
  assert.is(second.reads.length, 1)
  const at = second.reads[0].from
  assert.ok(at > 0 && at <= 9, `resumed where the first stopped (${at})`)
  assert.match(g.reported[0], `at byte ${at}`)
})

failover('a holder sending bytes out of order is left, and the read goes on elsewhere from the last good byte', async () => {
  const g = await grid(2)
  const [first, second] = g.ranked
  first.holds('0123456789')
  first.cut = { after: 3, how: 'misorder' }
  second.holds('0123456789')
  assert.is(await readAll(g.reader), '0123456789')
  assert.equal(second.reads, [{ from: 3, follow: false }])
  assert.match(g.reported[0], 'out of order')
})

failover('every holder failing: LogUnavailableError naming the byte reached', async () => {
  const g = await grid(2)
  const [first, second] = g.ranked
  first.holds('0123456789')
  first.cut = { after: 3, how: 'close' }
  second.holds('0123456789')
  second.cut = { after: 3, how: 'close' }
  const chunks: string[] = []
  const err = await rejection((async () => { for await (const c of g.reader.read(LOG)) chunks.push(dec.decode(c)) })())
  assert.is(err.name, 'LogUnavailableError')
  assert.match(err.message, `could be read from byte 6`)
  assert.is(chunks.join(''), '012345', 'what was read before is kept, once')
})

// ---------------------------------------------------------------- following

const following = suite('log reader: following')

following('a follower gets each append as it lands and ends when the log is sealed', async () => {
  const { ranked: [first], reader } = await grid(1)
  first.holds('abc')
  const f = follow(reader)
  await waitFor('the bytes already there', () => f.text() === 'abc')
  first.append('def\n')
  await waitFor('the append', () => f.text() === 'abcdef\n')
  first.append('ghi\n')
  first.seal()
  await within(5_000, 'the read to end at the seal', f.done)
  assert.is(f.text(), 'abcdef\nghi\n')
  assert.equal(first.reads, [{ from: 0, follow: true }])
})

following('a log nobody has yet is waited for on the store it will be written to first', async () => {
  const { ranked: [first, second], reader } = await grid(2)
  const f = follow(reader)
  await waitFor('the follower to wait on the first store', () => first.reads.length === 1)
  assert.equal(second.reads, [])
  first.append('late start\n')
  await waitFor('the first bytes', () => f.text() === 'late start\n')
  first.seal()
  await within(5_000, 'the read to end', f.done)
})

following('a follower whose holder dies goes on following on another holder from the byte it reached', async () => {
  const g = await grid(2)
  const [first, second] = g.ranked
  first.holds('one\n')
  second.holds('one\n')
  const f = follow(g.reader)
  await waitFor('the first line', () => f.text() === 'one\n')
  assert.is(first.reads.length, 1)
  // The store being read closes mid-follow; the writer goes on with the other replica.
  first.cut = { after: 0, how: 'close' }
  second.append('two\n')
  first.append('two\n')
  await waitFor('the follower to move', () => second.reads.length === 1)
  assert.equal(second.reads, [{ from: 4, follow: true }])
  second.append('three\n')
  second.seal()
  await within(5_000, 'the read to end', f.done)
  assert.is(f.text(), 'one\ntwo\nthree\n')
})

following('aborting a follow ends the read quietly', async () => {
  const { ranked: [first], reader } = await grid(1)
  first.holds('abc')
  const stop = new AbortController()
  const f = follow(reader, { signal: stop.signal })
  await waitFor('the bytes there', () => f.text() === 'abc')
  stop.abort()
  await within(5_000, 'the read to end', f.done)
  assert.is(f.text(), 'abc')
})

choice.run()
local.run()
failover.run()
following.run()

// Content between real libp2p nodes over TCP: put sends only what a store lacks, get verifies every block,
// a lying peer is caught, a truncated put leaves nothing visible.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encode } from 'cborg'
import { lpStream } from '@libp2p/utils'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../../net/host.ts'
import type { GridHost } from '../../net/host.ts'
import type { PeerAddress } from '../../net/dial.ts'
import { newSecret } from '../../net/join-code.ts'
import { Store } from '../../artifact-store/index.ts'
import { putContent } from '../../client/content/put.ts'
import { putPool, readFileBlocks } from '../../client/content/file-blocks.ts'
import { nameOf } from '../../client/content/name.ts'
import { readContent } from '../../client/content/read.ts'
import { placementNeedsName, putReadable } from '../../client/content/place.ts'
import { rankFor } from '../../grid/placement.ts'
import { BLOCK_GET_PROTOCOL, fetchFrom } from '../../protocols/block-get.ts'
import { BLOCK_PUT_PROTOCOL, BlockSender, putRequest } from '../../protocols/block-put.ts'
import { MessageChannel } from '../../net/wire.ts'
import { BLOCK_MISSING_PROTOCOL, missingRequest } from '../../protocols/block-missing.ts'
import { MAX_BLOCK_FRAME_BYTES } from '../../storage/constants.ts'
import { setTimeout as sleep } from 'node:timers/promises'
import { blockCid, parseCid } from '../../grid/content.ts'
import { BLOCK_BYTES } from '../../grid/constants.ts'
import { rejection } from '../wait.ts'

interface Ctx { dir: string, secret: Uint8Array, hosts: GridHost[], stores: Store[], client: GridHost, a: PeerAddress, b: PeerAddress }

const transfer = suite<Ctx>('content transfer between nodes')

const address = (host: GridHost): PeerAddress => ({ peer: host.peerId.toString(), addrs: host.getMultiaddrs().map(String) })

async function * pieces (bytes: Uint8Array, size = 100_000): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size)
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const part of source) parts.push(part)
  return Buffer.concat(parts)
}

transfer.before(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-transfer-'))
  ctx.secret = newSecret()
  ctx.hosts = []
  ctx.stores = []
  for (const name of ['a', 'b']) {
    const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.secret, listen: ['/ip4/127.0.0.1/tcp/0'] })
    const store = new Store({ host, dataDir: join(ctx.dir, name), coordinator: host.peerId })
    await store.start()
    ctx.hosts.push(host)
    ctx.stores.push(store)
  }
  ctx.client = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.secret, listen: [] })
  ctx.hosts.push(ctx.client)
  ctx.a = address(ctx.hosts[0])
  ctx.b = address(ctx.hosts[1])
})

transfer.after(async ctx => {
  for (const store of ctx.stores) await store.stop().catch(() => {})
  for (const host of ctx.hosts) await host.stop()
  await rm(ctx.dir, { recursive: true, force: true })
})

transfer('a multi-block file round-trips byte-identical, ranges included; a re-put sends nothing', async ctx => {
  const bytes = new Uint8Array(randomBytes(5 * BLOCK_BYTES + 123_456))
  const put = await putContent({ host: ctx.client, store: ctx.a }, pieces(bytes))
  assert.is(put.size, bytes.length)
  assert.is(put.sha256, createHash('sha256').update(bytes).digest('hex'))
  assert.is(put.sentBlocks, 7, 'six data blocks and the manifest')
  const cid = parseCid(put.cid)
  const sources = { host: ctx.client, holders: () => [ctx.a] }
  const back = await collect(readContent(sources, cid))
  assert.ok(back.equals(bytes), 'byte-identical')
  for (const [from, to] of [[0, 1], [BLOCK_BYTES - 10, BLOCK_BYTES + 10], [1_500_000, 3_200_000], [bytes.length - 5, bytes.length], [100, 100], [bytes.length, bytes.length + 50], [2 * BLOCK_BYTES, undefined]]) {
    const slice = await collect(readContent(sources, cid, { from, to }))
    assert.ok(slice.equals(Buffer.from(bytes.subarray(from, to))), `range ${from}-${to}`)
  }
  const again = await putContent({ host: ctx.client, store: ctx.a }, pieces(bytes))
  assert.is(again.cid, put.cid)
  assert.is(again.sentBlocks, 0)
  assert.is(again.sentBytes, 0)
})

transfer('an empty file and a one-block file are named by their raw block', async ctx => {
  const empty = await putContent({ host: ctx.client, store: ctx.a }, pieces(new Uint8Array(0)))
  assert.is(empty.cid, blockCid(new Uint8Array(0)).toString())
  assert.is((await collect(readContent({ host: ctx.client, holders: () => [ctx.a] }, parseCid(empty.cid)))).length, 0)
  const small = new Uint8Array(randomBytes(1000))
  const put = await putContent({ host: ctx.client, store: ctx.a }, pieces(small))
  assert.is(put.cid, blockCid(small).toString())
  assert.is(put.sha256, createHash('sha256').update(small).digest('hex'))
  assert.ok((await collect(readContent({ host: ctx.client, holders: () => [ctx.a] }, parseCid(put.cid), { from: 10, to: 20 }))).equals(Buffer.from(small.subarray(10, 20))))
})

transfer('a peer that serves wrong bytes is caught, and the reader moves on to an honest holder', async ctx => {
  const bytes = new Uint8Array(randomBytes(2 * BLOCK_BYTES + 10))
  const put = await putContent({ host: ctx.client, store: ctx.a }, pieces(bytes))
  const liar = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.secret, listen: ['/ip4/127.0.0.1/tcp/0'] })
  ctx.hosts.push(liar)
  // The liar answers with a (real) manifest taken from the store, then garbage for the blocks.
  const manifestBytes = (await ctx.stores[0].blocks.get(parseCid(put.cid)))!
  await liar.handle(BLOCK_GET_PROTOCOL, async stream => {
    const lp = lpStream(stream)
    await lp.read()
    await lp.write(encode({ t: 'manifest', bytes: manifestBytes }))
    await lp.write(encode({ t: 'block', bytes: new Uint8Array(BLOCK_BYTES) }))
    await stream.close()
  })
  const err = await rejection(collect(fetchFrom(ctx.client, address(liar), parseCid(put.cid))))
  assert.is(err.name, 'WrongBytesError')
  const back = await collect(readContent({ host: ctx.client, holders: () => [address(liar), ctx.a] }, parseCid(put.cid)))
  assert.ok(back.equals(bytes), 'the honest holder\'s bytes')
})

transfer('a block whose bytes do not match its CID is refused, nothing of it is kept, and a retry works', async ctx => {
  const good = new Uint8Array(randomBytes(5000))
  const cid = blockCid(good)
  const stream = await ctx.client.dialProtocol(ctx.hosts[1].getMultiaddrs()[0], BLOCK_PUT_PROTOCOL)
  const lp = lpStream(stream, { maxDataLength: 4 * BLOCK_BYTES })
  const forged = Uint8Array.from(good)
  forged[0] ^= 1
  await lp.write(encode({ t: 'block', cid: cid.toString(), bytes: forged }))
  const reply = await lp.read({ signal: AbortSignal.timeout(10_000) })
  assert.match(new TextDecoder().decode(reply.subarray()), /refused/)
  await rejection(lp.read({ signal: AbortSignal.timeout(10_000) }))
  assert.not.ok(await ctx.stores[1].blocks.has(cid), 'nothing kept')
  const retry = await putContent({ host: ctx.client, store: ctx.b }, pieces(good))
  assert.is(retry.cid, cid.toString())
  assert.ok(await ctx.stores[1].blocks.has(cid))
})

transfer('a truncated put leaves no partial artifact visible', async ctx => {
  const bytes = new Uint8Array(randomBytes(3 * BLOCK_BYTES))
  const whole = await putContent({ local: ctx.stores[0].blocks }, pieces(bytes))
  // The same content to store B, cut off after the first megabyte.
  async function * cut (): AsyncGenerator<Uint8Array> {
    yield bytes.subarray(0, BLOCK_BYTES + 10)
    throw new Error('connection lost')
  }
  await rejection(putContent({ host: ctx.client, store: ctx.b }, cut()))
  const err = await rejection(collect(readContent({ host: ctx.client, holders: () => [ctx.b] }, parseCid(whole.cid))))
  assert.is(err.name, 'ContentUnavailableError', 'no manifest, so no content, however many blocks arrived')
})

transfer('a put from a file reuses its buffers once both stores acknowledged each block, and every byte arrives right', async ctx => {
  const bytes = new Uint8Array(randomBytes(64 * BLOCK_BYTES + 4321))
  const path = join(ctx.dir, 'pooled.bin')
  await writeFile(path, bytes)
  // Store b holds a few of the blocks already: those are not sent to it, and their buffers must still come back.
  const early = await putContent({ host: ctx.client, store: ctx.b }, pieces(bytes.subarray(0, 3 * BLOCK_BYTES), BLOCK_BYTES))
  assert.is(early.sentBlocks, 4, 'three blocks and their manifest')
  const pool = putPool()
  const buffers = new Set<ArrayBufferLike>()
  async function * watched (): AsyncGenerator<Uint8Array> {
    for await (const chunk of readFileBlocks(path, pool)) {
      buffers.add(chunk.buffer)
      yield chunk
    }
  }
  const put = await putContent([{ host: ctx.client, store: ctx.a }, { host: ctx.client, store: ctx.b }], watched(), { pool })
  assert.is(put.sha256, createHash('sha256').update(bytes).digest('hex'))
  assert.ok(buffers.size < 65, `65 blocks were read into ${buffers.size} buffers: buffers came back and were read into again`)
  assert.ok(pool.waiting > 0, 'the buffers of the last blocks came back too')
  for (const holder of [ctx.a, ctx.b]) {
    const back = await collect(readContent({ host: ctx.client, holders: () => [holder] }, parseCid(put.cid)))
    assert.ok(back.equals(bytes), `byte-identical from ${holder === ctx.a ? 'a' : 'b'}: no buffer was read into while its block was on the way`)
  }
})

transfer('a put of content named by a first pass sends the same CID unhashed; content changed in between is refused and nothing is named', async ctx => {
  const bytes = new Uint8Array(randomBytes(3 * BLOCK_BYTES + 777))
  const named = await nameOf(pieces(bytes))
  const put = await putContent({ host: ctx.client, store: ctx.a }, pieces(bytes, 65_536), { named })
  assert.is(put.cid, named.cid)
  assert.is(put.sha256, createHash('sha256').update(bytes).digest('hex'))
  assert.ok((await collect(readContent({ host: ctx.client, holders: () => [ctx.a] }, parseCid(put.cid)))).equals(bytes))
  // The same size, one byte different in the third block: store B refuses that block, so the root is never named.
  const changed = Uint8Array.from(bytes)
  changed[2 * BLOCK_BYTES + 5] ^= 1
  for (const target of [{ host: ctx.client, store: ctx.b }, { local: ctx.stores[1].blocks, roots: ctx.stores[1].roots }]) {
    const err = await rejection(putContent(target, pieces(changed), { named }))
    assert.is(err.name, 'ContentChangedError', err.message)
    assert.match(err.message, /changed after it was named/)
  }
  assert.not.ok(await ctx.stores[1].blocks.has(named.blocks[2]), 'the changed block was not kept under the old CID')
  assert.not.ok(ctx.stores[1].roots.has(named.cid), 'nothing named')
  const err = await rejection(collect(readContent({ host: ctx.client, holders: () => [ctx.b] }, parseCid(named.cid))))
  assert.is(err.name, 'ContentUnavailableError')
})

transfer('putReadable reads once when every store takes the content, and names it first only when placement depends on it', async ctx => {
  assert.not.ok(placementNeedsName({ stores: [ctx.a], replicas: 1 }))
  assert.not.ok(placementNeedsName({ stores: [ctx.a, ctx.b], replicas: 2 }))
  assert.not.ok(placementNeedsName({ stores: [ctx.a], replicas: 3 }), 'all the stores there are')
  assert.ok(placementNeedsName({ stores: [ctx.a, ctx.b], replicas: 1 }))
  assert.ok(placementNeedsName({ stores: [ctx.a, ctx.b], replicas: 0 }), 'one copy at least')
  const bytes = new Uint8Array(randomBytes(3 * BLOCK_BYTES + 77))
  let reads = 0
  const open = (): AsyncIterable<Uint8Array> => { reads++; return pieces(bytes) }

  const once = await putReadable({ host: ctx.client, stores: [ctx.a], replicas: 1 }, open)
  assert.is(reads, 1, 'one store, one copy: sent as it is hashed')
  assert.is(once.sha256, createHash('sha256').update(bytes).digest('hex'))
  assert.equal(once.stores, [ctx.a.peer])
  assert.ok((await collect(readContent({ host: ctx.client, holders: () => [ctx.a] }, parseCid(once.cid)))).equals(bytes))

  reads = 0
  const other = new Uint8Array(randomBytes(2 * BLOCK_BYTES + 5))
  const openOther = (): AsyncIterable<Uint8Array> => { reads++; return pieces(other) }
  const placed = await putReadable({ host: ctx.client, stores: [ctx.a, ctx.b], replicas: 1 }, openOther)
  assert.is(reads, 2, 'two stores, one copy: named first, then sent')
  assert.equal(placed.stores, [rankFor(placed.cid, [ctx.a, ctx.b])[0].peer], 'on the store placed for its CID')
  assert.is(placed.cid, (await nameOf(pieces(other))).cid)
})

transfer('named content its stores already hold is not read at all; a store lacking a block gets the usual put', async ctx => {
  const bytes = new Uint8Array(randomBytes(4 * BLOCK_BYTES + 99))
  const named = await nameOf(pieces(bytes))
  const first = await putContent({ host: ctx.client, store: ctx.a }, pieces(bytes))
  assert.is(first.cid, named.cid)
  let reads = 0
  const counting = async function * (): AsyncGenerator<Uint8Array> { reads++; yield * pieces(bytes) }
  const again = await putContent({ host: ctx.client, store: ctx.a }, counting(), { named })
  assert.is(reads, 0, 'held whole: the source was never read')
  assert.is(again.sentBytes, 0)
  assert.equal(again.stores, [ctx.a.peer])
  assert.equal(again.blocks.map(String), named.blocks.map(String))

  // Store b lacks it: read and sent as usual.
  const toB = await putContent({ host: ctx.client, store: ctx.b }, counting(), { named })
  assert.is(reads, 1)
  assert.is(toB.sentBlocks, 6, 'five data blocks and the manifest')

  // The root is still there but a block went missing (dropped as rotten): naming the root is refused, and the put
  // sends what is lacking.
  const store = ctx.stores[1]
  const gone = named.blocks[2].toString()
  await store.blocks.exclusive(async () => { await store.blocks.commit([], -BLOCK_BYTES, [gone]) })
  assert.not.ok(await store.blocks.has(named.blocks[2]))
  const healed = await putContent({ host: ctx.client, store: ctx.b }, counting(), { named })
  assert.is(reads, 2, 'read again to send the missing block')
  assert.is(healed.sentBlocks, 1)
  assert.ok((await collect(readContent({ host: ctx.client, holders: () => [ctx.b] }, parseCid(named.cid)))).equals(bytes))
})

/**
 * A stand-in store that acknowledges each block after `delayMs(n)` (n counts from 1), or never when that is
 * undefined.
 */
async function slowStore (ctx: Ctx, delayMs: (n: number) => number | undefined): Promise<PeerAddress> {
  const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.secret, listen: ['/ip4/127.0.0.1/tcp/0'] })
  ctx.hosts.push(host)
  await host.handle(BLOCK_PUT_PROTOCOL, async stream => {
    const channel = new MessageChannel<any, any>(stream, putRequest, { maxMessageBytes: MAX_BLOCK_FRAME_BYTES })
    let n = 0
    for await (const message of channel) {
      const delay = delayMs(++n)
      if (delay === undefined) continue
      await sleep(delay)
      await channel.send({ t: 'stored', cid: message.cid })
    }
    await channel.close().catch(() => {})
  })
  return address(host)
}

transfer('a store that answers every block in time is never timed out, however long the writer was idle before', async ctx => {
  // The first block is acknowledged at once; the writer then idles for most of the timeout and sends a second,
  // which the store acknowledges within its own time. The timeout counts from that send, not from the idle read.
  const store = await slowStore(ctx, n => n === 1 ? 0 : 1000)
  const sender = await BlockSender.open(ctx.client, store, { ackTimeoutMs: 2000 })
  const blocks = [new Uint8Array(randomBytes(100)), new Uint8Array(randomBytes(100))].map(bytes => ({ cid: blockCid(bytes), bytes }))
  await sender.send(blocks[0])
  await sender.acknowledged()
  await sleep(1800)
  await sender.send(blocks[1])
  await sender.finish()
})

transfer('a store that stops acknowledging is given up with one clear sentence, not a bare timeout', async ctx => {
  const store = await slowStore(ctx, n => n === 1 ? 0 : undefined)
  const sender = await BlockSender.open(ctx.client, store, { ackTimeoutMs: 500 })
  const bytes = [new Uint8Array(randomBytes(100)), new Uint8Array(randomBytes(100))]
  await sender.send({ cid: blockCid(bytes[0]), bytes: bytes[0] })
  await sender.send({ cid: blockCid(bytes[1]), bytes: bytes[1] })
  const err = await rejection(sender.finish())
  assert.is(err.name, 'StoreSilentError', err.message)
  assert.match(err.message, /acknowledged nothing for 1 s with 1 message\(s\) outstanding/)
})

transfer('a put whose only store resets the stream fails with a sentence naming the store, not a bare stream error', async ctx => {
  const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.secret, listen: ['/ip4/127.0.0.1/tcp/0'] })
  ctx.hosts.push(host)
  await host.handle(BLOCK_PUT_PROTOCOL, async stream => {
    const channel = new MessageChannel<any, any>(stream, putRequest, { maxMessageBytes: MAX_BLOCK_FRAME_BYTES })
    await channel.receive()
    stream.abort(new Error('gone'))
  })
  // It lacks everything it is asked about.
  await host.handle(BLOCK_MISSING_PROTOCOL, async stream => {
    const channel = new MessageChannel<any, any>(stream, missingRequest)
    const ask = await channel.expect()
    await channel.send({ t: 'missing', cids: ask.cids })
    await channel.close()
  })
  const err = await rejection(putContent({ host: ctx.client, store: address(host) }, pieces(new Uint8Array(randomBytes(3 * BLOCK_BYTES)))))
  assert.is(err.name, 'ReplicasUnreachableError', `${err.name}: ${err.message}`)
  assert.match(err.message, new RegExp(`no store took the content \\(${host.peerId.toString()}: `))
})

transfer.run()

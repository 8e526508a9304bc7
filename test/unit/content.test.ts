// Content addressing and the blockstore: names are stable and verifiable, bad bytes are never kept or served.
import { suite } from 'uvu'
import { attemptId, logId } from '../../grid/ids.ts'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { access, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { CID } from 'multiformats/cid'
import { Chunker, ContentChangedError, ContentNamer, blockCid, decodeManifest, encodeManifest, isManifestCid, matches, nameContent, parseCid, MANIFEST_TYPE } from '../../grid/content.ts'
import type { Named } from '../../grid/content.ts'
import { Blockstore } from '../../storage/blockstore.ts'
import { BlockFiles } from '../../storage/block-files.ts'
import { HeldContent } from '../../storage/held-content.ts'
import { RootCatalog } from '../../storage/root-catalog.ts'
import { UNCLAIMED_SWEEP_BATCH } from '../../storage/constants.ts'
import { rejection } from '../wait.ts'
import { BLOCK_BYTES, MAX_LOG_BYTES } from '../../grid/constants.ts'
import { LogStore } from '../../storage/log-store.ts'
import { LogSealer } from '../../storage/log-content.ts'
import type { AppendReply, AppendRequest } from '../../protocols/log-append.ts'
import { putContent } from '../../client/content/put.ts'
import { nameOf } from '../../client/content/name.ts'
import { readContent } from '../../client/content/read.ts'
import { LogWriter } from '../../worker/log-writer.ts'
import type { AppendStreams } from '../../worker/append-streams.ts'

const content = suite('content addressing')

/** Chunk `bytes` fed in pieces of `piece` bytes, as a stream would. */
function chunk (bytes: Uint8Array, blockBytes: number, piece: number, named?: Named): { blocks: Array<{ cid: CID, bytes: Uint8Array }>, size: number, sha256: string } {
  const chunker = new Chunker(blockBytes, named)
  const blocks = []
  for (let at = 0; at < bytes.length; at += piece) blocks.push(...chunker.push(bytes.subarray(at, at + piece)))
  const { last, size, sha256 } = chunker.finish()
  if (last !== undefined) blocks.push(last)
  return { blocks, size, sha256 }
}

content('a block is named by the CIDv1 raw sha2-256 of its bytes, as IPFS names raw leaves', () => {
  const cid = blockCid(new TextEncoder().encode('hello\n'))
  // `printf 'hello\n' | ipfs add --raw-leaves --cid-version 1` gives this CID.
  assert.is(cid.toString(), 'bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am')
  assert.ok(matches(cid, new TextEncoder().encode('hello\n')))
  assert.not.ok(matches(cid, new TextEncoder().encode('hello!')))
})

content('chunking gives the same blocks whatever pieces the stream arrives in', () => {
  const bytes = new Uint8Array(randomBytes(10_000))
  const a = chunk(bytes, 4096, 1)
  const b = chunk(bytes, 4096, 777)
  const c = chunk(bytes, 4096, 10_000)
  assert.equal(a.blocks.map(x => x.cid.toString()), c.blocks.map(x => x.cid.toString()))
  assert.equal(b.blocks.map(x => x.cid.toString()), c.blocks.map(x => x.cid.toString()))
  assert.equal(c.blocks.map(x => x.bytes.length), [4096, 4096, 1808])
  assert.is(c.size, 10_000)
  assert.is(c.sha256, createHash('sha256').update(bytes).digest('hex'))
  assert.equal(Buffer.concat(c.blocks.map(x => x.bytes)), Buffer.from(bytes))
})

content('content named by a first pass is cut into the same blocks under the same CIDs, and a change in its size is caught', () => {
  const bytes = new Uint8Array(randomBytes(10_000))
  const first = chunk(bytes, 4096, 777)
  const named: Named = { cid: 'bafy-first-pass', size: first.size, sha256: first.sha256, blocks: first.blocks.map(b => b.cid) }
  const again = chunk(bytes, 4096, 1000, named)
  assert.equal(again.blocks.map(b => b.cid.toString()), first.blocks.map(b => b.cid.toString()))
  assert.equal(Buffer.concat(again.blocks.map(b => b.bytes)), Buffer.from(bytes))
  assert.is(again.sha256, first.sha256)
  // Not hashed: bytes changed in place keep the first pass's CIDs (whoever receives the block refuses it).
  const changed = Uint8Array.from(bytes)
  changed[5000] ^= 1
  const unhashed = chunk(changed, 4096, 1000, named)
  assert.is(unhashed.blocks[1].cid.toString(), first.blocks[1].cid.toString())
  assert.not.ok(matches(unhashed.blocks[1].cid, unhashed.blocks[1].bytes))
  const longer = new Uint8Array(10_001)
  longer.set(bytes)
  assert.throws(() => chunk(longer, 4096, 1000, named), (err: Error) => err instanceof ContentChangedError && /longer than the 10000 bytes/.test(err.message))
  assert.throws(() => chunk(bytes.subarray(0, 9999), 4096, 1000, named), (err: Error) => err instanceof ContentChangedError && /is 9999 bytes, not the 10000/.test(err.message))
})

content('one block is named by itself; more get a manifest; nothing is the empty block', async () => {
  const small = new Uint8Array(randomBytes(100))
  const one = await nameContent([small], { blockBytes: 4096 })
  assert.is(one.cid.toString(), blockCid(small).toString())
  assert.is(one.manifest, undefined)
  const big = new Uint8Array(randomBytes(9000))
  const kept: Array<{ cid: CID, bytes: Uint8Array }> = []
  const named = await nameContent([big.subarray(0, 5000), big.subarray(5000)], { blockBytes: 4096, keep: block => { kept.push(block) } })
  assert.ok(isManifestCid(named.cid))
  assert.is(named.manifest!.cid.toString(), named.cid.toString())
  const manifest = decodeManifest(named.manifest!.bytes)
  assert.is(manifest.size, 9000)
  assert.is(manifest.sha256, createHash('sha256').update(big).digest('hex'))
  assert.equal(manifest.blocks.map(b => b.cid.toString()), kept.map(b => b.cid.toString()), 'every block kept, in order, and the manifest not among them')
  assert.equal(kept.map(b => b.bytes.length), [4096, 4096, 808])
  const empty: Uint8Array[] = []
  const none = await nameContent([], { keep: block => { empty.push(block.bytes) } })
  assert.is(none.cid.toString(), blockCid(new Uint8Array(0)).toString())
  assert.equal(none.blocks, [])
  assert.equal(empty, [new Uint8Array(0)], 'the empty block is kept, so empty content can be fetched')
})

content('a manifest from a peer is checked: sizes must add up, CIDs must be raw blocks', () => {
  const block = blockCid(new Uint8Array([1, 2, 3]))
  const good = encodeManifest({ type: MANIFEST_TYPE, size: 3, sha256: 'a'.repeat(64), blocks: [{ cid: block, size: 3 }] })
  assert.is(decodeManifest(good.bytes).size, 3)
  for (const bad of [
    encodeManifest({ type: MANIFEST_TYPE, size: 4, sha256: 'a'.repeat(64), blocks: [{ cid: block, size: 3 }] }).bytes,
    encodeManifest({ type: MANIFEST_TYPE, size: 3, sha256: 'nope', blocks: [{ cid: block, size: 3 }] }).bytes,
    encodeManifest({ type: MANIFEST_TYPE, size: 3, sha256: 'a'.repeat(64), blocks: [{ cid: good.cid, size: 3 }] }).bytes,
    new Uint8Array([0xff, 0x00]),
    new TextEncoder().encode('{"json": "no"}')
  ]) {
    try {
      decodeManifest(bad)
      assert.unreachable('a bad manifest was accepted')
    } catch (err: any) {
      assert.is(err.name, 'BadManifestError')
    }
  }
})

content('CIDs from users are parsed strictly', () => {
  const cid = blockCid(new Uint8Array([1]))
  assert.is(parseCid(cid.toString()).toString(), cid.toString())
  for (const bad of ['', 'hello', 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG', '../../etc/passwd', 'bafy' + 'a'.repeat(200)]) {
    try {
      parseCid(bad)
      assert.unreachable(`${bad} was accepted`)
    } catch (err: any) {
      assert.is(err.name, 'BadCidError')
    }
  }
})

content.run()

/**
 * Content named by the code before the four namers (a put, a first pass, a store sealing a log, a worker writing
 * one) became ContentNamer. These CIDs are what users and stores already hold: they must never change.
 */
const KNOWN = [
  { what: 'empty content', size: 0, blocks: 0, cid: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku', sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
  { what: 'one short block', size: 6, blocks: 1, cid: 'bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am', sha256: '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03' },
  { what: 'one full block', size: BLOCK_BYTES, blocks: 1, cid: 'bafkreift3s536ygui53nuhgsgxo7cnpg3aoffpxgopxqzxzkcqrsxmo3vm', sha256: 'b3dcbbbf60d44776da1cd235ddf135e6d81c52bee673ef0cdf2a14232bb1dbab' },
  { what: 'a full block and one byte', size: BLOCK_BYTES + 1, blocks: 2, cid: 'bafyreia7ii77c34la7i22eoyc3hex3pzovaymbwyzabope7m6mfaytpy7y', sha256: 'c6c12a0587e5e6fbf015b09c78ceb03ce0ebd9bba7c9624d744f5e3d990e30a9' },
  { what: 'three full blocks and a short one', size: 3 * BLOCK_BYTES + 12345, blocks: 4, cid: 'bafyreidvbcqp5465rnewxjmqt4xtdvrwq2qlelutsbswikwdt7ubhdvifu', sha256: 'f7420190112114173886a2dbea933e842e84502d58e0ff9d6592cd9c569f6fab' }
]

/** The bytes of a KNOWN entry: `printf 'hello\n'` for the short block, else a pattern unlike from block to block. */
function knownBytes (size: number): Uint8Array {
  if (size === 6) return new TextEncoder().encode('hello\n')
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 20) * 101 + (i >> 10)) & 255
  return bytes
}

/** `bytes` in pieces of `piece` bytes, as a stream (a pipe, a log read back) hands them over. */
async function * pieces (bytes: Uint8Array, piece: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += piece) yield bytes.subarray(at, at + piece)
}

interface NamingCtx {
  dir: string
  db: Level<string, string>
}

const naming = suite<NamingCtx>('naming content: one namer, the same CIDs from every path')

naming.before.each(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-naming-'))
  ctx.db = new Level<string, string>(ctx.dir)
  await ctx.db.open()
})

naming.after.each(async ctx => {
  await ctx.db.close()
  await rm(ctx.dir, { recursive: true, force: true })
})

naming('known content keeps its known CID, sha256 and blocks, whatever pieces it arrives in', async () => {
  for (const known of KNOWN) {
    const bytes = knownBytes(known.size)
    for (const piece of [1 << 20, 300_000, 4093]) {
      const named = await nameContent(pieces(bytes, piece))
      assert.is(named.cid.toString(), known.cid, `${known.what} in pieces of ${piece}`)
      assert.is(named.sha256, known.sha256, known.what)
      assert.is(named.size, known.size)
      assert.is(named.blocks.length, known.blocks)
      assert.is(named.manifest !== undefined, known.blocks > 1, `${known.what}: a manifest only for more than one block`)
    }
    // Pushed a write at a time, as a worker names the log it writes.
    const namer = new ContentNamer()
    for (let at = 0; at < bytes.length; at += 65_536) namer.add(bytes.subarray(at, at + 65_536))
    assert.is(namer.finish().cid.toString(), known.cid, `${known.what}, pushed`)
  }
})

naming('a put, a first pass, a put after it, a store sealing a log and a worker writing one all give the known CIDs', async ({ db }) => {
  const blocks = new Blockstore(db)
  const roots = new RootCatalog(db, blocks)
  await roots.open()
  const logs = new LogStore(db)
  const sealer = new LogSealer(logs, blocks)
  // A store over no network at all: the worker's appends and seal go straight to the LogStore and the sealer.
  const streams = {
    take: async () => {
      let reply: AppendReply
      return {
        send: async (request: AppendRequest) => {
          reply = request.t === 'append'
            ? { t: 'ok', size: await logs.append(request.log, request.offset, request.bytes) }
            : { t: 'sealed', size: request.size, cid: (await sealer.seal(request.log, request.size)).cid }
        },
        expect: async () => reply,
        abort: () => {}
      }
    },
    give: () => {}
  } as unknown as AppendStreams
  try {
    for (const [i, known] of KNOWN.entries()) {
      const bytes = knownBytes(known.size)
      const first = await nameOf(pieces(bytes, 300_000))
      assert.is(first.cid, known.cid, `${known.what}: the first pass`)
      assert.is(first.sha256, known.sha256)
      assert.is((await putContent({ local: blocks, roots }, pieces(bytes, 300_000))).cid, known.cid, `${known.what}: a put`)
      assert.is((await putContent({ local: blocks, roots }, pieces(bytes, 300_000), { named: first })).cid, known.cid, `${known.what}: a put named first`)
      const back: Uint8Array[] = []
      for await (const chunk of readContent({ host: undefined as any, local: blocks, holders: () => [] }, parseCid(known.cid))) back.push(chunk)
      assert.equal(Buffer.concat(back), Buffer.from(bytes), `${known.what}: the put is whole, the empty block or manifest included`)

      const sealed = logId(attemptId(`0mwv1se3l2c9ee${100 + i}`, 1), 0)
      for (let at = 0; at < bytes.length; at += 300_000) await logs.append(sealed, at, bytes.subarray(at, at + 300_000))
      assert.is((await sealer.seal(sealed, bytes.length)).cid, known.cid, `${known.what}: a store sealing a log`)

      const writer = new LogWriter({ streams, log: logId(attemptId(`0mwv1se3l2c9ee${200 + i}`, 1), 0), grant: new Uint8Array(0), stores: [{ peer: 'here', addrs: [] }], limit: MAX_LOG_BYTES })
      for (let at = 0; at < bytes.length; at += 65_536) writer.write(bytes.subarray(at, at + 65_536))
      assert.equal(await writer.seal(), { size: known.size, cid: known.cid }, `${known.what}: a worker writing a log, and its store agreeing`)
    }
  } finally {
    await roots.close()
  }
})

naming('content shorter than its first pass said is not named', async () => {
  const bytes = knownBytes(KNOWN[4].size)
  const first = await nameOf(pieces(bytes, 300_000))
  const err = await rejection(nameContent(pieces(bytes.subarray(1), 300_000), { named: first }))
  assert.is(err.name, 'ContentChangedError')
})

naming.run()

interface BlockCtx {
  dir: string
  db: Level<string, string>
  store: Blockstore
  /** Set by withOwnData: the bytes in files of their own, as a store and a worker cache keep them. */
  dataDir?: string
  data?: BlockFiles
}

const blockstore = suite<BlockCtx>('blockstore')

blockstore.before.each(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-blocks-'))
  ctx.db = new Level<string, string>(ctx.dir)
  await ctx.db.open()
  ctx.store = new Blockstore(ctx.db)
  ctx.dataDir = undefined
  ctx.data = undefined
})

blockstore.after.each(async ctx => {
  await ctx.db.close()
  await rm(ctx.dir, { recursive: true, force: true })
  if (ctx.dataDir !== undefined) await rm(ctx.dataDir, { recursive: true, force: true })
})

/** The production layout: block bytes in files of their own (block-files.ts), the index in ctx.db. */
async function withOwnData (ctx: BlockCtx): Promise<{ store: Blockstore, data: BlockFiles }> {
  ctx.dataDir = await mkdtemp(join(tmpdir(), 'grid-block-data-'))
  const data = new BlockFiles(ctx.dataDir)
  await data.open()
  ctx.data = data
  ctx.store = new Blockstore(ctx.db, data)
  return { store: ctx.store, data }
}

/** The index closed and opened again, and a new Blockstore over it and the files: a node restarted. */
async function reopen (ctx: BlockCtx): Promise<Blockstore> {
  await ctx.db.close()
  ctx.db = new Level<string, string>(ctx.dir)
  await ctx.db.open()
  if (ctx.dataDir !== undefined) {
    ctx.data = new BlockFiles(ctx.dataDir)
    await ctx.data.open()
  }
  ctx.store = new Blockstore(ctx.db, ctx.data)
  return ctx.store
}

/** Where the index says a block's bytes lie: their key in the data store (the sequence number, in hex). */
async function dataKey (db: Level<string, string>, cid: CID): Promise<string> {
  const entry = await db.sublevel<string, string>('block-index', {}).get(cid.toString())
  assert.ok(entry !== undefined, `${cid} is indexed`)
  return entry.split(' ')[0]
}

/** The data key `n` sequence numbers after `key`. */
function keyAfter (key: string, n: number): string {
  return (parseInt(key, 16) + n).toString(16).padStart(key.length, '0')
}

function randomBlock (size: number): { cid: CID, bytes: Uint8Array } {
  const bytes = new Uint8Array(randomBytes(size))
  return { cid: blockCid(bytes), bytes }
}

async function assertServes (store: Blockstore, blocks: Array<{ cid: CID, bytes: Uint8Array }>, what: string): Promise<void> {
  for (const [i, { cid, bytes }] of blocks.entries()) {
    const got = await store.get(cid)
    assert.ok(got !== undefined && Buffer.from(bytes).equals(got), `${what}: block ${i} comes back, its own bytes`)
  }
}

blockstore('block files: keys across folders read back, deletions and clearing from a key take exactly what they should', async ctx => {
  const { data } = await withOwnData(ctx)
  // Keys on both sides of a folder boundary (the last three hex digits name the file).
  const keys = ['0000000000ffe', '0000000000fff', '0000000001000', '0000000001001', '0000000002000']
  const value = (key: string): Uint8Array => new TextEncoder().encode(`bytes of ${key}`)
  await data.batch(keys.map(key => ({ type: 'put' as const, key, value: value(key) })))
  assert.equal(await data.keys(), keys)
  for (const key of keys) assert.ok(Buffer.from(value(key)).equals(await data.get(key) ?? new Uint8Array()), `${key} reads back`)
  assert.is(await data.get('0000000000ffd'), undefined, 'a missing key reads as undefined')
  await data.del('0000000000ffe')
  await data.del('0000000000ffe')
  await data.batch([{ type: 'del', key: '0000000001000' }])
  assert.equal(await data.keys(), ['0000000000fff', '0000000001001', '0000000002000'])
  await data.clear({ gte: '0000000001001' })
  assert.equal(await data.keys(), ['0000000000fff'], 'cleared from the key on, in its folder and every later one')
  await data.batch([{ type: 'put', key: '0000000001002', value: value('again') }])
  assert.ok(Buffer.from(value('again')).equals(await data.get('0000000001002') ?? new Uint8Array()), 'a folder cleared away is made again')
})

blockstore('a node whose block bytes an earlier version kept in a LevelDB moves them into files on start, and serves them', async ctx => {
  await ctx.db.close()
  const root = await mkdtemp(join(tmpdir(), 'grid-held-'))
  try {
    const serve = class { async start (): Promise<void> {} async stop (): Promise<void> {} }
    const init = { host: undefined as any, indexPath: join(root, 'store.db'), blocksDir: join(root, 'blocks'), legacyBlocksPath: join(root, 'blocks.db'), serve }
    const bytes = new Uint8Array(randomBytes(3 * BLOCK_BYTES + 10))
    // Written as the earlier version did: the index in store.db, the bytes in blocks.db under the same keys.
    const legacy = new Level<string, Uint8Array>(init.legacyBlocksPath, { valueEncoding: 'view' })
    await legacy.open()
    const index = new Level<string, string>(init.indexPath)
    await index.open()
    const put = await putContent({ local: new Blockstore(index, legacy), roots: undefined }, (async function * () { yield bytes })())
    await index.close()
    await legacy.close()

    const held = new HeldContent(init)
    await held.start()
    try {
      const back: Uint8Array[] = []
      for await (const part of readContent({ host: undefined as any, local: held.blocks, holders: () => [] }, parseCid(put.cid))) back.push(part)
      assert.ok(Buffer.concat(back).equals(bytes), 'every block served from its file, checked')
      assert.is(await held.blocks.bytesHeld(), bytes.length + (put.sentBytes - bytes.length))
      assert.is((await new BlockFiles(init.blocksDir).keys()).length, put.sentBlocks)
      assert.not.ok(await access(init.legacyBlocksPath).then(() => true, () => false), 'the old LevelDB is gone')
    } finally {
      await held.stop()
    }
  } finally {
    await rm(root, { recursive: true, force: true })
    ctx.db = new Level<string, string>(ctx.dir)
    await ctx.db.open()
  }
})

blockstore('keeps blocks that match their CID, and says which it lacks', async ({ store }) => {
  const a = new Uint8Array(randomBytes(1000))
  const b = new Uint8Array(randomBytes(1000))
  await store.put(blockCid(a), a)
  assert.ok(await store.has(blockCid(a)))
  assert.equal((await store.missing([blockCid(a), blockCid(b)])).map(String), [blockCid(b).toString()])
  assert.ok(Buffer.from(a).equals(Buffer.from((await store.get(blockCid(a)))!)), 'the same bytes come back')
  assert.is(await store.get(blockCid(b)), undefined)
})

blockstore('refuses bytes that do not hash to their CID, and keeps nothing of the batch', async ({ store }) => {
  const good = new Uint8Array(randomBytes(100))
  const liar = { cid: blockCid(new Uint8Array([9, 9, 9])), bytes: new Uint8Array([6, 6, 6]) }
  const err = await rejection(store.putMany([{ cid: blockCid(good), bytes: good }, liar]))
  assert.is(err.name, 'BlockMismatchError')
  assert.not.ok(await store.has(blockCid(good)), 'the good block of a bad batch is not kept either')
  assert.not.ok(await store.has(liar.cid))
  await store.put(blockCid(good), good)
  assert.ok(await store.has(blockCid(good)), 'the transfer can be retried')
})

blockstore('a block rotten on disk is dropped on read, never served', async ({ store, db }) => {
  const bytes = new Uint8Array(randomBytes(100))
  const cid = blockCid(bytes)
  await store.put(cid, bytes)
  const rotten = Uint8Array.from(bytes)
  rotten[50] ^= 0xff
  // The bytes lie apart from the index, under the sequence number it gives them.
  await db.sublevel<string, Uint8Array>('block-data', { valueEncoding: 'view' }).put(await dataKey(db, cid), rotten)
  assert.is(await store.get(cid), undefined)
  assert.not.ok(await store.has(cid), 'dropped, so a re-put can heal it')
})

blockstore('a store written before bytes and index were apart opens with every block, checked, and the old layout emptied', async ctx => {
  const { db } = ctx
  // More blocks than one migration batch moves, so numbering carries on from batch to batch.
  const blocks = Array.from({ length: 20 }, (_, i) => randomBlock(100 + i * 37))
  const total = blocks.reduce((n, b) => n + b.bytes.length, 0)
  const old = db.sublevel<string, Uint8Array>('blocks', { valueEncoding: 'view' })
  await old.batch(blocks.map(({ cid, bytes }) => ({ type: 'put' as const, key: cid.toString(), value: bytes })))
  await db.sublevel<string, string>('block-meta', {}).put('bytes', String(total))
  const { store } = await withOwnData(ctx)
  assert.is(await store.bytesHeld(), total)
  assert.equal(await old.keys().all(), [], 'nothing left under the old layout')
  await assertServes(store, blocks, 'migrated')
  // A write after the move takes a number past the moved blocks, never one of theirs.
  const later = randomBlock(500)
  await store.put(later.cid, later.bytes)
  await assertServes(store, [...blocks, later], 'after a later put')
  assert.is(await store.bytesHeld(), total + 500)
})

for (const layout of ['their own files', 'a sublevel beside the index'] as const) {
  blockstore(`bytes a crash left past the last indexed block are cleared on open (${layout})`, async ctx => {
    const own = layout === 'their own files'
    const data = own ? (await withOwnData(ctx)).data : ctx.db.sublevel<string, Uint8Array>('block-data', { valueEncoding: 'view' })
    const kept = randomBlock(300)
    await ctx.store.put(kept.cid, kept.bytes)
    const last = await dataKey(ctx.db, kept.cid)
    // A put that wrote its bytes and died before indexing them: two blocks' worth nobody can name.
    await data.batch([1, 2].map(n => ({ type: 'put' as const, key: keyAfter(last, n), value: new Uint8Array(randomBytes(200)) })))
    const store = await reopen(ctx)
    assert.is(await store.bytesHeld(), 300)
    const left = own ? await ctx.data!.keys() : await ctx.db.sublevel<string, Uint8Array>('block-data', { valueEncoding: 'view' }).keys().all()
    assert.equal(left, [last], 'only the bytes of the indexed block are left')
    await assertServes(store, [kept], 'after the crash')
    const next = randomBlock(400)
    await store.put(next.cid, next.bytes)
    assert.is(await dataKey(ctx.db, next.cid), keyAfter(last, 1))
    await assertServes(store, [kept, next], 'after a put past the crash')
    assert.is(await store.bytesHeld(), 700)
  })
}

blockstore('bytes a crash left doomed (unindexed, not yet deleted) are deleted on open', async ctx => {
  const { store, data } = await withOwnData(ctx)
  const gone = randomBlock(300)
  const kept = randomBlock(400)
  await store.put(gone.cid, gone.bytes)
  await store.put(kept.cid, kept.bytes)
  const key = await dataKey(ctx.db, gone.cid)
  // The batch a drop commits, and a crash before the bytes were deleted.
  await ctx.db.batch([
    { type: 'del', key: gone.cid.toString(), sublevel: ctx.db.sublevel<string, string>('block-index', {}) as any },
    { type: 'put', key, value: '', sublevel: ctx.db.sublevel<string, string>('block-doomed', {}) as any },
    { type: 'put', key: 'bytes', value: '400', sublevel: ctx.db.sublevel<string, string>('block-meta', {}) as any }
  ])
  assert.ok(await data.get(key) !== undefined, 'the bytes are still there before the store opens')
  const reopened = await reopen(ctx)
  assert.is(await reopened.bytesHeld(), 400)
  assert.is(await ctx.data!.get(key), undefined, 'the doomed bytes are gone')
  assert.equal(await ctx.db.sublevel<string, string>('block-doomed', {}).keys().all(), [], 'and nothing is left doomed')
  assert.is(await reopened.get(gone.cid), undefined)
  await assertServes(reopened, [kept], 'the block that was not dropped')
})

blockstore('blocks dropped by commit lose their index entry and their bytes, and the total follows', async ctx => {
  const { store, data } = await withOwnData(ctx)
  const gone = randomBlock(300)
  const kept = randomBlock(400)
  await store.putMany([gone, kept])
  const key = await dataKey(ctx.db, gone.cid)
  await store.exclusive(async () => { await store.commit([], -300, [gone.cid.toString()]) })
  assert.not.ok(await store.has(gone.cid))
  assert.is(await store.get(gone.cid), undefined)
  assert.is(await data.get(key), undefined, 'its bytes are deleted')
  assert.equal(await ctx.db.sublevel<string, string>('block-doomed', {}).keys().all(), [], 'nothing is left doomed')
  assert.is(await store.bytesHeld(), 400)
  await assertServes(store, [kept], 'the block that was not dropped')
  assert.is(await (await reopen(ctx)).bytesHeld(), 400, 'the total was written, not only counted')
})

blockstore('each write takes new sequence numbers, and a restart carries on from the last', async ctx => {
  const { store } = await withOwnData(ctx)
  const first = randomBlock(300)
  const second = randomBlock(400)
  await store.put(first.cid, first.bytes)
  await store.put(second.cid, second.bytes)
  const [one, two] = [await dataKey(ctx.db, first.cid), await dataKey(ctx.db, second.cid)]
  assert.ok(two > one, `the second write's bytes lie after the first's (${one}, ${two})`)
  const reopened = await reopen(ctx)
  const third = randomBlock(500)
  await reopened.put(third.cid, third.bytes)
  const three = await dataKey(ctx.db, third.cid)
  assert.ok(three > two, `a write after the restart lies after both (${two}, ${three})`)
  await assertServes(reopened, [first, second, third], 'after a restart')
  await assertServes(await reopen(ctx), [first, second, third], 'after another')
})

blockstore('blocks no root claimed within the grace are swept; blocks of roots, recent ones and pinned ones stay', async ctx => {
  const { store, data } = await withOwnData(ctx)
  const roots = new RootCatalog(ctx.db, store)
  await roots.open()
  try {
    const claimed = randomBlock(300)
    const orphan = randomBlock(400)
    const pinned = randomBlock(500)
    await store.putMany([claimed, orphan, pinned])
    await roots.add(claimed.cid)
    const marked = async (): Promise<string[]> => await ctx.db.sublevel<string, string>('block-unclaimed', {}).keys().all()
    assert.equal(await marked(), [orphan, pinned].map(b => b.cid.toString()).sort(), 'naming a root claims its blocks')
    // The orphan's writer went away long ago (its pin ran out); the pinned block's writer is still at it.
    store.unpin([orphan.cid.toString()])
    assert.is(await roots.sweep(), 0, 'nothing is past the grace yet')
    const orphanKey = await dataKey(ctx.db, orphan.cid)
    assert.is(await roots.sweep(-1), 400, 'with the grace over, the orphan goes')
    assert.not.ok(await store.has(orphan.cid))
    assert.is(await data.get(orphanKey), undefined, 'its bytes too')
    await assertServes(store, [claimed, pinned], 'the root and the pinned block')
    assert.is(await store.bytesHeld(), 800)
    // A root's block that rotted and was sent again is marked unclaimed anew, but its root still uses it.
    const rotten = Uint8Array.from(claimed.bytes)
    rotten[7] ^= 0xff
    await data.batch([{ type: 'put', key: await dataKey(ctx.db, claimed.cid), value: rotten }])
    assert.is(await store.get(claimed.cid), undefined, 'the rotten copy is dropped')
    await store.putMany([claimed])
    store.unpin([claimed.cid.toString()])
    assert.is(await roots.sweep(-1), 0, 'the block its root uses stays')
    await assertServes(store, [claimed], 'the healed root')
    // More orphans than one locked batch looks at: the sweep pages through them all.
    const many = Array.from({ length: UNCLAIMED_SWEEP_BATCH + 44 }, () => randomBlock(10))
    await store.putMany(many)
    store.unpin([...many.map(b => b.cid.toString()), pinned.cid.toString()])
    assert.is(await roots.sweep(-1), many.length * 10 + 500)
    assert.equal(await store.holds(many.map(b => b.cid.toString())), many.map(() => false))
    assert.equal(await marked(), [], 'nothing is left marked')
    await assertServes(store, [claimed], 'the root, after all that')
  } finally {
    await roots.close()
  }
})

blockstore.run()

// Content addressing and the blockstore: names are stable and verifiable, bad bytes are never kept or served.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { CID } from 'multiformats/cid'
import { Chunker, blockCid, decodeManifest, encodeManifest, isManifestCid, matches, nameContent, parseCid, MANIFEST_TYPE } from '../artifact-store/content.ts'
import { Blockstore } from '../artifact-store/blockstore.ts'
import { rejection } from './wait.ts'

const content = suite('content addressing')

/** Chunk `bytes` fed in pieces of `piece` bytes, as a stream would. */
function chunk (bytes: Uint8Array, blockBytes: number, piece: number): { blocks: Array<{ cid: CID, bytes: Uint8Array }>, size: number, sha256: string } {
  const chunker = new Chunker(blockBytes)
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

content('one block is named by itself; more get a manifest; nothing is the empty block', () => {
  const small = chunk(new Uint8Array(randomBytes(100)), 4096, 100)
  assert.is(nameContent(small.blocks.map(b => ({ cid: b.cid, size: b.bytes.length })), small.size, small.sha256).cid.toString(), small.blocks[0].cid.toString())
  const big = chunk(new Uint8Array(randomBytes(9000)), 4096, 9000)
  const named = nameContent(big.blocks.map(b => ({ cid: b.cid, size: b.bytes.length })), big.size, big.sha256)
  assert.ok(isManifestCid(named.cid))
  const manifest = decodeManifest(named.manifest!.bytes)
  assert.is(manifest.size, 9000)
  assert.is(manifest.sha256, big.sha256)
  assert.equal(manifest.blocks.map(b => b.cid.toString()), big.blocks.map(b => b.cid.toString()))
  assert.is(nameContent([], 0, '').cid.toString(), blockCid(new Uint8Array(0)).toString())
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

const blockstore = suite<{ dir: string, db: Level<string, string>, store: Blockstore }>('blockstore')

blockstore.before.each(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-blocks-'))
  ctx.db = new Level<string, string>(ctx.dir)
  await ctx.db.open()
  ctx.store = new Blockstore(ctx.db)
})

blockstore.after.each(async ctx => {
  await ctx.db.close()
  await rm(ctx.dir, { recursive: true, force: true })
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
  await db.sublevel<string, Uint8Array>('blocks', { valueEncoding: 'view' }).put(cid.toString(), rotten)
  assert.is(await store.get(cid), undefined)
  assert.not.ok(await store.has(cid), 'dropped, so a re-put can heal it')
})

blockstore.run()

// A store at its size cap (`--max-size`) keeps taking new builds' output by evicting old, unreferenced artifacts
// whole, never half; an artifact whose last copy went answers 410 and is marked in history; a write it cannot
// make room for is refused clearly. Bad input: a junk --max-size, a bogus root message, a bogus store session.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { encode } from 'cborg'
import { lpStream } from '@libp2p/utils'
import { gridRun, removeDir, tempDir, waitFor } from '../helpers.ts'
import { rejection } from '../wait.ts'
import { startCoordinatorNode, startStoreNode, startWorkerNode } from '../../node/roles.ts'
import type { CoordinatorNode, StoreNode, WorkerNode } from '../../node/roles.ts'
import { createHost } from '../../net/host.ts'
import type { GridHost } from '../../net/host.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { blockCid, decodeManifest, isManifestCid, parseCid } from '../../grid/content.ts'
import { putContent } from '../../client/content/put.ts'
import { BLOCK_PUT_PROTOCOL } from '../../protocols/block-put.ts'
import { STORE_MEMBERSHIP_PROTOCOL } from '../../protocols/store-membership.ts'

const MIB = 1024 * 1024
/** Room for about three 2 MiB artifacts (and their builds' small logs). */
const MAX_BYTES = 7 * MIB

const eviction = suite<{ dir: string, coordinator: CoordinatorNode, store: StoreNode, worker: WorkerNode, client: GridHost }>('stores: eviction')

eviction.before(async ctx => {
  ctx.dir = await tempDir('eviction')
  ctx.coordinator = await startCoordinatorNode({ dataDir: join(ctx.dir, 'c'), listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', withStore: false })
  ctx.store = await startStoreNode({ dataDir: join(ctx.dir, 's'), join: ctx.coordinator.localJoin, listen: ['/ip4/127.0.0.1/tcp/0'], maxBytes: MAX_BYTES })
  await ctx.store.announcement.ready()
  ctx.worker = await startWorkerNode({ dataDir: join(ctx.dir, 'w'), join: ctx.coordinator.localJoin, listen: [], capabilities: { os: process.platform }, slots: 1 })
  await ctx.worker.worker.ready(AbortSignal.timeout(10_000))
  ctx.client = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.coordinator.secret.current, listen: [] })
})

eviction.after(async ctx => {
  await ctx.client?.stop()
  await ctx.worker?.stop()
  await ctx.store?.stop()
  await ctx.coordinator?.stop()
  await removeDir(ctx.dir)
})

const api = async (ctx: { coordinator: CoordinatorNode }, path: string, init?: RequestInit): Promise<Response> => await fetch(ctx.coordinator.web!.url + path, init)

async function build (ctx: { coordinator: CoordinatorNode }, job: unknown): Promise<Build> {
  const res = await api(ctx, '/api/builds', { method: 'POST', headers: { authorization: `Bearer ${ctx.coordinator.token}` }, body: JSON.stringify(job) })
  const { id } = await res.json() as { id: string }
  return await waitFor(`build ${id}`, async () => {
    const b = await (await api(ctx, `/api/builds/${id}`)).json() as Build
    return FINISHED.has(b.status) ? b : undefined
  }, 60_000)
}

/** Every root the store lists has every block it names: nothing is ever half-evicted. */
async function wholeRoots (store: StoreNode): Promise<void> {
  for (const root of store.store.roots.list()) {
    const cid = parseCid(root.cid)
    const bytes = await store.store.blocks.get(cid)
    assert.ok(bytes !== undefined, `root ${root.cid} has its root block`)
    if (isManifestCid(cid)) assert.equal(await store.store.blocks.missing(decodeManifest(bytes).blocks.map(b => b.cid)), [], `root ${root.cid} has all its blocks`)
  }
}

eviction('a full store keeps taking new builds\' output by evicting old artifacts whole; an evicted one answers 410', async ctx => {
  const artifacts: Array<{ build: string, cid: string }> = []
  for (let i = 0; i < 6; i++) {
    const done = await build(ctx, { steps: [{ run: 'head -c 2200000 /dev/urandom > out.bin' }], artifacts: ['out.bin'] })
    assert.is(done.status, 'succeeded', `build ${i}: ${JSON.stringify(done)}`)
    artifacts.push({ build: done.id, cid: done.artifacts[0].cid })
    assert.ok(await ctx.store.store.blocks.bytesHeld() <= MAX_BYTES, `under the cap after build ${i}`)
    await wholeRoots(ctx.store)
  }
  const newest = artifacts.at(-1)!
  assert.ok(ctx.store.store.roots.has(newest.cid), 'the newest output is kept')
  const res = await api(ctx, `/api/artifacts/${newest.cid}`)
  assert.is(res.status, 200)
  assert.is((await res.arrayBuffer()).byteLength, 2_200_000)

  const oldest = artifacts[0]
  assert.not.ok(ctx.store.store.roots.has(oldest.cid), 'the oldest output was evicted')
  const gone = await waitFor('the eviction in history', async () => {
    const b = await (await api(ctx, `/api/builds/${oldest.build}`)).json() as Build
    return b.artifacts[0].evicted
  }, 10_000)
  assert.match(gone, /^\d{4}-\d\d-\d\dT/)
  const evicted = await api(ctx, `/api/artifacts/${oldest.cid}`)
  assert.is(evicted.status, 410)
  assert.match((await evicted.json() as { error: string }).error, /evicted .* no longer has it/)
  const manifest = decodeManifest((await ctx.store.store.blocks.get(parseCid(newest.cid)))!)
  assert.ok(manifest.blocks.length >= 2)

  // Content a queued build still needs is not evicted while it is the last copy.
  const state = ctx.coordinator.coordinator.content
  const needed = artifacts.at(-2)!.cid
  const queued = await api(ctx, '/api/builds', { method: 'POST', headers: { authorization: `Bearer ${ctx.coordinator.token}` }, body: JSON.stringify({ requires: { os: 'nowhere' }, inputs: { 'in.bin': needed }, steps: [{ run: 'true' }] }) })
  assert.is(queued.status, 201, 'a build that waits: no worker is "nowhere"')
  await new Promise(resolve => setTimeout(resolve, 1_100))
  assert.equal(await state.consent(ctx.store.host.peerId.toString(), [needed]), [], 'the last copy of a live build\'s input may not go')
})

eviction('a write the store cannot make room for is refused with a clear error', async ctx => {
  const store = ctx.store.store
  const before = store.roots.count
  const big = new Uint8Array(randomBytes(MAX_BYTES + MIB))
  const err = await rejection(putContent({ host: ctx.client, store: { peer: ctx.store.host.peerId.toString(), addrs: ctx.store.host.getMultiaddrs().map(String) } }, (async function * () { yield big })()))
  assert.match(err.message, /store is full/, err.message)
  assert.ok(store.roots.count <= before)
  assert.ok(await store.blocks.bytesHeld() <= MAX_BYTES)
  await wholeRoots(ctx.store)
})

eviction('bad input: junk --max-size, a root the store does not hold, a bogus store session', async ctx => {
  for (const junk of ['junk', '10X', '-5M', '0']) {
    const run = await gridRun(['store', '--join', 'grid1-nothing', '--max-size', junk, '--data', join(ctx.dir, 'junk')])
    assert.is.not(run.code, 0)
    assert.match(run.stderr, /expected a size such as 500M, 10G or 1T/)
    assert.is(run.stderr.trim().split('\n').length, 1, run.stderr)
  }

  // A root message for content the store lacks: refused, nothing listed.
  const before = ctx.store.store.roots.count
  const stream = await ctx.client.dialProtocol(ctx.store.host.getMultiaddrs()[0], BLOCK_PUT_PROTOCOL)
  const lp = lpStream(stream)
  const absent = blockCid(new Uint8Array(randomBytes(100))).toString()
  await lp.write(encode({ t: 'root', cid: absent }))
  const reply = new TextDecoder().decode((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray())
  assert.match(reply, /refused/)
  assert.match(reply, /does not hold/)
  assert.is(ctx.store.store.roots.count, before)

  // A peer posing as a store sends junk reports: its session is dropped, the grid's view of content unchanged.
  const state = ctx.coordinator.coordinator.content
  const roots = state.state().roots
  const session = await ctx.client.dialProtocol(ctx.coordinator.host.getMultiaddrs()[0], STORE_MEMBERSHIP_PROTOCOL)
  const fake = lpStream(session)
  await fake.write(encode({ t: 'hello', addrs: ['/ip4/127.0.0.1/tcp/1'] }))
  await waitFor('the fake store listed', () => ctx.coordinator.coordinator.stores.list().length === 2)
  await fake.write(encode({ t: 'copied', id: 12345 }))
  await fake.write(encode({ t: 'held', roots: [{ cid: 'not a cid', size: -1, bytes: 0 }] }))
  await waitFor('the fake store dropped', () => ctx.coordinator.coordinator.stores.list().length === 1)
  assert.is(state.state().roots, roots)
  assert.is(state.state().stores.length, 1)
})

eviction.run()

// Adding a fourth store moves only its share: with rendezvous placement, about a quarter of the block copies
// go to the newcomer (and leave a store no longer placed for them), not all of them.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { removeDir, tempDir, waitFor } from '../helpers.ts'
import { startCoordinatorNode, startStoreNode } from '../../node/roles.ts'
import type { CoordinatorNode, StoreNode } from '../../node/roles.ts'
import { createHost } from '../../net/host.ts'
import type { GridHost } from '../../net/host.ts'
import { putPlaced } from '../../client/content/place.ts'
import { nameOf } from '../../client/content/name.ts'

/** Small single-block roots: enough of them for the share to be measured, cheap to write. */
const ROOTS = 400
const ROOT_BYTES = 4096

const placement = suite<{ dir: string, coordinator: CoordinatorNode, stores: StoreNode[], client: GridHost }>('stores: placement')

placement.before(async ctx => {
  ctx.dir = await tempDir('placement')
  ctx.coordinator = await startCoordinatorNode({ dataDir: join(ctx.dir, 'c'), listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', withStore: false, replicas: 2 })
  ctx.stores = []
  for (const name of ['s1', 's2', 's3']) {
    ctx.stores.push(await startStoreNode({ dataDir: join(ctx.dir, name), join: ctx.coordinator.localJoin, listen: ['/ip4/127.0.0.1/tcp/0'] }))
  }
  await Promise.all(ctx.stores.map(async s => { await s.announcement.ready() }))
  ctx.client = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.coordinator.secret.current, listen: [] })
})

placement.after(async ctx => {
  await ctx.client?.stop()
  for (const s of ctx.stores ?? []) await s.stop()
  await ctx.coordinator?.stop()
  await removeDir(ctx.dir)
})

placement('a fourth store takes about a quarter of the block copies, and the rest stay where they are', async ctx => {
  const { coordinator } = ctx
  await waitFor('three stores', () => coordinator.coordinator.stores.list().length === 3)
  const stores = coordinator.coordinator.stores.list()
  for (let i = 0; i < ROOTS; i++) {
    const bytes = new Uint8Array(randomBytes(ROOT_BYTES))
    const once = async function * (): AsyncGenerator<Uint8Array> { yield bytes }
    const named = await nameOf(once())
    const put = await putPlaced({ host: ctx.client, stores, replicas: 2, placeBy: named.cid }, once())
    assert.is(put.stores.length, 2)
  }
  const state = (): ReturnType<typeof coordinator.coordinator.content.state> => coordinator.coordinator.content.state()
  await waitFor('every root reported on two stores', () => state().roots === ROOTS && state().underReplicated === 0 && state().repairing === 0, 15_000)
  const before = new Map(ctx.stores.map(s => [s.host.peerId.toString(), new Set(s.store.roots.list().map(r => r.cid))]))
  const copiesBefore = [...before.values()].reduce((n, s) => n + s.size, 0)
  assert.is(copiesBefore, 2 * ROOTS, 'each root on exactly its two placed stores')

  const fourth = await startStoreNode({ dataDir: join(ctx.dir, 's4'), join: coordinator.localJoin, listen: ['/ip4/127.0.0.1/tcp/0'] })
  ctx.stores.push(fourth)
  await fourth.announcement.ready()
  await waitFor('repair to place content on the fourth store and trim the rest', () => {
    const s = state()
    const copies = ctx.stores.reduce((n, x) => n + x.store.roots.count, 0)
    return s.stores.length === 4 && s.repairing === 0 && s.underReplicated === 0 && fourth.store.roots.count > 0 && copies === 2 * ROOTS
  }, 60_000)

  const moved = fourth.store.roots.count
  const share = moved / copiesBefore
  process.stdout.write(`  a fourth store took ${moved} of ${copiesBefore} block copies: ${(100 * share).toFixed(1)}% (ideal 25%)\n`)
  assert.ok(share > 0.10 && share < 0.45, `share moved ${share}`)
  // Whatever did not move to the newcomer stayed where it was.
  let stayed = 0
  for (const s of ctx.stores.slice(0, 3)) {
    for (const cid of s.store.roots.list().map(r => r.cid)) if (before.get(s.host.peerId.toString())!.has(cid)) stayed++
  }
  assert.is(stayed + moved, 2 * ROOTS, 'no copy moved between the original stores')
  // The surplus copies left behind were dropped whole: their blocks are gone too.
  for (const s of ctx.stores) assert.is(s.store.blocks.bytes, s.store.roots.count * ROOT_BYTES, `bytes held match the roots held on ${s.host.peerId}`)
})

placement.run()

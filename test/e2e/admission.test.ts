// Admission at runtime: the operator denies a peer ID from build history; every node drops and refuses it
// without a restart; allowing it lets it back in. Coordinator, store and worker are separate processes.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { grid, gridRun, removeDir, startTestGrid, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'
import { createHost } from '../../net/host.ts'
import { loadIdentity } from '../../net/identity.ts'
import { coordinatorAddress, decodeJoinCode } from '../../net/join-code.ts'
import { LOG_READ_PROTOCOL, readReply } from '../../protocols/log-read.ts'
import { WORK_PROTOCOL, toWorker } from '../../protocols/work.ts'
import { MessageChannel } from '../../net/wire.ts'
import type { Build } from '../../grid/build.ts'
import { askCoordinator } from '../../protocols/builds.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'

interface Ctx { dir: string, up: CliProcess, store: CliProcess, worker: CliProcess, url: string, token: string, peer: string, storeAddr: string }

const admission = suite<Ctx>('admission: denying peers at runtime')

const data = (ctx: Ctx): string => join(ctx.dir, 'coordinator')
const capacity = async (ctx: Ctx): Promise<{ nodes: number, stores: number }> => await (await fetch(`${ctx.url}/api/capacity`)).json()

admission.before(async ctx => {
  ctx.dir = await tempDir('admission')
  ctx.up = grid(['up', '--workers', '0', '--data', data(ctx), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
  ctx.url = (await ctx.up.line(/^web: (\S+)$/m, 30_000))[1]
  await ctx.up.line(/^join: /m)
  ctx.token = (await readFile(join(data(ctx), 'api-token'), 'utf8')).trim()
  const joinFile = join(data(ctx), 'join')
  ctx.store = grid(['store', '--join', joinFile, '--data', join(ctx.dir, 's'), '--listen', '/ip4/127.0.0.1/tcp/0'])
  await ctx.store.line(/joined the grid/, 30_000)
  ctx.worker = grid(['worker', '--join', joinFile, '--data', join(ctx.dir, 'w'), '--cap', 'pool=admission'])
  ctx.peer = (await ctx.worker.line(/worker (12D3KooW\w+) joined the grid/, 30_000))[1]
  await waitFor('worker and stores in capacity', async () => { const c = await capacity(ctx); return c.nodes === 1 && c.stores === 2 })
})

admission.after(async ctx => {
  for (const p of [ctx.worker, ctx.store, ctx.up]) await p?.stop()
  await removeDir(ctx.dir)
})

admission('a denied worker is dropped, its build re-queued, and it stays out of coordinator and stores', async ctx => {
  const res = await fetch(`${ctx.url}/api/builds`, { method: 'POST', headers: { authorization: `Bearer ${ctx.token}` }, body: JSON.stringify({ requires: { pool: 'admission' }, steps: [{ run: 'echo started; sleep 30' }] }) })
  const { id } = await res.json()
  await waitFor('the build to run', async () => (await (await fetch(`${ctx.url}/api/builds/${id}`)).json()).status === 'running')

  const denied = await gridRun(['deny', ctx.peer, '--data', data(ctx)])
  assert.is(denied.code, 0, denied.stderr)
  assert.match(denied.stderr, /denied 12D3KooW/)
  const began = Date.now()
  await waitFor('the worker to be dropped', async () => (await capacity(ctx)).nodes === 0, 5_000)
  process.stdout.write(`    (denied worker dropped after ${Date.now() - began} ms)\n`)
  const build = await waitFor('the attempt to be lost', async () => {
    const b = await (await fetch(`${ctx.url}/api/builds/${id}`)).json() as Build
    return b.attempts[0]?.outcome === 'lost' ? b : undefined
  })
  assert.is(build.status, 'queued', 'back in the queue for another worker')
  assert.equal((await (await fetch(`${ctx.url}/api/denied`)).json()).denied, [ctx.peer])

  // It keeps trying to reconnect; the gate keeps it out.
  await new Promise(resolve => setTimeout(resolve, 2_000))
  assert.is((await capacity(ctx)).nodes, 0)

  // With its own identity, it cannot open a stream to the coordinator or to the separate store either.
  const identity = await loadIdentity(join(ctx.dir, 'w', 'worker'))
  const code = decodeJoinCode(await readFile(join(data(ctx), 'join'), 'utf8'))
  const impostor = await createHost({ identity, secret: code.secret, listen: [] })
  try {
    // Opening a stream can look fine on the dialling side (multistream-select is optimistic) before the gate
    // tears the connection down: what counts is whether the peer ever gets an answer.
    let refused = 0
    const asks = [
      { addr: code.addrs[0], protocol: WORK_PROTOCOL, schema: toWorker, request: { t: 'hello', capabilities: {}, slots: 1, running: [] } },
      { addr: multiaddr(await storeAddress(ctx)), protocol: LOG_READ_PROTOCOL, schema: readReply, request: { t: 'stat', log: '0mwv1se3l2c9ee67a.a1.s0' } }
    ]
    for (const { addr, protocol, schema, request } of asks) {
      try {
        const stream = await impostor.dialProtocol(addr, protocol, { signal: AbortSignal.timeout(5_000) })
        const channel = new MessageChannel<unknown, unknown>(stream, schema as any)
        await channel.send(request)
        await channel.expect({ signal: AbortSignal.timeout(5_000) })
      } catch {
        refused++
      }
    }
    assert.is(refused, 2, 'both the coordinator and the store refuse the denied peer')
  } finally {
    await impostor.stop()
  }

  const allowed = await gridRun(['allow', ctx.peer, '--data', data(ctx)])
  assert.is(allowed.code, 0, allowed.stderr)
  await waitFor('the worker to come back by itself', async () => (await capacity(ctx)).nodes === 1, 20_000)
  const after = await (await fetch(`${ctx.url}/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ctx.token}` } })).json()
  assert.is(after.status, 'cancelled')
})

/** The separate store's loopback address, as the coordinator gives it to workers. */
async function storeAddress (ctx: Ctx): Promise<string> {
  const peer = (await ctx.store.line(/store (12D3KooW\w+) joined the grid/))[1]
  const code = decodeJoinCode(await readFile(join(data(ctx), 'join'), 'utf8'))
  const probe = await createHost({ identity: await generateKeyPair('Ed25519'), secret: code.secret, listen: [] })
  try {
    const reply = await askCoordinator(probe, coordinatorAddress(code), { t: 'stores' })
    const store = reply.t === 'stores' ? reply.stores.find(s => s.peer === peer) : undefined
    assert.ok(store !== undefined, 'the store is listed')
    return store.addrs.find(a => a.includes('127.0.0.1'))!
  } finally {
    await probe.stop()
  }
}

admission('bad deny requests get one clear error and change nothing', async ctx => {
  const post = async (body: string, token: string | null = ctx.token): Promise<Response> => await fetch(`${ctx.url}/api/denied`, {
    method: 'POST', body, headers: { 'content-type': 'application/json', ...(token !== null ? { authorization: `Bearer ${token}` } : {}) }
  })
  assert.is((await post(JSON.stringify({ peer: ctx.peer }), null)).status, 401)
  const bad = await post(JSON.stringify({ peer: 'not-a-peer' }))
  assert.is(bad.status, 400)
  assert.match((await bad.json()).error, /not a peer ID/)
  assert.is((await post('{nope')).status, 400)
  assert.is((await post(JSON.stringify({ who: 1 }))).status, 400)
  assert.equal((await (await fetch(`${ctx.url}/api/denied`)).json()).denied, [])
  const cli = await gridRun(['deny', 'not-a-peer', '--data', data(ctx)])
  assert.is(cli.code, 1)
  assert.match(cli.stderr.trim(), /^grid: not-a-peer is not a peer ID/)
  const nowhere = await gridRun(['deny', ctx.peer, '--data', join(ctx.dir, 'nowhere')])
  assert.is(nowhere.code, 1)
  assert.match(nowhere.stderr.trim(), /^grid: no web-url in/)
})

admission('rotating the secret cuts off every node holding the old code; the new code works', async ctx => {
  const joinFile = join(data(ctx), 'join')
  const oldCode = (await readFile(joinFile, 'utf8')).trim()
  const rotated = await gridRun(['rotate', '--data', data(ctx)])
  assert.is(rotated.code, 0, rotated.stderr)
  const newCode = /^join: (\S+)$/m.exec(rotated.stdout)![1]
  assert.is.not(newCode, oldCode)
  assert.is((await readFile(joinFile, 'utf8')).trim(), newCode)
  assert.is(decodeJoinCode(newCode).coordinator.toString(), decodeJoinCode(oldCode).coordinator.toString(), 'same coordinator, new secret')

  await waitFor('the old-code worker and store to be cut off', async () => { const c = await capacity(ctx); return c.nodes === 0 && c.stores === 1 }, 15_000)
  await new Promise(resolve => setTimeout(resolve, 2_000))
  assert.equal(await capacity(ctx), { ...(await capacity(ctx)), nodes: 0, stores: 1 }, 'they stay out')
  const old = await gridRun(['submit', '--join', oldCode, '--run', 'true'])
  assert.is(old.code, 1)
  assert.match(old.stderr, /cannot reach/)

  const fresh = grid(['worker', '--join', joinFile, '--data', join(ctx.dir, 'w-new'), '--cap', 'pool=rotated'])
  try {
    await fresh.line(/joined the grid/, 30_000)
    const run = await gridRun(['submit', '--join', newCode, '--run', 'echo rotated', '--require', 'pool=rotated', '--follow'])
    assert.is(run.code, 0, run.stderr)
    assert.match(run.stdout, /rotated\n/)
  } finally {
    await fresh.stop()
  }
})

admission.run()

const inProcess = suite('rotation in one process (grid up)')

inProcess('workers in the coordinator\'s own process follow a rotation by themselves', async () => {
  const g = await startTestGrid({ workers: [{}] })
  try {
    const before = g.node.joinCode
    const res = await g.api('/api/secret/rotate', { method: 'POST', headers: { authorization: `Bearer ${g.token}` } })
    assert.is(res.status, 200)
    const { join: code } = await res.json()
    assert.is.not(code, before)
    assert.is(g.node.joinCode, code)
    const id = await g.submit({ steps: [{ run: 'echo after rotation' }] })
    assert.is((await g.finished(id)).status, 'succeeded')
    assert.is((await g.api('/api/secret/rotate', { method: 'POST' })).status, 401, 'rotation needs the token')
  } finally {
    await g.stop()
  }
})

inProcess.run()

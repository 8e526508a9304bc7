// Admission in the Noise handshake (net/admission.ts): only a node holding the grid's secret completes a connection.
// Real libp2p hosts over TCP: an outsider with another secret, a stock libp2p node (Noise with no prologue, as any
// libp2p program would dial), and the grid dialling out to a stranger all fail in the handshake, no stream opens on
// either side, and members are not disturbed. A rotated secret admits the new key only.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createHost } from '../../net/host.ts'
import type { GridHost, SecretHolder } from '../../net/host.ts'
import { ADMISSION_LABEL, admissionPrologue } from '../../net/admission.ts'
import { newSecret } from '../../net/join-code.ts'
import { rejection } from '../wait.ts'

const PROTOCOL = '/grid-test/admission/1'
/** Far past a refused handshake (at once) and libp2p's own upgrade timeout: a refusal must not be this deadline. */
const DEADLINE_MS = 20_000

interface Ctx { holder: SecretHolder, server: GridHost, addr: Multiaddr, opened: number, stock: Libp2p, stockAddr: Multiaddr, stockOpened: number }
const admission = suite<Ctx>('admission: the grid\'s secret in the Noise handshake')

/** A libp2p node as any libp2p program builds one: TCP + Noise (no prologue) + Yamux, no protector. */
async function stockNode (listen: string[]): Promise<Libp2p> {
  return await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false }
  })
}

async function member (secret: Uint8Array): Promise<GridHost> {
  return await createHost({ identity: await generateKeyPair('Ed25519'), secret, listen: [] })
}

/** Opens a stream, sends a byte and reads the echo: what a member can do and an outsider must not. */
async function echo (host: Libp2p, addr: Multiaddr): Promise<number> {
  const stream = await host.dialProtocol(addr, PROTOCOL, { signal: AbortSignal.timeout(DEADLINE_MS) })
  stream.send(new Uint8Array([42]))
  await stream.close()
  for await (const chunk of stream) return chunk.subarray()[0]
  throw new Error('no echo')
}

/** The refusal came from the handshake (an error of its own), not from our deadline running out. */
function refusedByHandshake (err: Error | undefined, what: string): void {
  assert.ok(err instanceof Error, `${what}: expected a refusal`)
  assert.is.not(err.name, 'AbortError', `${what}: refused by the handshake, not by our own deadline`)
  assert.is.not(err.name, 'TimeoutError', `${what}: refused by the handshake, not by our own deadline`)
}

admission.before(async ctx => {
  ctx.holder = { current: newSecret() }
  ctx.server = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.holder, listen: ['/ip4/127.0.0.1/tcp/0'] })
  ctx.addr = ctx.server.getMultiaddrs()[0]
  ctx.opened = 0
  await ctx.server.handle(PROTOCOL, async stream => {
    ctx.opened++
    for await (const chunk of stream) stream.send(chunk)
    await stream.close()
  })
  ctx.stock = await stockNode(['/ip4/127.0.0.1/tcp/0'])
  ctx.stockAddr = ctx.stock.getMultiaddrs()[0]
  ctx.stockOpened = 0
  await ctx.stock.handle(PROTOCOL, async stream => { ctx.stockOpened++; await stream.close() })
})

admission.after(async ctx => {
  await ctx.server?.stop()
  await ctx.stock?.stop()
})

admission('the prologue is HMAC-SHA256 of the secret: fixed per secret, different between secrets, never the secret', () => {
  const secret = newSecret()
  assert.equal(admissionPrologue(secret), admissionPrologue(new Uint8Array(secret)))
  assert.is.not(Buffer.from(admissionPrologue(secret)).toString('hex'), Buffer.from(admissionPrologue(newSecret())).toString('hex'))
  assert.is.not(Buffer.from(admissionPrologue(secret)).toString('hex'), Buffer.from(secret).toString('hex'))
  assert.ok(ADMISSION_LABEL.length > 0)
  assert.throws(() => admissionPrologue(new Uint8Array(31)), /32 bytes, not 31/)
})

admission('a member with the secret opens a stream', async ctx => {
  const host = await member(ctx.holder.current)
  try {
    assert.is(await echo(host, ctx.addr), 42)
  } finally {
    await host.stop()
  }
})

admission('a node of another grid (another secret) is refused in the handshake, and no stream opens on either side', async ctx => {
  const before = ctx.opened
  const outsider = await member(newSecret())
  try {
    refusedByHandshake(await rejection(echo(outsider, ctx.addr)), 'first dial')
    refusedByHandshake(await rejection(echo(outsider, ctx.addr)), 'second dial')
    assert.is(outsider.getConnections(ctx.server.peerId).length, 0)
    assert.is(ctx.server.getConnections(outsider.peerId).length, 0)
    assert.is(ctx.opened, before, 'the server never saw a stream')
  } finally {
    await outsider.stop()
  }
})

admission('a stock libp2p node (Noise without the prologue) knowing address and peer ID is refused the same way', async ctx => {
  const before = ctx.opened
  const stranger = await stockNode([])
  try {
    refusedByHandshake(await rejection(echo(stranger, ctx.addr)), 'stock node dialling the grid')
    assert.is(stranger.getConnections(ctx.server.peerId).length, 0)
    assert.is(ctx.server.getConnections(stranger.peerId).length, 0)
    assert.is(ctx.opened, before)
  } finally {
    await stranger.stop()
  }
})

admission('a grid node dialling a stranger gets no connection either, and the stranger gets no stream', async ctx => {
  const host = await member(ctx.holder.current)
  try {
    refusedByHandshake(await rejection(host.dialProtocol(ctx.stockAddr, PROTOCOL, { signal: AbortSignal.timeout(DEADLINE_MS) })), 'grid dialling a stock node')
    assert.is(host.getConnections(ctx.stock.peerId).length, 0)
    assert.is(ctx.stock.getConnections(host.peerId).length, 0)
    assert.is(ctx.stockOpened, 0)
  } finally {
    await host.stop()
  }
})

admission('members are not disturbed by refused attempts', async ctx => {
  const host = await member(ctx.holder.current)
  try {
    const outsiders = await Promise.all(Array.from({ length: 5 }, async () => await member(newSecret())))
    const tries = outsiders.map(async o => await rejection(echo(o, ctx.addr)))
    assert.is(await echo(host, ctx.addr), 42)
    for (const err of await Promise.all(tries)) refusedByHandshake(err, 'one of several outsiders')
    await Promise.all(outsiders.map(async o => { await o.stop() }))
    assert.is(await echo(host, ctx.addr), 42)
  } finally {
    await host.stop()
  }
})

admission('after the secret is rotated, new connections need the new secret', async ctx => {
  const old = ctx.holder.current
  const next = newSecret()
  ctx.holder.current = next
  const withOld = await member(old)
  const withNew = await member(next)
  try {
    refusedByHandshake(await rejection(echo(withOld, ctx.addr)), 'the old secret')
    assert.is(await echo(withNew, ctx.addr), 42)
  } finally {
    ctx.holder.current = old
    await withOld.stop()
    await withNew.stop()
  }
})

admission.run()

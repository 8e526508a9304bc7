// A store's membership session against a stub coordinator (a stub host whose dial hands out one end of an
// in-memory stream pair): whatever a session adds to the store (its change listener, the eviction consent) and
// the stream it ran on are gone however the session ends: dropped during the summary, refused at hello, or stopped
// while dialling.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { streamPair } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { StoreAnnouncement } from '../../artifact-store/membership.ts'
import type { Store } from '../../artifact-store/index.ts'
import type { RootChange } from '../../storage/root-catalog.ts'
import { MAX_ROOTS_PER_REPORT } from '../../storage/constants.ts'
import { DenyList } from '../../grid/deny-list.ts'
import { MessageChannel } from '../../net/wire.ts'
import type { GridHost } from '../../net/host.ts'
import { toCoordinator } from '../../protocols/store-membership.ts'
import type { CoordinatorToStore, StoreToCoordinator } from '../../protocols/store-membership.ts'
import { waitFor } from '../wait.ts'

/** Sessions dropped in a row before one is let through. */
const DROPPED_SESSIONS = 3
/** A welcome whose heartbeat never fires during a test. */
const WELCOME: CoordinatorToStore = { t: 'welcome', heartbeatMs: 60_000, silenceLimitMs: 600_000 }

/** The store's side as the session sees it: its roots (listeners counted) and byte totals. */
function stubStore (rootCount: number): { store: Store, listeners: Set<(change: RootChange) => void>, roots: { consent: unknown } } {
  const listeners = new Set<(change: RootChange) => void>()
  // Distinct base32 CIDs as the schema takes them: the index in letters.
  const letters = (n: number): string => n.toString(26).split('').map(d => String.fromCharCode(97 + parseInt(d, 26))).join('')
  const list = Array.from({ length: rootCount }, (_, i) => ({ cid: 'b' + letters(i).padStart(40, 'a'), size: 1, bytes: 1 }))
  const roots = {
    consent: undefined as unknown,
    count: list.length,
    list: () => list,
    onChange: (listener: (change: RootChange) => void) => { listeners.add(listener); return () => listeners.delete(listener) },
    drop: async () => {}
  }
  const store = { roots, blocks: { bytes: 0, received: 0, served: 0 }, maxBytes: undefined, logs: { fence: async () => {} }, copyRoot: async () => {} }
  return { store: store as unknown as Store, listeners, roots }
}

interface Dial { storeEnd: Stream, coordinator: MessageChannel<StoreToCoordinator, CoordinatorToStore> }

/** A host whose every dial is answered by `answer` (or left pending until its signal aborts, with `hold`). */
async function stubHost (answer: (dial: Dial, n: number) => void, hold = false): Promise<{ host: GridHost, dials: Dial[], signals: AbortSignal[] }> {
  const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const dials: Dial[] = []
  const signals: AbortSignal[] = []
  const host = {
    peerId,
    getMultiaddrs: () => [multiaddr('/ip4/127.0.0.1/tcp/4001')],
    peerStore: { merge: async () => {} },
    hangUp: async () => {},
    dialProtocol: async (_peer: unknown, _protocol: string, options: { signal: AbortSignal }) => {
      signals.push(options.signal)
      if (hold) {
        return await new Promise<never>((_resolve, reject) => {
          options.signal.addEventListener('abort', () => reject(options.signal.reason), { once: true })
        })
      }
      const [storeEnd, coordinatorEnd] = await streamPair()
      const dial = { storeEnd, coordinator: new MessageChannel<StoreToCoordinator, CoordinatorToStore>(coordinatorEnd, toCoordinator) }
      dials.push(dial)
      answer(dial, dials.length)
      return storeEnd
    }
  }
  return { host: host as unknown as GridHost, dials, signals }
}

async function announcement (host: GridHost, store: Store): Promise<StoreAnnouncement> {
  const coordinator = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  return new StoreAnnouncement(host, { secret: new Uint8Array(32), coordinator, addrs: [] }, store, new DenyList(new Set()))
}

const sessions = suite('store membership sessions')

sessions('sessions that drop during the summary leave no change listener behind', async () => {
  // Three summary messages, so the drop comes between two of them.
  const { store, listeners, roots } = stubStore(MAX_ROOTS_PER_REPORT * 2 + 1)
  let usage = 0
  const { host, dials } = await stubHost((dial, n) => {
    const { storeEnd, coordinator } = dial
    if (n <= DROPPED_SESSIONS) {
      // The connection goes as the store sends its first summary message (its second frame, after hello).
      const send = storeEnd.send.bind(storeEnd)
      let frames = 0
      storeEnd.send = data => {
        if (++frames === 2) storeEnd.abort(new Error('connection dropped during the summary'))
        return send(data)
      }
    }
    void (async () => {
      try {
        await coordinator.expect()
        await coordinator.send(WELCOME)
        for await (const message of coordinator) if (message.t === 'usage') usage++
      } catch {}
    })()
  })
  const store1 = await announcement(host, store)
  store1.start()
  try {
    await waitFor('the session after the dropped ones to report its usage', () => usage === 1, 20_000)
    assert.is(dials.length, DROPPED_SESSIONS + 1)
    assert.is(listeners.size, 1, `one change listener for the one live session (${listeners.size})`)
    assert.type(roots.consent, 'function')
    for (const { storeEnd } of dials.slice(0, -1)) assert.is.not(storeEnd.status, 'open', 'a dropped session\'s stream is not left open')
  } finally {
    await store1.stop()
  }
  assert.is(listeners.size, 0, 'stopping removes the last listener')
  assert.is(roots.consent, undefined)
  assert.is.not(dials.at(-1)?.storeEnd.status, 'open')
})

sessions('a session refused at hello leaves its stream closed', async () => {
  const { store, listeners } = stubStore(1)
  const { host, dials } = await stubHost(({ coordinator }) => {
    void (async () => {
      try {
        await coordinator.expect()
        // Anything but a welcome (or a deny list) ends the session with an error on the store's side.
        await coordinator.send({ t: 'beat' })
      } catch {}
    })()
  })
  const store1 = await announcement(host, store)
  store1.start()
  try {
    await waitFor('the store to dial again after a refusal', () => dials.length >= 3, 20_000)
    // A session ends (and its stream with it) before the store waits to dial again.
    for (const { storeEnd } of dials.slice(0, 2)) assert.is.not(storeEnd.status, 'open', 'a refused session\'s stream is not left open')
    assert.is(listeners.size, 0)
  } finally {
    await store1.stop()
  }
})

sessions('stop() while dialling aborts the dial instead of waiting for it', async () => {
  const { store } = stubStore(0)
  const { host, signals } = await stubHost(() => {}, true)
  const store1 = await announcement(host, store)
  store1.start()
  await waitFor('the store to dial', () => signals.length === 1, 5_000)
  const stopping = store1.stop()
  assert.ok(signals[0].aborted, 'the dial was aborted by stop()')
  await stopping
  assert.is(signals.length, 1, 'no dial after stop()')
})

sessions.run()

// The libp2p host every role runs on: TCP (or in-memory for tests) + Noise (admitting only holders of the grid's
// secret, admission.ts) + Yamux + identify.
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { admittingNoise } from './admission.ts'
import type { SecretHolder } from './admission.ts'
import { INBOUND_CONNECTIONS_PER_SECOND_PER_HOST, MAX_CONNECTIONS, STREAM_READ_BUFFER_BYTES, STREAM_WINDOW_BYTES } from './constants.ts'

export type GridHost = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>> }>

export type { SecretHolder } from './admission.ts'

export interface HostInit {
  identity: PrivateKey
  /** The grid's 32-byte secret: nodes without it cannot complete a connection. A holder may be rotated later. */
  secret: Uint8Array | SecretHolder
  /** Multiaddrs to listen on; none for a node that only dials out. */
  listen: string[]
  /** Add the in-memory transport (tests): implied when listening on /memory. */
  memory?: boolean
  /** Peer IDs refused at the gate; the set is read live, so adding to it takes effect at once. */
  denied?: ReadonlySet<string>
}

export async function createHost (init: HostInit): Promise<GridHost> {
  const memory = init.memory === true || init.listen.some(a => a.startsWith('/memory/'))
  const transports = [tcp()]
  if (memory) {
    // Only tests listen on /memory; keep the dev-only dependency out of production start-up.
    const { memory: memoryTransport } = await import('@libp2p/memory')
    transports.push(memoryTransport() as any)
  }
  return createLibp2p({
    privateKey: init.identity,
    addresses: { listen: init.listen },
    transports,
    connectionEncrypters: [admittingNoise(init.secret instanceof Uint8Array ? { current: init.secret } : init.secret, noise)],
    // Yamux's default window grows to 16 MiB but a stream aborts once 4 MiB sit unread: a fast sender would kill
    // any stream whose reader is a little slow. The window stays well under the read buffer.
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: STREAM_READ_BUFFER_BYTES } })],
    connectionGater: {
      denyDialPeer: peer => init.denied?.has(peer.toString()) === true,
      denyInboundEncryptedConnection: peer => init.denied?.has(peer.toString()) === true,
      denyOutboundEncryptedConnection: peer => init.denied?.has(peer.toString()) === true
    },
    // libp2p's monitor pings every connection and aborts it when a ping is slow: a ping queued behind a bulk
    // transfer fails and the transfer (and any session on that connection) dies. Sessions keep their own heartbeats.
    connectionMonitor: { enabled: false },
    connectionManager: {
      maxConnections: MAX_CONNECTIONS,
      inboundConnectionThreshold: INBOUND_CONNECTIONS_PER_SECOND_PER_HOST,
      maxIncomingPendingConnections: 256
    },
    services: { identify: identify() }
  })
}

/** Addresses worth putting in a join code: what the host listens on, loopback last for other machines' sake. */
export function shareableAddrs (host: GridHost): Multiaddr[] {
  const addrs = host.getMultiaddrs()
  const loopback = (ma: Multiaddr): boolean => /^\/ip[46]\/(127\.|::1\/)/.test(ma.toString())
  return [...addrs.filter(a => !loopback(a)), ...addrs.filter(loopback)]
}

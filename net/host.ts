// The libp2p host every role runs on: TCP (or in-memory for tests) + pnet + Noise + Yamux + identify.
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import type { ConnectionProtector, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { swarmKey } from './join-code.ts'
import { INBOUND_CONNECTIONS_PER_SECOND_PER_HOST, MAX_CONNECTIONS, PNET_CHUNK_BYTES, STREAM_READ_BUFFER_BYTES, STREAM_WINDOW_BYTES } from './constants.ts'

export type GridHost = Libp2p<{ identify: ReturnType<ReturnType<typeof identify>> }>

/** The grid's secret as a host holds it: replaceable at runtime (rotation) without rebuilding the host. */
export interface SecretHolder {
  current: Uint8Array
}

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
    connectionEncrypters: [noise()],
    // Yamux's default window grows to 16 MiB but a stream aborts once 4 MiB sit unread: a fast sender would kill
    // any stream whose reader is a little slow. The window stays well under the read buffer.
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: STREAM_READ_BUFFER_BYTES } })],
    connectionProtector: rotatableProtector(init.secret instanceof Uint8Array ? { current: init.secret } : init.secret),
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

/**
 * libp2p's pnet protector keeps the key it was made with; this one makes a pnet protector from the holder's
 * current key for each new connection, so rotating the secret takes effect for every connection after it.
 */
function rotatableProtector (secret: SecretHolder): () => ConnectionProtector {
  return () => {
    let key: Uint8Array | undefined
    let protector: ConnectionProtector | undefined
    return {
      protect: async (connection, options) => {
        if (key !== secret.current) {
          key = secret.current
          protector = preSharedKey({ psk: swarmKey(key) })()
        }
        const protectedConnection = await protector!.protect(connection, options)
        // pnet encrypts whatever is queued in one call into a WebAssembly buffer that cannot grow past ~32 MiB;
        // yamux can queue more than that behind a busy socket (a window update resumes a stream even while the
        // socket is still full), and the connection then dies with "Maximum memory size exceeded". Cutting the
        // queue into pieces keeps every call small.
        ;(protectedConnection as { maxMessageSize?: number }).maxMessageSize = PNET_CHUNK_BYTES
        return protectedConnection
      }
    }
  }
}

/** Addresses worth putting in a join code: what the host listens on, loopback last for other machines' sake. */
export function shareableAddrs (host: GridHost): Multiaddr[] {
  const addrs = host.getMultiaddrs()
  const loopback = (ma: Multiaddr): boolean => /^\/ip[46]\/(127\.|::1\/)/.test(ma.toString())
  return [...addrs.filter(a => !loopback(a)), ...addrs.filter(loopback)]
}

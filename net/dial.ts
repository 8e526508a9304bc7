// Opening a protocol stream to a peer known by its peer ID and addresses (a store, the coordinator).
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import type { GridHost } from './host.ts'
import { DIAL_TIMEOUT_MS } from './constants.ts'
import { GridError } from './errors.ts'

export interface PeerAddress {
  peer: string
  addrs: string[]
}

export class PeerUnreachableError extends GridError {
  name = 'PeerUnreachableError'
  readonly status = 502
}

export async function openStream (host: GridHost, target: PeerAddress, protocol: string, signal?: AbortSignal): Promise<Stream> {
  const peer = peerIdFromString(target.peer)
  if (target.addrs.length > 0) {
    await host.peerStore.merge(peer, { multiaddrs: target.addrs.map(a => multiaddr(a).decapsulateCode(421)) })
  }
  try {
    return await host.dialProtocol(peer, protocol, { signal: signal ?? AbortSignal.timeout(DIAL_TIMEOUT_MS) })
  } catch (err: any) {
    throw new PeerUnreachableError(`cannot reach ${target.peer} for ${protocol}: ${err.message}`)
  }
}

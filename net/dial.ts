// Opening a protocol stream to a peer known by its peer ID and addresses (a store, the coordinator).
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import type { GridHost } from './host.ts'
import { z } from 'zod'
import { DIAL_TIMEOUT_MS, MAX_ADDR_CHARS, MAX_PEER_ADDRS, MAX_PEER_ID_CHARS } from './constants.ts'
import { GridError } from './errors.ts'

/** A peer ID as text, as peers send it (parsed with peerIdFromString where it is dialled or compared). */
export const peerIdText = z.string().max(MAX_PEER_ID_CHARS)
/** The multiaddrs a peer listens on, as text. */
export const listenAddrs = z.array(z.string().max(MAX_ADDR_CHARS)).max(MAX_PEER_ADDRS)
/** A peer the grid passes around (a store, a worker serving its cache, the coordinator): who it is and where. */
export const peerAddress = z.object({ peer: peerIdText, addrs: listenAddrs })
export type PeerAddress = z.infer<typeof peerAddress>

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
    throw new PeerUnreachableError(`cannot reach ${target.peer} for ${protocol}: ${err?.message ?? err?.name ?? String(err)}`)
  }
}

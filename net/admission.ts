// Admission to the grid: only a node holding the grid's 32-byte secret completes a connection.
//
// The secret goes into Noise's prologue (Noise spec §6: "both parties must provide identical prologue data, or the
// handshake fails"), derived as HMAC-SHA256(secret, ADMISSION_LABEL). The prologue is mixed into the handshake hash
// that every handshake payload is authenticated against, so a node without the secret cannot produce the second or
// third handshake message the other side accepts: the handshake fails before any stream or protocol exists, both
// ways. Unlike libp2p's pnet, which encrypts every byte a second time (XSalsa20 in WebAssembly, on top of Noise's
// ChaCha20-Poly1305), this costs nothing per byte: the stream is encrypted once, by Noise (issue 20 measured a
// bare stream at 0.4x of the same stream without pnet on these machines).
//
// What this gives up against pnet, documented in SECURITY.md: an outsider who connects to a node sees its Noise
// handshake (the responder's second message, whose keys come from a Diffie-Hellman the outsider took part in), so it
// can learn that node's peer ID; and an observer of the network can tell the traffic is libp2p. Neither is a secret in
// the grid (peer IDs are in build history); the secret itself never travels and cannot be recovered from a handshake.
import { createHmac } from 'node:crypto'
import type { ConnectionEncrypter } from '@libp2p/interface'
import { SECRET_BYTES } from './constants.ts'

/** The grid's secret as a host holds it: replaceable at runtime (rotation) without rebuilding the host. */
export interface SecretHolder {
  current: Uint8Array
}

/** Domain separation: the prologue is never the secret itself, and a later admission scheme gets another label. */
export const ADMISSION_LABEL = 'nameless-grid admission v1'

/** The Noise prologue for a grid secret (32 bytes): HMAC-SHA256(secret, ADMISSION_LABEL). Throws on a secret of another length. */
export function admissionPrologue (secret: Uint8Array): Uint8Array {
  if (secret.byteLength !== SECRET_BYTES) throw new RangeError(`the grid's secret is ${SECRET_BYTES} bytes, not ${secret.byteLength}`)
  return new Uint8Array(createHmac('sha256', secret).update(ADMISSION_LABEL).digest())
}

/** How `@chainsafe/libp2p-noise`'s `noise()` is shaped: init in, a libp2p component factory out. */
type NoiseFactory<C> = (init: { prologueBytes?: Uint8Array }) => (components: C) => ConnectionEncrypter<any>

/**
 * A Noise connection encrypter that admits only peers with the holder's current secret (see the top of this file).
 * A Noise instance is made per secret, so rotating the secret takes effect for every connection after it, and
 * connections already up stay as they are. Same protocol id as Noise (`/noise`): a peer of another grid gets as far as
 * the handshake and fails there.
 */
export function admittingNoise<C> (secret: SecretHolder, noise: NoiseFactory<C>): (components: C) => ConnectionEncrypter<any> {
  return components => {
    let key: Uint8Array | undefined
    let inner: ConnectionEncrypter<any> | undefined
    const current = (): ConnectionEncrypter<any> => {
      if (inner === undefined || key !== secret.current) {
        key = secret.current
        inner = noise({ prologueBytes: admissionPrologue(key) })(components)
      }
      return inner
    }
    const first = current()
    return {
      protocol: first.protocol,
      secureInbound: async (connection, options) => await current().secureInbound(connection, options),
      secureOutbound: async (connection, options) => await current().secureOutbound(connection, options),
      // libp2p looks up its services by these; keep what Noise declares.
      ...Object.fromEntries(Object.getOwnPropertySymbols(first).map(s => [s, (first as any)[s]]))
    }
  }
}

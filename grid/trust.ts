// Trust: the operator hands a second join code (DATA/join-trusted) to the machines and people it trusts with the
// grid's secrets. Its holder proves it on every connection, never by claiming it: a worker in its hello, a client in
// each submit, sends HMAC-SHA256(trust key, context + its own peer ID + the coordinator's peer ID). The key never
// travels; Noise authenticates the prover's peer ID, so a proof seen on the wire is worthless to any other peer, and
// it names the coordinator, so it is worthless to any other grid. A new trust key (`grid rotate --trusted`) makes
// every proof made with the old one stale.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { TRUST_KEY_BYTES } from '../net/constants.ts'

/** A proof is one HMAC-SHA256 output. */
export const TRUST_PROOF_BYTES = 32

/** Ties a proof to this use of the key, so an HMAC the key makes for anything else can never pass for one. */
const CONTEXT = 'nameless-grid trust v1\0'

/**
 * The trust key as the coordinator (and workers in its own process) hold it: `current` is replaced on a rotation,
 * and whoever holds the holder follows.
 */
export interface TrustHolder {
  current: Uint8Array
}

/**
 * What a connection proved: `trusted` (a good proof), `untrusted` (none was sent: an ordinary join code) or `stale`
 * (a proof that does not check out: a trusted code from before a rotation, or a forged one).
 */
export type TrustVerdict = 'trusted' | 'untrusted' | 'stale'

export function newTrustKey (): Uint8Array {
  return new Uint8Array(randomBytes(TRUST_KEY_BYTES))
}

/**
 * The proof `prover` (a peer ID, as text) sends to `coordinator` (its peer ID): HMAC-SHA256(key,
 * "nameless-grid trust v1\0" + prover + "\0" + coordinator), TRUST_PROOF_BYTES long.
 */
export function trustProof (key: Uint8Array, prover: string, coordinator: string): Uint8Array {
  return new Uint8Array(createHmac('sha256', key).update(`${CONTEXT}${prover}\0${coordinator}`).digest())
}

/** What `proof`, sent by `prover` over its own authenticated connection, proves to `coordinator`; compared in constant time. */
export function verifyTrust (key: Uint8Array, proof: Uint8Array | undefined, prover: string, coordinator: string): TrustVerdict {
  if (proof === undefined) return 'untrusted'
  const expected = trustProof(key, prover, coordinator)
  return proof.length === expected.length && timingSafeEqual(proof, expected) ? 'trusted' : 'stale'
}

// Write grants: a store takes appends to an attempt's logs only from the worker the coordinator handed that
// attempt to. The grant is the coordinator's Ed25519 signature over (attempt id, worker peer ID); the store
// checks it against the coordinator's public key, which its peer ID carries, so no store asks anyone.
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { GRANT_BYTES, MAX_VERIFIED_GRANTS } from './constants.ts'

/** Keeps a signature made for this purpose from ever being valid for another. */
const DOMAIN = 'nameless-grid/write-grant/1\n'

const payload = (attempt: string, worker: string): Uint8Array => new TextEncoder().encode(`${DOMAIN}${attempt}\n${worker}`)

export async function issueGrant (coordinatorKey: PrivateKey, attempt: string, worker: string): Promise<Uint8Array> {
  return await coordinatorKey.sign(payload(attempt, worker))
}

export class GrantVerifier {
  private readonly coordinator: PeerId
  private readonly verified = new Set<string>()

  constructor (coordinator: PeerId) {
    this.coordinator = coordinator
  }

  /** Whether `grant` lets `worker` write the logs of `attempt`. */
  async allows (grant: Uint8Array, attempt: string, worker: string): Promise<boolean> {
    const key = `${attempt}\n${worker}\n${Buffer.from(grant).toString('base64')}`
    if (this.verified.has(key)) return true
    const publicKey = this.coordinator.publicKey
    if (publicKey === undefined || grant.length !== GRANT_BYTES) return false
    let ok = false
    try {
      ok = await publicKey.verify(payload(attempt, worker), grant)
    } catch {
      return false
    }
    if (ok) {
      if (this.verified.size >= MAX_VERIFIED_GRANTS) this.verified.delete(this.verified.values().next().value!)
      this.verified.add(key)
    }
    return ok
  }
}

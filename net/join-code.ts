// The join code: everything a node needs to enter a grid, in one pasteable line.
// It carries the grid's 32-byte secret (the admission key, net/admission.ts) and the coordinator's addresses with its peer ID; a
// trusted join code (DATA/join-trusted) carries the grid's trust key too, with which its holder proves trust to the
// coordinator on each connection (grid/trust.ts). A code without one (every code made before trust existed) is an
// ordinary one.
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { encode, decode } from 'cborg'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { z } from 'zod'
import { GridError } from './errors.ts'
import { MAX_JOIN_CODE_CHARS, SECRET_BYTES, TRUST_KEY_BYTES } from './constants.ts'
import type { PeerAddress } from './dial.ts'


const PREFIX = 'grid1-'

export class BadJoinCodeError extends GridError {
  name = 'BadJoinCodeError'
}

export interface JoinCode {
  secret: Uint8Array
  coordinator: PeerId
  addrs: Multiaddr[]
  /** The grid's trust key (TRUST_KEY_BYTES), in a trusted join code only. */
  trust?: Uint8Array
}

const payload = z.object({
  v: z.literal(1),
  k: z.instanceof(Uint8Array).refine(k => k.length === SECRET_BYTES, 'secret must be 32 bytes'),
  p: z.string(),
  a: z.array(z.string()).min(1),
  t: z.instanceof(Uint8Array).refine(t => t.length === TRUST_KEY_BYTES, 'trust key must be 32 bytes').optional()
})

export function newSecret (): Uint8Array {
  return new Uint8Array(randomBytes(SECRET_BYTES))
}

export function encodeJoinCode (code: JoinCode): string {
  const a = code.addrs.map(ma => ma.decapsulateCode(421).toString())
  const trust = code.trust !== undefined ? { t: code.trust } : {}
  return PREFIX + Buffer.from(encode({ v: 1, k: code.secret, p: code.coordinator.toString(), a, ...trust })).toString('base64url')
}

export function decodeJoinCode (text: string): JoinCode {
  const trimmed = text.trim()
  if (!trimmed.startsWith(PREFIX) || trimmed.length > MAX_JOIN_CODE_CHARS) {
    throw new BadJoinCodeError(`not a join code (it starts with "${PREFIX}"; find it in the coordinator's DATA/join)`)
  }
  let parsed
  try {
    parsed = payload.parse(decode(Buffer.from(trimmed.slice(PREFIX.length), 'base64url')))
  } catch {
    throw new BadJoinCodeError('join code is damaged (copy it again from the coordinator\'s DATA/join)')
  }
  let coordinator: PeerId
  let addrs: Multiaddr[]
  try {
    coordinator = peerIdFromString(parsed.p)
    addrs = parsed.a.map(a => multiaddr(a).encapsulate(`/p2p/${parsed.p}`))
  } catch {
    throw new BadJoinCodeError('join code holds a bad address or peer ID')
  }
  return { secret: parsed.k, coordinator, addrs, ...(parsed.t !== undefined ? { trust: parsed.t } : {}) }
}

/** `--join` takes the code itself or a file holding it. */
export async function readJoinCode (codeOrFile: string): Promise<JoinCode> {
  if (codeOrFile.trim().startsWith(PREFIX)) return decodeJoinCode(codeOrFile)
  let text: string
  try {
    text = await readFile(codeOrFile, 'utf8')
  } catch (err: any) {
    throw new BadJoinCodeError(`--join ${codeOrFile}: neither a join code nor a readable file (${err.code ?? err.message})`)
  }
  return decodeJoinCode(text)
}

/** Where a node that joined with this code reaches the coordinator. */
export function coordinatorAddress (code: JoinCode): PeerAddress {
  return { peer: code.coordinator.toString(), addrs: code.addrs.map(String) }
}

// Peers shut out of the grid at runtime, by the operator, by peer ID (as seen in build history).
// The set is what every host's connection gater consults; it is kept in DATA/denied (a short list: a file,
// replaced atomically) and sent to every store, so a denied peer is refused everywhere and dropped from every
// connection it has.
import { readFile, rename, writeFile } from 'node:fs/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { GridError } from '../net/errors.ts'

export class BadPeerIdError extends GridError {
  name = 'BadPeerIdError'
}

/** A peer ID from a user or a peer, checked; throws BadPeerIdError with one sentence. */
export function parsePeerId (text: string): string {
  try {
    return peerIdFromString(text).toString()
  } catch {
    throw new BadPeerIdError(`${text.slice(0, 80)} is not a peer ID (they look like 12D3KooW…)`)
  }
}

export class DenyList {
  /** Shared with the host's connection gater, which reads it on every new connection. */
  readonly peers: Set<string>
  private readonly path: string | undefined
  private readonly listeners = new Set<(peers: string[]) => void>()

  /** `path` undefined keeps the list in memory only (a store learns it from the coordinator). */
  constructor (peers: Set<string>, path?: string) {
    this.peers = peers
    this.path = path
  }

  async load (): Promise<void> {
    if (this.path === undefined) return
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err: any) {
      if (err.code === 'ENOENT') return
      throw err
    }
    for (const line of text.split('\n')) if (line.trim() !== '') this.peers.add(parsePeerId(line.trim()))
  }

  async deny (peer: string): Promise<void> {
    this.peers.add(peer)
    await this.save()
    this.changed()
  }

  async allow (peer: string): Promise<void> {
    this.peers.delete(peer)
    await this.save()
    this.changed()
  }

  /** Replace the whole list (a store receiving the coordinator's). */
  replace (peers: string[]): void {
    this.peers.clear()
    for (const peer of peers) this.peers.add(peer)
    this.changed()
  }

  private async save (): Promise<void> {
    if (this.path === undefined) return
    await writeFile(`${this.path}.tmp`, this.list().join('\n') + '\n', { mode: 0o600 })
    await rename(`${this.path}.tmp`, this.path)
  }

  list (): string[] {
    return [...this.peers].sort()
  }

  onChange (listener: (peers: string[]) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private changed (): void {
    for (const listener of this.listeners) listener(this.list())
  }
}

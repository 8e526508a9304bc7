// The stores the grid has right now. Store nodes announce themselves; nothing about them is configured.
import type { PeerAddress } from '../net/dial.ts'

/**
 * What the coordinator can tell one store: seal these logs (see LogStore.fence); refuse these peers; copy a root
 * to another store (repair); drop roots it is no longer placed for.
 */
export interface StoreControl {
  fence (logs: string[]): void
  deny (peers: string[]): void
  /** Resolves once `to` acknowledged the whole root; rejects if the copy failed. */
  copy?: (root: string, to: PeerAddress) => Promise<void>
  drop?: (roots: string[]) => void
}

export class StoreDirectory {
  private readonly stores = new Map<string, PeerAddress>()
  private readonly controls = new Map<string, StoreControl>()
  private readonly listeners = new Set<() => void>()

  /** Add or refresh a store; returns its removal, for when its session ends (true if it was still this entry). */
  add (store: PeerAddress, control?: StoreControl): () => boolean {
    this.stores.set(store.peer, store)
    if (control !== undefined) this.controls.set(store.peer, control)
    this.changed()
    return () => {
      if (this.stores.get(store.peer) === store) {
        this.stores.delete(store.peer)
        this.controls.delete(store.peer)
        this.changed()
        return true
      }
      return false
    }
  }

  /** Fence logs on every store: a store that is away now never took those appends from the coordinator's workers after this. */
  fence (logs: string[]): void {
    if (logs.length === 0) return
    for (const control of this.controls.values()) control.fence(logs)
  }

  /** Send every store the whole deny list. */
  deny (peers: string[]): void {
    for (const control of this.controls.values()) control.deny(peers)
  }

  /** The control of a store that is here now. */
  control (peer: string): StoreControl | undefined {
    return this.controls.get(peer)
  }

  list (): PeerAddress[] {
    return [...this.stores.values()]
  }

  onChange (listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private changed (): void {
    for (const listener of this.listeners) listener()
  }
}

// The stores the grid has right now. Store nodes announce themselves; nothing about them is configured.
import type { PeerAddress } from '../node/dial.ts'

export class StoreDirectory {
  private readonly stores = new Map<string, PeerAddress>()
  private readonly listeners = new Set<() => void>()

  /** Add or refresh a store; returns its removal, for when its session ends. */
  add (store: PeerAddress): () => void {
    this.stores.set(store.peer, store)
    this.changed()
    return () => {
      if (this.stores.get(store.peer) === store) {
        this.stores.delete(store.peer)
        this.changed()
      }
    }
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

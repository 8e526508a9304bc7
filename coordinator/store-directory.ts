// The stores the grid has right now. Store nodes announce themselves; nothing about them is configured.
import type { PeerAddress } from '../node/dial.ts'

/** Seals logs on one store (see LogStore.fence). */
export type Fence = (logs: string[]) => void

export class StoreDirectory {
  private readonly stores = new Map<string, PeerAddress>()
  private readonly fences = new Map<string, Fence>()
  private readonly listeners = new Set<() => void>()

  /** Add or refresh a store; returns its removal, for when its session ends. */
  add (store: PeerAddress, fence?: Fence): () => void {
    this.stores.set(store.peer, store)
    if (fence !== undefined) this.fences.set(store.peer, fence)
    this.changed()
    return () => {
      if (this.stores.get(store.peer) === store) {
        this.stores.delete(store.peer)
        this.fences.delete(store.peer)
        this.changed()
      }
    }
  }

  /** Fence logs on every store: a store that is away now never took those appends from the coordinator's workers after this. */
  fence (logs: string[]): void {
    if (logs.length === 0) return
    for (const fence of this.fences.values()) fence(logs)
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

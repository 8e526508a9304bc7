// The stores the grid has right now. Store nodes announce themselves; nothing about them is configured.
import type { PeerAddress } from '../node/dial.ts'

/** What the coordinator can tell one store: seal these logs (see LogStore.fence); refuse these peers. */
export interface StoreControl {
  fence (logs: string[]): void
  deny (peers: string[]): void
}

export class StoreDirectory {
  private readonly stores = new Map<string, PeerAddress>()
  private readonly controls = new Map<string, StoreControl>()
  private readonly listeners = new Set<() => void>()

  /** Add or refresh a store; returns its removal, for when its session ends. */
  add (store: PeerAddress, control?: StoreControl): () => void {
    this.stores.set(store.peer, store)
    if (control !== undefined) this.controls.set(store.peer, control)
    this.changed()
    return () => {
      if (this.stores.get(store.peer) === store) {
        this.stores.delete(store.peer)
        this.controls.delete(store.peer)
        this.changed()
      }
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

// Which store nodes hold a piece of content or a log: rendezvous (highest-random-weight) hashing, as Buildbarn
// shards its blobs. Every node that knows the same set of stores computes the same answer with no table to share,
// and adding or removing one store moves only the keys whose top-N it enters or leaves (about 1/N of them).
import { createHash } from 'node:crypto'
import type { PeerAddress } from '../net/dial.ts'

/** Content is kept on this many stores unless the coordinator is told otherwise (`--replicas`). */
export const DEFAULT_REPLICAS = 2

/** A store's weight for a key: the first 8 bytes of sha256(key, store), compared as an unsigned integer. */
function weight (key: string, store: string): bigint {
  return createHash('sha256').update(key).update('\0').update(store).digest().readBigUInt64BE(0)
}

/**
 * The stores that should hold `key` (a CID or a log id), best first: `replicas` of them, or all there are if fewer.
 * The order is stable for a given key and set of stores, so writers and readers agree without talking.
 */
export function placeFor<T extends PeerAddress> (key: string, stores: readonly T[], replicas: number = DEFAULT_REPLICAS): T[] {
  const ranked = stores
    .map(store => ({ store, weight: weight(key, store.peer) }))
    .sort((a, b) => a.weight === b.weight ? (a.store.peer < b.store.peer ? -1 : 1) : (a.weight > b.weight ? -1 : 1))
  return ranked.slice(0, Math.max(1, replicas)).map(r => r.store)
}

/** Every store ordered for `key`: the placed ones first, then the rest (readers try them in this order). */
export function rankFor<T extends PeerAddress> (key: string, stores: readonly T[]): T[] {
  return placeFor(key, stores, stores.length)
}

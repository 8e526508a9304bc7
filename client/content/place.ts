// A put that keeps its promise of replicas: content goes to the stores placement.ts ranks first for its CID, and
// the put returns only once `replicas` of them hold it. A placed store that fails is replaced by the next in rank,
// given the content by reading it back from one that took it, so the source (a pipe, an HTTP upload) is read once.
import type { GridHost } from '../../net/host.ts'
import type { PeerAddress } from '../../net/dial.ts'
import { parseCid } from '../../grid/content.ts'
import { rankFor } from '../../grid/placement.ts'
import type { Blockstore } from '../../storage/blockstore.ts'
import type { RootCatalog } from '../../storage/root-catalog.ts'
import { targetName } from './lane.ts'
import { ReplicasUnreachableError, putContent } from './put.ts'
import type { PutOptions, PutResult, PutTarget } from './put.ts'
import { readContent } from './read.ts'
import { nameOf } from './name.ts'
import type { BufferPool } from '../../net/buffer-pool.ts'

export interface PlacedPutInit {
  host: GridHost
  /** The grid's stores, as the coordinator lists them. */
  stores: PeerAddress[]
  /** Copies to keep (the coordinator's `--replicas`); all the stores there are if fewer. */
  replicas: number
  /** This node's own store, used for its own peer ID instead of a stream to itself. */
  local?: { peer: string, blocks: Blockstore, roots?: RootCatalog }
  /**
   * Where to place the content: its CID when known before the put (a first pass with nameOf). Without it
   * (a one-pass stream, as an HTTP upload) the put goes to stores ranked by a random key, and the coordinator's
   * repair moves it to its placed stores afterwards.
   */
  placeBy?: string
  /** Told when the content reached fewer stores than `replicas` because the others are unreachable. */
  warn?: (line: string) => void
  /** Local targets that keep a copy too (named, so they are not counted as stores), such as a worker's cache. */
  alsoKeep?: PutTarget[]
}

/**
 * Put content on its placed stores and return only once `replicas` of them hold it. A placed store that fails
 * is replaced by the next in rank order (placement.ts), which is given the content by reading it back from a
 * store that took it; ReplicasUnreachableError if fewer than `replicas` stores can be made to hold it.
 */
export async function putPlaced (init: PlacedPutInit, source: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<PutResult> {
  if (init.stores.length === 0) throw new ReplicasUnreachableError('the grid has no store yet (start one with grid store, or use grid up)')
  const wanted = Math.min(Math.max(1, init.replicas), init.stores.length)
  const ranked = rankFor(init.placeBy ?? Math.random().toString(36), init.stores)
  const target = (store: PeerAddress): PutTarget => store.peer === init.local?.peer
    ? { local: init.local.blocks, roots: init.local.roots }
    : { host: init.host, store }
  const first = ranked.slice(0, wanted)
  // Extra copies (a worker's cache) ride on the same pass over the source; they are not replicas.
  const extra = new Set((init.alsoKeep ?? []).map(targetName))
  const put = await putContent([...first.map(target), ...(init.alsoKeep ?? [])], source, options)
  const holders = new Set(put.stores.filter(s => !extra.has(s)).map(s => s === 'local' ? init.local!.peer : s))
  const failures: string[] = []
  let next = wanted
  const cid = parseCid(put.cid)
  while (holders.size < wanted && next < ranked.length) {
    const store = ranked[next++]
    if (holders.has(store.peer)) continue
    const from = ranked.filter(s => holders.has(s.peer))
    try {
      const copy = await putContent(target(store), readContent({ host: init.host, local: init.local?.blocks, holders: () => from }, cid))
      holders.add(store.peer)
      put.sentBlocks += copy.sentBlocks
      put.sentBytes += copy.sentBytes
    } catch (err: any) {
      failures.push(`${store.peer}: ${err.message}`)
    }
  }
  put.stores = [...holders]
  // Every other store failed us: they are gone, or going (a store killed mid-put is dropped from the grid's list
  // only after its silence limit). The content is on all the stores there are, as the grid promises ("or all there
  // are if fewer"); when a store joins, repair copies it there. Only content on no store at all is a failed put.
  if (holders.size < wanted) {
    const why = `${put.cid} reached only ${holders.size} of the ${wanted} stores it should be kept on${failures.length > 0 ? ` (${failures[0]})` : ''}`
    if (holders.size === 0) throw new ReplicasUnreachableError(why)
    init.warn?.(`${why}; the others did not answer, and the grid copies it when a store can take it`)
  }
  return put
}

/**
 * Whether where content goes depends on its name: only when there are more stores than copies to keep. With no more
 * stores than `replicas` (as in `grid up`: one store, one copy), every store takes the content whatever its CID, so a
 * put can send as it hashes instead of naming the content in a first pass.
 */
export function placementNeedsName (init: Pick<PlacedPutInit, 'stores' | 'replicas'>): boolean {
  return init.stores.length > Math.max(1, init.replicas)
}

/**
 * Put content that can be read again (`open` gives a fresh reader of the same bytes each time: a file, a tar made
 * the same way every time) on its placed stores. Where its name cannot change where it goes (placementNeedsName is
 * false) it is read once, hashed as it is sent; otherwise a first pass names it (nameOf) so it goes straight to the
 * stores placed for its CID, and the second pass only reads and sends (ContentChangedError if the bytes changed in
 * between). Every store checks every block it takes either way. Errors as putPlaced.
 */
export async function putReadable (init: Omit<PlacedPutInit, 'placeBy'>, open: () => AsyncIterable<Uint8Array>, options: { pool?: BufferPool } = {}): Promise<PutResult> {
  if (!placementNeedsName(init)) return await putPlaced(init, open(), options)
  const named = await nameOf(open(), options.pool)
  return await putPlaced({ ...init, placeBy: named.cid }, open(), { ...options, named })
}

// Putting content on stores: `grid put`, HTTP uploads, workers' artifacts, and the copy a placed put makes for a
// store that failed it. A put streams through the content namer and hands each group of PUT_GROUP_BLOCKS blocks to
// every target at once (lane.ts: each target asks for only the blocks it lacks, on its own stream, so two replicas
// cost about one store's time, not two); memory stays at a few groups whatever the size or the number of replicas.
// A put ends by naming its root on each target, and is done only once every target still standing holds all of it.
import type { GridHost } from '../../net/host.ts'
import type { PeerAddress } from '../../net/dial.ts'
import type { BufferPool } from '../../net/buffer-pool.ts'
import { GridError, isGridError } from '../../net/errors.ts'
import { ContentChangedError, nameContent } from '../../grid/content.ts'
import type { Block, Named } from '../../grid/content.ts'
import type { CID } from 'multiformats/cid'
import { isBlockMismatch } from '../../storage/blockstore.ts'
import type { Blockstore } from '../../storage/blockstore.ts'
import type { RootCatalog } from '../../storage/root-catalog.ts'
import { PUT_GROUP_BLOCKS } from '../../storage/constants.ts'
import { Lane, targetName } from './lane.ts'

export interface PutResult {
  cid: string
  size: number
  sha256: string
  /** Blocks and bytes actually sent (to all targets together): near zero when the stores already held the content. */
  sentBlocks: number
  sentBytes: number
  /** Peer IDs of the stores that hold all of it now (`local` for this node's own blockstore). */
  stores: string[]
  /** Every block's CID in order (what a manifest lists; the one block of single-block content). */
  blocks: CID[]
}

/** Where a put writes: this node's blockstore (and its root catalog), or a store over libp2p. */
/** `name` tells a local target apart in PutResult.stores (`local` when absent). */
export type PutTarget = { local: Blockstore, roots?: RootCatalog, name?: string } | { host: GridHost, store: PeerAddress }

/** Fewer stores than the put needs took the content. */
export class ReplicasUnreachableError extends GridError {
  name = 'ReplicasUnreachableError'
  readonly status = 503
}

export interface PutOptions {
  /**
   * The pool `source`'s chunks come from (readFileBlocks): each block's buffer goes back to it once every target
   * acknowledged the block, so a put of any size reuses a few dozen buffers instead of allocating a new one per
   * block (see buffer-pool.ts for why that matters).
   */
  pool?: BufferPool
  /**
   * What a first pass over the same content found (nameOf): the put hashes nothing then, and a block that no
   * longer matches its CID (the content changed in between) fails the put with ContentChangedError.
   */
  named?: Named
}

/**
 * Put content on every target at once. A target that fails is dropped and the others go on; the put fails only
 * if all of them do (with the first failure). `stores` in the result says which targets hold it.
 */
export async function putContent (targets: PutTarget | PutTarget[], source: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<PutResult> {
  const all = Array.isArray(targets) ? targets : [targets]
  if (all.length === 0) throw new ReplicasUnreachableError('a put needs at least one store')
  // Named content every target already holds is not read at all (a re-put of an unchanged file: name-cache.ts).
  if (options.named !== undefined && await namedOnEvery(all, options.named.cid)) {
    const { cid, size, sha256 } = options.named
    return { cid, size, sha256, sentBlocks: 0, sentBytes: 0, stores: all.map(targetName), blocks: options.named.blocks }
  }
  const lanes = all.map(t => new Lane(t))
  let group: Block[] = []
  let sentBlocks = 0
  let sentBytes = 0
  const live = (): Lane[] => lanes.filter(l => l.failure === undefined)
  // Refused as not matching the CID the first pass gave it: the bytes changed since then.
  const explain = (err: Error): Error => options.named !== undefined && !(err instanceof ContentChangedError) && isBlockMismatch(err)
    ? new ContentChangedError(`the content changed after it was named ${options.named.cid} (${err.message}); nothing was named`)
    : err
  // A connection's own failure (a reset, a timeout) says nothing a user can act on alone: it is said as no store
  // taking the content, with the cause.
  const allFailed = (): never => {
    const err = explain(lanes[0].failure!)
    throw isGridError(err) ? err : new ReplicasUnreachableError(`no store took the content (${lanes.map(l => `${l.name}: ${l.failure?.message ?? 'failed'}`).join('; ')})`)
  }

  const each = async (work: (lane: Lane) => Promise<void>): Promise<void> => {
    await Promise.all(live().map(async lane => {
      try {
        await work(lane)
      } catch (err: any) {
        lane.abort(err)
      }
    }))
    if (live().length === 0) allFailed()
  }

  const flush = async (): Promise<void> => {
    if (group.length === 0) return
    const blocks = group
    group = []
    let pending = live().length
    const done = (): void => {
      if (--pending > 0 || options.pool === undefined) return
      for (const block of blocks) options.pool.give(block.bytes)
    }
    await each(async lane => {
      await lane.enqueue(blocks, sent => {
        sentBlocks += sent.blocks
        sentBytes += sent.bytes
      }, done)
    })
  }

  try {
    const named = await nameContent(source, {
      named: options.named,
      keep: async block => {
        group.push(block)
        if (group.length >= PUT_GROUP_BLOCKS) await flush()
      }
    })
    // The manifest goes last: whoever holds it holds every block it lists.
    await flush()
    await each(async lane => { await lane.drain() })
    if (named.manifest !== undefined) {
      group.push(named.manifest)
      await flush()
      await each(async lane => { await lane.drain() })
    }
    const cid = named.cid.toString()
    await each(async lane => { await lane.finish(cid) })
    return { cid, size: named.size, sha256: named.sha256, sentBlocks, sentBytes, stores: live().map(l => l.name), blocks: named.blocks.map(b => b.cid) }
  } catch (err: any) {
    for (const lane of lanes) lane.abort(err)
    throw explain(err)
  }
}

/**
 * Whether every target holds the content named `cid` whole, now listed there as a root: each is asked whether it
 * holds the root block, and then to name the root, which a store does only once every block the root lists is
 * there (root-catalog.ts). False, changing nothing a put would not, when any target lacks it or fails: the put then
 * goes the usual way, sending each target only what it lacks.
 */
async function namedOnEvery (targets: PutTarget[], cid: string): Promise<boolean> {
  const lanes = targets.map(t => new Lane(t))
  try {
    if (!(await Promise.all(lanes.map(async lane => await lane.holds(cid)))).every(Boolean)) return false
    await Promise.all(lanes.map(async lane => { await lane.finish(cid) }))
    return true
  } catch (err: any) {
    for (const lane of lanes) lane.abort(err)
    return false
  }
}

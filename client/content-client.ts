// Putting and getting content as a client: `grid put`/`grid get`, the HTTP API, workers' artifacts.
// Puts stream through the chunker, ask each target store which blocks it lacks a group at a time, and send only
// those, to every replica at once (each on its own stream, so two replicas cost about one store's time, not two);
// memory stays at a few groups of PUT_GROUP_BLOCKS blocks whatever the size or the number of replicas, and a put
// from a file reads into the same few buffers throughout (readFileBlocks, putPool). A put ends by naming its
// root on each store, and is done only once every replica holds all of it. Gets try this node's own blockstore,
// then holders in the order given (the placed stores first: see placement.ts).
import { open } from 'node:fs/promises'
import type { CID } from 'multiformats/cid'
import type { GridHost } from '../net/host.ts'
import type { PeerAddress } from '../net/dial.ts'
import { isBlockMismatch } from '../storage/blockstore.ts'
import type { Blockstore } from '../storage/blockstore.ts'
import { Chunker, ContentChangedError, decodeManifest, isManifestCid, nameContent } from '../grid/content.ts'
import type { Block, Named } from '../grid/content.ts'
import { askMissing } from '../protocols/block-missing.ts'
import { BlockSender } from '../protocols/block-put.ts'
import { ContentUnavailableError, blocksFor, fetchFrom, fetchRoot, rootInfo } from '../protocols/block-get.ts'
import type { Range } from '../protocols/block-get.ts'
import { PUT_GROUP_BLOCKS, PUT_WINDOW } from '../storage/constants.ts'
import { BLOCK_BYTES } from '../grid/constants.ts'
import { BufferPool } from '../net/buffer-pool.ts'
import type { RootCatalog } from '../storage/root-catalog.ts'
import type { Throttle } from '../storage/throttle.ts'
import { rankFor } from '../grid/placement.ts'
import { parseCid } from '../grid/content.ts'
import { GridError } from '../net/errors.ts'

export interface PutResult {
  cid: string
  size: number
  sha256: string
  /** Blocks and bytes actually sent (to all targets together): near zero when the stores already held the content. */
  sentBlocks: number
  sentBytes: number
  /** Peer IDs of the stores that hold all of it now (`local` for this node's own blockstore). */
  stores: string[]
}

/** Where a put writes: this node's blockstore (and its root catalog), or a store over libp2p. */
/** `name` tells a local target apart in PutResult.stores (`local` when absent). */
export type PutTarget = { local: Blockstore, roots?: RootCatalog, name?: string } | { host: GridHost, store: PeerAddress }

/** Fewer stores than the put needs took the content. */
export class ReplicasUnreachableError extends GridError {
  name = 'ReplicasUnreachableError'
  readonly status = 503
}

/** One target of a put: its own stream and its own failure; the others go on without it. */
class Lane {
  readonly target: PutTarget
  failure: Error | undefined
  private sender: BlockSender | undefined

  constructor (target: PutTarget) {
    this.target = target
  }

  get name (): string {
    return 'local' in this.target ? this.target.name ?? 'local' : this.target.store.peer
  }

  /** Groups handed over and not yet sent, in order. */
  private chain: Promise<void> = Promise.resolve()

  /**
   * Hand a group over: the target is asked now which blocks it lacks, and they are sent once the groups before
   * this one are. The question and its answer travel behind megabytes of blocks on the same connection; asking
   * only after the last group was sent left the pipe empty for a fifth of a put. Resolves once the group before
   * this one is sent, so a writer holds at most two groups.
   */
  enqueue (group: Block[], sent: (counts: { blocks: number, bytes: number }) => void, done: () => void): Promise<void> {
    const lacking = this.lacking(group)
    lacking.catch(() => {})
    const previous = this.chain
    this.chain = previous.then(async () => { sent(await this.send(group, await lacking)) })
    this.chain.catch(() => {})
    // `done` once nothing reads the group's bytes any more: the target acknowledged them, or this lane failed.
    this.chain.then(async () => { await this.sender?.acknowledged() }, () => {}).then(done, done)
    return previous
  }

  /** Every group handed over is sent. */
  async drain (): Promise<void> {
    await this.chain
  }

  private async lacking (group: Block[]): Promise<Set<string>> {
    const t = this.target
    if ('local' in t) return new Set((await t.local.missing(group.map(b => b.cid), true)).map(String))
    return new Set(await askMissing(t.host, t.store, group.map(b => b.cid.toString())))
  }

  /** Send the blocks of `group` this target lacks; returns how many blocks and bytes went. */
  private async send (group: Block[], lacking: Set<string>): Promise<{ blocks: number, bytes: number }> {
    const t = this.target
    if ('local' in t) {
      const fresh = group.filter(b => lacking.has(b.cid.toString()))
      await t.local.putMany(fresh)
      return { blocks: fresh.length, bytes: fresh.reduce((n, b) => n + b.bytes.length, 0) }
    }
    let blocks = 0
    let bytes = 0
    for (const block of group) {
      if (!lacking.has(block.cid.toString())) continue
      this.sender ??= await BlockSender.open(t.host, t.store)
      await this.sender.send(block).catch(async (err: Error) => { throw await this.reason(err) })
      blocks++
      bytes += block.bytes.length
    }
    return { blocks, bytes }
  }

  /** Name the root and wait until the target acknowledged everything. */
  async finish (cid: string): Promise<void> {
    const t = this.target
    if ('local' in t) {
      await t.roots?.add(parseCid(cid))
      return
    }
    this.sender ??= await BlockSender.open(t.host, t.store)
    await this.sender.sendRoot(cid).catch(async (err: Error) => { throw await this.reason(err) })
    await this.sender.finish()
  }

  /**
   * Why a write failed: a store that refuses a block (the store is full) says so and closes the stream, and a write
   * racing that close fails with only "the stream is closed". The store's own reason comes on the acknowledgements,
   * which finish() waits for; it is the one worth telling.
   */
  private async reason (err: Error): Promise<Error> {
    return await (this.sender?.finish().then(() => err, (reason: Error) => reason) ?? err)
  }

  abort (err: Error): void {
    this.failure ??= err
    this.sender?.abort()
  }
}

/**
 * Buffers a put from a file keeps for reuse: the group being filled, the group handed to each lane before it, and
 * a window of blocks awaiting acknowledgement. More may be in use for a moment; those are simply not kept.
 */
const PUT_POOL_BLOCKS = 2 * PUT_GROUP_BLOCKS + PUT_WINDOW

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
  const lanes = (Array.isArray(targets) ? targets : [targets]).map(t => new Lane(t))
  if (lanes.length === 0) throw new ReplicasUnreachableError('a put needs at least one store')
  const chunker = new Chunker(BLOCK_BYTES, options.named)
  const listed: Array<{ cid: CID, size: number }> = []
  let group: Block[] = []
  let sentBlocks = 0
  let sentBytes = 0
  const live = (): Lane[] => lanes.filter(l => l.failure === undefined)
  // Refused as not matching the CID the first pass gave it: the bytes changed since then.
  const explain = (err: Error): Error => options.named !== undefined && !(err instanceof ContentChangedError) && isBlockMismatch(err)
    ? new ContentChangedError(`the content changed after it was named ${options.named.cid} (${err.message}); nothing was named`)
    : err
  const allFailed = (): never => { throw explain(lanes[0].failure!) }

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
    for await (const chunk of source) {
      for (const block of chunker.push(chunk)) {
        listed.push({ cid: block.cid, size: block.bytes.length })
        group.push(block)
        if (group.length >= PUT_GROUP_BLOCKS) await flush()
      }
    }
    const { last, size, sha256 } = chunker.finish()
    if (last !== undefined) {
      listed.push({ cid: last.cid, size: last.bytes.length })
      group.push(last)
    }
    const named = nameContent(listed, size, sha256)
    if (listed.length === 0) group.push({ cid: named.cid, bytes: new Uint8Array(0) })
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
    return { cid, size, sha256, sentBlocks, sentBytes, stores: live().map(l => l.name) }
  } catch (err: any) {
    for (const lane of lanes) lane.abort(err)
    throw explain(err)
  }
}

/**
 * A file's bytes, read a block at a time into buffers from `pool` (sized BLOCK_BYTES): the chunker takes each read
 * as a block without copying it, and putContent, given the same pool, hands each buffer back once the block is
 * stored. Without the pool's buffers coming back it still works, allocating as a plain read stream would.
 */
export async function * readFileBlocks (path: string, pool: BufferPool): AsyncGenerator<Uint8Array> {
  const handle = await open(path)
  try {
    let position = 0
    while (true) {
      const buffer = pool.take()
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, position)
      if (bytesRead === 0) {
        pool.give(buffer)
        return
      }
      position += bytesRead
      yield buffer.subarray(0, bytesRead)
    }
  } finally {
    await handle.close()
  }
}

/** A pool for one put from readFileBlocks: enough buffers for the blocks a put holds at once (see Lane.enqueue). */
export function putPool (): BufferPool {
  return new BufferPool(BLOCK_BYTES, PUT_POOL_BLOCKS)
}

/**
 * The CID, size and sha256 content would have, and its blocks' CIDs, storing nothing: a first pass over a file, to
 * place it. Passed to the put as `named`, it spares the second pass all hashing.
 */
export async function nameOf (source: AsyncIterable<Uint8Array>, pool?: BufferPool): Promise<Named> {
  const chunker = new Chunker()
  const listed: Array<{ cid: CID, size: number }> = []
  for await (const chunk of source) {
    for (const block of chunker.push(chunk)) listed.push({ cid: block.cid, size: block.bytes.length })
    // Hashed, and nothing kept of it: readFileBlocks may read the next block into the same buffer.
    pool?.give(chunk)
  }
  const { last, size, sha256 } = chunker.finish()
  if (last !== undefined) listed.push({ cid: last.cid, size: last.bytes.length })
  return { cid: nameContent(listed, size, sha256).cid.toString(), size, sha256, blocks: listed.map(b => b.cid) }
}

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
  const extra = new Set((init.alsoKeep ?? []).map(t => new Lane(t).name))
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
  // only after its silence limit). The content is on all the stores there are, as CONTRACT.md asks ("or all there
  // are if fewer"); when a store joins, repair copies it there. Only content on no store at all is a failed put.
  if (holders.size < wanted) {
    const why = `${put.cid} reached only ${holders.size} of the ${wanted} stores it should be kept on${failures.length > 0 ? ` (${failures[0]})` : ''}`
    if (holders.size === 0) throw new ReplicasUnreachableError(why)
    init.warn?.(`${why}; the others did not answer, and the grid copies it when a store can take it`)
  }
  return put
}

/**
 * Copy a root this node holds whole to another store, block for block (so content named with any block size
 * keeps its CID), sending only what the target lacks and ending with the root message; store-to-store repair.
 * `throttle` paces the bytes sent.
 */
export async function copyContent (host: GridHost, blocks: Blockstore, cid: CID, to: PeerAddress, throttle?: Throttle, signal?: AbortSignal): Promise<{ sentBytes: number }> {
  const root = await blocks.get(cid)
  if (root === undefined) throw new ContentUnavailableError(`this store does not hold ${cid}`)
  const members: CID[] = isManifestCid(cid) ? [...decodeManifest(root).blocks.map(b => b.cid), cid] : [cid]
  let sender: BlockSender | undefined
  let sentBytes = 0
  try {
    for (let i = 0; i < members.length; i += PUT_GROUP_BLOCKS) {
      const group = members.slice(i, i + PUT_GROUP_BLOCKS)
      const lacking = new Set(await askMissing(host, to, group.map(String)))
      for (const member of group) {
        if (!lacking.has(member.toString())) continue
        const bytes = await blocks.get(member)
        if (bytes === undefined) throw new ContentUnavailableError(`block ${member} of ${cid} is gone from this store`)
        await throttle?.take(bytes.length, signal)
        sender ??= await BlockSender.open(host, to)
        await sender.send({ cid: member, bytes })
        sentBytes += bytes.length
      }
    }
    sender ??= await BlockSender.open(host, to)
    await sender.sendRoot(cid.toString())
    await sender.finish()
    return { sentBytes }
  } catch (err) {
    sender?.abort()
    throw err
  }
}

export interface ContentSources {
  host: GridHost
  local?: Blockstore
  /** Peers that may hold it, asked in order. */
  holders: () => PeerAddress[]
}

/** Verified bytes of `cid` in the range, from this node if it holds them, else from the first holder that does. */
export async function * readContent (sources: ContentSources, cid: CID, range: Range = {}, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  if (sources.local !== undefined && await sources.local.has(cid)) {
    const local = await readLocal(sources.local, cid, range)
    if (local !== undefined) {
      yield * local
      return
    }
  }
  let last: Error | undefined
  for (const holder of sources.holders().filter(h => h.peer !== sources.host.peerId.toString())) {
    let yielded = false
    try {
      for await (const chunk of fetchFrom(sources.host, holder, cid, range, signal)) {
        yielded = true
        yield chunk
      }
      return
    } catch (err: any) {
      // Halfway through, a switch would repeat bytes: fail instead. Before any byte, try the next holder.
      if (yielded) throw err
      last = err
    }
  }
  throw last ?? new ContentUnavailableError(`no peer holds ${cid}`)
}

/** Size and sha256 of `cid`, from this node's blockstore or the first holder that has it. */
export async function contentInfo (sources: ContentSources, cid: CID, signal?: AbortSignal): Promise<{ size: number, sha256: string }> {
  const root = await sources.local?.get(cid)
  if (root !== undefined) return rootInfo(cid, root)
  let last: Error | undefined
  for (const holder of sources.holders().filter(h => h.peer !== sources.host.peerId.toString())) {
    try {
      return await fetchRoot(sources.host, holder, cid, signal)
    } catch (err: any) {
      last = err
    }
  }
  throw last ?? new ContentUnavailableError(`no peer holds ${cid}`)
}

/** The content from this node's own blockstore, or undefined if any block is missing here. */
async function readLocal (blocks: Blockstore, cid: CID, range: Range): Promise<AsyncGenerator<Uint8Array> | undefined> {
  const root = await blocks.get(cid)
  if (root === undefined) return undefined
  const from = range.from ?? 0
  if (!isManifestCid(cid)) {
    const to = Math.min(range.to ?? root.length, root.length)
    return (async function * () { if (from < to) yield root.subarray(from, to) })()
  }
  const manifest = decodeManifest(root)
  const lacking = await blocks.missing(manifest.blocks.map(b => b.cid))
  if (lacking.length > 0) return undefined
  const to = Math.min(range.to ?? manifest.size, manifest.size)
  const { first, last, skip } = blocksFor(manifest, from, to)
  return (async function * () {
    let position = from - skip
    for (let i = first; i >= 0 && i <= last; i++) {
      const bytes = await blocks.get(manifest.blocks[i].cid)
      if (bytes === undefined) throw new ContentUnavailableError(`block ${manifest.blocks[i].cid} of ${cid} went bad here`)
      const start = Math.max(0, from - position)
      const end = Math.min(bytes.length, to - position)
      if (start < end) yield bytes.subarray(start, end)
      position += bytes.length
    }
  })()
}


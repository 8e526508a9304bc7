// Putting and getting content as a client: `grid put`/`grid get`, the HTTP API, workers' artifacts.
// Puts stream through the chunker, ask the store which blocks it lacks a group at a time, and send only those;
// memory stays at PUT_GROUP_BLOCKS blocks whatever the size. Gets try this node's own blockstore, then holders.
import type { CID } from 'multiformats/cid'
import type { GridHost } from '../node/host.ts'
import type { PeerAddress } from '../node/dial.ts'
import type { Blockstore } from './blockstore.ts'
import { Chunker, decodeManifest, isManifestCid, nameContent } from './content.ts'
import type { Block } from './content.ts'
import { askMissing } from './block-missing-protocol.ts'
import { BlockSender } from './block-put-protocol.ts'
import { ContentUnavailableError, blocksFor, fetchFrom, fetchRoot, rootInfo } from './block-get-protocol.ts'
import type { Range } from './block-get-protocol.ts'
import { PUT_GROUP_BLOCKS } from './constants.ts'

export interface PutResult {
  cid: string
  size: number
  sha256: string
  /** Blocks and bytes actually sent: near zero when the store already held the content. */
  sentBlocks: number
  sentBytes: number
}

/** Where a put writes: this node's blockstore, or a store over libp2p. */
export type PutTarget = { local: Blockstore } | { host: GridHost, store: PeerAddress }

export async function putContent (target: PutTarget, source: AsyncIterable<Uint8Array>): Promise<PutResult> {
  const chunker = new Chunker()
  const listed: Array<{ cid: CID, size: number }> = []
  let group: Block[] = []
  let sentBlocks = 0
  let sentBytes = 0
  let sender: BlockSender | undefined

  const flush = async (): Promise<void> => {
    if (group.length === 0) return
    const blocks = group
    group = []
    if ('local' in target) {
      const lacking = new Set((await target.local.missing(blocks.map(b => b.cid))).map(String))
      const fresh = blocks.filter(b => lacking.has(b.cid.toString()))
      await target.local.putMany(fresh)
      sentBlocks += fresh.length
      sentBytes += fresh.reduce((n, b) => n + b.bytes.length, 0)
      return
    }
    const lacking = new Set(await askMissing(target.host, target.store, blocks.map(b => b.cid.toString())))
    for (const block of blocks) {
      if (!lacking.has(block.cid.toString())) continue
      sender ??= await BlockSender.open(target.host, target.store)
      await sender.send(block)
      sentBlocks++
      sentBytes += block.bytes.length
    }
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
    if (named.manifest !== undefined) {
      group.push(named.manifest)
      await flush()
    }
    await sender?.finish()
    return { cid: named.cid.toString(), size, sha256, sentBlocks, sentBytes }
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


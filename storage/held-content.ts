// The content a node holds and serves to the grid: blocks and the roots they make up, in two LevelDBs (an index of
// roots, references and sizes; the block bytes apart, see blockstore.ts), opened and closed in the one order that
// works, with block-get serving them for as long as they are open. A store (artifact-store/) and a worker's cache
// (worker/cache.ts) are each one of these, with their own files, size cap and eviction rule.
import { Level } from 'level'
import type { Startable } from '@libp2p/interface'
import type { GridHost } from '../net/host.ts'
import { Blockstore, openLevel } from './blockstore.ts'
import { RootCatalog } from './root-catalog.ts'

/**
 * The service that serves the blocks: block-get's (protocols/block-get.ts), handed in as a class because protocols/
 * sits above storage/. `read` is told which content a reader asked for: a read counts as use (least used goes first).
 */
export type BlockService = new (components: { host: GridHost, blocks: Blockstore }, init: { read?: (cid: string) => void }) => Startable

export interface HeldContentInit {
  host: GridHost
  /** The index's LevelDB: roots, block references and sizes (a store keeps its logs there too). */
  indexPath: string
  /** The block bytes' LevelDB. */
  blocksPath: string
  /** LevelDB tuning for both. @default LevelDB's own */
  level?: { writeBufferSize?: number, maxFileSize?: number }
  /** Block bytes kept at most: least recently used whole roots are evicted to stay under it. @default no cap */
  maxBytes?: number
  serve: BlockService
}

export class HeldContent {
  /** The index's database, for what else a node keeps beside its content (a store's logs). */
  readonly index: Level<string, string>
  readonly blocks: Blockstore
  readonly roots: RootCatalog
  private readonly blockData: Level<string, Uint8Array>
  private readonly service: Startable

  constructor (init: HeldContentInit) {
    this.index = new Level<string, string>(init.indexPath, { ...init.level })
    this.blockData = new Level<string, Uint8Array>(init.blocksPath, { ...init.level, valueEncoding: 'view' })
    this.blocks = new Blockstore(this.index, this.blockData)
    this.blocks.maxBytes = init.maxBytes
    this.roots = new RootCatalog(this.index, this.blocks)
    this.service = new init.serve({ host: init.host, blocks: this.blocks }, { read: cid => { this.roots.touch(cid) } })
  }

  async start (): Promise<void> {
    await openLevel(this.index)
    await openLevel(this.blockData)
    await this.blocks.bytesHeld()
    await this.roots.open()
    await this.service.start()
  }

  async stop (): Promise<void> {
    try {
      await this.service.stop()
    } finally {
      await this.roots.close()
      await this.blockData.close()
      await this.index.close()
    }
  }
}

// The content a node holds and serves to the grid: blocks and the roots they make up, in a LevelDB (an index of
// roots, references and sizes) and a folder of block files (the bytes, see blockstore.ts and block-files.ts), opened
// and closed in the one order that works, with block-get serving them for as long as they are open. A store (artifact-store/) and a worker's cache
// (worker/cache.ts) are each one of these, with their own files, size cap and eviction rule.
import { access, rm } from 'node:fs/promises'
import { Level } from 'level'
import type { Startable } from '@libp2p/interface'
import type { GridHost } from '../net/host.ts'
import { Blockstore, openLevel } from './blockstore.ts'
import { RootCatalog } from './root-catalog.ts'
import { BlockFiles } from './block-files.ts'
import { MIGRATE_BATCH_BLOCKS } from './constants.ts'

/**
 * The service that serves the blocks: block-get's (protocols/block-get.ts), handed in as a class because protocols/
 * sits above storage/. `read` is told which content a reader asked for: a read counts as use (least used goes first).
 */
export type BlockService = new (components: { host: GridHost, blocks: Blockstore }, init: { read?: (cid: string) => void }) => Startable

export interface HeldContentInit {
  host: GridHost
  /** The index's LevelDB: roots, block references and sizes (a store keeps its logs there too). */
  indexPath: string
  /** The block bytes' folder (block-files.ts). */
  blocksDir: string
  /**
   * Where an earlier version kept the block bytes, in a LevelDB of their own: moved into `blocksDir` on start (the
   * keys are the same), then removed.
   */
  legacyBlocksPath?: string
  /** LevelDB tuning for the index. @default LevelDB's own */
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
  private readonly blockData: BlockFiles
  private readonly legacyBlocksPath: string | undefined
  private readonly service: Startable

  constructor (init: HeldContentInit) {
    this.index = new Level<string, string>(init.indexPath, { ...init.level })
    this.blockData = new BlockFiles(init.blocksDir)
    this.legacyBlocksPath = init.legacyBlocksPath
    this.blocks = new Blockstore(this.index, this.blockData)
    this.blocks.maxBytes = init.maxBytes
    this.roots = new RootCatalog(this.index, this.blocks)
    this.service = new init.serve({ host: init.host, blocks: this.blocks }, { read: cid => { this.roots.touch(cid) } })
  }

  async start (): Promise<void> {
    await openLevel(this.index)
    await this.blockData.open()
    await this.moveLegacyBlocks()
    await this.blocks.bytesHeld()
    await this.roots.open()
    await this.service.start()
  }

  async stop (): Promise<void> {
    try {
      await this.service.stop()
    } finally {
      await this.roots.close()
      await this.index.close()
    }
  }

  /**
   * Block bytes an earlier version kept in a LevelDB: copied to files a batch at a time under the same keys, then the
   * LevelDB removed. A crash halfway copies again on the next start (the same bytes under the same names).
   */
  private async moveLegacyBlocks (): Promise<void> {
    const path = this.legacyBlocksPath
    if (path === undefined || !await access(path).then(() => true, () => false)) return
    const legacy = new Level<string, Uint8Array>(path, { valueEncoding: 'view' })
    await openLevel(legacy)
    try {
      let after: string | undefined
      while (true) {
        const page = await legacy.iterator({ ...(after !== undefined ? { gt: after } : {}), limit: MIGRATE_BATCH_BLOCKS }).all()
        if (page.length === 0) break
        after = page[page.length - 1][0]
        await this.blockData.batch(page.map(([key, value]) => ({ type: 'put' as const, key, value })))
      }
    } finally {
      await legacy.close()
    }
    await rm(path, { recursive: true, force: true })
  }
}

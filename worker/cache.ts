// A worker's own cache of what it made (and fetched): the blocks of its builds' artifacts and inputs, kept in a
// LevelDB blockstore of bounded size and served to any peer of the grid over block-get (storage/held-content.ts,
// as a store does). A downstream build that takes `build:ID/PATH` as input fetches straight from the worker that
// made it (docs/job.md: "from the worker that made it while it is connected, else from the stores"), and stores are not in the path. Least
// recently used content goes first; a cache needs nobody's consent to evict (the stores hold the replicas that count).
import { join } from 'node:path'
import type { GridHost } from '../net/host.ts'
import type { Blockstore } from '../storage/blockstore.ts'
import type { RootCatalog } from '../storage/root-catalog.ts'
import { HeldContent } from '../storage/held-content.ts'
import { BlockGetService } from '../protocols/block-get.ts'
import type { PutTarget } from '../client/content/put.ts'
import { WORKER_CACHE_BYTES } from '../net/constants.ts'

export class WorkerCache {
  readonly blocks: Blockstore
  readonly roots: RootCatalog
  private readonly content: HeldContent

  constructor (host: GridHost, dataDir: string, maxBytes: number = WORKER_CACHE_BYTES) {
    this.content = new HeldContent({
      host,
      indexPath: join(dataDir, 'cache.db'),
      blocksDir: join(dataDir, 'cache-blocks'),
      legacyBlocksPath: join(dataDir, 'cache-blocks.db'),
      maxBytes,
      serve: BlockGetService
    })
    this.blocks = this.content.blocks
    this.roots = this.content.roots
    this.roots.consent = async roots => roots
  }

  /** Where a put writes to keep a copy here. */
  get target (): PutTarget {
    return { local: this.blocks, roots: this.roots, name: 'cache' }
  }

  async start (): Promise<void> {
    await this.content.start()
  }

  async stop (): Promise<void> {
    await this.content.stop()
  }
}

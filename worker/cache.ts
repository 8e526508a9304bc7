// A worker's own cache of what it made (and fetched): the blocks of its builds' artifacts and inputs, kept in a
// LevelDB blockstore of bounded size and served to any peer of the grid over block-get. A downstream build that
// takes `build:ID/PATH` as input fetches straight from the worker that made it (CONTRACT.md: "from the worker
// that made it or any other holder"), and stores are not in the path. Least recently used content goes first;
// a cache needs nobody's consent to evict (the stores hold the replicas that count).
import { join } from 'node:path'
import { Level } from 'level'
import type { GridHost } from '../net/host.ts'
import { Blockstore } from '../storage/blockstore.ts'
import { RootCatalog } from '../storage/root-catalog.ts'
import { BLOCK_GET_PROTOCOL, handleGets } from '../protocols/block-get.ts'
import type { PutTarget } from '../client/content-client.ts'
import { WORKER_CACHE_BYTES } from '../net/constants.ts'

export class WorkerCache {
  readonly blocks: Blockstore
  readonly roots: RootCatalog
  private readonly db: Level<string, string>
  private readonly blockData: Level<string, Uint8Array>
  private readonly host: GridHost

  constructor (host: GridHost, dataDir: string, maxBytes: number = WORKER_CACHE_BYTES) {
    this.host = host
    this.db = new Level<string, string>(join(dataDir, 'cache.db'))
    this.blockData = new Level<string, Uint8Array>(join(dataDir, 'cache-blocks.db'), { valueEncoding: 'view' })
    this.blocks = new Blockstore(this.db, this.blockData)
    this.blocks.maxBytes = maxBytes
    this.roots = new RootCatalog(this.db, this.blocks)
    this.roots.consent = async roots => roots
  }

  /** Where a put writes to keep a copy here. */
  get target (): PutTarget {
    return { local: this.blocks, roots: this.roots, name: 'cache' }
  }

  async start (): Promise<void> {
    await this.db.open()
    await this.blockData.open()
    await this.blocks.bytesHeld()
    await this.roots.open()
    await handleGets(this.host, this.blocks, cid => { this.roots.touch(cid) })
  }

  async stop (): Promise<void> {
    await this.host.unhandle(BLOCK_GET_PROTOCOL).catch(() => {})
    await this.roots.close()
    await this.blockData.close()
    await this.db.close()
  }
}

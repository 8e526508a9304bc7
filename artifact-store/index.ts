// The store role: keeps logs and content blocks durably in LevelDB and serves them to any peer. Content is listed
// by root (root-catalog.ts), which is what the coordinator places, repairs and lets a store evict under `--max-size`.
import { join } from 'node:path'
import type { GridHost } from '../net/host.ts'
import type { PeerId, Startable } from '@libp2p/interface'
import { start, stop } from '@libp2p/interface'
import { GrantVerifier } from '../grid/write-grant.ts'
import { LogStore } from '../storage/log-store.ts'
import type { Blockstore } from '../storage/blockstore.ts'
import type { RootCatalog, RootEntry } from '../storage/root-catalog.ts'
import { HeldContent } from '../storage/held-content.ts'
import { Throttle } from '../storage/throttle.ts'
import { copyContent } from '../client/content/copy.ts'
import { parseCid } from '../grid/content.ts'
import type { PeerAddress } from '../net/dial.ts'
import { BlockMissingService } from '../protocols/block-missing.ts'
import { BlockPutService } from '../protocols/block-put.ts'
import { BlockGetService } from '../protocols/block-get.ts'
import { LogAppendService } from '../protocols/log-append.ts'
import { LogSealer } from '../storage/log-content.ts'
import { LogReadService } from '../protocols/log-read.ts'
import { REPAIR_BYTES_PER_SECOND, STORE_TABLE_FILE_BYTES, STORE_WRITE_BUFFER_BYTES } from '../storage/constants.ts'

export interface StoreInit {
  host: GridHost
  dataDir: string
  /** Whose write grants this store honours: the grid's coordinator. */
  coordinator: PeerId
  /** Size cap for blocks (`--max-size`): least recently used whole roots are evicted to stay under it. */
  maxBytes?: number
  /** Repair copies from this store go no faster. @default REPAIR_BYTES_PER_SECOND */
  repairBytesPerSecond?: number
}

export class Store {
  private readonly init: StoreInit
  /** Its content's blocks and roots, served over block-get; its logs live in the same index database. */
  private readonly content: HeldContent
  readonly logs: LogStore
  readonly blocks: Blockstore
  readonly roots: RootCatalog
  private readonly repairs: Throttle
  /** The protocols this store serves besides block-get (its content's): registered on start, removed on stop. */
  private readonly services: Startable[]

  constructor (init: StoreInit) {
    this.init = init
    this.content = new HeldContent({
      host: init.host,
      indexPath: join(init.dataDir, 'store.db'),
      blocksDir: join(init.dataDir, 'blocks'),
      legacyBlocksPath: join(init.dataDir, 'blocks.db'),
      level: { writeBufferSize: STORE_WRITE_BUFFER_BYTES, maxFileSize: STORE_TABLE_FILE_BYTES },
      maxBytes: init.maxBytes,
      serve: BlockGetService
    })
    this.logs = new LogStore(this.content.index)
    this.blocks = this.content.blocks
    this.roots = this.content.roots
    this.repairs = new Throttle(init.repairBytesPerSecond ?? REPAIR_BYTES_PER_SECOND)
    const { host } = init
    this.services = [
      // A sealed log becomes content here (a root like any artifact), so its CID is fetchable from this store.
      new LogAppendService({ host, logs: this.logs, grants: new GrantVerifier(init.coordinator), sealer: new LogSealer(this.logs, this.blocks, this.roots) }),
      new LogReadService({ host, logs: this.logs }),
      new BlockMissingService({ host, blocks: this.blocks }),
      new BlockPutService({ host, blocks: this.blocks, roots: this.roots })
    ]
  }

  get maxBytes (): number | undefined {
    return this.init.maxBytes
  }

  /**
   * List content this store holds whole (a manifest's CID, or a single block's) as a root: the coordinator then
   * places, repairs and may evict it. For content stored here without a put's root message, such as sealed logs
   * turned into blocks and a manifest. Throws RootIncompleteError if any block is missing.
   */
  async addRoot (cid: string): Promise<RootEntry> {
    return await this.roots.add(parseCid(cid))
  }

  /** Copy a root this store holds to another store (the coordinator's repair), at most REPAIR_BYTES_PER_SECOND. */
  async copyRoot (cid: string, to: PeerAddress, signal?: AbortSignal): Promise<void> {
    await copyContent(this.init.host, this.blocks, parseCid(cid), to, this.repairs, signal)
  }

  async start (): Promise<void> {
    await this.content.start()
    await start(...this.services)
  }

  async stop (): Promise<void> {
    await stop(...this.services)
    await this.content.stop()
  }
}

// The store role: keeps logs and content blocks durably in LevelDB and serves them to any peer. Content is listed
// by root (root-catalog.ts), which is what the coordinator places, repairs and lets a store evict under `--max-size`.
import { join } from 'node:path'
import { Level } from 'level'
import type { GridHost } from '../net/host.ts'
import type { PeerId } from '@libp2p/interface'
import { GrantVerifier } from '../grid/write-grant.ts'
import { LogStore } from '../storage/log-store.ts'
import { Blockstore } from '../storage/blockstore.ts'
import { RootCatalog } from '../storage/root-catalog.ts'
import type { RootEntry } from '../storage/root-catalog.ts'
import { Throttle } from '../storage/throttle.ts'
import { copyContent } from '../client/content-client.ts'
import { parseCid } from '../grid/content.ts'
import type { PeerAddress } from '../net/dial.ts'
import { BLOCK_MISSING_PROTOCOL, handleMissing } from '../protocols/block-missing.ts'
import { BLOCK_PUT_PROTOCOL, handlePuts } from '../protocols/block-put.ts'
import { BLOCK_GET_PROTOCOL, handleGets } from '../protocols/block-get.ts'
import { handleLogAppends, LOG_APPEND_PROTOCOL } from '../protocols/log-append.ts'
import { LogSealer } from '../storage/log-content.ts'
import { handleLogReads, LOG_READ_PROTOCOL } from '../protocols/log-read.ts'
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
  private readonly db: Level<string, string>
  /** Block bytes, in a LevelDB of their own (see blockstore.ts). */
  private readonly blockData: Level<string, Uint8Array>
  readonly logs: LogStore
  readonly blocks: Blockstore
  readonly roots: RootCatalog
  private readonly repairs: Throttle

  constructor (init: StoreInit) {
    this.init = init
    this.db = new Level<string, string>(join(init.dataDir, 'store.db'), { writeBufferSize: STORE_WRITE_BUFFER_BYTES, maxFileSize: STORE_TABLE_FILE_BYTES })
    this.logs = new LogStore(this.db)
    this.blockData = new Level<string, Uint8Array>(join(init.dataDir, 'blocks.db'), { valueEncoding: 'view', writeBufferSize: STORE_WRITE_BUFFER_BYTES, maxFileSize: STORE_TABLE_FILE_BYTES })
    this.blocks = new Blockstore(this.db, this.blockData)
    this.blocks.maxBytes = init.maxBytes
    this.roots = new RootCatalog(this.db, this.blocks)
    this.repairs = new Throttle(init.repairBytesPerSecond ?? REPAIR_BYTES_PER_SECOND)
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
    await this.db.open()
    await this.blockData.open()
    await this.blocks.bytesHeld()
    await this.roots.open()
    // A sealed log becomes content here (a root like any artifact), so its CID is fetchable from this store.
    await handleLogAppends(this.init.host, this.logs, new GrantVerifier(this.init.coordinator), new LogSealer(this.logs, this.blocks, this.roots))
    await handleLogReads(this.init.host, this.logs)
    await handleMissing(this.init.host, this.blocks)
    await handlePuts(this.init.host, this.blocks, this.roots)
    await handleGets(this.init.host, this.blocks, cid => { this.roots.touch(cid) })
  }

  async stop (): Promise<void> {
    await this.init.host.unhandle([LOG_APPEND_PROTOCOL, LOG_READ_PROTOCOL, BLOCK_MISSING_PROTOCOL, BLOCK_PUT_PROTOCOL, BLOCK_GET_PROTOCOL])
    await this.roots.close()
    await this.blockData.close()
    await this.db.close()
  }
}

// The store role: keeps logs (and, as the store grows, blocks) durably in LevelDB and serves them to any peer.
import { join } from 'node:path'
import { Level } from 'level'
import type { GridHost } from '../node/host.ts'
import type { PeerId } from '@libp2p/interface'
import { GrantVerifier } from '../coordinator/write-grant.ts'
import { LogStore } from './log-store.ts'
import { Blockstore } from './blockstore.ts'
import { BLOCK_MISSING_PROTOCOL, handleMissing } from './block-missing-protocol.ts'
import { BLOCK_PUT_PROTOCOL, handlePuts } from './block-put-protocol.ts'
import { BLOCK_GET_PROTOCOL, handleGets } from './block-get-protocol.ts'
import { handleLogAppends, LOG_APPEND_PROTOCOL } from './log-append-protocol.ts'
import { handleLogReads, LOG_READ_PROTOCOL } from './log-read-protocol.ts'

export interface StoreInit {
  host: GridHost
  dataDir: string
  /** Whose write grants this store honours: the grid's coordinator. */
  coordinator: PeerId
}

export class Store {
  private readonly init: StoreInit
  private readonly db: Level<string, string>
  readonly logs: LogStore
  readonly blocks: Blockstore

  constructor (init: StoreInit) {
    this.init = init
    this.db = new Level<string, string>(join(init.dataDir, 'store.db'))
    this.logs = new LogStore(this.db)
    this.blocks = new Blockstore(this.db)
  }

  async start (): Promise<void> {
    await this.db.open()
    await handleLogAppends(this.init.host, this.logs, new GrantVerifier(this.init.coordinator))
    await handleLogReads(this.init.host, this.logs)
    await handleMissing(this.init.host, this.blocks)
    await handlePuts(this.init.host, this.blocks)
    await handleGets(this.init.host, this.blocks)
  }

  async stop (): Promise<void> {
    await this.init.host.unhandle([LOG_APPEND_PROTOCOL, LOG_READ_PROTOCOL, BLOCK_MISSING_PROTOCOL, BLOCK_PUT_PROTOCOL, BLOCK_GET_PROTOCOL])
    await this.db.close()
  }
}

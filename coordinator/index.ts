// The coordinator role: matches queued jobs to workers, keeps build history in LevelDB, tracks the stores.
// It never carries log or artifact bytes: those go worker to store and store to reader.
import { join } from 'node:path'
import type { GridHost } from '../node/host.ts'
import type { PeerAddress } from '../node/dial.ts'
import { LevelBuildHistory } from './history.ts'
import { Scheduler } from './scheduler.ts'
import { StoreDirectory } from './store-directory.ts'
import { WorkSessions } from './work-protocol.ts'
import { StoreMemberships } from './store-membership-protocol.ts'
import { BUILDS_PROTOCOL, handleBuildRequests } from './builds-protocol.ts'

export interface CoordinatorInit {
  host: GridHost
  dataDir: string
  /** A store running in this same process (`grid up`): listed first, without a session. */
  localStore?: PeerAddress
  /** Fences logs on that local store. */
  localFence?: (logs: string[]) => void
  /** Test knobs; production uses the constants. */
  heartbeatMs?: number
  silenceLimitMs?: number
  reclaimWindowMs?: number
  log?: (line: string) => void
}

export class Coordinator {
  readonly scheduler: Scheduler
  readonly stores = new StoreDirectory()
  private readonly init: CoordinatorInit
  private readonly history: LevelBuildHistory
  private readonly sessions: WorkSessions
  private readonly memberships: StoreMemberships

  constructor (init: CoordinatorInit) {
    this.init = init
    this.history = new LevelBuildHistory(join(init.dataDir, 'coordinator.db'))
    this.scheduler = new Scheduler({
      history: this.history,
      stores: () => this.stores.list(),
      fenceLogs: logs => { this.stores.fence(logs) },
      reclaimWindowMs: init.reclaimWindowMs,
      log: init.log
    })
    this.sessions = new WorkSessions({
      host: init.host, scheduler: this.scheduler, heartbeatMs: init.heartbeatMs, silenceLimitMs: init.silenceLimitMs, log: init.log
    })
    this.memberships = new StoreMemberships(init.host, this.stores)
  }

  async start (): Promise<void> {
    await this.history.open()
    if (this.init.localStore !== undefined) this.stores.add(this.init.localStore, this.init.localFence)
    await this.scheduler.start()
    await this.sessions.start()
    await this.memberships.start()
    await handleBuildRequests(this.init.host, this.scheduler, this.stores)
  }

  async stop (): Promise<void> {
    this.scheduler.stop()
    await this.init.host.unhandle(BUILDS_PROTOCOL)
    await this.memberships.stop()
    await this.sessions.stop()
    await this.history.close()
  }
}

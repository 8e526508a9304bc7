// The coordinator role: matches queued jobs to workers, keeps build history in LevelDB, tracks the stores.
// It never carries log or artifact bytes: those go worker to store and store to reader.
import { join } from 'node:path'
import type { GridHost } from '../node/host.ts'
import type { PrivateKey } from '@libp2p/interface'
import type { PeerAddress } from '../node/dial.ts'
import { LevelBuildHistory } from './history.ts'
import { Scheduler } from './scheduler.ts'
import { StoreDirectory } from './store-directory.ts'
import type { StoreControl } from './store-directory.ts'
import type { DenyList } from './deny-list.ts'
import { BadPeerIdError, parsePeerId } from './deny-list.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { WorkSessions } from './work-protocol.ts'
import { StoreMemberships } from './store-membership-protocol.ts'
import { BUILDS_PROTOCOL, handleBuildRequests } from './builds-protocol.ts'

export interface CoordinatorInit {
  host: GridHost
  /** The host's identity key: it signs the write grants stores check. */
  identity: PrivateKey
  dataDir: string
  /** A store running in this same process (`grid up`): listed first, without a session. */
  localStore?: PeerAddress
  /** Controls that local store (fencing logs; its host shares the coordinator's deny list). */
  localControl?: StoreControl
  /** The grid's deny list; its set is the one the host's gater reads. */
  denied: DenyList
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
      host: init.host, scheduler: this.scheduler, identity: init.identity, heartbeatMs: init.heartbeatMs, silenceLimitMs: init.silenceLimitMs, log: init.log
    })
    this.memberships = new StoreMemberships(init.host, this.stores, () => init.denied.list())
  }

  async start (): Promise<void> {
    await this.history.open()
    if (this.init.localStore !== undefined) this.stores.add(this.init.localStore, this.init.localControl)
    await this.scheduler.start()
    await this.sessions.start()
    await this.memberships.start()
    await handleBuildRequests(this.init.host, this.scheduler, this.stores)
  }

  get denied (): string[] {
    return this.init.denied.list()
  }

  /**
   * Shut a peer out now: refused by every node's gate from here on, and every connection it has to this
   * node dropped at once (a worker among them loses its builds, which are re-queued).
   */
  async deny (text: string): Promise<string[]> {
    const peer = parsePeerId(text)
    if (peer === this.init.host.peerId.toString()) throw new BadPeerIdError('the coordinator cannot deny itself')
    await this.init.denied.deny(peer)
    this.stores.deny(this.init.denied.list())
    await this.init.host.hangUp(peerIdFromString(peer)).catch(() => {})
    this.init.log?.(`denied ${peer}`)
    return this.init.denied.list()
  }

  async allow (text: string): Promise<string[]> {
    const peer = parsePeerId(text)
    await this.init.denied.allow(peer)
    this.stores.deny(this.init.denied.list())
    return this.init.denied.list()
  }

  async stop (): Promise<void> {
    this.scheduler.stop()
    await this.init.host.unhandle(BUILDS_PROTOCOL)
    await this.memberships.stop()
    await this.sessions.stop()
    await this.history.close()
  }
}

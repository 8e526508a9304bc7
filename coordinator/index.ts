// The coordinator role: matches queued jobs to workers, keeps build history in LevelDB, tracks the stores.
// It never carries log or artifact bytes: those go worker to store and store to reader.
import { join } from 'node:path'
import type { GridHost } from '../net/host.ts'
import type { PrivateKey } from '@libp2p/interface'
import type { PeerAddress } from '../net/dial.ts'
import { LevelBuildHistory } from './history.ts'
import { Scheduler } from './scheduler.ts'
import { StoreDirectory } from './store-directory.ts'
import type { StoreControl } from './store-directory.ts'
import type { DenyList } from '../grid/deny-list.ts'
import { BadPeerIdError, parsePeerId } from '../grid/deny-list.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { WorkSessions } from './work-sessions.ts'
import { StoreMemberships } from './store-memberships.ts'
import { BuildsService } from './builds-service.ts'
import { StoreContent } from './store-content.ts'
import { DEFAULT_REPLICAS } from '../grid/placement.ts'

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
  /** Stores each piece of content is kept on (`--replicas`). @default DEFAULT_REPLICAS */
  replicas?: number
  log?: (line: string) => void
}

export class Coordinator {
  readonly scheduler: Scheduler
  readonly stores = new StoreDirectory()
  /** Which store holds which content; repair and eviction consent (store-content.ts). */
  readonly content: StoreContent
  readonly replicas: number
  private readonly init: CoordinatorInit
  private readonly history: LevelBuildHistory
  private readonly sessions: WorkSessions
  private readonly memberships: StoreMemberships
  private readonly builds: BuildsService

  constructor (init: CoordinatorInit) {
    this.init = init
    this.replicas = init.replicas ?? DEFAULT_REPLICAS
    this.history = new LevelBuildHistory(join(init.dataDir, 'coordinator.db'))
    this.content = new StoreContent({
      stores: () => this.stores.list(),
      replicas: this.replicas,
      history: this.history,
      copy: async (from, root, to) => {
        const control = this.stores.control(from)
        if (control?.copy === undefined) throw new Error(`store ${from} cannot copy now`)
        await control.copy(root, to)
      },
      drop: (store, roots) => { this.stores.control(store)?.drop?.(roots) },
      log: init.log
    })
    this.scheduler = new Scheduler({
      history: this.history,
      stores: () => this.stores.list(),
      replicas: init.replicas,
      fenceLogs: logs => { this.stores.fence(logs) },
      reclaimWindowMs: init.reclaimWindowMs,
      log: init.log
    })
    this.sessions = new WorkSessions({
      host: init.host, scheduler: this.scheduler, identity: init.identity, heartbeatMs: init.heartbeatMs, silenceLimitMs: init.silenceLimitMs, log: init.log
    })
    this.memberships = new StoreMemberships(init.host, this.stores, () => init.denied.list(), this.content)
    this.builds = new BuildsService({ host: init.host, scheduler: this.scheduler, stores: this.stores }, { replicas: this.replicas })
  }

  async start (): Promise<void> {
    await this.history.open()
    if (this.init.localStore !== undefined) {
      this.stores.add(this.init.localStore, this.init.localControl)
      this.content.joined(this.init.localStore.peer)
    }
    await this.scheduler.start()
    this.stores.onChange(() => { this.scheduler.storesChanged() })
    await this.sessions.start()
    await this.memberships.start()
    await this.builds.start()
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

  /** When the grid's last copy of `cid` was evicted, if it was. */
  async evictedAt (cid: string): Promise<string | undefined> {
    return await this.history.evictedAt(cid)
  }

  async stop (): Promise<void> {
    this.content.stop()
    this.scheduler.stop()
    await this.builds.stop()
    await this.memberships.stop()
    await this.sessions.stop()
    await this.history.close()
  }
}

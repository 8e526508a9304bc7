// The coordinator role: matches queued jobs to workers, keeps build history in LevelDB, tracks the stores.
// It never carries log or artifact bytes: those go worker to store and store to reader.
import { join } from 'node:path'
import type { GridHost } from '../net/host.ts'
import type { PrivateKey } from '@libp2p/interface'
import type { PeerAddress } from '../net/dial.ts'
import { LevelBuildHistory } from './history.ts'
import { Scheduler } from './scheduler.ts'
import type { SecretResolver } from './scheduler.ts'
import type { TrustHolder } from '../grid/trust.ts'
import { StoreDirectory } from './store-directory.ts'
import type { StoreControl } from './store-directory.ts'
import type { DenyList } from '../grid/deny-list.ts'
import { BadPeerIdError, parsePeerId } from '../grid/deny-list.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { WorkSessions } from './work-sessions.ts'
import { StoreMemberships } from './store-memberships.ts'
import { BuildsService } from './builds-service.ts'
import { StoreContent } from './store-content.ts'
import { DEFAULT_REPLICAS, rankFor } from '../grid/placement.ts'
import { parseCid } from '../grid/content.ts'
import type { Blockstore } from '../storage/blockstore.ts'
import { readContent } from '../client/content/read.ts'
import { LevelPipelineHistory } from './pipeline-history.ts'
import { PipelineFileTooLargeError, Pipelines } from './pipelines.ts'
import { Level } from 'level'
import { Repos } from './repos.ts'
import { Poller } from './poller.ts'
import { CommitStatus } from './commit-status.ts'
import { SECRETS_KEY_FILE, secretsKey } from './secret-box.ts'
import { Secrets } from './secrets.ts'
import { Caches } from './caches.ts'
import { ReuseIndex } from './reuse.ts'
import type { ReuseEntry } from './reuse.ts'

/**
 * How long reading one small file (a checkout's `.grid.yml`) from the stores may take: it is at most a few hundred
 * KiB from a store on the grid, so past this a store is stuck; the pipeline retries, then fails saying so.
 */
export const SMALL_READ_TIMEOUT_MS = 30_000

export interface CoordinatorInit {
  host: GridHost
  /** The host's identity key: it signs the write grants stores check. */
  identity: PrivateKey
  dataDir: string
  /** A store running in this same process (`grid up`): listed first, without a session. */
  localStore?: PeerAddress
  /** Controls that local store (fencing logs; its host shares the coordinator's deny list). */
  localControl?: StoreControl
  /** That local store's blocks: content the coordinator reads itself (a checkout's `.grid.yml`) comes from here first. */
  localBlocks?: Blockstore
  /** The grid's deny list; its set is the one the host's gater reads. */
  denied: DenyList
  /**
   * The grid's trust key (DATA/trust), which trusted workers and clients prove they hold; replaced in place by a
   * rotation (then call trustRotated()). Without one, no worker is trusted and every client's build is untrusted.
   */
  trust?: TrustHolder
  /** Jobs' `secrets`: checked at submit, their values given at dispatch to trusted workers. @default NO_SECRETS */
  secrets?: SecretResolver
  /** Test knobs; production uses the constants. */
  heartbeatMs?: number
  silenceLimitMs?: number
  reclaimWindowMs?: number
  /** Stores each piece of content is kept on (`--replicas`). @default DEFAULT_REPLICAS */
  replicas?: number
  /** The web UI's URL once it serves (commit statuses link to the pipeline page); undefined without HTTP. */
  webUrl?: () => string | undefined
  log?: (line: string) => void
}

export class Coordinator {
  readonly scheduler: Scheduler
  readonly stores = new StoreDirectory()
  /** Which store holds which content; repair and eviction consent (store-content.ts). */
  readonly content: StoreContent
  readonly replicas: number
  /** Pipelines from a `.grid.yml` or a commit of a repository (coordinator/pipelines.ts), kept beside the builds. */
  readonly pipelines: Pipelines
  /** The grid's cache index (`cache` of a job; `/api/caches`), sublevel `caches` of the coordinator's database. */
  readonly caches: Caches
  private readonly reuseIndex: ReuseIndex
  /** The grid's secrets (`grid secret set`), values sealed at rest in DATA/secrets.db. Set by start(). */
  secretStore!: Secrets
  /** Registered repositories (`grid repo add`), their webhooks' secrets and status targets sealed at rest. Set by start(). */
  repos!: Repos
  private poller: Poller | undefined
  private statuses: CommitStatus | undefined
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
      // The store is opened by start(), before the scheduler (a reclaimed build may be dispatched at once).
      secrets: init.secrets ?? { check: (names, scope) => this.secretStore.check(names, scope), values: names => this.secretStore.values(names) },
      // Loaded by the scheduler's start(), once the history's database is open. Sealed step logs are roots on the
      // stores as artifacts are, so one check covers both.
      reuse: {
        index: this.reuseIndex = new ReuseIndex({ store: this.history.db.sublevel<string, ReuseEntry>('reuse', { valueEncoding: 'json' }), log: init.log }),
        held: cid => this.content.index.holders(cid).length > 0
      },
      log: init.log
    })
    this.sessions = new WorkSessions({
      host: init.host, scheduler: this.scheduler, identity: init.identity, trust: init.trust, heartbeatMs: init.heartbeatMs, silenceLimitMs: init.silenceLimitMs, log: init.log
    })
    this.memberships = new StoreMemberships(init.host, this.stores, () => init.denied.list(), this.content)
    this.pipelines = new Pipelines({
      scheduler: this.scheduler,
      history: new LevelPipelineHistory(this.history.db),
      readFile: async (cid, maxBytes, signal) => await this.readSmall(cid, maxBytes, signal),
      log: init.log
    })
    this.caches = new Caches({
      db: this.history.db,
      // Gone only once the stores evicted their last copy (kept on disk, so an index still empty just after a restart
      // drops nothing), unless the worker that made it is connected and serves its own copy.
      held: async (cid, entry) => {
        if (await this.history.evictedAt(cid) === undefined) return true
        const maker = (await this.scheduler.get(entry.build))?.attempts.at(-1)?.worker
        return maker !== undefined && this.scheduler.workerAddress(maker) !== undefined
      }
    })
    this.builds = new BuildsService({ host: init.host, scheduler: this.scheduler, stores: this.stores, pipelines: this.pipelines, trust: init.trust, caches: this.caches }, { replicas: this.replicas })
  }

  async start (): Promise<void> {
    await this.history.open()
    await this.caches.open()
    if (this.init.localStore !== undefined) {
      this.stores.add(this.init.localStore, this.init.localControl)
      this.content.joined(this.init.localStore.peer)
    }
    const key = await secretsKey(join(this.init.dataDir, SECRETS_KEY_FILE))
    this.secretStore = new Secrets({ db: new Level<string, any>(join(this.init.dataDir, 'secrets.db')), key })
    await this.secretStore.open()
    await this.scheduler.start()
    await this.pipelines.start()
    this.repos = new Repos({ db: new Level<string, any>(join(this.init.dataDir, 'repos.db')), key })
    await this.repos.open()
    // Statuses first: the first poll's pipelines post their `pending`.
    this.statuses = new CommitStatus({ repos: this.repos, pipelines: this.pipelines, webUrl: () => this.init.webUrl?.(), log: this.init.log ?? (() => {}) })
    this.statuses.start()
    this.poller = new Poller({ repos: this.repos, pipelines: this.pipelines, log: this.init.log ?? (() => {}) })
    await this.poller.start()
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

  /**
   * The trust key in `init.trust` was just replaced: every worker that proved trust with an older key is cut off
   * (its builds are lost and queued again); with only the old code it comes back untrusted. Returns how many.
   */
  trustRotated (): number {
    const current = this.init.trust?.current
    if (current === undefined) return 0
    const cut = this.sessions.cutStaleTrust(current)
    this.init.log?.(`trusted join code rotated: ${cut} worker(s) that proved trust with the old one cut off`)
    return cut
  }

  /** When the grid's last copy of `cid` was evicted, if it was. */
  async evictedAt (cid: string): Promise<string | undefined> {
    return await this.history.evictedAt(cid)
  }

  /**
   * The bytes of content `cid`, at most `maxBytes` (PipelineFileTooLargeError past that): from the local store
   * (`grid up`), else from the grid's stores, the placed ones first.
   */
  private async readSmall (cid: string, maxBytes: number, signal?: AbortSignal): Promise<Uint8Array> {
    const sources = { host: this.init.host, local: this.init.localBlocks, holders: () => rankFor(cid, this.stores.list()) }
    const timeout = AbortSignal.timeout(SMALL_READ_TIMEOUT_MS)
    const chunks: Uint8Array[] = []
    let size = 0
    for await (const chunk of readContent(sources, parseCid(cid), { to: maxBytes + 1 }, signal !== undefined ? AbortSignal.any([signal, timeout]) : timeout)) {
      size += chunk.length
      if (size > maxBytes) throw new PipelineFileTooLargeError(`it is more than ${maxBytes} bytes`)
      chunks.push(chunk)
    }
    return Buffer.concat(chunks)
  }

  async stop (): Promise<void> {
    // The scheduler first, before anything awaits: sessions closing around a stopping coordinator are it going
    // away, not workers being lost (a build lost here would be queued again after a restart, not reclaimed).
    this.scheduler.stop()
    this.content.stop()
    await this.poller?.stop()
    await this.statuses?.stop()
    await this.repos?.close()
    await this.secretStore?.close()
    await this.pipelines.stop()
    await this.builds.stop()
    await this.memberships.stop()
    await this.sessions.stop()
    await this.reuseIndex.flushed()
    await this.caches.close()
    await this.history.close()
  }
}

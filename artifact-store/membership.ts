// A store reports to the coordinator what it holds (all its roots when it joins, then each change), its byte
// totals, and asks before evicting (StoreReporter). A store in the coordinator's own process reports straight to
// it (node/roles.ts); one apart announces itself (and where it listens) over /nameless-grid/store-membership and
// keeps that session alive, reconnecting when it drops (StoreAnnouncement, on net/session.ts): the same reports go
// over it, and the coordinator has the store copy or drop roots and fence logs.
import type { GridHost } from '../net/host.ts'
import type { JoinCode } from '../net/join-code.ts'
import { coordinatorAddress } from '../net/join-code.ts'
import { OutboundSession } from '../net/session.ts'
import type { LoopMessage, OutboundHandler, Send } from '../net/session.ts'
import { HELLO_TIMEOUT_MS } from '../grid/constants.ts'
import type { Store } from './index.ts'
import type { RootEntry } from '../storage/root-catalog.ts'
import { MAX_ROOTS_PER_REPORT, USAGE_REPORT_MS } from '../storage/constants.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import type { DenyList } from '../grid/deny-list.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { STORE_MEMBERSHIP_PROTOCOL, toStore } from '../protocols/store-membership.ts'
import type { CoordinatorToStore, StoreToCoordinator } from '../protocols/store-membership.ts'

/** A list of roots in reports of at most MAX_ROOTS_PER_REPORT. */
function * parts<T> (roots: T[]): Generator<T[]> {
  for (let i = 0; i < roots.length; i += MAX_ROOTS_PER_REPORT) yield roots.slice(i, i + MAX_ROOTS_PER_REPORT)
}

/** A store's byte totals, as it reports them. */
export type StoreUsage = Omit<Extract<StoreToCoordinator, { t: 'usage' }>, 't'>

/** Where a store's reports go: over its membership session, or to the coordinator in the same process. */
export interface StoreReportSink {
  held (roots: RootEntry[]): Promise<void>
  dropped (roots: string[], evicted: boolean): Promise<void>
  usage (usage: StoreUsage): void
  /** Which of these roots may go; none while the coordinator cannot be asked. */
  consent (roots: string[]): Promise<string[]>
}

/**
 * A store's reports for as long as it is started: a summary of every root, then each change; its byte totals
 * when they changed; and the coordinator's consent for each eviction (without it, nothing is evicted).
 */
export class StoreReporter {
  private readonly store: Pick<Store, 'roots' | 'blocks' | 'maxBytes'>
  private readonly sink: StoreReportSink
  private offChange: (() => void) | undefined
  private usageTimer: NodeJS.Timeout | undefined
  private reported = ''

  constructor (store: Pick<Store, 'roots' | 'blocks' | 'maxBytes'>, sink: StoreReportSink) {
    this.store = store
    this.sink = sink
  }

  /** Rejects if the summary could not be sent; stop() undoes whatever was started all the same. */
  async start (): Promise<void> {
    const { roots } = this.store
    // Changes from here on, then the whole list: a root in both is reported twice, which is harmless.
    // A change's reports are all queued at once, so they stay in order with the next change's.
    this.offChange = roots.onChange(change => {
      for (const part of parts(change.held ?? [])) this.sink.held(part).catch(() => {})
      for (const part of parts(change.dropped ?? [])) this.sink.dropped(part, change.evicted === true).catch(() => {})
    })
    for (const part of parts(roots.list())) await this.sink.held(part)
    this.usage()
    this.usageTimer = setInterval(() => { this.usage() }, USAGE_REPORT_MS)
    this.usageTimer.unref()
    roots.consent = async asked => await this.sink.consent(asked)
  }

  stop (): void {
    this.offChange?.()
    this.offChange = undefined
    clearInterval(this.usageTimer)
    this.store.roots.consent = undefined
  }

  private usage (): void {
    const { blocks, roots, maxBytes } = this.store
    const usage = { bytes: blocks.bytes, maxBytes, roots: roots.count, received: blocks.received, served: blocks.served }
    const key = JSON.stringify(usage)
    if (key !== this.reported) this.sink.usage(usage)
    this.reported = key
  }
}

/** What a membership session uses of its store apart. */
interface MembershipComponents {
  host: Pick<GridHost, 'getMultiaddrs' | 'peerId'>
  store: Store
  /** Refuse these peers from now on (the grid's whole deny list). */
  deny: (peers: string[]) => Promise<void>
  log: (line: string) => void
}

/** One membership session of a store apart: its reports go over it, the coordinator's orders come back. */
class MembershipSession implements OutboundHandler<CoordinatorToStore, StoreToCoordinator>, StoreReportSink {
  private readonly components: MembershipComponents
  private readonly send: Send<StoreToCoordinator>
  private readonly reporter: StoreReporter
  /** Eviction consents asked for and not yet answered. */
  private readonly consents = new Map<number, (roots: string[]) => void>()
  private nextConsent = 0

  constructor (components: MembershipComponents, send: Send<StoreToCoordinator>) {
    this.components = components
    this.send = send
    this.reporter = new StoreReporter(components.store, this)
  }

  hello (): StoreToCoordinator {
    const addrs = this.components.host.getMultiaddrs().map(String)
    if (addrs.length === 0) throw new Error('a store must listen somewhere for workers to reach it (give --listen)')
    const { maxBytes } = this.components.store
    return { t: 'hello', addrs, ...(maxBytes !== undefined ? { maxBytes } : {}) }
  }

  /** The deny list comes before the welcome. */
  async beforeWelcome (message: CoordinatorToStore): Promise<boolean> {
    if (message.t !== 'denied') return false
    await this.components.deny(message.peers)
    return true
  }

  async joined (): Promise<void> {
    // Said by the store at each welcome, as a worker says it: the coordinator does not log stores.
    this.components.log(`store ${this.components.host.peerId.toString()} joined the grid`)
    await this.reporter.start()
  }

  async message (message: LoopMessage<CoordinatorToStore>): Promise<void> {
    const { store, deny, log } = this.components
    switch (message.t) {
      case 'fence': await Promise.all(message.logs.map(async id => await store.logs.fence(id))); break
      case 'denied': await deny(message.peers); break
      case 'evict': this.consents.get(message.id)?.(message.roots); break
      case 'drop': store.roots.drop(message.roots).catch(err => { log(`dropping roots failed: ${err.message}`) }); break
      case 'copy': {
        const { id, root, to } = message
        store.copyRoot(root, to).then(
          async () => { await this.send({ t: 'copied', id }) },
          async err => { await this.send({ t: 'copied', id, error: String(err.message).slice(0, 1000) }) }
        ).catch(() => {})
        break
      }
    }
  }

  ended (): void {
    this.reporter.stop()
    for (const resolve of this.consents.values()) resolve([])
  }

  async held (roots: RootEntry[]): Promise<void> {
    await this.send({ t: 'held', roots })
  }

  async dropped (roots: string[], evicted: boolean): Promise<void> {
    await this.send({ t: 'dropped', roots, evicted })
  }

  usage (usage: StoreUsage): void {
    this.send({ t: 'usage', ...usage }).catch(() => {})
  }

  /** Asks the coordinator; an answer that does not come in time, or a session gone, allows nothing. */
  async consent (roots: string[]): Promise<string[]> {
    const id = this.nextConsent++
    const answer = Promise.withResolvers<string[]>()
    this.consents.set(id, answer.resolve)
    const timer = setTimeout(() => answer.resolve([]), REQUEST_TIMEOUT_MS)
    this.send({ t: 'evict?', id, roots }).catch(() => answer.resolve([]))
    try {
      return await answer.promise
    } finally {
      clearTimeout(timer)
      this.consents.delete(id)
    }
  }
}

/** A store apart from the coordinator: its membership session, kept alive. */
export class StoreAnnouncement {
  private readonly host: GridHost
  private readonly denied: DenyList
  private readonly session: OutboundSession<CoordinatorToStore, StoreToCoordinator>

  constructor (host: GridHost, join: JoinCode, store: Store, denied: DenyList, log?: (line: string) => void) {
    this.host = host
    this.denied = denied
    const components: MembershipComponents = { host, store, deny: async peers => { await this.applyDenied(peers) }, log: log ?? (() => {}) }
    this.session = new OutboundSession({
      host,
      target: coordinatorAddress(join),
      protocol: STORE_MEMBERSHIP_PROTOCOL,
      schema: toStore,
      helloTimeoutMs: HELLO_TIMEOUT_MS,
      open: send => new MembershipSession(components, send),
      log
    })
  }

  start (): void {
    this.session.start()
  }

  /** Resolves once the coordinator has welcomed this store the first time. */
  async ready (signal?: AbortSignal): Promise<void> {
    await this.session.ready(signal)
  }

  async stop (): Promise<void> {
    await this.session.stop()
  }

  /** Refuse these peers from now on and drop the connections they have to this store. */
  private async applyDenied (peers: string[]): Promise<void> {
    const fresh = peers.filter(p => !this.denied.peers.has(p))
    this.denied.replace(peers)
    for (const peer of fresh) {
      try {
        await this.host.hangUp(peerIdFromString(peer))
      } catch {}
    }
  }
}

// The coordinator's side of /nameless-grid/store-membership (protocols/store-membership.ts): each store's session
// (net/session.ts keeps its hello, heartbeats and end), its reports (what it holds, how full it is), and what the
// coordinator tells it (fence, deny, copy, drop).
import { InboundSessions } from '../net/session.ts'
import type { LoopMessage, Send, SessionHandler } from '../net/session.ts'
import type { GridHost } from '../net/host.ts'
import type { PeerAddress } from '../net/dial.ts'
import { HEARTBEAT_INTERVAL_MS, HELLO_TIMEOUT_MS, WORKER_SILENCE_LIMIT_MS } from '../grid/constants.ts'
import { STORE_MEMBERSHIP_PROTOCOL, toCoordinator } from '../protocols/store-membership.ts'
import { COPY_TIMEOUT_MS } from '../protocols/constants.ts'
import type { CoordinatorToStore, StoreToCoordinator } from '../protocols/store-membership.ts'
import type { StoreControl, StoreDirectory } from './store-directory.ts'
import type { RootReport, StoreUsage } from './content-index.ts'

/** A store keeps one session; a few let a reconnect overlap the old stream's teardown. */
const MAX_STORE_SESSIONS_PER_CONNECTION = 4

/** What the coordinator does with a store's reports (store-content.ts). */
export interface StoreReports {
  joined (store: string): void
  left (store: string): void
  held (store: string, roots: RootReport[]): void
  dropped (store: string, roots: string[], evicted: boolean): void
  usage (store: string, usage: StoreUsage): void
  consent (store: string, roots: string[]): Promise<string[]>
}

type Hello = Extract<StoreToCoordinator, { t: 'hello' }>

/** One store's session: its place in the directory while it lasts, and the copies it was asked for. */
class StoreSession implements StoreControl, SessionHandler<StoreToCoordinator> {
  private readonly peer: string
  private readonly hello: Hello
  private readonly send: Send<CoordinatorToStore>
  private readonly directory: StoreDirectory
  private readonly reports: StoreReports | undefined
  private readonly copies = new Map<number, { resolve: () => void, reject: (err: Error) => void }>()
  private nextCopy = 0
  private leave: (() => boolean) | undefined

  constructor (peer: string, hello: Hello, send: Send<CoordinatorToStore>, directory: StoreDirectory, reports: StoreReports | undefined) {
    this.peer = peer
    this.hello = hello
    this.send = send
    this.directory = directory
    this.reports = reports
  }

  fence (logs: string[]): void {
    this.send({ t: 'fence', logs }).catch(() => {})
  }

  deny (peers: string[]): void {
    this.send({ t: 'denied', peers }).catch(() => {})
  }

  async copy (root: string, to: PeerAddress): Promise<void> {
    const id = this.nextCopy++
    const done = Promise.withResolvers<void>()
    this.copies.set(id, done)
    const timer = setTimeout(() => done.reject(new Error(`no answer in ${COPY_TIMEOUT_MS} ms`)), COPY_TIMEOUT_MS)
    this.send({ t: 'copy', id, root, to }).catch(err => done.reject(err))
    try {
      await done.promise
    } finally {
      clearTimeout(timer)
      this.copies.delete(id)
    }
  }

  drop (roots: string[]): void {
    this.send({ t: 'drop', roots }).catch(() => {})
  }

  joined (): void {
    this.leave = this.directory.add({ peer: this.peer, addrs: this.hello.addrs }, this)
    if (this.hello.maxBytes !== undefined) this.reports?.usage(this.peer, { bytes: 0, maxBytes: this.hello.maxBytes, roots: 0, received: 0, served: 0 })
    this.reports?.joined(this.peer)
  }

  async message (message: LoopMessage<StoreToCoordinator>): Promise<void> {
    const { peer, reports } = this
    switch (message.t) {
      case 'held': reports?.held(peer, message.roots); break
      case 'dropped': reports?.dropped(peer, message.roots, message.evicted); break
      case 'usage': reports?.usage(peer, { bytes: message.bytes, maxBytes: message.maxBytes, roots: message.roots, received: message.received, served: message.served }); break
      case 'evict?': {
        const allowed = reports !== undefined ? await reports.consent(peer, message.roots) : []
        await this.send({ t: 'evict', id: message.id, roots: allowed })
        break
      }
      case 'copied': {
        const copy = this.copies.get(message.id)
        if (message.error === undefined) copy?.resolve()
        else copy?.reject(new Error(message.error))
        break
      }
    }
  }

  ended (): void {
    for (const copy of this.copies.values()) copy.reject(new Error('the store left'))
    if (this.leave?.() === true) this.reports?.left(this.peer)
  }
}

/** The coordinator's side of store membership: every store's session, started and stopped as one service. */
export class StoreMemberships extends InboundSessions<StoreToCoordinator, CoordinatorToStore> {
  constructor (host: GridHost, directory: StoreDirectory, denied: () => string[], reports?: StoreReports) {
    super({
      host,
      protocol: STORE_MEMBERSHIP_PROTOCOL,
      schema: toCoordinator,
      maxSessionsPerConnection: MAX_STORE_SESSIONS_PER_CONNECTION,
      helloTimeoutMs: HELLO_TIMEOUT_MS,
      heartbeatMs: HEARTBEAT_INTERVAL_MS,
      silenceLimitMs: WORKER_SILENCE_LIMIT_MS,
      open: async (hello, peer, send) => {
        // The deny list before the welcome: a store refuses denied peers before anyone is sent to it.
        await send({ t: 'denied', peers: denied() })
        return new StoreSession(peer, hello, send, directory, reports)
      }
    })
  }
}

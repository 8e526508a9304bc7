// The coordinator's side of /nameless-grid/store-membership (protocols/store-membership.ts): each store's session,
// its heartbeats and reports (what it holds, how full it is), and what the coordinator tells it (fence, deny, copy, drop).
import type { Connection, Stream } from '@libp2p/interface'
import { MessageChannel } from '../net/wire.ts'
import { Heartbeat } from '../net/heartbeat.ts'
import type { GridHost } from '../net/host.ts'
import { HEARTBEAT_INTERVAL_MS, HELLO_TIMEOUT_MS, WORKER_SILENCE_LIMIT_MS } from '../grid/constants.ts'
import { COPY_TIMEOUT_MS, STORE_MEMBERSHIP_PROTOCOL, toCoordinator } from '../protocols/store-membership.ts'
import type { CoordinatorToStore, StoreToCoordinator } from '../protocols/store-membership.ts'
import type { StoreDirectory } from './store-directory.ts'
import type { RootReport, StoreUsage } from './content-index.ts'

/** What the coordinator does with a store's reports (store-content.ts). */
export interface StoreReports {
  joined (store: string): void
  left (store: string): void
  held (store: string, roots: RootReport[]): void
  dropped (store: string, roots: string[], evicted: boolean): void
  usage (store: string, usage: StoreUsage): void
  consent (store: string, roots: string[]): Promise<string[]>
}

export class StoreMemberships {
  private readonly host: GridHost
  private readonly directory: StoreDirectory
  private readonly open = new Set<Stream>()

  private readonly denied: () => string[]
  private readonly reports: StoreReports | undefined

  constructor (host: GridHost, directory: StoreDirectory, denied: () => string[], reports?: StoreReports) {
    this.host = host
    this.directory = directory
    this.denied = denied
    this.reports = reports
  }

  async start (): Promise<void> {
    await this.host.handle(STORE_MEMBERSHIP_PROTOCOL, (stream, connection) => {
      this.serve(stream, connection).catch(() => {})
    }, { maxInboundStreams: 4 })
  }

  async stop (): Promise<void> {
    await this.host.unhandle(STORE_MEMBERSHIP_PROTOCOL)
    for (const stream of this.open) stream.abort(new Error('coordinator stopping'))
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const channel = new MessageChannel<StoreToCoordinator, CoordinatorToStore>(stream, toCoordinator)
    this.open.add(stream)
    let leave: (() => boolean) | undefined
    const peer = connection.remotePeer.toString()
    const copies = new Map<number, { resolve: () => void, reject: (err: Error) => void }>()
    let nextCopy = 0
    const heartbeat = new Heartbeat({
      stream,
      intervalMs: HEARTBEAT_INTERVAL_MS,
      silenceLimitMs: WORKER_SILENCE_LIMIT_MS,
      beat: () => { channel.send({ t: 'beat' }).catch(() => {}) }
    })
    try {
      const hello = await channel.expect({ signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) })
      if (hello.t !== 'hello') throw new Error('a store session starts with hello')
      // The deny list before the welcome: a store refuses denied peers before anyone is sent to it.
      await channel.send({ t: 'denied', peers: this.denied() })
      await channel.send({ t: 'welcome', heartbeatMs: HEARTBEAT_INTERVAL_MS, silenceLimitMs: WORKER_SILENCE_LIMIT_MS })
      leave = this.directory.add({ peer, addrs: hello.addrs }, {
        fence: logs => { channel.send({ t: 'fence', logs }).catch(() => {}) },
        deny: peers => { channel.send({ t: 'denied', peers }).catch(() => {}) },
        copy: async (root, to) => {
          const id = nextCopy++
          const done = Promise.withResolvers<void>()
          copies.set(id, done)
          const timer = setTimeout(() => done.reject(new Error(`no answer in ${COPY_TIMEOUT_MS} ms`)), COPY_TIMEOUT_MS)
          channel.send({ t: 'copy', id, root, to }).catch(err => done.reject(err))
          try {
            await done.promise
          } finally {
            clearTimeout(timer)
            copies.delete(id)
          }
        },
        drop: roots => { channel.send({ t: 'drop', roots }).catch(() => {}) }
      })
      if (hello.maxBytes !== undefined) this.reports?.usage(peer, { bytes: 0, maxBytes: hello.maxBytes, roots: 0, received: 0, served: 0 })
      this.reports?.joined(peer)
      for await (const message of channel) {
        heartbeat.heard()
        if (message.t === 'hello') throw new Error('hello twice')
        else if (message.t === 'held') this.reports?.held(peer, message.roots)
        else if (message.t === 'dropped') this.reports?.dropped(peer, message.roots, message.evicted)
        else if (message.t === 'usage') this.reports?.usage(peer, { bytes: message.bytes, maxBytes: message.maxBytes, roots: message.roots, received: message.received, served: message.served })
        else if (message.t === 'evict?') {
          const allowed = this.reports !== undefined ? await this.reports.consent(peer, message.roots) : []
          await channel.send({ t: 'evict', id: message.id, roots: allowed })
        } else if (message.t === 'copied') {
          const copy = copies.get(message.id)
          if (message.error === undefined) copy?.resolve()
          else copy?.reject(new Error(message.error))
        }
      }
    } catch (err: any) {
      stream.abort(err)
    } finally {
      heartbeat.stop()
      this.open.delete(stream)
      for (const copy of copies.values()) copy.reject(new Error('the store left'))
      if (leave?.() === true) this.reports?.left(peer)
    }
  }
}

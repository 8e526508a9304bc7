// /nameless-grid/store-membership: a store node tells the coordinator it exists and where it listens,
// and keeps the session open with heartbeats; when the session ends the store leaves the directory.
// Over the same session the store reports the roots it holds (a summary on joining, then each one held or
// dropped), its byte totals, and asks which old roots it may evict; the coordinator has it copy roots to other
// stores (repair) and drop copies it is no longer placed for.
import { z } from 'zod'
import type { Stream } from '@libp2p/interface'
import type { Connection } from '@libp2p/interface'
import { MessageChannel } from '../net/wire.ts'
import { Heartbeat } from '../net/heartbeat.ts'
import type { GridHost } from '../net/host.ts'
import { HEARTBEAT_INTERVAL_MS, HELLO_TIMEOUT_MS, WORKER_SILENCE_LIMIT_MS } from '../grid/constants.ts'
import type { StoreDirectory } from '../coordinator/store-directory.ts'
import type { RootReport, StoreUsage } from '../coordinator/content-index.ts'
import { EVICTION_BATCH_ROOTS, MAX_ROOTS_PER_REPORT } from '../artifact-store/constants.ts'
import { ID_PATTERN } from '../grid/build.ts'

export const STORE_MEMBERSHIP_PROTOCOL = '/nameless-grid/store-membership/1.0.0'

/** A CIDv1 as the grid writes it (base32); parsed properly where it is used. */
const cidText = z.string().regex(/^b[a-z2-7]{20,120}$/)
const bytes = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
const peerAddress = z.object({ peer: z.string().max(200), addrs: z.array(z.string().max(1024)).max(64) })
/** A copy of a large root at the repair rate can take long; past this it is taken as failed and tried again. */
const COPY_TIMEOUT_MS = 30 * 60_000

export const toCoordinator = z.discriminatedUnion('t', [
  z.object({ t: z.literal('hello'), addrs: z.array(z.string().max(1024)).min(1).max(64), maxBytes: bytes.optional() }),
  z.object({ t: z.literal('beat') }),
  /** Roots the store holds whole (its summary on joining comes as several of these). */
  z.object({ t: z.literal('held'), roots: z.array(z.object({ cid: cidText, size: bytes, bytes })).max(MAX_ROOTS_PER_REPORT) }),
  /** Roots the store no longer holds; `evicted` if it let them go for room. */
  z.object({ t: z.literal('dropped'), roots: z.array(cidText).max(MAX_ROOTS_PER_REPORT), evicted: z.boolean() }),
  z.object({ t: z.literal('usage'), bytes, maxBytes: bytes.optional(), roots: bytes, received: bytes, served: bytes }),
  /** Which of these (oldest first) may I evict? */
  z.object({ t: z.literal('evict?'), id: z.number().int().min(0), roots: z.array(cidText).max(EVICTION_BATCH_ROOTS) }),
  /** The copy `id` asked for is done (or failed, with why). */
  z.object({ t: z.literal('copied'), id: z.number().int().min(0), error: z.string().max(1000).optional() })
])
export type StoreToCoordinator = z.infer<typeof toCoordinator>

/** Logs fenced per message; a lost worker held at most its slots' worth of steps. */
const MAX_FENCED_LOGS = 10_000
/** Denied peers sent in one message. */
const MAX_DENIED = 100_000

export const toStore = z.discriminatedUnion('t', [
  /** These logs' attempts are over: seal them where they stand. */
  z.object({ t: z.literal('fence'), logs: z.array(z.string().regex(ID_PATTERN)).max(MAX_FENCED_LOGS) }),
  /** The grid's whole deny list: the store refuses and drops these peers. */
  z.object({ t: z.literal('denied'), peers: z.array(z.string().max(200)).max(MAX_DENIED) }),
  z.object({ t: z.literal('welcome'), heartbeatMs: z.number().int().min(100).max(60_000), silenceLimitMs: z.number().int().min(500).max(600_000) }),
  z.object({ t: z.literal('beat') }),
  /** The answer to `evict?`: these may go. */
  z.object({ t: z.literal('evict'), id: z.number().int().min(0), roots: z.array(cidText).max(EVICTION_BATCH_ROOTS) }),
  /** Repair: copy this root to that store, then answer `copied`. */
  z.object({ t: z.literal('copy'), id: z.number().int().min(0), root: cidText, to: peerAddress }),
  /** These roots are on their placed stores and no longer placed here: drop them. */
  z.object({ t: z.literal('drop'), roots: z.array(cidText).max(MAX_ROOTS_PER_REPORT) })
])
export type CoordinatorToStore = z.infer<typeof toStore>

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

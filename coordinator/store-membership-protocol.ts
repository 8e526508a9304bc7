// /nameless-grid/store-membership: a store node tells the coordinator it exists and where it listens,
// and keeps the session open with heartbeats; when the session ends the store leaves the directory.
import { z } from 'zod'
import type { Stream } from '@libp2p/interface'
import type { Connection } from '@libp2p/interface'
import { MessageChannel } from '../node/wire.ts'
import { Heartbeat } from '../node/heartbeat.ts'
import type { GridHost } from '../node/host.ts'
import { HEARTBEAT_INTERVAL_MS, HELLO_TIMEOUT_MS, WORKER_SILENCE_LIMIT_MS } from './constants.ts'
import type { StoreDirectory } from './store-directory.ts'
import { ID_PATTERN } from './build.ts'

export const STORE_MEMBERSHIP_PROTOCOL = '/nameless-grid/store-membership/1.0.0'

export const toCoordinator = z.discriminatedUnion('t', [
  z.object({ t: z.literal('hello'), addrs: z.array(z.string().max(1024)).min(1).max(64) }),
  z.object({ t: z.literal('beat') })
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
  z.object({ t: z.literal('beat') })
])
export type CoordinatorToStore = z.infer<typeof toStore>

export class StoreMemberships {
  private readonly host: GridHost
  private readonly directory: StoreDirectory
  private readonly open = new Set<Stream>()

  private readonly denied: () => string[]

  constructor (host: GridHost, directory: StoreDirectory, denied: () => string[]) {
    this.host = host
    this.directory = directory
    this.denied = denied
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
    let leave: (() => void) | undefined
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
      leave = this.directory.add({ peer: connection.remotePeer.toString(), addrs: hello.addrs }, {
        fence: logs => { channel.send({ t: 'fence', logs }).catch(() => {}) },
        deny: peers => { channel.send({ t: 'denied', peers }).catch(() => {}) }
      })
      for await (const message of channel) {
        heartbeat.heard()
        if (message.t === 'hello') throw new Error('hello twice')
      }
    } catch (err: any) {
      stream.abort(err)
    } finally {
      heartbeat.stop()
      this.open.delete(stream)
      leave?.()
    }
  }
}

// The coordinator's side of /nameless-grid/work (protocols/work.ts): one session per worker, its heartbeats, and
// every message handed to the scheduler. A worker that goes silent past the limit is lost (Buildbot can take an hour).
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import { MessageChannel } from '../net/wire.ts'
import { Heartbeat } from '../net/heartbeat.ts'
import type { GridHost } from '../net/host.ts'
import { HEARTBEAT_INTERVAL_MS, HELLO_TIMEOUT_MS, WORKER_SILENCE_LIMIT_MS } from '../grid/constants.ts'
import type { Capabilities } from '../grid/build.ts'
import { issueGrant } from '../grid/write-grant.ts'
import { MAX_SESSIONS_PER_CONNECTION, WORK_PROTOCOL, toCoordinator } from '../protocols/work.ts'
import type { ToCoordinator, ToWorker } from '../protocols/work.ts'
import type { Assignment, Scheduler, WorkerLink } from './scheduler.ts'

/** One worker's session, as the scheduler sees it. */
class WorkSession implements WorkerLink {
  readonly worker: string
  readonly capabilities: Capabilities
  readonly slots: number
  readonly addrs: string[]
  private readonly channel: MessageChannel<ToCoordinator, ToWorker>
  private readonly coordinatorKey: PrivateKey
  /** Messages leave in the order they were made, even when one (an assignment) waits for its signature. */
  private outbox: Promise<void> = Promise.resolve()

  constructor (worker: string, hello: Extract<ToCoordinator, { t: 'hello' }>, channel: MessageChannel<ToCoordinator, ToWorker>, coordinatorKey: PrivateKey) {
    this.worker = worker
    this.capabilities = hello.capabilities
    this.slots = hello.slots
    this.addrs = hello.addrs
    this.channel = channel
    this.coordinatorKey = coordinatorKey
  }

  assign (a: Assignment): void {
    const grant = issueGrant(this.coordinatorKey, a.attempt, this.worker)
    this.send(async () => ({ t: 'assign', attempt: a.attempt, build: a.build, job: a.job, logs: a.logs, stores: a.stores, replicas: a.replicas, grant: await grant }))
  }

  cancel (attempt: string, reason: 'cancelled' | 'stale', why?: string): void {
    this.send(() => ({ t: 'cancel', attempt, reason, ...(why !== undefined ? { why } : {}) }))
  }

  beat (): void {
    this.send(() => ({ t: 'beat' }))
  }

  welcome (heartbeatMs: number, silenceLimitMs: number): void {
    this.send(() => ({ t: 'welcome', heartbeatMs, silenceLimitMs }))
  }

  private send (make: () => ToWorker | Promise<ToWorker>): void {
    // A failed send means the stream is gone; the read loop sees that and ends the session.
    this.outbox = this.outbox.then(async () => { await this.channel.send(await make()) }).catch(() => {})
  }
}

export interface WorkSessionsInit {
  host: GridHost
  scheduler: Scheduler
  /** Signs write grants; the coordinator's own identity key. */
  identity: PrivateKey
  /** @default HEARTBEAT_INTERVAL_MS */
  heartbeatMs?: number
  /** @default WORKER_SILENCE_LIMIT_MS */
  silenceLimitMs?: number
  log?: (line: string) => void
}

/** The coordinator's side of the work protocol. */
export class WorkSessions {
  private readonly init: WorkSessionsInit
  private readonly open = new Set<Stream>()

  constructor (init: WorkSessionsInit) {
    this.init = init
  }

  async start (): Promise<void> {
    await this.init.host.handle(WORK_PROTOCOL, (stream, connection) => {
      this.serve(stream, connection).catch(() => {})
    }, { maxInboundStreams: MAX_SESSIONS_PER_CONNECTION })
  }

  async stop (): Promise<void> {
    await this.init.host.unhandle(WORK_PROTOCOL)
    for (const stream of this.open) stream.abort(new Error('coordinator stopping'))
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const { scheduler } = this.init
    const heartbeatMs = this.init.heartbeatMs ?? HEARTBEAT_INTERVAL_MS
    const silenceLimitMs = this.init.silenceLimitMs ?? WORKER_SILENCE_LIMIT_MS
    const channel = new MessageChannel<ToCoordinator, ToWorker>(stream, toCoordinator)
    this.open.add(stream)
    let session: WorkSession | undefined
    /** Why the session ended, for the lost attempts' records. */
    let ended = 'its worker disconnected (the connection closed)'
    const heartbeat = new Heartbeat({
      stream,
      intervalMs: heartbeatMs,
      silenceLimitMs,
      beat: () => session?.beat(),
      onSilence: ms => {
        ended = `its worker sent no heartbeat for ${(ms / 1000).toFixed(1)} s (frozen or cut off)`
        this.init.log?.(`worker ${connection.remotePeer.toString()} silent for ${ms} ms: lost`)
      }
    })
    try {
      const hello = await channel.expect({ signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) })
      if (hello.t !== 'hello') throw new Error('a session starts with hello')
      heartbeat.heard()
      session = new WorkSession(connection.remotePeer.toString(), hello, channel, this.init.identity)
      session.welcome(heartbeatMs, silenceLimitMs)
      scheduler.workerJoined(session, hello.running)
      for await (const message of channel) {
        heartbeat.heard()
        switch (message.t) {
          case 'beat': break
          case 'drain': scheduler.workerDraining(session); break
          case 'step-started': scheduler.stepStarted(session, message.attempt, message.step); break
          case 'step': scheduler.stepFinished(session, message.attempt, message.step, message.exitCode, message.logCid); break
          case 'done': scheduler.attemptFinished(session, message.attempt, message.outcome, message.artifacts, { error: message.error, warnings: message.warnings }); break
          case 'hello': throw new Error('hello twice')
        }
      }
    } catch (err: any) {
      if (!stream.status.startsWith('abort') && stream.status !== 'reset') stream.abort(err)
    } finally {
      heartbeat.stop()
      this.open.delete(stream)
      if (session !== undefined) scheduler.workerLeft(session, ended)
    }
  }
}

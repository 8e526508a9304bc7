// The coordinator's side of /nameless-grid/work (protocols/work.ts): one session per worker (net/session.ts keeps
// its hello, heartbeats and end), every message handed to the scheduler. A worker that goes silent past the limit
// is lost, and its attempts record why (Buildbot can take an hour to notice).
import type { PrivateKey } from '@libp2p/interface'
import { InboundSessions } from '../net/session.ts'
import type { LoopMessage, Send, SessionEnd, SessionHandler } from '../net/session.ts'
import type { GridHost } from '../net/host.ts'
import { HEARTBEAT_INTERVAL_MS, HELLO_TIMEOUT_MS, WORKER_SILENCE_LIMIT_MS } from '../grid/constants.ts'
import type { Capabilities } from '../grid/build.ts'
import { issueGrant } from '../grid/write-grant.ts'
import { WORK_PROTOCOL, toCoordinator } from '../protocols/work.ts'
import { MAX_SESSIONS_PER_CONNECTION } from '../protocols/constants.ts'
import type { ToCoordinator, ToWorker } from '../protocols/work.ts'
import type { Assignment, Scheduler, WorkerLink } from './scheduler.ts'

type Hello = Extract<ToCoordinator, { t: 'hello' }>

/** One worker's session, as the scheduler sees it. */
class WorkSession implements WorkerLink, SessionHandler<ToCoordinator> {
  readonly worker: string
  readonly capabilities: Capabilities
  readonly slots: number
  readonly addrs: string[]
  private readonly claims: string[]
  private readonly post: Send<ToWorker>
  private readonly scheduler: Scheduler
  private readonly coordinatorKey: PrivateKey
  private readonly log: ((line: string) => void) | undefined
  /** Messages leave in the order they were made, even when one (an assignment) waits for its signature. */
  private outbox: Promise<void> = Promise.resolve()

  constructor (worker: string, hello: Hello, send: Send<ToWorker>, init: WorkSessionsInit) {
    this.worker = worker
    this.capabilities = hello.capabilities
    this.slots = hello.slots
    this.addrs = hello.addrs
    this.claims = hello.running
    this.post = send
    this.scheduler = init.scheduler
    this.coordinatorKey = init.identity
    this.log = init.log
  }

  assign (a: Assignment): void {
    const grant = issueGrant(this.coordinatorKey, a.attempt, this.worker)
    this.send(async () => ({ t: 'assign', attempt: a.attempt, build: a.build, job: a.job, logs: a.logs, stores: a.stores, replicas: a.replicas, grant: await grant }))
  }

  cancel (attempt: string, reason: 'cancelled' | 'stale', why?: string): void {
    this.send(() => ({ t: 'cancel', attempt, reason, ...(why !== undefined ? { why } : {}) }))
  }

  joined (): void {
    this.scheduler.workerJoined(this, this.claims)
  }

  message (message: LoopMessage<ToCoordinator>): void {
    switch (message.t) {
      case 'drain': this.scheduler.workerDraining(this); break
      case 'step-started': this.scheduler.stepStarted(this, message.attempt, message.step); break
      case 'step': this.scheduler.stepFinished(this, message.attempt, message.step, message.exitCode, message.logCid); break
      case 'done': this.scheduler.attemptFinished(this, message.attempt, message.outcome, message.artifacts, { error: message.error, warnings: message.warnings }); break
    }
  }

  ended (end: SessionEnd): void {
    if (end.cause === 'silent') this.log?.(`worker ${this.worker} ${end.reason}: lost`)
    // The lost attempts' records say why: "its worker sent no heartbeat for 5.0 s (frozen or cut off)".
    this.scheduler.workerLeft(this, `its worker ${end.reason}`)
  }

  private send (make: () => ToWorker | Promise<ToWorker>): void {
    // A failed send means the stream is gone; the session's loop sees that and ends it.
    this.outbox = this.outbox.then(async () => { await this.post(await make()) }).catch(() => {})
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

/** The coordinator's side of the work protocol: every worker's session, started and stopped as one service. */
export class WorkSessions extends InboundSessions<ToCoordinator, ToWorker> {
  constructor (init: WorkSessionsInit) {
    super({
      host: init.host,
      protocol: WORK_PROTOCOL,
      schema: toCoordinator,
      maxSessionsPerConnection: MAX_SESSIONS_PER_CONNECTION,
      helloTimeoutMs: HELLO_TIMEOUT_MS,
      heartbeatMs: init.heartbeatMs ?? HEARTBEAT_INTERVAL_MS,
      silenceLimitMs: init.silenceLimitMs ?? WORKER_SILENCE_LIMIT_MS,
      open: (hello, peer, send) => new WorkSession(peer, hello, send, init)
    })
  }
}

// The coordinator's side of /nameless-grid/work (protocols/work.ts): one session per worker (net/session.ts keeps
// its hello, heartbeats and end), every message handed to the scheduler. A worker that goes silent past the limit
// is lost, and its attempts record why (Buildbot can take an hour to notice).
import type { PrivateKey } from '@libp2p/interface'
import { InboundSessions } from '../net/session.ts'
import type { InboundHandler, LoopMessage, Send, SessionEnd } from '../net/session.ts'
import { GridError } from '../net/errors.ts'
import type { GridHost } from '../net/host.ts'
import { HEARTBEAT_INTERVAL_MS, HELLO_TIMEOUT_MS, WORKER_SILENCE_LIMIT_MS } from '../grid/constants.ts'
import type { Capabilities } from '../grid/build.ts'
import { issueGrant } from '../grid/write-grant.ts'
import { verifyTrust } from '../grid/trust.ts'
import type { TrustHolder, TrustVerdict } from '../grid/trust.ts'
import { WORK_PROTOCOL, toCoordinator } from '../protocols/work.ts'
import { MAX_SESSIONS_PER_CONNECTION } from '../protocols/constants.ts'
import type { ToCoordinator, ToWorker } from '../protocols/work.ts'
import type { Assignment, Scheduler, WorkerLink } from './scheduler.ts'

type Hello = Extract<ToCoordinator, { t: 'hello' }>

/** A worker's session that proved trust with a trust key rotated away before it was welcomed: it must dial again. */
class TrustRotatedError extends GridError {
  name = 'TrustRotatedError'
  readonly status = 409
}

/** Why the attempts of a worker cut by a rotation of the trusted join code were lost. */
const ROTATED = 'was cut off: the trusted join code it joined with was rotated'

/** One worker's session, as the scheduler sees it. */
class WorkSession implements WorkerLink, InboundHandler<ToCoordinator> {
  readonly worker: string
  readonly capabilities: Capabilities
  readonly slots: number
  readonly addrs: string[]
  /** Proved in its hello with the trust key current then (never claimed: a `trusted` capability is only a capability). */
  readonly trusted: boolean
  /** The key its proof was checked against, so a rotation knows whom to cut. */
  readonly trustKey: Uint8Array | undefined
  /** Told to the worker in its welcome. */
  readonly welcome: { trust: TrustVerdict }
  /** Set when the session is ended on purpose, for the record of its lost attempts. */
  cutReason: string | undefined
  private readonly trustHolder: TrustHolder | undefined
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
    this.trustHolder = init.trust
    this.trustKey = init.trust?.current
    const verdict = this.trustKey === undefined ? 'untrusted' : verifyTrust(this.trustKey, hello.trust, worker, init.host.peerId.toString())
    this.trusted = verdict === 'trusted'
    this.welcome = { trust: verdict }
    if (verdict === 'stale') init.log?.(`worker ${worker} sent a trust proof that is not current (its trusted join code was rotated away, or it is forged): it joins untrusted`)
    this.claims = hello.running
    this.post = send
    this.scheduler = init.scheduler
    this.coordinatorKey = init.identity
    this.log = init.log
  }

  assign (a: Assignment): void {
    const grant = issueGrant(this.coordinatorKey, a.attempt, this.worker)
    // The scheduler gives secrets only to a trusted link; this is the last place that could check it again.
    const secrets = a.secrets !== undefined && this.trusted ? { secrets: a.secrets } : {}
    this.send(async () => ({ t: 'assign', attempt: a.attempt, build: a.build, job: a.job, logs: a.logs, stores: a.stores, replicas: a.replicas, grant: await grant, ...secrets, ...(a.env !== undefined ? { env: a.env } : {}) }))
  }

  cancel (attempt: string, reason: 'cancelled' | 'stale', why?: string): void {
    this.send(() => ({ t: 'cancel', attempt, reason, ...(why !== undefined ? { why } : {}) }))
  }

  joined (): void {
    // Rotated between the check of its proof and its welcome: it dials again and proves (or not) with the new key.
    if (this.trusted && this.trustKey !== this.trustHolder?.current) throw new TrustRotatedError('the trusted join code was rotated while this worker joined')
    this.scheduler.workerJoined(this, this.claims)
  }

  message (message: LoopMessage<ToCoordinator>): void {
    switch (message.t) {
      case 'drain': this.scheduler.workerDraining(this); break
      case 'step-started': this.scheduler.stepStarted(this, message.attempt, message.step); break
      case 'step': this.scheduler.stepFinished(this, message.attempt, message.step, message.exitCode, message.logCid); break
      case 'done': this.scheduler.attemptFinished(this, message.attempt, message.outcome, message.artifacts, { error: message.error, warnings: message.warnings, caches: message.caches }); break
    }
  }

  ended (end: SessionEnd): void {
    if (end.cause === 'silent') this.log?.(`worker ${this.worker} ${end.reason}: lost`)
    // The lost attempts' records say why: "its worker sent no heartbeat for 5.0 s (frozen or cut off)".
    this.scheduler.workerLeft(this, `its worker ${this.cutReason ?? end.reason}`)
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
  /** The grid's trust key, which a trusted worker's hello proves it holds; without one no worker is trusted. */
  trust?: TrustHolder
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

  /**
   * After the trust key was replaced: end the session of every worker that proved trust with another key. Its
   * attempts are lost (and queued again); it may dial again, and with only the old code it joins untrusted.
   * Returns how many were cut.
   */
  cutStaleTrust (current: Uint8Array): number {
    return this.endSessions(handler => {
      const session = handler as WorkSession
      if (!session.trusted || session.trustKey === current) return false
      session.cutReason = ROTATED
      return true
    }, 'trusted join code rotated')
  }
}

// The worker role: a keypair plus capabilities. It dials the coordinator (nothing dials a worker, so one
// behind NAT works), says what it can do and how many slots it has, and runs the attempts it is handed.
import { mkdirSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { GridHost } from '../net/host.ts'
import { shareableAddrs } from '../net/host.ts'
import type { WorkerCache } from './cache.ts'
import type { JoinCode } from '../net/join-code.ts'
import { coordinatorAddress } from '../net/join-code.ts'
import { OutboundSession } from '../net/session.ts'
import type { OutboundHandler, Send } from '../net/session.ts'
import { MAX_PENDING_REPORTS, REPORT_RESEND_WINDOW_MS } from '../net/constants.ts'
import { WORK_PROTOCOL, toWorker } from '../protocols/work.ts'
import type { ToCoordinator, ToWorker } from '../protocols/work.ts'
import { HELLO_TIMEOUT_MS } from '../grid/constants.ts'
import type { CacheRecord, Capabilities } from '../grid/build.ts'
import { MAX_BUILD_CACHES } from '../grid/build.ts'
import { trustProof } from '../grid/trust.ts'
import type { TrustHolder, TrustVerdict } from '../grid/trust.ts'
import { hostEnvironment } from './capabilities.ts'
import { LogWriter } from './log-writer.ts'
import { placeFor } from '../grid/placement.ts'
import { DEFAULT_LOG_LIMIT_BYTES } from '../grid/constants.ts'
import { DEFAULT_KILL_GRACE_S } from '../grid/constants.ts'
import { AppendStreams } from './append-streams.ts'
import { runStep } from './step-runner.ts'
import { StepLauncher } from './step-launcher.ts'
import { collect, prepare } from './workspace.ts'
import type { Artifact } from './workspace.ts'
import { resolveCaches, restoreCaches, saveCaches } from './build-caches.ts'
import type { ResolvedCache } from './build-caches.ts'

type Assign = Extract<ToWorker, { t: 'assign' }>
type StopReason = 'cancelled' | 'stale' | 'timeout' | 'stopping'

export interface WorkerInit {
  host: GridHost
  join: JoinCode
  /**
   * The grid's trust key, from a trusted join code (or shared with the coordinator in its own process, so a rotation
   * is followed): the worker proves it holds it each time it joins, and is then given builds with secrets.
   */
  trust?: TrustHolder
  capabilities: Capabilities
  slots: number
  /** Work dirs live under `DATA/work/ATTEMPT`. */
  dataDir: string
  /** Where it keeps and serves what it made and fetched (see cache.ts); none for a worker that keeps nothing. */
  cache?: WorkerCache
  log?: (line: string) => void
  /**
   * Whether `log` says so each time the coordinator welcomes it (`worker X joined the grid with N slot(s)`).
   * `grid up`'s workers do not: the coordinator in their process says it, in the same words, for every worker.
   * @default true
   */
  announce?: boolean
}

interface Running {
  stop: AbortController
  /** Why it is being stopped, in the words the step's log gets (`grid: cancelled by an API client: …`). */
  why?: string
}


/** The sentence a step's log gets when the step is stopped for `reason`, unless the coordinator said more. */
function stopSentence (reason: StopReason, timeoutS: number): string {
  switch (reason) {
    case 'cancelled': return 'cancelled'
    case 'timeout': return `the build ran past its timeout of ${timeoutS} s`
    case 'stale': return 'the coordinator no longer counts this attempt (it was lost and queued again)'
    case 'stopping': return 'the worker is stopping'
  }
}

/** A step whose log is written but not yet sealed: the last one run keeps it open for the artifacts' lines. */
interface OpenStep {
  index: number
  exitCode: number
  writer: LogWriter
}

export class Worker {
  private readonly init: WorkerInit
  private readonly running = new Map<string, Running>()
  /** Every attempt in progress, until its steps are gone and its work dir removed. */
  private readonly attempts = new Set<Promise<void>>()
  /** Reports waiting for a session; a final result must reach the coordinator even across a reconnect. */
  private pending: ToCoordinator[] = []
  /** Attempt reports handed to the transport lately, oldest first: resent after a reconnect (see open()). */
  private sent: Array<{ message: ToCoordinator, at: number }> = []
  /** Sends on the welcomed session, while there is one. */
  private post: Send<ToCoordinator> | undefined
  /** What the coordinator's last welcome said of this worker's trust proof. */
  private trust: TrustVerdict | undefined
  private stopped = false
  private draining = false
  private idle: Array<() => void> = []
  private readonly session: OutboundSession<ToWorker, ToCoordinator>
  private readonly appendStreams: AppendStreams

  constructor (init: WorkerInit) {
    this.init = init
    this.appendStreams = new AppendStreams(init.host)
    this.session = new OutboundSession({
      host: init.host,
      target: coordinatorAddress(init.join),
      protocol: WORK_PROTOCOL,
      schema: toWorker,
      helloTimeoutMs: HELLO_TIMEOUT_MS,
      open: send => this.open(send),
      log: init.log
    })
  }

  get peerId (): string {
    return this.init.host.peerId.toString()
  }

  async start (): Promise<void> {
    await mkdir(join(this.init.dataDir, 'work'), { recursive: true })
    // Its helper process starts now, not on the way to the first step.
    StepLauncher.shared().warm()
    this.session.start()
  }

  /** Resolves once the coordinator has welcomed this worker the first time. */
  async ready (signal?: AbortSignal): Promise<void> {
    await this.session.ready(signal)
  }

  /**
   * Graceful shutdown: tell the coordinator to send nothing new, let running builds finish, then leave.
   * Resolves once they finished, or when `signal` aborts (a second SIGTERM, a drain timeout); whatever still
   * runs then is ended by stop() and comes back to the queue as lost.
   */
  async drain (signal?: AbortSignal): Promise<void> {
    this.draining = true
    if (this.post !== undefined) this.report({ t: 'drain' })
    if (this.running.size > 0) {
      this.init.log?.(`draining: waiting for ${this.running.size} build(s) to finish`)
      await new Promise<void>(resolve => {
        this.idle.push(resolve)
        signal?.addEventListener('abort', () => resolve(), { once: true })
      })
    }
    await this.stop()
  }

  /**
   * Stop now: running steps are stopped (SIGTERM, SIGKILL after their kill grace) and swept before this resolves,
   * so nothing a build started outlives the worker; their attempts come back to the queue as lost.
   */
  async stop (): Promise<void> {
    this.stopped = true
    for (const run of this.running.values()) run.stop.abort('stopping')
    await Promise.all(this.attempts)
    const stopping = this.session.stop()
    this.appendStreams.closeAll()
    await stopping
  }

  /**
   * A session with the coordinator is starting. Its hello claims what still runs and what finished while the
   * coordinator was away (that result is waiting to be sent). Reports sent lately may have gone into a connection
   * that was already dead (a coordinator that vanished without a reset is noticed only after the silence limit):
   * those attempts are claimed too, and their reports resent once welcomed.
   */
  private open (send: Send<ToCoordinator>): OutboundHandler<ToWorker, ToCoordinator> {
    this.pruneSent()
    const resend = this.sent.map(s => s.message)
    return {
      hello: () => {
        const claims = new Set([...this.running.keys(), ...[...resend, ...this.pending].flatMap(r => 'attempt' in r ? [r.attempt] : [])])
        const key = this.init.trust?.current
        return {
          t: 'hello',
          capabilities: this.init.capabilities,
          slots: this.init.slots,
          running: [...claims],
          addrs: this.init.cache !== undefined ? shareableAddrs(this.init.host).map(String) : [],
          ...(key !== undefined ? { trust: trustProof(key, this.peerId, this.init.join.coordinator.toString()) } : {})
        }
      },
      welcomed: welcome => {
        if (welcome.t !== 'welcome') return
        // Said once each time it becomes so, not at every reconnect.
        if (welcome.trust === 'stale' && this.trust !== 'stale') this.init.log?.('this worker\'s trusted join code is not current: it joined untrusted')
        this.trust = welcome.trust
      },
      joined: () => {
        this.post = send
        if (this.init.announce !== false) this.init.log?.(`worker ${this.peerId} joined the grid with ${this.init.slots} slot(s)`)
        if (this.draining) this.report({ t: 'drain' })
        // Resent reports are idempotent: the coordinator ignores what it already has (a finished attempt's result).
        this.sent = []
        for (const report of [...resend, ...this.pending.splice(0)]) this.report(report)
      },
      message: message => {
        if (message.t === 'assign') {
          const attempt = this.runAttempt(message).catch(err => this.init.log?.(`attempt ${message.attempt}: ${err.message}`))
          this.attempts.add(attempt)
          attempt.finally(() => this.attempts.delete(attempt)).catch(() => {})
        } else if (message.t === 'cancel') {
          const run = this.running.get(message.attempt)
          if (run !== undefined && !run.stop.signal.aborted) {
            run.why = message.why
            run.stop.abort(message.reason)
          }
        }
      },
      ended: () => {
        if (this.post === send) this.post = undefined
      }
    }
  }

  private report (message: ToCoordinator): void {
    const post = this.post
    if (post === undefined) {
      if (this.pending.length < MAX_PENDING_REPORTS || message.t === 'done') this.pending.push(message)
      return
    }
    if ('attempt' in message) this.sent.push({ message, at: Date.now() })
    this.pruneSent()
    post(message).catch(() => {
      this.pending.push(message)
    })
  }

  /** Forget reports sent longer ago than a dead connection takes to notice: by then they were delivered. */
  private pruneSent (): void {
    const horizon = Date.now() - REPORT_RESEND_WINDOW_MS
    while (this.sent.length > 0 && (this.sent[0].at < horizon || this.sent.length > MAX_PENDING_REPORTS)) this.sent.shift()
  }

  /**
   * A step's log, written to the stores placeFor names for it (the same ones its readers try first); `mask`: the
   * attempt's secret values, replaced by `***` before a byte leaves the worker.
   */
  private logWriter (assign: Assign, step: number, mask: string[]): LogWriter {
    const log = assign.logs[step]
    return new LogWriter({
      streams: this.appendStreams,
      log,
      grant: assign.grant,
      stores: placeFor(log, assign.stores, assign.replicas),
      limit: assign.job.logLimit ?? DEFAULT_LOG_LIMIT_BYTES,
      report: this.init.log,
      mask
    })
  }

  /** Seal a step's log and report its CID (the exit code went out when the step ended). */
  private async sealStep (assign: Assign, step: OpenStep): Promise<void> {
    const sealed = await step.writer.seal().catch(err => { this.init.log?.(`log of ${assign.attempt} step ${step.index}: ${err.message}`) })
    if (sealed?.cid !== undefined) this.report({ t: 'step', attempt: assign.attempt, step: step.index, exitCode: step.exitCode, logCid: sealed.cid })
  }

  /** Put a setup failure in the first step's log and report that step as never run (exit code -1). */
  private async failSetup (assign: Assign, reason: string, mask: string[]): Promise<void> {
    this.report({ t: 'step-started', attempt: assign.attempt, step: 0 })
    const writer = this.logWriter(assign, 0, mask)
    writer.note(`grid: ${reason}\n`)
    const sealed = await writer.seal().catch(() => undefined)
    this.report({ t: 'step', attempt: assign.attempt, step: 0, exitCode: -1, logCid: sealed?.cid })
  }

  private async runAttempt (assign: Assign): Promise<void> {
    // The secrets live in this call's locals only (the steps' environment, the logs' masks) and are gone with it:
    // the message keeps no copy, and nothing of an assignment is written to disk or logged.
    const secrets = assign.secrets ?? {}
    delete assign.secrets
    const mask = Object.values(secrets)
    if (this.running.has(assign.attempt)) return
    const stop = new AbortController()
    const run: Running = { stop }
    this.running.set(assign.attempt, run)
    const workDir = join(this.init.dataDir, 'work', assign.attempt)
    const deadline = setTimeout(() => stop.abort('timeout'), assign.job.timeout * 1000)
    const killGraceMs = (assign.job.killGrace ?? DEFAULT_KILL_GRACE_S) * 1000
    /** Fenced or the worker going away: the coordinator sealed (or will seal) the logs where they stood. */
    const fenced = (): boolean => stop.signal.reason === 'stale' || stop.signal.reason === 'stopping'
    let outcome: 'succeeded' | 'failed' | StopReason = 'succeeded'
    let artifacts: Artifact[] = []
    let warnings: string[] = []
    let error: string | undefined
    let open: OpenStep | undefined
    let caches: ResolvedCache[] = []
    /** What the caches did, for the build record (sent with the result). */
    const cacheRecords: CacheRecord[] = []
    const record = (outcome: CacheRecord): void => { cacheRecords.push(outcome) }
    try {
      // Fresh every time; a leftover from a crashed run of the same attempt is cleared first. One mkdir is made in
      // place: through the thread pool it waited behind other work, on the way to every build's first step.
      try {
        mkdirSync(workDir)
      } catch (err: any) {
        if (err.code !== 'EEXIST') throw err
        await rm(workDir, { recursive: true, force: true })
        await mkdir(workDir)
      }
      const env = {
        ...hostEnvironment(),
        ...assign.job.env,
        // A secret wins over the job's env of the same name; the grid's own names win over both.
        ...secrets,
        ...assign.env,
        GRID_BUILD_ID: assign.build,
        GRID_ATTEMPT: assign.attempt
      }
      const workspace = { host: this.init.host, join: this.init.join, workDir, stores: assign.stores, replicas: assign.replicas, cache: this.init.cache, signal: stop.signal }
      try {
        await prepare(workspace, assign.job.src, assign.job.inputs ?? {})
        // Keys are filled in over the tree the steps will see (hashFiles of a lock file from src or an input).
        caches = await resolveCaches(assign.job, { workDir, capabilities: this.init.capabilities })
      } catch (err: any) {
        // Nothing ran: say why in the first step's log, where the user looks, and in the record.
        error = err.message
        await this.failSetup(assign, err.message, mask)
        throw err
      }
      // Restored before the first step; what it says goes at the top of the first step's log.
      const preface: string[] = []
      if (caches.length > 0) await restoreCaches({ workspace, attempt: assign.attempt, note: line => { preface.push(`grid: ${line}\n`) }, record }, caches)
      for (const [index, step] of assign.job.steps.entries()) {
        if (stop.signal.aborted) break
        this.report({ t: 'step-started', attempt: assign.attempt, step: index })
        const writer = this.logWriter(assign, index, mask)
        for (const line of preface.splice(0)) writer.note(line)
        const exitCode = await runStep({
          run: step.run,
          cwd: workDir,
          env: { ...env, GRID_STEP: step.name },
          output: writer,
          signal: stop.signal,
          killGraceMs,
          stopping: () => run.why ?? stopSentence(stop.signal.reason as StopReason, assign.job.timeout),
          note: line => { writer.note(`grid: ${line}\n`) }
        })
        if (fenced()) {
          writer.abort()
          this.report({ t: 'step', attempt: assign.attempt, step: index, exitCode })
          break
        }
        // The exit code goes out now; the log's CID follows once it is sealed (the last step's log stays open for
        // what keeping the artifacts has to say).
        this.report({ t: 'step', attempt: assign.attempt, step: index, exitCode })
        open = { index, exitCode, writer }
        if (exitCode !== 0) {
          outcome = 'failed'
          break
        }
        if (index < assign.job.steps.length - 1 && !stop.signal.aborted) {
          await this.sealStep(assign, open)
          open = undefined
        }
      }
      // Caches are saved before the artifacts are kept (both after a failure, a cache only with `save: always`), not after a stop.
      if (!stop.signal.aborted && caches.length > 0) {
        await saveCaches({ workspace, attempt: assign.attempt, note: line => { open?.writer.note(`grid: ${line}\n`) }, record }, caches, outcome === 'succeeded')
      }
      // Artifacts are kept after a failure too (a test report is most wanted then), not after a stop.
      if (!stop.signal.aborted) {
        const note = (line: string): void => { open?.writer.note(`grid: ${line}\n`) }
        try {
          ({ artifacts, warnings } = await collect(workspace, assign.job.artifacts ?? [], note))
        } catch (err: any) {
          error = err.message
          // What was kept before the stores gave out is recorded all the same (a WorkspaceError carries it).
          artifacts = err.kept ?? []
          warnings = err.warnings ?? []
          note(err.message)
          throw err
        }
      }
    } catch (err: any) {
      this.init.log?.(`attempt ${assign.attempt} could not run: ${err.message}`)
      outcome = 'failed'
      error ??= `the worker could not run the build: ${err.message}`
    } finally {
      clearTimeout(deadline)
      if (stop.signal.aborted) outcome = stop.signal.reason as StopReason
      if (open !== undefined) {
        if (fenced()) open.writer.abort()
        else await this.sealStep(assign, open)
      }
      this.running.delete(assign.attempt)
    }
    // A fenced attempt reports nothing: the coordinator has moved on. A stopping worker's builds end lost.
    // The result goes out before the work dir is removed: the next build need not wait for the cleanup.
    if (outcome !== 'stale' && outcome !== 'stopping') {
      this.report({
        t: 'done', attempt: assign.attempt, outcome, artifacts, warnings,
        ...(error !== undefined && outcome === 'failed' ? { error } : {}),
        ...(cacheRecords.length > 0 ? { caches: cacheRecords.slice(0, MAX_BUILD_CACHES) } : {})
      })
    }
    await rm(workDir, { recursive: true, force: true }).catch(() => {})
    if (this.running.size === 0) for (const resolve of this.idle.splice(0)) resolve()
  }
}

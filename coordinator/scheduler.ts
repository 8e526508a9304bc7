// The coordinator's state machine: the queue, the connected workers, and every attempt's life.
// It never touches a stream: workers reach it through the narrow WorkerLink, storage through BuildHistory,
// so it is tested alone with a memory history and stub links.
import type { ArtifactRecord, Attempt, AttemptOutcome, Build, BuildSource, BuildStatus, CacheRecord, Capabilities } from '../grid/build.ts'
import { CACHE_OUTCOMES, FINISHED, MAX_BUILD_CACHES, MAX_CACHE_RECORD_KEY_CHARS, MAX_CACHE_WHY_CHARS } from '../grid/build.ts'
import { attemptId, logId, newBuildId } from '../grid/ids.ts'
import type { BuildHistory } from './history.ts'
import type { Job } from '../grid/job.ts'
import { InvalidJobError, inputBuilds, satisfies, unmetRequirement } from '../grid/job.ts'
import { CANCEL_SEAL_MARGIN_MS, MAX_ASSIGNED_SECRET_BYTES, RECLAIM_WINDOW_MS, TIMEOUT_GRACE_MS } from '../grid/constants.ts'
import { DEFAULT_REPLICAS } from '../grid/placement.ts'
import { GridError, isGridError } from '../net/errors.ts'
import type { PeerAddress } from '../net/dial.ts'
import { actionKey } from './reuse.ts'
import type { Reuse, ReuseEntry } from './reuse.ts'
import { parseArtifactRef } from '../grid/ids.ts'

export interface Assignment {
  attempt: string
  build: string
  job: Job
  logs: string[]
  /** Where the worker pushes logs and artifacts. */
  stores: PeerAddress[]
  /** How many of `stores` each log and artifact goes to (placed by grid/placement.ts). */
  replicas: number
  /**
   * The values of the job's `secrets`, by name, for a trusted worker only. Never kept: not in the build, its
   * history, an event or a log line; the link sends it and forgets it.
   */
  secrets?: Record<string, string>
  /**
   * Environment variables the grid sets for a pipeline's build (GRID_PIPELINE_ID, GRID_JOB, GRID_COMMIT, GRID_REF,
   * GRID_BRANCH), beside GRID_BUILD_ID: kept out of the job, so a job's record (and its reuse) does not change per commit.
   */
  env?: Record<string, string>
}

/** What the scheduler needs of a connected worker's session. */
export interface WorkerLink {
  readonly worker: string
  readonly capabilities: Capabilities
  readonly slots: number
  /** Where the worker serves the outputs it keeps (its cache); empty when it does not listen. */
  readonly addrs?: string[]
  /**
   * Whether the worker proved, when it joined, that it holds the trusted join code (grid/trust.ts): only a trusted
   * worker gets builds with secrets, and never a build from a member without that code. Absent: not trusted.
   */
  readonly trusted?: boolean
  assign (assignment: Assignment): void
  /**
   * Tell the worker to stop an attempt: the user cancelled it, or it is no longer current (fenced). `why` is the
   * sentence the worker writes into the step's log.
   */
  cancel (attempt: string, reason: 'cancelled' | 'stale', why?: string): void
}

export interface CapacityGroup {
  capabilities: Capabilities
  nodes: number
  /** How many of `nodes` are trusted workers. */
  trusted: number
  slots: number
  busy: number
}

/**
 * Where the scheduler learns about secrets (the grid's secret store implements it). Values are asked for only at
 * the moment a build is handed to a trusted worker, and go nowhere but into that assignment.
 */
export interface SecretResolver {
  /**
   * Undefined when every name exists and the build's scope may use it, else the one sentence why not:
   * `secret NAME is not available to this build (scope: repos X, branches main)`.
   */
  check (names: string[], scope: BuildSource): string | undefined
  /** The values, for an assignment to a trusted worker; throws if one is gone. */
  values (names: string[]): Record<string, string>
}

/** The resolver of a coordinator that keeps no secrets: every name is unknown. */
export const NO_SECRETS: SecretResolver = {
  check: names => names.length === 0 ? undefined : `secret ${names[0]} is not available to this build (this grid keeps no secret of that name)`,
  values: names => {
    if (names.length > 0) throw new SecretUnavailableError(`secret ${names[0]} is not available to this build (this grid keeps no secret of that name)`)
    return {}
  }
}

/** A build's secret cannot be given to it (out of scope, gone, too large to send): the build fails saying so. */
export class SecretUnavailableError extends GridError {
  name = 'SecretUnavailableError'
  readonly status = 409
}

export interface Capacity {
  nodes: number
  slots: number
  busy: number
  queued: number
  groups: CapacityGroup[]
}

export class UnknownBuildError extends GridError {
  name = 'UnknownBuildError'
  readonly status = 404
}

export class BuildFinishedError extends GridError {
  name = 'BuildFinishedError'
  readonly status = 409
}

interface Seat {
  link: WorkerLink
  running: Set<string>
  /** Finishing what it runs, then leaving: it takes nothing new. */
  draining: boolean
}

interface Running {
  build: Build
  seat: Seat | undefined
}

export interface SchedulerInit {
  history: BuildHistory
  /** Where workers push output; asked at each assignment so store changes take effect at once. */
  stores: () => PeerAddress[]
  /** Stores each piece of output is kept on. @default DEFAULT_REPLICAS */
  replicas?: number
  /** Seal an attempt's logs on the stores once its worker is lost, so a stale worker cannot append. */
  fenceLogs?: (logs: string[]) => void
  /** @default RECLAIM_WINDOW_MS */
  reclaimWindowMs?: number
  /** How long past a cancelled attempt's kill grace its logs are sealed from here if its worker has not. @default CANCEL_SEAL_MARGIN_MS */
  cancelSealMarginMs?: number
  /** Checks jobs' `secrets` and gives their values at dispatch. @default NO_SECRETS */
  secrets?: SecretResolver
  /**
   * Jobs' `reuse: true` (coordinator/reuse.ts): the index of succeeded builds by action key (loaded by start()) and
   * whether the grid still holds a CID. Absent: no build is ever reused, every build runs.
   */
  reuse?: Reuse
  log?: (line: string) => void
}

/** Why a build from a member without the trusted join code waits while only trusted workers could take it. */
export const ONLY_TRUSTED_CONNECTED = 'only trusted workers are connected, and this build came from a member without the trusted join code'
export const ONLY_TRUSTED_CAPABLE = 'only trusted workers can run it, and this build came from a member without the trusted join code'
/** Why a build with secrets waits: none of the workers that could take it is trusted. */
export const NO_TRUSTED_WORKER = 'no trusted worker can run it'

type Listener<T> = (value: T) => void

/** Why a queued build waits while the grid has no store. */
export const NO_STORE = 'no store has joined the grid yet: logs and artifacts need one'

export class Scheduler {
  private readonly history: BuildHistory
  private readonly stores: () => PeerAddress[]
  private readonly replicas: number
  private readonly fenceLogs: (logs: string[]) => void
  private readonly reclaimWindowMs: number
  private readonly cancelSealMarginMs: number
  private readonly secrets: SecretResolver
  private readonly reuse: Reuse | undefined
  private readonly log: (line: string) => void
  /** Builds not yet finished, by id; finished ones live only in history. */
  private readonly live = new Map<string, Build>()
  /** Queued build ids, oldest first. */
  private queue: string[] = []
  private readonly seats = new Set<Seat>()
  /** Current attempts by attempt id. */
  private readonly attempts = new Map<string, Running>()
  private readonly buildListeners = new Set<Listener<Build>>()
  private readonly capacityListeners = new Set<Listener<Capacity>>()
  private reclaimTimer: NodeJS.Timeout | undefined
  /** Once stopping, sessions closing around us are the coordinator going away, not workers being lost. */
  private stopped = false
  private readonly timeouts = new Map<string, NodeJS.Timeout>()
  /** Seals for cancelled attempts whose worker may never answer (see cancel()). */
  private readonly seals = new Set<NodeJS.Timeout>()
  /**
   * Attempts cancelled while their worker was connected, until it reports their end or their logs are sealed
   * from here: the step it stopped still reports its exit code and log CID, so the record says how it ended.
   */
  private readonly winding = new Map<string, { build: Build, link: WorkerLink }>()
  /**
   * Queued builds waiting for `build:` inputs, by the build they wait for. Such a build is not dispatched and
   * holds no slot: given a slot while its input's build still queued behind it, it would deadlock the grid.
   */
  private readonly dependents = new Map<string, Set<string>>()
  /**
   * The artifacts a queued build gets from the builds it runs after (job `after` with artifacts), by work-dir path:
   * `build:ID/PATH` inputs added to its assignment, filled as each of those builds succeeds.
   */
  private readonly placed = new Map<string, Map<string, Record<string, string>>>()
  /**
   * For a queued build with `reuse: true`: the artifacts (path → CID) of each finished input or `after` build, by
   * that build's id, so its action key is computed in the synchronous dispatch loop without reading history.
   */
  private readonly inputCids = new Map<string, Map<string, Record<string, string>>>()
  /** The action key of each build with `reuse: true` that was handed to a worker: recorded if it succeeds. */
  private readonly actionKeys = new Map<string, string>()

  constructor (init: SchedulerInit) {
    this.history = init.history
    this.stores = init.stores
    this.replicas = init.replicas ?? DEFAULT_REPLICAS
    this.fenceLogs = init.fenceLogs ?? (() => {})
    this.reclaimWindowMs = init.reclaimWindowMs ?? RECLAIM_WINDOW_MS
    this.cancelSealMarginMs = init.cancelSealMarginMs ?? CANCEL_SEAL_MARGIN_MS
    this.secrets = init.secrets ?? NO_SECRETS
    this.reuse = init.reuse
    this.log = init.log ?? (() => {})
  }

  /** Reload the queue and running builds from history after a restart. */
  async start (): Promise<void> {
    // The index first: a queued build reloaded below may be decided at once.
    await this.reuse?.index.load()
    const active = await this.history.active()
    active.sort((a, b) => a.id < b.id ? -1 : 1)
    for (const build of active) this.live.set(build.id, build)
    for (const build of active) {
      if (build.status === 'queued') {
        await this.awaitInputs(build)
        if (build.status === 'queued') this.enqueue(build)
      } else {
        // Its worker may still be running it: give it a window to come back and claim the attempt.
        const current = build.attempts.at(-1)
        if (current !== undefined) this.attempts.set(current.id, { build, seat: undefined })
      }
    }
    if (this.attempts.size > 0) {
      this.reclaimTimer = setTimeout(() => {
        for (const [id, running] of this.attempts) {
          if (running.seat === undefined) this.endAttempt(running.build, id, 'lost', `its worker did not reconnect within ${Math.round(this.reclaimWindowMs / 1000)} s of a coordinator restart`)
        }
        this.dispatch()
      }, this.reclaimWindowMs)
    }
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.reclaimTimer)
    for (const timer of [...this.timeouts.values(), ...this.seals]) clearTimeout(timer)
    this.timeouts.clear()
    this.seals.clear()
  }

  onBuild (listener: Listener<Build>): () => void {
    this.buildListeners.add(listener)
    return () => this.buildListeners.delete(listener)
  }

  onCapacity (listener: Listener<Capacity>): () => void {
    this.capacityListeners.add(listener)
    return () => this.capacityListeners.delete(listener)
  }

  /**
   * Queue a build. Throws InvalidJobError when a `build:` input or an `after` entry names a build the grid never
   * had. A build whose input builds (or `after` builds) have not succeeded yet waits (not dispatched, holding no
   * slot); one whose input build already failed, or succeeded without that artifact, ends `failed` at once with a
   * reason naming it, and one whose `after` build did not succeed ends `skipped`. `meta` ties it to a pipeline
   * (`source`: its repository and ref, which secrets' scopes are checked against) and says whether it came from a
   * member without the trusted join code (`untrusted`: it never runs on a trusted worker). A build naming a secret
   * it may not have (out of scope, unknown, or untrusted) ends `failed` at once, saying which and why.
   */
  async submit (job: Job, meta: { pipeline?: string, jobName?: string, source?: BuildSource, untrusted?: boolean, context?: { commit?: string, ref?: string } } = {}): Promise<Build> {
    for (const [path, ref] of Object.entries(inputBuilds(job))) {
      if (!this.live.has(ref.build) && await this.history.get(ref.build) === undefined) {
        throw new InvalidJobError(`inputs.${path}: there is no build ${ref.build}`)
      }
    }
    for (const [i, after] of (job.after ?? []).entries()) {
      if (!this.live.has(after.build) && await this.history.get(after.build) === undefined) {
        throw new InvalidJobError(`after.${i}.build: there is no build ${after.build}`)
      }
    }
    const build: Build = {
      id: newBuildId(),
      status: 'queued',
      job,
      ...(meta.pipeline !== undefined ? { pipeline: meta.pipeline } : {}),
      ...(meta.jobName !== undefined ? { jobName: meta.jobName } : {}),
      ...(meta.source !== undefined ? { source: { ...meta.source } } : {}),
      ...(meta.context !== undefined && (meta.context.commit !== undefined || meta.context.ref !== undefined) ? { context: { ...meta.context } } : {}),
      ...(meta.untrusted === true ? { untrusted: true as const } : {}),
      created: new Date().toISOString(),
      attempts: [],
      steps: [],
      artifacts: []
    }
    this.live.set(build.id, build)
    const refused = this.secretsRefused(build)
    if (refused !== undefined) this.finish(build, 'failed', refused)
    // Inputs first: a build whose input build already failed must not reach a worker in between.
    else await this.awaitInputs(build)
    if (build.status === 'queued') this.enqueue(build)
    // Handed to an idle worker before the history write completes, not after: the write (one batch with the
    // attempt's, under load) still lands before the submit is answered, so an acknowledged build survives a restart.
    const saved = this.history.save(build)
    this.notify(build, true)
    this.dispatch()
    await saved
    return build
  }

  async get (id: string): Promise<Build | undefined> {
    return this.live.get(id) ?? await this.history.get(id)
  }

  async list (limit: number): Promise<Build[]> {
    const builds = await this.history.list(limit)
    return builds.map(b => this.live.get(b.id) ?? b)
  }

  /** Cancel a queued or running build. `by` names who asked, for the record and the log ("an API client"). */
  async cancel (id: string, by: string = 'an API client'): Promise<Build> {
    const build = await this.get(id)
    if (build === undefined) throw new UnknownBuildError(`no build ${id}`)
    if (FINISHED.has(build.status)) throw new BuildFinishedError(`build ${id} already ${build.status}`)
    if (build.status === 'queued') {
      this.queue = this.queue.filter(q => q !== id)
      this.finish(build, 'cancelled', `cancelled by ${by} while queued`)
    } else {
      const current = build.attempts.at(-1)
      if (current !== undefined) {
        const seat = this.attempts.get(current.id)?.seat
        const why = `cancelled by ${by}`
        seat?.link.cancel(current.id, 'cancelled', why)
        // Every way an attempt ends seals its logs, or `grid tail` and `?follow=1` would wait forever. A connected
        // worker seals them itself, with its last lines; one that is away (say in the reclaim window after a
        // restart) never will, and one that does not answer within its kill grace is sealed from here.
        if (seat === undefined) this.fenceLogs(current.logs)
        else {
          this.winding.set(current.id, { build, link: seat.link })
          this.sealLater(current.logs, (build.job.killGrace ?? 0) * 1000 + this.cancelSealMarginMs, current.id)
        }
        this.endAttempt(build, current.id, 'cancelled', seat === undefined ? `${why} while its worker was away` : why)
      }
      // Its slot is free now.
      this.dispatch()
    }
    return build
  }

  /** A worker opened a session. `claims` are attempts it is still running from before (a reconnect). */
  workerJoined (link: WorkerLink, claims: string[] = []): void {
    const seat: Seat = { link, running: new Set(), draining: false }
    this.seats.add(seat)
    for (const claim of claims) {
      const running = this.attempts.get(claim)
      const attempt = running?.build.attempts.at(-1)
      if (running !== undefined && attempt?.id === claim && attempt.worker === link.worker) {
        running.seat?.running.delete(claim)
        running.seat = seat
        seat.running.add(claim)
        // Reclaimed after a coordinator restart: the timeout backstop was not armed in this process yet.
        if (!this.timeouts.has(claim)) this.armTimeout(running.build, claim)
      } else {
        // Not current any more (lost and re-queued, or cancelled): the worker must stop it.
        link.cancel(claim, 'stale')
      }
    }
    // After a coordinator restart, an attempt its worker came back without is gone with that worker's last process
    // (`grid up` restarts its workers with it): lost now, not at the end of the reclaim window.
    for (const [id, running] of this.attempts) {
      if (running.seat !== undefined || claims.includes(id) || running.build.attempts.at(-1)?.worker !== link.worker) continue
      this.endAttempt(running.build, id, 'lost', 'its worker came back after a coordinator restart without it (the worker restarted too)')
    }
    this.log(`worker ${link.worker} joined the grid with ${link.slots} slot(s)`)
    this.capacityChanged()
    this.dispatch()
  }

  /** The worker is shutting down gracefully: it finishes its builds but gets no new ones. */
  workerDraining (link: WorkerLink): void {
    const seat = [...this.seats].find(s => s.link === link)
    if (seat === undefined || seat.draining) return
    seat.draining = true
    this.log(`worker ${link.worker} draining: ${seat.running.size} build(s) to finish`)
    this.capacityChanged()
  }

  /** The session ended or went silent: every attempt it held is lost, for `reason` ("heartbeats missed for 5 s"). */
  workerLeft (link: WorkerLink, reason: string = 'the worker disconnected'): void {
    if (this.stopped) return
    const seat = [...this.seats].find(s => s.link === link)
    if (seat === undefined) return
    this.seats.delete(seat)
    for (const [id, winding] of this.winding) if (winding.link === link) this.winding.delete(id)
    this.log(`worker ${link.worker} left the grid with ${seat.running.size} build(s) running`)
    for (const id of seat.running) {
      const running = this.attempts.get(id)
      if (running !== undefined) this.endAttempt(running.build, id, 'lost', reason)
    }
    this.capacityChanged()
    this.dispatch()
  }

  /** The fencing check every report passes: the attempt is current and this session holds it. */
  private current (link: WorkerLink, attempt: string): Running | undefined {
    const running = this.attempts.get(attempt)
    if (running === undefined || running.seat?.link !== link) {
      // A cancelled attempt winding down is stopping already: telling it it is stale would only cut its log short.
      if (this.winding.get(attempt)?.link !== link) link.cancel(attempt, 'stale')
      return undefined
    }
    return running
  }

  /** The build a step report may change: a current attempt's, or a cancelled one's still winding down on this link. */
  private reported (link: WorkerLink, attempt: string): Build | undefined {
    const winding = this.winding.get(attempt)
    if (winding !== undefined && winding.link === link) return winding.build
    return this.current(link, attempt)?.build
  }

  stepStarted (link: WorkerLink, attempt: string, index: number): void {
    const build = this.reported(link, attempt)
    const step = build?.steps[index]
    // Workers resend recent reports after a reconnect (a dead connection may have swallowed them): once is enough.
    if (build === undefined || step === undefined || step.started !== undefined) return
    step.started = new Date().toISOString()
    this.changed(build)
  }

  stepFinished (link: WorkerLink, attempt: string, index: number, exitCode: number, logCid?: string): void {
    const build = this.reported(link, attempt)
    const step = build?.steps[index]
    if (build === undefined || step === undefined) return
    if (step.exitCode !== undefined) {
      // The exit code comes when the step ends, the log's CID once it is sealed (after the artifacts, for the
      // last step); a resent report changes nothing.
      if (logCid !== undefined && step.logCid === undefined && step.exitCode === exitCode) {
        step.logCid = logCid
        this.changed(build, false)
      }
      return
    }
    step.exitCode = exitCode
    step.finished = new Date().toISOString()
    if (logCid !== undefined) step.logCid = logCid
    this.changed(build)
  }

  /**
   * The worker's result. `report.error` is the sentence that decided the outcome when a step's exit code did not
   * (an input that could not be fetched, artifacts that could not be kept); `report.warnings` did not decide it.
   */
  attemptFinished (link: WorkerLink, attempt: string, outcome: Exclude<AttemptOutcome, 'lost'>, artifacts: ArtifactRecord[] = [], report: { error?: string, warnings?: string[], caches?: CacheRecord[] } = {}): void {
    // A cancelled attempt's end: its build ended when it was cancelled.
    if (this.winding.get(attempt)?.link === link) {
      this.winding.delete(attempt)
      return
    }
    const running = this.current(link, attempt)
    if (running === undefined) return
    const { build } = running
    build.artifacts = artifacts
    if (report.warnings !== undefined && report.warnings.length > 0) build.warnings = report.warnings
    else delete build.warnings
    const caches = boundedCaches(report.caches)
    if (caches !== undefined) build.caches = caches
    else delete build.caches
    const reason = report.error ?? (outcome === 'timeout' ? `the build ran past its timeout of ${build.job.timeout} s` : outcome === 'failed' ? failedStep(build) : undefined)
    this.endAttempt(build, attempt, outcome, reason, report.error)
    this.dispatch()
  }

  capacity (): Capacity {
    const groups = new Map<string, CapacityGroup>()
    let slots = 0
    let busy = 0
    for (const seat of this.seats) {
      const caps = seat.link.capabilities
      const key = JSON.stringify(Object.entries(caps).sort(([a], [b]) => a < b ? -1 : 1))
      let group = groups.get(key)
      if (group === undefined) {
        group = { capabilities: caps, nodes: 0, trusted: 0, slots: 0, busy: 0 }
        groups.set(key, group)
      }
      // A draining worker offers only the slots it is still busy in.
      const offered = seat.draining ? seat.running.size : seat.link.slots
      group.nodes++
      if (seat.link.trusted === true) group.trusted++
      group.slots += offered
      group.busy += seat.running.size
      slots += offered
      busy += seat.running.size
    }
    return { nodes: this.seats.size, slots, busy, queued: this.queue.length, groups: [...groups.values()] }
  }

  /**
   * The build of a current attempt and the peer ID of the worker holding it; undefined when the attempt is not
   * current or no connected worker holds it (lost, finished, cancelled). Read-only: for checks such as the cache
   * requests, which only the holder of a current attempt may make.
   */
  attemptOf (attemptId: string): { build: Build, worker: string, trusted: boolean } | undefined {
    const running = this.attempts.get(attemptId)
    if (running?.seat === undefined) return undefined
    return { build: running.build, worker: running.seat.link.worker, trusted: running.seat.link.trusted === true }
  }

  /** A connected worker's cache address, to fetch what it made straight from it; undefined when it is away. */
  workerAddress (peer: string): PeerAddress | undefined {
    for (const seat of this.seats) {
      if (seat.link.worker === peer && (seat.link.addrs?.length ?? 0) > 0) return { peer, addrs: seat.link.addrs! }
    }
    return undefined
  }

  /** A store joined or left: queued builds that waited for one can start. */
  storesChanged (): void {
    this.dispatch()
  }

  /** Hand queued builds, oldest first, to capable workers with a free slot. A build no one can take does not block the rest. */
  private dispatch (): void {
    if (this.queue.length === 0 || this.stopped) return
    // Logs and artifacts need a store: a build started without one would run with its output thrown away (seen
    // after a coordinator restart, when workers reconnect before stores do). It waits; storesChanged() wakes it.
    if (this.stores().length === 0) {
      for (const id of this.queue) {
        const build = this.live.get(id)
        if (build === undefined || build.waiting === NO_STORE) continue
        build.waiting = NO_STORE
        this.changed(build, false)
      }
      return
    }
    const links = [...this.seats].map(s => s.link)
    /** Free slots on the seats taking work: once none is left, no queued build can start in this round. */
    let free = 0
    for (const seat of this.seats) if (!seat.draining) free += Math.max(0, seat.link.slots - seat.running.size)
    /**
     * Why no worker takes a build, by what decides it (its requirements and trust): a deep queue asks the same
     * question of every build each round, and each answer looks at every connected worker.
     */
    const why = new Map<string, string>()
    const remaining: string[] = []
    /** Builds whose secrets cannot be given to them now: they end once the queue is settled. */
    const refused: Array<{ build: Build, error: string }> = []
    /** Builds that take a succeeded build's outputs: they end once the queue is settled, as refused ones do. */
    const reused: Array<{ build: Build, origin: ReuseEntry }> = []
    for (const id of this.queue) {
      const build = this.live.get(id)
      if (build === undefined || build.status !== 'queued') continue
      if (this.waitsForInputs(build)) {
        remaining.push(id)
        continue
      }
      // Reuse takes no slot, so it is decided before looking for one: a build whose outputs exist ends even
      // while every worker is busy (or none is connected).
      const origin = this.reusable(build)
      if (origin !== undefined) {
        reused.push({ build, origin })
        continue
      }
      const seat = free > 0 ? this.freestSeat(build) : undefined
      if (seat === undefined) {
        const asked = whyKey(build)
        let reason = why.get(asked)
        if (reason === undefined) why.set(asked, reason = whyNoWorker(build, links))
        const waiting = waitingText(build, reason)
        if (build.waiting !== waiting) {
          build.waiting = waiting
          this.changed(build, false)
        }
        remaining.push(id)
        continue
      }
      let secrets: Record<string, string> | undefined
      try {
        secrets = this.secretValues(build)
      } catch (err: any) {
        refused.push({ build, error: isGridError(err) ? err.message : `the values of this build's secrets could not be read (${err.message})` })
        continue
      }
      this.startAttempt(build, seat, secrets)
      free--
    }
    this.queue = remaining
    for (const { build, error } of refused) this.finish(build, 'failed', error)
    for (const { build, origin } of reused) if (build.status === 'queued') this.finishReused(build, origin)
  }

  /**
   * For a queued build with `reuse: true` whose inputs are all settled: the succeeded build with its action key
   * whose every artifact and step log the grid still holds, if there is one. An entry whose outputs are gone is
   * forgotten (a miss, as bazel-remote treats an action result pointing at evicted blobs) and the build runs.
   * Synchronous, in the dispatch loop, so a build can neither be dispatched twice nor overtaken by its own lookup.
   */
  private reusable (build: Build): ReuseEntry | undefined {
    if (this.reuse === undefined || build.job.reuse !== true) return undefined
    const inputs = this.resolvedInputs(build)
    // An input whose CID is not known here (a restart lost it): it runs, and records nothing.
    if (inputs === undefined) return undefined
    const key = actionKey({ job: build.job, inputs, source: build.source, untrusted: build.untrusted === true })
    this.actionKeys.set(build.id, key)
    const entry = this.reuse.index.get(key)
    if (entry === undefined) return undefined
    // A build whose secrets were taken away since runs, and fails saying so, rather than reusing what they made.
    if (this.secretsRefused(build) !== undefined) return undefined
    const held = this.reuse.held
    if (!entry.steps.every(s => s.logCid !== undefined && held(s.logCid)) || !entry.artifacts.every(a => held(a.cid))) {
      this.log(`build ${build.id}: the outputs of build ${entry.build} (same action key) are no longer all held: it runs`)
      this.reuse.index.forget(key)
      return undefined
    }
    return entry
  }

  /** Every work-dir path the build gets → its CID (placed `after` artifacts, then its own inputs); undefined if one is unknown. */
  private resolvedInputs (build: Build): Record<string, string> | undefined {
    const known = this.inputCids.get(build.id)
    const inputs: Record<string, string> = {}
    for (const [path, from] of Object.entries(this.effectiveInputs(build))) {
      const ref = parseArtifactRef(from)
      if (ref === undefined) {
        inputs[path] = from
        continue
      }
      const cid = known?.get(ref.build)?.[ref.artifact]
      if (cid === undefined) return undefined
      inputs[path] = cid
    }
    return inputs
  }

  /** The inputs a build's assignment carries: what the builds it ran after kept, then its own (which win a clash of paths). */
  private effectiveInputs (build: Build): Record<string, string> {
    // In the order of `after`, whatever order those builds ended in: of two that kept the same path, the one
    // listed later wins, every time (GitLab places needed jobs' artifacts the same way).
    const byBuild = this.placed.get(build.id)
    const placed = byBuild === undefined ? undefined : Object.assign({}, ...(build.job.after ?? []).map(a => byBuild.get(a.build) ?? {}))
    return placed === undefined ? build.job.inputs : { ...placed, ...build.job.inputs }
  }

  /** `build` takes `origin`'s outputs: succeeded now, with no attempt and no slot. */
  private finishReused (build: Build, origin: ReuseEntry): void {
    const now = new Date().toISOString()
    this.log(`build ${build.id}: reused the outputs of build ${origin.build} (same action key)`)
    build.reused = origin.build
    build.started = now
    build.attempts = []
    // The origin's copies were held a moment ago: an old eviction mark would say otherwise.
    build.artifacts = origin.artifacts.map(({ evicted: _, ...a }) => ({ ...a }))
    build.steps = origin.steps.map(s => ({ ...s }))
    this.finish(build, 'succeeded', undefined, now)
  }

  /** A build with `reuse: true` is fed `from`'s artifacts: keep their CIDs for its action key. */
  private inputSettled (build: Build, from: Build): void {
    if (build.job.reuse !== true || this.reuse === undefined) return
    const known = this.inputCids.get(build.id) ?? new Map<string, Record<string, string>>()
    known.set(from.id, Object.fromEntries(from.artifacts.map(a => [a.path, a.cid])))
    this.inputCids.set(build.id, known)
  }

  /** Why a build's secrets may not be given to it (asked at submit, and again at dispatch); undefined when they may, or it has none. */
  private secretsRefused (build: Build): string | undefined {
    const names = build.job.secrets ?? []
    if (names.length === 0) return undefined
    if (build.untrusted === true) return `secret ${names[0]} is not available to this build (it was submitted without the trusted join code)`
    return this.secrets.check(names, build.source ?? { repo: null })
  }

  /**
   * The values of a build's secrets as it is handed to a worker, checked again (a secret may have been removed or
   * its scope changed while the build waited); throws SecretUnavailableError with the sentence the build fails with.
   */
  private secretValues (build: Build): Record<string, string> | undefined {
    const names = build.job.secrets ?? []
    if (names.length === 0) return undefined
    const refused = this.secretsRefused(build)
    if (refused !== undefined) throw new SecretUnavailableError(refused)
    const values = this.secrets.values(names)
    const bytes = Object.values(values).reduce((sum, v) => sum + Buffer.byteLength(v), 0)
    if (bytes > MAX_ASSIGNED_SECRET_BYTES) {
      throw new SecretUnavailableError(`the secrets of this build are ${bytes} bytes together; a worker is sent at most ${MAX_ASSIGNED_SECRET_BYTES}`)
    }
    return values
  }

  /** Keep the queue in the order builds should start: higher priority first, then oldest (ids sort by age). */
  private enqueue (build: Build): void {
    const before = (other: Build): boolean =>
      (other.job.priority ?? 0) < (build.job.priority ?? 0) || ((other.job.priority ?? 0) === (build.job.priority ?? 0) && other.id > build.id)
    // The queue is in that order already: a build that goes after the last one (a new one of the same priority,
    // nearly always) goes at the end without a walk through a deep queue.
    const last = this.live.get(this.queue.at(-1) ?? '')
    if (last !== undefined && !before(last)) {
      this.queue.push(build.id)
      return
    }
    const at = this.queue.findIndex(id => { const other = this.live.get(id); return other !== undefined && before(other) })
    if (at < 0) this.queue.push(build.id)
    else this.queue.splice(at, 0, build.id)
  }

  private freestSeat (build: Build): Seat | undefined {
    let best: Seat | undefined
    let bestFree = 0
    for (const seat of this.seats) {
      const free = seat.draining ? 0 : seat.link.slots - seat.running.size
      if (free > bestFree && trustAllows(build, seat.link) && satisfies(build.job.requires, seat.link.capabilities)) {
        best = seat
        bestFree = free
      }
    }
    return best
  }

  /** Hand `build` to `seat`; `secrets` (the job's values, for a trusted seat) go into the assignment and nowhere else. */
  private startAttempt (build: Build, seat: Seat, secrets?: Record<string, string>): void {
    const id = attemptId(build.id, build.attempts.length + 1)
    const now = new Date().toISOString()
    const logs = build.job.steps.map((_, i) => logId(id, i))
    const attempt: Attempt = {
      id, worker: seat.link.worker, trusted: seat.link.trusted === true, capabilities: seat.link.capabilities, started: now, logs
    }
    build.attempts.push(attempt)
    build.status = 'running'
    build.started ??= now
    delete build.waiting
    build.steps = build.job.steps.map((s, i) => ({ name: s.name, log: logs[i] }))
    // A retry's caches are its own: an earlier attempt's outcomes would say what this one did not do.
    delete build.caches
    seat.running.add(id)
    this.attempts.set(id, { build, seat })
    this.armTimeout(build, id)
    // What the builds it ran after kept goes in first; its own inputs win a clash of paths.
    const inputs = this.effectiveInputs(build)
    const job = inputs === build.job.inputs ? build.job : { ...build.job, inputs }
    const env = gridEnv(build)
    seat.link.assign({ attempt: id, build: build.id, job, logs, stores: this.stores(), replicas: this.replicas, ...(secrets !== undefined ? { secrets } : {}), ...(env !== undefined ? { env } : {}) })
    this.changed(build)
    this.inputMoved(build)
  }

  /** Backstop for a worker that never reports its own timeout: a little past the job's limit from the attempt's start. */
  private armTimeout (build: Build, id: string): void {
    const started = Date.parse(build.attempts.find(a => a.id === id)?.started ?? new Date().toISOString())
    const due = started + build.job.timeout * 1000 + TIMEOUT_GRACE_MS - Date.now()
    this.timeouts.set(id, setTimeout(() => {
      const running = this.attempts.get(id)
      if (running === undefined) return
      running.seat?.link.cancel(id, 'stale', `the build ran past its timeout of ${build.job.timeout} s and its worker did not end it`)
      this.fenceLogs(build.attempts.find(a => a.id === id)?.logs ?? [])
      const reason = `the build ran past its timeout of ${build.job.timeout} s and its worker did not report it within ${TIMEOUT_GRACE_MS / 1000} s`
      this.endAttempt(build, id, 'timeout', reason, reason)
      this.dispatch()
    }, Math.max(0, due)).unref())
  }

  /** Seal logs after `ms` unless their writer did first (sealing a sealed log changes nothing); `attempt` stops winding down. */
  private sealLater (logs: string[], ms: number, attempt: string): void {
    const timer = setTimeout(() => {
      this.seals.delete(timer)
      this.winding.delete(attempt)
      this.fenceLogs(logs)
    }, ms).unref()
    this.seals.add(timer)
  }

  /**
   * Close an attempt and decide the build's fate: finished, or (lost with retries left) queued again. `reason` is
   * recorded on the attempt; `error`, when given, on the build (it decided the outcome, not a step's exit code).
   */
  private endAttempt (build: Build, id: string, outcome: AttemptOutcome, reason?: string, error?: string): void {
    const running = this.attempts.get(id)
    this.attempts.delete(id)
    running?.seat?.running.delete(id)
    clearTimeout(this.timeouts.get(id))
    this.timeouts.delete(id)
    const attempt = build.attempts.find(a => a.id === id)
    if (attempt !== undefined) {
      attempt.outcome = outcome
      attempt.finished = new Date().toISOString()
      if (reason !== undefined) attempt.reason = reason
      // Every ending seals every log of the attempt, or a follower of one would wait forever. A lost worker (or
      // one that ignored its timeout) may still be alive somewhere: its logs are closed to it. A worker that
      // reported its result sealed the logs of the steps it ran; this seals those of the steps it never reached.
      // A cancelled worker that is still connected seals its own, with its last lines in them (see cancel()).
      if (outcome !== 'cancelled') this.fenceLogs(attempt.logs)
    }
    const lostSoFar = build.attempts.filter(a => a.outcome === 'lost').length
    if (outcome === 'lost' && lostSoFar <= build.job.retries) {
      this.log(`build ${build.id}: attempt ${id} lost (${reason ?? 'worker gone'}), queued again (${lostSoFar}/${build.job.retries} retries used)`)
      build.status = 'queued'
      build.waiting = waitingText(build)
      this.enqueue(build)
      this.changed(build)
      this.inputMoved(build)
    } else {
      const lostFor = outcome === 'lost' ? `its worker was lost ${lostSoFar} time(s) and it has no retries left (last: ${reason ?? 'worker gone'})` : undefined
      this.finish(build, outcome, error ?? lostFor ?? (outcome === 'cancelled' ? reason : undefined))
    }
  }

  private finish (build: Build, status: BuildStatus, error?: string, at: string = new Date().toISOString()): void {
    build.status = status
    build.finished = at
    if (error !== undefined) build.error = error
    delete build.waiting
    this.live.delete(build.id)
    this.placed.delete(build.id)
    this.inputCids.delete(build.id)
    const key = this.actionKeys.get(build.id)
    this.actionKeys.delete(build.id)
    // Only a build that ran records itself: a reused one's outputs are its origin's, recorded already.
    if (key !== undefined && status === 'succeeded' && build.reused === undefined && build.attempts.length > 0) {
      this.reuse?.index.record(key, {
        build: build.id,
        artifacts: build.artifacts.map(a => ({ ...a })),
        steps: build.steps.map(s => ({ name: s.name, log: s.log, ...(s.exitCode !== undefined ? { exitCode: s.exitCode } : {}), ...(s.logCid !== undefined ? { logCid: s.logCid } : {}) }))
      })
    }
    this.changed(build)
    this.inputsSettled(build)
  }

  /**
   * Register a queued build's `build:` inputs. Those already finished are settled now (a failed one, or a missing
   * artifact, ends this build at once); the rest are waited for, and waitsForInputs() keeps it off the workers.
   */
  private async awaitInputs (build: Build): Promise<void> {
    for (const after of build.job.after ?? []) {
      const before = this.live.get(after.build) ?? await this.history.get(after.build)
      if (before !== undefined && !FINISHED.has(before.status)) {
        this.dependOn(build, after.build)
        continue
      }
      if (build.status !== 'queued') return
      if (before === undefined || before.status !== 'succeeded') {
        this.queue = this.queue.filter(q => q !== build.id)
        this.finish(build, 'skipped', before === undefined ? `build ${after.build}, which it runs after, is gone from the grid's history` : skippedFor(before))
        return
      }
      this.place(build, before, after.artifacts)
      if (after.artifacts) this.inputSettled(build, before)
    }
    for (const [path, ref] of Object.entries(inputBuilds(build.job))) {
      const input = this.live.get(ref.build) ?? await this.history.get(ref.build)
      if (input !== undefined && !FINISHED.has(input.status)) {
        this.dependOn(build, ref.build)
        continue
      }
      const failure = input === undefined ? `input ${path}: build ${ref.build} is gone from the grid's history` : inputFailure(path, ref, input)
      if (failure !== undefined && build.status === 'queued') {
        this.queue = this.queue.filter(q => q !== build.id)
        this.finish(build, 'failed', failure)
        return
      }
      if (input !== undefined) this.inputSettled(build, input)
    }
    this.waitsForInputs(build)
  }

  private dependOn (build: Build, on: string): void {
    let waiting = this.dependents.get(on)
    if (waiting === undefined) this.dependents.set(on, waiting = new Set())
    waiting.add(build.id)
  }

  /** `build` runs after `before`, which succeeded: its artifacts go into `build`'s work dir (unless not wanted). */
  private place (build: Build, before: Build, artifacts: boolean): void {
    if (!artifacts || before.artifacts.length === 0) return
    const placed = this.placed.get(build.id) ?? new Map<string, Record<string, string>>()
    placed.set(before.id, Object.fromEntries(before.artifacts.map(a => [a.path, `build:${before.id}/${a.path}`])))
    this.placed.set(build.id, placed)
  }

  /** True (and `waiting` says for what) while one of the build's input builds or `after` builds has not finished. */
  private waitsForInputs (build: Build): boolean {
    if (!hasDependencies(build.job)) return false
    const ids = [...Object.values(inputBuilds(build.job)).map(ref => ref.build), ...(build.job.after ?? []).map(a => a.build)]
    const pending = ids.map(id => this.live.get(id)).filter(b => b !== undefined && !FINISHED.has(b.status)) as Build[]
    if (pending.length === 0) return false
    const unique = [...new Map(pending.map(b => [b.id, b])).values()]
    const waiting = waitingText(build, `waiting for build${unique.length > 1 ? 's' : ''} ${unique.map(b => `${b.id} (${b.status})`).join(', ')}`)
    if (build.waiting !== waiting) {
      build.waiting = waiting
      this.changed(build, false)
    }
    return true
  }

  /** An input build started or was queued again: the builds waiting for it say so. */
  private inputMoved (input: Build): void {
    for (const id of this.dependents.get(input.id) ?? []) {
      const build = this.live.get(id)
      if (build?.status === 'queued') this.waitsForInputs(build)
    }
  }

  /** A build finished: the builds waiting for its artifacts can go on, or end now with a reason naming it. */
  private inputsSettled (finished: Build): void {
    const waiting = this.dependents.get(finished.id)
    if (waiting === undefined) return
    this.dependents.delete(finished.id)
    // Every build that ends now leaves the queue before any of them is finished: finishing one settles its own
    // dependents and dispatches, which must not hand a worker a sibling that is about to be skipped.
    const ending: Array<{ build: Build, status: BuildStatus, error: string }> = []
    for (const id of waiting) {
      const build = this.live.get(id)
      if (build === undefined || build.status !== 'queued') continue
      if ((build.job.after ?? []).some(a => a.build === finished.id)) {
        if (finished.status !== 'succeeded') {
          ending.push({ build, status: 'skipped', error: skippedFor(finished) })
          continue
        }
        this.place(build, finished, (build.job.after ?? []).some(a => a.build === finished.id && a.artifacts))
      }
      if (finished.status === 'succeeded') this.inputSettled(build, finished)
      const failure = Object.entries(inputBuilds(build.job))
        .filter(([, ref]) => ref.build === finished.id)
        .map(([path, ref]) => inputFailure(path, ref, finished))
        .find(f => f !== undefined)
      if (failure !== undefined) ending.push({ build, status: 'failed', error: failure })
      // A queued build carries the reason it last waited for: the next dispatch says what it waits for now.
      else delete build.waiting
    }
    const leaving = new Set(ending.map(e => e.build.id))
    this.queue = this.queue.filter(q => !leaving.has(q))
    // One may have ended already, settled by a sibling that ended before it (it ran after both).
    for (const { build, status, error } of ending) if (build.status === 'queued') this.finish(build, status, error)
    this.dispatch()
  }

  private changed (build: Build, capacity = true): void {
    this.history.save(build).catch(err => { this.log(`could not save build ${build.id}: ${err.message}`) })
    this.notify(build, capacity)
  }

  private notify (build: Build, capacity: boolean): void {
    for (const listener of this.buildListeners) listener(build)
    if (capacity) this.capacityChanged()
  }

  private capacityChanged (): void {
    if (this.capacityListeners.size === 0) return
    const capacity = this.capacity()
    for (const listener of this.capacityListeners) listener(capacity)
  }
}

/**
 * Whether trust lets `link` take `build`: a build with secrets goes only to a trusted worker, and a build from a
 * member without the trusted join code never goes to one (else the ordinary code would run code where secrets are).
 */
function trustAllows (build: Build, link: WorkerLink): boolean {
  const trusted = link.trusted === true
  if (build.untrusted === true && trusted) return false
  return trusted || (build.job.secrets ?? []).length === 0
}

/** Why no connected worker takes a queued build now, in one phrase (`links`: every connected worker). */
function whyNoWorker (build: Build, links: WorkerLink[]): string {
  const { requires } = build.job
  const allowed = links.filter(l => trustAllows(build, l))
  const unmet = unmetRequirement(requires, allowed.map(l => l.capabilities))
  if (unmet === undefined) return 'every capable worker is busy'
  if ((build.job.secrets ?? []).length > 0) {
    // "no worker has gpu=a100" would be wrong where an untrusted worker has it: say what the trusted ones lack.
    return allowed.length === 0 ? NO_TRUSTED_WORKER : `${NO_TRUSTED_WORKER} (${unmet.replace(/^no (single )?worker/, 'none')})`
  }
  if (build.untrusted === true && links.some(l => satisfies(requires, l.capabilities))) {
    return allowed.length === 0 ? ONLY_TRUSTED_CONNECTED : ONLY_TRUSTED_CAPABLE
  }
  return unmetRequirement(requires, links.map(l => l.capabilities)) ?? unmet
}

/** What of a job decides whyNoWorker's answer, by job: a queued build is asked about every round, its job never changes. */
const whyKeys = new WeakMap<Job, string>()

/** What whyNoWorker's answer for `build` depends on besides the connected workers: its requirements and trust. */
function whyKey (build: Build): string {
  let key = whyKeys.get(build.job)
  if (key === undefined) {
    key = `${(build.job.secrets ?? []).length > 0 ? 's' : '-'}${JSON.stringify(build.job.requires)}`
    whyKeys.set(build.job, key)
  }
  return build.untrusted === true ? `u${key}` : key
}

/** Whether a job names inputs or `after` builds at all: most do not, and the queue's every round asks. */
function hasDependencies (job: Job): boolean {
  if ((job.after ?? []).length > 0) return true
  for (const _path in job.inputs) return true
  return false
}

/** Why a finished input build cannot feed `path`: it did not succeed, or has no such artifact. Undefined when it can. */
function inputFailure (path: string, ref: { build: string, artifact: string }, input: Build): string | undefined {
  if (input.status !== 'succeeded') {
    return `input ${path}: build ${input.id} ended ${input.status}${input.error !== undefined ? ` (${input.error})` : ''}, so its artifact ${ref.artifact} will never exist`
  }
  if (!input.artifacts.some(a => a.path === ref.artifact)) {
    return `input ${path}: build ${input.id} succeeded but kept no artifact ${ref.artifact}${input.artifacts.length > 0 ? ` (it kept ${input.artifacts.slice(0, 5).map(a => a.path).join(', ')}${input.artifacts.length > 5 ? ', …' : ''})` : ' (it kept none)'}`
  }
  return undefined
}

/** The grid's environment variables for a pipeline's build (Assignment.env); undefined for a lone build. */
function gridEnv (build: Build): Record<string, string> | undefined {
  if (build.pipeline === undefined) return undefined
  const env: Record<string, string> = { GRID_PIPELINE_ID: build.pipeline }
  if (build.jobName !== undefined) env.GRID_JOB = build.jobName
  const ref = build.context?.ref
  if (build.context?.commit !== undefined) env.GRID_COMMIT = build.context.commit
  if (ref !== undefined) env.GRID_REF = ref
  if (ref?.startsWith('refs/heads/') === true) env.GRID_BRANCH = ref.slice('refs/heads/'.length)
  return env
}

/** Why a build that runs after `before` (which did not succeed) is skipped. */
function skippedFor (before: Build): string {
  const named = before.jobName !== undefined ? `${before.jobName} (build ${before.id})` : `build ${before.id}`
  return `skipped: ${named}, which it runs after, ended ${before.status}${before.error !== undefined ? ` (${before.error})` : ''}`
}

/** The reason of an attempt that failed on a step's exit code. */
/**
 * A worker's cache outcomes as a build keeps them: the first MAX_BUILD_CACHES with a known outcome and a key,
 * `key` and `from` cut to MAX_CACHE_RECORD_KEY_CHARS, `why` to MAX_CACHE_WHY_CHARS, a size kept only when it is a
 * whole number of bytes. The wire schema (protocols/work.ts) already cut them; this holds for any caller.
 * Undefined when nothing is left.
 */
export function boundedCaches (caches: readonly CacheRecord[] | undefined): CacheRecord[] | undefined {
  if (!Array.isArray(caches)) return undefined
  const cut = (v: unknown, max: number): string | undefined => typeof v === 'string' ? v.slice(0, max) : undefined
  const kept: CacheRecord[] = []
  for (const c of caches) {
    if (kept.length >= MAX_BUILD_CACHES) break
    const key = cut(c?.key, MAX_CACHE_RECORD_KEY_CHARS)
    if (key === undefined || key === '' || !(CACHE_OUTCOMES as readonly string[]).includes(c.outcome)) continue
    const record: CacheRecord = { key, outcome: c.outcome }
    const from = cut(c.from, MAX_CACHE_RECORD_KEY_CHARS)
    if (from !== undefined) record.from = from
    if (Number.isSafeInteger(c.size) && c.size! >= 0) record.size = c.size
    const why = cut(c.why, MAX_CACHE_WHY_CHARS)
    if (why !== undefined) record.why = why
    kept.push(record)
  }
  return kept.length > 0 ? kept : undefined
}

function failedStep (build: Build): string | undefined {
  const step = build.steps.find(s => s.exitCode !== undefined && s.exitCode !== 0)
  if (step === undefined) return undefined
  // An unnamed step is called `step N` already: say it once.
  const index = build.steps.indexOf(step)
  const named = step.name === `step ${index + 1}` ? step.name : `step ${index + 1} (${step.name})`
  return `${named} exited with ${step.exitCode}`
}

/**
 * Why a queued build is not running, in one phrase: `why` (no capable worker, an input build), after what sent it
 * back to the queue when its last attempt was lost.
 */
function waitingText (build: Build, why?: string): string {
  const last = build.attempts.at(-1)
  if (last?.outcome !== 'lost') return why ?? 'queued'
  const lost = build.attempts.filter(a => a.outcome === 'lost').length
  const again = `queued again after attempt ${build.attempts.length} was lost (${last.reason ?? 'its worker went away'}; retry ${lost} of ${build.job.retries})`
  return why !== undefined ? `${again}: ${why}` : again
}

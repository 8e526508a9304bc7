// The coordinator's state machine: the queue, the connected workers, and every attempt's life.
// It never touches a stream: workers reach it through the narrow WorkerLink, storage through BuildHistory,
// so it is tested alone with a memory history and stub links.
import type { Attempt, AttemptOutcome, Build, BuildStatus, Capabilities } from './build.ts'
import { FINISHED, attemptId, logId, newBuildId } from './build.ts'
import type { BuildHistory } from './history.ts'
import type { Job } from './job.ts'
import { satisfies, unmetRequirement } from './job.ts'
import { RECLAIM_WINDOW_MS, TIMEOUT_GRACE_MS } from './constants.ts'
import { DEFAULT_REPLICAS } from '../artifact-store/placement.ts'

/** Where a worker should push logs and artifacts. */
export interface StoreAddress {
  peer: string
  addrs: string[]
}

export interface Assignment {
  attempt: string
  build: string
  job: Job
  logs: string[]
  stores: StoreAddress[]
  /** How many of `stores` each log and artifact goes to (placed by artifact-store/placement.ts). */
  replicas: number
}

/** What the scheduler needs of a connected worker's session. */
export interface WorkerLink {
  readonly worker: string
  readonly capabilities: Capabilities
  readonly slots: number
  /** Where the worker serves the outputs it keeps (its cache); empty when it does not listen. */
  readonly addrs?: string[]
  assign (assignment: Assignment): void
  /** Tell the worker to stop an attempt: the user cancelled it, or it is no longer current (fenced). */
  cancel (attempt: string, reason: 'cancelled' | 'stale'): void
}

export interface CapacityGroup {
  capabilities: Capabilities
  nodes: number
  slots: number
  busy: number
}

export interface Capacity {
  nodes: number
  slots: number
  busy: number
  queued: number
  groups: CapacityGroup[]
}

export class UnknownBuildError extends Error {
  name = 'UnknownBuildError'
}

export class BuildFinishedError extends Error {
  name = 'BuildFinishedError'
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
  stores: () => StoreAddress[]
  /** Stores each piece of output is kept on. @default DEFAULT_REPLICAS */
  replicas?: number
  /** Seal an attempt's logs on the stores once its worker is lost, so a stale worker cannot append. */
  fenceLogs?: (logs: string[]) => void
  /** @default RECLAIM_WINDOW_MS */
  reclaimWindowMs?: number
  log?: (line: string) => void
}

type Listener<T> = (value: T) => void

/** Why a queued build waits while the grid has no store. */
export const NO_STORE = 'no store has joined the grid yet: logs and artifacts need one'

export class Scheduler {
  private readonly history: BuildHistory
  private readonly stores: () => StoreAddress[]
  private readonly replicas: number
  private readonly fenceLogs: (logs: string[]) => void
  private readonly reclaimWindowMs: number
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

  constructor (init: SchedulerInit) {
    this.history = init.history
    this.stores = init.stores
    this.replicas = init.replicas ?? DEFAULT_REPLICAS
    this.fenceLogs = init.fenceLogs ?? (() => {})
    this.reclaimWindowMs = init.reclaimWindowMs ?? RECLAIM_WINDOW_MS
    this.log = init.log ?? (() => {})
  }

  /** Reload the queue and running builds from history after a restart. */
  async start (): Promise<void> {
    const active = await this.history.active()
    active.sort((a, b) => a.id < b.id ? -1 : 1)
    for (const build of active) {
      this.live.set(build.id, build)
      if (build.status === 'queued') this.enqueue(build)
      else {
        // Its worker may still be running it: give it a window to come back and claim the attempt.
        const current = build.attempts.at(-1)
        if (current !== undefined) this.attempts.set(current.id, { build, seat: undefined })
      }
    }
    if (this.attempts.size > 0) {
      this.reclaimTimer = setTimeout(() => {
        for (const [id, running] of this.attempts) {
          if (running.seat === undefined) this.endAttempt(running.build, id, 'lost')
        }
        this.dispatch()
      }, this.reclaimWindowMs)
    }
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.reclaimTimer)
    for (const timer of this.timeouts.values()) clearTimeout(timer)
    this.timeouts.clear()
  }

  onBuild (listener: Listener<Build>): () => void {
    this.buildListeners.add(listener)
    return () => this.buildListeners.delete(listener)
  }

  onCapacity (listener: Listener<Capacity>): () => void {
    this.capacityListeners.add(listener)
    return () => this.capacityListeners.delete(listener)
  }

  async submit (job: Job): Promise<Build> {
    const build: Build = {
      id: newBuildId(),
      status: 'queued',
      job,
      created: new Date().toISOString(),
      attempts: [],
      steps: [],
      artifacts: []
    }
    this.live.set(build.id, build)
    this.enqueue(build)
    await this.history.save(build)
    this.notify(build, true)
    this.dispatch()
    return build
  }

  async get (id: string): Promise<Build | undefined> {
    return this.live.get(id) ?? await this.history.get(id)
  }

  async list (limit: number): Promise<Build[]> {
    const builds = await this.history.list(limit)
    return builds.map(b => this.live.get(b.id) ?? b)
  }

  async cancel (id: string): Promise<Build> {
    const build = await this.get(id)
    if (build === undefined) throw new UnknownBuildError(`no build ${id}`)
    if (FINISHED.has(build.status)) throw new BuildFinishedError(`build ${id} already ${build.status}`)
    if (build.status === 'queued') {
      this.queue = this.queue.filter(q => q !== id)
      this.finish(build, 'cancelled')
    } else {
      const current = build.attempts.at(-1)
      if (current !== undefined) {
        this.attempts.get(current.id)?.seat?.link.cancel(current.id, 'cancelled')
        this.endAttempt(build, current.id, 'cancelled')
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
    this.log(`worker ${link.worker} joined with ${link.slots} slot(s)`)
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

  /** The session ended or went silent: every attempt it held is lost. */
  workerLeft (link: WorkerLink): void {
    if (this.stopped) return
    const seat = [...this.seats].find(s => s.link === link)
    if (seat === undefined) return
    this.seats.delete(seat)
    this.log(`worker ${link.worker} left with ${seat.running.size} build(s) running`)
    for (const id of seat.running) {
      const running = this.attempts.get(id)
      if (running !== undefined) this.endAttempt(running.build, id, 'lost')
    }
    this.capacityChanged()
    this.dispatch()
  }

  /** The fencing check every report passes: the attempt is current and this session holds it. */
  private current (link: WorkerLink, attempt: string): Running | undefined {
    const running = this.attempts.get(attempt)
    if (running === undefined || running.seat?.link !== link) {
      link.cancel(attempt, 'stale')
      return undefined
    }
    return running
  }

  stepStarted (link: WorkerLink, attempt: string, index: number): void {
    const running = this.current(link, attempt)
    const step = running?.build.steps[index]
    // Workers resend recent reports after a reconnect (a dead connection may have swallowed them): once is enough.
    if (running === undefined || step === undefined || step.started !== undefined) return
    step.started = new Date().toISOString()
    this.changed(running.build)
  }

  stepFinished (link: WorkerLink, attempt: string, index: number, exitCode: number, logCid?: string): void {
    const running = this.current(link, attempt)
    const step = running?.build.steps[index]
    if (running === undefined || step === undefined || step.exitCode !== undefined) return
    step.exitCode = exitCode
    step.finished = new Date().toISOString()
    if (logCid !== undefined) step.logCid = logCid
    this.changed(running.build)
  }

  attemptFinished (link: WorkerLink, attempt: string, outcome: Exclude<AttemptOutcome, 'lost'>, artifacts: Build['artifacts'] = []): void {
    const running = this.current(link, attempt)
    if (running === undefined) return
    running.build.artifacts = artifacts
    this.endAttempt(running.build, attempt, outcome)
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
        group = { capabilities: caps, nodes: 0, slots: 0, busy: 0 }
        groups.set(key, group)
      }
      // A draining worker offers only the slots it is still busy in.
      const offered = seat.draining ? seat.running.size : seat.link.slots
      group.nodes++
      group.slots += offered
      group.busy += seat.running.size
      slots += offered
      busy += seat.running.size
    }
    return { nodes: this.seats.size, slots, busy, queued: this.queue.length, groups: [...groups.values()] }
  }

  /** A connected worker's cache address, to fetch what it made straight from it; undefined when it is away. */
  workerAddress (peer: string): { peer: string, addrs: string[] } | undefined {
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
    const pool = [...this.seats].map(s => s.link.capabilities)
    const remaining: string[] = []
    for (const id of this.queue) {
      const build = this.live.get(id)
      if (build === undefined || build.status !== 'queued') continue
      const seat = this.freestSeat(build.job.requires)
      if (seat === undefined) {
        const waiting = unmetRequirement(build.job.requires, pool) ?? 'every capable worker is busy'
        if (build.waiting !== waiting) {
          build.waiting = waiting
          this.changed(build, false)
        }
        remaining.push(id)
        continue
      }
      this.startAttempt(build, seat)
    }
    this.queue = remaining
  }

  /** Keep the queue in the order builds should start: higher priority first, then oldest (ids sort by age). */
  private enqueue (build: Build): void {
    const before = (other: Build): boolean =>
      (other.job.priority ?? 0) < (build.job.priority ?? 0) || ((other.job.priority ?? 0) === (build.job.priority ?? 0) && other.id > build.id)
    const at = this.queue.findIndex(id => { const other = this.live.get(id); return other !== undefined && before(other) })
    if (at < 0) this.queue.push(build.id)
    else this.queue.splice(at, 0, build.id)
  }

  private freestSeat (requires: Record<string, string>): Seat | undefined {
    let best: Seat | undefined
    let bestFree = 0
    for (const seat of this.seats) {
      const free = seat.draining ? 0 : seat.link.slots - seat.running.size
      if (free > bestFree && satisfies(requires, seat.link.capabilities)) {
        best = seat
        bestFree = free
      }
    }
    return best
  }

  private startAttempt (build: Build, seat: Seat): void {
    const id = attemptId(build.id, build.attempts.length + 1)
    const now = new Date().toISOString()
    const logs = build.job.steps.map((_, i) => logId(id, i))
    const attempt: Attempt = {
      id, worker: seat.link.worker, capabilities: seat.link.capabilities, started: now, logs
    }
    build.attempts.push(attempt)
    build.status = 'running'
    build.started ??= now
    delete build.waiting
    build.steps = build.job.steps.map((s, i) => ({ name: s.name, log: logs[i] }))
    seat.running.add(id)
    this.attempts.set(id, { build, seat })
    this.armTimeout(build, id)
    seat.link.assign({ attempt: id, build: build.id, job: build.job, logs, stores: this.stores(), replicas: this.replicas })
    this.changed(build)
  }

  /** Backstop for a worker that never reports its own timeout: a little past the job's limit from the attempt's start. */
  private armTimeout (build: Build, id: string): void {
    const started = Date.parse(build.attempts.find(a => a.id === id)?.started ?? new Date().toISOString())
    const due = started + build.job.timeout * 1000 + TIMEOUT_GRACE_MS - Date.now()
    this.timeouts.set(id, setTimeout(() => {
      const running = this.attempts.get(id)
      if (running === undefined) return
      running.seat?.link.cancel(id, 'stale')
      this.fenceLogs(build.attempts.find(a => a.id === id)?.logs ?? [])
      this.endAttempt(build, id, 'timeout')
      this.dispatch()
    }, Math.max(0, due)).unref())
  }

  /** Close an attempt and decide the build's fate: finished, or (lost with retries left) queued again. */
  private endAttempt (build: Build, id: string, outcome: AttemptOutcome): void {
    const running = this.attempts.get(id)
    this.attempts.delete(id)
    running?.seat?.running.delete(id)
    clearTimeout(this.timeouts.get(id))
    this.timeouts.delete(id)
    const attempt = build.attempts.find(a => a.id === id)
    if (attempt !== undefined) {
      attempt.outcome = outcome
      attempt.finished = new Date().toISOString()
      // A worker that is lost (or ignored its timeout) may still be alive somewhere: its logs are closed to it.
      // A cancelled or timed-out worker that answers seals its own logs, with its last lines in them.
      if (outcome === 'lost') this.fenceLogs(attempt.logs)
    }
    const lostSoFar = build.attempts.filter(a => a.outcome === 'lost').length
    if (outcome === 'lost' && lostSoFar <= build.job.retries) {
      this.log(`build ${build.id}: attempt ${id} lost, queued again (${lostSoFar}/${build.job.retries} retries used)`)
      build.status = 'queued'
      this.enqueue(build)
      this.changed(build)
    } else {
      this.finish(build, outcome)
    }
  }

  private finish (build: Build, status: BuildStatus): void {
    build.status = status
    build.finished = new Date().toISOString()
    delete build.waiting
    this.live.delete(build.id)
    this.changed(build)
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

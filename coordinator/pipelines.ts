// The coordinator's pipelines: a `.grid.yml` planned into builds that run after one another (job `after`), and for
// a commit of a repository, the checkout build that fetches it first. A pipeline keeps its builds' statuses from
// the scheduler's build events and decides its own from them. It never touches a stream or a worker: the scheduler,
// where pipelines are kept and how content is read all come in, so it is tested alone with a memory history.
import type { Build, BuildSource, Pipeline, PipelineSource, PipelineStatus } from '../grid/build.ts'
import { FINISHED, PIPELINE_FINISHED } from '../grid/build.ts'
import { newPipelineId } from '../grid/ids.ts'
import type { Job } from '../grid/job.ts'
import { InvalidJobError, inputBuilds, parseJob } from '../grid/job.ts'
import { MAX_PIPELINE_FILE_BYTES } from '../grid/constants.ts'
import { parsePipelineFile, planPipeline } from '../grid/pipeline.ts'
import type { PlannedBuild } from '../grid/pipeline.ts'
import { GridError, isGridError } from '../net/errors.ts'
import type { Scheduler } from './scheduler.ts'
import { BuildFinishedError } from './scheduler.ts'
import type { PipelineHistory } from './pipeline-history.ts'
import { MAX_SOURCE_CHARS } from '../protocols/builds.ts'

/** The `jobName` of a pipeline's checkout build (it is not a job of the file, so it is kept apart in `checkout`). */
export const CHECKOUT_JOB = 'checkout'
/** The checkout's artifacts: the commit's tree as a tar (every build's `src`), and the pipeline file read from it. */
export const CHECKOUT_TAR = 'src.tar'
export const CHECKOUT_FILE = 'tree/.grid.yml'
/**
 * Seconds a checkout may take before it ends `timeout` and the pipeline fails: a shallow fetch of one commit is
 * seconds, a large repository over a slow link minutes; an hour (the default job timeout) would hide a hung fetch.
 */
export const CHECKOUT_TIMEOUT_S = 1_800
/**
 * Reads of a checkout's `.grid.yml` before the pipeline fails saying why: after a coordinator restart the stores
 * rejoin a few seconds after it starts, and the file is on them, not here.
 */
export const FILE_READ_ATTEMPTS = 4
/** Milliseconds before the second read of a `.grid.yml`; each later one waits twice as long (1 + 2 + 4 s in all). */
export const FILE_READ_RETRY_MS = 1_000
/** A commit as a checkout fetches it: a full SHA-1 or SHA-256 object name (a short one cannot be fetched by id). */
export const COMMIT_PATTERN = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/

export class UnknownPipelineError extends GridError {
  name = 'UnknownPipelineError'
  readonly status = 404
}

export class PipelineFinishedError extends GridError {
  name = 'PipelineFinishedError'
  readonly status = 409
}

/** A URL, ref or commit a pipeline cannot be started from (a short commit, a control character in a ref). */
export class InvalidPipelineSourceError extends GridError {
  name = 'InvalidPipelineSourceError'
  readonly status = 400
}

/** A `.grid.yml` larger than MAX_PIPELINE_FILE_BYTES: readFile throws it, and it is not read again. */
export class PipelineFileTooLargeError extends GridError {
  name = 'PipelineFileTooLargeError'
  readonly status = 413
}

/** What Pipelines needs of the scheduler. */
export type PipelineScheduler = Pick<Scheduler, 'submit' | 'get' | 'cancel' | 'onBuild'>

export interface PipelinesComponents {
  scheduler: PipelineScheduler
  history: PipelineHistory
  /**
   * The bytes of content `cid` (a checkout's `.grid.yml`), at most `maxBytes` of them: throws
   * PipelineFileTooLargeError past that, any other error when it cannot be read now. `signal` aborts when stopping.
   */
  readFile: (cid: string, maxBytes: number, signal?: AbortSignal) => Promise<Uint8Array>
  log?: (line: string) => void
}

export interface PipelinesInit {
  /** Test knob. @default FILE_READ_RETRY_MS */
  fileRetryMs?: number
}

/** What starts a pipeline from a `.grid.yml` at hand (`grid run`, `POST /api/pipelines`). */
export interface CreatePipeline {
  /** YAML text, or the file as an object (the HTTP API takes both). */
  file: string | object
  /** CID of the tree the builds get as `src`. */
  src?: string
  source: PipelineSource
  /**
   * Sent by a member without the trusted join code (`grid run` with the ordinary code): its builds never run on a
   * trusted worker and get no secret.
   */
  untrusted?: boolean
}

/** A commit of a registered repository (a push, a poll): the grid fetches it from `url`, which it registered. */
export interface CommitPipeline {
  repo: string
  url: string
  ref: string
  commit: string
  trigger: 'push' | 'poll'
}

type Listener = (pipeline: Pipeline) => void

export class Pipelines {
  private readonly scheduler: PipelineScheduler
  private readonly history: PipelineHistory
  private readonly readFile: PipelinesComponents['readFile']
  private readonly log: (line: string) => void
  private readonly fileRetryMs: number
  /** Pipelines not yet finished, by id; finished ones live only in history (every build of theirs has ended too). */
  private readonly live = new Map<string, Pipeline>()
  /**
   * Pipelines in the middle of many of their builds changing at once (queueing them, cancelling them): their
   * builds' events wait for the end, so a large matrix makes one pipeline event, not one per build.
   */
  private readonly batching = new Set<string>()
  /** Pipelines whose checkout succeeded and whose file is being read and planned (once each). */
  private readonly continuing = new Set<string>()
  private readonly listeners = new Set<Listener>()
  private readonly work = new Set<Promise<void>>()
  private stopping = new AbortController()
  private off: (() => void) | undefined

  constructor (components: PipelinesComponents, init: PipelinesInit = {}) {
    this.scheduler = components.scheduler
    this.history = components.history
    this.readFile = components.readFile
    this.log = components.log ?? (() => {})
    this.fileRetryMs = init.fileRetryMs ?? FILE_READ_RETRY_MS
  }

  /**
   * Listen to the scheduler and reload the unfinished pipelines: each job's status is read again from its build, a
   * checkout that ended while the coordinator was away is acted on, and a pipeline whose status follows from its
   * builds now is finished.
   */
  async start (): Promise<void> {
    this.stopping = new AbortController()
    this.off = this.scheduler.onBuild(build => { this.buildChanged(build) })
    const active = await this.history.active()
    for (const pipeline of active) this.live.set(pipeline.id, pipeline)
    for (const pipeline of active) await this.recover(pipeline)
  }

  /** Stop listening; a file being read is given up (start() picks its pipeline up again), and every save is written. */
  async stop (): Promise<void> {
    this.off?.()
    this.off = undefined
    this.stopping.abort()
    await Promise.allSettled([...this.work])
    await this.history.flush()
    this.live.clear()
  }

  /** Told of every change of a pipeline (its status, a job's status); the object is the live one: read, do not change. */
  onPipeline (listener: Listener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  async get (id: string): Promise<Pipeline | undefined> {
    return this.live.get(id) ?? await this.history.get(id)
  }

  /** The newest `limit` pipelines, newest first. */
  async list (limit: number): Promise<Pipeline[]> {
    const found = await this.history.list(limit)
    return found.map(p => this.live.get(p.id) ?? p)
  }

  /**
   * Plan a pipeline file and submit every build of it, each after the builds it needs. A bad file (PipelineFileError,
   * naming job, key and line), a bad source or a `build:` input naming no build throws before anything is created.
   */
  async create (init: CreatePipeline): Promise<Pipeline> {
    checkSource(init.source)
    const planned = await this.plan(init.file, init.src, init.source)
    const now = new Date().toISOString()
    const pipeline: Pipeline = {
      id: newPipelineId(),
      status: 'queued',
      source: { ...init.source },
      ...(init.src !== undefined ? { src: init.src } : {}),
      created: now,
      jobs: []
    }
    this.live.set(pipeline.id, pipeline)
    await this.submitAll(pipeline, planned, init.untrusted === true)
    return pipeline
  }

  /**
   * Start a pipeline for a commit of a registered repository. It is created at once (queued, no jobs yet) with its
   * checkout build queued, and returned before that build runs; when the checkout succeeds its `.grid.yml` is
   * planned into this pipeline. Repository credentials are the workers' own (their git configuration).
   */
  async fromCommit (init: CommitPipeline): Promise<Pipeline> {
    const source: PipelineSource = { repo: init.repo, url: init.url, ref: init.ref, commit: init.commit, trigger: init.trigger }
    checkSource(source)
    const job = checkoutJob(source)
    const pipeline: Pipeline = { id: newPipelineId(), status: 'queued', source, created: new Date().toISOString(), jobs: [] }
    this.live.set(pipeline.id, pipeline)
    // Kept before its checkout is queued: a restart in between queues the checkout again instead of losing it.
    await this.history.save(pipeline)
    await this.submitCheckout(pipeline, job)
    return pipeline
  }

  /**
   * Cancel every unfinished build of the pipeline (its checkout too), the last ones first so they end `cancelled`
   * rather than `skipped`. Throws UnknownPipelineError, or PipelineFinishedError for one that already ended.
   */
  async cancel (id: string, by: string = 'an API client'): Promise<Pipeline> {
    const pipeline = await this.get(id)
    if (pipeline === undefined) throw new UnknownPipelineError(`no pipeline ${id}`)
    if (PIPELINE_FINISHED.has(pipeline.status)) throw new PipelineFinishedError(`pipeline ${id} already ${pipeline.status}`)
    pipeline.status = 'cancelled'
    pipeline.finished = new Date().toISOString()
    this.batching.add(pipeline.id)
    try {
      for (const job of [...pipeline.jobs].reverse()) {
        if (job.build !== undefined) await this.cancelBuild(job.build, by)
        // Not queued yet (the file is being planned): submitAll() sees the pipeline ended and queues nothing more.
        else job.status = 'cancelled'
      }
      if (pipeline.checkout !== undefined) await this.cancelBuild(pipeline.checkout, by)
    } finally {
      this.batching.delete(pipeline.id)
    }
    this.finished(pipeline)
    return pipeline
  }

  /** Parse and plan a file for this source: a bad file, or a job naming builds the grid never had, throws here. */
  private async plan (file: string | object, src: string | undefined, source: PipelineSource): Promise<PlannedBuild[]> {
    const branch = source.ref?.replace(/^refs\/heads\//, '')
    const planned = planPipeline(parsePipelineFile(file), { ...(src !== undefined ? { src } : {}), ...(branch !== undefined ? { branch } : {}) })
    for (const build of planned) {
      const named = [...Object.entries(inputBuilds(build.spec)).map(([path, ref]) => [`inputs.${path}`, ref.build]),
        ...(build.spec.after ?? []).map((after, i) => [`after.${i}.build`, after.build])]
      for (const [where, id] of named) {
        if (await this.scheduler.get(id) === undefined) throw new InvalidJobError(`jobs.${build.job}.${where}: there is no build ${id}`)
      }
    }
    return planned
  }

  /**
   * Submit the planned builds in order (needs first), each after the builds of its needs, with the pipeline's
   * repository and ref as their source (what a secret's scope is checked against).
   */
  private async submitAll (pipeline: Pipeline, planned: PlannedBuild[], untrusted = false): Promise<void> {
    pipeline.jobs = planned.map(p => ({ name: p.name, job: p.job, needs: p.needs.map(n => n.name), status: 'queued' }))
    if (planned.length === 0) {
      // Every job was left out (`branches`): nothing to run, nothing failed.
      if (PIPELINE_FINISHED.has(pipeline.status)) return
      pipeline.status = 'succeeded'
      pipeline.finished = new Date().toISOString()
      pipeline.started ??= pipeline.finished
      this.finished(pipeline)
      return
    }
    const ids = new Map<string, string>()
    this.batching.add(pipeline.id)
    try {
      for (const [i, plan] of planned.entries()) {
        const job = pipeline.jobs[i]
        // Cancelled meanwhile: the rest is never submitted.
        if (PIPELINE_FINISHED.has(pipeline.status)) {
          job.status = 'cancelled'
          continue
        }
        const after = plan.needs.map(n => {
          const id = ids.get(n.name)
          if (id === undefined) throw new Error(`planPipeline put ${plan.name} before ${n.name}, which it needs`)
          return { build: id, artifacts: n.artifacts }
        })
        const spec: Job = { ...plan.spec, ...(pipeline.src !== undefined ? { src: pipeline.src } : {}) }
        if (after.length > 0) spec.after = [...(plan.spec.after ?? []), ...after]
        let build: Build
        try {
          build = await this.scheduler.submit(spec, { pipeline: pipeline.id, jobName: plan.name, source: buildSource(pipeline), context: buildContext(pipeline), ...(untrusted ? { untrusted } : {}) })
        } catch (err: any) {
          if (!isGridError(err)) throw err
          // Nothing a check before could catch should get here; if it does, the pipeline says so and stops.
          await this.failWithBuilds(pipeline, `could not queue ${plan.name}: ${err.message}`, 'an error queueing its pipeline')
          return
        }
        ids.set(plan.name, build.id)
        job.build = build.id
        job.status = build.status
        if (build.status === 'running') pipeline.started ??= build.started ?? new Date().toISOString()
        // Cancelled while this one was being queued: it goes too.
        if (PIPELINE_FINISHED.has(pipeline.status) && !FINISHED.has(build.status)) {
          await this.cancelBuild(build.id, 'the cancel of its pipeline')
          job.status = (await this.scheduler.get(build.id))?.status ?? 'cancelled'
        }
      }
    } finally {
      this.batching.delete(pipeline.id)
    }
    this.settle(pipeline)
  }

  private async submitCheckout (pipeline: Pipeline, job: Job): Promise<void> {
    const build = await this.scheduler.submit(job, { pipeline: pipeline.id, jobName: CHECKOUT_JOB, source: buildSource(pipeline), context: buildContext(pipeline) })
    pipeline.checkout = build.id
    // Cancelled while it was being queued: it goes too.
    if (PIPELINE_FINISHED.has(pipeline.status)) await this.cancelBuild(build.id, 'the cancel of its pipeline')
    this.checkoutChanged(pipeline, build)
  }

  /** A build changed: its pipeline's job (or checkout) follows. */
  private buildChanged (build: Build): void {
    if (build.pipeline === undefined) return
    const pipeline = this.live.get(build.pipeline)
    if (pipeline === undefined) return
    // Its jobs are only planned once the checkout succeeded: until then its one build is the checkout (told here
    // before submit() returns its id). After, a job of the file may be called "checkout" too.
    if (build.id === pipeline.checkout || (pipeline.checkout === undefined && pipeline.jobs.length === 0 && build.jobName === CHECKOUT_JOB)) {
      pipeline.checkout = build.id
      this.checkoutChanged(pipeline, build)
      return
    }
    const job = pipeline.jobs.find(j => j.name === build.jobName)
    if (job === undefined || (job.build !== undefined && job.build !== build.id)) return
    job.build = build.id
    if (job.status === build.status) return
    job.status = build.status
    if (build.status === 'running') pipeline.started ??= build.started ?? new Date().toISOString()
    if (!this.batching.has(pipeline.id)) this.settle(pipeline)
  }

  private checkoutChanged (pipeline: Pipeline, build: Build): void {
    if (PIPELINE_FINISHED.has(pipeline.status)) {
      this.changed(pipeline)
      return
    }
    if (build.status === 'running' || build.started !== undefined) pipeline.started ??= build.started ?? new Date().toISOString()
    if (build.status === 'succeeded') {
      this.continueFrom(pipeline, build)
      return
    }
    if (FINISHED.has(build.status)) {
      this.fail(pipeline, checkoutFailure(pipeline, build))
      return
    }
    this.settle(pipeline)
  }

  /** The checkout succeeded: read its `.grid.yml` and plan it into the pipeline, in the background. */
  private continueFrom (pipeline: Pipeline, checkout: Build): void {
    if (this.continuing.has(pipeline.id) || pipeline.jobs.length > 0) return
    this.continuing.add(pipeline.id)
    this.settle(pipeline)
    const done = this.plannedFromCheckout(pipeline, checkout)
      .catch(err => {
        this.log(`pipeline ${pipeline.id}: ${err.message}`)
        if (!this.stopping.signal.aborted && !PIPELINE_FINISHED.has(pipeline.status)) this.fail(pipeline, `could not start its jobs: ${err.message}`)
      })
      .finally(() => {
        this.continuing.delete(pipeline.id)
        this.work.delete(done)
      })
    this.work.add(done)
  }

  private async plannedFromCheckout (pipeline: Pipeline, checkout: Build): Promise<void> {
    const commit = shortCommit(pipeline.source.commit)
    const tar = checkout.artifacts.find(a => a.path === CHECKOUT_TAR)
    const file = checkout.artifacts.find(a => a.path === CHECKOUT_FILE)
    if (file === undefined) return this.fail(pipeline, `commit ${commit} has no .grid.yml at its root`)
    if (tar === undefined) return this.fail(pipeline, `its checkout (build ${checkout.id}) kept no ${CHECKOUT_TAR}`)
    if (file.link !== undefined) return this.fail(pipeline, `.grid.yml of commit ${commit} is a symbolic link (to ${file.link}); the grid reads it only as a file`)
    if (file.size > MAX_PIPELINE_FILE_BYTES) return this.fail(pipeline, `.grid.yml of commit ${commit} is ${file.size} bytes; a pipeline file is at most ${MAX_PIPELINE_FILE_BYTES} bytes`)
    pipeline.src = tar.cid
    let bytes: Uint8Array | undefined
    for (let attempt = 1; bytes === undefined; attempt++) {
      try {
        bytes = await this.readFile(file.cid, MAX_PIPELINE_FILE_BYTES, this.stopping.signal)
      } catch (err: any) {
        if (this.stopping.signal.aborted) return
        if (err instanceof PipelineFileTooLargeError || attempt >= FILE_READ_ATTEMPTS) {
          return this.fail(pipeline, `could not read .grid.yml of commit ${commit} (${file.cid}): ${err.message}`)
        }
        await abortableSleep(this.fileRetryMs * 2 ** (attempt - 1), this.stopping.signal)
        if (this.stopping.signal.aborted) return
      }
    }
    // Cancelled while the file was read, or the coordinator is stopping (start() picks it up again): nothing to start now.
    if (PIPELINE_FINISHED.has(pipeline.status) || this.stopping.signal.aborted) return
    let text: string
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    } catch {
      return this.fail(pipeline, `.grid.yml of commit ${commit} is not UTF-8 text`)
    }
    let planned: PlannedBuild[]
    try {
      planned = await this.plan(text, tar.cid, pipeline.source)
    } catch (err: any) {
      if (!isGridError(err)) throw err
      return this.fail(pipeline, `.grid.yml of commit ${commit}: ${err.message}`)
    }
    if (PIPELINE_FINISHED.has(pipeline.status)) return
    // Its jobs are set from here: from now on the pipeline's status follows them.
    this.continuing.delete(pipeline.id)
    await this.submitAll(pipeline, planned)
  }

  /** A pipeline read back after a restart: what happened to its builds while the coordinator was away. */
  private async recover (pipeline: Pipeline): Promise<void> {
    if (pipeline.jobs.length === 0) {
      if (pipeline.checkout === undefined) {
        // Stopped between keeping the pipeline and queueing its checkout.
        // Only a pushed or polled commit is checked out; `grid run` and the API brought their own source.
        if ((pipeline.source.trigger === 'push' || pipeline.source.trigger === 'poll') && pipeline.source.commit !== undefined) await this.submitCheckout(pipeline, checkoutJob(pipeline.source))
        else this.fail(pipeline, 'the coordinator stopped before its builds were queued')
        return
      }
      const checkout = await this.scheduler.get(pipeline.checkout)
      if (checkout === undefined) this.fail(pipeline, `its checkout (build ${pipeline.checkout}) is gone from the grid's history`)
      else this.checkoutChanged(pipeline, checkout)
      return
    }
    for (const job of pipeline.jobs) {
      if (job.build === undefined) continue
      const build = await this.scheduler.get(job.build)
      job.status = build?.status ?? 'lost'
      if (build?.started !== undefined) pipeline.started ??= build.started
    }
    if (pipeline.jobs.some(j => j.build === undefined)) {
      // Stopped halfway through queueing them: the rest cannot be queued without the file, so it ends here.
      await this.failWithBuilds(pipeline, 'the coordinator stopped while it queued the builds of this pipeline', 'a coordinator restart')
      return
    }
    this.settle(pipeline)
  }

  /** End a pipeline `failed` for `error`, cancelling its unfinished builds; jobs never queued end `skipped`. */
  private async failWithBuilds (pipeline: Pipeline, error: string, by: string): Promise<void> {
    pipeline.status = 'failed'
    pipeline.error = error
    pipeline.finished = new Date().toISOString()
    this.log(`pipeline ${pipeline.id} failed: ${error}`)
    this.batching.add(pipeline.id)
    try {
      for (const job of [...pipeline.jobs].reverse()) {
        if (job.build !== undefined) await this.cancelBuild(job.build, by)
        else job.status = 'skipped'
      }
    } finally {
      this.batching.delete(pipeline.id)
    }
    this.finished(pipeline)
  }

  private async cancelBuild (id: string, by: string): Promise<void> {
    const build = await this.scheduler.get(id)
    if (build === undefined || FINISHED.has(build.status)) return
    try {
      await this.scheduler.cancel(id, by)
    } catch (err) {
      // Ended on its own meanwhile.
      if (!(err instanceof BuildFinishedError)) throw err
    }
  }

  /** End a pipeline `failed` without its jobs deciding it (a failed checkout, a bad file): `error` says why. */
  private fail (pipeline: Pipeline, error: string): void {
    if (PIPELINE_FINISHED.has(pipeline.status)) return
    pipeline.status = 'failed'
    pipeline.error = error
    pipeline.finished = new Date().toISOString()
    this.log(`pipeline ${pipeline.id} failed: ${error}`)
    this.finished(pipeline)
  }

  /** Recompute the status from the jobs, then keep and tell. */
  private settle (pipeline: Pipeline): void {
    if (!PIPELINE_FINISHED.has(pipeline.status)) {
      pipeline.status = pipelineStatus(pipeline)
      if (PIPELINE_FINISHED.has(pipeline.status)) {
        pipeline.finished = new Date().toISOString()
        pipeline.started ??= pipeline.finished
        this.finished(pipeline)
        return
      }
    }
    this.changed(pipeline)
  }

  /** A finished pipeline lives on in history only: every build of it has ended, so no event of theirs changes it. */
  private finished (pipeline: Pipeline): void {
    this.live.delete(pipeline.id)
    this.changed(pipeline)
  }

  private changed (pipeline: Pipeline): void {
    this.history.save(pipeline).catch(err => { this.log(`could not save pipeline ${pipeline.id}: ${err.message}`) })
    for (const listener of this.listeners) listener(pipeline)
  }
}

/**
 * A pipeline's status from its builds: queued until one of them (the checkout too) runs, then running; once every
 * job's build ended, succeeded if all succeeded, else failed (a skipped build did not succeed). No jobs yet means
 * the checkout is still to run or its file to be planned. Cancelling, and failing for a reason of the pipeline's
 * own (a bad file), are not decided here.
 */
export function pipelineStatus (pipeline: Pick<Pipeline, 'jobs' | 'started'>): PipelineStatus {
  const waiting = pipeline.started !== undefined ? 'running' : 'queued'
  if (pipeline.jobs.length === 0 || !pipeline.jobs.every(j => FINISHED.has(j.status))) return waiting
  return pipeline.jobs.every(j => j.status === 'succeeded') ? 'succeeded' : 'failed'
}

/**
 * What a secret's scope is checked against for a pipeline's builds: its registered repository (or none) and its ref
 * as the pipeline has it (`refs/heads/main`). Only a registered repository's ref counts: the grid fetched that commit
 * from the registered URL for a signed push or its own poll, while the ref of `grid run` or the API is only what the
 * client said, so a secret scoped to a branch is not theirs to claim.
 */
function buildSource (pipeline: Pipeline): BuildSource {
  const { repo, ref } = pipeline.source
  return repo !== null && ref !== undefined ? { repo, ref } : { repo }
}

/** The commit and ref a pipeline names, for its builds' GRID_COMMIT and GRID_REF. */
function buildContext (pipeline: Pipeline): { commit?: string, ref?: string } {
  const { commit, ref } = pipeline.source
  return { ...(commit !== undefined ? { commit } : {}), ...(ref !== undefined ? { ref } : {}) }
}

/** A source a pipeline can be started from, or InvalidPipelineSourceError saying what is wrong with it. */
function checkSource (source: PipelineSource): void {
  const text = (what: string, value: string | undefined): void => {
    if (value === undefined) return
    if (value.length > MAX_SOURCE_CHARS) throw new InvalidPipelineSourceError(`${what} is at most ${MAX_SOURCE_CHARS} characters`)
    if (/[\x00-\x1f\x7f]/.test(value)) throw new InvalidPipelineSourceError(`${what} may not contain a control character`)
  }
  text('url', source.url)
  text('ref', source.ref)
  if (source.url.startsWith('-')) throw new InvalidPipelineSourceError('url may not start with "-" (git would read it as an option)')
  if (source.ref !== undefined && (source.ref === '' || source.ref.startsWith('-'))) throw new InvalidPipelineSourceError('ref must be a ref name such as refs/heads/main')
  if (source.commit !== undefined && !COMMIT_PATTERN.test(source.commit)) throw new InvalidPipelineSourceError('commit must be a full commit id (40 or 64 hexadecimal digits)')
}

/**
 * The checkout build of a commit: a shallow fetch of exactly that commit into `tree/` (GitHub and git's protocol v2
 * serve a commit by its id; a server that refuses gets the ref fetched instead and the commit looked for in it),
 * a check that `.grid.yml` is there, and a reproducible tar of the tree without `.git` (sorted, times and owners
 * fixed, so one commit always makes one CID). It needs a worker with git; credentials are that worker's git config.
 */
export function checkoutJob (source: PipelineSource): Job {
  return parseJob({
    name: CHECKOUT_JOB,
    requires: { git: '*' },
    env: {
      GRID_REPO_URL: source.url,
      GRID_REF: source.ref ?? '',
      GRID_COMMIT: source.commit ?? '',
      // A worker without credentials for the repository fails at once instead of waiting for a password.
      GIT_TERMINAL_PROMPT: '0'
    },
    timeout: CHECKOUT_TIMEOUT_S,
    // One step, not three: each step costs its own process, log and seal, a fifth of a push's way to its first job.
    // Its exit code says which part failed (checkoutFailure).
    steps: [{ name: 'checkout', run: CHECKOUT_STEP }],
    artifacts: [CHECKOUT_TAR, CHECKOUT_FILE]
  })
}

/** The checkout step's exit codes past a failed fetch (any other code): no `.grid.yml`, or the tar failed. */
const NO_FILE_EXIT = 3
const TAR_EXIT = 4

const CHECKOUT_STEP = `set -eu
git -c init.defaultBranch=checkout init -q tree
if ! refused=$(git -C tree fetch -q --depth 1 --no-tags -- "$GRID_REPO_URL" "$GRID_COMMIT" 2>&1); then
  if [ -z "$GRID_REF" ]; then printf '%s\\n' "$refused" >&2; exit 1; fi
  printf 'fetching commit %s by its id failed (%s): fetching %s instead\\n' "$GRID_COMMIT" "$(printf '%s' "$refused" | tail -n 1)" "$GRID_REF"
  git -C tree fetch -q --no-tags -- "$GRID_REPO_URL" "$GRID_REF"
  if ! git -C tree cat-file -e "$GRID_COMMIT^{commit}" 2>/dev/null; then
    echo "$GRID_REF of $GRID_REPO_URL does not lead to commit $GRID_COMMIT (was it force-pushed away?)" >&2
    exit 1
  fi
fi
git -C tree -c advice.detachedHead=false checkout -q "$GRID_COMMIT"
echo "fetched commit $GRID_COMMIT"
if [ ! -f tree/.grid.yml ]; then echo "commit $GRID_COMMIT has no .grid.yml at its root" >&2; exit ${NO_FILE_EXIT}; fi
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --exclude=./.git -cf src.tar -C tree . || exit ${TAR_EXIT}`

/** Why a checkout that did not succeed ends its pipeline, in one sentence. */
function checkoutFailure (pipeline: Pipeline, build: Build): string {
  const commit = shortCommit(pipeline.source.commit)
  const code = build.status === 'failed' ? build.steps[0]?.exitCode : undefined
  if (code === NO_FILE_EXIT) return `commit ${commit} has no .grid.yml at its root`
  if (code === TAR_EXIT) return `could not tar the tree of commit ${commit} (the log of build ${build.id} says why)`
  if (code !== undefined && code !== 0) return `could not fetch commit ${commit} from ${pipeline.source.url} (the log of build ${build.id} says why)`
  return `its checkout (build ${build.id}) ended ${build.status}${build.error !== undefined ? `: ${build.error}` : ''}`
}

const shortCommit = (commit: string | undefined): string => commit?.slice(0, 12) ?? '(none)'

async function abortableSleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const timer = setTimeout(done, ms)
    function done (): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

// A build as the coordinator records it and the HTTP API serves it (listed in the README and docs/job.md).
import type { Job } from './job.ts'
import { MAX_CACHE_KEY_CHARS, MAX_JOB_CACHES } from './job.ts'

export const BUILD_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'timeout', 'lost', 'skipped'] as const
export type BuildStatus = typeof BUILD_STATUSES[number]
export type AttemptOutcome = 'succeeded' | 'failed' | 'lost' | 'cancelled' | 'timeout'
export type Capabilities = Record<string, string>

export interface Attempt {
  /** Fencing token: reports for an attempt that is no longer the build's current one are refused. */
  id: string
  /** The worker's peer ID: the only place a worker's identity is kept. */
  worker: string
  /**
   * Whether that worker proved, when it joined, that it holds the trusted join code (grid/trust.ts): only such a
   * worker is given secrets. Absent from records made before trust existed.
   */
  trusted?: boolean
  capabilities: Capabilities
  started: string
  finished?: string
  outcome?: AttemptOutcome
  /** Why the attempt ended as it did, in one sentence (for example "heartbeats missed for 5 s"). */
  reason?: string
  /** Log ids of this attempt's steps, so a lost attempt's output stays readable. */
  logs: string[]
}

export interface StepRecord {
  name: string
  exitCode?: number
  /** Named by the coordinator before the step runs, so anyone can tail it while it grows. */
  log: string
  logCid?: string
  started?: string
  finished?: string
}

export interface Build {
  id: string
  status: BuildStatus
  job: Job
  /** The pipeline this build belongs to, and its name there (`test (cflags=-O0)`); absent for a lone build. */
  pipeline?: string
  jobName?: string
  /**
   * Where the build's code came from, which a secret's scope is checked against: the registered repository (null
   * for none) and the ref, from its pipeline. Absent for a lone build (`{ repo: null }`).
   */
  source?: BuildSource
  /**
   * What a pipeline's build was made from, for its steps' environment (GRID_COMMIT, GRID_REF): the commit and ref
   * its pipeline names. Informational only: a `grid run` or API pipeline's ref is what its client said (scopes use
   * `source`, which holds only refs the grid fetched itself).
   */
  context?: { commit?: string, ref?: string }
  /**
   * True when it was submitted by a member holding only the ordinary join code: it never runs on a trusted worker
   * and gets no secret. Builds from the HTTP API (with the token), from registered repositories and from holders
   * of the trusted join code are trusted (the field is absent).
   */
  untrusted?: true
  created: string
  started?: string
  finished?: string
  /** While queued: why no worker has taken it yet (for example "no worker has gpu=*", "waiting for build X (running)"). */
  waiting?: string
  /** One sentence, when something other than a step's exit code decided the outcome (an input's build failed, a timeout). */
  error?: string
  /**
   * The build whose outputs this one took instead of running (job `reuse: true`, coordinator/reuse.ts): its
   * artifacts and steps (exit codes, log ids, log CIDs) are that build's, with no attempt and no slot.
   */
  reused?: string
  /**
   * What the job's caches did in the last attempt (docs/job.md, "Caches"), in the order it happened: each cache's
   * restore (`restored`, `restored-by-prefix`, `missed`) and then, when its exact key had no entry, its save
   * (`saved`, `not-saved`). At most MAX_BUILD_CACHES records; absent while no attempt reported any.
   */
  caches?: CacheRecord[]
  /** Things that went wrong without deciding the outcome (an artifact skipped), one sentence each. */
  warnings?: string[]
  attempts: Attempt[]
  steps: StepRecord[]
  artifacts: ArtifactRecord[]
}

/** What a secret's scope is checked against: a registered repository's id (null for none) and a ref. */
export interface BuildSource {
  repo: string | null
  ref?: string
}

/**
 * A file (or symbolic link) a build kept. `mode` holds the permission bits (0o755 = 493 for an executable);
 * `link` is the target of a symbolic link, whose content is that target's text (as git stores a link).
 * `evicted`: when the grid's last copy was evicted for room (absent while it is kept).
 */
export interface ArtifactRecord {
  path: string
  cid: string
  size: number
  sha256: string
  mode?: number
  link?: string
  evicted?: string
}

export const CACHE_OUTCOMES = ['restored', 'restored-by-prefix', 'missed', 'saved', 'not-saved'] as const
export type CacheOutcome = typeof CACHE_OUTCOMES[number]

/**
 * One outcome of one of a build's caches. `key`: the cache's key as filled in on the worker. `restored`: the entry
 * of exactly that key was unpacked; `restored-by-prefix`: the entry `from` (found by a `restore` prefix) was;
 * `missed`: nothing was restored (`why` says so when it was not a plain miss: a refused or failed restore);
 * `saved`: the paths were kept under `key`; `not-saved`: they were not (`why`). `size`: bytes of the entry
 * restored or saved.
 */
export interface CacheRecord {
  key: string
  outcome: CacheOutcome
  from?: string
  size?: number
  why?: string
}

/**
 * Cache records a build keeps: a restore and a save for each of a job's at most MAX_JOB_CACHES caches. The
 * coordinator keeps the first this many of what a worker reports and drops the rest.
 */
export const MAX_BUILD_CACHES = 2 * MAX_JOB_CACHES

/** A cache record's `key` and `from` are cut to this many characters (a filled-in key is at most that long). */
export const MAX_CACHE_RECORD_KEY_CHARS = MAX_CACHE_KEY_CHARS

/** A cache record's `why` is cut to this many characters (one sentence; the log line says it in full). */
export const MAX_CACHE_WHY_CHARS = 500

/** `skipped`: a build that ran after others (job `after`) one of which did not succeed; it never took a slot. */
export const FINISHED: ReadonlySet<BuildStatus> = new Set(['succeeded', 'failed', 'cancelled', 'timeout', 'lost', 'skipped'])

export const PIPELINE_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const
export type PipelineStatus = typeof PIPELINE_STATUSES[number]
export const PIPELINE_FINISHED: ReadonlySet<PipelineStatus> = new Set(['succeeded', 'failed', 'cancelled'])

/** What started a pipeline (CONTRACT.md, Pipelines). `repo` is the registered repository's id, null for `grid run` and the API. */
export interface PipelineSource {
  repo: string | null
  url: string
  ref?: string
  commit?: string
  trigger: 'push' | 'poll' | 'run' | 'api'
}

/** One build of a pipeline: a job of the file, or one matrix combination of it. */
export interface PipelineJob {
  /** `build`, or `test (cflags=-O0)` for a matrix combination. */
  name: string
  /** The job's key in the file. */
  job: string
  /** Names (PipelineJob.name) of the builds this one runs after. */
  needs: string[]
  build?: string
  status: BuildStatus
}

/**
 * A pipeline: a DAG of builds from a `.grid.yml`. `checkout` is the build that fetched the commit and put its tree
 * (pipelines from a repository); `error` says why a pipeline failed without its jobs deciding it (a bad file, a
 * failed checkout).
 */
export interface Pipeline {
  id: string
  status: PipelineStatus
  source: PipelineSource
  src?: string
  created: string
  started?: string
  finished?: string
  checkout?: string
  error?: string
  jobs: PipelineJob[]
}

/** Longest label a build gets from its command (a list or a terminal line stays one line). */
export const MAX_LABEL_CHARS = 60

/**
 * What to call a build in a list, the timeline and the CLI: its job's `name`, else what it runs (the first line of
 * its first step's command, shortened to MAX_LABEL_CHARS with an ellipsis), so builds from `grid submit --run`
 * do not all read "run". web/ui/common.js spells the same rule for the browser.
 */
export function buildLabel (job: { name?: string, steps: Array<{ run: string }> }): string {
  if (job.name !== undefined && job.name.trim() !== '') return job.name
  const line = (job.steps[0]?.run ?? '').split('\n').map(l => l.trim()).find(l => l !== '') ?? ''
  return line.length > MAX_LABEL_CHARS ? `${line.slice(0, MAX_LABEL_CHARS - 1)}…` : line
}

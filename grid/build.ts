// A build as the coordinator records it and the HTTP API serves it (see CONTRACT.md).
import { randomBytes } from 'node:crypto'
import type { Job } from './job.ts'

export const BUILD_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'timeout', 'lost'] as const
export type BuildStatus = typeof BUILD_STATUSES[number]
export type AttemptOutcome = 'succeeded' | 'failed' | 'lost' | 'cancelled' | 'timeout'
export type Capabilities = Record<string, string>

export interface Attempt {
  /** Fencing token: reports for an attempt that is no longer the build's current one are refused. */
  id: string
  /** The worker's peer ID: the only place a worker's identity is kept. */
  worker: string
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
  created: string
  started?: string
  finished?: string
  /** While queued: why no worker has taken it yet (for example "no worker has gpu=*", "waiting for build X (running)"). */
  waiting?: string
  /** One sentence, when something other than a step's exit code decided the outcome (an input's build failed, a timeout). */
  error?: string
  /** Things that went wrong without deciding the outcome (an artifact skipped), one sentence each. */
  warnings?: string[]
  attempts: Attempt[]
  steps: StepRecord[]
  artifacts: ArtifactRecord[]
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

export const FINISHED: ReadonlySet<BuildStatus> = new Set(['succeeded', 'failed', 'cancelled', 'timeout', 'lost'])

let lastMillis = 0

/** Build ids sort by creation time (LevelDB lists history newest first by key) and stay unguessable. */
export function newBuildId (now: number = Date.now()): string {
  lastMillis = Math.max(now, lastMillis + 1)
  return lastMillis.toString(36).padStart(9, '0') + randomBytes(4).toString('hex')
}

/** A log id is made up front from the attempt and step, so it names the log before any byte exists. */
export function logId (attemptId: string, step: number): string {
  return `${attemptId}.s${step}`
}

export function attemptId (buildId: string, attemptNumber: number): string {
  return `${buildId}.a${attemptNumber}`
}

/** Build ids and log ids are `[0-9a-z.]`: checked before they reach a database key or a protocol. */
export const ID_PATTERN = /^[0-9a-z]{9,40}(\.a[0-9]{1,4}(\.s[0-9]{1,4})?)?$/

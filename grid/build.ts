// A build as the coordinator records it and the HTTP API serves it (listed in the README and docs/job.md).
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

// What a user may ask the grid to build, validated strictly: an unknown key is a typo, not something to ignore.
import { z } from 'zod'
import {
  DEFAULT_KILL_GRACE_S, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, MAX_ARTIFACT_GLOBS, MAX_COMMAND_BYTES, MAX_INPUTS, MAX_JOB_BYTES, MAX_KILL_GRACE_S, MAX_PRIORITY, MAX_RETRIES,
  MAX_STEPS, MAX_TIMEOUT_S, MIN_PRIORITY
} from './constants.ts'
import { MAX_LOG_BYTES } from './constants.ts'
import { GridError } from '../net/errors.ts'

/**
 * A string the worker hands to the operating system (a command, an environment value, a path). The kernel takes
 * C strings, so a NUL byte would make spawn() or open() throw on the worker after the build was accepted; and one
 * argument or environment string may be at most MAX_COMMAND_BYTES of UTF-8 (Linux refuses more than 128 KiB with E2BIG).
 */
const osString = (max: number = MAX_COMMAND_BYTES) => z.string()
  .refine(s => !s.includes('\0'), 'may not contain a NUL byte (the operating system cannot pass one)')
  .refine(s => Buffer.byteLength(s) <= max, `must be at most ${max} bytes`)

const capabilityKey = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'capability names are 1-64 letters, digits or _.:-')
const capabilityValue = z.string().max(256)

export const stepSchema = z.strictObject({
  name: osString(200).pipe(z.string().min(1)).optional(),
  run: z.string().min(1, 'a step needs a command in "run"').pipe(osString())
})

/** A path or glob inside the work dir: relative, and never climbing out of it. */
const insideWorkDir = z.string().min(1).pipe(osString(1000)).refine(
  p => !p.startsWith('/') && !p.split(/[\\/]/).includes('..'),
  'paths are relative to the work dir and may not contain ".."'
)
const contentName = z.string().regex(/^b[a-z2-7]{20,100}$/, 'expected a CID (as grid put prints it)')
const inputSource = z.union([
  contentName,
  z.string().regex(/^build:[0-9a-z]{9,40}\/[^\0]+$/, 'expected a CID or build:BUILD_ID/ARTIFACT_PATH')
])

export const jobSchema = z.strictObject({
  name: osString(200).optional(),
  requires: z.record(capabilityKey, capabilityValue).default({}),
  steps: z.array(stepSchema).min(1, 'a job needs at least one step').max(MAX_STEPS),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment names are letters, digits and _'), osString()).default({}),
  timeout: z.number().int().positive().max(MAX_TIMEOUT_S).default(DEFAULT_TIMEOUT_S),
  retries: z.number().int().min(0).max(MAX_RETRIES).default(DEFAULT_RETRIES),
  /** A tar (by CID) unpacked into the work dir before the first step. */
  src: contentName.optional(),
  /** Files placed in the work dir first: content by CID, or another build's artifact (waiting for it to succeed). */
  inputs: z.record(insideWorkDir, inputSource).refine(i => Object.keys(i).length <= MAX_INPUTS, `at most ${MAX_INPUTS} inputs`).default({}),
  /** Globs, relative to the work dir, of files to keep after the steps. */
  artifacts: z.array(insideWorkDir).max(MAX_ARTIFACT_GLOBS).default([]),
  /** Bytes of output kept per step (DEFAULT_LOG_LIMIT_BYTES when absent); past it one line says so and the rest is dropped. */
  logLimit: z.number({ error: 'must be a number of bytes' }).int('must be a whole number of bytes')
    .positive('must be at least 1 byte').max(MAX_LOG_BYTES, `must be at most ${MAX_LOG_BYTES} bytes (1 GiB, the grid's ceiling on one log)`).optional(),
  /** Higher runs first; equal priorities run oldest first. */
  priority: z.number().int().min(MIN_PRIORITY).max(MAX_PRIORITY).default(0),
  /** Seconds between SIGTERM and SIGKILL when a step is cancelled, times out or leaves processes behind (Buildkite gives 10 s). */
  killGrace: z.number().int().min(0).max(MAX_KILL_GRACE_S).default(DEFAULT_KILL_GRACE_S)
})

/** A job as submitted (defaults optional). */
export type JobInput = z.input<typeof jobSchema>
/** A job as stored on a build: every default filled in, every step named. */
export type Job = Omit<z.output<typeof jobSchema>, 'steps'> & { steps: Array<{ name: string, run: string }> }

export class InvalidJobError extends GridError {
  name = 'InvalidJobError'
}

/**
 * Validate a job, or throw InvalidJobError with one clear sentence naming the first problem. Every path a job
 * arrives by (HTTP, the CLI over libp2p) goes through here, so the size limit holds on each.
 */
export function parseJob (input: unknown): Job {
  const bytes = Buffer.byteLength(JSON.stringify(input) ?? '')
  if (bytes > MAX_JOB_BYTES) throw new InvalidJobError(`job: a job is at most ${MAX_JOB_BYTES} bytes (this one is ${bytes})`)
  const parsed = jobSchema.safeParse(input)
  if (!parsed.success) {
    // An unknown key is most likely a typo of the field zod also reports missing: name what the user typed.
    const issue = parsed.error.issues.find(i => i.code === 'unrecognized_keys') ?? parsed.error.issues[0]
    const where = issue.path.length > 0 ? issue.path.join('.') : 'job'
    // A bad record key carries our own message one level down.
    const message = issue.code === 'invalid_key' ? issue.issues[0]?.message ?? issue.message : issue.message
    throw new InvalidJobError(`${where}: ${message}`)
  }
  const job = parsed.data
  return { ...job, steps: job.steps.map((s, i) => ({ name: s.name ?? `step ${i + 1}`, run: s.run })) }
}

/** `requires` holds when every key equals the worker's capability, or is `"*"` and present. */
export function satisfies (requires: Record<string, string>, capabilities: Record<string, string>): boolean {
  for (const [key, want] of Object.entries(requires)) {
    const have = capabilities[key]
    if (have === undefined || (want !== '*' && want !== have)) return false
  }
  return true
}

/** Why a job cannot run on any of these capability sets, in one phrase; undefined if one fits. */
export function unmetRequirement (requires: Record<string, string>, pool: Array<Record<string, string>>): string | undefined {
  if (pool.length === 0) return 'no worker is connected'
  if (pool.some(c => satisfies(requires, c))) return undefined
  for (const [key, want] of Object.entries(requires)) {
    if (!pool.some(c => satisfies({ [key]: want }, c))) {
      return want === '*' ? `no worker has capability ${key}` : `no worker has ${key}=${want}`
    }
  }
  return 'no single worker has every required capability'
}

/**
 * The `build:ID/PATH` inputs of a job, by the work-dir path they go to: `{ build: ID, artifact: PATH }`.
 * CID inputs are left out (they need nothing to happen first).
 */
export function inputBuilds (job: Pick<Job, 'inputs'>): Record<string, { build: string, artifact: string }> {
  const refs: Record<string, { build: string, artifact: string }> = {}
  for (const [path, from] of Object.entries(job.inputs ?? {})) {
    if (!from.startsWith('build:')) continue
    const slash = from.indexOf('/')
    refs[path] = { build: from.slice('build:'.length, slash), artifact: from.slice(slash + 1) }
  }
  return refs
}

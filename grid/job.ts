// What a user may ask the grid to build, validated strictly: an unknown key is a typo, not something to ignore.
import { z } from 'zod'
import {
  DEFAULT_KILL_GRACE_S, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, MAX_ARTIFACT_GLOBS, MAX_CAPABILITY_VALUE_CHARS, MAX_COMMAND_BYTES, MAX_INPUTS, MAX_JOB_BYTES,
  MAX_KILL_GRACE_S, MAX_LOG_BYTES, MAX_PRIORITY, MAX_RETRIES, MAX_STEPS, MAX_TIMEOUT_S, MIN_PRIORITY
} from './constants.ts'
import { ARTIFACT_REF_PATTERN, parseArtifactRef } from './ids.ts'
import type { ArtifactRef } from './ids.ts'
import { GridError } from '../net/errors.ts'

/**
 * A string the worker hands to the operating system (a command, an environment value, a path). The kernel takes
 * C strings, so a NUL byte would make spawn() or open() throw on the worker after the build was accepted; and one
 * argument or environment string may be at most MAX_COMMAND_BYTES of UTF-8 (Linux refuses more than 128 KiB with E2BIG).
 */
const osString = (max: number = MAX_COMMAND_BYTES) => z.string()
  .refine(s => !s.includes('\0'), 'may not contain a NUL byte (the operating system cannot pass one)')
  .refine(s => Buffer.byteLength(s) <= max, `must be at most ${max} bytes`)

/** A capability's name, in a job's `requires`, a worker's `--cap` and its hello alike. */
export const CAPABILITY_KEY_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/
export const capabilityKey = z.string().regex(CAPABILITY_KEY_PATTERN, 'capability names are 1-64 letters, digits or _.:-')
export const capabilityValue = z.string().max(MAX_CAPABILITY_VALUE_CHARS)

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
  z.string().regex(ARTIFACT_REF_PATTERN, 'expected a CID or build:BUILD_ID/ARTIFACT_PATH')
], { error: 'expected a CID (as grid put prints it) or build:BUILD_ID/ARTIFACT_PATH' })
/** A required value: a worker announces no empty capability, so an empty one could never be met; "*" asks for the key alone. */
const requiredValue = capabilityValue.pipe(z.string().min(1, 'an empty value can never be met: use "*" to require only that the worker has the capability'))

export const jobSchema = z.strictObject({
  name: osString(200).optional(),
  requires: z.record(capabilityKey, requiredValue).default({}),
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
    // A key with a control character (a NUL in an env name) is quoted, so the line shows it instead of sending it to the terminal.
    const where = issue.path.length > 0 ? issue.path.map(p => typeof p === 'string' && /[\x00-\x1f\x7f]/.test(p) ? JSON.stringify(p) : String(p)).join('.') : 'job'
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
export function inputBuilds (job: Pick<Job, 'inputs'>): Record<string, ArtifactRef> {
  const refs: Record<string, ArtifactRef> = {}
  for (const [path, from] of Object.entries(job.inputs ?? {})) {
    const ref = parseArtifactRef(from)
    if (ref !== undefined) refs[path] = ref
  }
  return refs
}

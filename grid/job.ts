// What a user may ask the grid to build, validated strictly: an unknown key is a typo, not something to ignore.
import { z } from 'zod'
import {
  DEFAULT_KILL_GRACE_S, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, MAX_ARTIFACT_GLOBS, MAX_CAPABILITY_VALUE_CHARS, MAX_COMMAND_BYTES, MAX_INPUTS, MAX_JOB_BYTES,
  MAX_AFTER_BUILDS, MAX_JOB_SECRETS, MAX_KILL_GRACE_S, MAX_LOG_BYTES, MAX_PRIORITY, MAX_RETRIES, MAX_SECRET_NAME_CHARS, MAX_STEPS, MAX_TIMEOUT_S,
  MIN_PRIORITY
} from './constants.ts'
import { ARTIFACT_REF_PATTERN, BUILD_ID_PATTERN, parseArtifactRef } from './ids.ts'
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

/**
 * A secret's name, in a job's `secrets` and the grid's secret store alike: it becomes the name of an environment
 * variable of the job's steps, so it is spelled like one, upper case (GitHub's and GitLab's rule).
 */
export const SECRET_NAME_PATTERN = /^[A-Z_][A-Z0-9_]*$/
export const secretName = z.string()
  .max(MAX_SECRET_NAME_CHARS, `a secret's name is at most ${MAX_SECRET_NAME_CHARS} characters`)
  .regex(SECRET_NAME_PATTERN, 'secret names are upper-case letters, digits and _, not starting with a digit')

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
/** Caches a job may name; past this the job is refused (each costs a lookup and a tar before and after the steps). */
export const MAX_JOB_CACHES = 8
/** Paths one cache saves; past this the job is refused (tar a common parent instead). */
export const MAX_CACHE_PATHS = 32
/** `restore` prefixes one cache tries in order; past this the job is refused. */
export const MAX_CACHE_RESTORE_KEYS = 8
/** Characters of a cache key or restore prefix, before and after substitution; a longer one is refused (at submission, or by the worker once substituted). */
export const MAX_CACHE_KEY_CHARS = 512

/**
 * The `${{ … }}` expressions a cache key may hold: `hashFiles('GLOB', …)` and `capabilities.K` (the worker fills
 * them in), `matrix.K` (a pipeline file fills it in before the job is validated, so one left here is refused).
 */
export const CACHE_EXPRESSION = /\$\{\{\s*(.*?)\s*\}\}/g
const HASH_FILES_CALL = /^hashFiles\(\s*('[^']*'(\s*,\s*'[^']*')*)\s*\)$/
const CAPABILITY_REFERENCE = /^capabilities\.([A-Za-z0-9_.:-]{1,64})$/

/** A cache key's expression, parsed: what the worker has to compute for it. */
export type CacheExpression = { t: 'hashFiles', globs: string[] } | { t: 'capability', key: string }

/**
 * Parse the inside of one `${{ … }}` of a cache key (`hashFiles('a', 'b/**')`, `capabilities.node`), or throw
 * InvalidJobError with one sentence saying what is accepted. Globs are relative to the work dir, without `..`.
 */
export function parseCacheExpression (inner: string): CacheExpression {
  const hash = HASH_FILES_CALL.exec(inner)
  if (hash !== null) {
    const globs = [...hash[1].matchAll(/'([^']*)'/g)].map(m => m[1])
    for (const glob of globs) {
      if (glob === '' || glob.startsWith('/') || glob.split(/[\\/]/).includes('..')) throw new InvalidJobError(`hashFiles takes globs relative to the work dir, without "..": ${JSON.stringify(glob)} is not one`)
    }
    return { t: 'hashFiles', globs }
  }
  const capability = CAPABILITY_REFERENCE.exec(inner)
  if (capability !== null) return { t: 'capability', key: capability[1] }
  if (/^matrix\./.test(inner)) throw new InvalidJobError(`\${{ ${inner} }} is filled in only in a pipeline file with a matrix`)
  throw new InvalidJobError(`\${{ ${inner.slice(0, 100)} }} is not an expression a cache key takes (hashFiles('GLOB', …) or capabilities.NAME)`)
}

/** A cache key or restore prefix: one line, at most MAX_CACHE_KEY_CHARS, every `${{ … }}` one the worker can fill in. */
const cacheKey = z.string().min(1, 'a cache key may not be empty').max(MAX_CACHE_KEY_CHARS, `a cache key is at most ${MAX_CACHE_KEY_CHARS} characters`)
  .refine(k => !/[\x00-\x1f\x7f]/.test(k), 'a cache key is one line, without control characters')
  .superRefine((key, ctx) => {
    for (const m of key.matchAll(CACHE_EXPRESSION)) {
      try {
        parseCacheExpression(m[1])
      } catch (err: any) {
        ctx.addIssue({ code: 'custom', message: err.issues?.[0]?.message ?? err.message })
      }
    }
  })

export const cacheSchema = z.strictObject({
  /** The exact key to restore, and to save under when it had no entry. */
  key: cacheKey,
  /** Paths (files, directories, links) inside the work dir to save. */
  paths: z.array(insideWorkDir).min(1, 'a cache needs at least one path').max(MAX_CACHE_PATHS, `at most ${MAX_CACHE_PATHS} paths per cache`),
  /** Prefixes tried in order when the exact key has no entry: the newest entry starting with one is restored. */
  restore: z.array(cacheKey).max(MAX_CACHE_RESTORE_KEYS, `at most ${MAX_CACHE_RESTORE_KEYS} restore prefixes`).optional(),
  /** `success` (default): saved after steps that all succeeded; `always`: after a failed step too. */
  save: z.enum(['success', 'always']).optional()
})

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
  /**
   * Builds this one runs after: it is dispatched once each succeeded, with their artifacts placed in the work dir
   * first unless `artifacts` is false; if one did not succeed, this build ends `skipped` without taking a slot.
   * Pipelines fill it from `needs`.
   */
  after: z.array(z.strictObject({
    build: z.string().regex(BUILD_ID_PATTERN, 'expected a build id'),
    artifacts: z.boolean().default(true)
  })).max(MAX_AFTER_BUILDS).optional(),
  /** Globs, relative to the work dir, of files to keep after the steps. */
  artifacts: z.array(insideWorkDir).max(MAX_ARTIFACT_GLOBS).default([]),
  /** Bytes of output kept per step (DEFAULT_LOG_LIMIT_BYTES when absent); past it one line says so and the rest is dropped. */
  logLimit: z.number({ error: 'must be a number of bytes' }).int('must be a whole number of bytes')
    .positive('must be at least 1 byte').max(MAX_LOG_BYTES, `must be at most ${MAX_LOG_BYTES} bytes (1 GiB, the grid's ceiling on one log)`).optional(),
  /**
   * Secrets from the grid's secret store, by name: each becomes an environment variable of every step (a secret
   * wins over `env`). A job that names one runs only on a trusted worker, and only if its scope lets this build use it.
   */
  secrets: z.array(secretName).max(MAX_JOB_SECRETS, `at most ${MAX_JOB_SECRETS} secrets`)
    .refine(names => new Set(names).size === names.length, 'each secret is named once').default([]),
  /**
   * Directories restored before the first step and saved after the steps (docs/job.md, "Caches"): the exact `key`
   * in the build's repository and branch, else its default branch, else the newest entry matching a `restore` prefix.
   */
  cache: z.array(cacheSchema).max(MAX_JOB_CACHES, `at most ${MAX_JOB_CACHES} caches`).optional(),
  /** Take the outputs of a succeeded build with the same action key instead of running (coordinator side). */
  reuse: z.boolean().optional(),
  /** Higher runs first; equal priorities run oldest first. */
  priority: z.number().int().min(MIN_PRIORITY).max(MAX_PRIORITY).default(0),
  /** Seconds between SIGTERM and SIGKILL when a step is cancelled, times out or leaves processes behind (Buildkite gives 10 s). */
  killGrace: z.number().int().min(0).max(MAX_KILL_GRACE_S).default(DEFAULT_KILL_GRACE_S)
})

/** A job as submitted (defaults optional). */
export type JobInput = z.input<typeof jobSchema>
/** A job as stored on a build: every default filled in, every step named. */
export type Job = Omit<z.output<typeof jobSchema>, 'steps'> & { steps: Array<{ name: string, run: string }> }

/** One problem of a job: where it is (`steps.0.run`, `job` for the whole) and what is wrong there. */
export interface JobIssue {
  where: string
  message: string
}

export class InvalidJobError extends GridError {
  name = 'InvalidJobError'
  /** Every problem, in the order the message lists them (`where: message; where: message`). */
  readonly issues: JobIssue[]

  constructor (issues: JobIssue[] | string) {
    const one = typeof issues === 'string' ? /^([^\s:]+): ([^]*)$/.exec(issues) : null
    const list = typeof issues !== 'string' ? issues : [{ where: one?.[1] ?? 'job', message: one?.[2] ?? issues }]
    super(list.map(i => `${i.where}: ${i.message}`).join('; '))
    this.issues = list
  }
}

/** The edit distance of two short words, swapping two neighbours counting as one edit (Damerau-Levenshtein, OSA). */
function editDistance (a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}

/** The one known key a typo most likely meant (at most 2 edits, as commander suggests commands and flags), if any. */
export function closest (word: string, known: string[]): string | undefined {
  let best: string[] = []
  let bestDistance = 3
  for (const key of known) {
    const distance = editDistance(word.toLowerCase(), key.toLowerCase())
    if ((Math.max(word.length, key.length) - distance) / Math.max(word.length, key.length) <= 0.4) continue
    if (distance < bestDistance) [best, bestDistance] = [[key], distance]
    else if (distance === bestDistance) best.push(key)
  }
  return best.length === 1 ? best[0] : undefined
}

/** The keys a strict object of the job schema takes at `path` (the job's, a step's), if the path leads to one. */
function keysAt (path: PropertyKey[]): string[] {
  let schema: z.ZodType = jobSchema
  for (const segment of path) {
    while (schema instanceof z.ZodDefault || schema instanceof z.ZodOptional) schema = schema.unwrap() as z.ZodType
    if (schema instanceof z.ZodObject) schema = (schema.shape as Record<string, z.ZodType>)[String(segment)]
    else if (schema instanceof z.ZodArray) schema = schema.element as z.ZodType
    else return []
    if (schema === undefined) return []
  }
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : []
}

/** A path as a problem names it; a key with a control character (a NUL in an env name) is quoted, so the line shows it instead of sending it to the terminal. */
function pathText (path: PropertyKey[]): string {
  return path.length > 0 ? path.map(p => typeof p === 'string' && /[\x00-\x1f\x7f]/.test(p) ? JSON.stringify(p) : String(p)).join('.') : 'job'
}

/** Every problem zod found, one per field: an unknown key says which key it most likely meant. */
function jobIssues (issues: z.core.$ZodIssue[]): JobIssue[] {
  const list: JobIssue[] = []
  /** Fields an unknown key is most likely a typo of: their "missing" problem is that typo, said once. */
  const meant = new Set<string>()
  for (const issue of issues) {
    if (issue.code !== 'unrecognized_keys') continue
    const known = keysAt(issue.path)
    for (const key of issue.keys) {
      const like = closest(key, known)
      if (like !== undefined) meant.add(pathText([...issue.path, like]))
    }
  }
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = keysAt(issue.path)
      for (const key of issue.keys) {
        const like = closest(key, known)
        list.push({ where: pathText([...issue.path, key]), message: like !== undefined ? `unknown key (did you mean ${like}?)` : 'unknown key' })
      }
      continue
    }
    const where = pathText(issue.path)
    if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message) && meant.has(where)) continue
    // A bad record key carries our own message one level down.
    list.push({ where, message: issue.code === 'invalid_key' ? issue.issues[0]?.message ?? issue.message : issue.message })
  }
  return list
}

/**
 * Validate a job, or throw InvalidJobError naming every problem in one line, each field first (`steps.0.run: …;
 * timout: unknown key (did you mean timeout?)`). Every path a job arrives by (HTTP, the CLI over libp2p) goes
 * through here, so the size limit holds on each.
 */
export function parseJob (input: unknown): Job {
  const bytes = Buffer.byteLength(JSON.stringify(input) ?? '')
  if (bytes > MAX_JOB_BYTES) throw new InvalidJobError([{ where: 'job', message: `a job is at most ${MAX_JOB_BYTES} bytes (this one is ${bytes})` }])
  const parsed = jobSchema.safeParse(input)
  if (!parsed.success) throw new InvalidJobError(jobIssues(parsed.error.issues))
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

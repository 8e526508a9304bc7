// /nameless-grid/work: a worker's session with the coordinator. The worker dials and opens one long-lived
// stream; it says what it can do, the coordinator hands it attempts, and both send heartbeats so a frozen
// or cut-off worker is noticed within WORKER_SILENCE_LIMIT_MS (Buildbot can take an hour).
import { z } from 'zod'
import { beatMessage, welcomeMessage } from '../net/session.ts'
import { bytesField } from '../net/wire.ts'
import { listenAddrs, peerAddress } from '../net/dial.ts'
import {
  GRANT_BYTES, MAX_ARTIFACTS, MAX_ASSIGNED_SECRET_BYTES, MAX_CAPABILITIES, MAX_JOB_SECRETS, MAX_KILL_GRACE_S, MAX_LOG_BYTES, MAX_REASON_CHARS,
  MAX_REPLICAS, MAX_SECRET_VALUE_BYTES, MAX_SLOTS, MAX_WARNINGS, WORKER_SILENCE_LIMIT_MS
} from '../grid/constants.ts'
import { idSchema } from '../grid/ids.ts'
import { capabilityKey, capabilityValue, secretName } from '../grid/job.ts'
import { TRUST_PROOF_BYTES } from '../grid/trust.ts'
import { CACHE_OUTCOMES, MAX_BUILD_CACHES, MAX_CACHE_RECORD_KEY_CHARS, MAX_CACHE_WHY_CHARS } from '../grid/build.ts'
import type { CacheRecord } from '../grid/build.ts'
import { MAX_CLAIMS } from './constants.ts'

export const WORK_PROTOCOL = '/nameless-grid/work/1.0.0'

const capabilities = z.record(capabilityKey, capabilityValue)
  .refine(c => Object.keys(c).length <= MAX_CAPABILITIES, `at most ${MAX_CAPABILITIES} capabilities`)

/** A string the worker sent, cut to `max` characters rather than refused: a long text never costs the build its result. */
const cutString = (max: number): z.ZodType<string> => z.string().max(64 * 1024).transform(v => v.length > max ? v.slice(0, max) : v)

/**
 * One cache outcome of an attempt, as a worker reports it in `done` (grid/build.ts CacheRecord). Strings are cut to
 * the record's limits (never trusted to be short); an outcome this coordinator does not know makes the whole list
 * ignored, not the result.
 */
const cacheRecord = z.object({
  key: cutString(MAX_CACHE_RECORD_KEY_CHARS),
  outcome: z.enum(CACHE_OUTCOMES),
  from: cutString(MAX_CACHE_RECORD_KEY_CHARS).optional(),
  size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  why: cutString(MAX_CACHE_WHY_CHARS).optional()
})

/** A worker's list of cache outcomes: the first MAX_BUILD_CACHES kept, the rest dropped; malformed: none (undefined). */
export const cacheRecords: z.ZodType<CacheRecord[] | undefined> = z.unknown().transform(value => {
  if (!Array.isArray(value)) return undefined
  const parsed = z.array(cacheRecord).safeParse(value.slice(0, MAX_BUILD_CACHES))
  return parsed.success ? parsed.data : undefined
})

export const toCoordinator = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('hello'),
    capabilities,
    slots: z.number().int().min(1).max(MAX_SLOTS),
    running: z.array(idSchema).max(MAX_CLAIMS),
    /** Where the worker serves its cache of what it made (none when it does not listen). */
    addrs: listenAddrs.default([]),
    /**
     * With a trusted join code: the proof that it holds the trust key, bound to this worker's peer ID (grid/trust.ts).
     * Trust is this proof, checked on every session, never a capability the worker announces.
     */
    trust: bytesField(TRUST_PROOF_BYTES).optional()
  }),
  beatMessage,
  /** The worker is shutting down: finish what runs, send nothing new. */
  z.object({ t: z.literal('drain') }),
  z.object({ t: z.literal('step-started'), attempt: idSchema, step: z.number().int().min(0) }),
  z.object({ t: z.literal('step'), attempt: idSchema, step: z.number().int().min(0), exitCode: z.number().int(), logCid: z.string().max(200).optional() }),
  z.object({
    t: z.literal('done'),
    attempt: idSchema,
    outcome: z.enum(['succeeded', 'failed', 'timeout', 'cancelled']),
    /** What the worker pushed to a store: the coordinator records names and sizes, never bytes. */
    artifacts: z.array(z.object({
      path: z.string().min(1).max(4096),
      cid: z.string().max(200),
      size: z.number().int().min(0),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      /** Permission bits (0o777 at most: no setuid, setgid or sticky bit travels). */
      mode: z.number().int().min(0).max(0o777).optional(),
      /** A symbolic link's target, kept as a link (relative, inside the work dir). */
      link: z.string().min(1).max(4096).optional()
    })).max(MAX_ARTIFACTS).default([]),
    /** One sentence, when something other than a step's exit code decided the outcome. */
    error: z.string().max(MAX_REASON_CHARS).optional(),
    /** Non-fatal problems (an artifact skipped), one sentence each. */
    warnings: z.array(z.string().max(MAX_REASON_CHARS)).max(MAX_WARNINGS).optional(),
    /**
     * What the job's caches did (grid/build.ts CacheRecord), in order. An older worker says nothing; a list that
     * is malformed is dropped (undefined) without refusing the result, a longer one cut to MAX_BUILD_CACHES.
     */
    caches: cacheRecords.optional()
  })
])
export type ToCoordinator = z.infer<typeof toCoordinator>

/** The values of a job's secrets, by name, in an assignment to a trusted worker: never kept, never logged. */
const secretValues = z.record(secretName, z.string().refine(v => Buffer.byteLength(v) <= MAX_SECRET_VALUE_BYTES, `a secret's value is at most ${MAX_SECRET_VALUE_BYTES} bytes`))
  .refine(s => Object.keys(s).length <= MAX_JOB_SECRETS, `at most ${MAX_JOB_SECRETS} secrets`)
  .refine(s => Object.values(s).reduce((sum, v) => sum + Buffer.byteLength(v), 0) <= MAX_ASSIGNED_SECRET_BYTES, `at most ${MAX_ASSIGNED_SECRET_BYTES} bytes of secrets`)

export const toWorker = z.discriminatedUnion('t', [
  welcomeMessage.extend({
    /**
     * What the worker's hello proved (grid/trust.ts): `stale` tells a worker whose trusted join code was rotated
     * away that it joined untrusted. An older coordinator says nothing.
     */
    trust: z.enum(['trusted', 'untrusted', 'stale']).optional()
  }),
  beatMessage,
  z.object({
    t: z.literal('assign'),
    attempt: idSchema,
    build: idSchema,
    // The coordinator validated the job on submit; the worker trusts the coordinator it dialled for its shape.
    job: z.object({
      name: z.string().optional(),
      requires: z.record(z.string(), z.string()),
      steps: z.array(z.object({ name: z.string(), run: z.string() })).min(1),
      env: z.record(z.string(), z.string()),
      timeout: z.number().positive(),
      retries: z.number(),
      priority: z.number().optional(),
      src: z.string().optional(),
      inputs: z.record(z.string(), z.string()).optional(),
      artifacts: z.array(z.string()).optional(),
      /** Bytes of output kept per step (job.ts checks it on submit). */
      logLimit: z.number().int().positive().max(MAX_LOG_BYTES).optional(),
      /** Seconds between SIGTERM and SIGKILL (an older coordinator said nothing: the worker's default). */
      killGrace: z.number().int().min(0).max(MAX_KILL_GRACE_S).optional()
    }).loose(),
    logs: z.array(idSchema),
    stores: z.array(peerAddress).max(64),
    /** Each log and artifact goes to this many of `stores`, chosen by placeFor (an older coordinator said nothing: 1). */
    replicas: z.number().int().min(1).max(MAX_REPLICAS).default(1),
    /** The coordinator's signature letting this worker write this attempt's logs (see write-grant.ts). */
    grant: bytesField(GRANT_BYTES),
    /** The values of the job's `secrets`, sent only to a trusted worker: environment variables of its steps, masked in its logs. */
    secrets: secretValues.optional(),
    /** The grid's variables for a pipeline's build (GRID_PIPELINE_ID, GRID_JOB, GRID_COMMIT…): set after the job's env. */
    env: z.record(z.string().regex(/^GRID_[A-Z_]{1,40}$/), z.string().max(1000)).refine(e => Object.keys(e).length <= 16, 'at most 16 variables').optional()
  }),
  z.object({
    t: z.literal('cancel'),
    attempt: idSchema,
    reason: z.enum(['cancelled', 'stale']),
    /** Who or what stopped it, for the `grid:` line the worker writes into the step's log. */
    why: z.string().max(MAX_REASON_CHARS).optional()
  })
])
export type ToWorker = z.infer<typeof toWorker>

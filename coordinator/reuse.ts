// Reuse (job `reuse: true`): a build whose action key matches a build that already succeeded, and whose outputs
// the grid still holds, ends `succeeded` at once with that build's outputs instead of running again.
//
// The action key follows Bazel's action cache, which keys a result by the digest of what the action is (command,
// environment, input root, platform) and nothing else. Its users lose their hit rates to whatever stray value gets
// into the key (a PATH that differs per machine, a timestamp in an env var), so this key holds what decides a
// build's outputs and nothing that merely names or orders it.
import { createHash } from 'node:crypto'
import type { ArtifactRecord, BuildSource, StepRecord } from '../grid/build.ts'
import type { Job } from '../grid/job.ts'

/**
 * Action keys the index remembers. Every entry is in memory (the decision is synchronous), with its artifact list:
 * past this, recording one forgets the least recently used (recorded or reused), which then simply runs again.
 */
export const MAX_REUSE_ENTRIES = 10_000

/**
 * What a build's action key is made of, in canonical JSON (keys sorted at every level), hashed with SHA-256:
 * - `steps` (each step's name and command), `env`, `requires` (the platform: which workers may run it);
 * - `src` (the tree's CID) and `inputs`: every work-dir path the build gets, each resolved to a CID, `build:ID/PATH`
 *   inputs and the artifacts of the builds it runs after (`after`) alike, so a build fed the same bytes by a new
 *   pipeline run has the same key, and one fed different bytes does not;
 * - `artifacts` (the globs kept), `secrets` (names only: values never leave the secret store), and the limits
 *   `timeout`, `logLimit`, `killGrace`, which can change what a build ends with;
 * - `scope`: the build's source repository and ref, only when it has secrets (a build with secrets is never reused
 *   across scopes: its outputs may carry what a secret let it make);
 * - `untrusted`: a build from a member without the trusted join code never shares outputs with a trusted one, so
 *   an untrusted worker's output cannot reach a trusted build through reuse (cache poisoning).
 * Not in it: `name`, `priority`, `retries`, `reuse` itself, the ids of the builds in `after` (their outputs are),
 * the grid's own environment (GRID_PIPELINE_ID, GRID_COMMIT, GRID_REF: per run, never in the job), and `cache`
 * (a cache only speeds a build up: what it restores must not change what the build makes, as Bazel does not key
 * on a local disk cache).
 */
export interface ActionKeyParts {
  job: Job
  /** Every input path → the CID placed there (CID inputs as given, `build:` inputs and `after` artifacts resolved). */
  inputs: Record<string, string>
  source?: BuildSource
  untrusted?: boolean
}

/** The action key of a build ready to run: 64 lower-case hex digits (see ActionKeyParts for what is in it). */
export function actionKey (parts: ActionKeyParts): string {
  const { job } = parts
  const secrets = [...(job.secrets ?? [])].sort()
  const keyed = {
    steps: job.steps.map(s => ({ name: s.name, run: s.run })),
    env: job.env ?? {},
    requires: job.requires ?? {},
    src: job.src ?? null,
    inputs: parts.inputs,
    artifacts: job.artifacts ?? [],
    secrets,
    timeout: job.timeout,
    logLimit: job.logLimit ?? null,
    killGrace: job.killGrace ?? null,
    scope: secrets.length > 0 ? { repo: parts.source?.repo ?? null, ref: parts.source?.ref ?? null } : null,
    untrusted: parts.untrusted === true
  }
  return createHash('sha256').update(canonicalJson(keyed)).digest('hex')
}

/** JSON with every object's keys sorted, so equal values always hash the same. */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(v => canonicalJson(v)).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

/**
 * What a succeeded build left that a build with the same key takes: its artifacts and its steps (names, exit codes,
 * log ids and log CIDs). Kept whole, so the decision needs no read of history.
 */
export interface ReuseEntry {
  build: string
  artifacts: ArtifactRecord[]
  steps: Array<Pick<StepRecord, 'name' | 'exitCode' | 'log' | 'logCid'>>
}

/** Where entries persist: a LevelDB sublevel with JSON values fits (`db.sublevel('reuse', { valueEncoding: 'json' })`). */
export interface ReuseStore {
  iterator (): AsyncIterable<[string, ReuseEntry]>
  put (key: string, value: ReuseEntry): Promise<void>
  del (key: string): Promise<void>
}

/**
 * Action key → the newest succeeded build with that key and its outputs. Every entry is kept in memory (loaded by
 * load(), before the scheduler starts), so the scheduler decides in its synchronous dispatch loop, with no await
 * that could let a build be dispatched twice or out of order; writes go to the store behind it, in order.
 * Without a store it lives in memory only (tests).
 */
export class ReuseIndex {
  private readonly entries = new Map<string, ReuseEntry>()
  private readonly store: ReuseStore | undefined
  private readonly log: (line: string) => void
  /** Writes in the order they were made, so a later put is never overtaken by an earlier del (or the reverse). */
  private writes: Promise<void> = Promise.resolve()

  private readonly maxEntries: number

  constructor (init: { store?: ReuseStore, log?: (line: string) => void, maxEntries?: number } = {}) {
    this.store = init.store
    this.log = init.log ?? (() => {})
    this.maxEntries = init.maxEntries ?? MAX_REUSE_ENTRIES
  }

  /** Read every entry from the store (at most maxEntries: the rest are dropped from it). */
  async load (): Promise<void> {
    if (this.store === undefined) return
    const extra: string[] = []
    for await (const [key, entry] of this.store.iterator()) {
      if (this.entries.size < this.maxEntries) this.entries.set(key, entry)
      else extra.push(key)
    }
    for (const key of extra) this.write(async store => { await store.del(key) })
  }

  /** The entry for `key`, if any; a hit counts as a use (the least recently used go first). */
  get (key: string): ReuseEntry | undefined {
    const entry = this.entries.get(key)
    if (entry !== undefined) {
      this.entries.delete(key)
      this.entries.set(key, entry)
    }
    return entry
  }

  get size (): number {
    return this.entries.size
  }

  /** Record `entry` for `key`, replacing an older one (the newest succeeded build wins). */
  record (key: string, entry: ReuseEntry): void {
    this.entries.delete(key)
    this.entries.set(key, entry)
    this.write(async store => { await store.put(key, entry) })
    // A Map iterates in insertion order: the first key is the least recently used.
    while (this.entries.size > this.maxEntries) this.forget(this.entries.keys().next().value!)
  }

  /** Forget `key` (its outputs are gone); a later build with it runs and records itself. */
  forget (key: string): void {
    if (!this.entries.delete(key)) return
    this.write(async store => { await store.del(key) })
  }

  /** Resolves once every write made so far reached the store. */
  async flushed (): Promise<void> {
    await this.writes
  }

  private write (op: (store: ReuseStore) => Promise<void>): void {
    const store = this.store
    if (store === undefined) return
    this.writes = this.writes.then(async () => { await op(store) }).catch(err => { this.log(`could not save a reuse entry: ${err.message}`) })
  }
}

/** What the scheduler needs for reuse: the index, and whether the grid still holds a piece of content. */
export interface Reuse {
  index: ReuseIndex
  /** True while some live store holds `cid` (the coordinator answers from its content index). */
  held: (cid: string) => boolean
}

/** The outputs `entry` points at (artifacts and step logs), none of which may be gone for the entry to be reused. */
export function outputsOf (entry: ReuseEntry): string[] {
  return [...entry.artifacts.map(a => a.cid), ...entry.steps.map(s => s.logCid ?? '')]
}

// The grid's secrets (`grid secret set`): values a job names in `"secrets"` and gets as environment variables on a
// trusted worker. Kept in LevelDB sealed with AES-256-GCM (secret-box.ts, label `secret:NAME:value`), so no value
// is ever written in plaintext; lists, answers and errors show names, scopes and times, never a value.
//
// The scheduler asks `check` when a build is submitted and `values` when it dispatches one, synchronously, so the
// sealed records are held in memory from open(); a value is opened only inside `values` and handed straight on.
//
// Scopes follow GitHub's environment secrets: a secret may be limited to some repositories and to branch globs.
// With `repos`, only builds of those registered repositories get it: a lone build or a `grid run` pipeline names no
// repository the grid fetched itself, so its source is not vouched for. `branches` match the ref of the build's
// pipeline (`refs/heads/NAME`); tags and pull-request refs are not branches. Values too short to mask are refused,
// as GitHub warns and Buildkite's redactor skips them: a 1-character value would turn every log into `***`.
import picomatch from 'picomatch'
import type { AbstractLevel } from 'abstract-level'
import { GridError } from '../net/errors.ts'
import { MAX_SECRET_NAME_CHARS, MAX_SECRET_VALUE_BYTES } from '../grid/constants.ts'
import { SECRET_NAME_PATTERN } from '../grid/job.ts'
import type { BuildSource } from '../grid/build.ts'
import type { SecretResolver } from './scheduler.ts'
import { openLevel } from '../storage/blockstore.ts'
import { MAX_BRANCH_GLOBS, MAX_GLOB_CHARS, isRepoId } from './repos.ts'
import { SecretBox } from './secret-box.ts'
import type { SealedSecret } from './secret-box.ts'

// A secret's name is spelt as a job names it (grid/job.ts), and limited as jobs are (grid/constants.ts).
export { SECRET_NAME_PATTERN } from '../grid/job.ts'
export { MAX_SECRET_NAME_CHARS, MAX_SECRET_VALUE_BYTES } from '../grid/constants.ts'

/**
 * Names the grid sets itself in a step's environment (GRID_BUILD_ID, GRID_COMMIT…): a secret would override them
 * (a job's secrets win over its env), so a name with this prefix is refused (400).
 */
export const RESERVED_NAME_PREFIX = 'GRID_'

/** Secrets one grid keeps; setting one more is refused (409) until one is removed. */
export const MAX_SECRETS = 1_000

/**
 * Fewest characters of a value and of each non-empty line of it. Logs are masked value by value and line by line
 * (issue 18), so a short line would mask every occurrence of itself in every log: refused (400), naming the line.
 */
export const MIN_SECRET_CHARS = 4

/** Repository ids one secret's scope lists; more are refused (400). */
export const MAX_SCOPE_REPOS = 100

/** Items of a scope a sentence names before it says how many more there are. */
const SCOPE_ITEMS_SHOWN = 5

/** A secret refused: a bad name, a value too short, too long or holding a NUL, a bad scope, an unknown key. */
export class BadSecretError extends GridError {
  name = 'BadSecretError'
  readonly status = 400
}

/** The grid holds MAX_SECRETS secrets already. */
export class SecretConflictError extends GridError {
  name = 'SecretConflictError'
  readonly status = 409
}

/** A secret a build needs was removed after the build was accepted (values()). */
export class SecretMissingError extends GridError {
  name = 'SecretMissingError'
  readonly status = 409
}

/** A secret asked for by a build its scope does not take (values() with a scope: it was narrowed since submit). */
export class SecretNotAvailableError extends GridError {
  name = 'SecretNotAvailableError'
  readonly status = 403
}

/** Where a secret may be used; a list left out (or null) means any. */
export interface SecretScope {
  /** Ids of registered repositories (`grid repo ls`); only their pipelines' builds get the secret. */
  repos?: string[] | null
  /** Branch-name globs (picomatch, without `refs/heads/`: `main`, `release/*`); only builds of matching refs. */
  branches?: string[] | null
}

/** Where a build comes from, as the scheduler knows it: its pipeline's repository (null: none) and ref. */
export type BuildScope = BuildSource

/** A secret as lists and answers show it: never its value. `null` scope lists mean any. */
export interface SecretRecord {
  name: string
  repos: string[] | null
  branches: string[] | null
  /** ISO 8601: when the name was first set. */
  created: string
  /** ISO 8601: when its value or scope was last set. */
  updated: string
}

/** What the scheduler asks of the secrets: the scheduler's SecretResolver, which this store implements. */
export type { SecretResolver } from './scheduler.ts'

/** A secret as set: value and scope, checked (parseSecretInit). */
export interface SecretInit {
  value: string
  repos: string[] | null
  branches: string[] | null
}

interface StoredSecret {
  name: string
  repos: string[] | null
  branches: string[] | null
  created: string
  updated: string
  value: SealedSecret
}

/** A stored secret with its branch globs compiled, as check() uses it. */
interface HeldSecret {
  stored: StoredSecret
  branch: ((name: string) => boolean) | undefined
}

const fail = (message: string): never => { throw new BadSecretError(message) }

/** `name` if it can name a secret, else BadSecretError saying why. */
export function checkSecretName (name: unknown): string {
  if (typeof name !== 'string' || name === '') fail('a secret\'s name must be a non-empty string such as DEPLOY_TOKEN')
  const text = name as string
  if (text.length > MAX_SECRET_NAME_CHARS) fail(`a secret's name is at most ${MAX_SECRET_NAME_CHARS} characters`)
  if (!SECRET_NAME_PATTERN.test(text)) fail(`${JSON.stringify(text.slice(0, 40))} is not a secret name: it becomes an environment variable, so use A-Z, 0-9 and _, not starting with a digit (such as DEPLOY_TOKEN)`)
  if (text.startsWith(RESERVED_NAME_PREFIX)) fail(`${text} is not a secret name: names starting with ${RESERVED_NAME_PREFIX} are the grid's own variables`)
  return text
}

/**
 * `value` if it can be a secret's value, else BadSecretError describing it (never quoting it): a string of at most
 * MAX_SECRET_VALUE_BYTES, no NUL (an environment string ends at one), at least MIN_SECRET_CHARS characters in the
 * whole and in every non-empty line (split on \n and \r\n, as the log masking splits it), not only blanks.
 */
export function checkSecretValue (value: unknown): string {
  if (typeof value !== 'string') return fail('value must be a string: the secret\'s value')
  if (Buffer.byteLength(value, 'utf8') > MAX_SECRET_VALUE_BYTES) fail(`the value is more than ${MAX_SECRET_VALUE_BYTES} bytes`)
  if (value.includes('\0')) fail('the value holds a NUL byte, which an environment variable cannot')
  if (value.trim() === '') fail('the value is empty or only blanks')
  if ([...value].length < MIN_SECRET_CHARS) fail(`the value is shorter than ${MIN_SECRET_CHARS} characters: logs are masked wherever it appears, so it would hide everything`)
  const lines = value.split(/\r?\n/)
  if (lines.length > 1) {
    for (const [i, line] of lines.entries()) {
      if (line === '') continue
      if ([...line].length < MIN_SECRET_CHARS) fail(`line ${i + 1} of the value is shorter than ${MIN_SECRET_CHARS} characters: each line is masked in logs wherever it appears, so it would hide everything`)
      if (line.trim() === '') fail(`line ${i + 1} of the value is only blanks: each line is masked in logs wherever it appears`)
    }
  }
  return value
}

/** A branch glob as repositories take them (repos.ts): one line, no characters git forbids besides the glob's own. */
function checkGlob (glob: unknown): string {
  if (typeof glob !== 'string' || glob === '') fail('each of branches must be a non-empty branch name or glob')
  const text = glob as string
  if (text.length > MAX_GLOB_CHARS) fail(`the branch glob ${text.slice(0, 40)}… is longer than ${MAX_GLOB_CHARS} characters`)
  if (/[\x00-\x1f\x7f\s:~^\\]/.test(text) || text.startsWith('refs/')) {
    fail(`${JSON.stringify(text.slice(0, 80))} is not a branch glob: give branch names such as main or release/* (without refs/heads/)`)
  }
  return text
}

/** A scope list: left out or null (any), else a non-empty list of at most `max` items, each checked, deduplicated. */
function checkList (given: unknown, key: string, max: number, each: (item: unknown) => string, example: string): string[] | null {
  if (given === undefined || given === null) return null
  if (!Array.isArray(given) || given.length === 0) return fail(`${key} must be a non-empty list of ${example}, or left out for any`)
  if (given.length > max) fail(`${key} holds more than ${max} items`)
  return [...new Set(given.map(each))]
}

const checkRepo = (id: unknown): string => {
  if (typeof id !== 'string' || !isRepoId(id)) fail(`${JSON.stringify(String(id).slice(0, 40))} is not a repository id: give ids as grid repo ls shows them`)
  return id as string
}

/** A scope, checked: `repos` are repository ids, `branches` branch globs; BadSecretError names what is wrong. */
export function checkSecretScope (scope: SecretScope): { repos: string[] | null, branches: string[] | null } {
  return {
    repos: checkList(scope.repos, 'repos', MAX_SCOPE_REPOS, checkRepo, 'repository ids'),
    branches: checkList(scope.branches, 'branches', MAX_BRANCH_GLOBS, checkGlob, 'branch names or globs')
  }
}

const INIT_KEYS = ['value', 'repos', 'branches']

/**
 * A secret from JSON (PUT /api/secrets/:name), checked: BadSecretError names the key that is wrong, and describes
 * a bad value without quoting it. Unknown keys are refused, so a misspelt `branch` does not widen the scope.
 */
export function parseSecretInit (body: unknown): SecretInit {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) fail('the body must be a JSON object like {"value": "…", "branches": ["main"]}')
  const given = body as Record<string, unknown>
  const unknown = Object.keys(given).filter(k => !INIT_KEYS.includes(k))
  if (unknown.length > 0) {
    // A key is named only when it looks like one: what else is there could be a pasted value.
    const key = /^[A-Za-z_][A-Za-z0-9_]{0,39}$/.test(unknown[0]) ? `unknown key ${unknown[0]}` : 'an unknown key'
    fail(`${key} (a secret takes ${INIT_KEYS.join(', ')})`)
  }
  if (given.value === undefined) fail('value is missing: the secret\'s value')
  const value = checkSecretValue(given.value)
  return { value, ...checkSecretScope({ repos: given.repos as string[] | undefined, branches: given.branches as string[] | undefined }) }
}

/** The scope as a sentence shows it: `repos ID, ID, branches main, release/*`, or `any build`. */
function scopeText (stored: StoredSecret): string {
  const list = (items: string[]): string => items.length <= SCOPE_ITEMS_SHOWN
    ? items.join(', ')
    : `${items.slice(0, SCOPE_ITEMS_SHOWN).join(', ')} and ${items.length - SCOPE_ITEMS_SHOWN} more`
  const parts = [stored.repos !== null ? `repos ${list(stored.repos)}` : undefined, stored.branches !== null ? `branches ${list(stored.branches)}` : undefined]
  return parts.filter(Boolean).join(', ') || 'any build'
}

/** Whether a build from `scope` may use the secret. */
function covers (held: HeldSecret, scope: BuildScope): boolean {
  const { repos } = held.stored
  if (repos !== null && (scope.repo === null || !repos.includes(scope.repo))) return false
  if (held.branch !== undefined) {
    if (scope.ref === undefined || !scope.ref.startsWith('refs/heads/')) return false
    if (!held.branch(scope.ref.slice('refs/heads/'.length))) return false
  }
  return true
}

function hold (stored: StoredSecret): HeldSecret {
  return { stored, branch: stored.branches === null ? undefined : picomatch(stored.branches, { dot: true }) }
}

function record (stored: StoredSecret): SecretRecord {
  return {
    name: stored.name,
    repos: stored.repos === null ? null : [...stored.repos],
    branches: stored.branches === null ? null : [...stored.branches],
    created: stored.created,
    updated: stored.updated
  }
}

const label = (name: string): string => `secret:${name}:value`

/** A name as a sentence shows it: a real name as it is, anything else quoted and cut. */
const shownName = (name: string): string => SECRET_NAME_PATTERN.test(name) && name.length <= MAX_SECRET_NAME_CHARS ? name : JSON.stringify(String(name).slice(0, 40))

type Db = AbstractLevel<any, string, any>

export interface SecretsInit {
  /** Where secrets are kept: a sublevel of the coordinator's database, or a Level of their own. open() opens it and close() closes it. */
  db: Db
  /** The key values are sealed with (secretsKey(DATA/secrets.key)). */
  key: Uint8Array
  /** @default Date.now */
  now?: () => number
}

/**
 * The grid's secrets (LevelDB, values sealed). Writes go through one queue; the sealed records are also held in
 * memory from open() so check() and values() answer at once.
 */
export class Secrets implements SecretResolver {
  private readonly root: Db
  private readonly db: Db
  private readonly box: SecretBox
  private readonly now: () => number
  private readonly held = new Map<string, HeldSecret>()
  private queue: Promise<unknown> = Promise.resolve()

  constructor (init: SecretsInit) {
    this.root = init.db
    this.db = init.db.sublevel<string, StoredSecret>('secrets', { valueEncoding: 'json' }) as unknown as Db
    this.box = new SecretBox(init.key)
    this.now = init.now ?? Date.now
  }

  /** Open the database and hold its sealed records in memory. */
  async open (): Promise<void> {
    if (this.root.status !== 'open') {
      // A database of its own says which data dir is in use when another process holds it.
      if ('location' in this.root) await openLevel(this.root as Db & { location: string })
      else await this.root.open()
    }
    this.held.clear()
    for (const stored of await this.db.values().all() as StoredSecret[]) this.held.set(stored.name, hold(stored))
  }

  async close (): Promise<void> {
    await this.queue.catch(() => {})
    this.held.clear()
    await this.root.close()
  }

  /**
   * Set `name` to `value` for builds within `scope`, sealed before it is written; an existing secret of that name
   * is replaced whole (value and scope) and keeps its `created`. Throws BadSecretError (name, value or scope; the
   * message never quotes the value) or SecretConflictError when MAX_SECRETS are set already.
   */
  async set (name: string, value: string, scope: SecretScope = {}): Promise<{ secret: SecretRecord, replaced: boolean }> {
    const checkedName = checkSecretName(name)
    const checkedValue = checkSecretValue(value)
    const checkedScope = checkSecretScope(scope)
    return await this.serial(async () => {
      const before = this.held.get(checkedName)
      if (before === undefined && this.held.size >= MAX_SECRETS) throw new SecretConflictError(`the grid holds ${MAX_SECRETS} secrets, its most: remove one first (grid secret rm NAME)`)
      const at = new Date(this.now()).toISOString()
      const stored: StoredSecret = {
        name: checkedName,
        ...checkedScope,
        created: before?.stored.created ?? at,
        updated: at,
        value: this.box.seal(checkedValue, label(checkedName))
      }
      await this.db.put(checkedName, stored)
      this.held.set(checkedName, hold(stored))
      return { secret: record(stored), replaced: before !== undefined }
    })
  }

  /** Every secret, by name: names, scopes and times, never a value. */
  list (): SecretRecord[] {
    return [...this.held.values()].map(h => record(h.stored)).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  }

  /** One secret without its value; undefined if `name` is not set. */
  get (name: string): SecretRecord | undefined {
    const held = this.held.get(name)
    return held === undefined ? undefined : record(held.stored)
  }

  /** Remove a secret; the removed record, or undefined if `name` is not set. Builds queued with it fail at dispatch. */
  async remove (name: string): Promise<SecretRecord | undefined> {
    return await this.serial(async () => {
      const held = this.held.get(name)
      if (held === undefined) return undefined
      await this.db.del(name)
      this.held.delete(name)
      return record(held.stored)
    })
  }

  check (names: string[], scope: BuildScope): string | undefined {
    for (const name of names) {
      const held = this.held.get(name)
      if (held === undefined) return `secret ${shownName(name)} is not set (grid secret set ${shownName(name)})`
      if (!covers(held, scope)) return `secret ${name} is not available to this build (scope: ${scopeText(held.stored)})`
    }
    return undefined
  }

  values (names: string[], scope?: BuildScope): Record<string, string> {
    const values: Record<string, string> = {}
    for (const name of names) {
      const held = this.held.get(name)
      if (held === undefined) throw new SecretMissingError(`secret ${shownName(name)} is not set any more: it was removed after this build was queued`)
      if (scope !== undefined && !covers(held, scope)) throw new SecretNotAvailableError(`secret ${name} is not available to this build (scope: ${scopeText(held.stored)})`)
      values[name] = this.box.open(held.stored.value, label(name))
    }
    return values
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.catch(() => {}).then(fn)
    this.queue = run
    return await run
  }
}

// The grid's cache index (issue 19): which content holds a job's `cache` under which key, for which builds. The
// bytes are content like any artifact (restored from whichever peer holds them); this only says which CID a key
// names in which scope. Kept in LevelDB, and in memory from open() (MAX_CACHE_ENTRIES small records), so a lookup
// never scans the disk.
//
// Lookups follow actions/cache: the exact key in the build's scope (repository + branch), then the repository's
// default branch, then each `restore` prefix in order, newest entry first, again branch then default branch.
// Entries are immutable (a key saved once in a scope is never overwritten) and the least recently used goes first
// when the index is full. Unlike actions/cache, trust is part of the scope: an entry saved by an untrusted build
// (ordinary join code) is never restored into a trusted one, which would let anyone who can join poison what a
// deploy job runs; and trusted entries are not handed to untrusted builds either (they may hold what secrets made).
// As bazel-remote does for its action cache, an entry whose content the grid no longer holds is a miss, not an
// error, and is dropped when found.
import { MAX_CACHE_KEY_CHARS } from '../grid/job.ts'
import type { AbstractLevel } from 'abstract-level'
import { GridError } from '../net/errors.ts'
import { parseCid } from '../grid/content.ts'
import { openLevel } from '../storage/blockstore.ts'

/**
 * Entries the index keeps. Keeping one more drops the least recently used (restored or kept longest ago), as
 * actions/cache evicts; its content is left to the stores' own eviction.
 */
export const MAX_CACHE_ENTRIES = 10_000

// Characters of a cache key or `restore` prefix: the job format's limit (grid/job.ts), a longer one refused (400).
export { MAX_CACHE_KEY_CHARS } from '../grid/job.ts'

/** The default branch a build's lookup falls back to (the branch a repository registered without `branches` builds). */
export const DEFAULT_CACHE_BRANCH = 'main'

/** A cache key, prefix or entry refused: empty, too long, more than one line, or a bad scope, CID, size or build. */
export class BadCacheEntryError extends GridError {
  name = 'BadCacheEntryError'
  readonly status = 400
}

/**
 * Whose caches a build sees: its repository (`null`: a lone build or a `grid run` pipeline, which see only each
 * other's), its branch (absent: none, e.g. a tag or a lone build) and whether it is trusted.
 */
export interface CacheScope { repo: string | null, branch?: string, trusted: boolean }

/**
 * One saved cache: `key` in `scope` names content `cid` of `size` content bytes, saved by build `build`.
 * `created` and `lastUsed` are ISO 8601 (lastUsed: when it was last restored, or created).
 */
export interface CacheEntry { key: string, scope: CacheScope, cid: string, size: number, created: string, lastUsed: string, build: string }

/** What the scheduler and workers' lookups need of the index; `Caches` implements it over LevelDB. */
export interface CacheIndex {
  /** The entry to restore: exact `key` in the build's scope, else its repository's default branch (main), else the
   *  newest entry whose key starts with each `restore` prefix in order (same scope order); undefined: a miss.
   *  An entry whose content the grid no longer holds is a miss (and is dropped). Marks the hit's lastUsed. */
  find (query: { key: string, restore: string[], scope: CacheScope }): Promise<CacheEntry | undefined>
  /** Keep an entry (entries are immutable: an existing exact key in that scope is kept, the new one ignored). */
  keep (entry: Omit<CacheEntry, 'created' | 'lastUsed'>): Promise<void>
  list (): Promise<CacheEntry[]>
  remove (key: string): Promise<number>   // entries removed
}

/**
 * An entry as stored: `seq` orders entries by creation and `used` by last use (kept or restored), so entries made
 * or used in the same millisecond still have an order (newest wins a prefix lookup; least recently used goes first).
 */
interface StoredEntry extends CacheEntry {
  seq: number
  used: number
}

const fail = (message: string): never => { throw new BadCacheEntryError(message) }

/**
 * `key` if it can be a cache key (or, with `what`, a restore prefix): a non-empty string of at most
 * MAX_CACHE_KEY_CHARS characters on one line (no control characters), else BadCacheEntryError.
 */
export function checkCacheKey (key: unknown, what = 'a cache key'): string {
  if (typeof key !== 'string' || key === '') return fail(`${what} must be a non-empty string`)
  if (key.length > MAX_CACHE_KEY_CHARS) fail(`${what} is at most ${MAX_CACHE_KEY_CHARS} characters`)
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(key)) fail(`${what} must be one line without control characters: ${JSON.stringify(key.slice(0, 80))}`)
  return key
}

/** A scope, checked and copied (no other fields kept). */
function checkScope (scope: unknown): CacheScope {
  if (scope === null || typeof scope !== 'object') return fail('a cache scope must be an object like {"repo": null, "trusted": true}')
  const { repo, branch, trusted } = scope as Record<string, unknown>
  if (repo !== null && (typeof repo !== 'string' || repo === '' || repo.length > MAX_CACHE_KEY_CHARS)) fail('a cache scope\'s repo must be a repository id or null')
  // eslint-disable-next-line no-control-regex
  if (branch !== undefined && (typeof branch !== 'string' || branch === '' || branch.length > MAX_CACHE_KEY_CHARS || /[\x00-\x1f\x7f]/.test(branch))) fail('a cache scope\'s branch must be a branch name')
  if (typeof trusted !== 'boolean') fail('a cache scope\'s trusted must be true or false')
  return { repo: repo as string | null, ...(branch !== undefined ? { branch: branch as string } : {}), trusted: trusted as boolean }
}

/** The scope as a database key part: JSON escapes any newline, so `\n` can separate it from the key. */
const scopeId = (scope: CacheScope): string => JSON.stringify([scope.trusted, scope.repo, scope.branch ?? null])
const entryId = (scope: CacheScope, key: string): string => `${scopeId(scope)}\n${key}`

/** An entry as lists and lookups give it: exactly CacheEntry's fields, copied. */
function entry (stored: StoredEntry): CacheEntry {
  const { key, scope, cid, size, created, lastUsed, build } = stored
  return { key, scope: { ...scope }, cid, size, created, lastUsed, build }
}

type Db = AbstractLevel<any, string, any>

export interface CachesInit {
  /**
   * Where entries are kept, in a sublevel `caches`: the coordinator's database (opened and closed by its owner), or
   * a Level of its own, which open() opens and close() closes.
   */
  db: Db
  /**
   * Whether the grid still holds content `cid` (of `entry`, whose `build` says which worker made it: that worker's
   * own copy counts while it is connected); false makes an entry a miss, dropped when found. A throw counts as held
   * (the entry is restored and the worker's fetch says whether the bytes are there): a lookup never fails because
   * the content check did.
   */
  held: (cid: string, entry: CacheEntry) => boolean | Promise<boolean>
  /** @default MAX_CACHE_ENTRIES */
  maxEntries?: number
  /** @default Date.now */
  now?: () => number
}

/**
 * The cache index (LevelDB, held in memory from open()). Writes and lookups go through one queue, so a lookup's
 * lastUsed mark and a removal or eviction never interleave.
 */
export class Caches implements CacheIndex {
  private readonly root: Db
  private readonly db: Db
  private readonly held: CachesInit['held']
  private readonly maxEntries: number
  private readonly now: () => number
  private readonly entries = new Map<string, StoredEntry>()
  private seq = 0
  /** Whether open() opened the database, so close() closes it; a database already open belongs to its opener. */
  private owned = false
  private queue: Promise<unknown> = Promise.resolve()

  constructor (init: CachesInit) {
    this.root = init.db
    this.db = init.db.sublevel<string, StoredEntry>('caches', { valueEncoding: 'json' }) as unknown as Db
    this.held = init.held
    this.maxEntries = init.maxEntries ?? MAX_CACHE_ENTRIES
    this.now = init.now ?? Date.now
  }

  /** Open the database and hold its entries in memory. */
  async open (): Promise<void> {
    if (this.root.status !== 'open') {
      this.owned = true
      // A database of its own says which data dir is in use when another process holds it.
      if ('location' in this.root) await openLevel(this.root as Db & { location: string })
      else await this.root.open()
    }
    this.entries.clear()
    this.seq = 0
    for (const [id, stored] of await this.db.iterator().all() as Array<[string, StoredEntry]>) {
      this.entries.set(id, stored)
      this.seq = Math.max(this.seq, stored.seq, stored.used)
    }
  }

  async close (): Promise<void> {
    await this.queue.catch(() => {})
    this.entries.clear()
    if (this.owned) await this.root.close()
    this.owned = false
  }

  /** How many entries the index holds. */
  get size (): number {
    return this.entries.size
  }

  /**
   * The entry to restore for `key` (else the `restore` prefixes, in order) in `scope`, or undefined for a miss:
   * see the file's head for the order. Throws BadCacheEntryError for a bad key, prefix or scope.
   */
  async find (query: { key: string, restore: string[], scope: CacheScope }): Promise<CacheEntry | undefined> {
    const key = checkCacheKey(query.key)
    if (!Array.isArray(query.restore)) fail('restore must be a list of key prefixes')
    const prefixes = query.restore.map(p => checkCacheKey(p, 'a restore prefix'))
    const own = checkScope(query.scope)
    const scopes = [own]
    // A lone build's scope has no repository whose default branch it could fall back to.
    if (own.repo !== null && own.branch !== DEFAULT_CACHE_BRANCH) scopes.push({ repo: own.repo, branch: DEFAULT_CACHE_BRANCH, trusted: own.trusted })
    return await this.serial(async () => {
      for (const scope of scopes) {
        const found = await this.take([this.entries.get(entryId(scope, key))])
        if (found !== undefined) return found
      }
      for (const prefix of prefixes) {
        for (const scope of scopes) {
          const id = scopeId(scope)
          const matching = [...this.entries.values()]
            .filter(e => e.key.startsWith(prefix) && scopeId(e.scope) === id)
            .sort((a, b) => b.seq - a.seq)
          const found = await this.take(matching)
          if (found !== undefined) return found
        }
      }
      return undefined
    })
  }

  /**
   * Keep an entry; an entry of the same key in the same scope is kept instead (entries are immutable). At
   * MAX_CACHE_ENTRIES the least recently used entry is dropped first. Throws BadCacheEntryError for a bad key,
   * scope, CID, size or build.
   */
  async keep (given: Omit<CacheEntry, 'created' | 'lastUsed'>): Promise<void> {
    const key = checkCacheKey(given.key)
    const scope = checkScope(given.scope)
    if (typeof given.cid !== 'string') fail('a cache entry\'s cid must be a CID')
    try {
      parseCid(given.cid)
    } catch {
      fail(`${JSON.stringify(given.cid.slice(0, 80))} is not a CID`)
    }
    if (!Number.isSafeInteger(given.size) || given.size < 0) fail('a cache entry\'s size must be a whole number of bytes, 0 or more')
    if (typeof given.build !== 'string' || given.build === '' || given.build.length > MAX_CACHE_KEY_CHARS) fail('a cache entry\'s build must be a build id')
    const id = entryId(scope, key)
    await this.serial(async () => {
      if (this.entries.has(id)) return
      const batch = this.db.batch()
      while (this.entries.size >= this.maxEntries) {
        const oldest = this.leastRecentlyUsed()
        if (oldest === undefined) break
        this.entries.delete(oldest)
        batch.del(oldest)
      }
      const at = new Date(this.now()).toISOString()
      const stored: StoredEntry = { key, scope, cid: given.cid, size: given.size, created: at, lastUsed: at, build: given.build, seq: ++this.seq, used: this.seq }
      batch.put(id, stored)
      this.entries.set(id, stored)
      await batch.write()
    })
  }

  /** Every entry, by key, then newest first. */
  async list (): Promise<CacheEntry[]> {
    await this.queue.catch(() => {})
    return [...this.entries.values()]
      .sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : b.seq - a.seq)
      .map(entry)
  }

  /** Remove `key` in every scope; how many entries were removed (0: none had it). Their content is left to the stores. */
  async remove (key: string): Promise<number> {
    const checked = checkCacheKey(key)
    return await this.serial(async () => {
      const ids = [...this.entries].filter(([, e]) => e.key === checked).map(([id]) => id)
      if (ids.length === 0) return 0
      await this.db.batch(ids.map(id => ({ type: 'del' as const, key: id })))
      for (const id of ids) this.entries.delete(id)
      return ids.length
    })
  }

  /** The first of `candidates` whose content is held, marked used; those found gone on the way are dropped. */
  private async take (candidates: Array<StoredEntry | undefined>): Promise<CacheEntry | undefined> {
    for (const stored of candidates) {
      if (stored === undefined) continue
      const id = entryId(stored.scope, stored.key)
      let held: boolean
      try {
        held = await this.held(stored.cid, entry(stored))
      } catch {
        held = true
      }
      if (!held) {
        this.entries.delete(id)
        await this.db.del(id)
        continue
      }
      stored.lastUsed = new Date(this.now()).toISOString()
      stored.used = ++this.seq
      await this.db.put(id, stored)
      return entry(stored)
    }
    return undefined
  }

  private leastRecentlyUsed (): string | undefined {
    let oldest: [string, StoredEntry] | undefined
    for (const pair of this.entries) {
      const [, e] = pair
      if (oldest === undefined || e.used < oldest[1].used) oldest = pair
    }
    return oldest?.[0]
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.catch(() => {}).then(fn)
    this.queue = run
    return await run
  }
}

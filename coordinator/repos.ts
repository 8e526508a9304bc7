// Registered repositories: where the grid fetches a commit from, which branches start pipelines, whether it polls,
// how webhooks are checked and where commit statuses go. Kept in LevelDB; the hook secret and the status token are
// sealed at rest (secret-box.ts) and leave this module only through hookSecret() and statusTarget(), never in a
// record, a list, an event or a log line.
//
// Two promises are kept here because webhooks and polling both start pipelines: a delivery id is handled once
// (forges retry, and signatures carry no timestamp, so a replayed delivery would otherwise run again), and the same
// commit on the same branch never runs twice, whoever saw it first.
import picomatch from 'picomatch'
import type { AbstractLevel } from 'abstract-level'
import { GridError } from '../net/errors.ts'
import { BUILD_ID_PATTERN, newBuildId } from '../grid/ids.ts'
import type { Pipeline } from '../grid/build.ts'
import { openLevel } from '../storage/blockstore.ts'
import { SecretBox } from './secret-box.ts'
import type { SealedSecret } from './secret-box.ts'

/** Repositories one grid keeps; registering one more is refused (409) until one is removed. */
export const MAX_REPOS = 1_000

/**
 * Shortest poll interval, in seconds: each poll is a `git ls-remote` against the forge, and forges rate-limit
 * (Buildbot's GitPoller defaults to 10 minutes). A shorter `poll` is refused (400).
 */
export const MIN_POLL_S = 10

/** Longest poll interval, in seconds (a day); a longer `poll` is refused (400). */
export const MAX_POLL_S = 86_400

/** Branch globs one repository takes; more are refused (400). */
export const MAX_BRANCH_GLOBS = 100

/** Characters of one branch glob; a longer one is refused (400). */
export const MAX_GLOB_CHARS = 255

/** Characters of a repository URL or status API base; a longer one is refused (400). */
export const MAX_URL_CHARS = 2_048

/** Characters of a hook secret or status token; a longer one is refused (400). */
export const MAX_SECRET_CHARS = 4_096

/**
 * Delivery ids remembered per repository: a forge redelivers within hours, not after thousands of pushes. Past this,
 * the oldest is forgotten; a replay of it would still find its commit built (MAX_BUILT_PER_BRANCH).
 */
export const MAX_DELIVERIES_PER_REPO = 1_000

/**
 * Commits remembered as built per branch of a repository. Past this, the oldest is forgotten: it would build again
 * only if the branch were reset to it after this many newer heads.
 */
export const MAX_BUILT_PER_BRANCH = 10_000

/** Characters of a delivery id (GitHub and Gitea send a UUID); a longer or stranger one is refused (400). */
export const MAX_DELIVERY_ID_CHARS = 200

/**
 * Branches a repository registered without `branches` builds: only `main`, not every branch. Building every branch
 * of a repository by default runs whatever anyone pushes anywhere; the default branch alone is what a first
 * registration means, and `--branch` adds others. (A remote's default branch is not asked for: the coordinator may
 * not be able to reach a repository that only sends webhooks.)
 */
export const DEFAULT_BRANCHES: readonly string[] = ['main']

/** Commit-status APIs the grid posts to; Forgejo speaks Gitea's. */
export const STATUS_KINDS = ['github', 'gitea'] as const
export type StatusKind = typeof STATUS_KINDS[number]

/** Where GitHub's API lives when a github status target gives no `url`. */
export const GITHUB_API = 'https://api.github.com'

/** A registration the grid refuses: a bad URL, a bad branch glob, a poll interval out of range… */
export class BadRepoError extends GridError {
  name = 'BadRepoError'
  readonly status = 400
}

/** The URL is registered already, or the grid holds MAX_REPOS repositories. */
export class RepoConflictError extends GridError {
  name = 'RepoConflictError'
  readonly status = 409
}

/** What registering a repository takes (POST /api/repos, `grid repo add`). */
export interface RepoInit {
  /** https://, http://, ssh://, git@host:path, file:// or an absolute path to a local (bare) repository. */
  url: string
  /** Branch-name globs (picomatch: `release/*`, `**` for all). @default DEFAULT_BRANCHES */
  branches?: string[]
  /** Poll the remote every this many seconds (MIN_POLL_S to MAX_POLL_S); none: only webhooks start pipelines. */
  poll?: number
  /** The webhook secret; without it every webhook for this repository is refused (401). */
  hookSecret?: string
  /** Where commit statuses go: `url` is the API base (GitHub: https://api.github.com; Gitea: https://HOST/api/v1). */
  status?: { kind: StatusKind, url?: string, token: string }
}

/** A registered repository as answers, lists and events show it: no secret, no token. */
export interface RepoRecord {
  id: string
  url: string
  branches: string[]
  /** Seconds between polls; absent when the repository does not poll. */
  poll?: number
  /** The path webhooks are sent to: `/api/hooks/ID`. */
  hook: string
  /** Whether webhooks are taken: true when a hook secret is set (its value is never shown). */
  webhooks: boolean
  /** The commit-status target, without its token. */
  status?: { kind: StatusKind, url: string }
  created: string
}

/** A status target as the poster needs it: the token opened, and `{owner}/{repo}` from the registered URL. */
export interface StatusTarget {
  kind: StatusKind
  url: string
  token: string
  owner: string
  repo: string
}

/** A change of the registry, for the poller. */
export interface RepoChange {
  kind: 'added' | 'removed'
  repo: RepoRecord
}

/**
 * What repositories start pipelines through (coordinator/pipelines.ts implements it): `fromCommit` queues the
 * commit's checkout at once and answers the pipeline without waiting for it.
 */
export interface PipelineStarter {
  /** Start a pipeline for a commit of a registered repository: queues its checkout at once and returns the pipeline. */
  fromCommit (init: { repo: string, url: string, ref: string, commit: string, trigger: 'push' | 'poll' }): Promise<Pipeline>
  /** Told whenever a pipeline changes (status, jobs); returns the function that stops telling. */
  onPipeline (listener: (p: Pipeline) => void): () => void
}

interface StoredRepo {
  id: string
  url: string
  branches: string[]
  poll?: number
  created: string
  hookSecret?: SealedSecret
  status?: { kind: StatusKind, url: string, token: SealedSecret }
}

/** Anything but a control character (NUL, newline…): what the grid hands git or a header must be one line. */
const ONE_LINE = /^[^\x00-\x1f\x7f]*$/

const fail = (message: string): never => { throw new BadRepoError(message) }

/**
 * `url` if the grid can fetch from it, else BadRepoError saying why: https://, http://, ssh://, `user@host:path`,
 * file:// and absolute local paths only (no ext::, no `-option`); no credentials inside (they belong in the git
 * config or credential helper of the machines that fetch).
 */
export function checkRepoUrl (url: unknown): string {
  if (typeof url !== 'string' || url.trim() === '') fail('url must be the repository\'s URL, such as https://github.com/OWNER/REPO.git')
  const text = url as string
  if (text.length > MAX_URL_CHARS) fail(`url is longer than ${MAX_URL_CHARS} characters`)
  if (!ONE_LINE.test(text) || /\s/.test(text)) fail('url must be one line without spaces or control characters')
  if (text.startsWith('-')) fail('url must not start with "-"')
  if (text.startsWith('/')) return text
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase()
  if (scheme === undefined) {
    // git's scp-like syntax: `[user@]host:path`, where no slash comes before the colon.
    const scp = /^(?:([^@/:]+)@)?([a-z0-9.-]+):(?!\/\/)([^:].*)$/i.exec(text)
    if (scp === null) fail(`${text} is not a repository URL: use https://, http://, ssh://, git@HOST:PATH, file:// or an absolute path`)
    return text
  }
  if (!['https', 'http', 'ssh', 'file'].includes(scheme)) fail(`${scheme}:// URLs are not taken: use https://, http://, ssh://, git@HOST:PATH, file:// or an absolute path`)
  let parsed: URL
  try {
    parsed = new URL(text)
  } catch {
    return fail(`${text} is not a valid URL`)
  }
  const credentials = 'put credentials in the git config or credential helper of the machines that fetch (the workers, and the coordinator when it polls), not in the URL'
  if (parsed.password !== '') fail(`url holds a password: ${credentials}`)
  if ((scheme === 'https' || scheme === 'http') && parsed.username !== '') fail(`url holds a user name or token: ${credentials}`)
  if (scheme === 'file') {
    if (parsed.hostname !== '' && parsed.hostname !== 'localhost') fail('a file:// URL names a path on this machine: file:///PATH')
  } else if (parsed.hostname === '') {
    fail(`url names no host: ${text}`)
  }
  if (parsed.pathname === '' || parsed.pathname === '/') fail(`url names no repository path: ${text}`)
  return text
}

/**
 * `{owner}/{repo}` of a repository URL for the commit-status API: its last two path segments, without `.git`
 * (`https://github.com/o/r.git`, `git@github.com:o/r.git`, `ssh://git@host:22/group/sub/r` → sub/r). Undefined when
 * the URL has fewer than two segments.
 */
export function ownerAndRepo (url: string): { owner: string, repo: string } | undefined {
  let path: string
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    try {
      path = decodeURIComponent(new URL(url).pathname)
    } catch {
      return undefined
    }
  } else if (url.startsWith('/')) {
    path = url
  } else {
    path = url.slice(url.indexOf(':') + 1)
  }
  const segments = path.split('/').filter(s => s !== '')
  if (segments.length < 2) return undefined
  const repo = segments[segments.length - 1].replace(/\.git$/, '')
  const owner = segments[segments.length - 2]
  if (repo === '' || owner === '') return undefined
  return { owner, repo }
}

/** The host a repository URL names (`github.com` for https://github.com/o/r and git@github.com:o/r.git); undefined for a local path. */
export function repoHost (url: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    try {
      return new URL(url).hostname.toLowerCase() || undefined
    } catch {
      return undefined
    }
  }
  if (url.startsWith('/')) return undefined
  const at = url.indexOf(':')
  return at > 0 ? url.slice(url.indexOf('@') + 1, at).toLowerCase() : undefined
}

/**
 * Whether two registered URLs name one repository: `file:///srv/x.git` and `/srv/x.git`, a trailing `/`, and `.git`
 * or not are the same to git, and registering both would build every push twice (and post its statuses twice).
 */
export function sameRepository (a: string, b: string): boolean {
  const canonical = (url: string): string => url.replace(/^file:\/\//i, '').replace(/\/+$/, '').replace(/\.git$/, '')
  return canonical(a) === canonical(b)
}

/** A secret or token as given: one line, not empty, at most MAX_SECRET_CHARS. */
function checkSecret (value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') fail(`${what} must be a non-empty string`)
  const text = value as string
  if (text.length > MAX_SECRET_CHARS) fail(`${what} is longer than ${MAX_SECRET_CHARS} characters`)
  if (!ONE_LINE.test(text)) fail(`${what} must be one line without control characters`)
  return text
}

/** An API base for commit statuses: http(s), no credentials, no query; without a trailing slash. */
function checkApiBase (value: unknown): string {
  if (typeof value !== 'string' || value.length > MAX_URL_CHARS || !ONE_LINE.test(value)) fail('status.url must be the forge\'s API base URL, such as https://api.github.com')
  let parsed: URL
  try {
    parsed = new URL(value as string)
  } catch {
    return fail(`status.url ${String(value).slice(0, 80)} is not a URL`)
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') fail('status.url must be an https:// (or http://) URL')
  if (parsed.username !== '' || parsed.password !== '') fail('status.url must not hold credentials: give the token as status.token')
  if (parsed.search !== '' || parsed.hash !== '') fail('status.url must be a base URL, without ? or #')
  return (value as string).replace(/\/+$/, '')
}

/** Whether `text` could be a branch glob: one line, no characters git forbids in a ref besides the glob's own. */
function checkGlob (glob: unknown): string {
  if (typeof glob !== 'string' || glob === '') fail('each of branches must be a non-empty branch name or glob')
  const text = glob as string
  if (text.length > MAX_GLOB_CHARS) fail(`the branch glob ${text.slice(0, 40)}… is longer than ${MAX_GLOB_CHARS} characters`)
  if (!ONE_LINE.test(text) || /[\s:~^\\]/.test(text) || text.startsWith('refs/')) {
    fail(`${JSON.stringify(text)} is not a branch glob: give branch names such as main or release/* (without refs/heads/)`)
  }
  return text
}

const INIT_KEYS = ['url', 'branches', 'poll', 'hookSecret', 'status']

/**
 * A registration from JSON (POST /api/repos), checked: BadRepoError names the key that is wrong. Unknown keys are
 * refused, so a misspelt `branch` is not silently ignored. Neither a hook secret nor a poll interval is refused too:
 * nothing would ever start the repository's pipelines.
 */
export function parseRepoInit (body: unknown): RepoInit & { branches: string[] } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) fail('the body must be a JSON object like {"url": "https://…", "hookSecret": "…"}')
  const given = body as Record<string, unknown>
  const unknown = Object.keys(given).filter(k => !INIT_KEYS.includes(k))
  if (unknown.length > 0) fail(`unknown key ${unknown[0]} (a repository takes ${INIT_KEYS.join(', ')})`)
  const url = checkRepoUrl(given.url)
  let branches = [...DEFAULT_BRANCHES]
  if (given.branches !== undefined) {
    if (!Array.isArray(given.branches) || given.branches.length === 0) fail('branches must be a non-empty list of branch names or globs')
    const list = given.branches as unknown[]
    if (list.length > MAX_BRANCH_GLOBS) fail(`branches holds more than ${MAX_BRANCH_GLOBS} globs`)
    branches = [...new Set(list.map(checkGlob))]
  }
  let poll: number | undefined
  if (given.poll !== undefined) {
    if (typeof given.poll !== 'number' || !Number.isInteger(given.poll) || given.poll < MIN_POLL_S || given.poll > MAX_POLL_S) {
      fail(`poll must be a whole number of seconds from ${MIN_POLL_S} to ${MAX_POLL_S}`)
    }
    poll = given.poll as number
  }
  const hookSecret = given.hookSecret === undefined ? undefined : checkSecret(given.hookSecret, 'hookSecret')
  let status: RepoInit['status']
  if (given.status !== undefined) {
    const s = given.status as Record<string, unknown>
    if (s === null || typeof s !== 'object' || Array.isArray(s)) fail('status must be an object like {"kind": "github", "url": "https://api.github.com", "token": "…"}')
    const extra = Object.keys(s).filter(k => !['kind', 'url', 'token'].includes(k))
    if (extra.length > 0) fail(`unknown key status.${extra[0]} (status takes kind, url, token)`)
    if (!STATUS_KINDS.includes(s.kind as StatusKind)) fail(`status.kind must be ${STATUS_KINDS.join(' or ')}`)
    const kind = s.kind as StatusKind
    if (s.url === undefined && kind !== 'github') fail('status.url must be given for gitea: the API base, such as https://HOST/api/v1')
    // The token goes where the statuses go: github.com's API only for a repository on github.com, never by default
    // for a GitHub Enterprise host or any other (its token would be sent to github.com).
    if (s.url === undefined && repoHost(url) !== 'github.com') fail(`status.url must be given: ${url} is not on github.com, so its API is not https://api.github.com (GitHub Enterprise: https://HOST/api/v3)`)
    const apiBase = s.url === undefined ? GITHUB_API : checkApiBase(s.url)
    const token = checkSecret(s.token, 'status.token')
    if (ownerAndRepo(url) === undefined) fail(`commit statuses need {owner}/{repo}, the last two path segments of the URL, and ${url} has fewer`)
    status = { kind, url: apiBase, token }
  }
  if (hookSecret === undefined && poll === undefined) {
    fail('give a hookSecret (webhooks) or poll (seconds): without either, nothing starts this repository\'s pipelines')
  }
  return { url, branches, ...(poll !== undefined ? { poll } : {}), ...(hookSecret !== undefined ? { hookSecret } : {}), ...(status !== undefined ? { status } : {}) }
}

/** Whether `ref` (`refs/heads/NAME`) is a branch `branches` (globs on NAME) registers. */
export function branchRegistered (branches: readonly string[], ref: string): boolean {
  if (!ref.startsWith('refs/heads/')) return false
  return picomatch(branches as string[], { dot: true })(ref.slice('refs/heads/'.length))
}

/** Whether `id` could name a repository (ids are made like build ids). */
export function isRepoId (id: string): boolean {
  return BUILD_ID_PATTERN.test(id)
}

function record (stored: StoredRepo): RepoRecord {
  return {
    id: stored.id,
    url: stored.url,
    branches: [...stored.branches],
    ...(stored.poll !== undefined ? { poll: stored.poll } : {}),
    hook: `/api/hooks/${stored.id}`,
    webhooks: stored.hookSecret !== undefined,
    ...(stored.status !== undefined ? { status: { kind: stored.status.kind, url: stored.status.url } } : {}),
    created: stored.created
  }
}

type Db = AbstractLevel<any, string, any>

export interface ReposInit {
  /**
   * Where repositories are kept: a sublevel of the coordinator's database, or a Level of their own. open() opens
   * it and close() closes it.
   */
  db: Db
  /** The key hook secrets and status tokens are sealed with (secretsKey(DATA/secrets.key)). */
  key: Uint8Array
  /** @default Date.now */
  now?: () => number
}

/**
 * Items remembered per scope, the last `max` of them: `remember` says whether an item was there already and notes
 * it if not, in one step. Keys: `SCOPE:c:ITEM` → its sequence number, `SCOPE:s:SEQ` → the item (oldest first, for
 * forgetting), `SCOPE:m` → the first and next sequence numbers. Scopes and items hold no `:` where it would be
 * ambiguous: repository ids are [0-9a-z], git refs cannot hold `:`.
 */
export class Remembered {
  private readonly db: Db
  private readonly max: number

  /** `db`: a sublevel of its own (utf8 values); `max`: items kept per scope. */
  constructor (db: Db, max: number) {
    this.db = db
    this.max = max
  }

  /** Whether `item` is remembered in `scope`; if not, it is now (and the oldest past `max` is forgotten). Callers serialize. */
  async remember (scope: string, item: string): Promise<boolean> {
    if (await this.db.get(`${scope}:c:${item}`) !== undefined) return true
    const meta = JSON.parse(await this.db.get(`${scope}:m`) ?? '{"first":0,"next":0}') as { first: number, next: number }
    const seq = meta.next++
    const batch = this.db.batch()
    batch.put(`${scope}:c:${item}`, String(seq))
    batch.put(`${scope}:s:${seqKey(seq)}`, item)
    while (meta.next - meta.first > this.max) {
      const old = await this.db.get(`${scope}:s:${seqKey(meta.first)}`)
      if (old !== undefined) {
        batch.del(`${scope}:s:${seqKey(meta.first)}`)
        batch.del(`${scope}:c:${old}`)
      }
      meta.first++
    }
    batch.put(`${scope}:m`, JSON.stringify(meta))
    await batch.write()
    return false
  }

  /** Forget `item` in `scope` (nothing if it is not remembered). */
  async forget (scope: string, item: string): Promise<void> {
    const seq = await this.db.get(`${scope}:c:${item}`)
    if (seq === undefined) return
    await this.db.batch([{ type: 'del', key: `${scope}:c:${item}` }, { type: 'del', key: `${scope}:s:${seqKey(Number(seq))}` }])
  }

  /** Forget every scope starting with `prefix`. */
  async clear (prefix: string): Promise<void> {
    await this.db.clear({ gte: prefix, lt: `${prefix}\xff` })
  }
}

const seqKey = (seq: number): string => seq.toString(36).padStart(11, '0')

/**
 * The registry of repositories (LevelDB). Every write goes through one queue, so "seen this delivery?" and "built
 * this commit?" are each one atomic step however many webhooks and polls arrive at once.
 */
export class Repos {
  private readonly root: Db
  private readonly repos: Db
  private readonly deliveries: Remembered
  private readonly builtCommits: Remembered
  private readonly box: SecretBox
  private readonly now: () => number
  private readonly listeners = new Set<(change: RepoChange) => void>()
  private queue: Promise<unknown> = Promise.resolve()

  constructor (init: ReposInit) {
    this.root = init.db
    this.repos = init.db.sublevel<string, StoredRepo>('repos', { valueEncoding: 'json' }) as unknown as Db
    this.deliveries = new Remembered(init.db.sublevel<string, string>('deliveries', {}) as unknown as Db, MAX_DELIVERIES_PER_REPO)
    this.builtCommits = new Remembered(init.db.sublevel<string, string>('built', {}) as unknown as Db, MAX_BUILT_PER_BRANCH)
    this.box = new SecretBox(init.key)
    this.now = init.now ?? Date.now
  }

  async open (): Promise<void> {
    if (this.root.status === 'open') return
    // A database of its own says which data dir is in use when another process holds it.
    if ('location' in this.root) await openLevel(this.root as Db & { location: string })
    else await this.root.open()
  }

  async close (): Promise<void> {
    await this.queue.catch(() => {})
    await this.root.close()
  }

  /** Register a repository (checked as parseRepoInit does). Throws BadRepoError, or RepoConflictError if the URL is registered already or MAX_REPOS are. */
  async add (init: RepoInit): Promise<RepoRecord> {
    const checked = parseRepoInit(init)
    return await this.serial(async () => {
      const all = await this.stored()
      const same = all.find(r => sameRepository(r.url, checked.url))
      if (same !== undefined) throw new RepoConflictError(`${checked.url} is registered already as ${same.id}: remove it first (grid repo rm ${same.id}) to register it again`)
      if (all.length >= MAX_REPOS) throw new RepoConflictError(`the grid holds ${MAX_REPOS} repositories, its most: remove one first`)
      const id = newBuildId(this.now())
      const stored: StoredRepo = {
        id,
        url: checked.url,
        branches: checked.branches,
        ...(checked.poll !== undefined ? { poll: checked.poll } : {}),
        created: new Date(this.now()).toISOString(),
        ...(checked.hookSecret !== undefined ? { hookSecret: this.box.seal(checked.hookSecret, `repo:${id}:hookSecret`) } : {}),
        ...(checked.status !== undefined
          ? { status: { kind: checked.status.kind, url: checked.status.url ?? GITHUB_API, token: this.box.seal(checked.status.token, `repo:${id}:statusToken`) } }
          : {})
      }
      await this.repos.put(id, stored)
      const added = record(stored)
      this.tell({ kind: 'added', repo: added })
      return added
    })
  }

  /** Every repository, oldest first. */
  async list (): Promise<RepoRecord[]> {
    await this.queue.catch(() => {})
    return (await this.stored()).map(record)
  }

  /** One repository; undefined if `id` names none. */
  async get (id: string): Promise<RepoRecord | undefined> {
    const stored = await this.storedOne(id)
    return stored === undefined ? undefined : record(stored)
  }

  /** Remove a repository, what it remembered and its sealed secrets; the removed record, or undefined if unknown. */
  async remove (id: string): Promise<RepoRecord | undefined> {
    return await this.serial(async () => {
      const stored = await this.storedOne(id)
      if (stored === undefined) return undefined
      await this.repos.del(id)
      await this.deliveries.clear(`${id}:`)
      await this.builtCommits.clear(`${id}:`)
      const removed = record(stored)
      this.tell({ kind: 'removed', repo: removed })
      return removed
    })
  }

  /** The webhook secret of a repository, opened; undefined if it has none (or is unknown). For checking webhooks only. */
  async hookSecret (id: string): Promise<string | undefined> {
    const stored = await this.storedOne(id)
    if (stored?.hookSecret === undefined) return undefined
    return this.box.open(stored.hookSecret, `repo:${id}:hookSecret`)
  }

  /** Where a repository's commit statuses go, with its token opened; undefined without a target. For the status poster only. */
  async statusTarget (id: string): Promise<StatusTarget | undefined> {
    const stored = await this.storedOne(id)
    if (stored?.status === undefined) return undefined
    const names = ownerAndRepo(stored.url)
    if (names === undefined) return undefined
    return { kind: stored.status.kind, url: stored.status.url, token: this.box.open(stored.status.token, `repo:${id}:statusToken`), ...names }
  }

  /** Whether delivery `deliveryId` of repository `repo` was seen before; notes it if not (the last MAX_DELIVERIES_PER_REPO). */
  async seenDelivery (repo: string, deliveryId: string): Promise<boolean> {
    return await this.serial(async () => await this.deliveries.remember(repo, deliveryId))
  }

  /** Forget a delivery noted by seenDelivery, when what it asked for did not happen (so a redelivery is taken). */
  async forgetDelivery (repo: string, deliveryId: string): Promise<void> {
    await this.serial(async () => { await this.deliveries.forget(repo, deliveryId) })
  }

  /**
   * Whether `commit` was built on `ref` of `repo` already; marks it built if not, in the same step, so of two
   * callers racing with the same commit exactly one gets false and starts its pipeline.
   */
  async built (repo: string, ref: string, commit: string): Promise<boolean> {
    return await this.serial(async () => await this.builtCommits.remember(`${repo}:${ref}`, commit))
  }

  /** Undo built() when the pipeline did not start after all, so the next push or poll tries again. */
  async forgetBuilt (repo: string, ref: string, commit: string): Promise<void> {
    await this.serial(async () => { await this.builtCommits.forget(`${repo}:${ref}`, commit) })
  }

  /** Told when a repository is added or removed; returns the function that stops telling. */
  onChange (listener: (change: RepoChange) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  private tell (change: RepoChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change)
      } catch {}
    }
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.catch(() => {}).then(fn)
    this.queue = run
    return await run
  }

  private async stored (): Promise<StoredRepo[]> {
    return await this.repos.values().all() as StoredRepo[]
  }

  private async storedOne (id: string): Promise<StoredRepo | undefined> {
    if (!isRepoId(id)) return undefined
    return await this.repos.get(id) as StoredRepo | undefined
  }
}

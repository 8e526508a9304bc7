// A job's `cache` entries on the worker (docs/job.md, "Caches"): keys filled in once src and inputs are in place,
// the entry the coordinator's index names restored before the first step, and the paths saved after the steps
// when the exact key had no entry. A cache is content like an artifact: one deterministic tar, read from this
// worker's own cache first, then the worker that made it, then the placed stores, every block checked.
// A cache never fails the build: each outcome is one `grid:` line in the log, and the build goes on.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { glob, lstat, readdir, readlink, realpath } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { dirname, join, sep } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { create as tarCreate, extract as tarExtract } from 'tar'
import type { ReadEntry } from 'tar'
import { GridError } from '../net/errors.ts'
import type { PeerAddress } from '../net/dial.ts'
import { coordinatorAddress } from '../net/join-code.ts'
import { parseCid } from '../grid/content.ts'
import { rankFor } from '../grid/placement.ts'
import { z } from 'zod'
import { CACHE_EXPRESSION, MAX_CACHE_KEY_CHARS, MAX_JOB_CACHES, cacheSchema, parseCacheExpression } from '../grid/job.ts'
import type { CacheRecord, Capabilities } from '../grid/build.ts'
import { readContent } from '../client/content/read.ts'
import { putReadable } from '../client/content/place.ts'
import { askCoordinator } from '../protocols/builds.ts'
import type { BuildsRequest, BuildsReply } from '../protocols/builds.ts'
import { formatBytes, tarEntryProblem } from './workspace.ts'
import type { WorkspaceInit } from './workspace.ts'

/** Hex characters of a `hashFiles` value: 64 bits of sha256, plenty to tell lock files apart and short enough to read in a log. */
export const HASH_FILES_CHARS = 16

/** Permission bits: what travels with a file (as in workspace.ts); setuid, setgid and sticky never do. */
const PERMISSION_BITS = 0o777

/** A key shown in a log line: cut to this many characters (a key may be 512). */
const MAX_SHOWN_KEY = 80

/** A cache key that cannot be filled in: the build fails before its first step, with this one sentence. */
export class CacheKeyError extends GridError {
  name = 'CacheKeyError'
  readonly status = 400
}

/** One of a job's caches with its key and prefixes filled in. `exact`: the restore found the exact key (nothing to save). */
export interface ResolvedCache {
  key: string
  restore: string[]
  paths: string[]
  save: 'success' | 'always'
  exact?: boolean
  /** Why the coordinator will not take this cache (it answered the find with an error): it is not saved either. */
  refused?: string
}

/**
 * `hashFiles('GLOB', …)` as GitHub Actions has it, in the work dir: sha256 over the matching files (regular files
 * and links, each once, sorted by path), each as its path, its size and its content (a link: its target's text),
 * cut to HASH_FILES_CHARS hex characters. No file matches: the empty string (as GitHub's hashFiles). Paths are the
 * work dir's, so the same tree gives the same value on any worker.
 */
export async function hashFiles (workDir: string, globs: string[]): Promise<string> {
  const root = await realpath(workDir)
  const files = new Map<string, Stats>()
  for (const pattern of globs) {
    for await (const hit of glob(pattern, { cwd: root })) {
      const path = hit.split(sep).join('/')
      if (files.has(path)) continue
      const info = await lstat(join(root, hit)).catch(() => undefined)
      // Only what lies inside the work dir counts: a match reached through a link out of it is left out.
      if (info === undefined || (!info.isFile() && !info.isSymbolicLink())) continue
      const parent = await realpath(dirname(join(root, hit)))
      if (parent !== root && !parent.startsWith(root + sep)) continue
      files.set(path, info)
    }
  }
  if (files.size === 0) return ''
  const hash = createHash('sha256')
  for (const path of [...files.keys()].sort()) {
    const info = files.get(path)!
    const full = join(root, path)
    if (info.isSymbolicLink()) {
      const target = Buffer.from(await readlink(full))
      hash.update(`${path}\0link\0${target.length}\0`).update(target)
      continue
    }
    hash.update(`${path}\0file\0${info.size}\0`)
    for await (const chunk of createReadStream(full)) hash.update(chunk as Buffer)
  }
  return hash.digest('hex').slice(0, HASH_FILES_CHARS)
}

/**
 * A cache key with its `${{ … }}` filled in: `hashFiles(…)` over the work dir, `capabilities.K` from this worker's
 * capabilities. Throws CacheKeyError with one sentence for an expression it cannot fill (an unknown capability, a
 * malformed expression) or a key longer than MAX_CACHE_KEY_CHARS once filled.
 */
export async function substituteCacheKey (key: string, context: { workDir: string, capabilities: Capabilities }): Promise<string> {
  let out = ''
  let last = 0
  for (const m of key.matchAll(CACHE_EXPRESSION)) {
    out += key.slice(last, m.index)
    last = m.index + m[0].length
    let expression
    try {
      expression = parseCacheExpression(m[1])
    } catch (err: any) {
      throw new CacheKeyError(`cache key ${shownKey(key)}: ${err.issues?.[0]?.message ?? err.message}`)
    }
    if (expression.t === 'capability') {
      const value = context.capabilities[expression.key]
      if (value === undefined) throw new CacheKeyError(`cache key ${shownKey(key)} names capabilities.${expression.key}, which this worker does not have`)
      out += value
    } else {
      out += await hashFiles(context.workDir, expression.globs)
    }
  }
  out += key.slice(last)
  if (out.length > MAX_CACHE_KEY_CHARS) throw new CacheKeyError(`cache key ${shownKey(key)} is ${out.length} characters once filled in, and a key is at most ${MAX_CACHE_KEY_CHARS}`)
  if (/[\x00-\x1f\x7f]/.test(out)) throw new CacheKeyError(`cache key ${shownKey(key)} holds a control character once filled in (from a capability's value)`)
  return out
}

const jobCaches = z.array(cacheSchema).max(MAX_JOB_CACHES).optional()

/**
 * Every cache of a job (its `cache` as the assignment carries it: checked again here, since the assignment passes
 * it through unchecked), keys filled in after src and inputs are in place; CacheKeyError for the first that cannot be.
 */
export async function resolveCaches (job: Record<string, unknown>, context: { workDir: string, capabilities: Capabilities }): Promise<ResolvedCache[]> {
  const parsed = jobCaches.safeParse(job.cache)
  if (!parsed.success) throw new CacheKeyError(`the job's cache is not one this worker understands (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message})`)
  const resolved: ResolvedCache[] = []
  for (const cache of parsed.data ?? []) {
    resolved.push({
      key: await substituteCacheKey(cache.key, context),
      restore: await Promise.all((cache.restore ?? []).map(async prefix => await substituteCacheKey(prefix, context))),
      paths: cache.paths,
      save: cache.save ?? 'success'
    })
  }
  return resolved
}

const shownKey = (key: string): string => {
  const cut = key.length > MAX_SHOWN_KEY ? `${key.slice(0, MAX_SHOWN_KEY)}…` : key
  return /[\x00-\x1f\x7f]/.test(cut) ? JSON.stringify(cut) : cut
}

const seconds = (since: number): string => `${((performance.now() - since) / 1000).toFixed(1)} s`

/** What restoring and saving need: the work dir's placement and this worker's cache, the attempt, a line to the log. */
export interface CacheContext {
  workspace: WorkspaceInit
  attempt: string
  note: (line: string) => void
  /** Each outcome as the build record keeps it (grid/build.ts CacheRecord), in the order of the log lines. */
  record?: (outcome: CacheRecord) => void
  /** One request to the coordinator (askCoordinator on the builds protocol; a stub in tests). */
  ask?: (request: BuildsRequest) => Promise<BuildsReply>
}

function asker (context: CacheContext): (request: BuildsRequest) => Promise<BuildsReply> {
  const { host, join: code, signal } = context.workspace
  return context.ask ?? (async request => await askCoordinator(host, coordinatorAddress(code), request, AbortSignal.any([signal, AbortSignal.timeout(30_000)])))
}

/**
 * Before the first step: restore each cache from the entry the coordinator names (the exact key, else by prefix),
 * saying in one line what was restored from which key, how big and how long it took, or that it missed. Marks
 * `exact` on those whose exact key was found. Never throws: a failure is a miss, said in the log.
 */
export async function restoreCaches (context: CacheContext, caches: ResolvedCache[]): Promise<void> {
  const ask = asker(context)
  const record = context.record ?? (() => {})
  for (const cache of caches) {
    if (context.workspace.signal.aborted) return
    const started = performance.now()
    try {
      const reply = await ask({ t: 'cache-find', attempt: context.attempt, key: cache.key, restore: cache.restore })
      if (reply.t === 'error') {
        cache.refused = reply.error
        context.note(`cache ${shownKey(cache.key)}: not restored, and will not be saved: ${reply.error}`)
        record({ key: cache.key, outcome: 'missed', why: `not restored, and will not be saved: ${reply.error}` })
        continue
      }
      if (reply.t !== 'cache') throw new Error(`the coordinator answered ${reply.t}`)
      if (reply.entry === undefined) {
        context.note(`cache ${shownKey(cache.key)} missed: saving after the steps`)
        record({ key: cache.key, outcome: 'missed' })
        continue
      }
      const outside = await unpack(context.workspace, reply.entry.cid, cache.paths, reply.maker)
      cache.exact = reply.entry.key === cache.key
      record(cache.exact ? { key: cache.key, outcome: 'restored', size: reply.entry.size } : { key: cache.key, outcome: 'restored-by-prefix', from: reply.entry.key, size: reply.entry.size })
      context.note(`cache ${shownKey(cache.key)} restored from ${shownKey(reply.entry.key)} (${formatBytes(reply.entry.size)}, ${seconds(started)})${cache.exact ? '' : ': saving the exact key after the steps'}`)
      if (outside > 0) context.note(`cache ${shownKey(cache.key)}: left out ${outside} entr${outside === 1 ? 'y' : 'ies'} of ${shownKey(reply.entry.key)} outside its paths (${cache.paths.join(', ').slice(0, 200)})`)
    } catch (err: any) {
      context.note(`cache ${shownKey(cache.key)}: not restored: ${err.message}`)
      record({ key: cache.key, outcome: 'missed', why: `not restored: ${err.message}` })
    }
  }
}

/** Content as a stream of Buffers: this worker's cache first, then the worker that made it, then the placed stores. */
function contentStream (init: WorkspaceInit, cid: string, maker?: PeerAddress): Readable {
  const sources = { host: init.host, local: init.cache?.blocks, holders: () => [...(maker !== undefined ? [maker] : []), ...rankFor(cid, init.stores)] }
  return Readable.from((async function * () {
    for await (const chunk of readContent(sources, parseCid(cid), {}, init.signal)) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  })(), { objectMode: false })
}

/**
 * Unpack a cache's tar into the work dir with the safety of a src tar (workspace.ts safeUnpack): nothing lands
 * outside it. Only entries under the cache's `paths` are written (an entry saved under the same key by a job with
 * other paths cannot overwrite the src); returns how many were left out for that.
 */
async function unpack (init: WorkspaceInit, cid: string, paths: string[], maker?: PeerAddress): Promise<number> {
  const refused: string[] = []
  const roots = paths.map(p => p.split('/').filter(s => s !== '' && s !== '.').join('/')).filter(p => p !== '')
  let outside = 0
  await pipeline(contentStream(init, cid, maker), tarExtract({
    cwd: await realpath(init.workDir),
    strict: true,
    unlink: true,
    filter: (_path: string, entry: ReadEntry | Stats) => {
      const e = entry as ReadEntry
      const problem = tarEntryProblem({ path: e.path, type: e.type, linkpath: e.linkpath })
      if (problem !== undefined) {
        refused.push(problem)
        return false
      }
      const path = e.path.replace(/^(\.\/)+/, '').replace(/\/+$/, '')
      if (!roots.some(root => path === root || path.startsWith(root + '/'))) {
        outside++
        return false
      }
      if (typeof e.mode === 'number') e.mode &= PERMISSION_BITS
      return true
    }
  }))
  if (refused.length > 0) throw new Error(`refused ${refused.length} entr${refused.length === 1 ? 'y' : 'ies'} of it (${refused[0]})`)
  return outside
}

/**
 * After the steps: save each cache whose exact key had no entry, when the steps succeeded (or failed, with
 * `save: always`), and tell the coordinator's index. One line each, saved or not saved and why; never throws.
 */
export async function saveCaches (context: CacheContext, caches: ResolvedCache[], stepsSucceeded: boolean): Promise<void> {
  const ask = asker(context)
  const record = context.record ?? (() => {})
  for (const cache of caches) {
    if (cache.exact === true || cache.refused !== undefined) continue
    if (context.workspace.signal.aborted) return
    if (!stepsSucceeded && cache.save !== 'always') {
      context.note(`cache ${shownKey(cache.key)}: not saved: a step failed (save: always saves after a failure too)`)
      record({ key: cache.key, outcome: 'not-saved', why: 'a step failed' })
      continue
    }
    const started = performance.now()
    try {
      const files = await cacheFiles(context.workspace.workDir, cache.paths, context.note)
      if (files.length === 0) throw new Error(`none of its paths (${cache.paths.join(', ').slice(0, 200)}) exists`)
      const { stores, replicas, host, cache: own } = context.workspace
      if (stores.length === 0) throw new Error('there is no store to keep it on')
      const tar = (): AsyncIterable<Uint8Array> => tarCreate({ cwd: context.workspace.workDir, portable: true, mtime: new Date(0), gzip: false, noDirRecurse: true }, files) as unknown as AsyncIterable<Uint8Array>
      // Straight to the stores placed for its CID (as artifacts are, workspace.ts keepOne).
      const put = await putReadable({ host, stores, replicas: replicas ?? 1, alsoKeep: own !== undefined ? [own.target] : [] }, tar)
      const reply = await ask({ t: 'cache-keep', attempt: context.attempt, key: cache.key, cid: put.cid, size: put.size })
      if (reply.t === 'error') throw new Error(reply.error)
      context.note(`cache ${shownKey(cache.key)} saved (${formatBytes(put.size)}, ${seconds(started)})`)
      record({ key: cache.key, outcome: 'saved', size: put.size })
    } catch (err: any) {
      context.note(`cache ${shownKey(cache.key)}: not saved: ${err.message}`)
      record({ key: cache.key, outcome: 'not-saved', why: err.message })
    }
  }
}

/**
 * The entries of a cache's tar, in a fixed order (each path as listed, then what is under a directory, names
 * sorted): directories, files and links inside the work dir. A path that does not exist is said and skipped; a
 * path reached through a link, a link leading out of the work dir, or a fifo, socket or device is said and left
 * out (unpacking would refuse it).
 */
export async function cacheFiles (workDir: string, paths: string[], note: (line: string) => void = () => {}): Promise<string[]> {
  const root = await realpath(workDir)
  const out: string[] = []
  const seen = new Set<string>()
  const walk = async (path: string): Promise<void> => {
    if (seen.has(path)) return
    seen.add(path)
    const full = join(root, path)
    const info = await lstat(full)
    if (info.isDirectory()) {
      out.push(path)
      for (const name of (await readdir(full)).sort()) await walk(`${path}/${name}`)
    } else if (info.isFile()) out.push(path)
    else if (info.isSymbolicLink()) {
      const problem = tarEntryProblem({ path, type: 'SymbolicLink', linkpath: await readlink(full) })
      if (problem === undefined) out.push(path)
      else note(`cache path ${path}: left out: ${problem.replace(/^entry /, '')}`)
    } else note(`cache path ${path}: left out: not a file, a directory or a link`)
  }
  for (const listed of paths) {
    const path = listed.split('/').filter(p => p !== '' && p !== '.').join('/')
    if (path === '') {
      note('cache path . names the whole work dir: left out (name the directories to keep)')
      continue
    }
    const info = await lstat(join(root, path)).catch(() => undefined)
    if (info === undefined) {
      note(`cache path ${path} does not exist: nothing saved for it`)
      continue
    }
    if (await realpath(dirname(join(root, path))) !== dirname(join(root, path))) {
      note(`cache path ${path} is reached through a link: left out`)
      continue
    }
    await walk(path)
  }
  return out
}

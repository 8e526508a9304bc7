// A build's work dir before and after its steps: the source tar unpacked and the inputs placed first (fetched
// from whichever store holds them, the placed ones first, every block checked), the artifacts matched and pushed
// straight to their placed stores after (each on all its replicas before the build reports them). The
// coordinator never carries these bytes.
//
// A file keeps its permission bits (setuid, setgid and sticky never travel) and a symbolic link stays a link
// (its content is the target's text, as git stores a link) on every path: artifact → input, src tar → work dir,
// `grid get --extract`. No link is ever followed out of the work dir, and nothing is written through a link.
import { createWriteStream } from 'node:fs'
import { chmod, glob, lstat, mkdir, readdir, readlink, realpath, rm, symlink } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { basename, dirname, isAbsolute, join, posix, resolve, sep } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { extract as tarExtract, list as tarList } from 'tar'
import type { ReadEntry, TarOptionsWithAliasesAsyncNoFile } from 'tar'
import type { GridHost } from '../net/host.ts'
import { GridError } from '../net/errors.ts'
import type { PeerAddress } from '../net/dial.ts'
import type { JoinCode } from '../net/join-code.ts'
import { coordinatorAddress } from '../net/join-code.ts'
import { parseCid } from '../grid/content.ts'
import { putContent } from '../client/content/put.ts'
import { putReadable } from '../client/content/place.ts'
import { putPool, readFileBlocks } from '../client/content/file-blocks.ts'
import { readContent } from '../client/content/read.ts'
import type { Blockstore } from '../storage/blockstore.ts'
import type { WorkerCache } from './cache.ts'
import { rankFor } from '../grid/placement.ts'
import { askCoordinator } from '../protocols/builds.ts'
import { FINISHED } from '../grid/build.ts'
import { parseArtifactRef } from '../grid/ids.ts'
import type { ArtifactRef } from '../grid/ids.ts'
import type { ArtifactRecord } from '../grid/build.ts'
import { MAX_ARTIFACTS, MAX_REASON_CHARS, MAX_WARNINGS } from '../grid/constants.ts'

/** How often a build waiting on another build's artifact asks whether it finished. */
const INPUT_POLL_MS = 500

/**
 * Artifacts put at once. Each small file costs a few round trips to its stores (which blocks are missing, the
 * blocks, the root); one at a time, a thousand small files took 18 s. A few at once fill those gaps and keep
 * memory at a few put pools.
 */
const ARTIFACT_PUTS_AT_ONCE = 4

/** Skipped files named one by one in the log; past this, one line counts the rest (the warnings say the same). */
const MAX_SKIP_LINES = 200

/** A path as the log and a warning show it: at most this many characters, so one sentence stays within MAX_REASON_CHARS. */
const MAX_SHOWN_PATH = 300

/** The longest path (bytes of UTF-8) an artifact may have: what the worker → coordinator message takes. */
const MAX_ARTIFACT_PATH_BYTES = 4096

/** Permission bits: what travels with a file. setuid, setgid and sticky never do. */
const PERMISSION_BITS = 0o777

export class WorkspaceError extends GridError {
  name = 'WorkspaceError'
  /** What was kept before it went wrong (a store that filled up halfway): recorded all the same. */
  kept: Artifact[] = []
  /** What was skipped before it went wrong, one sentence each. */
  warnings: string[] = []
}

/** What a build keeps: a file with its permission bits, or a symbolic link (its content is the target's text). */
export type Artifact = Omit<ArtifactRecord, 'evicted'>

export interface WorkspaceInit {
  host: GridHost
  join: JoinCode
  workDir: string
  stores: PeerAddress[]
  /** How many of `stores` each artifact goes to (the assignment's `replicas`). @default 1 */
  replicas?: number
  /** This worker's cache: artifacts it makes and inputs it fetches are kept there and served to other workers. */
  cache?: WorkerCache
  signal: AbortSignal
}

/** Content as a byte stream of Buffers (tar's parser mangles plain Uint8Array chunks). */
function contentStream (init: WorkspaceInit, cid: string, maker?: PeerAddress): Readable {
  return Readable.from((async function * () {
    for await (const chunk of readContent(sources(init, cid, maker), parseCid(cid), {}, init.signal)) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  })(), { objectMode: false })
}

/** This worker's cache first, then the worker that made the content (straight from it), then the placed stores. */
function sources (init: WorkspaceInit, cid: string, maker?: PeerAddress): { host: GridHost, local?: Blockstore, holders: () => PeerAddress[] } {
  return { host: init.host, local: init.cache?.blocks, holders: () => [...(maker !== undefined ? [maker] : []), ...rankFor(cid, init.stores)] }
}

const inside = (root: string, path: string): boolean => path === root || path.startsWith(root + sep)

/** A path shown in one line: control characters escaped, and cut short if very long. */
function shown (path: string): string {
  const cut = path.length > MAX_SHOWN_PATH ? `${path.slice(0, MAX_SHOWN_PATH)}…` : path
  return /[\x00-\x1f\x7f\ufffd]/.test(cut) ? JSON.stringify(cut) : cut
}

/** Why a tar entry may not be unpacked into a directory, or undefined if it may. */
export function tarEntryProblem (entry: { path: string, type: string, linkpath?: string }): string | undefined {
  const path = entry.path.replace(/\/+$/, '')
  const name = shown(entry.path)
  if (isAbsolute(path)) return `entry ${name} has an absolute path`
  if (path.split('/').includes('..')) return `entry ${name} climbs out of the directory`
  switch (entry.type) {
    case 'File': case 'OldFile': case 'ContiguousFile': case 'Directory': case 'GNUDumpDir': return undefined
    case 'SymbolicLink': {
      const target = entry.linkpath ?? ''
      if (target === '' || isAbsolute(target)) return `entry ${name} is a link to ${shown(target)}, an absolute path outside the directory`
      const lands = posix.normalize(posix.join(posix.dirname(path), target))
      if (lands === '..' || lands.startsWith('../')) return `entry ${name} is a link to ${shown(target)}, which leads outside the directory`
      return undefined
    }
    case 'Link': {
      // A hard link names another entry of the same archive, from the archive's root.
      const target = posix.normalize(entry.linkpath ?? '')
      if (isAbsolute(target) || target === '..' || target.startsWith('../')) return `entry ${name} is a hard link to ${shown(entry.linkpath ?? '')}, outside the directory`
      return undefined
    }
    default: return `entry ${name} is a ${entry.type}, not a file, a directory or a link`
  }
}

/**
 * Tar options for unpacking into `cwd`: modes kept but for setuid, setgid and sticky; links kept as links; an
 * entry that would escape `cwd` (a path or a link leading out of it, a device) is not unpacked and `refuse` hears
 * why. node-tar refuses `..` in paths, and writing through a link, on its own.
 */
function safeUnpack (cwd: string, refuse: (why: string) => void): TarOptionsWithAliasesAsyncNoFile & { sync?: false } {
  return {
    cwd,
    strict: true,
    // An existing file is replaced, not written into: it takes the entry's mode, and a link in the way is not followed.
    unlink: true,
    filter: (_path: string, entry: ReadEntry | Stats) => {
      const e = entry as ReadEntry
      const problem = tarEntryProblem({ path: e.path, type: e.type, linkpath: e.linkpath })
      if (problem !== undefined) {
        refuse(problem)
        return false
      }
      if (typeof e.mode === 'number') e.mode &= PERMISSION_BITS
      return true
    }
  }
}

/**
 * Unpack a tar file into `dir` (made if missing), keeping modes and links. Every entry is checked first: one that
 * would land outside `dir` refuses the whole tar with WorkspaceError, and nothing is written. `grid get --extract`.
 */
export async function extractTarFile (file: string, dir: string): Promise<{ entries: number }> {
  let entries = 0
  const problems: string[] = []
  await tarList({
    file,
    strict: true,
    onReadEntry: entry => {
      entries++
      const problem = tarEntryProblem({ path: entry.path, type: entry.type, linkpath: entry.linkpath })
      if (problem !== undefined) problems.push(problem)
    }
  }).catch((err: Error) => { throw new WorkspaceError(`the content is not a tar this can unpack (${err.message})`) })
  if (problems.length > 0) throw new WorkspaceError(`refused to unpack: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more such entries)` : ''}; nothing was written`)
  await mkdir(dir, { recursive: true })
  await tarExtract({ ...safeUnpack(resolve(dir), why => problems.push(why)), file, sync: false }).catch((err: Error) => { throw new WorkspaceError(`could not unpack into ${dir}: ${err.message}`) })
  if (problems.length > 0) throw new WorkspaceError(`refused to unpack: ${problems[0]}`)
  return { entries }
}

/** Unpack `src` and place `inputs` in the work dir. Throws WorkspaceError with one sentence. */
export async function prepare (init: WorkspaceInit, src: string | undefined, inputs: Record<string, string>): Promise<void> {
  if (src !== undefined) {
    const refused: string[] = []
    try {
      // node-tar refuses absolute paths and `..` in entries, and writing through links; safeUnpack refuses links
      // leading out of the work dir. A hostile tar cannot write outside it.
      await pipeline(contentStream(init, src), tarExtract(safeUnpack(resolve(init.workDir), why => refused.push(why))))
    } catch (err: any) {
      throw new WorkspaceError(`could not unpack src ${src}: ${err.message}`)
    }
    if (refused.length > 0) throw new WorkspaceError(`could not unpack src ${src}: ${refused[0]}`)
  }
  const placed = Object.entries(inputs)
  if (placed.length === 0) return
  const root = await realpath(init.workDir)
  for (const [path, from] of placed) {
    const ref = parseArtifactRef(from)
    const { cid, maker, artifact } = ref !== undefined ? await artifactOf(init, from, ref) : { cid: from, maker: undefined, artifact: undefined }
    const target = join(root, path)
    try {
      await placeable(root, path)
      await mkdir(dirname(target), { recursive: true })
      // Whatever the src put there is replaced: a link in the way is removed, never written through.
      await rm(target, { force: true })
      if (artifact?.link !== undefined) {
        const lands = resolve(dirname(target), artifact.link)
        if (isAbsolute(artifact.link) || !inside(root, lands)) throw new Error(`it is a link to ${shown(artifact.link)}, which would lead outside the work dir here`)
        await symlink(artifact.link, target)
        continue
      }
      await pipeline(contentStream(init, cid, maker), createWriteStream(target))
      if (artifact?.mode !== undefined) await chmod(target, artifact.mode & PERMISSION_BITS)
    } catch (err: any) {
      throw new WorkspaceError(`could not fetch input ${path} (${from}): ${err.message}`)
    }
    // What it fetched, it caches and serves (every node serves what it fetched): the next build that needs it may get it from here.
    await keep(init, target)
  }
}

/** An input goes at `path` only if no directory on the way there is a link (src may have put one there). */
async function placeable (root: string, path: string): Promise<void> {
  const parts = path.split('/').filter(p => p !== '' && p !== '.')
  let at = root
  for (const part of parts.slice(0, -1)) {
    at = join(at, part)
    const info = await lstat(at).catch(() => undefined)
    if (info === undefined) return
    if (info.isSymbolicLink()) throw new Error(`${shown(at.slice(root.length + 1))} on its way is a link, and nothing is written through a link`)
  }
}

/** Keep a file in this worker's cache, if it has one; a full or failing cache costs the build nothing. */
async function keep (init: WorkspaceInit, path: string): Promise<void> {
  if (init.cache === undefined) return
  const pool = putPool()
  await putContent(init.cache.target, readFileBlocks(path, pool), { pool }).catch(() => {})
}

/** `build:ID/PATH`: wait for build ID to succeed, then its artifact PATH (CID, mode, link) and the worker that made it. */
async function artifactOf (init: WorkspaceInit, ref: string, { build: id, artifact: path }: ArtifactRef): Promise<{ cid: string, maker?: PeerAddress, artifact: ArtifactRecord }> {
  const coordinator = coordinatorAddress(init.join)
  while (!init.signal.aborted) {
    const reply = await askCoordinator(init.host, coordinator, { t: 'get', id }).catch(() => undefined)
    if (reply?.t === 'error') throw new WorkspaceError(`input ${ref}: ${reply.error}`)
    if (reply?.t === 'build' && FINISHED.has(reply.build.status)) {
      if (reply.build.status !== 'succeeded') throw new WorkspaceError(`input ${ref}: build ${id} ended ${reply.build.status}`)
      const artifact = reply.build.artifacts.find(a => a.path === path)
      if (artifact === undefined) throw new WorkspaceError(`input ${ref}: build ${id} has no artifact ${path}`)
      return { cid: artifact.cid, maker: reply.maker, artifact }
    }
    await new Promise(resolve => setTimeout(resolve, INPUT_POLL_MS))
  }
  throw new WorkspaceError(`input ${ref}: stopped while waiting for build ${id}`)
}

/** 1536 → `1.5 KiB`. */
export function formatBytes (bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} ${bytes === 1 ? 'byte' : 'bytes'}` : `${value.toFixed(1)} ${units[unit]}`
}

/** A file or link found by the globs that can be kept. `through`: a directory on its way is a link (inside the work dir). */
interface Candidate {
  path: string
  full: string
  size: number
  mode?: number
  link?: string
  through?: boolean
}

/** One sentence for a path that was not kept. */
const notKept = (path: string, why: string): string => `artifact ${shown(path)} was not kept: ${why}`

/** Why a name cannot travel, or undefined. */
function badName (path: string): string | undefined {
  if (path.includes('\ufffd')) return 'its name is not valid UTF-8'
  if (/[\x00-\x1f\x7f]/.test(path)) return 'its name holds a control character'
  if (Buffer.byteLength(path) > MAX_ARTIFACT_PATH_BYTES) return `its path is longer than ${MAX_ARTIFACT_PATH_BYTES} bytes`
  return undefined
}

function specialKind (info: Stats): string {
  if (info.isFIFO()) return 'a fifo (named pipe)'
  if (info.isSocket()) return 'a socket'
  if (info.isCharacterDevice()) return 'a character device'
  if (info.isBlockDevice()) return 'a block device'
  return 'not a regular file'
}

/** The real path of `path`, or of its deepest existing ancestor joined with the rest (a dangling link's target). */
async function realOrAncestor (path: string): Promise<string> {
  try {
    return await realpath(path)
  } catch (err: any) {
    if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') throw err
    const parent = dirname(path)
    if (parent === path) return path
    return join(await realOrAncestor(parent), basename(path))
  }
}

/** An error from the file system about the file itself (gone, unreadable), not from a store: it names the path. */
const fileProblem = (err: any): boolean => typeof err?.code === 'string' && typeof err?.path === 'string'

/**
 * Match the globs, push every file and link to a store, and list them. `note` writes one `grid:` line into the
 * build's log. A named directory keeps everything under it. A file that cannot be taken (a link out of the work
 * dir, a bad name, a fifo, one that cannot be read) is skipped, named in the log and in `warnings`, and the rest
 * are kept; past MAX_ARTIFACTS the first ones in path order are kept. All of that is decided before any upload.
 * Throws WorkspaceError with one sentence when the stores cannot keep them (none, full, unreachable), carrying
 * what was kept before it.
 */
export async function collect (init: WorkspaceInit, globs: string[], note: (line: string) => void = () => {}): Promise<{ artifacts: Artifact[], warnings: string[] }> {
  if (globs.length === 0) return { artifacts: [], warnings: [] }
  const skipped: string[] = []
  let skipLines = 0
  const skip = (path: string, why: string): void => {
    const sentence = notKept(path, why)
    skipped.push(sentence)
    if (skipLines++ < MAX_SKIP_LINES) note(sentence)
  }
  const candidates = await match(init.workDir, globs, skip, note)
  const keeping = candidates.slice(0, MAX_ARTIFACTS)
  const limit = candidates.length > MAX_ARTIFACTS
    ? `${candidates.length} files matched the artifact globs and a build keeps at most ${MAX_ARTIFACTS}: kept the first ${MAX_ARTIFACTS} in path order and not the other ${candidates.length - MAX_ARTIFACTS} (the first not kept is ${shown(candidates[MAX_ARTIFACTS].path)}; put them in one tar to keep them all)`
    : undefined
  if (limit !== undefined) note(limit)
  /** Once, at the end: the warnings for the record (at most MAX_WARNINGS, the last one counting the rest). */
  const warnings = (): string[] => {
    if (skipLines > MAX_SKIP_LINES) note(`and ${skipLines - MAX_SKIP_LINES} more files were not kept`)
    const all = [...(limit !== undefined ? [limit] : []), ...skipped]
    return all.length <= MAX_WARNINGS ? all : [...all.slice(0, MAX_WARNINGS - 1), `and ${all.length - MAX_WARNINGS + 1} more artifacts were not kept (the log names ${Math.min(MAX_SKIP_LINES, skipped.length)} of them)`]
  }
  if (keeping.length === 0) {
    const out = warnings()
    note(`kept no artifacts${skipped.length > 0 ? ` (${skipped.length} not kept)` : ''}`)
    return { artifacts: [], warnings: out }
  }
  if (init.stores.length === 0) {
    const err = new WorkspaceError('there is no store to keep the artifacts on')
    err.warnings = warnings()
    throw err
  }

  const kept: Array<Artifact | undefined> = new Array(keeping.length)
  const stores = new Set<string>()
  let failure: WorkspaceError | undefined
  let next = 0
  const lane = async (): Promise<void> => {
    while (failure === undefined && next < keeping.length && !init.signal.aborted) {
      const index = next++
      const candidate = keeping[index]
      try {
        const put = await keepOne(init, candidate)
        kept[index] = put.artifact
        for (const store of put.stores) stores.add(store)
      } catch (err: any) {
        if (fileProblem(err)) skip(candidate.path, `it could not be read (${err.code})`)
        else if (err.name === 'ContentChangedError') skip(candidate.path, 'it changed while it was being kept')
        else failure ??= new WorkspaceError(`could not keep artifact ${shown(candidate.path)} (${formatBytes(candidate.size)}) on the stores: ${err.message}`.slice(0, MAX_REASON_CHARS / 2))
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(ARTIFACT_PUTS_AT_ONCE, keeping.length) }, lane))
  const artifacts = kept.filter(a => a !== undefined)
  const bytes = artifacts.reduce((n, a) => n + a.size, 0)
  const out = warnings()
  const summary = `kept ${artifacts.length} ${artifacts.length === 1 ? 'artifact' : 'artifacts'} (${formatBytes(bytes)}) on ${stores.size} ${stores.size === 1 ? 'store' : 'stores'}`
  if (failure !== undefined) {
    failure.message += `; ${summary} before that`
    failure.kept = artifacts
    failure.warnings = out
    throw failure
  }
  if (init.signal.aborted) throw new WorkspaceError('stopped while keeping the artifacts')
  note(`${summary}${skipped.length > 0 ? `; ${skipped.length} not kept (see above)` : ''}`)
  return { artifacts, warnings: out }
}

/** Put one file or link on its placed stores (and this worker's cache). */
async function keepOne (init: WorkspaceInit, candidate: Candidate): Promise<{ artifact: Artifact, stores: string[] }> {
  const alsoKeep = init.cache !== undefined ? [init.cache.target] : []
  const placement = { host: init.host, stores: init.stores, replicas: init.replicas ?? 1, alsoKeep }
  if (candidate.link !== undefined) {
    const bytes = Buffer.from(candidate.link)
    const once = async function * (): AsyncGenerator<Uint8Array> { yield bytes }
    const put = await putReadable(placement, once)
    return { artifact: { path: candidate.path, cid: put.cid, size: put.size, sha256: put.sha256, link: candidate.link }, stores: put.stores }
  }
  const pool = putPool()
  // Straight to the stores placed for its CID: sent as it is hashed when every store takes it, else named first
  // (a read at hashing speed) and then only sent (the stores still check every block).
  const put = await putReadable(placement, () => readFileBlocks(candidate.full, pool), { pool })
  return { artifact: { path: candidate.path, cid: put.cid, size: put.size, sha256: put.sha256, mode: candidate.mode }, stores: put.stores }
}

/**
 * The files and links the globs name, sorted by path, each once; what cannot be kept goes to `skip`. Only lstat
 * and readlink: nothing is read or sent yet.
 */
async function match (workDir: string, globs: string[], skip: (path: string, why: string) => void, note: (line: string) => void): Promise<Candidate[]> {
  const root = await realpath(workDir)
  const found = new Map<string, Candidate>()
  const seen = new Set<string>()

  /** Look at one path (relative, `/`-separated; '' is the work dir); returns how many files, links or others it holds. */
  const consider = async (path: string): Promise<number> => {
    if (seen.has(path)) return 1
    seen.add(path)
    const bad = badName(path)
    if (bad !== undefined) {
      skip(path, bad)
      return 1
    }
    const full = path === '' ? root : join(root, path)
    let info: Stats
    let parentReal: string
    try {
      info = await lstat(full)
      parentReal = path === '' ? dirname(root) : await realpath(dirname(full))
    } catch (err: any) {
      skip(path, `it could not be read (${err.code ?? err.message})`)
      return 1
    }
    const through = path !== '' && parentReal !== dirname(full)
    if (through && !inside(root, parentReal)) {
      skip(path, 'it is reached through a link out of the work dir')
      return 1
    }
    if (info.isDirectory()) {
      let names: string[]
      try {
        names = (await readdir(full)).sort()
      } catch (err: any) {
        skip(path, `its directory could not be read (${err.code ?? err.message})`)
        return 1
      }
      let count = 0
      for (const name of names) count += await consider(path === '' ? name : `${path}/${name}`)
      return count
    }
    if (info.isSymbolicLink()) {
      let target: string
      try {
        target = await readlink(full)
      } catch (err: any) {
        skip(path, `it could not be read (${err.code ?? err.message})`)
        return 1
      }
      const why = await linkProblem(root, dirname(full), parentReal, target)
      if (why !== undefined) skip(path, why)
      else found.set(path, { path, full, size: Buffer.byteLength(target), link: target, through })
      return 1
    }
    if (info.isFile()) {
      found.set(path, { path, full, size: info.size, mode: info.mode & PERMISSION_BITS, through })
      return 1
    }
    skip(path, `it is ${specialKind(info)}, not a file`)
    return 1
  }

  for (const pattern of globs) {
    let count = 0
    for await (const hit of glob(pattern, { cwd: root })) {
      const path = hit.split(sep).join('/')
      count += await consider(path === '.' ? '' : path)
    }
    if (count === 0) note(`artifact glob ${JSON.stringify(pattern)} matched no file`)
  }
  const sorted = [...found.values()].sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
  // A path reached through a link that is kept itself travels with that link: it is not listed twice.
  return sorted.filter(c => c.through !== true || !ancestors(c.path).some(a => found.get(a)?.link !== undefined))
}

const ancestors = (path: string): string[] => path.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))

/** Why a link found at `dir` (real: `realDir`) may not be kept, or undefined: it must stay inside the work dir. */
async function linkProblem (root: string, dir: string, realDir: string, target: string): Promise<string | undefined> {
  const bad = badName(target)
  if (bad !== undefined) return `it is a link whose target ${bad.replace(/^its (name|path)/, 'text')}`
  if (isAbsolute(target)) {
    return inside(root, target)
      ? `it is a link to an absolute path (${shown(target)}), which would not hold in another work dir`
      : `it is a link to ${shown(target)}, outside the work dir`
  }
  if (!inside(root, resolve(dir, target))) return `it is a link to ${shown(target)}, which leads outside the work dir`
  try {
    if (!inside(root, await realOrAncestor(resolve(realDir, target)))) return `it is a link to ${shown(target)}, which leads outside the work dir through another link`
  } catch (err: any) {
    return err.code === 'ELOOP' ? `it is a link to ${shown(target)}, which loops` : `its target ${shown(target)} could not be resolved (${err.code ?? err.message})`
  }
  return undefined
}

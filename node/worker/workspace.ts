// A build's work dir before and after its steps: the source tar unpacked and the inputs placed first (fetched
// from whichever store holds them, the placed ones first, every block checked), the artifacts matched and pushed
// straight to their placed stores after (each on all its replicas before the build reports them). The
// coordinator never carries these bytes.
import { createWriteStream } from 'node:fs'
import { glob, mkdir, realpath, stat } from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { extract as tarExtract } from 'tar'
import type { GridHost } from '../host.ts'
import type { PeerAddress } from '../dial.ts'
import type { JoinCode } from '../join-code.ts'
import { parseCid } from '../../artifact-store/content.ts'
import { nameOf, putContent, putPlaced, putPool, readContent, readFileBlocks } from '../../artifact-store/content-client.ts'
import type { Blockstore } from '../../artifact-store/blockstore.ts'
import type { WorkerCache } from './cache.ts'
import { rankFor } from '../../artifact-store/placement.ts'
import { askCoordinator } from '../../coordinator/builds-protocol.ts'
import { FINISHED } from '../../coordinator/build.ts'
import { MAX_ARTIFACTS } from '../../coordinator/constants.ts'

/** How often a build waiting on another build's artifact asks whether it finished. */
const INPUT_POLL_MS = 500

export class WorkspaceError extends Error {
  name = 'WorkspaceError'
}

export interface Artifact {
  path: string
  cid: string
  size: number
  sha256: string
}

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

/** Unpack `src` and place `inputs` in the work dir. Throws WorkspaceError with one sentence. */
export async function prepare (init: WorkspaceInit, src: string | undefined, inputs: Record<string, string>): Promise<void> {
  if (src !== undefined) {
    try {
      // node-tar refuses absolute paths and `..` in entries: a hostile tar cannot write outside the work dir.
      await pipeline(contentStream(init, src), tarExtract({ cwd: init.workDir, strict: true }))
    } catch (err: any) {
      throw new WorkspaceError(`could not unpack src ${src}: ${err.message}`)
    }
  }
  for (const [path, from] of Object.entries(inputs)) {
    const { cid, maker } = from.startsWith('build:') ? await artifactOf(init, from) : { cid: from, maker: undefined }
    const target = join(init.workDir, path)
    try {
      await mkdir(dirname(target), { recursive: true })
      await pipeline(contentStream(init, cid, maker), createWriteStream(target))
    } catch (err: any) {
      throw new WorkspaceError(`could not fetch input ${path} (${from}): ${err.message}`)
    }
    // What it fetched, it caches and serves (CONTRACT.md): the next build that needs it may get it from here.
    await keep(init, target)
  }
}

/** Keep a file in this worker's cache, if it has one; a full or failing cache costs the build nothing. */
async function keep (init: WorkspaceInit, path: string): Promise<void> {
  if (init.cache === undefined) return
  const pool = putPool()
  await putContent(init.cache.target, readFileBlocks(path, pool), { pool }).catch(() => {})
}

/** `build:ID/PATH`: wait for build ID to succeed, then the CID of its artifact PATH and the worker that made it. */
async function artifactOf (init: WorkspaceInit, ref: string): Promise<{ cid: string, maker?: PeerAddress }> {
  const slash = ref.indexOf('/')
  const id = ref.slice('build:'.length, slash)
  const path = ref.slice(slash + 1)
  const coordinator = { peer: init.join.coordinator.toString(), addrs: init.join.addrs.map(String) }
  while (!init.signal.aborted) {
    const reply = await askCoordinator(init.host, coordinator, { t: 'get', id }).catch(() => undefined)
    if (reply?.t === 'error') throw new WorkspaceError(`input ${ref}: ${reply.error}`)
    if (reply?.t === 'build' && FINISHED.has(reply.build.status)) {
      if (reply.build.status !== 'succeeded') throw new WorkspaceError(`input ${ref}: build ${id} ended ${reply.build.status}`)
      const artifact = reply.build.artifacts.find(a => a.path === path)
      if (artifact === undefined) throw new WorkspaceError(`input ${ref}: build ${id} has no artifact ${path}`)
      return { cid: artifact.cid, maker: reply.maker }
    }
    await new Promise(resolve => setTimeout(resolve, INPUT_POLL_MS))
  }
  throw new WorkspaceError(`input ${ref}: stopped while waiting for build ${id}`)
}

/**
 * Match the globs, push every file to a store, and list them. `note` writes one `grid:` line into the build's log.
 * Resolves with what was kept and `warnings` (one sentence each) for what was not; throws WorkspaceError with one
 * sentence when nothing can be kept (no store, a failed upload).
 */
export async function collect (init: WorkspaceInit, globs: string[], note: (line: string) => void = () => {}): Promise<{ artifacts: Artifact[], warnings: string[] }> {
  return { artifacts: await collectFiles(init, globs), warnings: [] }
}

async function collectFiles (init: WorkspaceInit, globs: string[]): Promise<Artifact[]> {
  if (globs.length === 0) return []
  if (init.stores.length === 0) throw new WorkspaceError('no store to keep artifacts in')
  const root = await realpath(init.workDir)
  const paths = new Set<string>()
  for (const pattern of globs) {
    for await (const match of glob(pattern, { cwd: init.workDir })) paths.add(match)
  }
  const artifacts: Artifact[] = []
  for (const path of [...paths].sort()) {
    const full = join(init.workDir, path)
    const info = await stat(full).catch(() => undefined)
    if (info === undefined || !info.isFile()) continue
    const real = await realpath(full)
    if (real !== root && !real.startsWith(root + sep)) throw new WorkspaceError(`artifact ${path} leads outside the work dir`)
    if (artifacts.length >= MAX_ARTIFACTS) throw new WorkspaceError(`more than ${MAX_ARTIFACTS} artifacts`)
    const pool = putPool()
    // Named first (a read at hashing speed) so the file goes straight to the stores placed for its CID; the put
    // then hashes nothing (the stores still check every block).
    const named = await nameOf(readFileBlocks(full, pool), pool)
    const alsoKeep = init.cache !== undefined ? [init.cache.target] : []
    const put = await putPlaced({ host: init.host, stores: init.stores, replicas: init.replicas ?? 1, placeBy: named.cid, alsoKeep }, readFileBlocks(full, pool), { pool, named })
    artifacts.push({ path: relative(init.workDir, full).split(sep).join('/'), cid: put.cid, size: put.size, sha256: put.sha256 })
  }
  return artifacts
}

// The Helia comparison: one random file (1 GiB) moved from one process to another on loopback, verified by sha256.
//   Helia: `helia/node.mjs serve` adds it (UnixFS, CIDv1, raw leaves, fixed-size chunks) to a disk blockstore, and
//          `helia/node.mjs fetch` in another process dials it directly and fetches it over bitswap into a file.
//   grid:  `grid coordinator` and `grid store` processes; `grid put FILE` into the store, `grid get CID -o FILE`
//          from another process (the real CLI, which checks every block and the whole sha256).
// Both fetchers are timed spawn to exit, as a user would time the command; both output files are hashed again here.
import { createHash, randomFillSync } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { BenchError, Children, PeakMemory, within } from './processes.ts'
import type { PeerSizes, TransferFigures } from './sizes.ts'
import { HELIA_DIR } from './install.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const GRID_BIN = join(ROOT, 'node/bin/grid.js')
const START_TIMEOUT_MS = 60_000

/** Writes `size` random bytes to `path`; returns their sha256. */
export async function writeRandomFile (path: string, size: number): Promise<string> {
  const out = createWriteStream(path)
  const hash = createHash('sha256')
  const chunk = Buffer.alloc(1024 * 1024)
  for (let written = 0; written < size; written += chunk.length) {
    randomFillSync(chunk)
    const part = Buffer.from(chunk.subarray(0, Math.min(chunk.length, size - written)))
    hash.update(part)
    if (!out.write(part)) await new Promise<void>(resolve => out.once('drain', () => resolve()))
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => err ? reject(err) : resolve()))
  return hash.digest('hex')
}

async function sha256Of (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(chunk)
  return hash.digest('hex')
}

async function verify (label: string, path: string, sha256: string): Promise<void> {
  if (await sha256Of(path) !== sha256) throw new BenchError(`${label}: the fetched file's sha256 differs from the original`)
}

export async function benchHelia (dir: string, children: Children, sizes: PeerSizes, file: string, sha256: string, chunkBytes: number): Promise<TransferFigures> {
  const script = join(HELIA_DIR, 'node.mjs')
  const serveDir = join(dir, `helia-serve-${chunkBytes}`)
  const fetchDir = join(dir, `helia-fetch-${chunkBytes}`)
  const out = join(dir, `helia-${chunkBytes}.out`)
  await mkdir(serveDir, { recursive: true })
  await mkdir(fetchDir, { recursive: true })
  const server = children.spawn(process.execPath, [script, 'serve', serveDir, file, String(chunkBytes)], { cwd: HELIA_DIR })
  const serverMemory = new PeakMemory([server.pid])
  try {
    const served = JSON.parse((await server.line(/^(\{.*"cid".*\})$/m, sizes.phaseTimeoutMs))[1])
    const addMs = server.wallMs()
    const fetcher = children.spawn(process.execPath, [script, 'fetch', fetchDir, served.addr, served.cid, out, sha256], { cwd: HELIA_DIR })
    const fetcherMemory = new PeakMemory([fetcher.pid])
    const code = await within('the Helia fetch', sizes.phaseTimeoutMs, async () => await fetcher.exited)
    fetcherMemory.stop()
    if (code !== 0) throw new BenchError(`helia fetch exited ${code}: ${fetcher.out().slice(-2000)}`)
    const fetched = JSON.parse(/^(\{.*\})$/m.exec(fetcher.out())?.[1] ?? '{}')
    if (fetched.bytes !== sizes.transferBytes) throw new BenchError(`helia fetched ${fetched.bytes} of ${sizes.transferBytes} bytes`)
    await verify('helia', out, sha256)
    serverMemory.stop()
    return {
      label: `Helia, ${chunkBytes / 1024} KiB chunks`,
      fetchMs: fetcher.wallMs(),
      firstByteMs: fetched.firstByteMs,
      fetchOnlyMs: fetched.ms,
      addMs,
      serverPeakRss: serverMemory.of(server.pid).hwm,
      serverPeakAnon: serverMemory.of(server.pid).anon,
      fetcherPeakRss: Math.max(fetcherMemory.of(fetcher.pid).hwm, fetched.peakRss ?? 0)
    }
  } finally {
    serverMemory.stop()
    await children.stop(server)
    for (const d of [serveDir, fetchDir, out]) await rm(d, { recursive: true, force: true })
  }
}

export async function benchGridTransfer (dir: string, children: Children, sizes: PeerSizes, file: string, sha256: string): Promise<TransferFigures> {
  const data = join(dir, 'grid-transfer')
  const joinFile = join(data, 'c', 'join')
  const out = join(dir, 'grid.out')
  const coordinator = children.spawn(process.execPath, [GRID_BIN, 'coordinator', '--data', join(data, 'c'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'], { cwd: ROOT })
  await coordinator.line(/^join: /m, START_TIMEOUT_MS)
  const store = children.spawn(process.execPath, [GRID_BIN, 'store', '--join', joinFile, '--data', join(data, 's'), '--listen', '/ip4/127.0.0.1/tcp/0'], { cwd: ROOT })
  const storeMemory = new PeakMemory([store.pid])
  try {
    await store.line(/joined the grid/, START_TIMEOUT_MS)
    const put = await children.run(process.execPath, [GRID_BIN, 'put', '--join', joinFile, file], sizes.phaseTimeoutMs, { cwd: ROOT })
    const cid = /^(b[a-z2-7]{20,})$/m.exec(put.out())?.[1]
    if (cid === undefined) throw new BenchError(`grid put printed no CID: ${put.out().slice(-1000)}`)
    const get = children.spawn(process.execPath, [GRID_BIN, 'get', '--join', joinFile, cid, '-o', out], { cwd: ROOT })
    const getMemory = new PeakMemory([get.pid])
    const code = await within('grid get', sizes.phaseTimeoutMs, async () => await get.exited)
    getMemory.stop()
    if (code !== 0) throw new BenchError(`grid get exited ${code}: ${get.out().slice(-2000)}`)
    await verify('grid get', out, sha256)
    storeMemory.stop()
    return {
      label: 'grid put / grid get',
      fetchMs: get.wallMs(),
      addMs: put.wallMs(),
      serverPeakRss: storeMemory.of(store.pid).hwm,
      serverPeakAnon: storeMemory.of(store.pid).anon,
      fetcherPeakRss: getMemory.of(get.pid).hwm
    }
  } finally {
    storeMemory.stop()
    await children.stop(store)
    await children.stop(coordinator)
    for (const d of [data, out]) await rm(d, { recursive: true, force: true })
  }
}

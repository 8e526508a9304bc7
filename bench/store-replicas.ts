// Put throughput with 2 replicas as a ratio to a single-store put, in the same run on the same processes:
// a coordinator (`grid coordinator --replicas 2`) and two `grid store` processes; this process is the client, putting
// files as `grid put` does (read a block at a time into pooled buffers). A 2-replica put sends every block to both
// stores at once, so it should cost far less than two puts. REPLICA_ROUNDS rounds, each a put to one store and a put
// to two (the order alternating, so a busy moment of the machine weighs on both), every put of content no store
// holds yet; the figure is the median round's ratio.
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../net/host.ts'
import { coordinatorAddress, readJoinCode } from '../net/join-code.ts'
import { askCoordinator } from '../protocols/builds.ts'
import { putPlaced } from '../client/content/place.ts'
import { putPool, readFileBlocks } from '../client/content/file-blocks.ts'
import { median, writeRandomFile } from './measure.ts'

const ROOT = join(import.meta.dirname, '..')
/** Bytes put in each phase: 256 MiB, well past any buffer. */
export const REPLICA_BENCH_BYTES = Number(process.env.GRID_BENCH_REPLICA_BYTES ?? 256 * 2 ** 20)
const START_TIMEOUT_MS = 30_000
/** Rounds of (one store, two stores): the issue asks for medians of at least three. */
const REPLICA_ROUNDS = Number(process.env.GRID_BENCH_REPLICA_ROUNDS ?? 3)

export interface ReplicaRow { name: string, value: number, unit: string, baseline?: { name: string, value: number, unit: string }, ratio?: number, note?: string }

function start (args: string[], ready: RegExp): Promise<ChildProcessWithoutNullStreams> {
  const proc = spawn(process.execPath, [join(ROOT, 'node/bin/grid.js'), ...args], { cwd: ROOT })
  let out = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`grid ${args[0]} did not start: ${out}`)), START_TIMEOUT_MS)
    const seen = (d: Buffer): void => {
      out += d
      if (ready.test(out)) { clearTimeout(timer); resolve(proc) }
    }
    proc.stdout.on('data', seen)
    proc.stderr.on('data', seen)
    proc.on('exit', () => { clearTimeout(timer); reject(new Error(`grid ${args[0]} exited: ${out}`)) })
  })
}

export async function benchReplicas (): Promise<ReplicaRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'grid-replicas-'))
  const procs: ChildProcessWithoutNullStreams[] = []
  try {
    procs.push(await start(['coordinator', '--data', join(dir, 'c'), '--listen', '/ip4/127.0.0.1/tcp/0', '--replicas', '2'], /^join: /m))
    const joinFile = join(dir, 'c', 'join')
    for (const name of ['s1', 's2']) procs.push(await start(['store', '--join', joinFile, '--data', join(dir, name), '--listen', '/ip4/127.0.0.1/tcp/0'], /joined the grid/))
    const code = await readJoinCode((await readFile(joinFile, 'utf8')).trim())
    const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret: code.secret, listen: [] })
    try {
      const coordinator = coordinatorAddress(code)
      let stores: Array<{ peer: string, addrs: string[] }> = []
      for (const deadline = Date.now() + START_TIMEOUT_MS; stores.length < 2 && Date.now() < deadline;) {
        const reply = await askCoordinator(host, coordinator, { t: 'stores' })
        stores = reply.t === 'stores' ? reply.stores : []
        if (stores.length < 2) await new Promise(resolve => setTimeout(resolve, 100))
      }
      if (stores.length < 2) throw new Error('two stores did not join')
      // Fresh content for every put (a store holding it already would be sent nothing), on disk before timing.
      const files: string[] = []
      for (let i = 0; i < 2 * REPLICA_ROUNDS; i++) {
        files.push(join(dir, `content-${i}.bin`))
        await writeRandomFile(files[i], REPLICA_BENCH_BYTES)
      }
      const rate = async (replicas: number, file: string): Promise<number> => {
        const pool = putPool()
        const began = performance.now()
        const put = await putPlaced({ host, stores, replicas }, readFileBlocks(file, pool), { pool })
        if (put.stores.length !== replicas) throw new Error(`put reached ${put.stores.length} stores, not ${replicas}`)
        return REPLICA_BENCH_BYTES / ((performance.now() - began) / 1000) / 1e6
      }
      // Connections are warm for every phase: a small put first.
      const warm = join(dir, 'warm.bin')
      await writeRandomFile(warm, 2 ** 20)
      await putPlaced({ host, stores, replicas: 2 }, readFileBlocks(warm, putPool()))
      const rounds: Array<{ single: number, double: number }> = []
      for (let round = 0; round < REPLICA_ROUNDS; round++) {
        const [a, b] = [files[2 * round], files[2 * round + 1]]
        if (round % 2 === 0) {
          const single = await rate(1, a)
          rounds.push({ single, double: await rate(2, b) })
        } else {
          const double = await rate(2, a)
          rounds.push({ double, single: await rate(1, b) })
        }
      }
      const size = `${(REPLICA_BENCH_BYTES / 2 ** 20).toFixed(0)} MiB`
      const ratios = rounds.map(r => r.double / r.single)
      return [{
        name: `put ${size} with 2 replicas (two store processes)`,
        value: median(rounds.map(r => r.double)),
        unit: 'MB/s',
        baseline: { name: `put ${size} to a single store`, value: median(rounds.map(r => r.single)), unit: 'MB/s' },
        ratio: median(ratios),
        note: `median of ${rounds.length} rounds (ratios ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}x)`
      }]
    } finally {
      await host.stop()
    }
  } finally {
    for (const p of procs) p.kill('SIGTERM')
    await new Promise(resolve => setTimeout(resolve, 500))
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
}

// Run alone: `npx node bench/store-replicas.ts` prints the row (npm run bench includes it).
if (import.meta.main) {
  for (const row of await benchReplicas()) process.stdout.write(JSON.stringify(row) + '\n')
  process.exit(0)
}

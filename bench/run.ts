// `npm run bench`: the grid's figures, each beside a bare baseline measured in the same run on the same machine.
// Every role is its own process (coordinator = `grid up --workers 0`, workers in pool processes), as users run them.
// Prints a table and writes bench/results.json. Everything talks over loopback and stops by itself.
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../net/host.ts'
import { newSecret } from '../net/join-code.ts'
import type { Build } from '../grid/build.ts'
import { FINISHED } from '../grid/build.ts'
import { ECHO_PROTOCOL } from './echo-protocol.ts'
import { benchTransfer } from './transfer.ts'
import { benchUserTransfer } from './user-transfer.ts'
import { benchLogs } from './logs.ts'
import { benchReplicas } from './store-replicas.ts'
import { benchPipelines } from './pipelines.ts'
import { benchCaches } from './caches.ts'
import { cpuMsOf, memoryOf, percentile, sleep, within as withinMs } from './measure.ts'

const ROOT = join(import.meta.dirname, '..')
/** Bench sizes: enough runs for stable medians on a 2-core machine, few enough to finish in minutes. */
const RTT_SAMPLES = 2_000
const SPAWN_SAMPLES = 300
const DISPATCH_BUILDS = { 4: 600, 50: 1_000 } as const
const LATENCY_SAMPLES = 100
const IDLE_WORKERS = 500
const WORKERS_PER_POOL = 100
/** No single phase may run longer than this; the bench fails rather than hang. */
const PHASE_TIMEOUT_MS = 180_000

interface Row { figure: string, value: number, unit: string, baseline?: string, baselineValue?: number, ratio?: number, note?: string }
const rows: Row[] = []
const children: ChildProcessWithoutNullStreams[] = []

function child (args: string[]): { proc: ChildProcessWithoutNullStreams, line: (re: RegExp) => Promise<RegExpMatchArray> } {
  const proc = spawn(process.execPath, args, { cwd: ROOT })
  children.push(proc)
  let out = ''
  proc.stdout.on('data', d => { out += d })
  proc.stderr.on('data', d => { out += d })
  return {
    proc,
    line: async (re) => await within(`${re} from ${args.join(' ')}`, async () => {
      while (true) {
        const m = re.exec(out)
        if (m !== null) return m
        if (proc.exitCode !== null) throw new Error(`${args.join(' ')} exited: ${out}`)
        await sleep(20)
      }
    })
  }
}

/** Bench phases are bounded: past PHASE_TIMEOUT_MS one fails instead of hanging. */
const within = async <T>(what: string, work: () => Promise<T>): Promise<T> => await withinMs(what, work, PHASE_TIMEOUT_MS)


/** Baseline: a bare libp2p stream (same TCP + Noise + Yamux stack) between two processes: 1-byte round trips. */
async function bareLibp2p (): Promise<{ rttP50: number, roundTripsPerSecond: number }> {
  const secret = newSecret()
  const peer = child([join(ROOT, 'bench/echo-peer.ts'), Buffer.from(secret).toString('hex')])
  const addr = (await peer.line(/^(\/ip4\/\S+)$/m))[1]
  const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret, listen: [] })
  const stream = await host.dialProtocol(multiaddr(addr), ECHO_PROTOCOL)
  const iterator = stream[Symbol.asyncIterator]()
  const samples: number[] = []
  const began = performance.now()
  for (let i = 0; i < RTT_SAMPLES; i++) {
    const t = performance.now()
    stream.send(new Uint8Array([i & 0xff]))
    await iterator.next()
    samples.push(performance.now() - t)
  }
  const seconds = (performance.now() - began) / 1000
  await stream.close()
  await host.stop()
  peer.proc.kill('SIGTERM')
  return { rttP50: percentile(samples, 50), roundTripsPerSecond: RTT_SAMPLES / seconds }
}

/** Baseline: how fast this machine starts `/bin/sh -c true` (every trivial build starts one). */
async function bareSpawn (): Promise<number> {
  const began = performance.now()
  for (let i = 0; i < SPAWN_SAMPLES; i++) {
    await new Promise(resolve => spawn('/bin/sh', ['-c', 'true']).on('exit', resolve))
  }
  return SPAWN_SAMPLES / ((performance.now() - began) / 1000)
}

interface Grid { url: string, token: string, joinFile: string, pid: number }

async function startGrid (dir: string): Promise<Grid> {
  const up = child([join(ROOT, 'node/bin/grid.js'), 'up', '--workers', '0', '--data', join(dir, 'coordinator'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
  const url = (await up.line(/^web: (http:\S+)$/m))[1]
  await up.line(/^join: /m)
  return { url, token: (await readFile(join(dir, 'coordinator', 'api-token'), 'utf8')).trim(), joinFile: join(dir, 'coordinator', 'join'), pid: up.proc.pid! }
}

async function startPool (grid: Grid, dir: string, count: number, cap: string): Promise<ChildProcessWithoutNullStreams> {
  const pool = child([join(ROOT, 'bench/worker-pool.ts'), grid.joinFile, String(count), cap, join(dir, `pool-${cap}-${Math.random().toString(36).slice(2)}`)])
  await pool.line(/^ready \d+$/m)
  return pool.proc
}

async function submit (grid: Grid, job: unknown): Promise<string> {
  const res = await fetch(`${grid.url}/api/builds`, { method: 'POST', headers: { authorization: `Bearer ${grid.token}` }, body: JSON.stringify(job) })
  if (res.status !== 201) throw new Error(`submit answered ${res.status}`)
  return (await res.json()).id
}

/** Trivial builds (`true`) through `workers` workers: builds per second from the first submit to the last finish. */
async function dispatchRate (grid: Grid, dir: string, workers: 4 | 50): Promise<{ rate: number, cpuMsPerBuild: number }> {
  const pools: ChildProcessWithoutNullStreams[] = []
  // Four workers are four processes, as four `grid worker` commands would be; fifty share two pool processes.
  const perProcess = workers <= 4 ? 1 : 25
  for (let left = workers; left > 0; left -= perProcess) pools.push(await startPool(grid, dir, Math.min(perProcess, left), `pool=w${workers}`))
  const count = DISPATCH_BUILDS[workers]
  const cpuBefore = await cpuMsOf(grid.pid)
  const began = performance.now()
  const ids: string[] = []
  // Submit as a client would, 16 requests in flight.
  for (let i = 0; i < count; i += 16) {
    ids.push(...await Promise.all(Array.from({ length: Math.min(16, count - i) }, async () => await submit(grid, { requires: { pool: `w${workers}` }, steps: [{ run: 'true' }] }))))
  }
  // Poll the cheap capacity figure, not the builds: reading hundreds of builds would load the coordinator we measure.
  await within(`${count} builds through ${workers} workers`, async () => {
    while (true) {
      const capacity = await (await fetch(`${grid.url}/api/capacity`)).json()
      if (capacity.queued === 0 && capacity.busy === 0) return
      await sleep(10)
    }
  })
  const elapsed = performance.now() - began
  const cpuMsPerBuild = (await cpuMsOf(grid.pid) - cpuBefore) / count
  const recent = await (await fetch(`${grid.url}/api/builds?limit=${count}`)).json() as Build[]
  const failed = recent.filter(b => ids.includes(b.id) && b.status !== 'succeeded')
  if (failed.length > 0 || recent.filter(b => ids.includes(b.id)).length !== count) throw new Error(`${failed.length} bench builds did not succeed`)
  const rate = count / (elapsed / 1000)
  for (const p of pools) p.kill('SIGTERM')
  return { rate, cpuMsPerBuild }
}

/** Submit-to-first-step latency with an idle worker: one build at a time. */
async function queueToStart (grid: Grid, dir: string): Promise<{ p50: number, p99: number }> {
  const pool = await startPool(grid, dir, 1, 'pool=latency')
  const samples: number[] = []
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const id = await submit(grid, { requires: { pool: 'latency' }, steps: [{ run: 'true' }] })
    const build = await within('a latency build', async () => {
      while (true) {
        const b = await (await fetch(`${grid.url}/api/builds/${id}`)).json() as Build
        if (FINISHED.has(b.status)) return b
        await sleep(5)
      }
    })
    samples.push(Date.parse(build.steps[0].started!) - Date.parse(build.created))
  }
  pool.kill('SIGTERM')
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) }
}

/** Coordinator memory with many idle workers connected (many worker nodes in a few pool processes). */
async function coordinatorMemory (grid: Grid, dir: string): Promise<{ before: number, after: number, peak: number }> {
  const before = memoryOf(grid.pid).rss
  const pools: ChildProcessWithoutNullStreams[] = []
  for (let left = IDLE_WORKERS; left > 0; left -= WORKERS_PER_POOL) pools.push(await startPool(grid, dir, Math.min(WORKERS_PER_POOL, left), 'pool=idle'))
  await within(`${IDLE_WORKERS} idle workers in capacity`, async () => {
    while ((await (await fetch(`${grid.url}/api/capacity`)).json()).nodes < IDLE_WORKERS) await sleep(200)
  })
  // A few heartbeat rounds with everyone connected.
  await sleep(5_000)
  const { rss, peak } = memoryOf(grid.pid)
  for (const p of pools) p.kill('SIGTERM')
  return { before, after: rss, peak }
}

const dir = await mkdtemp(join(tmpdir(), 'grid-bench-'))
try {
  process.stderr.write('bench: bare libp2p stream round trips\n')
  const bare = await bareLibp2p()
  rows.push({ figure: 'bare libp2p stream: 1-byte round trip p50', value: bare.rttP50, unit: 'ms' })
  rows.push({ figure: 'bare libp2p stream: round trips/s', value: bare.roundTripsPerSecond, unit: '/s' })
  process.stderr.write('bench: /bin/sh spawn rate\n')
  const spawnRate = await bareSpawn()
  rows.push({ figure: 'bare /bin/sh -c true spawns/s', value: spawnRate, unit: '/s' })

  // The store's bulk figures (issue #3): put and get of 1 GiB between two processes, beside the bare stream.
  rows.push(...await benchTransfer(join(dir, 'transfer'), line => process.stderr.write(line + '\n')))
  await rm(join(dir, 'transfer'), { recursive: true, force: true })
  // The same as a user runs it (issue #20): the whole `grid put` and `grid get -o` commands beside `grid up`.
  rows.push(...await benchUserTransfer(join(dir, 'user-transfer'), line => process.stderr.write(line + '\n')))
  await rm(join(dir, 'user-transfer'), { recursive: true, force: true })

  const grid = await startGrid(dir)
  for (const workers of [4, 50] as const) {
    process.stderr.write(`bench: dispatch through ${workers} workers\n`)
    const { rate, cpuMsPerBuild } = await dispatchRate(grid, dir, workers)
    rows.push({ figure: `coordinator CPU per build (${workers} workers)`, value: cpuMsPerBuild, unit: 'ms', note: 'HTTP submit, matching, history, events' })
    rows.push({
      figure: `dispatch: trivial builds/s through ${workers} workers`, value: rate, unit: '/s',
      baseline: 'sh spawns/s', baselineValue: spawnRate, ratio: rate / spawnRate,
      note: `${DISPATCH_BUILDS[workers]} builds over HTTP, submit to finished`
    })
  }
  process.stderr.write('bench: queue-to-start latency\n')
  const latency = await queueToStart(grid, dir)
  rows.push({ figure: 'queue-to-start p50 (idle worker)', value: latency.p50, unit: 'ms', baseline: 'libp2p RTT p50', baselineValue: bare.rttP50, ratio: latency.p50 / bare.rttP50 })
  rows.push({ figure: 'queue-to-start p99 (idle worker)', value: latency.p99, unit: 'ms', baseline: 'libp2p RTT p50', baselineValue: bare.rttP50, ratio: latency.p99 / bare.rttP50 })
  process.stderr.write(`bench: coordinator memory with ${IDLE_WORKERS} workers\n`)
  const memory = await coordinatorMemory(grid, dir)
  rows.push({ figure: `coordinator RSS with ${IDLE_WORKERS} workers`, value: memory.after / 2 ** 20, unit: 'MiB', baseline: 'RSS with none', baselineValue: memory.before / 2 ** 20, ratio: memory.after / memory.before, note: `peak ${(memory.peak / 2 ** 20).toFixed(0)} MiB` })
  // Live logs (issue #4): tail latency, lines/s with three tailers, memory while a 1 GiB log is written.
  rows.push(...(await benchLogs()).map(r => ({ figure: r.name, value: r.value, unit: r.unit, baseline: r.baseline?.name, baselineValue: r.baseline?.value, ratio: r.ratio })))
  // Many stores (issue #7): put throughput with 2 replicas as a ratio to a single-store put.
  process.stderr.write('bench: put with 2 replicas\n')
  rows.push(...(await benchReplicas()).map(r => ({ figure: r.name, value: r.value, unit: r.unit, baseline: r.baseline?.name, baselineValue: r.baseline?.value, ratio: r.ratio, note: r.note })))
  // Pipelines (issue #17): push to first step through a webhook, and a second `grid run` of an unchanged tree.
  rows.push(...(await benchPipelines(line => process.stderr.write(line + '\n'))).map(r => ({ figure: r.name, value: r.value, unit: r.unit, baseline: r.baseline?.name, baselineValue: r.baseline?.value, ratio: r.ratio, note: r.note })))
  // Caches (issue #19): 200 MiB in 5,000 files restored on another worker, beside a bare libp2p stream.
  rows.push(...(await benchCaches(line => process.stderr.write(line + '\n'))).map(r => ({ figure: r.name, value: r.value, unit: r.unit, baseline: r.baseline?.name, baselineValue: r.baseline?.value, ratio: r.ratio, note: r.note })))
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
  await sleep(500)
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  await rm(dir, { recursive: true, force: true })
}

const machine = { cores: availableParallelism(), cpu: cpus()[0]?.model, node: process.version, date: new Date().toISOString() }
const fmt = (n: number | undefined): string => n === undefined ? '' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)
const lines = [
  `nameless-grid bench, ${machine.date}, ${machine.cores} cores (${machine.cpu}), Node ${machine.node}`,
  '',
  '| figure | value | baseline (same run) | ratio | note |',
  '|---|---|---|---|---|',
  ...rows.map(r => `| ${r.figure} | ${fmt(r.value)} ${r.unit} | ${r.baseline !== undefined ? `${r.baseline}: ${fmt(r.baselineValue)}` : ''} | ${r.ratio !== undefined ? `${fmt(r.ratio)}x` : ''} | ${r.note ?? ''} |`)
]
process.stdout.write(lines.join('\n') + '\n')
await writeFile(join(ROOT, 'bench/results.json'), JSON.stringify({ machine, rows }, null, 2) + '\n')
process.exit(0)

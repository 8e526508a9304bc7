// `npm run bench`: the grid's figures, each beside a bare baseline measured in the same run on the same machine.
// Every role is its own process (coordinator = `grid up --workers 0`, workers in pool processes), as users run them.
// Prints a table and writes bench/results.json. Everything talks over loopback and stops by itself.
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../net/host.ts'
import { newSecret } from '../net/join-code.ts'
import { ECHO_PROTOCOL } from './echo-protocol.ts'
import { benchTransfer } from './transfer.ts'
import { benchUserTransfer } from './user-transfer.ts'
import { benchLogs } from './logs.ts'
import { benchReplicas } from './store-replicas.ts'
import { benchPipelines } from './pipelines.ts'
import { benchCaches } from './caches.ts'
import { DISPATCH_BUILDS, DISPATCH_ROUNDS, launcher, QUEUE_TO_START_SPAN, bareRoundTrips, bareSpawn as spawnRound, dispatchRate as dispatchRounds, queueToStart as latencyRounds } from './dispatch.ts'
import { median, memoryOf, percentile, sleep, within as withinMs } from './measure.ts'

const ROOT = join(import.meta.dirname, '..')
/** Bench sizes: enough runs for stable medians on a 2-core machine, few enough to finish in minutes. */
const RTT_SAMPLES = 2_000
const IDLE_WORKERS = 500
const WORKERS_PER_POOL = 100
/** No single phase may run longer than this; the bench fails rather than hang. */
const PHASE_TIMEOUT_MS = 180_000

interface Row { figure: string, value: number, unit: string, baseline?: string, baselineValue?: number, ratio?: number, note?: string }
const rows: Row[] = []
const children: ChildProcessWithoutNullStreams[] = []

/** Every process of the run, recorded so the end of the run stops them (bench/dispatch.ts `launcher`). */
const child = launcher(children)

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

/** Baseline: how fast this machine starts `/bin/sh -c true` (every trivial build starts one): the median of DISPATCH_ROUNDS rounds. */
async function bareSpawn (): Promise<number> {
  const rounds: number[] = []
  for (let i = 0; i < DISPATCH_ROUNDS; i++) rounds.push(await spawnRound())
  return median(rounds)
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

/**
 * Trivial builds (`true`) through `workers` workers: builds per second from the first submit to the last finish,
 * medians of DISPATCH_ROUNDS rounds, each round after a round of bare spawns (its baseline) (bench/dispatch.ts).
 */
async function dispatchRate (grid: Grid, dir: string, workers: 4 | 50): Promise<{ rate: number, spawnRate: number, ratio: number, cpuMsPerBuild: number }> {
  return await dispatchRounds(child, grid, dir, workers, line => process.stderr.write(line + '\n'))
}

/**
 * Queue-to-start with an idle worker, one build at a time (the span is QUEUE_TO_START_SPAN): medians over
 * DISPATCH_ROUNDS rounds of each round's p50 and p99, each round after a round of bare libp2p round trips.
 */
async function queueToStart (grid: Grid, dir: string): Promise<{ p50: number, p99: number, rttP50: number, ratio: number }> {
  const rtts: number[] = []
  const latency = await latencyRounds(child, grid, dir, async () => { rtts.push((await bareRoundTrips(child)).p50) }, line => process.stderr.write(line + '\n'))
  return { p50: latency.p50, p99: latency.p99, rttP50: median(rtts), ratio: median(latency.rounds.map((r, i) => r.p50 / rtts[i])) }
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
  rows.push({ figure: 'bare /bin/sh -c true spawns/s', value: await bareSpawn(), unit: '/s', note: `median of ${DISPATCH_ROUNDS} rounds, one spawn at a time from a Node process` })

  // The store's bulk figures (issue #3): put and get of 1 GiB between two processes, beside the bare stream.
  rows.push(...await benchTransfer(join(dir, 'transfer'), line => process.stderr.write(line + '\n')))
  await rm(join(dir, 'transfer'), { recursive: true, force: true })
  // The same as a user runs it (issue #20): the whole `grid put` and `grid get -o` commands beside `grid up`.
  rows.push(...await benchUserTransfer(join(dir, 'user-transfer'), line => process.stderr.write(line + '\n')))
  await rm(join(dir, 'user-transfer'), { recursive: true, force: true })

  const grid = await startGrid(dir)
  for (const workers of [4, 50] as const) {
    process.stderr.write(`bench: dispatch through ${workers} workers, ${DISPATCH_ROUNDS} rounds\n`)
    const { rate, spawnRate, ratio, cpuMsPerBuild } = await dispatchRate(grid, dir, workers)
    rows.push({ figure: `coordinator CPU per build (${workers} workers)`, value: cpuMsPerBuild, unit: 'ms', note: `HTTP submit, matching, history, events, and the local store taking the logs; median of ${DISPATCH_ROUNDS} rounds` })
    rows.push({
      figure: `dispatch: trivial builds/s through ${workers} workers`, value: rate, unit: '/s',
      baseline: 'sh spawns/s', baselineValue: spawnRate, ratio,
      note: `medians of ${DISPATCH_ROUNDS} rounds of ${DISPATCH_BUILDS[workers]} builds over HTTP, first submit to last finished (log sealed, result recorded); the ratio is the median round's, each round right after its own round of spawns`
    })
  }
  process.stderr.write(`bench: queue-to-start latency, ${DISPATCH_ROUNDS} rounds\n`)
  const latency = await queueToStart(grid, dir)
  const span = `medians of ${DISPATCH_ROUNDS} rounds of one build at a time; span: ${QUEUE_TO_START_SPAN}`
  rows.push({ figure: 'queue-to-start p50 (idle worker)', value: latency.p50, unit: 'ms', baseline: 'libp2p RTT p50', baselineValue: latency.rttP50, ratio: latency.ratio, note: span })
  rows.push({ figure: 'queue-to-start p99 (idle worker)', value: latency.p99, unit: 'ms', baseline: 'libp2p RTT p50', baselineValue: latency.rttP50, ratio: latency.p99 / latency.rttP50 })
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

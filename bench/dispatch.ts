// The dispatch figures (issue 20), each beside its bare baseline measured in the same rounds:
//   - trivial builds (`steps: [{ run: 'true' }]`) per second through 4 worker processes (and 50 workers in two
//     pool processes), submitted over HTTP, beside how fast this machine starts `/bin/sh -c true` one at a time;
//   - queue-to-start with an idle worker, beside a bare libp2p 1-byte round trip between two processes.
// Every figure is the median of DISPATCH_ROUNDS rounds (GRID_BENCH_DISPATCH_ROUNDS), a round of the grid's figure
// measured right after a round of its baseline, so a busy moment of the machine weighs on both.
// `npx node bench/dispatch.ts` runs it alone (the coordinator is `grid up --workers 0`, so its process holds the
// store the logs go to, as on a one-machine grid). GRID_BENCH_PROF_DIR=DIR runs every grid process under
// `--cpu-prof` and leaves the profiles there.
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../net/host.ts'
import { newSecret } from '../net/join-code.ts'
import type { Build } from '../grid/build.ts'
import { FINISHED } from '../grid/build.ts'
import { ECHO_PROTOCOL } from './echo-protocol.ts'
import { cpuMsOf, median, percentile, sleep, within as withinMs } from './measure.ts'

const ROOT = join(import.meta.dirname, '..')
/** Rounds per figure: the issue asks for medians of at least three. */
export const DISPATCH_ROUNDS = Math.max(1, Number(process.env.GRID_BENCH_DISPATCH_ROUNDS ?? 3))
/** Spawns per baseline round: enough for a stable rate, a second or two. */
const SPAWN_SAMPLES = 300
/** Builds per round: a few seconds of dispatch each. */
export const DISPATCH_BUILDS = { 4: 600, 50: 1_000 } as const
/** Builds per queue-to-start round, one at a time. */
const LATENCY_SAMPLES = 100
/** Bare round trips per baseline round. */
const RTT_SAMPLES = 1_000
/** Requests in flight while submitting, as a busy client (or a pipeline's jobs) would. */
const SUBMITS_IN_FLIGHT = 16
/** No single phase may run longer than this; the bench fails rather than hang. */
const PHASE_TIMEOUT_MS = 180_000

const within = async <T>(what: string, work: () => Promise<T>): Promise<T> => await withinMs(what, work, PHASE_TIMEOUT_MS)

/** Where the queue-to-start span starts and ends, for the row's note. */
export const QUEUE_TO_START_SPAN = '`created` (the coordinator took the submit, before its history write) to `steps[0].started` ' +
  '(the coordinator got the worker\'s step-started, sent just before it spawns the step\'s shell); both stamped by the coordinator\'s clock'

export interface DispatchRow { name: string, value: number, unit: string, baseline?: { name: string, value: number, unit: string }, ratio?: number, note?: string }

/** A grid process the bench started: its output, and a bounded wait for a line of it. */
export interface BenchProcess { proc: ChildProcessWithoutNullStreams, line: (re: RegExp) => Promise<RegExpMatchArray> }

/** Starts `node ARGS` from the project's root (under `--cpu-prof` with GRID_BENCH_PROF_DIR), killed by the caller. */
export type Launch = (args: string[]) => BenchProcess

/** A grid's HTTP API as the bench reaches it, and the coordinator's pid (for its CPU time). */
export interface BenchGrid { url: string, token: string, joinFile: string, pid: number }

/** `launch` for a standalone run: every process is recorded in `children` so the caller can end them. */
export function launcher (children: ChildProcessWithoutNullStreams[]): Launch {
  const profDir = process.env.GRID_BENCH_PROF_DIR
  return args => {
    const proc = spawn(process.execPath, [...(profDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []), ...args], { cwd: ROOT })
    children.push(proc)
    let out = ''
    proc.stdout.on('data', d => { out += d })
    proc.stderr.on('data', d => { out += d })
    return {
      proc,
      line: async re => await within(`${re} from ${args.join(' ')}`, async () => {
        while (true) {
          const m = re.exec(out)
          if (m !== null) return m
          if (proc.exitCode !== null) throw new Error(`${args.join(' ')} exited: ${out}`)
          await sleep(20)
        }
      })
    }
  }
}

/** `grid up --workers 0` (coordinator and a store in one process), as the dispatch figures were always measured. */
export async function startGrid (launch: Launch, dir: string): Promise<BenchGrid> {
  const up = launch([join(ROOT, 'node/bin/grid.js'), 'up', '--workers', '0', '--data', join(dir, 'coordinator'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
  const url = (await up.line(/^web: (http:\S+)$/m))[1]
  await up.line(/^join: /m)
  return { url, token: (await readFile(join(dir, 'coordinator', 'api-token'), 'utf8')).trim(), joinFile: join(dir, 'coordinator', 'join'), pid: up.proc.pid! }
}

/** `count` workers with capability `cap` in one pool process (bench/worker-pool.ts), once all have joined. */
export async function startPool (launch: Launch, grid: BenchGrid, dir: string, count: number, cap: string): Promise<ChildProcessWithoutNullStreams> {
  const pool = launch([join(ROOT, 'bench/worker-pool.ts'), grid.joinFile, String(count), cap, join(dir, `pool-${cap}-${Math.random().toString(36).slice(2)}`)])
  await pool.line(/^ready \d+$/m)
  return pool.proc
}

/** Ends a pool process and waits for it, so the next phase does not share the machine with its shutdown. */
async function stopPool (proc: ChildProcessWithoutNullStreams): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise(resolve => proc.once('exit', resolve))
  proc.kill('SIGTERM')
  await within('a worker pool stopping', async () => await exited)
}

async function submit (grid: BenchGrid, job: unknown): Promise<string> {
  const res = await fetch(`${grid.url}/api/builds`, { method: 'POST', headers: { authorization: `Bearer ${grid.token}` }, body: JSON.stringify(job) })
  if (res.status !== 201) throw new Error(`submit answered ${res.status}`)
  return (await res.json()).id
}

/** Baseline: how fast this machine starts `/bin/sh -c true`, one after another (every trivial build starts one). */
export async function bareSpawn (): Promise<number> {
  const began = performance.now()
  for (let i = 0; i < SPAWN_SAMPLES; i++) {
    await new Promise(resolve => spawn('/bin/sh', ['-c', 'true']).on('exit', resolve))
  }
  return SPAWN_SAMPLES / ((performance.now() - began) / 1000)
}

/** /proc/PID/stat's fields after the command's name (field 3 is [0]); undefined once the process is gone. */
async function statOf (pid: number): Promise<string[] | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  return text?.slice(text.lastIndexOf(')') + 2).split(' ')
}

/**
 * The CPU time in ms, in user space and in the kernel, of `pids`, of their children (the worker's step launcher)
 * and of the children those waited for (the steps' shells): everything a worker spends on its builds.
 */
async function cpuSplitOfAll (pids: number[]): Promise<{ user: number, kernel: number }> {
  const parents = new Set(pids)
  const all = [...pids]
  for (const name of await readdir('/proc')) {
    const pid = Number(name)
    if (Number.isInteger(pid) && parents.has(Number((await statOf(pid))?.[1]))) all.push(pid)
  }
  let user = 0
  let kernel = 0
  for (const pid of all) {
    const fields = await statOf(pid)
    if (fields === undefined) continue
    // utime, stime, cutime, cstime: fields 14 to 17, in clock ticks (100 per second on Linux).
    user += (Number(fields[11]) + Number(fields[13])) * 10
    kernel += (Number(fields[12]) + Number(fields[14])) * 10
  }
  return { user, kernel }
}

/** The machine's CPU time so far, busy and all, in clock ticks (/proc/stat's first line). */
async function machineTicks (): Promise<{ busy: number, all: number }> {
  const fields = (await readFile('/proc/stat', 'utf8')).split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const all = fields.reduce((a, b) => a + b, 0)
  // idle and iowait are fields 4 and 5.
  return { busy: all - fields[3] - fields[4], all }
}

/** One round: `count` trivial builds through the workers of `pool`, builds/s from the first submit to the last finish. */
async function dispatchRound (grid: BenchGrid, pool: string, count: number, workerPids: number[]): Promise<{ rate: number, cpuMsPerBuild: number, workerCpu: { user: number, kernel: number }, poolCpuMsPerBuild: number, machineBusy: number }> {
  const cpuBefore = await cpuMsOf(grid.pid)
  const workersBefore = await cpuSplitOfAll(workerPids)
  const poolsBefore = (await Promise.all(workerPids.map(cpuMsOf))).reduce((a, b) => a + b, 0)
  const machineBefore = await machineTicks()
  const began = performance.now()
  const ids: string[] = []
  for (let i = 0; i < count; i += SUBMITS_IN_FLIGHT) {
    ids.push(...await Promise.all(Array.from({ length: Math.min(SUBMITS_IN_FLIGHT, count - i) }, async () => await submit(grid, { requires: { pool }, steps: [{ run: 'true' }] }))))
  }
  // Poll the cheap capacity figure, not the builds: reading hundreds of builds would load the coordinator we measure.
  // Once no slot is busy, the last builds may still be sealing their logs (a slot is free again while a worker
  // finishes): the list is read until every build has its result.
  const mine = new Set(ids)
  let ours: Build[] = []
  await within(`${count} builds through pool ${pool}`, async () => {
    while (true) {
      const capacity = await (await fetch(`${grid.url}/api/capacity`)).json()
      if (capacity.queued === 0 && capacity.busy === 0) break
      await sleep(10)
    }
    while (true) {
      ours = (await (await fetch(`${grid.url}/api/builds?limit=${count}`)).json() as Build[]).filter(b => mine.has(b.id))
      if (ours.length === count && ours.every(b => FINISHED.has(b.status))) return
      await sleep(5)
    }
  })
  const elapsed = performance.now() - began
  const cpuMsPerBuild = (await cpuMsOf(grid.pid) - cpuBefore) / count
  const workersAfter = await cpuSplitOfAll(workerPids)
  const poolCpuMsPerBuild = ((await Promise.all(workerPids.map(cpuMsOf))).reduce((a, b) => a + b, 0) - poolsBefore) / count
  const workerCpu = { user: (workersAfter.user - workersBefore.user) / count, kernel: (workersAfter.kernel - workersBefore.kernel) / count }
  const machineAfter = await machineTicks()
  const machineBusy = (machineAfter.busy - machineBefore.busy) / (machineAfter.all - machineBefore.all)
  const failed = ours.filter(b => b.status !== 'succeeded' || b.steps[0]?.logCid === undefined)
  if (failed.length > 0 || ours.length !== count) throw new Error(`${failed.length} of ${count} bench builds did not succeed with a sealed log (${ours.length} found)`)
  return { rate: count / (elapsed / 1000), cpuMsPerBuild, workerCpu, poolCpuMsPerBuild, machineBusy }
}

export interface DispatchFigures {
  /** Medians over the rounds. */
  rate: number
  spawnRate: number
  /** The median round's ratio of builds/s to spawns/s (each round's pair measured back to back). */
  ratio: number
  cpuMsPerBuild: number
  rounds: Array<{ rate: number, spawnRate: number, cpuMsPerBuild: number }>
}

/**
 * Trivial builds through `workers` workers (4: four processes, as four `grid worker` commands; 50: two pool processes
 * of 25), DISPATCH_ROUNDS rounds, each after a round of bare spawns. The workers join once, before the first round.
 */
export async function dispatchRate (launch: Launch, grid: BenchGrid, dir: string, workers: 4 | 50, report: (line: string) => void = () => {}): Promise<DispatchFigures> {
  const pools: ChildProcessWithoutNullStreams[] = []
  const perProcess = workers <= 4 ? 1 : 25
  const pool = `w${workers}`
  for (let left = workers; left > 0; left -= perProcess) pools.push(await startPool(launch, grid, dir, Math.min(perProcess, left), `pool=${pool}`))
  const rounds: DispatchFigures['rounds'] = []
  try {
    for (let round = 0; round < DISPATCH_ROUNDS; round++) {
      const spawnRate = await bareSpawn()
      const { rate, cpuMsPerBuild, workerCpu, poolCpuMsPerBuild, machineBusy } = await dispatchRound(grid, pool, DISPATCH_BUILDS[workers], pools.map(p => p.pid!))
      report(`  round ${round + 1}: ${rate.toFixed(1)} builds/s through ${workers} workers, ${spawnRate.toFixed(0)} sh spawns/s (${(rate / spawnRate).toFixed(2)}x); CPU per build: coordinator ${cpuMsPerBuild.toFixed(2)} ms, workers and their shells ${(workerCpu.user + workerCpu.kernel).toFixed(2)} ms (${workerCpu.kernel.toFixed(2)} in the kernel, ${poolCpuMsPerBuild.toFixed(2)} in the worker processes themselves); machine ${(machineBusy * 100).toFixed(0)}% busy`)
      rounds.push({ rate, spawnRate, cpuMsPerBuild })
    }
  } finally {
    await Promise.all(pools.map(stopPool))
  }
  return {
    rate: median(rounds.map(r => r.rate)),
    spawnRate: median(rounds.map(r => r.spawnRate)),
    ratio: median(rounds.map(r => r.rate / r.spawnRate)),
    cpuMsPerBuild: median(rounds.map(r => r.cpuMsPerBuild)),
    rounds
  }
}

/** Baseline: 1-byte round trips over a bare libp2p stream (the grid's TCP + pnet + Noise + Yamux) to another process. */
export async function bareRoundTrips (launch: Launch, samples = RTT_SAMPLES): Promise<{ p50: number, p99: number }> {
  const secret = newSecret()
  const peer = launch([join(ROOT, 'bench/echo-peer.ts'), Buffer.from(secret).toString('hex')])
  try {
    const addr = (await peer.line(/^(\/ip4\/\S+)$/m))[1]
    const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret, listen: [] })
    try {
      const stream = await host.dialProtocol(multiaddr(addr), ECHO_PROTOCOL)
      const iterator = stream[Symbol.asyncIterator]()
      const rtts: number[] = []
      for (let i = 0; i < samples; i++) {
        const t = performance.now()
        stream.send(new Uint8Array([i & 0xff]))
        await iterator.next()
        rtts.push(performance.now() - t)
      }
      await stream.close()
      return { p50: percentile(rtts, 50), p99: percentile(rtts, 99) }
    } finally {
      await host.stop()
    }
  } finally {
    await stopPool(peer.proc)
  }
}

/**
 * The grid's build events (GET /api/events, as the web UI follows them), to learn that a build finished without
 * polling: a poll every few milliseconds would load the coordinator whose latency is being measured.
 */
class BuildEvents {
  private readonly waiters = new Map<string, (build: Build) => void>()
  private readonly finished = new Map<string, Build>()
  private readonly abort = new AbortController()
  private readonly reading: Promise<void>

  private constructor (body: ReadableStream<Uint8Array>) {
    this.reading = this.read(body).catch(() => {})
  }

  static async open (grid: BenchGrid): Promise<BuildEvents> {
    const controller = new AbortController()
    const res = await fetch(`${grid.url}/api/events`, { signal: controller.signal })
    if (res.body === null) throw new Error('the event stream has no body')
    const events = new BuildEvents(res.body)
    events.abort.signal.addEventListener('abort', () => { controller.abort() })
    return events
  }

  /** The build once it has finished (resolves at once if it had). */
  async finishedBuild (id: string): Promise<Build> {
    const done = this.finished.get(id)
    if (done !== undefined) return done
    return await new Promise(resolve => this.waiters.set(id, resolve))
  }

  async close (): Promise<void> {
    this.abort.abort()
    await this.reading
  }

  private async read (body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder()
    let text = ''
    const reader = body.getReader()
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      text += decoder.decode(chunk.value, { stream: true })
      for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
        const message = text.slice(0, end)
        text = text.slice(end + 2)
        if (!/^event: build$/m.test(message)) continue
        const build = JSON.parse(message.split('\n').filter(l => l.startsWith('data: ')).map(l => l.slice(6)).join('\n')) as Build
        if (!FINISHED.has(build.status)) continue
        const waiter = this.waiters.get(build.id)
        this.waiters.delete(build.id)
        if (waiter !== undefined) waiter(build)
        else this.finished.set(build.id, build)
      }
    }
  }
}

export interface LatencyFigures {
  /** Medians over the rounds of each round's p50 and p99, in ms. */
  p50: number
  p99: number
  rounds: Array<{ p50: number, p99: number }>
}

/**
 * Queue-to-start with one idle worker: one build at a time, each submitted once the last finished, DISPATCH_ROUNDS
 * rounds of LATENCY_SAMPLES. The span is QUEUE_TO_START_SPAN. `beforeRound` runs before each (a baseline round).
 */
export async function queueToStart (launch: Launch, grid: BenchGrid, dir: string, beforeRound: () => Promise<void> = async () => {}, report: (line: string) => void = () => {}): Promise<LatencyFigures> {
  const pool = await startPool(launch, grid, dir, 1, 'pool=latency')
  const rounds: LatencyFigures['rounds'] = []
  const events = await BuildEvents.open(grid)
  try {
    for (let round = 0; round < DISPATCH_ROUNDS; round++) {
      await beforeRound()
      const samples: number[] = []
      for (let i = 0; i < LATENCY_SAMPLES; i++) {
        const id = await submit(grid, { requires: { pool: 'latency' }, steps: [{ run: 'true' }] })
        const build = await within('a latency build', async () => await events.finishedBuild(id))
        samples.push(Date.parse(build.steps[0].started!) - Date.parse(build.created))
      }
      const figures = { p50: percentile(samples, 50), p99: percentile(samples, 99) }
      report(`  round ${round + 1}: queue-to-start p50 ${figures.p50} ms, p99 ${figures.p99} ms`)
      rounds.push(figures)
    }
  } finally {
    await events.close()
    await stopPool(pool)
  }
  return { p50: median(rounds.map(r => r.p50)), p99: median(rounds.map(r => r.p99)), rounds }
}

/** Every dispatch figure on a grid of its own, as rows. */
export async function benchDispatch (report: (line: string) => void = line => { process.stderr.write(line + '\n') }, only?: Set<string>): Promise<DispatchRow[]> {
  const children: ChildProcessWithoutNullStreams[] = []
  const launch = launcher(children)
  const dir = await mkdtemp(join(tmpdir(), 'grid-bench-dispatch-'))
  const rows: DispatchRow[] = []
  const wanted = (part: string): boolean => only === undefined || only.has(part)
  try {
    const grid = await startGrid(launch, dir)
    for (const workers of [4, 50] as const) {
      if (!wanted(`w${workers}`)) continue
      report(`bench: dispatch through ${workers} workers, ${DISPATCH_ROUNDS} rounds`)
      const d = await dispatchRate(launch, grid, dir, workers, report)
      rows.push({ name: `coordinator CPU per build (${workers} workers)`, value: d.cpuMsPerBuild, unit: 'ms', note: 'HTTP submit, matching, history, events, and the local store taking the logs' })
      rows.push({
        name: `dispatch: trivial builds/s through ${workers} workers`, value: d.rate, unit: '/s',
        baseline: { name: 'sh spawns/s', value: d.spawnRate, unit: '/s' }, ratio: d.ratio,
        note: `medians of ${DISPATCH_ROUNDS} rounds of ${DISPATCH_BUILDS[workers]} builds over HTTP, first submit to last finished (log sealed, result recorded), each after a round of ${SPAWN_SAMPLES} bare spawns`
      })
    }
    if (wanted('latency')) {
      report(`bench: queue-to-start, ${DISPATCH_ROUNDS} rounds`)
      const rtts: Array<{ p50: number, p99: number }> = []
      const latency = await queueToStart(launch, grid, dir, async () => { rtts.push(await bareRoundTrips(launch)) }, report)
      const rtt = median(rtts.map(r => r.p50))
      const ratio = median(latency.rounds.map((r, i) => r.p50 / rtts[i].p50))
      const note = `medians of ${DISPATCH_ROUNDS} rounds of ${LATENCY_SAMPLES} builds; span: ${QUEUE_TO_START_SPAN}`
      rows.push({ name: 'queue-to-start p50 (idle worker)', value: latency.p50, unit: 'ms', baseline: { name: 'bare libp2p RTT p50', value: rtt, unit: 'ms' }, ratio, note })
      rows.push({ name: 'queue-to-start p99 (idle worker)', value: latency.p99, unit: 'ms', baseline: { name: 'bare libp2p RTT p50', value: rtt, unit: 'ms' }, ratio: latency.p99 / rtt })
    }
  } finally {
    // A process stopping writes its CPU profile (GRID_BENCH_PROF_DIR) on the way out: it gets a moment for it.
    const alive = children.filter(c => c.exitCode === null && c.signalCode === null)
    const exited = Promise.all(alive.map(async c => await new Promise(resolve => c.once('exit', resolve))))
    for (const c of alive) c.kill('SIGTERM')
    await Promise.race([exited, sleep(process.env.GRID_BENCH_PROF_DIR !== undefined ? 10_000 : 2_000)])
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
  return rows
}

if (import.meta.main) {
  // `--only w4,latency` runs just those parts (w4, w50, latency).
  const at = process.argv.indexOf('--only')
  const only = at >= 0 ? new Set(process.argv[at + 1].split(',')) : undefined
  const rows = await benchDispatch(undefined, only)
  const fmt = (n: number | undefined): string => n === undefined ? '' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)
  process.stdout.write(['| figure | value | baseline (same run) | ratio | note |', '|---|---|---|---|---|',
    ...rows.map(r => `| ${r.name} | ${fmt(r.value)} ${r.unit} | ${r.baseline !== undefined ? `${r.baseline.name}: ${fmt(r.baseline.value)} ${r.baseline.unit}` : ''} | ${r.ratio !== undefined ? `${fmt(r.ratio)}x` : ''} | ${r.note ?? ''} |`)].join('\n') + '\n')
  process.exit(0)
}

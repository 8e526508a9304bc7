// The transfer figures as a user feels them (issue #20): the whole `grid put FILE` and `grid get CID -o OUT`
// commands, each its own process from spawn to exit, against `grid up --workers 0` on the same machine, beside a
// bare libp2p stream without pnet (TCP + Noise + Yamux, bench/bare-stream.ts) and raw TCP in the same run; and the
// CPU `grid up` spends taking a put, beside what receiving the bare stream costs.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { parseCid } from '../grid/content.ts'
import type { TransferRow } from './transfer.ts'
import { cpuMsOf, median, sleep, within, writeRandomFile } from './measure.ts'

const ROOT = join(import.meta.dirname, '..')
const GRID = join(ROOT, 'node/bin/grid.js')
/** 1 GiB by default, as the table; GRID_BENCH_TRANSFER_BYTES makes it small while developing. */
const BYTES = Number(process.env.GRID_BENCH_TRANSFER_BYTES ?? 2 ** 30)
/** Rounds, each on a fresh `grid up` and data dir; the figures are their medians (GRID_BENCH_TRANSFER_ROUNDS). */
const ROUNDS = Number(process.env.GRID_BENCH_TRANSFER_ROUNDS ?? 3)
/** One command or transfer may take this long; past it the process is killed and the bench fails. */
const PHASE_TIMEOUT_MS = 300_000
/** `grid up` or the bare peer must print its addresses within this time of being spawned. */
const START_TIMEOUT_MS = 30_000
/** A process sent SIGTERM gets this long to close its stores before SIGKILL. */
const STOP_GRACE_MS = 10_000
/** Writing back what a phase left dirty (the store's LevelDB files) may take this long before the bench fails. */
const SYNC_TIMEOUT_MS = 120_000

/** Every process this bench started, so that none outlives it, whatever fails. */
const children = new Set<ChildProcess>()

interface Started { proc: ChildProcess, output: () => string }

function start (args: string[]): Started {
  const proc = spawn(process.execPath, args, { cwd: ROOT })
  children.add(proc)
  proc.on('exit', () => children.delete(proc))
  let out = ''
  proc.stdout!.on('data', d => { out += d })
  proc.stderr!.on('data', d => { out += d })
  return { proc, output: () => out }
}

/** The first match of `re` in a long-running process's output, or a failure once it exits or START_TIMEOUT_MS pass. */
async function waitFor (started: Started, re: RegExp, what: string): Promise<RegExpExecArray> {
  return await within(`${what} to start`, async () => {
    while (true) {
      const match = re.exec(started.output())
      if (match !== null) return match
      if (started.proc.exitCode !== null || started.proc.signalCode !== null) throw new Error(`${what} exited: ${started.output().slice(-2000)}`)
      await sleep(20)
    }
  }, START_TIMEOUT_MS)
}

/** SIGTERM, then SIGKILL after STOP_GRACE_MS; resolves once the process is gone. */
async function stop (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise(resolve => proc.once('exit', resolve))
  proc.kill('SIGTERM')
  const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS)
  await exited
  clearTimeout(timer)
}

interface Finished { ms: number, stdout: string, stderr: string }

/** Run a process to its end: the time from spawn to exit, and what it printed. Fails on a non-zero exit or timeout. */
async function command (args: string[], what: string, env: NodeJS.ProcessEnv = process.env): Promise<Finished> {
  const began = performance.now()
  const proc = spawn(process.execPath, args, { cwd: ROOT, env })
  children.add(proc)
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', d => { stdout += d })
  proc.stderr.on('data', d => { stderr += d })
  let ms = 0
  proc.on('exit', () => {
    ms = performance.now() - began
    children.delete(proc)
  })
  const timer = setTimeout(() => proc.kill('SIGKILL'), PHASE_TIMEOUT_MS)
  const code = await new Promise<number | null>(resolve => proc.on('close', resolve))
  clearTimeout(timer)
  if (code !== 0) throw new Error(`${what} failed (exit ${code ?? proc.signalCode}): ${(stdout + stderr).slice(-2000)}`)
  return { ms, stdout, stderr }
}

/** Write back every dirty page, so that what one phase left (a gigabyte of LevelDB tables) does not slow the next. */
async function settle (): Promise<void> {
  await within('sync', async () => { await new Promise(resolve => spawn('sync').on('exit', resolve)) }, SYNC_TIMEOUT_MS)
}

/** A file's sha256 in hex, as `sha256sum` prints it. */
async function sha256Of (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(chunk)
  return hash.digest('hex')
}

/** A bare transfer, by a client process of bench/bare-stream.ts: the stream's own time, and the whole process's. */
interface Bare { ms: number, processMs: number, receiverCpuMs: number }

interface Round {
  put: number
  get: number
  /** `grid put` of the same file again, unchanged. */
  reput: number
  /** `grid up`'s CPU (all threads) during the put, in ms. */
  storeCpuMs: number
  bareUp: Bare
  bareDown: Bare
  tcpUp?: number
  tcpDown?: number
}

/**
 * The user-level transfer rows: `grid put` and `grid get -o` of GRID_BENCH_TRANSFER_BYTES (1 GiB) as whole commands
 * against `grid up` on this machine, and `grid up`'s CPU per GiB put, each beside a bare libp2p stream without pnet
 * between two processes in the same round; medians over GRID_BENCH_TRANSFER_ROUNDS rounds (ratios are the medians of
 * each round's ratio). Works in `dir` (created; the caller removes it). Throws when a command fails, prints no CID
 * or the wrong sha256, when a get's file differs from the put's, or when a phase passes its time limit; every process
 * it started is stopped before it returns or throws.
 */
export async function benchUserTransfer (dir: string, progress: (line: string) => void = () => {}): Promise<TransferRow[]> {
  await mkdir(dir, { recursive: true })
  const file = join(dir, 'user-transfer.bin')
  progress(`bench: writing a ${BYTES} byte random file`)
  await writeRandomFile(file, BYTES)
  const sha256 = await sha256Of(file)
  const rounds: Round[] = []
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const data = join(dir, `grid-${round}`)
      const step = (name: string): void => progress(`bench: user transfer round ${round + 1} of ${ROUNDS}: ${name}`)
      step('grid up and the bare peer')
      const up = start([GRID, 'up', '--workers', '0', '--data', data, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
      const peer = start([join(ROOT, 'bench/bare-stream.ts'), 'serve'])
      try {
        await waitFor(up, /^join: /m, 'grid up')
        const [, addr, port] = await waitFor(peer, /^bare (\S+) tcp (\d+)$/m, 'the bare peer')
        const bare = async (phase: string): Promise<Bare> => {
          step(`bare stream, ${phase}`)
          const cpuBefore = await cpuMsOf(peer.proc.pid!)
          const run = await command([join(ROOT, 'bench/bare-stream.ts'), phase, addr, port, String(BYTES)], `bare ${phase}`)
          const receiverCpuMs = await cpuMsOf(peer.proc.pid!) - cpuBefore
          const result = JSON.parse(run.stdout.split('\n').find(l => l.startsWith('{')) ?? '{}')
          if (result.bytes !== BYTES) throw new Error(`bare ${phase} moved ${result.bytes} bytes: ${run.stdout}${run.stderr}`)
          await settle()
          return { ms: result.ms, processMs: run.ms, receiverCpuMs }
        }
        const bareUp = await bare('up')

        step('grid put')
        const cpuBefore = await cpuMsOf(up.proc.pid!)
        // A cache of names of its own per round (client/content/name-cache.ts): each first put is a first put.
        const user = { ...process.env, XDG_CACHE_HOME: join(dir, `cache-${round}`) }
        const put = await command([GRID, 'put', file, '--data', data], 'grid put', user)
        const storeCpuMs = await cpuMsOf(up.proc.pid!) - cpuBefore
        const cid = put.stdout.trim().split('\n')[0] ?? ''
        parseCid(cid)
        if (!put.stderr.includes(`sha256 ${sha256}`)) throw new Error(`grid put did not report the file's sha256 ${sha256}: ${put.stderr}`)
        await settle()

        const bareDown = await bare('down')

        step('grid get -o')
        const out = join(dir, `got-${round}.bin`)
        const get = await command([GRID, 'get', cid, '-o', out, '--data', data], 'grid get', user)
        const got = await sha256Of(out)
        // Removed before the next phase: its dirty pages go with it instead of being written back meanwhile.
        await rm(out, { force: true })
        if (got !== sha256) throw new Error(`grid get wrote content with sha256 ${got}, the file's is ${sha256}`)
        await settle()

        // The same file again, unchanged: named from the cache, held by the store, so neither hashed nor read.
        step('grid put again')
        const reput = await command([GRID, 'put', file, '--data', data], 'grid put again', user)
        if (reput.stdout.trim().split('\n')[0] !== cid) throw new Error(`grid put again printed ${reput.stdout}, not ${cid}`)
        if (!/sent 0 bytes/.test(reput.stderr)) throw new Error(`grid put again sent bytes: ${reput.stderr}`)

        // Raw TCP varies little: once is enough, for context.
        const tcp = round === 0 ? { tcpUp: (await bare('tcp-up')).ms, tcpDown: (await bare('tcp-down')).ms } : {}
        rounds.push({ put: put.ms, get: get.ms, reput: reput.ms, storeCpuMs, bareUp, bareDown, ...tcp })
        const mbps = (ms: number): string => `${(BYTES / (ms / 1000) / 1e6).toFixed(0)} MB/s`
        step(`put ${mbps(put.ms)} (bare up ${mbps(bareUp.ms)}), get ${mbps(get.ms)} (bare down ${mbps(bareDown.ms)}), grid up CPU ${(storeCpuMs / 1000).toFixed(1)} s (bare receiver ${(bareUp.receiverCpuMs / 1000).toFixed(1)} s)`)
      } finally {
        await Promise.all([stop(up.proc), stop(peer.proc)])
        await rm(data, { recursive: true, force: true })
      }
    }
  } finally {
    await Promise.all([...children].map(stop))
  }

  const rate = (ms: number): number => BYTES / (ms / 1000) / 1e6
  const gib = BYTES / 2 ** 30
  const size = BYTES % 2 ** 30 === 0 ? `${gib} GiB` : `${(BYTES / 2 ** 20).toFixed(0)} MiB`
  /** Median of a figure over the rounds, and its range. */
  const over = (figure: (r: Round) => number, digits: number, unit: string): { value: number, range: string } => {
    const values = rounds.map(figure)
    return { value: median(values), range: `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}${unit}` }
  }
  const tcpUp = rate(rounds[0].tcpUp!)
  const tcpDown = rate(rounds[0].tcpDown!)
  const rounded = `median of ${rounds.length} round(s), each on a fresh grid up`
  const bareNote = (pick: (r: Round) => Bare): string => {
    const stream = over(r => rate(pick(r).ms), 0, ' MB/s')
    const whole = over(r => rate(pick(r).processMs), 0, ' MB/s')
    return `bare stream ${stream.range}, timed from its dial to the last byte (${whole.value.toFixed(0)} MB/s counting its process's start and exit)`
  }
  const put = over(r => rate(r.put), 0, ' MB/s')
  const get = over(r => rate(r.get), 0, ' MB/s')
  const putRatio = over(r => r.bareUp.ms / r.put, 2, 'x')
  const getRatio = over(r => r.bareDown.ms / r.get, 2, 'x')
  const perGib = (ms: number): number => ms / 1000 / gib
  const storeCpu = over(r => perGib(r.storeCpuMs), 1, ' s')
  const bareCpu = over(r => perGib(r.bareUp.receiverCpuMs), 1, ' s')
  const cpuRatio = over(r => r.storeCpuMs / r.bareUp.receiverCpuMs, 2, 'x')
  const baseline = 'bare libp2p stream, no pnet (TCP + Noise + Yamux)'
  const wholeCommand = 'spawn to exit of `node node/bin/grid.js`, as `npx grid` runs it, with --data of the grid up beside it'
  return [
    {
      figure: `grid put ${size}, whole command`, value: put.value, unit: 'MB/s', baseline, baselineValue: over(r => rate(r.bareUp.ms), 0, '').value, ratio: putRatio.value,
      note: `${rounded} (ratio ${putRatio.range}, ${put.range}); ${wholeCommand}, a first put of the file (one pass: hashed as it is sent, every block checked by the store); ${bareNote(r => r.bareUp)}; raw TCP ${tcpUp.toFixed(0)} MB/s; goal ≥ 0.6x`
    },
    {
      figure: `grid get -o ${size}, whole command`, value: get.value, unit: 'MB/s', baseline, baselineValue: over(r => rate(r.bareDown.ms), 0, '').value, ratio: getRatio.value,
      note: `${rounded} (ratio ${getRatio.range}, ${get.range}); ${wholeCommand}, every block and the whole sha256 checked; ${bareNote(r => r.bareDown)}; raw TCP ${tcpDown.toFixed(0)} MB/s; goal ≥ 0.8x`
    },
    {
      figure: `grid put of the same ${size} again, unchanged, whole command`, value: over(r => r.reput / 1000, 2, ' s').value, unit: 's', baseline: 'the first put', baselineValue: over(r => r.put / 1000, 2, ' s').value, ratio: over(r => r.reput / r.put, 3, 'x').value,
      note: `${rounded} (${over(r => r.reput / 1000, 2, ' s').range}); named from the name cache (size, mtime, ctime, inode as git's index) and held by the store: nothing hashed, read or sent`
    },
    {
      figure: 'store CPU per GiB put (grid up, all threads)', value: storeCpu.value, unit: 's', baseline: 'receiving that bare stream', baselineValue: bareCpu.value, ratio: cpuRatio.value,
      note: `${rounded} (ratio ${cpuRatio.range}, ${storeCpu.range}; baseline ${bareCpu.range}); the grid up process during the whole grid put; goal ≤ 1.3x`
    }
  ]
}

// Run alone: `npx node bench/user-transfer.ts` prints the rows (npm run bench includes them).
if (import.meta.main) {
  const { mkdtemp } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const dir = await mkdtemp(join(tmpdir(), 'grid-user-transfer-'))
  try {
    for (const row of await benchUserTransfer(dir, line => process.stderr.write(line + '\n'))) process.stdout.write(JSON.stringify(row) + '\n')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

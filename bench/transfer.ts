// The store's transfer figures (issue #3): put and get of TRANSFER_BYTES between two processes, beside a bare
// libp2p stream (same TCP + Noise + Yamux stack, no grid logic) and raw TCP in the same run; a re-put of
// content the store already holds; peak RSS of both sides; the store's CPU per GiB taken in.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { newSecret } from '../net/join-code.ts'
import { MemorySampler, cpuMsOf, median, writeRandomFile } from './measure.ts'

const ROOT = join(import.meta.dirname, '..')
/** 1 GiB, as the issue asks: far past any buffer, so memory that grows with the size would show. */
export const TRANSFER_BYTES = Number(process.env.GRID_BENCH_TRANSFER_BYTES ?? 2 ** 30)
/**
 * Rounds of put and get, each against a fresh store process: the figures are their medians. On two shared cores
 * one 1 GiB put varies by a fifth from run to run (garbage collection and the page cache of the machine), more than
 * any change worth measuring.
 */
const TRANSFER_ROUNDS = Number(process.env.GRID_BENCH_TRANSFER_ROUNDS ?? 3)
/** One transfer phase may not take longer than this. */
const PHASE_TIMEOUT_MS = 300_000

export interface TransferRow { figure: string, value: number, unit: string, baseline?: string, baselineValue?: number, ratio?: number, note?: string }

interface PhaseResult { phase: string, ms: number, bytes: number, peakRss: number, cid?: string, sha256?: string, sentBytes?: number, storeCpuMs?: number, store?: { anon: number, total: number } }

function run (args: string[]): Promise<PhaseResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, { cwd: ROOT })
    let out = ''
    proc.stdout.on('data', d => { out += d })
    proc.stderr.on('data', d => { out += d })
    const timer = setTimeout(() => proc.kill('SIGKILL'), PHASE_TIMEOUT_MS)
    proc.on('close', code => {
      clearTimeout(timer)
      const line = out.split('\n').find(l => l.startsWith('{'))
      if (code === 0 && line !== undefined) resolve(JSON.parse(line))
      else reject(new Error(`transfer phase ${args[5]} failed (${code}): ${out.slice(-2000)}`))
    })
  })
}


/** A store process of its own, on a fresh data dir, with the bare baselines beside it (transfer-peer.ts). */
interface Peer { id: string, addr: string, port: string, proc: ChildProcess, stop: () => Promise<void> }

async function startPeer (secret: string, dataDir: string): Promise<Peer> {
  const proc = spawn(process.execPath, [join(ROOT, 'bench/transfer-peer.ts'), secret, dataDir], { cwd: ROOT })
  let out = ''
  proc.stdout!.on('data', d => { out += d })
  proc.stderr!.on('data', d => { out += d })
  const stop = async (): Promise<void> => {
    proc.kill('SIGTERM')
    await new Promise(resolve => setTimeout(resolve, 300))
    if (proc.exitCode === null) proc.kill('SIGKILL')
  }
  const started = Date.now()
  let match: RegExpExecArray | null = null
  while ((match = /^peer (\S+) (\S+) tcp (\d+)$/m.exec(out)) === null) {
    if (proc.exitCode !== null || Date.now() - started > 30_000) {
      await stop()
      throw new Error(`transfer peer did not start: ${out}`)
    }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return { id: match[1], addr: match[2], port: match[3], proc, stop }
}

/** One round: the baselines, then the put and the get of the same file, all against one fresh store process. */
interface Round { bareUp: PhaseResult, bareDown: PhaseResult, put: PhaseResult, get: PhaseResult, tcpUp?: PhaseResult, tcpDown?: PhaseResult, reput?: PhaseResult }

export async function benchTransfer (dir: string, progress: (line: string) => void = () => {}): Promise<TransferRow[]> {
  await mkdir(dir, { recursive: true })
  const file = join(dir, 'transfer.bin')
  progress(`bench: writing a ${TRANSFER_BYTES} byte random file`)
  await writeRandomFile(file, TRANSFER_BYTES)
  const secret = Buffer.from(newSecret()).toString('hex')
  const rounds: Round[] = []
  for (let round = 0; round < TRANSFER_ROUNDS; round++) {
    const storeDir = join(dir, `store-${round}`)
    const peer = await startPeer(secret, storeDir)
    try {
      const phase = async (name: string, ...rest: string[]): Promise<PhaseResult> => {
        progress(`bench: transfer round ${round + 1} of ${TRANSFER_ROUNDS}: ${name}`)
        const sampler = new MemorySampler(peer.proc.pid!)
        const cpuBefore = await cpuMsOf(peer.proc.pid!)
        try {
          const result = await run([join(ROOT, 'bench/transfer-client.ts'), secret, peer.id, peer.addr, peer.port, name, String(TRANSFER_BYTES), file, ...rest])
          return { ...result, storeCpuMs: await cpuMsOf(peer.proc.pid!) - cpuBefore, store: { anon: sampler.peaks.anon, total: sampler.peaks.rss } }
        } finally {
          sampler.stop()
        }
      }
      const bareUp = await phase('bare-up')
      const put = await phase('put')
      const bareDown = await phase('bare-down')
      const get = await phase('get', put.cid!, put.sha256!)
      // Raw TCP and the re-put vary little: once is enough.
      const once = round === 0 ? { tcpUp: await phase('tcp-up'), tcpDown: await phase('tcp-down'), reput: await phase('put') } : {}
      rounds.push({ bareUp, bareDown, put, get, ...once })
    } finally {
      await peer.stop()
      await rm(storeDir, { recursive: true, force: true })
    }
  }
  const rate = (r: PhaseResult): number => r.bytes / (r.ms / 1000) / 1e6
  const mib = (n: number): string => `${(n / 2 ** 20).toFixed(0)} MiB`
  const size = `${(TRANSFER_BYTES / 2 ** 20).toFixed(0)} MiB`
  const first = rounds[0]
  const tcpUp = rate(first.tcpUp!)
  const tcpDown = rate(first.tcpDown!)
  /** Median of a figure over the rounds, and its range when there is more than one. */
  const over = (figure: (r: Round) => number, digits: number, unit = ''): { value: number, range: string } => {
    const values = rounds.map(figure)
    const range = values.length > 1 ? `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}${unit}` : ''
    return { value: median(values), range }
  }
  const roundsNote = (range: string): string => rounds.length > 1 ? `median of ${rounds.length} rounds, each on a fresh store process (${range})` : ''
  const bareUp = over(r => rate(r.bareUp), 0)
  const bareDown = over(r => rate(r.bareDown), 0)
  const put = over(r => rate(r.put), 0)
  const get = over(r => rate(r.get), 0)
  const putRatio = over(r => rate(r.put) / rate(r.bareUp), 2, 'x')
  const getRatio = over(r => rate(r.get) / rate(r.bareDown), 2, 'x')
  const storeCpu = over(r => r.put.storeCpuMs! / (TRANSFER_BYTES / 2 ** 30) / 1000, 1, ' s')
  const storeCpuBare = over(r => r.bareUp.storeCpuMs! / (TRANSFER_BYTES / 2 ** 30) / 1000, 1, ' s')
  const peak = (pick: (r: Round) => number): number => Math.max(...rounds.map(pick))
  const reput = first.reput!
  return [
    { figure: `bare libp2p stream, ${size} one way`, value: bareUp.value, unit: 'MB/s', baseline: 'raw TCP', baselineValue: tcpUp, ratio: bareUp.value / tcpUp, note: roundsNote(`${bareUp.range} MB/s`) },
    { figure: `bare libp2p stream, ${size} the other way`, value: bareDown.value, unit: 'MB/s', baseline: 'raw TCP', baselineValue: tcpDown, ratio: bareDown.value / tcpDown, note: roundsNote(`${bareDown.range} MB/s`) },
    { figure: `put ${size} (client to store process)`, value: put.value, unit: 'MB/s', baseline: 'bare libp2p stream', baselineValue: bareUp.value, ratio: putRatio.value, note: `${roundsNote(putRatio.range)}; raw TCP ${tcpUp.toFixed(0)} MB/s` },
    { figure: `get ${size} (store process to client), verified`, value: get.value, unit: 'MB/s', baseline: 'bare libp2p stream', baselineValue: bareDown.value, ratio: getRatio.value, note: `${roundsNote(getRatio.range)}; raw TCP ${tcpDown.toFixed(0)} MB/s` },
    { figure: 'store CPU per GiB put (all threads)', value: storeCpu.value, unit: 's', baseline: 'receiving a bare libp2p stream', baselineValue: storeCpuBare.value, ratio: storeCpu.value / storeCpuBare.value, note: roundsNote(storeCpu.range) },
    { figure: `re-put of the same ${size}`, value: reput.ms / 1000, unit: 's', baseline: 'first put', baselineValue: first.put.ms / 1000, ratio: reput.ms / first.put.ms, note: `sent ${reput.sentBytes} bytes (${(100 * (reput.sentBytes ?? 0) / (first.put.sentBytes || 1)).toFixed(3)}% of the first put)` },
    { figure: 'client peak RSS, put / get', value: peak(r => Math.max(r.put.peakRss, r.get.peakRss)) / 2 ** 20, unit: 'MiB', note: `put ${mib(peak(r => r.put.peakRss))}, get ${mib(peak(r => r.get.peakRss))}` },
    { figure: 'store peak RSS during put and get (anonymous)', value: peak(r => Math.max(r.put.store!.anon, r.get.store!.anon)) / 2 ** 20, unit: 'MiB', note: `${mib(peak(r => Math.max(r.put.store!.total, r.get.store!.total)))} counting LevelDB's memory-mapped table files` }
  ]
}

// Run alone: `npx node bench/transfer.ts` prints the rows (npm run bench includes them).
if (import.meta.main) {
  const { mkdtemp } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const dir = await mkdtemp(join(tmpdir(), 'grid-transfer-'))
  try {
    for (const row of await benchTransfer(dir, line => process.stderr.write(line + '\n'))) process.stdout.write(JSON.stringify(row) + '\n')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

// The store's transfer figures (issue #3): put and get of TRANSFER_BYTES between two processes, beside a bare
// libp2p stream (same TCP + pnet + Noise + Yamux stack, no grid logic) and raw TCP in the same run; a re-put of
// content the store already holds; peak RSS of both sides.
import { spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdir, open } from 'node:fs/promises'
import { randomFillSync } from 'node:crypto'
import { join } from 'node:path'
import { newSecret } from '../node/join-code.ts'
import { MemorySampler } from './measure.ts'

const ROOT = join(import.meta.dirname, '..')
/** 1 GiB, as the issue asks: far past any buffer, so memory that grows with the size would show. */
export const TRANSFER_BYTES = Number(process.env.GRID_BENCH_TRANSFER_BYTES ?? 2 ** 30)
/** One transfer phase may not take longer than this. */
const PHASE_TIMEOUT_MS = 300_000

export interface TransferRow { figure: string, value: number, unit: string, baseline?: string, baselineValue?: number, ratio?: number, note?: string }

interface PhaseResult { phase: string, ms: number, bytes: number, peakRss: number, cid?: string, sha256?: string, sentBytes?: number, store?: { anon: number, total: number } }

async function writeRandomFile (path: string, size: number): Promise<void> {
  const out = createWriteStream(path)
  const chunk = Buffer.alloc(1024 * 1024)
  for (let written = 0; written < size; written += chunk.length) {
    randomFillSync(chunk)
    const part = chunk.subarray(0, Math.min(chunk.length, size - written))
    if (!out.write(Buffer.from(part))) await new Promise<void>(resolve => out.once('drain', () => resolve()))
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => err ? reject(err) : resolve()))
  // On disk before any phase starts: a gigabyte of dirty pages written back during the first phase slowed it 3x.
  const handle = await open(path, 'r+')
  await handle.sync()
  await handle.close()
}

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


export async function benchTransfer (dir: string, progress: (line: string) => void = () => {}): Promise<TransferRow[]> {
  await mkdir(dir, { recursive: true })
  const file = join(dir, 'transfer.bin')
  progress(`bench: writing a ${TRANSFER_BYTES} byte random file`)
  await writeRandomFile(file, TRANSFER_BYTES)
  const secret = Buffer.from(newSecret()).toString('hex')
  const peer = spawn(process.execPath, [join(ROOT, 'bench/transfer-peer.ts'), secret, join(dir, 'store')], { cwd: ROOT })
  try {
    let out = ''
    peer.stdout.on('data', d => { out += d })
    peer.stderr.on('data', d => { out += d })
    const started = Date.now()
    let match: RegExpExecArray | null = null
    while ((match = /^peer (\S+) (\S+) tcp (\d+)$/m.exec(out)) === null) {
      if (peer.exitCode !== null || Date.now() - started > 30_000) throw new Error(`transfer peer did not start: ${out}`)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    const [, peerId, addr, port] = match
    const phase = async (name: string, ...rest: string[]): Promise<PhaseResult> => {
      progress(`bench: transfer ${name}`)
      const sampler = new MemorySampler(peer.pid!)
      try {
        const result = await run([join(ROOT, 'bench/transfer-client.ts'), secret, peerId, addr, port, name, String(TRANSFER_BYTES), file, ...rest])
        return { ...result, store: { anon: sampler.peaks.anon, total: sampler.peaks.rss } }
      } finally {
        sampler.stop()
      }
    }
    const rate = (r: PhaseResult): number => r.bytes / (r.ms / 1000) / 1e6
    const bareUp = await phase('bare-up')
    const bareDown = await phase('bare-down')
    const tcpUp = await phase('tcp-up')
    const tcpDown = await phase('tcp-down')
    const put = await phase('put')
    const reput = await phase('put')
    const get = await phase('get', put.cid!, put.sha256!)
    const mib = (n: number): string => `${(n / 2 ** 20).toFixed(0)} MiB`
    const size = `${(TRANSFER_BYTES / 2 ** 20).toFixed(0)} MiB`
    const storeAnon = Math.max(put.store!.anon, get.store!.anon)
    const storeTotal = Math.max(put.store!.total, get.store!.total)
    return [
      { figure: `bare libp2p stream, ${size} one way`, value: rate(bareUp), unit: 'MB/s', baseline: 'raw TCP', baselineValue: rate(tcpUp), ratio: rate(bareUp) / rate(tcpUp) },
      { figure: `bare libp2p stream, ${size} the other way`, value: rate(bareDown), unit: 'MB/s', baseline: 'raw TCP', baselineValue: rate(tcpDown), ratio: rate(bareDown) / rate(tcpDown) },
      { figure: `put ${size} (client to store process)`, value: rate(put), unit: 'MB/s', baseline: 'bare libp2p stream', baselineValue: rate(bareUp), ratio: rate(put) / rate(bareUp), note: `raw TCP ${rate(tcpUp).toFixed(0)} MB/s (${(rate(put) / rate(tcpUp)).toFixed(2)}x)` },
      { figure: `get ${size} (store process to client), verified`, value: rate(get), unit: 'MB/s', baseline: 'bare libp2p stream', baselineValue: rate(bareDown), ratio: rate(get) / rate(bareDown), note: `raw TCP ${rate(tcpDown).toFixed(0)} MB/s (${(rate(get) / rate(tcpDown)).toFixed(2)}x)` },
      { figure: `re-put of the same ${size}`, value: reput.ms / 1000, unit: 's', baseline: 'first put', baselineValue: put.ms / 1000, ratio: reput.ms / put.ms, note: `sent ${reput.sentBytes} bytes (${(100 * (reput.sentBytes ?? 0) / (put.sentBytes || 1)).toFixed(3)}% of the first put)` },
      { figure: 'client peak RSS, put / get', value: Math.max(put.peakRss, get.peakRss) / 2 ** 20, unit: 'MiB', note: `put ${mib(put.peakRss)}, get ${mib(get.peakRss)}` },
      { figure: 'store peak RSS during put and get (anonymous)', value: storeAnon / 2 ** 20, unit: 'MiB', note: `${mib(storeTotal)} counting LevelDB's memory-mapped table files` }
    ]
  } finally {
    peer.kill('SIGTERM')
    await new Promise(resolve => setTimeout(resolve, 300))
    if (peer.exitCode === null) peer.kill('SIGKILL')
  }
}

// Run alone: `npx node bench/transfer.ts` prints the rows (npm run bench includes them).
if (import.meta.main) {
  const { mkdtemp, rm } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const dir = await mkdtemp(join(tmpdir(), 'grid-transfer-'))
  try {
    for (const row of await benchTransfer(dir, line => process.stderr.write(line + '\n'))) process.stdout.write(JSON.stringify(row) + '\n')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

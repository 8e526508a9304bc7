// Small pieces every bench phase uses: a bounded wait, percentiles, a process's CPU time and memory, a random file.
import { createWriteStream, readFileSync } from 'node:fs'
import { open, readFile } from 'node:fs/promises'
import { randomFillSync } from 'node:crypto'

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** `work`, or a failure naming `what` after `timeoutMs`: a phase fails rather than hang the bench. */
export async function within<T> (what: string, work: () => Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([work(), new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`bench phase timed out: ${what}`)), timeoutMs) })])
  } finally {
    clearTimeout(timer)
  }
}

export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]
}

export const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** How often a MemorySampler reads a process's memory. */
const MEMORY_SAMPLE_MS = 50

export interface Memory {
  /** Resident now, and the kernel's high-water mark (VmHWM). */
  rss: number
  peak: number
  /**
   * Anonymous memory only (heap, buffers): what a process holds. LevelDB reads its tables through mmap, so pages of
   * a store's own files count in its RSS; the kernel drops them under pressure like any page cache.
   */
  anon: number
}

/** A process's memory from /proc, in bytes (zeros once it has exited). */
export function memoryOf (pid: number): Memory {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kib = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024
    return { rss: kib('VmRSS'), peak: kib('VmHWM'), anon: kib('RssAnon') }
  } catch {
    return { rss: 0, peak: 0, anon: 0 }
  }
}

/** CPU time (user + system) a process has used, from /proc. */
export async function cpuMsOf (pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ')
  // utime and stime are fields 14 and 15 of stat, in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** Peaks of a process's memory while a phase runs, sampled every MEMORY_SAMPLE_MS (anonymous memory has no HWM). */
export class MemorySampler {
  readonly peaks: Memory = { rss: 0, peak: 0, anon: 0 }
  private readonly pid: number
  private readonly timer: NodeJS.Timeout

  constructor (pid: number) {
    this.pid = pid
    this.sample()
    this.timer = setInterval(() => { this.sample() }, MEMORY_SAMPLE_MS)
  }

  /** The memory now, counted into the peaks. */
  sample (): Memory {
    const now = memoryOf(this.pid)
    this.peaks.rss = Math.max(this.peaks.rss, now.rss)
    this.peaks.peak = Math.max(this.peaks.peak, now.peak)
    this.peaks.anon = Math.max(this.peaks.anon, now.anon)
    return now
  }

  stop (): void {
    this.sample()
    clearInterval(this.timer)
  }
}

/** Write `size` random bytes (incompressible, unlike anything repeated) to `path`, and fsync it before returning. */
export async function writeRandomFile (path: string, size: number): Promise<void> {
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

// Child processes of the peer bench: each in its own process group, so stopping one stops what it started (a
// Buildbot worker's step shell, `yes | head`); all of them stopped on exit, on failure and on SIGINT/SIGTERM.
// Plus the bounded waits, /proc readings and loopback ports every part of the bench uses.
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams, SpawnOptionsWithoutStdio } from 'node:child_process'
import { createServer } from 'node:net'
import { cpuMsOf, memoryOf } from '../measure.ts'

export { cpuMsOf }

/** Output kept per child: enough for the last error, never a whole 40 MB log. */
const OUTPUT_KEEP_CHARS = 200_000
/** How long a process group gets between SIGTERM and SIGKILL. */
const STOP_GRACE_MS = 3_000
/** How often peak memory is read from /proc while a phase runs. */
const RSS_SAMPLE_MS = 50

export class BenchError extends Error {
  name = 'BenchError'
}

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Runs `work`, failing with `what` in the message once `ms` pass: no phase of the bench may hang. */
export async function within<T> (what: string, ms: number, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([work(), new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new BenchError(`timed out after ${ms / 1000} s: ${what}`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `check` every `everyMs` until it returns a value, for at most `ms`. */
export async function until<T> (what: string, ms: number, everyMs: number, check: () => Promise<T | undefined>): Promise<T> {
  return await within(what, ms, async () => {
    while (true) {
      const value = await check()
      if (value !== undefined) return value
      await sleep(everyMs)
    }
  })
}

export interface Child {
  proc: ChildProcessWithoutNullStreams
  pid: number
  /** What it wrote to stdout and stderr so far (the last OUTPUT_KEEP_CHARS). */
  out: () => string
  /** The first match of `re` in its output; fails if it exits first or `ms` pass. */
  line: (re: RegExp, ms?: number) => Promise<RegExpMatchArray>
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>
  /** Wall time from spawn to exit, once exited. */
  wallMs: () => number
}

export class Children {
  private readonly all: Child[] = []

  spawn (command: string, args: string[], options: SpawnOptionsWithoutStdio = {}): Child {
    const began = performance.now()
    let ended: number | undefined
    // detached: its own process group, so a kill reaches everything it started.
    const proc = spawn(command, args, { ...options, detached: true })
    let out = ''
    const keep = (d: Buffer): void => {
      out += d.toString()
      if (out.length > OUTPUT_KEEP_CHARS * 2) out = out.slice(-OUTPUT_KEEP_CHARS)
    }
    proc.stdout.on('data', keep)
    proc.stderr.on('data', keep)
    const exited = new Promise<number | string>(resolve => {
      proc.on('error', err => { out += `\n${err.message}`; ended ??= performance.now(); resolve(-1) })
      proc.on('close', (code, signal) => { ended ??= performance.now(); resolve(code ?? signal ?? -1) })
    })
    const name = [command, ...args].join(' ').slice(0, 160)
    const child: Child = {
      proc,
      pid: proc.pid ?? -1,
      out: () => out,
      exited,
      wallMs: () => (ended ?? performance.now()) - began,
      line: async (re, ms = 120_000) => await until(`${re} from ${name}`, ms, 20, async () => {
        const m = re.exec(out)
        if (m !== null) return m
        if (proc.exitCode !== null || proc.signalCode !== null || ended !== undefined) throw new BenchError(`${name} exited (${proc.exitCode ?? proc.signalCode}): ${out.slice(-2000)}`)
        return undefined
      })
    }
    this.all.push(child)
    return child
  }

  /** Runs a command to its end (at most `ms`), failing with its output if it exits non-zero. */
  async run (command: string, args: string[], ms: number, options: SpawnOptionsWithoutStdio = {}): Promise<Child> {
    const child = this.spawn(command, args, options)
    const code = await within(`${command} ${args.join(' ').slice(0, 120)}`, ms, async () => await child.exited).catch(async err => {
      await this.stop(child)
      throw err
    })
    if (code !== 0) throw new BenchError(`${command} ${args.join(' ').slice(0, 120)} exited ${code}: ${child.out().slice(-2000)}`)
    return child
  }

  /** SIGTERM to the child's process group, SIGKILL after STOP_GRACE_MS. */
  async stop (child: Child): Promise<void> {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) return
    signalGroup(child.pid, 'SIGTERM')
    const stopped = await Promise.race([child.exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)])
    if (!stopped) signalGroup(child.pid, 'SIGKILL')
    await Promise.race([child.exited, sleep(STOP_GRACE_MS)])
  }

  async stopAll (): Promise<void> {
    await Promise.all(this.all.map(async c => { await this.stop(c) }))
  }

  /** Last resort on process exit: SIGKILL every group still alive, synchronously. */
  killAllNow (): void {
    for (const c of this.all) if (c.proc.exitCode === null && c.proc.signalCode === null) signalGroup(c.pid, 'SIGKILL')
  }
}

function signalGroup (pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return
  try {
    process.kill(-pid, signal)
  } catch {
    try { process.kill(pid, signal) } catch {}
  }
}


/**
 * Peak resident memory of processes while a phase runs: VmHWM (the kernel's own high-water mark) read from /proc
 * every RSS_SAMPLE_MS, so the figure survives the process's exit. Anonymous memory (RssAnon) is kept apart: LevelDB
 * reads its tables through mmap, and those file pages count in RSS without being memory the transfer holds.
 */
export class PeakMemory {
  private readonly peaks = new Map<number, { hwm: number, anon: number }>()
  private readonly timer: NodeJS.Timeout

  constructor (pids: number[]) {
    for (const pid of pids) this.peaks.set(pid, { hwm: 0, anon: 0 })
    this.sample()
    this.timer = setInterval(() => { this.sample() }, RSS_SAMPLE_MS)
  }

  private sample (): void {
    for (const [pid, peak] of this.peaks) {
      const now = memoryOf(pid)
      peak.hwm = Math.max(peak.hwm, now.peak)
      peak.anon = Math.max(peak.anon, now.anon)
    }
  }

  of (pid: number): { hwm: number, anon: number } {
    return this.peaks.get(pid) ?? { hwm: 0, anon: 0 }
  }

  stop (): void {
    this.sample()
    clearInterval(this.timer)
  }
}

/** A free TCP port on loopback (the bench listens on 127.0.0.1 only). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })
}

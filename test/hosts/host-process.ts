// The real `grid` CLI started on one of the hosts: `ip netns exec NS node grid.js …` (ip execs the command,
// so the child's pid is the grid process itself and signals reach it directly).
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import type { Host } from './topology.ts'

export const ROOT = join(import.meta.dirname, '..', '..')
export const GRID_BIN = join(ROOT, 'node/bin/grid.js')

import { sleep, waitFor } from '../wait.ts'

export { sleep, waitFor }

/** Every grid process this run started and that still runs, so teardown can end them whatever happened. */
export const started = new Set<GridProcess>()
/** Every grid process this run started, for the logs kept with GRIDH_LOGS. */
export const everyProcess: GridProcess[] = []

export class GridProcess {
  readonly host: Host
  readonly args: string[]
  readonly child: ChildProcess
  readonly exited: Promise<number | string>
  private out = ''
  private err = ''
  exitCode: number | string | undefined
  exitedAt: number | undefined

  constructor (host: Host, args: string[], options: { stdout?: (chunk: string) => void } = {}) {
    this.host = host
    this.args = args
    this.child = spawn('ip', ['netns', 'exec', host.ns, process.execPath, GRID_BIN, ...args], {
      cwd: ROOT, env: { ...process.env, FORCE_COLOR: '0' }, stdio: ['ignore', 'pipe', 'pipe']
    })
    this.child.stdout!.setEncoding('utf8')
    this.child.stderr!.setEncoding('utf8')
    this.child.stdout!.on('data', (d: string) => { this.out += d; options.stdout?.(d) })
    this.child.stderr!.on('data', (d: string) => { this.err += d })
    this.exited = new Promise(resolve => this.child.on('exit', (code, signal) => {
      this.exitCode = code ?? signal ?? -1
      this.exitedAt = Date.now()
      started.delete(this)
      resolve(this.exitCode)
    }))
    started.add(this)
    everyProcess.push(this)
    this.startedAt = Date.now()
  }

  readonly startedAt: number

  get name (): string {
    return `grid ${this.args[0]} on ${this.host.name}`
  }

  stdout (): string { return this.out }
  stderr (): string { return this.err }

  count (pattern: RegExp): number {
    return (this.err.match(new RegExp(pattern.source, 'g')) ?? []).length + (this.out.match(new RegExp(pattern.source, 'g')) ?? []).length
  }

  async line (pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return await waitFor(`${pattern} from ${this.name}`, () => {
      if (this.exitCode !== undefined) throw new Error(`${this.name} exited ${this.exitCode}: ${this.lastWords()}`)
      return pattern.exec(this.out) ?? pattern.exec(this.err) ?? undefined
    }, timeoutMs)
  }

  /** The last lines it wrote to stderr: what to show when it failed. */
  lastWords (lines = 3): string {
    return this.err.trim().split('\n').slice(-lines).join(' | ') || '(nothing on stderr)'
  }

  signal (signal: NodeJS.Signals): void {
    if (this.exitCode === undefined) this.child.kill(signal)
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop (graceMs = 5_000): Promise<void> {
    if (this.exitCode !== undefined) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    await this.exited
    clearTimeout(timer)
  }
}

/** Run `grid ARGS…` on `host` to its end, killed after `timeoutMs`. */
export async function gridRun (host: Host, args: string[], timeoutMs: number): Promise<{ code: number | string, stdout: string, stderr: string }> {
  const p = new GridProcess(host, args)
  const timer = setTimeout(() => p.signal('SIGKILL'), timeoutMs)
  const code = await p.exited
  clearTimeout(timer)
  return { code, stdout: p.stdout(), stderr: p.stderr() }
}

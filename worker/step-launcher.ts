// Where steps' shells are spawned from. fork() copies the page tables of the process that calls it, so spawning
// from a worker (150 MB and more) cost a trivial step about 3 ms of the worker's CPU and 8 ms of wall time under
// load; a small helper process (launcher-process.js) spawns them in about a third of that and hands each shell's
// output pipes over, so the worker reads the step's output itself, as if it had spawned the shell. One helper per
// worker process, started on first use (a worker starts it when it starts); should it be gone, or never start,
// shells are spawned here as before.
import { fork, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { GridError } from '../net/errors.ts'

/** A step's shell, however it was spawned. */
export interface LaunchedShell {
  readonly pid: number
  /**
   * When it started, in clock ticks since boot (/proc/PID/stat's starttime), read before it could have been reaped;
   * undefined where it could not be read.
   */
  readonly start: number | undefined
  /** Its output, read by nobody else. */
  readonly stdout: Readable
  readonly stderr: Readable
  /** Its exit code and signal; rejects with LauncherGoneError if the helper that reaps it went away first. */
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>
}

export interface LaunchOptions {
  cwd: string
  env: Record<string, string | undefined>
}

/** The helper process that spawned a shell ended before the shell did: its exit code is unknown. */
export class LauncherGoneError extends GridError {
  name = 'LauncherGoneError'
}

/** A spawn that failed (a missing work dir, say): `code` is the system's (ENOENT…), as spawn's own error has it. */
export class SpawnError extends GridError {
  name = 'SpawnError'
  readonly code: string | undefined
  constructor (message: string, code?: string) {
    super(message)
    this.code = code
  }
}

const HELPER = join(import.meta.dirname, 'launcher-process.js')

interface Pending {
  args: string[]
  options: LaunchOptions
  resolve: (shell: LaunchedShell) => void
  reject: (err: Error) => void
  shell?: { pid: number, start: number | undefined, stdout: Readable }
  exit: PromiseWithResolvers<[number | null, NodeJS.Signals | null]>
}

type HelperMessage =
  | { t: 'launched', id: number, pid: number, start?: number }
  | { t: 'stderr', id: number }
  | { t: 'exit', id: number, code: number | null, signal: NodeJS.Signals | null }
  | { t: 'error', id: number, error: string, code?: string }

export class StepLauncher {
  private static instance: StepLauncher | undefined
  /** The helper's script. */
  private readonly script: string
  private helper: ChildProcess | undefined
  /** A helper ended without ever launching a shell (it cannot start here): shells are spawned here from then on. */
  private broken = false
  private nextId = 0
  /** Shells asked for and not yet exited, by request id. */
  private readonly pending = new Map<number, Pending>()

  /** `script`: the helper's (tests give one that cannot run). @default launcher-process.js beside this file */
  constructor (script: string = HELPER) {
    this.script = script
  }

  /** The launcher of this process. */
  static shared (): StepLauncher {
    StepLauncher.instance ??= new StepLauncher()
    return StepLauncher.instance
  }

  /** The helper's pid while it runs (for tests and diagnostics). */
  get pid (): number | undefined {
    return this.helper?.pid
  }

  /** Start the helper now, so the first step does not wait for it. */
  warm (): void {
    this.started()
  }

  /**
   * `/bin/sh ARGS` in its own session, stdin closed, stdout and stderr piped to this process. Rejects with
   * SpawnError when the shell cannot be spawned.
   */
  async launch (args: string[], options: LaunchOptions): Promise<LaunchedShell> {
    const helper = this.started()
    if (helper === undefined) return launchHere(args, options)
    const id = this.nextId++
    const shell = new Promise<LaunchedShell>((resolve, reject) => {
      this.pending.set(id, { args, options, resolve, reject, exit: Promise.withResolvers() })
    })
    this.busy()
    helper.send({ t: 'launch', id, args, cwd: options.cwd, env: options.env }, err => {
      if (err != null) this.settle(id, new LauncherGoneError(`the step launcher could not be reached (${err.message})`))
    })
    return await shell
  }

  /** The helper, started if it is not running; undefined if it cannot be. */
  private started (): ChildProcess | undefined {
    if (this.helper !== undefined) return this.helper
    if (this.broken) return undefined
    let helper: ChildProcess
    try {
      // No inspector, profiler or loader of the worker's own: the helper is kept as small as it can be.
      helper = fork(this.script, [], { execArgv: [], stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'json' })
    } catch {
      return undefined
    }
    this.helper = helper
    let launched = false
    helper.on('message', (message: HelperMessage, handle?: Readable) => {
      launched = true
      this.heard(message, handle)
    })
    helper.once('exit', () => {
      if (this.helper === helper) this.helper = undefined
      if (!launched) {
        // It never answered (it cannot run here): what it was asked for was never spawned, and is spawned here.
        this.broken = true
        for (const [id, pending] of [...this.pending]) {
          this.pending.delete(id)
          launchHere(pending.args, pending.options).then(pending.resolve, pending.reject)
        }
        this.idle()
        return
      }
      for (const id of [...this.pending.keys()]) this.settle(id, new LauncherGoneError('the step launcher ended before the step did'))
    })
    helper.on('error', () => {})
    this.idle()
    return helper
  }

  private heard (message: HelperMessage, handle: Readable | undefined): void {
    const pending = this.pending.get(message.id)
    if (pending === undefined) return
    switch (message.t) {
      case 'launched':
        if (handle !== undefined) pending.shell = { pid: message.pid, start: message.start, stdout: handle }
        break
      case 'stderr':
        if (pending.shell !== undefined && handle !== undefined) {
          pending.resolve({ ...pending.shell, stderr: handle, exited: pending.exit.promise })
        }
        break
      case 'exit':
        this.pending.delete(message.id)
        pending.exit.resolve([message.code, message.signal])
        this.idle()
        break
      case 'error':
        this.settle(message.id, new SpawnError(message.error, message.code))
        break
    }
  }

  /** The request is over without an exit: the launch fails, or the shell's exit is never heard. */
  private settle (id: number, err: Error): void {
    const pending = this.pending.get(id)
    if (pending === undefined) return
    this.pending.delete(id)
    pending.reject(err)
    // Awaited by whoever holds the shell; otherwise nobody asks.
    pending.exit.promise.catch(() => {})
    pending.exit.reject(err)
    this.idle()
  }

  /** A shell is asked for or running: the helper keeps this process alive, as a child process would. */
  private busy (): void {
    const channel = this.helper?.channel as { ref?: () => void } | null | undefined
    this.helper?.ref()
    channel?.ref?.()
  }

  /** Nothing asked for or running: an idle helper does not keep this process alive (a test, a CLI). */
  private idle (): void {
    if (this.pending.size > 0) return
    const channel = this.helper?.channel as { unref?: () => void } | null | undefined
    this.helper?.unref()
    channel?.unref?.()
  }
}

/** The shell spawned by this process itself, when there is no helper. */
function launchHere (args: string[], options: LaunchOptions): Promise<LaunchedShell> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess
    try {
      child = spawn('/bin/sh', args, { cwd: options.cwd, env: options.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    } catch (err: any) {
      reject(new SpawnError(err.message, err.code))
      return
    }
    const exited = new Promise<[number | null, NodeJS.Signals | null]>(resolve => child.once('exit', (code, signal) => { resolve([code, signal]) }))
    child.once('error', (err: NodeJS.ErrnoException) => { reject(new SpawnError(err.message, err.code)) })
    if (child.pid === undefined) return
    resolve({ pid: child.pid, start: undefined, stdout: child.stdout!, stderr: child.stderr!, exited })
  })
}

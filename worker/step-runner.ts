// Running one step: `/bin/sh -c` in the work dir, with stdout and stderr flowing (with backpressure) into the step's
// log, and nothing it started left running when it ends: a stop (cancel, timeout) sends SIGTERM to all of the step's
// processes and SIGKILL after the job's grace, and whatever a step that exits on its own leaves behind gets the same.
// Which processes are the step's is step-processes.ts's business: escaping the process group is not enough. The shell
// is spawned from a small helper process (step-launcher.ts), which hands its pipes over: the output is read here.
import { constants } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { readlink } from 'node:fs/promises'
import type { LogWriter } from './log-writer.ts'
import { StepProcesses } from './step-processes.ts'
import type { StepProcess, StepTracking } from './step-processes.ts'
import { LauncherGoneError, StepLauncher } from './step-launcher.ts'
import { STEP_PIPE_CLOSE_MS, STEP_SWEEP_POLL_MS } from '../net/constants.ts'
import { DEFAULT_KILL_GRACE_S } from '../grid/constants.ts'

export interface StepInit {
  run: string
  cwd: string
  env: Record<string, string | undefined>
  output: Pick<LogWriter, 'write' | 'drain'>
  /** Aborting stops the step: SIGTERM to every process of the step, SIGKILL to those left after `killGraceMs`. */
  signal: AbortSignal
  /** Milliseconds between SIGTERM and SIGKILL. @default DEFAULT_KILL_GRACE_S × 1000 (10 s) */
  killGraceMs?: number
  /** Why the step is being stopped, once `signal` aborted ("cancelled by an API client"), for the log's `grid:` line. */
  stopping?: () => string
  /** Writes one `grid: …` line into the step's log (what was sent to its processes, and when). */
  note?: (line: string) => void
  /** How the step's processes are found besides their tag and session (see step-processes.ts). @default 'cgroup' */
  tracking?: StepTracking
}

/**
 * Runs the step to its end and returns its exit code (128 + signal number when killed by a signal). When it resolves,
 * every process the step started is gone (bar one that left both the step's cgroup and its tag, or one the kernel
 * will not let die).
 */
export async function runStep (init: StepInit): Promise<number> {
  const processes = await StepProcesses.open(init.tracking)
  let sweep: Promise<void> | undefined
  try {
    return await supervise(init, processes, promise => { sweep = promise })
  } finally {
    await sweep
    await processes.close()
  }
}

async function supervise (init: StepInit, processes: StepProcesses, sweeping: (sweep: Promise<void>) => void): Promise<number> {
  const graceMs = init.killGraceMs ?? DEFAULT_KILL_GRACE_S * 1000
  const grace = `${graceMs / 1000} s`
  const note = init.note ?? (() => {})
  const shell = await StepLauncher.shared().launch(processes.shellArgs(init.run), { cwd: init.cwd, env: processes.env(init.env) })
  processes.spawned(shell.pid, shell.start)
  const closed = Promise.all([shell.stdout, shell.stderr].map(async pipe => await new Promise(resolve => {
    if (pipe.destroyed) resolve(undefined)
    else pipe.once('close', resolve)
  })))
  let hasExited = false
  const exited = shell.exited.then(([code, signal]) => {
    hasExited = true
    processes.exited()
    return [code, signal] as const
  })

  /**
   * SIGTERM to every process of the step (its group at once, while the leader lives, so processes the group forks
   * afterwards, a trap's cleanup among them, are not signalled twice), then SIGKILL to any still there after the grace.
   */
  let stop: Promise<void> | undefined
  const terminate = (say: string, known?: StepProcess[]): Promise<void> => {
    stop ??= (async () => {
      // Said first: a trap's output follows the line that explains it.
      note(say)
      // Who is there, and what each runs, before anything is signalled: one signalled between its fork and its exec
      // (a shell's `sleep 30 &`) has the signal taken by the shell trap it inherited, then execs a program that never
      // saw it, and would hold the step for the whole grace (seen under load). Its program changes: it is signalled
      // again, once per program it runs.
      const found = known ?? await processes.list()
      /** Every process sent SIGTERM, with the program it ran when it was. */
      const termed = new Map<number, string | undefined>()
      for (const p of found) termed.set(p.pid, await programOf(p.pid))
      const grouped = processes.signalGroup('SIGTERM')
      processes.signal(found.filter(p => !grouped || p.pgid !== processes.leader), 'SIGTERM')
      const deadline = Date.now() + graceMs
      for (let alive = await processes.list(); alive.length > 0; alive = await processes.list()) {
        // A process orphaned since (`sh -c 'sleep 27'` whose shell died of the SIGTERM) never got one: it gets it now,
        // or it would hold the step for the whole grace. A trap's cleanup still has its living parent: left alone.
        const orphaned = alive.filter(p => !termed.has(p.pid) && !alive.some(q => q.pid === p.ppid))
        const reborn: StepProcess[] = []
        for (const p of alive) {
          if (!termed.has(p.pid)) continue
          const program = await programOf(p.pid)
          if (program !== undefined && program !== termed.get(p.pid)) {
            reborn.push(p)
            termed.set(p.pid, program)
          }
        }
        for (const p of orphaned) termed.set(p.pid, await programOf(p.pid))
        processes.signal([...orphaned, ...reborn], 'SIGTERM')
        const left = deadline - Date.now()
        if (left <= 0) {
          const survivors = await processes.kill()
          note(`still running ${grace} after SIGTERM: sent SIGKILL`)
          if (survivors.length > 0) note(`${count(survivors.length)} of the step would not die (pid ${survivors.join(', ')})`)
          return
        }
        await sleep(Math.min(STEP_SWEEP_POLL_MS, left))
      }
    })()
    sweeping(stop)
    return stop
  }
  const onAbort = (): void => {
    // A step that has ended is being swept already; a stop now would add nothing but a confusing line.
    if (hasExited) return
    void terminate(`${init.stopping?.() ?? 'stopped'}: sent SIGTERM to the step's processes; SIGKILL follows in ${grace}`)
  }
  if (init.signal.aborted) onAbort()
  else init.signal.addEventListener('abort', onAbort, { once: true })

  let paused = false
  for (const pipe of [shell.stdout, shell.stderr]) {
    pipe.on('data', (chunk: Buffer) => {
      if (!init.output.write(chunk)) {
        paused = true
        shell.stdout.pause()
        shell.stderr.pause()
        const resume = (): void => { paused = false; shell.stdout.resume(); shell.stderr.resume() }
        init.output.drain().then(resume, resume)
      }
    })
  }
  try {
    let code: number | null
    let signal: NodeJS.Signals | null
    try {
      [code, signal] = await exited
    } catch (err) {
      if (!(err instanceof LauncherGoneError)) throw err
      // How the step ended is unknown: whatever of it still runs is ended all the same, and the step fails saying why.
      await terminate(`${err.message}: sent SIGTERM to the step's processes; SIGKILL follows in ${grace}`)
      throw err
    }
    if (stop === undefined) {
      // Whatever the step left running (background jobs, daemons it started) goes too: a build leaves nothing behind.
      const left = await processes.list()
      if (left.length > 0) {
        void terminate(`the step exited and left ${count(left.length)} running: sent SIGTERM; SIGKILL follows in ${grace}`, left)
      }
    }
    await stop
    // Output still in the pipes is read to the end; a process out of reach that holds them open cannot keep the
    // step from finishing.
    await new Promise<void>(resolve => {
      let timer: NodeJS.Timeout | undefined
      const wait = (): void => {
        timer = setTimeout(() => {
          if (paused) return wait()
          shell.stdout.destroy()
          shell.stderr.destroy()
          resolve()
        }, STEP_PIPE_CLOSE_MS)
      }
      wait()
      closed.then(() => { clearTimeout(timer); resolve() }, () => {})
    })
    return code ?? 128 + (signal !== null ? constants.signals[signal] : 0)
  } finally {
    init.signal.removeEventListener('abort', onAbort)
  }
}

function count (n: number): string {
  return n === 1 ? '1 process' : `${n} processes`
}

/** The program a process runs now (its /proc/PID/exe target), or undefined once it is gone. */
async function programOf (pid: number): Promise<string | undefined> {
  return await readlink(`/proc/${pid}/exe`).catch(() => undefined)
}

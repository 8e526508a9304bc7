// Running one step: `/bin/sh -c` in the work dir, in its own process group so cancel and timeout kill
// everything it started, with stdout and stderr flowing (with backpressure) into the step's log.
import { spawn } from 'node:child_process'
import type { LogWriter } from './log-writer.ts'
import { KILL_GRACE_MS } from '../constants.ts'
import { constants } from 'node:os'

export interface StepInit {
  run: string
  cwd: string
  env: Record<string, string | undefined>
  output: Pick<LogWriter, 'write' | 'drain'>
  /** Aborting kills the step's process group (TERM, then KILL after `killGraceMs`). */
  signal: AbortSignal
  /** Milliseconds between SIGTERM and SIGKILL. @default KILL_GRACE_MS */
  killGraceMs?: number
  /** Why the step is being stopped, once `signal` aborted ("cancelled by an API client"), for the log's `grid:` line. */
  stopping?: () => string
  /** Writes one `grid: …` line into the step's log (what was sent to its processes, and when). */
  note?: (line: string) => void
}

/** Runs the step to its end and returns its exit code (128 + signal number when killed by a signal). */
export async function runStep (init: StepInit): Promise<number> {
  const child = spawn('/bin/sh', ['-c', init.run], {
    cwd: init.cwd,
    env: init.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const killGroup = (signal: NodeJS.Signals): void => {
    try { if (child.pid !== undefined) process.kill(-child.pid, signal) } catch {}
  }
  let graceTimer: NodeJS.Timeout | undefined
  const onAbort = (): void => {
    killGroup('SIGTERM')
    graceTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS)
  }
  if (init.signal.aborted) onAbort()
  else init.signal.addEventListener('abort', onAbort, { once: true })

  for (const pipe of [child.stdout, child.stderr]) {
    pipe.on('data', (chunk: Buffer) => {
      if (!init.output.write(chunk)) {
        child.stdout.pause()
        child.stderr.pause()
        init.output.drain().then(() => { child.stdout.resume(); child.stderr.resume() }, () => {})
      }
    })
  }
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (code, signal) => {
        // Whatever the step left running in the background goes with it: a build leaves nothing behind.
        killGroup('SIGKILL')
        resolve([code, signal])
      })
    })
    // Output still in the pipes is read to the end, but a process that escaped the group (setsid) and
    // holds them open cannot keep the step from finishing.
    await new Promise<void>(resolve => {
      const give = setTimeout(() => { child.stdout.destroy(); child.stderr.destroy(); resolve() }, KILL_GRACE_MS)
      const done = (): void => { clearTimeout(give); resolve() }
      if (child.stdout.closed && child.stderr.closed) done()
      else child.once('close', done)
    })
    return code ?? 128 + (signal !== null ? constants.signals[signal] : 0)
  } finally {
    clearTimeout(graceTimer)
    init.signal.removeEventListener('abort', onAbort)
  }
}

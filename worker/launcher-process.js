// The step launcher's own process (worker/step-launcher.ts starts it): it spawns steps' shells for the worker and
// hands each one's output pipes straight over, so the worker reads them itself. It exists because fork() copies
// the page tables of the process that calls it: from this small process a spawn costs about a third of what it
// costs from a worker. Plain JavaScript on purpose: loading the TypeScript stripper would make it as large.
// It reads nothing of a step's output, and ends when the worker does (its IPC channel closes).
import { spawn } from 'node:child_process'
import { closeSync, openSync, readSync } from 'node:fs'

const stat = Buffer.alloc(1024)

/** The process's start time in clock ticks since boot (/proc/PID/stat field 22), or undefined. */
function startOf (pid) {
  try {
    const fd = openSync(`/proc/${pid}/stat`, 'r')
    try {
      const text = stat.toString('latin1', 0, readSync(fd, stat, 0, stat.length, 0))
      const start = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19])
      return Number.isFinite(start) ? start : undefined
    } finally {
      closeSync(fd)
    }
  } catch {
    return undefined
  }
}

process.on('message', request => {
  if (request?.t !== 'launch') return
  const { id } = request
  let child
  try {
    child = spawn('/bin/sh', request.args, { cwd: request.cwd, env: request.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    process.send({ t: 'error', id, error: err.message, code: err.code })
    return
  }
  child.once('error', err => { process.send({ t: 'error', id, error: err.message, code: err.code }) })
  if (child.pid === undefined) return
  // Read now, in this turn: the shell cannot have been reaped before the event loop turns.
  const start = startOf(child.pid)
  // Node starts reading a child's pipes as soon as it makes them; stopped before this turn ends, no byte of the
  // step's output is ever read here, and whatever it writes waits in the pipe for the worker.
  child.stdout._handle.readStop()
  child.stderr._handle.readStop()
  process.send({ t: 'launched', id, pid: child.pid, start }, child.stdout)
  process.send({ t: 'stderr', id }, child.stderr)
  child.once('exit', (code, signal) => { process.send({ t: 'exit', id, code, signal }) })
})

process.on('disconnect', () => { process.exit(0) })

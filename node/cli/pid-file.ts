// --pid-file of the long-running commands (up, coordinator, store, worker): the PID of the process that runs the
// node, for stopping one started in the background. `npx grid worker … &` leaves `$!` naming npm, not the worker;
// `kill $(cat FILE)` reaches the node itself (SIGTERM: a clean stop, or a worker's drain).
//
// The file is written once the node is ready (a worker or store has joined the grid; up and coordinator print
// `join:`), so a script may also wait for it to appear; it is removed when the process exits. A file naming a
// process that is running is refused before anything starts; one left by a process that is gone is replaced.
import { readFileSync, unlinkSync } from 'node:fs'
import { access, constants, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Option } from 'commander'
import type { GridCommand } from './usage.ts'

/** The option itself. */
export const pidFileOption = (): Option => new Option('--pid-file <file>', 'write this process\'s PID to FILE once the node is ready, and remove it on exit (refused if FILE names a running process)')

/** The PID a pid file holds, if it holds one. */
async function pidIn (file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '')
  return /^\d+\s*$/.test(text) ? Number(text) : undefined
}

/** Whether `pid` is a process that runs (a zombie does not: it has exited, only its parent has not reaped it). */
async function running (pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0)
  } catch (err: any) {
    if (err.code !== 'EPERM') return false
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  return stat === undefined || !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
}

/** Adds --pid-file to a long-running command, and its check: a file naming a running process is refused. */
export function withPidFile (command: GridCommand): GridCommand {
  return command.addOption(pidFileOption()).check(async cmd => {
    const file: string | undefined = cmd.opts().pidFile
    if (file === undefined) return
    const pid = await pidIn(file)
    if (pid !== undefined && pid !== process.pid && await running(pid)) {
      cmd.problem(`--pid-file ${file}: process ${pid} is running and wrote it (stop it first, or give another file)`)
    } else if (await access(dirname(file), constants.W_OK).then(() => false, () => true)) {
      cmd.problem(`--pid-file ${file}: cannot write in ${dirname(file)}`)
    }
  })
}

/**
 * Write this process's PID to `file` (once the node is ready), replacing it whole, and remove it when the process
 * exits, however it exits, unless another process has written its own PID there since.
 */
export async function writePidFile (file: string | undefined): Promise<void> {
  if (file === undefined) return
  const mine = `${process.pid}\n`
  await writeFile(`${file}.${process.pid}.tmp`, mine)
  await rename(`${file}.${process.pid}.tmp`, file)
  process.on('exit', () => {
    try {
      if (readFileSync(file, 'utf8') === mine) unlinkSync(file)
    } catch {}
  })
}

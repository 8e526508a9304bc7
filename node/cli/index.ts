// The `grid` command: the program and its entry point. Each command lives in its own module beside this one; here
// they are added in the order `grid --help` lists them. Every role command takes --data and --listen; joining
// commands take --join. Any bad argument, unreachable grid or bad input ends with one line on stderr and a
// non-zero exit; every problem of a command line is in that one line (node/cli/usage.ts).
import { CommanderError } from 'commander'
import { isGridError } from '../../net/errors.ts'
import { admissionCommands } from './admission.ts'
import { coordinatorCommand } from './coordinator.ts'
import { getCommand } from './get.ts'
import { putCommand } from './put.ts'
import { repoCommands } from './repo.ts'
import { secretCommands } from './secret.ts'
import { log } from './report.ts'
import { storeCommand } from './store.ts'
import { runCommand } from './run.ts'
import { submitCommand } from './submit.ts'
import { tailCommand } from './tail.ts'
import { upCommand } from './up.ts'
import { GridCommand, UsageProblems, oneLine } from './usage.ts'
import { workerCommand } from './worker.ts'

/**
 * The whole `grid` program. Commands are made with `grid.command()`, so each is a GridCommand and inherits its error
 * output (one line, with commander's suggestion: `grid: unknown command 'sumbit' (did you mean submit?)`) and
 * exitOverride.
 */
export function program (): GridCommand {
  const grid = new GridCommand('grid')
    .description('nameless-grid: a peer-to-peer build grid. Workers have no names; logs and artifacts never pass through the coordinator.')
    .configureOutput({ outputError: (text, write) => write(`grid: ${oneLine(text)}\n`) })
    .showSuggestionAfterError()
    .exitOverride()
  upCommand(grid)
  coordinatorCommand(grid)
  storeCommand(grid)
  workerCommand(grid)
  submitCommand(grid)
  runCommand(grid)
  tailCommand(grid)
  putCommand(grid)
  getCommand(grid)
  admissionCommands(grid)
  repoCommands(grid)
  secretCommands(grid)
  return grid
}

/** Run the CLI; every failure becomes one line on stderr and a non-zero exit code. */
export async function main (argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv, { from: 'user' })
  } catch (err: any) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2
      return
    }
    // Expected failures (net/errors.ts) are one line; anything else is a bug, and its stack helps fix it.
    if (isGridError(err) || err?.code === 'EACCES' || err?.code === 'EADDRINUSE') log(err.message)
    else log(`unexpected error: ${err?.stack ?? err}`)
    process.exitCode = err instanceof UsageProblems ? err.exitCode : 1
  }
}

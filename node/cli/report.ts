// How the CLI speaks to the person running it: progress and warnings as `grid: …` lines on stderr (stdout is kept
// for what a script reads: ids, CIDs, content, logs), and the error class for failures they caused or can fix.
import { GridError } from '../../net/errors.ts'

/** A failure the user caused or can fix: printed as one line, no stack. */
export class UsageError extends GridError {
  name = 'UsageError'
}

/** One line on stderr, prefixed like every other line the CLI writes there. */
export const log = (line: string): void => { process.stderr.write(`grid: ${line}\n`) }

// `grid secret set|ls|rm`: the values jobs name in `"secrets"`. Like `grid repo`, these are requests to the
// coordinator's HTTP API with its token (DATA/web-url, DATA/api-token), so an operator needs the data dir, not a
// place in the grid. A value is read from stdin only, never from the command line, where `ps` and shell history
// would show it; and never from a terminal, where it would be echoed on the screen.
import type { GridCommand } from './usage.ts'
import { collect, dataOption, operatorListenOption } from './options.ts'
import { UsageError, log } from './report.ts'
import { operatorRequest } from './operator.ts'
import { MAX_SECRET_VALUE_BYTES, MIN_SECRET_CHARS, checkSecretName } from '../../coordinator/secrets.ts'
import type { SecretRecord } from '../../coordinator/secrets.ts'
import { isGridError } from '../../net/errors.ts'

/** What `grid secret set` reads the value from; process.stdin unless a test gives another. */
export interface SecretInput extends AsyncIterable<Uint8Array | string> {
  /** True when it is a terminal: refused, since typing would echo the value. */
  isTTY?: boolean
}

export interface SecretCommandsInit {
  /** @default process.stdin */
  stdin?: SecretInput
}


/**
 * All of `input`, without ONE trailing line end (`echo VALUE |` and files saved by an editor add one; a PEM key
 * keeps its inner lines). Refuses a terminal, and stops reading past what the grid would take.
 */
export async function readSecretValue (input: SecretInput): Promise<string> {
  if (input.isTTY === true) throw new UsageError('the value is read from stdin, not typed: pipe or redirect it, such as grid secret set NAME < FILE')
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of input) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk)
    size += bytes.length
    // One line end more than the grid takes may still be stripped; past that, say so without reading on.
    if (size > MAX_SECRET_VALUE_BYTES + 2) throw new UsageError(`the value on stdin is more than ${MAX_SECRET_VALUE_BYTES} bytes`)
    chunks.push(bytes)
  }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks))
  } catch {
    // Decoding leniently would store U+FFFD in place of the bytes: a different secret than the one given.
    throw new UsageError('the value on stdin is not UTF-8 text (it becomes an environment variable): encode a binary value first, such as with base64')
  }
  const value = text.replace(/\r?\n$/, '')
  if (value === '') throw new UsageError(`stdin was empty: give the value on stdin, such as printf %s VALUE | grid secret set NAME (at least ${MIN_SECRET_CHARS} characters)`)
  return value
}

/** A check of the NAME argument, noted with the command's other usage problems before stdin is read. */
function nameChecked (command: GridCommand, args: unknown[]): void {
  try {
    checkSecretName(args[0])
  } catch (err) {
    if (!isGridError(err)) throw err
    command.problem(err.message)
  }
}

/** A scope list as `grid secret ls` shows it: `any`, or the items joined with commas. */
const shownList = (items: string[] | null): string => items === null ? 'any' : items.join(',')

/** One line of `grid secret ls`: name, repositories, branches, when it was last set. Never a value. */
export function secretLine (secret: SecretRecord): string {
  return [secret.name, `repos ${shownList(secret.repos)}`, `branches ${shownList(secret.branches)}`, `updated ${secret.updated}`].join('\t')
}

/** Adds `grid secret` (set, ls, rm) to `grid`. */
export function secretCommands (grid: GridCommand, init: SecretCommandsInit = {}): void {
  const secret = grid.command('secret')
    .description('the secrets jobs name in "secrets", given to trusted workers only (run beside the coordinator: uses DATA/web-url and DATA/api-token)')

  secret.command('set')
    .description(`set a secret (or replace its value and scope); the value is read from stdin, one trailing newline dropped: printf %s VALUE | grid secret set NAME, or grid secret set NAME < FILE (at least ${MIN_SECRET_CHARS} characters, each line too)`)
    .argument('<name>', 'the environment variable it becomes in the steps of jobs that name it: A-Z, 0-9 and _, such as DEPLOY_TOKEN')
    // Taken so that a value given as an argument is refused without being repeated back (commander would quote it).
    .allowExcessArguments(true)
    .option('--repo <id>', 'only builds of this registered repository get it, repeatable (grid repo ls shows ids; default: any build)', collect)
    .option('--branch <glob>', 'only builds of a matching branch get it (such as main or release/*), repeatable (default: any branch)', collect)
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .check((command, args) => {
      nameChecked(command, args)
      if (command.args.length > 1) command.problem('the value is read from stdin, never from the command line (ps and shell history would show it): printf %s VALUE | grid secret set NAME')
    })
    .action(async (name: string, opts) => {
      const value = await readSecretValue(init.stdin ?? process.stdin)
      const body = {
        value,
        ...(opts.repo !== undefined && opts.repo.length > 0 ? { repos: opts.repo } : {}),
        ...(opts.branch !== undefined && opts.branch.length > 0 ? { branches: opts.branch } : {})
      }
      const set = await operatorRequest(opts.data, 'PUT', `/api/secrets/${encodeURIComponent(name)}`, body) as SecretRecord
      log(`secret ${set.name} set: ${secretLine(set).split('\t').slice(1, 3).join(', ')}`)
    })

  secret.command('ls')
    .description('list the secrets: names, scopes and when each was set (values are never shown)')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .action(async (opts) => {
      const secrets = await operatorRequest(opts.data, 'GET', '/api/secrets') as SecretRecord[]
      for (const s of secrets) process.stdout.write(`${secretLine(s)}\n`)
      if (secrets.length === 0) log('no secret is set (grid secret set NAME < FILE)')
    })

  secret.command('rm')
    .description('remove a secret: builds that name it fail from now on')
    .argument('<name>', 'its name (grid secret ls lists them)')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .check(nameChecked)
    .action(async (name: string, opts) => {
      const removed = await operatorRequest(opts.data, 'DELETE', `/api/secrets/${encodeURIComponent(name)}`) as SecretRecord
      log(`removed secret ${removed.name}`)
    })
}

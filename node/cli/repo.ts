// `grid repo add|ls|rm`: registering the repositories whose pushes start pipelines. Like `grid deny`, these are
// writes to the coordinator's HTTP API with its token (DATA/web-url, DATA/api-token), so an operator needs the
// data dir, not a place in the grid. Secrets come from files (or stdin with `-`), never from the command line,
// where `ps` and shell history would show them.
import { readFile } from 'node:fs/promises'
import { InvalidArgumentError, Option } from 'commander'
import type { GridCommand } from './usage.ts'
import { collect, dataOption, operatorListenOption } from './options.ts'
import { operatorRequest, operatorWebUrl } from './operator.ts'
import { UsageError, log } from './report.ts'
import { DEFAULT_BRANCHES, MAX_POLL_S, MIN_POLL_S, STATUS_KINDS } from '../../coordinator/repos.ts'
import type { RepoRecord } from '../../coordinator/repos.ts'



/** A secret from a file (`-` for stdin), without the line end an editor or `echo` adds. */
async function secretFrom (file: string, flag: string): Promise<string> {
  let text: string
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8')
  } catch (err: any) {
    throw new UsageError(`${flag} ${file}: cannot read it (${err.code ?? err.message})`)
  }
  const secret = text.replace(/\r?\n$/, '')
  if (secret === '') throw new UsageError(`${flag} ${file} is empty`)
  if (/[\r\n]/.test(secret)) throw new UsageError(`${flag} ${file} must hold the secret alone, on one line`)
  return secret
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function pollSeconds (text: string): number {
  const n = Number(text)
  if (!/^\d+$/.test(text) || n < MIN_POLL_S || n > MAX_POLL_S) throw new InvalidArgumentError(`expected seconds from ${MIN_POLL_S} to ${MAX_POLL_S}`)
  return n
}

/** One line of `grid repo ls`: id, URL, then what starts it and where its statuses go. */
export function repoLine (repo: RepoRecord): string {
  const starts = [repo.webhooks ? 'webhooks' : undefined, repo.poll !== undefined ? `polls every ${repo.poll} s` : undefined].filter(Boolean).join(', ')
  return [repo.id, repo.url, `branches ${repo.branches.join(',')}`, starts, repo.status !== undefined ? `statuses to ${repo.status.kind} ${repo.status.url}` : undefined]
    .filter(Boolean).join('\t')
}

/** Adds `grid repo` (add, ls, rm) to `grid`. */
export function repoCommands (grid: GridCommand): void {
  const repo = grid.command('repo')
    .description('register the repositories whose pushes start pipelines (run beside the coordinator: uses DATA/web-url and DATA/api-token)')

  repo.command('add')
    .description('register a repository; prints its id, then its webhook URL')
    .argument('<url>', 'where the grid fetches from: https://, ssh://, git@HOST:PATH, file:// or an absolute path (credentials belong in the git config, not the URL)')
    .option('--branch <glob>', `a branch (or glob, such as release/*) whose pushes start pipelines, repeatable (default: ${DEFAULT_BRANCHES.join(', ')})`, collect)
    .addOption(new Option('--poll <seconds>', `also poll the repository every this many seconds (${MIN_POLL_S} to ${MAX_POLL_S})`).argParser(pollSeconds))
    .option('--hook-secret-file <file>', 'the webhook secret, from this file (- for stdin); without it webhooks are refused')
    .addOption(new Option('--status <kind>', 'post commit statuses to this forge\'s API').choices(STATUS_KINDS))
    .option('--status-url <api-base>', 'the forge\'s API base, such as https://api.github.com or https://HOST/api/v1 (Gitea, Forgejo)')
    .option('--status-token-file <file>', 'the token commit statuses are posted with, from this file (- for stdin)')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .check(command => {
      const opts = command.opts()
      if (opts.status !== undefined && opts.statusTokenFile === undefined) command.problem('--status needs --status-token-file FILE')
      if (opts.status === undefined && (opts.statusUrl !== undefined || opts.statusTokenFile !== undefined)) command.problem('--status-url and --status-token-file go with --status github|gitea')
      if (opts.status === 'gitea' && opts.statusUrl === undefined) command.problem('--status gitea needs --status-url https://HOST/api/v1')
      if (opts.hookSecretFile === '-' && opts.statusTokenFile === '-') command.problem('only one of --hook-secret-file and --status-token-file can read stdin')
      if (opts.hookSecretFile === undefined && opts.poll === undefined) command.problem('give --hook-secret-file FILE (webhooks) or --poll SECONDS: without either nothing starts its pipelines')
    })
    .action(async (url: string, opts) => {
      const body = {
        url,
        ...(opts.branch !== undefined && opts.branch.length > 0 ? { branches: opts.branch } : {}),
        ...(opts.poll !== undefined ? { poll: opts.poll } : {}),
        ...(opts.hookSecretFile !== undefined ? { hookSecret: await secretFrom(opts.hookSecretFile, '--hook-secret-file') } : {}),
        ...(opts.status !== undefined
          ? { status: { kind: opts.status, ...(opts.statusUrl !== undefined ? { url: opts.statusUrl } : {}), token: await secretFrom(opts.statusTokenFile, '--status-token-file') } }
          : {})
      }
      const added = await operatorRequest(opts.data, 'POST', '/api/repos', body) as RepoRecord
      // A repository without a hook secret refuses every webhook: no URL to give a forge then.
      process.stdout.write(`${added.id}\nhook: ${added.webhooks ? `${await operatorWebUrl(opts.data)}${added.hook}` : 'none (no --hook-secret-file: webhooks are refused; polling starts its pipelines)'}\n`)
      log(`registered ${added.url}: ${repoLine(added).split('\t').slice(2).join('; ')}`)
    })

  repo.command('ls')
    .description('list the registered repositories (secrets and tokens are never shown)')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .action(async (opts) => {
      const repos = await operatorRequest(opts.data, 'GET', '/api/repos') as RepoRecord[]
      for (const r of repos) process.stdout.write(`${repoLine(r)}\n`)
      if (repos.length === 0) log('no repository is registered (grid repo add URL)')
    })

  repo.command('rm')
    .description('remove a registered repository: its webhooks are refused and it is no longer polled')
    .argument('<id>', 'what grid repo add printed (grid repo ls lists them)')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .action(async (id: string, opts) => {
      const removed = await operatorRequest(opts.data, 'DELETE', `/api/repos/${encodeURIComponent(id)}`) as RepoRecord
      log(`removed repository ${removed.id} (${removed.url})`)
    })
}

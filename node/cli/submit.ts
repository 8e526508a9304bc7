// `grid submit`: queue a build, from a job file or a one-step --run, with --src sent to the stores first; with
// --follow it streams the log and exits with how the build ended. A problem in what came from a flag names that
// flag, as the user typed it, not the job key it became.
import { readFile, stat } from 'node:fs/promises'
import type { GridCommand } from './usage.ts'
import { readJoinCode } from '../../net/join-code.ts'
import { InvalidJobError, parseJob } from '../../grid/job.ts'
import { ContentChangedError } from '../../grid/content.ts'
import { putReadable } from '../../client/content/place.ts'
import { ask, expectBuild, gridPlacement } from './ask.ts'
import { clientHost, clientOptions } from './client-host.ts'
import { tarDirectory } from './directory-tar.ts'
import { followBuild } from './follow-build.ts'
import { capabilities, capability, collect } from './options.ts'
import { UsageError, log } from './report.ts'

/** The flags that shape the job. */
interface JobFlags {
  run?: string
  require: string[]
  artifact: string[]
}

/**
 * The job a file or --run describes, with --require and --artifact merged in, checked: each of its problems is
 * noted (`problem`), naming the flag where the value came from one, as the user typed it. Undefined if it has any.
 */
async function jobFrom (file: string | undefined, opts: JobFlags, problem: (text: string) => void): Promise<unknown> {
  /** Where in the job each flag's value went: a problem there names the flag, as the user typed it. */
  const fromFlags = new Map<string, string>()
  let job: unknown
  if (file !== undefined) {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err: any) {
      problem(`cannot read ${file}: ${err.code ?? err.message}`)
      return undefined
    }
    try {
      job = JSON.parse(text)
    } catch (err: any) {
      problem(`${file} is not JSON: ${err.message}`)
      return undefined
    }
    if (opts.require.length > 0 && typeof job === 'object' && job !== null) {
      const j = job as { requires?: Record<string, string> }
      j.requires = { ...j.requires, ...capabilities(opts.require, '--require') }
    }
  } else {
    job = { steps: [{ name: 'run', run: opts.run }], requires: capabilities(opts.require, '--require') }
    fromFlags.set('steps.0.run', '--run')
  }
  for (const text of opts.require) fromFlags.set(`requires.${text.slice(0, text.indexOf('='))}`, `--require ${text}`)
  if (opts.artifact.length > 0 && typeof job === 'object' && job !== null) {
    const j = job as { artifacts?: string[] }
    const before = Array.isArray(j.artifacts) ? j.artifacts.length : 0
    opts.artifact.forEach((glob, i) => fromFlags.set(`artifacts.${before + i}`, `--artifact ${glob}`))
    j.artifacts = [...(j.artifacts ?? []), ...opts.artifact]
  }
  try {
    parseJob(job)
  } catch (err) {
    if (!(err instanceof InvalidJobError)) throw err
    // parseJob names the job's key ("artifacts.0: …"); a user who typed --artifact reads that flag instead.
    for (const issue of err.issues) problem(`${fromFlags.get(issue.where) ?? issue.where}: ${issue.message}`)
    return undefined
  }
  return job
}

/** Adds `grid submit` to `grid`. */
export function submitCommand (grid: GridCommand): GridCommand {
  /** The job the command line describes, once its check found no problem in it. */
  let job: unknown
  return clientOptions(grid.command('submit')
    .description('queue a build from a job file or a command; prints the build id (or, with --follow, its log)')
    .argument('[job.json]', 'a job file (see docs/job.md); or use --run')
    .option('--run <command>', 'a one-step job running this shell command')
    .option('--require <key=value>', 'a capability the worker must have (value * for any), repeatable', capability('--require'), [])
    .option('--src <dir>', 'send this directory (as a tar) and unpack it in the work dir first')
    .option('--artifact <glob>', 'keep files matching this glob (relative to the work dir) after the steps, repeatable', collect, [])
    .option('--follow', 'stream the build\'s log; exit 0 if it succeeded, 1 if not')
    .check(async (command, [file]) => {
      const opts = command.opts()
      const problem = (text: string): void => { command.problem(text) }
      if (typeof file === 'string' && opts.run !== undefined) problem(`${file} and --run both describe the job: give one of them`)
      else if (file === undefined && opts.run === undefined) problem('nothing to build: give a job file (see docs/job.md) or --run COMMAND')
      else if (opts.run === '') {
        if (!command.hasProblem('--run')) problem('--run needs a command (it was empty)')
      } else job = await jobFrom(file as string | undefined, opts as JobFlags, problem)
      if (opts.src !== undefined && !(await stat(opts.src).catch(() => undefined))?.isDirectory()) problem(`--src ${opts.src} is not a directory`)
    })
    .action(async (_file: string | undefined, opts) => {
      const code = await readJoinCode(opts.join)
      const host = await clientHost(code)
      try {
        if (opts.src !== undefined) {
          const placement = await gridPlacement(host, code)
          if (placement.stores.length === 0) throw new UsageError('the grid has no store to send --src to')
          // Where placement depends on the CID the tar is made twice (the same bytes both times): named, then sent.
          const put = await putReadable({ host, ...placement, warn: log }, () => tarDirectory(opts.src)).catch((err: Error) => {
            throw err instanceof ContentChangedError ? new ContentChangedError(`--src ${opts.src} changed while it was being sent: ${err.message}`) : err
          })
          ;(job as { src?: string }).src = put.cid
          log(`src ${opts.src}: ${put.cid} (${put.sentBytes} bytes sent)`)
        }
        const build = expectBuild(await ask(host, code, { t: 'submit', job }))
        if (opts.follow !== true) {
          process.stdout.write(`${build.id}\n`)
          return
        }
        log(`build ${build.id} queued`)
        const done = await followBuild(host, code, build.id, 0)
        process.exitCode = done.status === 'succeeded' ? 0 : 1
      } finally {
        await host.stop()
      }
    }))
}

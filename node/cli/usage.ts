// How the `grid` command reads a command line: every problem in it is found before anything runs and said at once,
// in one line (`grid: unknown option '--folow' (did you mean --follow?); --require gpu: expected KEY=VALUE…`),
// instead of one per try. Commander parses; a GridCommand collects what commander would stop at (an unknown
// option, a bad or missing value, a missing or extra argument), and each command adds the checks only it can make
// (`check`), which run before its action.
import { Command, InvalidArgumentError } from 'commander'
import type { Option, ParseOptionsResult } from 'commander'
import { isGridError } from '../../net/errors.ts'
import { UsageError } from './report.ts'

/** Every usage problem of one command line, one line: a non-zero exit (2) before anything started. */
export class UsageProblems extends UsageError {
  name = 'UsageProblems'
  readonly exitCode = 2
}

/** What commander reports, in the CLI's words: one line, no `error: ` prefix, its suggestion in lower case. */
export function oneLine (text: string): string {
  return text.trim().replace(/^error: /, '').split('\n').map(l => l.trim()).filter(Boolean).join(' ').replace(/\(Did you mean /g, '(did you mean ')
}

/** A value as a problem quotes it: long ones are cut, so the line stays one line on a screen. */
function shown (value: string): string {
  return value.length > 40 ? `${value.slice(0, 40)}…` : value
}

/** Commander's errors a command line can hold several of: collected, not thrown. */
const COLLECTED = new Set(['commander.unknownOption', 'commander.missingMandatoryOptionValue', 'commander.optionMissingArgument', 'commander.excessArguments', 'commander.missingArgument'])

type Check = (command: GridCommand, args: unknown[]) => void | Promise<void>

/** A `grid` command (every subcommand is one too) that says every problem of its command line at once. */
export class GridCommand extends Command {
  /** The problems found so far, each a phrase naming what the user gave ("--slots 0: expected …"). */
  readonly problems: string[] = []
  private readonly checks: Check[] = []

  override createCommand (name?: string): GridCommand {
    return new GridCommand(name)
  }

  /** Note one problem; the command stops before its action with all of them. */
  problem (text: string): void {
    this.problems.push(text)
  }

  /** Whether a problem with `flag` was noted already (so a check does not say it again in other words). */
  hasProblem (flag: string): boolean {
    return this.problems.some(p => p.startsWith(`${flag} `) || p.includes(`'${flag}'`))
  }

  /** A check of the whole command line, run before the action; it notes problems, and may fill in options. */
  check (fn: Check): this {
    this.checks.push(fn)
    return this
  }

  override action (fn: (...args: any[]) => void | Promise<void>): this {
    return super.action(async (...args: any[]) => {
      for (const check of this.checks) await check(this, args.slice(0, this.registeredArguments.length))
      if (this.problems.length > 0) throw new UsageProblems(this.problems.join('; '))
      await fn(...args)
    })
  }

  /** A bad value is a problem naming the flag and the value as given; the option keeps its earlier value. */
  override addOption (option: Option): this {
    const parse = option.parseArg
    if (parse !== undefined) {
      const flag = option.long ?? option.short ?? option.flags
      option.parseArg = <T>(value: string, previous: T): T => {
        if (value === undefined) return previous
        try {
          return parse(value, previous)
        } catch (err) {
          if (err instanceof InvalidArgumentError) this.problem(`${flag} ${shown(value)}: ${err.message}`)
          else if (isGridError(err)) this.problem(err.message)
          else throw err
          return previous
        }
      }
    }
    return super.addOption(option)
  }

  /**
   * Every unknown option is a problem (commander stops at the first), with the option it most likely meant. The
   * word after one is taken as its value (`--requir gpu=1`, `--slots 3`), unless the option it most likely meant
   * takes none: then it is an argument (`--folow job.json`).
   */
  override parseOptions (argv: string[]): ParseOptionsResult {
    const before = this.problems.length
    const parsed = super.parseOptions(argv)
    if (this.commands.length > 0) return parsed
    const operands = [...parsed.operands]
    const unknown: string[] = []
    const found: string[] = []
    for (let i = 0; i < parsed.unknown.length; i++) {
      const arg = parsed.unknown[i]
      if (arg === '--') {
        operands.push(...parsed.unknown.slice(i + 1))
        break
      }
      if (arg.length < 2 || !arg.startsWith('-')) {
        operands.push(arg)
        continue
      }
      // Help is commander's to answer, from the unknown list.
      if (arg === '-h' || arg === '--help') {
        unknown.push(arg)
        continue
      }
      const flag = arg.startsWith('--') ? arg.split('=')[0] : arg
      // Commander's own wording and suggestion (showSuggestionAfterError), noted by error() below.
      const said = this.problems.length
      ;(this as unknown as { unknownOption: (flag: string) => void }).unknownOption(flag)
      const text = this.problems.splice(said)[0] ?? `unknown option '${flag}'`
      found.push(text)
      const meant = /\(did you mean (--[\w-]+)\?\)$/.exec(text)?.[1]
      const takesValue = meant === undefined || this.options.find(o => o.long === meant)?.isBoolean() !== true
      const next = parsed.unknown[i + 1]
      if (takesValue && !arg.includes('=') && next !== undefined && !next.startsWith('-')) i++
    }
    this.problems.splice(before, 0, ...found)
    return { operands, unknown }
  }

  /** Commander's errors a command line can have several of are noted; the rest stop parsing as they do. */
  override error (message: string, errorOptions?: { code?: string, exitCode?: number }): never {
    if (this.commands.length === 0 && COLLECTED.has(errorOptions?.code ?? '')) {
      this.problem(this.inWords(message, errorOptions?.code))
      return undefined as never
    }
    return super.error(message, errorOptions)
  }

  private inWords (message: string, code: string | undefined): string {
    const option = /option '([^']*)'/.exec(message)?.[1]
    const flag = option?.split(/[ ,]+/).find(f => f.startsWith('--')) ?? option
    if (code === 'commander.optionMissingArgument' && flag !== undefined) return `${flag} needs a value`
    // `--join <code-or-file>` is asked for as the client commands ask for it: `give --join CODE_OR_FILE`.
    if (code === 'commander.missingMandatoryOptionValue' && option !== undefined) return `give ${option.replace(/<([^>]+)>/g, (_, v: string) => v.toUpperCase().replace(/-/g, '_'))}`
    if (code === 'commander.excessArguments') {
      const expected = this.registeredArguments.length
      const extra = this.args.slice(expected).map(a => `'${shown(a)}'`).join(' ')
      return `unexpected argument${this.args.length - expected === 1 ? '' : 's'} ${extra} (grid ${this.name()} takes ${expected === 0 ? 'none' : expected})`
    }
    return oneLine(message)
  }
}

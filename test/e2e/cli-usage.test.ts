// What a new user's first mistakes get from the `grid` command: one line on stderr naming every problem of the
// command line at once, each with the command or flag (or job key) it most likely meant, and exit code 2, before
// anything starts. Each test checks the exact line. No grid runs here: a usage problem never reaches one.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gridRun, oneLineError, removeDir, tempDir } from '../helpers.ts'
import { MAX_SLOTS } from '../../grid/constants.ts'

interface Ctx {
  dir: string
}

const usage = suite<Ctx>('grid command: usage problems')

usage.before(async ctx => {
  ctx.dir = await tempDir('cli-usage')
})

usage.after(async ctx => {
  await removeDir(ctx.dir)
})

/** A join code is read only once the command line is right: none of these gets that far. */
const JOIN = ['--join', 'grid1-never-read']
/** What parseCapability says of a --require or --cap without `=`. */
const KEY_VALUE = 'expected KEY=VALUE with KEY made of letters, digits or _.:- (1-64 chars)'

/** The one line a usage problem gets: exactly `line`, exit code 2, nothing on stdout. */
async function says (args: string[], line: string, cwd?: string): Promise<void> {
  const result = await gridRun(args, cwd)
  oneLineError(result, /^grid: /)
  assert.is(result.stderr, `${line}\n`)
  assert.is(result.code, 2)
  assert.is(result.stdout, '')
}

usage('a mistyped command is named with the command it most likely meant', async () => {
  await says(['sumbit'], 'grid: unknown command \'sumbit\' (did you mean submit?)')
  await says(['wroker', '--join', 'x'], 'grid: unknown command \'wroker\' (did you mean worker?)')
})

usage('a mistyped flag is named with the flag it most likely meant', async () => {
  await says(['submit', ...JOIN, '--run', 'make', '--folow'], 'grid: unknown option \'--folow\' (did you mean --follow?)')
  // Its value is taken as the value of the flag it resembles, not as the job file.
  await says(['submit', ...JOIN, '--run', 'make', '--requir', 'gpu=a100'], 'grid: unknown option \'--requir\' (did you mean --require?)')
})

usage('every problem of a command line is in its one line: unknown flags, bad values, a missing --join', async () => {
  await says(['submit', ...JOIN, '--folow', '--require', 'gpu', '--run', 'make'],
    `grid: unknown option '--folow' (did you mean --follow?); --require gpu: ${KEY_VALUE}`)
  await says(['worker', '--slots', '0', '--cap', 'novalue', '--lisen', 'none'],
    `grid: unknown option '--lisen' (did you mean --listen?); --slots 0: expected a whole number from 1 to ${MAX_SLOTS}; --cap novalue: ${KEY_VALUE}; give --join CODE_OR_FILE`)
  await says(['up', '--http', 'nowhere', '--workers', 'lots'],
    'grid: --http nowhere: expected HOST:PORT, for example 127.0.0.1:8080; --workers lots: expected a whole number from 0 to 64')
})

usage('a job with several typos names each, field first, with the flag problems', async ({ dir }) => {
  const file = join(dir, 'typos.json')
  await writeFile(file, JSON.stringify({ steps: [{ run: '', nmae: 'build' }], timout: 60 }))
  await says(['submit', ...JOIN, file],
    'grid: steps.0.run: a step needs a command in "run"; steps.0.nmae: unknown key (did you mean name?); timout: unknown key (did you mean timeout?)')
  await says(['submit', ...JOIN, file, '--folow', '--require', 'gpu', '--artifact', '../out'],
    `grid: unknown option '--folow' (did you mean --follow?); --require gpu: ${KEY_VALUE}; steps.0.run: a step needs a command in "run"; ` +
    'steps.0.nmae: unknown key (did you mean name?); --artifact ../out: paths are relative to the work dir and may not contain ".."; timout: unknown key (did you mean timeout?)')
  // A key typed for a missing one is said once, as the typo.
  await writeFile(file, JSON.stringify({ stpes: [{ run: 'make' }] }))
  await says(['submit', ...JOIN, file], 'grid: stpes: unknown key (did you mean steps?)')
})

usage('a job file and --run together read differently from neither', async ({ dir }) => {
  const file = join(dir, 'job.json')
  await writeFile(file, JSON.stringify({ steps: [{ run: 'make' }] }))
  await says(['submit', ...JOIN, file, '--run', 'make'], `grid: ${file} and --run both describe the job: give one of them`)
  await says(['submit', ...JOIN], 'grid: nothing to build: give a job file (see docs/job.md) or --run COMMAND')
  await says(['submit', ...JOIN, '--run'], 'grid: --run needs a value')
})

usage('--pid-file naming a running process is refused before anything starts, and the file is left alone', async ({ dir }) => {
  const file = join(dir, 'busy.pid')
  await writeFile(file, `${process.pid}\n`)
  for (const command of [['worker', ...JOIN], ['store', ...JOIN], ['coordinator'], ['up']]) {
    await says([...command, '--data', join(dir, 'data'), '--pid-file', file],
      `grid: --pid-file ${file}: process ${process.pid} is running and wrote it (stop it first, or give another file)`)
  }
  assert.is(await readFile(file, 'utf8'), `${process.pid}\n`)
  // A process that is gone is not: only the next problem is said.
  await writeFile(file, `${spawnSync('true').pid}\n`)
  await says(['worker', '--pid-file', file], 'grid: give --join CODE_OR_FILE')
  await says(['worker', ...JOIN, '--pid-file', join(dir, 'no-such-dir', 'w.pid')], `grid: --pid-file ${join(dir, 'no-such-dir', 'w.pid')}: cannot write in ${join(dir, 'no-such-dir')}`)
})

usage.run()

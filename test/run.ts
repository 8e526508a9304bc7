// `npm test`: the type check, then every test file in its own process (two at a time: the machines have
// two cores), then the line `N passed, N failed` that uvu does not print itself.
import { spawn } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { availableParallelism } from 'node:os'

const root = join(import.meta.dirname, '..')
/** A file that runs longer than this is stuck: it fails instead of hanging CI. */
const FILE_TIMEOUT_MS = 5 * 60_000

interface Outcome { file: string, passed: number, failed: number, output: string, ms: number }

function run (command: string, args: string[]): Promise<{ code: number | null, output: string }> {
  return new Promise(resolve => {
    const child = spawn(command, args, { cwd: root, env: { ...process.env, FORCE_COLOR: '0' } })
    let output = ''
    child.stdout.on('data', d => { output += d })
    child.stderr.on('data', d => { output += d })
    const timer = setTimeout(() => { output += `\n[killed after ${FILE_TIMEOUT_MS} ms]\n`; child.kill('SIGKILL') }, FILE_TIMEOUT_MS)
    child.on('close', code => { clearTimeout(timer); resolve({ code, output }) })
  })
}

async function testFiles (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true })
  return entries.filter(e => e.isFile() && e.name.endsWith('.test.ts')).map(e => join(e.parentPath, e.name)).sort()
}

async function runFile (file: string): Promise<Outcome> {
  const began = Date.now()
  const { code, output } = await run(process.execPath, [file])
  const total = Number(/Total:\s+(\d+)/.exec(output)?.[1] ?? 0)
  const passed = Number(/Passed:\s+(\d+)/.exec(output)?.[1] ?? 0)
  const skipped = Number(/Skipped:\s+(\d+)/.exec(output)?.[1] ?? 0)
  // A file that crashed, or exited non-zero, counts at least one failure even if uvu printed no summary.
  let failed = Math.max(0, total - passed - skipped)
  if (code !== 0 && failed === 0) failed = 1
  return { file: relative(root, file), passed, failed, output, ms: Date.now() - began }
}

const only = process.argv.slice(2)
const files = only.length > 0 ? only.map(f => join(root, f)) : await testFiles(join(root, 'test'))
const outcomes: Outcome[] = []

const typecheck = run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', root])
const queue = [...files]
const lanes = Math.max(1, Math.min(2, availableParallelism()))
await Promise.all(Array.from({ length: lanes }, async () => {
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    const outcome = await runFile(file)
    outcomes.push(outcome)
    const mark = outcome.failed > 0 ? 'FAIL' : 'ok  '
    process.stdout.write(`${mark} ${outcome.file}  (${outcome.passed} passed, ${outcome.failed} failed, ${(outcome.ms / 1000).toFixed(1)} s)\n`)
    if (outcome.failed > 0) process.stdout.write(outcome.output.replace(/^/gm, '    | ') + '\n')
  }
}))
const tsc = await typecheck
const tscOk = tsc.code === 0
process.stdout.write(`${tscOk ? 'ok  ' : 'FAIL'} tsc --noEmit\n`)
if (!tscOk) process.stdout.write(tsc.output.replace(/^/gm, '    | ') + '\n')

const passed = outcomes.reduce((n, o) => n + o.passed, 0) + (tscOk ? 1 : 0)
const failed = outcomes.reduce((n, o) => n + o.failed, 0) + (tscOk ? 0 : 1)
process.stdout.write(`\n${passed} passed, ${failed} failed\n`)
process.exitCode = failed > 0 || passed === 0 ? 1 : 0

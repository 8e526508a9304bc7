// Steps' shells spawned by the launcher's helper process (worker/step-launcher.ts): the worker reads their output
// itself, every byte of it, gets their exit codes, and a helper that dies mid-step neither loses the step's
// processes nor hangs it: they are ended, the step fails saying so, and the next step gets a new helper.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { LauncherGoneError, SpawnError, StepLauncher } from '../../worker/step-launcher.ts'
import { runStep } from '../../worker/step-runner.ts'
import { processGone, rejection, waitFor, within } from '../wait.ts'

interface Ctx { dir: string }

const launcher = suite<Ctx>('step launcher', {} as Ctx)

launcher.before(async ctx => { ctx.dir = await mkdtemp(join(tmpdir(), 'grid-step-launcher-')) })
launcher.after(async ctx => { await rm(ctx.dir, { recursive: true, force: true }) })

async function drain (pipe: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of pipe) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

launcher('a shell from the helper: its output read here whole, from the first byte, and its exit code', async ({ dir }) => {
  const shared = StepLauncher.shared()
  for (let i = 0; i < 20; i++) {
    // Printed at once, before this process could have taken the pipes: nothing may be lost on the way.
    const shell = await shared.launch(['-c', 'echo out; echo err >&2; head -c 300000 /dev/zero; exit 7'], { cwd: dir, env: { PATH: process.env.PATH } })
    assert.ok(shell.pid > 0)
    assert.type(shell.start, 'number')
    const [out, err, [code, signal]] = await within(10_000, 'the shell', Promise.all([drain(shell.stdout), drain(shell.stderr), shell.exited]))
    assert.is(out.length, 'out\n'.length + 300_000)
    assert.is(out.subarray(0, 4).toString(), 'out\n')
    assert.is(err.toString(), 'err\n')
    assert.is(code, 7)
    assert.is(signal, null)
  }
  assert.type(shared.pid, 'number', 'the helper runs')
})

launcher('a work dir that is not there: SpawnError, as spawn says it', async ({ dir }) => {
  const err = await rejection(StepLauncher.shared().launch(['-c', 'true'], { cwd: join(dir, 'missing'), env: {} }))
  assert.instance(err, SpawnError)
  assert.is(err.code, 'ENOENT')
})

launcher('the helper dies mid-step: the step\'s processes are ended, the step fails saying so, the next one runs', async ({ dir }) => {
  const shared = StepLauncher.shared()
  const pidFile = join(dir, 'sleep-pid')
  const chunks: Buffer[] = []
  const step = runStep({
    run: `sleep 30 & echo $! > ${pidFile}; wait`,
    cwd: dir,
    env: process.env,
    output: { write (b: Uint8Array) { chunks.push(Buffer.from(b)); return true }, drain: async () => {} },
    note: line => { chunks.push(Buffer.from(`grid: ${line}\n`)) },
    signal: new AbortController().signal,
    killGraceMs: 2_000
  })
  const pid = await waitFor('the step\'s sleep', async () => Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10) || undefined)
  process.kill(shared.pid!, 'SIGKILL')
  const err = await rejection(within(15_000, 'the step to end', step))
  assert.instance(err, LauncherGoneError)
  assert.ok(await processGone(pid), `the step's sleep ${pid} was ended`)
  assert.match(Buffer.concat(chunks).toString(), /the step launcher ended before the step did: sent SIGTERM/)
  const next = await within(10_000, 'the next step', runStep({ run: 'echo again', cwd: dir, env: process.env, output: { write: () => true, drain: async () => {} }, signal: new AbortController().signal }))
  assert.is(next, 0)
})

launcher('a helper that cannot start: the shells are spawned here, and nothing waits for a helper again', async ({ dir }) => {
  const here = new StepLauncher(join(dir, 'no-such-helper.js'))
  for (let i = 0; i < 3; i++) {
    const shell = await within(10_000, 'a shell', here.launch(['-c', 'echo here'], { cwd: dir, env: {} }))
    const [out, [code]] = await Promise.all([drain(shell.stdout), shell.exited, drain(shell.stderr)])
    assert.is(out.toString(), 'here\n')
    assert.is(code, 0)
    assert.is(here.pid, undefined)
  }
})

launcher.run()

// One step run by `/bin/sh -c` in its own process group: exit codes, output capture, the work dir,
// cancellation that takes the whole group down, background children that hold the pipes, and backpressure.
// What a step leaves outside its group (setsid, double forks) and the grace before SIGKILL: step-cleanup.test.ts.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, readFile, realpath, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runStep } from '../../worker/step-runner.ts'
import type { StepInit } from '../../worker/step-runner.ts'
import { processGone, sleep, waitFor, within } from '../wait.ts'

interface Ctx {
  dir: string
  /** Processes a test started outside the step's group, killed in `after` whatever happens. */
  strays: number[]
}

const stepRunner = suite<Ctx>('step-runner', {} as Ctx)

/** The test's own bound: a step that never ends fails the test instead of hanging the file. */
const STEP_BOUND_MS = 10_000

interface Captured {
  output: StepInit['output']
  chunks: Uint8Array[]
  text (): string
  bytes (): number
}

function capture (): Captured {
  const chunks: Uint8Array[] = []
  return {
    output: { write (b: Uint8Array) { chunks.push(b); return true }, drain: async () => {} },
    chunks,
    text: () => Buffer.concat(chunks).toString('utf8'),
    bytes: () => chunks.reduce((n, c) => n + c.length, 0)
  }
}


async function readPid (file: string): Promise<number> {
  return await waitFor(`a pid in ${file}`, async () => {
    const text = await readFile(file, 'utf8').catch(() => '')
    const pid = Number.parseInt(text.trim(), 10)
    return Number.isInteger(pid) && pid > 0 && text.endsWith('\n') ? pid : undefined
  }, 5_000)
}

function run (ctx: Ctx, command: string, output: StepInit['output'], signal: AbortSignal = new AbortController().signal, more: Partial<StepInit> = {}): Promise<number> {
  return runStep({ run: command, cwd: ctx.dir, env: process.env, output, signal, ...more })
}

stepRunner.before(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-step-runner-'))
  ctx.strays = []
})

stepRunner.after(async ctx => {
  for (const pid of ctx.strays) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
  if (ctx.dir !== undefined) await rm(ctx.dir, { recursive: true, force: true })
})

stepRunner('exit code 0 and the output captured', async ctx => {
  const out = capture()
  const code = await within(STEP_BOUND_MS, 'echo hi', run(ctx, 'echo hi', out.output))
  assert.is(code, 0)
  assert.is(out.text(), 'hi\n')
})

stepRunner('a non-zero exit code is returned', async ctx => {
  const out = capture()
  assert.is(await within(STEP_BOUND_MS, 'exit 7', run(ctx, 'exit 7', out.output)), 7)
  assert.is(out.text(), '')
  assert.is(await within(STEP_BOUND_MS, 'false', run(ctx, 'true; false', capture().output)), 1)
})

stepRunner('a command that does not exist exits 127 with sh\'s message in the log', async ctx => {
  const out = capture()
  assert.is(await within(STEP_BOUND_MS, 'missing command', run(ctx, 'no-such-command-grid-test', out.output)), 127)
  assert.match(out.text(), /no-such-command-grid-test/)
})

stepRunner('stderr is captured too, in the same log', async ctx => {
  const out = capture()
  const code = await within(STEP_BOUND_MS, 'stderr', run(ctx, 'echo to-out; echo to-err >&2; exit 3', out.output))
  assert.is(code, 3)
  const text = out.text()
  assert.ok(text.includes('to-out\n'), text)
  assert.ok(text.includes('to-err\n'), text)
  assert.is(text.length, 'to-out\nto-err\n'.length)
})

stepRunner('runs in the work dir with the given environment', async ctx => {
  const out = capture()
  const code = await within(STEP_BOUND_MS, 'pwd', run(ctx, 'pwd', out.output))
  assert.is(code, 0)
  assert.is(out.text(), (await realpath(ctx.dir)) + '\n')

  const env = capture()
  const envCode = await within(STEP_BOUND_MS, 'env', runStep({
    run: 'printf "%s" "$GRID_STEP"', cwd: ctx.dir, env: { ...process.env, GRID_STEP: 'build' }, output: env.output, signal: new AbortController().signal
  }))
  assert.is(envCode, 0)
  assert.is(env.text(), 'build')
})

stepRunner('aborting kills the whole process group, background children too', async ctx => {
  const pidFile = join(ctx.dir, 'bg-pid-wait')
  const out = capture()
  const controller = new AbortController()
  const step = run(ctx, `sleep 30 & echo $! > ${pidFile}; wait; echo never`, out.output, controller.signal)
  const pid = await readPid(pidFile)
  ctx.strays.push(pid)
  await sleep(200)
  assert.ok(!(await processGone(pid)), 'the background sleep runs before the abort')
  controller.abort()
  const code = await within(STEP_BOUND_MS, 'the aborted step to end', step)
  assert.ok(code >= 128, `exit code ${code} says killed by a signal`)
  assert.not.match(out.text(), /never/)
  await waitFor(`background sleep ${pid} to be gone`, async () => await processGone(pid), 3_000)
})

stepRunner('aborting a step in a foreground command kills it and its background sibling', async ctx => {
  const pidFile = join(ctx.dir, 'bg-pid-fg')
  const out = capture()
  const controller = new AbortController()
  const step = run(ctx, `sleep 30 & echo $! > ${pidFile}; sleep 30; echo never`, out.output, controller.signal)
  const pid = await readPid(pidFile)
  ctx.strays.push(pid)
  await sleep(200)
  controller.abort()
  const code = await within(STEP_BOUND_MS, 'the aborted step to end', step)
  assert.ok(code >= 128, `exit code ${code} says killed by a signal`)
  assert.not.match(out.text(), /never/)
  await waitFor(`background sleep ${pid} to be gone`, async () => await processGone(pid), 3_000)
})

stepRunner('a step that ignores SIGTERM is killed after the grace', async ctx => {
  const out = capture()
  const controller = new AbortController()
  const step = run(ctx, 'trap "" TERM; echo armed; sleep 30; echo never', out.output, controller.signal, { killGraceMs: 1_000 })
  await waitFor('the trap to be set', () => out.text().includes('armed'), 5_000)
  controller.abort()
  const code = await within(STEP_BOUND_MS, 'the TERM-ignoring step to end', step)
  assert.ok(code >= 128, `exit code ${code} says killed by a signal`)
  assert.not.match(out.text(), /never/)
})

stepRunner('a signal aborted before the start does not let the step run', async ctx => {
  const out = capture()
  const marker = join(ctx.dir, 'ran-anyway')
  const code = await within(STEP_BOUND_MS, 'the pre-aborted step', run(ctx, `sleep 5; touch ${marker}; echo never`, out.output, AbortSignal.abort()))
  assert.ok(code >= 128, `exit code ${code} says killed by a signal`)
  assert.not.match(out.text(), /never/)
  assert.is(await readFile(marker).then(() => true, () => false), false)
})

stepRunner('a background child that keeps stdout open does not keep the step from finishing', async ctx => {
  const out = capture()
  const code = await within(STEP_BOUND_MS, 'the step with a lingering child', run(ctx, '(sleep 30 &) ; echo done', out.output))
  assert.is(code, 0)
  assert.is(out.text(), 'done\n')
})

stepRunner('a process out of reach that holds stdout does not keep the step from finishing', async ctx => {
  const pidFile = join(ctx.dir, 'escaped-pid')
  const out = capture()
  // Out of the session, without the tag, and no cgroup to hold it ('tag'): the sweep cannot find it, the pipe stays open.
  const step = run(ctx, `setsid env -i sh -c 'echo $$ > ${pidFile}; exec sleep 30' & while [ ! -s ${pidFile} ]; do sleep 0.05; done; echo done`, out.output, undefined, { tracking: 'tag' })
  const code = await within(STEP_BOUND_MS, 'the step with an escaped child', step)
  const pid = await readPid(pidFile)
  ctx.strays.push(pid)
  assert.is(code, 0)
  assert.is(out.text(), 'done\n')
  assert.not.ok(await processGone(pid), 'the escaped process was out of the sweep\'s reach, as the test meant')
})

stepRunner('backpressure: an output that asks to pause still receives every byte', async ctx => {
  let received = 0
  let paused = false
  let writesWhilePaused = 0
  let drains = 0
  const output: StepInit['output'] = {
    write (b: Uint8Array) {
      if (paused) writesWhilePaused++
      received += b.length
      paused = true
      return false
    },
    drain: async () => {
      drains++
      await sleep(1)
      paused = false
    }
  }
  const code = await within(30_000, 'the 5 MB step', run(ctx, 'head -c 5000000 /dev/zero', output))
  assert.is(code, 0)
  assert.is(received, 5_000_000)
  assert.ok(drains > 0, 'the runner waited for drain')
  // Both pipes are paused together, so only a chunk already in flight may land while paused.
  assert.ok(writesWhilePaused <= drains, `${writesWhilePaused} writes while paused, ${drains} drains`)
})

stepRunner('output still paused when the step exits is delivered once the output drains (slow store)', async ctx => {
  // A store that takes longer than the kill grace to take the first batch: the step has already exited,
  // and what it wrote after the first chunk waits in the paused pipe. That is output, not an escaped process.
  const chunks: Buffer[] = []
  let first = true
  const output: StepInit['output'] = {
    write (b: Uint8Array) {
      chunks.push(Buffer.from(b))
      if (!first) return true
      first = false
      return false
    },
    drain: async () => { await sleep(2_500) }
  }
  const code = await within(STEP_BOUND_MS, 'the step with a slow output', run(ctx, 'echo first; sleep 0.2; echo second; echo third >&2', output))
  assert.is(code, 0)
  const text = Buffer.concat(chunks).toString('utf8')
  assert.ok(text.startsWith('first\n'), text)
  assert.ok(text.includes('second\n'), `"second" was lost: ${JSON.stringify(text)}`)
  assert.ok(text.includes('third\n'), `"third" was lost: ${JSON.stringify(text)}`)
})

stepRunner('a missing work dir fails the step instead of hanging', async ctx => {
  const out = capture()
  const outcome = await within(STEP_BOUND_MS, 'a step in a missing dir', runStep({
    run: 'echo hi', cwd: join(ctx.dir, 'missing'), env: process.env, output: out.output, signal: new AbortController().signal
  }).then(code => ({ code }), (err: any) => ({ err })))
  if ('code' in outcome) assert.ok(outcome.code !== 0, `exit code ${outcome.code}`)
  else assert.is(outcome.err.code, 'ENOENT')
  assert.is(out.text(), '')
})

stepRunner.run()

// Nothing a step started outlives it: processes that left its process group (setsid, a double fork, `set -m`) are
// found and ended, a stop gives SIGTERM and the job's grace before SIGKILL, and the step's log says what was sent.
// The same suite runs for each way of finding a step's processes: its cgroup (v2, then v1 `pids`; both fall back to
// the tag on a machine without them), a v1 `pids` cgroup alone, and the environment tag alone.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runStep } from '../../worker/step-runner.ts'
import type { StepInit } from '../../worker/step-runner.ts'
import { STEP_TAG_ENV, StepProcesses } from '../../worker/step-processes.ts'
import type { StepTracking } from '../../worker/step-processes.ts'
import { startTestGrid } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import { processGone, waitFor, within } from '../wait.ts'

interface Ctx {
  dir: string
  /** Every pid a test learnt of, killed in `after` whatever happens, so a failing test leaves nothing running. */
  strays: number[]
}

/** The test's own bound: a step that never ends fails the test instead of hanging the file. */
const STEP_BOUND_MS = 20_000

interface Captured {
  output: StepInit['output']
  /** Writes `grid: …` lines into the same log, as the worker does. */
  note: (line: string) => void
  text (): string
}

function capture (): Captured {
  const chunks: Buffer[] = []
  return {
    output: { write (b: Uint8Array) { chunks.push(Buffer.from(b)); return true }, drain: async () => {} },
    note: line => { chunks.push(Buffer.from(`grid: ${line}\n`)) },
    text: () => Buffer.concat(chunks).toString('utf8')
  }
}

async function readPid (ctx: Ctx, file: string): Promise<number> {
  const pid = await waitFor(`a pid in ${file}`, async () => {
    const text = await readFile(file, 'utf8').catch(() => '')
    const pid = Number.parseInt(text.trim(), 10)
    return Number.isInteger(pid) && pid > 0 && text.endsWith('\n') ? pid : undefined
  }, 5_000)
  ctx.strays.push(pid)
  return pid
}

const exists = async (file: string): Promise<boolean> => await access(file).then(() => true, () => false)

/** Shell that waits for `file` to hold a pid: the step must not exit before its escapee has escaped. */
const awaitFile = (file: string): string => `while [ ! -s ${file} ]; do sleep 0.05; done`

async function cgroupsHere (tracking: StepTracking): Promise<boolean> {
  const processes = await StepProcesses.open(tracking)
  await processes.close()
  return processes.cgroupDir !== undefined
}

function cleanup (tracking: StepTracking, cgroups: boolean): void {
  const test = suite<Ctx>(`step cleanup (${tracking}${tracking !== 'tag' && !cgroups ? ': no cgroups here, so the tag' : ''})`, {} as Ctx)

  test.before(async ctx => {
    ctx.dir = await mkdtemp(join(tmpdir(), 'grid-step-cleanup-'))
    ctx.strays = []
  })

  test.after(async ctx => {
    for (const pid of ctx.strays) {
      try { process.kill(pid, 'SIGKILL') } catch {}
    }
    if (ctx.dir !== undefined) await rm(ctx.dir, { recursive: true, force: true })
  })

  const run = (ctx: Ctx, command: string, out: Captured, more: Partial<StepInit> = {}): Promise<number> =>
    within(STEP_BOUND_MS, command, runStep({
      run: command, cwd: ctx.dir, env: process.env, output: out.output, note: out.note, signal: new AbortController().signal, tracking, killGraceMs: 1_000, ...more
    }))

  test('a setsid escapee is gone when the step ends', async ctx => {
    const pidFile = join(ctx.dir, 'setsid-pid')
    const out = capture()
    const code = await run(ctx, `setsid sh -c 'echo $$ > ${pidFile}; exec sleep 30' & ${awaitFile(pidFile)}; echo done`, out)
    const pid = await readPid(ctx, pidFile)
    assert.is(code, 0)
    assert.ok(await processGone(pid), `the setsid sleep ${pid} outlived the step`)
    assert.match(out.text(), /^done\ngrid: the step exited and left 1 process running: sent SIGTERM; SIGKILL follows in 1 s\n$/)
  })

  // Without a cgroup, a process that cleared its environment and left the session is out of reach (see README).
  if (cgroups && tracking !== 'tag') test('a process orphaned after the SIGTERM round (its parent died of it) gets one too, not SIGKILL after the grace', async ctx => {
    const pidFile = join(ctx.dir, 'orphan-pid')
    const readyFile = join(ctx.dir, 'orphan-ready')
    const out = capture()
    // The escaped shell, on SIGTERM, starts a child and dies: the child appears after the sweep sent its SIGTERMs,
    // orphaned, and would wait out the whole grace for SIGKILL. env -i drops the tag: the cgroup still finds it.
    const escapee = `trap "sleep 27 & echo \\$! > ${pidFile}; exit 0" TERM; echo > ${readyFile}; while :; do sleep 0.05; done`
    const code = await run(ctx, `env -i setsid sh -c '${escapee}' >/dev/null 2>&1 </dev/null & ${awaitFile(readyFile)}; echo started`, out, { killGraceMs: 10_000 })
    const pid = await readPid(ctx, pidFile)
    assert.is(code, 0)
    assert.ok(await processGone(pid), `the orphaned sleep ${pid} outlived the step`)
    assert.not.match(out.text(), /SIGKILL\n/, out.text())
  })

  test('a double-forked daemon (parent gone, reparented, own session) is gone when the step ends', async ctx => {
    const pidFile = join(ctx.dir, 'daemon-pid')
    const script = join(ctx.dir, 'daemon.sh')
    // The subshell forks the daemon and exits at once: the daemon's parent is whatever reaps orphans, not the step.
    await writeFile(script, `( setsid sh -c 'echo $$ > "$0"; exec sleep 30' "$1" & )\n`)
    const out = capture()
    const code = await run(ctx, `sh ${script} ${pidFile}; ${awaitFile(pidFile)}; echo done`, out)
    const pid = await readPid(ctx, pidFile)
    assert.is(code, 0)
    assert.ok(await processGone(pid), `the daemon ${pid} outlived the step`)
    assert.match(out.text(), /grid: the step exited and left 1 process running: sent SIGTERM/)
  })

  test('siblings the step never waited for are gone: nohup, and a job in a process group of its own (set -m)', async ctx => {
    const nohupFile = join(ctx.dir, 'nohup-pid')
    const jobFile = join(ctx.dir, 'job-pid')
    const out = capture()
    const code = await run(ctx, `nohup sleep 30 > /dev/null 2>&1 & echo $! > ${nohupFile}; bash -c 'set -m; sleep 30 & echo $! > ${jobFile}'; echo done`, out)
    const nohup = await readPid(ctx, nohupFile)
    const job = await readPid(ctx, jobFile)
    assert.is(code, 0)
    assert.ok(await processGone(nohup), `the nohup sleep ${nohup} outlived the step`)
    assert.ok(await processGone(job), `the set -m job ${job} outlived the step`)
    assert.match(out.text(), /grid: the step exited and left 2 processes running: sent SIGTERM/)
  })

  test('leftovers get SIGTERM first, and SIGKILL after the grace when they ignore it', async ctx => {
    const politeFile = join(ctx.dir, 'polite-pid')
    const termFile = join(ctx.dir, 'polite-got-term')
    const stubbornFile = join(ctx.dir, 'stubborn-pid')
    const out = capture()
    const code = await run(ctx, [
      `sh -c 'trap "echo term > ${termFile}; exit 0" TERM; echo $$ > ${politeFile}; while :; do sleep 0.1; done' &`,
      `setsid sh -c 'trap "" TERM; echo $$ > ${stubbornFile}; exec sleep 30' &`,
      `${awaitFile(politeFile)}; ${awaitFile(stubbornFile)}; echo done`
    ].join('\n'), out)
    const polite = await readPid(ctx, politeFile)
    const stubborn = await readPid(ctx, stubbornFile)
    assert.is(code, 0)
    assert.ok(await exists(termFile), 'the background loop got SIGTERM and ran its trap')
    assert.ok(await processGone(polite), `the background loop ${polite} outlived the step`)
    assert.ok(await processGone(stubborn), `the TERM-ignoring escapee ${stubborn} outlived the step`)
    const text = out.text()
    assert.match(text, /^done\ngrid: the step exited and left \d+ processes running: sent SIGTERM; SIGKILL follows in 1 s\n/)
    assert.match(text, /\ngrid: still running 1 s after SIGTERM: sent SIGKILL\n$/)
  })

  test('a cancelled step\'s trap gets its grace: its cleanup runs to the end and no SIGKILL is sent', async ctx => {
    const report = join(ctx.dir, 'report')
    const out = capture()
    const controller = new AbortController()
    // `armed` is printed once the sleep runs: a TERM that came while the shell was still forking it would miss the
    // sleep, and the shell would hold its trap until the sleep ended (a race a busy machine can hit).
    const step = run(ctx, `trap 'sleep 2; echo written > ${report}; exit 143' TERM; sleep 30 & echo armed; wait; echo never`, out, {
      // A grace far past the trap's 2 s: on a busy machine the cleanup can be scheduled late, and the step still ends
      // as soon as the trap exits.
      signal: controller.signal, killGraceMs: 30_000, stopping: () => 'cancelled by an API client'
    })
    await waitFor('the trap to be set', () => out.text().includes('armed'), 5_000)
    controller.abort()
    assert.is(await step, 143)
    assert.is(await readFile(report, 'utf8').catch(() => 'missing'), 'written\n')
    const text = out.text()
    assert.ok(text.includes('\ngrid: cancelled by an API client: sent SIGTERM to the step\'s processes; SIGKILL follows in 30 s\n'), text)
    assert.not.match(text, /sent SIGKILL/)
  })

  test('a stopped step that ignores SIGTERM, and its escapee, get SIGKILL after the grace, and the log says so', async ctx => {
    const pidFile = join(ctx.dir, 'ignoring-pid')
    const out = capture()
    const controller = new AbortController()
    const step = run(ctx, `trap "" TERM; setsid sh -c 'echo $$ > ${pidFile}; exec sleep 30' & ${awaitFile(pidFile)}; echo armed; sleep 30; echo never`, out, {
      signal: controller.signal, stopping: () => 'the build ran past its timeout of 5 s'
    })
    await waitFor('the step to be armed', () => out.text().includes('armed'), 5_000)
    const pid = await readPid(ctx, pidFile)
    controller.abort()
    const code = await step
    assert.is(code, 128 + 9, 'killed by SIGKILL')
    assert.ok(await processGone(pid), `the TERM-ignoring escapee ${pid} outlived the step`)
    assert.is(out.text(), [
      'armed',
      'grid: the build ran past its timeout of 5 s: sent SIGTERM to the step\'s processes; SIGKILL follows in 1 s',
      'grid: still running 1 s after SIGTERM: sent SIGKILL',
      ''
    ].join('\n'))
  })

  test('a step that leaves nothing behind writes no line', async ctx => {
    const out = capture()
    assert.is(await run(ctx, 'sleep 0.1 & wait; echo done', out), 0)
    assert.is(out.text(), 'done\n')
  })

  test('processes the step did not start are left alone', async ctx => {
    // Started beside the step, in the test's environment, with a copy of everything but the step's tag.
    const neighbour = spawn('sleep', ['30'], { stdio: 'ignore', detached: true, env: { ...process.env, [STEP_TAG_ENV]: 'another-step' } })
    const pid = neighbour.pid!
    ctx.strays.push(pid)
    const pidFile = join(ctx.dir, 'own-pid')
    const out = capture()
    assert.is(await run(ctx, `setsid sh -c 'echo $$ > ${pidFile}; exec sleep 30' & ${awaitFile(pidFile)}`, out), 0)
    assert.ok(await processGone(await readPid(ctx, pidFile)), 'the step\'s own escapee is gone')
    assert.not.ok(await processGone(pid), 'the neighbour runs on')
    assert.not.ok(await processGone(process.pid), 'and so does the worker')
  })

  if (cgroups) {
    test('a step runs in a cgroup of its own, which catches what drops the tag (env -i), and is removed after', async ctx => {
      const pidFile = join(ctx.dir, 'untagged-pid')
      const out = capture()
      const code = await run(ctx, `cat /proc/self/cgroup; setsid env -i sh -c 'echo $$ > ${pidFile}; exec sleep 30' & ${awaitFile(pidFile)}`, out)
      const pid = await readPid(ctx, pidFile)
      assert.is(code, 0)
      assert.ok(await processGone(pid), `the untagged escapee ${pid} outlived the step`)
      const path = /^\d+:[^:\n]*:(\/(?:.*\/)?grid-step-[0-9a-f]+)$/m.exec(out.text())?.[1]
      assert.ok(path !== undefined, `the step's cgroup in ${out.text()}`)
      for (const mount of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified', '/sys/fs/cgroup/pids']) {
        assert.not.ok(await exists(join(mount, path)), `${join(mount, path)} was removed`)
      }
    })
  }

  test.run()
}

// Every suite is queued in one go: uvu starts running its queue on the first turn of the event loop it gets.
const trackings = ['cgroup', 'cgroup-v1', 'tag'] as const
const available = await Promise.all(trackings.map(cgroupsHere))
for (const [i, tracking] of trackings.entries()) cleanup(tracking, available[i])

// End to end: a worker stopping a cancelled build says so in the step's log.
const grid = suite<{ grid: TestGrid }>('step cleanup: a cancelled build', {} as { grid: TestGrid })

grid.before(async ctx => { ctx.grid = await startTestGrid() })
grid.after(async ctx => { await ctx.grid?.stop() })

grid('the step\'s log has the SIGTERM line and what its trap wrote within the grace', async ({ grid }) => {
  const id = await grid.submit({ killGrace: 3, steps: [{ run: 'trap \'echo cleaned up; exit 143\' TERM; echo started; sleep 30 & wait' }] })
  const log = async (): Promise<string> => await (await grid.api(`/api/builds/${id}/log`)).text()
  await waitFor('the step to start', async () => (await log()).includes('started') ? true : undefined, 15_000)
  const res = await grid.api(`/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${grid.token}` } })
  assert.is(res.status, 200)
  assert.is((await grid.finished(id)).status, 'cancelled')
  const text = await waitFor('the cleanup in the log', async () => { const text = await log(); return text.includes('cleaned up') ? text : undefined }, 15_000)
  assert.match(text, /\ngrid: cancelled by an API client: sent SIGTERM to the step's processes; SIGKILL follows in 3 s\n/)
  assert.not.match(text, /SIGKILL\n/)
})

grid('a worker that stops mid-step ends the step\'s processes before stop() resolves', async ({ grid }) => {
  const pidFile = join(grid.dir, 'stopping-pid')
  // The trap takes a moment, so a stop() that did not wait for the step would resolve while it still runs.
  const id = await grid.submit({ steps: [{ run: `sh -c 'trap "sleep 1; exit 0" TERM; echo $$ > ${pidFile}; while :; do sleep 0.1; done' & wait` }] })
  const pid = Number(await waitFor('the step\'s process to start', async () => (await readFile(pidFile, 'utf8').catch(() => '')).trim() || undefined, 15_000))
  assert.is((await (await grid.api(`/api/builds/${id}`)).json()).status, 'running')
  await grid.workers[0].worker.stop()
  assert.ok(await processGone(pid), `process ${pid} outlived its worker`)
})

grid.run()

// `npm run test:hosts`: the grid on separate hosts, each a network namespace on this machine joined by veth
// links through a switch namespace (needs root and `ip netns`). A coordinator, two stores, three workers and
// a tailer, each a real `grid` process on its own host; then faults: a worker's link cut mid-build, a store
// host killed mid-upload, the coordinator's host restarted, while the tailer follows one build across all of
// it. Prints PASS/FAIL per scenario with how long each fault took to detect and to heal, then
// `N passed, N failed`; exits non-zero on any failure.
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { everyProcess, started } from './host-process.ts'
import { HostGrid } from './grid.ts'
import { coordinatorRestarted, finishTailedBuild, startTailedBuild, storeKilledMidUpload, workerLinkCut } from './scenarios.ts'
import type { Outcome, TailedBuild } from './scenarios.ts'
import { PREFIX, createTopology, namespacesWork, removeAll } from './topology.ts'

/** The whole run, set-up to tear-down, ends by then: a stuck fault fails instead of hanging CI. */
const RUN_LIMIT_MS = 5 * 60_000
const LOCK = `/run/${PREFIX}lock`
/** Set GRIDH_LOGS=DIR to keep every process's stdout and stderr there (nothing is kept otherwise). */
const KEEP_LOGS = process.env.GRIDH_LOGS
/** Scenario numbers to run (`npm run test:hosts -- 1 3`); all of them by default. */
const ONLY = new Set(process.argv.slice(2))
const wanted = (n: number): boolean => ONLY.size === 0 || ONLY.has(String(n))

const began = Date.now()
const clock = (): string => `${((Date.now() - began) / 1000).toFixed(1).padStart(5)} s`
const say = (line: string): void => { process.stdout.write(`${line}\n`) }
const progress = (line: string): void => say(`  [${clock()}] ${line}`)
const seconds = (ms: number | undefined): string => ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`

interface Result { name: string, ok: boolean, why?: string, outcome?: Outcome }
const results: Result[] = []
let dir: string | undefined
let tornDown = false
let locked = false

function takeLock (): void {
  try {
    const fd = openSync(LOCK, 'wx')
    writeSync(fd, String(process.pid))
    closeSync(fd)
    locked = true
  } catch {
    const holder = Number(readFileSync(LOCK, 'utf8'))
    let alive = false
    try {
      process.kill(holder, 0)
      // A zombie is dead: PID 1 in some sandboxes never reaps orphans.
      const stat = readFileSync(`/proc/${holder}/stat`, 'utf8')
      alive = holder !== process.pid && !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
    } catch {}
    if (alive) {
      say(`test:hosts is already running here (pid ${holder}); it owns the ${PREFIX}* namespaces`)
      process.exit(1)
    }
    rmSync(LOCK, { force: true })
    takeLock()
  }
}

/** Ends every process we started and removes every namespace, link and file; runs once, on any exit path. */
async function tearDown (): Promise<void> {
  if (tornDown) return
  tornDown = true
  const running = [...started]
  for (const p of running) p.signal('SIGKILL')
  await Promise.race([Promise.all(running.map(async p => await p.exited)), new Promise(resolve => setTimeout(resolve, 3_000))])
  if (KEEP_LOGS !== undefined) {
    await mkdir(KEEP_LOGS, { recursive: true })
    for (const [i, p] of everyProcess.entries()) {
      const base = join(KEEP_LOGS, `${String(i).padStart(2, '0')}-${p.host.name}-${p.args[0]}`)
      await writeFile(`${base}.out`, p.stdout())
      await writeFile(`${base}.err`, `started at ${((p.startedAt - began) / 1000).toFixed(1)} s: grid ${p.args.join(' ')}\n${p.stderr()}`)
    }
  }
  if (!locked) return
  const removed = removeAll()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true }).catch(() => {})
  rmSync(LOCK, { force: true })
  // What is left in a namespace once the grid processes are gone: build steps of a worker that was SIGKILLed.
  if (removed.processes > 0) progress(`tear-down: killed ${removed.processes} leftover process(es) in the namespaces`)
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    say(`\n${signal}: tearing down`)
    tearDown().finally(() => process.exit(130))
  })
}
process.on('uncaughtException', err => {
  say(`unexpected error: ${err.stack ?? err}`)
  tearDown().finally(() => process.exit(1))
})

function report (result: Result): void {
  results.push(result)
  say(`${result.ok ? 'PASS' : 'FAIL'} ${result.name}`)
  for (const t of result.outcome?.times ?? []) say(`       ${t.label.padEnd(46)} ${seconds(t.ms)}${t.note !== undefined ? ` (${t.note})` : ''}`)
  for (const n of result.outcome?.notes ?? []) say(`       ${n}`)
  if (!result.ok) say(`       why: ${result.why}`)
}

/** When each scenario began, so a failure elsewhere can say during which it happened. */
const phases: Array<{ name: string, at: number }> = []
const during = (at: number): string => phases.findLast(p => p.at <= at)?.name.replace(/:.*/, '') ?? 'set-up'

async function scenario (name: string, run: (outcome: Outcome) => Promise<void>): Promise<boolean> {
  progress(`${name}…`)
  phases.push({ name, at: Date.now() })
  const outcome: Outcome = { times: [], notes: [] }
  try {
    await run(outcome)
    report({ name, ok: true, outcome })
    return true
  } catch (err: any) {
    report({ name, ok: false, why: err.message, outcome })
    return false
  }
}

async function main (): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root: it makes network namespaces and veth links (ip netns)')
  const probe = namespacesWork()
  if (!probe.ok) throw new Error(`ip netns does not work here: ${probe.why}`)
  takeLock()
  const leftovers = removeAll()
  const oldDirs = (await readdir(tmpdir())).filter(n => n.startsWith(`${PREFIX}run-`))
  for (const old of oldDirs) await rm(join(tmpdir(), old), { recursive: true, force: true })
  if (leftovers.namespaces + oldDirs.length > 0) progress(`removed what an earlier run left: ${leftovers.namespaces} namespace(s), ${leftovers.processes} process(es), ${oldDirs.length} temp dir(s)`)
  dir = await mkdtemp(join(tmpdir(), `${PREFIX}run-`))

  const hosts = createTopology()
  progress(`hosts: ${[...hosts.values()].map(h => `${h.name} ${h.addr}`).join(', ')}`)
  const grid = new HostGrid(hosts, dir)
  await grid.startCoordinator()
  await Promise.all([grid.startStore('store1'), grid.startStore('store2')])
  await Promise.all([grid.startWorker('w1'), grid.startWorker('w2'), grid.startWorker('w3')])
  await grid.connected(3, 2, 30_000)
  progress('grid up: coordinator, 2 stores, 3 workers, each on its own host')

  let tailed: TailedBuild | undefined
  const tailName = '4. the tailer on its own host follows one build\'s log across all of it'
  if (wanted(4)) try {
    tailed = { ...await startTailedBuild(grid), during }
    progress(`tailing build ${tailed.id} from the tail host`)
  } catch (err: any) {
    report({ name: tailName, ok: false, why: `could not start: ${err.message}` })
  }
  if (wanted(1)) await scenario('1. a worker\'s link cut mid-build: lost, re-queued, fenced when the link heals', async o => { await workerLinkCut(grid, o) })
  if (wanted(2)) await scenario('2. a store host killed mid-upload: the upload completes on the other replica', async o => { await storeKilledMidUpload(grid, o) })
  if (wanted(3)) await scenario('3. the coordinator\'s host restarted: workers come back by themselves', async o => { await coordinatorRestarted(grid, o) })
  if (tailed !== undefined) {
    const t = tailed
    await scenario(tailName, async o => { await finishTailedBuild(grid, t, o) })
  }
}

const limit = setTimeout(() => {
  say(`FAIL the run took longer than ${RUN_LIMIT_MS / 60_000} minutes; tearing down`)
  results.push({ name: 'time limit', ok: false })
  tearDown().finally(() => { say(`\n${results.filter(r => r.ok).length} passed, ${results.filter(r => !r.ok).length} failed`); process.exit(1) })
}, RUN_LIMIT_MS)

try {
  await main()
} catch (err: any) {
  report({ name: 'setting up the hosts', ok: false, why: err.message })
} finally {
  await tearDown()
  clearTimeout(limit)
}
const passed = results.filter(r => r.ok).length
const failed = results.length - passed
say(`\ntook ${seconds(Date.now() - began)}`)
say(`${passed} passed, ${failed} failed`)
// Exit now: a scenario that failed on a timeout may leave a timer behind.
process.exit(failed > 0 || passed === 0 ? 1 : 0)

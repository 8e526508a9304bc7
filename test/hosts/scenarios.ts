// The faults, one function each. A scenario throws (with a sentence saying what went wrong) or returns the
// times it measured; whatever happens it leaves the hosts connected and every role running for the next one.
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { isDeepStrictEqual } from 'node:util'
import { join } from 'node:path'
import type { Build } from '../../grid/build.ts'
import { GridProcess, gridRun, sleep, waitFor } from './host-process.ts'
import type { HostGrid } from './grid.ts'
import { cut, heal } from './topology.ts'
import type { HostName } from './topology.ts'

export interface Timing { label: string, ms: number | undefined, note?: string }

export interface Outcome {
  times: Timing[]
  notes: string[]
}

function check (ok: boolean, what: string): void {
  if (!ok) throw new Error(what)
}

const since = (t: number): number => Date.now() - t

// ---------------------------------------------------------------------------------------------------------
// 4 (started first, checked last): a tailer on its own host follows one build's log across every fault.

export const TAILED_LINES_MAX = 3_000

export interface TailedBuild {
  id: string
  tailer: GridProcess
  stopFile: string
  /** Which scenario ran at a moment (to say when the tailer stopped). */
  during: (at: number) => string
}

/**
 * A build on w3 that prints a numbered line every 100 ms until the runner drops a stop file (the hosts share the
 * machine's filesystem; only their networks are apart), followed by `grid tail` on the tail host.
 */
export async function startTailedBuild (grid: HostGrid): Promise<TailedBuild> {
  const stopFile = join(grid.dir, 'tailed.stop')
  const job = {
    name: 'tailed across faults',
    requires: { pool: 'long' },
    timeout: 600,
    steps: [{ name: 'count', run: `i=0; while [ $i -lt ${TAILED_LINES_MAX} ] && [ ! -e ${stopFile} ]; do i=$((i+1)); echo "line $i"; sleep 0.1; done; echo "last $i"` }]
  }
  const jobFile = join(grid.dir, 'tailed.json')
  await writeFile(jobFile, JSON.stringify(job))
  const submitted = await gridRun(grid.host('tail'), ['submit', '--join', grid.joinFile, jobFile], 30_000)
  check(submitted.code === 0, `grid submit on the tail host exited ${submitted.code}: ${submitted.stderr.trim()}`)
  const id = submitted.stdout.trim()
  const tailer = new GridProcess(grid.host('tail'), ['tail', '--join', grid.joinFile, id])
  await tailer.line(/^line 5$/m, 30_000)
  return { id, tailer, stopFile, during: () => 'the run' }
}

export async function finishTailedBuild (grid: HostGrid, tailed: TailedBuild, { times, notes }: Outcome): Promise<void> {
  const exitedEarly = tailed.tailer.exitedAt !== undefined ? ` ${((Date.now() - tailed.tailer.exitedAt) / 1000).toFixed(0)} s before the build was told to stop, during ${tailed.during(tailed.tailer.exitedAt)}` : ''
  await writeFile(tailed.stopFile, '')
  const stoppedAt = Date.now()
  const build = await grid.finished(tailed.id, 30_000)
  const code = await Promise.race([tailed.tailer.exited, sleep(30_000).then(() => 'still running 30 s after the build finished')])
  times.push({ label: 'tailer done after the build', ms: since(stoppedAt) })
  const out = tailed.tailer.stdout()
  const lines = out.split('\n').filter(l => l !== '')
  const last = /^last (\d+)$/m.exec(out)
  const expected = ['--- step 1/1: count ---', ...Array.from({ length: Number(last?.[1] ?? 0) }, (_, i) => `line ${i + 1}`), last?.[0] ?? 'last N']
  check(code === 0, `the tailer ${typeof code === 'string' ? code : `exited ${code}${exitedEarly}`} (stderr: ${tailed.tailer.lastWords(8).replace(/\s+/g, ' ')}), after ${lines.filter(l => l.startsWith('line ')).length} lines`)
  check(build.status === 'succeeded', `the tailed build ended ${build.status}`)
  check(build.attempts.length === 1, `the tailed build ran ${build.attempts.length} attempts (it should have run through every fault on w3)`)
  if (!isDeepStrictEqual(lines, expected)) {
    const at = lines.findIndex((l, i) => l !== expected[i])
    throw new Error(`the tailer's output differs from the build's at line ${at + 1}: got ${JSON.stringify(lines[at])}, expected ${JSON.stringify(expected[at])} (${lines.length} lines, expected ${expected.length})`)
  }
  // The same bytes over HTTP, read from the stores after the seal.
  const whole = await grid.text(`/api/builds/${tailed.id}/log`, 10_000)
  check(whole === out, 'the tailer\'s output is not byte for byte the build\'s log as the HTTP API serves it')
  notes.push(`${lines.length - 2} numbered lines, in order, none missing or repeated`)
}

// ---------------------------------------------------------------------------------------------------------
// 1: a worker's link cut mid-build.

export async function workerLinkCut (grid: HostGrid, { times, notes }: Outcome): Promise<void> {
  const id = await grid.submit({ name: 'link cut mid-build', requires: { pool: 'cut' }, retries: 1, steps: [{ name: 'work', run: 'echo started-$GRID_ATTEMPT; sleep 6; echo finished-$GRID_ATTEMPT' }] })
  const running = await grid.until(id, 'running', b => b.status === 'running', 20_000)
  await waitFor('its first output', async () => (await grid.text(`/api/builds/${id}/log`)).includes('started-'), 15_000)
  const victimPeer = running.attempts[0].worker
  const victimName = grid.workerHost.get(victimPeer)
  check(victimName !== undefined, `the build runs on ${victimPeer}, which is none of the workers started here`)
  const victimHost = grid.host(victimName!)
  const victim = grid.process(victimName!)
  const joinsBefore = victim.count(/joined the grid/)

  const cutAt = Date.now()
  cut(victimHost)
  let healed = false
  try {
    await grid.until(id, `the attempt on ${victimName} lost`, b => b.attempts[0]?.outcome === 'lost', 20_000)
    times.push({ label: 'detect (attempt lost)', ms: since(cutAt) })
    const done = await grid.finished(id, 30_000)
    times.push({ label: 're-run finished', ms: since(cutAt) })
    check(done.status === 'succeeded', `the re-queued build ended ${done.status}`)
    check(done.attempts.length === 2, `${done.attempts.length} attempts, expected 2`)
    check(done.attempts[1].worker !== victimPeer, 'the re-run went to the cut-off worker')

    const healAt = Date.now()
    heal(victimHost)
    healed = true
    await waitFor(`the worker on ${victimName} to rejoin`, () => victim.count(/joined the grid/) > joinsBefore, 30_000)
    times.push({ label: 'heal (worker rejoined)', ms: since(healAt) })
    // Give its late reports (step ended, attempt done) time to arrive and be refused.
    await sleep(2_000)
    const after = await grid.build(id)
    check(isDeepStrictEqual(after, done), `the build record changed after the stale worker came back: ${JSON.stringify(diff(done, after))}`)
    const log = await grid.text(`/api/builds/${id}/log`)
    check(log.includes(`finished-${done.attempts[1].id}`), 'the build\'s log is not the re-run\'s')
    check(!log.includes(`finished-${done.attempts[0].id}`), 'the stale attempt\'s output reached the build\'s log')
    // The stale attempt's log was sealed where it stood when it was lost: what the worker wrote in the cut was refused.
    const stale = await grid.text(`/api/logs/${done.attempts[0].logs[0]}?follow=1`, 10_000)
    check(stale === `started-${done.attempts[0].id}\n`, `the stale attempt's log is ${JSON.stringify(stale.slice(0, 200))}, expected only its first line`)
    await grid.connected(3, 2, 20_000)
    notes.push(`cut ${victimName} (${victimHost.addr}); re-run on ${grid.workerHost.get(done.attempts[1].worker)}; late reports refused`)
  } finally {
    if (!healed) heal(victimHost)
  }
}

function diff (a: Build, b: Build): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof Build>) {
    if (!isDeepStrictEqual(a[key], b[key])) out[key] = { before: a[key], after: b[key] }
  }
  return out
}

// ---------------------------------------------------------------------------------------------------------
// 2: a store host killed mid-upload.

export const UPLOAD_BYTES = 160 * 1024 * 1024
/** A put that outlives a store's death by this much is stuck (libp2p's request timeouts here are 10 to 30 s). */
const PUT_PATIENCE_MS = 60_000

async function dirBytes (dir: string): Promise<number> {
  let total = 0
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size
  }
  return total
}

async function writeRandomFile (path: string, bytes: number): Promise<string> {
  const hash = createHash('sha256')
  const out = createWriteStream(path)
  for (let left = bytes; left > 0; left -= 4 * 1024 * 1024) {
    const chunk = randomBytes(Math.min(left, 4 * 1024 * 1024))
    hash.update(chunk)
    if (!out.write(chunk)) await new Promise<void>(resolve => out.once('drain', () => resolve()))
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => err ? reject(err) : resolve()))
  return hash.digest('hex')
}

async function sha256File (path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

export async function storeKilledMidUpload (grid: HostGrid, { times, notes }: Outcome): Promise<void> {
  const victimName: HostName = 'store2'
  const victimHost = grid.host(victimName)
  const file = join(grid.dir, 'upload.bin')
  const sha256 = await writeRandomFile(file, UPLOAD_BYTES)
  const storeDir = join(grid.dir, victimName)
  const before = await dirBytes(storeDir)
  const put = new GridProcess(grid.host('tail'), ['put', '--join', grid.joinFile, file])
  notes.push(`${UPLOAD_BYTES / 2 ** 20} MiB put from the tail host; ${victimName} cut and SIGKILLed mid-upload`)
  let healed = false
  try {
    // Mid-upload: the victim has taken a good part of it, and the put has not ended.
    await waitFor(`${victimName} to take 32 MiB of the upload`, async () => {
      if (put.exitCode !== undefined) throw new Error(`grid put ended (${put.exitCode}) before the store was killed: ${put.lastWords()}`)
      return await dirBytes(storeDir) - before > 32 * 1024 * 1024
    }, 60_000, 100)
    const killAt = Date.now()
    cut(victimHost)
    grid.process(victimName).signal('SIGKILL')
    await grid.process(victimName).exited

    const dropped = waitFor('the coordinator to drop the dead store', async () => (await grid.capacity()).stores === 1, 30_000, 100)
      .then(() => since(killAt), () => undefined)
    const code = await Promise.race([put.exited, sleep(PUT_PATIENCE_MS).then(() => 'stuck' as const)])
    const putMs = since(killAt)
    times.push({ label: code === 0 ? 'detect (put completed on the other replica)' : 'put ended', ms: code === 'stuck' ? undefined : putMs, note: code === 'stuck' ? `still running after ${PUT_PATIENCE_MS / 1000} s` : undefined })
    const droppedMs = await dropped
    times.push({ label: 'coordinator dropped the store', ms: droppedMs, note: droppedMs === undefined ? 'not within 30 s' : undefined })

    // With the store still gone: the content must come whole from the replica that took it.
    let problem: string | undefined
    if (code === 0) {
      const cid = put.stdout().trim()
      notes.push(`put: ${put.lastWords(1)}`)
      const out = join(grid.dir, 'download.bin')
      const got = await gridRun(grid.host('tail'), ['get', '--join', grid.joinFile, cid, '-o', out], 120_000)
      if (got.code !== 0) problem = `grid get ${cid} with ${victimName} gone exited ${got.code}: ${got.stderr.trim().split('\n').at(-1)}`
      else if (await sha256File(out) !== sha256) problem = `grid get ${cid} with ${victimName} gone gave different bytes`
      else notes.push(`grid get with ${victimName} gone: identical bytes`)
    }

    // The host comes back: link up, store restarted on its data dir.
    const healAt = Date.now()
    heal(victimHost)
    healed = true
    await grid.startStore(victimName)
    await grid.connected(3, 2, 30_000)
    times.push({ label: 'heal (store back, 2 stores)', ms: since(healAt) })

    if (code !== 0) {
      problem = `grid put with ${victimName} killed mid-upload ${typeof code === 'number' ? `exited ${code}: ${put.lastWords(2)}` : `was still running ${PUT_PATIENCE_MS / 1000} s after the kill`}`
      if (code === 'stuck') {
        const after = await Promise.race([put.exited, sleep(15_000).then(() => undefined)])
        problem += after === undefined ? ', and 15 s after the store host came back' : `; once the store host came back it exited ${after}: ${put.lastWords(1)}`
      }
    }
    if (problem !== undefined) throw new Error(problem)
  } finally {
    put.signal('SIGKILL')
    if (!healed) {
      heal(victimHost)
      if (grid.processes.get(victimName)?.exitCode !== undefined) await grid.startStore(victimName).catch(() => {})
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// 3: the coordinator's host restarted.

export async function coordinatorRestarted (grid: HostGrid, { times, notes }: Outcome): Promise<void> {
  // Both cut-pool workers busy and one build queued behind them, so the queue and running builds cross the
  // restart: one still runs when its worker reconnects (it claims it), one ends while the coordinator is away
  // (its worker holds the result and claims it on reconnecting).
  const longRun = await grid.submit({ name: 'running across the restart', requires: { pool: 'cut' }, steps: [{ run: 'echo running; sleep 15; echo done' }] })
  const shortRun = await grid.submit({ name: 'ending while the coordinator is away', requires: { pool: 'cut' }, steps: [{ run: 'echo running; sleep 2; echo done' }] })
  for (const id of [longRun, shortRun]) await grid.until(id, 'running', b => b.status === 'running', 20_000)
  await waitFor('both builds\' first output', async () => {
    for (const id of [longRun, shortRun]) if (!(await grid.text(`/api/builds/${id}/log`)).includes('running')) return false
    return true
  }, 15_000)
  const queued = await grid.submit({ name: 'queued across the restart', requires: { pool: 'cut' }, steps: [{ run: 'echo queued-ran' }] })
  check((await grid.build(queued)).status === 'queued', 'the third build did not wait in the queue')
  const workers = (['w1', 'w2', 'w3'] as const).map(name => ({ name, p: grid.process(name), lost: grid.process(name).count(/lost the coordinator/) }))
  const coord = grid.process('coord')
  const host = grid.host('coord')

  // The host goes down: its link and its process with it, without a word to anyone.
  const downAt = Date.now()
  cut(host)
  coord.signal('SIGKILL')
  await coord.exited
  let healed = false
  try {
    await waitFor('every worker to notice the coordinator is gone', () => workers.every(w => w.p.count(/lost the coordinator/) > w.lost), 30_000)
    times.push({ label: 'detect (all 3 workers noticed)', ms: since(downAt) })
    await sleep(Math.max(0, 3_000 - since(downAt)))
    const upAt = Date.now()
    heal(host)
    healed = true
    await grid.startCoordinator()
    times.push({ label: 'coordinator up again', ms: since(upAt) })
    await grid.connected(3, 2, 45_000)
    times.push({ label: 'heal (3 workers, 2 stores back)', ms: since(upAt) })
    // Every check runs, so a failure lists all that went wrong, not just the first.
    const problems: string[] = []
    const attempts = (b: Build): string => b.attempts.map(a => `${a.id} on ${grid.workerHost.get(a.worker)} ${a.outcome ?? 'running'}`).join(', ')
    const long = await grid.finished(longRun, 40_000)
    if (long.status !== 'succeeded' || long.attempts.length !== 1) problems.push(`the build still running at the reconnect was not reclaimed: ${long.status}, attempts ${attempts(long)}`)
    const short = await grid.finished(shortRun, 40_000)
    if (short.status !== 'succeeded' || short.attempts.length !== 1) problems.push(`the build that ended while the coordinator was away was re-run instead of its result being claimed: ${short.status}, attempts ${attempts(short)}`)
    const q = await grid.finished(queued, 40_000)
    times.push({ label: 'queued build finished', ms: since(upAt) })
    const qLog = await grid.text(`/api/builds/${queued}/log`, 10_000).catch(err => `(${err.message})`)
    if (q.status !== 'succeeded') problems.push(`the build queued across the restart ended ${q.status}`)
    else if (!qLog.includes('queued-ran')) problems.push(`the build queued across the restart ran without a log (${JSON.stringify(qLog.slice(0, 120))}); its worker said: ${grid.process(grid.workerHost.get(q.attempts[0].worker)!).lastWords(1)}`)
    if (problems.length > 0) throw new Error(problems.join('; '))
    notes.push('coordinator SIGKILLed with its link cut, back after 3 s with the same data dir and address; a running build and one that ended meanwhile claimed, the queued build ran')
  } finally {
    if (!healed) heal(host)
    if (grid.processes.get('coord')?.exitCode !== undefined) await grid.startCoordinator().catch(() => {})
  }
}

// The grid's side of the Buildbot comparison, measured as bench/peers/buildbot.ts measures Buildbot: `grid up
// --workers 0` (coordinator, store and HTTP API in one process, as Buildbot's master holds its DB and files) and
// 4 workers, each its own process (bench/worker-pool.ts with one worker), all on loopback:
//   - trivial builds/s (`true`), submitted over HTTP 16 at a time, from the first submit to the last finish;
//   - a 64 MiB artifact push, worker to store: from the step's end to the build's end, by the coordinator's clock;
//   - log lines/s of the same chatty step: its start to its end (output stored and the log sealed), every byte checked.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { BenchError, Children, cpuMsOf, until } from './processes.ts'
import { serviceFigures } from './sizes.ts'
import type { PeerSizes, ServiceFigures } from './sizes.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const GRID_BIN = join(ROOT, 'node/bin/grid.js')
const POLL_MS = 50
const START_TIMEOUT_MS = 60_000

/** The same 80-byte line Buildbot's chatty step prints (79 characters and the newline). */
export const CHATTY_LINE = 'x'.repeat(79)

export async function benchGrid (dir: string, children: Children, sizes: PeerSizes, report: (line: string) => void): Promise<ServiceFigures> {
  const data = join(dir, 'coordinator')
  const up = children.spawn(process.execPath, [GRID_BIN, 'up', '--workers', '0', '--data', data, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'], { cwd: ROOT })
  const url = (await up.line(/^web: (http:\S+)$/m, START_TIMEOUT_MS))[1]
  await up.line(/^join: /m, START_TIMEOUT_MS)
  const token = (await readFile(join(data, 'api-token'), 'utf8')).trim()
  const pools = []
  for (let i = 0; i < sizes.workers; i++) {
    const pool = children.spawn(process.execPath, [join(ROOT, 'bench/worker-pool.ts'), join(data, 'join'), '1', 'pool=peers', join(dir, `worker-${i}`)], { cwd: ROOT })
    await pool.line(/^ready 1$/m, START_TIMEOUT_MS)
    pools.push(pool)
  }
  const submit = async (job: Record<string, unknown>): Promise<string> => {
    const res = await fetch(`${url}/api/builds`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ requires: { pool: 'peers' }, ...job }) })
    if (res.status !== 201) throw new BenchError(`submit answered ${res.status}: ${await res.text()}`)
    return (await res.json()).id
  }
  const one = async (job: Record<string, unknown>): Promise<Build> => {
    const id = await submit(job)
    const build = await until(`build ${id}`, sizes.phaseTimeoutMs, POLL_MS, async () => {
      const b = await (await fetch(`${url}/api/builds/${id}`)).json() as Build
      return FINISHED.has(b.status) ? b : undefined
    })
    if (build.status !== 'succeeded') throw new BenchError(`grid build ${id} ended ${build.status}`)
    return build
  }
  const ms = (from: string | undefined, to: string | undefined): number => Date.parse(to ?? '') - Date.parse(from ?? '')

  report('bench:peers: grid warm-up')
  await one({ steps: [{ run: 'true' }] })

  report(`bench:peers: grid dispatch, ${sizes.gridBuilds} trivial builds through ${sizes.workers} workers`)
  const cpuBefore = await cpuMsOf(up.pid)
  const began = performance.now()
  const ids: string[] = []
  for (let i = 0; i < sizes.gridBuilds; i += 16) {
    ids.push(...await Promise.all(Array.from({ length: Math.min(16, sizes.gridBuilds - i) }, async () => await submit({ steps: [{ run: 'true' }] }))))
  }
  // The cheap capacity figure, not the builds: reading hundreds of builds would load the coordinator we measure.
  await until(`${sizes.gridBuilds} grid builds`, sizes.phaseTimeoutMs, 10, async () => {
    const capacity = await (await fetch(`${url}/api/capacity`)).json()
    return capacity.queued === 0 && capacity.busy === 0 ? true : undefined
  })
  const seconds = (performance.now() - began) / 1000
  const cpuMs = await cpuMsOf(up.pid) - cpuBefore
  const recent = await (await fetch(`${url}/api/builds?limit=${sizes.gridBuilds}`)).json() as Build[]
  const ok = recent.filter(b => ids.includes(b.id) && b.status === 'succeeded').length
  if (ok !== sizes.gridBuilds) throw new BenchError(`${sizes.gridBuilds - ok} grid dispatch builds did not succeed`)

  report(`bench:peers: grid artifact push of ${sizes.uploadBytes / 2 ** 20} MiB, ${sizes.uploadRepeats} times`)
  // Fresh random bytes every build: the store already holding the blocks would make the push almost free.
  const upload = { steps: [{ name: 'make', run: `head -c ${sizes.uploadBytes} /dev/urandom > blob` }], artifacts: ['blob'] }
  await one(upload)
  const uploadMbps: number[] = []
  for (let i = 0; i < sizes.uploadRepeats; i++) {
    const build = await one(upload)
    if (build.artifacts[0]?.size !== sizes.uploadBytes) throw new BenchError(`grid artifact of ${build.artifacts[0]?.size} bytes, expected ${sizes.uploadBytes}`)
    uploadMbps.push(sizes.uploadBytes / 1e6 / (ms(build.steps[0].finished, build.finished) / 1000))
  }

  report(`bench:peers: grid chatty step, ${sizes.chattyLines} lines, ${sizes.chattyRepeats} times`)
  const chatty = { steps: [{ name: 'chatty', run: `yes ${CHATTY_LINE} | head -n ${sizes.chattyLines}` }] }
  await one(chatty)
  const linesPerSecond: number[] = []
  for (let i = 0; i < sizes.chattyRepeats; i++) {
    const build = await one(chatty)
    const step = build.steps[0]
    const res = await fetch(`${url}/api/logs/${step.log}`)
    let bytes = 0
    const reader = res.body!.getReader()
    for (let r = await reader.read(); !r.done; r = await reader.read()) bytes += r.value.byteLength
    if (bytes !== sizes.chattyLines * 80) throw new BenchError(`the grid kept ${bytes} of ${sizes.chattyLines * 80} log bytes`)
    linesPerSecond.push(sizes.chattyLines / (ms(step.started, step.finished) / 1000))
  }

  for (const p of pools) await children.stop(p)
  await children.stop(up)
  return serviceFigures(sizes.gridBuilds, seconds, cpuMs, uploadMbps, linesPerSecond)
}

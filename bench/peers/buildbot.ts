// Buildbot 3.7's side of the peer bench: a master (buildbot-master.cfg, SQLite) and 4 workers, each its own process
// on loopback, measured the way bench/peers/grid.ts measures the grid:
//   - trivial builds/s (`true`), forced 16 at a time, from the first force to the last build complete;
//   - a 64 MiB FileUpload, worker to master, timed by the master's clock around the step;
//   - log lines/s of a step printing 80-byte lines, timed the same way, every line checked into the DB.
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BenchError, Children, cpuMsOf, freePort, until } from './processes.ts'
import type { Child } from './processes.ts'
import { serviceFigures } from './sizes.ts'
import type { PeerSizes, ServiceFigures } from './sizes.ts'

const MASTER_CFG = join(import.meta.dirname, 'buildbot-master.cfg')
/** Buildbot's master takes some seconds to create its DB and start; workers a few more to log in. */
const START_TIMEOUT_MS = 120_000
/** Polling the master for results: a light DB read every so often, so the polling does not load what we measure. */
const POLL_MS = 200

export async function benchBuildbot (dir: string, children: Children, sizes: PeerSizes, report: (line: string) => void): Promise<ServiceFigures & { version?: string }> {
  const masterDir = join(dir, 'master')
  const stamps = join(dir, 'stamps')
  const uploads = join(dir, 'uploads')
  await mkdir(stamps, { recursive: true })
  await mkdir(uploads, { recursive: true })
  const [pbPort, hookPort] = [await freePort(), await freePort()]
  report('bench:peers: buildbot create-master')
  await children.run('buildbot', ['create-master', '--relocatable', masterDir], START_TIMEOUT_MS)
  await copyFile(MASTER_CFG, join(masterDir, 'master.cfg'))
  await writeFile(join(masterDir, 'bench.json'), JSON.stringify({
    workers: sizes.workers, pbPort, hookPort, stamps, uploads, uploadBytes: sizes.uploadBytes, chattyLines: sizes.chattyLines
  }))
  const master = children.spawn('buildbot', ['start', '--nodaemon', masterDir])
  const hook = `http://127.0.0.1:${hookPort}`
  const get = async (path: string): Promise<any> => {
    const res = await fetch(hook + path)
    if (!res.ok) throw new BenchError(`buildbot hook ${path} answered ${res.status}: ${await res.text()}`)
    return await res.json()
  }
  const force = async (builder: string): Promise<void> => {
    const res = await fetch(hook, { method: 'POST', body: JSON.stringify({ builder }) })
    if (!res.ok) throw new BenchError(`buildbot force ${builder} answered ${res.status}: ${await res.text()}`)
  }
  await until('the Buildbot master to start', START_TIMEOUT_MS, 250, async () => {
    if (master.proc.exitCode !== null) throw new BenchError(`buildbot master exited: ${master.out().slice(-1500)} ${await readFile(join(masterDir, 'twistd.log'), 'utf8').catch(() => '')}`.slice(-3000))
    return await get('/workers').then(() => true, () => undefined)
  })
  const workers: Child[] = []
  for (let i = 0; i < sizes.workers; i++) {
    const workerDir = join(dir, `w${i}`)
    await children.run('buildbot-worker', ['create-worker', '--relocatable', workerDir, `127.0.0.1:${pbPort}`, `w${i}`, 'bench'], START_TIMEOUT_MS)
    workers.push(children.spawn('buildbot-worker', ['start', '--nodaemon', workerDir]))
  }
  await until(`${sizes.workers} Buildbot workers to connect`, START_TIMEOUT_MS, 250, async () => (await get('/workers')).connected === sizes.workers ? true : undefined)

  /** Force one build and wait for it: the builds of the upload and chatty figures run one at a time. */
  const one = async (builder: string): Promise<any> => {
    const before = (await get(`/builds?builder=${builder}`)).total
    await force(builder)
    const number = before + 1
    const build = await until(`${builder} build ${number}`, sizes.phaseTimeoutMs, POLL_MS, async () => {
      const b = await get(`/build?builder=${builder}&number=${number}`)
      return b.complete === true ? b : undefined
    })
    if (build.results !== 0) throw new BenchError(`buildbot ${builder} build ${number} ended with results ${build.results}: ${JSON.stringify(build.steps)}`)
    return { ...build, number }
  }
  const stamped = async (builder: string, number: number): Promise<number> => {
    const at = async (label: string): Promise<number> => Number(await readFile(join(stamps, `${builder}-${number}-${label}`), 'utf8'))
    return (await at('after') - await at('before')) * 1000
  }

  // A warm-up build per builder: the first build of a builder pays for things later ones do not.
  report('bench:peers: buildbot warm-up')
  await one('trivial')

  report(`bench:peers: buildbot dispatch, ${sizes.buildbotBuilds} trivial builds through ${sizes.workers} workers`)
  const done = (await get('/builds?builder=trivial')).complete
  const cpuBefore = await cpuMsOf(master.pid)
  const began = performance.now()
  for (let i = 0; i < sizes.buildbotBuilds; i += 16) {
    await Promise.all(Array.from({ length: Math.min(16, sizes.buildbotBuilds - i) }, async () => { await force('trivial') }))
  }
  const trivial = await until(`${sizes.buildbotBuilds} Buildbot builds`, sizes.phaseTimeoutMs, POLL_MS, async () => {
    const b = await get('/builds?builder=trivial')
    return b.complete - done >= sizes.buildbotBuilds ? b : undefined
  })
  const seconds = (performance.now() - began) / 1000
  const masterCpuMs = await cpuMsOf(master.pid) - cpuBefore
  if (trivial.succeeded !== trivial.complete) throw new BenchError(`${trivial.complete - trivial.succeeded} Buildbot trivial builds did not succeed`)

  report(`bench:peers: buildbot FileUpload of ${sizes.uploadBytes / 2 ** 20} MiB, ${sizes.uploadRepeats} times`)
  await one('upload')
  const uploadMbps: number[] = []
  for (let i = 0; i < sizes.uploadRepeats; i++) {
    const build = await one('upload')
    const uploaded = join(uploads, `blob-${build.number}`)
    const size = (await stat(uploaded)).size
    if (size !== sizes.uploadBytes) throw new BenchError(`buildbot uploaded ${size} of ${sizes.uploadBytes} bytes`)
    uploadMbps.push(sizes.uploadBytes / 1e6 / (await stamped('upload', build.number) / 1000))
    await rm(uploaded, { force: true })
  }
  for (const f of await readdir(uploads)) await rm(join(uploads, f), { force: true })

  report(`bench:peers: buildbot chatty step, ${sizes.chattyLines} lines, ${sizes.chattyRepeats} times`)
  await one('chatty')
  const linesPerSecond: number[] = []
  for (let i = 0; i < sizes.chattyRepeats; i++) {
    const build = await one('chatty')
    const step = build.steps.find((s: any) => s.name === 'chatty')
    // The stdio log holds Buildbot's own header lines (command, dir, env) before the step's.
    if (step === undefined || (step.logs.stdio ?? 0) < sizes.chattyLines) throw new BenchError(`buildbot kept ${step?.logs.stdio} of ${sizes.chattyLines} lines`)
    linesPerSecond.push(sizes.chattyLines / (await stamped('chatty', build.number) / 1000))
  }

  for (const w of workers) await children.stop(w)
  await children.stop(master)
  return serviceFigures(sizes.buildbotBuilds, seconds, masterCpuMs, uploadMbps, linesPerSecond)
}

// `npm run bench:peers` (issue #9): the grid beside Buildbot 3.7 and Helia, in the same run on the same machine.
// Installs what it lacks (Debian's buildbot and buildbot-worker with apt-get; Helia with npm ci into
// bench/peers/helia/node_modules), runs every peer and every grid role as its own process on loopback, prints a
// table of each figure, the peer's figure and their ratio, and writes bench/peers-results.json. Every loop is
// bounded, every phase timed out, and every child process group is killed on the way out, failure and signals too.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, release, tmpdir, totalmem, type } from 'node:os'
import { join } from 'node:path'
import { benchBuildbot } from './buildbot.ts'
import { benchGrid } from './grid.ts'
import { ensureBuildbot, ensureHelia, InstallError } from './install.ts'
import { Children } from './processes.ts'
import { RUN_TIMEOUT_MS, SIZES } from './sizes.ts'
import type { TransferFigures } from './sizes.ts'
import { benchGridTransfer, benchHelia, writeRandomFile } from './transfer.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const COMMAND = 'npm run bench:peers'

interface Row { figure: string, grid: number, peer: number, unit: string, peerName: string, better: 'higher' | 'lower', note?: string }
interface Cannot { peer: string, what: string, why: string }

/** What a peer cannot do at all, so there is no figure to set beside ours. */
const CANNOT: Cannot[] = [
  { peer: 'Buildbot 3.7', what: 'tail a live log from a third peer', why: 'every log line goes worker to master to its DB; readers get it only from the master (web UI, REST), never from another peer' },
  { peer: 'Buildbot 3.7', what: 'content-addressed, verified artifacts', why: 'FileUpload writes bytes to a master path; no hash, no id, nothing checks them on receipt or later' },
  { peer: 'Buildbot 3.7', what: 'a worker with no configured name', why: 'each worker needs a name and password in master.cfg before it can connect' },
  { peer: 'Helia 7', what: 'live logs', why: 'content gets a CID only once it is complete; there is no append-only log a peer can tail while it grows' },
  { peer: 'Helia 7', what: 'run builds', why: 'a content store only: no jobs, workers or scheduling (its figures are set beside grid put / get)' }
]

const children = new Children()
const report = (line: string): void => { process.stderr.write(line + '\n') }
let dir: string | undefined
/** Set once a signal or the deadline stops the run: errors from phases cut short are expected, not news. */
let stopping = false

async function cleanUp (): Promise<void> {
  await children.stopAll()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true }).catch(() => {})
}

process.on('exit', () => { children.killAllNow() })
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    stopping = true
    report(`bench:peers: ${signal}, stopping every child process`)
    cleanUp().finally(() => process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1)))
  })
}
const deadline = setTimeout(() => {
  stopping = true
  report(`bench:peers: the whole run took longer than ${RUN_TIMEOUT_MS / 60_000} minutes; stopping`)
  cleanUp().finally(() => process.exit(1))
}, RUN_TIMEOUT_MS)
deadline.unref()

async function osName (): Promise<string> {
  const release_ = await readFile('/etc/os-release', 'utf8').catch(() => '')
  return `${/^PRETTY_NAME="?([^"\n]*)"?$/m.exec(release_)?.[1] ?? type()} (${type()} ${release()})`
}

const mb = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1000)
const mib = (bytes: number): number => bytes / 2 ** 20

async function main (): Promise<void> {
  const began = performance.now()
  let buildbotVersion: string
  let heliaVersion: string
  try {
    buildbotVersion = ensureBuildbot(report)
    heliaVersion = ensureHelia(report)
  } catch (err: any) {
    if (err instanceof InstallError) {
      process.stderr.write(err.message + '\n')
      process.exit(1)
    }
    throw err
  }
  dir = await mkdtemp(join(tmpdir(), 'grid-peers-'))
  const rows: Row[] = []
  const bb = `Buildbot ${buildbotVersion}`

  const grid = await benchGrid(join(dir, 'grid'), children, SIZES, report)
  const buildbot = await benchBuildbot(join(dir, 'buildbot'), children, SIZES, report)
  await rm(join(dir, 'buildbot'), { recursive: true, force: true })
  await rm(join(dir, 'grid'), { recursive: true, force: true })
  rows.push({
    figure: `trivial builds/s through ${SIZES.workers} worker processes`, grid: grid.dispatch.perSecond, peer: buildbot.dispatch.perSecond, unit: 'builds/s', peerName: bb, better: 'higher',
    note: `\`true\` via /bin/sh; grid ${grid.dispatch.builds} builds over HTTP, Buildbot ${buildbot.dispatch.builds} through its ForceScheduler; 16 in flight`
  })
  rows.push({
    figure: 'coordinator / master CPU per trivial build', grid: grid.dispatch.cpuMsPerBuild, peer: buildbot.dispatch.cpuMsPerBuild, unit: 'ms', peerName: bb, better: 'lower',
    note: 'grid: `grid up` process (coordinator, store, HTTP); Buildbot: the master process'
  })
  rows.push({
    figure: `${mib(SIZES.uploadBytes)} MiB from a worker: artifact push vs FileUpload`, grid: grid.uploadMBps, peer: buildbot.uploadMBps, unit: 'MB/s', peerName: bb, better: 'higher',
    note: `median of ${SIZES.uploadRepeats}; grid: step end to build end (hash, block-missing, put, report); Buildbot: the FileUpload step by the master's clock`
  })
  rows.push({
    figure: 'log lines/s of a chatty step (80-byte lines)', grid: grid.logLinesPerSecond, peer: buildbot.logLinesPerSecond, unit: 'lines/s', peerName: bb, better: 'higher',
    note: `\`yes | head -n ${SIZES.chattyLines}\`, median of ${SIZES.chattyRepeats}; step start to end, every line stored (grid: sealed into a CID too)`
  })

  report(`bench:peers: writing a ${mib(SIZES.transferBytes)} MiB random file`)
  const file = join(dir, 'transfer.bin')
  const sha256 = await writeRandomFile(file, SIZES.transferBytes)
  report('bench:peers: grid put / grid get')
  const ours = await benchGridTransfer(dir, children, SIZES, file, sha256)
  const helia: TransferFigures[] = []
  for (const chunk of SIZES.heliaChunks) {
    report(`bench:peers: Helia add / fetch, ${chunk / 1024} KiB chunks`)
    helia.push(await benchHelia(dir, children, SIZES, file, sha256, chunk))
  }
  const size = `${mib(SIZES.transferBytes) >= 1024 ? `${mib(SIZES.transferBytes) / 1024} GiB` : `${mib(SIZES.transferBytes)} MiB`}`
  for (const h of helia) {
    const name = `${h.label.replace(/^Helia/, `Helia ${heliaVersion}`)}`
    rows.push({
      figure: `${size} fetched by another process, verified`, grid: mb(SIZES.transferBytes, ours.fetchMs), peer: mb(SIZES.transferBytes, h.fetchMs), unit: 'MB/s', peerName: name, better: 'higher',
      note: `\`grid get\` vs bitswap fetch, each timed spawn to exit; Helia's first byte after ${((h.firstByteMs ?? 0) / 1000).toFixed(1)} s, its fetch alone ${mb(SIZES.transferBytes, h.fetchOnlyMs ?? h.fetchMs).toFixed(0)} MB/s`
    })
    rows.push({
      figure: `${size} file to a verified copy in another process`, grid: mb(SIZES.transferBytes, ours.addMs + ours.fetchMs), peer: mb(SIZES.transferBytes, h.addMs + h.fetchMs), unit: 'MB/s', peerName: name, better: 'higher',
      note: `grid put (to a store process) + get, ${((ours.addMs + ours.fetchMs) / 1000).toFixed(1)} s; Helia add (local) + fetch, ${((h.addMs + h.fetchMs) / 1000).toFixed(1)} s`
    })
    // Anonymous memory on both sides: the store's RSS also counts LevelDB's memory-mapped table files (page cache the
    // kernel drops under pressure), while Helia's file blockstore reads through the page cache, which RSS never shows.
    rows.push({
      figure: 'serving process peak anonymous memory (put/add, then serving the fetch)', grid: mib(ours.serverPeakAnon), peer: mib(h.serverPeakAnon), unit: 'MiB', peerName: name, better: 'lower',
      note: `peak RSS (VmHWM): grid store ${mib(ours.serverPeakRss).toFixed(0)} MiB counting LevelDB's mapped tables, Helia ${mib(h.serverPeakRss).toFixed(0)} MiB`
    })
    rows.push({ figure: 'fetching process peak RSS', grid: mib(ours.fetcherPeakRss), peer: mib(h.fetcherPeakRss), unit: 'MiB', peerName: name, better: 'lower' })
  }

  const seconds = (performance.now() - began) / 1000
  const machine = { cores: availableParallelism(), cpu: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, os: await osName() }
  const date = new Date().toISOString()
  const fmt = (n: number): string => n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)
  const lines = [
    `nameless-grid against its peers, ${date}, ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.os}`,
    `command: ${COMMAND}; ${bb}, Helia ${heliaVersion}; took ${seconds.toFixed(0)} s`,
    '',
    '| figure | grid | peer | grid ÷ peer | better | note |',
    '|---|---|---|---|---|---|',
    ...rows.map(r => `| ${r.figure} | ${fmt(r.grid)} ${r.unit} | ${r.peerName}: ${fmt(r.peer)} ${r.unit} | ${fmt(r.grid / r.peer)}x | ${r.better} | ${r.note ?? ''} |`),
    '',
    '| peer | cannot | why |',
    '|---|---|---|',
    ...CANNOT.map(c => `| ${c.peer} | ${c.what} | ${c.why} |`)
  ]
  process.stdout.write(lines.join('\n') + '\n')
  await writeFile(join(ROOT, 'bench/peers-results.json'), JSON.stringify({
    date, command: COMMAND, seconds: Math.round(seconds), machine,
    peers: { buildbot: buildbotVersion, helia: heliaVersion, heliaChunks: SIZES.heliaChunks },
    sizes: SIZES, quick: process.env.GRID_PEERS_QUICK === '1',
    rows: rows.map(r => ({ ...r, ratio: r.grid / r.peer })),
    samples: { grid, buildbot, transfer: { grid: ours, helia } },
    cannot: CANNOT
  }, null, 2) + '\n')
}

try {
  await main()
  await cleanUp()
  process.exit(0)
} catch (err: any) {
  if (stopping) await new Promise(() => {}) // the signal's handler cleans up and exits
  process.stderr.write(`bench:peers: ${err?.message ?? err}\n`)
  await cleanUp()
  process.exit(1)
}

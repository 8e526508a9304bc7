// The `grid` command. Every role command takes --data and --listen; joining commands take --join.
// Any bad argument, unreachable grid or bad input ends with one line on stderr and a non-zero exit.
import { readFile, rename, rm, stat } from 'node:fs/promises'
import { Stats, createWriteStream } from 'node:fs'
import type { WriteStream } from 'node:fs'
import { createHash } from 'node:crypto'
import { create as tarCreate } from 'tar'
import type { ReadEntry } from 'tar'
import { join } from 'node:path'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { DEFAULT_COORDINATOR_PORT, DEFAULT_DRAIN_TIMEOUT_S } from '../net/constants.ts'
import { createHost } from '../net/host.ts'
import type { GridHost, SecretHolder } from '../net/host.ts'
import { readJoinCode } from '../net/join-code.ts'
import type { JoinCode } from '../net/join-code.ts'
import { JOIN_FILE, TOKEN_FILE, WEB_URL_FILE, startCoordinatorNode, startStoreNode, startWorkerNode } from './roles.ts'
import type { WorkerNode } from './roles.ts'
import { detectCapabilities, parseCapability } from '../worker/capabilities.ts'
import { askCoordinator } from '../protocols/builds.ts'
import type { BuildsReply, BuildsRequest } from '../protocols/builds.ts'
import type { Build } from '../grid/build.ts'
import { FINISHED, ID_PATTERN } from '../grid/build.ts'
import { InvalidJobError, parseJob } from '../grid/job.ts'
import { MAX_SLOTS } from '../grid/constants.ts'
import { LogReader } from '../client/log-reader.ts'
import { buildLog } from '../client/build-log.ts'
import { ContentChangedError, parseCid } from '../grid/content.ts'
import { contentInfo, nameOf, putPlaced, putPool, readContent, readFileBlocks } from '../client/content-client.ts'
import { rankFor } from '../grid/placement.ts'
import { DEFAULT_REPLICAS } from '../grid/placement.ts'
import { counted, transferProgress } from './progress.ts'
import { MAX_REPLICAS } from '../grid/constants.ts'
import { parseHttpAddress } from '../web/server.ts'
import { GridError, isGridError } from '../net/errors.ts'
import { PeerUnreachableError } from '../net/dial.ts'

const DEFAULT_DATA = './.grid'
const DEFAULT_HTTP = '127.0.0.1:7341'
/** How often a CLI follower asks the coordinator whether the build moved on. */
const FOLLOW_POLL_MS = 250
/** Where `grid worker` listens unless told: any interface, a free port (it serves its cache there). */
const WORKER_DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/0'
/** A follower (`grid tail BUILD`, `submit --follow`) waits this long for a coordinator that went away (a restart). */
const FOLLOW_PATIENCE_MS = 120_000

/** A failure the user caused or can fix: printed as one line, no stack. */
class UsageError extends GridError {
  name = 'UsageError'
}

const log = (line: string): void => { process.stderr.write(`grid: ${line}\n`) }

function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

function wholeNumber (min: number, max: number) {
  return (text: string): number => {
    const n = Number(text)
    if (!/^\d+$/.test(text) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`)
    return n
  }
}

function httpAddress (text: string): string {
  try {
    parseHttpAddress(text)
  } catch (err: any) {
    throw new InvalidArgumentError(err.message.replace(/^--http [^:]*: /, ''))
  }
  return text
}

/** `K=V` values of a repeatable flag; a bad one names `flag`, the option the user gave it with. */
function capabilities (texts: string[], flag = '--cap'): Record<string, string> {
  return Object.fromEntries(texts.map(text => parseCapability(text, flag)))
}

/** A repeatable --listen, each checked as a multiaddr here (a bad one is a flag error, not a failure to start). */
function listenAddress (allowNone: boolean) {
  return (text: string, previous: string[] | undefined): string[] => {
    if (!(allowNone && text === 'none')) {
      try {
        multiaddr(text)
      } catch {
        throw new InvalidArgumentError(`expected a multiaddr such as /ip4/0.0.0.0/tcp/0${allowNone ? ', or none' : ''}`)
      }
    }
    return collect(text, previous)
  }
}

const dataOption = (): Option => new Option('--data <dir>', 'where this node keeps its identity and state').default(DEFAULT_DATA)
const listenOption = (what: string, allowNone = false): Option => new Option('--listen <multiaddr>', `listen address, repeatable (${what})`).argParser(listenAddress(allowNone))
const joinOption = (): Option => new Option('--join <code-or-file>', 'the grid\'s join code, or a file holding it (DATA/join on the coordinator)').makeOptionMandatory()

const CLIENT_COMMANDS = ['submit', 'tail', 'put', 'get']
/** Taken by operator commands too, so every command takes --data and --listen; they only talk HTTP, from anywhere. */
const operatorListenOption = (): Option => listenOption('not used: this command only talks to the coordinator\'s HTTP API')

/**
 * The options every client command (submit, tail, put, get) takes: --join may be left out where DATA/join exists
 * (beside `grid up`, or with --data pointing at a grid's data dir); --listen makes its throwaway node listen.
 */
function clientOptions (command: Command): Command {
  return command
    .addOption(new Option('--join <code-or-file>', 'the grid\'s join code, or a file holding it (default: DATA/join when that file exists)'))
    .addOption(new Option('--data <dir>', 'a grid\'s data dir, where --join defaults to DATA/join; a client keeps nothing there').default(DEFAULT_DATA))
    .addOption(listenOption('none by default: a client only dials out'))
    .hook('preAction', async (_self, action) => {
      const opts = action.opts()
      clientListen = opts.listen ?? []
      if (opts.join !== undefined) return
      const file = join(opts.data, JOIN_FILE)
      if (!(await stat(file).catch(() => undefined))?.isFile()) throw new UsageError(`give --join CODE_OR_FILE (there is no ${file} to default to)`)
      action.setOptionValue('join', file)
    })
}

/** Stop on SIGINT/SIGTERM, cleanly the first time, at once the second. */
function stopOnSignal (stop: () => Promise<void>): void {
  let stopping = false
  const onSignal = (signal: string): void => {
    if (stopping) process.exit(130)
    stopping = true
    log(`${signal}: stopping`)
    stop().then(() => process.exit(0), err => { log(`stopping failed: ${err.message}`); process.exit(1) })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

/** One worker node per data dir (each dir holds that worker's identity). */
async function startWorkers (dataDirs: string[], code: JoinCode, caps: string[], slots: number, listen: string[] = [], secret?: SecretHolder): Promise<WorkerNode[]> {
  const detected = { ...await detectCapabilities(), ...capabilities(caps) }
  const workers: WorkerNode[] = []
  for (const dataDir of dataDirs) workers.push(await startWorkerNode({ dataDir, join: code, secret, listen, capabilities: detected, slots, log }))
  return workers
}

/** --listen of the client command being run: set before its action runs (one command per process). */
let clientListen: string[] = []

/** A throwaway node for a client command: fresh identity, listening only where --listen says. */
async function clientHost (code: JoinCode, listen: string[] = clientListen): Promise<GridHost> {
  return await createHost({ identity: await generateKeyPair('Ed25519'), secret: code.secret, listen, memory: code.addrs.some(a => a.toString().startsWith('/memory/')) })
}

/** The multiaddr code of `/p2p/PEER_ID`: left out where an address is shown (the peer ID says nothing to a user). */
const PEER_ID_CODE = 421

/** The coordinator a join code names could not be asked: the grid is down, or the code is not its current one. */
class GridUnreachableError extends GridError {
  name = 'GridUnreachableError'
  readonly status = 503
}

/**
 * One request to the grid's coordinator. Failing to reach it (a refused dial, a wrong secret, a reset stream, no
 * answer) is said in words a user can act on; the protocol's own message stays in `cause`.
 */
async function ask (host: GridHost, code: JoinCode, request: BuildsRequest): Promise<BuildsReply> {
  const coordinator = coordinatorAddress(code)
  try {
    return await askCoordinator(host, coordinator, request)
  } catch (err: any) {
    if (isGridError(err) && !(err instanceof PeerUnreachableError)) throw err
    const where = code.addrs.map(a => a.decapsulateCode(PEER_ID_CODE).toString()).join(', ')
    throw new GridUnreachableError(`cannot reach the grid at ${where}: is it running, and is the join code current?`, { cause: err })
  }
}

/** A directory as a tar with fixed times and owners, so an unchanged tree always has the same CID. */
/** Paths tarDirectory left out and said so, across its passes over the same tree. */
const leftOut = new Set<string>()

function tarDirectory (dir: string): AsyncIterable<Uint8Array> {
  // Only files, directories and links travel: reading a fifo would wait forever for a writer, and a socket or a
  // device means nothing on another machine. Each is said once (the tar is made twice: to name it, then to send it).
  const filter = (path: string, info: Stats | ReadEntry): boolean => {
    if (!(info instanceof Stats) || info.isFile() || info.isDirectory() || info.isSymbolicLink()) return true
    const full = join(dir, path)
    if (!leftOut.has(full)) {
      leftOut.add(full)
      log(`${full} is not a file, directory or link: left out`)
    }
    return false
  }
  return tarCreate({ cwd: dir, portable: true, mtime: new Date(0), gzip: false, filter }, ['.']) as unknown as AsyncIterable<Uint8Array>
}

/** The grid's stores, as the coordinator knows them now. */
async function gridStores (host: GridHost, code: JoinCode): Promise<Array<{ peer: string, addrs: string[] }>> {
  return (await gridPlacement(host, code)).stores
}

/** The grid's stores and how many of them each piece of content goes to (an older coordinator says nothing: 1). */
async function gridPlacement (host: GridHost, code: JoinCode): Promise<{ stores: Array<{ peer: string, addrs: string[] }>, replicas: number }> {
  const reply = await ask(host, code, { t: 'stores' })
  return reply.t === 'stores' ? { stores: reply.stores, replicas: reply.replicas ?? 1 } : { stores: [], replicas: 1 }
}

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }

/** `10G`, `500M`, `1.5T`, `4096` (bytes): powers of 1024, with an optional `B` or `iB`. */
export function parseSize (text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim())
  const bytes = m === null ? NaN : Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()])
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new InvalidArgumentError(`expected a size such as 500M, 10G or 1T (got ${JSON.stringify(text.slice(0, 40))})`)
  return bytes
}

function coordinatorAddress (code: JoinCode): { peer: string, addrs: string[] } {
  return { peer: code.coordinator.toString(), addrs: code.addrs.map(String) }
}

function expectBuild (reply: BuildsReply): Build {
  if (reply.t === 'error') throw new UsageError(reply.error)
  if (reply.t !== 'build') throw new UsageError(`coordinator answered ${reply.t}`)
  return reply.build
}

/**
 * Says on stderr, once each as the build's record changes, why a followed build waits, how each attempt ended and
 * why: a build queued for a worker nobody has, or re-queued after a lost one, is otherwise a silent terminal.
 */
function buildReporter (report: (line: string) => void): (build: Build) => void {
  let waiting: string | undefined
  const ended = new Set<string>()
  return build => {
    // How an attempt ended comes before why the build waits again after it.
    build.attempts.forEach((attempt, i) => {
      if (attempt.outcome === undefined || ended.has(attempt.id)) return
      ended.add(attempt.id)
      report(`attempt ${i + 1} ended ${attempt.outcome}${attempt.reason !== undefined ? `: ${attempt.reason}` : ''}`)
    })
    if (build.waiting !== undefined && build.waiting !== waiting) report(`waiting: ${build.waiting}`)
    waiting = build.waiting
  }
}

/**
 * Stream a build's log to stdout through any store that holds it, and why it waits or ended on stderr; resolves
 * with the finished build, once its last line says how it ended.
 */
async function followBuild (host: GridHost, code: JoinCode, id: string, from: number): Promise<Build> {
  const stores = await gridStores(host, code)
  const reportChanges = buildReporter(log)
  const logs = new LogReader({ host, stores: () => stores, report: log })
  // The coordinator may restart while we follow (its workers and stores come back by themselves): keep asking
  // for a while, say so once, and only then give up with one line.
  let unreachableSince: number | undefined
  const get = async (buildId: string): Promise<Build | undefined> => {
    while (true) {
      try {
        const reply = await ask(host, code, { t: 'get', id: buildId })
        if (unreachableSince !== undefined) log('coordinator reachable again; following')
        unreachableSince = undefined
        if (reply.t !== 'build') return undefined
        reportChanges(reply.build)
        return reply.build
      } catch (err: any) {
        if (!(err instanceof GridUnreachableError)) throw err
        if (unreachableSince === undefined) {
          unreachableSince = Date.now()
          log(`coordinator unreachable (${err.cause instanceof Error ? err.cause.message : err.message}); still following for up to ${FOLLOW_PATIENCE_MS / 1000} s`)
        }
        if (Date.now() - unreachableSince > FOLLOW_PATIENCE_MS) throw err
        await new Promise(resolve => setTimeout(resolve, FOLLOW_POLL_MS))
      }
    }
  }
  const view = {
    get,
    nextChange: async (_id: string, signal: AbortSignal) => {
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, FOLLOW_POLL_MS)
        signal.addEventListener('abort', () => { clearTimeout(timer); resolve() }, { once: true })
      })
    }
  }
  for await (const chunk of buildLog(view, logs, id, { from, follow: true })) {
    if (!process.stdout.write(chunk)) await new Promise(resolve => process.stdout.once('drain', resolve))
  }
  let build = await get(id)
  // The log ends when the last step's log is sealed; the final status may land a moment later.
  for (let i = 0; build !== undefined && !FINISHED.has(build.status) && i < 400; i++) {
    await new Promise(resolve => setTimeout(resolve, FOLLOW_POLL_MS))
    build = await get(id)
  }
  if (build === undefined) throw new UsageError(`build ${id} vanished`)
  log(`build ${id} ${build.status}${build.error !== undefined ? `: ${build.error}` : ''}`)
  return build
}

/** An operator's write to the HTTP API of the grid whose data dir is `dataDir` (uses DATA/web-url and DATA/api-token). */
async function operatorRequest (dataDir: string, method: 'POST' | 'DELETE', path: string, json?: unknown): Promise<unknown> {
  const read = async (file: string): Promise<string> => {
    try {
      return (await readFile(join(dataDir, file), 'utf8')).trim()
    } catch {
      throw new UsageError(`no ${file} in ${dataDir}: run this beside a grid started with HTTP (grid up, or grid coordinator --http)`)
    }
  }
  const [url, token] = [await read(WEB_URL_FILE), await read(TOKEN_FILE)]
  let res: Response
  try {
    res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(json !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: json !== undefined ? JSON.stringify(json) : undefined
    })
  } catch (err: any) {
    throw new UsageError(`cannot reach the grid at ${url}: ${err.cause?.code ?? err.message}`)
  }
  const body = await res.json() as { error?: string }
  if (!res.ok) throw new UsageError(body.error ?? `the grid answered ${res.status}`)
  return body
}

export function program (): Command {
  const grid = new Command('grid')
    .description('nameless-grid: a peer-to-peer build grid. Workers have no names; logs and artifacts never pass through the coordinator.')
    .configureOutput({ outputError: (text, write) => write(text.split('\n').filter(Boolean)[0].replace(/^error: /, 'grid: ') + '\n') })
    .exitOverride()

  grid.command('up')
    .description('run a whole grid in this process: coordinator, store, HTTP API and web UI, and N workers')
    .addOption(dataOption())
    .addOption(listenOption(`default /ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`))
    .option('--http <host:port>', 'serve the HTTP API and web UI here (127.0.0.1:0 picks a free port)', httpAddress, DEFAULT_HTTP)
    .option('--workers <n>', 'workers to run in this process', wholeNumber(0, 64), 1)
    .option('--slots <n>', 'builds each worker runs at once', wholeNumber(1, MAX_SLOTS), 1)
    .option('--cap <key=value>', 'add or override a worker capability, repeatable', collect, [])
    .option('--replicas <n>', 'store nodes to keep each piece of content on, once more stores join', wholeNumber(1, MAX_REPLICAS), DEFAULT_REPLICAS)
    .option('--max-size <size>', 'keep at most this much content in this process\'s store (e.g. 500M, 10G), evicting the least recently used whole artifacts first', parseSize)
    .action(async (opts) => {
      const caps = opts.cap as string[]
      capabilities(caps)
      const node = await startCoordinatorNode({
        dataDir: opts.data,
        listen: opts.listen ?? [`/ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`],
        http: opts.http,
        withStore: true,
        storeMaxBytes: opts.maxSize,
        replicas: opts.replicas,
        log
      })
      const workers = await startWorkers(Array.from({ length: opts.workers }, (_, i) => join(opts.data, 'workers', String(i + 1))), node.localJoin, caps, opts.slots, [], node.secret)
      stopOnSignal(async () => {
        for (const w of workers) await w.stop()
        await node.stop()
      })
      if (node.web !== undefined) process.stdout.write(`web: ${node.web.url}\n`)
      process.stdout.write(`join: ${node.joinCode}\n`)
    })

  grid.command('coordinator')
    .description('run a coordinator (and the HTTP API with --http); stores and workers join it')
    .addOption(dataOption())
    .addOption(listenOption(`default /ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`))
    .option('--http <host:port>', 'serve the HTTP API and web UI here', httpAddress)
    .option('--replicas <n>', 'store nodes to keep each piece of content on', wholeNumber(1, MAX_REPLICAS), DEFAULT_REPLICAS)
    .action(async (opts) => {
      const node = await startCoordinatorNode({
        dataDir: opts.data,
        listen: opts.listen ?? [`/ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`],
        http: opts.http,
        withStore: false,
        replicas: opts.replicas,
        log
      })
      stopOnSignal(async () => { await node.stop() })
      if (node.web !== undefined) process.stdout.write(`web: ${node.web.url}\n`)
      process.stdout.write(`join: ${node.joinCode}\n`)
    })

  grid.command('store')
    .description('run a store node: keeps logs and artifacts that workers push to it')
    .addOption(dataOption())
    .addOption(listenOption('default /ip4/0.0.0.0/tcp/0: workers dial stores'))
    .addOption(joinOption())
    .option('--max-size <size>', 'keep at most this much content (e.g. 500M, 10G), evicting the least recently used whole artifacts first', parseSize)
    .action(async (opts) => {
      const code = await readJoinCode(opts.join)
      const node = await startStoreNode({ dataDir: join(opts.data, 'store'), join: code, listen: opts.listen ?? ['/ip4/0.0.0.0/tcp/0'], maxBytes: opts.maxSize, log })
      stopOnSignal(async () => { await node.stop() })
      await node.announcement.ready()
      log(`store ${node.host.peerId.toString()} joined the grid`)
    })

  grid.command('worker')
    .description('run an anonymous worker: it announces its capabilities and runs the builds it is given')
    .addOption(dataOption())
    .addOption(listenOption('default /ip4/0.0.0.0/tcp/0, a free port where it serves its cache of what it made to other workers; none: only dial out and keep no cache', true))
    .addOption(joinOption())
    .option('--cap <key=value>', 'add or override a capability (os, arch, cpus and tools are detected), repeatable', collect, [])
    .option('--slots <n>', 'builds to run at once', wholeNumber(1, MAX_SLOTS), 1)
    .option('--drain-timeout <seconds>', 'on SIGTERM, how long running builds may take to finish (a second SIGTERM ends them now)', wholeNumber(0, 7 * 24 * 3600), DEFAULT_DRAIN_TIMEOUT_S)
    .action(async (opts) => {
      const caps = opts.cap as string[]
      capabilities(caps)
      const code = await readJoinCode(opts.join)
      // A worker behind NAT still works: it dials out; other workers then fetch its outputs from the stores instead.
      const listen = opts.listen === undefined ? [WORKER_DEFAULT_LISTEN] : (opts.listen as string[]).filter(a => a !== 'none')
      const [node] = await startWorkers([join(opts.data, 'worker')], code, caps, opts.slots, listen)
      // First SIGTERM: take no new work, finish what runs, leave. Second (or the timeout): leave now.
      const hurry = new AbortController()
      let draining = false
      const onSignal = (signal: string): void => {
        if (draining) {
          log(`${signal} again: ending running builds now (they will be re-queued)`)
          hurry.abort()
          return
        }
        draining = true
        log(`${signal}: draining (send it again to stop now)`)
        setTimeout(() => hurry.abort(), opts.drainTimeout * 1000).unref()
        node.worker.drain(hurry.signal).then(() => node.host.stop()).then(() => process.exit(0), err => { log(`stopping failed: ${err.message}`); process.exit(1) })
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
    })

  grid.command('submit')
    .description('queue a build from a job file or a command; prints the build id (or, with --follow, its log)')
    .argument('[job.json]', 'a job file (see docs/job.md); or use --run')
    .option('--run <command>', 'a one-step job running this shell command')
    .option('--require <key=value>', 'a capability the worker must have (value * for any), repeatable', collect, [])
    .option('--src <dir>', 'send this directory (as a tar) and unpack it in the work dir first')
    .option('--artifact <glob>', 'keep files matching this glob (relative to the work dir) after the steps, repeatable', collect, [])
    .option('--follow', 'stream the build\'s log; exit 0 if it succeeded, 1 if not')
    .action(async (file: string | undefined, opts) => {
      if ((file === undefined) === (opts.run === undefined)) throw new UsageError('give either a job file or --run COMMAND')
      if (opts.run === '') throw new UsageError('--run needs a command (it was empty)')
      /** Where in the job each flag's value went: a problem there names the flag, as the user typed it. */
      const fromFlags = new Map<string, string>()
      let job: unknown
      if (file !== undefined) {
        let text: string
        try {
          text = await readFile(file, 'utf8')
        } catch (err: any) {
          throw new UsageError(`cannot read ${file}: ${err.code ?? err.message}`)
        }
        try {
          job = JSON.parse(text)
        } catch (err: any) {
          throw new UsageError(`${file} is not JSON: ${err.message}`)
        }
        if (opts.require.length > 0 && typeof job === 'object' && job !== null) {
          const j = job as { requires?: Record<string, string> }
          j.requires = { ...j.requires, ...capabilities(opts.require, '--require') }
        }
      } else {
        job = { steps: [{ name: 'run', run: opts.run }], requires: capabilities(opts.require, '--require') }
        fromFlags.set('steps.0.run', '--run')
      }
      for (const text of opts.require as string[]) fromFlags.set(`requires.${text.slice(0, text.indexOf('='))}`, `--require ${text}`)
      if (opts.artifact.length > 0 && typeof job === 'object' && job !== null) {
        const j = job as { artifacts?: string[] }
        const before = Array.isArray(j.artifacts) ? j.artifacts.length : 0
        ;(opts.artifact as string[]).forEach((glob, i) => fromFlags.set(`artifacts.${before + i}`, `--artifact ${glob}`))
        j.artifacts = [...(j.artifacts ?? []), ...opts.artifact]
      }
      try {
        parseJob(job)
      } catch (err: any) {
        // parseJob names the job's key ("artifacts.0: …"); a user who typed --artifact reads that flag instead.
        const where = err instanceof InvalidJobError ? /^([^:]+): /.exec(err.message) : null
        const flag = where !== null ? fromFlags.get(where[1]) : undefined
        throw flag !== undefined ? new InvalidJobError(`${flag}: ${err.message.slice(where![0].length)}`) : err
      }
      if (opts.src !== undefined && !(await stat(opts.src).catch(() => undefined))?.isDirectory()) throw new UsageError(`--src ${opts.src} is not a directory`)
      const code = await readJoinCode(opts.join)
      const host = await clientHost(code)
      try {
        if (opts.src !== undefined) {
          const placement = await gridPlacement(host, code)
          if (placement.stores.length === 0) throw new UsageError('the grid has no store to send --src to')
          // The tar is made twice (the same bytes both times): hashed once to name and place it, then only sent.
          const named = await nameOf(tarDirectory(opts.src))
          const put = await putPlaced({ host, ...placement, placeBy: named.cid, warn: log }, tarDirectory(opts.src), { named }).catch((err: Error) => {
            throw err instanceof ContentChangedError ? new ContentChangedError(`--src ${opts.src} changed while it was being sent: ${err.message}`) : err
          })
          ;(job as { src?: string }).src = put.cid
          log(`src ${opts.src}: ${put.cid} (${put.sentBytes} bytes sent)`)
        }
        const build = expectBuild(await ask(host, code, { t: 'submit', job }))
        if (opts.follow !== true) {
          process.stdout.write(`${build.id}\n`)
          return
        }
        log(`build ${build.id} queued`)
        const done = await followBuild(host, code, build.id, 0)
        process.exitCode = done.status === 'succeeded' ? 0 : 1
      } finally {
        await host.stop()
      }
    })

  grid.command('tail')
    .description('print a build\'s or a step\'s log from any peer that holds it, following it until it is sealed; why a build waits or ended goes to stderr')
    .argument('<id>', 'a build id or a log id')
    .option('--from <bytes>', 'start at this byte offset', wholeNumber(0, Number.MAX_SAFE_INTEGER), 0)
    .action(async (id: string, opts) => {
      if (!ID_PATTERN.test(id)) throw new UsageError(`${id} is neither a build id nor a log id`)
      const code = await readJoinCode(opts.join)
      const host = await clientHost(code)
      try {
        if (id.includes('.s')) {
          // A log is named before it exists, so a store not knowing it proves nothing: its build must.
          const build = expectBuild(await ask(host, code, { t: 'get', id: id.slice(0, id.indexOf('.')) }))
          if (!build.attempts.some(a => a.logs.includes(id))) throw new UsageError(`build ${build.id} has no log ${id}`)
          const stores = await gridStores(host, code)
          const logs = new LogReader({ host, stores: () => stores, report: log })
          for await (const chunk of logs.read(id, { from: opts.from, follow: true })) process.stdout.write(chunk)
        } else {
          expectBuild(await ask(host, code, { t: 'get', id }))
          await followBuild(host, code, id, opts.from)
        }
      } finally {
        await host.stop()
      }
    })

  grid.command('put')
    .description('put a file (a directory goes as a tar) into the grid\'s store; prints its CID once stored')
    .argument('<path>', 'a file or a directory')
    .action(async (path: string, opts) => {
      let info
      try {
        info = await stat(path)
      } catch (err: any) {
        throw new UsageError(`cannot read ${path}: ${err.code ?? err.message}`)
      }
      const code = await readJoinCode(opts.join)
      const host = await clientHost(code)
      try {
        const placement = await gridPlacement(host, code)
        if (placement.stores.length === 0) throw new UsageError('the grid has no store yet (start one with grid store, or use grid up)')
        const pool = putPool()
        const open = (): AsyncIterable<Uint8Array> => info.isDirectory() ? tarDirectory(path) : readFileBlocks(path, pool)
        // A first pass names the content, so it goes straight to the stores placed for its CID (placement.ts); the
        // second only reads and sends, with the block CIDs the first found. A directory's tar size is not known up
        // front: the bars show only for plain files.
        const barBytes = info.isDirectory() ? 0 : info.size
        const hashing = transferProgress('hash', barBytes)
        let named
        try {
          named = await nameOf(counted(open(), hashing), pool)
        } finally {
          hashing.stop()
        }
        const progress = transferProgress('put', barBytes)
        let put
        try {
          put = await putPlaced({ host, ...placement, placeBy: named.cid, warn: log }, counted(open(), progress), { pool, named })
        } catch (err: any) {
          throw err instanceof ContentChangedError ? new ContentChangedError(`${path} changed while it was being put: ${err.message}`) : err
        } finally {
          progress.stop()
        }
        // Printed only now: the content is on all of its stores.
        process.stdout.write(`${put.cid}\n`)
        log(`${put.size} bytes, sha256 ${put.sha256}; on ${put.stores.length} store(s); sent ${put.sentBytes} bytes in ${put.sentBlocks} new block(s)`)
      } finally {
        await host.stop()
      }
    })

  grid.command('get')
    .description('fetch content by CID from any node that holds it, checking every block; to stdout without -o or --extract')
    .argument('<cid>', 'what grid put or an artifact printed')
    .option('-o, --output <path>', 'write to this file (only once all of it arrived and checked out)')
    .option('-x, --extract <dir>', 'unpack the content, a tar (grid put of a directory), into this directory once all of it checked out: modes and symbolic links are kept (setuid, setgid and sticky bits are not); a tar with an entry that would land outside the directory (an absolute or climbing path, a link leading out, a device) is refused whole and nothing is written')
    .action(async (text: string, opts) => {
      const cid = parseCid(text)
      if (opts.output !== undefined && opts.extract !== undefined) throw new UsageError('give -o or --extract, not both')
      const code = await readJoinCode(opts.join)
      const host = await clientHost(code)
      // --extract: the tar goes to a temporary file first, so it is checked whole before anything is unpacked.
      const scratch = opts.extract !== undefined ? await (await import('node:fs/promises')).mkdtemp(join((await import('node:os')).tmpdir(), 'grid-get-')) : undefined
      try {
        const stores = await gridStores(host, code)
        // The placed stores first, then every other.
        const sources = { host, holders: () => rankFor(cid.toString(), stores) }
        const info = await contentInfo(sources, cid)
        const whole = createHash('sha256')
        const temp = scratch !== undefined ? join(scratch, 'content.tar') : opts.output !== undefined ? `${opts.output}.partial-${process.pid}` : undefined
        const out: NodeJS.WritableStream = temp !== undefined ? createWriteStream(temp) : process.stdout
        try {
          // On a terminal with -o the bar goes to stderr; to stdout, the content owns the screen.
          const progress = transferProgress('get', temp !== undefined ? info.size : 0)
          try {
            for await (const chunk of counted(readContent(sources, cid), progress)) {
              whole.update(chunk)
              if (!out.write(chunk)) await new Promise<void>(resolve => out.once('drain', () => resolve()))
            }
          } finally {
            progress.stop()
          }
          if (whole.digest('hex') !== info.sha256) throw new UsageError(`${cid}: the content's sha256 does not match its manifest`)
          if (temp !== undefined) {
            await new Promise<void>((resolve, reject) => (out as WriteStream).end((err?: Error | null) => err ? reject(err) : resolve()))
            if (scratch === undefined) await rename(temp, opts.output)
          }
        } catch (err) {
          if (temp !== undefined) {
            (out as WriteStream).destroy()
            await rm(temp, { force: true })
          }
          throw err
        }
        if (scratch !== undefined) {
          const { extractTarFile } = await import('../worker/workspace.ts')
          await extractTarFile(join(scratch, 'content.tar'), opts.extract).catch((err: Error) => {
            throw err.name === 'WorkspaceError' ? new UsageError(err.message) : err
          })
        }
      } finally {
        if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
        await host.stop()
      }
    })

  // The client commands take --join (or DATA/join), --data and --listen alike.
  for (const command of grid.commands) if (CLIENT_COMMANDS.includes(command.name())) clientOptions(command)

  grid.command('rotate')
    .description('make a new grid secret and join code; nodes holding only the old code are cut off (run beside the coordinator)')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .action(async (opts) => {
      const body = await operatorRequest(opts.data, 'POST', '/api/secret/rotate') as { join: string }
      process.stdout.write(`join: ${body.join}\n`)
      log('secret rotated: give the new join code to the nodes that stay')
    })

  for (const [name, verb] of [['deny', 'shut a peer out of the grid now: dropped and refused by every node'], ['allow', 'let a denied peer back in']] as const) {
    grid.command(name)
      .description(`${verb} (run beside the coordinator: uses DATA/web-url and DATA/api-token)`)
      .argument('<peer>', 'a peer ID, as build history shows it (attempts[].worker)')
      .addOption(dataOption())
      .addOption(operatorListenOption())
      .action(async (peer: string, opts) => {
        const body = name === 'deny'
          ? await operatorRequest(opts.data, 'POST', '/api/denied', { peer })
          : await operatorRequest(opts.data, 'DELETE', `/api/denied/${encodeURIComponent(peer)}`)
        log(`${name === 'deny' ? 'denied' : 'allowed'} ${peer}; ${(body as { denied?: string[] }).denied?.length ?? 0} peer(s) denied`)
      })
  }

  return grid
}

/** Run the CLI; every failure becomes one line on stderr and a non-zero exit code. */
export async function main (argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv, { from: 'user' })
  } catch (err: any) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2
      return
    }
    // Expected failures (node/errors.ts) are one line; anything else is a bug, and its stack helps fix it.
    if (isGridError(err) || err?.code === 'EACCES' || err?.code === 'EADDRINUSE') log(err.message)
    else log(`unexpected error: ${err?.stack ?? err}`)
    process.exitCode = 1
  }
}


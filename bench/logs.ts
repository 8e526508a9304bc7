// The live-log figures (issue #4), every role in its own process on loopback (`grid coordinator`, `grid store`,
// `grid worker`, tailers in bench/log-tailer.ts), each beside a bare baseline from the same run:
//   - tail latency p50/p99: a step prints a timestamped line, a tailer in another process receives it
//     (baseline: a bare libp2p 1-byte round trip between two processes, the grid's own TCP + Noise + Yamux stack);
//   - sustained lines/s of one build's ~80-byte lines with three tailers attached;
//   - a 1 GiB log as a user feels it: a step printing it, timed from the step's start to the sealed log's CID in
//     the build record (baseline: the same command into `sha256sum`), and the worker's and store's peak memory;
//   - log throughput with 20 secrets set (issue 18: every byte through the redactor) as a ratio to none, through
//     the worker's LogWriter in this process to the store process.
// Every loop is bounded in count, every phase in time. `npx node bench/logs.ts` runs it alone;
// GRID_BENCH_LOG_PHASES=big (a comma list of latency, lines, secrets, big) runs some phases only.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../net/host.ts'
import { coordinatorAddress, newSecret, readJoinCode } from '../net/join-code.ts'
import { loadIdentity } from '../net/identity.ts'
import { issueGrant } from '../grid/write-grant.ts'
import { placeFor } from '../grid/placement.ts'
import { askCoordinator } from '../protocols/builds.ts'
import { AppendStreams } from '../worker/append-streams.ts'
import { LogWriter } from '../worker/log-writer.ts'
import type { Build } from '../grid/build.ts'
import { FINISHED } from '../grid/build.ts'
import { attemptId, logId, newBuildId } from '../grid/ids.ts'
import { MAX_LOG_BYTES } from '../grid/constants.ts'
import { ECHO_PROTOCOL } from './echo-protocol.ts'
import { MemorySampler, cpuMsOf, median, percentile, sleep, within as withinMs } from './measure.ts'
import { nameContent } from '../grid/content.ts'

const ROOT = join(import.meta.dirname, '..')
/** Bare round trips for the baseline. */
const RTT_SAMPLES = 1_000
/** Timestamped lines for the latency figure, one every LATENCY_LINE_MS: a step that prints now and then. */
const LATENCY_LINES = 400
const LATENCY_LINE_MS = 5
/** Lines for the throughput figure: 819 lines of 80 bytes fill one 64 KiB write; 1,000 such writes. */
const RATE_WRITES = 1_000
const LINES_PER_WRITE = 819
const LINE_BYTES = 80
const TAILERS = 3
/** The big log: 1 GiB less 1 MiB, under the hard ceiling with room for the limit's line. */
export const BIG_LOG_BYTES = Number(process.env.GRID_BENCH_LOG_BYTES ?? MAX_LOG_BYTES - 1024 * 1024)
/**
 * The secrets figure: SECRETS values (SECRETS - 1 tokens and a PEM key of PEM_LINES lines, each line masked too), a
 * log of SECRET_LOG_WRITES 64 KiB writes of compiler-like lines, one value printed in each write; SECRET_PAIRS
 * pairs of logs written one way then the other right after (the order alternating), so a busy moment of the
 * machine weighs on both sides of a pair: the ratio is the median pair's.
 */
const SECRETS = 20
const PEM_LINES = 26
const SECRET_LOG_WRITES = 400
const SECRET_PAIRS = 9
/** Rounds of the big log, each beside its baseline: the row is the median round. */
const BIG_LOG_ROUNDS = Number(process.env.GRID_BENCH_LOG_ROUNDS ?? 3)
/**
 * What the big log's step prints: lines of build-like text with a random hex field, TEXT_FILE_BYTES of them in a
 * file printed over and over by `cat`, from a producer several times faster than the grid (cat from the page cache).
 * Not `yes` or /dev/zero: a store keeps a block once, so a log of one repeated block is written as almost nothing,
 * and LevelDB's compression shrinks such text to nothing too. The size is no multiple of a block, so no block
 * repeats within a log; the text is made afresh each round, so none repeats across rounds either.
 */
const TEXT_FILE_BYTES = 64 * 1024 * 1024 + 4099
/** Phases to run, a comma list of latency, lines, secrets, big (`GRID_BENCH_LOG_PHASES=big` when working on one). */
const PHASES = new Set((process.env.GRID_BENCH_LOG_PHASES ?? 'latency,lines,secrets,big').split(','))
/** No phase may run longer than this; the bench fails rather than hang. */
const PHASE_TIMEOUT_MS = 300_000

export interface LogRow { name: string, value: number, unit: string, baseline?: { name: string, value: number, unit: string }, ratio?: number }

interface Proc { proc: ChildProcessWithoutNullStreams, out: () => string, line: (re: RegExp) => Promise<RegExpMatchArray> }

/** Bench phases are bounded: past PHASE_TIMEOUT_MS one fails instead of hanging. */
const within = async <T>(what: string, work: () => Promise<T>): Promise<T> => await withinMs(what, work, PHASE_TIMEOUT_MS)

export async function benchLogs (report: (line: string) => void = line => { process.stderr.write(line + '\n') }): Promise<LogRow[]> {
  const children: Proc[] = []
  const child = (args: string[]): Proc => {
    const proc = spawn(process.execPath, args, { cwd: ROOT })
    let out = ''
    proc.stdout.on('data', d => { out += d })
    proc.stderr.on('data', d => { out += d })
    const p: Proc = {
      proc,
      out: () => out,
      line: async re => await within(`${re} from ${args.slice(0, 3).join(' ')}`, async () => {
        while (true) {
          const m = re.exec(out)
          if (m !== null) return m
          if (proc.exitCode !== null) throw new Error(`${args.join(' ')} exited: ${out.slice(-2000)}`)
          await sleep(20)
        }
      })
    }
    children.push(p)
    return p
  }
  const dir = await mkdtemp(join(tmpdir(), 'grid-bench-logs-'))
  const rows: LogRow[] = []
  try {
    const gridBin = join(ROOT, 'node/bin/grid.js')
    const coordinator = child([gridBin, 'coordinator', '--data', join(dir, 'c'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--replicas', '1'])
    const url = (await coordinator.line(/^web: (http:\S+)$/m))[1]
    await coordinator.line(/^join: /m)
    const joinFile = join(dir, 'c', 'join')
    const token = (await readFile(join(dir, 'c', 'api-token'), 'utf8')).trim()
    const store = child([gridBin, 'store', '--join', joinFile, '--data', join(dir, 's'), '--listen', '/ip4/127.0.0.1/tcp/0'])
    await store.line(/joined the grid/)
    const worker = child([gridBin, 'worker', '--join', joinFile, '--data', join(dir, 'w')])
    await worker.line(/joined the grid/)

    const submit = async (job: unknown): Promise<string> => {
      const res = await fetch(`${url}/api/builds`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: JSON.stringify(job) })
      if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${await res.text()}`)
      return (await res.json()).id
    }
    const build = async (id: string): Promise<Build> => await (await fetch(`${url}/api/builds/${id}`)).json() as Build
    const finished = async (id: string): Promise<Build> => await within(`build ${id}`, async () => {
      while (true) {
        const b = await build(id)
        if (FINISHED.has(b.status)) return b
        await sleep(50)
      }
    })
    /** Submit a step that waits for `go`, start tailers on its log, then let it print. */
    const tailed = async (script: string, tailers: number, mode: 'latency' | 'rate', job: Record<string, unknown> = {}): Promise<{ build: Build, results: Array<{ bytes: number, lines: number, first: number, last: number, samples: number[] }> }> => {
      const go = join(dir, `go-${Math.random().toString(36).slice(2)}`)
      await writeFile(join(dir, 'step.js'), `const fs = require('node:fs'); let n = 0; while (!fs.existsSync(${JSON.stringify(go)}) && n++ < 600) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);\n${script}`)
      const id = await submit({ ...job, steps: [{ run: `${process.execPath} ${join(dir, 'step.js')}` }] })
      const log = logId(attemptId(id, 1), 0)
      const procs = Array.from({ length: tailers }, () => child([join(ROOT, 'bench/log-tailer.ts'), joinFile, log, mode]))
      for (const p of procs) await p.line(/^ready$/m)
      // The tailers found the log's holder and wait on it; give their follow requests a moment to land.
      await sleep(500)
      await writeFile(go, '')
      const done = await finished(id)
      const results = []
      for (const p of procs) results.push(JSON.parse((await p.line(/^(\{.*\})$/m))[1]))
      return { build: done, results }
    }

    if (PHASES.has('latency')) {
      report('bench: bare libp2p round trips (logs baseline)')
      const rtt = await bareRoundTrips(child)
      report('bench: tail latency, step print to a tailer in another process')
      const latency = await tailed(
        `let i = 0; const t = setInterval(() => { process.stdout.write('T' + (performance.timeOrigin + performance.now()) + ' ' + '.'.repeat(40) + '\\n'); if (++i === ${LATENCY_LINES}) clearInterval(t) }, ${LATENCY_LINE_MS})`,
        1, 'latency')
      const samples = latency.results[0].samples
      if (samples.length !== LATENCY_LINES) throw new Error(`the tailer saw ${samples.length} of ${LATENCY_LINES} lines`)
      const bare = { name: 'bare libp2p RTT p50', value: rtt.p50, unit: 'ms' }
      rows.push({ name: 'log tail latency p50 (print to tailer, other process)', value: percentile(samples, 50), unit: 'ms', baseline: bare, ratio: percentile(samples, 50) / rtt.p50 })
      rows.push({ name: 'log tail latency p99 (print to tailer, other process)', value: percentile(samples, 99), unit: 'ms', baseline: { ...bare, name: 'bare libp2p RTT p99', value: rtt.p99 }, ratio: percentile(samples, 99) / rtt.p99 })
    }

    if (PHASES.has('lines')) {
      report(`bench: lines/s with ${TAILERS} tailers`)
      const lineText = 'x'.repeat(LINE_BYTES - 1) + '\n'
      const printer = `const b = Buffer.from(${JSON.stringify(lineText)}.repeat(${LINES_PER_WRITE})); let i = 0; ` +
        `const more = () => { while (i < ${RATE_WRITES}) { i++; if (!process.stdout.write(b)) return process.stdout.once('drain', more) } }; more()`
      // Baseline: the same step printing into a pipe that nothing but a byte count reads.
      await writeFile(join(dir, 'printer.js'), printer)
      const bareLines = await within('the printer alone', async () => await new Promise<number>((resolve, reject) => {
        const began = performance.now()
        let bytes = 0
        const p = spawn(process.execPath, [join(dir, 'printer.js')])
        p.stdout.on('data', (d: Buffer) => { bytes += d.length })
        p.on('error', reject)
        p.on('close', () => { resolve(bytes / LINE_BYTES / ((performance.now() - began) / 1000)) })
      }))
      const rate = await tailed(printer, TAILERS, 'rate', { logLimit: MAX_LOG_BYTES })
      const lines = RATE_WRITES * LINES_PER_WRITE
      for (const r of rate.results) if (r.lines !== lines) throw new Error(`a tailer saw ${r.lines} of ${lines} lines`)
      const firstByte = Math.min(...rate.results.map(r => r.first))
      const slowest = Math.min(...rate.results.map(r => r.lines / ((r.last - firstByte) / 1000)))
      rows.push({ name: `log lines/s to ${TAILERS} tailers (one build, ${LINE_BYTES}-byte lines)`, value: slowest, unit: '/s', baseline: { name: 'the same step into a bare pipe', value: bareLines, unit: '/s' }, ratio: slowest / bareLines })
    }

    if (PHASES.has('secrets')) {
      report(`bench: log throughput with ${SECRETS} secrets set, and with none`)
      const secrets = await within('the secrets figure', async () => await secretsThroughput(joinFile, join(dir, 'c')))
      rows.push({ name: `log throughput with ${SECRETS} secrets set (the worker's log writer to a store process, 80-byte lines)`, value: secrets.masked, unit: 'MiB/s', baseline: { name: 'the same log with no secrets', value: secrets.plain, unit: 'MiB/s' }, ratio: secrets.ratio })
    }

    if (PHASES.has('big')) {
      report(`bench: a ${(BIG_LOG_BYTES / 2 ** 20).toFixed(0)} MiB log, step start to sealed CID, ${BIG_LOG_ROUNDS} rounds; worker and store memory`)
      rows.push(...(await bigLog({ url, submit, dir, worker: worker.proc.pid!, store: store.proc.pid!, report })))
    }
    return rows
  } finally {
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGTERM')
    await sleep(500)
    for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
}

interface BigLogInit {
  /** The coordinator's HTTP API. */
  url: string
  submit: (job: unknown) => Promise<string>
  dir: string
  /** The worker's and the store's process ids, for their memory. */
  worker: number
  store: number
  report: (line: string) => void
}

/**
 * The 1 GiB log as a user feels it: one step prints BIG_LOG_BYTES, timed from the step's start as the build record
 * has it (the coordinator's clock when the worker said it spawns the step) to the moment the record carries the
 * sealed log's CID (the worker reports it once a store sealed the log as the bytes it wrote), watched on
 * /api/events. The CID is checked against the one the same command's output is named by here, so every byte got
 * there. Baseline, alternating with it round by round: the same command piped through `sha256sum` under `sh`,
 * what this machine does producing those bytes and hashing them once. Also the worker's and the store's peak memory.
 */
async function bigLog (init: BigLogInit): Promise<LogRow[]> {
  const { url, submit, dir, report } = init
  const textFile = join(dir, 'log-text')
  const command = `for i in $(seq ${Math.ceil(BIG_LOG_BYTES / TEXT_FILE_BYTES)}); do cat ${textFile}; done | head -c ${BIG_LOG_BYTES}`
  const events = await buildEvents(url)
  const workerMemory = new MemorySampler(init.worker)
  const storeMemory = new MemorySampler(init.store)
  const idle = { worker: workerMemory.sample().anon, store: storeMemory.sample().anon }
  const grid: number[] = []
  const bare: number[] = []
  let spent = ''
  try {
    for (let round = 0; round < BIG_LOG_ROUNDS; round++) {
      await writeFile(textFile, logText(TEXT_FILE_BYTES))
      // What the log's CID must be: the same command's output named here, so every byte must have got there.
      const expected = await within('naming the big log here', async () => {
        const p = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'inherit'] })
        const named = await nameContent(p.stdout)
        if (named.size !== BIG_LOG_BYTES) throw new Error(`the step's command printed ${named.size} bytes, not ${BIG_LOG_BYTES}`)
        return named.cid.toString()
      })
      const baseline = async (): Promise<void> => {
        const began = performance.now()
        const out = await within('the baseline', async () => await new Promise<string>((resolve, reject) => {
          const p = spawn('/bin/sh', ['-c', `${command} | sha256sum`], { stdio: ['ignore', 'pipe', 'inherit'] })
          let text = ''
          p.stdout.on('data', d => { text += d })
          p.on('error', reject)
          p.on('close', code => { code === 0 ? resolve(text) : reject(new Error(`the baseline exited ${code}`)) })
        }))
        if (!/^[0-9a-f]{64} /.test(out)) throw new Error(`sha256sum printed ${out}`)
        bare.push(BIG_LOG_BYTES / 1e6 / ((performance.now() - began) / 1000))
      }
      const build = async (): Promise<void> => {
        const cpu = { worker: await cpuMsOf(init.worker), store: await cpuMsOf(init.store) }
        const id = await submit({ logLimit: MAX_LOG_BYTES, steps: [{ run: command }] })
        // Both waits are set before any event of the build can arrive.
        const named = events.first(b => b.id === id && (b.steps[0]?.logCid !== undefined || FINISHED.has(b.status)))
        const ended = events.first(b => b.id === id && FINISHED.has(b.status))
        const record = await within(`build ${id}'s log CID`, async () => await named)
        const at = Date.now()
        if (record.steps[0].logCid !== expected) throw new Error(`the big log's build is ${record.status} with log CID ${record.steps[0].logCid}, not ${expected}`)
        grid.push(BIG_LOG_BYTES / 1e6 / ((at - Date.parse(record.steps[0].started!)) / 1000))
        await within(`build ${id}`, async () => await ended)
        spent = `worker ${((await cpuMsOf(init.worker) - cpu.worker) / 1000).toFixed(1)} s, store ${((await cpuMsOf(init.store) - cpu.store) / 1000).toFixed(1)} s of CPU`
      }
      // Alternating which goes first, so a busy moment of the machine weighs on both.
      if (round % 2 === 0) { await baseline(); await build() } else { await build(); await baseline() }
      report(`  round ${round + 1}: ${grid.at(-1)!.toFixed(0)} MB/s through the grid (${spent}), ${bare.at(-1)!.toFixed(0)} MB/s into sha256sum`)
    }
  } finally {
    events.close()
    workerMemory.stop()
    storeMemory.stop()
  }
  const size = `${(BIG_LOG_BYTES / 2 ** 20).toFixed(0)} MiB`
  return [
    { name: `${size} log, step start to sealed CID in the build record (median of ${BIG_LOG_ROUNDS})`, value: median(grid), unit: 'MB/s', baseline: { name: 'the same command into sha256sum', value: median(bare), unit: 'MB/s' }, ratio: median(grid) / median(bare) },
    { name: `worker peak memory (anon) writing a ${size} log`, value: workerMemory.peaks.anon / 2 ** 20, unit: 'MiB', baseline: { name: 'idle worker', value: idle.worker / 2 ** 20, unit: 'MiB' }, ratio: workerMemory.peaks.anon / idle.worker },
    { name: `store peak memory (anon) taking and sealing a ${size} log`, value: storeMemory.peaks.anon / 2 ** 20, unit: 'MiB', baseline: { name: 'idle store', value: idle.store / 2 ** 20, unit: 'MiB' }, ratio: storeMemory.peaks.anon / idle.store },
    { name: `worker / store peak RSS (with LevelDB's mapped files) writing a ${size} log`, value: workerMemory.peaks.rss / 2 ** 20, unit: 'MiB', baseline: { name: 'store peak RSS', value: storeMemory.peaks.rss / 2 ** 20, unit: 'MiB' } }
  ]
}

/** `bytes` of build-like lines, each with a random hex field, so that no two lines are the same. */
function logText (bytes: number): Buffer {
  const out = Buffer.alloc(bytes)
  let at = 0
  for (let n = 0; at < bytes; n++) {
    const line = `[${n % 10000}/10000] cc -O2 -c src/module-${n % 97}/file-${n % 1009}.c -o build/${randomBytes(12).toString('hex')}.o\n`
    at += out.write(line, at)
  }
  return out
}

/** The coordinator's build events (/api/events), and a wait for the first build that passes a test. */
async function buildEvents (url: string): Promise<{ first: (test: (build: Build) => boolean) => Promise<Build>, close: () => void }> {
  const controller = new AbortController()
  const res = await fetch(`${url}/api/events`, { signal: controller.signal })
  if (res.body === null) throw new Error('/api/events has no body')
  const waiting = new Set<{ test: (build: Build) => boolean, resolve: (build: Build) => void }>()
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  ;(async () => {
    let text = ''
    while (true) {
      const { value, done } = await reader.read()
      if (done) return
      text += value
      for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
        const message = text.slice(0, end)
        text = text.slice(end + 2)
        if (!/^event: build$/m.test(message)) continue
        const build = JSON.parse(/^data: (.*)$/m.exec(message)![1]) as Build
        for (const w of waiting) if (w.test(build)) { waiting.delete(w); w.resolve(build) }
      }
    }
  })().catch(() => {})
  return {
    first: async test => await new Promise(resolve => { waiting.add({ test, resolve }) }),
    close: () => { controller.abort() }
  }
}

/**
 * MiB/s of one log written by the worker's LogWriter (from a peer on the grid, with a write grant from the
 * coordinator's key) to the grid's store in its own process, sealed and named: with SECRETS values as its mask,
 * and with none. The same writes both ways, so the ratio is what masking costs the worker's log path.
 */
async function secretsThroughput (joinFile: string, coordinatorDir: string): Promise<{ plain: number, masked: number, ratio: number }> {
  const code = await readJoinCode(joinFile)
  const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret: code.secret, listen: [] })
  const streams = new AppendStreams(host)
  try {
    const reply = await askCoordinator(host, coordinatorAddress(code), { t: 'stores' })
    if (reply.t !== 'stores' || reply.stores.length === 0) throw new Error('the coordinator named no store')
    const key = await loadIdentity(coordinatorDir)
    const random = (n: number): string => randomBytes(n).toString('base64url').slice(0, n)
    const values = [
      ...Array.from({ length: SECRETS - 1 }, (_, i) => `${['ghp_', 'npm_', 'AKIA', 'xoxb-'][i % 4]}${random(36)}`),
      `-----BEGIN PRIVATE KEY-----\n${Array.from({ length: PEM_LINES - 2 }, () => random(64)).join('\n')}\n-----END PRIVATE KEY-----\n`
    ]
    // Each write holds whole lines and prints one value (the PEM key's second line for the key).
    const writes = values.map((value, i) => {
      const secretLine = `+ curl -H 'Authorization: Bearer ${value.includes('\n') ? value.split('\n')[1] : value}' https://deploy.example\n`
      let text = secretLine
      for (let n = 0; text.length + LINE_BYTES <= 64 * 1024; n++) {
        const line = `[${i}:${n}] compiling src/module-${n % 97}/file-${n}.ts ... ok (${(n * 13) % 1000} ms)`
        text += line.padEnd(LINE_BYTES - 1, '.').slice(0, LINE_BYTES - 1) + '\n'
      }
      return Buffer.from(text)
    })
    const bytes = writes.reduce((sum, w) => sum + w.length, 0) * SECRET_LOG_WRITES / writes.length
    const once = async (mask: string[] | undefined): Promise<number> => {
      const attempt = attemptId(newBuildId(), 1)
      const log = logId(attempt, 0)
      const writer = new LogWriter({
        streams, log, grant: await issueGrant(key, attempt, host.peerId.toString()), stores: placeFor(log, reply.stores, 1), limit: MAX_LOG_BYTES, mask
      })
      const began = performance.now()
      for (let i = 0; i < SECRET_LOG_WRITES; i++) if (!writer.write(writes[i % writes.length])) await writer.drain()
      const sealed = await writer.seal()
      if (sealed.cid === undefined) throw new Error(`log ${log} was not sealed as written`)
      if (mask === undefined ? sealed.size !== bytes : sealed.size >= bytes) throw new Error(`log ${log} is ${sealed.size} bytes of the ${bytes} written${mask === undefined ? '' : ': nothing was masked'}`)
      // Counted as output printed: the masked log is a little shorter (each value becomes 3 bytes).
      return bytes / 2 ** 20 / ((performance.now() - began) / 1000)
    }
    await once(undefined)
    await once(values)
    const plain: number[] = []
    const masked: number[] = []
    for (let pair = 0; pair < SECRET_PAIRS; pair++) {
      if (pair % 2 === 0) {
        plain.push(await once(undefined))
        masked.push(await once(values))
      } else {
        masked.push(await once(values))
        plain.push(await once(undefined))
      }
    }
    return { plain: median(plain), masked: median(masked), ratio: median(masked.map((rate, i) => rate / plain[i])) }
  } finally {
    streams.closeAll()
    await host.stop()
  }
}

/** Baseline: 1-byte round trips on a bare libp2p stream (the grid's TCP + Noise + Yamux) to another process. */
async function bareRoundTrips (child: (args: string[]) => Proc): Promise<{ p50: number, p99: number }> {
  const secret = newSecret()
  const peer = child([join(ROOT, 'bench/echo-peer.ts'), Buffer.from(secret).toString('hex')])
  const addr = (await peer.line(/^(\/ip4\/\S+)$/m))[1]
  const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret, listen: [] })
  try {
    const stream = await host.dialProtocol(multiaddr(addr), ECHO_PROTOCOL)
    const iterator = stream[Symbol.asyncIterator]()
    const samples: number[] = []
    for (let i = 0; i < RTT_SAMPLES; i++) {
      const t = performance.now()
      stream.send(new Uint8Array([i & 0xff]))
      await iterator.next()
      samples.push(performance.now() - t)
    }
    await stream.close()
    return { p50: percentile(samples, 50), p99: percentile(samples, 99) }
  } finally {
    await host.stop()
    peer.proc.kill('SIGTERM')
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = await benchLogs()
  const fmt = (n: number | undefined): string => n === undefined ? '' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)
  process.stdout.write(['| figure | value | baseline (same run) | ratio |', '|---|---|---|---|',
    ...rows.map(r => `| ${r.name} | ${fmt(r.value)} ${r.unit} | ${r.baseline !== undefined ? `${r.baseline.name}: ${fmt(r.baseline.value)} ${r.baseline.unit}` : ''} | ${r.ratio !== undefined ? `${fmt(r.ratio)}x` : ''} |`)].join('\n') + '\n')
  process.exit(0)
}

// Secret values never reach a store (issue 18, "Masking"): real steps (`/bin/sh`, real pipes, pauses between the
// halves of a value) run as the worker runs them (runStep into a LogWriter given the values as `mask`), writing
// over libp2p to the real store of a grid started like `grid up`. The live tail read over HTTP while the log grows,
// the sealed log, the content its CID names, and every file under the grid's data dir hold no value and no line of
// a multi-line one. (The worker hands a job's secrets to its writers as `mask`: that part, and a whole build with
// `secrets`, are tested with the delivery of secrets to workers.)
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { removeDir, startTestGrid, tempDir } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import { waitFor, within } from '../wait.ts'
import { createHost } from '../../net/host.ts'
import type { GridHost } from '../../net/host.ts'
import { loadIdentity } from '../../net/identity.ts'
import { issueGrant } from '../../grid/write-grant.ts'
import { attemptId, logId, newBuildId } from '../../grid/ids.ts'
import { placeFor } from '../../grid/placement.ts'
import { LOG_BATCH_BYTES } from '../../net/constants.ts'
import { AppendStreams } from '../../worker/append-streams.ts'
import { LogWriter } from '../../worker/log-writer.ts'
import { runStep } from '../../worker/step-runner.ts'

interface Ctx {
  /** The grid's data dir, kept past its stop for the last test's search. */
  dir: string
  grid: TestGrid
  stopped: boolean
  host: GridHost
  streams: AppendStreams
  /** The steps' work dir, apart from the grid's data dir that is searched for the values. */
  work: string
}

/** A step that never ends fails its test instead of hanging the file. */
const STEP_BOUND_MS = 60_000

const TOKEN = 'ghp_Zq8mX2vT9kLw4RbN7cYd1pHs6FjUe3Ao5GiK'
const PEM = '-----BEGIN TEST PRIVATE KEY-----\n' +
  'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n' +
  'MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n' +
  'NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n' +
  '-----END TEST PRIVATE KEY-----\n'
const PEM_LINES = PEM.split('\n').filter(line => line.length > 0)
/** What no byte sequence of the output may contain. */
const SECRETS = [TOKEN, ...PEM_LINES]

const masking = suite<Ctx>('secret masking: steps writing to a real store', {} as Ctx)

masking.before(async ctx => {
  ctx.dir = await tempDir('secret-masking')
  ctx.stopped = false
  ctx.grid = await startTestGrid({ workers: [], dir: ctx.dir })
  ctx.host = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.grid.node.secret.current, listen: [] })
  ctx.streams = new AppendStreams(ctx.host)
  ctx.work = await tempDir('secret-masking-work')
  await waitFor('the store in the grid', () => ctx.grid.node.coordinator.stores.list().length === 1)
})

masking.after(async ctx => {
  if (!ctx.stopped) {
    ctx.streams?.closeAll()
    await ctx.host?.stop()
    await ctx.grid?.stop()
  }
  await removeDir(ctx.dir)
  await removeDir(ctx.work)
})

const holds = (bytes: Uint8Array, value: string): boolean => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes(value)

function assertClean (what: string, bytes: Uint8Array): void {
  for (const value of SECRETS) assert.not.ok(holds(bytes, value), `${what} holds ${value.slice(0, 12)}…`)
}

/** A live tail over HTTP (GET /api/logs/:id?follow=1): every byte as it arrives, until the log is sealed. */
function follow (grid: TestGrid, log: string): { bytes: () => Buffer, ended: Promise<void> } {
  const chunks: Buffer[] = []
  const ended = (async () => {
    const res = await grid.api(`/api/logs/${log}?follow=1`)
    assert.is(res.status, 200)
    const reader = res.body!.getReader()
    for (let read = await reader.read(); !read.done; read = await reader.read()) chunks.push(Buffer.from(read.value))
  })()
  return { bytes: () => Buffer.concat(chunks), ended }
}

interface StepLog {
  log: string
  /** What the live tail received, the log read back once sealed, and the content its CID names. */
  tail: Buffer
  sealed: Buffer
  content: Buffer
  exitCode: number
}

/**
 * Run `run` as the worker runs a step, its output and `grid:` lines into a log written with `mask`, followed by a
 * live tail from the start; `during` runs while the step does, with the tail so far.
 */
async function stepLog (ctx: Ctx, run: string, init: { env?: Record<string, string>, during?: (tail: () => Buffer) => Promise<void>, stop?: AbortSignal, stopping?: () => string } = {}): Promise<StepLog> {
  const attempt = attemptId(newBuildId(), 1)
  const log = logId(attempt, 0)
  const grant = await issueGrant(await loadIdentity(ctx.grid.dir), attempt, ctx.host.peerId.toString())
  const stores = placeFor(log, ctx.grid.node.coordinator.stores.list())
  const writer = new LogWriter({ streams: ctx.streams, log, grant, stores, mask: [TOKEN, PEM], report: line => { throw new Error(line) } })
  const tail = follow(ctx.grid, log)
  const step = runStep({
    run,
    cwd: ctx.work,
    env: { PATH: process.env.PATH, TOKEN, KEY: PEM, ...init.env },
    output: writer,
    signal: init.stop ?? new AbortController().signal,
    killGraceMs: 5_000,
    stopping: init.stopping,
    note: line => { writer.write(new TextEncoder().encode(`grid: ${line}\n`)) }
  })
  await init.during?.(tail.bytes)
  const exitCode = await within(STEP_BOUND_MS, 'the step', step)
  const { cid, size } = await writer.seal()
  assert.ok(cid !== undefined, 'the store named the log as the worker did')
  await within(STEP_BOUND_MS, 'the live tail to end with the seal', tail.ended)
  const sealed = Buffer.from(await (await ctx.grid.api(`/api/logs/${log}`)).arrayBuffer())
  const content = Buffer.from(await (await ctx.grid.api(`/api/artifacts/${cid}`)).arrayBuffer())
  assert.is(sealed.length, size)
  assert.ok(content.equals(sealed), 'the CID names the sealed bytes')
  assert.ok(tail.bytes().equals(sealed), 'the live tail got the sealed bytes, in order')
  return { log, tail: tail.bytes(), sealed, content, exitCode }
}

masking('a value printed in two halves with a pause between them: the tail shows what came before it at once, then ***', async ctx => {
  const go = join(ctx.work, `go-${Date.now()}`)
  const half = TOKEN.length >> 1
  let seenBefore = ''
  const result = await stepLog(ctx,
    `printf 'deploying with token=%s' "$HALF1"; n=0; while [ ! -e ${go} ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; printf '%s, done\\n' "$HALF2"`, {
      env: { HALF1: TOKEN.slice(0, half), HALF2: TOKEN.slice(half) },
      during: async tail => {
        seenBefore = await waitFor('the text before the value in the live tail', () => tail().includes('token=') ? tail().toString() : undefined)
        await writeFile(go, '')
      }
    })
  assert.is(seenBefore, 'deploying with token=', 'the first half is held back, nothing else')
  assert.is(result.sealed.toString(), 'deploying with token=***, done\n')
  assertClean('the log', result.sealed)
})

masking('a value across the 64 KiB marks of the output, at several offsets, and inside a 10 MB line', async ctx => {
  // The value starts 1, 7 and 39 bytes before the first three 64 KiB marks (where the writer's batches would cut
  // output arriving in full batches), then sits in the middle of a 10 MB line.
  const filler = (bytes: number): string => `head -c ${bytes} /dev/zero | tr '\\0' a`
  const batch = LOG_BATCH_BYTES
  const starts = [batch - 1, 2 * batch - 7, 3 * batch - 39]
  const run = [
    filler(starts[0]), 'printf %s "$TOKEN"',
    filler(starts[1] - starts[0] - TOKEN.length), 'printf %s "$TOKEN"',
    filler(starts[2] - starts[1] - TOKEN.length), 'printf %s "$TOKEN"', 'echo',
    filler(5 * 1024 * 1024), 'printf %s "$TOKEN"', filler(5 * 1024 * 1024), 'echo'
  ].join('; ')
  const result = await stepLog(ctx, run)
  assert.is(result.exitCode, 0)
  assertClean('the log', result.sealed)
  const text = result.sealed.toString('latin1')
  assert.is(text.split('***').length - 1, 4, 'four masks')
  const shrink = TOKEN.length - 3
  assert.equal([...text.matchAll(/\*\*\*/g)].slice(0, 3).map(m => m.index), starts.map((start, i) => start - i * shrink), 'each where its value started')
  const bigLine = text.split('\n')[1]
  assert.is(bigLine.length, 10 * 1024 * 1024 + 3, 'the 10 MB line, with the value replaced by ***')
  assert.is(bigLine.indexOf('***'), 5 * 1024 * 1024)
})

masking('a PEM key printed whole, with \\r\\n line endings, a line at a time with pauses, and traced by set -x', async ctx => {
  const run = [
    'printf "key:\\n%s" "$KEY"',
    'printf %s "$KEY" | sed "s/\\$/\\r/"',
    'echo "$KEY" | while IFS= read -r line; do printf "%s\\n" "$line"; sleep 0.05; done',
    'set -x',
    ': curl -H "Authorization: Bearer $TOKEN" https://deploy.example.test',
    'set +x',
    'echo "$KEY" | sed -n 3p >&2'
  ].join('; ')
  const result = await stepLog(ctx, run)
  assert.is(result.exitCode, 0)
  assertClean('the log', result.sealed)
  const text = result.sealed.toString()
  assert.ok(text.startsWith('key:\n***'), text.slice(0, 100))
  assert.ok(text.includes('***\r\n'.repeat(PEM_LINES.length)), 'each line masked when the line endings differ')
  // dash traces the words as they are, bash quotes them.
  assert.match(text, /\+ : curl -H '?Authorization: Bearer \*\*\*'? https:\/\/deploy\.example\.test\n/)
  assert.ok(text.endsWith('***\n'), 'a line of the key alone, on stderr')
})

masking('the worker\'s own lines in the log are masked too', async ctx => {
  const stop = new AbortController()
  const started = join(ctx.work, `started-${Date.now()}`)
  const result = await stepLog(ctx, `touch ${started}; sleep 30`, {
    stop: stop.signal,
    // A cancel reason is whatever the API client wrote.
    stopping: () => `cancelled by an API client: rotate ${TOKEN} now`,
    during: async () => {
      await waitFor('the step to start', async () => await stat(started).then(() => true, () => false))
      stop.abort('cancelled')
    }
  })
  assert.match(result.sealed.toString(), /^grid: cancelled by an API client: rotate \*\*\* now: sent SIGTERM/)
  assertClean('the log', result.sealed)
})

masking('no file under the grid\'s data dir (coordinator and store) holds a value or a line of one', async ctx => {
  // Every test above wrote its logs here; stopping the grid writes out whatever LevelDB still held in memory.
  ctx.stopped = true
  ctx.streams.closeAll()
  await ctx.host.stop()
  await ctx.grid.stop()
  const files: string[] = []
  for (const entry of await readdir(ctx.dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) files.push(join(entry.parentPath, entry.name))
  }
  assert.ok(files.length > 5, `${files.length} files`)
  let bytes = 0
  for (const file of files) {
    const content = await readFile(file)
    bytes += content.length
    for (const value of SECRETS) assert.not.ok(content.includes(value), `${file} holds ${value.slice(0, 12)}…`)
  }
  assert.ok(bytes > 10 * 1024 * 1024, 'the logs are on disk (the 10 MB line among them)')
})

masking.run()

// Fuzzing every wire protocol from a real member peer (it holds the grid's secret), and the job validator.
// Fixed seed, bounded count and time. The grid runs in this very process: a frame that crashed a node would
// crash the test. After each protocol's frames, the grid must still give correct answers end to end.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { encode } from 'cborg'
import { lpStream } from '@libp2p/utils'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { startTestGrid } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import { createHost } from '../../net/host.ts'
import type { GridHost } from '../../net/host.ts'
import { MAX_MESSAGE_BYTES } from '../../net/constants.ts'
import { WORK_PROTOCOL } from '../../protocols/work.ts'
import { STORE_MEMBERSHIP_PROTOCOL } from '../../protocols/store-membership.ts'
import { BUILDS_PROTOCOL } from '../../protocols/builds.ts'
import { LOG_APPEND_PROTOCOL } from '../../protocols/log-append.ts'
import { LOG_READ_PROTOCOL } from '../../protocols/log-read.ts'
import { BLOCK_MISSING_PROTOCOL } from '../../protocols/block-missing.ts'
import { BLOCK_PUT_PROTOCOL } from '../../protocols/block-put.ts'
import { BLOCK_GET_PROTOCOL } from '../../protocols/block-get.ts'
import { blockCid } from '../../grid/content.ts'
import { parseJob } from '../../grid/job.ts'
import type { Build } from '../../grid/build.ts'

/** Fixed so a failure can be replayed; change it to explore. */
const SEED = 0x6e616d65
const STREAMS_PER_PROTOCOL = 250
const FRAMES_PER_STREAM = 8
const JOB_CASES = 5_000
/** One stream's frames must be answered or dropped within this; the fuzzer never waits longer. */
const STREAM_BOUND_MS = 2_000

/** mulberry32: small, fast, good enough to shake a parser. */
function random (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

class Fuzzer {
  readonly next: () => number
  constructor (seed: number) { this.next = random(seed) }
  int (max: number): number { return Math.floor(this.next() * max) }
  pick<T> (items: readonly T[]): T { return items[this.int(items.length)] }
  bytes (max: number): Uint8Array { return Uint8Array.from({ length: this.int(max) }, () => this.int(256)) }

  /** A value of any CBOR-able shape, leaning towards the grid's own field names and edge numbers. */
  value (depth = 0): unknown {
    const kind = this.int(depth > 3 ? 7 : 10)
    switch (kind) {
      case 0: return this.pick([0, -1, 1, 2 ** 31, -(2 ** 53), Number.MAX_SAFE_INTEGER, 1e308, -0, 0.5, Number.NaN, Infinity])
      case 1: return this.pick(['', 'x', '../../etc/passwd', '0mwv1se3l2c9ee67a.a1.s0', '12D3KooWfake', 'a'.repeat(this.int(5000)), '\u0000', '🔥'])
      case 2: return this.bytes(300)
      case 3: return this.pick([true, false, null, undefined])
      case 4: return this.int(1000)
      case 5: return this.pick(['hello', 'beat', 'append', 'seal', 'read', 'stat', 'submit', 'get', 'stores', 'done', 'step', 'drain', 'fence'])
      case 6: return String.fromCharCode(...Array.from({ length: this.int(40) }, () => this.int(0xd7ff)))
      case 7: return Array.from({ length: this.int(6) }, () => this.value(depth + 1))
      default: {
        const keys = ['t', 'log', 'offset', 'bytes', 'grant', 'size', 'from', 'follow', 'job', 'id', 'capabilities', 'slots', 'running', 'attempt', 'step', 'exitCode', 'outcome', 'addrs', 'steps', 'requires', 'x']
        return Object.fromEntries(Array.from({ length: this.int(7) }, () => [this.pick(keys), this.value(depth + 1)]))
      }
    }
  }

  /** Change a valid message a little: a field dropped, retyped, or set to an edge value. */
  mutate (message: Record<string, unknown>): Record<string, unknown> {
    const copy: Record<string, unknown> = { ...message }
    const keys = Object.keys(copy)
    for (let i = 0; i <= this.int(3); i++) {
      const key = this.pick(keys)
      const how = this.int(3)
      if (how === 0) delete copy[key]
      else if (how === 1) copy[key] = this.value(2)
      else copy[this.pick(['t', 'extra', key])] = this.value(3)
    }
    return copy
  }

  /** One frame for a protocol: raw junk, a random value, or a mutated valid message, sometimes damaged bytes. */
  frame (valid: Array<Record<string, unknown>>): Uint8Array {
    const how = this.int(10)
    if (how === 0) return this.bytes(2048)
    if (how <= 2) return encode(this.value() as any)
    const message = this.int(4) === 0 ? this.pick(valid) : this.mutate(this.pick(valid))
    let bytes: Uint8Array
    try {
      bytes = encode(message as any)
    } catch {
      return this.bytes(64)
    }
    if (this.int(5) === 0 && bytes.length > 0) {
      bytes = Uint8Array.from(bytes)
      bytes[this.int(bytes.length)] ^= 1 << this.int(8)
    }
    return bytes
  }
}

/** Content the grid holds before the fuzz: its bytes must come back unchanged after. */
const KNOWN_BYTES = new TextEncoder().encode('known content\n')
const KNOWN_CID = blockCid(KNOWN_BYTES).toString()

/** Valid-looking messages each protocol takes, the seeds for mutation. */
const seeds: Record<string, Array<Record<string, unknown>>> = {
  [WORK_PROTOCOL]: [
    { t: 'hello', capabilities: { os: 'linux', fuzz: 'yes' }, slots: 1, running: [] },
    { t: 'beat' },
    { t: 'drain' },
    { t: 'step-started', attempt: '0mwv1se3l2c9ee67a.a1', step: 0 },
    { t: 'step', attempt: '0mwv1se3l2c9ee67a.a1', step: 0, exitCode: 0 },
    { t: 'done', attempt: '0mwv1se3l2c9ee67a.a1', outcome: 'succeeded' }
  ],
  [STORE_MEMBERSHIP_PROTOCOL]: [
    { t: 'hello', addrs: ['/ip4/127.0.0.1/tcp/9'] },
    { t: 'beat' }
  ],
  [BUILDS_PROTOCOL]: [
    // `run` stays `true` in every mutation that keeps the step: fuzzing must never run random commands.
    { t: 'submit', job: { requires: { fuzz: 'never' }, steps: [{ run: 'true' }] } },
    { t: 'get', id: '0mwv1se3l2c9ee67a' },
    { t: 'stores' }
  ],
  [LOG_APPEND_PROTOCOL]: [
    { t: 'append', log: '0mwv1se3l2c9ee67a.a1.s0', offset: 0, bytes: new Uint8Array([104, 105]), grant: new Uint8Array(64) },
    { t: 'seal', log: '0mwv1se3l2c9ee67a.a1.s0', size: 0, grant: new Uint8Array(64) }
  ],
  [BLOCK_MISSING_PROTOCOL]: [
    { t: 'missing?', cids: [KNOWN_CID, 'bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am'] }
  ],
  [BLOCK_PUT_PROTOCOL]: [
    // Bytes that do not match their CID: mutations may fix the shape but never the hash.
    { t: 'block', cid: KNOWN_CID, bytes: new Uint8Array([1, 2, 3]) }
  ],
  [BLOCK_GET_PROTOCOL]: [
    { t: 'get', cid: KNOWN_CID, from: 0 },
    { t: 'get', cid: KNOWN_CID, from: 1, to: 3 }
  ],
  [LOG_READ_PROTOCOL]: [
    { t: 'read', log: '0mwv1se3l2c9ee67a.a1.s0', from: 0, follow: false },
    { t: 'read', log: '0mwv1se3l2c9ee67a.a1.s0', from: 0, follow: true },
    { t: 'stat', log: '0mwv1se3l2c9ee67a.a1.s0' }
  ]
}

interface Ctx { grid: TestGrid, member: GridHost, known: Build }

const fuzz = suite<Ctx>('fuzzing every protocol from a member peer')

/** The grid still answers correctly: a new build runs, its log is exact, an old build's log is intact. */
async function stillCorrect (ctx: Ctx): Promise<void> {
  assert.equal(await (await ctx.grid.api('/api/health')).json(), { ok: true })
  const id = await ctx.grid.submit({ steps: [{ run: 'echo still-correct' }] })
  const build = await ctx.grid.finished(id)
  assert.is(build.status, 'succeeded')
  assert.is(await (await ctx.grid.api(`/api/logs/${build.steps[0].log}`)).text(), 'still-correct\n')
  assert.is(await (await ctx.grid.api(`/api/logs/${ctx.known.steps[0].log}`)).text(), 'before the fuzz\n', 'earlier content unchanged')
  assert.is((await (await ctx.grid.api('/api/capacity')).json()).nodes, 1, 'the real worker is still connected')
  assert.is(await (await ctx.grid.api(`/api/artifacts/${KNOWN_CID}`)).text(), 'known content\n', 'stored content unchanged')
}

fuzz.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{}] })
  ctx.member = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.grid.node.localJoin.secret, listen: [] })
  ctx.known = await ctx.grid.finished(await ctx.grid.submit({ steps: [{ run: 'echo before the fuzz' }] }))
  const put = await ctx.grid.api('/api/artifacts', { method: 'POST', body: KNOWN_BYTES, headers: { authorization: `Bearer ${ctx.grid.token}` } })
  assert.is((await put.json()).cid, KNOWN_CID)
})

fuzz.after(async ctx => {
  await ctx.member?.stop()
  await ctx.grid?.stop()
})

for (const [index, protocol] of Object.keys(seeds).entries()) {
  fuzz(`${protocol}: ${STREAMS_PER_PROTOCOL * FRAMES_PER_STREAM} hostile frames, then correct answers`, async ctx => {
    const f = new Fuzzer(SEED + index)
    const addr = ctx.grid.node.localJoin.addrs[0]
    let sent = 0
    for (let s = 0; s < STREAMS_PER_PROTOCOL; s++) {
      let stream
      try {
        stream = await ctx.member.dialProtocol(addr, protocol, { signal: AbortSignal.timeout(STREAM_BOUND_MS) })
      } catch {
        continue
      }
      const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES })
      const done = (async () => {
        for (let i = 0; i < FRAMES_PER_STREAM; i++) {
          // Now and then a frame that claims to be over the size limit.
          if (f.int(50) === 0) await stream.send(new Uint8Array([0xff, 0xff, 0xff, 0x7f]))
          else await lp.write(f.frame(seeds[protocol]))
          sent++
        }
        // Read whatever comes back until the node ends the stream or the bound passes.
        while (true) await lp.read({ signal: AbortSignal.timeout(STREAM_BOUND_MS / 4) })
      })()
      await Promise.race([done.catch(() => {}), new Promise(resolve => setTimeout(resolve, STREAM_BOUND_MS))])
      stream.abort(new Error('fuzzer moves on'))
    }
    assert.ok(sent >= STREAMS_PER_PROTOCOL, `frames were sent (${sent})`)
    await stillCorrect(ctx)
  })
}

fuzz.run()

const jobs = suite('fuzzing the job validator')

jobs(`${JOB_CASES} random and mutated jobs: a Job or InvalidJobError, nothing else`, () => {
  const f = new Fuzzer(SEED)
  const valid = { name: 'n', requires: { os: 'linux', gpu: '*' }, steps: [{ name: 'a', run: 'make' }], env: { K: 'V' }, timeout: 60, retries: 1, priority: 3 }
  let accepted = 0
  for (let i = 0; i < JOB_CASES; i++) {
    const input = f.int(2) === 0 ? f.value() : f.mutate(valid)
    try {
      const job = parseJob(input)
      accepted++
      assert.ok(job.steps.length >= 1 && job.steps.every(s => typeof s.run === 'string' && s.run.length > 0 && typeof s.name === 'string'))
      assert.ok(Number.isInteger(job.timeout) && job.timeout > 0)
    } catch (err: any) {
      assert.is(err.name, 'InvalidJobError', `case ${i} threw ${err.name}: ${err.message}`)
      assert.not.match(err.message, /\n/, 'one line')
    }
  }
  assert.ok(accepted > 0, 'some mutations stay valid, so the check above ran')
})

jobs.run()

// sha256 on the hash thread (grid/hash-thread.ts) gives exactly node:crypto's digests: inline below the threshold,
// on the thread above it, for views into larger buffers, many at once, and as a running hash over many updates;
// a process that used it still exits by itself.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { OFF_THREAD_MIN_BYTES, ThreadHash, matchesOffThread, sha256OffThread } from '../../grid/hash-thread.ts'
import { blockCid } from '../../grid/content.ts'

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
const inline = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

const hashing = suite('hash thread')

hashing('digests equal node:crypto\'s on both sides of the threshold', async () => {
  for (const size of [0, 1, OFF_THREAD_MIN_BYTES - 1, OFF_THREAD_MIN_BYTES, OFF_THREAD_MIN_BYTES + 1, 3 * 1024 * 1024 + 7]) {
    const bytes = new Uint8Array(randomBytes(size))
    assert.is(hex(await sha256OffThread(bytes)), inline(bytes), `${size} bytes`)
  }
})

hashing('a view hashes only its own bytes, not the buffer around it', async () => {
  const around = new Uint8Array(randomBytes(4 * OFF_THREAD_MIN_BYTES))
  const view = around.subarray(123, 123 + 2 * OFF_THREAD_MIN_BYTES)
  assert.is(hex(await sha256OffThread(view)), inline(view))
  assert.is(around.byteLength, 4 * OFF_THREAD_MIN_BYTES, 'the caller keeps its buffer (a copy went to the thread)')
})

hashing('a Buffer (a view into a pool or a larger allocation) is left whole for its owner', async () => {
  const big = Buffer.alloc(2 * OFF_THREAD_MIN_BYTES, 120)
  const small = Buffer.from('a short line from the shared pool')
  const running = new ThreadHash()
  running.update(big)
  running.update(small)
  assert.is(hex(await sha256OffThread(big)), inline(big))
  assert.is(big.length, 2 * OFF_THREAD_MIN_BYTES, 'not detached by a transfer')
  assert.ok(big.every(b => b === 120), 'its bytes still there')
  assert.is(await running.digest(), inline(Buffer.concat([big, small])))
  assert.is(small.toString(), 'a short line from the shared pool')
})

hashing('many at once each get their own digest', async () => {
  const inputs = Array.from({ length: 24 }, (_, i) => new Uint8Array(randomBytes(OFF_THREAD_MIN_BYTES + i * 1000)))
  const digests = await Promise.all(inputs.map(sha256OffThread))
  for (const [i, digest] of digests.entries()) assert.is(hex(digest), inline(inputs[i]), `input ${i}`)
})

hashing('a running hash over many updates, small and large, interleaved with another, equals one inline', async () => {
  const parts = Array.from({ length: 40 }, (_, i) => new Uint8Array(randomBytes(i % 3 === 0 ? OFF_THREAD_MIN_BYTES * 2 : 100 + i)))
  const one = new ThreadHash()
  const other = new ThreadHash()
  const whole = createHash('sha256')
  for (const part of parts) {
    one.update(part)
    other.update(part.subarray(0, 10))
    whole.update(part)
  }
  assert.is(await one.digest(), whole.digest('hex'))
  assert.is(await other.digest(), inline(Buffer.concat(parts.map(p => p.subarray(0, 10)))))
  assert.is(await new ThreadHash().digest(), inline(new Uint8Array(0)), 'nothing fed: the empty digest')
  assert.throws(() => one.update(new Uint8Array(1)), /already taken/)
})

hashing('matchesOffThread: the right bytes match; one flipped bit, a short read or another hash function do not', async () => {
  const bytes = new Uint8Array(randomBytes(OFF_THREAD_MIN_BYTES * 3))
  const cid = blockCid(bytes)
  assert.ok(await matchesOffThread(cid, bytes))
  const flipped = bytes.slice()
  flipped[bytes.length - 1] ^= 1
  assert.not.ok(await matchesOffThread(cid, flipped))
  assert.not.ok(await matchesOffThread(cid, bytes.subarray(1)))
  const small = new Uint8Array([1, 2, 3])
  assert.not.ok(await matchesOffThread(CID.createV1(0x55, identity.digest(small)), small), 'identity hash refused')
})

hashing('a process that used the thread exits by itself once it is done', async () => {
  const script = `import { sha256OffThread } from ${JSON.stringify(join(import.meta.dirname, '../../grid/hash-thread.ts'))}
    const d = await sha256OffThread(new Uint8Array(${OFF_THREAD_MIN_BYTES * 2}))
    process.stdout.write(Buffer.from(d).toString('hex'))`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script])
  let out = ''
  child.stdout.on('data', d => { out += d })
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('the process did not exit: the thread held it')) }, 30_000)
    child.on('exit', c => { clearTimeout(timer); resolve(c) })
  })
  assert.is(code, 0)
  assert.is(out, inline(new Uint8Array(OFF_THREAD_MIN_BYTES * 2)))
})

hashing.run()

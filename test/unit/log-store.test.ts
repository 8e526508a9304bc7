// The log store over a real LevelDB: offset-named appends (idempotent resends, gaps refused), sealing,
// reads from any offset, following a growing log, and durability across a reopen.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { LogStore } from '../../storage/log-store.ts'
import { LogSealer, MAX_NAMED_LOGS } from '../../storage/log-content.ts'
import { Blockstore } from '../../storage/blockstore.ts'
import { decodeManifest, nameContent, parseCid } from '../../grid/content.ts'
import { ID_PATTERN, attemptId, buildOf, logId } from '../../grid/ids.ts'
import { BLOCK_BYTES } from '../../grid/constants.ts'
import { rejection, sleep, waitFor, within } from '../wait.ts'

interface Ctx {
  dir: string
  db: Level<string, string>
  logs: LogStore
}

const logStore = suite<Ctx>('log-store', {} as Ctx)

const enc = new TextEncoder()
const dec = new TextDecoder()
const bytes = (s: string): Uint8Array => enc.encode(s)

let counter = 0
/** A fresh, realistic log id per test: build id, attempt, step. */
function newLogId (step = 0): string {
  const id = logId(attemptId(`0mwv1se3l2c9ee${String(100 + counter++).padStart(3, '0')}`, 1), step)
  if (!ID_PATTERN.test(id)) throw new Error(`test log id ${id} does not match ID_PATTERN`)
  return id
}

/** Everything `source` yields, or its first `limit` bytes (reading no further). */
async function collect (source: AsyncIterable<Uint8Array>, limit = Infinity): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const part of source) {
    parts.push(part)
    size += part.length
    if (size >= limit) break
  }
  return size > limit ? concat(parts).subarray(0, limit) : concat(parts)
}

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

async function readText (logs: LogStore, id: string, from?: number): Promise<string> {
  return dec.decode(await collect(logs.read(id, { from })))
}


logStore.before(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-log-store-'))
  ctx.db = new Level<string, string>(join(ctx.dir, 'db'))
  await ctx.db.open()
  ctx.logs = new LogStore(ctx.db)
})

logStore.after(async ctx => {
  if (ctx.db !== undefined && ctx.db.status === 'open') await ctx.db.close()
  if (ctx.dir !== undefined) await rm(ctx.dir, { recursive: true, force: true })
})

logStore('append at 0, then at the returned size; read the whole log', async ({ logs }) => {
  const id = newLogId()
  const size1 = await logs.append(id, 0, bytes('hello '))
  assert.is(size1, 6)
  const size2 = await logs.append(id, size1, bytes('world\n'))
  assert.is(size2, 12)
  assert.is(await readText(logs, id), 'hello world\n')
  const info = await logs.info(id)
  assert.ok(info !== undefined)
  assert.is(info.size, 12)
  assert.is(info.sealed, false)
})

logStore('read from offsets inside a chunk, at chunk boundaries, at the end and past it', async ({ logs }) => {
  const id = newLogId()
  // Three chunks: [0,4) "abcd", [4,7) "efg", [7,12) "hijkl"
  let size = await logs.append(id, 0, bytes('abcd'))
  size = await logs.append(id, size, bytes('efg'))
  size = await logs.append(id, size, bytes('hijkl'))
  assert.is(size, 12)
  const whole = 'abcdefghijkl'
  for (let from = 0; from <= 12; from++) {
    assert.is(await readText(logs, id, from), whole.slice(from), `from ${from}`)
  }
  assert.is(await readText(logs, id, 4), 'efghijkl', 'at a chunk boundary')
  assert.is(await readText(logs, id, 5), 'fghijkl', 'inside a chunk')
  assert.is(await readText(logs, id, 12), '', 'at the end')
  assert.is(await readText(logs, id, 13), '', 'one past the end')
  assert.is(await readText(logs, id, 1_000_000), '', 'far past the end')
})

logStore('reading a log that does not exist yields nothing and info is undefined', async ({ logs }) => {
  const id = newLogId()
  assert.is(await readText(logs, id), '')
  assert.is(await logs.info(id), undefined)
})

logStore('an identical resend is idempotent: same size, content not doubled', async ({ logs }) => {
  const id = newLogId()
  const size = await logs.append(id, 0, bytes('line one\n'))
  const size2 = await logs.append(id, size, bytes('line two\n'))
  assert.is(size2, 18)
  // A writer that lost the reply resends both appends.
  assert.is(await logs.append(id, 0, bytes('line one\n')), 18)
  assert.is(await logs.append(id, size, bytes('line two\n')), 18)
  assert.is(await readText(logs, id), 'line one\nline two\n')
  assert.is((await logs.info(id))?.size, 18)
})

logStore('a resend that overlaps and extends appends only the new tail', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('0123456789'))
  // Offset 6 is before the size (10), the end (14) after it: only "abcd" is new.
  const size = await logs.append(id, 6, bytes('6789abcd'))
  assert.is(size, 14)
  assert.is(await readText(logs, id), '0123456789abcd')
  assert.is(await readText(logs, id, 8), '89abcd')
  assert.is(await readText(logs, id, 10), 'abcd')
  assert.is(await readText(logs, id, 12), 'cd')
})

logStore('a gap is refused with the size the store holds, and nothing is stored', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('abc'))
  const err = await rejection(logs.append(id, 5, bytes('XYZ')))
  assert.is(err.name, 'LogGapError')
  assert.is(err.size, 3)
  assert.is((await logs.info(id))?.size, 3)
  assert.is(await readText(logs, id), 'abc')
  // The writer rewinds to the size it was told and carries on.
  assert.is(await logs.append(id, err.size, bytes('de')), 5)
  assert.is(await readText(logs, id), 'abcde')
})

logStore('a gap on a log that does not exist yet reports size 0 and creates nothing', async ({ logs }) => {
  const id = newLogId()
  const err = await rejection(logs.append(id, 10, bytes('late')))
  assert.is(err.name, 'LogGapError')
  assert.is(err.size, 0)
  assert.is(await logs.info(id), undefined)
  assert.is(await readText(logs, id), '')
})

logStore('seal at the right size seals; sealing again at that size is fine', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('done\n'))
  const info = await logs.seal(id, 5)
  assert.is(info.sealed, true)
  assert.is(info.size, 5)
  assert.type(info.sealedAt, 'string')
  const stored = await logs.info(id)
  assert.is(stored?.sealed, true)
  const again = await logs.seal(id, 5)
  assert.is(again.sealed, true)
  assert.is(again.size, 5)
})

logStore('seal at the wrong size throws LogGapError and leaves the log open', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('12345'))
  const short = await rejection(logs.seal(id, 3))
  assert.is(short.name, 'LogGapError')
  assert.is(short.size, 5)
  const long = await rejection(logs.seal(id, 9))
  assert.is(long.name, 'LogGapError')
  assert.is(long.size, 5)
  assert.is((await logs.info(id))?.sealed, false)
  assert.is(await logs.append(id, 5, bytes('6')), 6)
})

logStore('append after seal throws LogSealedError; an identical resend of held bytes still answers the size', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('abc'))
  await logs.seal(id, 3)
  const err = await rejection(logs.append(id, 3, bytes('d')))
  assert.is(err.name, 'LogSealedError')
  const overlapping = await rejection(logs.append(id, 1, bytes('bcX')))
  assert.is(overlapping.name, 'LogSealedError')
  // A resend of bytes the log already holds is not an append past the seal.
  assert.is(await logs.append(id, 0, bytes('abc')), 3)
  assert.is(await readText(logs, id), 'abc')
  assert.is((await logs.info(id))?.size, 3)
})

logStore('a follower of a growing log gets every byte in order and ends by itself after the seal', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('start\n'))
  const follower = collect(logs.read(id, { follow: true }))
  await sleep(30)
  let size = 6
  for (const line of ['one\n', 'two\n', 'three\n']) {
    size = await logs.append(id, size, bytes(line))
    await sleep(30)
  }
  await logs.seal(id, size)
  const got = await within(5_000, 'the follower to end after the seal', follower)
  assert.is(dec.decode(got), 'start\none\ntwo\nthree\n')
})

logStore('a follower from an offset inside the log gets the rest and the new bytes', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('0123456789'))
  const follower = collect(logs.read(id, { from: 7, follow: true }))
  await sleep(20)
  await logs.append(id, 10, bytes('ab'))
  await logs.seal(id, 12)
  assert.is(dec.decode(await within(5_000, 'the follower to end', follower)), '789ab')
})

logStore('a follower of a sealed log ends at once with its bytes', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('all of it'))
  await logs.seal(id, 9)
  assert.is(dec.decode(await within(5_000, 'a follow of a sealed log', collect(logs.read(id, { follow: true })))), 'all of it')
})

logStore('following a log that does not exist yet waits, then gets its bytes once appended', async ({ logs }) => {
  const id = newLogId()
  const received: string[] = []
  const follower = (async () => {
    for await (const chunk of logs.read(id, { follow: true })) received.push(dec.decode(chunk))
  })()
  await sleep(100)
  assert.equal(received, [], 'nothing before the log exists')
  await logs.append(id, 0, bytes('first'))
  const deadline = Date.now() + 5_000
  while (received.join('') !== 'first' && Date.now() < deadline) await sleep(10)
  assert.is(received.join(''), 'first')
  await logs.append(id, 5, bytes(' second'))
  await logs.seal(id, 12)
  await within(5_000, 'the follower to end after the seal', follower)
  assert.is(received.join(''), 'first second')
})

logStore('a follower is stopped by its AbortSignal', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('partial'))
  const controller = new AbortController()
  const received: string[] = []
  const follower = (async () => {
    for await (const chunk of logs.read(id, { follow: true, signal: controller.signal })) received.push(dec.decode(chunk))
  })()
  // Bounded by the event (the bytes arriving), not a short timer: on a busy machine 100 ms was not always enough.
  await waitFor('the follower to receive what is there', () => received.join('') === 'partial', 10_000, 5)
  controller.abort()
  await within(5_000, 'the aborted follower to end', follower)
  assert.is(received.join(''), 'partial')
  assert.is((await logs.info(id))?.sealed, false, 'the log itself stays open')
})

logStore('a follower whose signal is already aborted returns what is there and ends', async ({ logs }) => {
  const id = newLogId()
  await logs.append(id, 0, bytes('xyz'))
  const got = await within(5_000, 'a pre-aborted follower', collect(logs.read(id, { follow: true, signal: AbortSignal.abort() })))
  assert.is(dec.decode(got), 'xyz')
})

logStore('many concurrent appends at correct offsets serialise correctly', async ({ logs }) => {
  const id = newLogId()
  const lines = Array.from({ length: 200 }, (_, i) => `line ${String(i).padStart(3, '0')}\n`)
  const pending: Array<Promise<number>> = []
  let offset = 0
  for (const line of lines) {
    pending.push(logs.append(id, offset, bytes(line)))
    offset += line.length
  }
  const sizes = await Promise.all(pending)
  let expected = 0
  sizes.forEach((size, i) => {
    expected += lines[i].length
    assert.is(size, expected, `size after append ${i}`)
  })
  assert.is(await readText(logs, id), lines.join(''))
  assert.is((await logs.info(id))?.size, offset)
  // Reads from every line start see the right tail.
  assert.is(await readText(logs, id, offset - lines[199].length), lines[199])
})

logStore('concurrent appends where one leaves a gap: only that one is refused', async ({ logs }) => {
  const id = newLogId()
  const a = logs.append(id, 0, bytes('aaaa'))
  const gap = logs.append(id, 10, bytes('zz'))
  const b = logs.append(id, 4, bytes('bbbb'))
  assert.is(await a, 4)
  const err = await rejection(gap)
  assert.is(err.name, 'LogGapError')
  assert.is(err.size, 4)
  assert.is(await b, 8)
  assert.is(await readText(logs, id), 'aaaabbbb')
})

logStore('data survives closing and reopening the database', async ctx => {
  const sealedId = newLogId(1)
  const openId = newLogId(2)
  await ctx.logs.append(sealedId, 0, bytes('kept '))
  await ctx.logs.append(sealedId, 5, bytes('forever'))
  await ctx.logs.seal(sealedId, 12)
  await ctx.logs.append(openId, 0, bytes('still growing'))
  await ctx.db.close()

  ctx.db = new Level<string, string>(join(ctx.dir, 'db'))
  await ctx.db.open()
  ctx.logs = new LogStore(ctx.db)
  const sealed = await ctx.logs.info(sealedId)
  assert.ok(sealed !== undefined)
  assert.is(sealed.size, 12)
  assert.is(sealed.sealed, true)
  assert.is(await readText(ctx.logs, sealedId), 'kept forever')
  assert.is(await readText(ctx.logs, sealedId, 5), 'forever')
  const open = await ctx.logs.info(openId)
  assert.is(open?.size, 13)
  assert.is(open?.sealed, false)
  assert.is(await readText(ctx.logs, openId), 'still growing')
  // The reopened store carries on where the old one stopped.
  assert.is(await ctx.logs.append(openId, 13, bytes('!')), 14)
  assert.is((await rejection(ctx.logs.append(sealedId, 12, bytes('x')))).name, 'LogSealedError')
})

logStore('log ids that are prefixes of each other do not mix their bytes', async ({ logs }) => {
  const base = `0mwv1se3l2c9ee${String(100 + counter++).padStart(3, '0')}`
  const attempt = attemptId(base, 1)
  const s1 = logId(attempt, 1)
  const s10 = logId(attempt, 10)
  const s11 = logId(attempt, 11)
  for (const id of [s1, s10, s11, attempt]) assert.ok(ID_PATTERN.test(id), id)
  // Interleave so the chunks of all logs sit next to each other in the key space.
  await logs.append(s10, 0, bytes('TEN-a'))
  await logs.append(s1, 0, bytes('one-a'))
  await logs.append(s11, 0, bytes('ELEVEN'))
  await logs.append(attempt, 0, bytes('attempt'))
  await logs.append(s10, 5, bytes('TEN-b'))
  await logs.append(s1, 5, bytes('one-b'))
  assert.is(await readText(logs, s1), 'one-aone-b')
  assert.is(await readText(logs, s10), 'TEN-aTEN-b')
  assert.is(await readText(logs, s11), 'ELEVEN')
  assert.is(await readText(logs, attempt), 'attempt')
  assert.is(await readText(logs, s1, 3), '-aone-b')
  assert.is(await readText(logs, s10, 7), 'N-b')
  assert.is(await readText(logs, s1, 10), '')
  assert.is(await readText(logs, s1, 12), '')
  // Sealing one does not seal its prefix relatives.
  await logs.seal(s1, 10)
  assert.is((await logs.info(s10))?.sealed, false)
  assert.is(await logs.append(s10, 10, bytes('!')), 11)
  // A follower of s1 (sealed) is not woken into reading s10's bytes.
  assert.is(dec.decode(await within(5_000, 'follow of a sealed log', collect(logs.read(s1, { follow: true })))), 'one-aone-b')
})

logStore('sealing into content: blocks and a manifest in the blockstore, the CID noted, a second seal the same, a wrong size refused', async ({ db, logs }) => {
  const blocks = new Blockstore(db)
  const added: string[] = []
  const sealer = new LogSealer(logs, blocks, { add: async cid => { added.push(cid.toString()) } })
  const id = newLogId()
  // 2.5 blocks of output in appends that do not line up with blocks.
  const whole = new Uint8Array(2.5 * 1024 * 1024)
  for (let i = 0; i < whole.length; i++) whole[i] = (i * 31 + (i >> 10)) & 255
  for (let at = 0; at < whole.length; at += 300_000) await logs.append(id, at, whole.subarray(at, at + 300_000))
  const wrong = await rejection(sealer.seal(id, whole.length - 1))
  assert.is(wrong.name, 'LogGapError')
  assert.is((await logs.info(id))?.sealed, false, 'a seal at the wrong size changes nothing')

  const expected = (await nameContent([whole])).cid.toString()

  const [first, again] = await Promise.all([sealer.seal(id, whole.length), sealer.seal(id, whole.length)])
  assert.is(first.cid, expected)
  assert.is(again.cid, expected, 'a seal resent while the first is cut gets the same CID')
  assert.is((await sealer.seal(id, whole.length)).cid, expected, 'and so does one after')
  assert.is((await logs.info(id))?.cid, expected)
  assert.equal(added, [expected], 'the content is listed as a root, once')
  const manifest = decodeManifest((await blocks.get(parseCid(expected)))!)
  assert.is(manifest.size, whole.length)
  assert.is(manifest.blocks.length, 3)
  for (const block of manifest.blocks) assert.ok(await blocks.has(block.cid))

  const empty = newLogId()
  const sealedEmpty = await sealer.seal(empty, 0)
  assert.ok(await blocks.has(parseCid(sealedEmpty.cid!)), 'an empty log is the empty block, and it is held')
  const fenced = newLogId()
  await logs.append(fenced, 0, bytes('lost'))
  await logs.fence(fenced)
  assert.is((await sealer.seal(fenced, 4)).cid, undefined, 'a fenced log gets no CID')
})

/** `size` bytes that differ from block to block (no two blocks alike, so none is kept once for two logs). */
function logBytes (size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 10) * 7 + (i >> 20) * 13 + seed * 101) & 255
  return bytes
}

/** Append `bytes` at `base` in appends of the given sizes, over and over, as a worker would. */
async function appendIn (logs: LogStore, id: string, bytes: Uint8Array, sizes: number[], base = 0): Promise<void> {
  for (let at = 0, n = 0; at < bytes.length; n++) {
    const size = sizes[n % sizes.length]
    await logs.append(id, base + at, bytes.subarray(at, at + size))
    at = Math.min(bytes.length, at + size)
  }
}

/** Bytes of the log's file on disk (not its length: a whole block kept as content leaves a hole). */
async function fileBytesOnDisk (dir: string, id: string): Promise<number> {
  const file = join(dir, 'logs', buildOf(id).slice(-2), id)
  return (await stat(file)).blocks * 512
}

const sealing = suite<Ctx & { blocks: Blockstore, sealer: LogSealer, roots: string[] }>('log-store: sealing into content as the log grows', {} as any)

sealing.before.each(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-log-seal-'))
  ctx.db = new Level<string, string>(join(ctx.dir, 'db'))
  await ctx.db.open()
  ctx.logs = new LogStore(ctx.db)
  ctx.blocks = new Blockstore(ctx.db)
  ctx.roots = []
  ctx.sealer = new LogSealer(ctx.logs, ctx.blocks, { add: async cid => { ctx.roots.push(cid.toString()) } })
})

sealing.after.each(async ctx => {
  if (ctx.db.status === 'open') await ctx.db.close()
  await rm(ctx.dir, { recursive: true, force: true })
})

sealing('whatever the appends, the CID is the one nameContent gives the same bytes', async ({ logs, sealer }) => {
  const B = BLOCK_BYTES
  const cases: Array<[number, number[]]> = [
    [1, [1]], [B - 1, [B]], [B, [B]], [B + 1, [B]], [2 * B, [B]], [3 * B + 5, [B]],
    [2.5 * B, [300_000]], [3 * B, [65_536, B - 65_536, B]], [2 * B + 7, [7, B, B]], [4 * B, [B, 1, B - 1]]
  ]
  for (const [i, [size, sizes]] of cases.entries()) {
    const id = newLogId()
    const bytes = logBytes(size, i)
    await appendIn(logs, id, bytes, sizes)
    const sealed = await sealer.seal(id, size)
    assert.is(sealed.cid, (await nameContent([bytes])).cid.toString(), `${size} bytes in appends of ${sizes.join(', ')}`)
    assert.ok(Buffer.from(await collect(logs.read(id))).equals(Buffer.from(bytes)), `${size} bytes read back`)
  }
})

sealing('whole blocks that arrive whole are kept once, as content: the log has a hole there, and the seal reads nothing back', async ({ dir, logs, sealer, blocks }) => {
  const id = newLogId()
  const bytes = logBytes(3 * BLOCK_BYTES + 1000, 1)
  await appendIn(logs, id, bytes, [BLOCK_BYTES])
  const kept = await logs.keptBlocks(id)
  assert.is(kept.length, 3)
  for (const cid of kept) assert.ok(await blocks.has(parseCid(cid)))
  assert.ok(await fileBytesOnDisk(dir, id) < BLOCK_BYTES, 'the file holds the last bytes only')
  // Every offset around the kept blocks reads as written, following or not.
  for (const from of [0, 1, BLOCK_BYTES - 1, BLOCK_BYTES, 2 * BLOCK_BYTES + 17, 3 * BLOCK_BYTES, 3 * BLOCK_BYTES + 999]) {
    assert.ok(Buffer.from(await collect(logs.read(id, { from }))).equals(Buffer.from(bytes.subarray(from))), `from ${from}`)
  }
  const read = logs.read.bind(logs)
  let reads = 0
  logs.read = (...args) => { reads++; return read(...args) }
  const sealed = await sealer.seal(id, bytes.length)
  assert.is(reads, 0, 'named as it came')
  assert.is(sealed.cid, (await nameContent([bytes])).cid.toString())
})

sealing('reads from any offset see every byte once, where bytes in the file run into a block kept as content', async ({ logs, sealer }) => {
  const id = newLogId()
  const B = BLOCK_BYTES
  const bytes = logBytes(3 * B + 5, 8)
  // Block 0 in two pieces (the file), blocks 1 and 2 whole (kept as content), 5 bytes after them (the file).
  await appendIn(logs, id, bytes, [300_000, B - 300_000, B, B, 5])
  assert.is((await logs.keptBlocks(id)).length, 2)
  for (const from of [0, 1, 299_999, 300_000, B - 1000, B - 1, B, B + 1, 2 * B - 1, 2 * B, 3 * B, 3 * B + 4, 3 * B + 5]) {
    assert.ok(Buffer.from(await collect(logs.read(id, { from }))).equals(Buffer.from(bytes.subarray(from))), `from ${from}`)
  }
  for (const [from, to] of [[B - 1000, B + 1000], [300_000, 2 * B + 10], [B - 1, 3 * B + 5]]) {
    assert.ok(Buffer.from(await logs.range(id, from, to)).equals(Buffer.from(bytes.subarray(from, to))), `${from} to ${to}`)
  }
  await sealer.seal(id, bytes.length)
})

sealing('a follower of a growing log gets every byte in order, across blocks kept as content', async ({ logs, sealer }) => {
  const id = newLogId()
  const bytes = logBytes(4 * BLOCK_BYTES + 3, 2)
  const follower = collect(logs.read(id, { follow: true }))
  await appendIn(logs, id, bytes, [100_000, BLOCK_BYTES - 100_000, BLOCK_BYTES, 3])
  await sealer.seal(id, bytes.length)
  assert.ok(Buffer.from(await within(10_000, 'the follower to end', follower)).equals(Buffer.from(bytes)))
})

sealing('a store that restarts halfway names the log at its seal from what it holds, kept blocks and all', async ctx => {
  const id = newLogId()
  const bytes = logBytes(3 * BLOCK_BYTES + 10, 3)
  await appendIn(ctx.logs, id, bytes.subarray(0, 2 * BLOCK_BYTES), [BLOCK_BYTES])
  await ctx.db.close()
  ctx.db = new Level<string, string>(join(ctx.dir, 'db'))
  await ctx.db.open()
  ctx.logs = new LogStore(ctx.db)
  ctx.blocks = new Blockstore(ctx.db)
  ctx.sealer = new LogSealer(ctx.logs, ctx.blocks, { add: async cid => { ctx.roots.push(cid.toString()) } })
  await appendIn(ctx.logs, id, bytes.subarray(2 * BLOCK_BYTES), [BLOCK_BYTES], 2 * BLOCK_BYTES)
  // Resent after the restart: nothing changes.
  assert.is(await ctx.logs.append(id, BLOCK_BYTES, bytes.subarray(BLOCK_BYTES, 2 * BLOCK_BYTES)), bytes.length)
  const expected = (await nameContent([bytes])).cid.toString()
  assert.is((await ctx.sealer.seal(id, bytes.length)).cid, expected)
  assert.is((await ctx.sealer.seal(id, bytes.length)).cid, expected, 'and again')
  assert.ok(Buffer.from(await collect(ctx.logs.read(id))).equals(Buffer.from(bytes)))
})

sealing(`past ${MAX_NAMED_LOGS} logs named at once the oldest is named at its seal instead, as correctly`, async ({ logs, sealer }) => {
  const ids = Array.from({ length: MAX_NAMED_LOGS + 2 }, () => newLogId())
  for (const [i, id] of ids.entries()) await logs.append(id, 0, logBytes(10, i))
  const first = logBytes(BLOCK_BYTES + 10, 0)
  await logs.append(ids[0], 10, first.subarray(10))
  assert.is((await sealer.seal(ids[0], first.length)).cid, (await nameContent([first])).cid.toString())
  assert.is((await sealer.seal(ids[1], 10)).cid, (await nameContent([logBytes(10, 1)])).cid.toString())
})

sealing('a fenced log gets no CID and keeps its bytes: the blocks kept for it go back into its file', async ({ dir, logs, sealer }) => {
  const id = newLogId()
  const bytes = logBytes(2 * BLOCK_BYTES + 5, 4)
  await appendIn(logs, id, bytes, [BLOCK_BYTES])
  assert.is((await logs.keptBlocks(id)).length, 2)
  await logs.fence(id)
  assert.equal(await logs.keptBlocks(id), [])
  assert.ok(await fileBytesOnDisk(dir, id) >= bytes.length, 'all of it in the file')
  assert.ok(Buffer.from(await collect(logs.read(id))).equals(Buffer.from(bytes)))
  assert.is((await sealer.seal(id, bytes.length)).cid, undefined)
})

sealing('bytes in a kept block that is gone (its content evicted) are not made up: reading them says so', async ({ logs, sealer, blocks }) => {
  const id = newLogId()
  const bytes = logBytes(2 * BLOCK_BYTES, 5)
  await appendIn(logs, id, bytes, [BLOCK_BYTES])
  await sealer.seal(id, bytes.length)
  const [, second] = await logs.keptBlocks(id)
  await blocks.exclusive(async () => { await blocks.commit([], -BLOCK_BYTES, [second]) })
  assert.ok(Buffer.from(await collect(logs.read(id, { from: 5 }), BLOCK_BYTES - 5)).equals(Buffer.from(bytes.subarray(5, BLOCK_BYTES))), 'the first block still reads')
  const err = await rejection(collect(logs.read(id, { from: 5 })))
  assert.is(err.name, 'LogBlockMissingError')
})

sealing('a log an earlier version kept in LevelDB chunks is read, appended to and sealed as before', async ({ db, logs, sealer, dir }) => {
  const id = newLogId()
  const old = logBytes(BLOCK_BYTES + 100, 6)
  await db.sublevel<string, unknown>('log-meta', { valueEncoding: 'json' }).put(id, { size: old.length, sealed: false, created: new Date().toISOString() })
  await db.sublevel<string, Uint8Array>('log-chunks', { valueEncoding: 'view' }).put(`${id}!${'0'.repeat(12)}`, old)
  const more = logBytes(BLOCK_BYTES, 7)
  assert.is(await logs.append(id, old.length, more), old.length + more.length)
  const whole = Buffer.concat([old, more])
  assert.ok(Buffer.from(await collect(logs.read(id, { from: 3 }))).equals(whole.subarray(3)))
  assert.is((await sealer.seal(id, whole.length)).cid, (await nameContent([whole])).cid.toString())
  assert.equal(await readdir(join(dir, 'logs')).catch(() => []), [], 'no file for it')
})

logStore.run()
sealing.run()

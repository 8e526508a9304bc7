// `grid put` and `grid get` as users run them, against `grid up` in another process.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes, randomFillSync } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { appendFile, open, readdir, rm } from 'node:fs/promises'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { list as tarList } from 'tar'
import { TEST_CACHE_HOME, grid, gridRun, removeDir, tempDir } from '../helpers.ts'
import { waitFor } from '../wait.ts'
import { RACY_WINDOW_MS } from '../../client/content/name-cache.ts'
import type { CliProcess } from '../helpers.ts'
import { BLOCK_BYTES } from '../../grid/constants.ts'

const putGet = suite<{ dir: string, up: CliProcess, joinFile: string, url: string }>('grid put and grid get')

putGet.before(async ctx => {
  ctx.dir = await tempDir('putget')
  ctx.up = grid(['up', '--workers', '0', '--data', join(ctx.dir, 'data'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
  ctx.url = (await ctx.up.line(/^web: (http\S+)$/m, 30_000))[1]
  await ctx.up.line(/^join: /m, 30_000)
  ctx.joinFile = join(ctx.dir, 'data', 'join')
})

putGet.after(async ctx => {
  await ctx.up?.stop()
  await removeDir(ctx.dir)
})

putGet('a file round-trips byte-identical; putting it again sends nothing', async ({ dir, joinFile }) => {
  const file = join(dir, 'blob.bin')
  const bytes = randomBytes(3 * BLOCK_BYTES + 4321)
  await writeFile(file, bytes)
  const put = await gridRun(['put', '--join', joinFile, file])
  assert.is(put.code, 0, put.stderr)
  const cid = put.stdout.trim()
  assert.match(cid, /^bafy/)
  const out = join(dir, 'back.bin')
  const got = await gridRun(['get', '--join', joinFile, cid, '-o', out])
  assert.is(got.code, 0, got.stderr)
  assert.ok((await readFile(out)).equals(bytes))
  const again = await gridRun(['put', '--join', joinFile, file])
  assert.is(again.stdout.trim(), cid)
  assert.match(again.stderr, /sent 0 bytes in 0 new block/)
})

putGet('a file put before and unchanged since is named from the cache; a change is seen', async ({ dir, joinFile }) => {
  const file = join(dir, 'kept.bin')
  const bytes = randomBytes(2 * BLOCK_BYTES + 17)
  await writeFile(file, bytes)
  // Remembered only once the file is older than the racy window (name-cache.ts).
  await waitFor('the file to be older than the racy window', async () => Date.now() - (await stat(file)).ctimeMs > RACY_WINDOW_MS + 100, RACY_WINDOW_MS + 5_000)
  const entries = async (): Promise<number> => (await readdir(join(TEST_CACHE_HOME, 'nameless-grid', 'names')).catch(() => [])).length
  const before = await entries()
  const put = await gridRun(['put', '--join', joinFile, file])
  assert.is(put.code, 0, put.stderr)
  assert.is(await entries(), before + 1, 'remembered')
  const again = await gridRun(['put', '--join', joinFile, file])
  assert.is(again.code, 0, again.stderr)
  assert.is(again.stdout.trim(), put.stdout.trim())
  assert.match(again.stderr, /sent 0 bytes in 0 new block/)
  await appendFile(file, 'one more line')
  const changed = await gridRun(['put', '--join', joinFile, file])
  assert.is(changed.code, 0, changed.stderr)
  assert.is.not(changed.stdout.trim(), put.stdout.trim(), 'the changed file has its own CID')
  const out = join(dir, 'kept-back.bin')
  assert.is((await gridRun(['get', '--join', joinFile, changed.stdout.trim(), '-o', out])).code, 0)
  assert.ok((await readFile(out)).equals(Buffer.concat([bytes, Buffer.from('one more line')])))
})

putGet('a directory goes as a tar and comes back as one', async ({ dir, joinFile }) => {
  const tree = join(dir, 'tree')
  await mkdir(join(tree, 'sub'), { recursive: true })
  await writeFile(join(tree, 'a.txt'), 'alpha\n')
  await writeFile(join(tree, 'sub', 'b.txt'), 'beta\n')
  const put = await gridRun(['put', '--join', joinFile, tree])
  assert.is(put.code, 0, put.stderr)
  const out = join(dir, 'tree.tar')
  assert.is((await gridRun(['get', '--join', joinFile, put.stdout.trim(), '-o', out])).code, 0)
  const names: string[] = []
  await tarList({ file: out, onReadEntry: entry => { names.push(entry.path) } })
  assert.ok(names.includes('./a.txt') && names.includes('./sub/b.txt'), names.join(' '))
  assert.is((await gridRun(['put', '--join', joinFile, tree])).stdout.trim(), put.stdout.trim(), 'an unchanged tree has the same CID')
})

putGet('bad and unknown CIDs are one line; a failed get leaves no file', async ({ dir, joinFile }) => {
  // A malformed CID is a usage error (exit 2, as every bad argument); a CID nobody holds is a failure (exit 1).
  const bad = await gridRun(['get', '--join', joinFile, 'not-a-cid'])
  assert.is(bad.code, 2)
  assert.match(bad.stderr.trim(), /^grid: not-a-cid is not a CID$/)
  const out = join(dir, 'never.bin')
  const unknown = await gridRun(['get', '--join', joinFile, 'bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am', '-o', out])
  assert.is(unknown.code, 1)
  assert.is(unknown.stderr.trim().split('\n').length, 1, unknown.stderr)
  assert.match(unknown.stderr, /does not hold|no peer holds/)
  assert.is(await stat(out).catch(() => undefined), undefined)
  const missing = await gridRun(['put', '--join', joinFile, join(dir, 'nope')])
  assert.is(missing.code, 1)
  assert.match(missing.stderr.trim(), /^grid: cannot read .*nope: ENOENT$/)
})

/** A file of random bytes written a megabyte at a time (never all in memory), and its sha256. */
async function randomFile (path: string, size: number): Promise<string> {
  const hash = createHash('sha256')
  const out = createWriteStream(path)
  for (let written = 0; written < size;) {
    const chunk = randomFillSync(Buffer.alloc(Math.min(1024 * 1024, size - written)))
    hash.update(chunk)
    written += chunk.length
    if (!out.write(chunk)) await new Promise<void>(resolve => out.once('drain', () => resolve()))
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => err ? reject(err) : resolve()))
  return hash.digest('hex')
}

async function sha256Of (stream: AsyncIterable<Uint8Array>): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of stream) hash.update(chunk)
  return hash.digest('hex')
}

async function sliceOf (path: string, from: number, to: number): Promise<Buffer> {
  const handle = await open(path)
  try {
    const bytes = Buffer.alloc(to - from)
    await handle.read(bytes, 0, bytes.length, from)
    return bytes
  } finally {
    await handle.close()
  }
}

// The range: from nothing to 1 GiB, with the sizes around a block boundary where off-by-ones live.
const ROUND_TRIP_SIZES = [0, 1, BLOCK_BYTES - 1, BLOCK_BYTES, BLOCK_BYTES + 1, 1024 ** 3]

putGet('random files from 0 bytes to 1 GiB round-trip through grid put, grid get and HTTP, ranges included', async ({ dir, joinFile, url }) => {
  for (const size of ROUND_TRIP_SIZES) {
    const file = join(dir, `random-${size}.bin`)
    const back = join(dir, `back-${size}.bin`)
    const sha256 = await randomFile(file, size)
    const put = await gridRun(['put', '--join', joinFile, file], undefined, 600_000)
    assert.is(put.code, 0, put.stderr)
    const cid = put.stdout.trim()
    const got = await gridRun(['get', '--join', joinFile, cid, '-o', back], undefined, 600_000)
    assert.is(got.code, 0, got.stderr)
    assert.is(await sha256Of(createReadStream(back)), sha256, `${size} bytes through grid get`)
    await rm(back)
    const whole = await fetch(`${url}/api/artifacts/${cid}`)
    assert.is(whole.status, 200)
    assert.is(whole.headers.get('content-length'), String(size))
    assert.is(await sha256Of(whole.body as unknown as AsyncIterable<Uint8Array>), sha256, `${size} bytes over HTTP`)
    if (size > 0) {
      // First byte, last byte, a span across a block boundary, and the last kilobyte as a suffix range.
      const spans: Array<[number, number]> = [[0, 1], [size - 1, size], [Math.max(0, Math.min(BLOCK_BYTES - 10, size - 20)), Math.min(size, BLOCK_BYTES + 10)], [Math.max(0, size - 1000), size]]
      for (const [from, to] of spans) {
        const res = await fetch(`${url}/api/artifacts/${cid}`, { headers: { range: `bytes=${from}-${to - 1}` } })
        assert.is(res.status, 206, `range ${from}-${to - 1} of ${size}`)
        assert.ok(Buffer.from(await res.arrayBuffer()).equals(await sliceOf(file, from, to)), `range ${from}-${to - 1} of ${size}`)
      }
      const suffix = await fetch(`${url}/api/artifacts/${cid}`, { headers: { range: 'bytes=-1000' } })
      assert.is(suffix.status, 206)
      assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(await sliceOf(file, Math.max(0, size - 1000), size)))
    }
    await rm(file)
  }
})

putGet.run()

// `grid put` and `grid get` as users run them, against `grid up` in another process.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { list as tarList } from 'tar'
import { grid, gridRun, removeDir, tempDir } from './helpers.ts'
import type { CliProcess } from './helpers.ts'
import { BLOCK_BYTES } from '../artifact-store/constants.ts'

const putGet = suite<{ dir: string, up: CliProcess, joinFile: string }>('grid put and grid get')

putGet.before(async ctx => {
  ctx.dir = await tempDir('putget')
  ctx.up = grid(['up', '--workers', '0', '--data', join(ctx.dir, 'data'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
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
  const bad = await gridRun(['get', '--join', joinFile, 'not-a-cid'])
  assert.is(bad.code, 1)
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

putGet.run()

// The name cache (client/content/name-cache.ts): an unchanged file's name is found again; any change to the file
// (its bytes, size, mtime, ctime, or a new file at the path) or a racy moment means hashing again; a corrupt cache
// is only a miss; the cache stays at NAME_CACHE_ENTRIES files.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { appendFile, chmod, mkdtemp, readdir, rename, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NAME_CACHE_ENTRIES, NameCache } from '../../client/content/name-cache.ts'
import { nameOf } from '../../client/content/name.ts'
import type { Named } from '../../grid/content.ts'

interface Ctx { dir: string, cache: NameCache, file: string }
const names = suite<Ctx>('name cache')

names.before.each(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-names-'))
  ctx.cache = new NameCache(join(ctx.dir, 'cache'), 0)
  ctx.file = join(ctx.dir, 'file.bin')
  await writeFile(ctx.file, 'the bytes of a build output\n'.repeat(1000))
})

names.after.each(async ctx => {
  await rm(ctx.dir, { recursive: true, force: true })
})

async function named (path: string): Promise<Named> {
  return await nameOf((async function * () { yield Buffer.from(await (await import('node:fs/promises')).readFile(path)) })())
}

async function remembered (ctx: Ctx): Promise<Named> {
  const before = await ctx.cache.identify(ctx.file)
  const name = await named(ctx.file)
  await ctx.cache.remember(ctx.file, before, name)
  return name
}

names('an unchanged file is found with its name and block CIDs; another path is not', async ctx => {
  assert.is(await ctx.cache.lookup(ctx.file), undefined, 'nothing before it was remembered')
  const name = await remembered(ctx)
  const found = await ctx.cache.lookup(ctx.file)
  assert.ok(found !== undefined)
  assert.is(found.cid, name.cid)
  assert.is(found.sha256, name.sha256)
  assert.is(found.size, name.size)
  assert.equal(found.blocks.map(String), name.blocks.map(String))
  assert.is(await ctx.cache.lookup(join(ctx.dir, 'other.bin')), undefined)
})

names('any change to the file means a miss: bytes, size, mtime, chmod, a new file renamed over it', async ctx => {
  const changes: Array<[string, () => Promise<unknown>]> = [
    ['appended to', async () => { await appendFile(ctx.file, 'more') }],
    ['rewritten, same size', async () => { await writeFile(ctx.file, 'X'.repeat(28_000)) }],
    ['mtime set back', async () => { await utimes(ctx.file, new Date(2020, 1, 1), new Date(2020, 1, 1)) }],
    ['chmod (ctime)', async () => { await chmod(ctx.file, 0o600) }],
    ['replaced by another file', async () => { const other = join(ctx.dir, 'new.bin'); await writeFile(other, 'the bytes of a build output\n'.repeat(1000)); await rename(other, ctx.file) }]
  ]
  for (const [what, change] of changes) {
    await remembered(ctx)
    assert.ok(await ctx.cache.lookup(ctx.file) !== undefined, `found before: ${what}`)
    await change()
    assert.is(await ctx.cache.lookup(ctx.file), undefined, what)
  }
})

names('a file changed while it was read, or modified within the racy window, is not remembered', async ctx => {
  const before = await ctx.cache.identify(ctx.file)
  const name = await named(ctx.file)
  await appendFile(ctx.file, 'written while it was being hashed')
  await ctx.cache.remember(ctx.file, before, name)
  assert.is(await ctx.cache.lookup(ctx.file), undefined, 'changed during the read')
  const strict = new NameCache(join(ctx.dir, 'cache'), 60_000)
  await strict.remember(ctx.file, await strict.identify(ctx.file), await named(ctx.file))
  assert.is(await strict.lookup(ctx.file), undefined, 'modified a moment ago: racy')
  await ctx.cache.remember(ctx.file, undefined, name)
  assert.is(await ctx.cache.lookup(ctx.file), undefined, 'no identity taken before reading')
})

names('a corrupt or foreign entry is a miss, never an error', async ctx => {
  await remembered(ctx)
  const [entry] = await readdir(join(ctx.dir, 'cache'))
  for (const text of ['{not json', '{}', JSON.stringify({ path: ctx.file, identity: {}, named: { cid: 'nope', size: 1, sha256: 'x', blocks: [] } })]) {
    await writeFile(join(ctx.dir, 'cache', entry), text)
    assert.is(await ctx.cache.lookup(ctx.file), undefined, text)
  }
  const unwritable = new NameCache(join(ctx.file, 'cache'), 0)
  await unwritable.remember(ctx.file, await unwritable.identify(ctx.file), await named(ctx.file))
  assert.is(await unwritable.lookup(ctx.file), undefined)
})

names(`the cache keeps at most ${NAME_CACHE_ENTRIES} entries`, async ctx => {
  const name = await named(ctx.file)
  const files = Array.from({ length: NAME_CACHE_ENTRIES + 5 }, (_, i) => join(ctx.dir, `f${i}`))
  for (const file of files) await writeFile(file, 'x')
  for (const file of files) await ctx.cache.remember(file, await ctx.cache.identify(file), name)
  assert.is((await readdir(join(ctx.dir, 'cache'))).length, NAME_CACHE_ENTRIES)
  assert.ok(await ctx.cache.lookup(files[files.length - 1]) !== undefined, 'the newest stays')
})

names.run()

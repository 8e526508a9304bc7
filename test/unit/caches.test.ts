// The cache index (coordinator/caches.ts) alone, over a real LevelDB in a temp dir: lookups in actions/cache's
// order (exact key in the build's branch, then the default branch, then each restore prefix newest first), trust
// and repository kept apart, entries immutable, content the grid no longer holds a miss (and dropped), least
// recently used dropped at the bound, keys checked, everything kept across a restart.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { Level } from 'level'
import { blockCid } from '../../grid/content.ts'
import { newBuildId } from '../../grid/ids.ts'
import { BadCacheEntryError, Caches, MAX_CACHE_ENTRIES, MAX_CACHE_KEY_CHARS } from '../../coordinator/caches.ts'
import type { CacheEntry, CacheScope } from '../../coordinator/caches.ts'
import { isGridError } from '../../net/errors.ts'
import { removeDir, tempDir } from '../helpers.ts'

const REPO = newBuildId()
const OTHER_REPO = newBuildId()
const BUILD = newBuildId()

const feature: CacheScope = { repo: REPO, branch: 'feature', trusted: true }
const main: CacheScope = { repo: REPO, branch: 'main', trusted: true }
const other: CacheScope = { repo: REPO, branch: 'other', trusted: true }
const untrustedFeature: CacheScope = { repo: REPO, branch: 'feature', trusted: false }
const untrustedMain: CacheScope = { repo: REPO, branch: 'main', trusted: false }
const lone: CacheScope = { repo: null, trusted: true }
const untrustedLone: CacheScope = { repo: null, trusted: false }

/** A distinct CID for each name. */
const cid = (name: string): string => blockCid(new TextEncoder().encode(name)).toString()

interface Ctx { dir: string, caches: Caches, clock: { t: number }, gone: Set<string>, asked: string[] }

/** A clock tests move by hand: every keep and lookup in a test otherwise lands in the same millisecond. */
async function open (ctx: Ctx, init: { maxEntries?: number, held?: (cid: string, entry: CacheEntry) => boolean | Promise<boolean> } = {}): Promise<Caches> {
  const caches = new Caches({
    db: new Level<string, any>(join(ctx.dir, 'caches.db')),
    held: init.held ?? (c => { ctx.asked.push(c); return !ctx.gone.has(c) }),
    maxEntries: init.maxEntries,
    now: () => ctx.clock.t
  })
  await caches.open()
  return caches
}

function fresh (s: ReturnType<typeof suite<Ctx>>, label: string, init?: Parameters<typeof open>[1]): void {
  s.before.each(async ctx => {
    ctx.dir = await tempDir(label)
    ctx.clock = { t: Date.parse('2026-01-01T00:00:00Z') }
    ctx.gone = new Set()
    ctx.asked = []
    ctx.caches = await open(ctx, init)
  })
  s.after.each(async ctx => {
    await ctx.caches.close().catch(() => {})
    await removeDir(ctx.dir)
  })
}

async function keep (ctx: Ctx, key: string, scope: CacheScope, name = `${key}@${JSON.stringify(scope)}`): Promise<string> {
  ctx.clock.t += 1000
  await ctx.caches.keep({ key, scope, cid: cid(name), size: name.length, build: BUILD })
  return cid(name)
}

const find = async (ctx: Ctx, key: string, scope: CacheScope, restore: string[] = []): Promise<CacheEntry | undefined> =>
  await ctx.caches.find({ key, restore, scope })

/** `fn` throws a GridError named `name` (status 400) whose message is one line. */
async function refused (fn: () => Promise<unknown>, name = 'BadCacheEntryError'): Promise<string> {
  try {
    await fn()
  } catch (err: any) {
    assert.ok(isGridError(err), `a GridError, not ${err?.stack ?? err}`)
    assert.is(err.name, name, err.message)
    assert.is(err.status, 400)
    assert.not.match(err.message, /\n/)
    return err.message
  }
  throw new Error(`expected ${name}`)
}

// ---------------------------------------------------------------- lookup order

const lookup = suite<Ctx>('lookup order')
fresh(lookup, 'caches-lookup')

lookup('an exact key in the build\'s own scope is a hit; anything else is a miss', async ctx => {
  const saved = await keep(ctx, 'deps-abc', feature)
  const hit = await find(ctx, 'deps-abc', feature)
  assert.is(hit?.cid, saved)
  assert.equal(hit?.scope, feature)
  assert.is(hit?.build, BUILD)
  assert.is(await find(ctx, 'deps-abd', feature), undefined)
  assert.is(await find(ctx, 'deps-ab', feature), undefined, 'an exact key is not a prefix')
  assert.is(await find(ctx, 'DEPS-ABC', feature), undefined, 'keys are case-sensitive')
})

lookup('a branch falls back to the default branch (main) of its repository, never to another branch or repository', async ctx => {
  const onMain = await keep(ctx, 'deps-abc', main)
  await keep(ctx, 'deps-xyz', other)
  await keep(ctx, 'deps-other-repo', { repo: OTHER_REPO, branch: 'main', trusted: true })
  assert.is((await find(ctx, 'deps-abc', feature))?.cid, onMain)
  assert.is(await find(ctx, 'deps-xyz', feature), undefined, 'a sibling branch is not a fallback')
  assert.is(await find(ctx, 'deps-other-repo', feature), undefined, 'another repository is not a fallback')
  assert.is(await find(ctx, 'deps-abc', { repo: OTHER_REPO, branch: 'main', trusted: true }), undefined)
  // A build with no branch (a tag) still falls back to main.
  assert.is((await find(ctx, 'deps-abc', { repo: REPO, trusted: true }))?.cid, onMain)
})

lookup('the build\'s own branch wins over main for the same key', async ctx => {
  await keep(ctx, 'deps-abc', main)
  const own = await keep(ctx, 'deps-abc', feature)
  assert.is((await find(ctx, 'deps-abc', feature))?.cid, own)
})

lookup('an exact key on main wins over a prefix match on the build\'s own branch', async ctx => {
  await keep(ctx, 'deps-old', feature)
  const exactMain = await keep(ctx, 'deps-new', main)
  assert.is((await find(ctx, 'deps-new', feature, ['deps-']))?.cid, exactMain)
})

lookup('restore prefixes in order: the newest match of the first prefix that has one, own branch before main', async ctx => {
  const olderOwn = await keep(ctx, 'deps-linux-1', feature)
  const newerOwn = await keep(ctx, 'deps-linux-2', feature)
  const newestMain = await keep(ctx, 'deps-linux-3', main)
  const generic = await keep(ctx, 'deps-any', feature)
  assert.ok(olderOwn !== newerOwn)
  assert.is((await find(ctx, 'deps-linux-9', feature, ['deps-linux-', 'deps-']))?.cid, newerOwn, 'newest on the own branch, though main has a newer one')
  assert.is((await find(ctx, 'deps-linux-9', other, ['deps-linux-', 'deps-']))?.cid, newestMain, 'a branch with none falls back to main')
  assert.is((await find(ctx, 'deps-mac-1', feature, ['deps-mac-', 'deps-']))?.cid, generic, 'the second prefix when the first matches nothing')
  assert.is(await find(ctx, 'deps-mac-1', feature, ['deps-mac-', 'tools-']), undefined)
  assert.is(await find(ctx, 'deps-linux-9', feature), undefined, 'no prefix, no fallback')
})

lookup('entries made in the same millisecond: the one kept last is the newest', async ctx => {
  await ctx.caches.keep({ key: 'deps-1', scope: feature, cid: cid('one'), size: 1, build: BUILD })
  await ctx.caches.keep({ key: 'deps-2', scope: feature, cid: cid('two'), size: 1, build: BUILD })
  assert.is((await find(ctx, 'deps-9', feature, ['deps-']))?.cid, cid('two'))
})

// ---------------------------------------------------------------- scopes: trust and lone builds

const scopes = suite<Ctx>('trust and lone builds')
fresh(scopes, 'caches-scopes')

scopes('a trusted build never restores what an untrusted build saved, by exact key or by prefix, on its branch or main', async ctx => {
  await keep(ctx, 'deps-abc', untrustedFeature)
  await keep(ctx, 'deps-main', untrustedMain)
  assert.is(await find(ctx, 'deps-abc', feature, ['deps-']), undefined)
  assert.is(await find(ctx, 'deps-main', feature, ['deps-']), undefined)
  assert.is(await find(ctx, 'deps-main', main), undefined)
  // The untrusted build itself finds them.
  assert.is((await find(ctx, 'deps-abc', untrustedFeature))?.cid, cid(`deps-abc@${JSON.stringify(untrustedFeature)}`))
  assert.is((await find(ctx, 'deps-x', untrustedFeature, ['deps-m']))?.cid, cid(`deps-main@${JSON.stringify(untrustedMain)}`))
})

scopes('an untrusted build never restores what a trusted build saved', async ctx => {
  await keep(ctx, 'deps-abc', feature)
  await keep(ctx, 'deps-main', main)
  assert.is(await find(ctx, 'deps-abc', untrustedFeature, ['deps-']), undefined)
  assert.is(await find(ctx, 'deps-main', untrustedMain, ['deps-']), undefined)
})

scopes('the same key saved trusted and untrusted is two entries; each build gets its own', async ctx => {
  const trusted = await keep(ctx, 'deps-abc', feature)
  const untrusted = await keep(ctx, 'deps-abc', untrustedFeature)
  assert.is((await find(ctx, 'deps-abc', feature))?.cid, trusted)
  assert.is((await find(ctx, 'deps-abc', untrustedFeature))?.cid, untrusted)
  assert.is((await ctx.caches.list()).length, 2)
})

scopes('a lone build sees only lone entries of its trust, and repositories\' builds never see lone entries', async ctx => {
  const loneSaved = await keep(ctx, 'deps-lone', lone)
  await keep(ctx, 'deps-untrusted-lone', untrustedLone)
  await keep(ctx, 'deps-main', main)
  assert.is((await find(ctx, 'deps-lone', lone))?.cid, loneSaved)
  assert.is(await find(ctx, 'deps-main', lone, ['deps-m']), undefined, 'a lone build does not fall back to any repository\'s main')
  assert.is(await find(ctx, 'deps-untrusted-lone', lone), undefined)
  assert.is((await find(ctx, 'deps-x', lone, ['deps-']))?.cid, loneSaved)
  assert.is(await find(ctx, 'deps-lone', feature, ['deps-l']), undefined)
  assert.is(await find(ctx, 'deps-lone', untrustedLone), undefined)
})

// ---------------------------------------------------------------- immutable, held, used

const life = suite<Ctx>('immutable entries, content gone, last use')
fresh(life, 'caches-life')

life('keeping a key that exists in that scope keeps the first entry', async ctx => {
  const first = await keep(ctx, 'deps-abc', feature, 'first')
  await keep(ctx, 'deps-abc', feature, 'second')
  const all = await ctx.caches.list()
  assert.is(all.length, 1)
  assert.is(all[0].cid, first)
  assert.is((await find(ctx, 'deps-abc', feature))?.cid, first)
})

life('an entry whose content is gone is a miss and is dropped; the lookup goes on to the next candidate', async ctx => {
  const older = await keep(ctx, 'deps-1', feature)
  const newer = await keep(ctx, 'deps-2', feature)
  const exact = await keep(ctx, 'deps-9', feature)
  ctx.gone.add(exact)
  ctx.gone.add(newer)
  assert.is((await find(ctx, 'deps-9', feature, ['deps-']))?.cid, older)
  assert.ok(ctx.asked.includes(exact) && ctx.asked.includes(newer), 'both were checked')
  assert.equal((await ctx.caches.list()).map(e => e.key), ['deps-1'])
  ctx.gone.add(older)
  assert.is(await find(ctx, 'deps-9', feature, ['deps-']), undefined)
  assert.equal(await ctx.caches.list(), [])
  // Once dropped, the key can be saved again (with new content).
  const again = await keep(ctx, 'deps-9', feature, 'again')
  assert.is((await find(ctx, 'deps-9', feature))?.cid, again)
})

life('a held check that answers later, or fails, does not fail the lookup', async ctx => {
  await ctx.caches.close()
  let failing = true
  ctx.caches = await open(ctx, {
    held: async c => {
      await new Promise(resolve => setImmediate(resolve))
      if (failing) throw new Error('content index unavailable')
      return !ctx.gone.has(c)
    }
  })
  const saved = await keep(ctx, 'deps-abc', feature)
  assert.is((await find(ctx, 'deps-abc', feature))?.cid, saved, 'a failing check counts as held')
  failing = false
  ctx.gone.add(saved)
  assert.is(await find(ctx, 'deps-abc', feature), undefined)
  assert.is((await ctx.caches.list()).length, 0)
})

life('the held check is told the entry, so a connected maker\'s own copy can count', async ctx => {
  await ctx.caches.close()
  const seen: CacheEntry[] = []
  ctx.caches = await open(ctx, { held: (_c, e) => { seen.push(e); return e.build === BUILD } })
  const saved = await keep(ctx, 'deps-abc', feature)
  assert.ok(await find(ctx, 'deps-abc', feature))
  assert.is(seen[0].cid, saved)
  assert.is(seen[0].key, 'deps-abc')
  assert.is(seen[0].build, BUILD)
  await ctx.caches.keep({ key: 'deps-other', scope: feature, cid: cid('other'), size: 1, build: newBuildId() })
  assert.is(await find(ctx, 'deps-other', feature), undefined)
})

life('over a database its owner opened (the coordinator\'s), close leaves it open', async ctx => {
  await ctx.caches.close()
  const db = new Level<string, any>(join(ctx.dir, 'coordinator.db'))
  await db.open()
  try {
    const shared = new Caches({ db, held: () => true })
    await shared.open()
    await shared.keep({ key: 'deps', scope: main, cid: cid('x'), size: 1, build: BUILD })
    await shared.close()
    assert.is(db.status, 'open')
    const again = new Caches({ db, held: () => true })
    await again.open()
    assert.equal((await again.list()).map(e => e.key), ['deps'])
    // Beside other sublevels of that database, which it never reads as entries.
    await db.sublevel('builds').put('x', 'y')
    await again.open()
    assert.is(again.size, 1)
    await again.close()
  } finally {
    await db.close()
  }
})

life('a hit marks lastUsed; a miss marks nothing; list shows CacheEntry\'s fields only', async ctx => {
  await keep(ctx, 'deps-abc', feature)
  const [before] = await ctx.caches.list()
  assert.is(before.lastUsed, before.created)
  ctx.clock.t += 60_000
  const hit = await find(ctx, 'deps-abc', feature)
  assert.is(hit?.lastUsed, new Date(ctx.clock.t).toISOString())
  assert.is(hit?.created, before.created)
  ctx.clock.t += 60_000
  await find(ctx, 'deps-zzz', feature)
  const [after] = await ctx.caches.list()
  assert.is(after.lastUsed, hit?.lastUsed)
  assert.equal(Object.keys(after).sort(), ['build', 'cid', 'created', 'key', 'lastUsed', 'scope', 'size'])
  assert.equal(Object.keys(after.scope).sort(), ['branch', 'repo', 'trusted'])
  // What find and list give are copies: changing them changes nothing kept.
  after.scope.trusted = false
  assert.ok((await find(ctx, 'deps-abc', feature)) !== undefined)
})

life('remove drops a key in every scope and says how many', async ctx => {
  await keep(ctx, 'deps-abc', feature)
  await keep(ctx, 'deps-abc', main)
  await keep(ctx, 'deps-abc', untrustedLone)
  await keep(ctx, 'deps-abcd', feature)
  assert.is(await ctx.caches.remove('deps-abc'), 3)
  assert.equal((await ctx.caches.list()).map(e => e.key), ['deps-abcd'])
  assert.is(await ctx.caches.remove('deps-abc'), 0)
  assert.is(await ctx.caches.remove('deps-'), 0, 'remove takes a key, not a prefix')
  assert.is(await find(ctx, 'deps-abc', feature), undefined)
})

// ---------------------------------------------------------------- bound

const bound = suite<Ctx>('bounded')
fresh(bound, 'caches-bound', { maxEntries: 3 })

bound('the default bound is a named constant', () => {
  assert.is(MAX_CACHE_ENTRIES, 10_000)
})

bound('past the bound, the least recently used entry is dropped when a new one is kept', async ctx => {
  await keep(ctx, 'a', feature)
  await keep(ctx, 'b', feature)
  await keep(ctx, 'c', feature)
  ctx.clock.t += 1000
  assert.ok(await find(ctx, 'a', feature), 'a used again: b is now the least recently used')
  await keep(ctx, 'd', feature)
  assert.equal((await ctx.caches.list()).map(e => e.key), ['a', 'c', 'd'])
  await keep(ctx, 'e', feature)
  assert.equal((await ctx.caches.list()).map(e => e.key), ['a', 'd', 'e'])
  assert.is(ctx.caches.size, 3)
  // Keeping an existing key drops nothing.
  await keep(ctx, 'e', feature, 'other content')
  assert.equal((await ctx.caches.list()).map(e => e.key), ['a', 'd', 'e'])
})

bound('uses in the same millisecond still order: the one used last stays', async ctx => {
  await ctx.caches.keep({ key: 'a', scope: feature, cid: cid('a'), size: 1, build: BUILD })
  await ctx.caches.keep({ key: 'b', scope: feature, cid: cid('b'), size: 1, build: BUILD })
  await ctx.caches.keep({ key: 'c', scope: feature, cid: cid('c'), size: 1, build: BUILD })
  await find(ctx, 'b', feature)
  await find(ctx, 'a', feature)
  await ctx.caches.keep({ key: 'd', scope: feature, cid: cid('d'), size: 1, build: BUILD })
  assert.equal((await ctx.caches.list()).map(e => e.key), ['a', 'b', 'd'])
})

bound('the bound, the order of use and the entries survive a restart', async ctx => {
  await keep(ctx, 'a', feature)
  await keep(ctx, 'b', feature)
  await keep(ctx, 'c', feature)
  await find(ctx, 'a', feature)
  await ctx.caches.close()
  ctx.caches = await open(ctx, { maxEntries: 3 })
  assert.equal((await ctx.caches.list()).map(e => e.key), ['a', 'b', 'c'])
  await keep(ctx, 'd', feature)
  assert.equal((await ctx.caches.list()).map(e => e.key), ['a', 'c', 'd'])
})

// ---------------------------------------------------------------- bad input

const bad = suite<Ctx>('bad input')
fresh(bad, 'caches-bad')

bad('keys: empty, too long, more than one line or not a string are refused; 512 characters are taken', async ctx => {
  const good = { scope: feature, cid: cid('x'), size: 1, build: BUILD }
  for (const key of ['', 'k'.repeat(MAX_CACHE_KEY_CHARS + 1), 'deps\nabc', 'deps\rabc', 'tab\there', 'nul\0', 42, undefined, null]) {
    await refused(async () => { await ctx.caches.keep({ ...good, key: key as string }) })
    await refused(async () => await ctx.caches.find({ key: key as string, restore: [], scope: feature }))
    if (typeof key === 'string' || key === null) await refused(async () => await ctx.caches.remove(key as string))
  }
  assert.equal(await ctx.caches.list(), [])
  const longest = 'k'.repeat(MAX_CACHE_KEY_CHARS)
  await ctx.caches.keep({ ...good, key: longest })
  assert.ok(await find(ctx, longest, feature))
  // Unicode and the characters a rendered `${{ … }}` leaves are fine on one line.
  await ctx.caches.keep({ ...good, key: 'deps-linux/x64 ✓ a=b' })
  assert.ok(await find(ctx, 'deps-linux/x64 ✓ a=b', feature))
})

bad('restore prefixes are keys too, and restore must be a list', async ctx => {
  await refused(async () => await find(ctx, 'k', feature, ['']))
  await refused(async () => await find(ctx, 'k', feature, ['ok', 'two\nlines']))
  await refused(async () => await ctx.caches.find({ key: 'k', restore: 'deps-' as unknown as string[], scope: feature }))
})

bad('scopes, CIDs, sizes and builds are checked', async ctx => {
  const good = { key: 'deps', scope: feature, cid: cid('x'), size: 1, build: BUILD }
  const badScopes: unknown[] = [null, 'main', { repo: REPO, branch: 'main' }, { repo: REPO, trusted: 'yes' }, { repo: 42, trusted: true },
    { repo: '', trusted: true }, { repo: REPO, branch: '', trusted: true }, { repo: REPO, branch: 'a\nb', trusted: true }]
  for (const scope of badScopes) {
    await refused(async () => { await ctx.caches.keep({ ...good, scope: scope as CacheScope }) })
    await refused(async () => await ctx.caches.find({ key: 'deps', restore: [], scope: scope as CacheScope }))
  }
  for (const c of ['', 'not-a-cid', 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzd', 42]) {
    await refused(async () => { await ctx.caches.keep({ ...good, cid: c as string }) })
  }
  for (const size of [-1, 1.5, Number.NaN, Infinity, '3']) await refused(async () => { await ctx.caches.keep({ ...good, size: size as number }) })
  for (const build of ['', 7, 'b'.repeat(MAX_CACHE_KEY_CHARS + 1)]) await refused(async () => { await ctx.caches.keep({ ...good, build: build as string }) })
  assert.equal(await ctx.caches.list(), [])
  // Fields beside a scope's three are not kept.
  await ctx.caches.keep({ ...good, scope: { ...feature, extra: 'x' } as CacheScope })
  assert.equal((await ctx.caches.list())[0].scope, feature)
  assert.ok(new BadCacheEntryError('x') instanceof Error)
})

// ---------------------------------------------------------------- restart

const restart = suite<Ctx>('restart')
fresh(restart, 'caches-restart')

restart('entries, their last use and immutability survive a restart; newer entries stay newer', async ctx => {
  const first = await keep(ctx, 'deps-1', feature)
  ctx.clock.t += 1000
  const used = await find(ctx, 'deps-1', feature)
  await ctx.caches.close()
  // The clock goes back (another machine, an NTP step): order still follows what was kept last.
  ctx.clock.t -= 3_600_000
  ctx.caches = await open(ctx)
  const [kept] = await ctx.caches.list()
  assert.is(kept.cid, first)
  assert.is(kept.lastUsed, used?.lastUsed)
  await keep(ctx, 'deps-1', feature, 'replacement')
  assert.is((await find(ctx, 'deps-1', feature))?.cid, first)
  const second = await keep(ctx, 'deps-2', feature)
  assert.is((await find(ctx, 'deps-3', feature, ['deps-']))?.cid, second)
})

lookup.run()
scopes.run()
life.run()
bound.run()
bad.run()
restart.run()

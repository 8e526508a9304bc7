// Caches end to end: a real grid (coordinator + store + listening workers over libp2p, real LevelDB), a job whose
// `node_modules`-like cache of a few thousand small files is keyed by hashFiles of a lock file placed as an input.
// The first run misses and saves, the second restores (files, modes and a link identical, nothing regenerated), a
// changed lock file misses the exact key and restores by prefix, a failed build saves only with `save: always`,
// and the coordinator refuses cache requests from a peer that does not hold the attempt. The cache index is a
// Map-backed stand-in with the contract's lookup order (coordinator/caches.ts is wired separately).
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { Build } from '../../grid/build.ts'
import type { CacheLookup, CacheScope } from '../../coordinator/builds-service.ts'
import { askCoordinator } from '../../protocols/builds.ts'
import { blockCid } from '../../grid/content.ts'
import { coordinatorAddress } from '../../net/join-code.ts'
import { startTestGrid, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'

interface Entry { key: string, scope: CacheScope, cid: string, size: number, build: string, created: number }

/** The contract's lookup (exact key in scope, then by each prefix, newest first), over a list. */
class StandInCaches implements CacheLookup {
  readonly entries: Entry[] = []
  private clock = 0
  private readonly same = (a: CacheScope, b: CacheScope): boolean => a.repo === b.repo && a.branch === b.branch && a.trusted === b.trusted
  async find (query: { key: string, restore: string[], scope: CacheScope }): Promise<Entry | undefined> {
    const inScope = this.entries.filter(e => this.same(e.scope, query.scope)).sort((a, b) => b.created - a.created)
    return inScope.find(e => e.key === query.key) ?? query.restore.map(p => inScope.find(e => e.key.startsWith(p))).find(e => e !== undefined)
  }

  async keep (entry: Omit<Entry, 'created'>): Promise<void> {
    if (this.entries.some(e => e.key === entry.key && this.same(e.scope, entry.scope))) return
    this.entries.push({ ...entry, created: this.clock++ })
  }
}

const FILES = 3000
/** Makes node_modules unless it is there (then says so): a restored cache must skip the generation. */
const INSTALL = [
  'if [ -d node_modules ]; then echo "had node_modules"; exit 0; fi',
  'mkdir -p node_modules/pkg/lib node_modules/.bin',
  `i=0; while [ $i -lt ${FILES} ]; do echo "module $i" > node_modules/pkg/lib/m$i.js; i=$((i+1)); done`,
  'printf "#!/bin/sh\\necho hi\\n" > node_modules/.bin/tool; chmod 755 node_modules/.bin/tool',
  'chmod 600 node_modules/pkg/lib/m7.js',
  'ln -s ../pkg/lib/m1.js node_modules/.bin/link'
].join('\n')
/** One line naming every path, its mode, type and link target, then one hash of every file's content. */
const FINGERPRINT = "find node_modules -printf '%p %m %y %l\\n' | LC_ALL=C sort | sha256sum; find node_modules -type f | LC_ALL=C sort | xargs cat | sha256sum; ./node_modules/.bin/tool"

const caches = suite<{ grid: TestGrid, index: StandInCaches }>('caches on the worker')

caches.before(async context => {
  context.grid = await startTestGrid({ workers: [{ listen: true, capabilities: { first: 'yes' } }, { listen: true, capabilities: { second: 'yes' } }] })
  context.index = new StandInCaches();
  (context.grid.node.coordinator as any).builds.components.caches = context.index
})
caches.after(async ({ grid }) => { await grid?.stop() })

async function put (grid: TestGrid, text: string): Promise<string> {
  const res = await grid.api('/api/artifacts', { method: 'POST', body: text, headers: { authorization: `Bearer ${grid.token}` } })
  return (await res.json() as { cid: string }).cid
}
const log = async (grid: TestGrid, build: Build, step: number): Promise<string> => await (await grid.api(`/api/logs/${build.steps[step].log}`)).text()
const cacheJob = (lock: string, extra: Record<string, unknown> = {}): unknown => ({
  requires: { second: '*' },
  inputs: { 'package-lock.json': lock },
  cache: [{ key: "deps-${{ hashFiles('package-lock.json') }}", paths: ['node_modules'], restore: ['deps-'] }],
  steps: [{ name: 'install', run: INSTALL }, { name: 'check', run: FINGERPRINT }],
  ...extra
})
const KEY = /deps-[0-9a-f]{16}/.source

caches('a first run misses and saves; a second restores files, modes and links, and does not regenerate them', async ({ grid, index }) => {
  const lock = await put(grid, '{"lockfileVersion":3}')
  const first = await grid.finished(await grid.submit(cacheJob(lock)), 120_000)
  assert.is(first.status, 'succeeded', first.error)
  const install1 = await log(grid, first, 0)
  assert.match(install1, new RegExp(`^grid: cache ${KEY} missed: saving after the steps\n`))
  assert.not.match(install1, /had node_modules/)
  const check1 = await log(grid, first, 1)
  assert.match(check1, new RegExp(`grid: cache ${KEY} saved \\(\\d+\\.\\d [KM]iB, \\d+\\.\\d s\\)`))
  assert.is(index.entries.length, 1)
  assert.equal(index.entries[0].scope, { repo: null, trusted: true })
  assert.is(index.entries[0].build, first.id)
  const key = index.entries[0].key

  const second = await grid.finished(await grid.submit(cacheJob(lock)), 120_000)
  assert.is(second.status, 'succeeded', second.error)
  const install2 = await log(grid, second, 0)
  assert.match(install2, new RegExp(`^grid: cache ${key} restored from ${key} \\(\\d+\\.\\d [KM]iB, \\d+\\.\\d s\\)\nhad node_modules\n$`))
  const check2 = await log(grid, second, 1)
  assert.not.match(check2, /grid: cache/, 'the exact key was found: nothing is saved')
  // The fingerprint lines (paths, modes, types, link targets; contents; the tool runs) are identical.
  const fingerprint = (text: string): string => text.split('\n').filter(l => !l.startsWith('grid:')).join('\n')
  assert.is(fingerprint(check2), fingerprint(check1))
  assert.match(check1, /hi\n/)
  assert.is(index.entries.length, 1)
})

caches('another worker restores the same cache (from the worker that made it or the stores)', async ({ grid }) => {
  const lock = await put(grid, '{"lockfileVersion":3}')
  const build = await grid.finished(await grid.submit(cacheJob(lock, { requires: { first: '*' } })), 120_000)
  assert.is(build.status, 'succeeded', build.error)
  assert.is(build.attempts[0].worker, grid.workers[0].worker.peerId)
  assert.match(await log(grid, build, 0), new RegExp(`^grid: cache (${KEY}) restored from \\1 \\(.*?\\)\nhad node_modules\n$`))
  assert.match(await log(grid, build, 1), /\nhi\n$/)
})

caches('only entries under the cache\'s paths are restored', async ({ grid }) => {
  const saver = await grid.finished(await grid.submit({ cache: [{ key: 'shared', paths: ['a', 'b'] }], steps: [{ run: 'mkdir a b && echo A > a/x && echo B > b/y' }] }))
  assert.is(saver.status, 'succeeded', saver.error)
  const taker = await grid.finished(await grid.submit({ cache: [{ key: 'shared', paths: ['b'] }], steps: [{ run: 'ls a 2>/dev/null; cat b/y' }] }))
  assert.is(taker.status, 'succeeded', taker.error)
  assert.match(await log(grid, taker, 0), /^grid: cache shared restored from shared \(.*?\)\ngrid: cache shared: left out 2 entries of shared outside its paths \(b\)\nB\n$/)
})

caches('a changed lock file misses the exact key, restores by prefix and saves its own key', async ({ grid, index }) => {
  const before = index.entries.length
  const lock = await put(grid, '{"lockfileVersion":3,"changed":true}')
  const build = await grid.finished(await grid.submit(cacheJob(lock)), 120_000)
  assert.is(build.status, 'succeeded', build.error)
  const install = await log(grid, build, 0)
  const [, key, from] = new RegExp(`^grid: cache (${KEY}) restored from (${KEY}) \\(.*?\\): saving the exact key after the steps\nhad node_modules\n$`).exec(install) ?? []
  assert.ok(key !== undefined, install)
  assert.is.not(key, from)
  assert.ok(index.entries.some(e => e.key === from))
  assert.match(await log(grid, build, 1), new RegExp(`grid: cache ${key} saved`))
  assert.is(index.entries.length, before + 1)
  assert.is(index.entries.at(-1)?.key, key)
})

caches('a failed build saves only with save: always, and says so either way', async ({ grid, index }) => {
  const failing = (save?: 'always'): unknown => ({
    requires: { second: '*' },
    cache: [{ key: `fail-${save ?? 'success'}`, paths: ['out'], ...(save !== undefined ? { save } : {}) }],
    steps: [{ run: 'mkdir out && echo partial > out/x && exit 3' }]
  })
  const plain = await grid.finished(await grid.submit(failing()))
  assert.is(plain.status, 'failed')
  const plainLog = await log(grid, plain, 0)
  assert.match(plainLog, /^grid: cache fail-success missed: saving after the steps\n/)
  assert.match(plainLog, /grid: cache fail-success: not saved: a step failed \(save: always saves after a failure too\)\n/)
  assert.not.ok(index.entries.some(e => e.key === 'fail-success'))

  const always = await grid.finished(await grid.submit(failing('always')))
  assert.is(always.status, 'failed', 'a saved cache does not change the outcome')
  assert.match(await log(grid, always, 0), /grid: cache fail-always saved \(/)
  assert.ok(index.entries.some(e => e.key === 'fail-always' && e.build === always.id))
})

caches('a key that cannot be filled in fails the build before its first step, in one sentence', async ({ grid }) => {
  const build = await grid.finished(await grid.submit({ cache: [{ key: 'k-${{ capabilities.nothere }}', paths: ['x'] }], steps: [{ run: 'echo never' }] }))
  assert.is(build.status, 'failed')
  assert.is(build.error, 'cache key k-${{ capabilities.nothere }} names capabilities.nothere, which this worker does not have')
  assert.is(await log(grid, build, 0), 'grid: cache key k-${{ capabilities.nothere }} names capabilities.nothere, which this worker does not have\n')
})

caches('a missing path and a store-less cache are said, and the build still succeeds', async ({ grid, index }) => {
  const build = await grid.finished(await grid.submit({ cache: [{ key: 'nothing-here', paths: ['absent'] }], steps: [{ run: 'echo ran' }] }))
  assert.is(build.status, 'succeeded', build.error)
  const text = await log(grid, build, 0)
  assert.match(text, /grid: cache path absent does not exist: nothing saved for it\n/)
  assert.match(text, /grid: cache nothing-here: not saved: none of its paths \(absent\) exists\n/)
  assert.not.ok(index.entries.some(e => e.key === 'nothing-here'))
})

caches('an entry whose content nobody holds is not restored: the log says why and the build runs', async ({ grid, index }) => {
  const ghost = blockCid(new TextEncoder().encode(`gone ${Date.now()}`)).toString()
  await index.keep({ key: 'ghost', scope: { repo: null, trusted: true }, cid: ghost, size: 10, build: 'B0000000000000000000000000' })
  const build = await grid.finished(await grid.submit({ cache: [{ key: 'ghost', paths: ['out'] }], steps: [{ run: 'mkdir out && echo ran' }] }), 60_000)
  assert.is(build.status, 'succeeded', build.error)
  const text = await log(grid, build, 0)
  assert.match(text, /^grid: cache ghost: not restored: .+\nran\n/)
  assert.match(text, /grid: cache ghost saved \(/, 'the exact key had no content: it is saved again')
})

caches('a coordinator without a cache index: the build says so once per cache, saves nothing and succeeds', async ({ grid, index }) => {
  const components = (grid.node.coordinator as any).builds.components
  components.caches = undefined
  try {
    const build = await grid.finished(await grid.submit({ cache: [{ key: 'no-index', paths: ['out'] }], steps: [{ run: 'mkdir out && echo ran' }] }))
    assert.is(build.status, 'succeeded', build.error)
    assert.is(await log(grid, build, 0), 'grid: cache no-index: not restored, and will not be saved: this coordinator keeps no caches\nran\n')
  } finally {
    components.caches = index
  }
  assert.not.ok(index.entries.some(e => e.key === 'no-index'))
})

caches('cache requests are refused for an attempt the asking peer does not hold, and accepted from its holder', async ({ grid, index }) => {
  const id = await grid.submit({ requires: { second: '*' }, steps: [{ run: 'sleep 60' }] })
  const running = await waitFor('the build to be running', async () => {
    const build = await (await grid.api(`/api/builds/${id}`)).json() as Build
    return build.status === 'running' && build.attempts.length > 0 ? build : undefined
  })
  const attempt = running.attempts[0].id
  const holder = grid.workers.find(w => w.worker.peerId === running.attempts[0].worker)!
  const other = grid.workers.find(w => w !== holder)!
  const coordinator = coordinatorAddress(grid.node.localJoin)
  const keep = { t: 'cache-keep' as const, attempt, key: 'forged', cid: index.entries[0].cid, size: 1 }
  const forged = await askCoordinator(other.host, coordinator, keep)
  assert.equal(forged, { t: 'error', error: `attempt ${attempt} is not current on this worker` })
  const find = await askCoordinator(other.host, coordinator, { t: 'cache-find', attempt, key: 'deps-', restore: ['deps-'] })
  assert.is(find.t, 'error', 'a find is refused too: it would reveal another scope\'s entries')
  assert.equal(await askCoordinator(other.host, coordinator, { ...keep, attempt: 'NOSUCHATTEMPT' }), { t: 'error', error: 'attempt NOSUCHATTEMPT is not current on this worker' })
  assert.not.ok(index.entries.some(e => e.key === 'forged'))
  // The holder may: the refusal above is about who asks, not about the request.
  assert.equal(await askCoordinator(holder.host, coordinator, keep), { t: 'ok' })
  assert.ok(index.entries.some(e => e.key === 'forged' && e.build === id))
  await grid.api(`/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${grid.token}` } })
  await grid.finished(id)
  assert.equal(await askCoordinator(holder.host, coordinator, { ...keep, key: 'late' }), { t: 'error', error: `attempt ${attempt} is not current on this worker` }, 'not once the attempt ended')
})

caches.run()

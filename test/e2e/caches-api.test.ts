// The cache index over HTTP: the routes of web/caches.ts mounted as the API mounts them, over a real Caches in a
// real LevelDB, asked in this process and over a real HTTP server. GET is an open read showing exactly the listed
// fields; DELETE needs the token, removes a key in every scope, answers 404 when no entry has it and 400 for a key
// no entry could have; keys with `/`, spaces and `${{ }}` leftovers travel percent-encoded.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { Level } from 'level'
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { Caches, MAX_CACHE_KEY_CHARS } from '../../coordinator/caches.ts'
import type { CacheScope } from '../../coordinator/caches.ts'
import { cacheRoutes } from '../../web/caches.ts'
import { startWebServer } from '../../web/server.ts'
import type { WebServer } from '../../web/server.ts'
import { blockCid } from '../../grid/content.ts'
import { newBuildId } from '../../grid/ids.ts'
import { removeDir, tempDir } from '../helpers.ts'

const TOKEN = 'api-token-of-the-caches-test-0123456789'
const REPO = newBuildId()
const BUILD = newBuildId()
const SLASHED = 'deps-linux/x64 ${{ }} ✓'

/** The API's token check, as web/app.ts makes it. */
const auth = (): MiddlewareHandler => bearerAuth({
  token: TOKEN,
  noAuthenticationHeaderMessage: { error: 'this needs the API token: send Authorization: Bearer TOKEN (see DATA/api-token)' },
  invalidAuthenticationHeaderMessage: { error: 'the Authorization header must be "Bearer TOKEN"' },
  invalidTokenMessage: { error: 'the API token is wrong' }
})
const authed = { authorization: `Bearer ${TOKEN}` }

const cid = (name: string): string => blockCid(new TextEncoder().encode(name)).toString()
const feature: CacheScope = { repo: REPO, branch: 'feature', trusted: true }
const main: CacheScope = { repo: REPO, branch: 'main', trusted: true }
const lone: CacheScope = { repo: null, trusted: false }

interface Ctx { dir: string, caches: Caches, app: Hono, gone: Set<string>, web?: WebServer }

const api = suite<Ctx>('cache API')

api.before.each(async ctx => {
  ctx.dir = await tempDir('caches-api')
  ctx.gone = new Set()
  ctx.caches = new Caches({ db: new Level<string, any>(join(ctx.dir, 'coordinator.db')), held: c => !ctx.gone.has(c) })
  await ctx.caches.open()
  // Mounted at / in an app of its own, as web/app.ts mounts the API's sub-apps.
  ctx.app = new Hono()
  ctx.app.route('/', cacheRoutes({ caches: ctx.caches, auth: auth() }))
  ctx.app.notFound(c => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404))
  await ctx.caches.keep({ key: 'deps-abc', scope: feature, cid: cid('feature'), size: 1234, build: BUILD })
  await ctx.caches.keep({ key: 'deps-abc', scope: main, cid: cid('main'), size: 99, build: BUILD })
  await ctx.caches.keep({ key: 'deps-abc', scope: lone, cid: cid('lone'), size: 7, build: BUILD })
  await ctx.caches.keep({ key: SLASHED, scope: main, cid: cid('slashed'), size: 5, build: BUILD })
})

api.after.each(async ctx => {
  await ctx.web?.close()
  ctx.web = undefined
  await ctx.caches.close().catch(() => {})
  await removeDir(ctx.dir)
})

async function ask (ctx: Ctx, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number, json: any }> {
  const res = await ctx.app.request(path, { method, headers })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}

api('GET /api/caches is an open read of key, scope, size, lastUsed, CID and build, and nothing else', async ctx => {
  await ctx.caches.find({ key: 'deps-abc', restore: [], scope: feature })
  const { status, json } = await ask(ctx, 'GET', '/api/caches')
  assert.is(status, 200)
  assert.ok(Array.isArray(json))
  assert.is(json.length, 4)
  for (const entry of json) {
    assert.equal(Object.keys(entry).sort(), ['build', 'cid', 'key', 'lastUsed', 'scope', 'size'])
    assert.ok(Object.keys(entry.scope).every((k: string) => ['repo', 'branch', 'trusted'].includes(k)), JSON.stringify(entry.scope))
    assert.is(entry.build, BUILD)
    assert.ok(!Number.isNaN(Date.parse(entry.lastUsed)))
  }
  const own = json.find((e: any) => e.key === 'deps-abc' && e.scope.branch === 'feature')
  assert.equal(own, { key: 'deps-abc', scope: feature, size: 1234, lastUsed: own.lastUsed, cid: cid('feature'), build: BUILD })
  const loneEntry = json.find((e: any) => e.scope.repo === null)
  assert.equal(loneEntry.scope, { repo: null, trusted: false })
  // With a token it answers the same.
  assert.equal((await ask(ctx, 'GET', '/api/caches', authed)).json, json)
})

api('GET /api/caches on an empty index is an empty list; an entry whose content went is gone from it once looked up', async ctx => {
  ctx.gone.add(cid('feature'))
  ctx.gone.add(cid('main'))
  assert.is(await ctx.caches.find({ key: 'deps-abc', restore: [], scope: feature }), undefined)
  const keys = (await ask(ctx, 'GET', '/api/caches')).json.map((e: any) => `${e.key} ${String(e.scope.repo)}`)
  assert.equal(keys.sort(), [`deps-abc null`, `${SLASHED} ${REPO}`].sort())
  assert.is(await ctx.caches.remove('deps-abc'), 1)
  assert.is(await ctx.caches.remove(SLASHED), 1)
  assert.equal((await ask(ctx, 'GET', '/api/caches')).json, [])
})

api('DELETE /api/caches/:key needs the token', async ctx => {
  for (const headers of [{}, { authorization: 'Bearer wrong-token' }] as Array<Record<string, string>>) {
    const { status, json } = await ask(ctx, 'DELETE', '/api/caches/deps-abc', headers)
    assert.is(status, 401)
    assert.type(json.error, 'string')
  }
  // A header that is not a bearer token at all is a bad request, as bearerAuth answers it everywhere in the API.
  const basic = await ask(ctx, 'DELETE', '/api/caches/deps-abc', { authorization: 'Basic abc' })
  assert.is(basic.status, 400)
  assert.type(basic.json.error, 'string')
  assert.is((await ask(ctx, 'GET', '/api/caches')).json.length, 4, 'nothing was removed')
})

api('DELETE removes the key in every scope and says how many; again it is 404', async ctx => {
  const { status, json } = await ask(ctx, 'DELETE', '/api/caches/deps-abc', authed)
  assert.is(status, 200)
  assert.equal(json, { removed: 3 })
  assert.equal((await ask(ctx, 'GET', '/api/caches')).json.map((e: any) => e.key), [SLASHED])
  assert.is(await ctx.caches.find({ key: 'deps-abc', restore: [], scope: feature }), undefined)
  const again = await ask(ctx, 'DELETE', '/api/caches/deps-abc', authed)
  assert.is(again.status, 404)
  assert.match(again.json.error, /deps-abc/)
  assert.equal(Object.keys(again.json), ['error'])
  // A prefix of a key is not the key.
  assert.is((await ask(ctx, 'DELETE', '/api/caches/deps-', authed)).status, 404)
})

api('a key with a slash, spaces and non-ASCII is deleted when percent-encoded', async ctx => {
  const { status, json } = await ask(ctx, 'DELETE', `/api/caches/${encodeURIComponent(SLASHED)}`, authed)
  assert.is(status, 200)
  assert.equal(json, { removed: 1 })
  // Unencoded, the slash makes another path, which is no route.
  assert.is((await ask(ctx, 'DELETE', '/api/caches/deps-linux/x64', authed)).status, 404)
})

api('a key no entry could have is 400: too long, or holding a newline', async ctx => {
  for (const key of ['k'.repeat(MAX_CACHE_KEY_CHARS + 1), 'two\nlines', 'nul\0']) {
    const { status, json } = await ask(ctx, 'DELETE', `/api/caches/${encodeURIComponent(key)}`, authed)
    assert.is(status, 400, key.slice(0, 20))
    assert.type(json.error, 'string')
    assert.not.match(json.error, /\n/)
  }
  assert.is((await ask(ctx, 'GET', '/api/caches')).json.length, 4)
})

api('over a real HTTP server: list, refuse without the token, delete an encoded key', async ctx => {
  ctx.web = await startWebServer(ctx.app, '127.0.0.1:0')
  const listed = await fetch(`${ctx.web.url}/api/caches`)
  assert.is(listed.status, 200)
  assert.is((await listed.json() as unknown[]).length, 4)
  const path = `${ctx.web.url}/api/caches/${encodeURIComponent(SLASHED)}`
  assert.is((await fetch(path, { method: 'DELETE' })).status, 401)
  const removed = await fetch(path, { method: 'DELETE', headers: authed })
  assert.is(removed.status, 200)
  assert.equal(await removed.json(), { removed: 1 })
  assert.is((await fetch(path, { method: 'DELETE', headers: authed })).status, 404)
})

api('the index and the API agree after a restart of the database', async ctx => {
  await ask(ctx, 'DELETE', '/api/caches/deps-abc', authed)
  await ctx.caches.close()
  ctx.caches = new Caches({ db: new Level<string, any>(join(ctx.dir, 'coordinator.db')), held: () => true })
  await ctx.caches.open()
  ctx.app = new Hono()
  ctx.app.route('/', cacheRoutes({ caches: ctx.caches, auth: auth() }))
  assert.equal((await ask(ctx, 'GET', '/api/caches')).json.map((e: any) => e.key), [SLASHED])
})

api.run()

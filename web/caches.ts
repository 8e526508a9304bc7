// The grid's cache index over HTTP (CONTRACT.md, Caches and reuse): `GET /api/caches` lists entries, an open read
// like every read of the API; `DELETE /api/caches/:key` (API token) drops a key in every scope, as
// `gh cache delete KEY` does for actions/cache. The content itself is left to the stores' eviction: other entries
// or artifacts may name the same CID.
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import { apiError } from './errors.ts'
import { checkCacheKey } from '../coordinator/caches.ts'
import type { CacheEntry, CacheIndex } from '../coordinator/caches.ts'

/** A cache entry as the API shows it: these fields and no others. `lastUsed` is ISO 8601, `size` content bytes. */
export interface CacheAnswer {
  key: string
  scope: { repo: string | null, branch?: string, trusted: boolean }
  size: number
  lastUsed: string
  cid: string
  build: string
}

export interface CacheRoutesInit {
  caches: Pick<CacheIndex, 'list' | 'remove'>
  /** The API token check (bearerAuth), for DELETE. */
  auth: MiddlewareHandler
}

/** Copy only the fields the API shows, so nothing the index keeps beside them leaks into an answer. */
function answer (e: CacheEntry): CacheAnswer {
  const scope = { repo: e.scope.repo, ...(e.scope.branch !== undefined ? { branch: e.scope.branch } : {}), trusted: e.scope.trusted }
  return { key: e.key, scope, size: e.size, lastUsed: e.lastUsed, cid: e.cid, build: e.build }
}

/**
 * The routes `/api/caches` and `/api/caches/:key`, to mount at `/` (`app.route('/', cacheRoutes(…))`).
 * GET answers `CacheAnswer[]` (by key, newest first); DELETE answers `{ removed: N }` (N ≥ 1), 404 when no entry
 * has the key, 400 for a key no entry could have (empty, longer than MAX_CACHE_KEY_CHARS, control characters),
 * 401 without the token. A key with `/` is sent percent-encoded (`%2F`). Errors are `{ "error": "one sentence" }`.
 */
export function cacheRoutes (init: CacheRoutesInit): Hono {
  const { caches, auth } = init
  const routes = new Hono()

  routes.get('/api/caches', async c => c.json((await caches.list()).map(answer)))

  routes.delete('/api/caches/:key', auth, async c => {
    const key = checkCacheKey(c.req.param('key'))
    const removed = await caches.remove(key)
    if (removed === 0) return c.json({ error: `no cache entry has the key ${JSON.stringify(key.slice(0, 120))}` }, 404)
    return c.json({ removed })
  })

  routes.onError(apiError)
  return routes
}

// How the HTTP API answers a failure, in one place for the app and the sub-apps it mounts (which tests also run
// alone): `{ "error": "one sentence" }`, never a stack trace.
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { isGridError } from '../net/errors.ts'
import { DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT } from '../grid/constants.ts'

/**
 * The API's error answer, for the app and every sub-app mounted or tested alone: `{ "error": "one sentence" }` with
 * the status of an HTTPException or a GridError (a full store, an unreachable peer, a bad job); anything else is a
 * bug, answered 500 `internal error` with its stack on the server's stderr.
 */
export function apiError (err: Error, c: Context): Response {
  if (err instanceof HTTPException) {
    // bearerAuth answers with its own response; keep it (it carries WWW-Authenticate).
    const res = err.getResponse()
    if (res.headers.get('content-type')?.includes('json') === true) return res
    return c.json({ error: err.message }, err.status)
  }
  if (isGridError(err)) return c.json({ error: err.message }, err.status as ContentfulStatusCode)
  console.error('http: unexpected error:', err)
  return c.json({ error: 'internal error' }, 500)
}

/**
 * A list route's `?limit=N` (builds, pipelines): DEFAULT_LIST_LIMIT when absent; HTTPException 400 unless a whole
 * number from 1 to MAX_LIST_LIMIT.
 */
export function listLimit (text: string | undefined): number {
  const limit = text === undefined ? DEFAULT_LIST_LIMIT : Number(text)
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) throw new HTTPException(400, { message: `limit must be a whole number from 1 to ${MAX_LIST_LIMIT}` })
  return limit
}

// How the HTTP API answers a failure, in one place for the app and the sub-apps it mounts (which tests also run
// alone): `{ "error": "one sentence" }`, never a stack trace.
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { isGridError } from '../net/errors.ts'

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

// The grid's secrets over HTTP (CONTRACT.md, Secrets and trusted workers): `PUT /api/secrets/:name` sets one,
// `GET /api/secrets` lists names, scopes and times, `DELETE /api/secrets/:name` removes one. All three need the API
// token, the list too: names and scopes are not values, but they tell a reader which repositories and branches
// carry deploy credentials, which is where an attacker would push first. No answer, error or log line holds a value:
// errors about one describe it (too short, line 3 too short, a NUL), and a body that is not JSON is not quoted back.
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { bodyLimit } from 'hono/body-limit'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { isGridError } from '../net/errors.ts'
import { MAX_SECRET_VALUE_BYTES, checkSecretName, parseSecretInit } from '../coordinator/secrets.ts'
import type { Secrets } from '../coordinator/secrets.ts'

/**
 * Bytes of a PUT body: a value of MAX_SECRET_VALUE_BYTES as JSON escapes it (a control character takes 6 bytes,
 * `\u001b`) and a scope of a hundred ids and globs. A larger body is refused (413) before it is read.
 */
export const MAX_SECRET_BODY_BYTES = 6 * MAX_SECRET_VALUE_BYTES + 64 * 1024

export interface SecretRoutesInit {
  secrets: Pick<Secrets, 'set' | 'list' | 'remove'>
  /** The API token check (bearerAuth), for every route. */
  auth: MiddlewareHandler
}

/**
 * The routes `/api/secrets` and `/api/secrets/:name`, to mount at `/` (`app.route('/', secretRoutes(…))`). Answers
 * are records `{ name, repos, branches, created, updated }` (null lists: any); errors `{ "error": "one sentence" }`
 * with the GridError's status (a bad name, value or scope 400, an unknown name 404, a full store 409, a big body 413).
 */
export function secretRoutes (init: SecretRoutesInit): Hono {
  const { secrets, auth } = init
  const routes = new Hono()
  const limit = bodyLimit({
    maxSize: MAX_SECRET_BODY_BYTES,
    // Close the connection: the rest of the body is unread, and a reused connection would read it as a request.
    onError: c => c.json({ error: `a secret's body is at most ${MAX_SECRET_BODY_BYTES} bytes` }, 413, { Connection: 'close' })
  })

  routes.put('/api/secrets/:name', auth, limit, async c => {
    const name = checkSecretName(c.req.param('name'))
    let body: unknown
    try {
      body = JSON.parse(await c.req.text())
    } catch {
      // Never the parser's message: it quotes the text around the mistake, which may be the value.
      return c.json({ error: 'the body must be JSON like {"value": "…", "branches": ["main"]}' }, 400)
    }
    const { value, repos, branches } = parseSecretInit(body)
    const { secret, replaced } = await secrets.set(name, value, { repos, branches })
    return c.json(secret, replaced ? 200 : 201)
  })

  // A read, open like every read of the API (CONTRACT: reads need no credentials): names, scopes and times, never a value.
  routes.get('/api/secrets', c => c.json(secrets.list()))

  routes.delete('/api/secrets/:name', auth, async c => {
    const name = checkSecretName(c.req.param('name'))
    const removed = await secrets.remove(name)
    return removed === undefined ? c.json({ error: `no secret ${name}` }, 404) : c.json(removed)
  })

  // Mounted or alone (tests), the answers are the API's: `{ "error": "one sentence" }`.
  routes.onError((err, c) => {
    if (err instanceof HTTPException) {
      const res = err.getResponse()
      if (res.headers.get('content-type')?.includes('json') === true) return res
      return c.json({ error: err.message }, err.status)
    }
    if (isGridError(err)) return c.json({ error: err.message }, err.status as ContentfulStatusCode)
    // Only the error's name: an unexpected error's message or stack could carry what the request held.
    console.error(`http: unexpected error setting, listing or removing a secret: ${err instanceof Error ? err.name : typeof err}`)
    return c.json({ error: 'internal error' }, 500)
  })
  return routes
}

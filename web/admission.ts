// Shutting peers out at runtime: the operator denies a peer ID seen in build history, and it is dropped and
// refused across the grid without a restart. All of it needs the API token.
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { MAX_ROTATE_BODY_BYTES } from './constants.ts'
import type { Coordinator } from '../coordinator/index.ts'

export interface Admission extends Pick<Coordinator, 'deny' | 'allow'> {
  readonly denied: string[]
  /** A new grid secret and join codes; every node holding only an old code is cut off. Resolves with the ordinary code. */
  rotate (): Promise<string>
  /** A new trust key and trusted join code; workers trusted with the old one are cut off (back untrusted with it). */
  rotateTrusted (): Promise<string>
}

export function admissionRoutes (coordinator: Admission, auth: MiddlewareHandler): Hono {
  const routes = new Hono()
  routes.get('/', c => c.json({ denied: coordinator.denied }))
  routes.post('/', auth, async c => {
    let body: { peer?: unknown }
    try {
      body = await c.req.json()
    } catch {
      return c.json({ error: 'the body must be JSON like {"peer": "12D3KooW…"}' }, 400)
    }
    if (typeof body?.peer !== 'string') return c.json({ error: 'peer must be a peer ID string' }, 400)
    return c.json({ denied: await coordinator.deny(body.peer) })
  })
  routes.delete('/:peer', auth, async c => c.json({ denied: await coordinator.allow(c.req.param('peer')) }))
  return routes
}

/**
 * `POST /api/secret/rotate`: answers the new join code (the operator hands it to the nodes that stay). With the
 * body `{ "trusted": true }` only the trusted join code is made anew, and that is the answer.
 */
export function rotationRoutes (admission: Admission, auth: MiddlewareHandler): Hono {
  const routes = new Hono()
  const limit = bodyLimit({
    maxSize: MAX_ROTATE_BODY_BYTES,
    onError: c => c.json({ error: `the body is at most ${MAX_ROTATE_BODY_BYTES} bytes` }, 413, { Connection: 'close' })
  })
  routes.post('/rotate', auth, limit, async c => {
    const text = await c.req.text()
    let body: { trusted?: unknown } = {}
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text)
      } catch {
        return c.json({ error: 'the body must be empty, or JSON like {"trusted": true}' }, 400)
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) return c.json({ error: 'the body must be empty, or JSON like {"trusted": true}' }, 400)
      const unknown = Object.keys(body).find(k => k !== 'trusted')
      if (unknown !== undefined) return c.json({ error: `${unknown}: unknown key (the body takes only "trusted")` }, 400)
      if (body.trusted !== undefined && typeof body.trusted !== 'boolean') return c.json({ error: 'trusted must be true or false' }, 400)
    }
    return c.json({ join: body.trusted === true ? await admission.rotateTrusted() : await admission.rotate() })
  })
  return routes
}

// Shutting peers out at runtime: the operator denies a peer ID seen in build history, and it is dropped and
// refused across the grid without a restart. All of it needs the API token.
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import type { Coordinator } from '../coordinator/index.ts'

export interface Admission extends Pick<Coordinator, 'deny' | 'allow'> {
  readonly denied: string[]
  /** A new grid secret and join code; every node holding only the old code is cut off. */
  rotate (): Promise<string>
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

/** `POST /api/secret/rotate`: answers the new join code (the operator hands it to the nodes that stay). */
export function rotationRoutes (admission: Admission, auth: MiddlewareHandler): Hono {
  const routes = new Hono()
  routes.post('/rotate', auth, async c => c.json({ join: await admission.rotate() }))
  return routes
}

// Shutting peers out at runtime: the operator denies a peer ID seen in build history, and it is dropped and
// refused across the grid without a restart. All of it needs the API token.
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import type { Coordinator } from '../coordinator/index.ts'

export type Admission = Pick<Coordinator, 'denied' | 'deny' | 'allow'>

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

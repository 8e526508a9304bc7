// GET /metrics: Prometheus text for one grid. Each app gets its own Registry, so several grids in one process
// (the tests) never share or clash over metric names.
import { Counter, Gauge, Registry } from 'prom-client'
import type { MiddlewareHandler } from 'hono'
import { matchedRoutes } from 'hono/route'
import type { Scheduler } from '../coordinator/scheduler.ts'
import type { StoreDirectory } from '../coordinator/store-directory.ts'
import type { StorageState } from '../coordinator/store-content.ts'
import { BUILD_STATUSES, FINISHED } from '../grid/build.ts'
import { MAX_LIST_LIMIT } from '../grid/constants.ts'
import { MAX_REMEMBERED_BUILDS } from './constants.ts'

export interface GridMetricsInit {
  scheduler: Scheduler
  stores: StoreDirectory
  storage?: () => StorageState
}

export interface GridMetrics {
  registry: Registry
  /** Counts every HTTP request by matched route, method and status. */
  requests: MiddlewareHandler
  /** Counts open /api/events streams: wraps the response body so a closed stream is noticed. */
  subscribers: MiddlewareHandler
  /** A log follower (`follow=1`) started; call the result when it ends. */
  tailing (): () => void
}

export function gridMetrics (init: GridMetricsInit): GridMetrics {
  const { scheduler, stores } = init
  const registry = new Registry()
  const capacity = (): ReturnType<Scheduler['capacity']> => scheduler.capacity()

  new Gauge({
    name: 'grid_builds',
    help: `Builds by status, among the newest ${MAX_LIST_LIMIT} in history`,
    labelNames: ['status'],
    registers: [registry],
    async collect () {
      const counts = new Map<string, number>(BUILD_STATUSES.map(s => [s, 0]))
      for (const build of await scheduler.list(MAX_LIST_LIMIT)) counts.set(build.status, (counts.get(build.status) ?? 0) + 1)
      for (const [status, n] of counts) this.set({ status }, n)
    }
  })
  const finished = new Counter({
    name: 'grid_builds_finished_total',
    help: 'Builds that reached a final status since this server started',
    labelNames: ['status'],
    registers: [registry]
  })
  const submitted = new Counter({ name: 'grid_builds_submitted_total', help: 'Builds submitted since this server started', registers: [registry] })
  for (const status of FINISHED) finished.inc({ status }, 0)
  const seen = new Map<string, string>()
  // Listens as long as the scheduler lives: the app and its scheduler end together.
  scheduler.onBuild(build => {
    const before = seen.get(build.id)
    if (before === undefined && build.status === 'queued' && build.attempts.length === 0) submitted.inc()
    if (FINISHED.has(build.status) && before !== build.status) finished.inc({ status: build.status })
    seen.delete(build.id)
    seen.set(build.id, build.status)
    if (seen.size > MAX_REMEMBERED_BUILDS) seen.delete(seen.keys().next().value as string)
  })

  const fromCapacity = (name: string, help: string, pick: (c: ReturnType<typeof capacity>) => number): void => {
    new Gauge({ name, help, registers: [registry], collect () { this.set(pick(capacity())) } })
  }
  fromCapacity('grid_queue_length', 'Builds queued, waiting for a worker', c => c.queued)
  fromCapacity('grid_workers', 'Connected workers', c => c.nodes)
  fromCapacity('grid_worker_slots', 'Build slots the connected workers offer', c => c.slots)
  fromCapacity('grid_worker_slots_busy', 'Build slots running a build', c => c.busy)
  new Gauge({ name: 'grid_stores', help: 'Store nodes the coordinator knows', registers: [registry], collect () { this.set(stores.list().length) } })
  const storage = init.storage
  if (storage !== undefined) {
    const usage = (): StorageState['stores'] => storage().stores
    new Gauge({
      name: 'grid_store_bytes', help: 'Block bytes each store holds', labelNames: ['store'], registers: [registry],
      collect () { this.reset(); for (const s of usage()) this.set({ store: s.peer }, s.bytes) }
    })
    new Gauge({
      name: 'grid_store_max_bytes', help: 'Size cap of each store that has one (--max-size)', labelNames: ['store'], registers: [registry],
      collect () { this.reset(); for (const s of usage()) if (s.maxBytes !== undefined) this.set({ store: s.peer }, s.maxBytes) }
    })
    new Gauge({
      name: 'grid_store_bytes_pushed', help: 'Block bytes pushed to each store since it started (puts and repair copies)', labelNames: ['store'], registers: [registry],
      collect () { this.reset(); for (const s of usage()) this.set({ store: s.peer }, s.received) }
    })
    new Gauge({
      name: 'grid_store_bytes_fetched', help: 'Block bytes fetched from each store since it started', labelNames: ['store'], registers: [registry],
      collect () { this.reset(); for (const s of usage()) this.set({ store: s.peer }, s.served) }
    })
    const fromStorage = (name: string, help: string, pick: (s: StorageState) => number): void => {
      new Gauge({ name, help, registers: [registry], collect () { this.set(pick(storage())) } })
    }
    fromStorage('grid_content_roots', 'Pieces of content (artifact, put or sealed log roots) the stores hold', s => s.roots)
    fromStorage('grid_under_replicated', 'Roots kept on fewer stores than --replicas (or all stores, if fewer)', s => s.underReplicated)
    fromStorage('grid_unavailable_roots', 'Roots no live store holds now', s => s.unavailable)
    fromStorage('grid_repair_pending', 'Roots waiting for repair or being copied', s => s.repairing)
    fromStorage('grid_replicas', 'Stores each piece of content is kept on (--replicas)', s => s.replicas)
  }

  const sse = new Gauge({ name: 'grid_sse_subscribers', help: 'Open /api/events streams', registers: [registry] })
  const tailers = new Gauge({ name: 'grid_log_tail_subscribers', help: 'Logs followed live over HTTP right now (follow=1)', registers: [registry] })
  const http = new Counter({
    name: 'grid_http_requests_total',
    help: 'HTTP requests by matched route, method and status',
    labelNames: ['route', 'method', 'status'],
    registers: [registry]
  })

  return {
    registry,
    tailing: () => {
      tailers.inc()
      let open = true
      return () => { if (open) { open = false; tailers.dec() } }
    },
    requests: async (c, next) => {
      await next()
      // The route pattern, not the path: ids in paths would make a new series per build.
      const route = matchedRoutes(c).filter(r => r.method !== 'ALL').at(-1)?.path ?? 'unmatched'
      http.inc({ route, method: c.req.method, status: String(c.res.status) })
    },
    subscribers: async (c, next) => {
      await next()
      const body = c.res.body
      if (body === null || !c.res.ok) return
      sse.inc()
      let open = true
      const close = (): void => { if (open) { open = false; sse.dec() } }
      const reader = body.getReader()
      const counted = new ReadableStream<Uint8Array>({
        async pull (controller) {
          try {
            const chunk = await reader.read()
            if (chunk.done) { close(); controller.close() } else controller.enqueue(chunk.value)
          } catch (err) {
            close()
            controller.error(err)
          }
        },
        async cancel (reason) {
          close()
          await reader.cancel(reason)
        }
      })
      c.res = new Response(counted, c.res)
    }
  }
}

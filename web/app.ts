// The HTTP API (listed in the README and docs/job.md). Reads are open; writes need the bearer token from DATA/api-token.
// Every error is `{ "error": "one sentence" }` with a 4xx status; nothing a client sends reaches a stack trace.
import { Hono } from 'hono'
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { bearerAuth } from 'hono/bearer-auth'
import { bodyLimit } from 'hono/body-limit'
import { secureHeaders } from 'hono/secure-headers'
import { stream as honoStream, streamSSE } from 'hono/streaming'
import type { Scheduler } from '../coordinator/scheduler.ts'
import type { StoreDirectory } from '../coordinator/store-directory.ts'
import type { LogReader } from '../client/log-reader.ts'
import type { BuildView } from '../client/build-log.ts'
import { buildLog } from '../client/build-log.ts'
import { isBuildId, isLogId } from '../grid/ids.ts'
import { parseJob } from '../grid/job.ts'
import { MAX_JOB_BYTES } from '../grid/constants.ts'
import { uiRoutes } from './ui/pages.ts'
import { gridMetrics } from './metrics.ts'
import { admissionRoutes, rotationRoutes } from './admission.ts'
import type { Admission } from './admission.ts'
import { artifactRoutes } from './artifacts.ts'
import { buildArtifactRoutes } from './build-artifacts.ts'
import type { ArtifactsInit } from './artifacts.ts'
import type { StorageState } from '../coordinator/store-content.ts'
import { MAX_EVENT_BACKLOG } from './constants.ts'
import { apiError, listLimit } from './errors.ts'
import { pipelineRoutes } from './pipelines.ts'
import { repoRoutes } from './repos.ts'
import { secretRoutes } from './secrets.ts'
import { cacheRoutes } from './caches.ts'
import type { CacheIndex } from '../coordinator/caches.ts'
import type { Secrets } from '../coordinator/secrets.ts'
import type { Repos, PipelineStarter } from '../coordinator/repos.ts'
import type { PipelinesApi } from './pipelines.ts'
import type { Pipelines } from '../coordinator/pipelines.ts'

export interface ApiInit {
  scheduler: Scheduler
  stores: StoreDirectory
  logs: LogReader
  /** The HTTP API token (DATA/api-token). */
  token: string
  /** Denying and allowing peers at runtime (`/api/denied`). */
  admission?: Admission
  /** Uploading and downloading content (`/api/artifacts`). */
  artifacts?: ArtifactsInit
  /** The grid's storage: stores and bytes held, replicas, under-replicated content (`/api/capacity`, `/metrics`). */
  storage?: () => StorageState
  /** Pipelines (`/api/pipelines`, and `pipeline` events on /api/events). */
  pipelines?: PipelinesApi & Pick<Pipelines, 'onPipeline'>
  /** Registered repositories and their webhooks (`/api/repos`, `/api/hooks/:id`). */
  repos?: { repos: Repos, pipelines: PipelineStarter, log?: (line: string) => void }
  /** The grid's secrets (`/api/secrets`, all behind the token): names, scopes and times; values are write-only. */
  secrets?: Pick<Secrets, 'set' | 'list' | 'remove'>
  /** The cache index (`/api/caches`: an open list; DELETE behind the token). */
  caches?: Pick<CacheIndex, 'list' | 'remove'>
}

const fail = (status: 400 | 401 | 404 | 409 | 413, message: string): never => {
  throw new HTTPException(status, { message })
}

export function createApp (init: ApiInit): Hono {
  const { scheduler, logs } = init
  const app = new Hono()
  const view: BuildView = {
    get: async id => await scheduler.get(id),
    nextChange: async (id, signal) => {
      await new Promise<void>(resolve => {
        const off = scheduler.onBuild(b => { if (b.id === id) done() })
        const done = (): void => { off(); signal.removeEventListener('abort', done); resolve() }
        signal.addEventListener('abort', done, { once: true })
        if (signal.aborted) done()
      })
    }
  }
  const auth = bearerAuth({
    token: init.token,
    noAuthenticationHeaderMessage: { error: 'this needs the API token: send Authorization: Bearer TOKEN (see DATA/api-token)' },
    invalidAuthenticationHeaderMessage: { error: 'the Authorization header must be "Bearer TOKEN"' },
    invalidTokenMessage: { error: 'the API token is wrong' }
  })

  const metrics = gridMetrics({ scheduler, stores: init.stores, storage: init.storage })
  app.use(metrics.requests)
  app.use(secureHeaders())
  app.use('/api/events', metrics.subscribers)

  // The web UI: /, /timeline, /submit, /builds/:id, /pipelines, /pipelines/:id and its browser modules under /ui/.
  app.route('/', uiRoutes())
  app.get('/metrics', async c => {
    c.header('Content-Type', metrics.registry.contentType)
    return c.body(await metrics.registry.metrics())
  })
  app.get('/api/health', c => c.json({ ok: true }))
  app.get('/api/capacity', c => c.json({ ...scheduler.capacity(), stores: init.stores.list().length, ...(init.storage !== undefined ? { storage: init.storage() } : {}) }))

  // The 413 goes out before the rest of the body is read: close the connection, or a client reusing it would
  // have its next request land in the unread remainder.
  const jobLimit = bodyLimit({
    maxSize: MAX_JOB_BYTES,
    onError: c => c.json({ error: `a job is at most ${MAX_JOB_BYTES} bytes` }, 413, { Connection: 'close' })
  })
  app.post('/api/builds', auth, jobLimit, async c => {
    let body: unknown
    try {
      body = await c.req.json()
    } catch {
      fail(400, 'the body must be a JSON job')
    }
    const build = await scheduler.submit(parseJob(body))
    return c.json({ id: build.id }, 201)
  })

  app.get('/api/builds', async c => {
    const limit = listLimit(c.req.query('limit'))
    return c.json(await scheduler.list(limit))
  })

  app.get('/api/builds/:id', async c => c.json(await knownBuild(scheduler, c.req.param('id'))))

  app.post('/api/builds/:id/cancel', auth, async c => {
    const build = await knownBuild(scheduler, c.req.param('id'))
    return c.json(await scheduler.cancel(build.id))
  })

  app.get('/api/builds/:id/log', async c => {
    const build = await knownBuild(scheduler, c.req.param('id'))
    const { from, follow } = logQuery(c)
    return streamText(c, signal => buildLog(view, logs, build.id, { from, follow, signal }), follow ? metrics.tailing : undefined)
  })

  app.get('/api/logs/:logId', async c => {
    const id = c.req.param('logId')
    if (!isLogId(id)) fail(400, `${id} is not a log id`)
    const { from, follow } = logQuery(c)
    return streamText(c, signal => logs.read(id, { from, follow, signal }), follow ? metrics.tailing : undefined)
  })

  app.get('/api/events', c => streamSSE(c, async sse => {
    const queue: Array<{ event: string, data: string }> = []
    let wake: (() => void) | undefined
    let overrun = false
    const push = (event: string, data: unknown): void => {
      // A client that stopped reading is dropped rather than buffered without end; it reconnects and reloads.
      if (queue.length >= MAX_EVENT_BACKLOG) overrun = true
      else queue.push({ event, data: JSON.stringify(data) })
      wake?.()
    }
    const offBuild = scheduler.onBuild(b => push('build', b))
    const offCapacity = scheduler.onCapacity(cap => push('capacity', cap))
    const offPipeline = init.pipelines?.onPipeline(p => push('pipeline', p)) ?? (() => {})
    sse.onAbort(() => { offBuild(); offCapacity(); offPipeline(); wake?.() })
    push('capacity', scheduler.capacity())
    try {
      while (!sse.aborted && !overrun) {
        // Drain everything, including what arrives while a write is awaited, before sleeping again.
        for (let message = queue.shift(); message !== undefined; message = queue.shift()) await sse.writeSSE(message)
        await new Promise<void>(resolve => {
          wake = resolve
          if (queue.length > 0 || sse.aborted || overrun) resolve()
        })
        wake = undefined
      }
    } finally {
      offBuild()
      offCapacity()
      offPipeline()
    }
  }))

  if (init.artifacts !== undefined) app.route('/api/artifacts', artifactRoutes(init.artifacts, auth))
  if (init.artifacts !== undefined) app.route('/api/builds', buildArtifactRoutes({ builds: scheduler, sources: init.artifacts.sources }))
  if (init.pipelines !== undefined) app.route('/api/pipelines', pipelineRoutes(init.pipelines, auth))
  if (init.repos !== undefined) app.route('/', repoRoutes({ ...init.repos, auth }))
  if (init.secrets !== undefined) app.route('/', secretRoutes({ secrets: init.secrets, auth }))
  if (init.caches !== undefined) app.route('/', cacheRoutes({ caches: init.caches, auth }))
  if (init.admission !== undefined) {
    app.route('/api/denied', admissionRoutes(init.admission, auth))
    app.route('/api/secret', rotationRoutes(init.admission, auth))
  }

  app.notFound(c => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404))
  app.onError(apiError)
  return app
}

async function knownBuild (scheduler: Scheduler, id: string): Promise<NonNullable<Awaited<ReturnType<Scheduler['get']>>>> {
  const build = isBuildId(id) ? await scheduler.get(id) : undefined
  return build ?? fail(404, `no build ${id}`)
}

function logQuery (c: Context): { from: number, follow: boolean } {
  const fromText = c.req.query('from') ?? '0'
  const from = Number(fromText)
  if (!/^\d+$/.test(fromText) || !Number.isSafeInteger(from)) fail(400, 'from must be a byte offset (a whole number)')
  const followText = c.req.query('follow')
  if (followText !== undefined && !['0', '1', 'true', 'false'].includes(followText)) fail(400, 'follow must be 1 or 0')
  return { from, follow: followText === '1' || followText === 'true' }
}

/** A log as text/plain; `tailing` counts a live follower for /metrics while it lasts. */
function streamText (c: Context, source: (signal: AbortSignal) => AsyncIterable<Uint8Array>, tailing?: () => () => void): Response {
  c.header('Content-Type', 'text/plain; charset=utf-8')
  c.header('Cache-Control', 'no-store')
  // Proxies must not hold back a followed log.
  c.header('X-Accel-Buffering', 'no')
  return honoStream(c, async out => {
    const stop = new AbortController()
    out.onAbort(() => stop.abort())
    const ended = tailing?.()
    try {
      for await (const chunk of source(stop.signal)) await out.write(chunk)
    } catch (err: any) {
      if (!stop.signal.aborted) await out.write(`\n[log unavailable: ${err.message}]\n`)
    } finally {
      ended?.()
    }
  })
}


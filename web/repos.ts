// Registered repositories over HTTP, and the webhooks that start their pipelines (CONTRACT.md, Pipelines).
// `POST/DELETE /api/repos` need the API token; `GET /api/repos` is an open read and shows no secret or token.
// `POST /api/hooks/:repoId` is the forges' door: it takes only a delivery signed with the repository's hook secret,
// answers before the checkout happens (GitHub gives up after 10 s and does not retry by itself), and fetches from the
// registered URL, never from one in the payload.
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import { apiError } from './errors.ts'
import { bodyLimit } from 'hono/body-limit'
import { branchRegistered } from '../coordinator/repos.ts'
import type { PipelineStarter, RepoInit, Repos } from '../coordinator/repos.ts'
import { parsePush, readPayload, verifyDelivery } from './hooks.ts'

/**
 * Bytes of one webhook delivery; a larger one is refused (413) before it is read. GitHub caps payloads at 25 MB,
 * but a push carries at most 20 commits; a few MiB leaves room for commits touching thousands of files.
 */
export const MAX_HOOK_BODY_BYTES = 4 * 1024 * 1024

/** Bytes of a registration (POST /api/repos): a URL, some globs and two secrets. A larger body is refused (413). */
export const MAX_REPO_BODY_BYTES = 64 * 1024

export interface RepoRoutesInit {
  repos: Pick<Repos, 'add' | 'list' | 'get' | 'remove' | 'hookSecret' | 'seenDelivery' | 'forgetDelivery' | 'built' | 'forgetBuilt'>
  pipelines: Pick<PipelineStarter, 'fromCommit'>
  /** The API token check (bearerAuth), for the writes. */
  auth: MiddlewareHandler
  /** One line per pipeline a webhook started. */
  log?: (line: string) => void
}

const limit = (maxSize: number, what: string): MiddlewareHandler => bodyLimit({
  maxSize,
  // Close the connection: the rest of the body is unread, and a reused connection would read it as a request.
  onError: c => c.json({ error: `${what} is at most ${maxSize} bytes` }, 413, { Connection: 'close' })
})

/**
 * The routes `/api/repos` and `/api/hooks/:repoId`, to mount at `/` (`app.route('/', repoRoutes(…))`). Errors are
 * `{ "error": "one sentence" }` with the GridError's status (a bad registration 400, a URL registered twice 409).
 */
export function repoRoutes (init: RepoRoutesInit): Hono {
  const { repos, pipelines, auth } = init
  const routes = new Hono()

  routes.post('/api/repos', auth, limit(MAX_REPO_BODY_BYTES, 'a registration'), async c => {
    let body: unknown
    try {
      body = await c.req.json()
    } catch {
      return c.json({ error: 'the body must be JSON like {"url": "https://…", "hookSecret": "…"}' }, 400)
    }
    return c.json(await repos.add(body as RepoInit), 201)
  })

  routes.get('/api/repos', async c => c.json(await repos.list()))

  routes.get('/api/repos/:id', async c => {
    const repo = await repos.get(c.req.param('id'))
    return repo === undefined ? c.json({ error: `no repository ${c.req.param('id').slice(0, 40)}` }, 404) : c.json(repo)
  })

  routes.delete('/api/repos/:id', auth, async c => {
    const removed = await repos.remove(c.req.param('id'))
    return removed === undefined ? c.json({ error: `no repository ${c.req.param('id').slice(0, 40)}` }, 404) : c.json(removed)
  })

  routes.post('/api/hooks/:repoId', limit(MAX_HOOK_BODY_BYTES, 'a webhook delivery'), async c => {
    const id = c.req.param('repoId')
    const repo = await repos.get(id)
    if (repo === undefined) return c.json({ error: `no repository ${id.slice(0, 40)}: register it with grid repo add` }, 404)
    // Once, as bytes: the signature is over exactly what was sent.
    const raw = new Uint8Array(await c.req.arrayBuffer())
    const headers = c.req.raw.headers
    const verdict = verifyDelivery(headers, raw, await repos.hookSecret(id))
    if (!verdict.ok) return c.json({ error: verdict.reason }, 401)
    const event = parsePush(verdict.forge, headers, readPayload(headers, raw))
    if (event.kind === 'ping') return c.json({ ok: true })
    if (event.kind === 'ignored') return c.json({ ok: true, ignored: event.why }, 202)
    const { ref, commit, delivery } = event
    if (delivery !== undefined && await repos.seenDelivery(id, delivery)) {
      return c.json({ ok: true, seen: `delivery ${delivery} was taken already` })
    }
    if (!branchRegistered(repo.branches, ref)) {
      return c.json({ ok: true, ignored: `${ref.slice('refs/heads/'.length)} is not a registered branch of this repository (it builds ${repo.branches.join(', ')})` }, 202)
    }
    if (await repos.built(id, ref, commit)) {
      return c.json({ ok: true, seen: `${commit} on ${ref} was built already` })
    }
    let pipeline
    try {
      pipeline = await pipelines.fromCommit({ repo: id, url: repo.url, ref, commit, trigger: 'push' })
    } catch (err) {
      // Nothing started: a redelivery, the next push or the next poll should try again.
      await repos.forgetBuilt(id, ref, commit)
      if (delivery !== undefined) await repos.forgetDelivery(id, delivery)
      throw err
    }
    init.log?.(`repository ${id}: a push of ${commit.slice(0, 12)} to ${ref} started pipeline ${pipeline.id}`)
    return c.json({ ok: true, pipeline: pipeline.id }, 202)
  })

  // Mounted or alone (tests), the answers are the API's: `{ "error": "one sentence" }`.
  routes.onError(apiError)
  return routes
}

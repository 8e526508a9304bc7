// Registered repositories end to end, around a stub pipeline starter that records what it is asked: the routes of
// web/repos.ts over a real Repos in a real LevelDB; the poller against real bare git repositories; commit statuses
// posted to a real HTTP server. Secrets are looked for in the database's bytes on disk.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHmac } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { createServer } from 'node:http'
import type { IncomingMessage, Server } from 'node:http'
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import type { Hono, MiddlewareHandler } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { MIN_POLL_S, Remembered, Repos } from '../../coordinator/repos.ts'
import type { PipelineStarter, RepoRecord } from '../../coordinator/repos.ts'
import { SECRETS_KEY_FILE, secretsKey } from '../../coordinator/secret-box.ts'
import { Poller } from '../../coordinator/poller.ts'
import { CommitStatus } from '../../coordinator/commit-status.ts'
import { MAX_HOOK_BODY_BYTES, repoRoutes } from '../../web/repos.ts'
import type { Pipeline } from '../../grid/build.ts'
import { GridError, isGridError } from '../../net/errors.ts'
import { removeDir, tempDir, waitFor } from '../helpers.ts'
import { CommanderError } from 'commander'
import { GridCommand, UsageProblems } from '../../node/cli/usage.ts'
import { repoCommands } from '../../node/cli/repo.ts'
import { startWebServer } from '../../web/server.ts'
import type { WebServer } from '../../web/server.ts'
import { TOKEN_FILE, WEB_URL_FILE } from '../../node/roles.ts'

const TOKEN = 'api-token-of-the-repos-test-0123456789'
const HOOK_SECRET = 'hook-secret-Zq8vX2pL9mN4kR7t'
const STATUS_TOKEN = 'status-token-Jw3eY6uB1cV5nH8s'
const URL = 'https://github.com/acme/widgets.git'
const enc = new TextEncoder()

type StartCall = Parameters<PipelineStarter['fromCommit']>[0]

/** A pipeline starter that records every call; `failWith` makes the next calls throw it. */
class StubStarter {
  readonly calls: StartCall[] = []
  failWith: Error | undefined
  private readonly listeners = new Set<(p: Pipeline) => void>()

  async fromCommit (init: StartCall): Promise<Pipeline> {
    if (this.failWith !== undefined) throw this.failWith
    this.calls.push(init)
    return { id: `pl${String(this.calls.length).padStart(10, '0')}`, status: 'queued', source: { ...init }, created: new Date().toISOString(), jobs: [] }
  }

  onPipeline (listener: (p: Pipeline) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  emit (p: Pipeline): void {
    for (const l of this.listeners) l(structuredClone(p))
  }
}

/** The API's token check, as web/app.ts makes it. */
const auth = (): MiddlewareHandler => bearerAuth({
  token: TOKEN,
  noAuthenticationHeaderMessage: { error: 'this needs the API token: send Authorization: Bearer TOKEN (see DATA/api-token)' },
  invalidAuthenticationHeaderMessage: { error: 'the Authorization header must be "Bearer TOKEN"' },
  invalidTokenMessage: { error: 'the API token is wrong' }
})

/** What the pipeline starter throws when the grid cannot start one now. */
class NotNowError extends GridError {
  name = 'NotNowError'
  readonly status = 503
}

interface Registry { dir: string, db: Level<string, any>, repos: Repos, starter: StubStarter, app: Hono, logs: string[] }

async function openRegistry (dir: string, starter = new StubStarter()): Promise<Registry> {
  const db = new Level<string, any>(join(dir, 'repos.db'))
  const repos = new Repos({ db, key: await secretsKey(join(dir, SECRETS_KEY_FILE)) })
  await repos.open()
  const logs: string[] = []
  const app = repoRoutes({ repos, pipelines: starter, auth: auth(), log: line => logs.push(line) })
  return { dir, db, repos, starter, app, logs }
}

const authed = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

async function register (app: Hono, body: unknown, headers: Record<string, string> = authed): Promise<Response> {
  return await app.request('/api/repos', { method: 'POST', headers, body: JSON.stringify(body) })
}

async function registered (app: Hono, body: unknown): Promise<RepoRecord> {
  const res = await register(app, body)
  assert.is(res.status, 201, await res.clone().text())
  return await res.json() as RepoRecord
}

async function error (res: Response, status: number): Promise<string> {
  assert.is(res.status, status)
  const body = await res.json() as { error: string }
  assert.type(body.error, 'string')
  assert.not.match(body.error, /\n/)
  return body.error
}

const hmac = (secret: string, bytes: Uint8Array | string): string => createHmac('sha256', secret).update(bytes).digest('hex')
const sha = (n: number): string => n.toString(16).padStart(40, '0').replace(/^0/, 'a')

/** A GitHub push of `commit` to `ref`, signed with `secret`; the payload names a URL the grid must not use. */
async function githubPush (app: Hono, repo: string, init: { ref?: string, commit: string, delivery: string, secret?: string, event?: string, signature?: string }): Promise<Response> {
  const body = JSON.stringify({ ref: init.ref ?? 'refs/heads/main', after: init.commit, repository: { clone_url: 'https://attacker.example/evil.git' } })
  return await app.request(`/api/hooks/${repo}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': init.event ?? 'push',
      'x-github-delivery': init.delivery,
      'x-hub-signature-256': init.signature ?? `sha256=${hmac(init.secret ?? HOOK_SECRET, body)}`
    },
    body
  })
}

/** Every byte of every file under `dir`. */
async function allBytes (dir: string): Promise<Buffer> {
  const parts: Buffer[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) parts.push(await readFile(join(entry.parentPath, entry.name)))
  }
  return Buffer.concat(parts)
}

// ---------------------------------------------------------------- registering

const routes = suite<{ r: Registry, repo: RepoRecord }>('repositories over HTTP')

routes.before(async ctx => {
  ctx.r = await openRegistry(await tempDir('repos'))
})
routes.after(async ctx => {
  await ctx.r.repos.close().catch(() => {})
  await removeDir(ctx.r.dir)
})

routes('registering needs the token', async ({ r }) => {
  assert.match(await error(await register(r.app, { url: URL, hookSecret: HOOK_SECRET }, { 'content-type': 'application/json' }), 401), /token/)
  assert.match(await error(await register(r.app, { url: URL, hookSecret: HOOK_SECRET }, { ...authed, authorization: 'Bearer wrong-wrong-wrong-wrong' }), 401), /wrong/)
  assert.equal(await (await r.app.request('/api/repos')).json(), [])
})

routes('a registration answers 201 with its id and webhook path, and no secret', async (ctx) => {
  const res = await register(ctx.r.app, { url: URL, branches: ['main', 'release/*'], hookSecret: HOOK_SECRET, status: { kind: 'github', token: STATUS_TOKEN } })
  assert.is(res.status, 201)
  const text = await res.text()
  assert.not.ok(text.includes(HOOK_SECRET) || text.includes(STATUS_TOKEN), `no secret in ${text}`)
  const repo = JSON.parse(text) as RepoRecord
  assert.match(repo.id, /^[0-9a-z]{9,40}$/)
  assert.is(repo.hook, `/api/hooks/${repo.id}`)
  assert.equal(repo.branches, ['main', 'release/*'])
  assert.is(repo.webhooks, true)
  assert.equal(repo.status, { kind: 'github', url: 'https://api.github.com' })
  ctx.repo = repo
})

routes('the list and one repository are open reads, without secrets or tokens', async ({ r, repo }) => {
  const list = await (await r.app.request('/api/repos')).text()
  assert.not.ok(list.includes(HOOK_SECRET), 'the hook secret is not listed')
  assert.not.ok(list.includes(STATUS_TOKEN), 'the status token is not listed')
  assert.equal(JSON.parse(list), [repo])
  assert.equal(await (await r.app.request(`/api/repos/${repo.id}`)).json(), repo)
  await error(await r.app.request('/api/repos/0000000000000nope'), 404)
})

routes('bad registrations are refused with a sentence; nothing is added', async ({ r }) => {
  assert.match(await error(await register(r.app, { url: 'https://me:hunter2@github.com/acme/other.git', hookSecret: HOOK_SECRET }), 400), /git config/)
  assert.match(await error(await register(r.app, { url: 'ext::sh -c id', hookSecret: HOOK_SECRET }), 400), /url/)
  assert.match(await error(await register(r.app, { url: 'https://github.com/acme/other.git' }), 400), /hookSecret.*poll/)
  assert.match(await error(await register(r.app, { url: 'https://github.com/acme/other.git', poll: 1 }), 400), /poll/)
  assert.match(await error(await r.app.request('/api/repos', { method: 'POST', headers: authed, body: '{not json' }), 400), /JSON/)
  assert.match(await error(await register(r.app, { url: URL, hookSecret: 'another' }), 409), /registered already/)
  assert.is(await error(await r.app.request('/api/repos', { method: 'POST', headers: authed, body: JSON.stringify({ url: URL, hookSecret: 'x'.repeat(70_000) }) }), 413) !== '', true)
  assert.is((await (await r.app.request('/api/repos')).json() as unknown[]).length, 1)
})

// ---------------------------------------------------------------- webhooks

routes('a webhook for an unknown repository is 404; a wrong or missing signature 401; nothing starts', async ({ r, repo }) => {
  await error(await githubPush(r.app, '0000000000000nope', { commit: sha(1), delivery: 'u-1' }), 404)
  assert.match(await error(await githubPush(r.app, repo.id, { commit: sha(1), delivery: 'u-2', secret: 'not the secret' }), 401), /does not match/)
  assert.match(await error(await githubPush(r.app, repo.id, { commit: sha(1), delivery: 'u-3', signature: 'sha256=00' }), 401), /64 hex/)
  const unsigned = await r.app.request(`/api/hooks/${repo.id}`, { method: 'POST', headers: { 'x-github-event': 'push' }, body: JSON.stringify({ ref: 'refs/heads/main', after: sha(1) }) })
  assert.match(await error(unsigned, 401), /missing/)
  assert.equal(r.starter.calls, [])
})

routes('a signed GitHub push starts a pipeline from the registered URL, not the payload\'s, and answers 202', async ({ r, repo }) => {
  const res = await githubPush(r.app, repo.id, { commit: sha(1), delivery: 'gh-1' })
  assert.is(res.status, 202)
  const body = await res.json() as { pipeline: string }
  assert.is(body.pipeline, 'pl0000000001')
  assert.equal(r.starter.calls, [{ repo: repo.id, url: URL, ref: 'refs/heads/main', commit: sha(1), trigger: 'push' }])
  assert.ok(r.logs.some(l => l.includes('pl0000000001')))
})

routes('the same delivery again: 200, nothing new', async ({ r, repo }) => {
  const res = await githubPush(r.app, repo.id, { commit: sha(1), delivery: 'gh-1' })
  assert.is(res.status, 200)
  assert.match((await res.json() as { seen: string }).seen, /gh-1/)
  assert.is(r.starter.calls.length, 1)
})

routes('the same commit on the same branch in a new delivery: 200, nothing new', async ({ r, repo }) => {
  const res = await githubPush(r.app, repo.id, { commit: sha(1), delivery: 'gh-2' })
  assert.is(res.status, 200)
  assert.match((await res.json() as { seen: string }).seen, /built already/)
  assert.is(r.starter.calls.length, 1)
})

routes('the same commit on another registered branch builds there', async ({ r, repo }) => {
  assert.is((await githubPush(r.app, repo.id, { ref: 'refs/heads/release/1.0', commit: sha(1), delivery: 'gh-3' })).status, 202)
  assert.is(r.starter.calls.length, 2)
  assert.is(r.starter.calls[1].ref, 'refs/heads/release/1.0')
})

routes('a branch not registered: 202, ignored, saying so', async ({ r, repo }) => {
  const res = await githubPush(r.app, repo.id, { ref: 'refs/heads/feature/x', commit: sha(2), delivery: 'gh-4' })
  assert.is(res.status, 202)
  assert.match((await res.json() as { ignored: string }).ignored, /feature\/x is not a registered branch/)
  assert.is(r.starter.calls.length, 2)
})

routes('a ping is 200; a tag push and a deleted branch are 202 ignored', async ({ r, repo }) => {
  const ping = await githubPush(r.app, repo.id, { commit: sha(3), delivery: 'gh-5', event: 'ping' })
  assert.is(ping.status, 200)
  assert.equal(await ping.json(), { ok: true })
  const tag = await githubPush(r.app, repo.id, { ref: 'refs/tags/v1', commit: sha(3), delivery: 'gh-6' })
  assert.is(tag.status, 202)
  assert.match((await tag.json() as { ignored: string }).ignored, /tag/)
  const gone = await githubPush(r.app, repo.id, { commit: '0'.repeat(40), delivery: 'gh-7' })
  assert.is(gone.status, 202)
  assert.is(r.starter.calls.length, 2)
})

routes('a Gitea push (X-Gitea-Signature) starts a pipeline', async ({ r, repo }) => {
  const body = JSON.stringify({ ref: 'refs/heads/main', after: sha(4), repository: { clone_url: 'https://attacker.example/evil.git' } })
  const res = await r.app.request(`/api/hooks/${repo.id}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-gitea-event': 'push', 'x-gitea-delivery': 'gt-1', 'x-gitea-signature': hmac(HOOK_SECRET, body) },
    body
  })
  assert.is(res.status, 202)
  assert.equal(r.starter.calls.at(-1), { repo: repo.id, url: URL, ref: 'refs/heads/main', commit: sha(4), trigger: 'push' })
})

routes('a GitLab push (X-Gitlab-Token) starts a pipeline; a wrong token does not', async ({ r, repo }) => {
  const body = JSON.stringify({ object_kind: 'push', ref: 'refs/heads/main', before: sha(4), after: sha(5), checkout_sha: sha(5), project: { git_http_url: 'https://attacker.example/evil.git' } })
  const send = async (token: string, uuid: string): Promise<Response> => await r.app.request(`/api/hooks/${repo.id}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': uuid, 'x-gitlab-token': token },
    body
  })
  const before = r.starter.calls.length
  await error(await send('not-the-secret', 'gl-0'), 401)
  assert.is(r.starter.calls.length, before)
  assert.is((await send(HOOK_SECRET, 'gl-1')).status, 202)
  assert.equal(r.starter.calls.at(-1), { repo: repo.id, url: URL, ref: 'refs/heads/main', commit: sha(5), trigger: 'push' })
})

routes('a body that is not JSON is 400; one over the limit 413; nothing starts', async ({ r, repo }) => {
  const before = r.starter.calls.length
  const text = 'not json'
  const bad = await r.app.request(`/api/hooks/${repo.id}`, { method: 'POST', headers: { 'x-github-event': 'push', 'x-github-delivery': 'gh-8', 'x-hub-signature-256': `sha256=${hmac(HOOK_SECRET, text)}` }, body: text })
  assert.match(await error(bad, 400), /JSON/)
  const big = 'x'.repeat(MAX_HOOK_BODY_BYTES + 1)
  const huge = await r.app.request(`/api/hooks/${repo.id}`, { method: 'POST', headers: { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${hmac(HOOK_SECRET, big)}` }, body: big })
  await error(huge, 413)
  assert.is(r.starter.calls.length, before)
})

routes('when starting fails the webhook fails, and a redelivery of it starts the pipeline later', async ({ r, repo }) => {
  const before = r.starter.calls.length
  r.starter.failWith = new NotNowError('the grid is stopping')
  const failed = await githubPush(r.app, repo.id, { commit: sha(6), delivery: 'gh-9' })
  assert.match(await error(failed, 503), /stopping/)
  assert.is(r.starter.calls.length, before)
  r.starter.failWith = undefined
  assert.is((await githubPush(r.app, repo.id, { commit: sha(6), delivery: 'gh-9' })).status, 202)
  assert.is(r.starter.calls.length, before + 1)
})

routes('a repository registered without a hook secret refuses every webhook', async ({ r }) => {
  const pollOnly = await registered(r.app, { url: 'https://github.com/acme/polled.git', poll: 600 })
  assert.is(pollOnly.webhooks, false)
  const before = r.starter.calls.length
  assert.match(await error(await githubPush(r.app, pollOnly.id, { commit: sha(7), delivery: 'p-1', secret: '' }), 401), /no hook secret/)
  assert.is(r.starter.calls.length, before)
  assert.is((await r.app.request(`/api/repos/${pollOnly.id}`, { method: 'DELETE', headers: authed })).status, 200)
})

routes('secrets are not in plaintext on disk; the key file is 0600; all of it survives a restart', async (ctx) => {
  const { r, repo } = ctx
  await r.repos.close()
  const bytes = await allBytes(join(r.dir, 'repos.db'))
  assert.ok(bytes.includes(Buffer.from('acme/widgets')), 'the database holds the registration (so this search can find things)')
  assert.not.ok(bytes.includes(Buffer.from(HOOK_SECRET)), 'the hook secret is not on disk in plaintext')
  assert.not.ok(bytes.includes(Buffer.from(STATUS_TOKEN)), 'the status token is not on disk in plaintext')
  assert.is((await stat(join(r.dir, SECRETS_KEY_FILE))).mode & 0o777, 0o600)
  ctx.r = await openRegistry(r.dir, r.starter)
  const again = ctx.r
  assert.equal(await again.repos.get(repo.id), repo)
  assert.is((await githubPush(again.app, repo.id, { commit: sha(1), delivery: 'gh-1' })).status, 200, 'a delivery seen before the restart')
  assert.is((await githubPush(again.app, repo.id, { commit: sha(1), delivery: 'gh-10' })).status, 200, 'a commit built before the restart')
  const before = again.starter.calls.length
  assert.is((await githubPush(again.app, repo.id, { commit: sha(8), delivery: 'gh-11' })).status, 202, 'the secret still opens')
  assert.is(again.starter.calls.length, before + 1)
  assert.equal(await again.repos.statusTarget(repo.id), { kind: 'github', url: 'https://api.github.com', token: STATUS_TOKEN, owner: 'acme', repo: 'widgets' })
})

routes('a replaced key file cannot open the secrets: the webhook fails, it does not pass', async (ctx) => {
  const { r, repo } = ctx
  await r.repos.close()
  await writeFile(join(r.dir, 'other.key'), Buffer.alloc(32, 7))
  const db = new Level<string, any>(join(r.dir, 'repos.db'))
  const repos = new Repos({ db, key: await secretsKey(join(r.dir, 'other.key')) })
  await repos.open()
  const app = repoRoutes({ repos, pipelines: r.starter, auth: auth() })
  const res = await githubPush(app, repo.id, { commit: sha(9), delivery: 'gh-12', secret: HOOK_SECRET })
  assert.is(res.status, 500)
  assert.match((await res.json() as { error: string }).error, /secrets\.key/)
  await repos.close()
  ctx.r = await openRegistry(r.dir, r.starter)
})

routes('removing needs the token; a removed repository\'s webhooks are 404', async ({ r, repo }) => {
  await error(await r.app.request(`/api/repos/${repo.id}`, { method: 'DELETE' }), 401)
  const res = await r.app.request(`/api/repos/${repo.id}`, { method: 'DELETE', headers: authed })
  assert.is(res.status, 200)
  assert.is((await res.json() as RepoRecord).id, repo.id)
  await error(await githubPush(r.app, repo.id, { commit: sha(10), delivery: 'gh-13' }), 404)
  await error(await r.app.request(`/api/repos/${repo.id}`, { method: 'DELETE', headers: authed }), 404)
  assert.equal(await (await r.app.request('/api/repos')).json(), [])
})

const remembered = suite('Remembered: the last N per scope, in LevelDB')

remembered('past its bound the oldest is forgotten; scopes are apart; a forgotten item is new again', async () => {
  const dir = await tempDir('remembered')
  const db = new Level<string, string>(join(dir, 'db'))
  try {
    const seen = new Remembered(db.sublevel<string, string>('seen', {}) as any, 3)
    for (const item of ['a', 'b', 'c']) assert.is(await seen.remember('repo1', item), false)
    assert.is(await seen.remember('repo1', 'a'), true)
    assert.is(await seen.remember('repo2', 'a'), false, 'another scope remembers apart')
    assert.is(await seen.remember('repo1', 'd'), false)
    assert.is(await seen.remember('repo1', 'a'), false, 'the oldest was forgotten for d')
    assert.is(await seen.remember('repo1', 'd'), true)
    await seen.forget('repo1', 'd')
    assert.is(await seen.remember('repo1', 'd'), false)
    const keys = await db.sublevel<string, string>('seen', {}).keys({ gte: 'repo1:c:', lt: 'repo1:c:\xff' }).all()
    assert.ok(keys.length <= 3, `at most 3 kept, found ${keys.join(' ')}`)
    await seen.clear('repo1:')
    assert.is(await seen.remember('repo1', 'c'), false)
    assert.is(await seen.remember('repo2', 'a'), true, 'clearing one scope leaves the other')
  } finally {
    await db.close()
    await removeDir(dir)
  }
})

// ---------------------------------------------------------------- polling

const git = (cwd: string, ...args: string[]): string => execFileSync('git', ['-c', 'init.defaultBranch=main', '-c', 'commit.gpgsign=false', ...args], {
  cwd,
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'pipe'],
  env: { ...process.env, GIT_AUTHOR_NAME: 'Test', GIT_AUTHOR_EMAIL: 'test@example.test', GIT_COMMITTER_NAME: 'Test', GIT_COMMITTER_EMAIL: 'test@example.test' }
}).trim()

/** A commit on the work clone's current branch, pushed to `branch` of the bare remote; its sha. */
async function pushCommit (work: string, text: string, branch = 'main'): Promise<string> {
  await writeFile(join(work, 'file.txt'), text)
  git(work, 'add', 'file.txt')
  git(work, 'commit', '-q', '-m', text)
  git(work, 'push', '-q', 'origin', `HEAD:refs/heads/${branch}`)
  return git(work, 'rev-parse', 'HEAD')
}

const polling = suite<{ r: Registry, remote: string, work: string, poller: Poller }>('polling a real git repository')

polling.before(async ctx => {
  const dir = await tempDir('repos-poll')
  ctx.r = await openRegistry(dir)
  ctx.remote = join(dir, 'remote.git')
  ctx.work = join(dir, 'work')
  git(dir, 'init', '-q', '--bare', ctx.remote)
  git(dir, 'clone', '-q', ctx.remote, ctx.work)
  ctx.poller = new Poller({ repos: ctx.r.repos, pipelines: ctx.r.starter, log: line => ctx.r.logs.push(line) })
  await ctx.poller.start()
})
polling.after(async ctx => {
  await ctx.poller?.stop()
  await ctx.r.repos.close().catch(() => {})
  await removeDir(ctx.r.dir)
})

polling('a newly added repository builds its registered branches\' current heads at once', async ({ r, remote, work }) => {
  const head = await pushCommit(work, 'one')
  await pushCommit(work, 'feature work', 'feature')
  const repo = await registered(r.app, { url: remote, poll: MIN_POLL_S, hookSecret: HOOK_SECRET })
  await waitFor('the first poll to start a pipeline', () => r.starter.calls.length === 1)
  assert.equal(r.starter.calls, [{ repo: repo.id, url: remote, ref: 'refs/heads/main', commit: head, trigger: 'poll' }])
})

polling('an unchanged head is not built again', async ({ r, poller }) => {
  const [repo] = await r.repos.list()
  await poller.poll(repo.id)
  await poller.poll(repo.id)
  assert.is(r.starter.calls.length, 1)
})

polling('a new commit is picked up by the next poll; a webhook for it then finds it built', async ({ r, work, poller }) => {
  const [repo] = await r.repos.list()
  const next = await pushCommit(work, 'two')
  await poller.poll(repo.id)
  assert.is(r.starter.calls.length, 2)
  assert.equal(r.starter.calls[1], { repo: repo.id, url: repo.url, ref: 'refs/heads/main', commit: next, trigger: 'poll' })
  const hook = await githubPush(r.app, repo.id, { commit: next, delivery: 'after-poll' })
  assert.is(hook.status, 200)
  assert.is(r.starter.calls.length, 2)
})

polling('a commit a webhook started is not started again by a poll', async ({ r, work, poller }) => {
  const [repo] = await r.repos.list()
  const pushed = await pushCommit(work, 'three')
  assert.is((await githubPush(r.app, repo.id, { commit: pushed, delivery: 'before-poll' })).status, 202)
  await poller.poll(repo.id)
  assert.is(r.starter.calls.length, 3)
  assert.is(r.starter.calls[2].trigger, 'push')
})

polling('a restarted poller does not build heads built before', async ({ r, poller }) => {
  await poller.stop()
  const again = new Poller({ repos: r.repos, pipelines: r.starter, log: line => r.logs.push(line) })
  await again.start()
  const [repo] = await r.repos.list()
  await again.poll(repo.id)
  assert.is(r.starter.calls.length, 3)
  await again.stop()
})

polling('a remote that fails is logged once per error, retried, and starts nothing', async ({ r, poller }) => {
  await poller.start()
  const missing = join(r.dir, 'missing.git')
  const repo = await registered(r.app, { url: missing, poll: MIN_POLL_S })
  await waitFor('the failure to be logged', () => r.logs.filter(l => l.includes(repo.id) && /failed/.test(l)).length === 1)
  assert.match(r.logs.find(l => l.includes(repo.id)) ?? '', /fatal: .*missing\.git/, 'the log says git\'s complaint, not its advice')
  await poller.poll(repo.id)
  await poller.poll(repo.id)
  assert.is(r.logs.filter(l => l.includes(repo.id) && /failed/.test(l)).length, 1)
  assert.is(r.starter.calls.length, 3)
  // The remote appears: the next poll works, says so, and builds it.
  const work = join(r.dir, 'work2')
  git(r.dir, 'init', '-q', '--bare', missing)
  git(r.dir, 'clone', '-q', missing, work)
  const head = await pushCommit(work, 'late')
  await poller.poll(repo.id)
  assert.ok(r.logs.some(l => l.includes(repo.id) && /works again/.test(l)))
  assert.equal(r.starter.calls.at(-1), { repo: repo.id, url: missing, ref: 'refs/heads/main', commit: head, trigger: 'poll' })
})

polling('a removed repository is polled no more', async ({ r, work, poller }) => {
  const [repo] = await r.repos.list()
  await r.app.request(`/api/repos/${repo.id}`, { method: 'DELETE', headers: authed })
  const before = r.starter.calls.length
  await pushCommit(work, 'four')
  await poller.poll(repo.id)
  assert.is(r.starter.calls.length, before)
})

// ---------------------------------------------------------------- commit statuses

interface Received { method: string, path: string, authorization: string | undefined, contentType: string | undefined, body: any }

const statuses = suite<{ r: Registry, server: Server, received: Received[], answers: number[], port: number }>('commit statuses posted to a forge')

statuses.before(async ctx => {
  ctx.r = await openRegistry(await tempDir('repos-status'))
  ctx.received = []
  ctx.answers = []
  ctx.server = createServer((req: IncomingMessage, res) => {
    let text = ''
    req.on('data', d => { text += d })
    req.on('end', () => {
      ctx.received.push({ method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization, contentType: req.headers['content-type'], body: JSON.parse(text) })
      res.writeHead(ctx.answers.shift() ?? 201, { 'content-type': 'application/json' })
      res.end('{}')
    })
  })
  await new Promise<void>(resolve => ctx.server.listen(0, '127.0.0.1', resolve))
  ctx.port = (ctx.server.address() as { port: number }).port
})
statuses.after(async ctx => {
  await new Promise(resolve => ctx.server.close(resolve))
  await ctx.r.repos.close().catch(() => {})
  await removeDir(ctx.r.dir)
})

statuses('pending, then failure after a 500 retried: the path, the token header and the body of every request', async ({ r, received, answers, port }) => {
  const repo = await registered(r.app, {
    url: 'git@gitea.example.test:acme/widgets.git',
    hookSecret: HOOK_SECRET,
    status: { kind: 'gitea', url: `http://127.0.0.1:${port}/api/v1/`, token: STATUS_TOKEN }
  })
  const logs: string[] = []
  const poster = new CommitStatus({ repos: r.repos, pipelines: r.starter, webUrl: () => 'http://grid.example.test:8080', log: line => logs.push(line), retryFirstMs: 1 })
  poster.start()
  const commit = sha(42)
  const pipeline: Pipeline = { id: 'pl0000000042', status: 'queued', source: { repo: repo.id, url: repo.url, ref: 'refs/heads/main', commit, trigger: 'push' }, created: new Date().toISOString(), jobs: [] }
  answers.push(201, 500)
  r.starter.emit(pipeline)
  r.starter.emit({ ...pipeline, status: 'running' })
  r.starter.emit({ ...pipeline, status: 'failed', jobs: [{ name: 'test', job: 'test', needs: [], status: 'failed' }] })
  await waitFor('pending and failure to arrive', () => received.length === 3)
  await poster.stop()
  for (const req of received) {
    assert.is(req.method, 'POST')
    assert.is(req.path, `/api/v1/repos/acme/widgets/statuses/${commit}`)
    assert.is(req.authorization, `token ${STATUS_TOKEN}`)
    assert.is(req.contentType, 'application/json')
    assert.is(req.body.context, 'grid')
    assert.is(req.body.target_url, 'http://grid.example.test:8080/pipelines/pl0000000042')
  }
  assert.equal(received.map(q => q.body.state), ['pending', 'failure', 'failure'])
  assert.is(received[2].body.description, 'failed: test')
  assert.equal(logs, [])
})

statuses('a forge that keeps failing: given up, logged once, the token never in the log', async ({ r, received, answers }) => {
  const [repo] = await r.repos.list()
  const logs: string[] = []
  const poster = new CommitStatus({ repos: r.repos, pipelines: r.starter, webUrl: () => undefined, log: line => logs.push(line), retryFirstMs: 1 })
  poster.start()
  const before = received.length
  answers.push(...Array(10).fill(503))
  r.starter.emit({ id: 'pl0000000043', status: 'succeeded', source: { repo: repo.id, url: repo.url, ref: 'refs/heads/main', commit: sha(43), trigger: 'poll' }, created: new Date().toISOString(), jobs: [] })
  await waitFor('the post to be given up', () => logs.length === 1)
  await poster.stop()
  assert.ok(received.length > before + 1, 'it was retried')
  assert.ok(received.slice(before).every(q => !('target_url' in q.body)))
  assert.match(logs[0], /success.*not posted.*503/)
  assert.not.ok(logs[0].includes(STATUS_TOKEN))
  answers.length = 0
})

// ---------------------------------------------------------------- grid repo

/** `grid repo …` in this process, as node/cli/index.ts runs a command: its stdout, its stderr and its exit code. */
async function cli (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const grid = new GridCommand('grid').exitOverride().configureOutput({ writeOut: t => { stdout += t }, writeErr: t => { stderr += t }, outputError: (t, write) => write(`grid: ${t.trim()}\n`) })
  repoCommands(grid)
  const write = { out: process.stdout.write, err: process.stderr.write }
  process.stdout.write = ((chunk: string) => { stdout += chunk; return true }) as typeof process.stdout.write
  process.stderr.write = ((chunk: string) => { stderr += chunk; return true }) as typeof process.stderr.write
  let code = 0
  try {
    await grid.parseAsync(args, { from: 'user' })
  } catch (err: any) {
    if (err instanceof CommanderError) code = 2
    else {
      if (!isGridError(err)) throw err
      stderr += `grid: ${err.message}\n`
      code = err instanceof UsageProblems ? 2 : 1
    }
  } finally {
    process.stdout.write = write.out
    process.stderr.write = write.err
  }
  return { code, stdout, stderr }
}

function oneLine (result: { code: number, stderr: string }, pattern: RegExp): void {
  assert.ok(result.code !== 0, `exit code ${result.code}`)
  const lines = result.stderr.trim().split('\n')
  assert.is(lines.length, 1, `one line on stderr, got: ${result.stderr}`)
  assert.match(lines[0], /^grid: /)
  assert.match(lines[0], pattern)
}

const command = suite<{ r: Registry, web: WebServer, data: string, id: string }>('grid repo add, ls, rm')

command.before(async ctx => {
  ctx.r = await openRegistry(await tempDir('repos-cli'))
  ctx.web = await startWebServer(ctx.r.app, '127.0.0.1:0')
  ctx.data = join(ctx.r.dir, 'data')
  await mkdir(ctx.data)
  await writeFile(join(ctx.data, WEB_URL_FILE), `${ctx.web.url}\n`)
  await writeFile(join(ctx.data, TOKEN_FILE), `${TOKEN}\n`)
  await writeFile(join(ctx.r.dir, 'hook.secret'), `${HOOK_SECRET}\n`)
  await writeFile(join(ctx.r.dir, 'status.token'), `${STATUS_TOKEN}\n`)
})
command.after(async ctx => {
  await ctx.web?.close()
  await ctx.r.repos.close().catch(() => {})
  await removeDir(ctx.r.dir)
})

command('add registers, prints the id and the webhook URL; the secrets come from files', async (ctx) => {
  const { r, data, web } = ctx
  const result = await cli(['repo', 'add', URL, '--branch', 'main', '--branch', 'release/*', '--poll', '600', '--hook-secret-file', join(r.dir, 'hook.secret'),
    '--status', 'github', '--status-token-file', join(r.dir, 'status.token'), '--data', data])
  assert.is(result.code, 0, result.stderr)
  const [id, hook] = result.stdout.trim().split('\n')
  assert.match(id, /^[0-9a-z]{9,40}$/)
  assert.is(hook, `hook: ${web.url}/api/hooks/${id}`)
  assert.match(result.stderr, /^grid: registered /)
  assert.not.ok(result.stdout.includes(HOOK_SECRET) || result.stderr.includes(HOOK_SECRET) || result.stderr.includes(STATUS_TOKEN))
  assert.is(await r.repos.hookSecret(id), HOOK_SECRET, 'the secret is the file\'s line, without its newline')
  assert.is((await r.repos.statusTarget(id))?.token, STATUS_TOKEN)
  assert.equal((await r.repos.get(id))?.branches, ['main', 'release/*'])
  ctx.id = id
})

command('ls lists it without secrets', async ({ data, id }) => {
  const result = await cli(['repo', 'ls', '--data', data])
  assert.is(result.code, 0)
  assert.match(result.stdout, new RegExp(`^${id}\t${URL.replace(/[.]/g, '\\.')}\tbranches main,release/\\*\twebhooks, polls every 600 s\tstatuses to github https://api.github.com\n$`))
  assert.not.ok(result.stdout.includes(HOOK_SECRET) || result.stdout.includes(STATUS_TOKEN))
})

command('bad arguments: one line on stderr, a non-zero exit, nothing registered', async ({ r, data }) => {
  const other = 'https://github.com/acme/other.git'
  oneLine(await cli(['repo', 'add', other, '--data', data]), /--hook-secret-file.*--poll/)
  oneLine(await cli(['repo', 'add', other, '--poll', '1', '--data', data]), /--poll 1: expected seconds/)
  oneLine(await cli(['repo', 'add', other, '--poll', '60', '--status', 'gitea', '--status-token-file', join(r.dir, 'status.token'), '--data', data]), /--status-url/)
  oneLine(await cli(['repo', 'add', other, '--poll', '60', '--status', 'github', '--data', data]), /--status-token-file/)
  oneLine(await cli(['repo', 'add', other, '--poll', '60', '--status-url', 'https://x', '--data', data]), /go with --status/)
  oneLine(await cli(['repo', 'add', other, '--hook-secret-file', join(r.dir, 'missing'), '--data', data]), /cannot read/)
  oneLine(await cli(['repo', 'add', 'https://me:pw@github.com/acme/other.git', '--poll', '60', '--data', data]), /git config/)
  oneLine(await cli(['repo', 'add', URL, '--poll', '60', '--data', data]), /registered already/)
  oneLine(await cli(['repo', 'add', other, '--poll', '60', '--data', join(r.dir, 'nowhere')]), /no web-url/)
  assert.is((await r.repos.list()).length, 1)
})

command('rm removes it; an unknown id is one line and a non-zero exit', async ({ r, data, id }) => {
  const result = await cli(['repo', 'rm', id, '--data', data])
  assert.is(result.code, 0, result.stderr)
  assert.match(result.stderr, new RegExp(`removed repository ${id}`))
  assert.equal(await r.repos.list(), [])
  oneLine(await cli(['repo', 'rm', id, '--data', data]), /no repository/)
})

routes.run()
remembered.run()
polling.run()
statuses.run()
command.run()

// The HTTP API's routes with `app.request()`: no server, no network. A scheduler over a memory history
// (scheduler-fixtures.ts), an empty store directory and a stub log reader that records what it is asked.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createApp } from '../../web/app.ts'
import type { Hono } from 'hono'
import { StoreDirectory } from '../../coordinator/store-directory.ts'
import type { Scheduler } from '../../coordinator/scheduler.ts'
import type { LogReader } from '../../client/log-reader.ts'
import type { ReadOptions } from '../../storage/log-store.ts'
import { MAX_JOB_BYTES, MAX_LIST_LIMIT } from '../../grid/constants.ts'
import { isBuildId } from '../../grid/ids.ts'
import { MemoryHistory, StubLink, scheduler, stopAll } from '../scheduler-fixtures.ts'

const TOKEN = 'route-test-token-0123456789'
const enc = new TextEncoder()

/** A log reader that yields `text` for any log, or fails after it when `failWith` is set. */
class StubLogs {
  readonly reads: Array<{ id: string, from?: number, follow?: boolean }> = []
  text = 'log bytes\n'
  failWith: Error | undefined

  async * read (id: string, options: ReadOptions = {}): AsyncGenerator<Uint8Array> {
    this.reads.push({ id, from: options.from, follow: options.follow })
    yield enc.encode(this.text)
    if (this.failWith !== undefined) throw this.failWith
  }
}

interface Ctx {
  app: Hono
  scheduler: Scheduler
  history: MemoryHistory
  logs: StubLogs
  stores: StoreDirectory
}

function fresh (): Ctx {
  const history = new MemoryHistory()
  const { scheduler: s } = scheduler({ history })
  const logs = new StubLogs()
  const stores = new StoreDirectory()
  const app = createApp({ scheduler: s, stores, logs: logs as unknown as LogReader, token: TOKEN })
  return { app, scheduler: s, history, logs, stores }
}

/** `token` null sends no Authorization header. */
function post (app: Hono, path: string, body: string, token: string | null = TOKEN, headers: Record<string, string> = {}): Promise<Response> {
  return Promise.resolve(app.request(path, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...(token !== null ? { authorization: `Bearer ${token}` } : {}), ...headers }
  }))
}

const get = async (app: Hono, path: string): Promise<Response> => await app.request(path)

/** The one-sentence error of a response with `status`. */
async function error (res: Response, status: number): Promise<string> {
  assert.is(res.status, status)
  assert.match(res.headers.get('content-type') ?? '', 'application/json')
  const body = await res.json() as { error: unknown }
  assert.type(body.error, 'string')
  const message = body.error as string
  assert.ok(message.length > 0 && message.length < 300, `short: ${message}`)
  assert.not.match(message, /\n|at .*\.ts:\d+/, 'one line, no stack trace')
  return message
}

async function submit (ctx: Ctx, job: unknown = { steps: [{ name: 'build', run: 'make' }, { run: 'make test' }] }): Promise<string> {
  const res = await post(ctx.app, '/api/builds', JSON.stringify(job))
  assert.is(res.status, 201)
  return ((await res.json()) as { id: string }).id
}

// ---------------------------------------------------------------- auth

const auth = suite<Ctx>('http routes: auth', {} as Ctx)
auth.before.each(ctx => { Object.assign(ctx, fresh()) })
auth.after.each(stopAll)

auth('a submit without a token is 401, says how to send it, and queues nothing', async ({ app, history }) => {
  const res = await post(app, '/api/builds', '{"steps":[{"run":"true"}]}', null)
  assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/)
  assert.match(await error(res, 401), 'Authorization: Bearer TOKEN')
  assert.is(history.builds.size, 0)
})

auth('a wrong token is 401 and queues nothing', async ({ app, history }) => {
  assert.is(await error(await post(app, '/api/builds', '{"steps":[{"run":"true"}]}', 'not-the-token'), 401), 'the API token is wrong')
  assert.is(history.builds.size, 0)
})

auth('an Authorization header that is not a bearer token is 400', async ({ app, history }) => {
  const res = await post(app, '/api/builds', '{"steps":[{"run":"true"}]}', null, { authorization: `Basic ${TOKEN}` })
  assert.is(await error(res, 400), 'the Authorization header must be "Bearer TOKEN"')
  assert.is(history.builds.size, 0)
})

auth('a cancel without the token is 401 and leaves the build queued', async ctx => {
  const id = await submit(ctx)
  assert.match(await error(await post(ctx.app, `/api/builds/${id}/cancel`, '', null), 401), 'API token')
  assert.match(await error(await post(ctx.app, `/api/builds/${id}/cancel`, '', 'wrong'), 401), 'wrong')
  assert.is((await ctx.scheduler.get(id))?.status, 'queued')
})

auth('reads need no token', async ctx => {
  const id = await submit(ctx)
  assert.is((await get(ctx.app, '/api/builds')).status, 200)
  assert.is((await get(ctx.app, `/api/builds/${id}`)).status, 200)
  assert.is((await get(ctx.app, '/api/health')).status, 200)
})

// ---------------------------------------------------------------- submitting

const submitting = suite<Ctx>('http routes: submitting a build', {} as Ctx)
submitting.before.each(ctx => { Object.assign(ctx, fresh()) })
submitting.after.each(stopAll)

submitting('a good job is 201 with the new build\'s id, queued and saved with its defaults filled in', async ctx => {
  const res = await post(ctx.app, '/api/builds', JSON.stringify({ steps: [{ run: 'make' }], requires: { os: 'linux' } }))
  assert.is(res.status, 201)
  const body = await res.json() as { id: string }
  assert.equal(Object.keys(body), ['id'])
  assert.ok(isBuildId(body.id), `a build id: ${body.id}`)
  const saved = ctx.history.builds.get(body.id)
  assert.ok(saved !== undefined, 'saved in history')
  assert.is(saved.status, 'queued')
  assert.equal(saved.job.steps, [{ name: 'step 1', run: 'make' }])
  assert.equal(saved.job.requires, { os: 'linux' })
})

submitting('a body that is not JSON is 400', async ({ app, history }) => {
  assert.is(await error(await post(app, '/api/builds', '{not json'), 400), 'the body must be a JSON job')
  assert.is(await error(await post(app, '/api/builds', ''), 400), 'the body must be a JSON job')
  assert.is(history.builds.size, 0)
})

submitting('a bad job is 400 naming the field', async ({ app, history }) => {
  assert.match(await error(await post(app, '/api/builds', '{"steps":[]}'), 400), /^steps: a job needs at least one step/)
  assert.match(await error(await post(app, '/api/builds', '{"name":"no steps"}'), 400), /^steps: /)
  assert.match(await error(await post(app, '/api/builds', '{"steps":[{"run":""}]}'), 400), /^steps\.0\.run: a step needs a command/)
  assert.match(await error(await post(app, '/api/builds', '{"steps":[{"run":"true"}],"timeout":-1}'), 400), /^timeout: /)
  assert.match(await error(await post(app, '/api/builds', '{"steps":[{"run":"true"}],"stpes":1}'), 400), /stpes/)
  assert.match(await error(await post(app, '/api/builds', '[]'), 400), /^job: /)
  assert.match(await error(await post(app, '/api/builds', 'null'), 400), /^job: /)
  assert.is(history.builds.size, 0)
})

submitting('a `build:` input naming a build the grid never had is 400', async ({ app, history }) => {
  const job = { steps: [{ run: 'true' }], inputs: { 'lib.a': 'build:0mwv1se3l9999abcd/out/lib.a' } }
  assert.is(await error(await post(app, '/api/builds', JSON.stringify(job)), 400), 'inputs.lib.a: there is no build 0mwv1se3l9999abcd')
  assert.is(history.builds.size, 0)
})

submitting(`a body over ${MAX_JOB_BYTES} bytes is 413 and closes the connection`, async ({ app, history }) => {
  const job = JSON.stringify({ steps: [{ run: 'x'.repeat(MAX_JOB_BYTES) }] })
  const res = await post(app, '/api/builds', job)
  assert.is(await error(res, 413), `a job is at most ${MAX_JOB_BYTES} bytes`)
  assert.is(res.headers.get('connection'), 'close')
  assert.is(history.builds.size, 0)
})

// ---------------------------------------------------------------- reading builds

const reading = suite<Ctx>('http routes: listing and reading builds', {} as Ctx)
reading.before.each(ctx => { Object.assign(ctx, fresh()) })
reading.after.each(stopAll)

reading('the list is newest first, and limit keeps the newest', async ctx => {
  const ids = [await submit(ctx), await submit(ctx), await submit(ctx)]
  const all = await (await get(ctx.app, '/api/builds')).json() as Array<{ id: string, status: string }>
  assert.equal(all.map(b => b.id), [...ids].reverse())
  assert.ok(all.every(b => b.status === 'queued'))
  const two = await (await get(ctx.app, '/api/builds?limit=2')).json() as Array<{ id: string }>
  assert.equal(two.map(b => b.id), [ids[2], ids[1]])
  const max = await get(ctx.app, `/api/builds?limit=${MAX_LIST_LIMIT}`)
  assert.is(max.status, 200)
})

reading('a limit that is not a whole number from 1 to the maximum is 400', async ({ app }) => {
  for (const limit of ['0', '-1', String(MAX_LIST_LIMIT + 1), 'ten', '2.5', '']) {
    assert.is(await error(await get(app, `/api/builds?limit=${limit}`), 400), `limit must be a whole number from 1 to ${MAX_LIST_LIMIT}`, `limit=${limit}`)
  }
})

reading('a build is served by its id; an unknown or malformed id is 404', async ctx => {
  const id = await submit(ctx)
  const res = await get(ctx.app, `/api/builds/${id}`)
  assert.is(res.status, 200)
  const build = await res.json() as { id: string, status: string, job: { steps: unknown[] } }
  assert.is(build.id, id)
  assert.is(build.status, 'queued')
  assert.is(build.job.steps.length, 2)
  assert.is(await error(await get(ctx.app, '/api/builds/0mwv1se3l9999abcd'), 404), 'no build 0mwv1se3l9999abcd')
  await error(await get(ctx.app, '/api/builds/NOT-AN-ID'), 404)
  assert.is(await error(await get(ctx.app, `/api/builds/${id}.a1`), 404), `no build ${id}.a1`, 'an attempt id is not a build id')
})

reading('an unknown route is 404 with an error', async ({ app }) => {
  assert.is(await error(await get(app, '/api/nope'), 404), 'no route GET /api/nope')
  assert.is(await error(await app.request('/api/builds', { method: 'DELETE' }), 404), 'no route DELETE /api/builds')
})

reading('health and capacity answer without a network', async ctx => {
  assert.equal(await (await get(ctx.app, '/api/health')).json(), { ok: true })
  const before = await (await get(ctx.app, '/api/capacity')).json() as { stores: number, queued: number }
  assert.is(before.stores, 0)
  ctx.stores.add({ peer: '12D3KooWstore', addrs: [] })
  await submit(ctx)
  const after = await (await get(ctx.app, '/api/capacity')).json() as { stores: number, queued: number }
  assert.is(after.stores, 1)
  assert.is(after.queued, 1)
  assert.not.ok('storage' in after, 'no storage without a storage view')
})

// ---------------------------------------------------------------- cancelling

const cancelling = suite<Ctx>('http routes: cancelling', {} as Ctx)
cancelling.before.each(ctx => { Object.assign(ctx, fresh()) })
cancelling.after.each(stopAll)

cancelling('a queued build is cancelled; cancelling it again is 409', async ctx => {
  const id = await submit(ctx)
  const res = await post(ctx.app, `/api/builds/${id}/cancel`, '')
  assert.is(res.status, 200)
  assert.is((await res.json() as { status: string }).status, 'cancelled')
  assert.is(ctx.history.builds.get(id)?.status, 'cancelled')
  assert.is(await error(await post(ctx.app, `/api/builds/${id}/cancel`, ''), 409), `build ${id} already cancelled`)
})

cancelling('a running build is cancelled on its worker', async ctx => {
  const link = new StubLink()
  ctx.scheduler.workerJoined(link)
  const id = await submit(ctx)
  assert.is(link.assigned.length, 1)
  const res = await post(ctx.app, `/api/builds/${id}/cancel`, '')
  assert.is(res.status, 200)
  assert.equal(link.cancelled.map(c => [c.attempt, c.reason]), [[link.attempt(), 'cancelled']])
})

cancelling('a finished build cannot be cancelled: 409 naming how it ended', async ctx => {
  const link = new StubLink()
  ctx.scheduler.workerJoined(link)
  const id = await submit(ctx, { steps: [{ run: 'true' }] })
  ctx.scheduler.stepFinished(link, link.attempt(), 0, 0)
  ctx.scheduler.attemptFinished(link, link.attempt(), 'succeeded')
  assert.is((await ctx.scheduler.get(id))?.status, 'succeeded')
  assert.is(await error(await post(ctx.app, `/api/builds/${id}/cancel`, ''), 409), `build ${id} already succeeded`)
})

cancelling('cancelling an unknown build is 404', async ({ app }) => {
  assert.is(await error(await post(app, '/api/builds/0mwv1se3l9999abcd/cancel', ''), 404), 'no build 0mwv1se3l9999abcd')
})

// ---------------------------------------------------------------- logs

const logs = suite<Ctx>('http routes: logs', {} as Ctx)
logs.before.each(ctx => { Object.assign(ctx, fresh()) })
logs.after.each(stopAll)

const LOG = '0mwv1se3l2c9ee100.a1.s0'

logs('a log is streamed as text from the reader, from the offset asked, followed when asked', async ({ app, logs: reader }) => {
  const res = await get(app, `/api/logs/${LOG}`)
  assert.is(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', 'text/plain')
  assert.is(res.headers.get('cache-control'), 'no-store')
  assert.is(await res.text(), 'log bytes\n')
  await (await get(app, `/api/logs/${LOG}?from=5&follow=1`)).text()
  await (await get(app, `/api/logs/${LOG}?follow=true`)).text()
  await (await get(app, `/api/logs/${LOG}?follow=0`)).text()
  assert.equal(reader.reads, [
    { id: LOG, from: 0, follow: false },
    { id: LOG, from: 5, follow: true },
    { id: LOG, from: 0, follow: true },
    { id: LOG, from: 0, follow: false }
  ])
})

logs('an id that is not a log\'s is 400', async ({ app, logs: reader }) => {
  for (const id of ['0mwv1se3l2c9ee100', '0mwv1se3l2c9ee100.a1', 'NOT-A-LOG', '0mwv1se3l2c9ee100.a1.s0x']) {
    assert.is(await error(await get(app, `/api/logs/${id}`), 400), `${id} is not a log id`)
  }
  assert.equal(reader.reads, [])
})

logs('a bad from or follow is 400, on a log and on a build\'s log', async ctx => {
  const id = await submit(ctx)
  for (const base of [`/api/logs/${LOG}`, `/api/builds/${id}/log`]) {
    for (const from of ['-1', 'abc', '1.5', '', '99999999999999999999']) {
      assert.is(await error(await get(ctx.app, `${base}?from=${from}`), 400), 'from must be a byte offset (a whole number)', `${base}?from=${from}`)
    }
    for (const follow of ['yes', '2', '']) {
      assert.is(await error(await get(ctx.app, `${base}?follow=${follow}`), 400), 'follow must be 1 or 0', `${base}?follow=${follow}`)
    }
  }
  assert.equal(ctx.logs.reads, [])
})

logs('a reader failing mid-log ends the text with one line saying so', async ({ app, logs: reader }) => {
  reader.failWith = new Error('no store holding the log could be read')
  const res = await get(app, `/api/logs/${LOG}`)
  assert.is(res.status, 200, 'the status went out with the first bytes')
  assert.is(await res.text(), 'log bytes\n\n[log unavailable: no store holding the log could be read]\n')
})

logs('a build\'s log is its started steps\' logs, each after a header; an unknown build is 404', async ctx => {
  const link = new StubLink()
  ctx.scheduler.workerJoined(link)
  const id = await submit(ctx)
  const attempt = link.attempt()
  ctx.scheduler.stepStarted(link, attempt, 0)
  const res = await get(ctx.app, `/api/builds/${id}/log`)
  assert.is(res.status, 200)
  assert.is(await res.text(), '--- step 1/2: build ---\nlog bytes\n')
  assert.equal(ctx.logs.reads.map(r => r.id), [link.assigned[0].logs[0]])
  const skipped = await (await get(ctx.app, `/api/builds/${id}/log?from=4`)).text()
  assert.is(skipped, 'step 1/2: build ---\nlog bytes\n', 'from counts bytes of the whole text, headers included')
  assert.is(await error(await get(ctx.app, '/api/builds/0mwv1se3l9999abcd/log'), 404), 'no build 0mwv1se3l9999abcd')
})

auth.run()
submitting.run()
reading.run()
cancelling.run()
logs.run()

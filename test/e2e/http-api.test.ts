// The HTTP API's answers to bad requests: a 4xx with one clear sentence, and nothing changed.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { removeDir, startTestGrid, tempDir, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import { startCoordinatorNode, startStoreNode } from '../../node/roles.ts'
import { join } from 'node:path'
import type { CoordinatorNode } from '../../node/roles.ts'
import { createApp } from '../../web/app.ts'
import type { ArtifactsInit } from '../../web/artifacts.ts'
import { ReplicasUnreachableError } from '../../client/content/put.ts'
import { StoreFullError } from '../../storage/blockstore.ts'
import { MAX_JOB_BYTES } from '../../grid/constants.ts'
import { createHash, randomBytes } from 'node:crypto'
import { BLOCK_BYTES } from '../../grid/constants.ts'

const api = suite<{ grid: TestGrid }>('HTTP API bad input')

api.before(async ctx => { ctx.grid = await startTestGrid({ workers: [] }) })
api.after(async ctx => { await ctx.grid?.stop() })

async function error (res: Response, status: number): Promise<string> {
  assert.is(res.status, status)
  const body = await res.json() as { error: string }
  assert.type(body.error, 'string')
  assert.not.match(body.error, /\n|at .*\.ts:\d+/, 'one line, no stack trace')
  return body.error
}

/** `token` null sends no Authorization header at all. */
const post = (grid: TestGrid, path: string, body: string, token: string | null = grid.token): Promise<Response> =>
  grid.api(path, { method: 'POST', body, headers: { 'content-type': 'application/json', ...(token !== null ? { authorization: `Bearer ${token}` } : {}) } })

api('health answers ok', async ({ grid }) => {
  assert.equal(await (await grid.api('/api/health')).json(), { ok: true })
})

api('an unknown route is a 404 with an error', async ({ grid }) => {
  assert.match(await error(await grid.api('/api/nope'), 404), /no route GET \/api\/nope/)
  await error(await grid.api('/api/builds', { method: 'DELETE' }), 404)
})

api('writes need the token', async ({ grid }) => {
  const job = JSON.stringify({ steps: [{ run: 'true' }] })
  assert.match(await error(await post(grid, '/api/builds', job, null), 401), /token/)
  assert.match(await error(await post(grid, '/api/builds', job, 'wrong-token-wrong-token'), 401), /wrong/)
  await error(await post(grid, '/api/builds/0mwv1se3l2c9ee67a/cancel', '', null), 401)
  assert.equal(await (await grid.api('/api/builds')).json(), [], 'nothing was queued')
})

api('a job with no steps, bad JSON, or a typo is refused with the field named', async ({ grid }) => {
  assert.match(await error(await post(grid, '/api/builds', '{"steps":[]}'), 400), /steps: a job needs at least one step/)
  assert.match(await error(await post(grid, '/api/builds', '{"name":"x"}'), 400), /^steps: /)
  assert.match(await error(await post(grid, '/api/builds', '{not json'), 400), /JSON/)
  assert.match(await error(await post(grid, '/api/builds', '{"steps":[{"run":"true"}],"step":1}'), 400), /step/)
  assert.match(await error(await post(grid, '/api/builds', '{"steps":[{"run":"true"}],"timeout":-1}'), 400), /^timeout: /)
  assert.match(await error(await post(grid, '/api/builds', '[]'), 400), /^job: /)
  assert.equal(await (await grid.api('/api/builds')).json(), [], 'nothing was queued')
})

api('a job body over the limit is 413', async ({ grid }) => {
  const huge = JSON.stringify({ steps: [{ run: 'x'.repeat(MAX_JOB_BYTES) }] })
  assert.match(await error(await post(grid, '/api/builds', huge), 413), /at most/)
})

api('a build that does not exist is 404 on every route', async ({ grid }) => {
  assert.match(await error(await grid.api('/api/builds/0mwv1se3l2c9ee67a'), 404), /no build 0mwv1se3l2c9ee67a/)
  await error(await grid.api('/api/builds/..%2F..%2Fetc'), 404)
  await error(await grid.api('/api/builds/0mwv1se3l2c9ee67a/log'), 404)
  await error(await post(grid, '/api/builds/0mwv1se3l2c9ee67a/cancel', ''), 404)
})

api('list limits and log offsets are checked', async ({ grid }) => {
  for (const limit of ['0', '-1', 'abc', '1.5', '100000']) {
    assert.match(await error(await grid.api(`/api/builds?limit=${limit}`), 400), /limit/)
  }
  const id = await grid.submit({ requires: { never: 'x' }, steps: [{ run: 'true' }] })
  for (const from of ['-1', 'x', '1e3']) {
    assert.match(await error(await grid.api(`/api/builds/${id}/log?from=${from}`), 400), /from/)
  }
  assert.match(await error(await grid.api(`/api/builds/${id}/log?follow=maybe`), 400), /follow/)
  assert.match(await error(await grid.api('/api/logs/not..a..log'), 400), /not a log id/)
})

api('cancelling a finished build is a conflict', async ({ grid }) => {
  const id = await grid.submit({ requires: { never: 'y' }, steps: [{ run: 'true' }] })
  assert.is((await (await post(grid, `/api/builds/${id}/cancel`, '')).json()).status, 'cancelled')
  assert.match(await error(await post(grid, `/api/builds/${id}/cancel`, ''), 409), /already cancelled/)
})

api('the web UI is served with safe headers', async ({ grid }) => {
  const res = await grid.api('/')
  assert.is(res.status, 200)
  assert.match(await res.text(), /nameless-grid/)
  assert.is(res.headers.get('x-content-type-options'), 'nosniff')
  assert.ok(res.headers.get('x-frame-options') !== null)
})

api('artifacts: upload a raw body, download it whole or by range, verified', async ({ grid }) => {
  const bytes = randomBytes(2 * BLOCK_BYTES + 999)
  const up = await grid.api('/api/artifacts', { method: 'POST', body: bytes, headers: { authorization: `Bearer ${grid.token}` } })
  assert.is(up.status, 201)
  const { cid, size, sha256 } = await up.json()
  assert.is(size, bytes.length)
  assert.is(sha256, createHash('sha256').update(bytes).digest('hex'))
  const whole = await grid.api(`/api/artifacts/${cid}`)
  assert.is(whole.status, 200)
  assert.is(whole.headers.get('content-length'), String(bytes.length))
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes))
  for (const [header, from, to] of [['bytes=0-9', 0, 10], [`bytes=${BLOCK_BYTES - 5}-${BLOCK_BYTES + 4}`, BLOCK_BYTES - 5, BLOCK_BYTES + 5], ['bytes=-100', bytes.length - 100, bytes.length], [`bytes=${bytes.length - 3}-`, bytes.length - 3, bytes.length]] as const) {
    const part = await grid.api(`/api/artifacts/${cid}`, { headers: { range: header } })
    assert.is(part.status, 206, header)
    assert.is(part.headers.get('content-range'), `bytes ${from}-${to - 1}/${bytes.length}`)
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(from, to)), header)
  }
  const outside = await grid.api(`/api/artifacts/${cid}`, { headers: { range: `bytes=${bytes.length}-` } })
  assert.is(outside.status, 416)
  assert.is(outside.headers.get('content-range'), `bytes */${bytes.length}`)
  // HEAD: the headers alone, at once; it used to start reading the content for nobody and hang on its first write.
  for (let i = 0; i < 3; i++) {
    const head = await grid.api(`/api/artifacts/${cid}`, { method: 'HEAD', signal: AbortSignal.timeout(10_000) })
    assert.is(head.status, 200)
    assert.is(head.headers.get('content-length'), String(bytes.length))
    assert.is((await head.arrayBuffer()).byteLength, 0)
  }
})

api('artifacts: bad CID 400, unknown 404, upload without the token 401', async ({ grid }) => {
  assert.match(await error(await grid.api('/api/artifacts/not-a-cid'), 400), /not a CID/)
  assert.match(await error(await grid.api('/api/artifacts/bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am'), 404), /no node holds/)
  await error(await grid.api('/api/artifacts', { method: 'POST', body: 'x' }), 401)
})

api.run()

const tail = suite<{ grid: TestGrid }>('HTTP log followers in /metrics')

tail.before(async ctx => { ctx.grid = await startTestGrid() })
tail.after(async ctx => { await ctx.grid?.stop() })

tail('a followed log counts in grid_log_tail_subscribers while its reader stays, and not after', async ({ grid }) => {
  const tailers = async (): Promise<number> => Number(/^grid_log_tail_subscribers (\S+)$/m.exec(await (await grid.api('/metrics')).text())?.[1] ?? NaN)
  assert.is(await tailers(), 0)
  const id = await grid.submit({ steps: [{ run: 'echo started; sleep 30' }] })
  const reader = new AbortController()
  const res = await grid.api(`/api/builds/${id}/log?follow=1`, { signal: reader.signal })
  assert.is(res.status, 200)
  const body = res.body!.getReader()
  // A plain read (no follow) is not a follower.
  await (await grid.api(`/api/builds/${id}/log`)).text()
  await waitFor('the follower to be counted', async () => (await tailers()) === 1 ? true : undefined, 10_000)
  reader.abort()
  await body.cancel().catch(() => {})
  await waitFor('the follower to be gone', async () => (await tailers()) === 0 ? true : undefined, 10_000)
  await grid.api(`/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${grid.token}` } })
})

tail.run()

const failures = suite<{ grid: TestGrid, dir: string, full: CoordinatorNode }>('HTTP API: expected failures answer their own status')

failures.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [] })
  ctx.dir = await tempDir('http-full')
  // A store that can hold 1 MiB, and nothing in it that could be evicted for more.
  ctx.full = await startCoordinatorNode({ dataDir: ctx.dir, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', withStore: true, storeMaxBytes: 2 ** 20 })
})
failures.after(async ctx => {
  await ctx.full?.stop()
  await ctx.grid?.stop()
  await removeDir(ctx.dir)
})

/** What the server wrote with console.error while `run` ran: an expected failure writes nothing. */
async function errorsLogged<T> (run: () => Promise<T>): Promise<{ result: T, logged: string[] }> {
  const logged: string[] = []
  const original = console.error
  console.error = (...args: unknown[]) => { logged.push(args.map(String).join(' ')) }
  try {
    return { result: await run(), logged }
  } finally {
    console.error = original
  }
}

failures('an upload to a full store is 507 with one sentence, and no stack trace on stderr', async ({ full }) => {
  const { result, logged } = await errorsLogged(async () => await fetch(`${full.web!.url}/api/artifacts`, {
    method: 'POST', body: randomBytes(3 * 2 ** 20), headers: { authorization: `Bearer ${full.token}` }
  }))
  await error(result, 507)
  assert.equal(logged, [])
})

failures('an upload to a full store in another process (over the block protocol) is 507 too, not a peer fault', async ({ dir }) => {
  const coordinator = await startCoordinatorNode({ dataDir: join(dir, 'remote-c'), listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', withStore: false })
  const store = await startStoreNode({ dataDir: join(dir, 'remote-s'), join: coordinator.localJoin, listen: ['/ip4/127.0.0.1/tcp/0'], maxBytes: 2 ** 20 })
  try {
    await store.announcement.ready()
    const { result, logged } = await errorsLogged(async () => await fetch(`${coordinator.web!.url}/api/artifacts`, {
      method: 'POST', body: randomBytes(3 * 2 ** 20), headers: { authorization: `Bearer ${coordinator.token}` }
    }))
    await error(result, 507)
    assert.equal(logged, [])
  } finally {
    await store.stop()
    await coordinator.stop()
  }
})

failures('a put that reaches no store is 503; a failure nobody expected is a bare 500, logged', async ({ grid }) => {
  // The API over this grid's coordinator, its uploads failing as told.
  const app = (put: ArtifactsInit['put']) => createApp({
    scheduler: grid.node.coordinator.scheduler,
    stores: grid.node.coordinator.stores,
    logs: grid.node.logs,
    token: grid.token,
    artifacts: { sources: { host: grid.node.host, holders: () => [] }, put }
  })
  const upload = async (put: ArtifactsInit['put']) => await errorsLogged(async () =>
    await app(put).request('/api/artifacts', { method: 'POST', body: 'bytes', headers: { authorization: `Bearer ${grid.token}` } }))

  const none = await upload(() => async () => { throw new ReplicasUnreachableError('no store took the upload') })
  await error(none.result, 503)
  assert.equal(none.logged, [])
  const noStore = await upload(() => undefined)
  await error(noStore.result, 503)
  const full = await upload(() => async () => { throw new StoreFullError('every store is full') })
  await error(full.result, 507)

  const bug = await upload(() => async () => { throw new TypeError('a bug') })
  assert.is(await error(bug.result, 500), 'internal error')
  assert.is(bug.logged.length, 1)
  assert.match(bug.logged[0], /^http: unexpected error:/)
})

failures.run()

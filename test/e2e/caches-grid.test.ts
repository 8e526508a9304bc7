// Caches through the grid's own index (coordinator/caches.ts, wired as `grid up` wires it): a job run twice saves
// then restores, the entry is listed by GET /api/caches and dropped by DELETE /api/caches/:key, after which the next
// run misses and saves again. (test/e2e/caches.test.ts covers the worker's side in depth over a stand-in index.)
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startTestGrid } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'

const grid = suite<{ grid: TestGrid, lock: string }>('caches through the grid\'s index')

grid.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{ listen: true }] })
  const res = await ctx.grid.api('/api/artifacts', { method: 'POST', headers: { authorization: `Bearer ${ctx.grid.token}` }, body: 'lock v1\n' })
  ctx.lock = (await res.json()).cid
})
grid.after(async ctx => { await ctx.grid?.stop() })

const job = (lock: string): unknown => ({
  inputs: { 'deps.lock': lock },
  cache: [{ key: "deps-${{ hashFiles('deps.lock') }}", paths: ['deps'] }],
  steps: [{ run: 'if [ -f deps/made ]; then echo "deps restored"; else mkdir -p deps && echo made > deps/made && echo "deps made"; fi' }]
})

async function logOf (g: TestGrid, id: string): Promise<string> {
  return await (await g.api(`/api/builds/${id}/log`)).text()
}

grid('saved, restored, listed, deleted, then missed and saved again', async ({ grid: g, lock }) => {
  const first = await g.finished(await g.submit(job(lock)), 60_000)
  assert.is(first.status, 'succeeded')
  assert.match(await logOf(g, first.id), /deps made/)
  assert.match(await logOf(g, first.id), /grid: cache deps-\S+ saved/)

  const second = await g.finished(await g.submit(job(lock)), 60_000)
  assert.is(second.status, 'succeeded')
  assert.match(await logOf(g, second.id), /grid: cache deps-\S+ restored/)
  assert.match(await logOf(g, second.id), /deps restored/)

  const listed = await (await g.api('/api/caches')).json() as Array<{ key: string, build: string, cid: string, size: number, scope: unknown }>
  assert.is(listed.length, 1)
  assert.is(listed[0].build, first.id)
  assert.equal(listed[0].scope, { repo: null, trusted: true })
  assert.is((await g.api(`/api/caches/${encodeURIComponent(listed[0].key)}`, { method: 'DELETE' })).status, 401, 'dropping one needs the token')
  const dropped = await g.api(`/api/caches/${encodeURIComponent(listed[0].key)}`, { method: 'DELETE', headers: { authorization: `Bearer ${g.token}` } })
  assert.equal(await dropped.json(), { removed: 1 })

  const third = await g.finished(await g.submit(job(lock)), 60_000)
  assert.match(await logOf(g, third.id), /deps made/)
  assert.match(await logOf(g, third.id), /grid: cache deps-\S+ saved/)
})

grid.run()

// A worker keeps what it made and serves it: a downstream build takes `build:ID/PATH` straight from the worker that
// made it, even when no store holds the content any more (docs/job.md: "from the worker that made it while it is
// connected"). Real libp2p nodes over TCP; the two workers are separate nodes, so the bytes cross a real stream.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startTestGrid } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import { parseCid } from '../../grid/content.ts'

const cache = suite<{ grid: TestGrid }>('worker cache')

cache.before(async ctx => {
  ctx.grid = await startTestGrid({
    workers: [
      { capabilities: { pool: 'maker' }, listen: true },
      { capabilities: { pool: 'user' }, listen: true },
      // A worker that only dials out keeps no cache, and says so by offering no address.
      { capabilities: { pool: 'nat' } }
    ]
  })
})

cache.after(async ctx => { await ctx.grid?.stop() })

cache('a build takes another build\'s artifact straight from the worker that made it', async ({ grid }) => {
  const made = await grid.finished(await grid.submit({
    requires: { pool: 'maker' },
    steps: [{ run: 'head -c 3000000 /dev/urandom > out.bin; sha256sum out.bin | cut -c1-64 > out.sum' }],
    artifacts: ['out.bin', 'out.sum']
  }))
  assert.is(made.status, 'succeeded')
  const artifact = made.artifacts.find(a => a.path === 'out.bin')!
  const maker = grid.workers[0]
  assert.ok(await maker.cache!.blocks.has(parseCid(artifact.cid)), 'the maker keeps its output')
  assert.is(grid.workers[2].cache, undefined)
  // The store lets go of it: only the maker's cache holds it now.
  await grid.node.store!.roots.drop([artifact.cid])
  assert.is(await grid.node.store!.blocks.has(parseCid(artifact.cid)), false, 'the store no longer has it')
  const used = await grid.finished(await grid.submit({
    requires: { pool: 'user' },
    inputs: { 'in/data.bin': `build:${made.id}/out.bin` },
    steps: [{ run: `test "$(sha256sum in/data.bin | cut -c1-64)" = "${artifact.sha256}" && echo same bytes` }]
  }))
  assert.is(used.status, 'succeeded', 'the input came from the maker and matched its sha256')
  const log = await (await grid.api(`/api/builds/${used.id}/log`)).text()
  assert.match(log, /same bytes/)
  // What the second worker fetched, it keeps and serves too.
  assert.ok(await grid.workers[1].cache!.blocks.has(parseCid(artifact.cid)), 'the fetching worker keeps it too')
})

cache('without the maker and without a store, the input fails with one clear line in the first step\'s log', async ({ grid }) => {
  const made = await grid.finished(await grid.submit({ requires: { pool: 'nat' }, steps: [{ run: 'echo x > gone.txt' }], artifacts: ['gone.txt'] }))
  const artifact = made.artifacts[0]
  await grid.node.store!.roots.drop([artifact.cid])
  const used = await grid.finished(await grid.submit({ requires: { pool: 'user' }, inputs: { 'gone.txt': `build:${made.id}/gone.txt` }, steps: [{ run: 'cat gone.txt' }] }))
  assert.is(used.status, 'failed')
  const log = await (await grid.api(`/api/builds/${used.id}/log`)).text()
  assert.match(log, /grid: could not fetch input gone\.txt/)
})

cache.run()

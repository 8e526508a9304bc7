// Issue 19's must-show on the grid's real cache index, through pipelines: an `install` job caching a
// node_modules-like dir of a few thousand small files keyed by hashFiles('lock.txt') with a `restore` prefix.
// (a) The second run restores it and the step sees the files without making them again; (b) a changed lock.txt
// misses its exact key, restores the older entry by the prefix and saves the new key; (c) once the stores evicted
// the entry's content through their real eviction path (the coordinator records the last copy gone), a run pinned
// to the other worker still restores it, from the worker that made it.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startTestGrid, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import type { Build, Pipeline } from '../../grid/build.ts'
import { PIPELINE_FINISHED } from '../../grid/build.ts'

const run = promisify(execFile)

/** Files the install step makes: enough that a restore is a real tree, few enough for a 2-core machine. */
const FILES = 3000

/**
 * The pipeline: `install` pinned to one worker (box: a or b) makes node_modules from lock.txt unless it is
 * already there, and says which it did and what lock its files came from.
 */
const pipelineFor = (box: 'a' | 'b'): string => `
jobs:
  install:
    requires: { box: ${box} }
    cache:
      - key: "deps-\${{ hashFiles('lock.txt') }}"
        paths: [ node_modules ]
        restore: [ "deps-" ]
    steps:
      - run: |
          if [ -d node_modules ]; then
            echo "install: found $(find node_modules -type f | wc -l | tr -d ' ') files from $(cat node_modules/p7/f7.js)"
          else
            echo "install: generating"
            i=0
            while [ $i -lt ${FILES} ]; do
              d=node_modules/p$((i % 100))
              [ -d $d ] || mkdir -p $d
              echo "$(cat lock.txt)" > $d/f$i.js
              i=$((i + 1))
            done
            echo "install: generated $(find node_modules -type f | wc -l | tr -d ' ') files"
          fi
`

interface Ctx { grid: TestGrid }

const t = suite<Ctx>('caches through a pipeline on the real index, two listening workers')

t.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{ listen: true, capabilities: { box: 'a' } }, { listen: true, capabilities: { box: 'b' } }] })
})
t.after(async ctx => { await ctx.grid?.stop() })

/** Each lock's src tar, made once: putting it again puts the same bytes (the same CID). */
const tars = new Map<string, Buffer>()

/** A tar of a tree holding lock.txt with `lock` in it, put on the grid: a pipeline's src. */
async function putSrc (grid: TestGrid, lock: string): Promise<string> {
  let tar = tars.get(lock)
  if (tar === undefined) {
    const dir = join(grid.dir, `src-${lock.replace(/\W/g, '_')}`)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'lock.txt'), `${lock}\n`)
    tar = (await run('tar', ['-cf', '-', '-C', dir, '.'], { encoding: 'buffer' })).stdout
    tars.set(lock, tar)
  }
  const res = await grid.api('/api/artifacts', { method: 'POST', headers: { authorization: `Bearer ${grid.token}` }, body: new Uint8Array(tar) })
  assert.is(res.status, 201)
  return (await res.json() as { cid: string }).cid
}

/** Run the pipeline pinned to `box` on `src` to its end; the install build, which must have succeeded. */
async function install (grid: TestGrid, box: 'a' | 'b', src: string): Promise<{ build: Build, log: string }> {
  const res = await grid.api('/api/pipelines', { method: 'POST', headers: { authorization: `Bearer ${grid.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: pipelineFor(box), src }) })
  const answer = await res.json() as { id?: string, error?: string }
  assert.is(res.status, 201, answer.error)
  const pipeline = await waitFor(`pipeline ${answer.id} to finish`, async () => {
    const p = await (await grid.api(`/api/pipelines/${answer.id}`)).json() as Pipeline
    return PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, 120_000)
  const build = await (await grid.api(`/api/builds/${pipeline.jobs[0].build}`)).json() as Build
  const log = await (await grid.api(`/api/builds/${build.id}/log`)).text()
  assert.is(pipeline.status, 'succeeded', log)
  assert.is(build.status, 'succeeded', log)
  const worker = grid.workers[box === 'a' ? 0 : 1].host.peerId.toString()
  assert.is(build.attempts.at(-1)?.worker, worker, `install ran on worker ${box}`)
  return { build, log }
}

interface Listed { key: string, cid: string, build: string, size: number }
const caches = async (grid: TestGrid): Promise<Listed[]> => await (await grid.api('/api/caches')).json() as Listed[]

t('saved, restored on the next run, restored by prefix after lock.txt changed, then restored on the other worker from the maker once the stores evicted it', async ({ grid }) => {
  const v1 = await putSrc(grid, 'lock v1')

  // The first run makes the files and saves them under the exact key.
  const first = await install(grid, 'a', v1)
  assert.match(first.log, /grid: cache deps-[0-9a-f]{16} missed: saving after the steps/)
  assert.match(first.log, new RegExp(`install: generated ${FILES} files`))
  assert.match(first.log, /grid: cache deps-[0-9a-f]{16} saved \(/)
  const [saved] = await caches(grid)
  assert.ok(saved !== undefined, 'the entry is listed')
  assert.is(saved.build, first.build.id)
  const v1Key = saved.key

  // (a) The second run restores that exact key: the step finds every file and makes none.
  const second = await install(grid, 'a', v1)
  assert.match(second.log, new RegExp(`grid: cache ${v1Key} restored from ${v1Key} \\(`))
  assert.match(second.log, new RegExp(`install: found ${FILES} files from lock v1`))
  assert.not.match(second.log, /install: generat/)
  assert.not.match(second.log, /saved \(/, 'an exact hit saves nothing')
  assert.is((await caches(grid)).length, 1)

  // (b) lock.txt changed: the exact key misses, the prefix restores the older entry, and the new key is saved.
  const v2 = await putSrc(grid, 'lock v2')
  const third = await install(grid, 'a', v2)
  const v2Key = /grid: cache (deps-[0-9a-f]{16}) restored from/.exec(third.log)?.[1]
  assert.ok(v2Key !== undefined && v2Key !== v1Key, `a new key for the new lock: ${third.log}`)
  assert.match(third.log, new RegExp(`grid: cache ${v2Key} restored from ${v1Key} \\([^)]*\\): saving the exact key after the steps`))
  assert.match(third.log, new RegExp(`install: found ${FILES} files from lock v1`))
  assert.match(third.log, new RegExp(`grid: cache ${v2Key} saved \\(`))
  assert.equal((await caches(grid)).map(c => c.key).sort(), [v1Key, v2Key].sort())

  // (c) The stores lose the v1 entry's content through their own eviction (with the coordinator's consent, so it
  // records the last copy as evicted); worker a, which made it, stays connected and keeps its own copy.
  const store = grid.node.store!
  assert.ok(store.roots.has(saved.cid), 'the store held the entry before')
  await store.roots.evict(Number.MAX_SAFE_INTEGER)
  assert.not.ok(store.roots.has(saved.cid), 'the store evicted it')
  await waitFor('the coordinator to record the eviction', async () => await grid.node.coordinator.evictedAt(saved.cid), 10_000)
  assert.ok((await caches(grid)).some(c => c.key === v1Key), 'still listed: its maker holds it')
  // Every root went, the src's too: put it again (the same CID) so worker b can fetch its src.
  assert.is(await putSrc(grid, 'lock v1'), v1)

  const [a, b] = grid.workers.map(w => w.cache!)
  assert.ok(a.roots.has(saved.cid), 'worker a, which made it, keeps its own copy')
  assert.not.ok(b.roots.has(saved.cid), 'worker b never had it')
  const servedByA = a.blocks.served

  const fourth = await install(grid, 'b', v1)
  assert.match(fourth.log, new RegExp(`grid: cache ${v1Key} restored from ${v1Key} \\(`))
  assert.match(fourth.log, new RegExp(`install: found ${FILES} files from lock v1`))
  assert.not.match(fourth.log, /install: generat/)
  assert.not.ok(store.roots.has(saved.cid), 'no store held it during the restore: it came from worker a')
  assert.ok(await grid.node.coordinator.evictedAt(saved.cid) !== undefined, 'still evicted from the stores')
  assert.ok(a.blocks.served - servedByA >= saved.size, `worker a served the entry (${a.blocks.served - servedByA} of ${saved.size} bytes)`)
})

t.run()

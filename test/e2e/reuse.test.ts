// End to end: reuse on a real grid (libp2p on loopback, LevelDB, real steps, a real store). A three-job pipeline
// with `reuse: true` run twice on the same tree: the second run's builds all end `reused` with the first run's
// artifacts and logs, with no attempt; a changed tree runs every job again; a restart of the coordinator keeps
// the index.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { removeDir, startTestGrid, tempDir, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import type { Build, Pipeline } from '../../grid/build.ts'
import { PIPELINE_FINISHED } from '../../grid/build.ts'
import { launchChromium } from '../browser.ts'

const run = promisify(execFile)

/** lib reads src, app needs lib's artifact, test needs app's: each keeps one file. */
const THREE_JOBS = `
jobs:
  lib:
    reuse: true
    steps: [ { run: "mkdir -p out && tr a-z A-Z < hello.txt > out/lib.txt && echo lib made" } ]
    artifacts: [ out/lib.txt ]
  app:
    reuse: true
    needs: [ lib ]
    steps: [ { run: "cat out/lib.txt > app.txt && echo app >> app.txt && echo app made" } ]
    artifacts: [ app.txt ]
  test:
    reuse: true
    needs: [ app ]
    steps: [ { run: "wc -l < app.txt > report.txt && echo tested" } ]
    artifacts: [ report.txt ]
`

const auth = (grid: TestGrid): Record<string, string> => ({ authorization: `Bearer ${grid.token}`, 'content-type': 'application/json' })

async function startPipeline (grid: TestGrid, src: string): Promise<string> {
  const res = await grid.api('/api/pipelines', { method: 'POST', headers: auth(grid), body: JSON.stringify({ pipeline: THREE_JOBS, src }) })
  const answer = await res.json() as { id?: string, error?: string }
  assert.is(res.status, 201, answer.error)
  return answer.id!
}

async function finished (grid: TestGrid, id: string): Promise<Pipeline> {
  return await waitFor(`pipeline ${id} to finish`, async () => {
    const pipeline = await (await grid.api(`/api/pipelines/${id}`)).json() as Pipeline
    return PIPELINE_FINISHED.has(pipeline.status) ? pipeline : undefined
  }, 60_000)
}

/** The pipeline's builds, in the file's order, once it finished. */
async function runPipeline (grid: TestGrid, src: string): Promise<{ pipeline: Pipeline, builds: Build[] }> {
  const pipeline = await finished(grid, await startPipeline(grid, src))
  const builds = await Promise.all(pipeline.jobs.map(async j => await (await grid.api(`/api/builds/${j.build}`)).json() as Build))
  return { pipeline, builds }
}

/** A tar of a tree holding hello.txt with `text`, put on the grid: a pipeline's src. */
async function putSrc (grid: TestGrid, text: string): Promise<string> {
  const dir = join(grid.dir, `src-${text.length}-${Date.now()}`)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'hello.txt'), text)
  const { stdout } = await run('tar', ['-cf', '-', '--mtime=@0', '--owner=0', '--group=0', '-C', dir, '.'], { encoding: 'buffer' })
  const res = await grid.api('/api/artifacts', { method: 'POST', headers: { authorization: `Bearer ${grid.token}` }, body: stdout })
  assert.is(res.status, 201)
  return (await res.json() as { cid: string }).cid
}

const logText = async (grid: TestGrid, log: string): Promise<string> => await (await grid.api(`/api/logs/${log}`)).text()

interface Ctx {
  dir: string
  grid: TestGrid
  /** The second run's pipeline and the first run's build ids, for the web UI's test. */
  reusedPipeline?: string
  origins?: string[]
  reusedBuild?: string
}

const reuse = suite<Ctx>('reuse on a real grid')
reuse.before(async ctx => {
  ctx.dir = await tempDir('reuse')
  ctx.grid = await startTestGrid({ dir: ctx.dir, workers: [{ slots: 2 }] })
})
reuse.after(async ctx => {
  await ctx.grid?.stop()
  await removeDir(ctx.dir)
})

reuse('a three-job pipeline run twice: the second run is all reused, same artifacts and logs; a changed tree runs again', async ctx => {
  const { grid } = ctx
  const src = await putSrc(grid, 'hello\n')
  const first = await runPipeline(grid, src)
  assert.is(first.pipeline.status, 'succeeded')
  for (const b of first.builds) {
    assert.is(b.reused, undefined)
    assert.is(b.attempts.length, 1)
  }

  const second = await runPipeline(grid, src)
  assert.is(second.pipeline.status, 'succeeded')
  assert.equal(second.pipeline.jobs.map(j => j.status), ['succeeded', 'succeeded', 'succeeded'])
  assert.equal(second.builds.map(b => b.reused), first.builds.map(b => b.id), 'each build took its counterpart\'s outputs')
  ctx.reusedPipeline = second.pipeline.id
  ctx.origins = first.builds.map(b => b.id)
  ctx.reusedBuild = second.builds[0].id
  for (const [i, b] of second.builds.entries()) {
    assert.equal(b.attempts, [], 'no attempt')
    assert.equal(b.artifacts, first.builds[i].artifacts, 'the same artifacts')
    assert.equal(b.steps.map(s => [s.exitCode, s.log, s.logCid]), first.builds[i].steps.map(s => [s.exitCode, s.log, s.logCid]))
    assert.is(b.started, b.finished)
  }
  // The reused build's artifact and log are served as the original's.
  const report = await grid.api(`/api/artifacts/${second.builds[2].artifacts[0].cid}`)
  assert.is(report.status, 200)
  assert.is((await report.text()).trim(), '2')
  const log = await logText(grid, second.builds[0].steps[0].log)
  assert.match(log, /^lib made\n/)
  assert.is(log, await logText(grid, first.builds[0].steps[0].log))
  const whole = async (id: string): Promise<string> => await (await grid.api(`/api/builds/${id}/log`)).text()
  assert.is(await whole(second.builds[1].id), await whole(first.builds[1].id), 'the whole build log reads the same')
  assert.match(await whole(second.builds[1].id), /app made/)

  // A changed tree: lib's src differs, so lib runs; its new artifact feeds app, which runs, and so on.
  const changed = await putSrc(grid, 'hello again\n')
  const third = await runPipeline(grid, changed)
  assert.is(third.pipeline.status, 'succeeded')
  for (const b of third.builds) {
    assert.is(b.reused, undefined, `${b.jobName} ran`)
    assert.is(b.attempts.length, 1)
  }
  assert.is.not(third.builds[0].artifacts[0].cid, first.builds[0].artifacts[0].cid)
  const lib = await grid.api(`/api/artifacts/${third.builds[0].artifacts[0].cid}`)
  assert.is(await lib.text(), 'HELLO AGAIN\n')

  // A restart keeps the index: the first tree's pipeline is reused again, the second tree's too.
  await grid.stop()
  ctx.grid = await startTestGrid({ dir: ctx.dir, workers: [{ slots: 2 }] })
  await waitFor('the store to report what it holds', async () => {
    const capacity = await (await ctx.grid.api('/api/capacity')).json() as { storage?: { roots?: number } }
    return (capacity.storage?.roots ?? 0) > 0 ? true : undefined
  }, 30_000)
  const fourth = await runPipeline(ctx.grid, changed)
  assert.equal(fourth.builds.map(b => b.reused), third.builds.map(b => b.id))
})

reuse('the web UI marks reused builds, linked to their origin, on the pipeline graph and the build page', async ctx => {
  assert.ok(ctx.reusedPipeline !== undefined && ctx.origins !== undefined && ctx.reusedBuild !== undefined, 'the pipelines ran')
  const browser = await launchChromium()
  const errors: string[] = []
  try {
    const page = await browser.newPage()
    page.setDefaultTimeout(20_000)
    page.on('pageerror', err => errors.push(`page error: ${err.message}`))
    await page.goto(`${ctx.grid.url}/pipelines/${ctx.reusedPipeline}`)
    const marks = page.locator('a.reused-from')
    await marks.nth(2).waitFor()
    assert.equal(await marks.evaluateAll(els => els.map(e => e.getAttribute('href'))), ctx.origins.map(id => `/builds/${id}`))
    assert.equal(await marks.evaluateAll(els => els.map(e => e.textContent)), ctx.origins.map(id => `reused from ${id}`))
    assert.is(await page.locator('.node[data-reused]').count(), 3)

    await page.goto(`${ctx.grid.url}/builds/${ctx.reusedBuild}`)
    await page.locator('#reused').waitFor()
    assert.is(await page.locator(`#reused a[href="/builds/${ctx.origins[0]}"]`).count(), 1)
    assert.is(await page.locator(`#reused-from a[href="/builds/${ctx.origins[0]}"]`).count(), 1)
    assert.match(await page.locator('#attempts').textContent() ?? '', new RegExp(`None: it took the outputs of build ${ctx.origins[0]}`))
  } finally {
    await browser.close()
  }
  assert.equal(errors, [])
})

reuse.run()

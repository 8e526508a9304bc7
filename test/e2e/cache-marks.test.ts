// Issue 19: "cache hits are marked on the build page and in the pipeline graph". A build's record says what its
// caches did (Build.caches: missed then saved on the first run, restored on the second, restored-by-prefix with the
// entry's key), reported by a real worker over the work protocol; the pipeline page marks a build that restored a
// cache, the build page lists each cache's outcome, in Chromium (as test/e2e/web-pipelines.test.ts drives it).
// The coordinator's own bounds (boundedCaches, the `done` message's schema) are checked on hostile input.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { create as tarCreate } from 'tar'
import { launchChromium, watchPage } from '../browser.ts'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { startTestGrid, tempDir, removeDir, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import type { Build, CacheRecord, Pipeline } from '../../grid/build.ts'
import { MAX_BUILD_CACHES, MAX_CACHE_RECORD_KEY_CHARS, MAX_CACHE_WHY_CHARS, PIPELINE_FINISHED } from '../../grid/build.ts'
import { toCoordinator } from '../../protocols/work.ts'
import { boundedCaches } from '../../coordinator/scheduler.ts'

/** Every browser wait is bounded: a stuck page fails its test. */
const UI_TIMEOUT_MS = 30_000

interface Ctx {
  grid: TestGrid
  browser: Browser
  context: BrowserContext
  errors: string[]
  dir: string
  /** The CID of a small tree with a lock file, for the pipelines. */
  src: string
  pages: Page[]
}

const t = suite<Ctx>('cache outcomes in the build record and the web UI')

t.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{ listen: true }] })
  ctx.dir = await tempDir('cache-marks')
  ctx.errors = []
  ctx.pages = []
  ctx.browser = await launchChromium()
  ctx.context = await ctx.browser.newContext({ viewport: { width: 1280, height: 860 } })
  ctx.context.setDefaultTimeout(UI_TIMEOUT_MS)
  const tree = join(ctx.dir, 'src')
  await mkdir(tree, { recursive: true })
  await writeFile(join(tree, 'lock.txt'), 'lock v1\n')
  const chunks: Buffer[] = []
  for await (const chunk of tarCreate({ cwd: tree, portable: true }, ['lock.txt']) as unknown as AsyncIterable<Buffer>) chunks.push(chunk)
  const res = await ctx.grid.api('/api/artifacts', { method: 'POST', body: new Uint8Array(Buffer.concat(chunks)), headers: { authorization: `Bearer ${ctx.grid.token}` } })
  assert.is(res.status, 201)
  ctx.src = (await res.json()).cid
})

t.after.each(async ctx => {
  for (const page of ctx.pages.splice(0)) if (!page.isClosed()) await page.close()
  assert.equal(ctx.errors.splice(0), [], 'the pages logged no error')
})

t.after(async ctx => {
  await ctx.browser?.close()
  await ctx.grid?.stop()
  await removeDir(ctx.dir)
})

async function open (ctx: Ctx, path: string): Promise<Page> {
  const page = await ctx.context.newPage()
  ctx.pages.push(page)
  watchPage(page, path, ctx.errors)
  await page.goto(ctx.grid.url + path)
  return page
}

/** A lone job whose step makes `deps/made` unless a cache restored it, and says which. */
const loneJob = (key: string, restore?: string[]): unknown => ({
  name: `cached ${key}`,
  cache: [{ key, paths: ['deps'], ...(restore !== undefined ? { restore } : {}) }],
  steps: [{ run: 'if [ -f deps/made ]; then echo "deps restored"; else mkdir -p deps && echo made > deps/made && echo "deps made"; fi' }]
})

/** A build's record without the outcomes' sizes (checked apart: they are the tar's size, not known here). */
const outcomes = (b: Build): Array<Omit<CacheRecord, 'size'>> => (b.caches ?? []).map(({ size: _, ...c }) => c)

t('the first run records missed then saved, the second restored, a new key restored-by-prefix then saved', async ({ grid: g }) => {
  const first = await g.finished(await g.submit(loneJob('marks-lone-v1')), 60_000)
  assert.is(first.status, 'succeeded')
  assert.equal(outcomes(first), [{ key: 'marks-lone-v1', outcome: 'missed' }, { key: 'marks-lone-v1', outcome: 'saved' }])
  const saved = first.caches![1].size
  assert.ok(typeof saved === 'number' && saved > 0, `saved has a size (${saved})`)
  assert.is(first.caches![0].size, undefined, 'a miss has no size')

  const second = await g.finished(await g.submit(loneJob('marks-lone-v1')), 60_000)
  assert.is(second.status, 'succeeded')
  assert.equal(outcomes(second), [{ key: 'marks-lone-v1', outcome: 'restored' }], 'an exact hit is not saved again')
  assert.is(second.caches![0].size, saved, 'the restored entry is the one saved')
  assert.match(await (await g.api(`/api/builds/${second.id}/log`)).text(), /deps restored/)

  const third = await g.finished(await g.submit(loneJob('marks-lone-v2', ['marks-lone-'])), 60_000)
  assert.equal(outcomes(third), [
    { key: 'marks-lone-v2', outcome: 'restored-by-prefix', from: 'marks-lone-v1' },
    { key: 'marks-lone-v2', outcome: 'saved' }
  ])
})

t('a failed step records the cache not saved, with why', async ({ grid: g }) => {
  const failed = await g.finished(await g.submit({
    cache: [{ key: 'marks-failing-v1', paths: ['deps'] }],
    steps: [{ run: 'mkdir -p deps && echo x > deps/x && exit 3' }]
  }), 60_000)
  assert.is(failed.status, 'failed')
  assert.equal(failed.caches, [{ key: 'marks-failing-v1', outcome: 'missed' }, { key: 'marks-failing-v1', outcome: 'not-saved', why: 'a step failed' }])
})

t('a build with no cache has no caches field', async ({ grid: g }) => {
  const plain = await g.finished(await g.submit({ steps: [{ run: 'true' }] }), 60_000)
  assert.is(plain.status, 'succeeded')
  assert.is('caches' in plain, false)
})

async function startPipeline (ctx: Ctx, yaml: string): Promise<string> {
  const res = await ctx.grid.api('/api/pipelines', {
    method: 'POST',
    headers: { authorization: `Bearer ${ctx.grid.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ pipeline: yaml, src: ctx.src })
  })
  const body = await res.json()
  assert.is(res.status, 201, JSON.stringify(body))
  return body.id
}

async function finishedPipeline (ctx: Ctx, id: string): Promise<Pipeline> {
  return await waitFor(`pipeline ${id} to finish`, async () => {
    const p = await (await ctx.grid.api(`/api/pipelines/${id}`)).json() as Pipeline
    return PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, 60_000)
}

const PIPELINE = `
jobs:
  install:
    cache:
      - key: "marks-pipe-\${{ hashFiles('lock.txt') }}"
        paths: [ deps ]
    steps:
      - run: if [ -f deps/made ]; then echo "deps restored"; else mkdir -p deps && echo made > deps/made; fi
  test:
    needs: [ install ]
    steps: [ { run: "true" } ]
`

t('the pipeline graph marks the second run\'s box that restored a cache, and the build page lists the outcomes', async ctx => {
  const firstId = await startPipeline(ctx, PIPELINE)
  const first = await finishedPipeline(ctx, firstId)
  assert.is(first.status, 'succeeded')
  const secondId = await startPipeline(ctx, PIPELINE)
  const second = await finishedPipeline(ctx, secondId)
  assert.is(second.status, 'succeeded')
  const installOf = (p: Pipeline): string => p.jobs.find(j => j.name === 'install')!.build!

  // The first run missed: its box has no mark (its record is read once it succeeded, as for reuse).
  const firstPage = await open(ctx, `/pipelines/${firstId}`)
  await firstPage.locator(`#graph .node[data-name="install"][data-build="${installOf(first)}"]`).waitFor()
  const firstBuild = await (await ctx.grid.api(`/api/builds/${installOf(first)}`)).json() as Build
  assert.equal(firstBuild.caches?.map(c => c.outcome), ['missed', 'saved'])
  // The page has read the build once its reuse is known: wait on the same read the mark would come from.
  await firstPage.waitForFunction(() => document.querySelectorAll('#graph .node').length === 2)
  assert.is(await firstPage.locator('#graph .cache-hit').count(), 0, 'a run that missed has no cache-hit mark')

  const page = await open(ctx, `/pipelines/${secondId}`)
  const box = page.locator(`#graph .node[data-name="install"][data-cache-hit="true"]`)
  await box.waitFor()
  assert.is(await box.getAttribute('data-build'), installOf(second))
  assert.is((await box.locator('.cache-hit').textContent())?.trim(), 'cache hit')
  assert.match(await box.locator('.cache-hit').getAttribute('title') ?? '', /^cache hit: marks-pipe-[0-9a-f]{16}$/)
  assert.is(await page.locator('#graph .node[data-name="test"] .cache-hit').count(), 0, 'a job with no cache has no mark')
  // Re-checked on the first run's page now that the second run is known: its box still has none.
  assert.is(await firstPage.locator('#graph [data-cache-hit]').count(), 0)

  const buildPage = await open(ctx, `/builds/${installOf(second)}`)
  const row = buildPage.locator('#job tr[data-field="caches"]')
  await row.waitFor()
  assert.match(await row.locator('li[data-cache]').textContent() ?? '', /^marks-pipe-[0-9a-f]{16} → restored \(\d+(\.\d+)? (B|KiB)\)$/)
  assert.is(await row.locator('[data-outcome="restored"]').count(), 1)

  const firstBuildPage = await open(ctx, `/builds/${installOf(first)}`)
  const firstRow = firstBuildPage.locator('#job tr[data-field="caches"] li[data-cache]')
  await firstRow.waitFor()
  assert.match(await firstRow.textContent() ?? '', /→ missed, saved \(/)
})

t('the done message cuts a worker\'s cache strings and count, and drops a malformed list without refusing the result', () => {
  const done = { t: 'done', attempt: 'abcdefghijkl', outcome: 'succeeded' }
  const parse = (caches: unknown): CacheRecord[] | undefined => {
    const parsed = toCoordinator.parse({ ...done, caches })
    assert.is(parsed.t, 'done')
    return parsed.t === 'done' ? parsed.caches : undefined
  }
  const long = parse([{ key: 'k'.repeat(MAX_CACHE_RECORD_KEY_CHARS + 100), outcome: 'restored-by-prefix', from: 'f'.repeat(5000), why: 'w'.repeat(5000), size: 7 }])
  assert.is(long?.[0].key.length, MAX_CACHE_RECORD_KEY_CHARS)
  assert.is(long?.[0].from?.length, MAX_CACHE_RECORD_KEY_CHARS)
  assert.is(long?.[0].why?.length, MAX_CACHE_WHY_CHARS)
  assert.is(parse(Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, outcome: 'missed' })))?.length, MAX_BUILD_CACHES)
  assert.is(parse([{ key: 'k', outcome: 'exploded' }]), undefined, 'an unknown outcome drops the list')
  assert.is(parse('not a list'), undefined)
  assert.is(parse([{ key: 'k', outcome: 'saved', size: -1 }]), undefined, 'a negative size drops the list')
  assert.is(parse(undefined), undefined, 'an older worker says nothing')
  assert.ok(toCoordinator.safeParse({ ...done, caches: [{ key: 'k', outcome: 'missed' }] }).success)
})

t('boundedCaches keeps at most MAX_BUILD_CACHES known outcomes with their strings cut', () => {
  assert.is(boundedCaches(undefined), undefined)
  assert.is(boundedCaches([]), undefined)
  const hostile = [
    { key: '', outcome: 'missed' },
    { key: 'k', outcome: 'nonsense' },
    { key: 'x'.repeat(10_000), outcome: 'saved', size: 1.5, why: 'y'.repeat(10_000), from: 'z'.repeat(10_000) },
    ...Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, outcome: 'restored', size: i }))
  ] as unknown as CacheRecord[]
  const kept = boundedCaches(hostile)!
  assert.is(kept.length, MAX_BUILD_CACHES)
  assert.equal(Object.keys(kept[0]).sort(), ['from', 'key', 'outcome', 'why'], 'a fractional size is dropped')
  assert.is(kept[0].key.length, MAX_CACHE_RECORD_KEY_CHARS)
  assert.is(kept[0].from!.length, MAX_CACHE_RECORD_KEY_CHARS)
  assert.is(kept[0].why!.length, MAX_CACHE_WHY_CHARS)
  assert.equal(kept[1], { key: 'k0', outcome: 'restored', size: 0 })
})

t.run()

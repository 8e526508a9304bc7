// The web UI in a real browser (Debian's chromium driven by playwright-core) against a real in-process grid:
// live updates over /api/events, the build page's followed log, ANSI colours, the submit form, cancel, re-run,
// the timeline, the job card, builds named by what they run, retried builds, the copies in force and /metrics.
// Screenshots go to docs/screenshots/ for the README.
import { suite } from 'uvu'
import { createHash } from 'node:crypto'
import * as assert from 'uvu/assert'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { create as tarCreate } from 'tar'
import { launchChromium, watchPage } from '../browser.ts'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { ROOT, startTestGrid, tempDir, removeDir, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import { startWorkerNode } from '../../node/roles.ts'
import { buildLabel, MAX_LABEL_CHARS } from '../../grid/build.ts'
import { DEFAULT_REPLICAS } from '../../grid/placement.ts'

const SCREENSHOTS = join(ROOT, 'docs/screenshots')
const DESKTOP = { width: 1280, height: 860 }
const PHONE = { width: 390, height: 844 }
/** Every browser wait is bounded: a stuck page fails its test. */
const UI_TIMEOUT_MS = 20_000

interface Ctx {
  grid: TestGrid
  browser: Browser
  context: BrowserContext
  errors: string[]
  dir: string
  /** A finished build made before any page loads. */
  first: string
  /** Every URL a page asked for: the token must never be in one. */
  urls: string[]
  /** Pages a failed test left open are closed after it, so their event streams do not leak into the next. */
  pages: Page[]
}

const ui = suite<Ctx>('web UI')

ui.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{ capabilities: { pool: 'cpu' }, slots: 2 }, { capabilities: { pool: 'gpu', gpu: 'a100' } }] })
  ctx.dir = await tempDir('web-ui')
  ctx.errors = []
  ctx.pages = []
  ctx.urls = []
  ctx.browser = await launchChromium()
  ctx.context = await ctx.browser.newContext({ viewport: DESKTOP })
  ctx.context.setDefaultTimeout(UI_TIMEOUT_MS)
  await mkdir(SCREENSHOTS, { recursive: true })
  ctx.first = await ctx.grid.submit({ name: 'hello', steps: [{ name: 'greet', run: 'echo hello' }] })
  await ctx.grid.finished(ctx.first)
  const failing = await ctx.grid.submit({ name: 'unit tests', requires: { pool: 'cpu' }, steps: [{ name: 'test', run: 'echo 3 tests failed; exit 2' }] })
  const gpu = await ctx.grid.submit({ name: 'train model', requires: { gpu: '*' }, steps: [{ name: 'train', run: 'sleep 0.3; echo done' }] })
  await Promise.all([ctx.grid.finished(failing), ctx.grid.finished(gpu)])
})

ui.after.each(async ctx => {
  for (const page of ctx.pages.splice(0)) if (!page.isClosed()) await page.close()
})

ui.after(async ctx => {
  await ctx.browser?.close()
  await ctx.grid?.stop()
  await removeDir(ctx.dir)
})

async function open (ctx: Ctx, path: string): Promise<Page> {
  const page = await ctx.context.newPage()
  ctx.pages.push(page)
  watchPage(page, path, ctx.errors, ctx.urls)
  await page.goto(ctx.grid.url + path)
  return page
}

/** A browser logs a failed load by itself: take the one this test caused out of the errors, and only that one. */
function expectedError (ctx: Ctx, pattern: RegExp): void {
  const index = ctx.errors.findIndex(e => pattern.test(e))
  assert.ok(index >= 0, `the browser logged ${pattern}`)
  ctx.errors.splice(index, 1)
}

const row = (page: Page, id: string): ReturnType<Page['locator']> => page.locator(`#builds tr[data-id="${id}"]`)

type WorkerNode = Awaited<ReturnType<typeof startWorkerNode>>

/** A worker of its own, with a capability only the test's builds ask for, so it runs nothing else. */
async function startPoolWorker (ctx: Ctx, name: string, pool: string): Promise<WorkerNode> {
  const node = await startWorkerNode({
    dataDir: join(ctx.dir, name),
    join: ctx.grid.node.localJoin,
    secret: ctx.grid.node.secret,
    listen: [],
    capabilities: { os: process.platform, pool },
    slots: 1
  })
  await node.worker.ready(AbortSignal.timeout(10_000))
  return node
}

/** Bytes uploaded as content (POST /api/artifacts): its CID and size. */
async function upload (ctx: Ctx, body: BodyInit): Promise<{ cid: string, size: number }> {
  const res = await ctx.grid.api('/api/artifacts', { method: 'POST', body, headers: { authorization: `Bearer ${ctx.grid.token}` } })
  assert.is(res.status, 201)
  return await res.json()
}

ui('the home page lists a finished build, with its status, and capacity', async ctx => {
  const page = await open(ctx, '/')
  await row(page, ctx.first).and(page.locator('[data-status=succeeded]')).waitFor()
  assert.match(await row(page, ctx.first).innerText(), /hello/)
  assert.match(await page.locator('#capacity-summary').innerText(), /2 workers · 0 of 3 slots busy · 0 queued · 1 store/)
  assert.match(await page.locator('#groups').innerText(), /gpu=a100/)
  await page.close()
})

ui('a build submitted after the page loaded appears without a reload and reaches its final status', async ctx => {
  const page = await open(ctx, '/')
  await row(page, ctx.first).waitFor()
  await page.evaluate(() => { (window as any).notReloaded = true })
  const id = await ctx.grid.submit({ name: 'appears live', steps: [{ run: 'sleep 0.5; echo ok' }] })
  await row(page, id).waitFor()
  await page.locator(`#builds tr[data-id="${id}"][data-status=succeeded]`).waitFor()
  assert.ok(await page.evaluate(() => (window as any).notReloaded === true), 'the page was not reloaded')
  assert.match(await row(page, id).innerText(), /appears live/)
  await page.close()
})

ui('the build page shows the log growing while the build runs, then the final status', async ctx => {
  // The build waits for a gate file, so "an early line before the last one" does not depend on timing.
  const gate = join(ctx.dir, 'gate')
  const id = await ctx.grid.submit({
    name: 'slow lines',
    steps: [{ name: 'count', run: `for i in 1 2 3 4; do echo line-$i; sleep 0.2; done; n=0; while [ ! -e '${gate}' ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; echo line-5` }]
  })
  const page = await open(ctx, `/builds/${id}`)
  await page.locator('#log', { hasText: 'line-4' }).waitFor()
  assert.not.match(await page.locator('#log').innerText(), /line-5/, 'the last line is not there yet')
  assert.match(await page.locator('#build-head .badge').innerText(), /running/)
  await writeFile(gate, '')
  await page.locator('#log', { hasText: 'line-5' }).waitFor()
  await page.locator('#build-head .badge.succeeded').waitFor()
  await page.locator('#log-state', { hasText: 'complete' }).waitFor()
  assert.match(await page.locator('#steps').innerText(), /exit 0/)
  assert.match(await page.locator('#attempts').innerText(), /succeeded/)
  assert.is(await page.getAttribute('#raw-log', 'href'), `/api/builds/${id}/log`)
  await page.close()
})

ui('ANSI colour codes are rendered as coloured spans, and HTML in the log is text', async ctx => {
  const id = await ctx.grid.submit({
    name: 'colours',
    steps: [{ run: "printf '\\033[31mred-text\\033[0m plain \\033[1;32mgreen-bold\\033[0m <b>not-bold</b>\\n'" }]
  })
  await ctx.grid.finished(id)
  const page = await open(ctx, `/builds/${id}`)
  const red = page.locator('#log span.f1', { hasText: 'red-text' })
  await red.waitFor()
  assert.is(await red.evaluate(el => getComputedStyle(el).color), 'rgb(255, 123, 114)')
  const green = page.locator('#log span.f2.ansi-b', { hasText: 'green-bold' })
  assert.is(await green.evaluate(el => getComputedStyle(el).fontWeight), '700')
  assert.is(await page.locator('#log b').count(), 0, 'markup in the log is escaped')
  assert.match(await page.locator('#log').innerText(), /<b>not-bold<\/b>/)
  assert.not.match(await page.locator('#log').innerText(), /\[31m/)
  await page.close()
})

ui('a huge log keeps only the visible lines in the DOM, and scrolling up stops following', async ctx => {
  const id = await ctx.grid.submit({ name: 'many lines', steps: [{ run: 'seq 1 20000' }] })
  await ctx.grid.finished(id)
  const page = await open(ctx, `/builds/${id}`)
  await page.locator('#log-state', { hasText: '20001 lines, complete' }).waitFor()
  // The window of lines is drawn on the next frame after the state line says the log is complete.
  await page.locator('#log .ln').first().waitFor()
  const rendered = await page.locator('#log .ln').count()
  assert.ok(rendered > 0 && rendered < 300, `only a window of lines is rendered (${rendered})`)
  await page.locator('#log .ln', { hasText: /^20001\s*20000$/ }).waitFor()
  await page.locator('#log').evaluate(el => { el.scrollTop = 0 })
  await page.locator('#follow[aria-pressed=false]').waitFor()
  await page.locator('#log .ln', { hasText: /^2\s*1$/ }).waitFor()
  await page.click('#follow')
  await page.locator('#follow[aria-pressed=true]').waitFor()
  await page.locator('#log .ln', { hasText: /^20001\s*20000$/ }).waitFor()
  await page.close()
})

ui('with the token in the header, the submit form creates a build', async ctx => {
  const page = await open(ctx, '/submit')
  assert.ok(await page.locator('#submit-token-hint').isVisible(), 'asks for the token first')
  assert.ok(await page.locator('button[type=submit]').isDisabled())
  await page.fill('#token', ctx.grid.token)
  await page.fill('input[name=name]', 'from the form')
  await page.fill('textarea[name=requires]', 'pool=cpu\n')
  await page.fill('textarea[name=step-run]', 'echo made-by-the-form')
  await page.click('#add-step')
  await page.locator('input[name=step-name]').nth(1).fill('second')
  await page.locator('textarea[name=step-run]').nth(1).fill('echo step-two; echo report > report.txt')
  await page.fill('textarea[name=artifacts]', 'report.txt\n')
  await page.click('button[type=submit]')
  await page.waitForURL(/\/builds\/[0-9a-z]+$/)
  const id = page.url().split('/').pop() as string
  // Any final badge, then the status with the record in the message: a failure says why instead of timing out.
  await page.locator('#build-head .badge.succeeded, #build-head .badge.failed, #build-head .badge.lost').waitFor({ timeout: 60_000 })
  const build = await (await ctx.grid.api(`/api/builds/${id}`)).json()
  assert.is(build.status, 'succeeded', JSON.stringify(build))
  await page.locator('#log', { hasText: 'step-two' }).waitFor()
  assert.is(build.job.name, 'from the form')
  assert.equal(build.job.requires, { pool: 'cpu' })
  assert.equal(build.job.steps.map((s: any) => s.name), ['step 1', 'second'])
  assert.equal(build.job.artifacts, ['report.txt'])
  assert.equal(build.artifacts.map((a: any) => a.path), ['report.txt'], 'the glob from the form kept the file')
  assert.ok(!page.url().includes(ctx.grid.token), 'the token is never in a URL')
  await page.close()
})

ui('the submit form shows a bad requires line as an error and submits nothing', async ctx => {
  const page = await open(ctx, '/submit')
  const before = (await (await ctx.grid.api('/api/builds?limit=1')).json())[0].id
  await page.fill('textarea[name=requires]', 'no equals sign')
  await page.fill('textarea[name=step-run]', 'true')
  await page.click('button[type=submit]')
  await page.locator('#submit-error', { hasText: 'KEY=VALUE' }).waitFor()
  assert.is((await (await ctx.grid.api('/api/builds?limit=1')).json())[0].id, before)
  await page.close()
})

ui('a wrong token is refused with the server\'s sentence on the form', async ctx => {
  const page = await open(ctx, '/submit')
  await page.fill('#token', 'not-the-token')
  await page.fill('textarea[name=step-run]', 'true')
  await page.click('button[type=submit]')
  await page.locator('#submit-error', { hasText: 'the API token is wrong' }).waitFor()
  assert.ok(page.url().endsWith('/submit'))
  expectedError(ctx, /status of 401/)
  await page.fill('#token', ctx.grid.token)
  await page.close()
})

ui('cancel works from the build page, and re-run submits the same job again', async ctx => {
  const id = await ctx.grid.submit({ name: 'long sleep', steps: [{ run: 'sleep 60' }] })
  const page = await open(ctx, `/builds/${id}`)
  await page.locator('#build-head .badge.running').waitFor()
  await page.click('#cancel')
  await page.locator('#build-head .badge.cancelled').waitFor()
  assert.is((await ctx.grid.finished(id)).status, 'cancelled')
  assert.is(await page.locator('#cancel').count(), 0, 'no cancel button on a finished build')
  await page.click('#rerun')
  await page.waitForURL(url => !url.pathname.endsWith(id) && url.pathname.startsWith('/builds/'))
  const next = page.url().split('/').pop() as string
  await page.locator('#build-head .badge.running').waitFor()
  const again = await (await ctx.grid.api(`/api/builds/${next}`)).json()
  assert.is(again.job.name, 'long sleep')
  await page.click('#cancel')
  await page.locator('#build-head .badge.cancelled').waitFor()
  await page.close()
})

ui('a build no worker can run says why it waits, and can be cancelled while queued', async ctx => {
  const id = await ctx.grid.submit({ name: 'needs a tpu', requires: { tpu: '*' }, steps: [{ run: 'true' }] })
  const page = await open(ctx, `/builds/${id}`)
  await page.locator('#build-head .notice', { hasText: 'tpu' }).waitFor()
  await page.locator('#log .empty', { hasText: /No output yet: .*tpu/ }).waitFor()
  assert.match(await page.locator('#attempts').innerText(), /No worker has taken it yet/)
  await page.click('#cancel')
  await page.locator('#build-head .badge.cancelled').waitFor()
  await page.locator('#log .empty', { hasText: 'wrote no output' }).waitFor()
  await page.close()
})

ui('the timeline draws one row per worker and a bar per attempt, coloured by outcome', async ctx => {
  const page = await open(ctx, '/timeline')
  await page.locator('#timeline svg rect[data-outcome=succeeded]').first().waitFor()
  assert.ok(await page.locator('#timeline svg rect[data-outcome=failed]').count() >= 1)
  assert.ok(await page.locator('#timeline svg rect[data-outcome=cancelled]').count() >= 1)
  const labels = await page.locator('#timeline .row-label text').allTextContents()
  assert.is(labels.length, 2, 'both workers ran something')
  const peers = ctx.grid.workers.map(w => w.host.peerId.toString())
  for (const label of labels) assert.ok(peers.some(p => p.endsWith(label.replace('…', ''))), `${label} is a worker`)
  const href = await page.locator('#timeline svg a').first().getAttribute('href')
  assert.match(href ?? '', /^\/builds\/[0-9a-z]+$/)
  await page.screenshot({ path: join(SCREENSHOTS, 'timeline.png'), fullPage: true })
  await page.close()
})

ui('screenshots of the home page at desktop and phone width, and of a build page', async ctx => {
  const id = await ctx.grid.submit({
    name: 'compile and test',
    requires: { pool: 'cpu' },
    steps: [
      { name: 'compile', run: "printf 'cc -O2 -c grid.c\\ncc -O2 -c worker.c\\n\\033[33mwarning:\\033[0m unused variable \\033[1mretries\\033[0m\\nlink: \\033[32mok\\033[0m\\n'" },
      { name: 'test', run: "for t in parse schedule fence seal; do printf '\\033[32m✔\\033[0m %s\\n' $t; done; printf '\\033[1;32m4 passed\\033[0m, 0 failed\\n'" }
    ]
  })
  await ctx.grid.finished(id)
  const build = await open(ctx, `/builds/${id}`)
  await build.locator('#log-state', { hasText: 'complete' }).waitFor()
  await build.locator('#rerun').waitFor()
  await build.screenshot({ path: join(SCREENSHOTS, 'build.png'), fullPage: true })
  await build.close()

  const page = await open(ctx, '/')
  await row(page, ctx.first).waitFor()
  await page.locator('#live.on').waitFor()
  await page.screenshot({ path: join(SCREENSHOTS, 'home.png'), fullPage: true })
  await page.setViewportSize(PHONE)
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
  assert.ok(overflow <= 0, `no sideways scrolling at phone width (${overflow} px too wide)`)
  await page.screenshot({ path: join(SCREENSHOTS, 'home-phone.png'), fullPage: true })
  await page.close()
})

ui('GET /metrics has the grid metrics and a build count that changes', async ctx => {
  const metrics = async (): Promise<string> => {
    const res = await ctx.grid.api('/metrics')
    assert.is(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
    return await res.text()
  }
  const value = (text: string, series: string): number => Number(new RegExp(`^${series.replace(/[{}"\\]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  const page = await open(ctx, '/')
  await page.locator('#live.on').waitFor()
  const before = await metrics()
  for (const name of ['grid_builds', 'grid_builds_finished_total', 'grid_builds_submitted_total', 'grid_queue_length', 'grid_workers',
    'grid_worker_slots', 'grid_worker_slots_busy', 'grid_stores', 'grid_sse_subscribers', 'grid_http_requests_total']) {
    assert.match(before, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`)
  }
  assert.is(value(before, 'grid_workers'), 2)
  assert.is(value(before, 'grid_worker_slots'), 3)
  assert.is(value(before, 'grid_stores'), 1)
  assert.ok(value(before, 'grid_sse_subscribers') >= 1, 'the open home page is a subscriber')
  assert.match(before, /^grid_http_requests_total\{route="\/api\/builds\/:id",method="GET",status="200"\} \d+$/m)
  const succeeded = value(before, 'grid_builds{status="succeeded"}')
  const finished = value(before, 'grid_builds_finished_total{status="succeeded"}')
  await ctx.grid.finished(await ctx.grid.submit({ steps: [{ run: 'true' }] }))
  const after = await metrics()
  assert.is(value(after, 'grid_builds{status="succeeded"}'), succeeded + 1)
  assert.is(value(after, 'grid_builds_finished_total{status="succeeded"}'), finished + 1)
  await page.close()
  await waitFor('the closed page to leave the SSE subscribers', async () => value(await metrics(), 'grid_sse_subscribers') === 0, 10_000)
})

ui('an artifact downloads byte-identical from its build page', async ctx => {
  const id = await ctx.grid.submit({ name: 'make a blob', steps: [{ run: 'mkdir -p dist && head -c 300000 /dev/urandom > dist/blob.bin' }], artifacts: ['dist/*'] })
  const build = await ctx.grid.finished(id)
  assert.is(build.artifacts.length, 1)
  const page = await open(ctx, `/builds/${id}`)
  const link = page.locator('#artifacts a.artifact')
  await link.waitFor()
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()])
  assert.is(download.suggestedFilename(), 'blob.bin')
  const saved = join(ctx.dir, 'downloaded.bin')
  await download.saveAs(saved)
  const bytes = await readFile(saved)
  assert.is(bytes.length, build.artifacts[0].size)
  assert.is(createHash('sha256').update(bytes).digest('hex'), build.artifacts[0].sha256)
  assert.match(await page.locator('#artifacts').innerText(), new RegExp(build.artifacts[0].sha256.slice(0, 16)))
  await page.close()
})

ui('a build waiting for another build says so, links to it, and runs once it succeeded', async ctx => {
  const gate = join(ctx.dir, 'gate-input')
  const input = await ctx.grid.submit({
    name: 'makes the input',
    requires: { pool: 'cpu' },
    steps: [{ run: `n=0; while [ ! -e '${gate}' ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; echo made > out.txt` }],
    artifacts: ['out.txt']
  })
  const id = await ctx.grid.submit({ name: 'uses the input', inputs: { 'in.txt': `build:${input}/out.txt` }, steps: [{ name: 'read', run: 'cat in.txt' }] })
  const page = await open(ctx, `/builds/${id}`)
  await page.locator('#build-head', { hasText: `waiting for build ${input}` }).waitFor()
  assert.is(await page.locator(`#build-head a[href="/builds/${input}"]`).innerText(), input, 'the build it waits for is a link')
  assert.match(await page.locator('#build-head .badge').innerText(), /queued/)
  assert.match(await page.locator('#steps').innerText(), /waiting/)
  await page.locator('#log .empty', { hasText: `waiting for build ${input}` }).waitFor()
  const home = await open(ctx, '/')
  await row(home, id).locator('.why-line', { hasText: `waiting for build ${input}` }).waitFor()
  await home.close()
  // Live: once its input succeeds, it runs and the reason goes.
  await writeFile(gate, '')
  await page.locator('#build-head .badge.succeeded').waitFor()
  assert.is(await page.locator('#why').count(), 0, 'a succeeded build has nothing to explain')
  await page.locator('#log', { hasText: 'made' }).waitFor()
  assert.is(await page.locator(`#build-head a[href="/builds/${input}"]`).count(), 0, 'the link went with the wait')
  await page.close()
  const follow = await open(ctx, `/builds/${id}`)
  await follow.locator('#build-head .badge.succeeded').waitFor()
  await follow.close()
})

ui('a build that ended on an error says why, on its page, its log and the home page', async ctx => {
  const input = await ctx.grid.submit({ name: 'breaks', requires: { pool: 'cpu' }, steps: [{ name: 'compile', run: 'exit 3' }], artifacts: ['out.txt'] })
  assert.is((await ctx.grid.finished(input)).status, 'failed')
  const id = await ctx.grid.submit({ name: 'needs the broken one', inputs: { 'in.txt': `build:${input}/out.txt` }, steps: [{ name: 'read', run: 'cat in.txt' }] })
  const build = await ctx.grid.finished(id)
  assert.is(build.status, 'failed')
  assert.ok(build.error !== undefined, JSON.stringify(build))
  const page = await open(ctx, `/builds/${id}`)
  await page.locator('#build-head', { hasText: build.error }).waitFor()
  await page.locator(`#build-head a[href="/builds/${input}"]`).waitFor()
  await page.locator('#log .empty', { hasText: build.error }).waitFor()
  assert.match(await page.locator('#steps').innerText(), /not run/)
  assert.match(await page.locator('#attempts').innerText(), /ended before a worker took it/)
  // The input build failed on its step's exit code: its page says which step, from its attempt's reason.
  const failed = await open(ctx, `/builds/${input}`)
  await failed.locator('#build-head', { hasText: 'step 1 (compile) exited with 3' }).waitFor()
  await failed.close()
  const home = await open(ctx, '/')
  await row(home, id).locator('.why-line', { hasText: `build ${input} ended failed` }).waitFor()
  await home.close()
  await page.close()
})

ui('a lost attempt shows why it ended and its partial log stays reachable from the build page', async ctx => {
  // Two workers only this build can use: the first is stopped mid-step, the second runs the attempt after it.
  const start = async (name: string): Promise<WorkerNode> => await startPoolWorker(ctx, name, 'doomed')
  const running: WorkerNode[] = []
  try {
    running.push(await start('doomed-1'))
    const id = await ctx.grid.submit({ name: 'loses its worker', requires: { pool: 'doomed' }, retries: 1, steps: [{ name: 'work', run: 'echo partial-output-of-an-attempt; sleep 60' }] })
    const page = await open(ctx, `/builds/${id}`)
    await page.locator('#log', { hasText: 'partial-output-of-an-attempt' }).waitFor()
    await running.shift()!.stop()
    // Queued again, saying why.
    await page.locator('#build-head', { hasText: /attempt 1 was lost/ }).waitFor()
    // A second attempt runs: the steps table now shows its logs, and the lost attempt's stay on its row.
    running.push(await start('doomed-2'))
    await page.locator('#build-head .badge.running').waitFor()
    const record = await waitFor('the second attempt', async () => {
      const b = await (await ctx.grid.api(`/api/builds/${id}`)).json()
      return b.attempts.length === 2 ? b : undefined
    })
    const lost = record.attempts[0]
    assert.is(lost.outcome, 'lost')
    assert.ok(lost.reason !== undefined, JSON.stringify(record))
    const href = `/api/logs/${lost.logs[0]}`
    assert.is(await page.locator(`#steps a[href="${href}"]`).count(), 0, 'the steps show the running attempt')
    const lostRow = page.locator('#attempts tr', { has: page.locator(`a[href="${href}"]`) })
    await lostRow.waitFor()
    assert.match(await lostRow.innerText(), /lost/)
    assert.ok((await lostRow.innerText()).includes(lost.reason), 'the attempt says why it was lost')
    // Following the link shows what the lost attempt printed before its worker went.
    const [log] = await Promise.all([ctx.context.waitForEvent('page'), lostRow.locator(`a[href="${href}"]`).click()])
    ctx.pages.push(log)
    await log.locator('body', { hasText: 'partial-output-of-an-attempt' }).waitFor()
    await log.close()
    const cancelled = await ctx.grid.api(`/api/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ctx.grid.token}` } })
    assert.is(cancelled.status, 200)
    await page.locator('#build-head .badge.cancelled').waitFor()
    await page.close()
  } finally {
    for (const node of running) await node.stop()
  }
})

ui('a build with no name is called by what it runs: in the list, the timeline and on its page', async ctx => {
  // What `grid submit --run CMD` makes: one step named "run".
  const short = await ctx.grid.submit({ steps: [{ name: 'run', run: '\n  make -j8 test  \necho done' }] })
  const long = await ctx.grid.submit({ steps: [{ name: 'run', run: `echo ${'a'.repeat(80)}` }] })
  await Promise.all([ctx.grid.finished(short), ctx.grid.finished(long)])
  const cut = `echo ${'a'.repeat(MAX_LABEL_CHARS - 6)}…`
  assert.is(cut.length, MAX_LABEL_CHARS)
  const page = await open(ctx, '/')
  await row(page, long).waitFor()
  assert.is(await row(page, short).locator('a').innerText(), 'make -j8 test')
  assert.is(await row(page, long).locator('a').innerText(), cut)
  await page.close()
  const timeline = await open(ctx, '/timeline')
  const tip = await timeline.locator(`#timeline rect[data-build="${short}"] title`).textContent()
  assert.ok(tip?.startsWith('make -j8 test — succeeded, '), tip ?? '')
  await timeline.close()
  const build = await open(ctx, `/builds/${short}`)
  await build.locator('#build-head .badge.succeeded').waitFor()
  assert.is(await build.locator('#build-head h1').innerText(), 'make -j8 test')
  assert.is(await build.title(), 'make -j8 test (succeeded) · nameless-grid')
  // The browser's rule (web/ui/common.js) and the CLI's (grid/build.ts) give the same names.
  const jobs = [
    { name: 'named', steps: [{ run: 'make' }] },
    { name: '  ', steps: [{ run: 'make' }] },
    { steps: [{ run: '\n\n  cargo build --release\ncargo test' }, { run: 'other' }] },
    { steps: [{ run: 'x'.repeat(MAX_LABEL_CHARS) }] },
    { steps: [{ run: 'y'.repeat(MAX_LABEL_CHARS + 1) }] },
    { steps: [{ run: '   ' }] }
  ]
  const inBrowser = await build.evaluate(async jobs => {
    const { buildLabel } = await import('/ui/common.js' as string)
    return jobs.map(buildLabel)
  }, jobs)
  assert.equal(inBrowser, jobs.map(buildLabel))
  await build.close()
})

ui('the build page shows the job as submitted: src, inputs and where each came from, env names, requires, limits', async ctx => {
  // A src tar of a known size: one 512-byte header, one block of content, the two end blocks.
  const tree = join(ctx.dir, 'job-card-src')
  await mkdir(tree, { recursive: true })
  await writeFile(join(tree, 'hello.txt'), 'from the source tree\n')
  const chunks: Buffer[] = []
  for await (const chunk of tarCreate({ cwd: tree, portable: true }, ['hello.txt']) as unknown as AsyncIterable<Buffer>) chunks.push(chunk)
  const src = await upload(ctx, Buffer.concat(chunks))
  assert.is(src.size, 2048)
  const data = await upload(ctx, Buffer.alloc(1536, 'x'))
  const maker = await ctx.grid.submit({ name: 'makes the input', requires: { pool: 'cpu' }, steps: [{ run: 'echo made > out.txt' }], artifacts: ['out.txt'] })
  const made = await ctx.grid.finished(maker)
  assert.is(made.status, 'succeeded')
  const out = made.artifacts[0]
  const id = await ctx.grid.submit({
    name: 'takes the input',
    src: src.cid,
    inputs: { 'in.txt': `build:${maker}/out.txt`, 'data/table.csv': data.cid },
    env: { MODE: 'fast', SECRET_TOKEN: 'hunter2-not-shown' },
    requires: { pool: 'cpu' },
    steps: [{ name: 'read', run: 'cat hello.txt in.txt; wc -c < data/table.csv; echo $MODE > report.txt' }],
    artifacts: ['report.txt'],
    timeout: 120,
    retries: 1,
    killGrace: 5,
    logLimit: 1048576,
    priority: 3
  })
  assert.is((await ctx.grid.finished(id)).status, 'succeeded')
  const page = await open(ctx, `/builds/${id}`)
  const field = (name: string): ReturnType<Page['locator']> => page.locator(`#job tr[data-field="${name}"] td`)
  // Sizes and the upstream build arrive after the card is first drawn.
  await field('src').filter({ hasText: 'KiB' }).waitFor()
  assert.is(await field('src').innerText(), `${src.cid} · 2.0 KiB`)
  assert.is(await field('src').locator('a').getAttribute('href'), `/api/artifacts/${src.cid}`)
  const input = page.locator('#job li[data-input="in.txt"]')
  await input.filter({ hasText: '(makes the input)' }).waitFor()
  assert.is(await input.innerText(), `in.txt ← out.txt from build ${maker} (makes the input) · 5 B`)
  assert.is(await input.locator('a.build-ref').getAttribute('href'), `/builds/${maker}`)
  assert.is(await input.locator('a.artifact').getAttribute('href'), `/api/artifacts/${out.cid}`)
  const csv = page.locator('#job li[data-input="data/table.csv"]')
  await csv.filter({ hasText: 'KiB' }).waitFor()
  assert.is(await csv.innerText(), `data/table.csv ← ${data.cid} · 1.5 KiB`)
  assert.is(await csv.locator('a').getAttribute('href'), `/api/artifacts/${data.cid}`)
  assert.is(await field('env').innerText(), 'MODE, SECRET_TOKEN (values not shown)')
  assert.not.match(await page.locator('main').innerText(), /hunter2/, 'no env value is on the page')
  assert.is(await field('requires').innerText(), 'pool=cpu')
  assert.is(await field('artifacts').innerText(), 'report.txt')
  assert.is(await field('limits').innerText(), 'timeout 2 min · retries 1 · killGrace 5 s · logLimit 1.0 MiB · priority 3')
  // Each attempt: its outcome, and why it ended.
  assert.match(await page.locator('#attempts tr[data-outcome=succeeded]').innerText(), /succeeded/)
  await page.locator('#job-card').screenshot({ path: join(SCREENSHOTS, 'job-card.png') })
  // The upstream link leads to the build that made the input.
  await input.locator('a.build-ref').click()
  await page.waitForURL(`**/builds/${maker}`)
  assert.is(await page.locator('#build-head h1').innerText(), 'makes the input')
  // A job with none of those says what is left: the defaults it was given.
  const plain = await open(ctx, `/builds/${ctx.first}`)
  await plain.locator('#job tr[data-field="limits"]').waitFor()
  assert.equal(await plain.locator('#job tr[data-field]').evaluateAll(rows => rows.map(r => r.getAttribute('data-field'))), ['requires', 'limits'])
  assert.is(await plain.locator('#job tr[data-field="requires"] td').innerText(), 'any')
  assert.is(await plain.locator('#job tr[data-field="limits"] td').innerText(), 'timeout 1 h · retries 2 · killGrace 10 s · priority 0')
  await plain.close()
  await page.close()
})

ui('a build that was lost and then succeeded is marked with its attempts in the list, the timeline and its page', async ctx => {
  const gate = join(ctx.dir, 'gate-retry')
  const running: WorkerNode[] = []
  try {
    running.push(await startPoolWorker(ctx, 'flaky-1', 'flaky'))
    const id = await ctx.grid.submit({
      name: 'survives a lost worker',
      requires: { pool: 'flaky' },
      retries: 1,
      steps: [{ name: 'work', run: `echo attempt-$GRID_ATTEMPT; n=0; while [ ! -e '${gate}' ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; echo done` }]
    })
    await waitFor('the first attempt to run', async () => {
      const b = await (await ctx.grid.api(`/api/builds/${id}`)).json()
      return b.status === 'running' ? b : undefined
    })
    await running.shift()!.stop()
    await waitFor('the build to be queued again', async () => {
      const b = await (await ctx.grid.api(`/api/builds/${id}`)).json()
      return b.status === 'queued' && b.attempts[0]?.outcome === 'lost' ? b : undefined
    })
    await writeFile(gate, '')
    running.push(await startPoolWorker(ctx, 'flaky-2', 'flaky'))
    const build = await ctx.grid.finished(id)
    assert.is(build.status, 'succeeded')
    assert.equal(build.attempts.map(a => a.outcome), ['lost', 'succeeded'])
    const title = `attempt 1 lost: ${build.attempts[0].reason}\nattempt 2 succeeded`
    const home = await open(ctx, '/')
    const mark = row(home, id).locator('.tries')
    await mark.waitFor()
    assert.is(await row(home, id).locator('td').first().innerText(), 'succeeded\n2 attempts')
    assert.is(await mark.getAttribute('title'), title)
    // A build that ran once has no mark.
    assert.is(await row(home, ctx.first).locator('.tries').count(), 0)
    await home.close()
    const timeline = await open(ctx, '/timeline')
    const second = timeline.locator(`#timeline rect[data-build="${id}"][data-attempt="2"] title`)
    await second.waitFor({ state: 'attached' })
    assert.ok((await second.textContent())?.startsWith('survives a lost worker — attempt 2 of 2, succeeded, '))
    assert.ok((await timeline.locator(`#timeline rect[data-build="${id}"][data-attempt="1"] title`).textContent())?.startsWith('survives a lost worker — attempt 1 of 2, lost, '))
    await timeline.close()
    const page = await open(ctx, `/builds/${id}`)
    await page.locator('#build-head .tries').waitFor()
    assert.is(await page.locator('#build-head .tries').innerText(), '2 attempts')
    assert.is(await page.locator('#attempts tr[data-outcome=lost] .reason').innerText(), build.attempts[0].reason)
    await page.close()
  } finally {
    for (const node of running) await node.stop()
  }
})

ui('the home page shows the copies in force: min(replicas, stores), and what --replicas will give', async ctx => {
  const capacity = await (await ctx.grid.api('/api/capacity')).json()
  assert.is(capacity.storage.replicas, DEFAULT_REPLICAS)
  assert.is(capacity.storage.stores.length, 1)
  const page = await open(ctx, '/')
  const copies = page.locator('#storage #copies')
  await copies.waitFor()
  assert.is(await copies.innerText(), '1 copy of everything stored (2 once there are 2 stores)')
  assert.not.match(await page.locator('#storage').innerText(), /replica/)
  await page.close()
})

ui('artifact modes read as ls shows them', async ctx => {
  const page = await open(ctx, `/builds/${ctx.first}`)
  await page.locator('#build-head .badge.succeeded').waitFor()
  const modes = await page.evaluate(async () => {
    const { fileMode } = await import('/ui/common.js' as string)
    return [fileMode(0o755), fileMode(0o644), fileMode(0o600), fileMode(undefined), fileMode(0o777, 'lib.so.1')]
  })
  assert.equal(modes, ['-rwxr-xr-x', '-rw-r--r--', '-rw-------', '', 'lrwxrwxrwx'])
  await page.close()
})

ui('no page errors and no console errors on any page', async ctx => {
  const page = await open(ctx, '/builds/000000000nosuchbuild')
  await page.locator('#build-head .error', { hasText: 'no build' }).waitFor()
  await page.close()
  expectedError(ctx, /^\/builds\/000000000nosuchbuild: console: .*status of 404/)
  assert.equal(ctx.errors, [])
  assert.ok(ctx.urls.length > 20, 'pages made requests')
  assert.equal(ctx.urls.filter(url => url.includes(ctx.grid.token)), [], 'the token is never in a URL')
})

ui.run()

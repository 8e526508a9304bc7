// Pipelines in the web UI, in a real browser (Debian's chromium driven by playwright-core) against a real in-process
// grid: the list, the graph of a pipeline's builds (columns by needs, a matrix grouped, links to builds) changing
// live over /api/events, a failed job's dependents skipped, cancel, the build page's link back, the home page's
// card, an unknown id. Screenshots go to docs/screenshots/ for the README.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { create as tarCreate } from 'tar'
import { launchChromium, watchPage } from '../browser.ts'
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core'
import { ROOT, startTestGrid, tempDir, removeDir, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import type { Pipeline } from '../../grid/build.ts'
import { PIPELINE_FINISHED } from '../../grid/build.ts'

const SCREENSHOTS = join(ROOT, 'docs/screenshots')
const DESKTOP = { width: 1280, height: 860 }
const PHONE = { width: 390, height: 844 }
/** Every browser wait is bounded: a stuck page fails its test. */
const UI_TIMEOUT_MS = 30_000
/** A gate's loop gives up after this many 50 ms naps (30 s) and fails its build, so a lost gate cannot hang the run. */
const GATE_NAPS = 600

interface Ctx {
  grid: TestGrid
  browser: Browser
  context: BrowserContext
  errors: string[]
  dir: string
  /** The CID of a small source tree every pipeline builds from. */
  src: string
  /** Every URL a page asked for: the token must never be in one. */
  urls: string[]
  /** Pages a failed test left open are closed after it, so their event streams do not leak into the next. */
  pages: Page[]
}

const ui = suite<Ctx>('web UI: pipelines')

ui.before(async ctx => {
  // Four slots: the 2×2 matrix runs at once. A repository's checkout build requires git, which a worker started
  // here only has when it says so (a `grid worker` finds it on PATH by itself).
  const gitVersion = execFileSync('git', ['--version'], { encoding: 'utf8' }).trim().split(' ').pop() ?? 'yes'
  ctx.grid = await startTestGrid({ workers: [{ slots: 4, capabilities: { git: gitVersion } }] })
  ctx.dir = await tempDir('web-pipelines')
  ctx.errors = []
  ctx.pages = []
  ctx.urls = []
  ctx.browser = await launchChromium()
  ctx.context = await ctx.browser.newContext({ viewport: DESKTOP })
  ctx.context.setDefaultTimeout(UI_TIMEOUT_MS)
  await mkdir(SCREENSHOTS, { recursive: true })
  const tree = join(ctx.dir, 'src')
  await mkdir(tree, { recursive: true })
  await writeFile(join(tree, 'hello.c'), 'int main (void) { return 0; }\n')
  const chunks: Buffer[] = []
  for await (const chunk of tarCreate({ cwd: tree, portable: true }, ['hello.c']) as unknown as AsyncIterable<Buffer>) chunks.push(chunk)
  const res = await ctx.grid.api('/api/artifacts', { method: 'POST', body: Buffer.concat(chunks), headers: { authorization: `Bearer ${ctx.grid.token}` } })
  assert.is(res.status, 201)
  ctx.src = (await res.json()).cid
})

ui.after.each(async ctx => {
  for (const page of ctx.pages.splice(0)) if (!page.isClosed()) await page.close()
})

ui.after(async ctx => {
  await ctx.browser?.close()
  await ctx.grid?.stop()
  await removeDir(ctx.dir)
})

async function open (ctx: Ctx, path: string, viewport = DESKTOP): Promise<Page> {
  const page = await ctx.context.newPage()
  ctx.pages.push(page)
  await page.setViewportSize(viewport)
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

/** POST /api/pipelines with the YAML text of a `.grid.yml` (and the ref and commit it says it is of); the new pipeline's id. */
async function startPipeline (ctx: Ctx, yaml: string, source: { ref?: string, commit?: string } = {}): Promise<string> {
  const res = await ctx.grid.api('/api/pipelines', {
    method: 'POST',
    headers: { authorization: `Bearer ${ctx.grid.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ pipeline: yaml, src: ctx.src, ...source })
  })
  const body = await res.json()
  assert.is(res.status, 201, JSON.stringify(body))
  return body.id
}

async function record (ctx: Ctx, id: string): Promise<Pipeline> {
  return await (await ctx.grid.api(`/api/pipelines/${id}`)).json() as Pipeline
}

/** The pipeline once every one of its builds exists (has an id), so their links can be checked. */
async function withBuilds (ctx: Ctx, id: string): Promise<Pipeline> {
  return await waitFor(`pipeline ${id}'s builds`, async () => {
    const p = await record(ctx, id)
    return p.jobs.length > 0 && p.jobs.every(j => j.build !== undefined) ? p : undefined
  })
}

async function finished (ctx: Ctx, id: string): Promise<Pipeline> {
  return await waitFor(`pipeline ${id} to finish`, async () => {
    const p = await record(ctx, id)
    return PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, 60_000)
}

/** A shell loop that waits for `file` to exist, at most GATE_NAPS naps, and fails the step if it never does. */
const gateLoop = (file: string): string =>
  `n=0; while [ ! -e '${file}' ] && [ $n -lt ${GATE_NAPS} ]; do sleep 0.05; n=$((n+1)); done; [ -e '${file}' ]`

/** The graph's columns as the names of their builds, in order. */
async function columnNames (page: Page): Promise<string[][]> {
  return await page.locator('#graph .column').evaluateAll(columns =>
    columns.map(column => Array.from(column.querySelectorAll('.node')).map(node => (node as HTMLElement).dataset.name ?? '')))
}

const box = (page: Page, name: string): Locator => page.locator(`#graph .node[data-kind=job][data-name="${name}"]`)

/** What an API client says the tree is of: the page shows it as given. */
const COMMIT = '5f1c0de2a9b84e7c6d3f2a1b0c9e8d7f6a5b4c3d'

/** A 2×2 matrix between a build that waits on a gate and a package step that needs every combination. */
const matrixYaml = (gate: string): string => `
env: { GREETING: "hello" }
jobs:
  build:
    steps:
      - name: compile
        run: "${gateLoop(gate)} && echo built > out.txt"
    artifacts: [ out.txt ]
  test:
    needs: [ build ]
    matrix: { os: [ linux, mac ], cc: [ gcc, clang ] }
    env: { TARGET: "\${{ matrix.os }}-\${{ matrix.cc }}" }
    steps: [ { name: check, run: "cat out.txt && echo $GREETING $TARGET" } ]
  package:
    needs: [ test ]
    steps: [ { run: "echo packaged" } ]
`

ui('the graph: columns by needs, the matrix grouped, each box a link to its build, running then succeeded live', async ctx => {
  const gate = join(ctx.dir, 'gate-matrix')
  const list = await open(ctx, '/pipelines')
  await list.locator('#live.on').waitFor()
  const id = await startPipeline(ctx, matrixYaml(gate), { ref: 'refs/heads/main', commit: COMMIT })
  // The list shows it without a reload.
  const row = list.locator(`#pipelines tr[data-id="${id}"]`)
  await row.waitFor()

  const page = await open(ctx, `/pipelines/${id}`)
  await page.evaluate(() => { (window as any).notReloaded = true })
  await box(page, 'build').and(page.locator('[data-status=running]')).waitFor()
  const p = await withBuilds(ctx, id)
  const tests = p.jobs.filter(j => j.job === 'test').map(j => j.name)
  assert.is(tests.length, 4, JSON.stringify(p.jobs))
  assert.ok(tests.every(name => /^test \(.+\)$/.test(name)), tests.join(', '))
  assert.equal(await columnNames(page), [['build'], tests, ['package']])
  // The matrix is one group under the job's name, each box called by its combination.
  const group = page.locator('#graph .group.matrix[data-job=test]')
  assert.match(await group.locator('.group-name').innerText(), /^test ×4$/)
  assert.is(await group.locator('.node').count(), 4)
  assert.match(await group.locator('.node .node-name').first().innerText(), /=/)
  assert.not.match(await group.locator('.node .node-name').first().innerText(), /^test/)
  // A line from each job to the jobs that need it, and only those.
  const edges = await page.locator('#graph svg path.edge').evaluateAll(paths => paths.map(p => `${p.getAttribute('data-from')}>${p.getAttribute('data-to')}`))
  assert.equal(edges.sort(), ['build>test', 'test>package'])
  assert.match(await page.locator('#graph svg path.edge').first().getAttribute('d') ?? '', /^M[\d.]+ [\d.]+ C/, 'the line is drawn')
  // Each box links to its build.
  for (const job of p.jobs) assert.is(await box(page, job.name).getAttribute('href'), `/builds/${job.build}`, job.name)
  // Status is a word as well as a colour.
  assert.is(await box(page, 'build').locator('.state').innerText(), 'running')
  assert.is(await box(page, tests[0]).locator('.state').innerText(), 'queued')
  assert.match(await page.locator('#pipeline-head .badge').innerText(), /running/)
  assert.match(await row.locator('.badge').innerText(), /running/)
  // The header: source, trigger, times. An API pipeline has no repository URL: it is called by its ref and commit.
  assert.is(await page.locator('#pipeline-head h1').innerText(), 'main @ 5f1c0de')
  assert.is(await page.locator('#pipeline-head [data-fact=ref]').innerText(), 'main')
  assert.is(await page.locator('#pipeline-head [data-fact=commit]').innerText(), COMMIT)
  assert.is(await page.locator('#pipeline-head [data-fact=url]').count(), 0, 'no repository to show')
  assert.is(await page.locator('#pipeline-head [data-fact=trigger]').innerText(), 'api')
  assert.match(await page.locator('#pipeline-head').innerText(), new RegExp(`pipeline ${id}`))
  assert.match(await page.locator('#pipeline-head #counts').innerText(), /1 running · 5 queued/)

  await writeFile(gate, '')
  await box(page, 'build').and(page.locator('[data-status=succeeded]')).waitFor()
  assert.is(await box(page, 'build').locator('.state').innerText(), 'succeeded')
  await box(page, 'package').and(page.locator('[data-status=succeeded]')).waitFor()
  await page.locator('#pipeline-head .badge.succeeded').waitFor()
  for (const name of tests) assert.is(await box(page, name).getAttribute('data-status'), 'succeeded', name)
  assert.ok(await page.evaluate(() => (window as any).notReloaded === true), 'the page was not reloaded')
  assert.match(await page.locator('#pipeline-head #counts').innerText(), /^6 succeeded$/)
  assert.match(await page.locator('#pipeline-head').innerText(), /finished/)
  assert.is(await page.title(), 'main @ 5f1c0de (succeeded) · nameless-grid')
  await list.locator(`#pipelines tr[data-id="${id}"][data-status=succeeded]`).waitFor()
  assert.match(await row.innerText(), /6 succeeded/)
  assert.is(await row.locator('a').innerText(), 'main @ 5f1c0de')
  assert.is(await row.locator('a').getAttribute('href'), `/pipelines/${id}`)
  await page.screenshot({ path: join(SCREENSHOTS, 'pipeline.png'), fullPage: true })

  // A box opens its build, whose page links back to the pipeline with the job's name.
  const first = p.jobs.find(j => j.name === tests[0])!
  await box(page, tests[0]).click()
  await page.waitForURL(`**/builds/${first.build}`)
  const back = page.locator('#pipeline-of')
  await back.waitFor()
  assert.is(await back.innerText(), `pipeline ${id} · job ${tests[0]}`)
  assert.is(await back.locator('a').getAttribute('href'), `/pipelines/${id}`)
  // The matrix build ran after build, with its artifact: the job card says so, linked.
  const build = p.jobs.find(j => j.name === 'build')!
  await page.locator(`#job li[data-after="${build.build}"] a[href="/builds/${build.build}"]`).waitFor()
  await back.locator('a').click()
  await page.waitForURL(`**/pipelines/${id}`)
  await box(page, 'package').waitFor()
  await list.close()
  await page.close()
})

ui('a failing job makes its dependents skipped, said in words on the graph, the list and the build page', async ctx => {
  // lint fails once the test lets it, so the page sees its dependents queued first and skipped after, live.
  const gate = join(ctx.dir, 'gate-lint')
  const id = await startPipeline(ctx, `
jobs:
  lint:
    steps: [ { name: style, run: "${gateLoop(gate)} && echo style error && exit 1" } ]
  test:
    needs: [ lint ]
    matrix: { n: [ 1, 2 ] }
    steps: [ { run: "echo never runs" } ]
  deploy:
    needs: [ test ]
    steps: [ { run: "echo never runs" } ]
  docs:
    steps: [ { run: "echo docs made" } ]
`)
  const page = await open(ctx, `/pipelines/${id}`)
  await box(page, 'lint').and(page.locator('[data-status=running]')).waitFor()
  await box(page, 'docs').and(page.locator('[data-status=succeeded]')).waitFor()
  assert.is(await box(page, 'deploy').getAttribute('data-status'), 'queued')
  await writeFile(gate, '')
  await page.locator('#pipeline-head .badge.failed').waitFor()
  const p = await finished(ctx, id)
  assert.is(p.status, 'failed')
  const tests = p.jobs.filter(j => j.job === 'test').map(j => j.name)
  assert.equal(await columnNames(page), [['lint', 'docs'], tests, ['deploy']])
  // Every box is drawn from the record at its end.
  await box(page, 'deploy').and(page.locator('[data-status=skipped]')).waitFor()
  assert.is(await box(page, 'lint').getAttribute('data-status'), 'failed')
  assert.is(await box(page, 'docs').getAttribute('data-status'), 'succeeded')
  for (const name of [...tests, 'deploy']) {
    assert.is(await box(page, name).getAttribute('data-status'), 'skipped', name)
    assert.is(await box(page, name).locator('.state').innerText(), 'skipped', name)
  }
  // Skipped reads apart from cancelled and failed: an outlined, dashed box.
  assert.is(await box(page, 'deploy').evaluate(el => getComputedStyle(el).borderLeftStyle), 'dashed')
  assert.is(await box(page, 'lint').evaluate(el => getComputedStyle(el).borderLeftStyle), 'solid')
  assert.match(await page.locator('#pipeline-head #counts').innerText(), /1 succeeded · 1 failed · 3 skipped/)
  await page.screenshot({ path: join(SCREENSHOTS, 'pipeline-failed.png'), fullPage: true })
  // A skipped build's page: its status badge, and it never took a slot.
  const deploy = p.jobs.find(j => j.name === 'deploy')!
  await box(page, 'deploy').click()
  await page.waitForURL(`**/builds/${deploy.build}`)
  await page.locator('#build-head .badge.skipped').waitFor()
  assert.is(await page.locator('#build-head .badge').innerText(), 'skipped')
  assert.is(await page.locator('#pipeline-of').innerText(), `pipeline ${id} · job deploy`)
  assert.match(await page.locator('#attempts').innerText(), /ended before a worker took it/)
  await page.locator('#log-state', { hasText: 'complete' }).waitFor()
  // The home page lists it among the newest pipelines, failed, with a link to all of them.
  const home = await open(ctx, '/')
  const row = home.locator(`#pipelines tr[data-id="${id}"][data-status=failed]`)
  await row.waitFor()
  assert.is(await row.locator('a').getAttribute('href'), `/pipelines/${id}`)
  assert.match(await row.innerText(), /1 succeeded · 1 failed · 3 skipped/)
  assert.is(await home.locator('#pipelines-card a[href="/pipelines"]').innerText(), 'all pipelines')
  assert.is(await home.locator('.top nav a[href="/pipelines"]').innerText(), 'Pipelines')
  // The home page's builds list says skipped too.
  await home.locator(`#builds tr[data-id="${deploy.build}"] .badge.skipped`).waitFor()
  await home.close()
  await page.close()
})

ui('cancel works from the pipeline page with the token, and is not offered without it', async ctx => {
  const gate = join(ctx.dir, 'gate-never')
  const id = await startPipeline(ctx, `
jobs:
  wait:
    steps: [ { run: "${gateLoop(gate)}" } ]
  after:
    needs: [ wait ]
    steps: [ { run: "true" } ]
`)
  const page = await open(ctx, `/pipelines/${id}`)
  await box(page, 'wait').and(page.locator('[data-status=running]')).waitFor()
  assert.is(await page.locator('#cancel').count(), 0, 'no cancel without the token')
  assert.match(await page.locator('#pipeline-head').innerText(), /Enter the API token in the header to cancel/)
  // A wrong token: the server's sentence, nothing cancelled.
  await page.fill('#token', 'not-the-token')
  await page.click('#cancel')
  await page.locator('#action-error', { hasText: 'the API token is wrong' }).waitFor()
  expectedError(ctx, /status of 401/)
  assert.is((await record(ctx, id)).status, 'running')
  await page.fill('#token', ctx.grid.token)
  await page.click('#cancel')
  await page.locator('#pipeline-head .badge.cancelled').waitFor()
  await box(page, 'wait').and(page.locator('[data-status=cancelled]')).waitFor()
  const p = await finished(ctx, id)
  assert.is(p.status, 'cancelled')
  assert.is(await page.locator('#cancel').count(), 0, 'no cancel button on a finished pipeline')
  assert.is(await box(page, 'after').getAttribute('data-status'), p.jobs.find(j => j.name === 'after')!.status)
  assert.ok(!page.url().includes(ctx.grid.token), 'the token is never in a URL')
  // The token stays for the other tests' pages only if they need it: none does.
  await page.fill('#token', '')
  await page.close()
})

ui('a pipeline from a repository shows its checkout as the first column and where the commit came from', async ctx => {
  // A repository the grid polls, with a .grid.yml of one job: its first poll builds the branch's head.
  const work = join(ctx.dir, 'repo-work')
  const bare = join(ctx.dir, 'repo.git')
  await mkdir(work, { recursive: true })
  await writeFile(join(work, '.grid.yml'), 'jobs:\n  build:\n    steps: [ { run: "ls && echo from-the-commit" } ]\n')
  const git = (cwd: string, ...args: string[]): string => execFileSync('git', args, {
    cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' }
  }).trim()
  git(ctx.dir, 'init', '-q', '--bare', '-b', 'main', bare)
  git(work, 'init', '-q', '-b', 'main')
  git(work, 'add', '-A')
  git(work, 'commit', '-q', '-m', 'one job')
  git(work, 'push', '-q', bare, 'main')
  const commit = git(work, 'rev-parse', 'HEAD')
  const res = await ctx.grid.api('/api/repos', {
    method: 'POST',
    headers: { authorization: `Bearer ${ctx.grid.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url: bare, poll: 10 })
  })
  const repo = await res.json()
  assert.is(res.status, 201, JSON.stringify(repo))
  const p = await waitFor('the polled pipeline to end', async () => {
    const list = await (await ctx.grid.api('/api/pipelines?limit=20')).json() as Pipeline[]
    const found = list.find(x => x.source.repo === repo.id)
    return found !== undefined && PIPELINE_FINISHED.has(found.status) ? found : undefined
  }, 90_000, 250)
  assert.is(p.status, 'succeeded', JSON.stringify(p))
  assert.ok(p.checkout !== undefined, 'a pipeline from a repository names its checkout build')
  const page = await open(ctx, `/pipelines/${p.id}`)
  const checkout = page.locator('#graph .column[data-column="0"] .node[data-kind=checkout]')
  await checkout.and(page.locator('[data-status=succeeded]')).waitFor()
  assert.is(await checkout.getAttribute('href'), `/builds/${p.checkout}`)
  assert.equal(await columnNames(page), [['checkout'], ['build']])
  assert.equal(await page.locator('#graph svg path.edge').evaluateAll(paths => paths.map(p => `${p.getAttribute('data-from')}>${p.getAttribute('data-to')}`)), ['checkout>build'])
  assert.is(await page.locator('#pipeline-head [data-fact=commit]').innerText(), commit)
  assert.is(await page.locator('#pipeline-head [data-fact=ref]').innerText(), 'main')
  assert.is(await page.locator('#pipeline-head [data-fact=ref]').getAttribute('title'), 'refs/heads/main')
  assert.is(await page.locator('#pipeline-head [data-fact=url]').innerText(), bare)
  assert.is(await page.locator('#pipeline-head [data-fact=url] a').count(), 0, 'a local path is not a link')
  assert.is(await page.locator('#pipeline-head [data-fact=trigger]').innerText(), p.source.trigger)
  assert.is(await page.locator('#pipeline-head h1').innerText(), `repo · main @ ${commit.slice(0, 7)}`)
  const stop = await ctx.grid.api(`/api/repos/${repo.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ctx.grid.token}` } })
  assert.ok(stop.ok, `the repository is removed (${stop.status})`)
  await page.close()
})

ui('an unknown pipeline id says so, and an id with markup in it stays text', async ctx => {
  const page = await open(ctx, '/pipelines/000000000nosuchpipe')
  await page.locator('#pipeline-head #not-found', { hasText: '000000000nosuchpipe' }).waitFor()
  assert.match(await page.locator('#not-found').innerText(), /pipeline/)
  assert.is(await page.locator('#pipeline-head a[href="/pipelines"]').innerText(), 'back to the pipelines')
  assert.ok(await page.locator('#graph-card').isHidden(), 'no graph for a pipeline that does not exist')
  assert.is(await page.title(), 'No such pipeline · nameless-grid')
  expectedError(ctx, /^\/pipelines\/000000000nosuchpipe: console: .*status of 4\d\d/)
  const odd = await open(ctx, '/pipelines/%3Cimg%20src%3Dx%3E')
  await odd.locator('#pipeline-head #not-found').waitFor()
  assert.is(await odd.locator('#pipeline-head img').count(), 0, 'markup in the id is not markup on the page')
  expectedError(ctx, /^\/pipelines\/%3Cimg%20src%3Dx%3E: console: .*status of 4\d\d/)
  await odd.close()
  await page.close()
})

ui('the pipeline page and the list fit a phone: no sideways scrolling of the page', async ctx => {
  const [newest] = await (await ctx.grid.api('/api/pipelines?limit=1')).json() as Pipeline[]
  for (const path of ['/pipelines', `/pipelines/${newest.id}`]) {
    const page = await open(ctx, path, PHONE)
    await page.locator('#live.on').waitFor()
    await page.locator('#pipelines tr[data-id], #graph .node').first().waitFor()
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
    assert.ok(overflow <= 0, `${path}: no sideways scrolling at phone width (${overflow} px too wide)`)
    if (path === '/pipelines') await page.screenshot({ path: join(SCREENSHOTS, 'pipelines-phone.png'), fullPage: true })
    await page.close()
  }
  const list = await open(ctx, '/pipelines')
  await list.locator('#pipelines tr[data-id]').first().waitFor()
  assert.is(await list.locator('.top nav a[aria-current=page]').innerText(), 'Pipelines')
  await list.screenshot({ path: join(SCREENSHOTS, 'pipelines.png'), fullPage: true })
  await list.close()
})

ui('no page errors and no console errors on any page; the token never in a URL', async ctx => {
  assert.equal(ctx.errors, [])
  assert.ok(ctx.urls.length > 20, 'pages made requests')
  assert.equal(ctx.urls.filter(url => url.includes(ctx.grid.token)), [], 'the token is never in a URL')
})

ui.run()

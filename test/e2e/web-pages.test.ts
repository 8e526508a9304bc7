// The web UI's pages and files over plain HTTP (no browser): each page is a shell with a strict script policy,
// its modules are served from /ui/, and /metrics counts requests by route pattern.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { startTestGrid } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'

const pages = suite<{ grid: TestGrid }>('web pages')

pages.before(async ctx => { ctx.grid = await startTestGrid({ transport: 'memory' }) })
pages.after(async ctx => { await ctx.grid?.stop() })

pages('every page is HTML with a content security policy and loads its module from /ui/', async ({ grid }) => {
  for (const [path, script] of [['/', 'home.js'], ['/timeline', 'timeline.js'], ['/submit', 'submit.js'], ['/builds/0abc123456', 'build.js'], ['/pipelines', 'pipelines.js'], ['/pipelines/0abc123456', 'pipeline.js']]) {
    const res = await grid.api(path)
    assert.is(res.status, 200, path)
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/)
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/)
    assert.is(res.headers.get('x-content-type-options'), 'nosniff')
    const html = await res.text()
    assert.ok(html.includes(`<script type="module" src="/ui/${script}">`), `${path} loads ${script}`)
    assert.not.match(html, /<script>|<script type="module">/, 'no inline script')
  }
})

pages('the build page has room for why: the job as submitted, each attempt\'s outcome, reason and logs, and each artifact\'s mode', async ({ grid }) => {
  const html = await (await grid.api('/builds/0abc123456')).text()
  // The header cells of the table whose body has this id.
  const heads = (table: string): string[] => {
    const before = html.slice(0, html.indexOf(`<tbody id="${table}">`))
    return [...before.slice(before.lastIndexOf('<thead>')).matchAll(/<th>(.*?)<\/th>/g)].map(m => m[1])
  }
  assert.equal(heads('attempts'), ['#', 'worker peer ID', 'capabilities', 'started', 'duration', 'outcome', 'logs'])
  assert.equal(heads('artifacts'), ['path', 'mode', 'size', 'sha256', 'CID'])
  // The job as submitted has a card of its own, filled in by build.js.
  assert.ok(html.includes('<section class="card" id="job-card"><h2>Job <span class="muted small">as submitted:'), 'a job card')
  assert.ok(html.includes('<div id="job" class="scroll"></div>'))
})

pages('the browser modules and stylesheet are served; an unknown file is a 404', async ({ grid }) => {
  for (const file of ['common.js', 'ansi.js', 'log-view.js', 'home.js', 'timeline.js', 'build.js', 'submit.js', 'pipelines.js', 'pipeline.js', 'pipeline-graph.js']) {
    const res = await grid.api(`/ui/${file}`)
    assert.is(res.status, 200, file)
    assert.match(res.headers.get('content-type') ?? '', /^text\/javascript/)
    await res.text()
  }
  assert.match((await grid.api('/ui/style.css')).headers.get('content-type') ?? '', /^text\/css/)
  const missing = await grid.api('/ui/..%2fapp.ts')
  assert.is(missing.status, 404)
  const unknown = await grid.api('/ui/secret.js')
  assert.is(unknown.status, 404)
  assert.match((await unknown.json()).error, /no file/)
})

pages('the API keeps its own headers: no page policy on JSON answers', async ({ grid }) => {
  const res = await grid.api('/api/health')
  assert.equal(await res.json(), { ok: true })
  assert.is(res.headers.get('content-security-policy'), null)
})

pages('/metrics counts requests by route pattern, never by build id, and unknown routes as unmatched', async ({ grid }) => {
  await grid.api('/api/builds/0000000000000')
  await grid.api('/no/such/route')
  const text = await (await grid.api('/metrics')).text()
  assert.match(text, /^grid_http_requests_total\{route="\/api\/builds\/:id",method="GET",status="404"\} 1$/m)
  assert.match(text, /^grid_http_requests_total\{route="unmatched",method="GET",status="404"\} [1-9]\d*$/m)
  assert.not.match(text, /0000000000000/)
  assert.match(text, /^grid_workers 1$/m)
  assert.match(text, /^grid_builds\{status="queued"\} 0$/m)
})

pages.run()

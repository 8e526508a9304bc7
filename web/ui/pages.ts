// The web UI's pages: server-rendered shells that load one small browser module each from /ui/.
// No front-end build step: the modules in this folder are served as they are written.
import { Hono } from 'hono'
import type { Context } from 'hono'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/** The browser modules and the stylesheet, read once: they ship with the code, not with the data. */
const ASSETS: Record<string, string> = {
  'style.css': 'text/css; charset=utf-8',
  'common.js': 'text/javascript; charset=utf-8',
  'ansi.js': 'text/javascript; charset=utf-8',
  'log-view.js': 'text/javascript; charset=utf-8',
  'home.js': 'text/javascript; charset=utf-8',
  'timeline.js': 'text/javascript; charset=utf-8',
  'build.js': 'text/javascript; charset=utf-8',
  'submit.js': 'text/javascript; charset=utf-8',
  'pipelines.js': 'text/javascript; charset=utf-8',
  'pipeline.js': 'text/javascript; charset=utf-8',
  'pipeline-graph.js': 'text/javascript; charset=utf-8'
}

/**
 * Pages load scripts only from this server and talk only to it. Inline styles stay allowed for ANSI 256-colour
 * and truecolour spans, which carry their colour in a style attribute.
 */
const PAGE_CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c)

function shell (title: string, nav: string, main: string, script: string): string {
  const link = (href: string, label: string): string =>
    `<a href="${href}"${href === nav ? ' aria-current="page"' : ''}>${label}</a>`
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · nameless-grid</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect x='1' y='3' width='9' height='4' rx='1' fill='%231a7f37'/%3E%3Crect x='5' y='9' width='10' height='4' rx='1' fill='%230969da'/%3E%3C/svg%3E">
<link rel="stylesheet" href="/ui/style.css">
<script type="module" src="/ui/${script}"></script>
</head><body>
<header class="top">
 <a class="brand" href="/">nameless-grid</a>
 <nav>${link('/', 'Builds')}${link('/pipelines', 'Pipelines')}${link('/timeline', 'Timeline')}${link('/submit', 'Submit')}<a href="/metrics">Metrics</a></nav>
 <label class="token" title="Needed to submit, cancel and re-run. Kept in this browser only (localStorage), never sent in a URL.">
  <span>API token</span><input id="token" type="password" autocomplete="off" spellcheck="false" placeholder="paste DATA/api-token">
  <span id="token-state" class="token-state"></span>
 </label>
</header>
<main>
${main}
</main>
</body></html>`
}

/** The columns of a table of pipelines, whose rows pipelineRow in common.js makes (PIPELINE_COLUMNS cells each). */
const PIPELINE_HEAD = '<tr><th>status</th><th>pipeline</th><th class="wide">trigger</th><th class="wide">builds</th><th>duration</th><th class="wide">created</th></tr>'

const HOME = `<section class="card" id="capacity-card">
 <h2>What the grid can build</h2>
 <p id="capacity-summary" class="summary">Loading…</p>
 <div class="scroll"><table class="groups"><thead><tr><th>capabilities</th><th>workers</th><th>slots busy</th></tr></thead>
 <tbody id="groups"></tbody></table></div>
</section>
<section class="card" id="pipelines-card">
 <h2>Newest pipelines <a class="small" href="/pipelines">all pipelines</a></h2>
 <div class="scroll"><table class="pipelines"><thead>${PIPELINE_HEAD}</thead>
 <tbody id="pipelines"><tr><td colspan="6" class="muted">Loading…</td></tr></tbody></table></div>
</section>
<section class="card">
 <h2>Newest builds <span id="live" class="live" title="Updates arrive over /api/events without reloading">connecting…</span></h2>
 <div class="scroll"><table class="builds"><thead><tr><th>status</th><th>build</th><th>duration</th><th class="wide">worker</th><th class="wide">created</th></tr></thead>
 <tbody id="builds"><tr><td colspan="5" class="muted">Loading…</td></tr></tbody></table></div>
</section>`

const PIPELINES = `<section class="card">
 <h2>Pipelines <span id="live" class="live" title="Updates arrive over /api/events without reloading">connecting…</span></h2>
 <p class="muted small">Each pipeline is a graph of builds from a <code>.grid.yml</code>: started by <code>grid run</code>, by a push to a
 repository registered with <code>grid repo add</code>, or by <code>POST /api/pipelines</code>. The newest 50, newest first.</p>
 <div class="scroll"><table class="pipelines"><thead>${PIPELINE_HEAD}</thead>
 <tbody id="pipelines"><tr><td colspan="6" class="muted">Loading…</td></tr></tbody></table></div>
</section>`

const PIPELINE = `<section class="card" id="pipeline-head"><p class="muted">Loading…</p></section>
<section class="card" id="graph-card" hidden>
 <h2>Builds <span class="muted small">left to right: each job runs once the jobs it needs succeeded; a matrix job's builds are grouped;
 click a build to open it</span> <span id="live" class="live" title="Updates arrive over /api/events without reloading">connecting…</span></h2>
 <div class="scroll graph-scroll"><div id="graph" class="graph"></div></div>
</section>`

const TIMELINE = `<section class="card">
 <h2>Timeline <span class="muted small">the newest 200 builds: one row per worker (by peer ID, workers have no names), one bar per attempt; hover a bar for details, click it to open the build</span></h2>
 <div id="legend" class="legend"></div>
 <div id="timeline" class="timeline"><p class="muted">Loading…</p></div>
</section>`

const BUILD = `<section class="card" id="build-head"><p class="muted">Loading…</p></section>
<section class="card" id="job-card"><h2>Job <span class="muted small">as submitted: what it starts from, where each input comes from, and its limits</span></h2><div id="job" class="scroll"></div></section>
<section class="card"><h2>Steps</h2><div class="scroll"><table><thead><tr><th>#</th><th>step</th><th>command</th><th>exit code</th><th>duration</th><th>log</th></tr></thead>
 <tbody id="steps"></tbody></table></div></section>
<section class="card"><h2>Attempts <span class="muted small">which worker ran it, how each attempt ended and why; a lost worker's build is queued again, and its partial logs stay here</span></h2>
 <div class="scroll"><table><thead><tr><th>#</th><th>worker peer ID</th><th>capabilities</th><th>started</th><th>duration</th><th>outcome</th><th>logs</th></tr></thead>
 <tbody id="attempts"></tbody></table></div></section>
<section class="card" id="artifacts-card" hidden><h2>Artifacts</h2><div class="scroll"><table><thead><tr><th>path</th><th>mode</th><th>size</th><th>sha256</th><th>CID</th></tr></thead>
 <tbody id="artifacts"></tbody></table></div></section>
<section class="card log-card">
 <div class="log-bar"><h2>Log <span id="log-state" class="muted small"></span></h2>
  <span class="grow"></span>
  <button id="follow" type="button" aria-pressed="true" title="Keep the newest line in view; scrolling up turns it off">Auto-scroll on</button>
  <a id="raw-log" href="#" target="_blank" rel="noopener">raw log</a></div>
 <div id="log" class="log" tabindex="0" aria-label="build log"></div>
</section>`

const SUBMIT = `<section class="card">
 <h2>Submit a job</h2>
 <p id="submit-token-hint" class="notice" hidden>Paste the API token (the file <code>DATA/api-token</code>) in the header first: submitting needs it.</p>
 <form id="submit-form" class="job-form">
  <label>Name <span class="muted">(optional)</span><input name="name" maxlength="200" placeholder="nightly tests"></label>
  <label>Requires <span class="muted">one <code>KEY=VALUE</code> per line; <code>KEY=*</code> means the worker has the key</span>
   <textarea name="requires" rows="3" spellcheck="false" placeholder="os=linux&#10;gpu=*"></textarea></label>
  <fieldset><legend>Steps <span class="muted">run in order with /bin/sh -c; the first non-zero exit fails the build</span></legend>
   <ol id="step-list" class="step-list"></ol>
   <button type="button" id="add-step">Add a step</button>
  </fieldset>
  <label>Artifacts <span class="muted">files to keep after the steps, one glob per line, relative to the work dir</span>
   <textarea name="artifacts" rows="2" spellcheck="false" placeholder="dist/**&#10;report.xml"></textarea></label>
  <p id="submit-error" class="error" role="alert" hidden></p>
  <button type="submit" class="primary">Submit build</button>
 </form>
</section>`

export function uiRoutes (): Hono {
  const ui = new Hono()
  const dir = import.meta.dirname
  const assets = new Map(Object.entries(ASSETS).map(([name, type]) => [name, { type, body: readFileSync(join(dir, name), 'utf8') }]))
  // The policy goes on the pages only: the API's answers stay exactly as they were.
  const page = (c: Context, title: string, nav: string, main: string, script: string): Response => {
    c.header('Content-Security-Policy', PAGE_CSP)
    return c.html(shell(title, nav, main, script))
  }
  ui.get('/', c => page(c, 'Builds', '/', HOME, 'home.js'))
  ui.get('/timeline', c => page(c, 'Timeline', '/timeline', TIMELINE, 'timeline.js'))
  ui.get('/submit', c => page(c, 'Submit', '/submit', SUBMIT, 'submit.js'))
  ui.get('/builds/:id', c => page(c, `Build ${c.req.param('id')}`, '', BUILD, 'build.js'))
  ui.get('/pipelines', c => page(c, 'Pipelines', '/pipelines', PIPELINES, 'pipelines.js'))
  ui.get('/pipelines/:id', c => page(c, `Pipeline ${c.req.param('id')}`, '/pipelines', PIPELINE, 'pipeline.js'))
  ui.get('/ui/:file', c => {
    const asset = assets.get(c.req.param('file'))
    if (asset === undefined) return c.json({ error: `no file /ui/${c.req.param('file')}` }, 404)
    c.header('Content-Type', asset.type)
    c.header('Cache-Control', 'no-cache')
    return c.body(asset.body)
  })
  return ui
}

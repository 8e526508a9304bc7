// Build page: the job, its attempts and steps, and its log followed live while it runs.
import { esc, badge, chips, buildLabel, attemptsNote, bytes, seconds, buildDuration, buildWhy, linkBuilds, fileMode, duration, time, shortPeer, events, read, write, onToken, FINISHED } from './common.js'
import { LogView } from './log-view.js'

const id = decodeURIComponent(location.pathname.split('/').pop())
/** A dropped log stream is picked up again from the last byte this long after, while the build runs. */
const RESUME_DELAY_MS = 1000
let build
let hasToken = false

const head = document.getElementById('build-head')
const followButton = document.getElementById('follow')
const logState = document.getElementById('log-state')
const view = new LogView(document.getElementById('log'), {
  onFollowChange: on => { followButton.setAttribute('aria-pressed', String(on)); followButton.textContent = on ? 'Auto-scroll on' : 'Auto-scroll off' }
})
followButton.addEventListener('click', () => view.setFollowing(!view.following))
document.getElementById('raw-log').href = '/api/builds/' + encodeURIComponent(id) + '/log'

/** What heads the explanation of where the build is: waiting, or how it ended. */
const WHY_TITLE = { queued: 'Waiting', failed: 'Failed', cancelled: 'Cancelled', timeout: 'Timed out', lost: 'Lost', skipped: 'Skipped' }

function renderHead () {
  const b = build
  const finished = FINISHED.has(b.status)
  // Why it waits, or why it ended as it did: first thing under the title, with the builds it names linked.
  const why = buildWhy(b)
  const whyBox = why !== undefined
    ? '<p id="why" class="why ' + esc(b.status) + (b.status === 'queued' ? ' notice' : '') + '" role="status"><b>' + esc(WHY_TITLE[b.status] ?? b.status) + ':</b> ' + linkBuilds(why, b.id) + '</p>'
    : ''
  const warnings = (b.warnings ?? []).length > 0
    ? '<ul id="warnings" class="warnings">' + b.warnings.map(w => '<li>' + linkBuilds(w, b.id) + '</li>').join('') + '</ul>'
    : ''
  const note = attemptsNote(b)
  // A reused build never ran: say whose outputs it shows, first thing, as a failed build says why it failed.
  const reusedBox = b.reused !== undefined
    ? '<p id="reused" class="why succeeded" role="status"><b>Reused:</b> it did not run; its artifacts and logs are those of build ' +
      linkBuilds(b.reused, b.id) + ', which ran the same steps on the same inputs (job <code>reuse: true</code>).</p>'
    : ''
  head.innerHTML = '<div class="head">' + badge(b.status) + '<h1>' + esc(buildLabel(b.job)) + '</h1><span class="grow"></span>' +
    (hasToken && !finished ? '<button type="button" class="danger" id="cancel">Cancel</button>' : '') +
    (hasToken ? '<button type="button" id="rerun">Re-run</button>' : '') + '</div>' + whyBox + reusedBox + warnings +
    '<div class="facts">' + pipelineFact(b) + '<span>build <b class="mono">' + esc(b.id) + '</b></span>' +
    '<span>created <b>' + esc(time(b.created)) + '</b></span>' +
    (b.started !== undefined ? '<span>started <b>' + esc(time(b.started)) + '</b></span>' : '') +
    (b.finished !== undefined ? '<span>finished <b>' + esc(time(b.finished)) + '</b></span>' : '') +
    '<span>duration <b id="duration">' + esc(buildDuration(b)) + '</b></span>' +
    (note !== undefined ? '<span class="tries" title="' + esc(note.title) + '">' + esc(note.text) + '</span>' : '') +
    (b.reused !== undefined ? '<span id="reused-from">reused from <b>' + linkBuilds(b.reused, b.id) + '</b></span>' : '') + '</div>' +
    '<p id="action-error" class="error" role="alert" hidden></p>' +
    (!hasToken ? '<p class="muted small">Enter the API token in the header to cancel or re-run.</p>' : '')
  document.getElementById('cancel')?.addEventListener('click', cancel)
  document.getElementById('rerun')?.addEventListener('click', rerun)
}

/** The pipeline a build belongs to and its job's name there (`pipeline ID · job test (cflags=-O0)`), linked to the pipeline. */
function pipelineFact (b) {
  if (b.pipeline === undefined) return ''
  return '<span id="pipeline-of">pipeline <a href="/pipelines/' + encodeURIComponent(b.pipeline) + '"><b class="mono">' + esc(b.pipeline) + '</b></a>' +
    (b.jobName !== undefined ? ' · job <b>' + esc(b.jobName) + '</b>' : '') + '</span>'
}

/** The attempt a step record belongs to (by its log id). */
const attemptOf = record => record === undefined ? undefined : build.attempts.find(a => a.logs?.includes(record.log))

/** A step's state when it has no exit code: why it has none. */
function stepState (record) {
  if (record?.started !== undefined) {
    // Its attempt ended without an exit code for it: the attempt's outcome says why (a lost worker, a cancel).
    const attempt = attemptOf(record)
    if (attempt?.outcome !== undefined) return 'stopped: attempt ' + attempt.outcome
    return FINISHED.has(build.status) ? 'stopped: build ' + build.status : 'running'
  }
  if (build.status === 'queued') return 'waiting'
  if (build.status === 'running') return 'not yet'
  return 'not run'
}

/** One link per step log of an attempt, named by its step: a lost attempt's partial output stays readable. */
function attemptLogs (a) {
  return (a.logs ?? []).map((log, i) => '<a class="attempt-log" href="/api/logs/' + encodeURIComponent(log) + '" target="_blank" rel="noopener" title="' +
    esc(log) + '">' + esc(build.job.steps[i]?.name ?? 'step ' + (i + 1)) + '</a>').join(' ')
}

/** Sizes of content by CID, from a one-byte range of it (its Content-Range names the whole size), fetched once. */
const sizes = new Map()
function contentSize (cid) {
  if (!sizes.has(cid)) {
    sizes.set(cid, undefined)
    fetch('/api/artifacts/' + encodeURIComponent(cid), { headers: { range: 'bytes=0-0' } }).then(async res => {
      const total = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '')?.[1]
      await res.body?.cancel()
      sizes.set(cid, total !== undefined ? bytes(Number(total)) : res.status === 410 ? 'evicted' : 'not on the grid')
      renderJobCard()
    }).catch(() => {})
  }
  return sizes.get(cid)
}

/** The builds this one takes artifacts from (`build:ID/PATH` inputs), read once, then kept current by events. */
const upstream = new Map()
function upstreamBuild (upId) {
  if (!upstream.has(upId)) {
    upstream.set(upId, undefined)
    read('/api/builds/' + encodeURIComponent(upId)).then(b => {
      // An event that arrived meanwhile is newer.
      if (upstream.get(upId) === undefined) upstream.set(upId, b)
      renderJobCard()
    }).catch(() => {})
  }
  return upstream.get(upId)
}

/** Content by CID as a download link, with its size once known. */
function contentLink (cid, name) {
  const size = contentSize(cid)
  return '<a class="content" href="/api/artifacts/' + encodeURIComponent(cid) + '"' + (name !== undefined ? ' download="' + esc(name) + '"' : '') +
    '><code>' + esc(cid) + '</code></a>' + (size !== undefined ? ' · ' + esc(size) : '')
}

/** Where an input comes from: content by CID, or another build's artifact (`build:ID/PATH`), linked to that build. */
function inputSource (path, from) {
  if (!from.startsWith('build:')) return contentLink(from, path.split('/').pop())
  const slash = from.indexOf('/')
  const upId = from.slice('build:'.length, slash)
  const artifactPath = from.slice(slash + 1)
  const up = upstreamBuild(upId)
  const made = up?.artifacts?.find(a => a.path === artifactPath)
  const what = made !== undefined
    ? '<a class="artifact" href="/api/artifacts/' + encodeURIComponent(made.cid) + '" download="' + esc(artifactPath.split('/').pop()) + '"><code>' + esc(artifactPath) + '</code></a>'
    : '<code>' + esc(artifactPath) + '</code>'
  // Its label, and its status while that is not (yet) the one this input needs.
  const about = up === undefined ? '' : ' (' + esc(buildLabel(up.job)) + (up.status !== 'succeeded' ? ' · ' + esc(up.status) : made === undefined ? ' · kept no such artifact' : '') + ')'
  return what + ' from build <a class="build-ref" href="/builds/' + esc(upId) + '">' + esc(upId) + '</a>' + about +
    (made !== undefined ? ' · ' + esc(bytes(made.size)) : '')
}

/** A build this one runs after (job `after`), linked, with its label and status, and whether its artifacts come along. */
function afterSource (a) {
  const up = upstreamBuild(a.build)
  const about = up === undefined ? '' : ' (' + esc(buildLabel(up.job)) + ' · ' + esc(up.status) + ')'
  return 'build <a class="build-ref" href="/builds/' + esc(a.build) + '">' + esc(a.build) + '</a>' + about +
    (a.artifacts === false ? ' · <span class="muted">its artifacts left out</span>' : ' · its artifacts placed in the work dir first')
}

/** The words of one cache outcome (a build record's `caches`, docs/job.md "Caches"), as HTML. */
function cacheOutcome (c) {
  const size = typeof c.size === 'number' ? ' (' + esc(bytes(c.size)) + ')' : ''
  const why = c.why !== undefined ? ': <span class="muted">' + esc(c.why) + '</span>' : ''
  switch (c.outcome) {
    case 'restored': return '<span class="cache-outcome hit" data-outcome="restored">restored</span>' + size
    case 'restored-by-prefix': return '<span class="cache-outcome hit" data-outcome="restored-by-prefix">restored from <code>' + esc(c.from ?? '') + '</code></span>' + size
    case 'missed': return '<span class="cache-outcome" data-outcome="missed">missed</span>' + why
    case 'saved': return '<span class="cache-outcome" data-outcome="saved">saved</span>' + size
    case 'not-saved': return '<span class="cache-outcome" data-outcome="not-saved">not saved</span>' + why
    default: return esc(c.outcome)
  }
}

/**
 * The caches row: each key with what its restore and save did in the last attempt (`deps-3f2a… → missed, saved
 * (1.2 KiB)`); before any attempt reported, the job's keys as written.
 */
function cachesRow (row) {
  const records = build.caches ?? []
  if (records.length > 0) {
    const byKey = new Map()
    for (const c of records) byKey.set(c.key, [...(byKey.get(c.key) ?? []), c])
    return row('caches', 'what each cache restored and saved in the last attempt', '<ul class="inputs" id="caches">' + [...byKey].map(([key, list]) =>
      '<li data-cache="' + esc(key) + '"><code>' + esc(key) + '</code> → ' + list.map(cacheOutcome).join(', ') + '</li>').join('') + '</ul>')
  }
  const declared = build.job.cache ?? []
  if (declared.length === 0) return ''
  const state = build.reused !== undefined ? 'not used: the build was reused' : FINISHED.has(build.status) ? 'no outcome reported' : 'not yet'
  return row('caches', 'restored before the first step, saved after the steps', '<ul class="inputs" id="caches">' + declared.map(c =>
    '<li><code>' + esc(c.key) + '</code> <span class="muted">' + esc(state) + '</span></li>').join('') + '</ul>')
}

/** The job as it was submitted: what it starts from, its inputs and where each comes from, env names, limits. */
function renderJobCard () {
  if (build === undefined) return
  const job = build.job
  const row = (field, title, html) => '<tr data-field="' + field + '"><th title="' + esc(title) + '">' + field + '</th><td>' + html + '</td></tr>'
  const inputs = Object.entries(job.inputs ?? {})
  const env = Object.keys(job.env ?? {})
  const after = job.after ?? []
  const globs = job.artifacts ?? []
  const limits = ['timeout ' + seconds(job.timeout), 'retries ' + job.retries, 'killGrace ' + seconds(job.killGrace ?? 10)]
  if (job.logLimit !== undefined) limits.push('logLimit ' + bytes(job.logLimit))
  limits.push('priority ' + (job.priority ?? 0))
  document.getElementById('job').innerHTML = '<table class="kv">' +
    (job.src !== undefined ? row('src', 'a tar unpacked into the work dir before the first step', contentLink(job.src)) : '') +
    (inputs.length > 0
      ? row('inputs', 'files placed in the work dir first', '<ul class="inputs">' + inputs.map(([path, from]) =>
        '<li data-input="' + esc(path) + '"><code>' + esc(path) + '</code> ← ' + inputSource(path, from) + '</li>').join('') + '</ul>')
      : '') +
    (after.length > 0
      ? row('after', 'builds this one runs after: it starts once each succeeded, and ends skipped if one did not', '<ul class="inputs">' + after.map(a =>
        '<li data-after="' + esc(a.build) + '">' + afterSource(a) + '</li>').join('') + '</ul>')
      : '') +
    (env.length > 0 ? row('env', 'environment variables of every step', env.map(n => '<code>' + esc(n) + '</code>').join(', ') + ' <span class="muted">(values not shown)</span>') : '') +
    row('requires', 'capabilities a worker must have', chips(job.requires)) +
    cachesRow(row) +
    (globs.length > 0 ? row('artifacts', 'files kept after the steps', globs.map(g => '<code>' + esc(g) + '</code>').join(', ')) : '') +
    row('limits', 'timeout for the whole build, re-runs after a lost worker, seconds between SIGTERM and SIGKILL, output kept per step, queue priority', esc(limits.join(' · '))) +
    '</table>'
}

function renderJob () {
  const job = build.job
  renderJobCard()
  document.getElementById('steps').innerHTML = job.steps.map((step, i) => {
    const record = build.steps[i]
    const exit = record?.exitCode
    // A step that never finished ran until its attempt (or the build) ended, or runs still.
    const end = record?.finished ?? attemptOf(record)?.finished ?? build.finished
    const ran = record?.started !== undefined ? duration((end !== undefined ? Date.parse(end) : Date.now()) - Date.parse(record.started)) : ''
    const exitCell = exit === undefined ? '<span class="muted">' + esc(stepState(record)) + '</span>'
      : '<span class="badge ' + (exit === 0 ? 'succeeded' : 'failed') + '">exit ' + esc(exit) + '</span>'
    const log = record !== undefined ? '<a href="/api/logs/' + encodeURIComponent(record.log) + '" target="_blank" rel="noopener">log</a>' : ''
    return '<tr><td>' + (i + 1) + '</td><td>' + esc(step.name) + '</td><td><pre class="cmd">' + esc(step.run) + '</pre></td><td>' +
      exitCell + '</td><td>' + esc(ran) + '</td><td>' + log + '</td></tr>'
  }).join('')
  document.getElementById('attempts').innerHTML = build.attempts.length === 0
    ? '<tr><td colspan="7" class="muted">' + (build.reused !== undefined ? 'None: it took the outputs of build ' + linkBuilds(build.reused, build.id) + '.'
      : FINISHED.has(build.status) ? 'It ended before a worker took it.' : 'No worker has taken it yet.') + '</td></tr>'
    : build.attempts.map((a, i) => '<tr data-attempt="' + esc(a.id) + '" data-outcome="' + esc(a.outcome ?? 'running') + '"><td>' + (i + 1) + '</td>' +
      '<td class="nowrap"><code title="' + esc(a.worker) + '">' + esc(shortPeer(a.worker)) + '</code></td><td>' + chips(a.capabilities) + '</td>' +
      '<td>' + esc(time(a.started)) + '</td><td>' + esc(a.finished !== undefined ? duration(Date.parse(a.finished) - Date.parse(a.started)) : '') + '</td>' +
      '<td>' + (a.outcome !== undefined ? badge(a.outcome) : badge('running')) +
      (a.reason !== undefined ? '<div class="reason">' + linkBuilds(a.reason, build.id) + '</div>' : '') + '</td>' +
      '<td>' + attemptLogs(a) + '</td></tr>').join('')
  const artifacts = build.artifacts ?? []
  document.getElementById('artifacts-card').hidden = artifacts.length === 0
  // Each path downloads the artifact by its CID (verified by the server as it streams), under its own file name.
  // A symbolic link shows where it points; its content is that target's text.
  document.getElementById('artifacts').innerHTML = artifacts.map(a =>
    '<tr data-path="' + esc(a.path) + '"><td><a class="artifact" href="/api/artifacts/' + encodeURIComponent(a.cid) + '" download="' + esc(a.path.split('/').pop()) + '"><code>' + esc(a.path) + '</code></a>' +
    (a.link !== undefined ? ' <span class="link-target">→ <code>' + esc(a.link) + '</code></span>' : '') +
    (a.evicted !== undefined ? ' <span class="muted small" title="' + esc(a.evicted) + '">evicted</span>' : '') + '</td>' +
    '<td><code class="mode" title="' + (typeof a.mode === 'number' ? 'mode ' + a.mode.toString(8).padStart(4, '0') : '') + '">' + esc(fileMode(a.mode, a.link)) + '</code></td>' +
    '<td>' + esc(a.size) + ' B</td><td><code class="hash" title="' + esc(a.sha256) + '">' + esc(String(a.sha256).slice(0, 16)) + '…</code></td>' +
    '<td><code>' + esc(a.cid) + '</code></td></tr>').join('')
}

function render () {
  if (build === undefined) return
  if (!FINISHED.has(build.status)) view.setEmptyText(build.status === 'queued' ? 'No output yet: ' + (build.waiting ?? 'waiting for a worker') + '.' : 'No output yet.')
  document.title = buildLabel(build.job) + ' (' + build.status + ') · nameless-grid'
  renderHead()
  renderJob()
}

/** What an empty log says once the build ended: that it wrote nothing, and why it ended if not by succeeding. */
function emptyFinished () {
  const why = buildWhy(build)
  return 'This build wrote no output' + (why !== undefined ? ': it ended ' + build.status + ' (' + why + ').' : '.')
}

function showError (err) {
  const el = document.getElementById('action-error')
  el.textContent = err.message
  el.hidden = false
}

async function cancel () {
  try { build = await write('/api/builds/' + encodeURIComponent(id) + '/cancel'); render() } catch (err) { showError(err) }
}

async function rerun () {
  try {
    const { id: next } = await write('/api/builds', build.job)
    location.href = '/builds/' + encodeURIComponent(next)
  } catch (err) { showError(err) }
}

async function followLog () {
  let received = 0
  const decoder = new TextDecoder()
  for (;;) {
    logState.textContent = FINISHED.has(build.status) ? '' : '(following live)'
    try {
      const res = await fetch('/api/builds/' + encodeURIComponent(id) + '/log?follow=1&from=' + received)
      if (!res.ok) throw new Error('the log answered ' + res.status)
      const reader = res.body.getReader()
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        received += chunk.value.byteLength
        view.append(decoder.decode(chunk.value, { stream: true }))
      }
    } catch {}
    if (FINISHED.has(build.status)) break
    logState.textContent = '(connection lost, resuming…)'
    await new Promise(resolve => setTimeout(resolve, RESUME_DELAY_MS))
  }
  view.append(decoder.decode())
  view.setEmptyText(emptyFinished())
  logState.textContent = '(' + view.lineCount + ' lines, complete)'
}

events({
  build: b => {
    if (b.id === id) { build = b; render() }
    if (upstream.has(b.id)) { upstream.set(b.id, b); renderJobCard() }
  }
}, (on, again) => {
  // Changes made while the stream was down are not replayed: read the build again.
  if (on && again) {
    read('/api/builds/' + encodeURIComponent(id)).then(b => { build = b; render() }).catch(() => {})
    upstream.clear()
  }
})
try {
  const fetched = await read('/api/builds/' + encodeURIComponent(id))
  // An event that arrived meanwhile is newer.
  build ??= fetched
} catch (err) {
  head.innerHTML = '<p class="error">' + esc(err.message) + '</p><a href="/">back to the builds</a>'
}
if (build !== undefined) {
  onToken(on => { hasToken = on; render() })
  setInterval(() => {
    if (!FINISHED.has(build.status)) {
      const d = document.getElementById('duration')
      if (d !== null) d.textContent = buildDuration(build)
    }
  }, 1000)
  followLog()
}

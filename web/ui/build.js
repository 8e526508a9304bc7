// Build page: the job, its attempts and steps, and its log followed live while it runs.
import { esc, badge, chips, buildLabel, buildDuration, buildWhy, linkBuilds, fileMode, duration, time, shortPeer, events, read, write, onToken, FINISHED } from './common.js'
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
const WHY_TITLE = { queued: 'Waiting', failed: 'Failed', cancelled: 'Cancelled', timeout: 'Timed out', lost: 'Lost' }

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
  head.innerHTML = '<div class="head">' + badge(b.status) + '<h1>' + esc(buildLabel(b)) + '</h1><span class="grow"></span>' +
    (hasToken && !finished ? '<button type="button" class="danger" id="cancel">Cancel</button>' : '') +
    (hasToken ? '<button type="button" id="rerun">Re-run</button>' : '') + '</div>' + whyBox + warnings +
    '<div class="facts"><span>build <b class="mono">' + esc(b.id) + '</b></span>' +
    '<span>created <b>' + esc(time(b.created)) + '</b></span>' +
    (b.started !== undefined ? '<span>started <b>' + esc(time(b.started)) + '</b></span>' : '') +
    (b.finished !== undefined ? '<span>finished <b>' + esc(time(b.finished)) + '</b></span>' : '') +
    '<span>duration <b id="duration">' + esc(buildDuration(b)) + '</b></span>' +
    (b.reused !== undefined ? '<span>reused <b>' + linkBuilds(b.reused, b.id) + '</b></span>' : '') + '</div>' +
    '<p id="action-error" class="error" role="alert" hidden></p>' +
    (!hasToken ? '<p class="muted small">Enter the API token in the header to cancel or re-run.</p>' : '')
  document.getElementById('cancel')?.addEventListener('click', cancel)
  document.getElementById('rerun')?.addEventListener('click', rerun)
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

function renderJob () {
  const job = build.job
  document.getElementById('job').innerHTML =
    '<div class="facts"><span>requires <b>' + chips(job.requires) + '</b></span>' +
    '<span>timeout <b>' + esc(duration(job.timeout * 1000)) + '</b></span><span>retries <b>' + esc(job.retries) + '</b></span>' +
    (Object.keys(job.env ?? {}).length > 0 ? '<span>env <b>' + chips(job.env) + '</b></span>' : '') + '</div>'
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
    ? '<tr><td colspan="7" class="muted">' + (FINISHED.has(build.status) ? 'It ended before a worker took it.' : 'No worker has taken it yet.') + '</td></tr>'
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
  document.title = buildLabel(build) + ' (' + build.status + ') · nameless-grid'
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

events({ build: b => { if (b.id === id) { build = b; render() } } }, (on, again) => {
  // Changes made while the stream was down are not replayed: read the build again.
  if (on && again) read('/api/builds/' + encodeURIComponent(id)).then(b => { build = b; render() }).catch(() => {})
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

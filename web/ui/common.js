// Shared by every page: escaping, formatting, the API token (localStorage only) and the live event stream.
const TOKEN_KEY = 'nameless-grid.api-token'
/** Build statuses that do not change any more (FINISHED in grid/build.ts); `skipped`: a need did not succeed. */
export const FINISHED = new Set(['succeeded', 'failed', 'cancelled', 'timeout', 'lost', 'skipped'])
/** Pipeline statuses that do not change any more (PIPELINE_FINISHED in grid/build.ts). */
export const PIPELINE_FINISHED = new Set(['succeeded', 'failed', 'cancelled'])

export const esc = s => String(s ?? '').replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])

export function token () {
  try { return localStorage.getItem(TOKEN_KEY) ?? '' } catch { return '' }
}

const tokenListeners = new Set()
/** Calls `listener(hasToken)` now and whenever the token field changes. */
export function onToken (listener) {
  tokenListeners.add(listener)
  listener(token() !== '')
}

function setupTokenField () {
  const input = document.getElementById('token')
  const state = document.getElementById('token-state')
  if (input === null) return
  const show = () => { state.textContent = token() !== '' ? 'saved' : 'read-only' }
  input.value = token()
  show()
  input.addEventListener('input', () => {
    try {
      if (input.value.trim() === '') localStorage.removeItem(TOKEN_KEY)
      else localStorage.setItem(TOKEN_KEY, input.value.trim())
    } catch {}
    show()
    for (const listener of tokenListeners) listener(token() !== '')
  })
}
setupTokenField()

/** A write to the API with the token; resolves with the JSON answer or throws its `error` sentence. */
export async function write (path, body) {
  const res = await fetch(path, {
    method: 'POST',
    headers: { authorization: 'Bearer ' + token(), 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const answer = await res.json().catch(() => ({}))
  if (!res.ok) throw new Error(answer.error ?? 'the server answered ' + res.status)
  return answer
}

export async function read (path) {
  const res = await fetch(path)
  const answer = await res.json().catch(() => ({}))
  if (!res.ok) throw new Error(answer.error ?? 'the server answered ' + res.status)
  return answer
}

/**
 * Subscribe to /api/events. EventSource reconnects by itself; the stream has no replay, so `onState(true, again)`
 * tells a page it is live again and should reload what it shows (`again` is false on the first connection).
 */
export function events (handlers, onState = () => {}) {
  const source = new EventSource('/api/events')
  let connectedBefore = false
  source.addEventListener('open', () => { onState(true, connectedBefore); connectedBefore = true })
  source.addEventListener('error', () => onState(false, connectedBefore))
  for (const [name, handler] of Object.entries(handlers)) source.addEventListener(name, e => handler(JSON.parse(e.data)))
  addEventListener('pagehide', () => source.close())
  return source
}

export function shortPeer (peer) {
  return peer === undefined ? '' : '…' + peer.slice(-8)
}

/** Longest label a build gets from its command: MAX_LABEL_CHARS in grid/build.ts. */
export const MAX_LABEL_CHARS = 60

/**
 * What to call a build (its `job`): the job's `name`, else what it runs, the first line of its first step's command
 * shortened to MAX_LABEL_CHARS with an ellipsis, so builds from `grid submit --run` do not all read "run". The same
 * rule as buildLabel in grid/build.ts, which the CLI uses; the browser tests hold the two to the same answers.
 */
export function buildLabel (job) {
  if (typeof job.name === 'string' && job.name.trim() !== '') return job.name
  const line = String(job.steps[0]?.run ?? '').split('\n').map(l => l.trim()).find(l => l !== '') ?? ''
  return line.length > MAX_LABEL_CHARS ? line.slice(0, MAX_LABEL_CHARS - 1) + '…' : line
}

/**
 * How many times a build was taken by a worker, when more than once (a lost worker's build is queued again):
 * `{ text: '2 attempts', title }`, the title saying how each attempt ended and why; else undefined.
 */
export function attemptsNote (build) {
  const attempts = build.attempts ?? []
  if (attempts.length < 2) return undefined
  return {
    text: attempts.length + ' attempts',
    title: attempts.map((a, i) => 'attempt ' + (i + 1) + ' ' + (a.outcome ?? 'running') + (a.reason !== undefined ? ': ' + a.reason : '')).join('\n')
  }
}

/** A byte count as people read it: 512 B, 1.5 KiB, 12 KiB, 3.2 MiB. */
export function bytes (n) {
  if (!(n >= 0)) return ''
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  if (n < 1024) return n + ' B'
  let value = n / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++ }
  return (value < 10 ? value.toFixed(1) : String(Math.round(value))) + ' ' + units[unit]
}

/** A limit in whole seconds as it was most likely written: 1 h, 10 min, 90 s. */
export function seconds (s) {
  if (s >= 3600 && s % 3600 === 0) return s / 3600 + ' h'
  if (s >= 60 && s % 60 === 0) return s / 60 + ' min'
  return s + ' s'
}

export function duration (ms) {
  if (!(ms >= 0)) return ''
  const s = ms / 1000
  if (s < 0.1) return '< 0.1 s'
  if (s < 10) return s.toFixed(1) + ' s'
  if (s < 60) return Math.round(s) + ' s'
  const m = Math.floor(s / 60)
  if (m < 60) return m + ' min ' + String(Math.round(s % 60)).padStart(2, '0') + ' s'
  return Math.floor(m / 60) + ' h ' + String(m % 60).padStart(2, '0') + ' min'
}

/** How long a build ran (or has run so far, or has waited in the queue). */
export function buildDuration (build, now = Date.now()) {
  if (build.started === undefined) return build.status === 'queued' ? 'waiting ' + duration(now - Date.parse(build.created)) : ''
  return duration((build.finished !== undefined ? Date.parse(build.finished) : now) - Date.parse(build.started))
}

export function time (iso) {
  if (iso === undefined) return ''
  const d = new Date(iso)
  const today = new Date().toDateString() === d.toDateString()
  return today ? d.toLocaleTimeString() : d.toLocaleString()
}

export function ago (iso, now = Date.now()) {
  const s = Math.max(0, (now - Date.parse(iso)) / 1000)
  if (s < 60) return Math.floor(s) + ' s ago'
  if (s < 3600) return Math.floor(s / 60) + ' min ago'
  if (s < 86400) return Math.floor(s / 3600) + ' h ago'
  return new Date(iso).toLocaleDateString()
}

export function badge (status) {
  return '<span class="badge ' + esc(status) + '">' + esc(status) + '</span>'
}

/** A build id as coordinator/build.ts makes them: nine base-36 characters of time, then eight hex. */
const BUILD_ID = /\b[0-9a-z]{9}[0-9a-f]{8}\b/g

/**
 * `text` as HTML, with every build id it names (a build waited for, an input's build that failed) linked to that
 * build's page; `self` (the page's own build) stays text.
 */
export function linkBuilds (text, self) {
  let html = ''
  let at = 0
  for (const match of String(text ?? '').matchAll(BUILD_ID)) {
    const id = match[0]
    // An id has digits in it; seventeen letters in a row are a word.
    if (id === self || !/[0-9]/.test(id)) continue
    html += esc(text.slice(at, match.index)) + '<a class="build-ref" href="/builds/' + esc(id) + '">' + esc(id) + '</a>'
    at = match.index + id.length
  }
  return html + esc(String(text ?? '').slice(at))
}

/**
 * Why a build is where it is, in one sentence, or undefined when there is nothing to explain: while queued, what it
 * waits for; once ended other than succeeded, its error, else what ended its last attempt.
 */
export function buildWhy (build) {
  if (build.status === 'queued') return build.waiting ?? 'queued: no worker has taken it yet'
  if (!FINISHED.has(build.status) || build.status === 'succeeded') return undefined
  return build.error ?? build.attempts.at(-1)?.reason
}

/** Permission bits as `ls -l` shows them (`-rwxr-xr-x`); a symbolic link is `lrwxrwxrwx`; no mode, no text. */
export function fileMode (mode, link) {
  if (link !== undefined) return 'lrwxrwxrwx'
  if (typeof mode !== 'number') return ''
  let text = '-'
  for (let shift = 6; shift >= 0; shift -= 3) {
    const bits = (mode >> shift) & 7
    text += (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (bits & 1 ? 'x' : '-')
  }
  return text
}

export function chips (record) {
  const entries = Object.entries(record ?? {})
  if (entries.length === 0) return '<span class="muted">any</span>'
  return entries.map(([k, v]) => '<span class="chip">' + esc(k) + '=' + esc(v) + '</span>').join('')
}

/** A git ref as people say it: `refs/heads/main` is `main`, `refs/tags/v1` is `v1`; anything else stays whole. */
export function refName (ref) {
  return typeof ref === 'string' ? ref.replace(/^refs\/(heads|tags)\//, '') : ''
}

/** A commit as git abbreviates it by default: its first 7 hex digits. */
export function shortCommit (sha) {
  return typeof sha === 'string' ? sha.slice(0, 7) : ''
}

/**
 * A repository URL fit to show: a user name or password written into it (`https://user:token@host/…`) is left
 * out, since a page is read by anyone who can reach the grid.
 */
export function displayUrl (url) {
  const text = String(url ?? '')
  try {
    const parsed = new URL(text)
    if (parsed.username === '' && parsed.password === '') return text
    parsed.username = ''
    parsed.password = ''
    return parsed.toString()
  } catch {
    // scp-like `git@host:owner/repo.git` and local paths carry no password.
    return text
  }
}

/** The last path segment of a repository URL or directory without `.git`: `https://h/o/zlib.git` is `zlib`. */
export function repoName (url) {
  const path = String(url ?? '').replace(/[?#].*$/, '').replace(/[/\\]+$/, '')
  return path.split(/[/\\:]/).pop().replace(/\.git$/, '')
}

/** What to call a pipeline: its repository, its branch or tag, and its commit (`zlib · main @ 1a2b3c4`). */
export function pipelineTitle (p) {
  const source = p.source ?? {}
  const name = [repoName(source.url), refName(source.ref)].filter(s => s !== '').join(' · ')
  const commit = shortCommit(source.commit)
  return (name !== '' ? name : 'pipeline ' + p.id) + (commit !== '' ? ' @ ' + commit : '')
}

/** How long a pipeline ran (or has run so far, or has waited for its first build to start). */
export function pipelineDuration (p, now = Date.now()) {
  const end = p.finished !== undefined ? Date.parse(p.finished) : now
  if (p.started !== undefined) return duration(end - Date.parse(p.started))
  if (p.finished !== undefined) return duration(end - Date.parse(p.created))
  return 'waiting ' + duration(now - Date.parse(p.created))
}

/** Statuses in the order a count of a pipeline's builds names them: how it went first, what is left after. */
const COUNT_ORDER = ['succeeded', 'failed', 'timeout', 'lost', 'cancelled', 'skipped', 'running', 'queued']

/** How many of a pipeline's builds are in each status: `3 succeeded · 1 running · 2 queued`. */
export function jobCounts (p) {
  const counts = new Map()
  for (const job of p.jobs ?? []) counts.set(job.status, (counts.get(job.status) ?? 0) + 1)
  const order = [...COUNT_ORDER, ...[...counts.keys()].filter(s => !COUNT_ORDER.includes(s))]
  return order.filter(s => counts.has(s)).map(s => counts.get(s) + ' ' + s).join(' · ')
}

/**
 * One row of a table of pipelines (the home page, /pipelines): status, what it built (linked), trigger, its builds
 * by status, duration, created; its error, when it has one, under the title.
 */
export function pipelineRow (p, now = Date.now()) {
  const source = p.source ?? {}
  const error = p.error !== undefined ? '<div class="why-line small" title="' + esc(p.error) + '">' + esc(p.error) + '</div>' : ''
  const counts = jobCounts(p)
  return '<tr class="link" data-id="' + esc(p.id) + '" data-status="' + esc(p.status) + '"><td>' + badge(p.status) + '</td>' +
    '<td><a href="/pipelines/' + encodeURIComponent(p.id) + '">' + esc(pipelineTitle(p)) + '</a>' + error + '</td>' +
    '<td class="wide">' + esc(source.trigger) + '</td>' +
    '<td class="wide small">' + (counts !== '' ? esc(counts) : '<span class="muted">none yet</span>') + '</td>' +
    '<td>' + esc(pipelineDuration(p, now)) + '</td>' +
    '<td class="wide" title="' + esc(time(p.created)) + '">' + esc(ago(p.created, now)) + '</td></tr>'
}

/** How many cells a pipelineRow has: the header row is in web/ui/pages.ts (PIPELINE_HEAD). */
export const PIPELINE_COLUMNS = 6

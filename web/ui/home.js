// Home page: what the grid can build, its newest pipelines and its newest builds, kept live over /api/events.
import { esc, badge, chips, buildLabel, attemptsNote, bytes, buildDuration, buildWhy, shortPeer, ago, time, events, read, pipelineRow, FINISHED, PIPELINE_FINISHED, PIPELINE_COLUMNS } from './common.js'

const SHOWN = 50
/** A few pipelines: the home page is about the grid as a whole; /pipelines lists more. */
const PIPELINES_SHOWN = 5
const builds = new Map()
const pipelines = new Map()
/** Why the pipelines could not be read, until they are; before the first answer the card says it is loading. */
let pipelinesError
let pipelinesRead = false

function renderCapacity (c) {
  const stores = c.stores === undefined ? '' : ' · <b>' + c.stores + '</b> store' + (c.stores === 1 ? '' : 's')
  document.getElementById('capacity-summary').innerHTML =
    '<b>' + c.nodes + '</b> worker' + (c.nodes === 1 ? '' : 's') + ' · <b>' + c.busy + '</b> of <b>' + c.slots +
    '</b> slots busy · <b>' + c.queued + '</b> queued' + stores
  const rows = c.groups.map(g =>
    '<tr><td>' + chips(g.capabilities) + '</td><td>' + g.nodes + (g.trusted > 0 ? ' <span class="muted">(' + g.trusted + ' trusted)</span>' : '') + '</td><td class="nowrap"><span class="meter"><i style="width:' +
    (g.slots > 0 ? Math.round(100 * g.busy / g.slots) : 0) + '%"></i></span>' + g.busy + ' / ' + g.slots + '</td></tr>')
  document.getElementById('groups').innerHTML = rows.length > 0
    ? rows.join('')
    : '<tr><td colspan="3" class="muted">No worker is connected: start one with <code>grid worker --join CODE</code>.</td></tr>'
}

/**
 * How many copies of each piece of content the grid keeps now: `--replicas`, or every store when there are fewer
 * (the coordinator's figure, min(replicas, stores)), and what it will be once enough stores join.
 */
function copiesText (replicas, stores) {
  const now = Math.min(replicas, stores)
  return now + (now === 1 ? ' copy' : ' copies') + ' of everything stored' +
    (now < replicas ? ' (' + replicas + ' once there are ' + replicas + ' stores)' : '')
}

/** The stores and the bytes each holds, under the capacity line (from /api/capacity's `storage`). */
function renderStorage (s) {
  let el = document.getElementById('storage')
  if (el === null) {
    el = document.createElement('div')
    el.id = 'storage'
    el.className = 'muted small'
    document.getElementById('capacity-summary').after(el)
  }
  if (s === undefined || s.stores.length === 0) { el.innerHTML = ''; return }
  const stores = s.stores.map(x => '<code title="' + esc(x.peer) + '">' + esc(shortPeer(x.peer)) + '</code> ' + bytes(x.bytes) +
    (x.maxBytes !== undefined ? ' of ' + bytes(x.maxBytes) : '')).join(' · ')
  el.innerHTML = 'stores: ' + stores + ' · <span id="copies" title="--replicas ' + esc(s.replicas) +
    ': each artifact, log and upload is kept on that many stores, or on every store while there are fewer">' + esc(copiesText(s.replicas, s.stores.length)) + '</span>' +
    (s.underReplicated > 0 ? ' · <b>' + s.underReplicated + '</b> under-replicated' : '') + (s.repairing > 0 ? ' · repairing ' + s.repairing : '')
}

function renderBuilds () {
  const now = Date.now()
  const rows = [...builds.values()].sort((a, b) => a.id < b.id ? 1 : -1).slice(0, SHOWN)
  const body = document.getElementById('builds')
  if (rows.length === 0) {
    body.innerHTML = '<tr><td colspan="5" class="muted">No builds yet. <a href="/submit">Submit one</a>.</td></tr>'
    return
  }
  body.innerHTML = rows.map(b => {
    const worker = b.attempts.at(-1)?.worker
    // Why it waits, or why it ended other than succeeded: one line, cut short, the whole sentence on hover.
    const reason = buildWhy(b)
    const why = reason !== undefined ? '<div class="why-line small" title="' + esc(reason) + '">' + esc(reason) + '</div>' : ''
    // More than one attempt (a lost worker's build queued again): said under the status, each attempt on hover.
    const note = attemptsNote(b)
    const tries = note !== undefined ? '<div class="tries small" title="' + esc(note.title) + '">' + esc(note.text) + '</div>' : ''
    return '<tr class="link" data-id="' + esc(b.id) + '" data-status="' + esc(b.status) + '"><td>' + badge(b.status) + tries + '</td>' +
      '<td><a href="/builds/' + esc(b.id) + '">' + esc(buildLabel(b.job)) + '</a>' + why + '</td>' +
      '<td>' + esc(buildDuration(b, now)) + '</td>' +
      '<td class="wide"><code title="' + esc(worker) + '">' + esc(shortPeer(worker)) + '</code></td>' +
      '<td class="wide" title="' + esc(time(b.created)) + '">' + esc(ago(b.created, now)) + '</td></tr>'
  }).join('')
}

function renderPipelines () {
  const now = Date.now()
  const rows = [...pipelines.values()].sort((a, b) => a.id < b.id ? 1 : -1).slice(0, PIPELINES_SHOWN)
  const body = document.getElementById('pipelines')
  if (rows.length === 0 && !pipelinesRead) return
  if (rows.length === 0 && pipelinesError !== undefined) {
    body.innerHTML = '<tr><td colspan="' + PIPELINE_COLUMNS + '" class="error">The pipelines could not be read: ' + esc(pipelinesError) + '</td></tr>'
    return
  }
  body.innerHTML = rows.length > 0
    ? rows.map(p => pipelineRow(p, now)).join('')
    : '<tr><td colspan="' + PIPELINE_COLUMNS + '" class="muted">No pipelines yet: <code>grid run --join CODE</code> in a directory with a <code>.grid.yml</code> starts one.</td></tr>'
}

document.getElementById('builds').addEventListener('click', e => {
  const row = e.target.closest('tr[data-id]')
  if (row !== null && e.target.closest('a') === null) location.href = '/builds/' + row.dataset.id
})
document.getElementById('pipelines').addEventListener('click', e => {
  const row = e.target.closest('tr[data-id]')
  if (row !== null && e.target.closest('a') === null) location.href = '/pipelines/' + encodeURIComponent(row.dataset.id)
})

let pending = false
const schedule = () => {
  if (pending) return
  pending = true
  requestAnimationFrame(() => { pending = false; renderBuilds(); renderPipelines() })
}

const live = document.getElementById('live')
events({
  build: b => { builds.set(b.id, b); schedule() },
  pipeline: p => { pipelines.set(p.id, p); schedule() },
  capacity: c => renderCapacity({ ...c, stores: lastStores })
}, (on, again) => {
  live.textContent = on ? 'live' : 'reconnecting…'
  live.classList.toggle('on', on)
  if (on && again) load(true).catch(() => {})
})

// Capacity events carry no store count: it comes from /api/capacity.
let lastStores
/** Events that arrived while the list loaded are newer than it and win, except after a reconnect, when it is fresh. */
async function load (replace) {
  read('/api/capacity').then(c => { lastStores = c.stores; renderCapacity(c); renderStorage(c.storage) }).catch(() => {})
  const readingPipelines = read('/api/pipelines?limit=' + PIPELINES_SHOWN).then(list => {
    pipelinesError = undefined
    for (const p of list) if (replace || !pipelines.has(p.id)) pipelines.set(p.id, p)
  }, err => { pipelinesError = err.message }).then(() => { pipelinesRead = true; renderPipelines() })
  const list = await read('/api/builds?limit=' + SHOWN)
  for (const b of list) if (replace || !builds.has(b.id)) builds.set(b.id, b)
  renderBuilds()
  await readingPipelines
}
await load(false)
// Bytes held change without build events: look again now and then.
setInterval(() => { read('/api/capacity').then(c => { lastStores = c.stores; renderStorage(c.storage) }).catch(() => {}) }, 5_000)
// Running and queued durations tick.
setInterval(() => {
  if ([...builds.values()].some(b => !FINISHED.has(b.status)) || [...pipelines.values()].some(p => !PIPELINE_FINISHED.has(p.status))) schedule()
}, 1000)

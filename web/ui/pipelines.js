// Pipelines page: the newest pipelines, newest first, kept live over /api/events.
import { pipelineRow, events, read, PIPELINE_FINISHED, PIPELINE_COLUMNS } from './common.js'

const SHOWN = 50
const pipelines = new Map()
const body = document.getElementById('pipelines')

function render () {
  const now = Date.now()
  // Ids sort by creation time (grid/ids.ts).
  const rows = [...pipelines.values()].sort((a, b) => a.id < b.id ? 1 : -1).slice(0, SHOWN)
  body.innerHTML = rows.length > 0
    ? rows.map(p => pipelineRow(p, now)).join('')
    : '<tr><td colspan="' + PIPELINE_COLUMNS + '" class="muted">No pipelines yet. Run <code>grid run --join CODE</code> in a directory with a ' +
      '<code>.grid.yml</code>, or register a repository with <code>grid repo add URL</code>.</td></tr>'
}

body.addEventListener('click', e => {
  const row = e.target.closest('tr[data-id]')
  if (row !== null && e.target.closest('a') === null) location.href = '/pipelines/' + encodeURIComponent(row.dataset.id)
})

let pending = false
const schedule = () => {
  if (pending) return
  pending = true
  requestAnimationFrame(() => { pending = false; render() })
}

const live = document.getElementById('live')
events({ pipeline: p => { pipelines.set(p.id, p); schedule() } }, (on, again) => {
  live.textContent = on ? 'live' : 'reconnecting…'
  live.classList.toggle('on', on)
  if (on && again) load(true).catch(() => {})
})

/** Events that arrived while the list loaded are newer than it and win, except after a reconnect, when it is fresh. */
async function load (replace) {
  const list = await read('/api/pipelines?limit=' + SHOWN)
  for (const p of list) if (replace || !pipelines.has(p.id)) pipelines.set(p.id, p)
  render()
}
try {
  await load(false)
} catch (err) {
  body.innerHTML = '<tr><td colspan="' + PIPELINE_COLUMNS + '" class="error"></td></tr>'
  body.querySelector('td').textContent = 'The pipelines could not be read: ' + err.message
}
// Running and waiting durations tick.
setInterval(() => { if ([...pipelines.values()].some(p => !PIPELINE_FINISHED.has(p.status))) schedule() }, 1000)

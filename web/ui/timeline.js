// Timeline: Buildbot's waterfall for nameless workers. One row per worker peer ID, one bar per attempt,
// coloured by its outcome, over the time the newest builds span. Drawn as SVG in the browser.
import { esc, buildLabel, duration, shortPeer, events, read, time } from './common.js'

const LIMIT = 200
const ROW = 26
const LABEL = 120
const AXIS = 22
const OUTCOMES = ['succeeded', 'failed', 'timeout', 'lost', 'cancelled', 'running']
const builds = new Map()
const box = document.getElementById('timeline')
const colour = name => getComputedStyle(document.documentElement).getPropertyValue('--' + name).trim() || '#888'

document.getElementById('legend').innerHTML = OUTCOMES.map(o =>
  '<span><i style="background:' + colour(o) + '"></i>' + o + '</span>').join('') + '<span class="muted" id="queued-note"></span>'

function niceStep (spanMs, maxTicks) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400].map(s => s * 1000)
  return steps.find(s => spanMs / s <= maxTicks) ?? 86400000 * Math.ceil(spanMs / 86400000 / maxTicks)
}

function draw () {
  const now = Date.now()
  const bars = []
  for (const b of builds.values()) {
    b.attempts.forEach((a, i) => {
      bars.push({ build: b, attempt: i + 1, worker: a.worker, start: Date.parse(a.started), end: a.finished !== undefined ? Date.parse(a.finished) : now, outcome: a.outcome ?? 'running' })
    })
  }
  const queued = [...builds.values()].filter(b => b.status === 'queued').length
  document.getElementById('queued-note').textContent = queued > 0 ? queued + ' queued (not on a worker yet)' : ''
  if (bars.length === 0) {
    box.innerHTML = '<p class="muted">No build has run on a worker yet.</p>'
    return
  }
  const workers = [...new Set(bars.sort((x, y) => x.start - y.start).map(b => b.worker))]
  const t0 = Math.min(...bars.map(b => b.start))
  const t1 = Math.max(now, ...bars.map(b => b.end))
  const width = Math.max(320, box.clientWidth)
  const label = width < 500 ? 80 : LABEL
  const plot = width - label - 10
  const span = Math.max(1000, t1 - t0)
  const x = t => label + (t - t0) / span * plot
  const height = AXIS + workers.length * ROW + 4
  let svg = '<svg xmlns="http://www.w3.org/2000/svg" width="' + width + '" height="' + height + '" viewBox="0 0 ' + width + ' ' + height + '" role="img" aria-label="builds over time by worker">'
  const step = niceStep(span, Math.max(2, Math.floor(plot / 90)))
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    const text = step < 60000 ? new Date(t).toLocaleTimeString() : new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    svg += '<line class="grid" x1="' + x(t) + '" x2="' + x(t) + '" y1="' + (AXIS - 4) + '" y2="' + height + '"/>' +
      '<text class="tick" x="' + x(t) + '" y="12" text-anchor="' + (x(t) > width - 50 ? 'end' : 'middle') + '">' + esc(text) + '</text>'
  }
  workers.forEach((w, i) => {
    const y = AXIS + i * ROW
    svg += '<g class="row-label"><title>worker ' + esc(w) + '</title><text x="4" y="' + (y + ROW / 2 + 4) + '">' + esc(shortPeer(w)) + '</text></g>' +
      '<line class="grid" x1="' + label + '" x2="' + width + '" y1="' + (y + ROW) + '" y2="' + (y + ROW) + '"/>'
  })
  for (const b of bars) {
    const y = AXIS + workers.indexOf(b.worker) * ROW + 4
    const left = x(b.start)
    const w = Math.max(3, x(b.end) - left)
    // A build that needed more than one attempt says which one this bar is.
    const tries = b.build.attempts.length > 1 ? 'attempt ' + b.attempt + ' of ' + b.build.attempts.length + ', ' : ''
    const tip = buildLabel(b.build.job) + ' — ' + tries + b.outcome + ', ' + duration(b.end - b.start) + ', started ' + time(new Date(b.start).toISOString())
    svg += '<a href="/builds/' + esc(b.build.id) + '"><rect x="' + left.toFixed(1) + '" y="' + y + '" width="' + w.toFixed(1) + '" height="' + (ROW - 8) +
      '" rx="2" stroke="#fff" fill="' + colour(b.outcome) + '" data-outcome="' + esc(b.outcome) + '" data-build="' + esc(b.build.id) + '" data-attempt="' + b.attempt + '"><title>' + esc(tip) + '</title></rect></a>'
  }
  box.innerHTML = svg + '</svg>'
}

let pending = false
const schedule = () => {
  if (pending) return
  pending = true
  requestAnimationFrame(() => { pending = false; draw() })
}
async function load (replace) {
  for (const b of await read('/api/builds?limit=' + LIMIT)) if (replace || !builds.has(b.id)) builds.set(b.id, b)
  draw()
}
events({ build: b => { builds.set(b.id, b); schedule() } }, (on, again) => { if (on && again) load(true).catch(() => {}) })
await load(false)
addEventListener('resize', schedule)
// Running bars grow with the clock.
setInterval(() => { if ([...builds.values()].some(b => b.status === 'running')) schedule() }, 1000)

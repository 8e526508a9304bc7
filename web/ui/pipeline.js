// Pipeline page: where it came from and how it stands, and its builds as a graph (columns by depth of `needs`,
// a matrix job's builds grouped, lines from each job to the jobs that need it), kept live over /api/events.
import { esc, badge, time, pipelineTitle, pipelineDuration, jobCounts, displayUrl, refName, events, read, write, onToken, FINISHED, PIPELINE_FINISHED } from './common.js'
import { pipelineColumns, pipelineEdges, matrixLabel, edgePath, buildsToAskReuse, reusedLabel, cacheHitLabel } from './pipeline-graph.js'

const id = decodeURIComponent(location.pathname.split('/').pop())
let pipeline
/** The checkout build (a pipeline from a repository), read once and then kept current by build events. */
let checkout
let hasToken = false
/** The graph's shape (its columns and the names in them) as last drawn: a change of status only repaints boxes. */
let drawnShape
/**
 * Of the pipeline's succeeded builds: the build whose outputs each took (job `reuse: true`), or null for one that
 * ran. The pipeline record does not say, so each is read once it succeeded, or learnt from its `build` event.
 */
const reusedFrom = new Map()
const reuseAsked = new Set()
/** Of the pipeline's finished builds read or heard of: those that restored a cache, with their mark's words (cacheHitLabel). */
const cacheHits = new Map()

const head = document.getElementById('pipeline-head')
const graph = document.getElementById('graph')
const graphCard = document.getElementById('graph-card')

function renderHead () {
  const p = pipeline
  const source = p.source ?? {}
  const url = displayUrl(source.url)
  // Only a web address is a link: a local directory (grid run) or an scp-like address is text.
  const where = /^https?:\/\//i.test(url)
    ? '<a href="' + esc(url) + '" rel="noopener noreferrer">' + esc(url) + '</a>'
    : '<code>' + esc(url) + '</code>'
  const error = p.error !== undefined
    ? '<p id="why" class="why failed" role="status"><b>' + (p.status === 'failed' ? 'Failed' : 'Error') + ':</b> ' + esc(p.error) + '</p>'
    : ''
  const counts = jobCounts(p)
  head.innerHTML = '<div class="head">' + badge(p.status) + '<h1>' + esc(pipelineTitle(p)) + '</h1><span class="grow"></span>' +
    (hasToken && !PIPELINE_FINISHED.has(p.status) ? '<button type="button" class="danger" id="cancel">Cancel</button>' : '') + '</div>' + error +
    '<div class="facts" id="source">' +
    (url !== '' ? '<span>repository <b data-fact="url">' + where + '</b></span>' : '') +
    (source.ref !== undefined ? '<span>ref <b data-fact="ref" title="' + esc(source.ref) + '">' + esc(refName(source.ref)) + '</b></span>' : '') +
    (source.commit !== undefined ? '<span>commit <b class="mono" data-fact="commit">' + esc(source.commit) + '</b></span>' : '') +
    '<span>trigger <b data-fact="trigger">' + esc(source.trigger) + '</b></span></div>' +
    '<div class="facts"><span>pipeline <b class="mono">' + esc(p.id) + '</b></span>' +
    '<span>created <b>' + esc(time(p.created)) + '</b></span>' +
    (p.started !== undefined ? '<span>started <b>' + esc(time(p.started)) + '</b></span>' : '') +
    (p.finished !== undefined ? '<span>finished <b>' + esc(time(p.finished)) + '</b></span>' : '') +
    '<span>duration <b id="duration">' + esc(pipelineDuration(p)) + '</b></span>' +
    (counts !== '' ? '<span>builds <b id="counts">' + esc(counts) + '</b></span>' : '') + '</div>' +
    '<p id="action-error" class="error" role="alert" hidden></p>' +
    (!hasToken && !PIPELINE_FINISHED.has(p.status) ? '<p class="muted small">Enter the API token in the header to cancel.</p>' : '')
  document.getElementById('cancel')?.addEventListener('click', cancel)
}

/**
 * One build's box: a link to its page once the build exists, its status as a word beside the colour. A reused
 * build says so in its box, and the build it took its outputs from is linked under it (a link cannot hold a link).
 */
function node (entry, label, kind) {
  const origin = entry.build !== undefined ? reusedFrom.get(entry.build) ?? undefined : undefined
  const hit = entry.build !== undefined ? cacheHits.get(entry.build) : undefined
  const inner = '<span class="state">' + esc(entry.status) + (origin !== undefined ? ' · reused' : '') + '</span>' +
    (hit !== undefined ? '<span class="cache-hit" title="' + esc(hit) + '">cache hit</span>' : '') + '<span class="node-name">' + esc(label) + '</span>'
  const attrs = ' class="node ' + esc(entry.status) + '" data-kind="' + kind + '" data-name="' + esc(entry.name) + '" data-status="' + esc(entry.status) + '"' +
    ' title="' + esc(entry.name + ' — ' + entry.status + (origin !== undefined ? ' (' + reusedLabel(origin) + ')' : '') + (hit !== undefined ? ' (' + hit + ')' : '')) + '"'
  const box = entry.build !== undefined
    ? '<a' + attrs + ' data-build="' + esc(entry.build) + '"' + (origin !== undefined ? ' data-reused="' + esc(origin) + '"' : '') +
      (hit !== undefined ? ' data-cache-hit="true"' : '') + ' href="/builds/' + encodeURIComponent(entry.build) + '">' + inner + '</a>'
    : '<div' + attrs + '>' + inner + '</div>'
  return origin !== undefined
    ? box + '<a class="reused-from muted small" data-reused-from="' + esc(origin) + '" href="/builds/' + encodeURIComponent(origin) + '">' + esc(reusedLabel(origin)) + '</a>'
    : box
}

/** Read, once each, the succeeded builds not yet known to have run or been reused; draw again as answers come. */
function askReuse () {
  for (const build of buildsToAskReuse(pipeline, reusedFrom)) {
    if (reuseAsked.has(build)) continue
    reuseAsked.add(build)
    read('/api/builds/' + encodeURIComponent(build)).then(b => {
      if (!reusedFrom.has(b.id)) learnReuse(b)
    }).catch(() => { reuseAsked.delete(build) })
  }
}

/**
 * A finished build of this pipeline: remember whether it restored a cache, and (once it succeeded) whether it was
 * reused, drawing a mark for either.
 */
function learnReuse (b) {
  const hit = FINISHED.has(b.status) ? cacheHitLabel(b) : undefined
  if (hit !== undefined && cacheHits.get(b.id) !== hit) {
    cacheHits.set(b.id, hit)
    render()
  }
  if (b.status !== 'succeeded' || reusedFrom.has(b.id)) return
  reusedFrom.set(b.id, b.reused ?? null)
  if (b.reused !== undefined) render()
}

function group (g) {
  if (g.checkout) return '<div class="group checkout" data-group="' + g.index + '" data-job="checkout">' + node(g.entries[0], 'checkout', 'checkout') + '</div>'
  // A job of one build is its box; a matrix job is a box of boxes under the job's name.
  const matrix = g.entries.length > 1 || g.entries[0].name !== g.job
  return '<div class="group' + (matrix ? ' matrix' : '') + '" data-group="' + g.index + '" data-job="' + esc(g.job) + '">' +
    (matrix ? '<div class="group-name">' + esc(g.job) + ' <span class="muted">×' + g.entries.length + '</span></div>' : '') +
    g.entries.map(e => node(e, matrix ? matrixLabel(e) : e.name, 'job')).join('') + '</div>'
}

let columns = []
let edges = []

function renderGraph () {
  // Until its build is read, the checkout's status is not known here.
  columns = pipelineColumns(pipeline, checkout?.status ?? 'unknown')
  edges = pipelineEdges(columns)
  graphCard.hidden = false
  if (columns.length === 0) {
    drawnShape = undefined
    graph.innerHTML = '<p class="muted" id="no-builds">' + (pipeline.error !== undefined ? 'No builds: the pipeline ended before any was made.' : 'No builds yet.') + '</p>'
    return
  }
  // A reuse mark adds a link under a box, a cache hit a mark in it: that is a new shape, not a repaint.
  const shape = JSON.stringify(columns.map(c => c.map(g => [g.job, g.entries.map(e => e.name + '\n' + (e.build ?? '') + '\n' + (reusedFrom.get(e.build) ?? '') + '\n' + (cacheHits.get(e.build) ?? ''))])))
  if (shape === drawnShape) {
    // Only statuses changed: repaint the boxes in place, so focus and the lines stay where they are.
    for (const column of columns) {
      for (const g of column) {
        const boxes = graph.querySelectorAll('[data-group="' + g.index + '"] .node')
        g.entries.forEach((entry, i) => {
          const box = boxes[i]
          if (box === undefined || box.dataset.status === entry.status) return
          box.className = 'node ' + entry.status
          box.dataset.status = entry.status
          box.title = entry.name + ' — ' + entry.status
          box.querySelector('.state').textContent = entry.status
        })
      }
    }
    return
  }
  drawnShape = shape
  graph.innerHTML = '<svg class="edges" aria-hidden="true"><defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto">' +
    '<path d="M0 0 L8 4 L0 8 z"/></marker></defs></svg>' +
    '<div class="columns">' + columns.map((column, i) => '<div class="column" data-column="' + i + '">' + column.map(group).join('') + '</div>').join('') + '</div>'
  drawEdges()
}

/** The lines between groups, measured from where the boxes ended up: drawn again whenever the graph's size changes. */
function drawEdges () {
  const svg = graph.querySelector('svg.edges')
  if (svg === null) return
  const origin = graph.getBoundingClientRect()
  const box = index => {
    const r = graph.querySelector('[data-group="' + index + '"]').getBoundingClientRect()
    return { x: r.left - origin.left, y: r.top - origin.top, width: r.width, height: r.height }
  }
  svg.setAttribute('width', String(graph.scrollWidth))
  svg.setAttribute('height', String(graph.scrollHeight))
  const groups = new Map(columns.flat().map(g => [g.index, g]))
  for (const path of svg.querySelectorAll('path.edge')) path.remove()
  svg.insertAdjacentHTML('beforeend', edges.map(e =>
    '<path class="edge" marker-end="url(#arrow)" data-from="' + esc(groups.get(e.from).job) + '" data-to="' + esc(groups.get(e.to).job) + '" d="' + edgePath(box(e.from), box(e.to)) + '"/>').join(''))
}
new ResizeObserver(() => drawEdges()).observe(graph)

function render () {
  if (pipeline === undefined) return
  document.title = pipelineTitle(pipeline) + ' (' + pipeline.status + ') · nameless-grid'
  renderHead()
  renderGraph()
  askReuse()
}

function showError (err) {
  const el = document.getElementById('action-error')
  el.textContent = err.message
  el.hidden = false
}

async function cancel () {
  try { pipeline = await write('/api/pipelines/' + encodeURIComponent(id) + '/cancel'); render() } catch (err) { showError(err) }
}

/** The checkout build's status is not in the pipeline record: its build is read once it is named. */
let checkoutAsked
function readCheckout () {
  if (pipeline?.checkout === undefined || checkoutAsked === pipeline.checkout) return
  checkoutAsked = pipeline.checkout
  read('/api/builds/' + encodeURIComponent(pipeline.checkout)).then(b => {
    // An event that arrived meanwhile is newer.
    if (checkout?.id !== b.id) checkout = b
    render()
  }).catch(() => {})
}

const live = document.getElementById('live')
events({
  pipeline: p => {
    if (p.id !== id) return
    pipeline = p
    readCheckout()
    render()
  },
  build: b => {
    if (b.pipeline === id) learnReuse(b)
    if (b.id !== pipeline?.checkout) return
    checkout = b
    render()
  }
}, (on, again) => {
  live.textContent = on ? 'live' : 'reconnecting…'
  live.classList.toggle('on', on)
  // Changes made while the stream was down are not replayed: read the pipeline again.
  if (on && again) {
    read('/api/pipelines/' + encodeURIComponent(id)).then(p => { pipeline = p; checkoutAsked = undefined; readCheckout(); render() }).catch(() => {})
  }
})
try {
  const fetched = await read('/api/pipelines/' + encodeURIComponent(id))
  // An event that arrived meanwhile is newer.
  pipeline ??= fetched
} catch (err) {
  document.title = 'No such pipeline · nameless-grid'
  head.innerHTML = '<p class="error" id="not-found">' + esc(err.message) + '</p><a href="/pipelines">back to the pipelines</a>'
}
if (pipeline !== undefined) {
  readCheckout()
  onToken(on => { hasToken = on; render() })
  setInterval(() => {
    if (!PIPELINE_FINISHED.has(pipeline.status)) {
      const d = document.getElementById('duration')
      if (d !== null) d.textContent = pipelineDuration(pipeline)
    }
  }, 1000)
}

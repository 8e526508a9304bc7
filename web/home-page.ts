// The first form of the web UI: what the grid can build and its newest builds, kept live over SSE.
// Plain HTML and a few lines of script: no front-end build step until one earns its keep.
export function homePage (): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>nameless-grid</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2330}
 h1{font-size:1.2rem} table{border-collapse:collapse;width:100%;max-width:60rem}
 td,th{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #e3e6ec} code{font-size:12px}
 .succeeded{color:#1a7f37}.failed,.lost,.timeout{color:#cf222e}.running{color:#0969da}.queued,.cancelled{color:#6e7781}
</style></head>
<body>
<h1>nameless-grid</h1>
<p id="capacity">…</p>
<table><thead><tr><th>build</th><th>status</th><th>name</th><th>created</th><th>worker</th></tr></thead><tbody id="builds"></tbody></table>
<script type="module">
const builds = new Map()
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))
function render () {
  const rows = [...builds.values()].sort((a, b) => a.id < b.id ? 1 : -1).slice(0, 50)
  document.getElementById('builds').innerHTML = rows.map(b =>
    '<tr><td><a href="/api/builds/' + esc(b.id) + '/log"><code>' + esc(b.id) + '</code></a></td><td class="' + esc(b.status) + '">' + esc(b.status) +
    '</td><td>' + esc(b.job.name ?? b.job.steps.map(s => s.name).join(', ')) + '</td><td>' + esc(b.created) +
    '</td><td><code>' + esc(b.attempts.at(-1)?.worker.slice(-8)) + '</code></td></tr>').join('')
}
for (const b of await (await fetch('/api/builds?limit=50')).json()) builds.set(b.id, b)
render()
const events = new EventSource('/api/events')
events.addEventListener('build', e => { const b = JSON.parse(e.data); builds.set(b.id, b); render() })
events.addEventListener('capacity', e => {
  const c = JSON.parse(e.data)
  document.getElementById('capacity').textContent = c.nodes + ' worker(s), ' + c.busy + ' of ' + c.slots + ' slot(s) busy, ' + c.queued + ' queued'
})
</script>
</body></html>`
}

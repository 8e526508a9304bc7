// A pipeline's builds laid out as a graph: columns by depth of `needs`, a matrix job's builds grouped in their
// column, one edge per job a job needs. No DOM here: the page draws what this computes, and the unit tests run it
// as the browser does.

/**
 * The columns of a pipeline's graph, left to right. Column 0 holds the checkout build when the pipeline has one
 * (a pipeline from a repository: the build that fetched the commit); then one column per depth of `needs`, depth 0
 * being the jobs that need nothing. A column is a list of groups, one per job of the file in the order the
 * pipeline lists them; a group holds that job's builds (one, or one per matrix combination).
 *
 * A group is `{ index, job, checkout, entries }`: `index` numbers the groups from 0 across the columns, `job` is
 * the job's key in the file ('checkout' for the checkout), `checkout` is true only for the checkout group, and
 * `entries` are PipelineJob records (`{ name, job, needs, build?, status }`; the checkout's entry is
 * `{ name: 'checkout', build, status }`). A need naming no build of the pipeline is left out of the depth, and a
 * cycle (which the grid refuses) ends the walk instead of recursing without end.
 *
 * @param {{ jobs?: Array<{ name: string, job: string, needs?: string[], build?: string, status: string }>, checkout?: string }} pipeline
 * @param {string} [checkoutStatus] the checkout build's status, once known
 * @returns {Array<Array<{ index: number, job: string, checkout: boolean, entries: object[] }>>}
 */
export function pipelineColumns (pipeline, checkoutStatus = 'queued') {
  const jobs = pipeline.jobs ?? []
  const byName = new Map(jobs.map(j => [j.name, j]))
  const depths = new Map()
  const depthOf = (entry, path) => {
    const known = depths.get(entry.name)
    if (known !== undefined) return known
    if (path.has(entry.name)) return 0
    path.add(entry.name)
    let depth = 0
    for (const need of entry.needs ?? []) {
      const up = byName.get(need)
      if (up !== undefined) depth = Math.max(depth, depthOf(up, path) + 1)
    }
    path.delete(entry.name)
    depths.set(entry.name, depth)
    return depth
  }
  // A job's builds stay together: the group goes to the deepest column any of them needs.
  const groups = new Map()
  for (const entry of jobs) {
    let group = groups.get(entry.job)
    if (group === undefined) groups.set(entry.job, group = { job: entry.job, checkout: false, entries: [], depth: 0 })
    group.entries.push(entry)
    group.depth = Math.max(group.depth, depthOf(entry, new Set()))
  }
  const columns = []
  if (pipeline.checkout !== undefined) {
    columns.push([{ job: 'checkout', checkout: true, entries: [{ name: 'checkout', build: pipeline.checkout, status: checkoutStatus }] }])
  }
  const offset = columns.length
  for (const { depth, ...group } of groups.values()) {
    while (columns.length <= offset + depth) columns.push([])
    columns[offset + depth].push(group)
  }
  let index = 0
  for (const column of columns) for (const group of column) group.index = index++
  return columns
}

/**
 * The edges between groups, `{ from, to }` by group index: one per job a job needs (a matrix job needing another
 * needs all its builds, so one line between the two groups says it), and from the checkout to every job that needs
 * nothing, since each of those starts from the tree the checkout put.
 */
export function pipelineEdges (columns) {
  const groupOf = new Map()
  for (const column of columns) for (const group of column) for (const entry of group.entries) if (!group.checkout) groupOf.set(entry.name, group)
  const edges = []
  const seen = new Set()
  const checkout = columns[0]?.[0]?.checkout === true ? columns[0][0] : undefined
  for (const column of columns) {
    for (const group of column) {
      if (group.checkout) continue
      const needs = group.entries.flatMap(entry => entry.needs ?? []).map(name => groupOf.get(name)).filter(up => up !== undefined && up !== group)
      if (needs.length === 0 && checkout !== undefined) needs.push(checkout)
      for (const up of needs) {
        const key = up.index + '>' + group.index
        if (seen.has(key)) continue
        seen.add(key)
        edges.push({ from: up.index, to: group.index })
      }
    }
  }
  return edges
}

/** What a build is called inside its job's group: the matrix combination (`cflags=-O0`), else its whole name. */
export function matrixLabel (entry) {
  const prefix = entry.job + ' ('
  return entry.name.startsWith(prefix) && entry.name.endsWith(')') && entry.name.length > prefix.length + 1
    ? entry.name.slice(prefix.length, -1)
    : entry.name
}

/**
 * An SVG path from the middle of one box's right side to the middle of another's left side, as a curve that leaves
 * and arrives horizontally. Boxes are `{ x, y, width, height }` in the same coordinates.
 */
export function edgePath (from, to) {
  const x1 = from.x + from.width
  const y1 = from.y + from.height / 2
  const x2 = to.x
  const y2 = to.y + to.height / 2
  const bend = Math.max(16, (x2 - x1) / 2)
  const r = n => Math.round(n * 10) / 10
  return 'M' + r(x1) + ' ' + r(y1) + ' C' + r(x1 + bend) + ' ' + r(y1) + ' ' + r(x2 - bend) + ' ' + r(y2) + ' ' + r(x2) + ' ' + r(y2)
}

/**
 * Which of a pipeline's succeeded builds still need reading to learn whether they were reused (a pipeline record
 * does not say; the build does, in `reused`): ids not in `known` (build id → origin build id, or null when it ran).
 * A build is read once it succeeded, since only then can it be reused, and never twice.
 *
 * @param {{ jobs?: Array<{ build?: string, status: string }> }} pipeline
 * @param {Map<string, string | null>} known
 * @returns {string[]}
 */
export function buildsToAskReuse (pipeline, known) {
  return (pipeline.jobs ?? []).filter(j => j.build !== undefined && j.status === 'succeeded' && !known.has(j.build)).map(j => j.build)
}

/** The words of a reused build's mark in the graph: `reused from BUILD`, the build whose outputs it took. */
export function reusedLabel (origin) {
  return 'reused from ' + origin
}

/**
 * Whether a build restored any cache (its record's `caches` has a `restored` or `restored-by-prefix` outcome), as
 * the words of its mark's tooltip: `cache hit: KEY` (`KEY from ENTRY` when found by a prefix), more than one joined
 * by `; `; undefined when none was restored.
 *
 * @param {{ caches?: Array<{ key: string, outcome: string, from?: string }> }} build
 * @returns {string | undefined}
 */
export function cacheHitLabel (build) {
  const hits = (build.caches ?? []).filter(c => c.outcome === 'restored' || c.outcome === 'restored-by-prefix')
  if (hits.length === 0) return undefined
  return 'cache hit: ' + hits.map(c => c.outcome === 'restored-by-prefix' && c.from !== undefined ? c.key + ' from ' + c.from : c.key).join('; ')
}

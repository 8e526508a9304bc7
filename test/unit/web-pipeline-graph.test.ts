// The pipeline page's layout (web/ui/pipeline-graph.js) is plain JavaScript with no DOM: it runs here as it runs in
// the page. Columns by depth of needs, a matrix job's builds grouped, edges between groups, odd records survived.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'

// A path in a variable: the module is browser JavaScript, outside the type check.
const modulePath = join(import.meta.dirname, '../../web/ui/pipeline-graph.js')
const { pipelineColumns, pipelineEdges, matrixLabel, edgePath } = await import(modulePath)

interface Entry { name: string, job: string, needs?: string[], build?: string, status: string }
interface Group { index: number, job: string, checkout: boolean, entries: Entry[] }

const graph = suite('pipeline graph')

const entry = (name: string, job: string, needs: string[] = [], status = 'queued'): Entry => ({ name, job, needs, status })
/** Each column as the names of its builds, group by group. */
const names = (columns: Group[][]): string[][][] => columns.map(c => c.map(g => g.entries.map(e => e.name)))
/** Edges as `from>to` job names. */
const edgeNames = (columns: Group[][]): string[] => {
  const byIndex = new Map(columns.flat().map(g => [g.index, g.job]))
  return pipelineEdges(columns).map((e: { from: number, to: number }) => `${byIndex.get(e.from)}>${byIndex.get(e.to)}`)
}

const MATRIX = ['test (cc=gcc, opt=-O0)', 'test (cc=gcc, opt=-O2)', 'test (cc=clang, opt=-O0)', 'test (cc=clang, opt=-O2)']
const diamond = {
  jobs: [
    entry('build', 'build'),
    entry('lint', 'lint'),
    ...MATRIX.map(name => entry(name, 'test', ['build'])),
    entry('package', 'package', [...MATRIX, 'lint'])
  ]
}

graph('columns follow the depth of needs, a matrix job is one group, file order within a column', () => {
  const columns = pipelineColumns(diamond)
  assert.equal(names(columns), [[['build'], ['lint']], [MATRIX], [['package']]])
  assert.equal(columns.flat().map((g: Group) => [g.index, g.job, g.checkout]), [[0, 'build', false], [1, 'lint', false], [2, 'test', false], [3, 'package', false]])
  // package needs lint (depth 0) and test (depth 1): the deeper one decides.
  assert.equal(edgeNames(columns), ['build>test', 'test>package', 'lint>package'])
})

graph('the checkout is a column of its own, first, with a line to every job that needs nothing', () => {
  const columns = pipelineColumns({ ...diamond, checkout: '0abc1234567890abc' }, 'succeeded')
  assert.equal(names(columns), [[['checkout']], [['build'], ['lint']], [MATRIX], [['package']]])
  const first = columns[0][0]
  assert.ok(first.checkout)
  assert.equal(first.entries, [{ name: 'checkout', build: '0abc1234567890abc', status: 'succeeded' }])
  assert.equal(edgeNames(columns), ['checkout>build', 'checkout>lint', 'build>test', 'test>package', 'lint>package'])
  // Its status is whatever the page knows of it; the layout does not guess.
  assert.is(pipelineColumns({ jobs: [], checkout: 'x' }, 'unknown')[0][0].entries[0].status, 'unknown')
})

graph('a job named checkout is a job, not the checkout', () => {
  const columns = pipelineColumns({ checkout: 'b1', jobs: [entry('checkout', 'checkout'), entry('after', 'after', ['checkout'])] })
  assert.equal(names(columns), [[['checkout']], [['checkout']], [['after']]])
  assert.equal(columns.map((c: Group[]) => c[0].checkout), [true, false, false])
  assert.equal(edgeNames(columns), ['checkout>checkout', 'checkout>after'])
  assert.equal(pipelineEdges(columns), [{ from: 0, to: 1 }, { from: 1, to: 2 }])
})

graph('a long chain makes one column per link; a fan-in waits for its deepest need', () => {
  const columns = pipelineColumns({ jobs: [entry('d', 'd', ['c', 'a']), entry('c', 'c', ['b']), entry('b', 'b', ['a']), entry('a', 'a')] })
  assert.equal(names(columns), [[['a']], [['b']], [['c']], [['d']]])
  assert.equal(edgeNames(columns).sort(), ['a>b', 'a>d', 'b>c', 'c>d'])
})

graph('a matrix whose builds need different things stays together in the deepest column', () => {
  const columns = pipelineColumns({ jobs: [entry('a', 'a'), entry('t (x=1)', 't'), entry('t (x=2)', 't', ['a'])] })
  assert.equal(names(columns), [[['a']], [['t (x=1)', 't (x=2)']]])
})

graph('odd records: no jobs, a need naming no build, a cycle, no needs field at all', () => {
  assert.equal(pipelineColumns({ jobs: [] }), [])
  assert.equal(pipelineColumns({}), [])
  assert.equal(pipelineEdges([]), [])
  const missing = pipelineColumns({ jobs: [entry('a', 'a', ['gone'])] })
  assert.equal(names(missing), [[['a']]])
  assert.equal(pipelineEdges(missing), [])
  // The grid refuses cycles; the page must still draw something rather than recurse without end.
  const cycle = pipelineColumns({ jobs: [entry('a', 'a', ['b']), entry('b', 'b', ['a']), entry('c', 'c', ['c'])] })
  assert.equal(cycle.flat().map((g: Group) => g.job).sort(), ['a', 'b', 'c'])
  assert.ok(!edgeNames(cycle).includes('c>c'), 'no line from a job to itself')
  const bare = pipelineColumns({ jobs: [{ name: 'x', job: 'x', status: 'queued' }] })
  assert.equal(names(bare), [[['x']]])
})

graph('a matrix build is called by its combination inside its group, anything else by its name', () => {
  assert.is(matrixLabel({ name: 'test (cflags=-O0)', job: 'test' }), 'cflags=-O0')
  assert.is(matrixLabel({ name: 'test (os=linux, cc=gcc)', job: 'test' }), 'os=linux, cc=gcc')
  assert.is(matrixLabel({ name: 'build', job: 'build' }), 'build')
  assert.is(matrixLabel({ name: 'test ()', job: 'test' }), 'test ()')
  assert.is(matrixLabel({ name: 'testing (x)', job: 'test' }), 'testing (x)')
})

graph('an edge leaves the right side of one box and reaches the left side of the next', () => {
  const d = edgePath({ x: 0, y: 0, width: 100, height: 40 }, { x: 200, y: 100, width: 100, height: 20 })
  assert.is(d, 'M100 20 C150 20 150 110 200 110')
  // Boxes close together still get a curve that leaves horizontally.
  assert.is(edgePath({ x: 0, y: 0, width: 10, height: 10 }, { x: 12, y: 0, width: 10, height: 10 }), 'M10 5 C26 5 -4 5 12 5')
})

graph.run()

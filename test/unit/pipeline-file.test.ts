// The pipeline file alone: .grid.yml text (or an object) read, checked and planned into builds, no grid around it.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { PipelineFileError, parsePipelineFile, planPipeline } from '../../grid/pipeline.ts'
import type { PipelineFileIssue, PlannedBuild } from '../../grid/pipeline.ts'
import { MAX_AFTER_BUILDS, MAX_MATRIX_COMBINATIONS, MAX_PIPELINE_ALIASES, MAX_PIPELINE_BUILDS, MAX_PIPELINE_EXPANDED_BYTES, MAX_PIPELINE_FILE_BYTES } from '../../grid/constants.ts'

const SRC = `b${'a'.repeat(58)}`

/** The example of CONTRACT.md "Pipelines", as written there. */
const CONTRACT_EXAMPLE = `env: { CI: "true" }                  # for every job
jobs:
  build:
    requires: { os: linux }
    steps: [ { name: compile, run: "./configure && make" } ]
    artifacts: [ "libz.a", "include/**" ]
  test:
    needs: [ build ]                 # after build succeeded; build's artifacts are placed in the work dir first
    matrix: { cflags: [ "-O0", "-O2" ] }
    env: { CFLAGS: "\${{ matrix.cflags }}" }
    steps: [ { run: "make test" } ]
  package:
    needs: [ test ]
    branches: [ main ]               # left out of pipelines on other branches
    steps: [ { run: "tar czf pkg.tgz libz.a include" } ]
    artifacts: [ pkg.tgz ]
`

/** YAML from lines, so a test can say which line a problem is on by counting them. */
const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`

function plan (source: unknown, options: { src?: string, branch?: string } = {}): PlannedBuild[] {
  return planPipeline(parsePipelineFile(source), options)
}

/** Plan input that must be refused: its PipelineFileError, checked to be one line. */
function refused (source: unknown, options: { src?: string, branch?: string } = {}): PipelineFileError {
  try {
    plan(source, options)
  } catch (err) {
    assert.instance(err, PipelineFileError)
    const error = err as PipelineFileError
    assert.is(error.name, 'PipelineFileError')
    assert.is(error.status, 400)
    assert.not.match(error.message, /\n/, 'the message is one line')
    assert.ok(error.issues.length > 0)
    return error
  }
  assert.unreachable(`planned ${typeof source === 'string' ? source : JSON.stringify(source)}`)
  throw new Error('unreachable')
}

/** The first issue of a refused file: where, line and (loosely) what. */
function refusedAt (source: unknown, where: string, line: number | undefined, message?: RegExp, options: { src?: string, branch?: string } = {}): PipelineFileIssue {
  const issue = refused(source, options).issues[0]
  assert.is(issue.where, where)
  assert.is(issue.line, line)
  if (message !== undefined) assert.match(issue.message, message)
  return issue
}

const step = '    steps: [ { run: make } ]'

// ---------------------------------------------------------------- the contract's example

const example = suite('pipeline file: the contract example')

example('on main: build, the two test combinations, package, needs first', () => {
  const builds = plan(CONTRACT_EXAMPLE, { src: SRC, branch: 'refs/heads/main' })
  assert.equal(builds.map(b => b.name), ['build', 'test (cflags=-O0)', 'test (cflags=-O2)', 'package'])
  assert.equal(builds.map(b => b.job), ['build', 'test', 'test', 'package'])
  assert.equal(builds.map(b => b.needs), [
    [],
    [{ name: 'build', artifacts: true }],
    [{ name: 'build', artifacts: true }],
    [{ name: 'test (cflags=-O0)', artifacts: true }, { name: 'test (cflags=-O2)', artifacts: true }]
  ])
  const [build, o0, o2, pkg] = builds.map(b => b.spec)
  assert.is(build.name, 'build')
  assert.is(build.src, SRC)
  assert.equal(build.requires, { os: 'linux' })
  assert.equal(build.steps, [{ name: 'compile', run: './configure && make' }])
  assert.equal(build.artifacts, ['libz.a', 'include/**'])
  assert.equal(build.env, { CI: 'true' })
  assert.is(build.after, undefined, 'the coordinator fills after with build ids')
  assert.is(o0.name, 'test (cflags=-O0)')
  assert.equal(o0.env, { CI: 'true', CFLAGS: '-O0' })
  assert.equal(o2.env, { CI: 'true', CFLAGS: '-O2' })
  assert.equal(o0.steps, [{ name: 'step 1', run: 'make test' }])
  assert.is(o0.timeout, 3600, 'defaults are filled in as for any job')
  assert.equal(pkg.artifacts, ['pkg.tgz'])
  assert.is(pkg.src, SRC)
})

example('on dev: package is left out (its branches say main)', () => {
  assert.equal(plan(CONTRACT_EXAMPLE, { src: SRC, branch: 'dev' }).map(b => b.name), ['build', 'test (cflags=-O0)', 'test (cflags=-O2)'])
  assert.equal(plan(CONTRACT_EXAMPLE, { src: SRC, branch: 'refs/heads/dev' }).map(b => b.name), ['build', 'test (cflags=-O0)', 'test (cflags=-O2)'])
})

example('without a branch (grid run of a directory) nothing is left out; without src none is set', () => {
  const builds = plan(CONTRACT_EXAMPLE)
  assert.equal(builds.map(b => b.name), ['build', 'test (cflags=-O0)', 'test (cflags=-O2)', 'package'])
  assert.is(builds[0].spec.src, undefined)
})

example('the same file as an object plans the same builds', () => {
  const object = {
    env: { CI: 'true' },
    jobs: {
      build: { requires: { os: 'linux' }, steps: [{ name: 'compile', run: './configure && make' }], artifacts: ['libz.a', 'include/**'] },
      test: { needs: ['build'], matrix: { cflags: ['-O0', '-O2'] }, env: { CFLAGS: '${{ matrix.cflags }}' }, steps: [{ run: 'make test' }] },
      package: { needs: ['test'], branches: ['main'], steps: [{ run: 'tar czf pkg.tgz libz.a include' }], artifacts: ['pkg.tgz'] }
    }
  }
  assert.equal(plan(object, { src: SRC, branch: 'main' }), plan(CONTRACT_EXAMPLE, { src: SRC, branch: 'main' }))
})

// ---------------------------------------------------------------- branches

const branches = suite('pipeline file: branches')

const RELEASE = yaml(
  'jobs:',
  '  build:',
  step,
  '  publish:',
  '    needs: [ build ]',
  '    branches: [ main, "release/*" ]',
  step,
  '  announce:',
  '    needs: [ publish ]',
  step,
  '  docs:',
  '    branches: [ "**" ]',
  step
)

branches('globs match the branch name with refs/heads/ stripped, slashes and all', () => {
  assert.equal(plan(RELEASE, { branch: 'refs/heads/release/1.2' }).map(b => b.name), ['build', 'publish', 'announce', 'docs'])
  assert.equal(plan(RELEASE, { branch: 'main' }).map(b => b.name), ['build', 'publish', 'announce', 'docs'])
})

branches('a job needing a left-out job is left out too, transitively; the others stay', () => {
  assert.equal(plan(RELEASE, { branch: 'feature/x' }).map(b => b.name), ['build', 'docs'])
  assert.equal(plan(RELEASE, { branch: 'release/1.2/hotfix' }).map(b => b.name), ['build', 'docs'], '* does not cross a slash')
})

branches('a branch that leaves every job out plans nothing', () => {
  assert.equal(plan(yaml('jobs:', '  a:', '    branches: [ main ]', step), { branch: 'dev' }), [])
})

branches('a left-out job is still checked: a file is valid on every branch or on none', () => {
  refusedAt(yaml('jobs:', '  a:', '    branches: [ main ]', '    steps: [ { run: "" } ]'), 'jobs.a.steps.0.run', 4, /command/, { branch: 'dev' })
})

// ---------------------------------------------------------------- anchors and merge keys

const anchors = suite('pipeline file: anchors, aliases and merge keys')

anchors('a job merges another with <<, its own keys winning; aliases repeat values', () => {
  const builds = plan(yaml(
    'jobs:',
    '  build: &defaults',
    '    requires: { os: linux }',
    '    timeout: 600',
    '    env: &env { CC: gcc }',
    '    steps: [ { run: make } ]',
    '  test:',
    '    <<: *defaults',
    '    needs: [ build ]',
    '    steps: [ { run: make test } ]',
    '  lint:',
    '    <<: *defaults',
    '    timeout: 60',
    '    env: *env'
  ))
  assert.equal(builds.map(b => b.name), ['build', 'test', 'lint'])
  const [, test, lint] = builds.map(b => b.spec)
  assert.equal(test.requires, { os: 'linux' })
  assert.is(test.timeout, 600)
  assert.equal(test.steps, [{ name: 'step 1', run: 'make test' }])
  assert.is(lint.timeout, 60)
  assert.equal(lint.env, { CC: 'gcc' })
  assert.equal(lint.steps, [{ name: 'step 1', run: 'make' }])
})

anchors('x- keys at the top hold anchors alone, as Docker Compose\'s extension fields do; other unknown keys are refused', () => {
  const builds = plan(yaml(
    'x-defaults: &defaults',
    '  requires: { os: linux }',
    '  timeout: 60',
    'jobs:',
    '  build:',
    '    <<: *defaults',
    '    steps: [ { run: make } ]'
  ))
  assert.equal(builds.map(b => [b.name, b.spec.timeout, b.spec.requires]), [['build', 60, { os: 'linux' }]])
  refusedAt(yaml('defaults: 1', 'jobs:', '  a:', '    steps: [ { run: x } ]'), 'defaults', 1, /unknown key.*"x-" keys for anchors/)
})

anchors('a problem in a merged value is reported at the line it was written on', () => {
  refusedAt(yaml(
    'jobs:',
    '  build: &defaults',
    '    timeout: 600',
    '    steps: [ { run: make } ]',
    '  test:',
    '    <<: *defaults',
    '    retries: -1'
  ), 'jobs.test.retries', 7)
  refusedAt(yaml(
    'jobs:',
    '  base: &defaults',
    '    steps: [ { run: make } ]',
    '  test:',
    '    <<: *defaults',
    '    needs: [ base ]',
    '    timeout: "\${{ matrix.t }}"'
  ), 'jobs.test.timeout', 7, /no matrix key "t" \(this job has no matrix\)/)
})

anchors('a "billion laughs" file is refused in one sentence', () => {
  const issue = refused(yaml(
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
    'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
    'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
    'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
    'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]',
    'g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]',
    'jobs: { a: { steps: [ { run: make } ], env: { X: *g } } }'
  )).issues[0]
  assert.is(issue.where, 'yaml')
  assert.match(issue.message, /billion laughs/)
})

anchors('an alias of no anchor, or a merge of something not a map, is a YAML error with its line', () => {
  refusedAt(yaml('jobs:', '  a:', '    <<: *nowhere', step), 'yaml', 3, /\*nowhere names no anchor/)
  refusedAt(yaml('jobs:', '  a:', step, '    env: *nowhere'), 'yaml', 4, /\*nowhere names no anchor/)
  refusedAt(yaml('jobs:', '  a:', step, '    env: *later', '  b: &later', step), 'yaml', 4, /must come before/)
  refusedAt(yaml('jobs:', '  a: &a', step, '  b:', '    <<: 3', step), 'yaml', 5, /merges maps only/)
  refusedAt(yaml('x: &list [ 1 ]', 'jobs:', '  a:', '    <<: [ *list ]', step), 'yaml', 4, /merges maps only/)
})

// ---------------------------------------------------------------- matrix

const matrix = suite('pipeline file: matrix')

matrix('a 2×2 matrix: names with the axes in the order written, values substituted in every string', () => {
  const builds = plan(yaml(
    'jobs:',
    '  test:',
    '    matrix:',
    '      cc: [ gcc, clang ]',
    '      opt: [ 0, 2 ]',
    '    name: "${{ matrix.cc }}/O${{matrix.opt}}"',
    '    requires: { compiler: "${{ matrix.cc }}" }',
    '    env: { CC: "${{   matrix.cc   }}", KEY: "deps-${{ hashFiles(\'x\') }}" }',
    '    steps: [ { name: "build with ${{ matrix.cc }}", run: "make OPT=${{ matrix.opt }}" } ]',
    '    artifacts: [ "out-${{ matrix.cc }}/**" ]',
    '  report:',
    '    needs: [ test ]',
    step
  ))
  assert.equal(builds.map(b => b.name), ['test (cc=gcc, opt=0)', 'test (cc=gcc, opt=2)', 'test (cc=clang, opt=0)', 'test (cc=clang, opt=2)', 'report'])
  const clang2 = builds[3].spec
  assert.is(clang2.name, 'clang/O2', 'a name the job sets itself is kept (substituted)')
  assert.equal(clang2.requires, { compiler: 'clang' })
  assert.equal(clang2.env, { CC: 'clang', KEY: 'deps-${{ hashFiles(\'x\') }}' }, 'other expressions are left untouched')
  assert.equal(clang2.steps, [{ name: 'build with clang', run: 'make OPT=2' }])
  assert.equal(clang2.artifacts, ['out-clang/**'])
  assert.equal(builds[4].needs.map(n => n.name), builds.slice(0, 4).map(b => b.name), 'needing a matrix job means every combination')
})

matrix('include and exclude as GitHub Actions documents them', () => {
  // docs.github.com "Running variations of jobs in a workflow": the fruit/animal example, plus an exclude.
  const builds = plan(yaml(
    'jobs:',
    '  t:',
    '    matrix:',
    '      fruit: [ apple, pear ]',
    '      animal: [ cat, dog ]',
    '      include:',
    '        - color: green',
    '        - color: pink',
    '          animal: cat',
    '        - fruit: apple',
    '          shape: circle',
    '        - fruit: banana',
    '        - fruit: banana',
    '          animal: cat',
    step
  ))
  assert.equal(builds.map(b => b.name), [
    't (fruit=apple, animal=cat, color=pink, shape=circle)',
    't (fruit=apple, animal=dog, color=green, shape=circle)',
    't (fruit=pear, animal=cat, color=pink)',
    't (fruit=pear, animal=dog, color=green)',
    't (fruit=banana)',
    't (fruit=banana, animal=cat)'
  ])
  const excluded = plan(yaml(
    'jobs:',
    '  t:',
    '    matrix:',
    '      os: [ linux, mac ]',
    '      node: [ 20, 22 ]',
    '      exclude: [ { os: mac, node: 20 } ]',
    '      include: [ { os: linux, node: 22, experimental: yes } ]',
    '    steps: [ { run: "test ${{ matrix.experimental }}" } ]'
  ))
  assert.equal(excluded.map(b => b.name), ['t (os=linux, node=20)', 't (os=linux, node=22, experimental=yes)', 't (os=mac, node=22)'])
  assert.equal(excluded.map(b => b.spec.steps[0].run), ['test ', 'test yes', 'test '], 'a key only include sets is empty elsewhere')
})

matrix('a matrix of include entries alone: one build each', () => {
  const builds = plan({ jobs: { t: { matrix: { include: [{ target: 'wasm' }, { target: 'arm', abi: 'hf' }] }, steps: [{ run: 'make ${{ matrix.target }}' }] } } })
  assert.equal(builds.map(b => b.name), ['t (target=wasm)', 't (target=arm, abi=hf)'])
  assert.equal(builds.map(b => b.spec.steps[0].run), ['make wasm', 'make arm'])
})

matrix('a combination that makes an invalid job is named', () => {
  const error = refused(yaml(
    'jobs:',
    '  test:',
    '    matrix:',
    '      dir: [ ok, "../up" ]',
    step,
    '    artifacts: [ "${{ matrix.dir }}/out" ]'
  ))
  assert.equal(error.issues.map(i => [i.where, i.line, i.build]), [['jobs.test.artifacts.0', 6, 'test (dir=../up)']])
  assert.match(error.message, /^jobs\.test\.artifacts\.0: .*\(in test \(dir=\.\.\/up\), line 6\)$/)
})

matrix('a build name too long for a job name points at the matrix', () => {
  refusedAt({ jobs: { t: { matrix: { v: ['x'.repeat(300)] }, steps: [{ run: 'make' }] } } }, 'jobs.t.matrix', undefined, /too long/)
  assert.equal(plan({ jobs: { t: { name: 'short', matrix: { v: ['x'.repeat(300)] }, steps: [{ run: 'make' }] } } }).map(b => b.spec.name), ['short'])
})

matrix('bad matrices are refused at the key, with the line', () => {
  // The example of the brief, line for line.
  refusedAt(yaml(
    'jobs:',
    '  build:',
    step,
    '  test:',
    '    needs: [ build ]',
    '    matrix:',
    '      cflags: "-O0"',
    step
  ), 'jobs.test.matrix.cflags', 7, /expected a list of values/)
  refusedAt(yaml('jobs:', '  t:', '    matrix: { cc: [] }', step), 'jobs.t.matrix.cc', 3, /empty/)
  refusedAt(yaml('jobs:', '  t:', '    matrix: [ gcc ]', step), 'jobs.t.matrix', 3)
  refusedAt(yaml('jobs:', '  t:', '    matrix: {}', step), 'jobs.t.matrix', 3, /at least one axis/)
  refusedAt(yaml('jobs:', '  t:', '    matrix:', '      cc: [ gcc, [ clang ] ]', step), 'jobs.t.matrix.cc.1', 4)
  refusedAt(yaml('jobs:', '  t:', '    matrix:', '      cc: [ gcc, "a\\nb" ]', step), 'jobs.t.matrix.cc.1', 4, /line break/)
  refusedAt(yaml('jobs:', '  t:', '    matrix:', '      "c c": [ gcc ]', step), 'jobs.t.matrix."c c"', 4)
  refusedAt(yaml('jobs:', '  t:', '    matrix:', '      cc: [ gcc, gcc ]', step), 'jobs.t.matrix', 3, /the same: t \(cc=gcc\)/)
  refusedAt(yaml('jobs:', '  t:', '    matrix:', '      cc: [ gcc ]', '      exclude: [ { c: gcc } ]', step), 'jobs.t.matrix.exclude.0.c', 5, /no axis c \(did you mean cc\?\)/)
  refusedAt(yaml('jobs:', '  t:', '    matrix:', '      cc: [ gcc ]', '      exclude: [ { cc: gcc } ]', step), 'jobs.t.matrix.exclude', 5, /no combination/)
  refusedAt(yaml('jobs:', '  t:', '    matrix:', '      cc: [ gcc ]', '      include: [ {} ]', step), 'jobs.t.matrix.include.0', 5)
  refusedAt(yaml('jobs:', '  t:', '    matrix:', '      cc: [ gcc ]', '      include: { cc: gcc }', step), 'jobs.t.matrix.include', 5)
})

matrix('an unknown matrix key names the job and key', () => {
  refusedAt(yaml(
    'jobs:',
    '  test:',
    '    matrix: { cflags: [ "-O0" ] }',
    '    env: { CFLAGS: "${{ matrix.cflag }}" }',
    step
  ), 'jobs.test.env.CFLAGS', 4, /no matrix key "cflag" \(did you mean cflags\?\)/)
  refusedAt(yaml('jobs:', '  test:', '    matrix: { cc: [ gcc ] }', '    steps: [ { run: "${{ matrix.os }}" } ]'), 'jobs.test.steps.0.run', 4, /no matrix key "os" \(the matrix has cc\)/)
  refusedAt(yaml('jobs:', '  test:', '    steps: [ { run: "${{ matrix.os }}" } ]'), 'jobs.test.steps.0.run', 3, /this job has no matrix/)
  refusedAt(yaml('jobs:', '  test:', '    matrix: { cc: [ gcc ] }', '    env: { "${{ matrix.cc }}": x }', step), 'jobs.test.env."${{ matrix.cc }}"', 4, /not in keys/)
})

matrix('combinations per job and builds per pipeline are capped, the error saying the numbers', () => {
  const axis = (n: number): number[] => Array.from({ length: n }, (_, i) => i)
  refusedAt({ jobs: { t: { matrix: { a: axis(17), b: axis(16) }, steps: [{ run: 'make' }] } } }, 'jobs.t.matrix', undefined,
    new RegExp(`272 combinations \\(17 × 16\\); a job has at most ${MAX_MATRIX_COMBINATIONS}`))
  refusedAt({ jobs: { t: { matrix: { a: axis(MAX_MATRIX_COMBINATIONS), include: [{ b: 1 }, { a: 'new' }] }, steps: [{ run: 'make' }] } } }, 'jobs.t.matrix', undefined,
    new RegExp(`${MAX_MATRIX_COMBINATIONS + 1} combinations with include`))
  const full = { matrix: { a: axis(MAX_MATRIX_COMBINATIONS) }, steps: [{ run: 'make' }] }
  const jobs = Object.fromEntries(Array.from({ length: Math.floor(MAX_PIPELINE_BUILDS / MAX_MATRIX_COMBINATIONS) + 1 }, (_, i) => [`j${i}`, full]))
  refusedAt({ jobs }, 'jobs', undefined, new RegExp(`has ${Object.keys(jobs).length * MAX_MATRIX_COMBINATIONS} builds .*at most ${MAX_PIPELINE_BUILDS}`))
})

matrix('a build needing more builds than a build may run after is refused at its needs', () => {
  const wide = { matrix: { a: Array.from({ length: MAX_MATRIX_COMBINATIONS }, (_, i) => i) }, steps: [{ run: 'make' }] }
  const needs = Math.ceil((MAX_AFTER_BUILDS + 1) / MAX_MATRIX_COMBINATIONS)
  const jobs: Record<string, unknown> = Object.fromEntries(Array.from({ length: needs }, (_, i) => [`w${i}`, wide]))
  jobs.join = { needs: Object.keys(jobs), steps: [{ run: 'make' }] }
  refusedAt({ jobs }, 'jobs.join.needs', undefined, new RegExp(`at most ${MAX_AFTER_BUILDS} builds; these needs are ${needs * MAX_MATRIX_COMBINATIONS}`))
})

// ---------------------------------------------------------------- needs

const needs = suite('pipeline file: needs')

needs('artifacts: false is kept per need; the default is true; order is needs first, else file order', () => {
  const builds = plan(yaml(
    'jobs:',
    '  deploy:',
    '    needs: [ { job: test, artifacts: false }, build ]',
    step,
    '  lint:',
    step,
    '  test:',
    '    needs: [ { job: build } ]',
    step,
    '  build:',
    step
  ))
  assert.equal(builds.map(b => b.name), ['lint', 'build', 'test', 'deploy'])
  assert.equal(builds[3].needs, [{ name: 'test', artifacts: false }, { name: 'build', artifacts: true }])
  assert.equal(builds[2].needs, [{ name: 'build', artifacts: true }])
})

needs('an unknown need names the closest job', () => {
  refusedAt(yaml('jobs:', '  build:', step, '  test:', '    needs: [ biuld ]', step), 'jobs.test.needs.0', 5, /there is no job "biuld" \(did you mean build\?\)/)
  const issue = refusedAt(yaml('jobs:', '  build:', step, '  test:', '    needs:', '      - build', '      - { job: zzz }', step), 'jobs.test.needs.1', 7, /there is no job "zzz"/)
  assert.not.match(issue.message, /did you mean/)
})

needs('a job needing itself, a need listed twice', () => {
  refusedAt(yaml('jobs:', '  build:', '    needs: [ build ]', step), 'jobs.build.needs.0', 3, /itself/)
  refusedAt(yaml('jobs:', '  a:', step, '  b:', '    needs: [ a, { job: a, artifacts: false } ]', step), 'jobs.b.needs.1', 5, /twice/)
})

needs('a cycle is named in the order the needs lead round it', () => {
  const issue = refusedAt(yaml(
    'jobs:',
    '  build:',
    '    needs: [ test ]',
    step,
    '  test:',
    '    needs: [ build ]',
    step
  ), 'jobs.test.needs.0', 6)
  assert.match(issue.message, /cycle: build → test → build$/)
  const longer = refusedAt({ jobs: { a: { needs: ['b'], steps: [{ run: 'x' }] }, b: { needs: ['c'], steps: [{ run: 'x' }] }, c: { needs: ['a'], steps: [{ run: 'x' }] } } }, 'jobs.c.needs.0', undefined)
  assert.match(longer.message, /a → b → c → a/)
})

needs('bad needs shapes', () => {
  refusedAt(yaml('jobs:', '  a:', '    needs: build', step), 'jobs.a.needs', 3, /list/)
  refusedAt(yaml('jobs:', '  a:', '    needs: [ 3 ]', step), 'jobs.a.needs.0', 3)
  refusedAt(yaml('jobs:', '  a:', step, '  b:', '    needs:', '      - job: a', '        artifact: false', step), 'jobs.b.needs.0.artifact', 7, /did you mean artifacts\?/)
  refusedAt(yaml('jobs:', '  a:', step, '  b:', '    needs:', '      - job: a', '        artifacts: "no"', step), 'jobs.b.needs.0.artifacts', 7, /true or false/)
  refusedAt(yaml('jobs:', '  a:', step, '  b:', '    needs: [ { artifacts: false } ]', step), 'jobs.b.needs.0.job', 5)
})

// ---------------------------------------------------------------- the file's shape

const shape = suite('pipeline file: shape and keys')

shape('the top level is a map of env and jobs', () => {
  refusedAt('- build\n- test\n', 'pipeline', 1, /not a list/)
  refusedAt('just text\n', 'pipeline', 1, /not the text "just text"/)
  refusedAt('', 'pipeline', undefined, /empty/)
  refusedAt('# only a comment\n', 'pipeline', undefined, /empty/)
  refusedAt([], 'pipeline', undefined, /not a list/)
  refusedAt(null, 'pipeline', undefined, /empty/)
  refusedAt(yaml('env: {}', 'job:', '  a:', step), 'job', 2, /unknown key \(did you mean jobs\?\)/)
  refusedAt(yaml('env: {}'), 'jobs', 1, /needs "jobs"/)
  refusedAt(yaml('jobs: {}'), 'jobs', 1, /at least one job/)
  refusedAt(yaml('jobs: [ build ]'), 'jobs', 1)
})

shape('the file\'s env: text values only, with a hint for YAML\'s booleans and numbers', () => {
  refusedAt(yaml('env:', '  CI: true', 'jobs:', '  a:', step), 'env.CI', 2, /quote it \("true"\)/)
  refusedAt(yaml('env:', '  VERSION: 1.10', 'jobs:', '  a:', step), 'env.VERSION', 2, /"1.1"/)
  refusedAt(yaml('env:', '  1X: a', 'jobs:', '  a:', step), 'env.1X', 2)
  refusedAt(yaml('env: [ CI ]', 'jobs:', '  a:', step), 'env', 1)
  refusedAt(yaml('jobs:', '  a:', '    env: { N: 3 }', step), 'jobs.a.env.N', 3, /quote it/)
})

shape('the job\'s env wins over the file\'s', () => {
  const [build] = plan(yaml('env: { A: file, B: file }', 'jobs:', '  a:', '    env: { B: job }', step))
  assert.equal(build.spec.env, { A: 'file', B: 'job' })
})

shape('job names are plain, 1-64 characters', () => {
  refusedAt(yaml('jobs:', '  "bad name":', step), 'jobs."bad name"', 2, /1-64/)
  refusedAt({ jobs: { ['x'.repeat(65)]: { steps: [{ run: 'x' }] } } }, `jobs.${'x'.repeat(65)}`, undefined)
  assert.equal(plan({ jobs: { ['x'.repeat(64)]: { steps: [{ run: 'x' }] }, 'a.b_c-1': { steps: [{ run: 'x' }] } } }).map(b => b.name), ['x'.repeat(64), 'a.b_c-1'])
})

shape('bad keys: unknown (with a suggestion), src and after', () => {
  refusedAt(yaml('jobs:', '  a:', step, '    timout: 5'), 'jobs.a.timout', 4, /unknown key \(did you mean timeout\?\)/)
  refusedAt(yaml('jobs:', '  a:', step, '    nedds: [ b ]'), 'jobs.a.nedds', 4, /did you mean needs\?/)
  refusedAt(yaml('jobs:', '  a:', step, '    src: bafy'), 'jobs.a.src', 4, /commit's tree/)
  refusedAt(yaml('jobs:', '  a:', step, '    after: [ { build: x } ]'), 'jobs.a.after', 4, /needs/)
  refusedAt(yaml('jobs:', '  a: [ make ]'), 'jobs.a', 2, /not a list/)
  refusedAt(yaml('jobs:', '  a:'), 'jobs.a', 2, /not nothing/)
  refusedAt(yaml('jobs:', '  a:', step, '    branches: []'), 'jobs.a.branches', 4, /every pipeline/)
  refusedAt(yaml('jobs:', '  a:', step, '    branches: main'), 'jobs.a.branches', 4, /list/)
  refusedAt(yaml('jobs:', '  a:', step, '    branches: [ "" ]'), 'jobs.a.branches.0', 4)
})

shape('a JSON-job validation error names jobs.NAME.KEY and the line, every problem listed', () => {
  const error = refused(yaml(
    'jobs:',
    '  a:',
    '    steps:',
    '      - run: make',
    '      - name: empty',
    '        run: ""',
    '    timeout: 0',
    '    inputs: { "lib.a": nope }'
  ))
  assert.equal(error.issues.map(i => [i.where, i.line]), [['jobs.a.steps.1.run', 6], ['jobs.a.timeout', 7], ['jobs.a.inputs.lib.a', 8]])
  assert.match(error.message, /^jobs\.a\.steps\.1\.run: .* \(line 6\); jobs\.a\.timeout: .* \(line 7\); jobs\.a\.inputs\.lib\.a: .* \(line 8\)$/)
  refusedAt(yaml('jobs:', '  a:', '    requires: { os: linux }'), 'jobs.a.steps', 2, /expected array/)
})

shape('an object input is checked the same, without lines', () => {
  refusedAt({ jobs: { a: { steps: [{ run: 'x' }], timeout: -1 } } }, 'jobs.a.timeout', undefined)
  refusedAt({ jobs: { a: { steps: [{ run: 'x' }] } }, stages: [] }, 'stages', undefined, /unknown key/)
})

shape('a bad src option is refused as such', () => {
  refusedAt(CONTRACT_EXAMPLE, 'src', undefined, /CID/, { src: 'not-a-cid' })
})

// ---------------------------------------------------------------- YAML and limits

const text = suite('pipeline file: YAML text and limits')

text('syntax errors say their line', () => {
  refusedAt(yaml('jobs:', '  a:', '    steps: [ { run: make }', '  b:', step), 'yaml', 4)
  refusedAt(yaml('jobs:', '  a:', '\tsteps: []'), 'yaml', 3)
})

text('a key written twice is refused, naming it', () => {
  refusedAt(yaml('jobs:', '  a:', step, '  a:', step), 'yaml', 4, /"a" is written twice/)
  refusedAt(yaml('jobs:', '  a:', step, '    timeout: 5', '    timeout: 6'), 'yaml', 5, /"timeout"/)
})

text('one document only', () => {
  refusedAt(yaml('jobs:', '  a:', step, '---', 'jobs: {}'), 'yaml', 4, /one YAML document/)
})

text('JSON is YAML too', () => {
  assert.equal(plan('{ "jobs": { "a": { "steps": [ { "run": "make" } ] } } }').map(b => b.spec.steps[0].run), ['make'])
})

text('a file over the size limit is refused whole, text or object', () => {
  const big = yaml('jobs:', '  a:', step, `    env: { X: "${'x'.repeat(MAX_PIPELINE_FILE_BYTES)}" }`)
  refusedAt(big, 'pipeline', undefined, new RegExp(`at most ${MAX_PIPELINE_FILE_BYTES} bytes`))
  refusedAt({ jobs: { a: { steps: [{ run: 'x'.repeat(MAX_PIPELINE_FILE_BYTES) }] } } }, 'pipeline', undefined, new RegExp(`at most ${MAX_PIPELINE_FILE_BYTES} bytes`))
  refusedAt(10n, 'pipeline', undefined, /YAML text or a JSON object/)
})

text('a file that expands past its limit through aliases is refused, saying the size', () => {
  const big = 'x'.repeat(MAX_PIPELINE_FILE_BYTES - 1024)
  const lines = ['jobs:', `  j0: { steps: [ { run: make } ], env: { BIG: &big "${big}" } }`]
  for (let i = 1; i <= Math.ceil(MAX_PIPELINE_EXPANDED_BYTES / big.length); i++) lines.push(`  j${i}: { steps: [ { run: make } ], env: { BIG: *big } }`)
  refusedAt(yaml(...lines), 'yaml', undefined, new RegExp(`once its aliases are expanded; at most ${MAX_PIPELINE_EXPANDED_BYTES}`))
})

text('an anchor merged into many jobs is not mistaken for an attack', () => {
  const lines = ['jobs:', '  j0: &defaults { requires: { os: linux }, steps: [ { run: make } ] }']
  for (let i = 1; i < 60; i++) lines.push(`  j${i}: { <<: *defaults, timeout: ${i} }`)
  const builds = plan(yaml(...lines))
  assert.is(builds.length, 60)
  assert.equal(builds[59].spec.requires, { os: 'linux' })
  assert.is(builds[59].spec.timeout, 59)
  // yaml counts uses against MAX_PIPELINE_ALIASES: 99 merges of one anchor pass, the 100th is refused.
  const uses = (n: number): string => yaml('jobs:', '  j0: &defaults { steps: [ { run: make } ] }', ...Array.from({ length: n }, (_, i) => `  j${i + 1}: { <<: *defaults }`))
  assert.is(parsePipelineFile(uses(MAX_PIPELINE_ALIASES - 1)).jobs[`j${MAX_PIPELINE_ALIASES - 1}`].steps?.length, 1)
  refusedAt(uses(MAX_PIPELINE_ALIASES), 'yaml', undefined, /billion laughs/)
})

example.run()
branches.run()
anchors.run()
matrix.run()
needs.run()
shape.run()
text.run()

// A real project end to end: a small C library (test/fixtures/c-library) with a .grid.yml of build → test (a matrix
// over two compiler flags) → package, pushed to a bare repository that `grid up` polls, with a second worker in its
// own process. The package the grid made must be byte-identical to the one a local `make` makes.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { cp, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ROOT, grid, gridRun, removeDir, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'
import type { Build, Pipeline } from '../../grid/build.ts'
import { PIPELINE_FINISHED } from '../../grid/build.ts'

interface Ctx { dir: string, up: CliProcess, worker: CliProcess, url: string, data: string }

const project = suite<Ctx>('a C library pipeline from a pushed repository')

const FIXTURE = join(ROOT, 'test/fixtures/c-library')

function git (cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } }).trim()
}

project.before(async ctx => {
  ctx.dir = await tempDir('c-library')
  ctx.data = join(ctx.dir, 'data')
  ctx.up = grid(['up', '--data', ctx.data, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'])
  ctx.url = (await ctx.up.line(/^web: (http:\/\/\S+)$/m, 30_000))[1]
  await ctx.up.line(/^join: grid1-\S+$/m)
  ctx.worker = grid(['worker', '--join', join(ctx.data, 'join'), '--data', join(ctx.dir, 'worker2')])
  await waitFor('two workers', async () => (await (await fetch(`${ctx.url}/api/capacity`)).json()).nodes === 2, 30_000)
})

project.after(async ctx => {
  await ctx.worker?.stop()
  await ctx.up?.stop()
  await removeDir(ctx.dir)
})

project('a push is built, tested over two flags and packaged; the package equals a local make\'s', async ctx => {
  // The repository: the fixture committed on main and pushed to a bare repository, as a forge would hold it.
  const work = join(ctx.dir, 'work')
  const bare = join(ctx.dir, 'mini.git')
  await cp(FIXTURE, work, { recursive: true })
  await rename(join(work, 'grid.yml'), join(work, '.grid.yml'))
  git(ctx.dir, 'init', '-q', '--bare', '-b', 'main', bare)
  git(work, 'init', '-q', '-b', 'main')
  git(work, 'add', '-A')
  git(work, 'commit', '-q', '-m', 'mini 1.0')
  git(work, 'push', '-q', bare, 'main')
  const commit = git(work, 'rev-parse', 'HEAD')

  const added = await gridRun(['repo', 'add', bare, '--poll', '10', '--data', ctx.data])
  assert.is(added.code, 0, added.stderr)
  const repo = added.stdout.trim().split(/\s+/)[0]

  const pipeline = await waitFor('the pipeline of the push to end', async () => {
    const list = await (await fetch(`${ctx.url}/api/pipelines?limit=10`)).json() as Pipeline[]
    const p = list.find(x => x.source.repo === repo)
    return p !== undefined && PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, 180_000, 250)
  assert.is(pipeline.status, 'succeeded', JSON.stringify(pipeline, null, 2))
  assert.is(pipeline.source.commit, commit)
  assert.is(pipeline.source.ref, 'refs/heads/main')
  assert.equal(pipeline.jobs.map(j => j.name).sort(), ['build', 'package', 'test (cflags=-O0)', 'test (cflags=-O2)'])

  const builds = new Map<string, Build>()
  for (const job of pipeline.jobs) builds.set(job.name, await (await fetch(`${ctx.url}/api/builds/${job.build}`)).json() as Build)
  // In order: every test after build, package after both tests.
  const at = (name: string, key: 'started' | 'finished'): number => Date.parse(builds.get(name)![key]!)
  for (const test of ['test (cflags=-O0)', 'test (cflags=-O2)']) {
    assert.ok(at(test, 'started') >= at('build', 'finished'), `${test} started after build finished`)
    assert.ok(at('package', 'started') >= at(test, 'finished'), `package started after ${test} finished`)
    assert.is(builds.get(test)!.job.env.CFLAGS, test.includes('O0') ? '-O0' : '-O2')
    const log = await (await fetch(`${ctx.url}/api/builds/${builds.get(test)!.id}/log`)).text()
    assert.match(log, /ok adler32\(Wikipedia\) = 11e60398/)
    assert.match(log, new RegExp(`cc ${test.includes('O0') ? '-O0' : '-O2'} test_mini.c libmini.a`))
  }

  // The grid's package, fetched and verified by CID, against the same package made here by a local make.
  const pkg = builds.get('package')!.artifacts.find(a => a.path === 'pkg.tgz')
  assert.ok(pkg !== undefined, 'package kept pkg.tgz')
  const got = join(ctx.dir, 'grid-pkg.tgz')
  const fetched = await gridRun(['get', '--join', join(ctx.data, 'join'), pkg.cid, '-o', got])
  assert.is(fetched.code, 0, fetched.stderr)
  const local = join(ctx.dir, 'local')
  await cp(FIXTURE, local, { recursive: true })
  execFileSync('make', ['libmini.a'], { cwd: local, env: { ...process.env, CC: 'cc' } })
  execFileSync('sh', ['package.sh'], { cwd: local })
  assert.ok((await readFile(got)).equals(await readFile(join(local, 'pkg.tgz'))), 'the grid\'s pkg.tgz is byte-identical to a local make\'s')

  // A second push is picked up by the next poll, and only it: the first commit is not built again.
  await writeFile(join(work, 'NEWS'), 'mini 1.1: faster\n')
  git(work, 'add', '-A')
  git(work, 'commit', '-q', '-m', 'mini 1.1')
  git(work, 'push', '-q', bare, 'main')
  const second = git(work, 'rev-parse', 'HEAD')
  const next = await waitFor('the pipeline of the second push to end', async () => {
    const list = await (await fetch(`${ctx.url}/api/pipelines?limit=10`)).json() as Pipeline[]
    const p = list.find(x => x.source.commit === second)
    return p !== undefined && PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, 120_000, 250)
  assert.is(next.status, 'succeeded')
  assert.is(next.source.trigger, 'poll')
  const all = await (await fetch(`${ctx.url}/api/pipelines?limit=10`)).json() as Pipeline[]
  assert.equal(all.filter(p => p.source.repo === repo).map(p => p.source.commit).sort(), [commit, second].sort(), 'each commit built once')

  // grid cancel takes a pipeline id as well as a build id: a finished one says so; an unknown id names both kinds.
  const late = await gridRun(['cancel', next.id, '--data', ctx.data])
  assert.ok(late.code !== 0 && new RegExp(`^grid: pipeline ${next.id} .*succeeded`).test(late.stderr), late.stderr)
  const unknown = await gridRun(['cancel', '000000000abcdef12', '--data', ctx.data])
  assert.is(unknown.stderr, 'grid: no build or pipeline 000000000abcdef12\n')

  // The repository as the operator sees it, then gone: nothing polls it any more.
  const listed = await gridRun(['repo', 'ls', '--data', ctx.data])
  assert.is(listed.code, 0, listed.stderr)
  assert.match(listed.stdout, new RegExp(`^${repo}\t${bare}\tbranches main\tpolls every 10 s$`, 'm'))
  const removed = await gridRun(['repo', 'rm', repo, '--data', ctx.data])
  assert.is(removed.code, 0, removed.stderr)
  assert.not.match((await gridRun(['repo', 'ls', '--data', ctx.data])).stdout, new RegExp(repo))
  const again = await gridRun(['repo', 'rm', repo, '--data', ctx.data])
  assert.ok(again.code !== 0 && /^grid: .*\n$/.test(again.stderr), `removing it twice is one line: ${again.stderr}`)
})

project.run()

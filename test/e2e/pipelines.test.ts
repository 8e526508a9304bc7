// End to end: pipelines on a real grid (libp2p on loopback, LevelDB, real worker processes' steps, real git). A
// two-job file over HTTP runs in order and the second job gets the first one's artifact; a failing first job skips
// the second; list, read, cancel and every bad request; `pipeline` events; the libp2p requests `grid run` makes;
// a commit of a local bare repository checked out by a worker with git and built; a restart keeps pipelines.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { removeDir, startTestGrid, tempDir, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import { within } from '../wait.ts'
import type { Build, Pipeline } from '../../grid/build.ts'
import { PIPELINE_FINISHED } from '../../grid/build.ts'
import { MAX_LIST_LIMIT } from '../../grid/constants.ts'
import { createHost } from '../../net/host.ts'
import { coordinatorAddress } from '../../net/join-code.ts'
import { askCoordinator } from '../../protocols/builds.ts'
import { trustProof } from '../../grid/trust.ts'
import { MAX_PIPELINE_REQUEST_BYTES } from '../../web/pipelines.ts'
import { LevelBuildHistory } from '../../coordinator/history.ts'
import { LevelPipelineHistory, MemoryPipelineHistory } from '../../coordinator/pipeline-history.ts'
import type { PipelineHistory } from '../../coordinator/pipeline-history.ts'

const run = promisify(execFile)

/** build keeps out.txt (with a line from src's hello.txt); test needs build and reads it from its work dir. */
const TWO_JOBS = `
jobs:
  build:
    steps: [ { run: "cat hello.txt > out.txt && echo built >> out.txt" } ]
    artifacts: [ out.txt ]
  test:
    needs: [ build ]
    steps: [ { run: "cat out.txt" } ]
`

const FAILING = `
jobs:
  build:
    steps: [ { run: "exit 3" } ]
  test:
    needs: [ build ]
    steps: [ { run: "echo never" } ]
`

interface Ctx {
  grid: TestGrid
  /** CID of a tar holding hello.txt. */
  src: string
}

const auth = (grid: TestGrid): Record<string, string> => ({ authorization: `Bearer ${grid.token}`, 'content-type': 'application/json' })

async function post (grid: TestGrid, path: string, body: unknown, headers: Record<string, string> = auth(grid)): Promise<Response> {
  return await grid.api(path, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) })
}

async function start (grid: TestGrid, body: Record<string, unknown>): Promise<string> {
  const res = await post(grid, '/api/pipelines', body)
  const answer = await res.json() as { id?: string, error?: string }
  assert.is(res.status, 201, answer.error)
  assert.ok(answer.id !== undefined)
  return answer.id
}

const pipelineOf = async (grid: TestGrid, id: string): Promise<Pipeline> => await (await grid.api(`/api/pipelines/${id}`)).json() as Pipeline
const buildOf = async (grid: TestGrid, id: string | undefined): Promise<Build> => await (await grid.api(`/api/builds/${id}`)).json() as Build

async function finished (grid: TestGrid, id: string, timeoutMs = 60_000): Promise<Pipeline> {
  return await waitFor(`pipeline ${id} to finish`, async () => {
    const pipeline = await pipelineOf(grid, id)
    return PIPELINE_FINISHED.has(pipeline.status) ? pipeline : undefined
  }, timeoutMs)
}

/** The output of the build's first step. */
async function logOf (grid: TestGrid, build: Build): Promise<string> {
  return await (await grid.api(`/api/logs/${build.steps[0].log}`)).text()
}

/** The output of every step of the build. */
async function logsOf (grid: TestGrid, build: Build): Promise<string> {
  return (await Promise.all(build.steps.map(async s => await (await grid.api(`/api/logs/${s.log}`)).text()))).join('')
}

/** The one-sentence error of a response with `status`. */
async function error (res: Response, status: number): Promise<string> {
  const body = await res.json() as { error?: string }
  assert.is(res.status, status, body.error)
  assert.type(body.error, 'string')
  assert.not.match(body.error!, /\n/)
  return body.error!
}

/** A tar of a directory holding hello.txt, put on the grid: a pipeline's src. */
async function putSrc (grid: TestGrid): Promise<string> {
  const dir = join(grid.dir, 'src-tree')
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'hello.txt'), 'hello from src\n')
  const { stdout } = await run('tar', ['-cf', '-', '-C', dir, '.'], { encoding: 'buffer' })
  const res = await grid.api('/api/artifacts', { method: 'POST', headers: { authorization: `Bearer ${grid.token}` }, body: stdout })
  const body = await res.json() as { cid: string }
  assert.is(res.status, 201)
  return body.cid
}

const http = suite<Ctx>('pipelines over HTTP on a real grid')
http.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{ slots: 2 }] })
  ctx.src = await putSrc(ctx.grid)
})
http.after(async ctx => { await ctx.grid?.stop() })

http('a two-job file: build, then test with build\'s artifact in its work dir; the pipeline succeeds', async ({ grid, src }) => {
  const id = await start(grid, { pipeline: TWO_JOBS, src })
  const pipeline = await finished(grid, id)
  assert.is(pipeline.status, 'succeeded')
  assert.is(pipeline.src, src)
  assert.equal(pipeline.source, { repo: null, url: '', trigger: 'api' })
  assert.equal(pipeline.jobs.map(j => [j.name, j.needs, j.status]), [['build', [], 'succeeded'], ['test', ['build'], 'succeeded']])
  assert.ok(pipeline.started !== undefined && pipeline.finished !== undefined)
  const [build, test] = await Promise.all(pipeline.jobs.map(async j => await buildOf(grid, j.build)))
  assert.is(build.pipeline, id)
  assert.is(test.jobName, 'test')
  assert.ok(build.finished! <= test.started!, 'test started only after build finished')
  assert.is(await logOf(grid, test), 'hello from src\nbuilt\n')
})

http('a failing first job: the second is skipped without ever running, and the pipeline fails', async ({ grid, src }) => {
  const id = await start(grid, { pipeline: FAILING, src })
  const pipeline = await finished(grid, id)
  assert.is(pipeline.status, 'failed')
  assert.equal(pipeline.jobs.map(j => j.status), ['failed', 'skipped'])
  const skipped = await buildOf(grid, pipeline.jobs[1].build)
  assert.is(skipped.status, 'skipped')
  assert.equal(skipped.attempts, [], 'it never ran')
  assert.match(skipped.error ?? '', /build .*ended failed/)
})

http('a file as an object, with ref and commit: planned for that branch', async ({ grid, src }) => {
  const commit = 'c'.repeat(40)
  const id = await start(grid, {
    pipeline: { jobs: { one: { steps: [{ run: 'true' }] }, main: { branches: ['main'], steps: [{ run: 'true' }] } } }, src, ref: 'refs/heads/dev', commit
  })
  const pipeline = await finished(grid, id)
  assert.equal(pipeline.source, { repo: null, url: '', ref: 'refs/heads/dev', commit, trigger: 'api' })
  assert.equal(pipeline.jobs.map(j => j.name), ['one'])
  assert.is(pipeline.status, 'succeeded')
})

http('GET lists newest first within the limit rules; GET one; unknown 404; bad id 400', async ({ grid, src }) => {
  const a = await start(grid, { pipeline: TWO_JOBS, src })
  const b = await start(grid, { pipeline: TWO_JOBS, src })
  const list = await (await grid.api('/api/pipelines?limit=2')).json() as Pipeline[]
  assert.equal(list.map(p => p.id), [b, a])
  assert.ok((await (await grid.api('/api/pipelines')).json() as Pipeline[]).length >= 2)
  assert.is((await pipelineOf(grid, a)).id, a)
  for (const limit of ['0', '-1', '1.5', 'x', String(MAX_LIST_LIMIT + 1)]) {
    assert.match(await error(await grid.api(`/api/pipelines?limit=${limit}`), 400), /^limit must be a whole number from 1 to/)
  }
  assert.is(await error(await grid.api('/api/pipelines/000000000aaaaaaaa'), 404), 'no pipeline 000000000aaaaaaaa')
  assert.is(await error(await grid.api('/api/pipelines/NOT-AN-ID'), 400), 'NOT-AN-ID is not a pipeline id')
  await finished(grid, a)
  await finished(grid, b)
})

http('cancel: the running build stops, the one after it is cancelled, the pipeline ends cancelled; again is 409', async ({ grid, src }) => {
  const gate = join(grid.dir, 'never')
  const id = await start(grid, {
    pipeline: { jobs: { wait: { steps: [{ run: `i=0; while [ ! -e ${gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done` }] }, after: { needs: ['wait'], steps: [{ run: 'true' }] } } },
    src
  })
  await waitFor('the first job running', async () => (await pipelineOf(grid, id)).jobs[0].status === 'running', 30_000)
  assert.is((await pipelineOf(grid, id)).status, 'running')
  assert.is(await error(await post(grid, `/api/pipelines/${id}/cancel`, '', {}), 401), 'this needs the API token: send Authorization: Bearer TOKEN (see DATA/api-token)')
  const res = await post(grid, `/api/pipelines/${id}/cancel`, '')
  assert.is(res.status, 200)
  const cancelled = await res.json() as Pipeline
  assert.is(cancelled.status, 'cancelled')
  assert.equal(cancelled.jobs.map(j => j.status), ['cancelled', 'cancelled'])
  assert.is((await buildOf(grid, cancelled.jobs[1].build)).attempts.length, 0)
  assert.match(await error(await post(grid, `/api/pipelines/${id}/cancel`, ''), 409), /already cancelled/)
  assert.is(await error(await post(grid, '/api/pipelines/000000000aaaaaaaa/cancel', ''), 404), 'no pipeline 000000000aaaaaaaa')
  assert.is((await pipelineOf(grid, id)).status, 'cancelled')
})

http('bad requests: one sentence each, and nothing is created', async ({ grid, src }) => {
  const before = (await (await grid.api(`/api/pipelines?limit=${MAX_LIST_LIMIT}`)).json() as Pipeline[]).length
  const builds = (await (await grid.api(`/api/builds?limit=${MAX_LIST_LIMIT}`)).json() as Build[]).length
  assert.is(await error(await post(grid, '/api/pipelines', { pipeline: TWO_JOBS, src }, { 'content-type': 'application/json' }), 401),
    'this needs the API token: send Authorization: Bearer TOKEN (see DATA/api-token)')
  assert.is(await error(await post(grid, '/api/pipelines', { pipeline: TWO_JOBS, src }, { ...auth(grid), authorization: 'Bearer wrong' }), 401), 'the API token is wrong')
  const bad = 'jobs:\n  build:\n    steps: [ { run: make } ]\n  test:\n    needs: [ biuld ]\n    steps: [ { run: "make test" } ]\n'
  assert.match(await error(await post(grid, '/api/pipelines', { pipeline: bad, src }), 400), /^jobs\.test\.needs\.0: .*biuld.*\(line 5\)$/)
  assert.match(await error(await post(grid, '/api/pipelines', { pipeline: { jobs: { build: { stepz: [] } } }, src }), 400), /^jobs\.build\.stepz: /)
  assert.is(await error(await post(grid, '/api/pipelines', '{nope'), 400), 'the body must be JSON: { "pipeline": YAML text or an object, "src": CID }')
  assert.is(await error(await post(grid, '/api/pipelines', '[1]'), 400), 'the body must be a JSON object: { "pipeline": YAML text or an object, "src": CID }')
  assert.is(await error(await post(grid, '/api/pipelines', { pipeline: TWO_JOBS }), 400), 'src: a pipeline needs the CID of its tree (as grid put prints it)')
  assert.is(await error(await post(grid, '/api/pipelines', { src }), 400), 'pipeline: a pipeline needs its file: YAML text or an object')
  assert.is(await error(await post(grid, '/api/pipelines', { pipeline: 7, src }), 400), 'pipeline: expected YAML text or an object')
  assert.match(await error(await post(grid, '/api/pipelines', { pipeline: TWO_JOBS, src: 'bafy-not-a-cid' }), 400), /^src: bafy-not-a-cid is not a CID/)
  assert.is(await error(await post(grid, '/api/pipelines', { pipeline: TWO_JOBS, src, branch: 'main' }), 400), 'body: unknown key "branch"')
  assert.match(await error(await post(grid, '/api/pipelines', { pipeline: TWO_JOBS, src, commit: 'abc' }), 400), /^commit must be a full commit id/)
  assert.match(await error(await post(grid, '/api/pipelines', { pipeline: TWO_JOBS, src, ref: 7 }), 400), /^ref: expected text/)
  const huge = await post(grid, '/api/pipelines', { pipeline: 'x'.repeat(MAX_PIPELINE_REQUEST_BYTES), src })
  assert.match(await error(huge, 413), /^a pipeline request is at most \d+ bytes/)
  assert.is((await (await grid.api(`/api/pipelines?limit=${MAX_LIST_LIMIT}`)).json() as Pipeline[]).length, before)
  assert.is((await (await grid.api(`/api/builds?limit=${MAX_LIST_LIMIT}`)).json() as Build[]).length, builds)
})

http('GET /api/events carries pipeline events beside build and capacity', async ({ grid, src }) => {
  const stop = new AbortController()
  const res = await grid.api('/api/events', { signal: stop.signal })
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  let seen = ''
  // The stream is open once its first event (capacity) arrived: a pipeline started from here is told on it.
  while (!seen.includes('event: capacity')) seen += decoder.decode((await reader.read()).value)
  const id = await start(grid, { pipeline: TWO_JOBS, src })
  try {
    await within(60_000, 'a pipeline event of the pipeline, succeeded', (async () => {
      while (!new RegExp(`event: pipeline\\ndata: \\{"id":"${id}","status":"succeeded"`).test(seen)) {
        const { value, done } = await reader.read()
        if (done) throw new Error('the event stream ended')
        seen += decoder.decode(value)
      }
    })())
  } finally {
    stop.abort()
  }
  assert.match(seen, /event: build\n/)
})

http('over libp2p (grid run): run-pipeline answers the pipeline, get-pipeline reads it, a bad file or id is an error', async ({ grid, src }) => {
  const code = grid.node.localJoin
  const probe = await createHost({ identity: await generateKeyPair('Ed25519'), secret: code.secret, listen: [] })
  try {
    const coordinator = coordinatorAddress(code)
    // The grid's own worker is trusted: the request proves the trusted code, as `grid run` does with it.
    const trust = trustProof(code.trust!, probe.peerId.toString(), code.coordinator.toString())
    const started = await askCoordinator(probe, coordinator, { t: 'run-pipeline', pipeline: TWO_JOBS, src, url: '/home/me/widget', ref: 'refs/heads/main', commit: 'b'.repeat(40), trust })
    assert.is(started.t, 'pipeline', JSON.stringify(started))
    const pipeline = (started as { pipeline: Pipeline }).pipeline
    assert.equal(pipeline.source, { repo: null, url: '/home/me/widget', ref: 'refs/heads/main', commit: 'b'.repeat(40), trigger: 'run' })
    assert.equal(pipeline.jobs.map(j => j.name), ['build', 'test'])
    await finished(grid, pipeline.id)
    const read = await askCoordinator(probe, coordinator, { t: 'get-pipeline', id: pipeline.id })
    assert.is(read.t === 'pipeline' ? read.pipeline.status : read.t, 'succeeded')
    const bad = await askCoordinator(probe, coordinator, { t: 'run-pipeline', pipeline: 'jobs:\n  a:\n    stepz: []\n', src })
    assert.is(bad.t, 'error')
    assert.match(bad.t === 'error' ? bad.error : '', /^jobs\.a\.stepz: .*line 3/)
    const unknown = await askCoordinator(probe, coordinator, { t: 'get-pipeline', id: '000000000aaaaaaaa' })
    assert.equal(unknown, { t: 'error', error: 'no pipeline 000000000aaaaaaaa' })
    const notId = await askCoordinator(probe, coordinator, { t: 'get-pipeline', id: '../../etc' })
    assert.equal(notId, { t: 'error', error: 'no pipeline ../../etc' })
  } finally {
    await probe.stop()
  }
})

http('a commit on a grid without git: the checkout waits, saying why, and the pipeline stays queued until cancelled', async ({ grid }) => {
  const started = await grid.node.coordinator.pipelines.fromCommit({ repo: 'r1', url: '/nowhere/widget.git', ref: 'refs/heads/main', commit: 'd'.repeat(40), trigger: 'poll' })
  const waiting = await waitFor('the checkout to say why it waits', async () => (await buildOf(grid, started.checkout)).waiting, 15_000)
  assert.is(waiting, 'no worker has capability git')
  assert.is((await pipelineOf(grid, started.id)).status, 'queued')
  const res = await post(grid, `/api/pipelines/${started.id}/cancel`, '')
  assert.is(res.status, 200)
  assert.is((await buildOf(grid, started.checkout)).status, 'cancelled')
})

interface RepoCtx extends Ctx {
  repos: string
  bare: string
  work: string
}

const GIT_USER = ['-c', 'user.name=grid test', '-c', 'user.email=grid@test.invalid', '-c', 'init.defaultBranch=main', '-c', 'commit.gpgsign=false']
const git = async (cwd: string, ...args: string[]): Promise<string> => (await run('git', [...GIT_USER, ...args], { cwd })).stdout.trim()

/** Commit `files` in the work clone and push it to main: the commit's id. */
async function commitAndPush (ctx: RepoCtx, files: Record<string, string>, message: string): Promise<string> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(ctx.work, path, '..'), { recursive: true })
    await writeFile(join(ctx.work, path), text)
  }
  await git(ctx.work, 'add', '-A')
  await git(ctx.work, 'commit', '-q', '--allow-empty', '-m', message)
  await git(ctx.work, 'push', '-q', 'origin', 'HEAD:refs/heads/main')
  return await git(ctx.work, 'rev-parse', 'HEAD')
}

const REPO_FILE = `
jobs:
  build:
    steps: [ { run: "cat src/lib.c > out.txt && test ! -e .git && echo compiled >> out.txt" } ]
    artifacts: [ out.txt ]
  test:
    needs: [ build ]
    steps: [ { run: "cat out.txt README" } ]
`

const repo = suite<RepoCtx>('pipelines from a commit of a repository')
repo.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{ capabilities: { git: '2' }, slots: 2 }] })
  ctx.repos = await tempDir('repos')
  ctx.bare = join(ctx.repos, 'widget.git')
  ctx.work = join(ctx.repos, 'work')
  await run('git', ['init', '-q', '--bare', ctx.bare])
  await run('git', [...GIT_USER, 'clone', '-q', ctx.bare, ctx.work])
})
repo.after(async ctx => {
  await ctx.grid?.stop()
  await removeDir(ctx.repos)
})

const fromCommit = async (ctx: RepoCtx, commit: string): Promise<Pipeline> =>
  await ctx.grid.node.coordinator.pipelines.fromCommit({ repo: 'r1', url: ctx.bare, ref: 'refs/heads/main', commit, trigger: 'push' })

repo('a pushed commit: its checkout runs on the git worker, src is its tree, the jobs run with its files', async ctx => {
  const commit = await commitAndPush(ctx, { '.grid.yml': REPO_FILE, 'src/lib.c': 'int lib;\n', README: 'read me\n' }, 'first')
  const started = await fromCommit(ctx, commit)
  assert.equal(started.jobs, [], 'answered before the checkout ran')
  assert.ok(started.checkout !== undefined)
  const pipeline = await finished(ctx.grid, started.id, 90_000)
  assert.is(pipeline.status, 'succeeded', pipeline.error)
  assert.equal(pipeline.source, { repo: 'r1', url: ctx.bare, ref: 'refs/heads/main', commit, trigger: 'push' })
  const checkout = await buildOf(ctx.grid, pipeline.checkout)
  assert.is(checkout.status, 'succeeded')
  assert.is(checkout.jobName, 'checkout')
  assert.equal(checkout.artifacts.map(a => a.path), ['src.tar', 'tree/.grid.yml'])
  assert.is(pipeline.src, checkout.artifacts[0].cid)
  assert.equal(pipeline.jobs.map(j => [j.name, j.status]), [['build', 'succeeded'], ['test', 'succeeded']])
  const test = await buildOf(ctx.grid, pipeline.jobs[1].build)
  assert.is(test.job.src, pipeline.src)
  assert.is(await logOf(ctx.grid, test), 'int lib;\ncompiled\nread me\n')
})

repo('an older commit, fetched by its id although main moved on; a second checkout of it makes the same src', async ctx => {
  const first = await commitAndPush(ctx, { '.grid.yml': 'jobs: { show: { steps: [ { run: "cat version" } ] } }', version: 'one\n' }, 'one')
  await commitAndPush(ctx, { version: 'two\n' }, 'two')
  const a = await finished(ctx.grid, (await fromCommit(ctx, first)).id, 90_000)
  assert.is(a.status, 'succeeded', a.error)
  assert.is(await logOf(ctx.grid, await buildOf(ctx.grid, a.jobs[0].build)), 'one\n')
  const b = await finished(ctx.grid, (await fromCommit(ctx, first)).id, 90_000)
  assert.is(b.src, a.src, 'one commit, one tar, one CID')
})

repo('a server that refuses to serve a commit by its id (protocol v0): the ref is fetched and the commit found in it', async ctx => {
  const first = await commitAndPush(ctx, { '.grid.yml': 'jobs: { show: { steps: [ { run: "cat version" } ] } }', version: 'old\n' }, 'old')
  await commitAndPush(ctx, { version: 'new\n' }, 'new')
  // Steps see the host's environment: every git of this process's worker speaks protocol v0 for this test.
  const saved = { ...process.env }
  Object.assign(process.env, { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'protocol.version', GIT_CONFIG_VALUE_0: '0' })
  try {
    const pipeline = await finished(ctx.grid, (await fromCommit(ctx, first)).id, 90_000)
    assert.is(pipeline.status, 'succeeded', pipeline.error)
    const checkout = await buildOf(ctx.grid, pipeline.checkout)
    assert.match(await logsOf(ctx.grid, checkout), /fetching commit .* by its id failed .*: fetching refs\/heads\/main instead/)
    assert.is(await logOf(ctx.grid, await buildOf(ctx.grid, pipeline.jobs[0].build)), 'old\n')
  } finally {
    for (const key of ['GIT_CONFIG_COUNT', 'GIT_CONFIG_KEY_0', 'GIT_CONFIG_VALUE_0']) {
      if (saved[key] === undefined) delete process.env[key]
      else process.env[key] = saved[key]
    }
  }
})

repo('a commit without .grid.yml, a bad .grid.yml, a commit the repository lacks: the pipeline fails saying why', async ctx => {
  await git(ctx.work, 'rm', '-q', '--ignore-unmatch', '.grid.yml')
  const none = await commitAndPush(ctx, { 'a.txt': 'a\n' }, 'no pipeline file')
  const noFile = await finished(ctx.grid, (await fromCommit(ctx, none)).id, 90_000)
  assert.is(noFile.status, 'failed')
  assert.is(noFile.error, `commit ${none.slice(0, 12)} has no .grid.yml at its root`)
  assert.match(await logsOf(ctx.grid, await buildOf(ctx.grid, noFile.checkout)), new RegExp(`commit ${none} has no .grid.yml at its root`))

  const badCommit = await commitAndPush(ctx, { '.grid.yml': 'jobs:\n  build:\n    steps: [ { run: make } ]\n    timout: 5\n' }, 'bad pipeline file')
  const bad = await finished(ctx.grid, (await fromCommit(ctx, badCommit)).id, 90_000)
  assert.is(bad.status, 'failed')
  assert.match(bad.error ?? '', new RegExp(`^\\.grid\\.yml of commit ${badCommit.slice(0, 12)}: jobs\\.build\\.timout: .*line 4`))
  assert.equal(bad.jobs, [])

  const missing = await finished(ctx.grid, (await fromCommit(ctx, 'f'.repeat(40))).id, 90_000)
  assert.is(missing.status, 'failed')
  assert.match(missing.error ?? '', /^could not fetch commit ffffffffffff from /)
})

const restart = suite('pipelines across a coordinator restart (same data dir, real LevelDB)')

restart('a finished pipeline and a queued one are there after the restart; the queued one can still be cancelled', async () => {
  const dir = await tempDir('pipelines-restart')
  let grid: TestGrid | undefined
  try {
    grid = await startTestGrid({ dir })
    const src = await putSrc(grid)
    const done = await finished(grid, await start(grid, { pipeline: TWO_JOBS, src }))
    const waiting = await start(grid, { pipeline: { jobs: { gpu: { requires: { gpu: 'a100' }, steps: [{ run: 'true' }] } } }, src })
    await grid.stop()
    grid = undefined
    grid = await startTestGrid({ dir })
    assert.equal(await pipelineOf(grid, done.id), done)
    const reloaded = await pipelineOf(grid, waiting)
    assert.is(reloaded.status, 'queued')
    assert.equal((await (await grid.api('/api/pipelines?limit=2')).json() as Pipeline[]).map(p => p.id), [waiting, done.id])
    const res = await post(grid, `/api/pipelines/${waiting}/cancel`, '')
    assert.is(res.status, 200)
    assert.is((await res.json() as Pipeline).status, 'cancelled')
  } finally {
    await grid?.stop()
    await removeDir(dir)
  }
})

const histories = suite<{ dir: string, level?: LevelBuildHistory }>('pipeline histories: memory and LevelDB keep the same things')
histories.before(async ctx => { ctx.dir = await tempDir('pipeline-history') })
histories.after(async ctx => {
  await ctx.level?.close()
  await removeDir(ctx.dir)
})

/** One conformance check, run against each implementation. */
async function keeps (history: PipelineHistory): Promise<void> {
  const pipeline = (id: string, status: Pipeline['status']): Pipeline => ({ id, status, source: { repo: null, url: '', trigger: 'api' }, created: '2026-01-01T00:00:00.000Z', jobs: [] })
  const live = pipeline('000000001aaaaaaaa', 'queued')
  const save = history.save(live)
  live.status = 'running'
  await save
  assert.is((await history.get(live.id))?.status, 'queued', 'a save keeps a snapshot, not the live object')
  await history.save(live)
  await history.save(pipeline('000000002aaaaaaaa', 'succeeded'))
  await history.save(pipeline('000000003aaaaaaaa', 'failed'))
  assert.equal((await history.list(2)).map(p => p.id), ['000000003aaaaaaaa', '000000002aaaaaaaa'])
  assert.equal((await history.active()).map(p => p.id), ['000000001aaaaaaaa'])
  live.status = 'cancelled'
  await history.save(live)
  await history.flush()
  assert.equal(await history.active(), [])
  assert.is(await history.get('000000009aaaaaaaa'), undefined)
}

histories('memory', async () => { await keeps(new MemoryPipelineHistory()) })

histories('LevelDB, in a sublevel of the build history\'s database', async ctx => {
  ctx.level = new LevelBuildHistory(join(ctx.dir, 'coordinator.db'))
  await ctx.level.open()
  await keeps(new LevelPipelineHistory(ctx.level.db))
  assert.equal(await ctx.level.list(10), [], 'builds and pipelines stay apart')
})

http.run()
repo.run()
restart.run()
histories.run()

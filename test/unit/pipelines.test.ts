// The coordinator's pipelines alone: the real Scheduler over a memory history with stub worker links, a memory
// pipeline history and a stub content reader. No network, no disk, no git: what a pipeline submits, how its status
// follows its builds, cancelling, bad files, a checkout's file read and planned, and a restart.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { MemoryHistory, StubLink, finishAttempt, rejection, scheduler, stopAll, until } from '../scheduler-fixtures.ts'
import type { Scheduler } from '../../coordinator/scheduler.ts'
import { CHECKOUT_FILE, CHECKOUT_JOB, CHECKOUT_TAR, FILE_READ_ATTEMPTS, Pipelines, PipelineFileTooLargeError, pipelineStatus } from '../../coordinator/pipelines.ts'
import { MemoryPipelineHistory } from '../../coordinator/pipeline-history.ts'
import type { PipelineHistory } from '../../coordinator/pipeline-history.ts'
import type { Build, Pipeline, PipelineSource } from '../../grid/build.ts'
import { MAX_PIPELINE_FILE_BYTES } from '../../grid/constants.ts'

const SRC = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
const TAR = 'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
const FILE = 'bafkreif7ofpwr2jbnhyhmz3iyvdqz2ak7tonu7lbm2atdmzhbqlbdqykla'
const COMMIT = 'a'.repeat(40)
const API: PipelineSource = { repo: null, url: '', trigger: 'api' }

/** Two jobs: build keeps out.txt, test needs build (and gets its artifact). */
const TWO_JOBS = `
jobs:
  build:
    steps: [ { run: "echo hi > out.txt" } ]
    artifacts: [ out.txt ]
  test:
    needs: [ build ]
    steps: [ { run: "cat out.txt" } ]
`

/** A job, then a 2-combination matrix after it, then one more after that, only on main. */
const MATRIX = `
jobs:
  build:
    steps: [ { run: make } ]
  test:
    needs: [ { job: build, artifacts: false } ]
    matrix: { cc: [ gcc, clang ] }
    steps: [ { run: "make CC=\${{ matrix.cc }} test" } ]
  package:
    needs: [ test ]
    branches: [ main ]
    steps: [ { run: "make dist" } ]
`

interface Ctx {
  scheduler: Scheduler
  builds: MemoryHistory
  history: PipelineHistory
  pipelines: Pipelines
  link: StubLink
  files: Map<string, string | Error>
  reads: Array<{ cid: string, maxBytes: number }>
  events: Pipeline[]
}

const all: Pipelines[] = []

function pipelinesFor (ctx: Pick<Ctx, 'scheduler' | 'history' | 'files' | 'reads'>): Pipelines {
  const pipelines = new Pipelines({
    scheduler: ctx.scheduler,
    history: ctx.history,
    readFile: async (cid, maxBytes) => {
      ctx.reads.push({ cid, maxBytes })
      const file = ctx.files.get(cid)
      if (file === undefined) throw new Error(`no peer holds ${cid}`)
      if (file instanceof Error) throw file
      return new TextEncoder().encode(file)
    }
  }, { fileRetryMs: 1 })
  all.push(pipelines)
  return pipelines
}

async function fresh (): Promise<Ctx> {
  const builds = new MemoryHistory()
  const { scheduler: s } = scheduler({ history: builds })
  const parts = { scheduler: s, builds, history: new MemoryPipelineHistory(), link: new StubLink({ os: 'linux', git: '2.39.5' }, 4), files: new Map(), reads: [], events: [] }
  const ctx: Ctx = { ...parts, pipelines: pipelinesFor(parts) }
  await ctx.pipelines.start()
  ctx.pipelines.onPipeline(p => ctx.events.push(structuredClone(p)))
  return ctx
}

async function stopEverything (): Promise<void> {
  for (const p of all.splice(0)) await p.stop()
  stopAll()
}

const build = async (ctx: Ctx, id: string | undefined): Promise<Build> => {
  assert.ok(id !== undefined, 'the job has a build')
  const found = await ctx.scheduler.get(id)
  assert.ok(found !== undefined, `build ${id} exists`)
  return found
}

/** The worker's assignment of a build: its attempt id. */
function attemptOf (ctx: Ctx, buildId: string | undefined): string {
  const assignment = ctx.link.assigned.find(a => a.build === buildId)
  assert.ok(assignment !== undefined, `build ${buildId} was assigned`)
  return assignment.attempt
}

/** The worker reports an attempt that succeeded and kept `artifacts` (path → CID). */
function succeedWith (ctx: Ctx, buildId: string | undefined, artifacts: Record<string, string> = {}, sizes: Record<string, number> = {}): void {
  const attempt = attemptOf(ctx, buildId)
  ctx.scheduler.stepFinished(ctx.link, attempt, 0, 0)
  ctx.scheduler.attemptFinished(ctx.link, attempt, 'succeeded', Object.entries(artifacts).map(([path, cid]) => ({ path, cid, size: sizes[path] ?? 10, sha256: '0'.repeat(64) })))
}

const create = suite<Ctx>('pipelines: a file planned into builds')
create.before.each(async ctx => { Object.assign(ctx, await fresh()) })
create.after.each(stopEverything)

create('every planned build is submitted in order, after the builds of its needs, with the src, the pipeline and its name', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: MATRIX, src: SRC, source: { ...API, ref: 'refs/heads/main' } })
  assert.is(pipeline.status, 'queued')
  assert.equal(pipeline.source, { ...API, ref: 'refs/heads/main' })
  assert.is(pipeline.src, SRC)
  assert.equal(pipeline.jobs.map(j => [j.name, j.job, j.needs, j.status]), [
    ['build', 'build', [], 'queued'],
    ['test (cc=gcc)', 'test', ['build'], 'queued'],
    ['test (cc=clang)', 'test', ['build'], 'queued'],
    ['package', 'package', ['test (cc=gcc)', 'test (cc=clang)'], 'queued']
  ])
  const [b, gcc, clang, pkg] = await Promise.all(pipeline.jobs.map(async j => await build(ctx, j.build)))
  for (const [one, name] of [[b, 'build'], [gcc, 'test (cc=gcc)'], [clang, 'test (cc=clang)'], [pkg, 'package']] as const) {
    assert.is(one.pipeline, pipeline.id)
    assert.is(one.jobName, name)
    assert.is(one.job.src, SRC)
  }
  assert.is(b.job.after, undefined, 'the first job runs after nothing')
  assert.equal(gcc.job.after, [{ build: b.id, artifacts: false }])
  assert.equal(clang.job.after, [{ build: b.id, artifacts: false }])
  assert.equal(pkg.job.after, [{ build: gcc.id, artifacts: true }, { build: clang.id, artifacts: true }])
  assert.is(gcc.job.steps[0].run, 'make CC=gcc test')
  assert.equal(await ctx.pipelines.get(pipeline.id), pipeline)
  assert.equal((await ctx.pipelines.list(10)).map(p => p.id), [pipeline.id])
  assert.is(ctx.events.at(-1)?.id, pipeline.id, 'its creation is told')
  assert.ok(ctx.events.length <= 2, `queueing four builds makes few events, not one per build (${ctx.events.length})`)
})

create('the branch is the ref without refs/heads/: a job for main only is left out on dev; no ref leaves nothing out', async ctx => {
  const dev = await ctx.pipelines.create({ file: MATRIX, src: SRC, source: { ...API, ref: 'refs/heads/dev' } })
  assert.equal(dev.jobs.map(j => j.name), ['build', 'test (cc=gcc)', 'test (cc=clang)'])
  const none = await ctx.pipelines.create({ file: MATRIX, src: SRC, source: API })
  assert.equal(none.jobs.map(j => j.name), ['build', 'test (cc=gcc)', 'test (cc=clang)', 'package'])
})

create('a file whose every job is left out by branches: the pipeline succeeded at once, with no build', async ctx => {
  const before = ctx.builds.builds.size
  const pipeline = await ctx.pipelines.create({ file: 'jobs: { only: { branches: [ main ], steps: [ { run: "true" } ] } }', src: SRC, source: { ...API, ref: 'refs/heads/dev' } })
  assert.is(pipeline.status, 'succeeded')
  assert.equal(pipeline.jobs, [])
  assert.ok(pipeline.finished !== undefined)
  assert.is(ctx.builds.builds.size, before)
  assert.is((await ctx.history.get(pipeline.id))?.status, 'succeeded')
})

create('a file given as an object is planned as the same text would be', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: { jobs: { one: { steps: [{ run: 'true' }] } } }, src: SRC, source: API })
  assert.equal(pipeline.jobs.map(j => j.name), ['one'])
})

create('a bad file is refused with a PipelineFileError (400) naming job, key and line, and nothing is created', async ctx => {
  for (const [file, pattern] of [
    ['jobs:\n  build:\n    steps: [ { run: make } ]\n  test:\n    needs: [ biuld ]\n    steps: [ { run: "make test" } ]\n', /jobs\.test\.needs\.0: .*biuld.*line 5/],
    ['jobs:\n  build:\n    stepz: [ { run: make } ]\n', /jobs\.build\.stepz.*line 3/],
    ['jobs: [ nope', /line/]
  ] as const) {
    const err = await rejection(ctx.pipelines.create({ file, src: SRC, source: API }))
    assert.is(err.name, 'PipelineFileError')
    assert.is((err as any).status, 400)
    assert.match(err.message, pattern)
  }
  assert.equal(await ctx.pipelines.list(10), [])
  assert.is(ctx.builds.builds.size, 0, 'no build was queued')
  assert.equal(ctx.events, [])
})

create('a bad source or a job naming a build the grid never had is refused before anything is created', async ctx => {
  const short = await rejection(ctx.pipelines.create({ file: TWO_JOBS, src: SRC, source: { ...API, commit: 'abc123' } }))
  assert.is(short.name, 'InvalidPipelineSourceError')
  assert.match(short.message, /commit must be a full commit id/)
  const control = await rejection(ctx.pipelines.create({ file: TWO_JOBS, src: SRC, source: { ...API, ref: 'refs/heads/a\nb' } }))
  assert.is(control.name, 'InvalidPipelineSourceError')
  const input = await rejection(ctx.pipelines.create({
    file: { jobs: { one: { inputs: { 'x.txt': 'build:0000000000000000/x.txt' }, steps: [{ run: 'cat x.txt' }] } } }, src: SRC, source: API
  }))
  assert.is(input.name, 'InvalidJobError')
  assert.match(input.message, /^jobs\.one\.inputs\.x\.txt: there is no build 0000000000000000/)
  const badSrc = await rejection(ctx.pipelines.create({ file: TWO_JOBS, src: 'not-a-cid', source: API }))
  assert.is(badSrc.name, 'PipelineFileError')
  assert.equal(await ctx.pipelines.list(10), [])
  assert.is(ctx.builds.builds.size, 0)
})

const flow = suite<Ctx>('pipelines: the status follows the builds')
flow.before.each(async ctx => { Object.assign(ctx, await fresh()) })
flow.after.each(stopEverything)

flow('queued, running once a build runs, succeeded once all succeeded; each change told', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: TWO_JOBS, src: SRC, source: API })
  assert.is(pipeline.status, 'queued')
  assert.is(pipeline.started, undefined)
  ctx.scheduler.workerJoined(ctx.link)
  assert.is(pipeline.status, 'running')
  assert.ok(pipeline.started !== undefined)
  assert.equal(pipeline.jobs.map(j => j.status), ['running', 'queued'])
  assert.equal(ctx.link.assigned.map(a => a.build), [pipeline.jobs[0].build], 'test waits for build')
  succeedWith(ctx, pipeline.jobs[0].build, { 'out.txt': FILE })
  assert.equal(pipeline.jobs.map(j => j.status), ['succeeded', 'running'])
  const assigned = ctx.link.assigned.find(a => a.build === pipeline.jobs[1].build)
  assert.equal(assigned?.job.inputs, { 'out.txt': `build:${pipeline.jobs[0].build}/out.txt` }, 'build\'s artifact is placed in test\'s work dir')
  assert.is(pipeline.status, 'running')
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, pipeline.jobs[1].build))
  assert.is(pipeline.status, 'succeeded')
  assert.ok(pipeline.finished !== undefined && pipeline.finished >= pipeline.started!)
  const statuses = ctx.events.filter(e => e.id === pipeline.id).map(e => e.status)
  assert.equal([...new Set(statuses)], ['queued', 'running', 'succeeded'])
  await until(async () => (await ctx.history.get(pipeline.id))?.status === 'succeeded', 'the pipeline kept as succeeded')
  assert.equal((await ctx.history.active()).map(p => p.id), [])
})

flow('a failed build skips the builds after it, which never run, and the pipeline fails', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: MATRIX, src: SRC, source: API })
  ctx.scheduler.workerJoined(ctx.link)
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, pipeline.jobs[0].build), 'failed')
  assert.equal(pipeline.jobs.map(j => j.status), ['failed', 'skipped', 'skipped', 'skipped'])
  assert.is(pipeline.status, 'failed')
  assert.is(pipeline.error, undefined, 'its jobs decided it')
  assert.equal(ctx.link.assigned.map(a => a.build), [pipeline.jobs[0].build], 'no skipped build reached a worker')
  for (const job of pipeline.jobs.slice(1)) {
    const skipped = await build(ctx, job.build)
    assert.equal(skipped.attempts, [])
    assert.match(skipped.error ?? '', /skipped: /)
  }
})

flow('one matrix combination failing fails the pipeline once every build ended, the others still run', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: MATRIX, src: SRC, source: { ...API, ref: 'refs/heads/dev' } })
  ctx.scheduler.workerJoined(ctx.link)
  succeedWith(ctx, pipeline.jobs[0].build)
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, pipeline.jobs[1].build), 'failed')
  assert.is(pipeline.status, 'running', 'test (cc=clang) still runs')
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, pipeline.jobs[2].build))
  assert.equal(pipeline.jobs.map(j => j.status), ['succeeded', 'failed', 'succeeded'])
  assert.is(pipeline.status, 'failed')
})

flow('cancel: every unfinished build is cancelled (the later ones too, not skipped), the pipeline ends cancelled; a second cancel is a 409', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: MATRIX, src: SRC, source: API })
  ctx.scheduler.workerJoined(ctx.link)
  assert.is(pipeline.jobs[0].status, 'running')
  const cancelled = await ctx.pipelines.cancel(pipeline.id, 'a test')
  assert.is(cancelled.status, 'cancelled')
  assert.ok(cancelled.finished !== undefined)
  assert.equal(cancelled.jobs.map(j => j.status), ['cancelled', 'cancelled', 'cancelled', 'cancelled'])
  assert.equal(ctx.link.cancelled.map(c => c.attempt), [attemptOf(ctx, pipeline.jobs[0].build)], 'the running build\'s worker was told')
  assert.match((await build(ctx, pipeline.jobs[0].build)).error ?? '', /cancelled by a test/)
  const again = await rejection(ctx.pipelines.cancel(pipeline.id))
  assert.is(again.name, 'PipelineFinishedError')
  assert.is((again as any).status, 409)
  const unknown = await rejection(ctx.pipelines.cancel('000000000aaaaaaaa'))
  assert.is(unknown.name, 'UnknownPipelineError')
  assert.is((unknown as any).status, 404)
  assert.is((await ctx.history.get(pipeline.id))?.status, 'cancelled')
  assert.is(ctx.events.at(-1)?.status, 'cancelled')
})

flow('a finished pipeline cannot be cancelled', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: { jobs: { one: { steps: [{ run: 'true' }] } } }, src: SRC, source: API })
  ctx.scheduler.workerJoined(ctx.link)
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, pipeline.jobs[0].build))
  assert.is(pipeline.status, 'succeeded')
  assert.is((await rejection(ctx.pipelines.cancel(pipeline.id))).name, 'PipelineFinishedError')
})

flow('list is newest first and bounded; get of an unknown id is undefined', async ctx => {
  const ids: string[] = []
  for (let i = 0; i < 3; i++) ids.push((await ctx.pipelines.create({ file: TWO_JOBS, src: SRC, source: API })).id)
  assert.equal((await ctx.pipelines.list(2)).map(p => p.id), [ids[2], ids[1]])
  assert.is(await ctx.pipelines.get('000000000aaaaaaaa'), undefined)
})

const commit = suite<Ctx>('pipelines: from a commit, its checkout first')
commit.before.each(async ctx => { Object.assign(ctx, await fresh()) })
commit.after.each(stopEverything)

const push = { repo: 'repo1', url: 'https://git.example/acme/widget.git', ref: 'refs/heads/main', commit: COMMIT, trigger: 'push' } as const

commit('the pipeline is created at once with its checkout queued: git required, the source in the environment, the tar and the file kept', async ctx => {
  const pipeline = await ctx.pipelines.fromCommit(push)
  assert.is(pipeline.status, 'queued')
  assert.equal(pipeline.jobs, [])
  assert.equal(pipeline.source, { repo: 'repo1', url: push.url, ref: push.ref, commit: COMMIT, trigger: 'push' })
  const checkout = await build(ctx, pipeline.checkout)
  assert.is(checkout.pipeline, pipeline.id)
  assert.is(checkout.jobName, CHECKOUT_JOB)
  assert.equal(checkout.job.requires, { git: '*' })
  assert.equal(checkout.job.env, { GRID_REPO_URL: push.url, GRID_REF: push.ref, GRID_COMMIT: COMMIT, GIT_TERMINAL_PROMPT: '0' })
  assert.equal(checkout.job.artifacts, [CHECKOUT_TAR, CHECKOUT_FILE])
  assert.is((await ctx.history.get(pipeline.id))?.checkout, checkout.id, 'kept with its checkout')
})

commit('the checkout succeeds: src is the tar, the file is read by its CID within the limit and planned into the same pipeline', async ctx => {
  ctx.files.set(FILE, MATRIX)
  const pipeline = await ctx.pipelines.fromCommit(push)
  ctx.scheduler.workerJoined(ctx.link)
  assert.is(pipeline.status, 'running', 'the checkout runs')
  succeedWith(ctx, pipeline.checkout, { [CHECKOUT_TAR]: TAR, [CHECKOUT_FILE]: FILE })
  await until(() => pipeline.jobs.length > 0, 'the jobs planned')
  assert.equal(ctx.reads, [{ cid: FILE, maxBytes: MAX_PIPELINE_FILE_BYTES }])
  assert.is(pipeline.src, TAR)
  assert.equal(pipeline.jobs.map(j => j.name), ['build', 'test (cc=gcc)', 'test (cc=clang)', 'package'])
  for (const job of pipeline.jobs) {
    const one = await build(ctx, job.build)
    assert.is(one.job.src, TAR)
    assert.is(one.pipeline, pipeline.id)
    assert.not.ok(one.job.after?.some(a => a.build === pipeline.checkout), 'jobs get the tree as src, not the checkout\'s artifacts')
  }
  assert.is(pipeline.status, 'running')
  succeedWith(ctx, pipeline.jobs[0].build)
  for (const job of pipeline.jobs.slice(1, 3)) succeedWith(ctx, job.build)
  succeedWith(ctx, pipeline.jobs[3].build)
  assert.is(pipeline.status, 'succeeded')
})

commit('a job of the file may be called checkout: it is a job like the others', async ctx => {
  ctx.files.set(FILE, 'jobs: { checkout: { steps: [ { run: "true" } ] } }')
  const pipeline = await ctx.pipelines.fromCommit(push)
  ctx.scheduler.workerJoined(ctx.link)
  const checkoutId = pipeline.checkout
  succeedWith(ctx, checkoutId, { [CHECKOUT_TAR]: TAR, [CHECKOUT_FILE]: FILE })
  await until(() => pipeline.jobs.length > 0, 'the jobs planned')
  assert.is(pipeline.checkout, checkoutId)
  assert.ok(pipeline.jobs[0].build !== checkoutId)
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, pipeline.jobs[0].build))
  assert.is(pipeline.status, 'succeeded')
})

commit('a bad .grid.yml ends the pipeline failed, its error naming job, key and line; nothing is queued', async ctx => {
  ctx.files.set(FILE, 'jobs:\n  build:\n    steps: [ { run: make } ]\n  test:\n    needs: [ biuld ]\n    steps: [ { run: "make test" } ]\n')
  const pipeline = await ctx.pipelines.fromCommit(push)
  ctx.scheduler.workerJoined(ctx.link)
  succeedWith(ctx, pipeline.checkout, { [CHECKOUT_TAR]: TAR, [CHECKOUT_FILE]: FILE })
  await until(() => pipeline.status === 'failed', 'the pipeline failed')
  assert.match(pipeline.error ?? '', /^\.grid\.yml of commit aaaaaaaaaaaa: jobs\.test\.needs\.0: .*biuld.*line 5/)
  assert.equal(pipeline.jobs, [])
  assert.is(ctx.link.assigned.length, 1, 'only the checkout ran')
  await until(async () => (await ctx.history.get(pipeline.id))?.status === 'failed', 'kept as failed')
})

commit('a checkout that fails ends the pipeline failed saying why: no .grid.yml, a failed fetch, a lost worker', async ctx => {
  ctx.scheduler.workerJoined(ctx.link)
  const noFile = await ctx.pipelines.fromCommit(push)
  const attempt = attemptOf(ctx, noFile.checkout)
  ctx.scheduler.stepFinished(ctx.link, attempt, 0, 3)
  ctx.scheduler.attemptFinished(ctx.link, attempt, 'failed')
  assert.is(noFile.status, 'failed')
  assert.is(noFile.error, 'commit aaaaaaaaaaaa has no .grid.yml at its root')

  const noFetch = await ctx.pipelines.fromCommit(push)
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, noFetch.checkout), 'failed')
  assert.is(noFetch.status, 'failed')
  assert.is(noFetch.error, `could not fetch commit aaaaaaaaaaaa from ${push.url} (the log of build ${noFetch.checkout} says why)`)

  const timedOut = await ctx.pipelines.fromCommit(push)
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, timedOut.checkout), 'timeout')
  assert.is(timedOut.status, 'failed')
  assert.match(timedOut.error ?? '', new RegExp(`^its checkout \\(build ${timedOut.checkout}\\) ended timeout`))
})

commit('a file that cannot be read is retried, then the pipeline fails saying why; a file too large is not retried', async ctx => {
  ctx.scheduler.workerJoined(ctx.link)
  const unreadable = await ctx.pipelines.fromCommit(push)
  succeedWith(ctx, unreadable.checkout, { [CHECKOUT_TAR]: TAR, [CHECKOUT_FILE]: FILE })
  await until(() => unreadable.status === 'failed', 'the pipeline failed')
  assert.is(ctx.reads.length, FILE_READ_ATTEMPTS)
  assert.is(unreadable.error, `could not read .grid.yml of commit aaaaaaaaaaaa (${FILE}): no peer holds ${FILE}`)

  ctx.reads.length = 0
  ctx.files.set(FILE, new PipelineFileTooLargeError('it is more than 262144 bytes'))
  const large = await ctx.pipelines.fromCommit(push)
  succeedWith(ctx, large.checkout, { [CHECKOUT_TAR]: TAR, [CHECKOUT_FILE]: FILE })
  await until(() => large.status === 'failed', 'the pipeline failed')
  assert.is(ctx.reads.length, 1)

  ctx.reads.length = 0
  const huge = await ctx.pipelines.fromCommit(push)
  succeedWith(ctx, huge.checkout, { [CHECKOUT_TAR]: TAR, [CHECKOUT_FILE]: FILE }, { [CHECKOUT_FILE]: MAX_PIPELINE_FILE_BYTES + 1 })
  await until(() => huge.status === 'failed', 'the pipeline failed')
  assert.match(huge.error ?? '', /is 262145 bytes; a pipeline file is at most 262144 bytes/)
  assert.is(ctx.reads.length, 0, 'a file recorded as too large is not read')
})

commit('a file that becomes readable on a later try is planned', async ctx => {
  ctx.scheduler.workerJoined(ctx.link)
  const pipeline = await ctx.pipelines.fromCommit(push)
  succeedWith(ctx, pipeline.checkout, { [CHECKOUT_TAR]: TAR, [CHECKOUT_FILE]: FILE })
  await until(() => ctx.reads.length === 1, 'the first read')
  ctx.files.set(FILE, TWO_JOBS)
  await until(() => pipeline.jobs.length === 2, 'the jobs planned')
  assert.is(pipeline.status, 'running')
})

commit('cancelling while the checkout runs cancels it; nothing else is ever queued', async ctx => {
  ctx.files.set(FILE, TWO_JOBS)
  ctx.scheduler.workerJoined(ctx.link)
  const pipeline = await ctx.pipelines.fromCommit(push)
  const cancelled = await ctx.pipelines.cancel(pipeline.id)
  assert.is(cancelled.status, 'cancelled')
  assert.is((await build(ctx, pipeline.checkout)).status, 'cancelled')
  assert.equal(pipeline.jobs, [])
  assert.is(ctx.builds.builds.size, 1)
})

commit('a bad source is refused before anything is created', async ctx => {
  for (const [init, pattern] of [
    [{ ...push, commit: 'abc' }, /commit must be a full commit id/],
    [{ ...push, url: '--upload-pack=evil' }, /url may not start with "-"/],
    [{ ...push, ref: 'refs/heads/\u0000' }, /control character/],
    [{ ...push, url: 'x'.repeat(3000) }, /at most 2000 characters/]
  ] as const) {
    const err = await rejection(ctx.pipelines.fromCommit(init))
    assert.is(err.name, 'InvalidPipelineSourceError')
    assert.match(err.message, pattern)
  }
  assert.equal(await ctx.pipelines.list(10), [])
  assert.is(ctx.builds.builds.size, 0)
})

const restart = suite<Ctx>('pipelines: a coordinator restart')
restart.before.each(async ctx => { Object.assign(ctx, await fresh()) })
restart.after.each(stopEverything)

restart('pipelines are reloaded and their statuses recomputed from builds that ended while they were away', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: TWO_JOBS, src: SRC, source: API })
  ctx.scheduler.workerJoined(ctx.link)
  await ctx.pipelines.stop()
  succeedWith(ctx, pipeline.jobs[0].build, { 'out.txt': FILE })
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, pipeline.jobs[1].build))
  const again = pipelinesFor(ctx)
  await again.start()
  const reloaded = await again.get(pipeline.id)
  assert.is(reloaded?.status, 'succeeded')
  assert.equal(reloaded?.jobs.map(j => j.status), ['succeeded', 'succeeded'])
  assert.ok(reloaded?.started !== undefined && reloaded.finished !== undefined)
  assert.is((await ctx.history.get(pipeline.id))?.status, 'succeeded')
})

restart('an unfinished pipeline goes on following its builds after the restart', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: TWO_JOBS, src: SRC, source: API })
  await ctx.pipelines.stop()
  const again = pipelinesFor(ctx)
  await again.start()
  const reloaded = await again.get(pipeline.id)
  assert.is(reloaded?.status, 'queued')
  ctx.scheduler.workerJoined(ctx.link)
  assert.is(reloaded?.status, 'running')
  succeedWith(ctx, pipeline.jobs[0].build, { 'out.txt': FILE })
  finishAttempt(ctx.scheduler, ctx.link, attemptOf(ctx, pipeline.jobs[1].build), 'failed')
  assert.is(reloaded?.status, 'failed')
})

restart('a checkout that finished while the coordinator was away is picked up: the file is read and the jobs queued', async ctx => {
  ctx.files.set(FILE, TWO_JOBS)
  ctx.scheduler.workerJoined(ctx.link)
  const pipeline = await ctx.pipelines.fromCommit(push)
  await ctx.pipelines.stop()
  succeedWith(ctx, pipeline.checkout, { [CHECKOUT_TAR]: TAR, [CHECKOUT_FILE]: FILE })
  assert.equal(ctx.reads, [], 'nothing acted while it was away')
  const again = pipelinesFor(ctx)
  await again.start()
  const reloaded = (await again.get(pipeline.id))!
  await until(() => reloaded.jobs.length === 2, 'the jobs planned')
  assert.is(reloaded.src, TAR)
  assert.is((await build(ctx, reloaded.jobs[0].build)).job.src, TAR)
  assert.is(reloaded.status, 'running')
})

restart('a pipeline kept before its checkout was queued gets its checkout on start', async ctx => {
  const kept: Pipeline = { id: '0000000001aaaaaaa', status: 'queued', source: { ...push }, created: new Date().toISOString(), jobs: [] }
  await ctx.history.save(kept)
  const again = pipelinesFor(ctx)
  await again.start()
  const reloaded = (await again.get(kept.id))!
  const checkout = await build(ctx, reloaded.checkout)
  assert.is(checkout.jobName, CHECKOUT_JOB)
  assert.is(checkout.pipeline, kept.id)
})

restart('a pipeline stopped halfway through queueing its builds fails saying so, and its queued builds are cancelled', async ctx => {
  const pipeline = await ctx.pipelines.create({ file: TWO_JOBS, src: SRC, source: API })
  await ctx.pipelines.stop()
  const half = structuredClone(pipeline)
  delete half.jobs[1].build
  await ctx.history.save(half)
  const again = pipelinesFor(ctx)
  await again.start()
  const reloaded = (await again.get(pipeline.id))!
  assert.is(reloaded.status, 'failed')
  assert.match(reloaded.error ?? '', /stopped while it queued the builds/)
  assert.equal(reloaded.jobs.map(j => j.status), ['cancelled', 'skipped'])
  assert.is((await build(ctx, pipeline.jobs[0].build)).status, 'cancelled')
})

const status = suite('pipelines: pipelineStatus')

status('queued until a build started, running until every job ended, then succeeded only if all did', () => {
  const job = (s: Build['status']): Pipeline['jobs'][number] => ({ name: s, job: s, needs: [], status: s })
  assert.is(pipelineStatus({ jobs: [] }), 'queued', 'a checkout still to run')
  assert.is(pipelineStatus({ jobs: [], started: 'x' }), 'running', 'a checkout ran, its file being planned')
  assert.is(pipelineStatus({ jobs: [job('queued')] }), 'queued')
  assert.is(pipelineStatus({ jobs: [job('succeeded'), job('queued')], started: 'x' }), 'running')
  assert.is(pipelineStatus({ jobs: [job('succeeded'), job('succeeded')], started: 'x' }), 'succeeded')
  for (const other of ['failed', 'skipped', 'timeout', 'lost', 'cancelled'] as const) {
    assert.is(pipelineStatus({ jobs: [job('succeeded'), job(other)], started: 'x' }), 'failed', other)
  }
})

create.run()
flow.run()
commit.run()
restart.run()
status.run()

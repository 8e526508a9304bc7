// Trusted workers and where secrets go, end to end: a coordinator and store (in this process, with a stand-in secret
// store), and real `grid worker` processes joined with the trusted code, with the ordinary code, and with the
// ordinary code claiming `--cap trusted=yes`. A job with secrets only ever runs on the trusted one and its steps see
// the value; builds from the ordinary code never run there; rotating the trusted code cuts the trusted worker off
// (it comes back untrusted); and afterwards no file under any node's data dir, no HTTP answer, no event and no
// metric holds the value.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { grid, gridRun, oneLineError, removeDir, startTestGrid, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess, TestGrid } from '../helpers.ts'
import { StubSecrets } from '../scheduler-fixtures.ts'
import { NO_TRUSTED_WORKER } from '../../coordinator/scheduler.ts'
import type { Capacity } from '../../coordinator/scheduler.ts'
import type { Build, Pipeline } from '../../grid/build.ts'
import { FINISHED, PIPELINE_FINISHED } from '../../grid/build.ts'
import { decodeJoinCode } from '../../net/join-code.ts'

/** Distinctive, so finding it anywhere means it leaked; made fresh for each run. */
const VALUE = `grid-secret-${randomBytes(16).toString('hex')}`
const VALUE_SHA256 = createHash('sha256').update(VALUE).digest('hex')

interface Ctx {
  dir: string
  g: TestGrid
  secrets: StubSecrets
  trusted: CliProcess
  member: CliProcess
  claimer: CliProcess
  peers: { trusted: string, member: string, claimer: string }
  /** Everything /api/events sent while the suite ran. */
  events: { text: string, stop: AbortController, done: Promise<void> }
  builds: string[]
}

const trust = suite<Ctx>('trusted workers and secrets')

const joinFile = (ctx: Ctx): string => join(ctx.g.dir, 'join')
const trustedFile = (ctx: Ctx): string => join(ctx.g.dir, 'join-trusted')

/** A `grid worker` process; resolves with it and its peer ID once it joined. */
async function worker (ctx: Ctx, name: string, code: string, caps: string[]): Promise<{ p: CliProcess, peer: string }> {
  const p = grid(['worker', '--join', code, '--data', join(ctx.dir, name), '--listen', 'none', ...caps.flatMap(c => ['--cap', c])])
  const peer = (await p.line(/worker (12D3KooW\w+) joined the grid/, 30_000))[1]
  return { p, peer }
}

async function build (ctx: Ctx, id: string): Promise<Build> {
  return await (await ctx.g.api(`/api/builds/${id}`)).json() as Build
}

async function capacity (ctx: Ctx): Promise<Capacity> {
  return await (await ctx.g.api('/api/capacity')).json() as Capacity
}

async function submit (ctx: Ctx, job: unknown): Promise<string> {
  const id = await ctx.g.submit(job)
  ctx.builds.push(id)
  return id
}

/** A step that succeeds only if DEPLOY_TOKEN holds the secret's value (compared by hash: the job never holds it). */
const CHECK_VALUE = `test "$(printf %s "$DEPLOY_TOKEN" | sha256sum | cut -c1-64)" = ${VALUE_SHA256} && echo "the step sees it: $DEPLOY_TOKEN"`

trust.before(async ctx => {
  ctx.dir = await tempDir('trust')
  ctx.builds = []
  ctx.secrets = new StubSecrets({ DEPLOY_TOKEN: VALUE })
  ctx.g = await startTestGrid({ workers: [], secrets: ctx.secrets })
  const stop = new AbortController()
  ctx.events = { text: '', stop, done: Promise.resolve() }
  const res = await ctx.g.api('/api/events', { signal: stop.signal })
  ctx.events.done = (async () => {
    const decoder = new TextDecoder()
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) ctx.events.text += decoder.decode(chunk, { stream: true })
    } catch {}
  })()
  const [t, m, c] = await Promise.all([
    worker(ctx, 'w-trusted', trustedFile(ctx), ['pool=same']),
    worker(ctx, 'w-member', joinFile(ctx), ['pool=same']),
    worker(ctx, 'w-claimer', joinFile(ctx), ['pool=claim', 'trusted=yes'])
  ])
  ctx.trusted = t.p
  ctx.member = m.p
  ctx.claimer = c.p
  ctx.peers = { trusted: t.peer, member: m.peer, claimer: c.peer }
  await waitFor('three workers in capacity', async () => (await capacity(ctx)).nodes === 3)
})

trust.after(async ctx => {
  ctx.events?.stop.abort()
  await ctx.events?.done
  for (const p of [ctx.trusted, ctx.member, ctx.claimer]) await p?.stop()
  await ctx.g?.stop()
  await removeDir(ctx.dir)
})

trust('the worker that joined with the trusted code is trusted; one claiming --cap trusted=yes is not', async ctx => {
  const groups = (await capacity(ctx)).groups
  const same = groups.find(g => g.capabilities.pool === 'same')
  const claim = groups.find(g => g.capabilities.pool === 'claim')
  assert.is(same?.nodes, 2)
  assert.is(same?.trusted, 1, 'the trusted code makes one of the two trusted')
  assert.is(claim?.capabilities.trusted, 'yes', 'its capability is there, as any capability')
  assert.is(claim?.trusted, 0, 'and means nothing')
  // A secret job it could run by its capabilities waits for a trusted worker instead.
  const id = await submit(ctx, { requires: { pool: 'claim' }, secrets: ['DEPLOY_TOKEN'], steps: [{ run: 'true' }] })
  const waiting = await waitFor('the secret job to say why it waits', async () => (await build(ctx, id)).waiting)
  assert.match(waiting, new RegExp(`^${NO_TRUSTED_WORKER} \\(none has pool=claim\\)$`))
  assert.is((await gridRun(['cancel', id, '--data', ctx.g.dir])).code, 0)
  // Requiring the capability gets that worker, recorded as untrusted.
  const plain = await ctx.g.finished(await submit(ctx, { requires: { trusted: 'yes' }, steps: [{ run: 'true' }] }))
  assert.is(plain.status, 'succeeded')
  assert.equal(plain.attempts.map(a => [a.worker, a.trusted]), [[ctx.peers.claimer, false]])
})

trust('a job with secrets only ever runs on the trusted worker, and its steps see the value over the job\'s env', async ctx => {
  const ids: string[] = []
  // Queued together, with the untrusted worker of the same capabilities idle all along.
  for (let i = 0; i < 4; i++) {
    ids.push(await submit(ctx, {
      requires: { pool: 'same' },
      secrets: ['DEPLOY_TOKEN'],
      env: { DEPLOY_TOKEN: 'from the job env' },
      steps: [{ run: `${CHECK_VALUE}; sleep 0.3` }]
    }))
  }
  for (const id of ids) {
    const done = await ctx.g.finished(id, 60_000)
    assert.is(done.status, 'succeeded', `${id}: ${done.error ?? ''}`)
    assert.equal(done.attempts.map(a => [a.worker, a.trusted]), [[ctx.peers.trusted, true]])
    assert.equal(done.job.secrets, ['DEPLOY_TOKEN'])
    const log = await (await ctx.g.api(`/api/builds/${id}/log`)).text()
    assert.match(log, /the step sees it: \*\*\*/, 'the value is masked in the log')
  }
})

trust('builds from a member with only the ordinary code never run on the trusted worker; the trusted code\'s may', async ctx => {
  const ids: string[] = []
  for (let i = 0; i < 3; i++) {
    const r = await gridRun(['submit', '--join', joinFile(ctx), '--run', 'sleep 0.3', '--require', 'pool=same'])
    assert.is(r.code, 0, r.stderr)
    ids.push(r.stdout.trim())
  }
  ctx.builds.push(...ids)
  for (const id of ids) {
    const done = await ctx.g.finished(id, 60_000)
    assert.is(done.status, 'succeeded')
    assert.is(done.untrusted, true)
    assert.equal(done.attempts.map(a => [a.worker, a.trusted]), [[ctx.peers.member, false]])
  }
  // A secret is refused to it at once, whatever the store holds.
  const jobFile = join(ctx.dir, 'secret-job.json')
  await writeFile(jobFile, JSON.stringify({ secrets: ['DEPLOY_TOKEN'], steps: [{ run: 'true' }] }))
  const refused = await gridRun(['submit', '--join', joinFile(ctx), jobFile])
  assert.is(refused.code, 0, refused.stderr)
  const failed = await build(ctx, refused.stdout.trim())
  assert.is(failed.status, 'failed')
  assert.is(failed.error, 'secret DEPLOY_TOKEN is not available to this build (it was submitted without the trusted join code)')
  assert.equal(failed.attempts, [])
  // A pipeline from `grid run` with the ordinary code: its builds are untrusted too.
  const tree = join(ctx.dir, 'tree')
  await mkdir(tree, { recursive: true })
  await writeFile(join(tree, '.grid.yml'), 'jobs:\n  one:\n    requires: { pool: same }\n    steps: [ { run: "true" } ]\n')
  const run = await gridRun(['run', '--join', joinFile(ctx), tree])
  assert.is(run.code, 0, run.stderr)
  const pipeline = await waitFor('the pipeline to finish', async () => {
    const p = await (await ctx.g.api(`/api/pipelines/${run.stdout.trim()}`)).json() as Pipeline
    return PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, 60_000)
  const one = await build(ctx, pipeline.jobs[0].build!)
  assert.is(one.untrusted, true)
  assert.equal(one.attempts.map(a => a.worker), [ctx.peers.member])
  // With the trusted code (the default beside the coordinator: DATA/join-trusted) a build is trusted.
  const trusted = await gridRun(['submit', '--data', ctx.g.dir, '--run', 'true', '--require', 'pool=same', '--follow'])
  assert.is(trusted.code, 0, trusted.stderr)
  const id = /^grid: build (\S+) queued$/m.exec(trusted.stderr)?.[1]
  assert.ok(id !== undefined, trusted.stderr)
  assert.is((await build(ctx, id)).untrusted, undefined)
})

trust('grid code prints each code; rotating the trusted one cuts the trusted worker, which comes back untrusted', async ctx => {
  const before = await gridRun(['code', '--trusted', '--data', ctx.g.dir])
  assert.is(before.code, 0, before.stderr)
  assert.is(before.stdout.trim(), (await readFile(trustedFile(ctx), 'utf8')).trim())
  const ordinary = await gridRun(['code', '--data', ctx.g.dir])
  assert.is(ordinary.stdout.trim(), (await readFile(joinFile(ctx), 'utf8')).trim())
  assert.is(decodeJoinCode(ordinary.stdout).trust, undefined)
  assert.ok(decodeJoinCode(before.stdout).trust !== undefined)

  const rotated = await gridRun(['rotate', '--trusted', '--data', ctx.g.dir])
  assert.is(rotated.code, 0, rotated.stderr)
  const next = /^join: (\S+)$/m.exec(rotated.stdout)?.[1]
  assert.ok(next !== undefined)
  assert.is.not(next, before.stdout.trim())
  assert.is((await readFile(trustedFile(ctx), 'utf8')).trim(), next)
  assert.is((await readFile(joinFile(ctx), 'utf8')).trim(), ordinary.stdout.trim(), 'the ordinary code stays')
  assert.equal(decodeJoinCode(next).secret, decodeJoinCode(ordinary.stdout).secret, 'same grid secret')

  await ctx.trusted.line(/this worker's trusted join code is not current: it joined untrusted/, 30_000)
  await waitFor('the old trusted worker back, untrusted', async () => {
    const same = (await capacity(ctx)).groups.find(g => g.capabilities.pool === 'same')
    return same?.nodes === 2 && same.trusted === 0
  })
  const id = await submit(ctx, { requires: { pool: 'same' }, secrets: ['DEPLOY_TOKEN'], steps: [{ run: CHECK_VALUE }] })
  assert.is(await waitFor('the secret job to wait', async () => (await build(ctx, id)).waiting), NO_TRUSTED_WORKER, 'only untrusted workers can take it now')
  const fresh = await worker(ctx, 'w-new', next, ['pool=same'])
  try {
    const done = await ctx.g.finished(id, 60_000)
    assert.is(done.status, 'succeeded', done.error)
    assert.equal(done.attempts.map(a => [a.worker, a.trusted]), [[fresh.peer, true]])
  } finally {
    await fresh.p.stop()
  }
  oneLineError(await gridRun(['code', '--trusted', '--data', join(ctx.dir, 'nowhere')]), /^grid: no join-trusted in /)
})

trust('no file under any node\'s data dir, no HTTP answer, event or metric holds the value', async ctx => {
  assert.ok(ctx.builds.length >= 8)
  for (const id of ctx.builds) await waitFor(`build ${id} to end`, async () => FINISHED.has((await build(ctx, id)).status))
  // Every worker process, so whatever they write on the way out is on disk too.
  for (const p of [ctx.trusted, ctx.member, ctx.claimer]) await p.stop()
  const answers = [
    await (await ctx.g.api('/api/builds?limit=1000')).text(),
    await (await ctx.g.api('/api/capacity')).text(),
    await (await ctx.g.api('/api/pipelines')).text(),
    await (await ctx.g.api('/metrics')).text()
  ]
  for (const id of ctx.builds) {
    answers.push(await (await ctx.g.api(`/api/builds/${id}`)).text())
    answers.push(await (await ctx.g.api(`/api/builds/${id}/log`)).text())
  }
  assert.ok(ctx.events.text.includes('DEPLOY_TOKEN'), 'the events did carry the secret builds')
  assert.ok(answers.join('').includes('DEPLOY_TOKEN'))
  for (const text of [...answers, ctx.events.text]) assert.not.ok(text.includes(VALUE), 'an answer holds the value')
  const needle = Buffer.from(VALUE)
  const files = [...await filesUnder(ctx.g.dir), ...await filesUnder(ctx.dir)]
  assert.ok(files.some(f => f.includes('coordinator.db')) && files.some(f => f.includes('w-trusted')), 'the grep covers coordinator, store and workers')
  const holding: string[] = []
  for (const file of files) if ((await readFile(file)).includes(needle)) holding.push(file)
  assert.equal(holding, [], 'no file holds the value in plaintext')
})

async function filesUnder (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])
  return entries.filter(e => e.isFile()).map(e => join(e.parentPath, e.name))
}

trust.run()

const local = suite('trust in one process (grid up)')

local('its own workers are trusted and stay so across both rotations; the codes are files of mode 0600', async () => {
  const secrets = new StubSecrets({ DEPLOY_TOKEN: VALUE })
  const g = await startTestGrid({ workers: [{}], secrets })
  try {
    const mode = async (file: string): Promise<number> => (await stat(join(g.dir, file))).mode & 0o777
    for (const file of ['trust', 'join-trusted', 'join']) assert.is(await mode(file), 0o600, file)
    const run = async (): Promise<Build> => await g.finished(await g.submit({ secrets: ['DEPLOY_TOKEN'], steps: [{ run: CHECK_VALUE }] }))
    const first = await run()
    assert.is(first.status, 'succeeded', first.error)
    assert.is(first.attempts[0].trusted, true)

    const codeBefore = (await readFile(join(g.dir, 'join-trusted'), 'utf8')).trim()
    const post = async (body?: string): Promise<Response> => await g.api('/api/secret/rotate', {
      method: 'POST', headers: { authorization: `Bearer ${g.token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body } : {})
    })
    const trusted = await post(JSON.stringify({ trusted: true }))
    assert.is(trusted.status, 200)
    const { join: next } = await trusted.json()
    assert.is(next, g.node.trustedJoinCode)
    assert.is.not(next, codeBefore)
    const afterTrusted = await run()
    assert.is(afterTrusted.status, 'succeeded', afterTrusted.error)
    assert.is(afterTrusted.attempts.at(-1)?.trusted, true, 'its own worker follows the new trust key')

    // The grid secret's rotation rewrites both codes; the trust key stays.
    const plain = await post()
    assert.is(plain.status, 200)
    const { join: ordinary } = await plain.json()
    const trustedNow = decodeJoinCode(await readFile(join(g.dir, 'join-trusted'), 'utf8'))
    assert.equal(trustedNow.secret, decodeJoinCode(ordinary).secret)
    assert.equal(trustedNow.trust, decodeJoinCode(next).trust)
    const afterBoth = await run()
    assert.is(afterBoth.status, 'succeeded', afterBoth.error)
    assert.is(afterBoth.attempts.at(-1)?.trusted, true)

    // Bad bodies change nothing.
    for (const body of ['{nope', '[]', '{"trusted": "yes"}', '{"trusted": true, "also": 1}']) {
      const res = await post(body)
      assert.is(res.status, 400, body)
      assert.ok(typeof (await res.json()).error === 'string')
    }
    assert.is((await post('x'.repeat(5_000))).status, 413)
    assert.is((await g.api('/api/secret/rotate', { method: 'POST', body: '{"trusted": true}' })).status, 401)
    assert.is((await readFile(join(g.dir, 'join-trusted'), 'utf8')).trim(), g.node.trustedJoinCode)
  } finally {
    await g.stop()
  }
})

local.run()

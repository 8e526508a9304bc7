// The commit-status poster (coordinator/commit-status.ts) with a stub fetch and a stub pipeline feed: pending then
// the final state, each once and in order; retries after a 500; a late pending never sent after the end; the token
// never in a log line.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { CommitStatus, STATUS_DESCRIPTION_CHARS, STATUS_POST_ATTEMPTS, commitState } from '../../coordinator/commit-status.ts'
import type { StatusTarget } from '../../coordinator/repos.ts'
import type { Pipeline } from '../../grid/build.ts'
import { waitFor } from '../wait.ts'

const TOKEN = 'ghp_status_token_never_logged_0123456789'
const SHA = 'c'.repeat(40)

interface Call { url: string, headers: Record<string, string>, body: any }

/** A fetch that answers with `answers` in turn (then 201), recording every call; `gate` holds an answer back until released. */
class StubForge {
  readonly calls: Call[] = []
  answers: Array<number | 'network' | { status: number, text: string }> = []
  gate: Promise<void> | undefined

  readonly fetch = (async (url: string, init: RequestInit): Promise<Response> => {
    this.calls.push({ url, headers: init.headers as Record<string, string>, body: JSON.parse(init.body as string) })
    if (this.gate !== undefined) await this.gate
    const answer = this.answers.shift() ?? 201
    if (answer === 'network') throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } })
    if (typeof answer === 'object') return new Response(answer.text, { status: answer.status })
    return new Response(JSON.stringify({ ok: answer < 300 }), { status: answer })
  }) as unknown as typeof fetch

  states (): string[] {
    return this.calls.map(c => c.body.state)
  }
}

class StubPipelines {
  listeners = new Set<(p: Pipeline) => void>()
  onPipeline (listener: (p: Pipeline) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  emit (p: Pipeline): void {
    for (const l of this.listeners) l(structuredClone(p))
  }
}

const target: StatusTarget = { kind: 'github', url: 'https://api.example.test', token: TOKEN, owner: 'acme', repo: 'widgets' }

function pipeline (status: Pipeline['status'], extra: Partial<Pipeline> = {}): Pipeline {
  return {
    id: 'pl0000000001',
    status,
    source: { repo: 'repo00000001', url: 'https://github.com/acme/widgets.git', ref: 'refs/heads/main', commit: SHA, trigger: 'push' },
    created: new Date(0).toISOString(),
    jobs: [],
    ...extra
  }
}

interface Ctx { forge: StubForge, feed: StubPipelines, poster: CommitStatus, logs: string[], targets: Map<string, StatusTarget> }

function fresh (web: string | null = 'http://grid.test:8080'): Ctx {
  const forge = new StubForge()
  const feed = new StubPipelines()
  const logs: string[] = []
  const targets = new Map([['repo00000001', target]])
  const poster = new CommitStatus({
    repos: { statusTarget: async id => targets.get(id) },
    pipelines: feed,
    webUrl: () => web ?? undefined,
    fetch: forge.fetch,
    log: line => logs.push(line),
    retryFirstMs: 1
  })
  poster.start()
  return { forge, feed, poster, logs, targets }
}

const posts = suite('CommitStatus: what is posted')

posts('pending when the pipeline starts, success when it ends: once each, to the statuses API with the token', async () => {
  const { forge, feed, poster, logs } = fresh()
  feed.emit(pipeline('queued'))
  feed.emit(pipeline('running'))
  feed.emit(pipeline('running', { jobs: [{ name: 'build', job: 'build', needs: [], status: 'running' }] }))
  feed.emit(pipeline('succeeded'))
  feed.emit(pipeline('succeeded'))
  await poster.idle()
  assert.equal(forge.states(), ['pending', 'success'])
  for (const call of forge.calls) {
    assert.is(call.url, `https://api.example.test/repos/acme/widgets/statuses/${SHA}`)
    assert.is(call.headers.authorization, `token ${TOKEN}`)
    assert.is(call.headers['content-type'], 'application/json')
    assert.is(call.body.context, 'grid')
    assert.is(call.body.target_url, 'http://grid.test:8080/pipelines/pl0000000001')
    assert.type(call.body.description, 'string')
  }
  assert.equal(logs, [])
  await poster.stop()
})

posts('failed is failure naming the failed jobs; cancelled is error "cancelled"; a pipeline error is the description', async () => {
  assert.equal(commitState(pipeline('failed', { jobs: [{ name: 'build', job: 'build', needs: [], status: 'succeeded' }, { name: 'test (cflags=-O2)', job: 'test', needs: ['build'], status: 'failed' }] })),
    { state: 'failure', description: 'failed: test (cflags=-O2)' })
  assert.equal(commitState(pipeline('cancelled')), { state: 'error', description: 'cancelled' })
  assert.equal(commitState(pipeline('failed', { error: 'commit cccc has no .grid.yml at its root' })).description, 'commit cccc has no .grid.yml at its root')
  assert.is(commitState(pipeline('failed', { error: 'x'.repeat(500) })).description.length, STATUS_DESCRIPTION_CHARS)
  const { forge, feed, poster } = fresh()
  feed.emit(pipeline('running'))
  feed.emit(pipeline('cancelled'))
  await poster.idle()
  assert.equal(forge.calls.map(c => [c.body.state, c.body.description]), [['pending', 'the pipeline is running'], ['error', 'cancelled']])
  await poster.stop()
})

posts('without a web URL target_url is left out', async () => {
  const { forge, feed, poster } = fresh(null)
  feed.emit(pipeline('succeeded'))
  await poster.idle()
  assert.is(forge.calls.length, 1)
  assert.not.ok('target_url' in forge.calls[0].body)
  await poster.stop()
})

posts('a pipeline with no repository, no commit, or a repository without a status target: nothing posted', async () => {
  const { forge, feed, poster, targets } = fresh()
  feed.emit(pipeline('running', { id: 'pl-norepo', source: { repo: null, url: '/dir', trigger: 'run' } }))
  feed.emit(pipeline('running', { id: 'pl-nocommit', source: { repo: 'repo00000001', url: 'x', trigger: 'api' } }))
  targets.clear()
  feed.emit(pipeline('succeeded', { id: 'pl-notarget' }))
  await poster.idle()
  assert.equal(forge.calls, [])
  await poster.stop()
})

const retries = suite('CommitStatus: failures')

retries('a 500 is retried, then the post goes through; nothing is logged', async () => {
  const { forge, feed, poster, logs } = fresh()
  forge.answers = [500, 502]
  feed.emit(pipeline('succeeded'))
  await poster.idle()
  assert.equal(forge.states(), ['success', 'success', 'success'])
  assert.equal(logs, [])
  await poster.stop()
})

retries('a post failing every time is tried STATUS_POST_ATTEMPTS times and logged once, without the token', async () => {
  const { forge, feed, poster, logs } = fresh()
  forge.answers = [...Array(STATUS_POST_ATTEMPTS - 1).fill('network'), { status: 503, text: `upstream echoed Authorization: token ${TOKEN}` }]
  feed.emit(pipeline('failed'))
  await poster.idle()
  assert.is(forge.calls.length, STATUS_POST_ATTEMPTS)
  assert.is(logs.length, 1)
  assert.match(logs[0], /failure.*pl0000000001.*not posted.*503/)
  assert.ok(logs.every(l => !l.includes(TOKEN)), 'the token is never logged')
  assert.match(logs[0], /\*\*\*/)
  await poster.stop()
})

retries('a 401 or 404 is not retried: logged once, without the token', async () => {
  const { forge, feed, poster, logs } = fresh()
  forge.answers = [{ status: 401, text: `{"message":"Bad credentials ${TOKEN}"}` }]
  feed.emit(pipeline('succeeded'))
  await poster.idle()
  assert.is(forge.calls.length, 1)
  assert.is(logs.length, 1)
  assert.match(logs[0], /401/)
  assert.not.ok(logs[0].includes(TOKEN))
  await poster.stop()
})

const order = suite('CommitStatus: order')

order('a pending arriving after the end is not sent', async () => {
  const { forge, feed, poster } = fresh()
  feed.emit(pipeline('succeeded'))
  feed.emit(pipeline('running'))
  feed.emit(pipeline('queued'))
  await poster.idle()
  assert.equal(forge.states(), ['success'])
  await poster.stop()
})

order('a pending still being posted when the end comes is followed by the end, never the other way round', async () => {
  const { forge, feed, poster } = fresh()
  let release!: () => void
  forge.gate = new Promise(resolve => { release = resolve })
  feed.emit(pipeline('running'))
  await waitFor('the pending post to be under way', () => forge.calls.length === 1)
  feed.emit(pipeline('failed'))
  // The end waits for the pending before it: nothing else is sent while that one hangs.
  await new Promise(resolve => setImmediate(resolve))
  assert.is(forge.calls.length, 1)
  forge.gate = undefined
  release()
  await poster.idle()
  assert.equal(forge.states(), ['pending', 'failure'])
  await poster.stop()
})

order('a pending being retried stops retrying once the pipeline ended, and the end is posted', async () => {
  const { forge, feed, poster } = fresh()
  let release!: () => void
  forge.gate = new Promise(resolve => { release = resolve })
  forge.answers = [500, 500, 500, 500, 500]
  feed.emit(pipeline('running'))
  await waitFor('the pending post to be under way', () => forge.calls.length === 1)
  feed.emit(pipeline('succeeded'))
  forge.gate = undefined
  forge.answers = [500, 500]
  release()
  await poster.idle()
  // The pending's first try (500), then no more pending: the success (retried once after its own 500).
  assert.equal(forge.states(), ['pending', 'success', 'success'])
  await poster.stop()
})

order('two pipelines post independently', async () => {
  const { forge, feed, poster } = fresh()
  feed.emit(pipeline('running', { id: 'pl-a' }))
  feed.emit(pipeline('running', { id: 'pl-b' }))
  feed.emit(pipeline('succeeded', { id: 'pl-b' }))
  feed.emit(pipeline('failed', { id: 'pl-a' }))
  await poster.idle()
  const byPipeline = (id: string): string[] => forge.calls.filter(c => c.body.target_url.endsWith(id)).map(c => c.body.state)
  assert.equal(byPipeline('pl-a'), ['pending', 'failure'])
  assert.equal(byPipeline('pl-b'), ['pending', 'success'])
  await poster.stop()
})

order('after stop() nothing more is posted', async () => {
  const { forge, feed, poster } = fresh()
  await poster.stop()
  feed.emit(pipeline('succeeded'))
  await poster.idle()
  assert.equal(forge.calls, [])
})

posts.run()
retries.run()
order.run()

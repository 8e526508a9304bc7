// Issue 18's "Must show", end to end on the grid's own secret store (no stand-in): a grid as `grid up` starts it
// (coordinator, store, HTTP API, one trusted worker of its own), a real `grid worker` process joined with the
// ordinary code that claims `--cap trusted=yes`, later a real trusted one, and a real bare git repository pushed to
// with GitHub webhooks. Secrets are set with `PUT /api/secrets/:name` and named by jobs in `"secrets"`.
//
// - A value printed whole, in two halves with a pause between them, across the 64 KiB batch marks, inside a 10 MB
//   line, as a multi-line PEM key, and traced by `set -x`: the live tails (the build's and the step's, both open
//   before the value is printed), the sealed log, the content its CID names and the build's whole log hold no 12
//   bytes in a row of it (nor of a line of the key), and `***` stands exactly where it was. (Masking is for logs: a
//   step can still write a secret into an artifact, which SECURITY.md says; no artifact is tried here.)
// - An untrusted worker with the capabilities a job needs never gets it while it has secrets.
// - A secret scoped to a repository and `main`: a push of main gets it, a push of dev and a lone build fail at once.
// - A value shorter than 4 characters is refused when set.
// - Afterwards no HTTP answer, event or metric, and no file under any node's data dir, holds a value.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { grid, removeDir, startTestGrid, tempDir } from '../helpers.ts'
import type { CliProcess, TestGrid } from '../helpers.ts'
import { waitFor, within } from '../wait.ts'
import { NO_TRUSTED_WORKER } from '../../coordinator/scheduler.ts'
import type { Capacity } from '../../coordinator/scheduler.ts'
import type { Build, Pipeline } from '../../grid/build.ts'
import { FINISHED, PIPELINE_FINISHED } from '../../grid/build.ts'
import { LOG_BATCH_BYTES } from '../../net/constants.ts'

// Fresh for each run and distinctive, so finding one anywhere means it leaked. base64url: no shell glob characters.
const TOKEN = `tok_${randomBytes(24).toString('base64url')}`
const PEM_LINES = [
  '-----BEGIN GRID TEST PRIVATE KEY-----',
  randomBytes(48).toString('base64'),
  randomBytes(48).toString('base64'),
  randomBytes(30).toString('base64'),
  '-----END GRID TEST PRIVATE KEY-----'
]
/** As a key file holds it: ending in a newline. */
const PEM = PEM_LINES.join('\n') + '\n'
const DEPLOY_KEY = `dk_${randomBytes(24).toString('base64url')}`
const DEPLOY_KEY_SHA256 = createHash('sha256').update(DEPLOY_KEY).digest('hex')
/** Where the split test cuts the token: the shell prints all but its last SPLIT_TAIL characters, pauses, then the rest. */
const SPLIT_TAIL = 14

/** Runs of this many bytes of a value (or a line of the key) that no log may hold: a leak of part of one counts. */
const FRAGMENT_BYTES = 12
function fragments (value: string): Buffer[] {
  const bytes = Buffer.from(value)
  const out: Buffer[] = []
  for (let i = 0; i + FRAGMENT_BYTES <= bytes.length; i++) out.push(bytes.subarray(i, i + FRAGMENT_BYTES))
  return out
}
const LOG_FRAGMENTS = [TOKEN, ...PEM_LINES, DEPLOY_KEY].flatMap(fragments)
/** What no answer and no file may hold: every value whole, each line of the key, and each half of the split token. */
const NEEDLES = [TOKEN, PEM, ...PEM_LINES, DEPLOY_KEY, TOKEN.slice(0, -SPLIT_TAIL), TOKEN.slice(-SPLIT_TAIL)]

/** A step or a build that never ends fails its test instead of hanging the file. */
const BUILD_BOUND_MS = 120_000
const HOOK_SECRET = 'hook-secret-of-the-secrets-test'

interface Worker { p: CliProcess, peer: string }

interface Ctx {
  /** Everything: the grid's data dir, the workers' dirs, the steps' gates, the git repositories. */
  dir: string
  g: TestGrid
  stopped: boolean
  /** The grid's own worker (trusted, as `grid up`'s). */
  trustedPeer: string
  /** `grid worker --join DATA/join --cap pool=x --cap trusted=yes`. */
  untrusted: Worker
  /** `grid worker --join DATA/join-trusted --cap pool=x`, started by the trust test. */
  late?: Worker
  /** Everything /api/events sent while the file ran. */
  events: { text: string, stop: AbortController, done: Promise<void> }
  /** Every build submitted here. */
  builds: string[]
  gates: number
  repo?: { id: string, hook: string, bare: string, work: string }
}

const e2e = suite<Ctx>('secrets end to end, on the grid\'s own secret store', {} as Ctx)

const authed = (g: TestGrid): Record<string, string> => ({ authorization: `Bearer ${g.token}`, 'content-type': 'application/json' })

async function putSecret (ctx: Ctx, name: string, body: unknown): Promise<{ status: number, json: any, text: string }> {
  const res = await ctx.g.api(`/api/secrets/${name}`, { method: 'PUT', headers: authed(ctx.g), body: JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, json: JSON.parse(text), text }
}

async function build (ctx: Ctx, id: string): Promise<Build> {
  return await (await ctx.g.api(`/api/builds/${id}`)).json() as Build
}

async function submit (ctx: Ctx, job: unknown): Promise<string> {
  const id = await ctx.g.submit(job)
  ctx.builds.push(id)
  return id
}

async function capacity (ctx: Ctx): Promise<Capacity> {
  return await (await ctx.g.api('/api/capacity')).json() as Capacity
}

/** A `grid worker` process; resolves once it joined, with its peer ID. */
async function startWorker (ctx: Ctx, name: string, joinFile: string, caps: string[]): Promise<Worker> {
  const p = grid(['worker', '--join', joinFile, '--data', join(ctx.dir, name), '--listen', 'none', ...caps.flatMap(c => ['--cap', c])])
  const peer = (await p.line(/worker (12D3KooW\w+) joined the grid/, 60_000))[1]
  return { p, peer }
}

/** A file a step waits for (polling, at most 60 s): the test makes it when it has seen what it wanted to. */
function gate (ctx: Ctx): string {
  return join(ctx.dir, 'gates', `go-${ctx.gates++}`)
}

/** Shell: wait for the file $1 to exist, at most 60 s. */
const WAIT_FOR = 'wait_for () { n=0; while [ ! -e "$1" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done; }'

interface Tail {
  bytes (): Buffer
  text (): string
  ended: Promise<void>
  stop: AbortController
}

/** A live read over HTTP: every byte as it arrives, until the answer ends. */
function tail (g: TestGrid, path: string): Tail {
  const chunks: Buffer[] = []
  const stop = new AbortController()
  const bytes = (): Buffer => {
    if (chunks.length > 1) chunks.splice(0, chunks.length, Buffer.concat(chunks))
    return chunks[0] ?? Buffer.alloc(0)
  }
  const ended = (async () => {
    const res = await g.api(path, { signal: stop.signal })
    assert.is(res.status, 200, path)
    const reader = res.body!.getReader()
    for (let read = await reader.read(); !read.done; read = await reader.read()) chunks.push(Buffer.from(read.value))
  })()
  ended.catch(() => {})
  return { bytes, text: () => bytes().toString('latin1'), ended, stop }
}

function assertNoFragment (what: string, bytes: Buffer): void {
  for (const fragment of LOG_FRAGMENTS) {
    const at = bytes.indexOf(fragment)
    if (at >= 0) assert.unreachable(`${what} holds ${FRAGMENT_BYTES} bytes of a secret at byte ${at}: ${bytes.subarray(Math.max(0, at - 20), at + 40).toString('latin1')}`)
  }
}

interface StepLog {
  build: Build
  /** The step's log read back once sealed. */
  sealed: Buffer
}

/**
 * Run `body` as the one step (`print`) of a build with both secrets ($DEPLOY_TOKEN, and $SIGNING_KEY: the PEM key),
 * after it printed `ready` and waited for the test (`wait_for FILE` is defined for `body` too): the build's live log
 * and the step's are followed from before the step prints a value. `during` runs once both tails hold `ready`, with the step's tail. Checks the build succeeded
 * on the grid's trusted worker, that both tails, the sealed log, the content its CID names and the whole build log
 * agree and hold no fragment of a value; resolves with the sealed log.
 */
async function secretStep (ctx: Ctx, body: string, init: { env?: Record<string, string>, during?: (step: Tail) => Promise<void> } = {}): Promise<StepLog> {
  const go = gate(ctx)
  const run = `${WAIT_FOR}\necho ready\nwait_for "$GO"\n${body}`
  const id = await submit(ctx, { name: 'secret output', secrets: ['DEPLOY_TOKEN', 'SIGNING_KEY'], env: { GO: go, ...init.env }, steps: [{ name: 'print', run }] })
  const whole = tail(ctx.g, `/api/builds/${id}/log?follow=1`)
  let step: Tail | undefined
  try {
    const started = await waitFor(`build ${id} to run`, async () => {
      const b = await build(ctx, id)
      return (FINISHED.has(b.status) || (b.status === 'running' && b.steps[0]?.log !== undefined)) && b
    }, 60_000)
    assert.is(started.status, 'running', `build ${id} ended before its step printed anything: ${started.error ?? ''}`)
    step = tail(ctx.g, `/api/logs/${started.steps[0].log}?follow=1`)
    const stepTail = step
    await waitFor('ready in both live tails', () => stepTail.text() === 'ready\n' && whole.text().endsWith('ready\n'), 60_000)
    await writeFile(go, '')
    await init.during?.(stepTail)
    await within(BUILD_BOUND_MS, 'the live tail of the step to end with its seal', stepTail.ended)
    await within(BUILD_BOUND_MS, 'the live tail of the build to end with it', whole.ended)
  } finally {
    whole.stop.abort()
    step?.stop.abort()
  }
  const done = await ctx.g.finished(id, BUILD_BOUND_MS)
  assert.is(done.status, 'succeeded', done.error)
  assert.equal(done.attempts.map(a => [a.worker, a.trusted]), [[ctx.trustedPeer, true]])
  const record = done.steps[0]
  assert.ok(record.logCid !== undefined, 'the log was sealed')
  const sealed = Buffer.from(await (await ctx.g.api(`/api/logs/${record.log}`)).arrayBuffer())
  const content = Buffer.from(await (await ctx.g.api(`/api/artifacts/${record.logCid}`)).arrayBuffer())
  const buildLog = Buffer.from(await (await ctx.g.api(`/api/builds/${id}/log`)).arrayBuffer())
  for (const [what, bytes] of [['the live tail of the step', step.bytes()], ['the sealed log', sealed], ['the content of its CID', content], ['the live tail of the build', whole.bytes()], ['the build log', buildLog]] as const) {
    assertNoFragment(what, bytes)
  }
  assert.ok(step.bytes().equals(sealed), 'the live tail of the step got the sealed bytes')
  assert.ok(content.equals(sealed), 'the CID names the sealed bytes')
  const header = Buffer.from('--- step 1/1: print ---\n')
  assert.ok(buildLog.equals(Buffer.concat([header, sealed])), 'the build log is the header and the step\'s log')
  assert.ok(whole.bytes().equals(buildLog), 'the live tail of the build got the whole build log')
  return { build: done, sealed }
}

e2e.before(async ctx => {
  ctx.dir = await tempDir('secrets-e2e')
  ctx.stopped = false
  ctx.builds = []
  ctx.gates = 0
  await mkdir(join(ctx.dir, 'gates'))
  ctx.g = await startTestGrid({ dir: join(ctx.dir, 'grid'), workers: [{ capabilities: { git: '2' }, listen: true }] })
  ctx.trustedPeer = ctx.g.workers[0].host.peerId.toString()
  const stop = new AbortController()
  ctx.events = { text: '', stop, done: Promise.resolve() }
  const res = await ctx.g.api('/api/events', { signal: stop.signal })
  ctx.events.done = (async () => {
    const decoder = new TextDecoder()
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) ctx.events.text += decoder.decode(chunk, { stream: true })
    } catch {}
  })()
  ctx.untrusted = await startWorker(ctx, 'w-untrusted', join(ctx.g.dir, 'join'), ['pool=x', 'trusted=yes'])
  await waitFor('two workers in capacity', async () => (await capacity(ctx)).nodes === 2, 30_000)
  for (const [name, value] of [['DEPLOY_TOKEN', TOKEN], ['SIGNING_KEY', PEM]]) {
    const set = await putSecret(ctx, name, { value })
    assert.is(set.status, 201, set.text)
    assert.equal([set.json.name, set.json.repos, set.json.branches], [name, null, null])
  }
})

e2e.after(async ctx => {
  ctx.events?.stop.abort()
  await ctx.events?.done
  if (!ctx.stopped) {
    await ctx.untrusted?.p.stop()
    await ctx.late?.p.stop()
    await ctx.g?.stop()
  }
  await removeDir(ctx.dir)
})

// ---------------------------------------------------------------- masking

e2e('a value printed whole, on stdout and stderr, twice in a row: *** where it was, in every log', async ctx => {
  const { sealed } = await secretStep(ctx, [
    'printf \'token=%s\\n\' "$DEPLOY_TOKEN"',
    'printf \'quoted "%s", then twice: %s%s.\\n\' "$DEPLOY_TOKEN" "$DEPLOY_TOKEN" "$DEPLOY_TOKEN"',
    'printf \'on stderr: %s\\n\' "$DEPLOY_TOKEN" >&2'
  ].join('\n'))
  // stdout and stderr are two pipes: the order of their lines is not kept, their contents are.
  const lines = sealed.toString().split('\n')
  assert.is(lines[0], 'ready')
  assert.is(lines.pop(), '')
  assert.equal(lines.slice(1).sort(), ['on stderr: ***', 'quoted "***", then twice: ******.', 'token=***'])
})

e2e('a value split across two writes with a pause: the live tail shows what came before it, holds the first half back, then ***', async ctx => {
  const go = gate(ctx)
  let seen = ''
  const { sealed } = await secretStep(ctx, [
    `first=\${DEPLOY_TOKEN%${'?'.repeat(SPLIT_TAIL)}}`,
    'printf \'split: %s\' "$first"',
    'sleep 0.3',
    'wait_for "$GO2"',
    'printf \'%s :end\\n\' "${DEPLOY_TOKEN#"$first"}"'
  ].join('\n'), {
    env: { GO2: go },
    during: async step => {
      // The first half went out in the same write as "split: ": once that is in the tail, so was the half.
      seen = await waitFor('the text before the value in the live tail', () => step.text().includes('split: ') && step.text(), 60_000)
      await writeFile(go, '')
    }
  })
  assert.is(seen, 'ready\nsplit: ', 'the first half is held back while the step pauses, and nothing else')
  assert.is(sealed.toString(), 'ready\nsplit: *** :end\n')
})

e2e('a value straddling the 64 KiB batch marks, at three offsets', async ctx => {
  // The value starts 1, 7 and 20 bytes before the first three 64 KiB marks of the output (`ready\n` included).
  const B = LOG_BATCH_BYTES
  const L = TOKEN.length
  const starts = [B - 1, 2 * B - 7, 3 * B - 20]
  const fill = (n: number): string => `head -c ${n} /dev/zero | tr '\\0' .`
  const { sealed } = await secretStep(ctx, [
    fill(starts[0] - 'ready\n'.length), 'printf %s "$DEPLOY_TOKEN"',
    fill(starts[1] - starts[0] - L), 'printf %s "$DEPLOY_TOKEN"',
    fill(starts[2] - starts[1] - L), 'printf %s "$DEPLOY_TOKEN"',
    fill(100), 'echo'
  ].join('\n'))
  const dots = (n: number): string => '.'.repeat(n)
  const expected = `ready\n${dots(starts[0] - 6)}***${dots(starts[1] - starts[0] - L)}***${dots(starts[2] - starts[1] - L)}***${dots(100)}\n`
  assert.ok(sealed.toString('latin1') === expected, `the log is the output with each value replaced by *** (${sealed.length} bytes, ${expected.length} expected)`)
})

e2e('a value, and a line of the key, inside a 10 MB line', async ctx => {
  const half = 5 * 1024 * 1024
  const { sealed } = await secretStep(ctx, [
    `head -c ${half} /dev/zero | tr '\\0' .`,
    'printf %s "$DEPLOY_TOKEN"',
    `head -c ${half} /dev/zero | tr '\\0' .`,
    'printf %s "$SIGNING_KEY" | sed -n 2p | tr -d \'\\n\'',
    'head -c 1000 /dev/zero | tr \'\\0\' .',
    'echo'
  ].join('\n'))
  const line = `${'.'.repeat(half)}***${'.'.repeat(half)}***${'.'.repeat(1000)}`
  assert.is(sealed.length, 'ready\n'.length + line.length + 1)
  assert.ok(sealed.toString('latin1') === `ready\n${line}\n`, 'the 10 MB line, with the value and the line of the key each replaced by ***')
})

e2e('a multi-line PEM key: whole, a line at a time with pauses, with \\r\\n endings, one line on stderr; each line masked', async ctx => {
  const { sealed } = await secretStep(ctx, [
    'printf \'key:\\n%s\' "$SIGNING_KEY"; echo end',
    'printf %s "$SIGNING_KEY" | while IFS= read -r line; do printf \'line: %s\\n\' "$line"; sleep 0.05; done',
    'printf %s "$SIGNING_KEY" | sed \'s/$/\\r/\'',
    'printf %s "$SIGNING_KEY" | sed -n 3p >&2'
  ].join('\n'))
  const text = sealed.toString()
  // The key whole (its last newline too) is one ***; printed any other way, each line is.
  const stdout = `ready\nkey:\n***end\n${'line: ***\n'.repeat(PEM_LINES.length)}${'***\r\n'.repeat(PEM_LINES.length)}`
  // The line on stderr lands somewhere after `ready` (another pipe): taken out, the rest is stdout, in order.
  const alone = [...text.matchAll(/(?<=\n)\*\*\*\n/g)].map(m => m.index)
  assert.is(alone.length, 1, JSON.stringify(text))
  assert.is(text.slice(0, alone[0]) + text.slice(alone[0] + 4), stdout)
})

e2e('traced by set -x: the traced words and the traced key are masked', async ctx => {
  const { sealed } = await secretStep(ctx, [
    'exec 2>&1',
    'set -x',
    ': deploy --token "$DEPLOY_TOKEN" --user ci',
    'export AUTHORIZATION="Bearer $DEPLOY_TOKEN"',
    ': "$SIGNING_KEY"',
    'set +x'
  ].join('\n'))
  // dash (the /bin/sh here and on Debian) traces words as they are; bash would quote them.
  assert.match(sealed.toString(), /^ready\n\+ : deploy --token '?\*\*\*'? --user ci\n\+ export '?AUTHORIZATION=Bearer \*\*\*'?\n\+ : '?\*\*\*/)
  assert.ok(sealed.toString().includes('+ set +x\n'))
})

// ---------------------------------------------------------------- trust

e2e('a step stopped in the middle of printing a value (its timeout): the part it printed is masked too', async ctx => {
  // All but the last 10 characters, then a sleep the build's timeout cuts short: the log ends inside the value.
  const id = await submit(ctx, { name: 'cut short', secrets: ['DEPLOY_TOKEN'], timeout: 3, killGrace: 1, steps: [{ run: 'printf "x%s" "${DEPLOY_TOKEN%??????????}"; sleep 30' }] })
  const done = await waitFor('the build to time out', async () => { const b = await build(ctx, id); return b.status === 'timeout' ? b : undefined }, BUILD_BOUND_MS, 100)
  const log = Buffer.from(await (await ctx.g.api(`/api/logs/${done.steps[0].log}`)).arrayBuffer())
  assertNoFragment('the log of a step cut short inside a value', log)
  assert.ok(log.toString().startsWith('x***'), log.toString())
})

e2e('an untrusted worker with matching capabilities, even --cap trusted=yes, never gets a job with secrets', async ctx => {
  const groups = (await capacity(ctx)).groups
  const pool = groups.find(g => g.capabilities.pool === 'x')
  assert.equal([pool?.nodes, pool?.trusted, pool?.capabilities.trusted], [1, 0, 'yes'], 'the claim is a label, not trust')

  const check = `printf 'sha256 %s\\n' "$(printf %s "$DEPLOY_TOKEN" | sha256sum | cut -c1-64)"; echo "token: $DEPLOY_TOKEN"`
  const first = await submit(ctx, { requires: { pool: 'x' }, secrets: ['DEPLOY_TOKEN'], steps: [{ run: check }] })
  const why = `${NO_TRUSTED_WORKER} (none has pool=x)`
  assert.is(await waitFor('the secret job to say why it waits', async () => (await build(ctx, first)).waiting, 30_000), why)
  // The untrusted worker is free and capable: a job without secrets, of the same needs, runs there at once.
  const plain = await ctx.g.finished(await submit(ctx, { requires: { pool: 'x' }, steps: [{ run: 'true' }] }), 60_000)
  assert.is(plain.status, 'succeeded', plain.error)
  assert.equal(plain.attempts.map(a => [a.worker, a.trusted]), [[ctx.untrusted.peer, false]])
  const still = await build(ctx, first)
  assert.equal([still.status, still.waiting, still.attempts], ['queued', why, []])

  // A trusted worker that can run it joins: it runs there.
  ctx.late = await startWorker(ctx, 'w-late', join(ctx.g.dir, 'join-trusted'), ['pool=x'])
  const done = await ctx.g.finished(first, BUILD_BOUND_MS)
  assert.is(done.status, 'succeeded', done.error)
  assert.equal(done.attempts.map(a => [a.worker, a.trusted]), [[ctx.late.peer, true]])
  const log = await (await ctx.g.api(`/api/builds/${first}/log`)).text()
  assert.ok(log.includes(`sha256 ${createHash('sha256').update(TOKEN).digest('hex')}\ntoken: ***\n`), log)

  // With the trusted one busy and only the untrusted one free, the next waits for the trusted one.
  const go = gate(ctx)
  const busy = await submit(ctx, { requires: { pool: 'x' }, secrets: ['DEPLOY_TOKEN'], env: { GO: go }, steps: [{ run: `${WAIT_FOR}\nwait_for "$GO"` }] })
  const running = await waitFor('the blocking job to run', async () => { const b = await build(ctx, busy); return b.status === 'running' && b }, 60_000)
  assert.equal(running.attempts.map(a => [a.worker, a.trusted]), [[ctx.late.peer, true]])
  const next = await submit(ctx, { requires: { pool: 'x' }, secrets: ['DEPLOY_TOKEN'], steps: [{ run: check }] })
  assert.is(await waitFor('the next secret job to wait', async () => (await build(ctx, next)).waiting, 30_000), 'every capable worker is busy')
  const free = await ctx.g.finished(await submit(ctx, { requires: { pool: 'x' }, steps: [{ run: 'true' }] }), 60_000)
  assert.equal(free.attempts.map(a => [a.worker, a.trusted]), [[ctx.untrusted.peer, false]], 'the untrusted worker was free')
  assert.equal((await build(ctx, next)).attempts, [])
  await writeFile(go, '')
  for (const id of [busy, next]) {
    const b = await ctx.g.finished(id, BUILD_BOUND_MS)
    assert.is(b.status, 'succeeded', b.error)
    assert.equal(b.attempts.map(a => [a.worker, a.trusted]), [[ctx.late.peer, true]])
  }
})

// ---------------------------------------------------------------- scope

function git (cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } }).trim()
}

const PIPELINE_FILE = [
  'jobs:',
  '  deploy:',
  '    secrets: [ DEPLOY_KEY ]',
  '    steps:',
  '      - name: deploy',
  '        run: |',
  '          printf \'sha256 of the key: %s\\n\' "$(printf %s "$DEPLOY_KEY" | sha256sum | cut -c1-64)"',
  '          echo "key: $DEPLOY_KEY"',
  ''
].join('\n')

/** Commit a change on `branch` of the work tree and push it to the bare repository; the commit's id. */
async function pushCommit (ctx: Ctx, branch: string): Promise<string> {
  const repo = ctx.repo!
  await writeFile(join(repo.work, 'change.txt'), `${branch} ${randomBytes(8).toString('hex')}\n`)
  git(repo.work, 'add', '-A')
  git(repo.work, 'commit', '-q', '-m', `change on ${branch}`)
  git(repo.work, 'push', '-q', repo.bare, branch)
  return git(repo.work, 'rev-parse', 'HEAD')
}

/** A GitHub push delivery of `sha` on `branch`, signed; the finished pipeline it started. */
async function githubPush (ctx: Ctx, branch: string, sha: string): Promise<Pipeline> {
  const body = JSON.stringify({ ref: `refs/heads/${branch}`, after: sha, repository: { clone_url: 'https://elsewhere.example/other.git' } })
  const signature = `sha256=${createHmac('sha256', HOOK_SECRET).update(body).digest('hex')}`
  const res = await ctx.g.api(ctx.repo!.hook, { method: 'POST', headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': `d-${sha}`, 'x-hub-signature-256': signature }, body })
  assert.is(res.status, 202, await res.text())
  return await waitFor(`the pipeline of ${branch} to end`, async () => {
    const p = (await (await ctx.g.api('/api/pipelines?limit=50')).json() as Pipeline[]).find(x => x.source.commit === sha)
    return p !== undefined && PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, BUILD_BOUND_MS, 100)
}

e2e('a secret scoped to a repository and main: a push of main gets it; a push of dev and a lone build fail at once', async ctx => {
  const bare = join(ctx.dir, 'acme', 'app.git')
  const work = join(ctx.dir, 'app')
  await mkdir(join(ctx.dir, 'acme'))
  git(ctx.dir, 'init', '-q', '--bare', '-b', 'main', bare)
  git(ctx.dir, 'init', '-q', '-b', 'main', work)
  await writeFile(join(work, '.grid.yml'), PIPELINE_FILE)
  const registered = await ctx.g.api('/api/repos', { method: 'POST', headers: authed(ctx.g), body: JSON.stringify({ url: bare, branches: ['main', 'dev'], hookSecret: HOOK_SECRET }) })
  assert.is(registered.status, 201, await registered.clone().text())
  const { id, hook } = await registered.json() as { id: string, hook: string }
  ctx.repo = { id, hook, bare, work }

  const set = await putSecret(ctx, 'DEPLOY_KEY', { value: DEPLOY_KEY, repos: [id], branches: ['main'] })
  assert.is(set.status, 201, set.text)
  assert.equal([set.json.repos, set.json.branches], [[id], ['main']])
  const why = `secret DEPLOY_KEY is not available to this build (scope: repos ${id}, branches main)`

  // main: the step sees the value (its hash), the log shows ***.
  const onMain = await githubPush(ctx, 'main', await pushCommit(ctx, 'main'))
  assert.is(onMain.status, 'succeeded', JSON.stringify(onMain))
  assert.equal(onMain.jobs.map(j => [j.name, j.status]), [['deploy', 'succeeded']])
  const deployed = await build(ctx, onMain.jobs[0].build!)
  ctx.builds.push(deployed.id, onMain.checkout!)
  assert.equal(deployed.source, { repo: id, ref: 'refs/heads/main' })
  assert.is(deployed.attempts.length, 1)
  assert.is(deployed.attempts[0].trusted, true)
  const log = await (await ctx.g.api(`/api/builds/${deployed.id}/log`)).text()
  assert.ok(log.includes(`sha256 of the key: ${DEPLOY_KEY_SHA256}\nkey: ***\n`), log)
  assertNoFragment('the deploy log', Buffer.from(log))

  // dev: registered, so the pipeline runs, but the job's secret is not for dev: failed without an attempt.
  git(work, 'checkout', '-q', '-b', 'dev')
  const onDev = await githubPush(ctx, 'dev', await pushCommit(ctx, 'dev'))
  assert.is(onDev.status, 'failed')
  assert.equal(onDev.jobs.map(j => [j.name, j.status]), [['deploy', 'failed']])
  const refused = await build(ctx, onDev.jobs[0].build!)
  ctx.builds.push(refused.id, onDev.checkout!)
  assert.equal(refused.source, { repo: id, ref: 'refs/heads/dev' })
  assert.is(refused.error, why)
  assert.equal(refused.attempts, [])

  // A lone build has no repository: it fails the same way, as it is submitted.
  const lone = await submit(ctx, { secrets: ['DEPLOY_KEY'], steps: [{ run: 'echo "$DEPLOY_KEY"' }] })
  const failed = await build(ctx, lone)
  assert.equal([failed.status, failed.error, failed.attempts], ['failed', why, []])
})

// ---------------------------------------------------------------- too short

e2e('a value shorter than 4 characters is refused when set: 400, one sentence without the value; 4 is enough', async ctx => {
  const short = 'Q7z'
  for (const value of [short, `${TOKEN}\n${short}\n`]) {
    const refused = await putSecret(ctx, 'TOO_SHORT', { value })
    assert.is(refused.status, 400, refused.text)
    assert.type(refused.json.error, 'string')
    assert.match(refused.json.error, /shorter than 4 characters/)
    assert.not.match(refused.json.error, /\n/)
    assert.not.ok(refused.text.includes(short), refused.text)
    assert.not.ok(refused.text.includes(TOKEN.slice(4, 16)), refused.text)
  }
  const listed = async (): Promise<string[]> => (await (await ctx.g.api('/api/secrets', { headers: authed(ctx.g) })).json() as Array<{ name: string }>).map(s => s.name)
  assert.equal(await listed(), ['DEPLOY_KEY', 'DEPLOY_TOKEN', 'SIGNING_KEY'], 'nothing was set')
  const four = await putSecret(ctx, 'TOO_SHORT', { value: 'Q7zW' })
  assert.is(four.status, 201, four.text)
  assert.is((await ctx.g.api('/api/secrets/TOO_SHORT', { method: 'DELETE', headers: authed(ctx.g) })).status, 200)
  assert.equal(await listed(), ['DEPLOY_KEY', 'DEPLOY_TOKEN', 'SIGNING_KEY'])
})

// ---------------------------------------------------------------- nowhere else

e2e('no HTTP answer, event or metric holds a value; then no file under any node\'s data dir does', async ctx => {
  assert.ok(ctx.builds.length >= 12, `${ctx.builds.length} builds`)
  const records: Build[] = []
  for (const id of ctx.builds) records.push(await waitFor(`build ${id} to end`, async () => { const b = await build(ctx, id); return FINISHED.has(b.status) && b }, BUILD_BOUND_MS))
  // No build with secrets ever had an attempt on an untrusted worker.
  const withSecrets = records.filter(b => (b.job.secrets ?? []).length > 0)
  assert.ok(withSecrets.length >= 11)
  for (const b of withSecrets) assert.ok(b.attempts.every(a => a.trusted === true && a.worker !== ctx.untrusted.peer), `${b.id} ran on ${b.attempts.map(a => a.worker).join(', ')}`)

  const answers: Array<[string, string]> = []
  const ask = async (path: string, init?: RequestInit): Promise<string> => {
    const text = await (await ctx.g.api(path, init)).text()
    answers.push([path, text])
    return text
  }
  await ask('/api/builds?limit=1000')
  for (const id of ctx.builds) await ask(`/api/builds/${id}`)
  const secrets = await ask('/api/secrets', { headers: authed(ctx.g) })
  await ask('/api/pipelines?limit=100')
  await ask('/api/repos')
  await ask('/api/capacity')
  await ask('/metrics')
  // The whole logs of the builds not looked at line by line above (the trust and scope tests').
  for (const id of ctx.builds) {
    const text = await ask(`/api/builds/${id}/log`)
    assertNoFragment(`the log of ${id}`, Buffer.from(text, 'latin1'))
  }
  assert.ok(secrets.includes('DEPLOY_TOKEN') && secrets.includes('SIGNING_KEY'), 'the list names them')
  assert.ok(ctx.events.text.includes('DEPLOY_TOKEN') && ctx.events.text.includes('"running"'), 'the events carried the secret builds as they ran')
  for (const [path, text] of [...answers, ['/api/events', ctx.events.text]]) {
    for (const needle of NEEDLES) assert.not.ok(text.includes(needle), `${path} holds a value`)
  }
  for (const w of [ctx.untrusted, ctx.late!]) {
    for (const needle of NEEDLES) assert.not.ok((w.p.stdout() + w.p.stderr()).includes(needle), 'a worker process wrote a value')
  }

  // Stopped, so whatever LevelDB and the stores held in memory is on disk too.
  ctx.stopped = true
  ctx.events.stop.abort()
  await ctx.events.done
  await ctx.untrusted.p.stop()
  await ctx.late?.p.stop()
  await ctx.g.stop()
  const files = (await readdir(ctx.dir, { withFileTypes: true, recursive: true })).filter(e => e.isFile()).map(e => join(e.parentPath, e.name))
  for (const part of ['/grid/coordinator.db/', '/grid/workers/1/', '/w-untrusted/', '/w-late/']) {
    assert.ok(files.some(f => f.includes(part)), `the search covers ${part} (${files.length} files)`)
  }
  let bytes = 0
  const holding: string[] = []
  // What the search must see, so that it could see a value: the names as stored, and a log line as the store keeps it.
  const seen = { name: false, log: false }
  for (const file of files) {
    const content = await readFile(file)
    bytes += content.length
    if (NEEDLES.some(needle => content.includes(needle))) holding.push(file)
    seen.name ||= content.includes('SIGNING_KEY')
    seen.log ||= content.includes(`sha256 of the key: ${DEPLOY_KEY_SHA256}`)
  }
  assert.ok(bytes > 10 * 1024 * 1024, 'the logs are on disk (the 10 MB line among them)')
  assert.equal(seen, { name: true, log: true }, 'the search reads the stored secrets and logs in plaintext')
  assert.equal(holding, [], 'no file holds a value in plaintext')
})

e2e.run()

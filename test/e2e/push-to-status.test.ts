// From a push to the commit's status, on a real grid: a repository registered with a webhook secret and a status
// target; GitHub, Gitea and GitLab pushes of real commits in a bare repository start pipelines, bad signatures and
// repeated deliveries start nothing, and the statuses reach a local HTTP server standing in for the forge's API,
// which checks every request's path, token and body.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { removeDir, startTestGrid, tempDir, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import type { Pipeline } from '../../grid/build.ts'
import { PIPELINE_FINISHED } from '../../grid/build.ts'

interface Posted { path: string, authorization?: string, contentType?: string, body: any }
interface Ctx { dir: string, grid: TestGrid, forge: Server, forgeUrl: string, posted: Posted[], problems: string[], work: string, bare: string, repo: { id: string, hook: string } }

const SECRET = 'hook-secret-for-the-test'
const TOKEN = 'forge-token-123'

const push = suite<Ctx>('a push to a registered repository, through to its commit status')

function git (cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } }).trim()
}

/** Commit `.grid.yml` (and a file) on main and push it to the bare repository; the new commit's id. */
async function commit (ctx: Ctx, file: string): Promise<string> {
  await writeFile(join(ctx.work, '.grid.yml'), file)
  await writeFile(join(ctx.work, 'hello.txt'), `hello ${Math.random()}\n`)
  git(ctx.work, 'add', '-A')
  git(ctx.work, 'commit', '-q', '-m', 'change')
  git(ctx.work, 'push', '-q', ctx.bare, 'main')
  return git(ctx.work, 'rev-parse', 'HEAD')
}

const PASSING = 'jobs:\n  build:\n    steps: [ { run: "cat hello.txt > out.txt; echo ctx $GRID_PIPELINE_ID $GRID_JOB $GRID_BRANCH $GRID_REF $GRID_COMMIT" } ]\n    artifacts: [ out.txt ]\n  test:\n    needs: [ build ]\n    steps: [ { run: "grep hello out.txt" } ]\n'
const FAILING = 'jobs:\n  build:\n    steps: [ { run: "exit 3" } ]\n  test:\n    needs: [ build ]\n    steps: [ { run: "true" } ]\n'

async function pipelines (ctx: Ctx): Promise<Pipeline[]> {
  return await (await ctx.grid.api('/api/pipelines?limit=50')).json() as Pipeline[]
}

async function pipelineOf (ctx: Ctx, sha: string): Promise<Pipeline> {
  return await waitFor(`the pipeline of ${sha.slice(0, 8)} to end`, async () => {
    const p = (await pipelines(ctx)).find(x => x.source.commit === sha)
    return p !== undefined && PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, 60_000, 100)
}

async function hook (ctx: Ctx, headers: Record<string, string>, body: string): Promise<Response> {
  return await ctx.grid.api(ctx.repo.hook, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
}

const hmac = (body: string): string => createHmac('sha256', SECRET).update(body).digest('hex')

push.before(async ctx => {
  ctx.dir = await tempDir('push-status')
  ctx.posted = []
  ctx.problems = []
  // The forge's API: every request must be a status post with the token, a JSON body of the documented shape.
  ctx.forge = createServer((req, res) => {
    let text = ''
    req.on('data', d => { text += d })
    req.on('end', () => {
      let body: any
      try { body = JSON.parse(text) } catch { ctx.problems.push(`not JSON: ${text}`) }
      ctx.posted.push({ path: req.url ?? '', authorization: req.headers.authorization, contentType: req.headers['content-type'], body })
      if (req.method !== 'POST') ctx.problems.push(`${req.method} ${req.url}`)
      if (!/^\/repos\/acme\/mini\/statuses\/[0-9a-f]{40}$/.test(req.url ?? '')) ctx.problems.push(`path ${req.url}`)
      if (req.headers.authorization !== `token ${TOKEN}`) ctx.problems.push(`authorization ${req.headers.authorization}`)
      if (body !== undefined && (Object.keys(body).sort().join() !== 'context,description,state,target_url' || body.context !== 'grid')) ctx.problems.push(`body ${text}`)
      res.writeHead(201, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>(resolve => ctx.forge.listen(0, '127.0.0.1', resolve))
  ctx.forgeUrl = `http://127.0.0.1:${(ctx.forge.address() as { port: number }).port}`
  ctx.grid = await startTestGrid({ dir: join(ctx.dir, 'grid'), workers: [{ capabilities: { git: '2' }, slots: 2 }] })
  ctx.work = join(ctx.dir, 'work')
  ctx.bare = join(ctx.dir, 'acme', 'mini.git')
  await mkdir(join(ctx.dir, 'acme'))
  git(ctx.dir, 'init', '-q', '--bare', '-b', 'main', ctx.bare)
  git(ctx.dir, 'init', '-q', '-b', 'main', ctx.work)
  const res = await ctx.grid.api('/api/repos', {
    method: 'POST',
    headers: { authorization: `Bearer ${ctx.grid.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url: ctx.bare, branches: ['main'], hookSecret: SECRET, status: { kind: 'github', url: ctx.forgeUrl, token: TOKEN } })
  })
  assert.is(res.status, 201, await res.clone().text())
  ctx.repo = await res.json() as { id: string, hook: string }
})

push.after(async ctx => {
  await ctx.grid?.stop()
  await new Promise(resolve => ctx.forge?.close(resolve))
  await removeDir(ctx.dir)
})

push('a GitHub push with a good signature runs the pipeline; pending then success reach the forge; the secrets show nowhere', async ctx => {
  const sha = await commit(ctx, PASSING)
  const body = JSON.stringify({ ref: 'refs/heads/main', after: sha, repository: { clone_url: 'https://evil.example/other.git' } })
  // A wrong signature, and none: 401, and nothing starts.
  assert.is((await hook(ctx, { 'x-github-event': 'push', 'x-github-delivery': 'd-bad', 'x-hub-signature-256': `sha256=${createHmac('sha256', 'wrong').update(body).digest('hex')}` }, body)).status, 401)
  assert.is((await hook(ctx, { 'x-github-event': 'push', 'x-github-delivery': 'd-none' }, body)).status, 401)
  assert.equal(await pipelines(ctx), [])

  const res = await hook(ctx, { 'x-github-event': 'push', 'x-github-delivery': 'd-1', 'x-hub-signature-256': `sha256=${hmac(body)}` }, body)
  assert.is(res.status, 202, await res.clone().text())
  const pipeline = await pipelineOf(ctx, sha)
  assert.is(pipeline.status, 'succeeded', JSON.stringify(pipeline))
  assert.equal(pipeline.source, { repo: ctx.repo.id, url: ctx.bare, ref: 'refs/heads/main', commit: sha, trigger: 'push' }, 'built from the registered URL, not the payload\'s')
  assert.equal(pipeline.jobs.map(j => [j.name, j.status]), [['build', 'succeeded'], ['test', 'succeeded']])
  // The steps know what they build: the grid's variables, kept out of the job's own env.
  const log = await (await ctx.grid.api(`/api/builds/${pipeline.jobs[0].build}/log`)).text()
  assert.match(log, new RegExp(`^ctx ${pipeline.id} build main refs/heads/main ${sha}$`, 'm'), log)
  const built = await (await ctx.grid.api(`/api/builds/${pipeline.jobs[0].build}`)).json()
  assert.equal(built.job.env, {}, 'nothing of the commit in the job itself')

  // The same delivery again, and the same commit under a new delivery id: nothing new.
  assert.is((await hook(ctx, { 'x-github-event': 'push', 'x-github-delivery': 'd-1', 'x-hub-signature-256': `sha256=${hmac(body)}` }, body)).status, 200)
  assert.is((await hook(ctx, { 'x-github-event': 'push', 'x-github-delivery': 'd-2', 'x-hub-signature-256': `sha256=${hmac(body)}` }, body)).status, 200)
  assert.is((await pipelines(ctx)).length, 1)

  const states = await waitFor('the final status at the forge', () => {
    const mine = ctx.posted.filter(p => p.path.endsWith(sha))
    return mine.some(p => p.body?.state === 'success') ? mine : undefined
  }, 30_000, 50)
  assert.equal(states.map(p => p.body.state), ['pending', 'success'])
  assert.is(states[1].body.target_url, `${ctx.grid.url}/pipelines/${pipeline.id}`)
  assert.is(states[0].contentType?.split(';')[0], 'application/json')
  assert.equal(ctx.problems, [])

  const answers = [await (await ctx.grid.api('/api/repos')).text(), await (await ctx.grid.api(`/api/pipelines/${pipeline.id}`)).text(), await (await ctx.grid.api('/metrics')).text()]
  for (const text of answers) {
    assert.not.ok(text.includes(SECRET), 'no hook secret in an answer')
    assert.not.ok(text.includes(TOKEN), 'no status token in an answer')
  }
})

push('a Gitea push and a GitLab push start pipelines; a failing one posts failure', async ctx => {
  const good = await commit(ctx, PASSING)
  const gitea = JSON.stringify({ ref: 'refs/heads/main', after: good })
  assert.is((await hook(ctx, { 'x-gitea-event': 'push', 'x-gitea-delivery': 'g-1', 'x-gitea-signature': hmac(gitea).slice(0, -1) + '0' }, gitea)).status, 401)
  assert.is((await hook(ctx, { 'x-gitea-event': 'push', 'x-gitea-delivery': 'g-1', 'x-gitea-signature': hmac(gitea) }, gitea)).status, 202)
  assert.is((await pipelineOf(ctx, good)).status, 'succeeded')

  const bad = await commit(ctx, FAILING)
  const gitlab = JSON.stringify({ object_kind: 'push', ref: 'refs/heads/main', before: good, after: bad, checkout_sha: bad })
  assert.is((await hook(ctx, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': 'not the secret' }, gitlab)).status, 401)
  assert.is((await hook(ctx, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET, 'x-gitlab-event-uuid': 'l-1' }, gitlab)).status, 202)
  const failed = await pipelineOf(ctx, bad)
  assert.is(failed.status, 'failed')
  assert.equal(failed.jobs.map(j => [j.name, j.status]), [['build', 'failed'], ['test', 'skipped']])
  const states = await waitFor('the failure status', () => {
    const mine = ctx.posted.filter(p => p.path.endsWith(bad))
    return mine.some(p => p.body?.state === 'failure') ? mine : undefined
  }, 30_000, 50)
  assert.equal(states.map(p => p.body.state), ['pending', 'failure'])
  assert.equal(ctx.problems, [])

  // A push to a branch that is not registered: accepted and ignored.
  const other = JSON.stringify({ ref: 'refs/heads/feature', after: bad })
  assert.is((await hook(ctx, { 'x-github-event': 'push', 'x-github-delivery': 'd-feature', 'x-hub-signature-256': `sha256=${hmac(other)}` }, other)).status, 202)
  assert.is((await pipelines(ctx)).filter(p => p.source.ref === 'refs/heads/feature').length, 0)
})

push.run()

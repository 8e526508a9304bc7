// Pipelines (issue #17) as a user meets them: `grid up` (its worker has git), a bare repository that receives
// pushes, and a GitHub-format webhook for each push. Figures: time from the webhook to the checkout's first step and
// to the first job's first step (p50 over PUSHES pushes), beside a lone build's queue-to-start in the same grid;
// and the source bytes a second `grid run` of an unchanged tree sends (0 when the tar keeps its CID); and (issue
// #19) a second run of an unchanged three-job pipeline with `reuse: true` as a ratio to the first.
import { spawn, execFileSync } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Build, Pipeline } from '../grid/build.ts'
import { FINISHED, PIPELINE_FINISHED } from '../grid/build.ts'
import { percentile, sleep, within } from './measure.ts'

const ROOT = join(import.meta.dirname, '..')
const GRID = join(ROOT, 'node/bin/grid.js')
/** Pushes measured: the issue asks for the p50 over 20. */
const PUSHES = 20
const PHASE_TIMEOUT_MS = 180_000
/** Pairs of runs (a new tree, then the same tree again) the reuse figure is the p50 of. */
const REUSE_PAIRS = 5

/** Three jobs in a chain, each keeping a file the next one reads: every build of a second run can be reused. */
const REUSE_PIPELINE = `
jobs:
  lib:
    reuse: true
    steps: [ { run: "tr a-z A-Z < hello.txt > lib.txt" } ]
    artifacts: [ lib.txt ]
  app:
    reuse: true
    needs: [ lib ]
    steps: [ { run: "cat lib.txt > app.txt && echo app >> app.txt" } ]
    artifacts: [ app.txt ]
  test:
    reuse: true
    needs: [ app ]
    steps: [ { run: "wc -l < app.txt > report.txt" } ]
    artifacts: [ report.txt ]
`

export interface PipelineRow { name: string, value: number, unit: string, baseline?: { name: string, value: number }, ratio?: number, note?: string }

function git (cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@example.com', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@example.com' } }).trim()
}

function run (args: string[], cwd = ROOT): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    const proc = spawn(process.execPath, [GRID, ...args], { cwd })
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', d => { stdout += d })
    proc.stderr.on('data', d => { stderr += d })
    proc.on('exit', code => resolve({ code, stdout, stderr }))
  })
}

async function poll<T> (what: string, check: () => Promise<T | undefined>): Promise<T> {
  return await within(what, async () => {
    while (true) {
      const value = await check()
      if (value !== undefined) return value
      await sleep(5)
    }
  }, PHASE_TIMEOUT_MS)
}

export async function benchPipelines (say: (line: string) => void = () => {}): Promise<PipelineRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'grid-bench-pipelines-'))
  let up: ChildProcessWithoutNullStreams | undefined
  try {
    const data = join(dir, 'data')
    up = spawn(process.execPath, [GRID, 'up', '--data', data, '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'], { cwd: ROOT })
    let out = ''
    up.stdout.on('data', d => { out += d })
    up.stderr.on('data', () => {})
    const url = await poll('grid up', async () => /^web: (\S+)$/m.exec(out)?.[1])
    await poll('join', async () => /^join: /m.test(out) ? true : undefined)
    const token = (await readFile(join(data, 'api-token'), 'utf8')).trim()
    const api = async (path: string, init: RequestInit = {}): Promise<any> => {
      const res = await fetch(url + path, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...init.headers } })
      if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path} answered ${res.status}: ${await res.text()}`)
      return await res.json()
    }

    // The baseline: a lone build's queue-to-start on the same grid, same worker.
    const lone: number[] = []
    for (let i = 0; i < PUSHES; i++) {
      const { id } = await api('/api/builds', { method: 'POST', body: JSON.stringify({ steps: [{ run: 'true' }] }) })
      const build = await poll('a lone build', async () => { const b = await api(`/api/builds/${id}`) as Build; return FINISHED.has(b.status) ? b : undefined })
      lone.push(Date.parse(build.steps[0].started!) - Date.parse(build.created))
    }

    // A repository: one job that does nothing, so the figure is the grid's own path from push to step.
    const work = join(dir, 'work')
    const bare = join(dir, 'repo.git')
    git(dir, 'init', '-q', '--bare', '-b', 'main', bare)
    git(dir, 'init', '-q', '-b', 'main', work)
    await writeFile(join(work, '.grid.yml'), 'jobs:\n  hello:\n    steps: [ { run: "true" } ]\n')
    const secret = 'bench-hook-secret'
    const repo = await api('/api/repos', { method: 'POST', body: JSON.stringify({ url: bare, branches: ['main'], hookSecret: secret }) })
    say(`bench: ${PUSHES} pushes through a webhook`)
    const toCheckout: number[] = []
    const toJob: number[] = []
    /** Where the time from push to first job goes: the checkout's steps, keeping its artifacts, reading the file and queueing the jobs, the first job's start. */
    const phases = { steps: [] as number[], keep: [] as number[], plan: [] as number[], start: [] as number[] }
    for (let i = 0; i < PUSHES; i++) {
      await writeFile(join(work, 'n.txt'), `${i}\n`)
      git(work, 'add', '-A')
      git(work, 'commit', '-q', '-m', `push ${i}`)
      git(work, 'push', '-q', bare, 'main')
      const commit = git(work, 'rev-parse', 'HEAD')
      const body = JSON.stringify({ ref: 'refs/heads/main', after: commit, repository: { clone_url: 'https://example.invalid/ignored.git' } })
      const sent = Date.now()
      const res = await fetch(url + repo.hook, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': `bench-${i}-${commit}`, 'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}` },
        body
      })
      if (res.status >= 300) throw new Error(`the webhook answered ${res.status}: ${await res.text()}`)
      const pipeline = await poll('the pushed pipeline', async () => {
        const list = await api('/api/pipelines?limit=5') as Pipeline[]
        const p = list.find(x => x.source.commit === commit)
        return p !== undefined && PIPELINE_FINISHED.has(p.status) ? p : undefined
      })
      if (pipeline.status !== 'succeeded') throw new Error(`bench pipeline ${pipeline.id} ended ${pipeline.status}: ${pipeline.error ?? ''}`)
      const checkout = await api(`/api/builds/${pipeline.checkout}`) as Build
      const first = await api(`/api/builds/${pipeline.jobs[0].build}`) as Build
      toCheckout.push(Date.parse(checkout.steps[0].started!) - sent)
      toJob.push(Date.parse(first.steps[0].started!) - sent)
      const t = (iso: string | undefined): number => Date.parse(iso!)
      phases.steps.push(t(checkout.steps.at(-1)!.finished) - t(checkout.steps[0].started))
      phases.keep.push(t(checkout.finished) - t(checkout.steps.at(-1)!.finished))
      phases.plan.push(t(first.created) - t(checkout.finished))
      phases.start.push(t(first.steps[0].started) - t(first.created))
    }

    // `grid run` twice on an unchanged tree: the second sends no source bytes.
    say('bench: grid run twice on an unchanged tree')
    const sentBytes: number[] = []
    for (let i = 0; i < 2; i++) {
      const r = await run(['run', '--join', join(data, 'join-trusted'), work, '--follow'])
      if (r.code !== 0) throw new Error(`grid run exited ${r.code}: ${r.stderr}`)
      sentBytes.push(Number(/\((\d+) bytes? sent\)/.exec(r.stderr)?.[1] ?? NaN))
    }
    // A three-job pipeline with `reuse: true`, run twice on each of REUSE_PAIRS trees: created to finished.
    say(`bench: a three-job pipeline with reuse, run twice on each of ${REUSE_PAIRS} trees`)
    const firstRuns: number[] = []
    const secondRuns: number[] = []
    let reusedBuilds = 0
    for (let i = 0; i < REUSE_PAIRS; i++) {
      const tree = join(dir, `reuse-tree-${i}`)
      await mkdir(tree, { recursive: true })
      await writeFile(join(tree, 'hello.txt'), `hello ${i} ${Date.now()}\n`)
      const tar = execFileSync('tar', ['-cf', '-', '--mtime=@0', '--owner=0', '--group=0', '-C', tree, '.'])
      const put = await fetch(url + '/api/artifacts', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: tar })
      if (put.status !== 201) throw new Error(`putting a tree answered ${put.status}: ${await put.text()}`)
      const src = (await put.json() as { cid: string }).cid
      for (const runs of [firstRuns, secondRuns]) {
        const { id } = await api('/api/pipelines', { method: 'POST', body: JSON.stringify({ pipeline: REUSE_PIPELINE, src }) })
        const p = await poll('a reuse pipeline', async () => { const x = await api(`/api/pipelines/${id}`) as Pipeline; return PIPELINE_FINISHED.has(x.status) ? x : undefined })
        if (p.status !== 'succeeded') throw new Error(`bench pipeline ${p.id} ended ${p.status}: ${p.error ?? ''}`)
        runs.push(Date.parse(p.finished!) - Date.parse(p.created))
        if (runs === secondRuns) {
          for (const job of p.jobs) if ((await api(`/api/builds/${job.build}`) as Build).reused !== undefined) reusedBuilds++
        }
      }
    }
    const loneP50 = percentile(lone, 50)
    return [
      { name: 'push (webhook) to checkout\'s first step p50', value: percentile(toCheckout, 50), unit: 'ms', baseline: { name: 'lone build queue-to-start p50', value: loneP50 }, ratio: percentile(toCheckout, 50) / loneP50, note: `${PUSHES} pushes` },
      { name: 'push (webhook) to first job\'s first step p50', value: percentile(toJob, 50), unit: 'ms', baseline: { name: 'lone build queue-to-start p50', value: loneP50 }, ratio: percentile(toJob, 50) / loneP50, note: `${PUSHES} pushes; p50 of the checkout's steps ${percentile(phases.steps, 50)} ms, keeping its artifacts ${percentile(phases.keep, 50)} ms, reading .grid.yml and queueing ${percentile(phases.plan, 50)} ms, first job queue-to-start ${percentile(phases.start, 50)} ms` },
      { name: 'grid run of an unchanged tree: source bytes sent', value: sentBytes[1], unit: 'bytes', note: `first run sent ${sentBytes[0]} bytes` },
      {
        name: 'second run of an unchanged three-job pipeline with reuse p50',
        value: percentile(secondRuns, 50),
        unit: 'ms',
        baseline: { name: 'first run p50', value: percentile(firstRuns, 50) },
        ratio: percentile(secondRuns, 50) / percentile(firstRuns, 50),
        note: `${REUSE_PAIRS} trees, each run twice; ${reusedBuilds} of ${REUSE_PAIRS * 3} second-run builds reused`
      }
    ]
  } finally {
    up?.kill('SIGTERM')
    await sleep(500)
    if (up?.exitCode === null) up.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
}

if (import.meta.main) {
  for (const row of await benchPipelines(line => process.stderr.write(line + '\n'))) process.stdout.write(JSON.stringify(row) + '\n')
  process.exit(0)
}

// Commit statuses: a pipeline of a repository with a status target shows on its commit in the forge, `pending`
// while it runs and `success`, `failure` or `error` once it ends. GitHub and Gitea (and Forgejo) share the call:
// `POST {API_BASE}/repos/{owner}/{repo}/statuses/{sha}` with `Authorization: token TOKEN` and
// `{ state, target_url, description, context }` (docs.github.com "Create a commit status"; Gitea's API v1).
//
// Each state is posted once per pipeline, in order: the posts of one pipeline go one after another, and a pending
// that arrives once the pipeline ended is dropped, so a late pending never overwrites the final state. A post that
// fails is retried with a growing delay a few times, then given up with one log line; it never fails the pipeline.
// GitHub keeps `error` for when the CI itself failed; a cancelled pipeline is `error` ("cancelled"), failed jobs are
// `failure`.
import type { Pipeline } from '../grid/build.ts'
import type { PipelineStarter, Repos, StatusTarget } from './repos.ts'

/** Tries of one status post (the first and its retries); after the last one it is given up, logged once. */
export const STATUS_POST_ATTEMPTS = 5

/** Delay before the first retry; each next one doubles (1, 2, 4, 8 s): a forge's hiccup or rate limit passes. */
export const STATUS_RETRY_FIRST_MS = 1_000

/** A longest delay between retries, however many there were. */
export const STATUS_RETRY_MAX_MS = 30_000

/** One post may take this long before it is abandoned and counted a failure. */
export const STATUS_POST_TIMEOUT_MS = 10_000

/** GitHub refuses a description longer than 140 characters; longer ones are cut to fit. */
export const STATUS_DESCRIPTION_CHARS = 140

/** Ended pipelines remembered so a repeated "ended" event posts nothing; older ones are forgotten. */
export const MAX_REMEMBERED_PIPELINES = 10_000

/** The context the grid's statuses carry: one line per CI on the forge's commit page. */
export const STATUS_CONTEXT = 'grid'

export type CommitState = 'pending' | 'success' | 'failure' | 'error'

/** The state a pipeline shows on its commit, and the description said with it. */
export function commitState (p: Pipeline): { state: CommitState, description: string } {
  const cut = (text: string): string => text.length > STATUS_DESCRIPTION_CHARS ? `${text.slice(0, STATUS_DESCRIPTION_CHARS - 1)}…` : text
  switch (p.status) {
    case 'succeeded': return { state: 'success', description: 'the pipeline succeeded' }
    case 'cancelled': return { state: 'error', description: 'cancelled' }
    case 'failed': {
      if (p.error !== undefined) return { state: 'failure', description: cut(p.error) }
      const failed = p.jobs.filter(j => ['failed', 'timeout', 'lost', 'cancelled'].includes(j.status)).map(j => j.name)
      return { state: 'failure', description: cut(failed.length > 0 ? `failed: ${failed.join(', ')}` : 'the pipeline failed') }
    }
    default: return { state: 'pending', description: p.status === 'running' ? 'the pipeline is running' : 'the pipeline is queued' }
  }
}

export interface CommitStatusInit {
  repos: Pick<Repos, 'statusTarget'>
  pipelines: Pick<PipelineStarter, 'onPipeline'>
  /** The web UI's base URL, for `target_url` (WEB/pipelines/ID); undefined leaves target_url out. */
  webUrl: () => string | undefined
  /** @default globalThis.fetch */
  fetch?: typeof fetch
  log: (line: string) => void
  /** Test knob: the first retry's delay. @default STATUS_RETRY_FIRST_MS */
  retryFirstMs?: number
}

interface Tracked {
  /** The posts of this pipeline, one after another. */
  queue: Promise<void>
  pending: boolean
  final?: CommitState
}

/** Posts commit statuses for pipelines of repositories that have a status target. */
export class CommitStatus {
  private readonly init: CommitStatusInit
  private readonly fetch: typeof fetch
  private readonly tracked = new Map<string, Tracked>()
  /** Pipelines whose final state was queued: insertion order is age, for forgetting the oldest. */
  private readonly ended = new Set<string>()
  private stopping = new AbortController()
  private off?: () => void

  constructor (init: CommitStatusInit) {
    this.init = init
    this.fetch = init.fetch ?? globalThis.fetch
  }

  start (): void {
    this.stopping = new AbortController()
    this.off = this.init.pipelines.onPipeline(p => { this.changed(p) })
  }

  async stop (): Promise<void> {
    this.off?.()
    this.stopping.abort()
    await this.idle()
  }

  /** Resolves once every status queued so far was posted or given up. */
  async idle (): Promise<void> {
    while (this.tracked.size > 0) {
      const queues = [...this.tracked.values()].map(t => t.queue)
      await Promise.all(queues)
      if ([...this.tracked.values()].every(t => queues.includes(t.queue))) return
    }
  }

  private changed (p: Pipeline): void {
    const repo = p.source.repo
    const commit = p.source.commit
    if (repo === null || repo === undefined || commit === undefined || this.ended.has(p.id) || this.stopping.signal.aborted) return
    const { state, description } = commitState(p)
    let tracked = this.tracked.get(p.id)
    if (tracked === undefined) {
      tracked = { queue: Promise.resolve(), pending: false }
      this.tracked.set(p.id, tracked)
    }
    const t = tracked
    if (state === 'pending') {
      if (t.pending || t.final !== undefined) return
      t.pending = true
    } else {
      t.final = state
      this.ended.add(p.id)
      if (this.ended.size > MAX_REMEMBERED_PIPELINES) this.ended.delete(this.ended.values().next().value as string)
    }
    const post = { pipeline: p.id, repo, commit, state, description }
    // A pending queued before the end goes first, so it cannot overwrite the end; but it stops retrying once the
    // end is queued behind it, rather than holding the end back.
    t.queue = t.queue.then(async () => {
      await this.post(post, () => state === 'pending' && t.final !== undefined)
    }).catch(err => { this.init.log(`commit status for pipeline ${p.id}: ${err?.message ?? err}`) }).finally(() => {
      if (state !== 'pending' && this.tracked.get(p.id) === t && t.final === state) this.tracked.delete(p.id)
    })
  }

  /** One status, tried up to STATUS_POST_ATTEMPTS times; `superseded` stops the retries of a pending the end overtook. */
  private async post (s: { pipeline: string, repo: string, commit: string, state: CommitState, description: string }, superseded: () => boolean): Promise<void> {
    const target = await this.init.repos.statusTarget(s.repo)
    if (target === undefined) return
    const web = this.init.webUrl()
    const body = JSON.stringify({
      state: s.state,
      ...(web !== undefined ? { target_url: `${web.replace(/\/+$/, '')}/pipelines/${s.pipeline}` } : {}),
      description: s.description,
      context: STATUS_CONTEXT
    })
    const url = `${target.url}/repos/${encodeURIComponent(target.owner)}/${encodeURIComponent(target.repo)}/statuses/${s.commit}`
    let delay = this.init.retryFirstMs ?? STATUS_RETRY_FIRST_MS
    let why = ''
    for (let attempt = 1; attempt <= STATUS_POST_ATTEMPTS; attempt++) {
      if (this.stopping.signal.aborted || (attempt > 1 && superseded())) return
      const outcome = await this.attempt(url, body, target)
      if (outcome === 'posted') return
      why = outcome.why
      if (!outcome.retry) break
      if (attempt < STATUS_POST_ATTEMPTS) {
        await pause(delay, this.stopping.signal)
        delay = Math.min(delay * 2, STATUS_RETRY_MAX_MS)
      }
    }
    if (this.stopping.signal.aborted || superseded()) return
    this.init.log(`commit status ${s.state} for pipeline ${s.pipeline} (${target.owner}/${target.repo} ${s.commit.slice(0, 12)}) was not posted: ${redact(why, target.token)}`)
  }

  private async attempt (url: string, body: string, target: StatusTarget): Promise<'posted' | { retry: boolean, why: string }> {
    let res: Response
    try {
      res = await this.fetch(url, {
        method: 'POST',
        headers: { authorization: `token ${target.token}`, 'content-type': 'application/json', accept: 'application/json', 'user-agent': 'nameless-grid' },
        body,
        signal: AbortSignal.any([this.stopping.signal, AbortSignal.timeout(STATUS_POST_TIMEOUT_MS)])
      })
    } catch (err: any) {
      return { retry: true, why: `${target.url} did not answer: ${err?.cause?.code ?? err?.message ?? err}` }
    }
    if (res.ok) {
      await res.body?.cancel().catch(() => {})
      return 'posted'
    }
    const text = (await res.text().catch(() => '')).replace(/\s+/g, ' ').slice(0, 200)
    // 408, 429 and 5xx pass; any other 4xx (a bad token, an unknown repository) will answer the same next time.
    const retry = res.status >= 500 || res.status === 429 || res.status === 408
    return { retry, why: `${target.kind} answered ${res.status}${text !== '' ? `: ${text}` : ''}` }
  }
}

/** `text` without `token` in it, should a forge or a proxy echo it back. */
function redact (text: string, token: string): string {
  return token === '' ? text : text.split(token).join('***')
}

async function pause (ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return
  await new Promise<void>(resolve => {
    const done = (): void => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

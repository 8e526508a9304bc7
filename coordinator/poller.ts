// Polling registered repositories: every `poll` seconds, `git ls-remote --heads URL`, and a pipeline for each
// registered branch whose head moved and was not built yet. Webhooks get lost (GitHub never retries by itself), so
// Buildbot runs its GitPoller beside its change hooks; a repository may have both, and Repos.built() keeps a
// commit from running twice whichever sees it first.
//
// The first poll of a repository builds its branches' current heads. Buildbot's GitPoller only notes them on its
// first run; but a user who adds a repository expects to see it build, and after a restart the heads built already
// are not built again (Repos.built() is persisted), so only what moved while the grid was down runs.
import { execFile } from 'node:child_process'
import { branchRegistered } from './repos.ts'
import type { PipelineStarter, RepoChange, RepoRecord, Repos } from './repos.ts'

/** One `git ls-remote` may take this long before it is killed and counted a failure (a hung TCP connection, a slow forge). */
export const LS_REMOTE_TIMEOUT_MS = 30_000

/** Bytes of `git ls-remote --heads` output read; a remote with more branch heads than fit fails its poll, said in the log. */
export const MAX_LS_REMOTE_BYTES = 8 * 1024 * 1024

/** Runs git with `args`, answering its stdout; rejects with a one-line message on a non-zero exit or a timeout. */
export type RunGit = (args: string[], options: { timeoutMs: number, maxBytes: number, signal: AbortSignal }) => Promise<string>

export interface PollerInit {
  repos: Pick<Repos, 'list' | 'onChange' | 'built' | 'forgetBuilt'>
  pipelines: Pick<PipelineStarter, 'fromCommit'>
  /** @default git from PATH, with GIT_TERMINAL_PROMPT=0 and ssh in batch mode, so nothing waits for a password */
  runGit?: RunGit
  log: (line: string) => void
}

/** `git` from PATH; it never prompts (a missing credential is a failed poll, not a hang). */
export const runGit: RunGit = async (args, { timeoutMs, maxBytes, signal }) => await new Promise((resolve, reject) => {
  execFile('git', args, {
    timeout: timeoutMs,
    maxBuffer: maxBytes,
    signal,
    encoding: 'utf8',
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_SSH_COMMAND: process.env.GIT_SSH_COMMAND ?? 'ssh -o BatchMode=yes', LC_ALL: 'C' }
  }, (err, stdout, stderr) => {
    if (err === null) { resolve(stdout); return }
    const e = err as NodeJS.ErrnoException & { killed?: boolean, code?: unknown }
    const why = e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER'
      ? `its output passed ${maxBytes} bytes`
      : e.killed === true && !signal.aborted
        ? `it took longer than ${timeoutMs / 1000} s`
        : e.code === 'ENOENT' ? 'git is not installed on the coordinator' : gitComplaint(String(stderr)) ?? e.message
    reject(new Error(why))
  })
})

/** The line of git's stderr that says what went wrong: its `fatal:` line (the lines after it are advice), else the last. */
function gitComplaint (stderr: string): string | undefined {
  const lines = stderr.split('\n').map(l => l.trim()).filter(l => l !== '')
  return lines.find(l => /^(fatal|error):/.test(l)) ?? lines.at(-1)
}

/** Branch heads from `git ls-remote --heads`: ref → commit. */
export function parseHeads (text: string): Map<string, string> {
  const heads = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{40}|[0-9a-f]{64})\t(refs\/heads\/\S+)$/.exec(line.trim())
    if (m !== null) heads.set(m[2], m[1])
  }
  return heads
}

interface Polled {
  repo: RepoRecord
  timer?: NodeJS.Timeout
  running?: Promise<void>
  /** Heads as last seen: ref → commit. */
  seen: Map<string, string>
  /** The last failure's text, so a failure that repeats is logged once. */
  failing?: string
}

/**
 * Polls every registered repository that has `poll`, each on its own timer: the next poll is scheduled when the
 * last one ended, so one repository never has two ls-remotes at once. A failure is logged once per change of its
 * text and retried at the next interval.
 */
export class Poller {
  private readonly init: PollerInit
  private readonly run: RunGit
  private readonly polled = new Map<string, Polled>()
  private stopping = new AbortController()
  private offChange?: () => void

  constructor (init: PollerInit) {
    this.init = init
    this.run = init.runGit ?? runGit
  }

  async start (): Promise<void> {
    this.stopping = new AbortController()
    this.offChange = this.init.repos.onChange(change => { this.changed(change) })
    for (const repo of await this.init.repos.list()) this.watch(repo)
  }

  async stop (): Promise<void> {
    this.offChange?.()
    this.stopping.abort()
    const running = [...this.polled.values()].map(p => { clearTimeout(p.timer); return p.running })
    this.polled.clear()
    await Promise.all(running)
  }

  /**
   * Poll one repository now (its timer restarts after); resolves when the poll and the pipelines it started are
   * done. A poll already running is waited for instead of starting another.
   */
  async poll (id: string): Promise<void> {
    const polled = this.polled.get(id)
    if (polled === undefined) return
    if (polled.running !== undefined) { await polled.running; return }
    clearTimeout(polled.timer)
    polled.running = this.pollOnce(polled).finally(() => {
      polled.running = undefined
      if (this.polled.get(id) === polled && !this.stopping.signal.aborted) this.schedule(polled)
    })
    await polled.running
  }

  private changed (change: RepoChange): void {
    if (change.kind === 'added') this.watch(change.repo)
    else {
      const polled = this.polled.get(change.repo.id)
      clearTimeout(polled?.timer)
      this.polled.delete(change.repo.id)
    }
  }

  private watch (repo: RepoRecord): void {
    if (repo.poll === undefined || this.polled.has(repo.id) || this.stopping.signal.aborted) return
    const polled: Polled = { repo, seen: new Map() }
    this.polled.set(repo.id, polled)
    // The first poll at once: a new repository builds its current heads.
    this.poll(repo.id).catch(() => {})
  }

  private schedule (polled: Polled): void {
    polled.timer = setTimeout(() => { this.poll(polled.repo.id).catch(() => {}) }, (polled.repo.poll ?? 0) * 1000)
    polled.timer.unref?.()
  }

  private async pollOnce (polled: Polled): Promise<void> {
    const { repo } = polled
    let heads: Map<string, string>
    try {
      heads = parseHeads(await this.run(['ls-remote', '--heads', '--', repo.url], { timeoutMs: LS_REMOTE_TIMEOUT_MS, maxBytes: MAX_LS_REMOTE_BYTES, signal: this.stopping.signal }))
    } catch (err: any) {
      if (this.stopping.signal.aborted) return
      const text = String(err?.message ?? err)
      if (polled.failing !== text) this.init.log(`repository ${repo.id}: polling ${repo.url} failed, retrying every ${repo.poll} s: ${text}`)
      polled.failing = text
      return
    }
    if (polled.failing !== undefined) this.init.log(`repository ${repo.id}: polling ${repo.url} works again`)
    polled.failing = undefined
    for (const [ref, commit] of heads) {
      if (this.stopping.signal.aborted) return
      if (!branchRegistered(repo.branches, ref) || polled.seen.get(ref) === commit) continue
      if (await this.init.repos.built(repo.id, ref, commit)) {
        polled.seen.set(ref, commit)
        continue
      }
      try {
        const pipeline = await this.init.pipelines.fromCommit({ repo: repo.id, url: repo.url, ref, commit, trigger: 'poll' })
        polled.seen.set(ref, commit)
        this.init.log(`repository ${repo.id}: ${ref} moved to ${commit.slice(0, 12)}: started pipeline ${pipeline.id}`)
      } catch (err: any) {
        // Not started: forget it, so the next poll tries again.
        await this.init.repos.forgetBuilt(repo.id, ref, commit)
        this.init.log(`repository ${repo.id}: starting a pipeline for ${commit.slice(0, 12)} on ${ref} failed: ${err?.message ?? err}`)
      }
    }
    // Branches deleted on the remote are forgotten, so one recreated at the same commit is compared afresh.
    for (const ref of polled.seen.keys()) if (!heads.has(ref)) polled.seen.delete(ref)
  }
}

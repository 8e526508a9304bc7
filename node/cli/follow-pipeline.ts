// Following a pipeline from a terminal (`grid run --follow`): every build's log on stdout after a header naming its
// job (`── test (cflags=-O0) ──`), and on stderr how each job moves on (running, waiting and why, skipped and why).
// Logs are shown one build at a time, in the order the builds started: the first streams live; one that started
// while another was shown is printed from its first byte when its turn comes, then followed live. Its bytes wait in
// the stores meanwhile, not here. So four matrix builds running at once read as four whole logs, never as
// interleaved half-lines (make's --output-sync does the same, for the same reason), and a sequential pipeline
// streams exactly as `grid submit --follow` does.
import type { GridHost } from '../../net/host.ts'
import type { JoinCode } from '../../net/join-code.ts'
import type { Build, BuildStatus, Pipeline, PipelineJob } from '../../grid/build.ts'
import { FINISHED, PIPELINE_FINISHED } from '../../grid/build.ts'
import { LogReader } from '../../client/log-reader.ts'
import { buildLog } from '../../client/build-log.ts'
import { GridUnreachableError, ask, gridStores } from './ask.ts'
import { askPipeline } from './ask-pipeline.ts'
import { UsageError, log } from './report.ts'

/** How often the follower asks the coordinator whether the pipeline and its builds moved on. */
const FOLLOW_POLL_MS = 250
/** The follower waits this long for a coordinator that went away (a restart), then stops with one line. */
const FOLLOW_PATIENCE_MS = 120_000

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** What the follower last saw of one job of the pipeline. */
interface JobSeen {
  status?: BuildStatus
  build?: Build
  waiting?: string
  /** Ids of attempts whose end was said. */
  ended: Set<string>
  /** In the queue of logs to show. */
  queued: boolean
}

/**
 * A coordinator restart while following is waited out (its workers and stores come back by themselves): asks keep
 * being retried for FOLLOW_PATIENCE_MS, said once, before giving up with the unreachable error.
 */
function patient (stopped: () => boolean): <T>(request: () => Promise<T>) => Promise<T> {
  let unreachableSince: number | undefined
  return async request => {
    while (true) {
      if (stopped()) throw new UsageError('stopped following')
      try {
        const answer = await request()
        if (unreachableSince !== undefined) log('coordinator reachable again; following')
        unreachableSince = undefined
        return answer
      } catch (err: any) {
        if (!(err instanceof GridUnreachableError)) throw err
        if (unreachableSince === undefined) {
          unreachableSince = Date.now()
          log(`coordinator unreachable (${err.cause instanceof Error ? err.cause.message : err.message}); still following for up to ${FOLLOW_PATIENCE_MS / 1000} s`)
        }
        if (Date.now() - unreachableSince > FOLLOW_PATIENCE_MS) throw err
        await sleep(FOLLOW_POLL_MS)
      }
    }
  }
}

/** Why a job ended as it did, in words, or undefined when its status says it all. */
function why (job: PipelineJob, build: Build | undefined, jobs: PipelineJob[]): string | undefined {
  if (build?.error !== undefined) return build.error
  const last = build?.attempts.at(-1)
  if (last?.reason !== undefined && job.status !== 'succeeded') return last.reason
  if (job.status === 'skipped') {
    const need = job.needs.map(name => jobs.find(j => j.name === name)).find(j => j !== undefined && j.status !== 'succeeded')
    if (need !== undefined) return `${need.name} ended ${need.status}`
  }
  return undefined
}

/** The header line a build's log is shown under. */
export function jobHeader (name: string): string {
  return `── ${name} ──\n`
}

/**
 * Stream every build's log of pipeline `id` to stdout, one build at a time in the order they started, each after
 * jobHeader; job changes go to stderr. Resolves with the finished pipeline once every started build's log is shown.
 * Ctrl-C stops following (exit 130), not the pipeline. Throws GridUnreachableError once the coordinator has been
 * gone for FOLLOW_PATIENCE_MS.
 */
export async function followPipeline (host: GridHost, code: JoinCode, id: string): Promise<Pipeline> {
  /** Set once the printer stopped (it failed): the watcher and its retries stop too, rather than hold the process. */
  let stopping = false
  const retry = patient(() => stopping)
  const stores = await gridStores(host, code)
  const logs = new LogReader({ host, stores: () => stores, report: log })
  const getBuild = async (buildId: string): Promise<Build | undefined> => await retry(async () => {
    const reply = await ask(host, code, { t: 'get', id: buildId })
    return reply.t === 'build' ? reply.build : undefined
  })

  const seen = new Map<string, JobSeen>()
  /** Builds whose logs are to be shown, in the order they started: the job and its build's id. */
  const toShow: Array<{ job: PipelineJob, build: string }> = []
  let pipeline: Pipeline | undefined
  let watching = true
  let watchError: unknown
  let wake: (() => void) | undefined
  const changed = async (): Promise<void> => { await new Promise<void>(resolve => { wake = resolve }) }

  /**
   * Says a job's new status once, with why it ended: from the watcher, or from the log printer as soon as a build's
   * log ended (so the line comes right under that log, not a poll later under the next one). A finished status is
   * final: a look that read `running` before the printer said `succeeded` says nothing.
   */
  const sayStatus = (job: PipelineJob, build: Build | undefined, status: BuildStatus): void => {
    const s = seen.get(job.name)
    if (s === undefined || status === s.status || (s.status !== undefined && FINISHED.has(s.status))) return
    if (status === 'running') log(`${job.name} running (build ${job.build ?? '?'})`)
    else if (FINISHED.has(status)) {
      // The scheduler's sentence may start with the status itself (`skipped: …`): said once.
      const reason = why({ ...job, status }, build, pipeline?.jobs ?? [])?.replace(new RegExp(`^${status}: `), '')
      log(`${job.name} ${status}${reason !== undefined ? `: ${reason}` : ''}`)
    }
    s.status = status
  }

  /** One look at the pipeline and its unfinished builds: says what moved on, queues the builds that started. */
  const look = async (): Promise<boolean> => {
    pipeline = await retry(async () => await askPipeline(host, code, { t: 'get-pipeline', id }))
    const started: Array<{ job: PipelineJob, build: string, at: string }> = []
    for (const job of pipeline.jobs) {
      let s = seen.get(job.name)
      if (s === undefined) {
        s = { ended: new Set(), queued: false }
        seen.set(job.name, s)
      }
      const buildId = job.build
      if (buildId !== undefined && (s.build === undefined || !FINISHED.has(s.build.status) || job.status !== s.status)) {
        s.build = await getBuild(buildId) ?? s.build
      }
      const build = s.build
      // The build, asked after the pipeline, is the fresher of the two.
      const status = build?.status ?? job.status
      // An attempt that ended before the last one (a lost worker, say): the build goes on with another.
      build?.attempts.forEach((attempt, i) => {
        if (attempt.outcome === undefined || ended(s, attempt.id) || i === build.attempts.length - 1) return
        log(`${job.name}: attempt ${i + 1} ended ${attempt.outcome}${attempt.reason !== undefined ? `: ${attempt.reason}` : ''}`)
      })
      // Waiting for its needs is what the pipeline says already; once they succeeded, why it still waits (no worker
      // has what it requires, every slot is taken) is news.
      const needsDone = job.needs.every(name => pipeline?.jobs.find(j => j.name === name)?.status === 'succeeded')
      const waiting = status === 'queued' && needsDone ? build?.waiting : undefined
      if (waiting !== undefined && waiting !== s.waiting) log(`${job.name} waiting: ${waiting}`)
      s.waiting = waiting
      sayStatus(job, build, status)
      const hasRun = status === 'running' || (build?.attempts.length ?? 0) > 0
      if (hasRun && !s.queued && buildId !== undefined) {
        s.queued = true
        started.push({ job, build: buildId, at: build?.attempts[0]?.started ?? build?.started ?? '' })
      }
    }
    // Builds seen starting in the same look go in the order they started (ISO times sort as text).
    started.sort((a, b) => a.at < b.at ? -1 : a.at > b.at ? 1 : 0)
    toShow.push(...started)
    const jobsDone = [...seen.values()].every(s => s.status !== undefined && FINISHED.has(s.status))
    return PIPELINE_FINISHED.has(pipeline.status) && jobsDone
  }

  const watch = (async () => {
    try {
      while (!stopping && !(await look())) {
        wake?.()
        await sleep(FOLLOW_POLL_MS)
      }
    } catch (err) {
      watchError = err
    } finally {
      watching = false
      wake?.()
    }
  })()

  // Ctrl-C stops following, not the pipeline: say so.
  const onInterrupt = (): void => {
    log(`stopped following; pipeline ${id} goes on`)
    process.exit(130)
  }
  process.once('SIGINT', onInterrupt)
  let lastByte = 0x0a
  const write = async (bytes: Uint8Array | string): Promise<void> => {
    if (bytes.length === 0) return
    lastByte = typeof bytes === 'string' ? bytes.charCodeAt(bytes.length - 1) : bytes[bytes.length - 1]
    if (!process.stdout.write(bytes)) await new Promise(resolve => process.stdout.once('drain', resolve))
  }
  const view = {
    get: getBuild,
    nextChange: async (_id: string, signal: AbortSignal) => {
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, FOLLOW_POLL_MS)
        signal.addEventListener('abort', () => { clearTimeout(timer); resolve() }, { once: true })
      })
    }
  }
  try {
    let shown = 0
    while (true) {
      if (watchError !== undefined) throw watchError
      const next = toShow[shown]
      if (next === undefined) {
        if (!watching) break
        await changed()
        continue
      }
      shown++
      // A log that did not end its last line would carry the next header on it.
      if (lastByte !== 0x0a) await write('\n')
      await write(jobHeader(next.job.name))
      for await (const chunk of buildLog(view, logs, next.build, { follow: true })) await write(chunk)
      const done = await getBuild(next.build)
      if (done !== undefined && FINISHED.has(done.status)) sayStatus(next.job, done, done.status)
    }
    await watch
    if (watchError !== undefined) throw watchError
  } finally {
    stopping = true
    process.removeListener('SIGINT', onInterrupt)
  }
  if (lastByte !== 0x0a) await write('\n')
  if (pipeline === undefined) throw new UsageError(`pipeline ${id} vanished`)
  // After long logs, the jobs that did not succeed are named again, where the eye lands.
  const notSucceeded = pipeline.jobs.filter(j => j.status !== 'succeeded').map(j => `${j.name} ${j.status}`)
  const summary = pipeline.error ?? (notSucceeded.length > 0 && pipeline.status !== 'succeeded' ? notSucceeded.join(', ') : undefined)
  log(`pipeline ${id} ${pipeline.status}${summary !== undefined ? `: ${summary}` : ''}`)
  return pipeline
}

/** Whether the end of `attempt` was said already; notes it as said. */
function ended (s: JobSeen, attempt: string): boolean {
  if (s.ended.has(attempt)) return true
  s.ended.add(attempt)
  return false
}

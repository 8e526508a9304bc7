// Following a build from a terminal (`grid tail BUILD`, `submit --follow`): its log on stdout from any store that
// holds it, and on stderr why it waits, how each attempt ended, and how the build ended. A coordinator restart
// while following is waited out, not reported as a failure.
import type { GridHost } from '../../net/host.ts'
import type { JoinCode } from '../../net/join-code.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { LogReader } from '../../client/log-reader.ts'
import { buildLog } from '../../client/build-log.ts'
import { GridUnreachableError, ask, gridStores } from './ask.ts'
import { UsageError, log } from './report.ts'

/** How often a CLI follower asks the coordinator whether the build moved on. */
const FOLLOW_POLL_MS = 250
/** A follower (`grid tail BUILD`, `submit --follow`) waits this long for a coordinator that went away (a restart). */
const FOLLOW_PATIENCE_MS = 120_000

/**
 * Says on stderr, once each as the build's record changes, why a followed build waits, how each attempt ended and
 * why: a build queued for a worker nobody has, or re-queued after a lost one, is otherwise a silent terminal.
 */
function buildReporter (report: (line: string) => void): (build: Build) => void {
  let waiting: string | undefined
  const ended = new Set<string>()
  return build => {
    // How an attempt ended comes before why the build waits again after it.
    build.attempts.forEach((attempt, i) => {
      if (attempt.outcome === undefined || ended.has(attempt.id)) return
      ended.add(attempt.id)
      report(`attempt ${i + 1} ended ${attempt.outcome}${attempt.reason !== undefined ? `: ${attempt.reason}` : ''}`)
    })
    if (build.waiting !== undefined && build.waiting !== waiting) report(`waiting: ${build.waiting}`)
    waiting = build.waiting
  }
}

/**
 * Stream a build's log to stdout through any store that holds it, and why it waits or ended on stderr; resolves
 * with the finished build, once its last line says how it ended.
 */
export async function followBuild (host: GridHost, code: JoinCode, id: string, from: number): Promise<Build> {
  const stores = await gridStores(host, code)
  const reportChanges = buildReporter(log)
  const logs = new LogReader({ host, stores: () => stores, report: log })
  // The coordinator may restart while we follow (its workers and stores come back by themselves): keep asking
  // for a while, say so once, and only then give up with one line.
  let unreachableSince: number | undefined
  const get = async (buildId: string): Promise<Build | undefined> => {
    while (true) {
      try {
        const reply = await ask(host, code, { t: 'get', id: buildId })
        if (unreachableSince !== undefined) log('coordinator reachable again; following')
        unreachableSince = undefined
        if (reply.t !== 'build') return undefined
        reportChanges(reply.build)
        return reply.build
      } catch (err: any) {
        if (!(err instanceof GridUnreachableError)) throw err
        if (unreachableSince === undefined) {
          unreachableSince = Date.now()
          log(`coordinator unreachable (${err.cause instanceof Error ? err.cause.message : err.message}); still following for up to ${FOLLOW_PATIENCE_MS / 1000} s`)
        }
        if (Date.now() - unreachableSince > FOLLOW_PATIENCE_MS) throw err
        await new Promise(resolve => setTimeout(resolve, FOLLOW_POLL_MS))
      }
    }
  }
  const view = {
    get,
    nextChange: async (_id: string, signal: AbortSignal) => {
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, FOLLOW_POLL_MS)
        signal.addEventListener('abort', () => { clearTimeout(timer); resolve() }, { once: true })
      })
    }
  }
  // Ctrl-C stops following, not the build: say so, and how to stop the build too.
  const onInterrupt = (): void => {
    log(`stopped following; build ${id} goes on (grid cancel ${id} beside the coordinator cancels it)`)
    process.exit(130)
  }
  process.once('SIGINT', onInterrupt)
  try {
    for await (const chunk of buildLog(view, logs, id, { from, follow: true })) {
      if (!process.stdout.write(chunk)) await new Promise(resolve => process.stdout.once('drain', resolve))
    }
  } finally {
    process.removeListener('SIGINT', onInterrupt)
  }
  let build = await get(id)
  // The log ends when the last step's log is sealed; the final status may land a moment later.
  for (let i = 0; build !== undefined && !FINISHED.has(build.status) && i < 400; i++) {
    await new Promise(resolve => setTimeout(resolve, FOLLOW_POLL_MS))
    build = await get(id)
  }
  if (build === undefined) throw new UsageError(`build ${id} vanished`)
  log(`build ${id} ${build.status}${build.error !== undefined ? `: ${build.error}` : ''}`)
  return build
}

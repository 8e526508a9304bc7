// A whole build's log: its steps' logs in order, each after a header line. Served by
// `GET /api/builds/:id/log` and printed by `grid submit --follow`; the bytes come from stores, never the coordinator.
import type { Build } from '../grid/build.ts'
import { FINISHED } from '../grid/build.ts'
import type { LogReader } from './log-reader.ts'
import { STEP_END_GRACE_MS } from './constants.ts'

export interface BuildView {
  get (id: string): Promise<Build | undefined>
  /** Resolves at the build's next change (or when the signal aborts). */
  nextChange (id: string, signal: AbortSignal): Promise<void>
}

export interface BuildLogOptions {
  from?: number
  follow?: boolean
  signal?: AbortSignal
}

const encoder = new TextEncoder()

export function stepHeader (build: Build, index: number): string {
  return `--- step ${index + 1}/${build.steps.length}: ${build.steps[index].name} ---\n`
}

/** Yields the build's log bytes from `from`; with `follow`, until the build has finished and its logs are read. */
export async function * buildLog (view: BuildView, logs: LogReader, id: string, options: BuildLogOptions = {}): AsyncGenerator<Uint8Array> {
  let skip = options.from ?? 0
  const emit = function * (bytes: Uint8Array): Generator<Uint8Array> {
    if (skip >= bytes.length) { skip -= bytes.length; return }
    yield bytes.subarray(skip)
    skip = 0
  }
  const outer = options.signal ?? new AbortController().signal
  let attempt: string | undefined
  let step = 0
  while (!outer.aborted) {
    const build = await view.get(id)
    if (build === undefined) return
    const current = build.attempts.at(-1)?.id
    if (current !== attempt) {
      if (attempt !== undefined) yield * emit(encoder.encode(`--- attempt ${attempt} ended ${build.attempts.find(a => a.id === attempt)?.outcome ?? ''}; output of attempt ${current ?? '(queued)'} follows ---\n`))
      attempt = current
      step = 0
    }
    const finished = FINISHED.has(build.status)
    const record = build.steps[step]
    if (record !== undefined && (record.started !== undefined || record.exitCode !== undefined)) {
      yield * emit(encoder.encode(stepHeader(build, step)))
      // Follow the step's log until it is sealed: after its exit code, the last step's log goes on with what keeping
      // the artifacts has to say. A finished build's logs are all sealed (every ending seals them); a watch ends a
      // read whose attempt is over, should its seal never come.
      const stepDone = new AbortController()
      const stop = (): void => stepDone.abort()
      outer.addEventListener('abort', stop, { once: true })
      const follow = options.follow === true && !finished && record.logCid === undefined
      const watch = follow ? watchStep(view, id, attempt, stepDone) : undefined
      try {
        for await (const chunk of logs.read(record.log, { follow, signal: stepDone.signal })) {
          yield * emit(chunk)
        }
      } finally {
        outer.removeEventListener('abort', stop)
        stepDone.abort()
        await watch
      }
      step++
      continue
    }
    if (finished || options.follow !== true) return
    await view.nextChange(id, outer)
  }
}

/** Aborts `done` once the attempt is no longer current or the build finished, after the log's tail had time to arrive. */
async function watchStep (view: BuildView, id: string, attempt: string | undefined, done: AbortController): Promise<void> {
  while (!done.signal.aborted) {
    // A view that cannot answer (its coordinator gone for good) ends the follow the same way.
    const build = await view.get(id).catch(() => undefined)
    const over = build === undefined || build.attempts.at(-1)?.id !== attempt || FINISHED.has(build.status)
    if (over) {
      // The seal normally ends the read first; this only ends a read whose writer will never seal.
      setTimeout(() => done.abort(), STEP_END_GRACE_MS).unref()
      return
    }
    await view.nextChange(id, done.signal)
  }
}

// Fixtures for the scheduler's unit tests: a memory history, stub worker links, and small helpers. No network.
import * as assert from 'uvu/assert'
import { setTimeout as sleep } from 'node:timers/promises'
import { FINISHED } from '../grid/build.ts'
import type { AttemptOutcome, Build, BuildSource, Capabilities } from '../grid/build.ts'
import type { BuildHistory } from '../coordinator/history.ts'
import { parseJob } from '../grid/job.ts'
import type { Job, JobInput } from '../grid/job.ts'
import { Scheduler } from '../coordinator/scheduler.ts'
import type { Assignment, SchedulerInit, SecretResolver, WorkerLink } from '../coordinator/scheduler.ts'
import { SecretUnavailableError } from '../coordinator/scheduler.ts'
import type { PeerAddress } from '../net/dial.ts'

/** Build history in a Map: what the scheduler needs of LevelDB, minus the disk. */
export class MemoryHistory implements BuildHistory {
  readonly builds = new Map<string, Build>()
  saves = 0

  async open (): Promise<void> {}
  async close (): Promise<void> {}

  async save (build: Build): Promise<void> {
    // Snapshot now, as LevelBuildHistory does: the scheduler keeps mutating the live object.
    this.builds.set(build.id, structuredClone(build))
    this.saves++
  }

  async get (id: string): Promise<Build | undefined> {
    const build = this.builds.get(id)
    return build === undefined ? undefined : structuredClone(build)
  }

  async list (limit: number): Promise<Build[]> {
    return [...this.builds.values()].sort((a, b) => a.id < b.id ? 1 : -1).slice(0, limit).map(b => structuredClone(b))
  }

  async active (): Promise<Build[]> {
    return [...this.builds.values()].filter(b => !FINISHED.has(b.status)).map(b => structuredClone(b))
  }
}

let workerCount = 0

/** A worker session that records what the scheduler tells it. */
export class StubLink implements WorkerLink {
  readonly worker: string
  readonly capabilities: Capabilities
  readonly slots: number
  /** Set before it joins for a worker that proved trust. */
  trusted = false
  readonly assigned: Assignment[] = []
  readonly cancelled: Array<{ attempt: string, reason: 'cancelled' | 'stale', why?: string }> = []

  constructor (capabilities: Capabilities = { os: 'linux' }, slots = 1, worker = `12D3KooWstub${++workerCount}`) {
    this.worker = worker
    this.capabilities = capabilities
    this.slots = slots
  }

  assign (assignment: Assignment): void {
    this.assigned.push(structuredClone(assignment))
  }

  cancel (attempt: string, reason: 'cancelled' | 'stale', why?: string): void {
    this.cancelled.push({ attempt, reason, ...(why !== undefined ? { why } : {}) })
  }

  /** The attempt id of the n-th assignment (0-based). */
  attempt (n = 0): string {
    const a = this.assigned[n]
    assert.ok(a !== undefined, `${this.worker} has assignment #${n}`)
    return a.attempt
  }
}

/**
 * A secret store in a Map, standing in for the grid's: each secret has a value and, optionally, the repositories
 * whose builds may use it. Every check and every values() call is recorded.
 */
export class StubSecrets implements SecretResolver {
  readonly secrets = new Map<string, { value: string, repos?: string[] }>()
  readonly checked: Array<{ names: string[], scope: BuildSource }> = []
  readonly given: string[][] = []

  constructor (secrets: Record<string, string | { value: string, repos?: string[] }> = {}) {
    for (const [name, s] of Object.entries(secrets)) this.secrets.set(name, typeof s === 'string' ? { value: s } : s)
  }

  check (names: string[], scope: BuildSource): string | undefined {
    this.checked.push({ names: [...names], scope: structuredClone(scope) })
    for (const name of names) {
      const secret = this.secrets.get(name)
      if (secret === undefined) return `secret ${name} is not available to this build (no such secret)`
      if (secret.repos !== undefined && (scope.repo === null || !secret.repos.includes(scope.repo))) {
        return `secret ${name} is not available to this build (scope: repos ${secret.repos.join(', ')})`
      }
    }
    return undefined
  }

  values (names: string[]): Record<string, string> {
    this.given.push([...names])
    const values: Record<string, string> = {}
    for (const name of names) {
      const secret = this.secrets.get(name)
      if (secret === undefined) throw new SecretUnavailableError(`secret ${name} is not available to this build (it was removed)`)
      values[name] = secret.value
    }
    return values
  }
}

export const STORES: PeerAddress[] = [{ peer: '12D3KooWstore', addrs: ['/ip4/127.0.0.1/tcp/4001'] }]

export function job (input: Partial<JobInput> = {}): Job {
  return parseJob({ steps: [{ name: 'build', run: 'make' }, { run: 'make test' }], ...input })
}

/** Every scheduler a test makes is stopped after it, so no timer keeps the process alive. */
const schedulers: Scheduler[] = []

export function scheduler (init: Partial<SchedulerInit> = {}): { scheduler: Scheduler, history: BuildHistory } {
  const history = init.history ?? new MemoryHistory()
  const s = new Scheduler({ history, stores: () => STORES, ...init })
  schedulers.push(s)
  return { scheduler: s, history }
}

export function stopAll (): void {
  for (const s of schedulers.splice(0)) s.stop()
}

/** Wait, at most a few seconds, for a condition a timer will make true. */
export async function until (check: () => boolean | Promise<boolean>, what: string, limitMs = 5_000): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!(await check())) {
    if (Date.now() > deadline) assert.unreachable(`gave up waiting for ${what}`)
    await sleep(10)
  }
}

export async function rejection (promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (err) {
    assert.instance(err, Error)
    return err as Error
  }
  assert.unreachable('expected the promise to reject')
  throw new Error('unreachable')
}

export async function stored (history: BuildHistory, id: string): Promise<Build> {
  const build = await history.get(id)
  assert.ok(build !== undefined, `history has build ${id}`)
  return build
}

export function finishAttempt (s: Scheduler, link: StubLink, attempt: string, outcome: Exclude<AttemptOutcome, 'lost'> = 'succeeded'): void {
  s.stepFinished(link, attempt, 0, outcome === 'succeeded' ? 0 : 1)
  s.attemptFinished(link, attempt, outcome)
}


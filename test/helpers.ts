// Shared pieces of the end-to-end tests: temp data dirs, a grid started the way `grid up` starts it,
// bounded polling, and child processes of the real CLI.
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startCoordinatorNode, startWorkerNode } from '../node/roles.ts'
import type { CoordinatorNode, WorkerNode } from '../node/roles.ts'
import type { Build } from '../grid/build.ts'
import type { SecretResolver } from '../coordinator/scheduler.ts'
import { FINISHED } from '../grid/build.ts'
import { waitFor } from './wait.ts'

export { processGone, waitFor } from './wait.ts'

export const ROOT = join(import.meta.dirname, '..')
/**
 * Every `grid` the tests run keeps its name cache (client/content/name-cache.ts) here, not in the user's ~/.cache;
 * one directory per test process.
 */
export const TEST_CACHE_HOME = join(tmpdir(), `grid-test-cache-${process.pid}`)
process.env.XDG_CACHE_HOME = TEST_CACHE_HOME
process.on('exit', () => { rmSync(TEST_CACHE_HOME, { recursive: true, force: true }) })
export const GRID_BIN = join(ROOT, 'node/bin/grid.js')

export async function tempDir (label: string): Promise<string> {
  return await mkdtemp(join(tmpdir(), `grid-${label}-`))
}

export async function removeDir (dir: string | undefined): Promise<void> {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
}

export interface TestGrid {
  dir: string
  node: CoordinatorNode
  workers: WorkerNode[]
  url: string
  token: string
  api (path: string, init?: RequestInit): Promise<Response>
  submit (job: unknown): Promise<string>
  /** The build once it finished; waits at most `timeoutMs` (30 s unless a test knows it takes longer). */
  finished (id: string, timeoutMs?: number): Promise<Build>
  stop (): Promise<void>
}

export interface TestGridInit {
  /**
   * `listen`: the worker listens on loopback and so keeps and serves a cache of its outputs. `trusted` (default true,
   * as `grid up`'s own workers): false joins it with the ordinary join code.
   */
  workers?: Array<{ capabilities?: Record<string, string>, slots?: number, listen?: boolean, trusted?: boolean }>
  /** 'tcp' (default) listens on 127.0.0.1; 'memory' uses the in-process transport. */
  transport?: 'tcp' | 'memory'
  dir?: string
  heartbeatMs?: number
  silenceLimitMs?: number
  /** Where jobs' secrets come from (a stub standing in for the grid's secret store). */
  secrets?: SecretResolver
}

let memoryCounter = 0

/** What `grid up` runs, in this process: coordinator + store + HTTP API, plus workers on their own libp2p nodes. */
export async function startTestGrid (init: TestGridInit = {}): Promise<TestGrid> {
  const dir = init.dir ?? await tempDir('grid')
  const listen = init.transport === 'memory' ? [`/memory/grid-${process.pid}-${memoryCounter++}`] : ['/ip4/127.0.0.1/tcp/0']
  const node = await startCoordinatorNode({
    dataDir: dir, listen, http: '127.0.0.1:0', withStore: true, heartbeatMs: init.heartbeatMs, silenceLimitMs: init.silenceLimitMs, secrets: init.secrets
  })
  const workers: WorkerNode[] = []
  for (const [i, w] of (init.workers ?? [{}]).entries()) {
    const { trust, ...ordinary } = node.localJoin
    const trusted = w.trusted !== false
    const worker = await startWorkerNode({
      dataDir: join(dir, 'workers', String(i + 1)),
      join: trusted ? node.localJoin : ordinary,
      secret: node.secret,
      ...(trusted ? { trust: node.trust } : {}),
      listen: w.listen === true ? ['/ip4/127.0.0.1/tcp/0'] : [],
      capabilities: { os: process.platform, ...w.capabilities },
      slots: w.slots ?? 1
    })
    workers.push(worker)
  }
  await Promise.all(workers.map(async w => { await w.worker.ready(AbortSignal.timeout(10_000)) }))
  const url = node.web?.url ?? ''
  const api = async (path: string, requestInit?: RequestInit): Promise<Response> => await fetch(url + path, requestInit)
  const grid: TestGrid = {
    dir,
    node,
    workers,
    url,
    token: node.token,
    api,
    submit: async (job) => {
      const res = await api('/api/builds', { method: 'POST', headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' }, body: JSON.stringify(job) })
      const body = await res.json() as { id?: string, error?: string }
      if (res.status !== 201 || body.id === undefined) throw new Error(`submit answered ${res.status}: ${body.error}`)
      return body.id
    },
    finished: async (id, timeoutMs = 30_000) => await waitFor(`build ${id} to finish`, async () => {
      const build = await (await api(`/api/builds/${id}`)).json() as Build
      return FINISHED.has(build.status) ? build : undefined
    }, timeoutMs),
    stop: async () => {
      for (const w of workers) await w.stop()
      await node.stop()
      if (init.dir === undefined) await removeDir(dir)
    }
  }
  return grid
}

export interface CliProcess {
  child: ChildProcessWithoutNullStreams
  stdout (): string
  stderr (): string
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>
  /** Wait for a line on stdout or stderr matching `pattern`. */
  line (pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  stop (): Promise<void>
}

/** Run the real `grid` command (the same launcher `npx grid` runs) as a child process. */
export function grid (args: string[], cwd: string = ROOT): CliProcess {
  const child = spawn(process.execPath, [GRID_BIN, ...args], { cwd, env: { ...process.env, FORCE_COLOR: '0' } })
  let out = ''
  let err = ''
  child.stdout.on('data', d => { out += d })
  child.stderr.on('data', d => { err += d })
  const exited = new Promise<number | string>(resolve => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)))
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    line: async (pattern, timeoutMs = 15_000) => await waitFor(`${pattern} from grid ${args[0]}`, () => pattern.exec(out) ?? pattern.exec(err) ?? undefined, timeoutMs),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    }
  }
}

/** Run `grid ...` to its end. */
export async function gridRun (args: string[], cwd?: string, timeoutMs = 60_000): Promise<{ code: number | string, stdout: string, stderr: string }> {
  const p = grid(args, cwd)
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs)
  const code = await p.exited
  clearTimeout(timer)
  return { code, stdout: p.stdout(), stderr: p.stderr() }
}

/** One line on stderr, a non-zero exit, no stack trace. */
export function oneLineError (result: { code: number | string, stderr: string }, pattern: RegExp): void {
  assert.ok(result.code !== 0, `exit code ${result.code}`)
  const lines = result.stderr.trim().split('\n')
  assert.is(lines.length, 1, `one line on stderr, got: ${result.stderr}`)
  assert.match(lines[0], /^grid: /)
  assert.match(lines[0], pattern)
  assert.not.match(result.stderr, /unexpected error|\bat .+:\d+:\d+/)
}

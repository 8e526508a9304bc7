// The grid laid out over the hosts: a coordinator on `coord`, two stores, three workers, each a real `grid`
// process on its own host. The runner watches it through the coordinator's HTTP API, over its own link.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { GridProcess, waitFor } from './host-process.ts'
import type { Host, HostName } from './topology.ts'

export const COORDINATOR_PORT = 7340
export const HTTP_PORT = 7341
export const STORE_PORT = 7350

/** Worker hosts and the capability each announces: w1 and w2 share the pool a fault hits, w3 runs the tailed build. */
export const WORKER_POOLS: Record<'w1' | 'w2' | 'w3', string> = { w1: 'cut', w2: 'cut', w3: 'long' }

export interface Capacity { nodes: number, slots: number, busy: number, stores: number }

export class HostGrid {
  readonly hosts: Map<HostName, Host>
  readonly dir: string
  readonly processes = new Map<HostName, GridProcess>()
  /** Worker peer ID to the host it runs on (from each worker's "joined the grid" line). */
  readonly workerHost = new Map<string, HostName>()
  token = ''

  constructor (hosts: Map<HostName, Host>, dir: string) {
    this.hosts = hosts
    this.dir = dir
  }

  host (name: HostName): Host {
    return this.hosts.get(name)!
  }

  get joinFile (): string {
    return join(this.dir, 'coord', 'join')
  }

  get url (): string {
    return `http://${this.host('coord').addr}:${HTTP_PORT}`
  }

  /** Start (or restart, same data dir and address) the coordinator; resolves once it printed its join code. */
  async startCoordinator (): Promise<GridProcess> {
    const h = this.host('coord')
    const p = new GridProcess(h, ['coordinator', '--data', join(this.dir, 'coord'), '--listen', `/ip4/${h.addr}/tcp/${COORDINATOR_PORT}`,
      '--http', `${h.addr}:${HTTP_PORT}`, '--replicas', '2'])
    this.processes.set('coord', p)
    await p.line(/^join: /m, 30_000)
    this.token = (await readFile(join(this.dir, 'coord', 'api-token'), 'utf8')).trim()
    return p
  }

  async startStore (name: 'store1' | 'store2'): Promise<GridProcess> {
    const h = this.host(name)
    const p = new GridProcess(h, ['store', '--join', this.joinFile, '--data', join(this.dir, name), '--listen', `/ip4/${h.addr}/tcp/${STORE_PORT}`])
    this.processes.set(name, p)
    await p.line(/store 12D3KooW\w+ joined the grid/, 30_000)
    return p
  }

  async startWorker (name: 'w1' | 'w2' | 'w3'): Promise<GridProcess> {
    const p = new GridProcess(this.host(name), ['worker', '--join', this.joinFile, '--data', join(this.dir, name), '--cap', `pool=${WORKER_POOLS[name]}`])
    this.processes.set(name, p)
    const peer = (await p.line(/worker (12D3KooW\w+) joined the grid/, 30_000))[1]
    this.workerHost.set(peer, name)
    return p
  }

  process (name: HostName): GridProcess {
    const p = this.processes.get(name)
    if (p === undefined) throw new Error(`nothing runs on ${name}`)
    return p
  }

  async get<T> (path: string, timeoutMs = 3_000): Promise<T> {
    const res = await fetch(this.url + path, { signal: AbortSignal.timeout(timeoutMs) })
    if (!res.ok) throw new Error(`GET ${path} answered ${res.status}`)
    return await res.json() as T
  }

  async text (path: string, timeoutMs = 3_000): Promise<string> {
    const res = await fetch(this.url + path, { signal: AbortSignal.timeout(timeoutMs) })
    if (!res.ok) throw new Error(`GET ${path} answered ${res.status}`)
    return await res.text()
  }

  async submit (job: unknown): Promise<string> {
    const res = await fetch(`${this.url}/api/builds`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(job),
      signal: AbortSignal.timeout(5_000)
    })
    const body = await res.json() as { id?: string, error?: string }
    if (res.status !== 201 || body.id === undefined) throw new Error(`submit answered ${res.status}: ${body.error}`)
    return body.id
  }

  async build (id: string): Promise<Build> {
    return await this.get<Build>(`/api/builds/${id}`)
  }

  async until (id: string, what: string, check: (b: Build) => boolean, timeoutMs: number): Promise<Build> {
    return await waitFor(`build ${id}: ${what}`, async () => { const b = await this.build(id); return check(b) ? b : undefined }, timeoutMs, 100)
  }

  async finished (id: string, timeoutMs: number): Promise<Build> {
    return await this.until(id, 'finished', b => FINISHED.has(b.status), timeoutMs)
  }

  async capacity (): Promise<Capacity> {
    return await this.get<Capacity>('/api/capacity')
  }

  /** Wait until the coordinator sees `nodes` workers and `stores` stores. */
  async connected (nodes: number, stores: number, timeoutMs: number): Promise<Capacity> {
    return await waitFor(`${nodes} workers and ${stores} stores connected`, async () => {
      const c = await this.capacity()
      return c.nodes === nodes && c.stores === stores ? c : undefined
    }, timeoutMs, 100)
  }
}

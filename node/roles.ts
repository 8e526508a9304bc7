// Starting the grid's roles on libp2p hosts. `grid up` is these composed in one process; each `grid ROLE`
// command starts one of them alone. Tests start them the same way, so what they test is what users run.
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createHost, shareableAddrs } from '../net/host.ts'
import type { GridHost, SecretHolder } from '../net/host.ts'
import type { PrivateKey } from '@libp2p/interface'
import { loadIdentity } from '../net/identity.ts'
import { encodeJoinCode, newSecret } from '../net/join-code.ts'
import { SECRET_BYTES, TRUST_KEY_BYTES } from '../net/constants.ts'
import { newTrustKey } from '../grid/trust.ts'
import type { TrustHolder } from '../grid/trust.ts'
import type { JoinCode } from '../net/join-code.ts'
import { Worker } from '../worker/index.ts'
import { WorkerCache } from '../worker/cache.ts'
import type { Capabilities } from '../grid/build.ts'
import { Coordinator } from '../coordinator/index.ts'
import type { SecretResolver } from '../coordinator/scheduler.ts'
import { DenyList } from '../grid/deny-list.ts'
import { Store } from '../artifact-store/index.ts'
import { StoreAnnouncement, StoreReporter } from '../artifact-store/membership.ts'
import { LogReader } from '../client/log-reader.ts'
import { putPlaced } from '../client/content/place.ts'
import { rankFor } from '../grid/placement.ts'
import { createApp } from '../web/app.ts'
import type { Admission } from '../web/admission.ts'
import { startWebServer } from '../web/server.ts'
import type { WebServer } from '../web/server.ts'
import { GridError } from '../net/errors.ts'

export const SECRET_FILE = 'secret'
export const JOIN_FILE = 'join'
/** The grid's trust key (mode 0600): what the trusted join code carries beside the secret. */
export const TRUST_FILE = 'trust'
/** The trusted join code (mode 0600), beside DATA/join: workers that join with it get secrets. */
export const JOIN_TRUSTED_FILE = 'join-trusted'
export const TOKEN_FILE = 'api-token'
/** Where `grid up`/`grid coordinator` note their HTTP URL, for operator commands run beside them (`grid deny`). */
export const WEB_URL_FILE = 'web-url'
export const DENIED_FILE = 'denied'

export class ListenError extends GridError {
  name = 'ListenError'
}

type Log = (line: string) => void

/** Read a small secret file, or make it (mode 0600) the first time. */
async function keptSecret (path: string, make: () => Uint8Array, valid: (b: Uint8Array) => boolean): Promise<Uint8Array> {
  try {
    const bytes = new Uint8Array(await readFile(path))
    if (!valid(bytes)) throw new Error(`${path} is damaged; move it away to make a new one (nodes will need a new join code)`)
    return bytes
  } catch (err: any) {
    if (err.code !== 'ENOENT') throw err
  }
  await writeFile(path, make(), { mode: 0o600, flag: 'wx' }).catch((err) => { if (err.code !== 'EEXIST') throw err })
  return new Uint8Array(await readFile(path))
}

async function startHost (dataDir: string, secret: Uint8Array | SecretHolder, listen: string[], memory = false, denied?: ReadonlySet<string>): Promise<{ host: GridHost, identity: PrivateKey }> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const identity = await loadIdentity(dataDir)
  try {
    return { host: await createHost({ identity, secret, listen, memory, denied }), identity }
  } catch (err: any) {
    if (err.code === 'EADDRINUSE' || /EADDRINUSE|address already in use/i.test(String(err.message))) {
      throw new ListenError(`cannot listen on ${listen.join(', ')}: the port is in use (is another grid running? pass --listen /ip4/0.0.0.0/tcp/0 for a free port)`)
    }
    throw err
  }
}

export interface CoordinatorNodeInit {
  dataDir: string
  listen: string[]
  /** HOST:PORT to serve the HTTP API and web UI on; none for no HTTP. */
  http?: string
  /** Run a store in the same process (`grid up`). */
  withStore: boolean
  /** Size cap for that store's blocks (`grid up --max-size`); none by default. */
  storeMaxBytes?: number
  heartbeatMs?: number
  silenceLimitMs?: number
  /** Stores each piece of content is kept on. @default DEFAULT_REPLICAS */
  replicas?: number
  /** Where jobs' secrets come from instead of the coordinator's own (tests). */
  secrets?: SecretResolver
  log?: Log
}

export interface CoordinatorNode {
  host: GridHost
  coordinator: Coordinator
  store?: Store
  logs: LogReader
  web?: WebServer
  joinCode: string
  /** The trusted join code (DATA/join-trusted): the ordinary one plus the trust key. */
  trustedJoinCode: string
  /**
   * The trusted join code with only loopback addresses: what workers in this same process dial (they are the
   * operator's own, so they are trusted).
   */
  localJoin: JoinCode
  /** The grid's secret as this node's host uses it; workers in this process share it, so they follow a rotation. */
  secret: SecretHolder
  /** The grid's trust key as the coordinator checks it; workers in this process share it, so they follow a rotation. */
  trust: TrustHolder
  token: string
  /**
   * Make a new secret and both join codes, and drop every connection (all were made with the old secret): nodes that
   * hold only the old codes are cut off; nodes given a new one come back.
   */
  rotate (): Promise<string>
  /**
   * Make a new trust key and trusted join code (the ordinary code stays), and cut the workers that proved trust with
   * the old key: with only the old code they come back untrusted. Resolves with the new trusted code.
   */
  rotateTrusted (): Promise<string>
  stop (): Promise<void>
}

export async function startCoordinatorNode (init: CoordinatorNodeInit): Promise<CoordinatorNode> {
  await mkdir(init.dataDir, { recursive: true, mode: 0o700 })
  const secretFile = join(init.dataDir, SECRET_FILE)
  const secret: SecretHolder = { current: await keptSecret(secretFile, newSecret, b => b.length === SECRET_BYTES) }
  const trustFile = join(init.dataDir, TRUST_FILE)
  const trust: TrustHolder = { current: await keptSecret(trustFile, newTrustKey, b => b.length === TRUST_KEY_BYTES) }
  const token = Buffer.from(await keptSecret(join(init.dataDir, TOKEN_FILE),
    () => new TextEncoder().encode(randomBytes(32).toString('base64url')), b => b.length >= 16)).toString('utf8').trim()
  const denied = new DenyList(new Set(), join(init.dataDir, DENIED_FILE))
  await denied.load()
  const { host, identity } = await startHost(init.dataDir, secret, init.listen, false, denied.peers)
  // Whatever fails from here (a data dir in use, a port taken) stops the host, so the process exits with its one line.
  return await orStop(host, async () => {
  const addrs = shareableAddrs(host)
  if (addrs.length === 0) {
    await host.stop()
    throw new ListenError('a coordinator must listen on at least one address (give --listen)')
  }
  let store: Store | undefined
  if (init.withStore) {
    store = new Store({ host, dataDir: init.dataDir, coordinator: host.peerId, maxBytes: init.storeMaxBytes })
    await store.start()
  }
  // Declared before the coordinator: its commit statuses ask for the web URL (undefined until it serves).
  let web: WebServer | undefined
  const coordinator = new Coordinator({
    host,
    identity,
    dataDir: init.dataDir,
    localStore: store !== undefined ? { peer: host.peerId.toString(), addrs: addrs.map(String) } : undefined,
    localControl: store !== undefined
      ? {
          fence: logs => { for (const id of logs) store.logs.fence(id).catch(() => {}) },
          deny: () => {},
          copy: async (root, to) => { await store.copyRoot(root, to) },
          drop: roots => { store.roots.drop(roots).catch(err => init.log?.(`dropping roots failed: ${err.message}`)) }
        }
      : undefined,
    localBlocks: store?.blocks,
    denied,
    trust,
    secrets: init.secrets,
    heartbeatMs: init.heartbeatMs,
    silenceLimitMs: init.silenceLimitMs,
    replicas: init.replicas,
    webUrl: () => web?.url,
    log: init.log
  })
  await coordinator.start()
  let localReports: StoreReporter | undefined
  if (store !== undefined) {
    // The store in this process makes the reports a store apart makes over its session, straight to the coordinator.
    const peer = host.peerId.toString()
    const content = coordinator.content
    localReports = new StoreReporter(store, {
      held: async roots => { content.held(peer, roots) },
      dropped: async (roots, evicted) => { content.dropped(peer, roots, evicted) },
      usage: usage => { content.usage(peer, usage) },
      consent: async roots => await content.consent(peer, roots)
    })
    await localReports.start()
  }
  const logs = new LogReader({ host, local: store?.logs, stores: () => coordinator.stores.list() })
  if (init.http !== undefined) {
    const admission: Admission = {
      get denied () { return coordinator.denied },
      deny: async peer => await coordinator.deny(peer),
      allow: async peer => await coordinator.allow(peer),
      // `node` exists by the time anyone can call this over HTTP.
      rotate: async () => await node.rotate(),
      rotateTrusted: async () => await node.rotateTrusted()
    }
    const localStore = store
    const artifacts = {
      sources: { host, local: localStore?.blocks, holders: (cid: string) => rankFor(cid, coordinator.stores.list()) },
      // An upload is one pass: it goes to stores ranked by a random key, and repair moves it to its placed ones.
      put: () => {
        const stores = coordinator.stores.list()
        if (stores.length === 0) return undefined
        const local = localStore !== undefined ? { peer: host.peerId.toString(), blocks: localStore.blocks, roots: localStore.roots } : undefined
        return async (source: AsyncIterable<Uint8Array>) => await putPlaced({ host, stores, replicas: coordinator.replicas, local }, source)
      },
      evictedAt: async (cid: string) => await coordinator.evictedAt(cid)
    }
    web = await startWebServer(createApp({
      scheduler: coordinator.scheduler, stores: coordinator.stores, logs, token, admission, artifacts, storage: () => coordinator.content.state(), pipelines: coordinator.pipelines,
      repos: { repos: coordinator.repos, pipelines: coordinator.pipelines, log: init.log },
      secrets: coordinator.secretStore,
      caches: coordinator.caches
    }), init.http)
  }
  if (web !== undefined) await writeFile(join(init.dataDir, WEB_URL_FILE), web.url + '\n', { mode: 0o600 })
  /** Write both join codes (each 0600) from the secret and trust key held now. */
  const writeJoinCodes = async (): Promise<void> => {
    node.joinCode = encodeJoinCode({ secret: secret.current, coordinator: host.peerId, addrs })
    node.trustedJoinCode = encodeJoinCode({ secret: secret.current, coordinator: host.peerId, addrs, trust: trust.current })
    await writeFile(join(init.dataDir, JOIN_FILE), node.joinCode + '\n', { mode: 0o600 })
    await writeFile(join(init.dataDir, JOIN_TRUSTED_FILE), node.trustedJoinCode + '\n', { mode: 0o600 })
  }
  /** Replace a key file whole (a crash leaves the old key or the new one, never half of one). */
  const replaceKey = async (file: string, key: Uint8Array): Promise<void> => {
    await writeFile(`${file}.tmp`, key, { mode: 0o600 })
    await rename(`${file}.tmp`, file)
  }
  const loopback = addrs.filter(a => /^\/(ip4\/127\.|ip6\/::1\/|memory\/)/.test(a.toString()))
  const node: CoordinatorNode = {
    host,
    coordinator,
    store,
    logs,
    web,
    joinCode: '',
    trustedJoinCode: '',
    localJoin: { secret: secret.current, coordinator: host.peerId, addrs: loopback.length > 0 ? loopback : addrs, trust: trust.current },
    secret,
    trust,
    token,
    rotate: async () => {
      const next = newSecret()
      await replaceKey(secretFile, next)
      secret.current = next
      node.localJoin = { ...node.localJoin, secret: next }
      await writeJoinCodes()
      await Promise.all(host.getConnections().map(async c => { await c.close().catch(() => c.abort(new Error('secret rotated'))) }))
      init.log?.('secret rotated: connections made with the old join code are closed')
      return node.joinCode
    },
    rotateTrusted: async () => {
      const next = newTrustKey()
      await replaceKey(trustFile, next)
      trust.current = next
      node.localJoin = { ...node.localJoin, trust: next }
      await writeJoinCodes()
      coordinator.trustRotated()
      return node.trustedJoinCode
    },
    stop: async () => {
      await web?.close()
      localReports?.stop()
      await coordinator.stop()
      await store?.stop()
      await host.stop()
    }
  }
  await writeJoinCodes()
  return node
  })
}

export interface WorkerNodeInit {
  dataDir: string
  /** With a trust key (a trusted join code), the worker proves it holds it each time it joins, and is trusted. */
  join: JoinCode
  /** A worker in the coordinator's own process shares its secret holder, so it follows a rotation. */
  secret?: SecretHolder
  /** Likewise its trust key holder (instead of the join code's key), so it stays trusted across a rotation of it. */
  trust?: TrustHolder
  /** Addresses to listen on; a worker that listens also keeps and serves a cache of its outputs. */
  listen: string[]
  capabilities: Capabilities
  slots: number
  /** The cache's size cap. @default WORKER_CACHE_BYTES */
  cacheBytes?: number
  log?: Log
  /** Whether it logs its own joining; a worker beside the coordinator leaves that to the coordinator. @default true */
  announce?: boolean
}

export interface WorkerNode {
  host: GridHost
  worker: Worker
  /** What it made and fetched, served to the grid (only a worker that listens keeps one). */
  cache?: WorkerCache
  stop (): Promise<void>
}

export async function startWorkerNode (init: WorkerNodeInit): Promise<WorkerNode> {
  const memory = init.join.addrs.some(a => a.toString().startsWith('/memory/'))
  const { host } = await startHost(init.dataDir, init.secret ?? init.join.secret, init.listen, memory)
  // Whatever fails from here (a data dir in use, a port taken) stops the host, so the process exits with its one line.
  return await orStop(host, async () => {
  // A worker that listens keeps what it makes and fetches, and serves it to the grid; one that only dials out
  // could not be reached for it, so it keeps nothing.
  const cache = init.listen.length > 0 ? new WorkerCache(host, init.dataDir, init.cacheBytes) : undefined
  await cache?.start()
  const trust = init.trust ?? (init.join.trust !== undefined ? { current: init.join.trust } : undefined)
  const worker = new Worker({ host, join: init.join, trust, capabilities: init.capabilities, slots: init.slots, dataDir: init.dataDir, cache, log: init.log, announce: init.announce })
  await worker.start()
  return {
    host,
    worker,
    cache,
    stop: async () => {
      await worker.stop()
      await cache?.stop()
      await host.stop()
    }
  }
  })
}

export interface StoreNodeInit {
  dataDir: string
  join: JoinCode
  listen: string[]
  log?: Log
  /** Size cap for content blocks (`--max-size`); none by default. */
  maxBytes?: number
}

export interface StoreNode {
  host: GridHost
  store: Store
  announcement: StoreAnnouncement
  stop (): Promise<void>
}

export async function startStoreNode (init: StoreNodeInit): Promise<StoreNode> {
  const memory = init.join.addrs.some(a => a.toString().startsWith('/memory/'))
  // The store learns the grid's deny list from the coordinator with every welcome and change.
  const denied = new DenyList(new Set())
  const { host } = await startHost(init.dataDir, init.join.secret, init.listen, memory, denied.peers)
  // Whatever fails from here (a data dir in use, a port taken) stops the host, so the process exits with its one line.
  return await orStop(host, async () => {
  const store = new Store({ host, dataDir: init.dataDir, coordinator: init.join.coordinator, maxBytes: init.maxBytes })
  await store.start()
  const announcement = new StoreAnnouncement(host, init.join, store, denied, init.log)
  announcement.start()
  return {
    host,
    store,
    announcement,
    stop: async () => {
      await announcement.stop()
      await store.stop()
      await host.stop()
    }
  }
  })
}

/** Run the rest of a node's start; if it throws, the host it started is stopped before the error goes on. */
async function orStop<T> (host: GridHost, start: () => Promise<T>): Promise<T> {
  try {
    return await start()
  } catch (err) {
    await Promise.resolve(host.stop()).catch(() => {})
    throw err
  }
}

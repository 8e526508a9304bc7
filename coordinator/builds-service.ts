// The coordinator's side of /nameless-grid/builds (protocols/builds.ts): what `grid submit`, `grid tail`, `grid run`
// and a worker waiting for an input ask, one request per stream. The builds a request queues are untrusted unless
// it proves its sender holds the trusted join code (grid/trust.ts).
import type { Connection, Stream } from '@libp2p/interface'
import { MessageChannel } from '../net/wire.ts'
import type { GridHost } from '../net/host.ts'
import { ProtocolService } from '../net/protocol-service.ts'
import { isGridError } from '../net/errors.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import { BUILD_ID_PATTERN, ID_PATTERN } from '../grid/ids.ts'
import { parseJob } from '../grid/job.ts'
import { DEFAULT_REPLICAS } from '../grid/placement.ts'
import { BUILDS_PROTOCOL, buildsRequest } from '../protocols/builds.ts'
import type { BuildsReply, BuildsRequest } from '../protocols/builds.ts'
import { MAX_REQUESTS_PER_CONNECTION } from '../protocols/constants.ts'
import type { Scheduler } from './scheduler.ts'
import type { StoreDirectory } from './store-directory.ts'
import type { Pipelines } from './pipelines.ts'
import { verifyTrust } from '../grid/trust.ts'
import type { TrustHolder } from '../grid/trust.ts'
import type { Build } from '../grid/build.ts'

/**
 * The part of the grid's cache index (coordinator/caches.ts, CacheIndex) the cache requests use; declared here by
 * shape so this service does not depend on how the index keeps its entries.
 */
export interface CacheLookup {
  find (query: { key: string, restore: string[], scope: CacheScope }): Promise<{ key: string, cid: string, size: number, build: string } | undefined>
  keep (entry: { key: string, scope: CacheScope, cid: string, size: number, build: string }): Promise<void>
}

/** Where a cache entry belongs (the same shape as coordinator/caches.ts's CacheScope). */
export interface CacheScope { repo: string | null, branch?: string, trusted: boolean }

/**
 * A build's cache scope, from the coordinator's own record of it (never from a worker): its registered repository
 * (null for a build from no repository), its branch when its ref names one (`refs/heads/x` or a bare `x`; a tag or
 * another ref has none), and whether it came from a member with the trusted join code.
 */
export function cacheScopeOf (build: Pick<Build, 'source' | 'untrusted'>, workerTrusted = true): CacheScope {
  const ref = build.source?.ref
  const branch = ref === undefined ? undefined : ref.startsWith('refs/heads/') ? ref.slice('refs/heads/'.length) : ref.startsWith('refs/') ? undefined : ref
  // Trusted only when both are: a trusted build run by an untrusted worker (anyone with the join code) could
  // otherwise save a poisoned cache that a trusted build with secrets restores on a trusted worker.
  return { repo: build.source?.repo ?? null, ...(branch !== undefined && branch !== '' ? { branch } : {}), trusted: build.untrusted !== true && workerTrusted }
}

export interface BuildsServiceComponents {
  host: GridHost
  scheduler: Scheduler
  stores: StoreDirectory
  /** Answers `run-pipeline` and `get-pipeline`; without it they answer that this coordinator runs no pipelines. */
  pipelines?: Pick<Pipelines, 'create' | 'get'>
  /** The grid's trust key, which a client proves it holds; without one every build submitted here is untrusted. */
  trust?: TrustHolder
  /** Answers `cache-find` and `cache-keep`; without it both answer that this coordinator keeps no caches (a worker then neither restores nor saves). */
  caches?: CacheLookup
}

export interface BuildsServiceInit {
  /** Stores each piece of content goes to, as told to clients. @default DEFAULT_REPLICAS */
  replicas?: number
}

/** Answers one request per stream, at most MAX_REQUESTS_PER_CONNECTION at once per connection. */
export class BuildsService extends ProtocolService<BuildsServiceComponents> {
  private readonly replicas: number

  constructor (components: BuildsServiceComponents, init: BuildsServiceInit = {}) {
    super(components, BUILDS_PROTOCOL, MAX_REQUESTS_PER_CONNECTION)
    this.replicas = init.replicas ?? DEFAULT_REPLICAS
  }

  protected async serve (stream: Stream, connection: Connection): Promise<void> {
    const { scheduler, stores, pipelines, trust, caches } = this.components
    /** Whether a request's proof (bound to the peer Noise authenticated on this connection) fails to show trust. */
    const untrusted = (proof: Uint8Array | undefined): boolean =>
      trust === undefined || verifyTrust(trust.current, proof, connection.remotePeer.toString(), this.components.host.peerId.toString()) !== 'trusted'
    const { replicas } = this
    const channel = new MessageChannel<BuildsRequest, BuildsReply>(stream, buildsRequest)
    try {
      const request = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
      let reply: BuildsReply
      try {
        if (request.t === 'submit') reply = { t: 'build', build: await scheduler.submit(parseJob(request.job), { untrusted: untrusted(request.trust) }) }
        else if (request.t === 'cache-find' || request.t === 'cache-keep') {
          // Only the worker holding a current attempt speaks for its build; the scope is the coordinator's record.
          const held = scheduler.attemptOf(request.attempt)
          if (held === undefined || held.worker !== connection.remotePeer.toString()) reply = { t: 'error', error: `attempt ${request.attempt.slice(0, 64)} is not current on this worker` }
          else if (caches === undefined) reply = { t: 'error', error: 'this coordinator keeps no caches' }
          else if (request.t === 'cache-find') {
            const entry = await caches.find({ key: request.key, restore: request.restore, scope: cacheScopeOf(held.build, held.trusted) })
            const maker = entry !== undefined ? (await scheduler.get(entry.build))?.attempts.at(-1)?.worker : undefined
            const where = maker !== undefined && maker !== held.worker ? scheduler.workerAddress(maker) : undefined
            reply = { t: 'cache', ...(entry !== undefined ? { entry: { key: entry.key, cid: entry.cid, size: entry.size, build: entry.build } } : {}), ...(where !== undefined ? { maker: where } : {}) }
          } else {
            await caches.keep({ key: request.key, scope: cacheScopeOf(held.build, held.trusted), cid: request.cid, size: request.size, build: held.build.id })
            reply = { t: 'ok' }
          }
        } else if (request.t === 'stores') reply = { t: 'stores', stores: stores.list(), replicas }
        else if (request.t === 'run-pipeline' || request.t === 'get-pipeline') {
          if (pipelines === undefined) reply = { t: 'error', error: 'this coordinator runs no pipelines' }
          else if (request.t === 'run-pipeline') {
            const { url, ref, commit } = request
            const source = { repo: null, url: url ?? '', ...(ref !== undefined ? { ref } : {}), ...(commit !== undefined ? { commit } : {}), trigger: 'run' as const }
            reply = { t: 'pipeline', pipeline: await pipelines.create({ file: request.pipeline, src: request.src, source, untrusted: untrusted(request.trust) }) }
          } else {
            const pipeline = BUILD_ID_PATTERN.test(request.id) ? await pipelines.get(request.id) : undefined
            reply = pipeline === undefined ? { t: 'error', error: `no pipeline ${request.id}` } : { t: 'pipeline', pipeline }
          }
        } else {
          const build = ID_PATTERN.test(request.id) ? await scheduler.get(request.id) : undefined
          const maker = build?.attempts.at(-1)?.worker
          const where = maker !== undefined ? scheduler.workerAddress(maker) : undefined
          reply = build === undefined ? { t: 'error', error: `no build ${request.id}` } : { t: 'build', build, ...(where !== undefined ? { maker: where } : {}) }
        }
      } catch (err: any) {
        // An expected failure is the answer; anything else is a bug, and the stream is dropped.
        if (!isGridError(err)) throw err
        reply = { t: 'error', error: err.message.slice(0, 1000) }
      }
      await channel.send(reply)
      await channel.close()
    } catch (err: any) {
      channel.abort(err)
    }
  }
}

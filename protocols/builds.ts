// /nameless-grid/builds: what a command-line client (`grid submit`, `grid tail`, `grid run`) asks the coordinator
// over libp2p. One request per stream. Holding the grid's secret is what lets a node ask (see SECURITY in README);
// a build submitted without a proof of the trusted join code (grid/trust.ts) never runs on a trusted worker.
import { z } from 'zod'
import { MessageChannel, bytesField } from '../net/wire.ts'
import type { GridHost } from '../net/host.ts'
import type { PeerAddress } from '../net/dial.ts'
import { openStream, peerAddress } from '../net/dial.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import type { Build, Pipeline } from '../grid/build.ts'
import { MAX_PIPELINE_FILE_BYTES, MAX_REPLICAS } from '../grid/constants.ts'
import { TRUST_PROOF_BYTES } from '../grid/trust.ts'
import { MAX_CACHE_KEY_CHARS, MAX_CACHE_RESTORE_KEYS } from '../grid/job.ts'

export const BUILDS_PROTOCOL = '/nameless-grid/builds/1.0.0'

/** Characters of a pipeline's source URL or ref in a request: far more than any real one, and both end up in a step's environment. */
export const MAX_SOURCE_CHARS = 2_000

/**
 * A client holding the trusted join code proves it with each request that queues builds: HMAC of its own peer ID
 * (grid/trust.ts). Without it, or with a stale one, the builds are untrusted.
 */
const trustProof = bytesField(TRUST_PROOF_BYTES).optional()

export const buildsRequest = z.discriminatedUnion('t', [
  z.object({ t: z.literal('submit'), job: z.unknown(), trust: trustProof }),
  z.object({ t: z.literal('get'), id: z.string().max(64) }),
  z.object({ t: z.literal('stores') }),
  /**
   * `grid run`: a pipeline file (YAML text; its byte size is checked when it is parsed) over a tree already put on
   * the stores (`src`), with where it came from when it is a git work tree. Answered with the pipeline, its builds queued.
   */
  z.object({
    t: z.literal('run-pipeline'),
    pipeline: z.string().max(MAX_PIPELINE_FILE_BYTES),
    src: z.string().max(200),
    url: z.string().max(MAX_SOURCE_CHARS).optional(),
    ref: z.string().max(MAX_SOURCE_CHARS).optional(),
    commit: z.string().max(64).optional(),
    trust: trustProof
  }),
  z.object({ t: z.literal('get-pipeline'), id: z.string().max(64) }),
  /**
   * A worker before the first step of `attempt`: the cache entry to restore for `key` (else by the `restore`
   * prefixes), looked up in the scope of the attempt's build as the coordinator recorded it. Answered with `cache`.
   * Only the worker that holds the attempt, while it is current, may ask.
   */
  z.object({
    t: z.literal('cache-find'),
    attempt: z.string().max(64),
    key: z.string().min(1).max(MAX_CACHE_KEY_CHARS),
    restore: z.array(z.string().min(1).max(MAX_CACHE_KEY_CHARS)).max(MAX_CACHE_RESTORE_KEYS)
  }),
  /** A worker after the steps of `attempt`: it put a cache's tar (`cid`, `size` bytes) for `key`. Answered with `ok`. */
  z.object({
    t: z.literal('cache-keep'),
    attempt: z.string().max(64),
    key: z.string().min(1).max(MAX_CACHE_KEY_CHARS),
    cid: z.string().regex(/^b[a-z2-7]{20,100}$/),
    size: z.number().int().min(0)
  })
])
export type BuildsRequest = z.infer<typeof buildsRequest>

export const buildsReply = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('build'),
    build: z.custom<Build>(b => typeof b === 'object' && b !== null && typeof (b as any).id === 'string'),
    /** The worker that ran the build's last attempt, if it is connected and serves its cache: fetch from it first. */
    maker: peerAddress.optional()
  }),
  /** The grid's stores and how many of them each piece of content goes to (absent from an older coordinator: 1). */
  z.object({ t: z.literal('stores'), stores: z.array(peerAddress), replicas: z.number().int().min(1).max(MAX_REPLICAS).optional() }),
  z.object({
    t: z.literal('pipeline'),
    pipeline: z.custom<Pipeline>(p => typeof p === 'object' && p !== null && typeof (p as any).id === 'string' && Array.isArray((p as any).jobs))
  }),
  /** The cache entry a `cache-find` found (none: a miss), and the worker that made it when it is connected and serves its cache. */
  z.object({
    t: z.literal('cache'),
    entry: z.object({ key: z.string().max(MAX_CACHE_KEY_CHARS), cid: z.string().max(200), size: z.number().int().min(0), build: z.string().max(64) }).optional(),
    maker: peerAddress.optional()
  }),
  z.object({ t: z.literal('ok') }),
  z.object({ t: z.literal('error'), error: z.string().max(1000) })
])
export type BuildsReply = z.infer<typeof buildsReply>

/** The client side: one request, one reply. */
export async function askCoordinator (host: GridHost, coordinator: PeerAddress, request: BuildsRequest, signal?: AbortSignal): Promise<BuildsReply> {
  const stream = await openStream(host, coordinator, BUILDS_PROTOCOL, signal)
  const channel = new MessageChannel<BuildsReply, BuildsRequest>(stream, buildsReply)
  try {
    await channel.send(request)
    return await channel.expect({ signal: signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
  } finally {
    await channel.close().catch(() => {})
  }
}

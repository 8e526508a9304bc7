// /nameless-grid/builds: what a command-line client (`grid submit`, `grid tail`) asks the coordinator over
// libp2p. One request per stream. Holding the grid's secret is what lets a node ask (see SECURITY in README).
import { z } from 'zod'
import type { Stream } from '@libp2p/interface'
import { MessageChannel } from '../net/wire.ts'
import type { GridHost } from '../net/host.ts'
import type { PeerAddress } from '../net/dial.ts'
import { openStream } from '../net/dial.ts'
import { isGridError } from '../net/errors.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import type { Build } from '../grid/build.ts'
import { ID_PATTERN } from '../grid/build.ts'
import type { Scheduler } from '../coordinator/scheduler.ts'
import type { StoreDirectory } from '../coordinator/store-directory.ts'
import { parseJob } from '../grid/job.ts'
import { MAX_REPLICAS } from '../grid/constants.ts'
import { DEFAULT_REPLICAS } from '../grid/placement.ts'

export const BUILDS_PROTOCOL = '/nameless-grid/builds/1.0.0'
const MAX_REQUESTS_PER_CONNECTION = 32

export const buildsRequest = z.discriminatedUnion('t', [
  z.object({ t: z.literal('submit'), job: z.unknown() }),
  z.object({ t: z.literal('get'), id: z.string().max(64) }),
  z.object({ t: z.literal('stores') })
])
export type BuildsRequest = z.infer<typeof buildsRequest>

export const buildsReply = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('build'),
    build: z.custom<Build>(b => typeof b === 'object' && b !== null && typeof (b as any).id === 'string'),
    /** The worker that ran the build's last attempt, if it is connected and serves its cache: fetch from it first. */
    maker: z.object({ peer: z.string().max(200), addrs: z.array(z.string().max(1024)).max(64) }).optional()
  }),
  /** The grid's stores and how many of them each piece of content goes to (absent from an older coordinator: 1). */
  z.object({ t: z.literal('stores'), stores: z.array(z.object({ peer: z.string(), addrs: z.array(z.string()) })), replicas: z.number().int().min(1).max(MAX_REPLICAS).optional() }),
  z.object({ t: z.literal('error'), error: z.string().max(1000) })
])
export type BuildsReply = z.infer<typeof buildsReply>

export async function handleBuildRequests (host: GridHost, scheduler: Scheduler, stores: StoreDirectory, replicas: number = DEFAULT_REPLICAS): Promise<void> {
  await host.handle(BUILDS_PROTOCOL, (stream) => {
    serve(stream, scheduler, stores, replicas).catch(() => {})
  }, { maxInboundStreams: MAX_REQUESTS_PER_CONNECTION })
}

async function serve (stream: Stream, scheduler: Scheduler, stores: StoreDirectory, replicas: number): Promise<void> {
  const channel = new MessageChannel<BuildsRequest, BuildsReply>(stream, buildsRequest)
  try {
    const request = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
    let reply: BuildsReply
    try {
      if (request.t === 'submit') reply = { t: 'build', build: await scheduler.submit(parseJob(request.job)) }
      else if (request.t === 'stores') reply = { t: 'stores', stores: stores.list(), replicas }
      else {
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

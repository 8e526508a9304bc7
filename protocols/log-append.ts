// /nameless-grid/log-append: a worker pushes a step's output straight to a store, never through the coordinator.
// One stream per log; each append names its offset, each gets the store's size back, so a writer that
// reconnects resends from what the store really holds. A writer may send several appends before the first answer
// (the store takes them in order and answers each in turn), so the stream never waits on the store's writes.
import { z } from 'zod'
import type { Connection, Stream } from '@libp2p/interface'
import { MessageChannel, bytesField } from '../net/wire.ts'
import type { GridHost } from '../net/host.ts'
import { ProtocolService } from '../net/protocol-service.ts'
import { attemptOfLog, idSchema } from '../grid/ids.ts'
import type { LogStore } from '../storage/log-store.ts'
import type { LogSealer } from '../storage/log-content.ts'
import type { GrantVerifier } from '../grid/write-grant.ts'
import { BufferPool } from '../net/buffer-pool.ts'
import { MAX_APPEND_BYTES, MAX_APPEND_STREAMS, POOLED_FRAME_BYTES } from '../storage/constants.ts'
import { GRANT_BYTES, MAX_LOG_BYTES } from '../grid/constants.ts'
import { GridError } from '../net/errors.ts'

export const LOG_APPEND_PROTOCOL = '/nameless-grid/log-append/1.0.0'

const offset = z.number().int().min(0).max(MAX_LOG_BYTES)

/** The coordinator's write grant for the log's attempt and this writer (see grid/write-grant.ts). */
const grant = bytesField(GRANT_BYTES)

export const appendRequest = z.discriminatedUnion('t', [
  z.object({ t: z.literal('append'), log: idSchema, offset, bytes: bytesField(MAX_APPEND_BYTES), grant }),
  z.object({ t: z.literal('seal'), log: idSchema, size: offset, grant })
])
export type AppendRequest = z.infer<typeof appendRequest>

export const appendReply = z.discriminatedUnion('t', [
  z.object({ t: z.literal('ok'), size: z.number().int().min(0) }),
  /** The store holds `size` bytes, not what the writer thought: resend from there. */
  z.object({ t: z.literal('gap'), size: z.number().int().min(0) }),
  /** Sealed at `size`; `cid` names the log as content on this store (none for a fenced log, or if it could not be kept). */
  z.object({ t: z.literal('sealed'), size: z.number().int().min(0), cid: z.string().max(200).optional() }),
  z.object({ t: z.literal('error'), error: z.string().max(1000) })
])
export type AppendReply = z.infer<typeof appendReply>

export class NoWriteGrantError extends GridError {
  name = 'NoWriteGrantError'
  readonly status = 403
}

export interface LogAppendComponents {
  host: GridHost
  logs: LogStore
  /** Whose write grants are honoured: the grid's coordinator's. */
  grants: GrantVerifier
  /** With a sealer, a seal also turns the log into content and answers with its CID. */
  sealer?: LogSealer
}

/**
 * Append frames' buffers kept for reuse (see buffer-pool.ts): a writer's appends in flight and those its stream
 * holds unread, twice over. A writer sends a backlog as whole blocks, each a megabyte frame that lives until it is
 * written: allocated afresh, they cost the store full garbage collections all through a big log.
 */
const APPEND_POOL_BUFFERS = 8

/** The store's side: takes appends and seals from the writer its grant names, at most MAX_APPEND_STREAMS per connection. */
export class LogAppendService extends ProtocolService<LogAppendComponents> {
  private readonly pool = new BufferPool(POOLED_FRAME_BYTES, APPEND_POOL_BUFFERS)

  constructor (components: LogAppendComponents) {
    super(components, LOG_APPEND_PROTOCOL, MAX_APPEND_STREAMS)
  }

  protected async serve (stream: Stream, connection: Connection): Promise<void> {
    const { logs, grants, sealer } = this.components
    const channel = new MessageChannel<AppendRequest, AppendReply>(stream, appendRequest, { pool: this.pool })
    const writer = connection.remotePeer.toString()
    try {
      for await (const request of channel) {
        // Only the worker the coordinator gave this log's attempt to may write it.
        const attempt = attemptOfLog(request.log)
        if (attempt === undefined || !await grants.allows(request.grant, attempt, writer)) {
          await channel.send({ t: 'error', error: `no write grant for log ${request.log} from ${writer}` })
          throw new NoWriteGrantError(`${writer} has no grant for ${request.log}`)
        }
        try {
          if (request.t === 'append') {
            const size = await logs.append(request.log, request.offset, request.bytes).finally(() => {
              // Written (and named) by now: nothing holds the frame's buffer.
              channel.release(request.bytes)
            })
            await channel.send({ t: 'ok', size })
          } else if (sealer !== undefined) {
            const sealed = await sealer.seal(request.log, request.size)
            await channel.send({ t: 'sealed', size: sealed.info.size, cid: sealed.cid })
          } else {
            await channel.send({ t: 'sealed', size: (await logs.seal(request.log, request.size)).size })
          }
        } catch (err: any) {
          if (err.name === 'LogGapError') await channel.send({ t: 'gap', size: err.size })
          else if (err.name === 'LogSealedError' || err.name === 'LogTooLargeError') await channel.send({ t: 'error', error: err.message })
          // The log is sealed, but its blocks could not be kept (a full store): say so; the writer keeps no CID from here.
          else if (request.t === 'seal') await channel.send({ t: 'error', error: `log ${request.log} sealed but not kept as content: ${err.message}` })
          else throw err
        }
      }
      await channel.close()
    } catch (err: any) {
      channel.abort(err)
    }
  }
}

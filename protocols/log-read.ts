// /nameless-grid/log-read: any peer asks a holder for a log's bytes from an offset, and with `follow`
// keeps receiving new bytes as they are appended until the log is sealed. Many readers cost the writer
// nothing: they read the store, not the worker.
import { z } from 'zod'
import type { Stream } from '@libp2p/interface'
import { MessageChannel, bytesField } from '../net/wire.ts'
import type { GridHost } from '../net/host.ts'
import { ProtocolService } from '../net/protocol-service.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import { idSchema } from '../grid/ids.ts'
import type { LogStore } from '../storage/log-store.ts'
import { MAX_READ_STREAMS, READ_FRAME_BYTES } from '../storage/constants.ts'
import { MAX_LOG_BYTES } from '../grid/constants.ts'

export const LOG_READ_PROTOCOL = '/nameless-grid/log-read/1.0.0'

export const readRequest = z.discriminatedUnion('t', [
  z.object({ t: z.literal('stat'), log: idSchema }),
  z.object({ t: z.literal('read'), log: idSchema, from: z.number().int().min(0).max(MAX_LOG_BYTES), follow: z.boolean() })
])
export type ReadRequest = z.infer<typeof readRequest>

export const readReply = z.discriminatedUnion('t', [
  z.object({ t: z.literal('info'), known: z.boolean(), size: z.number().int().min(0), sealed: z.boolean() }),
  z.object({ t: z.literal('data'), offset: z.number().int().min(0), bytes: bytesField(READ_FRAME_BYTES) }),
  z.object({ t: z.literal('end'), size: z.number().int().min(0), sealed: z.boolean() })
])
export type ReadReply = z.infer<typeof readReply>

export interface LogReadComponents {
  host: GridHost
  logs: LogStore
}

/** The holder's side: serves and follows the logs in `logs` to any peer, at most MAX_READ_STREAMS per connection. */
export class LogReadService extends ProtocolService<LogReadComponents> {
  constructor (components: LogReadComponents) {
    super(components, LOG_READ_PROTOCOL, MAX_READ_STREAMS)
  }

  protected async serve (stream: Stream): Promise<void> {
    const { logs } = this.components
    const channel = new MessageChannel<ReadRequest, ReadReply>(stream, readRequest)
    // The reader going away (a reset or a closed connection) ends a follow that would otherwise wait for the seal.
    const gone = new AbortController()
    stream.addEventListener('close', () => gone.abort(), { once: true })
    try {
      const request = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
      if (request.t === 'stat') {
        const info = await logs.info(request.log)
        await channel.send({ t: 'info', known: info !== undefined, size: info?.size ?? 0, sealed: info?.sealed ?? false })
      } else {
        let offset = request.from
        for await (const chunk of logs.read(request.log, { from: request.from, follow: request.follow, signal: gone.signal })) {
          for (let at = 0; at < chunk.length; at += READ_FRAME_BYTES) {
            const bytes = chunk.subarray(at, at + READ_FRAME_BYTES)
            await channel.send({ t: 'data', offset, bytes })
            offset += bytes.length
          }
        }
        const info = await logs.info(request.log)
        await channel.send({ t: 'end', size: info?.size ?? 0, sealed: info?.sealed ?? false })
      }
      await channel.close()
    } catch (err: any) {
      channel.abort(err)
    }
  }
}

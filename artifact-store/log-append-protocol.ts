// /nameless-grid/log-append: a worker pushes a step's output straight to a store, never through the coordinator.
// One stream per log; each append names its offset, each gets the store's size back, so a writer that
// reconnects resends from what the store really holds.
import { z } from 'zod'
import type { Stream } from '@libp2p/interface'
import { MessageChannel, bytesField } from '../node/wire.ts'
import type { GridHost } from '../node/host.ts'
import { ID_PATTERN } from '../coordinator/build.ts'
import type { LogStore } from './log-store.ts'
import { MAX_APPEND_BYTES, MAX_APPEND_STREAMS, MAX_LOG_BYTES } from './constants.ts'

export const LOG_APPEND_PROTOCOL = '/nameless-grid/log-append/1.0.0'

const logRef = z.string().regex(ID_PATTERN)
const offset = z.number().int().min(0).max(MAX_LOG_BYTES)

export const appendRequest = z.discriminatedUnion('t', [
  z.object({ t: z.literal('append'), log: logRef, offset, bytes: bytesField(MAX_APPEND_BYTES) }),
  z.object({ t: z.literal('seal'), log: logRef, size: offset })
])
export type AppendRequest = z.infer<typeof appendRequest>

export const appendReply = z.discriminatedUnion('t', [
  z.object({ t: z.literal('ok'), size: z.number().int().min(0) }),
  /** The store holds `size` bytes, not what the writer thought: resend from there. */
  z.object({ t: z.literal('gap'), size: z.number().int().min(0) }),
  z.object({ t: z.literal('sealed'), size: z.number().int().min(0) }),
  z.object({ t: z.literal('error'), error: z.string().max(1000) })
])
export type AppendReply = z.infer<typeof appendReply>

export async function handleLogAppends (host: GridHost, logs: LogStore): Promise<void> {
  await host.handle(LOG_APPEND_PROTOCOL, (stream) => {
    serveAppends(stream, logs).catch(() => {})
  }, { maxInboundStreams: MAX_APPEND_STREAMS })
}

async function serveAppends (stream: Stream, logs: LogStore): Promise<void> {
  const channel = new MessageChannel<AppendRequest, AppendReply>(stream, appendRequest)
  try {
    for await (const request of channel) {
      try {
        if (request.t === 'append') {
          await channel.send({ t: 'ok', size: await logs.append(request.log, request.offset, request.bytes) })
        } else {
          await channel.send({ t: 'sealed', size: (await logs.seal(request.log, request.size)).size })
        }
      } catch (err: any) {
        if (err.name === 'LogGapError') await channel.send({ t: 'gap', size: err.size })
        else if (err.name === 'LogSealedError' || err.name === 'LogTooLargeError') await channel.send({ t: 'error', error: err.message })
        else throw err
      }
    }
    await channel.close()
  } catch (err: any) {
    channel.abort(err)
  }
}

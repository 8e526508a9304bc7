// A step's output on its way to a store: batched (about 100 ms or 64 KiB), each append carrying its offset,
// kept until the store acknowledges it so a broken stream is resumed on a new one without losing or
// doubling a byte. The coordinator never sees these bytes.
import type { PeerAddress } from '../dial.ts'
import type { AppendReply, AppendRequest } from '../../artifact-store/log-append-protocol.ts'
import type { AppendChannel, AppendStreams } from './append-streams.ts'
import {
  LOG_APPEND_TIMEOUT_MS, LOG_APPEND_TRIES, LOG_BATCH_BYTES, LOG_BUFFER_LIMIT, LOG_FLUSH_MS
} from '../constants.ts'

export class LogUnwritableError extends Error {
  name = 'LogUnwritableError'
}

export interface LogWriterInit {
  /** The worker's pool of open append streams. */
  streams: AppendStreams
  log: string
  /** The coordinator's write grant for this log's attempt. */
  grant: Uint8Array
  stores: PeerAddress[]
  /** @default LOG_BATCH_BYTES */
  batchBytes?: number
  /** @default LOG_FLUSH_MS */
  flushMs?: number
}

export class LogWriter {
  private readonly init: LogWriterInit
  /** Bytes written but not yet acknowledged, starting at `acked`. */
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  private acked = 0
  private channel: AppendChannel | undefined
  /** The store `channel` talks to, so a healthy channel goes back to the right pool. */
  private channelStore: PeerAddress | undefined
  private timer: NodeJS.Timeout | undefined
  private pumping: Promise<void> | undefined
  private failure: Error | undefined
  private drained: Array<() => void> = []
  private sealed = false

  /** The first stream, taken as soon as the writer exists so getting it overlaps the step's start. */
  private opening: Promise<AppendChannel | undefined> | undefined

  constructor (init: LogWriterInit) {
    this.init = init
    const store = init.stores[0]
    if (store !== undefined) {
      this.channelStore = store
      this.opening = init.streams.take(store).catch(() => undefined)
    }
  }

  /** Bytes written so far (acknowledged or not). */
  get size (): number {
    return this.acked + this.pendingBytes
  }

  /** Buffer output. Returns false when the caller should pause its source until `drain()` resolves. */
  write (bytes: Uint8Array): boolean {
    if (this.sealed) throw new LogUnwritableError(`log ${this.init.log} is sealed`)
    if (bytes.length === 0) return true
    this.pending.push(bytes)
    this.pendingBytes += bytes.length
    if (this.pendingBytes >= (this.init.batchBytes ?? LOG_BATCH_BYTES)) this.flush()
    else this.timer ??= setTimeout(() => this.flush(), this.init.flushMs ?? LOG_FLUSH_MS)
    return this.pendingBytes < LOG_BUFFER_LIMIT || this.failure !== undefined
  }

  drain (): Promise<void> {
    if (this.pendingBytes < LOG_BUFFER_LIMIT || this.failure !== undefined) return Promise.resolve()
    return new Promise(resolve => this.drained.push(resolve))
  }

  /** Send everything, then seal the log at its final size. Throws if the store could not be reached. */
  async seal (): Promise<number> {
    this.sealed = true
    this.flush()
    await this.pumping
    if (this.pendingBytes > 0 && this.failure === undefined) await this.pump()
    if (this.failure !== undefined) throw this.failure
    const reply = await this.request({ t: 'seal', log: this.init.log, size: this.acked, grant: this.init.grant })
    if (reply.t !== 'sealed') throw new LogUnwritableError(`store refused to seal log ${this.init.log}: ${JSON.stringify(reply)}`)
    if (this.channel !== undefined && this.channelStore !== undefined) this.init.streams.give(this.channelStore, this.channel)
    this.channel = undefined
    return this.acked
  }

  /** Give up on the log (the attempt was fenced or the worker is stopping). */
  abort (): void {
    this.sealed = true
    clearTimeout(this.timer)
    this.opening?.then(channel => channel?.abort(new Error('log abandoned')), () => {})
    this.channel?.abort(new Error('log abandoned'))
    this.failure ??= new LogUnwritableError('log abandoned')
    this.release()
  }

  private flush (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.pumping ??= this.pump().finally(() => { this.pumping = undefined })
  }

  private async pump (): Promise<void> {
    const batchBytes = this.init.batchBytes ?? LOG_BATCH_BYTES
    while (this.pendingBytes > 0 && this.failure === undefined) {
      const batch = this.takeBatch(batchBytes)
      try {
        const reply = await this.request({ t: 'append', log: this.init.log, offset: this.acked, bytes: batch, grant: this.init.grant })
        // A resend after a lost reply may find the store already past this batch: count what it holds.
        if (reply.t === 'ok' && reply.size >= this.acked + batch.length && reply.size <= this.size) this.acknowledge(reply.size - this.acked)
        else throw new LogUnwritableError(`store answered ${reply.t} ${'size' in reply ? reply.size : ''} to an append at ${this.acked}`)
      } catch (err: any) {
        this.failure = err
      }
      this.release()
    }
  }

  /** The first `max` pending bytes as one buffer, without removing them: they stay until acknowledged. */
  private takeBatch (max: number): Uint8Array {
    if (this.pending[0].length >= max || this.pending.length === 1) return this.pending[0].subarray(0, max)
    const size = Math.min(max, this.pendingBytes)
    const batch = new Uint8Array(size)
    let at = 0
    for (const chunk of this.pending) {
      const part = chunk.subarray(0, size - at)
      batch.set(part, at)
      at += part.length
      if (at === size) break
    }
    return batch
  }

  private acknowledge (count: number): void {
    this.acked += count
    this.pendingBytes -= count
    while (count > 0) {
      const head = this.pending[0]
      if (head.length <= count) {
        this.pending.shift()
        count -= head.length
      } else {
        this.pending[0] = head.subarray(count)
        count = 0
      }
    }
  }

  private release (): void {
    if (this.pendingBytes >= LOG_BUFFER_LIMIT && this.failure === undefined) return
    for (const resolve of this.drained.splice(0)) resolve()
  }

  /** One request and its reply, on a fresh stream after any failure; appends are idempotent by offset. */
  private async request (request: AppendRequest): Promise<AppendReply> {
    let lastError: Error | undefined
    for (let tryNumber = 0; tryNumber < LOG_APPEND_TRIES; tryNumber++) {
      const store = this.init.stores[tryNumber % Math.max(1, this.init.stores.length)]
      if (store === undefined) throw new LogUnwritableError('no store to write logs to')
      try {
        if (this.opening !== undefined) {
          this.channel ??= await this.opening
          this.opening = undefined
        }
        if (this.channel === undefined) {
          this.channel = await this.init.streams.take(store)
          this.channelStore = store
        }
        await this.channel.send(request)
        return await this.channel.expect({ signal: AbortSignal.timeout(LOG_APPEND_TIMEOUT_MS) })
      } catch (err: any) {
        lastError = err
        this.channel?.abort(err)
        this.channel = undefined
        await new Promise(resolve => setTimeout(resolve, 100 * 2 ** tryNumber))
      }
    }
    throw new LogUnwritableError(`could not write log ${this.init.log}: ${lastError?.message}`)
  }
}

// A step's output on its way to the stores that hold its log (placeFor: rendezvous hashing over the grid's stores):
// batched (about 20 ms or 64 KiB), every batch written to each replica with the offset it starts at, so each
// replica is acknowledged on its own and a broken stream is resumed on a new one without losing or doubling a
// byte. Output stays buffered until every live replica holds it; a replica that fails past its retries is dropped
// and the log goes on with the others. Output is kept in pieces that are the log's blocks (PIECE_BYTES, aligned):
// a step printing flat out sends whole blocks, several at once, and the store keeps each as it comes. The worker
// names each piece once it is full (one block at a time, never copied again) so it knows the log's CID itself and
// checks each store's answer to the seal against it.
// The coordinator never sees these bytes. With secrets (`mask`), every byte passes through a Redactor first, so a
// value is replaced by `***` before it is batched, counted against the limit, named or sent.
import type { PeerAddress } from '../net/dial.ts'
import type { AppendReply, AppendRequest } from '../protocols/log-append.ts'
import { ContentNamer } from '../grid/content.ts'
import { BLOCK_BYTES, DEFAULT_LOG_LIMIT_BYTES, LOG_LIMIT_LINE_ROOM, MAX_LOG_BYTES } from '../grid/constants.ts'
import type { AppendChannel, AppendStreams } from './append-streams.ts'
import {
  LOG_APPEND_TIMEOUT_MS, LOG_APPEND_TRIES, LOG_BATCH_BYTES, LOG_BUFFER_LIMIT, LOG_FLUSH_MS, LOG_SEAL_BYTES_PER_SECOND, LOG_SEAL_TIMEOUT_MS
} from '../net/constants.ts'
import { GridError } from '../net/errors.ts'
import { Redactor } from './redact.ts'

/**
 * Output is kept in pieces of this size, each exactly one block of the log's content (pieces start at multiples of
 * it), and one append carries at most one piece (MAX_APPEND_BYTES is a block): a backlog goes to the store as whole
 * blocks, which it names and keeps as they come instead of cutting the log again at the seal.
 */
export const PIECE_BYTES = BLOCK_BYTES
/**
 * Appends sent to a store before the first of them is answered. Waiting for each answer left the stream idle while
 * the store wrote, and the store idle while the next append crossed. Only whole pieces go beyond the first one, so
 * output printed now and then still leaves at once, in one append per round trip. LOG_BUFFER_LIMIT bounds it too.
 */
export const APPENDS_IN_FLIGHT = 4
/** Pieces kept for reuse once every store holds them: a steady log allocates no new ones. */
const SPARE_PIECES = 2

export class LogUnwritableError extends GridError {
  name = 'LogUnwritableError'
  readonly status = 503
}

export interface LogWriterInit {
  /** The worker's pool of open append streams. */
  streams: AppendStreams
  log: string
  /** The coordinator's write grant for this log's attempt. */
  grant: Uint8Array
  /** The stores holding this log (placeFor's answer): every batch goes to each of them. */
  stores: PeerAddress[]
  /** Bytes of output kept; past them one line says so and the rest is dropped. @default DEFAULT_LOG_LIMIT_BYTES */
  limit?: number
  /** @default LOG_BATCH_BYTES */
  batchBytes?: number
  /** @default LOG_FLUSH_MS */
  flushMs?: number
  /** Where a dropped replica or a disagreeing store is reported. */
  report?: (line: string) => void
  /**
   * Secret values the step was given: each (and each line of a multi-line one) is replaced by `***` in everything
   * written, the worker's own `grid:` lines included. A tail that may be the start of a value is held back until
   * it cannot be (at most the longest value's length less one byte) or the seal. @default none
   */
  mask?: string[]
}

export interface SealedLog {
  size: number
  /** The log's CID, when at least one store sealed it as the content the worker wrote. */
  cid?: string
}

/** One store holding the log, with what it has acknowledged. */
interface Replica {
  store: PeerAddress
  channel: AppendChannel | undefined
  /** The first stream, taken as soon as the writer exists so getting it overlaps the step's start. */
  opening: Promise<AppendChannel | undefined> | undefined
  acked: number
  failed: Error | undefined
  pumping: Promise<void> | undefined
  cid: string | undefined
}

/** Output is kept in pieces of PIECE_BYTES, filled in place: each append is (part of) one piece, with no copy. */
interface Piece {
  start: number
  bytes: Uint8Array
  filled: number
}

const encoder = new TextEncoder()

export class LogWriter {
  private readonly init: LogWriterInit
  private readonly replicas: Replica[]
  private readonly batchBytes: number
  private readonly limit: number
  /** Bytes not yet held by every live replica, from the slowest one's offset. */
  private pieces: Piece[] = []
  private spare: Uint8Array[] = []
  private written = 0
  private flushedAt = 0
  private capped = false
  /** The last byte written, so the limit's line starts on a line of its own. */
  private lastByte: number | undefined
  private timer: NodeJS.Timeout | undefined
  private failure: Error | undefined
  private drained: Array<() => void> = []
  private sealed = false
  /** Names the log as it is written: the stores keep its blocks, the worker only their CIDs. */
  private readonly namer = new ContentNamer()
  /** Only when there is something to mask: without secrets the bytes go through untouched, with no copy. */
  private readonly redactor: Redactor | undefined

  constructor (init: LogWriterInit) {
    this.init = init
    this.batchBytes = init.batchBytes ?? LOG_BATCH_BYTES
    this.limit = Math.min(init.limit ?? DEFAULT_LOG_LIMIT_BYTES, MAX_LOG_BYTES - LOG_LIMIT_LINE_ROOM)
    const redactor = new Redactor(init.mask ?? [])
    this.redactor = redactor.size > 0 ? redactor : undefined
    this.replicas = init.stores.map(store => ({
      store,
      channel: undefined,
      opening: init.streams.take(store).catch(() => undefined),
      acked: 0,
      failed: undefined,
      pumping: undefined,
      cid: undefined
    }))
    if (this.replicas.length === 0) this.failure = new LogUnwritableError(`no store to write log ${init.log} to`)
  }

  /** Bytes taken into the log so far (acknowledged or not; after masking, without a tail the redactor holds). */
  get size (): number {
    return this.written
  }

  /** Stores still taking this log. */
  get holders (): PeerAddress[] {
    return this.live().map(r => r.store)
  }

  /** Buffer output. Returns false when the caller should pause its source until `drain()` resolves. */
  write (bytes: Uint8Array): boolean {
    if (this.sealed) throw new LogUnwritableError(`log ${this.init.log} is sealed`)
    // Past the limit the output is read and dropped: the step must not block on a full pipe.
    if (this.capped) return true
    return this.take(this.redactor === undefined ? bytes : this.redactor.push(bytes))
  }

  /**
   * A line of the worker's own (`grid: sent SIGTERM…`, `grid: kept 3 artifacts…`), given whole with its line end.
   * With secrets, the step's output before it is taken as ended first: a value it was in the middle of printing
   * (its process stopped, say) is masked rather than released by the line that follows; the line is masked too.
   */
  note (line: string): boolean {
    if (this.sealed) throw new LogUnwritableError(`log ${this.init.log} is sealed`)
    if (this.capped) return true
    const bytes = Buffer.from(line)
    if (this.redactor === undefined) return this.take(bytes)
    this.take(this.redactor.flush())
    return this.take(Buffer.concat([this.redactor.push(bytes), this.redactor.flush()]))
  }

  /** Take (masked) output into the log, within the limit. */
  private take (bytes: Uint8Array): boolean {
    if (bytes.length === 0 || this.capped) return this.buffered() < LOG_BUFFER_LIMIT || this.failure !== undefined
    if (this.written + bytes.length > this.limit) {
      this.keep(bytes.subarray(0, this.limit - this.written))
      this.keep(encoder.encode(`${this.lastByte === undefined || this.lastByte === 0x0a ? '' : '\n'}grid: log limit of ${this.limit} bytes reached; further output of this step is dropped\n`))
      this.capped = true
      this.flush()
      return true
    }
    this.keep(bytes)
    if (this.written - this.flushedAt >= this.batchBytes) this.flush()
    else this.timer ??= setTimeout(() => this.flush(), this.init.flushMs ?? LOG_FLUSH_MS)
    return this.buffered() < LOG_BUFFER_LIMIT || this.failure !== undefined
  }

  drain (): Promise<void> {
    if (this.buffered() < LOG_BUFFER_LIMIT || this.failure !== undefined) return Promise.resolve()
    return new Promise(resolve => this.drained.push(resolve))
  }

  /**
   * Send everything, then seal the log on every live replica at its final size. Resolves with the log's CID when
   * at least one store named it as the worker did; throws if no store could be written.
   */
  async seal (): Promise<SealedLog> {
    // The step has ended: a tail held back as a possible secret is now known not to be one (or is masked).
    if (!this.sealed && this.redactor !== undefined) this.take(this.redactor.flush())
    // The last, part-filled piece is the log's last block.
    const last = this.pieces.at(-1)
    if (!this.sealed && this.failure === undefined && last !== undefined && last.filled < last.bytes.length) this.namer.add(last.bytes.subarray(0, last.filled))
    this.sealed = true
    clearTimeout(this.timer)
    this.timer = undefined
    // Pumps stop once their replica holds everything or fails; a replica that failed is not waited on again.
    while (this.failure === undefined && this.live().some(r => r.acked < this.written)) {
      this.flush()
      await Promise.all(this.live().map(async r => { await r.pumping }))
    }
    if (this.failure !== undefined) throw this.failure
    const { size, cid: named } = this.namer.finish()
    const cid = named.toString()
    const timeoutMs = LOG_SEAL_TIMEOUT_MS + Math.ceil(size / LOG_SEAL_BYTES_PER_SECOND) * 1000
    await Promise.all(this.live().map(async replica => {
      try {
        const reply = await this.request(replica, { t: 'seal', log: this.init.log, size, grant: this.init.grant }, timeoutMs)
        if (reply.t !== 'sealed') throw new LogUnwritableError(`store answered ${reply.t === 'error' ? reply.error : reply.t} to the seal`)
        replica.cid = reply.cid
        if (reply.cid !== cid) this.init.report?.(`log ${this.init.log}: store ${replica.store.peer} named it ${reply.cid ?? 'nothing'}, the worker wrote ${cid}; its copy is not trusted`)
        if (replica.channel !== undefined) this.init.streams.give(replica.store, replica.channel)
        replica.channel = undefined
      } catch (err: any) {
        this.drop(replica, err)
      }
    }))
    if (this.live().length === 0) throw this.failure ?? new LogUnwritableError(`no store sealed log ${this.init.log}`)
    return { size, cid: this.replicas.some(r => r.failed === undefined && r.cid === cid) ? cid : undefined }
  }

  /** Give up on the log (the attempt was fenced or the worker is stopping). */
  abort (): void {
    this.sealed = true
    clearTimeout(this.timer)
    for (const replica of this.replicas) {
      replica.opening?.then(channel => channel?.abort(new Error('log abandoned')), () => {})
      replica.channel?.abort(new Error('log abandoned'))
    }
    this.failure ??= new LogUnwritableError('log abandoned')
    this.pieces = []
    this.release()
  }

  private live (): Replica[] {
    return this.replicas.filter(r => r.failed === undefined)
  }

  /**
   * Take bytes into the log, kept in pieces until every live replica holds them; a piece is named as a block once
   * full (the last one at the seal). A log nobody takes is not named: its seal throws.
   */
  private keep (bytes: Uint8Array): void {
    if (this.failure === undefined) {
      let at = 0
      while (at < bytes.length) {
        let piece = this.pieces.at(-1)
        if (piece === undefined || piece.filled === piece.bytes.length) {
          piece = { start: this.written + at, bytes: this.spare.pop() ?? new Uint8Array(PIECE_BYTES), filled: 0 }
          this.pieces.push(piece)
        }
        const part = bytes.subarray(at, at + piece.bytes.length - piece.filled)
        piece.bytes.set(part, piece.filled)
        piece.filled += part.length
        at += part.length
        if (piece.filled === piece.bytes.length) this.namer.add(piece.bytes)
      }
    }
    this.written += bytes.length
    if (bytes.length > 0) this.lastByte = bytes[bytes.length - 1]
  }

  /** Bytes held for the slowest live replica. */
  private buffered (): number {
    return this.written - (this.pieces[0]?.start ?? this.written)
  }

  private flush (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.flushedAt = this.written
    for (const replica of this.live()) {
      replica.pumping ??= this.pump(replica).finally(() => { replica.pumping = undefined })
    }
  }

  /**
   * Send `replica` everything it lacks, on a fresh stream after a broken one, until it holds every byte written. A
   * wrong answer drops it at once; a stream that keeps breaking, after LOG_APPEND_TRIES tries in a row.
   */
  private async pump (replica: Replica): Promise<void> {
    let tries = 0
    while (replica.failed === undefined && replica.acked < this.written && this.failure === undefined) {
      const before = replica.acked
      try {
        await this.stream(replica)
      } catch (err: any) {
        if (err instanceof LogUnwritableError) {
          this.drop(replica, err)
          break
        }
        replica.channel?.abort(err)
        replica.channel = undefined
        // Tries count in a row: a store that took something since the last break has earned a fresh count.
        tries = replica.acked > before ? 1 : tries + 1
        if (tries >= LOG_APPEND_TRIES) {
          this.drop(replica, new LogUnwritableError(`could not reach store ${replica.store.peer}: ${err.message}`))
          break
        }
        await new Promise(resolve => setTimeout(resolve, 100 * 2 ** (tries - 1)))
      }
      this.trim()
    }
  }

  /**
   * Appends to `replica` from what it acknowledged, up to APPENDS_IN_FLIGHT at once (only whole pieces past the
   * first), each answer taken in order, until it holds every byte written. A gap rewinds to what the store holds,
   * as long as the writer still has the bytes from there. Throws LogUnwritableError on a wrong answer, anything else
   * on a broken stream.
   */
  private async stream (replica: Replica): Promise<void> {
    const channel = await this.channelOf(replica)
    const { log, grant } = this.init
    /** Appends sent and not yet answered, in order. */
    const sent: Array<{ offset: number, end: number }> = []
    let next = replica.acked
    while (true) {
      while (sent.length < APPENDS_IN_FLIGHT && next < this.written && this.failure === undefined && replica.failed === undefined) {
        const bytes = this.slice(next)
        if (sent.length > 0 && (next + bytes.length) % PIECE_BYTES !== 0) break
        sent.push({ offset: next, end: next + bytes.length })
        next += bytes.length
        await channel.send({ t: 'append', log, offset: next - bytes.length, bytes, grant })
      }
      const append = sent.shift()
      if (append === undefined) return
      const reply = await channel.expect({ signal: AbortSignal.timeout(LOG_APPEND_TIMEOUT_MS) })
      const held = this.pieces[0]?.start ?? this.written
      if (reply.t === 'ok' && reply.size >= append.end && reply.size <= this.written) {
        replica.acked = Math.max(replica.acked, reply.size)
      } else if (reply.t === 'gap' && reply.size >= held && reply.size <= this.written) {
        // The appends sent after it start past what the store holds: their answers are gaps too.
        for (const _later of sent.splice(0)) await channel.expect({ signal: AbortSignal.timeout(LOG_APPEND_TIMEOUT_MS) })
        replica.acked = reply.size
        next = reply.size
      } else {
        throw new LogUnwritableError(`store answered ${reply.t} ${'size' in reply ? reply.size : reply.error} to an append at ${append.offset}`)
      }
      this.trim()
    }
  }

  /** Up to one piece of pending bytes from `offset`: a view, since bytes before a piece's fill never change. */
  private slice (offset: number): Uint8Array {
    for (const piece of this.pieces) {
      if (offset < piece.start + piece.filled) return piece.bytes.subarray(offset - piece.start, piece.filled)
    }
    throw new Error(`log ${this.init.log}: no pending bytes at ${offset}`)
  }

  /** The replica's stream: the one taken when the writer was made, the one in use, or a new one. */
  private async channelOf (replica: Replica): Promise<AppendChannel> {
    if (replica.opening !== undefined) {
      replica.channel ??= await replica.opening
      replica.opening = undefined
    }
    replica.channel ??= await this.init.streams.take(replica.store)
    return replica.channel
  }

  private drop (replica: Replica, err: Error): void {
    if (replica.failed !== undefined) return
    // An abandoned log's replicas end with it; only a store failing a live log is news.
    const abandoned = this.failure !== undefined
    replica.failed = err
    replica.channel?.abort(err)
    replica.channel = undefined
    const left = this.live().length
    if (!abandoned) this.init.report?.(`log ${this.init.log}: store ${replica.store.peer} dropped (${err.message}); ${left} store(s) left`)
    if (left === 0) {
      this.failure ??= new LogUnwritableError(`could not write log ${this.init.log} to any store: ${err.message}`)
      this.pieces = []
    }
    this.trim()
  }

  /** Forget pieces every live replica holds, and let a paused step go on once below the buffer limit. */
  private trim (): void {
    const live = this.live()
    const base = live.length === 0 ? this.written : Math.min(...live.map(r => r.acked))
    while (this.pieces.length > 0) {
      const head = this.pieces[0]
      if (head.filled < head.bytes.length || head.start + head.filled > base) break
      this.pieces.shift()
      // Every live store acknowledged it, so no stream still reads it.
      if (this.spare.length < SPARE_PIECES) this.spare.push(head.bytes)
    }
    this.release()
  }

  private release (): void {
    if (this.buffered() >= LOG_BUFFER_LIMIT && this.failure === undefined) return
    for (const resolve of this.drained.splice(0)) resolve()
  }

  /** One request and its reply to one replica, on a fresh stream after any failure; appends are idempotent by offset. */
  private async request (replica: Replica, request: AppendRequest, timeoutMs: number): Promise<AppendReply> {
    let lastError: Error | undefined
    for (let tryNumber = 0; tryNumber < LOG_APPEND_TRIES; tryNumber++) {
      if (this.failure !== undefined && this.sealed) throw this.failure
      try {
        const channel = await this.channelOf(replica)
        await channel.send(request)
        return await channel.expect({ signal: AbortSignal.timeout(timeoutMs) })
      } catch (err: any) {
        lastError = err
        replica.channel?.abort(err)
        replica.channel = undefined
        await new Promise(resolve => setTimeout(resolve, 100 * 2 ** tryNumber))
      }
    }
    throw new LogUnwritableError(`could not reach store ${replica.store.peer}: ${lastError?.message}`)
  }
}

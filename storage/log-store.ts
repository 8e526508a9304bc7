// Append-only logs kept in LevelDB, readable from any offset while they grow.
// Every append names the offset it starts at (GitLab's model): a resend after a reconnect is idempotent,
// and a gap is refused with the size the store has, so the writer rewinds instead of corrupting the log.
import { EventEmitter } from 'node:events'
import type { Level } from 'level'
import { MAX_LOG_BYTES } from '../grid/constants.ts'
import type { BatchOperation } from './blockstore.ts'
import { GridError } from '../net/errors.ts'

export interface LogInfo {
  size: number
  sealed: boolean
  created: string
  sealedAt?: string
  /** Sealed by the coordinator because the attempt writing it was lost, not by its writer. */
  fenced?: boolean
  /** The CID the sealed log was stored under as content (see log-content.ts). */
  cid?: string
}

export class LogGapError extends GridError {
  name = 'LogGapError'
  readonly status = 409
  readonly size: number
  constructor (id: string, offset: number, size: number) {
    super(`log ${id}: append at ${offset} but the log holds ${size} bytes`)
    this.size = size
  }
}

export class LogSealedError extends GridError {
  name = 'LogSealedError'
  readonly status = 409
}

export class LogTooLargeError extends GridError {
  name = 'LogTooLargeError'
  readonly status = 413
}

export interface ReadOptions {
  from?: number
  /** Keep yielding new bytes until the log is sealed (or the signal aborts). */
  follow?: boolean
  signal?: AbortSignal
}

// Offsets as fixed-width hex keep chunk keys in byte order.
const offsetKey = (id: string, offset: number): string => `${id}!${offset.toString(16).padStart(12, '0')}`

export class LogStore {
  private readonly meta
  private readonly chunks
  private readonly infos = new Map<string, LogInfo>()
  /** One write at a time per log: the size check and the write must not interleave. */
  private readonly writing = new Map<string, Promise<unknown>>()
  private readonly changes = new EventEmitter()

  constructor (db: Level<string, string>) {
    this.meta = db.sublevel<string, LogInfo>('log-meta', { valueEncoding: 'json' })
    this.chunks = db.sublevel<string, Uint8Array>('log-chunks', { valueEncoding: 'view' })
    // Every tailer of every log waits on this emitter: no listener limit applies.
    this.changes.setMaxListeners(0)
  }

  async info (id: string): Promise<LogInfo | undefined> {
    const cached = this.infos.get(id)
    if (cached !== undefined) return cached
    const stored = await this.meta.get(id)
    if (stored !== undefined) this.infos.set(id, stored)
    return stored
  }

  /** Append `bytes` at `offset`. Returns the log's size after it. Bytes the log already holds are skipped. */
  append (id: string, offset: number, bytes: Uint8Array): Promise<number> {
    return this.serialise(id, async () => {
      const info = await this.info(id) ?? { size: 0, sealed: false, created: new Date().toISOString() }
      const end = offset + bytes.length
      if (offset > info.size) throw new LogGapError(id, offset, info.size)
      if (end <= info.size) return info.size
      if (info.sealed) throw new LogSealedError(`log ${id} is sealed`)
      if (end > MAX_LOG_BYTES) throw new LogTooLargeError(`log ${id} would pass ${MAX_LOG_BYTES} bytes`)
      const fresh = bytes.subarray(info.size - offset)
      const next: LogInfo = { ...info, size: end }
      // One batch: a crash never leaves a chunk the size does not count, or a size without its chunk.
      const operations: BatchOperation[] = [
        { type: 'put', key: offsetKey(id, info.size), value: fresh, sublevel: this.chunks as any },
        { type: 'put', key: id, value: next, sublevel: this.meta as any }
      ]
      await this.chunks.db.batch(operations)
      this.infos.set(id, next)
      this.changes.emit(id)
      return next.size
    })
  }

  /** Seal a log at `size` bytes: nothing more can be appended. Sealing twice at the same size is fine. */
  seal (id: string, size: number): Promise<LogInfo> {
    return this.serialise(id, async () => {
      const info = await this.info(id) ?? { size: 0, sealed: false, created: new Date().toISOString() }
      if (info.size !== size) throw new LogGapError(id, size, info.size)
      if (info.sealed) return info
      const next: LogInfo = { ...info, sealed: true, sealedAt: new Date().toISOString() }
      await this.meta.put(id, next)
      this.infos.set(id, next)
      this.changes.emit(id)
      return next
    })
  }

  /** Note the CID a sealed log was stored under as content; only for a sealed log of exactly `size` bytes. */
  named (id: string, size: number, cid: string): Promise<LogInfo> {
    return this.serialise(id, async () => {
      const info = await this.info(id)
      if (info === undefined || !info.sealed || info.size !== size) throw new LogGapError(id, size, info?.size ?? 0)
      if (info.cid === cid) return info
      const next: LogInfo = { ...info, cid }
      await this.meta.put(id, next)
      this.infos.set(id, next)
      return next
    })
  }

  /**
   * Seal a log wherever it stands, on the coordinator's word that its attempt is over (its worker was lost):
   * a stale worker that wakes up cannot add a byte, and tailers of it stop waiting.
   */
  fence (id: string): Promise<LogInfo> {
    return this.serialise(id, async () => {
      const info = await this.info(id) ?? { size: 0, sealed: false, created: new Date().toISOString() }
      if (info.sealed) return info
      const next: LogInfo = { ...info, sealed: true, sealedAt: new Date().toISOString(), fenced: true }
      await this.meta.put(id, next)
      this.infos.set(id, next)
      this.changes.emit(id)
      return next
    })
  }

  /** Bytes of a log from `from`; with `follow`, waits for more until the log is sealed. */
  async * read (id: string, options: ReadOptions = {}): AsyncGenerator<Uint8Array> {
    let position = options.from ?? 0
    while (true) {
      // Listen before looking, so an append landing between the look and the wait is not missed.
      const change = options.follow === true ? this.nextChange(id, options.signal) : undefined
      try {
        const info = await this.info(id)
        const size = info?.size ?? 0
        if (position < size) {
          for await (const chunk of this.chunksFrom(id, position, size)) {
            position += chunk.length
            yield chunk
          }
          continue
        }
        if (change === undefined || info?.sealed === true || options.signal?.aborted === true) return
        await change.happened
      } finally {
        change?.forget()
      }
    }
  }

  private async * chunksFrom (id: string, from: number, until: number): AsyncGenerator<Uint8Array> {
    // The chunk holding `from` starts at or before it: find it with one reverse step.
    const first = await this.chunks.keys({ lte: offsetKey(id, from), gte: offsetKey(id, 0), reverse: true, limit: 1 }).all()
    if (first.length === 0) return
    let start = parseInt(first[0].slice(id.length + 1), 16)
    for await (const chunk of this.chunks.values({ gte: first[0], lt: offsetKey(id, until) })) {
      const skip = Math.max(0, from - start)
      start += chunk.length
      if (skip < chunk.length) yield chunk.subarray(skip)
    }
  }

  private nextChange (id: string, signal?: AbortSignal): { happened: Promise<void>, forget: () => void } {
    let forget = (): void => {}
    const happened = new Promise<void>(resolve => {
      forget = () => {
        this.changes.off(id, done)
        signal?.removeEventListener('abort', done)
      }
      const done = (): void => { forget(); resolve() }
      this.changes.on(id, done)
      signal?.addEventListener('abort', done)
    })
    return { happened, forget }
  }

  private serialise<T> (id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.writing.get(id) ?? Promise.resolve()
    const next = previous.then(work, work)
    const settled = next.catch(() => {})
    this.writing.set(id, settled)
    settled.then(() => { if (this.writing.get(id) === settled) this.writing.delete(id) })
    return next
  }
}

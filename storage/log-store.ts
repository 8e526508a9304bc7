// Append-only logs, readable from any offset while they grow: each log's bytes in a file of its own (log-files.ts),
// its size and state in LevelDB. With a BlockKeeper (a store's LogSealer), the whole blocks of a log that arrive
// whole are kept once, as the content blocks the sealed log is made of, and only noted here: the log's file has a
// hole there. Logs begun before the files keep their bytes in LevelDB as chunks, and are read as they were written.
// Every append names the offset it starts at (GitLab's model): a resend after a reconnect is idempotent,
// and a gap is refused with the size the store has, so the writer rewinds instead of corrupting the log.
import { EventEmitter } from 'node:events'
import { dirname, join } from 'node:path'
import type { Level } from 'level'
import { BLOCK_BYTES, MAX_LOG_BYTES } from '../grid/constants.ts'
import type { BatchOperation } from './blockstore.ts'
import { LogFiles } from './log-files.ts'
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
  /** Its bytes are in its file (log-files.ts); a log without it keeps them in LevelDB chunks. */
  file?: true
}

export interface LogStoreInit {
  /** The folder of the logs' files. @default `logs` beside the database's own folder */
  dir?: string
}

/** A whole block of a log, kept as content: BLOCK_BYTES from `start` (a multiple of them), named `cid`. */
export interface KeptBlock {
  start: number
  cid: string
}

/** Sees every log's new bytes as they are appended, and keeps whole blocks of them as content (log-content.ts). */
export interface BlockKeeper {
  /**
   * `bytes` are about to be appended to log `id` at offset `at`; returns the whole blocks among them it kept, in
   * order, which the log does not write again. Called within the log's turn, before the append is answered: calls
   * for one log come in order, and its seal after them all. Must not throw (it keeps nothing instead).
   */
  take: (id: string, at: number, bytes: Uint8Array) => Promise<KeptBlock[]>
  /** A kept block's bytes, checked against its CID; undefined once it is gone (evicted with the sealed log). */
  block: (cid: string) => Promise<Uint8Array | undefined>
}

/** A log's bytes are in a block that is no longer held (the sealed log's content was evicted here). */
export class LogBlockMissingError extends GridError {
  name = 'LogBlockMissingError'
  readonly status = 410
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
  private readonly files: LogFiles
  /** Which whole blocks of a log are kept as content: `offsetKey(log, start)` → the block's CID. */
  private readonly kept
  private keeper: BlockKeeper | undefined
  private readonly infos = new Map<string, LogInfo>()
  /** One write at a time per log: the size check and the write must not interleave. */
  private readonly writing = new Map<string, Promise<unknown>>()
  private readonly changes = new EventEmitter()

  constructor (db: Level<string, string>, init: LogStoreInit = {}) {
    this.meta = db.sublevel<string, LogInfo>('log-meta', { valueEncoding: 'json' })
    this.chunks = db.sublevel<string, Uint8Array>('log-chunks', { valueEncoding: 'view' })
    this.kept = db.sublevel<string, string>('log-blocks', {})
    this.files = new LogFiles(init.dir ?? join(dirname(db.location), 'logs'))
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

  /** The one keeper of whole blocks (a store's LogSealer). */
  keepBlocks (keeper: BlockKeeper): void {
    this.keeper = keeper
  }

  /** Append `bytes` at `offset`. Returns the log's size after it. Bytes the log already holds are skipped. */
  append (id: string, offset: number, bytes: Uint8Array): Promise<number> {
    return this.serialise(id, async () => {
      const info = await this.info(id) ?? { size: 0, sealed: false, created: new Date().toISOString(), file: true }
      const end = offset + bytes.length
      if (offset > info.size) throw new LogGapError(id, offset, info.size)
      if (end <= info.size) return info.size
      if (info.sealed) throw new LogSealedError(`log ${id} is sealed`)
      if (end > MAX_LOG_BYTES) throw new LogTooLargeError(`log ${id} would pass ${MAX_LOG_BYTES} bytes`)
      const fresh = bytes.subarray(info.size - offset)
      const next: LogInfo = { ...info, size: end }
      const kept = await this.keeper?.take(id, info.size, fresh) ?? []
      if (info.file === true) {
        // The bytes first (those no kept block holds), then the size that counts them (see log-files.ts).
        let at = info.size
        for (const block of kept) {
          if (at < block.start) await this.files.write(id, at, fresh.subarray(at - info.size, block.start - info.size))
          at = block.start + BLOCK_BYTES
        }
        if (at < end) await this.files.write(id, at, fresh.subarray(at - info.size))
        const operations: BatchOperation[] = [
          ...kept.map(block => ({ type: 'put' as const, key: offsetKey(id, block.start), value: block.cid, sublevel: this.kept as any })),
          { type: 'put', key: id, value: next, sublevel: this.meta as any }
        ]
        await this.meta.db.batch(operations)
      } else {
        // One batch: a crash never leaves a chunk the size does not count, or a size without its chunk.
        const operations: BatchOperation[] = [
          { type: 'put', key: offsetKey(id, info.size), value: fresh, sublevel: this.chunks as any },
          { type: 'put', key: id, value: next, sublevel: this.meta as any }
        ]
        await this.chunks.db.batch(operations)
      }
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
   * a stale worker that wakes up cannot add a byte, and tailers of it stop waiting. A fenced log never becomes
   * content, so the whole blocks kept for it are copied into its file: they are left to the blockstore's sweep of
   * blocks no content claims, and the log keeps its bytes.
   */
  fence (id: string): Promise<LogInfo> {
    return this.serialise(id, async () => {
      const info = await this.info(id) ?? { size: 0, sealed: false, created: new Date().toISOString() }
      if (info.sealed) return info
      const next: LogInfo = { ...info, sealed: true, sealedAt: new Date().toISOString(), fenced: true }
      const operations: BatchOperation[] = []
      if (info.file === true) {
        for await (const [key, cid] of this.kept.iterator({ gt: `${id}!`, lt: `${id}!~` })) {
          const block = await this.keeper?.block(cid)
          // One already gone stays noted: reading those bytes says so.
          if (block === undefined) continue
          await this.files.write(id, parseInt(key.slice(id.length + 1), 16), block)
          operations.push({ type: 'del', key, sublevel: this.kept as any })
        }
      }
      operations.push({ type: 'put', key: id, value: next, sublevel: this.meta as any })
      await this.meta.db.batch(operations)
      this.infos.set(id, next)
      this.changes.emit(id)
      return next
    })
  }

  /** CIDs of the whole blocks of log `id` kept as content rather than in its file (see BlockKeeper). */
  async keptBlocks (id: string): Promise<string[]> {
    return await this.kept.values({ gt: `${id}!`, lt: `${id}!~` }).all()
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
          const chunks = info?.file === true ? this.fileBytes(id, position, size) : this.chunksFrom(id, position, size)
          for await (const chunk of chunks) {
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

  /**
   * Bytes `from` to `to` of a log in one buffer (a block's worth, for log-content.ts). Throws if the log holds fewer.
   */
  async range (id: string, from: number, to: number): Promise<Uint8Array> {
    const info = await this.info(id)
    if (info === undefined || to > info.size) throw new LogGapError(id, to, info?.size ?? 0)
    const parts: Uint8Array[] = []
    for await (const part of info.file === true ? this.fileBytes(id, from, to) : this.chunksFrom(id, from, to)) parts.push(part)
    const bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts)
    if (bytes.length < to - from) throw new Error(`log ${id}: read ${bytes.length} bytes from ${from}, not the ${to - from} it holds there`)
    // Chunks are whole: the last one may run past `to`.
    return bytes.length > to - from ? bytes.subarray(0, to - from) : bytes
  }

  /** Bytes `from` to `to` of a log kept in its file and in whole blocks kept as content. */
  private async * fileBytes (id: string, from: number, to: number): AsyncGenerator<Uint8Array> {
    const first = Math.floor(from / BLOCK_BYTES) * BLOCK_BYTES
    let at = from
    for await (const [key, cid] of this.kept.iterator({ gte: offsetKey(id, first), lt: offsetKey(id, to) })) {
      const start = parseInt(key.slice(id.length + 1), 16)
      if (at < start) {
        yield * this.files.read(id, at, start)
        at = start
      }
      const block = await this.keeper?.block(cid)
      if (block === undefined) throw new LogBlockMissingError(`log ${id}: bytes ${start} to ${start + BLOCK_BYTES} were in block ${cid}, which this store no longer holds`)
      if (block.length !== BLOCK_BYTES) throw new Error(`log ${id}: block ${cid} at ${start} is ${block.length} bytes, not a whole block`)
      yield block.subarray(at - start, Math.min(BLOCK_BYTES, to - start))
      at = Math.min(start + BLOCK_BYTES, to)
    }
    if (at < to) yield * this.files.read(id, at, to)
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

// Reading a log from whoever holds it: this node's own store when it has the log, else the grid's stores in
// rankFor order (the stores placeFor chose for the log come first, so the first one asked usually has it).
// When the holder being read dies mid-tail, the read goes on from the byte offset it reached on another holder:
// logs are offset-addressed, so nothing is repeated or skipped. The web server, `grid tail` and
// `grid submit --follow` all read through this.
import type { GridHost } from '../net/host.ts'
import type { PeerAddress } from '../net/dial.ts'
import { openStream } from '../net/dial.ts'
import { MessageChannel } from '../net/wire.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import type { LogStore, ReadOptions } from '../storage/log-store.ts'
import { LOG_READ_PROTOCOL, readReply } from '../protocols/log-read.ts'
import type { ReadReply, ReadRequest } from '../protocols/log-read.ts'
import { rankFor } from '../grid/placement.ts'
import { GridError } from '../net/errors.ts'
import { LOG_FOLLOW_PATIENCE_MS, LOG_RETRY_MS } from './constants.ts'

export interface LogReaderInit {
  host: GridHost
  /** This node's store, when it runs one. */
  local?: LogStore
  /** The grid's stores; a log is looked for in rankFor order. */
  stores: () => PeerAddress[]
  /** Where a holder lost mid-read is reported. */
  report?: (line: string) => void
  /** How long a follower waits for a log none of whose holders answer. @default LOG_FOLLOW_PATIENCE_MS */
  patienceMs?: number
}

export class LogBytesError extends GridError {
  name = 'LogBytesError'
  readonly status = 502
}

/** Every store that could hold the log failed while it was being read. */
export class LogUnavailableError extends GridError {
  name = 'LogUnavailableError'
  readonly status = 503
}

interface Holder {
  store: PeerAddress
  /** What the store said of the log when asked. */
  known: boolean
  size: number
  sealed: boolean
}

export class LogReader {
  private readonly init: LogReaderInit

  constructor (init: LogReaderInit) {
    this.init = init
  }

  async * read (id: string, options: ReadOptions = {}): AsyncGenerator<Uint8Array> {
    const { local, host } = this.init
    const self = host.peerId.toString()
    // This node's own copy serves when it is whole (sealed) or the only one; a partial copy here may be a replica
    // its writer dropped (this store was away for a while), so the other holders are asked first.
    // A fenced copy was sealed by the coordinator where it stood (empty, on a store the writer never reached): the
    // writer's own copies elsewhere may hold more.
    const localInfo = await local?.info(id)
    if (local !== undefined && localInfo !== undefined && ((localInfo.sealed && localInfo.fenced !== true) || this.init.stores().every(s => s.peer === self))) {
      yield * local.read(id, options)
      return
    }
    let position = options.from ?? 0
    /** Stores that failed during this read: each is given up on once, so the loop ends. */
    const failed = new Set<string>()
    let lastError: Error | undefined
    /** Since when every holder failed, while following: they are asked again until the patience runs out. */
    let allFailedSince: number | undefined
    const patience = this.init.patienceMs ?? LOG_FOLLOW_PATIENCE_MS
    const aborted = (): boolean => options.signal?.aborted === true
    while (!aborted()) {
      const remote = rankFor(id, this.init.stores()).filter(s => s.peer !== self && !failed.has(s.peer))
      const best = await this.findHolder(id, remote, position, failed, options.signal)
      // This node's own copy, when it holds more than any other store (a replica the writer dropped, say, while
      // it went on writing here alone), is the one to read.
      if (best !== undefined && local !== undefined && localInfo !== undefined && outranks(localInfo, best)) {
        yield * local.read(id, { ...options, from: position })
        return
      }
      let holder = best?.store
      if (holder === undefined) {
        if (aborted()) return
        if (failed.size > 0 && remote.every(s => failed.has(s.peer))) {
          const why = `no store holding log ${id} could be read from byte ${position}: ${lastError?.message ?? 'all unreachable'}`
          // A follower outlasts a store that restarts, as it outlasts a coordinator restart.
          if (options.follow !== true || (allFailedSince !== undefined && Date.now() - allFailedSince > patience)) throw new LogUnavailableError(why)
          if (allFailedSince === undefined) {
            allFailedSince = Date.now()
            this.init.report?.(`${why}; asking again for up to ${Math.round(patience / 1000)} s`)
          }
          await pause(LOG_RETRY_MS, options.signal)
          failed.clear()
          continue
        }
        // No other store has it: this node's own copy, partial as it may be, is all there is.
        if (local !== undefined && localInfo !== undefined) {
          yield * local.read(id, { ...options, from: position })
          return
        }
        // Nobody has a byte yet. A log is named before it exists: a follower waits where it will be written first.
        if (options.follow !== true) return
        const first = rankFor(id, this.init.stores()).find(s => !failed.has(s.peer))
        if (local !== undefined && (first === undefined || first.peer === self)) {
          yield * local.read(id, { ...options, from: position })
          return
        }
        if (first === undefined || first.peer === self) return
        holder = first
      }
      try {
        for await (const chunk of this.readRemote(holder, id, { ...options, from: position })) {
          position += chunk.length
          if (allFailedSince !== undefined) this.init.report?.(`log ${id}: reading again from store ${holder.peer} at byte ${position - chunk.length}`)
          allFailedSince = undefined
          yield chunk
        }
        return
      } catch (err: any) {
        if (aborted()) return
        lastError = err
        failed.add(holder.peer)
        this.init.report?.(`log ${id}: lost store ${holder.peer} at byte ${position} (${err.message}); trying another holder`)
      }
    }
  }

  /**
   * The store to read from: the one holding the most of the log, a sealed copy before an unsealed one of the same
   * size, the first in rank order among equals. A replica its writer dropped (a store that was away) keeps a
   * partial log that is never sealed, and the coordinator seals an empty copy on a store the writer never reached
   * (a step that never ran, a lost attempt): neither is read while a longer copy exists.
   */
  private async findHolder (id: string, stores: PeerAddress[], position: number, failed: Set<string>, signal?: AbortSignal): Promise<Holder | undefined> {
    let best: Holder | undefined
    for (const store of stores) {
      if (signal?.aborted === true) return undefined
      let holder: Holder
      try {
        holder = await this.stat(store, id, signal)
      } catch {
        failed.add(store.peer)
        continue
      }
      if (!holder.known) continue
      if (best === undefined || outranks(holder, best)) best = holder
    }
    return best
  }

  private async stat (store: PeerAddress, id: string, signal?: AbortSignal): Promise<Holder> {
    const stream = await openStream(this.init.host, store, LOG_READ_PROTOCOL, signal)
    const channel = new MessageChannel<ReadReply, ReadRequest>(stream, readReply)
    try {
      await channel.send({ t: 'stat', log: id })
      const reply = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
      if (reply.t !== 'info') throw new LogBytesError(`store ${store.peer} answered ${reply.t} to a stat`)
      await channel.close()
      return { store, known: reply.known, size: reply.size, sealed: reply.sealed }
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  private async * readRemote (store: PeerAddress, id: string, options: ReadOptions): AsyncGenerator<Uint8Array> {
    const stream = await openStream(this.init.host, store, LOG_READ_PROTOCOL, options.signal)
    const channel = new MessageChannel<ReadReply, ReadRequest>(stream, readReply)
    const stop = (): void => { channel.abort(new Error('reader stopped')) }
    options.signal?.addEventListener('abort', stop, { once: true })
    let expected = options.from ?? 0
    try {
      await channel.send({ t: 'read', log: id, from: expected, follow: options.follow === true })
      for await (const reply of channel) {
        if (reply.t === 'end') return
        if (reply.t !== 'data' || reply.offset !== expected) {
          throw new LogBytesError(`store ${store.peer} sent log ${id} out of order`)
        }
        expected += reply.bytes.length
        yield reply.bytes
      }
      // The stream ended without the store saying the log ended: it went away mid-read.
      if (options.signal?.aborted !== true) throw new LogBytesError(`store ${store.peer} stopped serving log ${id} at byte ${expected}`)
    } catch (err) {
      if (options.signal?.aborted === true) return
      throw err
    } finally {
      options.signal?.removeEventListener('abort', stop)
      stream.abort(new Error('done'))
    }
  }
}

/** The copy to read of two: the longer one, a sealed one before an unsealed one of the same size. */
function outranks (a: { size: number, sealed: boolean }, b: { size: number, sealed: boolean }): boolean {
  return a.size > b.size || (a.size === b.size && a.sealed && !b.sealed)
}

/** Wait `ms`, or less if `signal` aborts. */
async function pause (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const timer = setTimeout(done, ms)
    function done (): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

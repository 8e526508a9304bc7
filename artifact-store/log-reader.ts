// Reading a log from whoever holds it: this node's own store first, then the grid's stores.
// The web server, `grid tail` and `grid submit --follow` all read through this.
import type { GridHost } from '../node/host.ts'
import type { PeerAddress } from '../node/dial.ts'
import { openStream } from '../node/dial.ts'
import { MessageChannel } from '../node/wire.ts'
import { REQUEST_TIMEOUT_MS } from '../node/constants.ts'
import type { LogStore, ReadOptions } from './log-store.ts'
import { LOG_READ_PROTOCOL, readReply } from './log-read-protocol.ts'
import type { ReadReply, ReadRequest } from './log-read-protocol.ts'

export interface LogReaderInit {
  host: GridHost
  /** This node's store, when it runs one. */
  local?: LogStore
  /** The grid's stores, asked in order. */
  stores: () => PeerAddress[]
}

export class LogBytesError extends Error {
  name = 'LogBytesError'
}

export class LogReader {
  private readonly init: LogReaderInit

  constructor (init: LogReaderInit) {
    this.init = init
  }

  async * read (id: string, options: ReadOptions = {}): AsyncGenerator<Uint8Array> {
    const { local, host } = this.init
    if (local !== undefined && await local.info(id) !== undefined) {
      yield * local.read(id, options)
      return
    }
    const remote = this.init.stores().filter(s => s.peer !== host.peerId.toString())
    let holder: PeerAddress | undefined
    for (const store of remote) {
      if (await this.stat(store, id, options.signal).catch(() => false)) {
        holder = store
        break
      }
    }
    if (holder === undefined) {
      // Nobody has a byte yet. A log is named before it exists: a follower waits where it will be written.
      if (options.follow !== true) return
      if (local !== undefined) {
        yield * local.read(id, options)
        return
      }
      holder = remote[0]
      if (holder === undefined) return
    }
    yield * this.readRemote(holder, id, options)
  }

  private async stat (store: PeerAddress, id: string, signal?: AbortSignal): Promise<boolean> {
    const stream = await openStream(this.init.host, store, LOG_READ_PROTOCOL, signal)
    const channel = new MessageChannel<ReadReply, ReadRequest>(stream, readReply)
    await channel.send({ t: 'stat', log: id })
    const reply = await channel.expect({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
    await channel.close()
    return reply.t === 'info' && reply.known
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
    } catch (err) {
      if (options.signal?.aborted === true) return
      throw err
    } finally {
      options.signal?.removeEventListener('abort', stop)
      stream.abort(new Error('done'))
    }
  }
}

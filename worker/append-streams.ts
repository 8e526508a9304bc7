// Log-append streams kept open between steps, per store. Negotiating a fresh libp2p stream for every step
// costs more than a trivial step itself; a writer takes a stream, uses it alone (appends are request/reply)
// and gives it back when its log is sealed.
import type { GridHost } from '../net/host.ts'
import type { PeerAddress } from '../net/dial.ts'
import { openStream } from '../net/dial.ts'
import { MessageChannel } from '../net/wire.ts'
import { LOG_APPEND_PROTOCOL, appendReply } from '../protocols/log-append.ts'
import type { AppendReply, AppendRequest } from '../protocols/log-append.ts'
import { MAX_IDLE_APPEND_STREAMS } from '../net/constants.ts'

export type AppendChannel = MessageChannel<AppendReply, AppendRequest>

export class AppendStreams {
  private readonly host: GridHost
  private readonly idle = new Map<string, AppendChannel[]>()

  constructor (host: GridHost) {
    this.host = host
  }

  async take (store: PeerAddress): Promise<AppendChannel> {
    const pool = this.idle.get(store.peer) ?? []
    for (let channel = pool.pop(); channel !== undefined; channel = pool.pop()) {
      if (channel.stream.status === 'open' && channel.stream.writeStatus === 'writable') return channel
    }
    return new MessageChannel<AppendReply, AppendRequest>(await openStream(this.host, store, LOG_APPEND_PROTOCOL), appendReply)
  }

  /** Return a channel that finished its last request cleanly; anything else is dropped. */
  give (store: PeerAddress, channel: AppendChannel): void {
    const pool = this.idle.get(store.peer) ?? []
    if (pool.length >= MAX_IDLE_APPEND_STREAMS || channel.stream.status !== 'open') {
      channel.close().catch(() => {})
      return
    }
    pool.push(channel)
    this.idle.set(store.peer, pool)
  }

  closeAll (): void {
    for (const pool of this.idle.values()) for (const channel of pool) channel.abort(new Error('worker stopping'))
    this.idle.clear()
  }
}

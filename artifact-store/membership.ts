// A store node that runs apart from the coordinator announces itself (and where it listens) over
// /nameless-grid/store-membership, and keeps that session alive, reconnecting when it drops.
import type { Stream } from '@libp2p/interface'
import type { GridHost } from '../node/host.ts'
import type { JoinCode } from '../node/join-code.ts'
import { MessageChannel } from '../node/wire.ts'
import { SessionLoop } from '../node/session-loop.ts'
import { Heartbeat } from '../node/heartbeat.ts'
import { HELLO_TIMEOUT_MS } from '../coordinator/constants.ts'
import type { LogStore } from './log-store.ts'
import type { DenyList } from '../coordinator/deny-list.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { STORE_MEMBERSHIP_PROTOCOL, toStore } from '../coordinator/store-membership-protocol.ts'
import type { CoordinatorToStore, StoreToCoordinator } from '../coordinator/store-membership-protocol.ts'

export class StoreAnnouncement {
  private readonly host: GridHost
  private readonly loop: SessionLoop
  private readonly joined = Promise.withResolvers<void>()

  private readonly logs: LogStore
  private readonly denied: DenyList

  constructor (host: GridHost, join: JoinCode, logs: LogStore, denied: DenyList, log?: (line: string) => void) {
    this.host = host
    this.logs = logs
    this.denied = denied
    this.loop = new SessionLoop({
      host,
      target: { peer: join.coordinator.toString(), addrs: join.addrs.map(String) },
      protocol: STORE_MEMBERSHIP_PROTOCOL,
      session: async stream => { await this.session(stream) },
      log
    })
  }

  start (): void {
    this.loop.start()
  }

  async ready (): Promise<void> {
    await this.joined.promise
  }

  async stop (): Promise<void> {
    await this.loop.stop()
  }

  /** Refuse these peers from now on and drop the connections they have to this store. */
  private async applyDenied (peers: string[]): Promise<void> {
    const fresh = peers.filter(p => !this.denied.peers.has(p))
    this.denied.replace(peers)
    for (const peer of fresh) {
      try {
        await this.host.hangUp(peerIdFromString(peer))
      } catch {}
    }
  }

  private async session (stream: Stream): Promise<void> {
    const channel = new MessageChannel<CoordinatorToStore, StoreToCoordinator>(stream, toStore)
    const addrs = this.host.getMultiaddrs().map(String)
    if (addrs.length === 0) throw new Error('a store must listen somewhere for workers to reach it (give --listen)')
    await channel.send({ t: 'hello', addrs })
    // The deny list comes first, then the welcome.
    let welcome = await channel.expect({ signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) })
    if (welcome.t === 'denied') {
      await this.applyDenied(welcome.peers)
      welcome = await channel.expect({ signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) })
    }
    if (welcome.t !== 'welcome') throw new Error('coordinator did not welcome this store')
    this.joined.resolve()
    const heartbeat = new Heartbeat({
      stream,
      intervalMs: welcome.heartbeatMs,
      silenceLimitMs: welcome.silenceLimitMs,
      beat: () => { channel.send({ t: 'beat' }).catch(() => {}) }
    })
    try {
      for await (const message of channel) {
        heartbeat.heard()
        if (message.t === 'fence') await Promise.all(message.logs.map(async id => await this.logs.fence(id)))
        else if (message.t === 'denied') await this.applyDenied(message.peers)
      }
    } finally {
      heartbeat.stop()
    }
  }
}

// A store node that runs apart from the coordinator announces itself (and where it listens) over
// /nameless-grid/store-membership, and keeps that session alive, reconnecting when it drops. Over it the store
// reports its roots (all of them on each new session, then changes), its byte totals, asks before evicting,
// and copies or drops roots when the coordinator says so.
import type { Stream } from '@libp2p/interface'
import type { GridHost } from '../net/host.ts'
import type { JoinCode } from '../net/join-code.ts'
import { MessageChannel } from '../net/wire.ts'
import { SessionLoop } from '../net/session-loop.ts'
import { Heartbeat } from '../net/heartbeat.ts'
import { HELLO_TIMEOUT_MS } from '../grid/constants.ts'
import type { Store } from './index.ts'
import { MAX_ROOTS_PER_REPORT, USAGE_REPORT_MS } from '../storage/constants.ts'
import { REQUEST_TIMEOUT_MS } from '../net/constants.ts'
import type { DenyList } from '../grid/deny-list.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { STORE_MEMBERSHIP_PROTOCOL, toStore } from '../protocols/store-membership.ts'
import type { CoordinatorToStore, StoreToCoordinator } from '../protocols/store-membership.ts'

export class StoreAnnouncement {
  private readonly host: GridHost
  private readonly loop: SessionLoop
  private readonly joined = Promise.withResolvers<void>()
  private stream: Stream | undefined

  private readonly store: Store
  private readonly denied: DenyList
  private readonly log: (line: string) => void

  constructor (host: GridHost, join: JoinCode, store: Store, denied: DenyList, log?: (line: string) => void) {
    this.host = host
    this.store = store
    this.denied = denied
    this.log = log ?? (() => {})
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
    // The loop waits for the session to end: end it, or stopping would wait for the coordinator to hang up.
    const stopping = this.loop.stop()
    this.stream?.abort(new Error('store stopping'))
    await stopping
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
    this.stream = stream
    const addrs = this.host.getMultiaddrs().map(String)
    if (addrs.length === 0) throw new Error('a store must listen somewhere for workers to reach it (give --listen)')
    await channel.send({ t: 'hello', addrs, ...(this.store.maxBytes !== undefined ? { maxBytes: this.store.maxBytes } : {}) })
    // The deny list comes first, then the welcome.
    let welcome = await channel.expect({ signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) })
    if (welcome.t === 'denied') {
      await this.applyDenied(welcome.peers)
      welcome = await channel.expect({ signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) })
    }
    if (welcome.t !== 'welcome') throw new Error('coordinator did not welcome this store')
    this.joined.resolve()
    const { roots, blocks } = this.store
    // Everything this session adds to the store (a change listener, the usage timer, the eviction consent, the
    // heartbeat) is undone in the one `finally` below, however the session ends: a session that drops during its
    // summary (an await that throws) once left its change listener behind, one more per reconnect.
    const consents = new Map<number, (roots: string[]) => void>()
    let offChange: (() => void) | undefined
    let usageTimer: NodeJS.Timeout | undefined
    let heartbeat: Heartbeat | undefined
    try {
      // Changes from here on, then the whole list: a root in both is reported twice, which is harmless.
      offChange = roots.onChange(change => {
        if (change.held !== undefined) channel.send({ t: 'held', roots: change.held }).catch(() => {})
        for (let i = 0; i < (change.dropped?.length ?? 0); i += MAX_ROOTS_PER_REPORT) {
          channel.send({ t: 'dropped', roots: change.dropped!.slice(i, i + MAX_ROOTS_PER_REPORT), evicted: change.evicted === true }).catch(() => {})
        }
      })
      const all = roots.list()
      for (let i = 0; i < all.length; i += MAX_ROOTS_PER_REPORT) await channel.send({ t: 'held', roots: all.slice(i, i + MAX_ROOTS_PER_REPORT) })
      let reported = ''
      const report = (): void => {
        const usage = { t: 'usage' as const, bytes: blocks.bytes, maxBytes: this.store.maxBytes, roots: roots.count, received: blocks.received, served: blocks.served }
        const key = JSON.stringify(usage)
        if (key !== reported) channel.send(usage).catch(() => {})
        reported = key
      }
      report()
      usageTimer = setInterval(report, USAGE_REPORT_MS)
      // Eviction asks the coordinator first; while the session is down nothing is evicted.
      let nextConsent = 0
      roots.consent = async asked => {
        const id = nextConsent++
        const answer = Promise.withResolvers<string[]>()
        consents.set(id, answer.resolve)
        const timer = setTimeout(() => answer.resolve([]), REQUEST_TIMEOUT_MS)
        channel.send({ t: 'evict?', id, roots: asked }).catch(() => answer.resolve([]))
        try {
          return await answer.promise
        } finally {
          clearTimeout(timer)
          consents.delete(id)
        }
      }
      heartbeat = new Heartbeat({
        stream,
        intervalMs: welcome.heartbeatMs,
        silenceLimitMs: welcome.silenceLimitMs,
        beat: () => { channel.send({ t: 'beat' }).catch(() => {}) }
      })
      for await (const message of channel) {
        heartbeat.heard()
        if (message.t === 'fence') await Promise.all(message.logs.map(async id => await this.store.logs.fence(id)))
        else if (message.t === 'denied') await this.applyDenied(message.peers)
        else if (message.t === 'evict') consents.get(message.id)?.(message.roots)
        else if (message.t === 'drop') roots.drop(message.roots).catch(err => { this.log(`dropping roots failed: ${err.message}`) })
        else if (message.t === 'copy') {
          const { id, root, to } = message
          this.store.copyRoot(root, to).then(
            () => channel.send({ t: 'copied', id }),
            err => channel.send({ t: 'copied', id, error: String(err.message).slice(0, 1000) })
          ).catch(() => {})
        }
      }
    } finally {
      heartbeat?.stop()
      offChange?.()
      clearInterval(usageTimer)
      roots.consent = undefined
      for (const resolve of consents.values()) resolve([])
      if (this.stream === stream) this.stream = undefined
    }
  }
}

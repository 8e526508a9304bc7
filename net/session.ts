// The session pattern every long-lived grid protocol follows (work, store-membership): a node dials the
// coordinator and says hello; the coordinator answers within a limit with a welcome that sets the heartbeat both
// ends keep; both beat, and either end that hears nothing past the silence limit drops the session; between the
// beats, each side's messages go to its handler in order. Whatever a session sets up is undone however it ends,
// and the end says why ("sent no heartbeat for 5.0 s" is not "the connection closed"): the scheduler records it.
//
// InboundSessions is the coordinator's end (one per protocol, many sessions); OutboundSession a node's end (one
// session, dialled again whenever it drops: session-loop.ts). The protocols' own messages and what they mean stay
// in their handlers; this file knows only hello, welcome and beat, which every session protocol spells alike.
import type { Stream } from '@libp2p/interface'
import { z } from 'zod'
import type { GridHost } from './host.ts'
import type { PeerAddress } from './dial.ts'
import { BadMessageError, MessageChannel } from './wire.ts'
import { Heartbeat } from './heartbeat.ts'
import { SessionLoop, endStream } from './session-loop.ts'
import { GridError } from './errors.ts'
import { MAX_HEARTBEAT_MS, MAX_SILENCE_LIMIT_MS, MIN_HEARTBEAT_MS, MIN_SILENCE_LIMIT_MS } from './constants.ts'

/** The welcome and the beat, as every session protocol's schema spells them (its own messages come beside them). */
export const welcomeMessage = z.object({
  t: z.literal('welcome'),
  heartbeatMs: z.number().int().min(MIN_HEARTBEAT_MS).max(MAX_HEARTBEAT_MS),
  silenceLimitMs: z.number().int().min(MIN_SILENCE_LIMIT_MS).max(MAX_SILENCE_LIMIT_MS)
})
export const beatMessage = z.object({ t: z.literal('beat') })

/** A peer broke the session pattern: no hello first, a second hello or welcome, something else before the welcome. */
export class SessionProtocolError extends GridError {
  name = 'SessionProtocolError'
  readonly status = 502
}

/** Every session message is tagged by `t`. */
export interface SessionMessage { t: string }

/** The welcome every session protocol's schema defines alike: the heartbeat both ends keep. */
export interface Welcome {
  t: 'welcome'
  heartbeatMs: number
  silenceLimitMs: number
}

type Hello<In> = Extract<In, { t: 'hello' }>

/** What a handler's loop sees: everything but the pattern's own messages. */
export type LoopMessage<In> = Exclude<In, { t: 'hello' } | { t: 'welcome' } | { t: 'beat' }>

/** Queue a message on the session; rejects once the stream is gone (the session's end follows). */
export type Send<Out> = (message: Out) => Promise<void>

/** Why a session ended. */
export interface SessionEnd {
  /**
   * `silent`: the peer sent nothing past the silence limit (frozen or cut off); `closed`: it hung up or the
   * connection dropped; `refused`: it broke the protocol; `stopping`: this end is stopping.
   */
  cause: 'silent' | 'closed' | 'refused' | 'stopping'
  /** The same, as words that follow the peer's name in a record: "sent no heartbeat for 5.0 s (frozen or cut off)". */
  reason: string
}

/** One session's own side of a protocol, on either end. */
export interface SessionHandler<In> {
  /** The welcome went out (or came in); runs before the first message is read, and ends the session if it throws. */
  joined?: () => void | Promise<void>
  /** Each message of the loop, awaited: the next is not read before this one is handled. */
  message: (message: LoopMessage<In>) => void | Promise<void>
  /**
   * The session is over: called exactly once for every welcomed session, however it ended (a throw in `joined`
   * included), so whatever the handler set up is undone here.
   */
  ended: (end: SessionEnd) => void
}

/** A node's side: its hello, and what it takes before the welcome. */
export interface OutboundHandler<In, Out> extends SessionHandler<In> {
  hello: () => Out | Promise<Out>
  /** A message that came before the welcome (the store's deny list): false refuses it and ends the session. */
  beforeWelcome?: (message: In) => Promise<boolean>
  /** The welcome, as the protocol's schema read it (with whatever that protocol adds to it); runs before `joined`. */
  welcomed?: (welcome: In) => void
}

/** The coordinator's side of one session: its handler, and what its welcome adds to the heartbeat. */
export interface InboundHandler<In> extends SessionHandler<In> {
  /** Fields the welcome carries besides `t` and the heartbeat (the work protocol's trust verdict). */
  welcome?: Record<string, unknown>
}

const BEAT = { t: 'beat' } as const

/** What the end that runs a session adds around its handler's `joined` and `ended`. */
interface Around {
  joined?: () => void
  ended?: (end: SessionEnd) => void
}

/**
 * The welcomed part of a session, the same on both ends: heartbeats, the handler's loop, and its end. Throws what
 * ended the session, if anything did (the caller then aborts the stream rather than close it).
 */
async function converse<In extends SessionMessage, Out extends SessionMessage> (
  channel: MessageChannel<In, Out>, handler: SessionHandler<In>, heartbeat: Omit<Welcome, 't'>, stopping: () => boolean, around: Around = {}
): Promise<void> {
  let silentMs: number | undefined
  let failure: unknown
  const beats = new Heartbeat({
    stream: channel.stream,
    intervalMs: heartbeat.heartbeatMs,
    silenceLimitMs: heartbeat.silenceLimitMs,
    beat: () => { channel.send(BEAT as unknown as Out).catch(() => {}) },
    onSilence: ms => { silentMs = ms }
  })
  beats.start()
  try {
    await handler.joined?.()
    around.joined?.()
    for await (const message of channel) {
      if (message.t === 'beat') continue
      if (message.t === 'hello' || message.t === 'welcome') throw new SessionProtocolError(`${message.t} twice`)
      await handler.message(message as LoopMessage<In>)
    }
  } catch (err) {
    failure = err
    throw err
  } finally {
    beats.stop()
    const end = endOf(silentMs, failure, stopping())
    handler.ended(end)
    around.ended?.(end)
  }
}

function endOf (silentMs: number | undefined, failure: unknown, stopping: boolean): SessionEnd {
  if (silentMs !== undefined) return { cause: 'silent', reason: `sent no heartbeat for ${(silentMs / 1000).toFixed(1)} s (frozen or cut off)` }
  if (stopping) return { cause: 'stopping', reason: 'was let go (this end is stopping)' }
  if (failure instanceof SessionProtocolError || failure instanceof BadMessageError) return { cause: 'refused', reason: `broke the session protocol (${failure.message})` }
  return { cause: 'closed', reason: 'disconnected (the connection closed)' }
}

export interface InboundSessionsInit<In extends SessionMessage, Out extends SessionMessage> {
  host: Pick<GridHost, 'handle' | 'unhandle'>
  protocol: string
  /** What the dialling side may send (every message is checked against it). */
  schema: z.ZodType<In>
  /** Sessions one connection may hold at once: a few let a reconnect overlap the old stream's teardown. */
  maxSessionsPerConnection: number
  /** The dialling side must say hello this soon after opening its stream. */
  helloTimeoutMs: number
  /** The welcome's heartbeat: how often both ends beat, and how long a silence ends the session. */
  heartbeatMs: number
  silenceLimitMs: number
  /**
   * A hello arrived from `peer`: the session's handler, or a throw to refuse it. What it sends goes out before the
   * welcome (the store's deny list); it sets nothing up that `ended` would have to undo (`joined` does that).
   */
  open: (hello: Hello<In>, peer: string, send: Send<Out>) => Promise<InboundHandler<In>> | InboundHandler<In>
}

/** The coordinator's end of a session protocol: every session a node opens, each with its handler. */
export class InboundSessions<In extends SessionMessage, Out extends SessionMessage> {
  private readonly init: InboundSessionsInit<In, Out>
  /** Every open stream, with its handler once its hello was taken. */
  private readonly open = new Map<Stream, InboundHandler<In> | undefined>()
  private stopping = false

  constructor (init: InboundSessionsInit<In, Out>) {
    this.init = init
  }

  async start (): Promise<void> {
    this.stopping = false
    await this.init.host.handle(this.init.protocol, (stream, connection) => {
      this.serve(stream, connection.remotePeer.toString()).catch(() => {})
    }, { maxInboundStreams: this.init.maxSessionsPerConnection })
  }

  /** Refuse new sessions and end the open ones (their handlers hear `stopping`). */
  async stop (): Promise<void> {
    this.stopping = true
    await this.init.host.unhandle(this.init.protocol)
    for (const stream of this.open.keys()) stream.abort(new Error('stopping'))
  }

  /**
   * End every session (past its hello) whose handler `which` picks: a welcomed one's handler hears `closed`, and the
   * node may dial again. Returns how many were ended.
   */
  protected endSessions (which: (handler: InboundHandler<In>) => boolean, why: string): number {
    let ended = 0
    for (const [stream, handler] of this.open) {
      if (handler === undefined || !which(handler)) continue
      stream.abort(new Error(why))
      ended++
    }
    return ended
  }

  private async serve (stream: Stream, peer: string): Promise<void> {
    const { helloTimeoutMs, heartbeatMs, silenceLimitMs } = this.init
    const channel = new MessageChannel<In, Out>(stream, this.init.schema)
    const send: Send<Out> = async message => { await channel.send(message) }
    this.open.set(stream, undefined)
    try {
      const hello = await channel.expect({ signal: AbortSignal.timeout(helloTimeoutMs) })
      if (hello.t !== 'hello') throw new SessionProtocolError(`a session starts with hello, not ${hello.t}`)
      const handler = await this.init.open(hello as Hello<In>, peer, send)
      this.open.set(stream, handler)
      const welcome: Welcome = { t: 'welcome', heartbeatMs, silenceLimitMs }
      await send({ ...handler.welcome, ...welcome } as unknown as Out)
      await converse(channel, handler, welcome, () => this.stopping)
      await endStream(stream)
    } catch (err) {
      await endStream(stream, err)
    } finally {
      this.open.delete(stream)
    }
  }
}

export interface OutboundSessionInit<In extends SessionMessage, Out extends SessionMessage> {
  host: GridHost
  /** The coordinator. */
  target: PeerAddress
  protocol: string
  /** What the coordinator may send (every message is checked against it). */
  schema: z.ZodType<In>
  /** The coordinator must welcome this node this soon after its hello. */
  helloTimeoutMs: number
  /** A session is starting on a fresh stream: its handler, whose hello goes first. */
  open: (send: Send<Out>) => OutboundHandler<In, Out>
  log?: (line: string) => void
}

/** A node's end of a session protocol: one session with the coordinator, dialled again whenever it drops. */
export class OutboundSession<In extends SessionMessage, Out extends SessionMessage> {
  private readonly init: OutboundSessionInit<In, Out>
  private readonly loop: SessionLoop
  private readonly welcomed = Promise.withResolvers<void>()
  private stopping = false

  constructor (init: OutboundSessionInit<In, Out>) {
    this.init = init
    this.loop = new SessionLoop({
      host: init.host,
      target: init.target,
      protocol: init.protocol,
      session: async stream => { await this.session(stream) },
      log: init.log
    })
  }

  start (): void {
    this.stopping = false
    this.loop.start()
  }

  /** Resolves once the coordinator has welcomed this node the first time (or rejects when `signal` aborts). */
  async ready (signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    await Promise.race([
      this.welcomed.promise,
      new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason), { once: true }))
    ])
  }

  /** Ends the live session (its handler hears `stopping`) or the dial under way, and dials no more. */
  async stop (): Promise<void> {
    this.stopping = true
    await this.loop.stop()
  }

  private async session (stream: Stream): Promise<void> {
    const channel = new MessageChannel<In, Out>(stream, this.init.schema)
    const send: Send<Out> = async message => { await channel.send(message) }
    const handler = this.init.open(send)
    await send(await handler.hello())
    // One limit for the whole greeting, whatever comes before the welcome.
    const deadline = AbortSignal.timeout(this.init.helloTimeoutMs)
    let welcome: Welcome | undefined
    while (welcome === undefined) {
      const message = await channel.expect({ signal: deadline })
      if (message.t === 'welcome') {
        welcome = message as unknown as Welcome
        handler.welcomed?.(message)
      } else if (handler.beforeWelcome === undefined || !(await handler.beforeWelcome(message))) {
        throw new SessionProtocolError(`the coordinator sent ${message.t} before its welcome`)
      }
    }
    await converse(channel, handler, welcome, () => this.stopping, {
      joined: () => { this.welcomed.resolve() },
      ended: end => {
        if (end.cause !== 'stopping') this.init.log?.(`lost the coordinator: it ${end.reason}; reconnecting`)
      }
    })
  }
}

// Both ends of every session beat; either end that hears nothing past the limit drops the session.
// A dropped TCP connection is noticed by the transport; this catches the frozen (SIGSTOP) and the cut-off.
import type { Stream } from '@libp2p/interface'
import { GridError } from './errors.ts'

/** The peer sent nothing for longer than the silence limit: its session's stream is aborted with this. */
export class PeerSilentError extends GridError {
  name = 'PeerSilentError'
  readonly status = 504
  readonly silentMs: number

  constructor (silentMs: number) {
    super(`peer silent for ${silentMs} ms`)
    this.silentMs = silentMs
  }
}

export interface HeartbeatInit {
  stream: Stream
  intervalMs: number
  silenceLimitMs: number
  /** Sends one beat; failures are the read loop's business. */
  beat: () => void
  onSilence?: (silentMs: number) => void
}

export class Heartbeat {
  private readonly init: HeartbeatInit
  private last = Date.now()
  private timer: NodeJS.Timeout | undefined
  /**
   * Any bytes that arrive count as a sign of life, read or not: a session busy with one message (a summary being
   * sent, a slow answer awaited) has not gone silent because its loop has not reached the beats queued behind it.
   */
  private readonly onMessage = (): void => { this.heard() }

  constructor (init: HeartbeatInit) {
    this.init = init
  }

  start (): void {
    if (this.timer !== undefined) return
    this.heard()
    this.init.stream.addEventListener('message', this.onMessage)
    this.timer = setInterval(() => {
      const silent = Date.now() - this.last
      if (silent > this.init.silenceLimitMs) {
        this.stop()
        this.init.onSilence?.(silent)
        this.init.stream.abort(new PeerSilentError(silent))
        return
      }
      this.init.beat()
    }, this.init.intervalMs)
  }

  /** A sign of life from the peer. */
  heard (): void {
    this.last = Date.now()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.init.stream.removeEventListener('message', this.onMessage)
  }
}

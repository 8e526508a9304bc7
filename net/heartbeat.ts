// Both ends of every session beat; either end that hears nothing past the limit drops the session.
// A dropped TCP connection is noticed by the transport; this catches the frozen (SIGSTOP) and the cut-off.
import type { Stream } from '@libp2p/interface'

export interface HeartbeatInit {
  stream: Stream
  intervalMs: number
  silenceLimitMs: number
  /** Sends one beat; failures are the read loop's business. */
  beat: () => void
  onSilence?: (silentMs: number) => void
}

export class Heartbeat {
  private last = Date.now()
  private readonly timer: NodeJS.Timeout

  constructor (init: HeartbeatInit) {
    this.timer = setInterval(() => {
      const silent = Date.now() - this.last
      if (silent > init.silenceLimitMs) {
        init.onSilence?.(silent)
        init.stream.abort(new Error(`peer silent for ${silent} ms`))
        return
      }
      init.beat()
    }, init.intervalMs)
  }

  /** Anything received counts as a sign of life. */
  heard (): void {
    this.last = Date.now()
  }

  stop (): void {
    clearInterval(this.timer)
  }
}

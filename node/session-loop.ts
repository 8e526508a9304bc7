// Keeping a session with the coordinator alive: dial, run the session until it ends, wait, dial again.
// Backoff is capped exponential with jitter so a restarted coordinator is not stampeded by every node at once.
import type { Stream } from '@libp2p/interface'
import type { GridHost } from './host.ts'
import type { PeerAddress } from './dial.ts'
import { openStream } from './dial.ts'
import { RECONNECT_MAX_MS, RECONNECT_MIN_MS } from './constants.ts'

export interface SessionLoopInit {
  host: GridHost
  target: PeerAddress
  protocol: string
  /** Runs one session on a fresh stream; returns or throws when it ends. */
  session: (stream: Stream) => Promise<void>
  log?: (line: string) => void
}

export class SessionLoop {
  private readonly init: SessionLoopInit
  private stopped = false
  private running: Promise<void> | undefined
  private wake: (() => void) | undefined

  constructor (init: SessionLoopInit) {
    this.init = init
  }

  start (): void {
    this.running ??= this.loop()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.wake?.()
    await this.running
  }

  private async loop (): Promise<void> {
    let failures = 0
    while (!this.stopped) {
      const began = Date.now()
      try {
        await this.init.session(await openStream(this.init.host, this.init.target, this.init.protocol))
      } catch (err: any) {
        if (!this.stopped && failures === 0) this.init.log?.(`coordinator unreachable (${err.message}); retrying`)
      }
      if (this.stopped) return
      // A session that lasted a while was healthy: start the backoff afresh.
      failures = Date.now() - began > RECONNECT_MAX_MS ? 1 : failures + 1
      const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** (failures - 1))
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, ceiling / 2 + Math.random() * ceiling / 2)
        this.wake = () => { clearTimeout(timer); resolve() }
      })
    }
  }
}

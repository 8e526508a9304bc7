// Keeping a session with the coordinator alive: dial, run the session until it ends, wait, dial again.
// Backoff is capped exponential with jitter so a restarted coordinator is not stampeded by every node at once.
import type { Stream } from '@libp2p/interface'
import type { GridHost } from './host.ts'
import type { PeerAddress } from './dial.ts'
import { openStream } from './dial.ts'
import { DIAL_TIMEOUT_MS, RECONNECT_MAX_MS, RECONNECT_MIN_MS, SESSION_CLOSE_TIMEOUT_MS } from './constants.ts'

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
  /** The dial under way: stop() aborts it rather than wait for it to connect or time out. */
  private dialing: AbortController | undefined
  /** The live session's stream: stop() aborts it, so stopping never waits for the coordinator to hang up. */
  private stream: Stream | undefined

  constructor (init: SessionLoopInit) {
    this.init = init
  }

  start (): void {
    this.running ??= this.loop()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.dialing?.abort(new Error('stopping'))
    this.stream?.abort(new Error('stopping'))
    this.wake?.()
    await this.running
  }

  private async loop (): Promise<void> {
    let failures = 0
    while (!this.stopped) {
      const began = Date.now()
      try {
        await this.once()
      } catch (err: any) {
        // Said once per outage, in the words the CLI uses: a wrong join code and a grid that is down look alike here.
        if (!this.stopped && failures === 0) {
          const where = this.init.target.addrs.map(a => a.replace(/\/p2p\/[^/]+$/, '')).join(', ')
          this.init.log?.(`cannot reach the grid at ${where}: is it running, and is the join code current? (${err.message}); retrying`)
        }
      }
      if (this.stopped) return
      // A session that lasted a while was healthy: start the backoff afresh.
      failures = Date.now() - began > RECONNECT_MAX_MS ? 1 : failures + 1
      const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** (failures - 1))
      await new Promise<void>(resolve => {
        const done = (): void => { clearTimeout(timer); this.wake = undefined; resolve() }
        const timer = setTimeout(done, ceiling / 2 + Math.random() * ceiling / 2)
        this.wake = done
      })
    }
  }

  /**
   * Dial, run one session, and end its stream however the session ended: a session that throws (a hello that
   * timed out, a send into a dropped connection) would otherwise leave its stream open on the connection, one
   * more per reconnect.
   */
  private async once (): Promise<void> {
    const dialing = new AbortController()
    this.dialing = dialing
    let stream: Stream
    try {
      stream = await openStream(this.init.host, this.init.target, this.init.protocol, AbortSignal.any([dialing.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]))
    } finally {
      this.dialing = undefined
    }
    // Stopped while the dial was finishing: no session starts.
    if (this.stopped) {
      stream.abort(new Error('stopping'))
      return
    }
    this.stream = stream
    try {
      await this.init.session(stream)
    } catch (err: any) {
      await endStream(stream, err)
      throw err
    } finally {
      this.stream = undefined
    }
    await endStream(stream)
  }
}

/**
 * End a session's stream as its session ended: closed after a clean end (what is still queued goes out, for at
 * most SESSION_CLOSE_TIMEOUT_MS), aborted after `failure`, so a dead peer cannot hold it and none is left open.
 */
export async function endStream (stream: Stream, failure?: unknown): Promise<void> {
  if (failure !== undefined) {
    if (stream.status !== 'aborted' && stream.status !== 'reset') stream.abort(failure instanceof Error ? failure : new Error(String(failure)))
    return
  }
  if (stream.status === 'open') {
    await stream.close({ signal: AbortSignal.timeout(SESSION_CLOSE_TIMEOUT_MS) }).catch((err: Error) => { stream.abort(err) })
  }
}

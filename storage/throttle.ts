// A byte-rate limit shared by whatever draws on it (a store's repair copies): a token bucket refilled at `rate`
// bytes per second, holding at most one second's worth, so a burst after a pause is bounded too.
export class Throttle {
  private readonly rate: number
  private tokens: number
  private last = performance.now()
  private queue: Promise<void> = Promise.resolve()

  constructor (bytesPerSecond: number) {
    if (!(bytesPerSecond > 0)) throw new RangeError('a throttle needs a positive rate')
    this.rate = bytesPerSecond
    this.tokens = bytesPerSecond
  }

  /** Wait until `bytes` may go. Callers queue in order, so none starves. */
  async take (bytes: number, signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(async () => {
      const now = performance.now()
      this.tokens = Math.min(this.rate, this.tokens + (now - this.last) / 1000 * this.rate)
      this.last = now
      this.tokens -= bytes
      if (this.tokens < 0) {
        const waitMs = -this.tokens / this.rate * 1000
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, waitMs)
          signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason) }, { once: true })
        })
      }
    })
    this.queue = turn.catch(() => {})
    await turn
  }
}

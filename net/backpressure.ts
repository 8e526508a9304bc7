// Writing raw bytes to a libp2p stream with backpressure that holds.
// In @libp2p/utils 7.4 `stream.onDrain()` keeps the first promise it resolved and hands it out again: after one
// drain every later wait returns at once, and a fast writer buffers everything it has in memory (we saw 469 MB
// queued on one stream and the peer's read end closing at ~60 MB). Waiting for the 'drain' event itself is what
// lpStream does, and it holds.
import type { AbortOptions, Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

/** Send `bytes`; if the stream says its buffer is full, wait for the next drain (or fail if it closes first). */
export async function sendWithBackpressure (stream: Stream, bytes: Uint8Array | Uint8ArrayList, options?: AbortOptions): Promise<void> {
  if (stream.send(bytes)) return
  await new Promise<void>((resolve, reject) => {
    const done = (): void => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      options?.signal?.removeEventListener('abort', onAbort)
    }
    const onDrain = (): void => { done(); resolve() }
    const onClose = (event: Event): void => { done(); reject((event as any).error ?? new Error('stream closed while waiting to send')) }
    const onAbort = (): void => { done(); reject(options?.signal?.reason) }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    options?.signal?.addEventListener('abort', onAbort)
  })
}

// A progress bar for `grid put` and `grid get` when a person is watching: only on a terminal (stderr is a TTY)
// and only for transfers large enough to take a while; scripts and pipes see nothing but the result.
import { SingleBar } from 'cli-progress'

/** Below this a transfer ends before a bar would be read. */
export const PROGRESS_MIN_BYTES = 16 * 1024 * 1024

export interface Progress {
  add (bytes: number): void
  stop (): void
}

const silent: Progress = { add: () => {}, stop: () => {} }

/** A bar on stderr for `total` bytes, or nothing when stderr is not a terminal or the transfer is small. */
export function transferProgress (label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (stream.isTTY !== true || total < PROGRESS_MIN_BYTES) return silent
  const bar = new SingleBar({
    stream,
    format: `${label} [{bar}] {percentage}% {done}/{size} MiB {speed} MB/s eta {eta_formatted}`,
    hideCursor: true,
    clearOnComplete: true,
    etaBuffer: 50
  })
  const began = performance.now()
  let done = 0
  const payload = (): Record<string, string> => ({
    done: (done / 2 ** 20).toFixed(0),
    size: (total / 2 ** 20).toFixed(0),
    speed: (done / Math.max(1, performance.now() - began) / 1e3).toFixed(0)
  })
  bar.start(total, 0, payload())
  return {
    add: bytes => {
      done += bytes
      bar.update(Math.min(done, total), payload())
    },
    stop: () => { bar.stop() }
  }
}

/** The same bytes, counted into `progress` as they pass. */
export async function * counted (source: AsyncIterable<Uint8Array>, progress: Progress): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    progress.add(chunk.byteLength)
    yield chunk
  }
}

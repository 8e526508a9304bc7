// What the transfer bench's two processes share: the bare baselines' protocol ids, their 8-byte counts, and the
// raw TCP baseline's writer.
import type { Socket } from 'node:net'

export const SINK_PROTOCOL = '/bench/sink/1.0.0'
export const SOURCE_PROTOCOL = '/bench/source/1.0.0'
/** Bare baselines write 256 KiB at a time (DESIGN.md: libp2p's throughput suffers below 64 KiB writes). */
export const BARE_CHUNK_BYTES = 256 * 1024

export function writeCount (n: number): Uint8Array {
  const bytes = new Uint8Array(8)
  new DataView(bytes.buffer).setBigUint64(0, BigInt(n))
  return bytes
}

export function readCount (bytes: Uint8Array): number {
  return Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0))
}

/** Write `size` bytes to a raw TCP socket, `payload` over and over BARE_CHUNK_BYTES at a time as it drains, then end it. */
export function writeRaw (socket: Socket, payload: Uint8Array, size: number): void {
  let sent = 0
  const more = (): void => {
    while (sent < size) {
      const part = payload.subarray(0, Math.min(BARE_CHUNK_BYTES, size - sent))
      sent += part.length
      if (!socket.write(part)) { socket.once('drain', more); return }
    }
    socket.end()
  }
  more()
}

// What the transfer bench's two processes share: the bare baselines' protocol ids and their 8-byte counts.

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

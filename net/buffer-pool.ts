// Reused buffers for bulk bytes (blocks on their way to a store or into LevelDB). A megabyte buffer that lives
// for a few hundred milliseconds, as a block does between being read and being acknowledged, outlives V8's young
// generation; every 64 MiB or so of such buffers then costs a full mark-compact of the heap, and on a put of a
// gigabyte that was over a hundred of them per process, a quarter of the CPU. Buffers given back are handed out
// again instead, so a steady transfer allocates nothing.

export class BufferPool {
  /** Bytes in every buffer of the pool. */
  readonly size: number
  private readonly keep: number
  private readonly free: ArrayBuffer[] = []
  /** Buffers this pool made: only those are taken back. */
  private readonly made = new WeakSet<ArrayBuffer>()

  /** Buffers of `size` bytes; at most `keep` of them wait for reuse (the rest of those given back are dropped). */
  constructor (size: number, keep: number) {
    this.size = size
    this.keep = keep
  }

  /** A buffer of `size` bytes, reused when one was given back. Its contents are whatever was there. */
  take (): Uint8Array {
    const reused = this.free.pop()
    if (reused !== undefined) return new Uint8Array(reused)
    const made = new ArrayBuffer(this.size)
    this.made.add(made)
    return new Uint8Array(made)
  }

  /**
   * Give back the buffer under `view` (a view of any part of it). The caller promises nothing reads or writes it
   * any more: a writer gives a block's buffer back once the store acknowledged it (were it early, the store, which
   * checks every block, would refuse the block, not keep wrong bytes); a store, once LevelDB copied it. A buffer
   * from elsewhere, or one already given back, is ignored.
   */
  give (view: Uint8Array): void {
    const buffer = view.buffer
    if (!(buffer instanceof ArrayBuffer) || !this.made.has(buffer)) return
    if (this.free.length >= this.keep || this.free.includes(buffer)) return
    this.free.push(buffer)
  }

  /** Buffers waiting for reuse (for tests). */
  get waiting (): number {
    return this.free.length
  }
}

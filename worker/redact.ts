// Masking secret values in a step's output before a byte of it leaves the worker (issue 18). Output arrives in
// chunks cut wherever the pipe cut it, so a value may be split across two writes, two 64 KiB batches, or come a
// byte at a time: the redactor holds back the shortest tail that could still be the start of a value, and nothing
// more, so a live tail never waits on text that cannot be a secret. Buildkite's agent redacts the same way before
// logs leave it (buildkite/agent internal/replacer/replacer.go: partial matches held back, overlapping matches
// merged into one replacement, adjacent ones not), but steps through every byte in Go; here each pattern is found
// with Buffer.indexOf (native), from a rare byte (see Anchor). GitHub masks each line of a multi-line value, which
// is why a PEM key printed with other line endings, or a line at a time, is still caught here.
import { Buffer } from 'node:buffer'

/** What a secret is replaced by, as GitHub and Buildkite write it. */
export const MASK = '***'

const MASK_BYTES = Buffer.from(MASK)
const NOTHING = Buffer.alloc(0)
/**
 * At the end of the output (flush), a held tail of at least this many bytes that is the start of a value is masked,
 * not released: a step stopped (cancelled, timed out) in the middle of printing a value would otherwise leave its
 * first part in the log. Shorter tails are released as they are (the secret store refuses values this short, so
 * they say almost nothing), and ordinary text that merely ends like a value's first byte stays readable.
 */
export const PARTIAL_MASK_BYTES = 4
/**
 * One byte in this many of the output is counted to learn which bytes are rare in it: a prime, so lines of a fixed
 * length are not sampled at the same column. Cheap next to the search (about 1/50th of it).
 */
const SAMPLE_STRIDE = 61
/**
 * Each pattern is searched for from its rarest byte (see Anchor); the choice is made again every this many pushes,
 * with the older counts halved, so it follows output that changes its kind halfway (a build going from compiling
 * to a hex dump). Choosing costs a look-up per byte of the first half of each pattern.
 */
const ANCHOR_REFRESH_PUSHES = 64

/**
 * How a pattern is looked for: Buffer.indexOf finds a needle fast when its first byte is rare in the text and slowly
 * when it is common (a value starting with `e` in English text stops at every `e`), so the needle is the pattern
 * from its rarest byte in its first half on, and a hit is checked against the `skip` bytes before it. Five times
 * faster on compiler output with twenty secrets than searching from the first byte.
 */
interface Anchor {
  pattern: Buffer
  skip: number
  needle: Buffer
}

/**
 * The patterns masked for these values: each value, and each non-empty line of a multi-line one (lines split on
 * \n or \r\n), as UTF-8 bytes, without duplicates, longest first. Empty values are ignored (they would match
 * everywhere).
 */
export function maskPatterns (values: string[]): Buffer[] {
  const texts = new Set<string>()
  for (const value of values) {
    if (value.length === 0) continue
    texts.add(value)
    if (value.includes('\n')) for (const line of value.split(/\r?\n/)) if (line.length > 0) texts.add(line)
  }
  return [...texts].map(text => Buffer.from(text, 'utf8')).sort((a, b) => b.length - a.length)
}

/**
 * A streaming redactor: bytes in, the same bytes out with every occurrence of a pattern (see maskPatterns) replaced
 * by `***`. Every byte that belongs to an occurrence is masked: overlapping or nested occurrences become one `***`
 * covering all of them (so the longest pattern at each position wins, and two values overlapping in the text leak
 * no byte of either); occurrences that merely touch stay two masks.
 *
 * `push` returns what is safe to release now and holds back only the longest suffix of the input that is a proper
 * prefix of some pattern (at most the longest pattern's length less one byte), released by a later push once it
 * cannot be a secret any more, or by `flush` at the end of the output. Memory stays bounded by twice the longest
 * pattern, whatever the length of a line or of a chunk.
 */
export class Redactor {
  private readonly patterns: Buffer[]
  private readonly longest: number
  private anchors: Anchor[]
  /** Sampled counts of each byte value in the output, for choosing anchors. */
  private readonly seen = new Uint32Array(256)
  private pushes = 0
  /** Input kept from earlier pushes: the held tail, and before it the masked bytes an occurrence may extend. */
  private context: Buffer = NOTHING
  /** Input offset (from the start of the output) of context[0]. */
  private base = 0
  /** Every input byte before this offset has been released, as itself or inside a mask. */
  private released = 0
  /** Where the last mask released ends; equal to `released` when the last thing released was a mask. */
  private maskedTo = -1

  constructor (values: string[]) {
    this.patterns = maskPatterns(values)
    this.longest = this.patterns[0]?.length ?? 0
    this.anchors = this.patterns.map(pattern => ({ pattern, skip: 0, needle: pattern }))
  }

  /** How many patterns are masked: 0 means the redactor changes nothing. */
  get size (): number {
    return this.patterns.length
  }

  /** Input bytes taken but not released yet (at most the longest pattern's length less one). */
  get held (): number {
    return this.base + this.context.length - this.released
  }

  /** Take the next output bytes; returns the bytes safe to release now (possibly none). */
  push (chunk: Uint8Array): Uint8Array {
    if (chunk.length === 0) return NOTHING
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    if (this.patterns.length === 0) return bytes
    for (let at = 0; at < bytes.length; at += SAMPLE_STRIDE) this.seen[bytes[at]]++
    if (++this.pushes % ANCHOR_REFRESH_PUSHES === 1) this.chooseAnchors()
    return this.scan(this.context.length === 0 ? bytes : Buffer.concat([this.context, bytes]), false)
  }

  /**
   * The end of the output: release the held tail (masking any occurrence in it; a tail of PARTIAL_MASK_BYTES or more
   * that is the start of a value is masked whole). The next push starts afresh.
   */
  flush (): Uint8Array {
    let out: Buffer = NOTHING
    if (this.context.length > 0) {
      const end = this.base + this.context.length
      const tail = this.pendingPrefix(this.context)
      if (tail >= PARTIAL_MASK_BYTES) {
        // Everything but the held tail is released as usual; the tail, a value's first bytes, is masked: by a mask
        // of its own, or, when it starts inside the mask released last, by that one (its rest is dropped).
        const head = this.scan(this.context, false)
        out = this.released < end && end - tail >= this.maskedTo ? Buffer.concat([head, MASK_BYTES]) : head
      } else {
        out = this.scan(this.context, true)
      }
    }
    this.released = this.base + this.context.length
    this.base += this.context.length
    this.context = NOTHING
    this.maskedTo = -1
    return out
  }

  /**
   * Release `data` (the input from offset `base`) up to the last byte that cannot be part of an occurrence still
   * to come; `final` releases all of it.
   */
  private scan (data: Buffer, final: boolean): Buffer {
    const base = this.base
    const end = base + data.length
    const found = this.occurrences(data, base)
    let cut = final ? end : Math.max(end - this.pendingPrefix(data), this.released)
    // A mask is released whole: an occurrence running past the cut moves the cut to its end. A later occurrence
    // starting inside it still merges into it (see maskedTo).
    for (const [start, stop] of found) if (start < cut && stop > cut) cut = stop
    const parts: Buffer[] = []
    let cursor = this.released
    for (const [start, stop] of found) {
      // Occurrences from the cut on are held with the tail, and found again by the next scan.
      if (start >= cut) break
      if (start < cursor) {
        // It overlaps the mask released last (an earlier byte released as itself is never part of an occurrence:
        // it was released only once no pattern could start there), so the mask grows to cover it.
      } else {
        if (start > cursor) parts.push(data.subarray(cursor - base, start - base))
        parts.push(MASK_BYTES)
      }
      cursor = Math.max(cursor, stop)
      this.maskedTo = cursor
    }
    if (cut > cursor) parts.push(data.subarray(cursor - base, cut - base))
    this.released = cut
    // Keep the held tail; after a mask also the bytes before it that an occurrence still to come may start in.
    let keepFrom = cut - base
    if (this.maskedTo === cut) keepFrom = Math.max(0, keepFrom - (this.longest - 1))
    // A copy, so a huge chunk is not kept alive by a view of its last bytes.
    this.context = keepFrom === data.length ? NOTHING : Buffer.from(data.subarray(keepFrom))
    this.base = base + keepFrom
    // One part is returned as it is (no copy), unless it is the shared mask a caller could write over.
    return parts.length === 1 && parts[0] !== MASK_BYTES ? parts[0] : Buffer.concat(parts)
  }

  /**
   * Every occurrence of a pattern in `data` ending after the released bytes, as [start, stop) input offsets in
   * order of their start.
   */
  private occurrences (data: Buffer, base: number): Array<[number, number]> {
    const found: Array<[number, number]> = []
    let sorted = true
    for (const { pattern, skip, needle } of this.anchors) {
      const first = found.length
      let hit = data.indexOf(needle, Math.max(0, this.released - base - pattern.length + 1) + skip)
      while (hit !== -1) {
        const at = hit - skip
        if (skip === 0 || data.compare(pattern, 0, skip, at, hit) === 0) {
          const start = base + at
          const last = found.length > first ? found[found.length - 1] : undefined
          // Overlapping occurrences of one pattern ("aaaa" in "aaaaa") merge as they are found.
          if (last !== undefined && start < last[1]) last[1] = start + pattern.length
          else found.push([start, start + pattern.length])
        }
        hit = data.indexOf(needle, hit + 1)
      }
      if (first > 0 && found.length > first) sorted = false
    }
    // Occurrences of different patterns overlapping one another are merged as they are released (see scan).
    if (!sorted) found.sort((a, b) => a[0] - b[0])
    return found
  }

  /** Anchor each pattern at the rarest byte of its first half in the output so far; older counts weigh half. */
  private chooseAnchors (): void {
    this.anchors = this.patterns.map(pattern => {
      let skip = 0
      for (let at = 1; at < Math.ceil(pattern.length / 2); at++) if (this.seen[pattern[at]] < this.seen[pattern[skip]]) skip = at
      return { pattern, skip, needle: pattern.subarray(skip) }
    })
    for (let byte = 0; byte < 256; byte++) this.seen[byte] >>>= 1
  }

  /** The length of the longest suffix of `data` that is a proper prefix of some pattern (0 if none). */
  private pendingPrefix (data: Buffer): number {
    const n = data.length
    let best = 0
    for (const pattern of this.patterns) {
      if (pattern.length - 1 <= best) break
      // Candidates start where the pattern's first byte is, earliest first: the first that fits is the longest.
      let at = data.indexOf(pattern[0], Math.max(0, n - (pattern.length - 1)))
      while (at !== -1 && n - at > best) {
        if (data.compare(pattern, 0, n - at, at, n) === 0) {
          best = n - at
          break
        }
        at = data.indexOf(pattern[0], at + 1)
      }
    }
    return best
  }
}

// How much work each figure of the peer bench does, and the shape of what each side reports.
// GRID_PEERS_QUICK=1 shrinks everything for a smoke run (its figures are not the ones to publish).
import { median } from '../measure.ts'

export interface PeerSizes {
  /** Worker processes on each side, as the issue asks: 4. */
  workers: number
  /** Trivial builds for the dispatch figure. Buildbot runs ~6/s, the grid ~100/s: each gets ~30 s and ~5 s of it. */
  buildbotBuilds: number
  gridBuilds: number
  /** The FileUpload / artifact push: 64 MiB of fresh random bytes each time (the grid would skip blocks it holds). */
  uploadBytes: number
  uploadRepeats: number
  /** The chatty step: `yes LINE | head -n N`, 80-byte lines, 40 MB: well past any buffer, under the grid's 100 MiB log limit. */
  chattyLines: number
  chattyRepeats: number
  /** The Helia comparison: one file of this size, put/added, then fetched by another process. */
  transferBytes: number
  /** Helia's chunk sizes to measure: 1 MiB as the grid's blocks (and Helia's unixfs-v1-2025 profile), 256 KiB its older default. */
  heliaChunks: number[]
  /** No phase may take longer than this. */
  phaseTimeoutMs: number
}

const quick = process.env.GRID_PEERS_QUICK === '1'

export const SIZES: PeerSizes = quick
  ? { workers: 4, buildbotBuilds: 20, gridBuilds: 60, uploadBytes: 64 * 2 ** 20, uploadRepeats: 2, chattyLines: 50_000, chattyRepeats: 1, transferBytes: 64 * 2 ** 20, heliaChunks: [2 ** 20], phaseTimeoutMs: 120_000 }
  : { workers: 4, buildbotBuilds: 200, gridBuilds: 600, uploadBytes: 64 * 2 ** 20, uploadRepeats: 5, chattyLines: 500_000, chattyRepeats: 3, transferBytes: 2 ** 30, heliaChunks: [2 ** 20, 256 * 1024], phaseTimeoutMs: 300_000 }

/** The whole run may not take longer than this; past it everything is killed and the bench fails. */
export const RUN_TIMEOUT_MS = quick ? 600_000 : 1_800_000

/** What each build system reports, measured the same way on both sides. */
export interface ServiceFigures {
  dispatch: { builds: number, perSecond: number, cpuMsPerBuild: number }
  uploadMBps: number
  uploadSamples: number[]
  logLinesPerSecond: number
  logSamples: number[]
}

/** ServiceFigures from what a side measured: `builds` dispatched in `seconds` for `cpuMs`, and the samples. */
export function serviceFigures (builds: number, seconds: number, cpuMs: number, uploadMbps: number[], linesPerSecond: number[]): ServiceFigures {
  return {
    dispatch: { builds, perSecond: builds / seconds, cpuMsPerBuild: cpuMs / builds },
    uploadMBps: median(uploadMbps),
    uploadSamples: uploadMbps,
    logLinesPerSecond: median(linesPerSecond),
    logSamples: linesPerSecond
  }
}

/** One side of the 1 GiB transfer: the fetch alone, the whole path (add/put then fetch/get) and peak memory. */
export interface TransferFigures {
  label: string
  /** Wall time of the fetching process, spawn to exit (start, dial, fetch, verify, write the file). */
  fetchMs: number
  /** Time to the first byte and the fetch alone, measured inside the process, where known. */
  firstByteMs?: number
  fetchOnlyMs?: number
  /** Wall time of adding or putting the file (for Helia: into its own blockstore, no network). */
  addMs: number
  /** Peak RSS (VmHWM) of the serving side over the whole run and of the fetching process. */
  serverPeakRss: number
  serverPeakAnon: number
  fetcherPeakRss: number
}

// Store and block-protocol limits, each with its reason. Limits every layer shares (blocks, logs) are in grid/constants.ts.
import { BLOCK_BYTES, MAX_BLOCK_BYTES } from '../grid/constants.ts'

/** One append frame's payload. Writers batch to about this (libp2p throughput suffers below 64 KiB writes). */
export const MAX_APPEND_BYTES = 1024 * 1024

/** Log streams a peer may hold open per connection: a worker writes one per running step. */
export const MAX_APPEND_STREAMS = 256
/** Tail streams a peer may hold open per connection (the web server tails for every HTTP follower). */
export const MAX_READ_STREAMS = 256

/** Bytes sent in one read frame: large enough to keep a libp2p stream efficient. */
export const READ_FRAME_BYTES = 256 * 1024

/** CIDs asked about in one "which do you lack" message: 4 GiB of content at BLOCK_BYTES. */
export const MAX_CIDS_PER_ASK = 4_096
/** Blocks a writer sends before waiting for acknowledgements: keeps the stream full, bounds memory on both sides. */
export const PUT_WINDOW = 16
/**
 * Blocks a store writes in one LevelDB batch. Well under PUT_WINDOW: the writer keeps sending while a batch is
 * written, instead of stopping and waiting for a whole window's acknowledgements (stop-and-wait).
 */
export const PUT_BATCH_BLOCKS = 4
/** Blocks a reader asks ahead of what it has consumed (Helia asks for all 1024 leaves at once and waits 16 s). */
export const GET_WINDOW = 8
/** Block streams a peer may hold open per connection. */
export const MAX_BLOCK_STREAMS = 64
/** A block frame: one block at most, plus its header. */
export const MAX_BLOCK_FRAME_BYTES = MAX_BLOCK_BYTES + 4096
/**
 * A block frame as the grid's own writers send it: a BLOCK_BYTES block and its header. A store puts frames up to
 * this size together in reused buffers; larger ones (blocks cut by another chunker) take the plain path.
 */
export const POOLED_FRAME_BYTES = BLOCK_BYTES + 4096
/** Blocks a writer holds and asks about at once before sending the missing ones: bounds its memory to this many blocks. */
export const PUT_GROUP_BLOCKS = 8
/** Blocks moved per batch when a store written before the split layout is opened: a few MiB held at a time. */
export const MIGRATE_BATCH_BLOCKS = 16

/**
 * LevelDB's in-memory write buffer for a store's databases: each flush writes a table of about this size. The
 * 4 MiB default wrote a table every four blocks; 32 MiB roughly doubled the rate of 1 MiB block writes in a
 * one-off LevelDB test on these machines (with blocks still keyed by CID; not part of the bench).
 */
export const STORE_WRITE_BUFFER_BYTES = 32 * 1024 * 1024
/**
 * LevelDB table files a store's compactions write. The 2 MiB default holds two blocks per file, so compacting a
 * gigabyte juggles hundreds of files. Larger files sped LevelDB alone up by about half in a one-off test (not
 * part of the bench); `npm run bench`'s put, bound by CPU, did not move measurably.
 */
export const STORE_TABLE_FILE_BYTES = 64 * 1024 * 1024

/**
 * A block a writer asked about or sent stays out of eviction this long: its put may still be on the way to the
 * message naming its root (a store told "you need not send this" must still hold it then). Longer than a put of
 * a few GiB takes; a longer one whose early blocks were evicted meanwhile is refused at the root, not corrupted.
 */
export const BLOCK_PIN_MS = 5 * 60_000
/**
 * Blocks no root claimed this long after they were written are what an aborted put left (a writer killed, content
 * that changed under it): the sweep deletes them. A day, so a put slower than any real one still finds its early
 * blocks when it names its root; the blocks of such a put are not corrupted either way, only refused at the root.
 */
export const UNCLAIMED_GRACE_MS = 24 * 60 * 60_000
/** How often a store and a worker cache look for unclaimed blocks past their grace. */
export const UNCLAIMED_SWEEP_MS = 60 * 60_000
/** Unclaimed blocks looked at under the write lock at once: a sweep of many holds writers off for a moment each. */
export const UNCLAIMED_SWEEP_BATCH = 256

/**
 * Store-to-store repair copies go no faster than this from one store, so builds keep their bandwidth
 * (about a quarter of a bare libp2p stream on the development machines).
 */
export const REPAIR_BYTES_PER_SECOND = 64 * 1024 * 1024
/**
 * Eviction frees this share of the size cap beyond what a write needs, so a store at its cap asks the
 * coordinator once per few hundred MiB rather than once per block.
 */
export const EVICTION_HEADROOM = 0.05
/** Roots asked about for eviction in one round, oldest first. */
export const EVICTION_BATCH_ROOTS = 64
/** Roots listed in one report to the coordinator (a store's summary on joining comes in several). */
export const MAX_ROOTS_PER_REPORT = 4_096
/** How often a store tells the coordinator its byte totals when they changed. */
export const USAGE_REPORT_MS = 2_000
/** Last-access times of roots are written to disk at most this often (a read must not cost a write). */
export const ACCESS_FLUSH_MS = 30_000

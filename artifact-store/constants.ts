// Store limits, each with its reason.

/** Hard ceiling on one log, whatever a job asks: a runaway step must not fill a store's disk. */
export const MAX_LOG_BYTES = 1024 * 1024 * 1024

/** One append frame's payload. Writers batch to about this (libp2p throughput suffers below 64 KiB writes). */
export const MAX_APPEND_BYTES = 1024 * 1024

/** Log streams a peer may hold open per connection: a worker writes one per running step. */
export const MAX_APPEND_STREAMS = 256
/** Tail streams a peer may hold open per connection (the web server tails for every HTTP follower). */
export const MAX_READ_STREAMS = 256

/** Bytes sent in one read frame: large enough to keep a libp2p stream efficient. */
export const READ_FRAME_BYTES = 256 * 1024

/** Content is cut into blocks of this size (IPFS uses 256 KiB to 1 MiB; large blocks keep libp2p writes efficient). */
export const BLOCK_BYTES = 1024 * 1024
/** The largest block a store takes from a peer (IPFS's network cap is 2 MiB). */
export const MAX_BLOCK_BYTES = 2 * 1024 * 1024
/** Blocks one manifest may list: about 40 GiB of content at BLOCK_BYTES, and a manifest that still fits in one block. */
export const MAX_MANIFEST_BLOCKS = 40_000

/** CIDs asked about in one "which do you lack" message: 4 GiB of content at BLOCK_BYTES. */
export const MAX_CIDS_PER_ASK = 4_096
/** Blocks a writer sends before waiting for acknowledgements: keeps the stream full, bounds memory on both sides. */
export const PUT_WINDOW = 8
/** Blocks a reader asks ahead of what it has consumed (Helia asks for all 1024 leaves at once and waits 16 s). */
export const GET_WINDOW = 8
/** Block streams a peer may hold open per connection. */
export const MAX_BLOCK_STREAMS = 64
/** A block frame: one block at most, plus its header. */
export const MAX_BLOCK_FRAME_BYTES = MAX_BLOCK_BYTES + 4096
/** Blocks a writer holds and asks about at once before sending the missing ones: bounds its memory to this many blocks. */
export const PUT_GROUP_BLOCKS = 16

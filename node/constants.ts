// Limits and timings of the libp2p host and the wire every protocol shares.
// Each has its reason beside it; tests and protocols import these rather than repeat numbers.

/** `grid up` and `grid coordinator` listen here by default so a join code stays valid across restarts. */
export const DEFAULT_COORDINATOR_PORT = 7340

/** Largest single framed message. A log append carries at most LOG_BATCH_BYTES plus a small header. */
export const MAX_MESSAGE_BYTES = 1024 * 1024 + 4096

/** A peer that starts a request must finish sending it within this time, or the stream is dropped. */
export const REQUEST_TIMEOUT_MS = 10_000

/** Dialling the coordinator or a store: long enough for a slow LAN, short enough to retry soon. */
export const DIAL_TIMEOUT_MS = 5_000

/** Yamux flow-control window per stream: plenty for loopback and LAN rates, and below the read buffer. */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024
/** Unread bytes a stream may hold before it is aborted: twice the window, so a well-behaved sender never trips it. */
export const STREAM_READ_BUFFER_BYTES = 8 * 1024 * 1024

/** Libp2p's default (5/s per host) would turn away `grid up --workers 50` on loopback or a rack behind one NAT. */
export const INBOUND_CONNECTIONS_PER_SECOND_PER_HOST = 1_000

/** Enough for hundreds of workers on one coordinator (issue: 500 connected workers under 1 GB). */
export const MAX_CONNECTIONS = 4_096

/** Worker reconnection backoff: capped exponential with jitter, so a restarted coordinator is not stampeded. */
export const RECONNECT_MIN_MS = 200
export const RECONNECT_MAX_MS = 5_000

/** Log batching on the worker: send when this much is buffered or this long has passed (DESIGN.md, step 3). */
export const LOG_BATCH_BYTES = 64 * 1024
export const LOG_FLUSH_MS = 100
/** Past this much unsent output the step's pipes are paused: a chatty step cannot balloon the worker's memory. */
export const LOG_BUFFER_LIMIT = 4 * 1024 * 1024
/** A log write the store does not answer within this time is retried on a fresh stream. */
export const LOG_APPEND_TIMEOUT_MS = 10_000
/** Attempts to reach a store for one append before the log is given up (the build still reports its result). */
export const LOG_APPEND_TRIES = 5

/** A cancelled or timed-out step gets SIGTERM, then SIGKILL after this grace. */
export const KILL_GRACE_MS = 1_000

/** Probing a tool's version at worker start must not hold the start up. */
export const TOOL_PROBE_TIMEOUT_MS = 2_000

/** Reports kept while the coordinator is unreachable, resent on reconnect (final results above all). */
export const MAX_PENDING_REPORTS = 10_000

/** `grid worker` on SIGTERM waits this long for running builds before ending them (they re-queue as lost). */
export const DEFAULT_DRAIN_TIMEOUT_S = 600

/** Idle log-append streams a worker keeps per store for its next steps (one per slot is plenty). */
export const MAX_IDLE_APPEND_STREAMS = 8

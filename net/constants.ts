// Limits and timings of the libp2p host and the wire every protocol shares.
// Each has its reason beside it; tests and protocols import these rather than repeat numbers.

/** `grid up` and `grid coordinator` listen here by default so a join code stays valid across restarts. */
export const DEFAULT_COORDINATOR_PORT = 7340

/** Largest single framed message. A log append carries at most LOG_BATCH_BYTES plus a small header. */
export const MAX_MESSAGE_BYTES = 1024 * 1024 + 4096
/** A frame's length prefix is a varint; a 10-byte one already describes more than any frame we take. */
export const MAX_PREFIX_BYTES = 10
/** Byte fields at least this large are sent from where they lie rather than copied into the encoding (see wire.ts). */
export const ZERO_COPY_BYTES = 64 * 1024

/** A peer ID's text: an Ed25519 one is 52 characters; the bound leaves room for other key types. */
export const MAX_PEER_ID_CHARS = 200
/** One multiaddr's text: an address with a few relays and its peer ID fits many times over. */
export const MAX_ADDR_CHARS = 1024
/** Addresses one peer may announce: every interface, IPv4 and IPv6, TCP and relays, with room to spare. */
export const MAX_PEER_ADDRS = 64

/** The grid's secret (admission.ts keys Noise's prologue with it): 32 random bytes, as many as HMAC-SHA256 uses whole. */
export const SECRET_BYTES = 32
/** The grid's trust key (a trusted join code's `t`): an HMAC-SHA256 key, as long as the hash it keys. */
export const TRUST_KEY_BYTES = 32
/** A join code longer than this is not ours; checked before any decoding. */
export const MAX_JOIN_CODE_CHARS = 8_192

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

/**
 * Log batching on the worker: send when this much is buffered or this long has passed (DESIGN.md, step 3). While
 * an append is on its way, output gathers for the next one, so a busy step sends large appends anyway; the delay
 * only applies to output after a pause, and 20 ms (not 100) keeps a tailer's p99 under 50 ms on a LAN at a cost of
 * at most 50 appends per second for a step that prints now and then.
 */
export const LOG_BATCH_BYTES = 64 * 1024
export const LOG_FLUSH_MS = 20
/**
 * Output is kept in pieces of this size and one append carries at most one piece: a backlog (a slow store, a step
 * printing flat out) goes in writes large enough for libp2p to be efficient (DESIGN.md: 256 KiB writes).
 */
export const LOG_PIECE_BYTES = 256 * 1024
/** Past this much unsent output the step's pipes are paused: a chatty step cannot balloon the worker's memory. */
export const LOG_BUFFER_LIMIT = 4 * 1024 * 1024
/** A log write the store does not answer within this time is retried on a fresh stream. */
export const LOG_APPEND_TIMEOUT_MS = 10_000
/** Attempts to reach a store for one append before the log is given up (the build still reports its result). */
export const LOG_APPEND_TRIES = 5
/**
 * A seal is answered once the store has cut the whole log into blocks: it may take this long plus a second for
 * every LOG_SEAL_BYTES_PER_SECOND of log (a 1 GiB log reads and writes 1 GiB on the store), slow disks included.
 */
export const LOG_SEAL_TIMEOUT_MS = 10_000
export const LOG_SEAL_BYTES_PER_SECOND = 16 * 1024 * 1024

// A stopped step gets SIGTERM, then SIGKILL after its job's `killGrace` (DEFAULT_KILL_GRACE_S in coordinator/constants.ts,
// Buildkite's 10 s): long enough for a trap to write its report.

/**
 * While a step's processes have their grace, they are looked for this often: a process that is not the worker's
 * own child (one that escaped with setsid, a double fork) has no event for its end, only its absence from /proc.
 */
export const STEP_SWEEP_POLL_MS = 50
/**
 * SIGKILL goes again to what is still found, at most this many times STEP_SWEEP_POLL_MS apart (2 s): a process
 * that forks as fast as it is killed, or one stuck in the kernel (a dead NFS mount), cannot hold the step forever.
 */
export const STEP_KILL_ROUNDS = 40
/**
 * Once every process of the step is gone its pipes end. One still open this long after is held by a process out of
 * reach (it left the step's cgroup and dropped its tag), and is closed, so that process cannot keep the step from
 * finishing; output paused for a slow store does not count against it.
 */
export const STEP_PIPE_CLOSE_MS = 1_000
/** Levels of cgroups under a step's own that are searched and removed: a step running a grid worker makes some. */
export const STEP_CGROUP_MAX_DEPTH = 8
/**
 * An empty step cgroup this old was left by a worker that died mid-step, and is removed when a step starts; a younger
 * one may be another worker's, made a moment before its step moves in.
 */
export const STEP_CGROUP_STALE_MS = 60_000

/** Probing a tool's version at worker start must not hold the start up. */
export const TOOL_PROBE_TIMEOUT_MS = 2_000

/**
 * A worker resends the attempt reports it sent this recently when it reconnects: a coordinator that vanished
 * silently (host down, link cut) is noticed only after the silence limit (5 s), and what went out meanwhile is lost.
 */
export const REPORT_RESEND_WINDOW_MS = 30_000

/** Reports kept while the coordinator is unreachable, resent on reconnect (final results above all). */
export const MAX_PENDING_REPORTS = 10_000

/** `grid worker` on SIGTERM waits this long for running builds before ending them (they re-queue as lost). */
export const DEFAULT_DRAIN_TIMEOUT_S = 600

/** Idle log-append streams a worker keeps per store for its next steps (one per slot is plenty). */
export const MAX_IDLE_APPEND_STREAMS = 8

/**
 * A worker's cache of its builds' outputs, served to other workers (`node/worker/cache.ts`): large enough for the
 * artifacts of its recent builds, small enough to live beside them on a build machine's disk.
 */
export const WORKER_CACHE_BYTES = 2 * 1024 * 1024 * 1024

/**
 * A session that ended cleanly (the coordinator closed its side) closes ours; what we still had queued gets this
 * long to reach the transport before the stream is aborted instead, so a dead peer cannot hold the loop.
 */
export const SESSION_CLOSE_TIMEOUT_MS = 5_000

/**
 * Heartbeat settings a welcome may give: a beat more often than 100 ms is noise on the wire, and one less often
 * than a minute, or a silence limit past ten, would leave a frozen peer unnoticed longer than anyone waits.
 */
export const MIN_HEARTBEAT_MS = 100
export const MAX_HEARTBEAT_MS = 60_000
export const MIN_SILENCE_LIMIT_MS = 500
export const MAX_SILENCE_LIMIT_MS = 600_000

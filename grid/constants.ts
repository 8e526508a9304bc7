// The grid's shared limits and timings (jobs, builds, workers, logs, blocks, grants), each with its reason.

/** Workers and coordinator send a heartbeat this often on the session stream. */
export const HEARTBEAT_INTERVAL_MS = 1_000

/**
 * A worker silent this long is lost: its attempts end `lost` and their builds are queued again.
 * Buildbot takes up to an hour (and never notices a SIGSTOPped worker); a few missed beats is enough here.
 */
export const WORKER_SILENCE_LIMIT_MS = 5_000

/**
 * After a coordinator restart, a build that was running waits this long for its worker to reconnect and claim it
 * before it is lost and re-queued: longer than a worker's longest reconnect backoff (RECONNECT_MAX_MS) plus a dial.
 */
export const RECLAIM_WINDOW_MS = 15_000

/** The coordinator ends an attempt as `timeout` this long after the job's limit if its worker has not: the worker's own kill comes first. */
export const TIMEOUT_GRACE_MS = 10_000

/** Job priorities: higher runs first; equal priorities run oldest first. */
export const MIN_PRIORITY = -1_000
export const MAX_PRIORITY = 1_000

/** A worker must say hello this soon after opening its session. */
export const HELLO_TIMEOUT_MS = 5_000

/** Defaults for a job that does not say. */
export const DEFAULT_TIMEOUT_S = 3_600
export const DEFAULT_RETRIES = 2
export const MAX_TIMEOUT_S = 7 * 24 * 3_600
export const MAX_RETRIES = 20
/** Seconds a step gets between SIGTERM and SIGKILL (Buildkite's default cancel grace is 10 s). */
export const DEFAULT_KILL_GRACE_S = 10
export const MAX_KILL_GRACE_S = 600

/** Job size limits: a job is a recipe, not a payload. */
export const MAX_STEPS = 200
/** Bytes (UTF-8) of one command or environment value: half of Linux's 128 KiB cap on one argument string (MAX_ARG_STRLEN). */
export const MAX_COMMAND_BYTES = 65_536
export const MAX_JOB_BYTES = 256 * 1024

/** Artifact globs and inputs per job; a job that needs more should tar them. */
export const MAX_ARTIFACT_GLOBS = 100
export const MAX_INPUTS = 100
/** Builds one build may run after (job `after`, a pipeline job's `needs` once expanded): a matrix of 256 fanning in fits. */
export const MAX_AFTER_BUILDS = 256
/** Files one build may keep as artifacts. */
export const MAX_ARTIFACTS = 1_000

/** `GET /api/builds?limit=` is capped so one request cannot walk the whole history. */
export const DEFAULT_LIST_LIMIT = 50
export const MAX_LIST_LIMIT = 1_000

/** `--replicas` above this buys nothing but write amplification. */
export const MAX_REPLICAS = 16

/** Slots one worker may announce: a typo like `--slots 1000000` must not make a worker look infinite. */
export const MAX_SLOTS = 1_024

/** Capabilities one worker may announce: its detected ones (a dozen or so) and plenty of `--cap`s. */
export const MAX_CAPABILITIES = 128
/** A capability's value (a version, `yes`, a label): long enough for any tool's version, short enough to list. */
export const MAX_CAPABILITY_VALUE_CHARS = 256

/** A reason or warning is one sentence; a longer one from a worker is refused rather than stored. */
export const MAX_REASON_CHARS = 2_000
/** Warnings one attempt may report (a build skipping thousands of files reports the first ones and a count). */
export const MAX_WARNINGS = 50

/**
 * A cancelled attempt's worker seals its own logs once its step is gone (at most the job's killGrace after
 * SIGTERM); this much later the coordinator seals them itself, so a worker that never answers cannot leave a
 * tailer waiting forever.
 */
export const CANCEL_SEAL_MARGIN_MS = 15_000

/** Hard ceiling on one log, whatever a job asks: a runaway step must not fill a store's disk. */
export const MAX_LOG_BYTES = 1024 * 1024 * 1024

/**
 * Output kept per step unless the job's `logLimit` says otherwise: GitLab's default job-log limit. Past it the
 * worker writes one line saying so and drops the rest, while the step runs on to its real exit code.
 */
export const DEFAULT_LOG_LIMIT_BYTES = 100 * 1024 * 1024

/** Room kept under MAX_LOG_BYTES for the line that says the limit was reached. */
export const LOG_LIMIT_LINE_ROOM = 256

/** Content is cut into blocks of this size (IPFS uses 256 KiB to 1 MiB; large blocks keep libp2p writes efficient). */
export const BLOCK_BYTES = 1024 * 1024

/** The largest block a store takes from a peer (IPFS's network cap is 2 MiB). */
export const MAX_BLOCK_BYTES = 2 * 1024 * 1024

/** Blocks one manifest may list: about 40 GiB of content at BLOCK_BYTES, and a manifest that still fits in one block. */
export const MAX_MANIFEST_BLOCKS = 40_000

/** Ed25519 signatures are 64 bytes: a write grant is one (see write-grant.ts). */
export const GRANT_BYTES = 64
/** Verified grants remembered per store, so a busy log costs one signature check, not one per append. */
export const MAX_VERIFIED_GRANTS = 4_096

/**
 * Bytes of one pipeline file (`.grid.yml` as text, or the object `POST /api/pipelines` takes, as JSON): the same
 * as one job, since a file is a handful of recipes. A larger file is refused whole, saying its size.
 */
export const MAX_PIPELINE_FILE_BYTES = 256 * 1024

/**
 * yaml's own guard against "billion laughs" (aliases of aliases expanding exponentially), made explicit: an
 * anchor's uses times the aliases nested in what it names must stay under this, so one anchor of defaults can be
 * merged into 99 jobs. Past it the file is refused in one sentence while it is being expanded.
 */
export const MAX_PIPELINE_ALIASES = 100

/** Bytes of a pipeline file once its aliases are expanded (as JSON): past it the file is refused, saying so. */
export const MAX_PIPELINE_EXPANDED_BYTES = 4 * 1024 * 1024

/** Combinations of one matrix job (GitHub Actions caps a matrix at 256 jobs); a larger matrix is refused, saying its count. */
export const MAX_MATRIX_COMBINATIONS = 256

/** Builds one pipeline may plan (every job, every combination): a larger pipeline is refused, saying its count, and nothing is created. */
export const MAX_PIPELINE_BUILDS = 1_000

/** Secrets one job may name: a deploy needs a handful; past this the job is refused, naming the field. */
export const MAX_JOB_SECRETS = 50
/** Characters of a secret's name (an environment variable's name): far more than any real one. */
export const MAX_SECRET_NAME_CHARS = 128
/**
 * Bytes (UTF-8) of one secret's value: it becomes an environment variable of each step, and Linux refuses one
 * environment string over 128 KiB (E2BIG), so the same cap as a job's own env values.
 */
export const MAX_SECRET_VALUE_BYTES = MAX_COMMAND_BYTES
/**
 * Bytes of every secret value one assignment carries, together: an assignment is one wire message (at most
 * MAX_MESSAGE_BYTES, with the job of up to MAX_JOB_BYTES beside it). A build whose secrets add up to more fails
 * at dispatch, saying so, rather than being sent in pieces.
 */
export const MAX_ASSIGNED_SECRET_BYTES = 512 * 1024

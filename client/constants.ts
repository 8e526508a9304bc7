// Timings of reading from the grid, each with its reason. Content transfer limits are in storage/constants.ts.

/**
 * A followed step log whose attempt is over (a lost worker, a finished build) is read this much longer before the
 * follow is cut: the seal normally ends the read first, and this only ends a read whose writer will never seal,
 * once the log's tail had time to arrive.
 */
export const STEP_END_GRACE_MS = 2_000

/**
 * A followed log whose every holder failed (the grid's only store restarting, say) is asked for again every
 * LOG_RETRY_MS for this long, said once, before the read fails with LogUnavailableError: a store that restarts comes
 * back within seconds, and the follower (`grid run --follow`, `grid submit --follow`, `grid tail`) should outlast it
 * as it outlasts a coordinator restart.
 */
export const LOG_FOLLOW_PATIENCE_MS = 120_000
/** How often a follower asks again for a log none of whose holders answered. */
export const LOG_RETRY_MS = 500

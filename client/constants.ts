// Timings of reading from the grid, each with its reason. Content transfer limits are in storage/constants.ts.

/**
 * A followed step log whose attempt is over (a lost worker, a finished build) is read this much longer before the
 * follow is cut: the seal normally ends the read first, and this only ends a read whose writer will never seal,
 * once the log's tail had time to arrive.
 */
export const STEP_END_GRACE_MS = 2_000

// Limits of the coordinator's protocols (builds, work, store-membership), each with its reason. The block and log
// protocols' limits are the store's, in storage/constants.ts; limits every layer shares are in grid/constants.ts.
import { MAX_SLOTS } from '../grid/constants.ts'

/** /builds requests one connection may have open at once: a CLI asks one at a time, a worker one per waiting input. */
export const MAX_REQUESTS_PER_CONNECTION = 32

/** A worker keeps one work session; a few allow a reconnect to overlap the old stream's teardown. */
export const MAX_SESSIONS_PER_CONNECTION = 4
/** Attempts a worker says it still runs when it says hello: at most one per slot. */
export const MAX_CLAIMS = MAX_SLOTS

/** A copy of a large root at the repair rate can take long; past this it is taken as failed and tried again. */
export const COPY_TIMEOUT_MS = 30 * 60_000
/** Logs fenced per message; a lost worker held at most its slots' worth of steps. */
export const MAX_FENCED_LOGS = 10_000
/** Denied peers sent in one message: the grid's whole deny list goes at once, and an operator grows it by hand. */
export const MAX_DENIED = 100_000

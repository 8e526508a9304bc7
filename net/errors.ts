// Expected failures: what a user, a peer or the grid's state can cause (a bad argument, a full store, an
// unreachable peer), as opposed to a bug. Each one is a class of its own with a stable `name` (tests assert on it,
// never on the message) extending GridError, so it is marked expected once, here, instead of in lists of names:
// the CLI prints any GridError as one line, the HTTP API answers with its `status`, a protocol handler sends its
// message back as the reply. Anything else is a bug: a stack trace on stderr and a bare 500.

export class GridError extends Error {
  name = 'GridError'
  /** The HTTP status this failure answers with when it reaches the API (4xx: the client's doing; 5xx: the grid's). */
  readonly status: number = 400
}

/** Whether `err` is an expected failure: a message fit to show as it is. */
export function isGridError (err: unknown): err is GridError {
  return err instanceof GridError
}

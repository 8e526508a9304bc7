// Limits of the HTTP API and its metrics, each with its reason. The grid's own limits are in grid/constants.ts.

/** Events queued for one slow SSE client before it is dropped: it reconnects and reloads rather than holding memory. */
export const MAX_EVENT_BACKLOG = 10_000

/** Finished build ids remembered so a repeated notice of one build is not counted twice; older ones are forgotten. */
export const MAX_REMEMBERED_BUILDS = 10_000

/** Bytes of a `POST /api/secret/rotate` body (`{"trusted": true}` at most): anything larger is not one, and gets 413. */
export const MAX_ROTATE_BODY_BYTES = 1_024

// Webhooks from forges, checked and read: pure functions over headers and the raw body, no I/O.
//
// Each forge proves a delivery its own way (DESIGN.md, Triggers):
// - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, event in `X-GitHub-Event`, id in
//   `X-GitHub-Delivery` (docs.github.com, "Validating webhook deliveries").
// - Gitea: bare hex HMAC-SHA256 in `X-Gitea-Signature`, `X-Gitea-Event`, `X-Gitea-Delivery`; Forgejo the same as
//   `X-Forgejo-*`. Both also send GitHub's headers for compatibility (gitea services/webhook/deliver.go), so their
//   own headers are looked at first.
// - GitLab: the secret itself in `X-Gitlab-Token`, `X-Gitlab-Event: Push Hook`; the delivery is `Idempotency-Key`
//   (kept across retries since GitLab 17.4), else `X-Gitlab-Event-UUID`.
// Every comparison takes constant time, and a signature of the wrong length is refused before comparing (Node's
// timingSafeEqual throws on buffers of different lengths).
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { GridError } from '../net/errors.ts'
import { MAX_DELIVERY_ID_CHARS } from '../coordinator/repos.ts'

export const FORGES = ['github', 'gitea', 'forgejo', 'gitlab'] as const
export type Forge = typeof FORGES[number]

/** What a request's headers are read through: a fetch `Headers`, or anything with its `get`. */
export interface HeaderSource {
  get (name: string): string | null | undefined
}

/** Which forge sent a delivery, once its signature checked out; or why it is refused (401). */
export type Verdict = { ok: true, forge: Forge } | { ok: false, reason: string }

/** What a checked delivery asks for. */
export type HookEvent =
  | { kind: 'ping' }
  | { kind: 'push', ref: string, commit: string, delivery?: string }
  | { kind: 'ignored', why: string }

/** A signed delivery whose body is not what its forge sends (not JSON, a push without a ref…): 400. */
export class BadHookPayloadError extends GridError {
  name = 'BadHookPayloadError'
  readonly status = 400
}

const ZERO_COMMIT = /^0+$/
const COMMIT = /^([0-9a-f]{40}|[0-9a-f]{64})$/
const HEX_SHA256 = /^[0-9a-f]{64}$/i

/** The forge a delivery's headers say it comes from; undefined when none of them is there. */
export function forgeOf (headers: HeaderSource): Forge | undefined {
  const has = (name: string): boolean => (headers.get(name) ?? undefined) !== undefined
  if (has('x-forgejo-event') || has('x-forgejo-signature')) return 'forgejo'
  if (has('x-gitea-event') || has('x-gitea-signature')) return 'gitea'
  if (has('x-gitlab-event') || has('x-gitlab-token')) return 'gitlab'
  if (has('x-github-event') || has('x-hub-signature-256')) return 'github'
  return undefined
}

/**
 * Whether a delivery is signed with `secret`, and by which forge. `rawBody` must be the bytes as received: the
 * HMAC is over them, not over a re-encoding of the parsed JSON. A repository without a secret takes no webhooks:
 * anyone could otherwise start its pipelines.
 */
export function verifyDelivery (headers: HeaderSource, rawBody: Uint8Array, secret: string | undefined): Verdict {
  const forge = forgeOf(headers)
  if (forge === undefined) return { ok: false, reason: 'this is not a webhook from GitHub, Gitea, Forgejo or GitLab: it has none of their event headers' }
  if (secret === undefined || secret === '') return { ok: false, reason: 'this repository has no hook secret, so it takes no webhooks: register it again with a hook secret' }
  const header = (name: string): string | undefined => headers.get(name) ?? undefined
  if (forge === 'gitlab') {
    const token = header('x-gitlab-token')
    if (token === undefined) return { ok: false, reason: 'the X-Gitlab-Token header is missing: set the webhook\'s secret token in GitLab' }
    // Hashing both sides first makes the comparison constant-time whatever the lengths.
    const same = timingSafeEqual(sha256(Buffer.from(token, 'utf8')), sha256(Buffer.from(secret, 'utf8')))
    return same ? { ok: true, forge } : { ok: false, reason: 'the X-Gitlab-Token does not match this repository\'s hook secret' }
  }
  let name: string
  let hex: string | undefined
  if (forge === 'github') {
    name = 'X-Hub-Signature-256'
    const value = header(name)
    if (value === undefined) return { ok: false, reason: 'the X-Hub-Signature-256 header is missing: set the webhook\'s secret on GitHub' }
    if (!value.startsWith('sha256=')) return { ok: false, reason: 'the X-Hub-Signature-256 header must be sha256=HEX' }
    hex = value.slice('sha256='.length)
  } else {
    name = forge === 'forgejo' && header('x-forgejo-signature') !== undefined ? 'X-Forgejo-Signature' : 'X-Gitea-Signature'
    hex = header(name)
    if (hex === undefined || hex === '') return { ok: false, reason: `the ${name} header is missing: set the webhook's secret in ${forge === 'gitea' ? 'Gitea' : 'Forgejo'}` }
  }
  if (!HEX_SHA256.test(hex)) return { ok: false, reason: `the ${name} header must be 64 hex digits (an HMAC-SHA256)` }
  const expected = createHmac('sha256', secret).update(rawBody).digest()
  const given = Buffer.from(hex, 'hex')
  return given.length === expected.length && timingSafeEqual(given, expected)
    ? { ok: true, forge }
    : { ok: false, reason: `the ${name} signature does not match this repository's hook secret` }
}

function sha256 (bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest()
}

/**
 * A delivery's body as JSON. GitHub and Gitea may send `application/x-www-form-urlencoded` with the JSON in a
 * `payload` field instead. Throws BadHookPayloadError.
 */
export function readPayload (headers: HeaderSource, rawBody: Uint8Array): unknown {
  const type = (headers.get('content-type') ?? '').toLowerCase()
  let text = new TextDecoder('utf-8', { fatal: false }).decode(rawBody)
  if (type.startsWith('application/x-www-form-urlencoded')) {
    const payload = new URLSearchParams(text).get('payload')
    if (payload === null) throw new BadHookPayloadError('a form-encoded webhook must carry its JSON in a payload field')
    text = payload
  }
  try {
    return JSON.parse(text)
  } catch {
    throw new BadHookPayloadError('the webhook\'s body is not JSON')
  }
}

/** The event name a forge put in its headers. */
function eventOf (forge: Forge, headers: HeaderSource): string | undefined {
  const get = (name: string): string | undefined => headers.get(name) ?? undefined
  if (forge === 'github') return get('x-github-event')
  if (forge === 'gitea') return get('x-gitea-event')
  if (forge === 'forgejo') return get('x-forgejo-event') ?? get('x-gitea-event')
  return get('x-gitlab-event')
}

/** The delivery id a forge put in its headers; BadHookPayloadError if it is not a plain id. */
function deliveryOf (forge: Forge, headers: HeaderSource): string | undefined {
  const get = (name: string): string | undefined => headers.get(name) ?? undefined
  const id = forge === 'github'
    ? get('x-github-delivery')
    : forge === 'gitea'
      ? get('x-gitea-delivery')
      : forge === 'forgejo'
        ? get('x-forgejo-delivery') ?? get('x-gitea-delivery')
        : get('idempotency-key') ?? get('x-gitlab-event-uuid') ?? get('x-gitlab-webhook-uuid')
  if (id === undefined || id === '') return undefined
  if (id.length > MAX_DELIVERY_ID_CHARS || !/^[A-Za-z0-9._-]+$/.test(id)) throw new BadHookPayloadError(`the delivery id must be at most ${MAX_DELIVERY_ID_CHARS} letters, digits, dots, dashes or underscores`)
  return id
}

/**
 * What a verified delivery asks for: a push of a branch (its ref and new head commit), a ping, or something the
 * grid ignores (tags, deleted branches, other events), with why. Throws BadHookPayloadError for a push whose body
 * lacks what every forge sends.
 */
export function parsePush (forge: Forge, headers: HeaderSource, body: unknown): HookEvent {
  const event = eventOf(forge, headers)
  if (forge === 'github' && event === 'ping') return { kind: 'ping' }
  const isPush = forge === 'gitlab' ? event === 'Push Hook' : event === 'push'
  if (!isPush) {
    if (forge === 'gitlab' && event === 'Tag Push Hook') return { kind: 'ignored', why: 'tag pushes do not start pipelines' }
    return { kind: 'ignored', why: event === undefined ? 'the webhook names no event, and only pushes start pipelines' : `${JSON.stringify(event.slice(0, 60))} events do not start pipelines, only pushes do` }
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadHookPayloadError('a push webhook\'s body must be a JSON object')
  const payload = body as Record<string, unknown>
  const ref = payload.ref
  if (typeof ref !== 'string' || ref === '' || ref.length > 1_024 || /[\x00-\x20\x7f~^:?*[\\]/.test(ref)) throw new BadHookPayloadError('a push webhook must name the pushed ref (ref: "refs/heads/BRANCH")')
  if (ref.startsWith('refs/tags/')) return { kind: 'ignored', why: 'tag pushes do not start pipelines' }
  if (!ref.startsWith('refs/heads/')) return { kind: 'ignored', why: `${ref} is not a branch` }
  const after = forge === 'gitlab' ? payload.checkout_sha ?? payload.after : payload.after
  if (payload.deleted === true || after === null || (typeof after === 'string' && ZERO_COMMIT.test(after))) {
    return { kind: 'ignored', why: `${ref} was deleted` }
  }
  if (typeof after !== 'string' || !COMMIT.test(after)) throw new BadHookPayloadError('a push webhook must name the new head commit (after: 40 hex digits)')
  const delivery = deliveryOf(forge, headers)
  return { kind: 'push', ref, commit: after, ...(delivery !== undefined ? { delivery } : {}) }
}


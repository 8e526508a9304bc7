// Webhooks checked and read (web/hooks.ts), with no server: each forge's signature good, wrong, missing, of the
// wrong length or prefix, and what a push, a ping, a tag push and a deleted branch ask for.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHmac } from 'node:crypto'
import { BadHookPayloadError, forgeOf, parsePush, readPayload, verifyDelivery } from '../../web/hooks.ts'
import type { Verdict } from '../../web/hooks.ts'

const SECRET = 'webhook-secret-of-the-test-repo'
const COMMIT = 'a'.repeat(40)
const enc = new TextEncoder()

const hmacHex = (secret: string, body: Uint8Array): string => createHmac('sha256', secret).update(body).digest('hex')
const body = enc.encode(JSON.stringify({ ref: 'refs/heads/main', after: COMMIT, repository: { clone_url: 'https://elsewhere.example/x.git' } }))

function refusedWith (verdict: Verdict, reason: RegExp): void {
  assert.is(verdict.ok, false)
  if (!verdict.ok) {
    assert.match(verdict.reason, reason)
    assert.not.match(verdict.reason, /\n/)
    assert.not.ok(verdict.reason.includes(SECRET), 'the reason never says the secret')
    assert.not.ok(verdict.reason.includes(hmacHex(SECRET, body)), 'the reason never says the expected signature')
  }
}

// ---------------------------------------------------------------- GitHub

const github = suite('verifyDelivery: GitHub X-Hub-Signature-256')

const githubHeaders = (signature?: string): Headers => new Headers({
  'x-github-event': 'push',
  'x-github-delivery': 'd-1',
  ...(signature !== undefined ? { 'x-hub-signature-256': signature } : {})
})

github('a body signed with the secret is GitHub\'s', () => {
  assert.equal(verifyDelivery(githubHeaders(`sha256=${hmacHex(SECRET, body)}`), body, SECRET), { ok: true, forge: 'github' })
})

github('hex digits in upper case are the same signature', () => {
  assert.equal(verifyDelivery(githubHeaders(`sha256=${hmacHex(SECRET, body).toUpperCase()}`), body, SECRET), { ok: true, forge: 'github' })
})

github('signed with another secret: refused', () => {
  refusedWith(verifyDelivery(githubHeaders(`sha256=${hmacHex('another secret', body)}`), body, SECRET), /does not match/)
})

github('the signature of other bytes (the same JSON, spaced differently): refused', () => {
  const respaced = enc.encode(JSON.stringify(JSON.parse(new TextDecoder().decode(body)), null, 2))
  refusedWith(verifyDelivery(githubHeaders(`sha256=${hmacHex(SECRET, respaced)}`), body, SECRET), /does not match/)
})

github('no signature header: refused, saying it is missing', () => {
  refusedWith(verifyDelivery(githubHeaders(), body, SECRET), /missing/)
})

github('a signature of the wrong length: refused, not thrown', () => {
  refusedWith(verifyDelivery(githubHeaders(`sha256=${hmacHex(SECRET, body).slice(0, 40)}`), body, SECRET), /64 hex/)
  refusedWith(verifyDelivery(githubHeaders(`sha256=${hmacHex(SECRET, body)}00`), body, SECRET), /64 hex/)
  refusedWith(verifyDelivery(githubHeaders('sha256='), body, SECRET), /64 hex/)
  refusedWith(verifyDelivery(githubHeaders(`sha256=${'z'.repeat(64)}`), body, SECRET), /64 hex/)
})

github('the wrong prefix (sha1=, none): refused', () => {
  refusedWith(verifyDelivery(githubHeaders(`sha1=${hmacHex(SECRET, body)}`), body, SECRET), /sha256=/)
  refusedWith(verifyDelivery(githubHeaders(hmacHex(SECRET, body)), body, SECRET), /sha256=/)
})

github('a repository without a hook secret takes no webhook, even one with a signature', () => {
  refusedWith(verifyDelivery(githubHeaders(`sha256=${hmacHex('', body)}`), body, undefined), /no hook secret/)
  refusedWith(verifyDelivery(githubHeaders(`sha256=${hmacHex('', body)}`), body, ''), /no hook secret/)
})

github('a request with no forge\'s headers is refused', () => {
  refusedWith(verifyDelivery(new Headers({ 'content-type': 'application/json' }), body, SECRET), /not a webhook/)
})

// ---------------------------------------------------------------- Gitea and Forgejo

const gitea = suite('verifyDelivery: Gitea X-Gitea-Signature, Forgejo X-Forgejo-Signature')

gitea('a bare hex HMAC in X-Gitea-Signature is Gitea\'s', () => {
  const headers = new Headers({ 'x-gitea-event': 'push', 'x-gitea-signature': hmacHex(SECRET, body) })
  assert.equal(verifyDelivery(headers, body, SECRET), { ok: true, forge: 'gitea' })
})

gitea('Gitea also sends GitHub\'s headers: its own decide, so a bad X-Gitea-Signature is refused', () => {
  const headers = new Headers({
    'x-gitea-event': 'push',
    'x-gitea-signature': hmacHex('another secret', body),
    'x-github-event': 'push',
    'x-hub-signature-256': `sha256=${hmacHex(SECRET, body)}`
  })
  assert.is(forgeOf(headers), 'gitea')
  refusedWith(verifyDelivery(headers, body, SECRET), /X-Gitea-Signature.*does not match/)
})

gitea('Gitea: wrong, missing, the wrong length, a GitHub-style prefix: refused', () => {
  refusedWith(verifyDelivery(new Headers({ 'x-gitea-event': 'push', 'x-gitea-signature': hmacHex('x', body) }), body, SECRET), /does not match/)
  refusedWith(verifyDelivery(new Headers({ 'x-gitea-event': 'push' }), body, SECRET), /missing/)
  refusedWith(verifyDelivery(new Headers({ 'x-gitea-event': 'push', 'x-gitea-signature': hmacHex(SECRET, body).slice(2) }), body, SECRET), /64 hex/)
  refusedWith(verifyDelivery(new Headers({ 'x-gitea-event': 'push', 'x-gitea-signature': `sha256=${hmacHex(SECRET, body)}` }), body, SECRET), /64 hex/)
})

gitea('Forgejo: X-Forgejo-Signature good is Forgejo\'s; wrong or missing refused', () => {
  assert.equal(verifyDelivery(new Headers({ 'x-forgejo-event': 'push', 'x-forgejo-signature': hmacHex(SECRET, body) }), body, SECRET), { ok: true, forge: 'forgejo' })
  refusedWith(verifyDelivery(new Headers({ 'x-forgejo-event': 'push', 'x-forgejo-signature': hmacHex('x', body) }), body, SECRET), /X-Forgejo-Signature.*does not match/)
  refusedWith(verifyDelivery(new Headers({ 'x-forgejo-event': 'push' }), body, SECRET), /missing/)
  refusedWith(verifyDelivery(new Headers({ 'x-forgejo-event': 'push', 'x-forgejo-signature': '00' }), body, SECRET), /64 hex/)
})

gitea('Forgejo sending only Gitea\'s signature header is checked against it', () => {
  assert.equal(verifyDelivery(new Headers({ 'x-forgejo-event': 'push', 'x-gitea-signature': hmacHex(SECRET, body) }), body, SECRET), { ok: true, forge: 'forgejo' })
})

// ---------------------------------------------------------------- GitLab

const gitlab = suite('verifyDelivery: GitLab X-Gitlab-Token')

gitlab('the secret itself in X-Gitlab-Token is GitLab\'s', () => {
  assert.equal(verifyDelivery(new Headers({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET }), body, SECRET), { ok: true, forge: 'gitlab' })
})

gitlab('another token, one of another length, a prefix of the secret, none: refused', () => {
  refusedWith(verifyDelivery(new Headers({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET.replace('w', 'W') }), body, SECRET), /does not match/)
  refusedWith(verifyDelivery(new Headers({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': 'short' }), body, SECRET), /does not match/)
  refusedWith(verifyDelivery(new Headers({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET.slice(0, -1) }), body, SECRET), /does not match/)
  refusedWith(verifyDelivery(new Headers({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': `${SECRET}x` }), body, SECRET), /does not match/)
  refusedWith(verifyDelivery(new Headers({ 'x-gitlab-event': 'Push Hook' }), body, SECRET), /missing/)
})

// ---------------------------------------------------------------- parsePush

const push = suite('parsePush: what a checked delivery asks for')

const gh = (event: string, delivery = 'd-1'): Headers => new Headers({ 'x-github-event': event, 'x-github-delivery': delivery })

push('a GitHub push of a branch: its ref, new head and delivery id', () => {
  assert.equal(parsePush('github', gh('push'), { ref: 'refs/heads/main', after: COMMIT, before: '0'.repeat(40) }),
    { kind: 'push', ref: 'refs/heads/main', commit: COMMIT, delivery: 'd-1' })
})

push('a ping (GitHub sends one when the webhook is made)', () => {
  assert.equal(parsePush('github', gh('ping'), { zen: 'Keep it logically awesome.', hook_id: 1 }), { kind: 'ping' })
})

push('a tag push is ignored, on GitHub, Gitea and GitLab', () => {
  for (const [forge, headers] of [['github', gh('push')], ['gitea', new Headers({ 'x-gitea-event': 'push' })]] as const) {
    const event = parsePush(forge, headers, { ref: 'refs/tags/v1.0', after: COMMIT })
    assert.is(event.kind, 'ignored')
    if (event.kind === 'ignored') assert.match(event.why, /tag/)
  }
  const tag = parsePush('gitlab', new Headers({ 'x-gitlab-event': 'Tag Push Hook' }), { ref: 'refs/tags/v1.0', checkout_sha: COMMIT })
  assert.is(tag.kind, 'ignored')
})

push('a deleted branch is ignored: after all zeros, deleted: true, GitLab\'s checkout_sha null', () => {
  for (const payload of [{ ref: 'refs/heads/gone', after: '0'.repeat(40) }, { ref: 'refs/heads/gone', after: COMMIT, deleted: true }]) {
    const event = parsePush('github', gh('push'), payload)
    assert.is(event.kind, 'ignored')
    if (event.kind === 'ignored') assert.match(event.why, /deleted/)
  }
  const gitlabGone = parsePush('gitlab', new Headers({ 'x-gitlab-event': 'Push Hook' }), { ref: 'refs/heads/gone', after: '0'.repeat(40), checkout_sha: null })
  assert.is(gitlabGone.kind, 'ignored')
})

push('other events are ignored, saying only pushes start pipelines', () => {
  for (const [forge, headers] of [['github', gh('issues')], ['gitea', new Headers({ 'x-gitea-event': 'create' })], ['gitlab', new Headers({ 'x-gitlab-event': 'Merge Request Hook' })], ['github', new Headers()]] as const) {
    const event = parsePush(forge, headers, { ref: 'refs/heads/main', after: COMMIT })
    assert.is(event.kind, 'ignored')
    if (event.kind === 'ignored') assert.match(event.why, /only pushes/)
  }
})

push('GitLab: the head is checkout_sha; the delivery is Idempotency-Key, else X-Gitlab-Event-UUID', () => {
  const other = 'b'.repeat(40)
  assert.equal(parsePush('gitlab', new Headers({ 'x-gitlab-event': 'Push Hook', 'idempotency-key': 'k-1', 'x-gitlab-event-uuid': 'u-1' }), { ref: 'refs/heads/main', after: other, checkout_sha: COMMIT }),
    { kind: 'push', ref: 'refs/heads/main', commit: COMMIT, delivery: 'k-1' })
  assert.equal(parsePush('gitlab', new Headers({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-event-uuid': 'u-1' }), { ref: 'refs/heads/main', after: other }),
    { kind: 'push', ref: 'refs/heads/main', commit: other, delivery: 'u-1' })
})

push('Gitea and Forgejo: their delivery headers', () => {
  assert.equal(parsePush('gitea', new Headers({ 'x-gitea-event': 'push', 'x-gitea-delivery': 'g-1' }), { ref: 'refs/heads/main', after: COMMIT }),
    { kind: 'push', ref: 'refs/heads/main', commit: COMMIT, delivery: 'g-1' })
  assert.equal(parsePush('forgejo', new Headers({ 'x-forgejo-event': 'push', 'x-forgejo-delivery': 'f-1', 'x-gitea-delivery': 'g-1' }), { ref: 'refs/heads/main', after: COMMIT }),
    { kind: 'push', ref: 'refs/heads/main', commit: COMMIT, delivery: 'f-1' })
})

push('a push with no delivery id has none (the commit check still keeps it from running twice)', () => {
  assert.equal(parsePush('github', new Headers({ 'x-github-event': 'push' }), { ref: 'refs/heads/main', after: COMMIT }), { kind: 'push', ref: 'refs/heads/main', commit: COMMIT })
})

push('a push without a ref or a head, or with bad ones, is BadHookPayloadError', () => {
  for (const payload of [null, [], 'text', {}, { ref: 'refs/heads/main' }, { ref: 'refs/heads/main', after: 'HEAD' }, { ref: 'refs/heads/main', after: 'abc' },
    { ref: 'refs/heads/ma in', after: COMMIT }, { ref: 'refs/heads/x\u0000', after: COMMIT }, { ref: 42, after: COMMIT }]) {
    try {
      parsePush('github', gh('push'), payload)
      assert.unreachable(`accepted ${JSON.stringify(payload)}`)
    } catch (err: any) {
      assert.instance(err, BadHookPayloadError)
      assert.is(err.name, 'BadHookPayloadError')
      assert.is(err.status, 400)
    }
  }
})

push('a delivery id that is not a plain id is refused', () => {
  for (const id of ['a'.repeat(201), 'id with spaces', 'id:colon', '../up']) {
    try {
      parsePush('github', gh('push', id), { ref: 'refs/heads/main', after: COMMIT })
      assert.unreachable(`accepted ${id}`)
    } catch (err: any) {
      assert.is(err.name, 'BadHookPayloadError')
    }
  }
})

push('a branch that is not under refs/heads is ignored', () => {
  const event = parsePush('github', gh('push'), { ref: 'refs/pull/1/head', after: COMMIT })
  assert.is(event.kind, 'ignored')
})

// ---------------------------------------------------------------- readPayload

const payload = suite('readPayload: the body as JSON')

payload('JSON as sent', () => {
  assert.equal(readPayload(new Headers({ 'content-type': 'application/json' }), body), JSON.parse(new TextDecoder().decode(body)))
})

payload('form-encoded, with the JSON in payload= (GitHub and Gitea offer it)', () => {
  const form = enc.encode(new URLSearchParams({ payload: JSON.stringify({ ref: 'refs/heads/main' }) }).toString())
  assert.equal(readPayload(new Headers({ 'content-type': 'application/x-www-form-urlencoded' }), form), { ref: 'refs/heads/main' })
})

payload('not JSON, or a form without payload: BadHookPayloadError', () => {
  for (const [type, text] of [['application/json', '{not json'], ['application/x-www-form-urlencoded', 'other=1'], ['application/json', '']]) {
    try {
      readPayload(new Headers({ 'content-type': type }), enc.encode(text))
      assert.unreachable(`accepted ${text}`)
    } catch (err: any) {
      assert.is(err.name, 'BadHookPayloadError')
    }
  }
})

github.run()
gitea.run()
gitlab.run()
push.run()
payload.run()

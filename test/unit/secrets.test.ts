// The secret store (coordinator/secrets.ts) alone, over a real LevelDB in a temp dir: names, values too short or
// holding a NUL, multi-line values, scopes by repository and branch, values sealed at rest (the database's bytes
// are searched for them), kept across a restart, and never in a list, a record or an error.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { newBuildId } from '../../grid/ids.ts'
import { SECRETS_KEY_FILE, secretsKey } from '../../coordinator/secret-box.ts'
import {
  BadSecretError, MAX_SECRET_NAME_CHARS, MAX_SECRET_VALUE_BYTES, MAX_SECRETS, MIN_SECRET_CHARS, SecretConflictError, SecretMissingError,
  SecretNotAvailableError, Secrets, checkSecretValue, parseSecretInit
} from '../../coordinator/secrets.ts'
import type { BuildScope } from '../../coordinator/secrets.ts'
import { isGridError } from '../../net/errors.ts'
import { removeDir, tempDir } from '../helpers.ts'

const VALUE = 'deploy-token-Q7mZ2xK9vB4nW1pL'
const PEM = [
  '-----BEGIN PRIVATE KEY-----',
  'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7secretline1',
  'Zq8vX2pL9mN4kR7tJw3eY6uB1cV5nH8sAbCdEfGhIjKlMnOpQrStUvWxYz0123',
  '-----END PRIVATE KEY-----',
  ''
].join('\n')
const REPO = newBuildId()
const OTHER_REPO = newBuildId()
const main: BuildScope = { repo: REPO, ref: 'refs/heads/main' }

/** Every byte of every file under `dir`. */
async function allBytes (dir: string): Promise<Buffer> {
  const parts: Buffer[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) parts.push(await readFile(join(entry.parentPath, entry.name)))
  }
  return Buffer.concat(parts)
}

async function openSecrets (dir: string, now?: () => number): Promise<Secrets> {
  const secrets = new Secrets({ db: new Level<string, any>(join(dir, 'secrets.db')), key: await secretsKey(join(dir, SECRETS_KEY_FILE)), now })
  await secrets.open()
  return secrets
}

/** `fn` throws a GridError named `name`, whose message is one line and never holds `value`; its message. */
async function refused (fn: () => unknown, name: string, value?: string): Promise<string> {
  try {
    await fn()
  } catch (err: any) {
    assert.ok(isGridError(err), `a GridError, not ${err?.stack ?? err}`)
    assert.is(err.name, name, err.message)
    assert.not.match(err.message, /\n/)
    if (value !== undefined) assert.not.ok(err.message.includes(value), `the message quotes the value: ${err.message}`)
    return err.message
  }
  throw new Error(`expected ${name}`)
}

// ---------------------------------------------------------------- values and names

const checks = suite('names and values')

checks('names are environment names in upper case; anything else is refused', async () => {
  const dir = await tempDir('secrets-names')
  const secrets = await openSecrets(dir)
  try {
    for (const name of ['DEPLOY_TOKEN', '_X', 'A1', 'N'.repeat(MAX_SECRET_NAME_CHARS)]) {
      assert.is((await secrets.set(name, VALUE)).secret.name, name)
    }
    for (const name of ['deploy_token', '1ABC', 'A-B', 'A B', '', 'A\0B', 'ÄRGER', 'N'.repeat(MAX_SECRET_NAME_CHARS + 1), 'GRID_COMMIT', 'GRID_X']) {
      await refused(async () => await secrets.set(name, VALUE), 'BadSecretError', VALUE)
    }
    assert.match(await refused(async () => await secrets.set('GRID_REF', VALUE), 'BadSecretError'), /GRID_.*grid's own/)
    assert.is(secrets.list().length, 4)
  } finally {
    await secrets.close()
    await removeDir(dir)
  }
})

checks('a value shorter than MIN_SECRET_CHARS, blank, with a NUL or too long is refused, and the sentence never quotes it', () => {
  assert.is(MIN_SECRET_CHARS, 4)
  for (const [value, pattern] of [
    ['abc', /shorter than 4 characters/],
    ['', /empty/],
    ['    ', /blanks/],
    ['\n\n\n\n', /blanks/],
    ['abcd\0efgh', /NUL/],
    ['x'.repeat(MAX_SECRET_VALUE_BYTES + 1), /more than 65536 bytes/],
    // Characters, not bytes: 3 characters of 2 bytes each are still too short to mask.
    ['äöü', /shorter than 4/]
  ] as const) {
    assert.throws(() => checkSecretValue(value), (e: any) => e instanceof BadSecretError && pattern.test(e.message) && (value.trim() === '' || !e.message.includes(value)))
  }
  assert.throws(() => checkSecretValue(42), (e: any) => e instanceof BadSecretError && /must be a string/.test(e.message))
  assert.throws(() => checkSecretValue(undefined), (e: any) => e instanceof BadSecretError)
  // The limits themselves are taken.
  assert.is(checkSecretValue('abcd'), 'abcd')
  assert.is(checkSecretValue('ä'.repeat(MAX_SECRET_VALUE_BYTES / 2)), 'ä'.repeat(MAX_SECRET_VALUE_BYTES / 2))
  assert.throws(() => checkSecretValue('ä'.repeat(MAX_SECRET_VALUE_BYTES / 2) + 'x'), (e: any) => e instanceof BadSecretError && /more than/.test(e.message))
})

checks('a multi-line value (a PEM key) is taken; a short or blank line is refused, naming the line, with \\n or \\r\\n', () => {
  assert.is(checkSecretValue(PEM), PEM)
  assert.is(checkSecretValue(PEM.replace(/\n/g, '\r\n')), PEM.replace(/\n/g, '\r\n'))
  // Empty lines are not masked, so they are not refused.
  assert.is(checkSecretValue('first-line\n\nthird-line\n'), 'first-line\n\nthird-line\n')
  for (const [value, line] of [
    ['first-line\nab\nthird-line', 2],
    ['first-line\r\nsecond-line\r\nxyz', 3],
    ['abc\nlong-enough-line', 1],
    ['first-line\n    \nthird-line', 2]
  ] as const) {
    assert.throws(() => checkSecretValue(value), (e: any) => e instanceof BadSecretError && e.message.startsWith(`line ${line} of the value is`) && !e.message.includes('first-line') && !e.message.includes('third-line'))
  }
})

checks('a JSON body: unknown keys, a missing value, bad scopes are refused by name; a pasted value as a key is not quoted', () => {
  assert.equal(parseSecretInit({ value: VALUE }), { value: VALUE, repos: null, branches: null })
  assert.equal(parseSecretInit({ value: VALUE, repos: [REPO, REPO], branches: ['main', 'release/*'] }), { value: VALUE, repos: [REPO], branches: ['main', 'release/*'] })
  assert.equal(parseSecretInit({ value: VALUE, repos: null, branches: null }), { value: VALUE, repos: null, branches: null })
  const bad = (body: unknown, pattern: RegExp): void => {
    assert.throws(() => parseSecretInit(body), (e: any) => e instanceof BadSecretError && pattern.test(e.message) && !e.message.includes(VALUE), JSON.stringify(body).slice(0, 80))
  }
  bad(null, /JSON object/)
  bad([VALUE], /JSON object/)
  bad('text', /JSON object/)
  bad({}, /value is missing/)
  bad({ value: VALUE, branch: ['main'] }, /unknown key branch /)
  bad({ value: VALUE, [VALUE]: true }, /^an unknown key/)
  bad({ value: VALUE, repos: [] }, /repos must be a non-empty list/)
  bad({ value: VALUE, repos: 'x' }, /repos must be a non-empty list/)
  bad({ value: VALUE, repos: ['not a repo'] }, /is not a repository id/)
  bad({ value: VALUE, repos: Array.from({ length: 101 }, () => newBuildId()) }, /more than 100/)
  bad({ value: VALUE, branches: [] }, /branches must be a non-empty list/)
  bad({ value: VALUE, branches: ['refs/heads/main'] }, /without refs\/heads/)
  bad({ value: VALUE, branches: ['a b'] }, /not a branch glob/)
  bad({ value: VALUE, branches: [''] }, /non-empty branch/)
  bad({ value: VALUE, branches: ['x'.repeat(256)] }, /longer than 255/)
  bad({ value: 'abc' }, /shorter than 4/)
})

// ---------------------------------------------------------------- scopes

const scopes = suite('scopes')

scopes('no scope: any build, lone builds and grid run pipelines too', async () => {
  const dir = await tempDir('secrets-scope')
  const secrets = await openSecrets(dir)
  try {
    await secrets.set('ANY', VALUE)
    for (const scope of [main, { repo: null }, { repo: null, ref: 'refs/heads/x' }, { repo: OTHER_REPO, ref: 'refs/tags/v1' }]) {
      assert.is(secrets.check(['ANY'], scope), undefined, JSON.stringify(scope))
    }
    assert.equal(secrets.values(['ANY']), { ANY: VALUE })
    assert.is(secrets.check([], { repo: null }), undefined, 'no secrets asked for: nothing to refuse')
  } finally {
    await secrets.close()
    await removeDir(dir)
  }
})

scopes('repos: only builds of those repositories; a lone build or a grid run pipeline is out of scope', async () => {
  const dir = await tempDir('secrets-scope')
  const secrets = await openSecrets(dir)
  try {
    await secrets.set('TOKEN', VALUE, { repos: [REPO] })
    assert.is(secrets.check(['TOKEN'], main), undefined)
    assert.is(secrets.check(['TOKEN'], { repo: REPO }), undefined, 'any ref of it: no branches given')
    for (const scope of [{ repo: OTHER_REPO, ref: 'refs/heads/main' }, { repo: null }, { repo: null, ref: 'refs/heads/main' }]) {
      assert.is(secrets.check(['TOKEN'], scope), `secret TOKEN is not available to this build (scope: repos ${REPO})`)
    }
  } finally {
    await secrets.close()
    await removeDir(dir)
  }
})

scopes('branches: globs on the branch name; tags, pull requests and builds without a ref are out of scope', async () => {
  const dir = await tempDir('secrets-scope')
  const secrets = await openSecrets(dir)
  try {
    await secrets.set('RELEASE', VALUE, { repos: [REPO, OTHER_REPO], branches: ['main', 'release/*'] })
    for (const ref of ['refs/heads/main', 'refs/heads/release/1.0', 'refs/heads/release/.hidden']) {
      assert.is(secrets.check(['RELEASE'], { repo: OTHER_REPO, ref }), undefined, ref)
    }
    const why = `secret RELEASE is not available to this build (scope: repos ${REPO}, ${OTHER_REPO}, branches main, release/*)`
    for (const ref of ['refs/heads/feature', 'refs/heads/release/1.0/hotfix', 'refs/heads/mainline', 'refs/tags/main', 'refs/pull/1/head', 'main', undefined]) {
      assert.is(secrets.check(['RELEASE'], { repo: REPO, ...(ref !== undefined ? { ref } : {}) }), why, String(ref))
    }
    await secrets.set('ON_MAIN', VALUE, { branches: ['main'] })
    assert.is(secrets.check(['ON_MAIN'], { repo: null, ref: 'refs/heads/main' }), undefined, 'branches alone: any repository, lone builds too')
    assert.is(secrets.check(['ON_MAIN'], { repo: null }), 'secret ON_MAIN is not available to this build (scope: branches main)')
  } finally {
    await secrets.close()
    await removeDir(dir)
  }
})

scopes('the first name that fails is said: not set, or out of scope; a long scope is cut', async () => {
  const dir = await tempDir('secrets-scope')
  const secrets = await openSecrets(dir)
  try {
    const repos = Array.from({ length: 8 }, () => newBuildId())
    await secrets.set('A_OK', VALUE)
    await secrets.set('B_NARROW', VALUE, { repos })
    assert.is(secrets.check(['A_OK', 'MISSING', 'B_NARROW'], main), 'secret MISSING is not set (grid secret set MISSING)')
    assert.is(secrets.check(['A_OK', 'B_NARROW', 'MISSING'], main), `secret B_NARROW is not available to this build (scope: repos ${repos.slice(0, 5).join(', ')} and 3 more)`)
    assert.match(secrets.check(['bad"\nname'], main) ?? '', /^secret "bad\\"\\nname" is not set/)
  } finally {
    await secrets.close()
    await removeDir(dir)
  }
})

scopes('values: a removed secret throws SecretMissingError; a scope narrowed since submit throws SecretNotAvailableError', async () => {
  const dir = await tempDir('secrets-scope')
  const secrets = await openSecrets(dir)
  try {
    await secrets.set('ONE', VALUE)
    await secrets.set('TWO', PEM, { branches: ['main'] })
    assert.equal(secrets.values(['ONE', 'TWO'], main), { ONE: VALUE, TWO: PEM })
    await secrets.set('TWO', PEM, { branches: ['release/*'] })
    await refused(() => secrets.values(['ONE', 'TWO'], main), 'SecretNotAvailableError', PEM)
    assert.equal(secrets.values(['TWO']), { TWO: PEM }, 'without a scope, only names are checked')
    await secrets.remove('ONE')
    assert.match(await refused(() => secrets.values(['TWO', 'ONE']), 'SecretMissingError', VALUE), /ONE is not set any more/)
    assert.ok(new SecretNotAvailableError('x').status === 403 && new SecretMissingError('x').status === 409)
  } finally {
    await secrets.close()
    await removeDir(dir)
  }
})

// ---------------------------------------------------------------- the store

const store = suite<{ dir: string, secrets: Secrets, clock: number }>('the store')

store.before.each(async ctx => {
  ctx.dir = await tempDir('secrets-store')
  ctx.clock = Date.parse('2025-01-01T00:00:00Z')
  ctx.secrets = await openSecrets(ctx.dir, () => ctx.clock)
})
store.after.each(async ctx => {
  await ctx.secrets.close().catch(() => {})
  await removeDir(ctx.dir)
})

store('set, replace, list, remove: records never hold a value; created is kept and updated moves', async ctx => {
  const { secrets } = ctx
  const first = await secrets.set('DEPLOY_TOKEN', VALUE, { repos: [REPO] })
  assert.equal(first, { secret: { name: 'DEPLOY_TOKEN', repos: [REPO], branches: null, created: '2025-01-01T00:00:00.000Z', updated: '2025-01-01T00:00:00.000Z' }, replaced: false })
  ctx.clock += 60_000
  const second = await secrets.set('DEPLOY_TOKEN', PEM, { branches: ['main'] })
  assert.equal(second, { secret: { name: 'DEPLOY_TOKEN', repos: null, branches: ['main'], created: '2025-01-01T00:00:00.000Z', updated: '2025-01-01T00:01:00.000Z' }, replaced: true })
  await secrets.set('A_FIRST', VALUE)
  assert.equal(secrets.list().map(s => s.name), ['A_FIRST', 'DEPLOY_TOKEN'])
  assert.equal(Object.keys(secrets.list()[0]).sort(), ['branches', 'created', 'name', 'repos', 'updated'])
  const shown = JSON.stringify([secrets.list(), secrets.get('DEPLOY_TOKEN'), first, second])
  assert.not.ok(shown.includes(VALUE) || shown.includes('secretline1'), 'no value in a record')
  assert.equal(secrets.values(['DEPLOY_TOKEN']), { DEPLOY_TOKEN: PEM }, 'the value was replaced')
  assert.is((await secrets.remove('DEPLOY_TOKEN'))?.name, 'DEPLOY_TOKEN')
  assert.is(await secrets.remove('DEPLOY_TOKEN'), undefined, 'unknown: undefined, not an error')
  assert.is(secrets.get('DEPLOY_TOKEN'), undefined)
  assert.is(secrets.check(['DEPLOY_TOKEN'], main), 'secret DEPLOY_TOKEN is not set (grid secret set DEPLOY_TOKEN)')
})

store('values are sealed at rest: the database files never hold a value, a line of one, or its base64', async ctx => {
  const { secrets, dir } = ctx
  await secrets.set('PLAIN', VALUE)
  await secrets.set('PEM_KEY', PEM)
  await secrets.close()
  const bytes = await allBytes(dir)
  assert.ok(bytes.includes('PEM_KEY'), 'the search does see what is stored (names are not secret)')
  for (const needle of [VALUE, ...PEM.split('\n').filter(l => l.length >= 4), Buffer.from(VALUE).toString('base64'), Buffer.from(VALUE).toString('hex')]) {
    assert.not.ok(bytes.includes(needle), `plaintext on disk: ${needle.slice(0, 12)}…`)
  }
  const key = await readFile(join(dir, SECRETS_KEY_FILE))
  assert.is(key.length, 32)
})

store('a restart keeps them: names, scopes, times and values', async ctx => {
  await ctx.secrets.set('KEPT', PEM, { repos: [REPO], branches: ['release/*'] })
  const before = ctx.secrets.list()
  await ctx.secrets.close()
  ctx.secrets = await openSecrets(ctx.dir)
  assert.equal(ctx.secrets.list(), before)
  assert.equal(ctx.secrets.values(['KEPT']), { KEPT: PEM })
  assert.is(ctx.secrets.check(['KEPT'], { repo: REPO, ref: 'refs/heads/release/2' }), undefined, 'its globs work after a restart')
  assert.match(ctx.secrets.check(['KEPT'], main) ?? '', /not available/)
})

store('with another key (DATA/secrets.key replaced), values do not open: SecretUnreadableError without the value', async ctx => {
  await ctx.secrets.set('LOCKED', VALUE)
  await ctx.secrets.close()
  await writeFile(join(ctx.dir, SECRETS_KEY_FILE), Buffer.alloc(32, 7))
  ctx.secrets = await openSecrets(ctx.dir)
  assert.is(ctx.secrets.list()[0].name, 'LOCKED', 'names still list')
  assert.match(await refused(() => ctx.secrets.values(['LOCKED']), 'SecretUnreadableError', VALUE), /secret LOCKED.*secrets\.key/)
})

store('bad input changes nothing', async ctx => {
  const { secrets } = ctx
  await secrets.set('KEEP', VALUE, { repos: [REPO] })
  await refused(async () => await secrets.set('KEEP', 'ab'), 'BadSecretError', 'ab')
  await refused(async () => await secrets.set('KEEP', VALUE, { branches: ['refs/heads/x'] }), 'BadSecretError', VALUE)
  assert.equal(secrets.list().map(s => [s.name, s.repos, s.branches]), [['KEEP', [REPO], null]])
  assert.equal(secrets.values(['KEEP']), { KEEP: VALUE })
})

store('at most MAX_SECRETS: one more is refused (409), replacing one still works', async ctx => {
  const { secrets } = ctx
  for (let i = 0; i < MAX_SECRETS; i++) await secrets.set(`S${i}`, VALUE)
  await refused(async () => await secrets.set('ONE_MORE', VALUE), 'SecretConflictError', VALUE)
  assert.ok(new SecretConflictError('x').status === 409)
  assert.is((await secrets.set('S0', PEM)).replaced, true)
  await secrets.remove('S1')
  assert.is((await secrets.set('ONE_MORE', VALUE)).replaced, false)
  assert.is(secrets.list().length, MAX_SECRETS)
})

store('concurrent sets of one name end with one record and the last value', async ctx => {
  const { secrets } = ctx
  const results = await Promise.all(['value-one', 'value-two', 'value-three'].map(async v => await secrets.set('RACE', v)))
  assert.equal(results.map(r => r.replaced), [false, true, true])
  assert.equal(secrets.values(['RACE']), { RACE: 'value-three' })
})

checks.run()
scopes.run()
store.run()

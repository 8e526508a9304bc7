// The secret store end to end: the routes of web/secrets.ts mounted as the API mounts them, over a real Secrets in
// a real LevelDB, asked with and without the token, with good and bad names, values and bodies; then `grid secret`
// over real HTTP, in this process (stdin given) and as a child process reading a real pipe. Every answer, error
// and line the process writes is searched for the values, and so are the database's bytes on disk.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { Level } from 'level'
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { CommanderError } from 'commander'
import { MAX_SECRET_VALUE_BYTES, Secrets } from '../../coordinator/secrets.ts'
import type { SecretRecord } from '../../coordinator/secrets.ts'
import { SECRETS_KEY_FILE, secretsKey } from '../../coordinator/secret-box.ts'
import { MAX_SECRET_BODY_BYTES, secretRoutes } from '../../web/secrets.ts'
import { startWebServer } from '../../web/server.ts'
import type { WebServer } from '../../web/server.ts'
import { newBuildId } from '../../grid/ids.ts'
import { isGridError } from '../../net/errors.ts'
import { GridCommand, UsageProblems } from '../../node/cli/usage.ts'
import { secretCommands } from '../../node/cli/secret.ts'
import type { SecretInput } from '../../node/cli/secret.ts'
import { TOKEN_FILE, WEB_URL_FILE } from '../../node/roles.ts'
import { ROOT, removeDir, tempDir } from '../helpers.ts'

const TOKEN = 'api-token-of-the-secrets-test-0123456789'
const VALUE = 'deploy-token-Hx4cT8wQ2rLm6ZpV'
const OTHER_VALUE = 'publish-key-Nb7yU3kE5sDj9GfA'
const PEM = [
  '-----BEGIN OPENSSH PRIVATE KEY-----',
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW',
  'QyNTUxOQAAACBVq3Lk9TzXr2Wm8YpN4cH6jF1dG7sQ0eR5tU2iO3pLkwAAAJgq7uNlKu7j',
  '-----END OPENSSH PRIVATE KEY-----',
  ''
].join('\n')
/** What no answer, error, output line or file may hold: the values, and each line of the multi-line one. */
const NEEDLES = [VALUE, OTHER_VALUE, ...PEM.split('\n').filter(l => l.length >= 4 && !l.startsWith('-----'))]
const REPO = newBuildId()

/** The API's token check, as web/app.ts makes it. */
const auth = (): MiddlewareHandler => bearerAuth({
  token: TOKEN,
  noAuthenticationHeaderMessage: { error: 'this needs the API token: send Authorization: Bearer TOKEN (see DATA/api-token)' },
  invalidAuthenticationHeaderMessage: { error: 'the Authorization header must be "Bearer TOKEN"' },
  invalidTokenMessage: { error: 'the API token is wrong' }
})

const authed = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

/** Every byte of every file under `dir`. */
async function allBytes (dir: string): Promise<Buffer> {
  const parts: Buffer[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) parts.push(await readFile(join(entry.parentPath, entry.name)))
  }
  return Buffer.concat(parts)
}

function holdsNoValue (text: string | Buffer, where: string): void {
  for (const needle of NEEDLES) assert.not.ok(text.includes(needle), `${where} holds a value (${needle.slice(0, 10)}…)`)
}

interface Store { dir: string, secrets: Secrets, app: Hono, answers: string[] }

async function openStore (dir: string): Promise<Store> {
  const secrets = new Secrets({ db: new Level<string, any>(join(dir, 'secrets.db')), key: await secretsKey(join(dir, SECRETS_KEY_FILE)) })
  await secrets.open()
  // Mounted at / in an app of its own, as web/app.ts mounts the API's sub-apps.
  const app = new Hono()
  app.route('/', secretRoutes({ secrets, auth: auth() }))
  app.notFound(c => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404))
  return { dir, secrets, app, answers: [] }
}

/** Ask the app; the answer's body is kept, to search all of them for values at the end. */
async function ask (s: Store, method: string, path: string, init: { body?: string, headers?: Record<string, string> } = {}): Promise<{ status: number, json: any, text: string }> {
  const res = await s.app.request(path, { method, headers: init.headers ?? authed, body: init.body })
  const text = await res.text()
  s.answers.push(text)
  let json: any
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: res.status, json, text }
}

const put = async (s: Store, name: string, body: unknown, headers?: Record<string, string>): ReturnType<typeof ask> =>
  await ask(s, 'PUT', `/api/secrets/${name}`, { body: JSON.stringify(body), headers })

/** An error answer: `status`, `{ "error": one line }`, the sentence. */
function error (answer: { status: number, json: any, text: string }, status: number): string {
  assert.is(answer.status, status, answer.text)
  assert.type(answer.json?.error, 'string', answer.text)
  assert.not.match(answer.json.error, /\n/)
  return answer.json.error
}

/** Catches what the process writes to its console and stderr, to search it for values. */
function captureOutput (): { lines: string[], restore: () => void } {
  const lines: string[] = []
  const { error: consoleError, log: consoleLog, warn } = console
  const stderr = process.stderr.write
  console.error = (...args: unknown[]) => { lines.push(args.map(a => a instanceof Error ? `${a.message}\n${a.stack}` : String(a)).join(' ')) }
  console.log = console.error
  console.warn = console.error
  process.stderr.write = ((chunk: string) => { lines.push(String(chunk)); return true }) as typeof process.stderr.write
  return {
    lines,
    restore: () => { console.error = consoleError; console.log = consoleLog; console.warn = warn; process.stderr.write = stderr }
  }
}

// ---------------------------------------------------------------- over HTTP

const routes = suite<{ s: Store, output: ReturnType<typeof captureOutput> }>('secrets over HTTP')

routes.before(async ctx => {
  ctx.s = await openStore(await tempDir('secrets-http'))
  ctx.output = captureOutput()
})
routes.after(async ctx => {
  ctx.output?.restore()
  await ctx.s.secrets.close().catch(() => {})
  await removeDir(ctx.s.dir)
})

routes('every write needs the token: without it, or with a wrong one, 401 and nothing changes; the list is an open read', async ({ s }) => {
  // bearerAuth answers 400 to a header that is not `Bearer TOKEN` at all.
  for (const [headers, status] of [[{ 'content-type': 'application/json' }, 401], [{ authorization: 'Bearer wrong-token', 'content-type': 'application/json' }, 401], [{ authorization: TOKEN }, 400]] as const) {
    error(await put(s, 'DEPLOY_TOKEN', { value: VALUE }, headers), status)
    error(await ask(s, 'DELETE', '/api/secrets/DEPLOY_TOKEN', { headers }), status)
  }
  assert.equal(s.secrets.list(), [])
  const open = await ask(s, 'GET', '/api/secrets', { headers: {} })
  assert.is(open.status, 200, 'GET needs no token: it shows names and scopes, never a value')
  assert.equal(open.json, [])
})

routes('PUT sets a secret (201) with its scope, and answers its record without the value; PUT again replaces it (200)', async ({ s }) => {
  const created = await put(s, 'DEPLOY_TOKEN', { value: VALUE, repos: [REPO], branches: ['main', 'release/*'] })
  assert.is(created.status, 201, created.text)
  assert.equal(Object.keys(created.json).sort(), ['branches', 'created', 'name', 'repos', 'updated'])
  assert.equal([created.json.name, created.json.repos, created.json.branches], ['DEPLOY_TOKEN', [REPO], ['main', 'release/*']])
  assert.equal(s.secrets.values(['DEPLOY_TOKEN']), { DEPLOY_TOKEN: VALUE })
  const replaced = await put(s, 'DEPLOY_TOKEN', { value: OTHER_VALUE })
  assert.is(replaced.status, 200, replaced.text)
  assert.equal([replaced.json.repos, replaced.json.branches, replaced.json.created], [null, null, created.json.created], 'the scope is replaced whole; created is kept')
  assert.equal(s.secrets.values(['DEPLOY_TOKEN']), { DEPLOY_TOKEN: OTHER_VALUE })
  const pem = await put(s, 'SSH_KEY', { value: PEM, branches: ['main'] })
  assert.is(pem.status, 201, pem.text)
  assert.equal(s.secrets.values(['SSH_KEY']), { SSH_KEY: PEM }, 'a multi-line value arrives whole')
})

routes('GET lists names, scopes and times, by name, never values', async ({ s }) => {
  const list = await ask(s, 'GET', '/api/secrets')
  assert.is(list.status, 200)
  assert.equal((list.json as SecretRecord[]).map(r => [r.name, r.repos, r.branches]), [['DEPLOY_TOKEN', null, null], ['SSH_KEY', null, ['main']]])
  assert.ok((list.json as SecretRecord[]).every(r => !Number.isNaN(Date.parse(r.created)) && !Number.isNaN(Date.parse(r.updated))))
})

routes('bad names, values, scopes and keys: 400 with one sentence that never quotes the value; nothing changes', async ({ s }) => {
  const before = s.secrets.list()
  assert.match(error(await put(s, 'deploy_token', { value: VALUE }), 400), /not a secret name/)
  assert.match(error(await put(s, 'GRID_COMMIT', { value: VALUE }), 400), /grid's own/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: 'abc' }), 400), /shorter than 4 characters/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: `${VALUE}\nab\n${OTHER_VALUE}` }), 400), /^line 2 of the value is shorter than 4/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: `${VALUE}\0` }), 400), /NUL/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: 12345 }), 400), /must be a string/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { repos: [REPO] }), 400), /value is missing/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: VALUE, branch: ['main'] }), 400), /unknown key branch/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: VALUE, [OTHER_VALUE]: 1 }), 400), /an unknown key/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: VALUE, repos: [] }), 400), /non-empty list/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: VALUE, repos: ['../etc'] }), 400), /not a repository id/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: VALUE, branches: ['refs/heads/main'] }), 400), /without refs\/heads/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', [VALUE]), 400), /JSON object/)
  // A body that is not JSON: the parser's message would quote the text around the mistake, the value with it.
  assert.match(error(await ask(s, 'PUT', '/api/secrets/DEPLOY_TOKEN', { body: `{"value": "${VALUE}" "branches": []}` }), 400), /must be JSON/)
  assert.match(error(await ask(s, 'PUT', '/api/secrets/DEPLOY_TOKEN', { body: `{"value": "${VALUE}` }), 400), /must be JSON/)
  assert.match(error(await put(s, 'DEPLOY_TOKEN', { value: 'x'.repeat(MAX_SECRET_VALUE_BYTES + 1) }), 400), /more than 65536 bytes/)
  assert.equal(s.secrets.list(), before)
  assert.equal(s.secrets.values(['DEPLOY_TOKEN']), { DEPLOY_TOKEN: OTHER_VALUE })
})

routes('a body over MAX_SECRET_BODY_BYTES is refused (413) before it is read, and the connection is closed', async ({ s }) => {
  const body = JSON.stringify({ value: VALUE + '\\u001b'.repeat(MAX_SECRET_BODY_BYTES / 6 + 1) })
  const answer = await s.app.request('/api/secrets/BIG', { method: 'PUT', headers: authed, body })
  assert.is(answer.status, 413)
  assert.is(answer.headers.get('connection'), 'close')
  const text = await answer.text()
  s.answers.push(text)
  assert.match(JSON.parse(text).error, new RegExp(`at most ${MAX_SECRET_BODY_BYTES} bytes`))
  assert.is(s.secrets.get('BIG'), undefined)
})

routes('DELETE removes one (200, its record); an unknown name is 404, a bad one 400', async ({ s }) => {
  const removed = await ask(s, 'DELETE', '/api/secrets/SSH_KEY')
  assert.is(removed.status, 200, removed.text)
  assert.is(removed.json.name, 'SSH_KEY')
  assert.match(error(await ask(s, 'DELETE', '/api/secrets/SSH_KEY'), 404), /^no secret SSH_KEY$/)
  assert.match(error(await ask(s, 'DELETE', '/api/secrets/ssh-key'), 400), /not a secret name/)
  assert.equal(s.secrets.list().map(r => r.name), ['DEPLOY_TOKEN'])
  assert.is(s.secrets.check(['SSH_KEY'], { repo: null }), 'secret SSH_KEY is not set (grid secret set SSH_KEY)')
})

routes('no answer and no line written held a value; the database files hold none either', async ({ s, output }) => {
  assert.ok(s.answers.length > 30, `${s.answers.length} answers searched`)
  for (const answer of s.answers) holdsNoValue(answer, `an answer (${answer.slice(0, 60)})`)
  for (const line of output.lines) holdsNoValue(line, `a line written (${line.slice(0, 60)})`)
  await s.secrets.close()
  const bytes = await allBytes(s.dir)
  assert.ok(bytes.includes('DEPLOY_TOKEN'), 'the search sees what is stored')
  holdsNoValue(bytes, 'the data dir')
  s.secrets = (await openStore(s.dir)).secrets
  assert.equal(s.secrets.values(['DEPLOY_TOKEN']), { DEPLOY_TOKEN: OTHER_VALUE }, 'and it is kept across a restart')
})

// ---------------------------------------------------------------- grid secret

/** A stdin for `grid secret set`: the text given, or a terminal. */
function input (text: string, isTTY = false): SecretInput {
  const stream = Readable.from([Buffer.from(text)]) as Readable & { isTTY?: boolean }
  if (isTTY) stream.isTTY = true
  return stream
}

/** `grid secret …` in this process, as node/cli/index.ts runs a command: its stdout, its stderr and its exit code. */
async function cli (args: string[], stdin: SecretInput = input('')): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const grid = new GridCommand('grid').exitOverride().configureOutput({ writeOut: t => { stdout += t }, writeErr: t => { stderr += t }, outputError: (t, write) => write(`grid: ${t.trim()}\n`) })
  secretCommands(grid, { stdin })
  const write = { out: process.stdout.write, err: process.stderr.write }
  process.stdout.write = ((chunk: string) => { stdout += chunk; return true }) as typeof process.stdout.write
  process.stderr.write = ((chunk: string) => { stderr += chunk; return true }) as typeof process.stderr.write
  let code = 0
  try {
    await grid.parseAsync(args, { from: 'user' })
  } catch (err: any) {
    if (err instanceof CommanderError) code = err.exitCode === 0 ? 0 : 2
    else {
      if (!isGridError(err)) throw err
      stderr += `grid: ${err.message}\n`
      code = err instanceof UsageProblems ? 2 : 1
    }
  } finally {
    process.stdout.write = write.out
    process.stderr.write = write.err
  }
  holdsNoValue(stdout + stderr, `grid ${args.join(' ')}`)
  return { code, stdout, stderr }
}

function oneLine (result: { code: number, stderr: string }, pattern: RegExp): void {
  assert.ok(result.code !== 0, `exit code ${result.code}`)
  const lines = result.stderr.trim().split('\n')
  assert.is(lines.length, 1, `one line on stderr, got: ${result.stderr}`)
  assert.match(lines[0], /^grid: /)
  assert.match(lines[0], pattern)
}

const command = suite<{ s: Store, web: WebServer, data: string }>('grid secret set, ls, rm')

command.before(async ctx => {
  ctx.s = await openStore(await tempDir('secrets-cli'))
  ctx.web = await startWebServer(ctx.s.app, '127.0.0.1:0')
  ctx.data = join(ctx.s.dir, 'data')
  await mkdir(ctx.data)
  await writeFile(join(ctx.data, WEB_URL_FILE), `${ctx.web.url}\n`)
  await writeFile(join(ctx.data, TOKEN_FILE), `${TOKEN}\n`)
})
command.after(async ctx => {
  await ctx.web?.close()
  await ctx.s.secrets.close().catch(() => {})
  await removeDir(ctx.s.dir)
})

command('set reads the value from stdin, dropping one trailing newline; --repo and --branch scope it', async ({ s, data }) => {
  const result = await cli(['secret', 'set', 'DEPLOY_TOKEN', '--repo', REPO, '--branch', 'main', '--branch', 'release/*', '--data', data], input(`${VALUE}\n`))
  assert.is(result.code, 0, result.stderr)
  assert.is(result.stdout, '')
  assert.match(result.stderr, new RegExp(`^grid: secret DEPLOY_TOKEN set: repos ${REPO}, branches main,release/\\*\\n$`))
  assert.equal(s.secrets.values(['DEPLOY_TOKEN']), { DEPLOY_TOKEN: VALUE })
  assert.equal(s.secrets.get('DEPLOY_TOKEN')?.branches, ['main', 'release/*'])
  // A PEM key ends in a newline of its own; `cat key | grid secret set` adds none, `echo "$(cat key)"` one: only one goes.
  assert.is((await cli(['secret', 'set', 'SSH_KEY', '--data', data], input(`${PEM}\n`))).code, 0)
  assert.equal(s.secrets.values(['SSH_KEY']), { SSH_KEY: PEM })
  assert.is((await cli(['secret', 'set', 'CRLF', '--data', data], input(`${OTHER_VALUE}\r\n`))).code, 0)
  assert.equal(s.secrets.values(['CRLF']), { CRLF: OTHER_VALUE })
})

command('ls lists names and scopes, never values; rm removes one', async ({ s, data }) => {
  const result = await cli(['secret', 'ls', '--data', data])
  assert.is(result.code, 0, result.stderr)
  const lines = result.stdout.trim().split('\n')
  assert.is(lines.length, 3)
  assert.match(lines[0], /^CRLF\trepos any\tbranches any\tupdated \d{4}-\d\d-\d\dT/)
  assert.match(lines[1], new RegExp(`^DEPLOY_TOKEN\trepos ${REPO}\tbranches main,release/\\*\tupdated `))
  assert.match(lines[2], /^SSH_KEY\trepos any\tbranches any\t/)
  const removed = await cli(['secret', 'rm', 'CRLF', '--data', data])
  assert.is(removed.code, 0, removed.stderr)
  assert.match(removed.stderr, /removed secret CRLF/)
  assert.equal(s.secrets.list().map(r => r.name), ['DEPLOY_TOKEN', 'SSH_KEY'])
})

command('bad input: one line on stderr, a non-zero exit, nothing set; the value is never taken as an argument', async ({ s, data }) => {
  const before = s.secrets.list()
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--data', data], input(VALUE, true)), /read from stdin, not typed/)
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--data', data], input('')), /stdin was empty/)
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--data', data], input('\n')), /stdin was empty/)
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--data', data], input('abc\n')), /shorter than 4 characters/)
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--data', data], Readable.from([Buffer.from([0x6b, 0x65, 0x79, 0xff, 0xfe, 0x00, 0x01])]) as SecretInput), /not UTF-8/)
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--data', data], input(`${VALUE}\nab\n`)), /line 2 of the value/)
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--data', data], input('x'.repeat(MAX_SECRET_VALUE_BYTES + 3))), /more than 65536 bytes/)
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--repo', 'nope', '--data', data], input(VALUE)), /not a repository id/)
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--branch', 'refs/heads/main', '--data', data], input(VALUE)), /without refs\/heads/)
  // Refused, and not repeated back: cli() checks stdout and stderr for the value.
  const extra = await cli(['secret', 'set', 'NEW_ONE', VALUE, '--data', data], input(VALUE))
  oneLine(extra, /never from the command line/)
  assert.is(extra.code, 2)
  const name = await cli(['secret', 'set', 'new-one', '--data', data], input(VALUE))
  oneLine(name, /"new-one" is not a secret name/)
  assert.is(name.code, 2)
  oneLine(await cli(['secret', 'rm', 'new-one', '--data', data]), /"new-one" is not a secret name/)
  oneLine(await cli(['secret', 'set', 'NEW_ONE', '--data', join(s.dir, 'nowhere')], input(VALUE)), /no web-url/)
  oneLine(await cli(['secret', 'rm', 'NEW_ONE', '--data', data]), /no secret NEW_ONE/)
  assert.equal(s.secrets.list(), before)
})

command('--help of each says where the value comes from and what it does', async () => {
  const set = await cli(['secret', 'set', '--help'])
  assert.is(set.code, 0)
  assert.match(set.stdout, /stdin/)
  assert.match(set.stdout, /--repo <id>/)
  assert.match(set.stdout, /--branch <glob>/)
  assert.match((await cli(['secret', 'ls', '--help'])).stdout, /never shown/)
  assert.match((await cli(['secret', 'rm', '--help'])).stdout, /remove a secret/)
  assert.match((await cli(['secret', '--help'])).stdout, /set.*\n.*ls.*\n.*rm/s)
})

command('as a child process reading a real pipe: `echo VALUE | grid secret set NAME` stores VALUE without the newline', async ({ s, data }) => {
  // `grid secret` is wired into node/cli/index.ts by the lead; until then, a two-line program runs the same commands.
  const program = join(s.dir, 'grid-secret.mts')
  await writeFile(program, [
    `import { GridCommand } from ${JSON.stringify(join(ROOT, 'node/cli/usage.ts'))}`,
    `import { secretCommands } from ${JSON.stringify(join(ROOT, 'node/cli/secret.ts'))}`,
    'const grid = new GridCommand(\'grid\')',
    'secretCommands(grid)',
    'try { await grid.parseAsync(process.argv.slice(2), { from: \'user\' }) } catch (err) { process.stderr.write(`grid: ${err.message}\\n`); process.exitCode = 1 }'
  ].join('\n'))
  const run = async (shell: string): Promise<{ code: number | null, out: string }> => await new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', shell], { env: { ...process.env, NODE: process.execPath, PROGRAM: program, DATA: data, VALUE } })
    let out = ''
    child.stdout.on('data', d => { out += d })
    child.stderr.on('data', d => { out += d })
    child.on('error', reject)
    child.on('exit', code => resolve({ code, out }))
  })
  const piped = await run('echo "$VALUE" | "$NODE" "$PROGRAM" secret set PIPED --data "$DATA"')
  assert.is(piped.code, 0, piped.out)
  holdsNoValue(piped.out, 'the child\'s output')
  assert.equal(s.secrets.values(['PIPED']), { PIPED: VALUE })
  const empty = await run('"$NODE" "$PROGRAM" secret set EMPTY --data "$DATA" < /dev/null')
  assert.is(empty.code, 1)
  assert.match(empty.out, /stdin was empty/)
  assert.is(s.secrets.get('EMPTY'), undefined)
})

routes.run()
command.run()

// What the `grid` command says when things go wrong or wait: every expected failure is one line on stderr (never a
// stack trace), an error names the flag the user gave, an unreachable grid reads the same from every client
// command, and a followed build says why it waits and how it ended. A grid in this process (coordinator with HTTP,
// a store node, a worker), the real `grid` command as child processes.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { readFile, readdir, writeFile, mkdir } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ROOT, grid, gridRun, oneLineError, removeDir, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'
import { startCoordinatorNode, startStoreNode, startWorkerNode } from '../../node/roles.ts'
import type { CoordinatorNode, StoreNode, WorkerNode } from '../../node/roles.ts'
import { decodeJoinCode, encodeJoinCode, newSecret } from '../../net/join-code.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { GridError, isGridError } from '../../net/errors.ts'
import { StoreFullError } from '../../storage/blockstore.ts'
import { PeerUnreachableError } from '../../net/dial.ts'
import { LogUnavailableError } from '../../client/log-reader.ts'
import { UnknownBuildError } from '../../coordinator/scheduler.ts'
import { BadCapabilityError } from '../../worker/capabilities.ts'

const marked = suite('expected failures are marked once')

marked('every error class of the grid extends GridError (node/errors.ts), not Error', async () => {
  const classes: string[] = []
  for (const folder of ['net', 'grid', 'protocols', 'client', 'artifact-store', 'coordinator', 'worker', 'web', 'node']) {
    for (const file of await readdir(join(ROOT, folder), { recursive: true })) {
      if (!file.endsWith('.ts')) continue
      const text = await readFile(join(ROOT, folder, file), 'utf8')
      for (const m of text.matchAll(/class (\w+) extends (\w+)/g)) {
        if (m[2] === 'Error' && m[1] !== 'GridError') classes.push(`${folder}/${file}: ${m[1]}`)
      }
    }
  }
  assert.equal(classes, [], 'a failure the grid expects is a GridError; one it does not is not a class of its own')
})

marked('each keeps its own name, and says its HTTP status', () => {
  for (const [err, name, status] of [
    [new StoreFullError('x'), 'StoreFullError', 507], [new PeerUnreachableError('x'), 'PeerUnreachableError', 502],
    [new LogUnavailableError('x'), 'LogUnavailableError', 503], [new UnknownBuildError('x'), 'UnknownBuildError', 404],
    [new BadCapabilityError('x'), 'BadCapabilityError', 400]
  ] as const) {
    assert.ok(err instanceof GridError && isGridError(err), name)
    assert.is(err.name, name)
    assert.is(err.status, status, name)
  }
  assert.not.ok(isGridError(new TypeError('a bug')))
})

marked.run()

interface Ctx {
  dir: string
  data: string
  joinFile: string
  node: CoordinatorNode
  store: StoreNode
  worker: WorkerNode
  children: CliProcess[]
}

const cli = suite<Ctx>('grid command: errors and reasons')

cli.before(async ctx => {
  ctx.dir = await tempDir('cli-errors')
  ctx.data = join(ctx.dir, 'data')
  ctx.children = []
  ctx.node = await startCoordinatorNode({ dataDir: ctx.data, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', withStore: false })
  ctx.joinFile = join(ctx.data, 'join-trusted')
  ctx.store = await startStoreNode({ dataDir: join(ctx.dir, 'store'), join: ctx.node.localJoin, listen: ['/ip4/127.0.0.1/tcp/0'] })
  await ctx.store.announcement.ready()
  ctx.worker = await startWorkerNode({ dataDir: join(ctx.dir, 'worker'), join: ctx.node.localJoin, listen: [], capabilities: { os: process.platform }, slots: 1 })
  await ctx.worker.worker.ready(AbortSignal.timeout(10_000))
  await waitFor('the store in the grid', () => ctx.node.coordinator.stores.list().length === 1)
})

cli.after(async ctx => {
  for (const child of ctx.children ?? []) await child.stop()
  await ctx.worker?.stop()
  await ctx.store?.stop().catch(() => {})
  await ctx.node?.stop()
  await removeDir(ctx.dir)
})

const api = async (ctx: Ctx, path: string, init?: RequestInit): Promise<any> => {
  const res = await fetch(ctx.node.web!.url + path, { ...init, headers: { authorization: `Bearer ${ctx.node.token}`, 'content-type': 'application/json' } })
  return await res.json()
}
const submit = async (ctx: Ctx, job: unknown): Promise<string> => (await api(ctx, '/api/builds', { method: 'POST', body: JSON.stringify(job) })).id
const cancel = async (ctx: Ctx, id: string): Promise<void> => { await api(ctx, `/api/builds/${id}/cancel`, { method: 'POST' }) }
const finished = async (ctx: Ctx, id: string): Promise<Build> => await waitFor(`build ${id} to finish`, async () => {
  const build = await api(ctx, `/api/builds/${id}`) as Build
  return FINISHED.has(build.status) ? build : undefined
}, 30_000)


cli('an error names the flag the user gave, as they typed it', async ({ joinFile }) => {
  const requireNoValue = await gridRun(['submit', '--join', joinFile, '--run', 'true', '--require', 'gpu'])
  oneLineError(requireNoValue, /^grid: --require gpu: expected KEY=VALUE/)
  assert.not.match(requireNoValue.stderr, /--cap/)
  oneLineError(await gridRun(['submit', '--join', joinFile, '--run', 'true', '--require', `gpu=${'x'.repeat(300)}`]), /^grid: --require gpu=…: /)
  oneLineError(await gridRun(['submit', '--join', joinFile, '--run', 'true', '--artifact', 'dist/**', '--artifact', '../up']), /^grid: --artifact \.\.\/up: /)
  oneLineError(await gridRun(['submit', '--join', joinFile, '--run', '']), /^grid: --run /)
  oneLineError(await gridRun(['submit', '--join', joinFile, '--run', 'true', '--listen', 'port 80']), /--listen/)
  oneLineError(await gridRun(['worker', '--join', joinFile, '--listen', 'nowhere']), /--listen/)
  // The flags that were already right stay right.
  oneLineError(await gridRun(['worker', '--join', joinFile, '--cap', 'novalue']), /^grid: --cap novalue: /)
})

cli('every command takes --data and --listen; a client command finds DATA/join by itself', async ({ dir, data, joinFile, node }) => {
  const submitted = await gridRun(['submit', '--data', data, '--run', 'echo from data dir'])
  assert.is(submitted.code, 0, submitted.stderr)
  const id = submitted.stdout.trim()
  const listen = ['--listen', '/ip4/127.0.0.1/tcp/0']
  const tailed = await gridRun(['tail', '--data', data, ...listen, id])
  assert.is(tailed.code, 0, tailed.stderr)
  assert.match(tailed.stdout, /^from data dir$/m)

  const file = join(dir, 'payload.bin')
  const bytes = randomBytes(10_000)
  await writeFile(file, bytes)
  const put = await gridRun(['put', '--data', data, ...listen, file])
  assert.is(put.code, 0, put.stderr)
  const out = join(dir, 'payload.out')
  const got = await gridRun(['get', '--data', data, ...listen, put.stdout.trim(), '-o', out])
  assert.is(got.code, 0, got.stderr)
  assert.ok((await readFile(out)).equals(bytes))
  // --join still wins over DATA/join.
  const explicit = await gridRun(['submit', '--data', join(dir, 'nowhere'), '--join', joinFile, '--run', 'true'])
  assert.is(explicit.code, 0, explicit.stderr)

  // Operator commands take --listen too (they talk HTTP, so it changes nothing).
  const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const allowed = await gridRun(['allow', peer, '--data', data, ...listen])
  assert.is(allowed.code, 0, allowed.stderr)
  assert.equal(node.coordinator.denied, [])

  const empty = join(dir, 'empty')
  await mkdir(empty)
  oneLineError(await gridRun(['submit', '--data', empty, '--run', 'true']), /--join/)
  oneLineError(await gridRun(['get', '--data', empty, 'bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am']), /--join/)
  for (const command of ['submit', 'tail', 'put', 'get']) {
    const help = await gridRun([command, '--help'])
    assert.match(help.stdout, /DATA\/join/, `${command} --help says where --join defaults to`)
    assert.match(help.stdout, /--listen/, `${command} --help lists --listen`)
  }
})

cli('a grid that is down and a wrong join code read the same from submit, put, get and tail', async ({ dir, joinFile }) => {
  // A port that was free a moment ago: nothing listens there.
  const port = await new Promise<number>(resolve => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as any).port; s.close(() => resolve(p)) })
  })
  const down = encodeJoinCode({ secret: newSecret(), coordinator: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), addrs: [multiaddr(`/ip4/127.0.0.1/tcp/${port}`)] })
  const real = decodeJoinCode(await readFile(joinFile, 'utf8'))
  const forged = encodeJoinCode({ ...real, secret: newSecret() })
  const file = join(dir, 'to-put.txt')
  await writeFile(file, 'some bytes')
  const runs: Array<Promise<void>> = []
  for (const [code, addr] of [[down, `/ip4/127.0.0.1/tcp/${port}`], [forged, real.addrs.map(a => a.decapsulateCode(421).toString()).join(', ')]]) {
    const sentence = new RegExp(`^grid: cannot reach the grid at ${addr.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: is it running, and is the join code current\\?$`)
    for (const args of [['submit', '--run', 'true'], ['submit', '--run', 'true', '--follow'], ['put', file], ['get', 'bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am'], ['tail', '0mwv1se3l2c9ee67a'], ['tail', '0mwv1se3l2c9ee67a.a1.s0']]) {
      runs.push(gridRun([...args, '--join', code]).then(result => oneLineError(result, sentence)))
    }
  }
  await Promise.all(runs)
})

cli('grid submit --follow says why its build waits, then how it ended', async (ctx) => {
  const follow = grid(['submit', '--join', ctx.joinFile, '--run', 'true', '--require', 'gpu=a100', '--follow'])
  ctx.children.push(follow)
  const id = (await follow.line(/^grid: build (\S+) queued$/m))[1]
  await follow.line(/^grid: waiting: no worker has gpu=a100$/m)
  await cancel(ctx, id)
  assert.is(await follow.exited, 1)
  const record = await finished(ctx, id)
  assert.is(record.status, 'cancelled')
  assert.match(follow.stderr(), new RegExp(`^grid: build ${id} cancelled${record.error !== undefined ? ': ' : '$'}`, 'm'))
  assert.is(follow.stdout(), '', 'stdout carries only the log')
})

cli('a followed build that never runs ends at once, with the error that decided it', async (ctx) => {
  // Its input build failed already: it fails at submit, with no attempt.
  const failed = await submit(ctx, { steps: [{ run: 'exit 3' }], artifacts: ['out'] })
  assert.is((await finished(ctx, failed)).status, 'failed')
  const job = join(ctx.dir, 'needs-failed.json')
  await writeFile(job, JSON.stringify({ steps: [{ run: 'cat in' }], inputs: { in: `build:${failed}/out` } }))
  const result = await gridRun(['submit', '--join', ctx.joinFile, job, '--follow'])
  assert.is(result.code, 1, result.stderr)
  const id = /^grid: build (\S+) queued$/m.exec(result.stderr)![1]
  const record = await finished(ctx, id)
  assert.is(record.status, 'failed')
  assert.is(record.attempts.length, 0)
  assert.type(record.error, 'string')
  assert.ok(result.stderr.split('\n').includes(`grid: build ${id} failed: ${record.error}`), result.stderr)
  assert.is(result.stdout, '')

  // Its input build is running when the follow starts, and fails while this one waits for it.
  const gate = join(ctx.dir, 'gate')
  const running = await submit(ctx, { steps: [{ run: `while [ ! -e ${gate} ]; do sleep 0.05; done; exit 3` }], artifacts: ['out'] })
  await writeFile(job, JSON.stringify({ steps: [{ run: 'cat in' }], inputs: { in: `build:${running}/out` } }))
  const follow = grid(['submit', '--join', ctx.joinFile, job, '--follow'])
  ctx.children.push(follow)
  await follow.line(new RegExp(`^grid: waiting: waiting for build ${running} \\((queued|running)\\)$`, 'm'))
  await writeFile(gate, '')
  assert.is(await follow.exited, 1)
  const waiter = /^grid: build (\S+) queued$/m.exec(follow.stderr())![1]
  const ended = await finished(ctx, waiter)
  assert.is(ended.status, 'failed')
  assert.ok(follow.stderr().split('\n').includes(`grid: build ${waiter} failed: ${ended.error}`), follow.stderr())
})

cli('grid tail says when an attempt is lost and why the build waits again', async (ctx) => {
  const worker = grid(['worker', '--join', ctx.joinFile, '--data', join(ctx.dir, 'doomed'), '--cap', 'pool=doomed', '--listen', 'none'])
  ctx.children.push(worker)
  await worker.line(/worker \S+ joined the grid/)
  const id = await submit(ctx, { requires: { pool: 'doomed' }, steps: [{ run: 'echo started; sleep 60' }], retries: 1 })
  const tail = grid(['tail', '--join', ctx.joinFile, id])
  ctx.children.push(tail)
  await tail.line(/^started$/m)
  worker.child.kill('SIGKILL')
  await tail.line(/^grid: attempt 1 ended lost: .+$/m)
  // Queued again: why it waits now (that attempt 1 was lost, or that no worker left can take it).
  await tail.line(/^grid: attempt 1 ended lost: .+\ngrid: waiting: .+$/m)
  const record = await api(ctx, `/api/builds/${id}`) as Build
  assert.ok(tail.stderr().split('\n').includes(`grid: attempt 1 ended lost: ${record.attempts[0].reason}`), tail.stderr())
  await cancel(ctx, id)
  await tail.exited
  assert.match(tail.stderr(), new RegExp(`^grid: build ${id} cancelled`, 'm'))
})

cli('Ctrl-C stops following, not the build, and says how to cancel it; grid cancel does', async (ctx) => {
  const follow = grid(['submit', '--join', ctx.joinFile, '--run', 'true', '--require', 'gpu=nowhere', '--follow'])
  ctx.children.push(follow)
  const id = (await follow.line(/^grid: build (\S+) queued$/m))[1]
  await follow.line(/^grid: waiting: no worker has gpu=nowhere$/m)
  follow.child.kill('SIGINT')
  assert.is(await follow.exited, 130)
  assert.ok(follow.stderr().split('\n').includes(`grid: stopped following; build ${id} goes on (grid cancel ${id} beside the coordinator cancels it)`), follow.stderr())
  assert.is((await api(ctx, `/api/builds/${id}`) as Build).status, 'queued')
  const cancelled = await gridRun(['cancel', id, '--data', ctx.data])
  assert.is(cancelled.code, 0, cancelled.stderr)
  assert.is(cancelled.stderr, `grid: build ${id} cancelled\n`)
  assert.is((await api(ctx, `/api/builds/${id}`) as Build).status, 'cancelled')
  oneLineError(await gridRun(['cancel', id, '--data', ctx.data]), new RegExp(`^grid: build ${id} already cancelled$`))
})

cli('a second worker on the same --data says the folder is in use, in one line, and exits (it used to hang)', async (ctx) => {
  const data = join(ctx.dir, 'shared-worker')
  const first = grid(['worker', '--join', ctx.joinFile, '--data', data, '--listen', '/ip4/127.0.0.1/tcp/0'])
  ctx.children.push(first)
  await first.line(/worker \S+ joined the grid/)
  const second = await gridRun(['worker', '--join', ctx.joinFile, '--data', data, '--listen', '/ip4/127.0.0.1/tcp/0'], undefined, 30_000)
  assert.is(second.code, 1)
  assert.is(second.stderr, `grid: ${join(data, 'worker', 'cache.db')} is in use by another grid process: give each worker, store and grid its own --data DIR\n`)
})

cli('a store apart says once that it joined the grid; its --pid-file names it until it stops', async (ctx) => {
  const pidFile = join(ctx.dir, 'store.pid')
  const store = grid(['store', '--join', ctx.joinFile, '--data', join(ctx.dir, 'apart'), '--listen', '/ip4/127.0.0.1/tcp/0', '--pid-file', pidFile])
  ctx.children.push(store)
  const peer = (await store.line(/^grid: store (12D3KooW\w+) joined the grid$/m, 30_000))[1]
  assert.is(await waitFor('the pid file', async () => await readFile(pidFile, 'utf8').catch(() => undefined)), `${store.child.pid}\n`)
  await waitFor('two stores in the grid', () => ctx.node.coordinator.stores.list().length === 2)
  assert.is(store.stderr(), `grid: store ${peer} joined the grid\n`)
  await store.stop()
  assert.is(await store.exited, 0)
  assert.is(store.stderr(), `grid: store ${peer} joined the grid\ngrid: SIGTERM: stopping\n`)
  assert.is(await readFile(pidFile, 'utf8').catch((err: any) => err.code), 'ENOENT', 'a clean exit removes the pid file')
  await waitFor('the store to leave the grid', () => ctx.node.coordinator.stores.list().length === 1)
})

// Last: it takes the grid's only store away.
cli('a log or content whose only store is unreachable is one line from grid tail and grid get', async (ctx) => {
  const id = await submit(ctx, { steps: [{ run: 'echo kept' }] })
  const build = await finished(ctx, id)
  assert.is(build.status, 'succeeded')
  const file = join(ctx.dir, 'kept.txt')
  await writeFile(file, 'kept bytes')
  const put = await gridRun(['put', '--join', ctx.joinFile, file])
  assert.is(put.code, 0, put.stderr)
  // The store dies; the coordinator still lists it (as it does until it notices a store that went silent).
  const gone = ctx.node.coordinator.stores.list()[0]
  await ctx.store.stop()
  await waitFor('the store to leave the grid', () => ctx.node.coordinator.stores.list().length === 0)
  ctx.node.coordinator.stores.add(gone)

  oneLineError(await gridRun(['tail', '--join', ctx.joinFile, build.steps[0].log]), /^grid: no store holding log /)
  oneLineError(await gridRun(['get', '--join', ctx.joinFile, put.stdout.trim()]), /^grid: /)
  const whole = await gridRun(['tail', '--join', ctx.joinFile, id])
  assert.ok(whole.code !== 0)
  assert.not.match(whole.stderr, /unexpected error|\bat .+:\d+:\d+/)
  assert.match(whole.stderr.trim().split('\n').at(-1)!, /^grid: no store holding log /)
})

cli.run()

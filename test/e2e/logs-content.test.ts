// Logs as content: a step's log is sealed into blocks on its store and named by a CID the worker computed itself;
// a tailer in another process gets every byte in order and the same bytes the CID names; the per-step log limit;
// bytes that are not text; and bad input to the append, seal and tail paths.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { grid as gridCli, gridRun, startTestGrid, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import type { Build } from '../../grid/build.ts'
import { nameContent } from '../../grid/content.ts'
import type { CID } from 'multiformats/cid'
import { createHost } from '../../net/host.ts'
import type { GridHost } from '../../net/host.ts'
import { openStream } from '../../net/dial.ts'
import { MessageChannel } from '../../net/wire.ts'
import { loadIdentity } from '../../net/identity.ts'
import { issueGrant } from '../../grid/write-grant.ts'
import { attemptId, logId } from '../../grid/ids.ts'
import { LOG_APPEND_PROTOCOL, appendReply } from '../../protocols/log-append.ts'
import type { AppendReply, AppendRequest } from '../../protocols/log-append.ts'
import { LOG_READ_PROTOCOL, readReply } from '../../protocols/log-read.ts'
import type { ReadReply, ReadRequest } from '../../protocols/log-read.ts'
import { DEFAULT_LOG_LIMIT_BYTES } from '../../grid/constants.ts'
import { LogReader } from '../../client/log-reader.ts'

interface Ctx {
  grid: TestGrid
  client: GridHost
}

const logs = suite<Ctx>('logs as content', {} as Ctx)

logs.before(async ctx => {
  ctx.grid = await startTestGrid()
  ctx.client = await createHost({ identity: await generateKeyPair('Ed25519'), secret: ctx.grid.node.secret.current, listen: [] })
})

logs.after(async ctx => {
  await ctx.client?.stop()
  await ctx.grid?.stop()
})

/** The CID content of these bytes has, computed here the way the grid names content. */
async function cidOf (bytes: Uint8Array): Promise<string> {
  return (await nameContent([bytes])).cid.toString()
}

const sha = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex')

async function fetchBytes (grid: TestGrid, path: string): Promise<Uint8Array> {
  const res = await grid.api(path)
  assert.is(res.status, 200, `${path} answered ${res.status}`)
  return new Uint8Array(await res.arrayBuffer())
}

const lines = (from: number, to: number): string => {
  let text = ''
  for (let i = from; i < to; i++) text += `line-${i} ${'.'.repeat(60)}\n`
  return text
}

logs('a tailer in another process gets the backlog, then live lines, in order, and exits when the build ends; its bytes are the sealed log\'s CID', async ({ grid }) => {
  const go = join(grid.dir, `go-${Date.now()}`)
  // The step prints a first half, waits (bounded) for the test's word, then prints the second half.
  const run = `i=0; while [ $i -lt 2000 ]; do echo "line-$i ${'.'.repeat(60)}"; i=$((i+1)); done; ` +
    `n=0; while [ ! -e ${go} ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done; ` +
    `while [ $i -lt 4000 ]; do echo "line-$i ${'.'.repeat(60)}"; i=$((i+1)); done`
  const id = await grid.submit({ steps: [{ name: 'count', run }] })
  const log = await waitFor('the step to start', async () => {
    const build = await (await grid.api(`/api/builds/${id}`)).json() as Build
    return build.steps[0]?.started !== undefined ? build.steps[0].log : undefined
  })
  await waitFor('the first half in the store', async () => (await (await grid.api(`/api/logs/${log}`)).text()).includes('line-1999 '))

  const tailer = gridCli(['tail', '--join', join(grid.dir, 'join'), id])
  try {
    await tailer.line(/line-1999 /, 30_000)
    assert.not.ok(tailer.stdout().includes('line-2000 '), 'the second half is not printed yet: the first came as backlog')
    await writeFile(go, '')
    assert.is(await tailer.exited, 0, tailer.stderr())
  } finally {
    await tailer.stop()
  }
  const build = await grid.finished(id)
  assert.is(build.status, 'succeeded')
  const expected = lines(0, 4000)
  const header = '--- step 1/1: count ---\n'
  assert.ok(tailer.stdout().startsWith(header), 'the tail starts with the step header')
  const tailed = tailer.stdout().slice(header.length)
  assert.is(sha(tailed), sha(expected), 'the tailer printed every line once, in order')
  assert.is(build.steps[0].logCid, await cidOf(new TextEncoder().encode(expected)), 'the worker reported the CID of what it wrote')
  const sealed = await fetchBytes(grid, `/api/artifacts/${build.steps[0].logCid}`)
  assert.is(sha(sealed), sha(tailed), 'the tailer\'s bytes are the sealed log\'s')
})

logs('followers of a step printing flat out (whole blocks kept as content as they come) get every byte in order, live', async ({ grid, client }) => {
  const go = join(grid.dir, `go-flat-${Date.now()}`)
  const line = 'y'.repeat(79) + '\n'
  // 24 MiB of 80-byte lines, in 64 KiB writes: the worker sends most of it as whole blocks, several at a time.
  const lines = Math.floor(24 * 1024 * 1024 / 80)
  const script = `const fs = require('node:fs'); let n = 0; while (!fs.existsSync(${JSON.stringify(go)}) && n++ < 1200) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50); ` +
    `const b = Buffer.from(${JSON.stringify(line)}.repeat(819)); let i = 0; const more = () => { while (i * 819 < ${lines}) { const part = i * 819 + 819 > ${lines} ? b.subarray(0, (${lines} - i * 819) * 80) : b; i++; if (!process.stdout.write(part)) return process.stdout.once('drain', more) } }; more()`
  await writeFile(join(grid.dir, 'flat.js'), script)
  const id = await grid.submit({ steps: [{ run: `${process.execPath} ${join(grid.dir, 'flat.js')}` }], logLimit: 64 * 1024 * 1024 })
  const log = logId(attemptId(id, 1), 0)
  const reader = new LogReader({ host: client, stores: () => grid.node.coordinator.stores.list() })
  const followers = [0, 1].map(async () => {
    let at = 0
    let wrong = -1
    for await (const chunk of reader.read(log, { follow: true })) {
      for (let i = 0; i < chunk.length && wrong < 0; i++) if (chunk[i] !== ((at + i) % 80 === 79 ? 10 : 121)) wrong = at + i
      at += chunk.length
    }
    return { at, wrong }
  })
  // Both are waiting on the log before its first byte.
  await new Promise(resolve => setTimeout(resolve, 300))
  await writeFile(go, '')
  const build = await grid.finished(id)
  assert.is(build.status, 'succeeded')
  for (const { at, wrong } of await Promise.all(followers)) {
    assert.is(at, lines * 80, 'every byte')
    assert.is(wrong, -1, 'each where it belongs')
  }
  assert.is(build.steps[0].logCid, await cidOf(new TextEncoder().encode(line.repeat(lines))))
})

logs('every step of a build gets a logCid, and the CID is fetchable with grid get', async ({ grid }) => {
  const id = await grid.submit({ steps: [{ run: 'echo one' }, { run: 'true' }, { run: 'printf "no newline"' }] })
  const build = await grid.finished(id)
  assert.is(build.status, 'succeeded')
  const texts = ['one\n', '', 'no newline']
  for (const [i, text] of texts.entries()) {
    assert.is(build.steps[i].logCid, await cidOf(new TextEncoder().encode(text)), `step ${i + 1}`)
  }
  const got = await gridRun(['get', '--join', join(grid.dir, 'join'), build.steps[0].logCid!])
  assert.is(got.code, 0, got.stderr)
  assert.is(got.stdout, 'one\n')
})

logs('past the job\'s logLimit the step\'s log ends with one line saying so; the step runs on and its exit code is reported', async ({ grid }) => {
  // 50 MB after the limit: the worker reads and drops it, so the step cannot block on a full pipe.
  const run = 'head -c 5000 /dev/zero | tr "\\0" a; head -c 50000000 /dev/zero; echo done >&2; exit 3'
  const id = await grid.submit({ steps: [{ name: 'chatty', run }], logLimit: 1000 })
  const build = await grid.finished(id)
  assert.is(build.status, 'failed')
  assert.is(build.steps[0].exitCode, 3)
  const expected = 'a'.repeat(1000) + '\ngrid: log limit of 1000 bytes reached; further output of this step is dropped\n'
  const log = new TextDecoder().decode(await fetchBytes(grid, `/api/logs/${build.steps[0].log}`))
  assert.is(log, expected)
  assert.is(build.steps[0].logCid, await cidOf(new TextEncoder().encode(expected)))
})

logs('a job\'s logLimit is checked on submit with a clear message', async ({ grid }) => {
  for (const [logLimit, message] of [[0, /logLimit: must be at least 1 byte/], [1.5, /logLimit: must be a whole number/], [2 ** 31, /logLimit: must be at most 1073741824 bytes/], ['1k', /logLimit: must be a number/]] as const) {
    const res = await grid.api('/api/builds', { method: 'POST', headers: { authorization: `Bearer ${grid.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ steps: [{ run: 'true' }], logLimit }) })
    assert.is(res.status, 400)
    assert.match(((await res.json()) as { error: string }).error, message)
  }
  assert.ok(DEFAULT_LOG_LIMIT_BYTES === 100 * 1024 * 1024, 'the default is GitLab\'s 100 MiB')
})

logs('binary output and a single 10 MB line pass through byte-exact', async ({ grid }) => {
  const script = 'const b = Buffer.alloc(256 * 1000); for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 8)) & 255; ' +
    'process.stdout.write(b); process.stdout.write(Buffer.alloc(10 * 1000 * 1000, 120)); process.stdout.write("\\n")'
  const expected = Buffer.alloc(256 * 1000 + 10 * 1000 * 1000 + 1, 120)
  for (let i = 0; i < 256 * 1000; i++) expected[i] = (i * 7 + (i >> 8)) & 255
  expected[expected.length - 1] = 10
  const id = await grid.submit({ steps: [{ run: `${process.execPath} -e '${script}'` }] })
  const build = await grid.finished(id)
  assert.is(build.status, 'succeeded', JSON.stringify(build.steps))
  const log = await fetchBytes(grid, `/api/logs/${build.steps[0].log}`)
  assert.is(log.length, expected.length)
  assert.is(sha(log), sha(expected))
  assert.is(build.steps[0].logCid, await cidOf(expected))
  assert.is(sha(await fetchBytes(grid, `/api/artifacts/${build.steps[0].logCid}`)), sha(expected))
})

async function appendChannel (ctx: Ctx): Promise<MessageChannel<AppendReply, AppendRequest>> {
  const store = ctx.grid.node.coordinator.stores.list()[0]
  return new MessageChannel<AppendReply, AppendRequest>(await openStream(ctx.client, store, LOG_APPEND_PROTOCOL), appendReply)
}

logs('a seal at the wrong size is answered with the size the store holds and changes nothing; sealing twice gives the same CID', async ctx => {
  const attempt = attemptId(`badseal${Date.now().toString(36)}`, 1)
  const log = logId(attempt, 0)
  const grant = await issueGrant(await loadIdentity(ctx.grid.dir), attempt, ctx.client.peerId.toString())
  const channel = await appendChannel(ctx)
  try {
    await channel.send({ t: 'append', log, offset: 0, bytes: new TextEncoder().encode('0123456789'), grant })
    assert.equal(await channel.expect(), { t: 'ok', size: 10 })
    for (const size of [5, 11]) {
      await channel.send({ t: 'seal', log, size, grant })
      assert.equal(await channel.expect(), { t: 'gap', size: 10 }, `a seal at ${size}`)
    }
    const store = ctx.grid.node.store!
    assert.is((await store.logs.info(log))?.sealed, false, 'still open')
    await channel.send({ t: 'append', log, offset: 10, bytes: new TextEncoder().encode('ab'), grant })
    assert.equal(await channel.expect(), { t: 'ok', size: 12 }, 'appends go on')
    const cid = await cidOf(new TextEncoder().encode('0123456789ab'))
    for (let i = 0; i < 2; i++) {
      await channel.send({ t: 'seal', log, size: 12, grant })
      assert.equal(await channel.expect(), { t: 'sealed', size: 12, cid }, `seal ${i + 1}`)
    }
    await channel.send({ t: 'seal', log, size: 13, grant })
    assert.equal(await channel.expect(), { t: 'gap', size: 12 })
    assert.is((await store.logs.info(log))?.cid, cid, 'the sealed log keeps its CID')
  } finally {
    channel.abort(new Error('test done'))
  }
})

logs('a seal or an append from a peer without a grant is refused and changes nothing', async ctx => {
  const attempt = attemptId(`nogrant${Date.now().toString(36)}`, 1)
  const log = logId(attempt, 0)
  // A grant the coordinator made for someone else, then one signed by a key that is not the coordinator's.
  const forOther = await issueGrant(await loadIdentity(ctx.grid.dir), attempt, (await generateKeyPair('Ed25519')).publicKey.toString())
  const forged = await issueGrant(await generateKeyPair('Ed25519'), attempt, ctx.client.peerId.toString())
  for (const grant of [forOther, forged]) {
    for (const request of [{ t: 'seal', log, size: 0, grant }, { t: 'append', log, offset: 0, bytes: new Uint8Array(3), grant }] as AppendRequest[]) {
      const channel = await appendChannel(ctx)
      await channel.send(request)
      const reply = await channel.expect()
      assert.is(reply.t, 'error')
      assert.match((reply as { error: string }).error, /no write grant for log/)
      channel.abort(new Error('test done'))
    }
  }
  assert.is(await ctx.grid.node.store!.logs.info(log), undefined, 'the store never heard of the log')
})

logs('tailing an unknown log: grid tail says so; the store says it does not know it and creates nothing', async ctx => {
  const unknownBuild = await gridRun(['tail', '--join', join(ctx.grid.dir, 'join'), 'zzzzzzzzzzzz.a1.s0'])
  assert.is.not(unknownBuild.code, 0)
  assert.match(unknownBuild.stderr, /no build zzzzzzzzzzzz/)
  const id = await ctx.grid.submit({ steps: [{ run: 'true' }] })
  await ctx.grid.finished(id)
  const unrun = logId(attemptId(id, 1), 7)
  const noSuchStep = await gridRun(['tail', '--join', join(ctx.grid.dir, 'join'), unrun])
  assert.is.not(noSuchStep.code, 0)
  assert.ok(noSuchStep.stderr.includes(`build ${id} has no log ${unrun}`), noSuchStep.stderr)

  const store = ctx.grid.node.coordinator.stores.list()[0]
  const log = logId(attemptId(id, 9), 9)
  for (const request of [{ t: 'stat', log }, { t: 'read', log, from: 0, follow: false }] as ReadRequest[]) {
    const channel = new MessageChannel<ReadReply, ReadRequest>(await openStream(ctx.client, store, LOG_READ_PROTOCOL), readReply)
    await channel.send(request)
    const reply = await channel.expect()
    assert.equal(reply, request.t === 'stat' ? { t: 'info', known: false, size: 0, sealed: false } : { t: 'end', size: 0, sealed: false })
    channel.abort(new Error('test done'))
  }
  assert.is(await ctx.grid.node.store!.logs.info(log), undefined)
})

logs.run()

// The `grid` command as users run it: separate processes talking over TCP loopback.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, spawnSync } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { ROOT, grid, gridRun, oneLineError, processGone, removeDir, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'
import { rejection } from '../wait.ts'
import { decodeJoinCode, encodeJoinCode, newSecret } from '../../net/join-code.ts'
import { loadIdentity } from '../../net/identity.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'

interface Ctx {
  dir: string
  up: CliProcess
  url: string
  joinFile: string
  worker?: CliProcess
}

const cli = suite<Ctx>('grid command')

/** Where grid up notes its PID (--pid-file). */
const upPidFile = (dir: string): string => join(dir, 'up.pid')

cli.before(async ctx => {
  ctx.dir = await tempDir('cli')
  ctx.up = grid(['up', '--data', join(ctx.dir, 'data'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--max-size', '64M', '--pid-file', upPidFile(ctx.dir)])
  ctx.url = (await ctx.up.line(/^web: (http:\/\/\S+)$/m, 30_000))[1]
  await ctx.up.line(/^join: grid1-\S+$/m)
  ctx.joinFile = join(ctx.dir, 'data', 'join-trusted')
})

cli.after(async ctx => {
  await ctx.worker?.stop()
  await ctx.up?.stop()
  await removeDir(ctx.dir)
})

async function build (url: string, id: string): Promise<Build> {
  return await (await fetch(`${url}/api/builds/${id}`)).json() as Build
}

async function finished (url: string, id: string): Promise<Build> {
  return await waitFor(`build ${id}`, async () => {
    const b = await build(url, id)
    return FINISHED.has(b.status) ? b : undefined
  }, 30_000)
}

cli('grid up prints web: and join:, and keeps the join code and API token in DATA with mode 0600', async ({ up, dir, url }) => {
  const printed = /^join: (\S+)$/m.exec(up.stdout())![1]
  const data = join(dir, 'data')
  // What it says at start, each thing once: the two lines the README shows on stdout, then on stderr its worker's
  // joining, said by the coordinator alone (the worker beside it does not say it again).
  const worker = peerIdFromPrivateKey(await loadIdentity(join(data, 'workers', '1'))).toString()
  await up.line(/joined the grid/)
  await waitFor('the pid file', async () => await readFile(upPidFile(dir), 'utf8').catch(() => undefined))
  assert.is(up.stdout(), `web: ${url}\njoin: ${printed}\n`)
  assert.is(up.stderr(), `grid: worker ${worker} joined the grid with 1 slot(s)\n`)
  assert.is(await readFile(upPidFile(dir), 'utf8'), `${up.child.pid}\n`)
  assert.is((await readFile(join(data, 'join'), 'utf8')).trim(), printed)
  const token = (await readFile(join(data, 'api-token'), 'utf8')).trim()
  assert.ok(token.length >= 32)
  // Only the ordinary code is printed; the trusted one (the same grid, plus the trust key) sits beside it.
  const trusted = decodeJoinCode(await readFile(join(data, 'join-trusted'), 'utf8'))
  assert.ok(trusted.trust !== undefined)
  assert.equal(trusted.secret, decodeJoinCode(printed).secret)
  for (const file of ['join', 'join-trusted', 'trust', 'api-token', 'identity.key', 'secret']) {
    assert.is((await stat(join(data, file))).mode & 0o777, 0o600, `${file} is private`)
  }
  assert.equal(await (await fetch(`${url}/api/health`)).json(), { ok: true })
  // --max-size reaches the store grid up runs: it tells the grid its cap.
  const capped = await waitFor('the store\'s cap in /api/capacity', async () => {
    const capacity = await (await fetch(`${url}/api/capacity`)).json() as { storage?: { stores: Array<{ maxBytes?: number }> } }
    return capacity.storage?.stores.find(s => s.maxBytes !== undefined)
  }, 10_000)
  assert.is(capped.maxBytes, 64 * 1024 * 1024)
  assert.is(decodeJoinCode(printed).secret.length, 32)
  assert.not.match(up.stdout(), /^(?!web: |join: ).+$/m, 'stdout carries only the web: and join: lines')
})

cli('a worker started as its own process joins, shows in capacity, and runs builds that require its --cap', async (ctx) => {
  ctx.worker = grid(['worker', '--join', ctx.joinFile, '--data', join(ctx.dir, 'w2'), '--cap', 'gpu=rtx', '--cap', 'pool=remote'])
  const peer = (await ctx.worker.line(/worker (12D3KooW\w+) joined the grid/))[1]
  const capacity = await waitFor('two workers in capacity', async () => {
    const c = await (await fetch(`${ctx.url}/api/capacity`)).json()
    return c.nodes === 2 ? c : undefined
  })
  const group = capacity.groups.find((g: any) => g.capabilities.gpu === 'rtx')
  assert.ok(group !== undefined, 'the worker\'s --cap is announced')
  assert.is(group.capabilities.os, process.platform, 'detected capabilities are there too')
  assert.ok(Number(group.capabilities.cpus) >= 1)
  assert.not.ok(JSON.stringify(capacity).includes(peer), 'capacity is not a roster: no peer IDs')

  const submitted = await gridRun(['submit', '--join', ctx.joinFile, '--run', 'echo on the gpu box', '--require', 'gpu=rtx'])
  assert.is(submitted.code, 0, submitted.stderr)
  const id = submitted.stdout.trim()
  assert.match(id, /^[0-9a-z]+$/, 'stdout is the build id alone')
  const done = await finished(ctx.url, id)
  assert.is(done.status, 'succeeded')
  assert.is(done.attempts[0].worker, peer, 'history names the worker that ran it')
  assert.is(await (await fetch(`${ctx.url}/api/logs/${done.steps[0].log}`)).text(), 'on the gpu box\n')
})

cli('grid submit --follow streams the log and exits 0 on success, 1 on failure', async ({ joinFile }) => {
  const ok = await gridRun(['submit', '--join', joinFile, '--run', 'echo alpha; sleep 0.5; echo beta', '--follow'])
  assert.is(ok.code, 0, ok.stderr)
  assert.is(ok.stdout, '--- step 1/1: run ---\nalpha\nbeta\n')
  const bad = await gridRun(['submit', '--join', joinFile, '--run', 'echo broken; exit 4', '--follow'])
  assert.is(bad.code, 1)
  assert.match(bad.stdout, /broken\n/)
  assert.match(bad.stderr, /failed/)
})

cli('grid submit takes a job file; grid tail prints a finished build\'s log', async ({ dir, joinFile, url }) => {
  const file = join(dir, 'job.json')
  await writeFile(file, JSON.stringify({ name: 'from a file', steps: [{ name: 'a', run: 'echo from-file' }, { name: 'b', run: 'echo second' }] }))
  const submitted = await gridRun(['submit', '--join', joinFile, file])
  assert.is(submitted.code, 0, submitted.stderr)
  const id = submitted.stdout.trim()
  assert.is((await finished(url, id)).status, 'succeeded')
  const tail = await gridRun(['tail', '--join', joinFile, id])
  assert.is(tail.code, 0, tail.stderr)
  assert.is(tail.stdout, '--- step 1/2: a ---\nfrom-file\n--- step 2/2: b ---\nsecond\n')
  const b = await build(url, id)
  const one = await gridRun(['tail', '--join', joinFile, b.steps[1].log, '--from', '3'])
  assert.is(one.stdout, 'ond\n')
})


cli('bad arguments end with one clear line and a non-zero exit', async ({ dir, joinFile }) => {
  oneLineError(await gridRun(['worker']), /--join/)
  oneLineError(await gridRun(['worker', '--join', 'grid1-garbage']), /join code is damaged/)
  oneLineError(await gridRun(['worker', '--join', join(dir, 'missing-file')]), /neither a join code nor a readable file/)
  oneLineError(await gridRun(['worker', '--join', joinFile, '--cap', 'novalue']), /KEY=VALUE/)
  oneLineError(await gridRun(['worker', '--join', joinFile, '--slots', '0']), /slots/)
  oneLineError(await gridRun(['up', '--workers', 'lots']), /workers/)
  oneLineError(await gridRun(['up', '--http', 'nowhere']), /HOST:PORT/)
  oneLineError(await gridRun(['up', '--max-size', 'lots']), /expected a size such as 500M/)
  oneLineError(await gridRun(['frobnicate']), /^grid: unknown command 'frobnicate'$/)
  oneLineError(await gridRun(['submit', '--join', joinFile]), /^grid: nothing to build: give a job file/)
  oneLineError(await gridRun(['submit', '--join', joinFile, join(dir, 'nope.json')]), /cannot read/)
  const notJson = join(dir, 'bad.json')
  await writeFile(notJson, '{ nope')
  oneLineError(await gridRun(['submit', '--join', joinFile, notJson]), /not JSON/)
  const noSteps = join(dir, 'empty.json')
  await writeFile(noSteps, '{"steps": []}')
  oneLineError(await gridRun(['submit', '--join', joinFile, noSteps]), /at least one step/)
  oneLineError(await gridRun(['tail', '--join', joinFile, '../../etc/passwd']), /neither a build id nor a log id/)
  oneLineError(await gridRun(['tail', '--join', joinFile, '0mwv1se3l2c9ee67a']), /no build 0mwv1se3l2c9ee67a/)
})

cli('an unreachable grid is one line, not a hang', async () => {
  // A port that was free a moment ago: nothing listens there.
  const port = await new Promise<number>(resolve => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as any).port; s.close(() => resolve(p)) })
  })
  const code = encodeJoinCode({ secret: newSecret(), coordinator: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), addrs: [multiaddr(`/ip4/127.0.0.1/tcp/${port}`)] })
  oneLineError(await gridRun(['submit', '--join', code, '--run', 'true']), /cannot reach/)
})

cli('a worker started through npx in the background stops by the PID in its --pid-file, and leaves the grid', async ({ dir, joinFile, up, url }) => {
  const pidFile = join(dir, 'worker.pid')
  const nodes = async (): Promise<number> => (await (await fetch(`${url}/api/capacity`)).json()).nodes
  const before = await nodes()
  // Left by a worker that is gone: replaced, not refused.
  const gone = spawnSync('true').pid!
  await writeFile(pidFile, `${gone}\n`)
  // As `npx grid worker … &` runs it: npm's process stands between the shell's $! and the worker.
  const npx = spawn('npx', ['grid', 'worker', '--join', joinFile, '--data', join(dir, 'npx-worker'), '--listen', 'none', '--pid-file', pidFile], { cwd: ROOT, env: { ...process.env, FORCE_COLOR: '0' } })
  let stderr = ''
  npx.stderr.on('data', d => { stderr += d })
  const exited = new Promise<number | string>(resolve => npx.on('exit', (code, signal) => resolve(code ?? signal ?? -1)))
  let pid: number | undefined
  try {
    const peer = (await waitFor('the worker to join', () => /^grid: worker (12D3KooW\w+) joined the grid with 1 slot\(s\)$/m.exec(stderr) ?? undefined, 60_000))[1]
    pid = Number(await waitFor('the pid file', async () => {
      const text = await readFile(pidFile, 'utf8').catch(() => '')
      return text !== `${gone}\n` && /^\d+\n$/.test(text) ? text : undefined
    }))
    assert.ok(pid !== npx.pid, '$! (npm) is not the worker')
    assert.match(await readFile(`/proc/${pid}/cmdline`, 'utf8'), /\bgrid(\.js)?\0worker\0/)
    await up.line(new RegExp(`^grid: worker ${peer} joined the grid with 1 slot\\(s\\)$`, 'm'))

    process.kill(pid, 'SIGTERM')
    await waitFor('the worker process to exit', async () => await processGone(pid!), 30_000)
    assert.is(await exited, 0, stderr)
    await up.line(new RegExp(`^grid: worker ${peer} left the grid with 0 build\\(s\\) running$`, 'm'))
    await waitFor('the grid to count the workers it had before', async () => await nodes() === before)
    assert.is((await rejection(readFile(pidFile))).code, 'ENOENT', 'the pid file is removed when the worker exits')
  } finally {
    if (pid !== undefined && !await processGone(pid)) process.kill(pid, 'SIGKILL')
    if (npx.exitCode === null && npx.signalCode === null) npx.kill('SIGKILL')
  }
})

cli('a node without the grid\'s secret cannot get in', async ({ joinFile }) => {
  const real = decodeJoinCode(await readFile(joinFile, 'utf8'))
  const forged = encodeJoinCode({ ...real, secret: newSecret() })
  oneLineError(await gridRun(['submit', '--join', forged, '--run', 'true']), /cannot reach/)
})

cli('SIGTERM stops grid up cleanly, and its identity survives a restart', async (ctx) => {
  await ctx.worker?.stop()
  ctx.worker = undefined
  const before = decodeJoinCode(await readFile(ctx.joinFile, 'utf8')).coordinator.toString()
  await ctx.up.stop()
  assert.is(await ctx.up.exited, 0)
  assert.is((await rejection(readFile(upPidFile(ctx.dir)))).code, 'ENOENT', 'a clean exit removes the pid file')
  ctx.up = grid(['up', '--data', join(ctx.dir, 'data'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--workers', '0'])
  await ctx.up.line(/^join: /m, 30_000)
  assert.is(decodeJoinCode(await readFile(ctx.joinFile, 'utf8')).coordinator.toString(), before)
})

cli.run()

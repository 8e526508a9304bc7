// Replicated logs with every role in its own process: a coordinator (--replicas 2), two `grid store --join`
// and a `grid worker`. The store a step's log is being written to (and a tailer is reading from) is SIGKILLed
// mid-step: the worker goes on with the other replica, the tailer goes on from the byte it reached on the other
// holder, and no line is lost, repeated or reordered; the log's CID names exactly what the step printed.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { grid, removeDir, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { nameContent } from '../../grid/content.ts'
import type { CID } from 'multiformats/cid'
import { placeFor, rankFor } from '../../grid/placement.ts'

interface Ctx {
  dir: string
  procs: CliProcess[]
}

const replicas = suite<Ctx>('replicated logs, roles apart', {} as Ctx)

replicas.before(async ctx => {
  ctx.dir = await tempDir('logs-replicas')
  ctx.procs = []
})

replicas.after(async ctx => {
  for (const p of ctx.procs.reverse()) await p.stop()
  await removeDir(ctx.dir)
})

async function cidOf (bytes: Uint8Array): Promise<string> {
  return (await nameContent([bytes])).cid.toString()
}

const sha = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex')

replicas('SIGKILL the store a step\'s log is written to and tailed from, mid-step: nothing is lost', async ctx => {
  const coordinator = grid(['coordinator', '--data', join(ctx.dir, 'c'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--replicas', '2'])
  ctx.procs.push(coordinator)
  const url = (await coordinator.line(/^web: (\S+)$/m, 30_000))[1]
  await coordinator.line(/^join: /m)
  const joinFile = join(ctx.dir, 'c', 'join')
  const token = (await readFile(join(ctx.dir, 'c', 'api-token'), 'utf8')).trim()

  const stores = new Map<string, CliProcess>()
  for (const name of ['s1', 's2']) {
    const store = grid(['store', '--join', joinFile, '--data', join(ctx.dir, name), '--listen', '/ip4/127.0.0.1/tcp/0'])
    ctx.procs.push(store)
    stores.set((await store.line(/store (12D3KooW\w+) joined the grid/, 30_000))[1], store)
  }
  await waitFor('both stores in capacity', async () => (await (await fetch(`${url}/api/capacity`)).json()).stores === 2, 15_000)
  const worker = grid(['worker', '--join', joinFile, '--data', join(ctx.dir, 'w')])
  ctx.procs.push(worker)
  await worker.line(/joined the grid/, 30_000)

  const go = join(ctx.dir, 'go')
  const line = (i: number): string => `line-${i} ${'.'.repeat(70)}\n`
  const run = `i=0; while [ $i -lt 3000 ]; do echo "line-$i ${'.'.repeat(70)}"; i=$((i+1)); done; ` +
    `n=0; while [ ! -e ${go} ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done; ` +
    `while [ $i -lt 6000 ]; do echo "line-$i ${'.'.repeat(70)}"; i=$((i+1)); done`
  const res = await fetch(`${url}/api/builds`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ steps: [{ name: 'count', run }] }) })
  assert.is(res.status, 201)
  const { id } = await res.json() as { id: string }
  const log = await waitFor('the step to start', async () => {
    const build = await (await fetch(`${url}/api/builds/${id}`)).json() as Build
    return build.steps[0]?.started !== undefined ? build.steps[0].log : undefined
  }, 30_000)
  await waitFor('the first half on the stores', async () => (await (await fetch(`${url}/api/logs/${log}`)).text()).includes('line-2999 '), 30_000)

  // The tailer reads the log's first-ranked holder: the store about to be killed.
  const tailer = grid(['tail', '--join', joinFile, log])
  ctx.procs.push(tailer)
  await tailer.line(/line-2999 /, 30_000)
  const peers = [...stores.keys()].map(peer => ({ peer, addrs: [] }))
  assert.is(placeFor(log, peers, 2).length, 2, 'both stores hold the log')
  const victim = rankFor(log, peers)[0].peer
  const survivor = rankFor(log, peers)[1].peer
  stores.get(victim)!.child.kill('SIGKILL')
  await stores.get(victim)!.exited
  await writeFile(go, '')

  const build = await waitFor('the build', async () => {
    const b = await (await fetch(`${url}/api/builds/${id}`)).json() as Build
    return FINISHED.has(b.status) ? b : undefined
  }, 60_000)
  assert.is(build.status, 'succeeded')
  assert.is(await tailer.exited, 0, tailer.stderr())

  let expected = ''
  for (let i = 0; i < 6000; i++) expected += line(i)
  const expectedBytes = new TextEncoder().encode(expected)
  assert.is(sha(tailer.stdout()), sha(expected), 'the tailer printed every line once, in order, across the holder\'s death')
  assert.match(tailer.stderr(), new RegExp(`lost store ${victim}`))
  assert.is(build.steps[0].logCid, await cidOf(expectedBytes), 'the CID names what the step printed')
  const whole = await (await fetch(`${url}/api/logs/${log}`)).text()
  assert.is(sha(whole), sha(expected), 'the surviving store holds the whole log')
  const content = new Uint8Array(await (await fetch(`${url}/api/artifacts/${build.steps[0].logCid}`)).arrayBuffer())
  assert.is(sha(content), sha(expected), `the sealed log is fetchable by its CID from ${survivor}`)
  assert.match(worker.stderr() + worker.stdout(), new RegExp(`store ${victim} dropped`))
})

replicas.run()

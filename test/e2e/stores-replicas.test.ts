// Issue #7's must-show: a coordinator, three store nodes and a worker, each its own `grid` process. A put file
// and a build's artifacts stay byte-identical after one store is SIGKILLed, and again after a new store joined,
// repair ran, and a second original store was SIGKILLed.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { grid, gridRun, removeDir, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { placeFor } from '../../grid/placement.ts'

interface Storage { replicas: number, roots: number, underReplicated: number, unavailable: number, repairing: number, stores: Array<{ peer: string, bytes: number, roots: number }> }

const replicas = suite<{ dir: string, procs: CliProcess[] }>('stores: replicas and repair across processes')

replicas.before(async ctx => {
  ctx.dir = await tempDir('replicas')
  ctx.procs = []
})

replicas.after(async ctx => {
  for (const p of ctx.procs.reverse()) await p.stop()
  await removeDir(ctx.dir)
})

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

replicas('a put file and a build\'s artifacts survive SIGKILLed stores, with repair in between', async ctx => {
  const coordinator = grid(['coordinator', '--data', join(ctx.dir, 'c'), '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--replicas', '2'])
  ctx.procs.push(coordinator)
  const url = (await coordinator.line(/^web: (\S+)$/m, 30_000))[1]
  await coordinator.line(/^join: /m)
  const joinFile = join(ctx.dir, 'c', 'join')
  const storage = async (): Promise<Storage> => (await (await fetch(`${url}/api/capacity`)).json()).storage

  const stores = new Map<string, CliProcess>()
  const startStore = async (name: string): Promise<string> => {
    const p = grid(['store', '--join', joinFile, '--data', join(ctx.dir, name), '--listen', '/ip4/127.0.0.1/tcp/0'])
    ctx.procs.push(p)
    const peer = (await p.line(/store (12D3KooW\w+) joined the grid/, 30_000))[1]
    stores.set(peer, p)
    return peer
  }
  for (const name of ['s1', 's2', 's3']) await startStore(name)
  await waitFor('three stores', async () => (await storage()).stores.length === 3, 15_000)

  const worker = grid(['worker', '--join', joinFile, '--data', join(ctx.dir, 'w')])
  ctx.procs.push(worker)
  await worker.line(/joined the grid/, 30_000)

  // A file of several blocks, put with the CLI: the CID is printed once both replicas hold it.
  const file = join(ctx.dir, 'input.bin')
  const bytes = new Uint8Array(randomBytes(3 * 1024 * 1024 + 12345))
  await writeFile(file, bytes)
  const put = await gridRun(['put', '--join', joinFile, file])
  assert.is(put.code, 0, put.stderr)
  const cid = put.stdout.trim()
  assert.match(put.stderr, /on 2 store\(s\)/)

  // A build with two artifacts, one of several blocks.
  const submitted = await gridRun(['submit', '--join', joinFile, '--run', 'head -c 2500000 /dev/urandom > big.bin && echo small > small.txt', '--artifact', '*.bin', '--artifact', '*.txt'])
  assert.is(submitted.code, 0, submitted.stderr)
  const id = submitted.stdout.trim()
  const build = await waitFor('the build', async () => {
    const b = await (await fetch(`${url}/api/builds/${id}`)).json() as Build
    return FINISHED.has(b.status) ? b : undefined
  }, 60_000)
  assert.is(build.status, 'succeeded', JSON.stringify(build))
  assert.is(build.artifacts.length, 2)
  const wanted = [{ cid, sha256: sha256(bytes) }, ...build.artifacts.map(a => ({ cid: a.cid, sha256: a.sha256 }))]

  await waitFor('every root on two stores', async () => {
    const s = await storage()
    return s.roots >= 3 && s.underReplicated === 0 && s.repairing === 0 && s.unavailable === 0
  }, 30_000)

  const check = async (when: string): Promise<void> => {
    for (const [i, want] of wanted.entries()) {
      const out = join(ctx.dir, `check-${i}.bin`)
      const got = await gridRun(['get', '--join', joinFile, want.cid, '-o', out])
      assert.is(got.code, 0, `${when}: grid get ${want.cid}: ${got.stderr}`)
      assert.is(sha256(await readFile(out)), want.sha256, `${when}: ${want.cid} byte-identical`)
      const res = await fetch(`${url}/api/artifacts/${want.cid}`)
      assert.is(res.status, 200, `${when}: HTTP ${want.cid}`)
      assert.is(sha256(new Uint8Array(await res.arrayBuffer())), want.sha256, `${when}: ${want.cid} over HTTP`)
    }
  }
  await check('with three stores')

  // SIGKILL a store that holds the put file: nothing is lost while the other replica lives.
  const placedNow = async (): Promise<Array<{ peer: string, addrs: string[] }>> => (await storage()).stores.map(s => ({ peer: s.peer, addrs: [] }))
  const firstVictim = placeFor(cid, await placedNow(), 2)[0].peer
  stores.get(firstVictim)!.child.kill('SIGKILL')
  await waitFor('the killed store to leave', async () => !(await storage()).stores.some(s => s.peer === firstVictim), 20_000)
  await check('after one store was SIGKILLed')

  // A new store joins; repair brings every root back to two copies among the three live stores.
  const newcomer = await startStore('s4')
  await waitFor('repair to finish', async () => {
    const s = await storage()
    return s.stores.length === 3 && s.underReplicated === 0 && s.repairing === 0 && s.unavailable === 0 && s.stores.some(x => x.peer === newcomer && x.roots > 0)
  }, 60_000)
  const afterRepair = await storage()
  process.stdout.write(`  after repair: ${afterRepair.stores.map(s => `${s.peer.slice(-6)} ${s.roots} roots ${s.bytes} bytes`).join('; ')}\n`)

  // SIGKILL a second original store, one placed for the put file if any is.
  const originals = (await placedNow()).filter(s => s.peer !== newcomer)
  const secondVictim = placeFor(cid, await placedNow(), 2).find(s => s.peer !== newcomer)?.peer ?? originals[0].peer
  stores.get(secondVictim)!.child.kill('SIGKILL')
  await waitFor('the second killed store to leave', async () => !(await storage()).stores.some(s => s.peer === secondVictim), 20_000)
  await check('after a second original store was SIGKILLed')
  await waitFor('repair after the second loss', async () => {
    const s = await storage()
    return s.underReplicated === 0 && s.repairing === 0 && s.unavailable === 0
  }, 60_000)
})

replicas.run()

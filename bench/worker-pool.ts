// Many worker nodes in one process, for benchmarks: `node bench/worker-pool.ts JOIN_FILE COUNT CAP=VALUE DATA_DIR`.
// Each worker has its own libp2p node and peer ID, exactly as `grid worker` makes them.
import { join } from 'node:path'
import { readJoinCode } from '../net/join-code.ts'
import { startWorkerNode } from '../node/roles.ts'
import type { WorkerNode } from '../node/roles.ts'
import { parseCapability } from '../worker/capabilities.ts'

const [joinFile, countText, cap, dataDir] = process.argv.slice(2)
const code = await readJoinCode(joinFile)
const [key, value] = parseCapability(cap)
const nodes: WorkerNode[] = []
for (let i = 0; i < Number(countText); i++) {
  nodes.push(await startWorkerNode({ dataDir: join(dataDir, String(i)), join: code, listen: [], capabilities: { os: process.platform, [key]: value }, slots: 1 }))
}
await Promise.all(nodes.map(async n => { await n.worker.ready(AbortSignal.timeout(60_000)) }))
process.stdout.write(`ready ${nodes.length}\n`)
const stop = async (): Promise<void> => {
  await Promise.all(nodes.map(async n => { await n.stop() }))
  process.exit(0)
}
process.on('SIGTERM', () => { stop().catch(() => process.exit(1)) })

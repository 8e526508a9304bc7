// `grid up`: a whole grid in one process (coordinator, store, HTTP API and web UI, and N workers), the way to try
// the grid on one machine or to run a small one. It prints `web:` and `join:` on stdout as soon as the grid can be
// reached; each worker's joining is then one line on stderr, said by the coordinator (as for any worker).
import { join } from 'node:path'
import { DEFAULT_COORDINATOR_PORT } from '../../net/constants.ts'
import { MAX_REPLICAS, MAX_SLOTS } from '../../grid/constants.ts'
import { DEFAULT_REPLICAS } from '../../grid/placement.ts'
import { startCoordinatorNode } from '../roles.ts'
import type { WorkerNode } from '../roles.ts'
import { capability, dataOption, httpAddress, listenOption, parseSize, wholeNumber } from './options.ts'
import { withPidFile, writePidFile } from './pid-file.ts'
import { startWorkers, stopOnSignal } from './role-nodes.ts'
import { log } from './report.ts'
import type { GridCommand } from './usage.ts'

/** Where `grid up` serves the HTTP API and web UI unless told: this machine only. */
const DEFAULT_HTTP = '127.0.0.1:7341'

/** Adds `grid up` to `grid`. */
export function upCommand (grid: GridCommand): GridCommand {
  return withPidFile(grid.command('up')
    .description('run a whole grid in this process: coordinator, store, HTTP API and web UI, and N workers')
    .addOption(dataOption())
    .addOption(listenOption(`default /ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`))
    .option('--http <host:port>', 'serve the HTTP API and web UI here (127.0.0.1:0 picks a free port)', httpAddress, DEFAULT_HTTP)
    .option('--workers <n>', 'workers to run in this process', wholeNumber(0, 64), 1)
    .option('--slots <n>', 'builds each worker runs at once', wholeNumber(1, MAX_SLOTS), 1)
    .option('--cap <key=value>', 'add or override a worker capability, repeatable', capability('--cap'), [])
    .option('--replicas <n>', 'store nodes to keep each piece of content on, once more stores join', wholeNumber(1, MAX_REPLICAS), DEFAULT_REPLICAS)
    .option('--max-size <size>', 'keep at most this much content in this process\'s store (e.g. 500M, 10G), evicting the least recently used whole artifacts first', parseSize)
    .action(async (opts) => {
      const node = await startCoordinatorNode({
        dataDir: opts.data,
        listen: opts.listen ?? [`/ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`],
        http: opts.http,
        withStore: true,
        storeMaxBytes: opts.maxSize,
        replicas: opts.replicas,
        log
      })
      let workers: WorkerNode[] = []
      stopOnSignal(async () => {
        for (const w of workers) await w.stop()
        await node.stop()
      })
      if (node.web !== undefined) process.stdout.write(`web: ${node.web.url}\n`)
      process.stdout.write(`join: ${node.joinCode}\n`)
      try {
        workers = await startWorkers(Array.from({ length: opts.workers }, (_, i) => join(opts.data, 'workers', String(i + 1))), node.localJoin, opts.cap, opts.slots, [], node.secret, node.trust)
        await Promise.all(workers.map(async w => { await w.worker.ready() }))
      } catch (err) {
        await node.stop()
        throw err
      }
      await writePidFile(opts.pidFile)
    }))
}

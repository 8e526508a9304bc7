// `grid up`: a whole grid in one process (coordinator, store, HTTP API and web UI, and N workers), the way to try
// the grid on one machine or to run a small one.
import { join } from 'node:path'
import type { Command } from 'commander'
import { DEFAULT_COORDINATOR_PORT } from '../../net/constants.ts'
import { MAX_REPLICAS, MAX_SLOTS } from '../../grid/constants.ts'
import { DEFAULT_REPLICAS } from '../../grid/placement.ts'
import { startCoordinatorNode } from '../roles.ts'
import { capabilities, collect, dataOption, httpAddress, listenOption, parseSize, wholeNumber } from './options.ts'
import { startWorkers, stopOnSignal } from './role-nodes.ts'
import { log } from './report.ts'

/** Where `grid up` serves the HTTP API and web UI unless told: this machine only. */
const DEFAULT_HTTP = '127.0.0.1:7341'

/** Adds `grid up` to `grid`. */
export function upCommand (grid: Command): Command {
  return grid.command('up')
    .description('run a whole grid in this process: coordinator, store, HTTP API and web UI, and N workers')
    .addOption(dataOption())
    .addOption(listenOption(`default /ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`))
    .option('--http <host:port>', 'serve the HTTP API and web UI here (127.0.0.1:0 picks a free port)', httpAddress, DEFAULT_HTTP)
    .option('--workers <n>', 'workers to run in this process', wholeNumber(0, 64), 1)
    .option('--slots <n>', 'builds each worker runs at once', wholeNumber(1, MAX_SLOTS), 1)
    .option('--cap <key=value>', 'add or override a worker capability, repeatable', collect, [])
    .option('--replicas <n>', 'store nodes to keep each piece of content on, once more stores join', wholeNumber(1, MAX_REPLICAS), DEFAULT_REPLICAS)
    .option('--max-size <size>', 'keep at most this much content in this process\'s store (e.g. 500M, 10G), evicting the least recently used whole artifacts first', parseSize)
    .action(async (opts) => {
      const caps = opts.cap as string[]
      capabilities(caps)
      const node = await startCoordinatorNode({
        dataDir: opts.data,
        listen: opts.listen ?? [`/ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`],
        http: opts.http,
        withStore: true,
        storeMaxBytes: opts.maxSize,
        replicas: opts.replicas,
        log
      })
      const workers = await startWorkers(Array.from({ length: opts.workers }, (_, i) => join(opts.data, 'workers', String(i + 1))), node.localJoin, caps, opts.slots, [], node.secret)
      stopOnSignal(async () => {
        for (const w of workers) await w.stop()
        await node.stop()
      })
      if (node.web !== undefined) process.stdout.write(`web: ${node.web.url}\n`)
      process.stdout.write(`join: ${node.joinCode}\n`)
    })
}

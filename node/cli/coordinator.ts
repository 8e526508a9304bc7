// `grid coordinator`: a coordinator alone (with the HTTP API under --http), for a grid whose stores and workers
// run on other machines.
import type { GridCommand } from './usage.ts'
import { DEFAULT_COORDINATOR_PORT } from '../../net/constants.ts'
import { MAX_REPLICAS } from '../../grid/constants.ts'
import { DEFAULT_REPLICAS } from '../../grid/placement.ts'
import { startCoordinatorNode } from '../roles.ts'
import { dataOption, httpAddress, listenOption, wholeNumber } from './options.ts'
import { withPidFile, writePidFile } from './pid-file.ts'
import { stopOnSignal } from './role-nodes.ts'
import { log } from './report.ts'

/** Adds `grid coordinator` to `grid`. */
export function coordinatorCommand (grid: GridCommand): GridCommand {
  return withPidFile(grid.command('coordinator')
    .description('run a coordinator (and the HTTP API with --http); stores and workers join it')
    .addOption(dataOption())
    .addOption(listenOption(`default /ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`))
    .option('--http <host:port>', 'serve the HTTP API and web UI here', httpAddress)
    .option('--replicas <n>', 'store nodes to keep each piece of content on', wholeNumber(1, MAX_REPLICAS), DEFAULT_REPLICAS)
    .action(async (opts) => {
      const node = await startCoordinatorNode({
        dataDir: opts.data,
        listen: opts.listen ?? [`/ip4/0.0.0.0/tcp/${DEFAULT_COORDINATOR_PORT}`],
        http: opts.http,
        withStore: false,
        replicas: opts.replicas,
        log
      })
      stopOnSignal(async () => { await node.stop() })
      if (node.web !== undefined) process.stdout.write(`web: ${node.web.url}\n`)
      process.stdout.write(`join: ${node.joinCode}\n`)
      await writePidFile(opts.pidFile)
    }))
}

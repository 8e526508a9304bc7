// `grid store`: a store node joining a grid, keeping the logs and artifacts workers push to it.
import { join } from 'node:path'
import type { GridCommand } from './usage.ts'
import { readJoinCode } from '../../net/join-code.ts'
import { startStoreNode } from '../roles.ts'
import { dataOption, joinOption, listenOption, parseSize } from './options.ts'
import { withPidFile, writePidFile } from './pid-file.ts'
import { stopOnSignal } from './role-nodes.ts'
import { log } from './report.ts'

/** Adds `grid store` to `grid`. */
export function storeCommand (grid: GridCommand): GridCommand {
  return withPidFile(grid.command('store')
    .description('run a store node: keeps logs and artifacts that workers push to it')
    .addOption(dataOption())
    .addOption(listenOption('default /ip4/0.0.0.0/tcp/0: workers dial stores'))
    .addOption(joinOption())
    .option('--max-size <size>', 'keep at most this much content (e.g. 500M, 10G), evicting the least recently used whole artifacts first', parseSize)
    .action(async (opts) => {
      const code = await readJoinCode(opts.join)
      const node = await startStoreNode({ dataDir: join(opts.data, 'store'), join: code, listen: opts.listen ?? ['/ip4/0.0.0.0/tcp/0'], maxBytes: opts.maxSize, log })
      stopOnSignal(async () => { await node.stop() })
      // It says `store PEER joined the grid` itself, at each welcome (artifact-store/membership.ts).
      await node.announcement.ready()
      await writePidFile(opts.pidFile)
    }))
}

// `grid worker`: an anonymous worker joining a grid. It stops differently from the other roles: the first SIGTERM
// drains (no new work, running builds finish), so a rolling restart loses no build.
import { join } from 'node:path'
import type { GridCommand } from './usage.ts'
import { DEFAULT_DRAIN_TIMEOUT_S } from '../../net/constants.ts'
import { readJoinCode } from '../../net/join-code.ts'
import { MAX_SLOTS } from '../../grid/constants.ts'
import { capability, dataOption, joinOption, listenOption, wholeNumber } from './options.ts'
import { withPidFile, writePidFile } from './pid-file.ts'
import { startWorkers } from './role-nodes.ts'
import { log } from './report.ts'

/** Where `grid worker` listens unless told: any interface, a free port (it serves its cache there). */
const WORKER_DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/0'

/** Adds `grid worker` to `grid`. */
export function workerCommand (grid: GridCommand): GridCommand {
  return withPidFile(grid.command('worker')
    .description('run an anonymous worker: it announces its capabilities and runs the builds it is given')
    .addOption(dataOption())
    .addOption(listenOption('default /ip4/0.0.0.0/tcp/0, a free port where it serves its cache of what it made to other workers; none: only dial out and keep no cache', true))
    .addOption(joinOption())
    .option('--cap <key=value>', 'add or override a capability (os, arch, cpus and tools are detected), repeatable', capability('--cap'), [])
    .option('--slots <n>', 'builds to run at once', wholeNumber(1, MAX_SLOTS), 1)
    .option('--drain-timeout <seconds>', 'on SIGTERM, how long running builds may take to finish (a second SIGTERM ends them now)', wholeNumber(0, 7 * 24 * 3600), DEFAULT_DRAIN_TIMEOUT_S)
    .action(async (opts) => {
      const code = await readJoinCode(opts.join)
      // A worker behind NAT still works: it dials out; other workers then fetch its outputs from the stores instead.
      const listen = opts.listen === undefined ? [WORKER_DEFAULT_LISTEN] : (opts.listen as string[]).filter(a => a !== 'none')
      const [node] = await startWorkers([join(opts.data, 'worker')], code, opts.cap, opts.slots, listen)
      // First SIGTERM: take no new work, finish what runs, leave. Second (or the timeout): leave now.
      const hurry = new AbortController()
      let draining = false
      const onSignal = (signal: string): void => {
        if (draining) {
          log(`${signal} again: ending running builds now (they will be re-queued)`)
          hurry.abort()
          return
        }
        draining = true
        log(`${signal}: draining (send it again to stop now)`)
        setTimeout(() => hurry.abort(), opts.drainTimeout * 1000).unref()
        node.worker.drain(hurry.signal).then(() => node.host.stop()).then(() => process.exit(0), err => { log(`stopping failed: ${err.message}`); process.exit(1) })
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
      // It says `worker PEER joined the grid with N slot(s)` itself, at each welcome (worker/index.ts).
      await node.worker.ready()
      await writePidFile(opts.pidFile)
    }))
}

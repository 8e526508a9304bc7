// `grid tail`: a build's log (with why it waits or ended on stderr) or one step's log, from any peer that holds
// it, followed until it is sealed.
import type { GridCommand } from './usage.ts'
import { readJoinCode } from '../../net/join-code.ts'
import { ID_PATTERN, buildOf, isLogId } from '../../grid/ids.ts'
import { LogReader } from '../../client/log-reader.ts'
import { ask, expectBuild, gridStores } from './ask.ts'
import { clientHost, clientOptions } from './client-host.ts'
import { followBuild } from './follow-build.ts'
import { wholeNumber } from './options.ts'
import { UsageError, log } from './report.ts'

/** Adds `grid tail` to `grid`. */
export function tailCommand (grid: GridCommand): GridCommand {
  return clientOptions(grid.command('tail')
    .description('print a build\'s or a step\'s log from any peer that holds it, following it until it is sealed; why a build waits or ended goes to stderr')
    .argument('<id>', 'a build id or a log id')
    .option('--from <bytes>', 'start at this byte offset', wholeNumber(0, Number.MAX_SAFE_INTEGER), 0)
    .check((command, [id]) => {
      if (typeof id === 'string' && !ID_PATTERN.test(id)) command.problem(`${id} is neither a build id nor a log id`)
    })
    .action(async (id: string, opts) => {
      const code = await readJoinCode(opts.join)
      const host = await clientHost(code)
      try {
        if (isLogId(id)) {
          // A log is named before it exists, so a store not knowing it proves nothing: its build must.
          const build = expectBuild(await ask(host, code, { t: 'get', id: buildOf(id) }))
          if (!build.attempts.some(a => a.logs.includes(id))) throw new UsageError(`build ${build.id} has no log ${id}`)
          const stores = await gridStores(host, code)
          const logs = new LogReader({ host, stores: () => stores, report: log })
          for await (const chunk of logs.read(id, { from: opts.from, follow: true })) process.stdout.write(chunk)
        } else {
          expectBuild(await ask(host, code, { t: 'get', id }))
          await followBuild(host, code, id, opts.from)
        }
      } finally {
        await host.stop()
      }
    }))
}

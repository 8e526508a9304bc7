// `grid get`: content by CID from any node that holds it, every block checked, to stdout, a file (-o) or unpacked
// (--extract). Nothing lands at -o or in the --extract directory until all of it arrived and checked out.
import { mkdtemp, rename, rm } from 'node:fs/promises'
import { createWriteStream } from 'node:fs'
import type { WriteStream } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { GridCommand } from './usage.ts'
import { readJoinCode } from '../../net/join-code.ts'
import { parseCid } from '../../grid/content.ts'
import { rankFor } from '../../grid/placement.ts'
import { contentInfo } from '../../client/content/info.ts'
import { readContent } from '../../client/content/read.ts'
import { counted, transferProgress } from '../progress.ts'
import { gridStores } from './ask.ts'
import { clientHost, clientOptions } from './client-host.ts'
import { UsageError } from './report.ts'

/** Adds `grid get` to `grid`. */
export function getCommand (grid: GridCommand): GridCommand {
  return clientOptions(grid.command('get')
    .description('fetch content by CID from any node that holds it, checking every block; to stdout without -o or --extract')
    .argument('<cid>', 'what grid put or an artifact printed')
    .option('-o, --output <path>', 'write to this file (only once all of it arrived and checked out)')
    .option('-x, --extract <dir>', 'unpack the content, a tar (grid put of a directory), into this directory once all of it checked out: modes and symbolic links are kept (setuid, setgid and sticky bits are not); a tar with an entry that would land outside the directory (an absolute or climbing path, a link leading out, a device) is refused whole and nothing is written')
    .check((command, [text]) => {
      const opts = command.opts()
      if (typeof text === 'string') {
        try {
          parseCid(text)
        } catch (err: any) {
          command.problem(err.message)
        }
      }
      if (opts.output !== undefined && opts.extract !== undefined) command.problem('give -o or --extract, not both')
    })
    .action(async (text: string, opts) => {
      const cid = parseCid(text)
      const code = await readJoinCode(opts.join)
      const host = await clientHost(code)
      // --extract: the tar goes to a temporary file first, so it is checked whole before anything is unpacked.
      const scratch = opts.extract !== undefined ? await mkdtemp(join(tmpdir(), 'grid-get-')) : undefined
      try {
        const stores = await gridStores(host, code)
        // The placed stores first, then every other.
        const sources = { host, holders: () => rankFor(cid.toString(), stores) }
        const info = await contentInfo(sources, cid)
        const whole = createHash('sha256')
        const temp = scratch !== undefined ? join(scratch, 'content.tar') : opts.output !== undefined ? `${opts.output}.partial-${process.pid}` : undefined
        const out: NodeJS.WritableStream = temp !== undefined ? createWriteStream(temp) : process.stdout
        try {
          // On a terminal with -o the bar goes to stderr; to stdout, the content owns the screen.
          const progress = transferProgress('get', temp !== undefined ? info.size : 0)
          try {
            for await (const chunk of counted(readContent(sources, cid), progress)) {
              whole.update(chunk)
              if (!out.write(chunk)) await new Promise<void>(resolve => out.once('drain', () => resolve()))
            }
          } finally {
            progress.stop()
          }
          if (whole.digest('hex') !== info.sha256) throw new UsageError(`${cid}: the content's sha256 does not match its manifest`)
          if (temp !== undefined) {
            await new Promise<void>((resolve, reject) => (out as WriteStream).end((err?: Error | null) => err ? reject(err) : resolve()))
            if (scratch === undefined) await rename(temp, opts.output)
          }
        } catch (err) {
          if (temp !== undefined) {
            (out as WriteStream).destroy()
            await rm(temp, { force: true })
          }
          throw err
        }
        if (scratch !== undefined) {
          // Loaded only here: unpacking is a worker's workspace code, which a plain get never needs.
          const { extractTarFile } = await import('../../worker/workspace.ts')
          await extractTarFile(join(scratch, 'content.tar'), opts.extract).catch((err: Error) => {
            throw err.name === 'WorkspaceError' ? new UsageError(err.message) : err
          })
        }
      } finally {
        if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
        await host.stop()
      }
    }))
}

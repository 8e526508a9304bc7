// `grid put`: a file, or a directory as a tar, into the grid's stores placed for its CID. The CID is printed only
// once the content is on all of them, so a script that reads it can hand it on at once.
import { stat } from 'node:fs/promises'
import type { GridCommand } from './usage.ts'
import { readJoinCode } from '../../net/join-code.ts'
import { ContentChangedError } from '../../grid/content.ts'
import { nameOf } from '../../client/content/name.ts'
import { placementNeedsName, putPlaced } from '../../client/content/place.ts'
import { putPool, readFileBlocks } from '../../client/content/file-blocks.ts'
import { NameCache } from '../../client/content/name-cache.ts'
import { counted, transferProgress } from '../progress.ts'
import { gridPlacement } from './ask.ts'
import { clientHost, clientOptions } from './client-host.ts'
import { tarDirectory } from './directory-tar.ts'
import { UsageError, log } from './report.ts'

/** Adds `grid put` to `grid`. */
export function putCommand (grid: GridCommand): GridCommand {
  return clientOptions(grid.command('put')
    .description('put a file (a directory goes as a tar) into the grid\'s store; prints its CID once stored')
    .argument('<path>', 'a file or a directory')
    .action(async (path: string, opts) => {
      let info
      try {
        info = await stat(path)
      } catch (err: any) {
        throw new UsageError(`cannot read ${path}: ${err.code ?? err.message}`)
      }
      const code = await readJoinCode(opts.join)
      const host = await clientHost(code)
      try {
        const placement = await gridPlacement(host, code)
        if (placement.stores.length === 0) throw new UsageError('the grid has no store yet (start one with grid store, or use grid up)')
        const pool = putPool()
        const open = (): AsyncIterable<Uint8Array> => info.isDirectory() ? tarDirectory(path) : readFileBlocks(path, pool)
        // Where placement depends on the CID (more stores than copies), a first pass names the content so it goes
        // straight to the stores placed for it (placement.ts) and the second only reads and sends, with the block
        // CIDs the first found. Otherwise (as with `grid up`: every store takes it) it is read once, hashed as it
        // is sent. A directory's tar size is not known up front: the bars show only for plain files.
        const barBytes = info.isDirectory() ? 0 : info.size
        // A file put before and unchanged since (name-cache.ts) is not hashed again, and not read at all when its
        // stores still hold it.
        const names = info.isFile() ? new NameCache() : undefined
        let named = await names?.lookup(path)
        const before = named === undefined ? await names?.identify(path) : undefined
        if (named === undefined && placementNeedsName(placement)) {
          const hashing = transferProgress('hash', barBytes)
          try {
            named = await nameOf(counted(open(), hashing), pool)
          } finally {
            hashing.stop()
          }
        }
        const progress = transferProgress('put', barBytes)
        let put
        try {
          put = await putPlaced({ host, ...placement, placeBy: named?.cid, warn: log }, counted(open(), progress), { pool, named })
        } catch (err: any) {
          throw err instanceof ContentChangedError ? new ContentChangedError(`${path} changed while it was being put: ${err.message}`) : err
        } finally {
          progress.stop()
        }
        if (before !== undefined) await names?.remember(path, before, { cid: put.cid, size: put.size, sha256: put.sha256, blocks: put.blocks })
        // Printed only now: the content is on all of its stores.
        process.stdout.write(`${put.cid}\n`)
        log(`${put.size} bytes, sha256 ${put.sha256}; on ${put.stores.length} store(s); sent ${put.sentBytes} bytes in ${put.sentBlocks} new block(s)`)
      } finally {
        await host.stop()
      }
    }))
}

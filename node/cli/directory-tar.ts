// A directory travels as one tar (`grid put DIR`, `submit --src DIR`). It is made the same way every time, so an
// unchanged tree always has the same CID and a second put sends nothing new.
import { Stats } from 'node:fs'
import { join } from 'node:path'
import { create as tarCreate } from 'tar'
import type { ReadEntry } from 'tar'
import { log } from './report.ts'

/** Paths tarDirectory left out and said so, across its passes over the same tree. */
const leftOut = new Set<string>()

/** A directory as a tar with fixed times and owners, so an unchanged tree always has the same CID. */
export function tarDirectory (dir: string): AsyncIterable<Uint8Array> {
  // Only files, directories and links travel: reading a fifo would wait forever for a writer, and a socket or a
  // device means nothing on another machine. Each is said once (the tar is made twice: to name it, then to send it).
  const filter = (path: string, info: Stats | ReadEntry): boolean => {
    if (!(info instanceof Stats) || info.isFile() || info.isDirectory() || info.isSymbolicLink()) return true
    const full = join(dir, path)
    if (!leftOut.has(full)) {
      leftOut.add(full)
      log(`${full} is not a file, directory or link: left out`)
    }
    return false
  }
  return tarCreate({ cwd: dir, portable: true, mtime: new Date(0), gzip: false, filter }, ['.']) as unknown as AsyncIterable<Uint8Array>
}

// A directory travels as one tar (`grid put DIR`, `submit --src DIR`, `grid run DIR`). It is made the same way every
// time, so an unchanged tree always has the same CID and a second put sends nothing new.
import { Stats, readlinkSync } from 'node:fs'
import { dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { create as tarCreate } from 'tar'
import type { ReadEntry } from 'tar'
import { log } from './report.ts'

/** Paths tarDirectory said something about, across its passes over the same tree. */
const said = new Set<string>()

/** One line per path, however many passes see it. */
function sayOnce (path: string, line: string): void {
  if (said.has(path)) return
  said.add(path)
  log(line)
}

/** True when a link's target, read as the link would resolve it, lies outside `root`. */
function leadsOut (root: string, link: string): boolean {
  const target = readlinkSync(link)
  if (isAbsolute(target)) return true
  const rel = relative(resolve(root), resolve(dirname(link), target))
  return rel === '..' || rel.startsWith('../') || isAbsolute(rel)
}

/**
 * Which part of a directory goes into its tar (`grid run`: a git work tree without what git ignores, or a plain
 * directory without `.git`). Paths are relative to the directory, with `/` between names.
 */
export interface TarSelection {
  /**
   * Only these paths, in this order (the caller sorts them, so the tar, and its CID, do not depend on how they were
   * listed). A directory among them goes in without its contents; parent directories are not added (unpacking makes
   * them).
   */
  files?: readonly string[]
  /** Left out, with everything under it when it is a directory. */
  leaveOut?: (path: string) => boolean
}

/**
 * A directory (or the part of it `selection` names) as a tar with fixed times and owners, so an unchanged tree
 * always has the same CID.
 */
export function tarDirectory (dir: string, selection: TarSelection = {}): AsyncIterable<Uint8Array> {
  // Only files, directories and links travel: reading a fifo would wait forever for a writer, and a socket or a
  // device means nothing on another machine. Each is said once (the tar is made twice: to name it, then to send it).
  // A link out of the tree travels as it is, but a worker unpacking it as a build's src (and grid get --extract)
  // refuses it: said now, rather than when the build fails.
  const filter = (path: string, info: Stats | ReadEntry): boolean => {
    const full = join(dir, path)
    // node-tar names what it walks from `.` as `./a/b`, and listed paths as given.
    if (selection.leaveOut?.(path.replace(/^\.\//, '')) === true) return false
    if (!(info instanceof Stats) || info.isFile() || info.isDirectory()) return true
    if (info.isSymbolicLink()) {
      if (leadsOut(dir, full)) sayOnce(full, `${full} is a link leading out of ${dir}: a build's src and grid get --extract will refuse it`)
      return true
    }
    sayOnce(full, `${full} is not a file, directory or link: left out`)
    return false
  }
  const files = selection.files
  if (files !== undefined) {
    // node-tar refuses an empty list: nothing to send is the directory's own entry alone.
    return tarCreate({ cwd: dir, portable: true, mtime: new Date(0), gzip: false, filter, noDirRecurse: true }, files.length > 0 ? [...files] : ['.']) as unknown as AsyncIterable<Uint8Array>
  }
  return tarCreate({ cwd: dir, portable: true, mtime: new Date(0), gzip: false, filter }, ['.']) as unknown as AsyncIterable<Uint8Array>
}

// What a file was named the last time it was put, so an unchanged file is not read and hashed again: git's index
// does the same for `git status` (a file whose size, mtime, ctime, inode and device are what they were is taken as
// unchanged). With its name known, a put asks the stores whether they hold it and, when they do, reads nothing
// (putContent's fast path). Racy cases are never trusted: a file modified within RACY_WINDOW_MS of being named is
// not remembered (git's "racily clean" entries), and one whose stat changed while it was read is not either.
//
// One small JSON file per path in the user's cache directory ($XDG_CACHE_HOME/nameless-grid/names, else
// ~/.cache/...), at most NAME_CACHE_ENTRIES of them. The cache is only ever a hint: an unreadable, corrupt or
// missing entry means hashing again, never a failed put.
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import type { BigIntStats } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseCid } from '../../grid/content.ts'
import type { Named } from '../../grid/content.ts'

/** Files remembered at most; past it the least recently written entries go (a put of one more file removes some). */
export const NAME_CACHE_ENTRIES = 1_000
/** A file modified this recently when it was named is not remembered: a write in the same clock tick could hide. */
export const RACY_WINDOW_MS = 2_000

/** The identity of a file's contents as git's index keeps it. */
interface Identity { dev: string, ino: string, size: string, mtimeNs: string, ctimeNs: string }

interface Entry { path: string, identity: Identity, named: { cid: string, size: number, sha256: string, blocks: string[] } }

function identityOf (s: BigIntStats): Identity {
  return { dev: String(s.dev), ino: String(s.ino), size: String(s.size), mtimeNs: String(s.mtimeNs), ctimeNs: String(s.ctimeNs) }
}

const same = (a: Identity, b: Identity): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs

/** The cache directory for this user: $XDG_CACHE_HOME/nameless-grid/names, else ~/.cache/nameless-grid/names. */
export function defaultNameCacheDir (): string {
  const base = process.env.XDG_CACHE_HOME !== undefined && process.env.XDG_CACHE_HOME !== '' ? process.env.XDG_CACHE_HOME : join(homedir(), '.cache')
  return join(base, 'nameless-grid', 'names')
}

/** Names of files put before, by path and identity (see the top of this file). */
export class NameCache {
  readonly dir: string
  private readonly racyWindowMs: number

  /** `racyWindowMs` is RACY_WINDOW_MS but for tests, which cannot make a file's ctime older than now. */
  constructor (dir: string = defaultNameCacheDir(), racyWindowMs = RACY_WINDOW_MS) {
    this.dir = dir
    this.racyWindowMs = racyWindowMs
  }

  private fileFor (path: string): string {
    return join(this.dir, `${createHash('sha256').update(path).digest('hex').slice(0, 32)}.json`)
  }

  /**
   * What `path` was named, if it is the very file it was then (same size, mtime, ctime, inode, device); undefined
   * otherwise, and on any trouble reading the cache.
   */
  async lookup (path: string): Promise<Named | undefined> {
    const full = resolve(path)
    try {
      const [text, now] = await Promise.all([readFile(this.fileFor(full), 'utf8'), stat(full, { bigint: true })])
      const entry = JSON.parse(text) as Entry
      if (entry.path !== full || !same(entry.identity, identityOf(now))) return undefined
      const { cid, size, sha256, blocks } = entry.named
      if (typeof cid !== 'string' || typeof size !== 'number' || typeof sha256 !== 'string' || !Array.isArray(blocks)) return undefined
      parseCid(cid)
      return { cid, size, sha256, blocks: blocks.map(parseCid) }
    } catch {
      return undefined
    }
  }

  /** The identity to hand to remember(): taken before the file is read. Undefined if it cannot be read. */
  async identify (path: string): Promise<Identity | undefined> {
    return await stat(resolve(path), { bigint: true }).then(identityOf, () => undefined)
  }

  /**
   * Remember that `path`, as it was at `before` (identify(), taken before reading it), is named `named`: only if it
   * still is that file and was not modified within RACY_WINDOW_MS. Failures are ignored (the cache is a hint).
   */
  async remember (path: string, before: Identity | undefined, named: Named): Promise<void> {
    const full = resolve(path)
    try {
      const now = await stat(full, { bigint: true })
      if (before === undefined || !same(before, identityOf(now))) return
      if (Date.now() - Number(now.mtimeNs / 1_000_000n) < this.racyWindowMs || Date.now() - Number(now.ctimeNs / 1_000_000n) < this.racyWindowMs) return
      const entry: Entry = { path: full, identity: before, named: { cid: named.cid, size: named.size, sha256: named.sha256, blocks: named.blocks.map(String) } }
      await mkdir(this.dir, { recursive: true })
      const file = this.fileFor(full)
      const temp = `${file}.${process.pid}.tmp`
      await writeFile(temp, JSON.stringify(entry))
      await rename(temp, file)
      await this.prune()
    } catch {}
  }

  /** Keep at most NAME_CACHE_ENTRIES entries: the least recently written go first. */
  private async prune (): Promise<void> {
    const names = (await readdir(this.dir)).filter(n => n.endsWith('.json'))
    if (names.length <= NAME_CACHE_ENTRIES) return
    const dated = await Promise.all(names.map(async n => ({ n, at: (await stat(join(this.dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })))
    dated.sort((a, b) => a.at - b.at)
    for (const { n } of dated.slice(0, names.length - NAME_CACHE_ENTRIES)) await rm(join(this.dir, n), { force: true })
  }
}

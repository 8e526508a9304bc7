// Block bytes as files: one file per block, named by its sequence number (blockstore.ts keys bytes in write order
// and indexes them by CID in LevelDB). LevelDB wrote every byte of a block twice (its log, then a table), with a
// checksum and a copy each time, and compacted them on top: issue 20 measured a store spending about three times
// the CPU of receiving the same bytes. A file is written once, straight from the block's buffer (git's loose
// objects and Bazel's disk cache keep blobs the same way). Durability is what LevelDB gave without `sync`: the
// page cache's, and a block that rotted or was cut short is caught by its hash on read (blockstore.ts drops it).
import { mkdir, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { BlockData } from './blockstore.ts'

/** Hex digits of a sequence key that name its file; the rest name its folder, so a folder holds at most 4,096. */
const FILE_DIGITS = 3

/** Files written or deleted at once by one batch: libuv runs four at a time, so more only queue. */
const FILE_BATCH_CONCURRENCY = 8

/**
 * BlockData over a folder: `dir/<key but its last 3 hex digits>/<last 3 digits>` per key (blockstore.ts's sequence
 * keys, 13 hex digits that sort as numbers do). Missing files read as undefined; deleting one that is gone is not
 * an error. Errors of the file system (ENOSPC, EACCES) are thrown as Node gives them.
 */
export class BlockFiles implements BlockData {
  readonly dir: string
  private readonly folders = new Set<string>()

  constructor (dir: string) {
    this.dir = dir
  }

  async open (): Promise<void> {
    await mkdir(this.dir, { recursive: true })
  }

  private place (key: string): { folder: string, file: string } {
    const folder = join(this.dir, key.slice(0, -FILE_DIGITS))
    return { folder, file: join(folder, key.slice(-FILE_DIGITS)) }
  }

  async get (key: string): Promise<Uint8Array | undefined> {
    try {
      return await readFile(this.place(key).file)
    } catch (err: any) {
      if (err.code === 'ENOENT') return undefined
      throw err
    }
  }

  async del (key: string): Promise<void> {
    await unlink(this.place(key).file).catch((err: any) => { if (err.code !== 'ENOENT') throw err })
  }

  async batch (operations: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }>): Promise<void> {
    for (let at = 0; at < operations.length; at += FILE_BATCH_CONCURRENCY) {
      await Promise.all(operations.slice(at, at + FILE_BATCH_CONCURRENCY).map(async op => {
        if (op.type === 'del') return await this.del(op.key)
        const { folder, file } = this.place(op.key)
        if (!this.folders.has(folder)) {
          await mkdir(folder, { recursive: true })
          this.folders.add(folder)
        }
        await writeFile(file, op.value)
      }))
    }
  }

  /** Every key held, in order (for checks and tests: it lists the whole folder). */
  async keys (): Promise<string[]> {
    const keys: string[] = []
    for (const folder of (await readdir(this.dir).catch(() => [] as string[])).sort()) {
      for (const file of (await readdir(join(this.dir, folder)).catch(() => [] as string[])).sort()) keys.push(folder + file)
    }
    return keys
  }

  /** Delete every key at or after `gte` (what a write cut short before its index left). */
  async clear (range: { gte: string }): Promise<void> {
    const from = this.place(range.gte)
    for (const folder of await readdir(this.dir).catch(() => [] as string[])) {
      const path = join(this.dir, folder)
      if (path < from.folder) continue
      if (path > from.folder) {
        await rm(path, { recursive: true, force: true })
        this.folders.delete(path)
        continue
      }
      for (const file of await readdir(path)) if (join(path, file) >= from.file) await unlink(join(path, file)).catch(() => {})
    }
  }
}

// A log's bytes as one file, written where the log ends (log-store.ts keeps the size, the seal and the order of
// appends in LevelDB, and the whole blocks kept as content instead, which leave holes here). LevelDB wrote every byte of a log twice (its own log, then a table), compressed and
// checksummed it and compacted it again: about 2.5 s of CPU per GiB on these machines, more than the rest of the
// store's work on a log. A file takes each byte once, straight from the append's buffer. Durability is LevelDB's
// without `sync`: the page cache's. The size in LevelDB is the commit point: it is written after the bytes, so bytes
// past it (an append cut short by a crash) are never read, and the next append at that offset writes over them.
import { mkdir, open } from 'node:fs/promises'
import { join } from 'node:path'
import { buildOf } from '../grid/ids.ts'

/** Bytes read from a log's file at once: a block, so a reader or the sealer gets a block in one read. */
export const LOG_FILE_READ_BYTES = 1024 * 1024

/** Characters of a build id (its random end) naming the folder of its logs: 256 folders of files, not one of all. */
const FOLDER_CHARS = 2

export class LogFiles {
  readonly dir: string
  private readonly folders = new Set<string>()

  constructor (dir: string) {
    this.dir = dir
  }

  private place (id: string): { folder: string, file: string } {
    const folder = join(this.dir, buildOf(id).slice(-FOLDER_CHARS))
    return { folder, file: join(folder, id) }
  }

  /**
   * Write `bytes` at offset `at` of log `id`'s file, made on its first write. Bytes a log keeps elsewhere (whole
   * blocks kept as content) leave a hole, which takes no room.
   */
  async write (id: string, at: number, bytes: Uint8Array): Promise<void> {
    const { folder, file } = this.place(id)
    const handle = await open(file, 'r+').catch(async (err: any) => {
      if (err.code !== 'ENOENT') throw err
      if (!this.folders.has(folder)) {
        await mkdir(folder, { recursive: true })
        this.folders.add(folder)
      }
      return await open(file, 'w')
    })
    try {
      for (let done = 0; done < bytes.length;) {
        const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, at + done)
        done += bytesWritten
      }
    } finally {
      await handle.close()
    }
  }

  /** Bytes `from` to `to` of log `id`, in reads of up to LOG_FILE_READ_BYTES. Throws if the file holds fewer. */
  async * read (id: string, from: number, to: number): AsyncGenerator<Uint8Array> {
    if (from >= to) return
    const handle = await open(this.place(id).file, 'r')
    try {
      for (let at = from; at < to;) {
        const bytes = new Uint8Array(Math.min(LOG_FILE_READ_BYTES, to - at))
        const { bytesRead } = await handle.read(bytes, 0, bytes.length, at)
        if (bytesRead === 0) throw new Error(`log ${id}: its file ends at ${at}, before ${to}`)
        at += bytesRead
        yield bytesRead === bytes.length ? bytes : bytes.subarray(0, bytesRead)
      }
    } finally {
      await handle.close()
    }
  }
}

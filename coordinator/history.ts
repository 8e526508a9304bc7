// Build history in LevelDB. Keys are build ids, which sort by creation time, so "newest first" is a reverse scan.
// An `active` index lists queued and running builds so a restart reloads the queue without walking all history.
import { Level } from 'level'
import type { Build } from './build.ts'
import { FINISHED } from './build.ts'

export interface BuildHistory {
  open (): Promise<void>
  close (): Promise<void>
  save (build: Build): Promise<void>
  get (id: string): Promise<Build | undefined>
  list (limit: number): Promise<Build[]>
  active (): Promise<Build[]>
}

export class LevelBuildHistory implements BuildHistory {
  private readonly db: Level<string, string>
  private readonly builds
  private readonly activeIndex
  /** Writes go one after another: two saves of one build must land in the order they were made. */
  private writing: Promise<void> = Promise.resolve()
  private readonly pending = new Map<string, Build>()

  constructor (path: string) {
    this.db = new Level<string, string>(path)
    this.builds = this.db.sublevel<string, Build>('builds', { valueEncoding: 'json' })
    this.activeIndex = this.db.sublevel<string, string>('active', {})
  }

  async open (): Promise<void> {
    await this.db.open()
  }

  async close (): Promise<void> {
    await this.writing
    await this.db.close()
  }

  save (build: Build): Promise<void> {
    // Snapshot now: the caller keeps mutating the live object. Saves made while a batch is being written
    // go together in the next one, and only a build's newest snapshot is written: under load one batch
    // carries many builds' changes instead of five writes per build.
    this.pending.set(build.id, structuredClone(build))
    const done = this.writing.then(async () => {
      if (this.pending.size === 0) return
      const batch = this.db.batch()
      for (const value of this.pending.values()) {
        batch.put(value.id, value, { sublevel: this.builds })
        if (FINISHED.has(value.status)) batch.del(value.id, { sublevel: this.activeIndex })
        else batch.put(value.id, '', { sublevel: this.activeIndex })
      }
      this.pending.clear()
      await batch.write()
    })
    this.writing = done.catch(() => {})
    return done
  }

  // Reads wait for the writes already queued: a build saved a moment ago must read back as saved.
  async get (id: string): Promise<Build | undefined> {
    await this.writing
    return await this.builds.get(id)
  }

  async list (limit: number): Promise<Build[]> {
    await this.writing
    return await this.builds.values({ reverse: true, limit }).all()
  }

  async active (): Promise<Build[]> {
    await this.writing
    const ids = await this.activeIndex.keys().all()
    const builds = await this.builds.getMany(ids)
    return builds.filter((b): b is Build => b !== undefined)
  }
}

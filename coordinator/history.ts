// Build history in LevelDB. Keys are build ids, which sort by creation time, so "newest first" is a reverse scan.
// An `active` index lists queued and running builds so a restart reloads the queue without walking all history.
import { Level } from 'level'
import { openLevel } from '../storage/blockstore.ts'
import type { Build } from '../grid/build.ts'
import { FINISHED } from '../grid/build.ts'

export interface BuildHistory {
  open (): Promise<void>
  close (): Promise<void>
  save (build: Build): Promise<void>
  get (id: string): Promise<Build | undefined>
  list (limit: number): Promise<Build[]>
  active (): Promise<Build[]>
}

export class LevelBuildHistory implements BuildHistory {
  /**
   * The coordinator's database, for what it keeps beside builds (pipelines, repositories) in sublevels of their own:
   * opened and closed with it, and no sublevel name of this file ('builds', 'active', 'artifact-builds', 'evicted').
   */
  readonly db: Level<string, string>
  private readonly builds
  private readonly activeIndex
  /** `${cid}!${buildId}` for every artifact a build recorded: which builds to mark when content is evicted. */
  private readonly artifactIndex
  /** CID → when its last copy was evicted (GET /api/artifacts/:cid answers 410 with it). */
  private readonly evictedIndex
  /** Writes go one after another: two saves of one build must land in the order they were made. */
  private writing: Promise<void> = Promise.resolve()
  private readonly pending = new Map<string, Build>()

  constructor (path: string) {
    this.db = new Level<string, string>(path)
    this.builds = this.db.sublevel<string, Build>('builds', { valueEncoding: 'json' })
    this.activeIndex = this.db.sublevel<string, string>('active', {})
    this.artifactIndex = this.db.sublevel<string, string>('artifact-builds', {})
    this.evictedIndex = this.db.sublevel<string, string>('evicted', {})
  }

  async open (): Promise<void> {
    await openLevel(this.db)
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
        for (const artifact of value.artifacts) batch.put(`${artifact.cid}!${value.id}`, '', { sublevel: this.artifactIndex })
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

  /** When the grid's last copy of `cid` was evicted, if it was (and has not been put again since). */
  async evictedAt (cid: string): Promise<string | undefined> {
    return await this.evictedIndex.get(cid)
  }

  /** Note that the last copy of `cid` was evicted, on the content and on every build that kept it as an artifact. */
  async markEvicted (cid: string, at: string): Promise<void> {
    await this.evictedIndex.put(cid, at)
    await this.markArtifacts(cid, at)
  }

  /** `cid` is held again: drop the eviction notes. */
  async clearEvicted (cid: string): Promise<void> {
    if (await this.evictedIndex.get(cid) === undefined) return
    await this.evictedIndex.del(cid)
    await this.markArtifacts(cid, undefined)
  }

  private async markArtifacts (cid: string, at: string | undefined): Promise<void> {
    await this.writing
    for (const key of await this.artifactIndex.keys({ gt: `${cid}!`, lt: `${cid}!\xff` }).all()) {
      const build = await this.get(key.slice(cid.length + 1))
      if (build === undefined) continue
      for (const artifact of build.artifacts) {
        if (artifact.cid !== cid) continue
        if (at === undefined) delete artifact.evicted
        else artifact.evicted = at
      }
      await this.save(build)
    }
  }

  async active (): Promise<Build[]> {
    await this.writing
    const ids = await this.activeIndex.keys().all()
    const builds = await this.builds.getMany(ids)
    return builds.filter((b): b is Build => b !== undefined)
  }
}

// Pipelines in LevelDB, in sublevels of the coordinator's database (the one coordinator/history.ts keeps builds in).
// Keys are pipeline ids, which sort by creation time, so "newest first" is a reverse scan; an `active` index lists
// the unfinished ones, so a restart reloads them without walking every pipeline ever run.
import type { Level } from 'level'
import type { Pipeline } from '../grid/build.ts'
import { PIPELINE_FINISHED } from '../grid/build.ts'

/** Where pipelines are kept. Reads see every save made before them; "not found" is undefined, not an error. */
export interface PipelineHistory {
  /** Keep a snapshot of `pipeline` as it is now (the caller goes on changing the live object). */
  save (pipeline: Pipeline): Promise<void>
  get (id: string): Promise<Pipeline | undefined>
  /** Newest first. */
  list (limit: number): Promise<Pipeline[]>
  /** Pipelines not yet succeeded, failed or cancelled. */
  active (): Promise<Pipeline[]>
  /** Resolves once every save made so far is written. */
  flush (): Promise<void>
}

/** Pipelines in two sublevels of the coordinator's database, `pipelines` and `pipelines-active`; opened and closed with it. */
export class LevelPipelineHistory implements PipelineHistory {
  private readonly pipelines
  private readonly activeIndex
  private readonly db: Level<string, string>
  /** Writes go one after another, and saves made while a batch is written go together in the next (as history.ts does). */
  private writing: Promise<void> = Promise.resolve()
  private readonly pending = new Map<string, Pipeline>()

  constructor (db: Level<string, string>) {
    this.db = db
    this.pipelines = db.sublevel<string, Pipeline>('pipelines', { valueEncoding: 'json' })
    this.activeIndex = db.sublevel<string, string>('pipelines-active', {})
  }

  save (pipeline: Pipeline): Promise<void> {
    this.pending.set(pipeline.id, structuredClone(pipeline))
    const done = this.writing.then(async () => {
      if (this.pending.size === 0) return
      const batch = this.db.batch()
      for (const value of this.pending.values()) {
        batch.put(value.id, value, { sublevel: this.pipelines })
        if (PIPELINE_FINISHED.has(value.status)) batch.del(value.id, { sublevel: this.activeIndex })
        else batch.put(value.id, '', { sublevel: this.activeIndex })
      }
      this.pending.clear()
      await batch.write()
    })
    this.writing = done.catch(() => {})
    return done
  }

  async get (id: string): Promise<Pipeline | undefined> {
    await this.writing
    return await this.pipelines.get(id)
  }

  async list (limit: number): Promise<Pipeline[]> {
    await this.writing
    return await this.pipelines.values({ reverse: true, limit }).all()
  }

  async active (): Promise<Pipeline[]> {
    await this.writing
    const ids = await this.activeIndex.keys().all()
    const found = await this.pipelines.getMany(ids)
    return found.filter((p): p is Pipeline => p !== undefined)
  }

  async flush (): Promise<void> {
    await this.writing
  }
}

/** Pipelines in a Map: what LevelPipelineHistory keeps, minus the disk (unit tests, and a coordinator without one). */
export class MemoryPipelineHistory implements PipelineHistory {
  private readonly pipelines = new Map<string, Pipeline>()

  async save (pipeline: Pipeline): Promise<void> {
    this.pipelines.set(pipeline.id, structuredClone(pipeline))
  }

  async get (id: string): Promise<Pipeline | undefined> {
    const pipeline = this.pipelines.get(id)
    return pipeline === undefined ? undefined : structuredClone(pipeline)
  }

  async list (limit: number): Promise<Pipeline[]> {
    return [...this.pipelines.values()].sort((a, b) => a.id < b.id ? 1 : -1).slice(0, limit).map(p => structuredClone(p))
  }

  async active (): Promise<Pipeline[]> {
    return [...this.pipelines.values()].filter(p => !PIPELINE_FINISHED.has(p.status)).map(p => structuredClone(p))
  }

  async flush (): Promise<void> {}
}

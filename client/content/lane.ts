// One target of a put, apart from the put itself: each target (this node's blockstore, or a store over libp2p) gets
// its own stream and its own failure, so a put to several replicas sends to all of them at once and goes on without
// one that fails. A lane asks its target which blocks of a group it lacks while the groups before are still being
// sent, and sends only those.
import type { Block } from '../../grid/content.ts'
import { parseCid } from '../../grid/content.ts'
import { askMissing } from '../../protocols/block-missing.ts'
import { BlockSender } from '../../protocols/block-put.ts'
import type { PutTarget } from './put.ts'

/** How PutResult.stores names a target: a store's peer ID, a local target's `name` (`local` when absent). */
export function targetName (target: PutTarget): string {
  return 'local' in target ? target.name ?? 'local' : target.store.peer
}

/** One target of a put: its own stream and its own failure; the others go on without it. */
export class Lane {
  readonly target: PutTarget
  failure: Error | undefined
  private sender: BlockSender | undefined

  constructor (target: PutTarget) {
    this.target = target
  }

  get name (): string {
    return targetName(this.target)
  }

  /** Groups handed over and not yet sent, in order. */
  private chain: Promise<void> = Promise.resolve()

  /**
   * Hand a group over: the target is asked now which blocks it lacks, and they are sent once the groups before
   * this one are. The question and its answer travel behind megabytes of blocks on the same connection; asking
   * only after the last group was sent left the pipe empty for a fifth of a put. Resolves once the group before
   * this one is sent, so a writer holds at most two groups.
   */
  enqueue (group: Block[], sent: (counts: { blocks: number, bytes: number }) => void, done: () => void): Promise<void> {
    const lacking = this.lacking(group)
    lacking.catch(() => {})
    const previous = this.chain
    this.chain = previous.then(async () => { sent(await this.send(group, await lacking)) })
    this.chain.catch(() => {})
    // `done` once nothing reads the group's bytes any more: the target acknowledged them, or this lane failed.
    this.chain.then(async () => { await this.sender?.acknowledged() }, () => {}).then(done, done)
    return previous
  }

  /** Every group handed over is sent. */
  async drain (): Promise<void> {
    await this.chain
  }

  private async lacking (group: Array<Pick<Block, 'cid'>>): Promise<Set<string>> {
    const t = this.target
    if ('local' in t) return new Set((await t.local.missing(group.map(b => b.cid), true)).map(String))
    return new Set(await askMissing(t.host, t.store, group.map(b => b.cid.toString())))
  }

  /**
   * Whether the target holds the block `cid` (a content's root: then it is asked to name it, see putContent). A
   * local target without a root catalog says no: nothing there would check that every block the root lists is held.
   */
  async holds (cid: string): Promise<boolean> {
    if ('local' in this.target && this.target.roots === undefined) return false
    return (await this.lacking([{ cid: parseCid(cid) }])).size === 0
  }

  /** Send the blocks of `group` this target lacks; returns how many blocks and bytes went. */
  private async send (group: Block[], lacking: Set<string>): Promise<{ blocks: number, bytes: number }> {
    const t = this.target
    if ('local' in t) {
      const fresh = group.filter(b => lacking.has(b.cid.toString()))
      await t.local.putMany(fresh)
      return { blocks: fresh.length, bytes: fresh.reduce((n, b) => n + b.bytes.length, 0) }
    }
    let blocks = 0
    let bytes = 0
    for (const block of group) {
      if (!lacking.has(block.cid.toString())) continue
      this.sender ??= await BlockSender.open(t.host, t.store)
      await this.sender.send(block).catch(async (err: Error) => { throw await this.reason(err) })
      blocks++
      bytes += block.bytes.length
    }
    return { blocks, bytes }
  }

  /** Name the root and wait until the target acknowledged everything. */
  async finish (cid: string): Promise<void> {
    const t = this.target
    if ('local' in t) {
      await t.roots?.add(parseCid(cid))
      return
    }
    this.sender ??= await BlockSender.open(t.host, t.store)
    await this.sender.sendRoot(cid).catch(async (err: Error) => { throw await this.reason(err) })
    await this.sender.finish()
  }

  /**
   * Why a write failed: a store that refuses a block (the store is full) says so and closes the stream, and a write
   * racing that close fails with only "the stream is closed". The store's own reason comes on the acknowledgements,
   * which finish() waits for; it is the one worth telling.
   */
  private async reason (err: Error): Promise<Error> {
    return await (this.sender?.finish().then(() => err, (reason: Error) => reason) ?? err)
  }

  abort (err: Error): void {
    this.failure ??= err
    this.sender?.abort()
  }
}

// sha256 of bulk content on a thread of its own. Moving content is CPU-bound on the machines we measure (issue 20):
// a `grid get` spent a third of its main thread hashing (each block against its CID, then the whole content against
// the manifest's sha256) while the other core had room. Hashed here, the main thread decrypts and writes the next
// block meanwhile. The result is the same digest node:crypto gives on the main thread; nothing is checked less.
//
// One thread per process, started on first use and left out of the process's reasons to stay alive when idle.
// Small inputs are hashed inline: under OFF_THREAD_MIN_BYTES a round trip to the thread costs more than the hash.
import { createHash } from 'node:crypto'
import { Worker } from 'node:worker_threads'

/** Below this many bytes a hash runs inline: the copy and the message round trip would cost more. */
export const OFF_THREAD_MIN_BYTES = 256 * 1024

// CommonJS, as `eval: true` runs it. Messages: { id, op: 'once' | 'update' | 'digest', bytes? }; answers { id, digest }.
const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const running = new Map()
parentPort.on('message', ({ id, op, bytes }) => {
  if (op === 'once') return parentPort.postMessage({ id, digest: createHash('sha256').update(bytes).digest() })
  let hash = running.get(id)
  if (hash === undefined) running.set(id, hash = createHash('sha256'))
  if (op === 'update') return hash.update(bytes)
  running.delete(id)
  parentPort.postMessage({ id, digest: hash.digest() })
})
`

let worker: Worker | undefined
let nextId = 0
const waiting = new Map<number, { resolve: (digest: Uint8Array) => void, reject: (err: Error) => void }>()

function thread (): Worker {
  if (worker !== undefined) return worker
  // execArgv: none of the parent's flags (--input-type=module would make this CommonJS source an ES module).
  const started = new Worker(THREAD_SOURCE, { eval: true, execArgv: [] })
  started.unref()
  started.on('message', ({ id, digest }: { id: number, digest: Uint8Array }) => {
    const waiter = waiting.get(id)
    waiting.delete(id)
    if (waiting.size === 0) started.unref()
    waiter?.resolve(new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength))
  })
  // A thread that dies (out of memory) is replaced on the next use; whoever waited on it hears why, and a running
  // hash it held fails at its digest (ThreadHash checks which thread it fed).
  started.on('error', err => {
    if (worker === started) worker = undefined
    const failed = [...waiting.values()]
    waiting.clear()
    for (const waiter of failed) waiter.reject(err)
  })
  worker = started
  return started
}

function post (w: Worker, message: { id: number, op: 'once' | 'update' | 'digest', bytes?: Uint8Array }, answer: boolean): Promise<Uint8Array> | undefined {
  // A copy of exactly these bytes, transferred: a view would carry (and copy) its whole underlying buffer. Not
  // `.slice()`: on a Buffer that is a view, and transferring its buffer would empty the caller's.
  const bytes = message.bytes !== undefined ? new Uint8Array(message.bytes) : undefined
  const transfer = bytes !== undefined ? [bytes.buffer as ArrayBuffer] : []
  if (!answer) {
    w.postMessage({ ...message, bytes }, transfer)
    return undefined
  }
  return new Promise((resolve, reject) => {
    waiting.set(message.id, { resolve, reject })
    w.ref()
    w.postMessage({ ...message, bytes }, transfer)
  })
}

/** sha256 of `bytes` (32 bytes), off the main thread when they are large. Throws only if the thread fails. */
export async function sha256OffThread (bytes: Uint8Array): Promise<Uint8Array> {
  if (bytes.byteLength < OFF_THREAD_MIN_BYTES) return new Uint8Array(createHash('sha256').update(bytes).digest())
  return await post(thread(), { id: nextId++, op: 'once', bytes }, true)!
}

/**
 * A running sha256 fed on the main thread and computed on the hash thread, in the order fed: `update` returns at
 * once (after copying the bytes), `digest` waits for every update before it. One use only, like node:crypto's Hash.
 */
export class ThreadHash {
  private readonly id = nextId++
  /** The thread fed so far: a digest from another (the first died) would be of part of the content. */
  private fed: Worker | undefined
  private done = false

  update (bytes: Uint8Array): void {
    if (this.done) throw new Error('ThreadHash: digest already taken')
    if (bytes.byteLength === 0) return
    const w = thread()
    if (this.fed !== undefined && this.fed !== w) throw new Error('the hash thread stopped in the middle of a hash')
    this.fed = w
    post(w, { id: this.id, op: 'update', bytes }, false)
  }

  /** The digest as lowercase hex, once every update was hashed. Throws if the thread stopped meanwhile. */
  async digest (): Promise<string> {
    this.done = true
    const w = thread()
    if (this.fed !== undefined && this.fed !== w) throw new Error('the hash thread stopped in the middle of a hash')
    return Buffer.from(await post(w, { id: this.id, op: 'digest' }, true)!).toString('hex')
  }
}

/** SHA2-256's multihash code: the only hash a grid CID may use (grid/content.ts parseCid). */
const SHA2_256 = 0x12

/** Whether `bytes` are what `cid` names (grid/content.ts `matches`), hashed off the main thread when large. */
export async function matchesOffThread (cid: { multihash: { code: number, digest: Uint8Array } }, bytes: Uint8Array): Promise<boolean> {
  if (cid.multihash.code !== SHA2_256) return false
  return Buffer.compare(await sha256OffThread(bytes), cid.multihash.digest) === 0
}

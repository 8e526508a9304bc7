// Artifacts over HTTP: upload a raw body as content (201 with its CID, once it is on its replicas), download
// content by CID with Content-Length and byte ranges (206). The bytes come from this node's store or the grid's
// stores, the placed ones first, verified. Content whose last copy was evicted answers 410, saying so.
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import { stream as honoStream } from 'hono/streaming'
import { parseCid } from '../grid/content.ts'
import { ReplicasUnreachableError } from '../client/content/put.ts'
import { readContent } from '../client/content/read.ts'
import { contentInfo } from '../client/content/info.ts'
import type { PutResult } from '../client/content/put.ts'
import type { ContentSources } from '../client/content/read.ts'
import type { PeerAddress } from '../net/dial.ts'

export interface ArtifactsInit {
  /** Where content is read from; `holders` is asked with the CID so the placed stores come first. */
  sources: Omit<ContentSources, 'holders'> & { holders: (cid: string) => PeerAddress[] }
  /** Put an upload on its replicas (putPlaced); undefined when the grid has no store. */
  put: (() => ((source: AsyncIterable<Uint8Array>) => Promise<PutResult>) | undefined)
  /** When the grid's last copy of `cid` was evicted, if it was. */
  evictedAt?: (cid: string) => Promise<string | undefined>
}

/** `bytes=A-B`, `bytes=A-` or `bytes=-N` against a size; undefined for no header, 'bad' if unsatisfiable. */
export function parseRange (header: string | undefined, size: number): { from: number, to: number } | undefined | 'bad' {
  if (header === undefined) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return 'bad'
  if (m[1] === '') {
    const n = Number(m[2])
    return n === 0 ? 'bad' : { from: Math.max(0, size - n), to: size }
  }
  const from = Number(m[1])
  const to = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1)
  return from >= size || from >= to ? 'bad' : { from, to }
}

export function artifactRoutes (init: ArtifactsInit, auth: MiddlewareHandler): Hono {
  const routes = new Hono()

  routes.post('/', auth, async c => {
    const put = init.put()
    // Every failure of a put (no store, a full one, none reachable) is a GridError: app.onError answers its status.
    if (put === undefined) throw new ReplicasUnreachableError('the grid has no store to keep artifacts (start one with grid store)')
    const body = c.req.raw.body
    const source = body === null ? (async function * () {})() : body as unknown as AsyncIterable<Uint8Array>
    const stored = await put(source)
    return c.json({ cid: stored.cid, size: stored.size, sha256: stored.sha256 }, 201)
  })

  routes.get('/:cid', async c => {
    let cid
    try {
      cid = parseCid(c.req.param('cid'))
    } catch (err: any) {
      return c.json({ error: err.message }, 400)
    }
    const sources: ContentSources = { ...init.sources, holders: () => init.sources.holders(cid.toString()) }
    let info
    try {
      info = await contentInfo(sources, cid)
    } catch {
      const evicted = await init.evictedAt?.(cid.toString())
      if (evicted !== undefined) return c.json({ error: `${cid} was evicted at ${evicted}: its last copy was removed to make room on a full store, so the grid no longer has it`, evicted }, 410)
      return c.json({ error: `no node holds ${cid}` }, 404)
    }
    const range = parseRange(c.req.header('range'), info.size)
    if (range === 'bad') {
      return c.json({ error: `the range is outside the content's ${info.size} bytes` }, 416, { 'Content-Range': `bytes */${info.size}` })
    }
    const { from, to } = range ?? { from: 0, to: info.size }
    c.status(range === undefined ? 200 : 206)
    c.header('Content-Type', 'application/octet-stream')
    c.header('Content-Length', String(to - from))
    c.header('Accept-Ranges', 'bytes')
    c.header('ETag', `"${cid.toString()}"`)
    c.header('Cache-Control', 'public, max-age=31536000, immutable')
    if (range !== undefined) c.header('Content-Range', `bytes ${from}-${to - 1}/${info.size}`)
    // Hono answers HEAD by running this handler and dropping the body: a stream started here would read the content
    // from its store for nobody, and hang on its first write.
    if (c.req.method === 'HEAD') return c.body(null)
    return honoStream(c, async out => {
      const stop = new AbortController()
      out.onAbort(() => stop.abort())
      try {
        for await (const chunk of readContent(sources, cid, { from, to }, stop.signal)) await out.write(chunk)
      } catch {
        // Headers are gone already: cutting the response short is how a client learns the body is incomplete.
        out.abort()
      }
    })
  })

  return routes
}

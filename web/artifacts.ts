// Artifacts over HTTP: upload a raw body as content (201 with its CID), download content by CID with
// Content-Length and byte ranges (206). The bytes come from this node's store or the grid's stores, verified.
import { Hono } from 'hono'
import type { MiddlewareHandler } from 'hono'
import { stream as honoStream } from 'hono/streaming'
import { parseCid } from '../artifact-store/content.ts'
import { contentInfo, putContent, readContent } from '../artifact-store/content-client.ts'
import type { ContentSources, PutTarget } from '../artifact-store/content-client.ts'

export interface ArtifactsInit {
  sources: ContentSources
  /** Where uploads go: this node's store, or one of the grid's. Undefined when the grid has no store. */
  target: () => PutTarget | undefined
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
    const target = init.target()
    if (target === undefined) return c.json({ error: 'the grid has no store to keep artifacts (start one with grid store)' }, 503)
    const body = c.req.raw.body
    const source = body === null ? (async function * () {})() : body as unknown as AsyncIterable<Uint8Array>
    const put = await putContent(target, source)
    return c.json({ cid: put.cid, size: put.size, sha256: put.sha256 }, 201)
  })

  routes.get('/:cid', async c => {
    let cid
    try {
      cid = parseCid(c.req.param('cid'))
    } catch (err: any) {
      return c.json({ error: err.message }, 400)
    }
    let info
    try {
      info = await contentInfo(init.sources, cid)
    } catch {
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
    return honoStream(c, async out => {
      const stop = new AbortController()
      out.onAbort(() => stop.abort())
      try {
        for await (const chunk of readContent(init.sources, cid, { from, to }, stop.signal)) await out.write(chunk)
      } catch {
        // Headers are gone already: cutting the response short is how a client learns the body is incomplete.
        out.abort()
      }
    })
  })

  return routes
}

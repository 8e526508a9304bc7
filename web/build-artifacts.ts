// `GET /api/builds/:id/artifacts.tar`: every artifact a build kept, as one tar streamed from the stores (the bytes
// come as web/artifacts.ts reads them: this node's store, then the placed stores, every block checked). Each file
// keeps its recorded mode and each link stays a link, so `tar x` gives back what the build left. The size is known
// before the first byte (headers plus padded content), so the answer has a Content-Length; a read that fails
// halfway cuts the answer short, which any tar reader reports as a truncated archive.
import { Hono } from 'hono'
import { stream as honoStream } from 'hono/streaming'
import { Header, Pax } from 'tar'
import { parseCid } from '../grid/content.ts'
import { readContent } from '../client/content/read.ts'
import type { ContentSources } from '../client/content/read.ts'
import type { PeerAddress } from '../net/dial.ts'
import type { ArtifactRecord, Build } from '../grid/build.ts'
import { FINISHED } from '../grid/build.ts'
import { isBuildId } from '../grid/ids.ts'
import { tarEntryProblem } from '../worker/workspace.ts'

const BLOCK = 512

export interface BuildArtifactsInit {
  builds: { get: (id: string) => Promise<Build | undefined> }
  /** Where content is read from; `holders` is asked with the CID so the placed stores come first. */
  sources: Omit<ContentSources, 'holders'> & { holders: (cid: string) => PeerAddress[] }
}

/** The header blocks of one entry: a pax header first when a path or link target does not fit ustar's fields. */
function headerOf (artifact: ArtifactRecord, mtime: Date): Buffer {
  const link = artifact.link
  const fields = {
    path: artifact.path,
    mode: link !== undefined ? 0o777 : (artifact.mode ?? 0o644) & 0o777,
    size: link !== undefined ? 0 : artifact.size,
    mtime,
    type: link !== undefined ? 'SymbolicLink' as const : 'File' as const,
    linkpath: link ?? '',
    uid: 0,
    gid: 0,
    uname: '',
    gname: ''
  }
  const header = new Header(fields)
  const needPax = header.encode()
  const block = header.block as Buffer
  if (!needPax) return block
  return Buffer.concat([new Pax({ path: artifact.path, linkpath: link, size: fields.size, mtime }).encode(), block])
}

const padding = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK

export function buildArtifactRoutes (init: BuildArtifactsInit): Hono {
  const routes = new Hono()

  routes.get('/:id/artifacts.tar', async c => {
    const id = c.req.param('id')
    const build = isBuildId(id) ? await init.builds.get(id) : undefined
    if (build === undefined) return c.json({ error: `no build ${id}` }, 404)
    if (!FINISHED.has(build.status)) return c.json({ error: `build ${id} is ${build.status}: its artifacts are recorded when it ends` }, 409)
    const mtime = new Date(build.finished ?? build.created)
    // Content whose last copy was evicted cannot be sent; a path a tar reader would refuse is not offered.
    const entries = build.artifacts
      .filter(a => a.evicted === undefined)
      .filter(a => tarEntryProblem({ path: a.path, type: a.link !== undefined ? 'SymbolicLink' : 'File', linkpath: a.link }) === undefined)
      .map(a => ({ artifact: a, header: headerOf(a, mtime) }))
    const left = build.artifacts.length - entries.length
    const length = entries.reduce((n, e) => n + e.header.length + (e.artifact.link !== undefined ? 0 : e.artifact.size + padding(e.artifact.size)), 2 * BLOCK)
    c.header('Content-Type', 'application/x-tar')
    c.header('Content-Length', String(length))
    c.header('Content-Disposition', `attachment; filename="${build.id}-artifacts.tar"`)
    if (left > 0) c.header('X-Grid-Left-Out', `${left} artifact(s) evicted or not extractable`)
    return honoStream(c, async out => {
      const stop = new AbortController()
      out.onAbort(() => stop.abort())
      try {
        for (const { artifact, header } of entries) {
          await out.write(header)
          if (artifact.link !== undefined) continue
          const cid = parseCid(artifact.cid)
          const sources: ContentSources = { ...init.sources, holders: () => init.sources.holders(artifact.cid) }
          let sent = 0
          for await (const chunk of readContent(sources, cid, {}, stop.signal)) {
            sent += chunk.byteLength
            await out.write(chunk)
          }
          if (sent !== artifact.size) throw new Error(`${artifact.path}: ${sent} bytes, not ${artifact.size}`)
          const pad = padding(artifact.size)
          if (pad > 0) await out.write(new Uint8Array(pad))
        }
        await out.write(new Uint8Array(2 * BLOCK))
      } catch {
        // Headers are gone already: cutting the answer short is how a client learns the archive is incomplete.
        out.abort()
      }
    })
  })

  return routes
}

// Pipelines over HTTP (CONTRACT.md, Pipelines): start one from a pipeline file and a tree already put on the grid,
// list them, read one, cancel one. Writes need the API token, as POST /api/builds does; reads are open. Every error
// is `{ "error": "one sentence" }`: a bad file names its job, key and line (PipelineFileError from grid/pipeline.ts).
import { Hono } from 'hono'
import { listLimit } from './errors.ts'
import type { MiddlewareHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { bodyLimit } from 'hono/body-limit'
import { z } from 'zod'
import type { Pipeline } from '../grid/build.ts'
import { parseCid } from '../grid/content.ts'
import { BUILD_ID_PATTERN } from '../grid/ids.ts'
import { MAX_PIPELINE_FILE_BYTES } from '../grid/constants.ts'
import type { Pipelines } from '../coordinator/pipelines.ts'

/**
 * Bytes of a `POST /api/pipelines` body: a pipeline file at MAX_PIPELINE_FILE_BYTES still fits once written as a
 * JSON string (each newline and quote escaped to two bytes), with room for the other fields. A larger body is
 * refused with 413 before the rest of it is read.
 */
export const MAX_PIPELINE_REQUEST_BYTES = 2 * MAX_PIPELINE_FILE_BYTES + 4096

/** What the routes use of coordinator/pipelines.ts. */
export type PipelinesApi = Pick<Pipelines, 'create' | 'get' | 'list' | 'cancel'>

const fail = (status: 400 | 404, message: string): never => {
  throw new HTTPException(status, { message })
}

const text = (max: number) => z.string({ error: 'expected text' }).max(max, `must be at most ${max} characters`)

/** The body of POST /api/pipelines; unknown keys are typos, not extras to ignore. */
const startRequest = z.strictObject({
  pipeline: z.union([z.string(), z.record(z.string(), z.unknown())], {
    error: issue => issue.input === undefined ? 'a pipeline needs its file: YAML text or an object' : 'expected YAML text or an object'
  }),
  src: z.string({ error: issue => issue.input === undefined ? 'a pipeline needs the CID of its tree (as grid put prints it)' : 'expected a CID (as grid put prints it)' }),
  ref: text(2_000).optional(),
  commit: text(64).optional()
})

/** Routes to mount at `/api/pipelines`; `auth` guards the writes. */
export function pipelineRoutes (pipelines: PipelinesApi, auth: MiddlewareHandler): Hono {
  const routes = new Hono()
  // The 413 goes out before the rest of the body is read: close the connection, or a client reusing it would
  // have its next request land in the unread remainder (as POST /api/builds does).
  const requestLimit = bodyLimit({
    maxSize: MAX_PIPELINE_REQUEST_BYTES,
    onError: c => c.json({ error: `a pipeline request is at most ${MAX_PIPELINE_REQUEST_BYTES} bytes (a pipeline file at most ${MAX_PIPELINE_FILE_BYTES})` }, 413, { Connection: 'close' })
  })

  routes.post('/', auth, requestLimit, async c => {
    let body: unknown
    try {
      body = await c.req.json()
    } catch {
      fail(400, 'the body must be JSON: { "pipeline": YAML text or an object, "src": CID }')
    }
    const parsed = startRequest.safeParse(body)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const where = issue.path.length > 0 ? issue.path.join('.') : 'body'
      const message = issue.code === 'unrecognized_keys' ? `unknown key ${issue.keys.map(k => JSON.stringify(k)).join(', ')}` : issue.message
      fail(400, where === 'body' && issue.code === 'invalid_type' ? 'the body must be a JSON object: { "pipeline": YAML text or an object, "src": CID }' : `${where}: ${message}`)
    }
    const { pipeline: file, src, ref, commit } = parsed.data!
    try {
      parseCid(src)
    } catch (err: any) {
      fail(400, `src: ${err.message} (expected the CID grid put prints)`)
    }
    const source = { repo: null, url: '', ...(ref !== undefined ? { ref } : {}), ...(commit !== undefined ? { commit } : {}), trigger: 'api' as const }
    // A bad file is a PipelineFileError: app.onError answers its 400 with the sentence naming job, key and line.
    const pipeline = await pipelines.create({ file, src, source })
    return c.json({ id: pipeline.id }, 201)
  })

  routes.get('/', async c => {
    const limit = listLimit(c.req.query('limit'))
    return c.json(await pipelines.list(limit))
  })

  routes.get('/:id', async c => c.json(await known(pipelines, c.req.param('id'))))

  routes.post('/:id/cancel', auth, async c => {
    const pipeline = await known(pipelines, c.req.param('id'))
    // An ended pipeline is PipelineFinishedError: 409.
    return c.json(await pipelines.cancel(pipeline.id))
  })

  return routes
}

async function known (pipelines: PipelinesApi, id: string): Promise<Pipeline> {
  if (!BUILD_ID_PATTERN.test(id)) fail(400, `${id.slice(0, 100)} is not a pipeline id`)
  return await pipelines.get(id) ?? fail(404, `no pipeline ${id}`)
}

// What `grid run` asks the coordinator about pipelines, over /nameless-grid/builds: start one from a .grid.yml and a
// source tar, and read one back. An error reply (a bad file names its job, key and line) is one line for the user.
import type { GridHost } from '../../net/host.ts'
import type { JoinCode } from '../../net/join-code.ts'
import type { BuildsRequest } from '../../protocols/builds.ts'
import type { Pipeline } from '../../grid/build.ts'
import { ask } from './ask.ts'
import { UsageError } from './report.ts'

/** The pipeline requests of protocols/builds.ts. */
export type PipelineRequest = Extract<BuildsRequest, { t: 'run-pipeline' | 'get-pipeline' }>

/**
 * One pipeline request; resolves with the pipeline the reply carries. An error reply (a bad .grid.yml, an unknown
 * id, a coordinator that runs no pipelines) is UsageError with the coordinator's sentence; failing to reach the
 * grid is ask()'s GridUnreachableError.
 */
export async function askPipeline (host: GridHost, code: JoinCode, request: PipelineRequest): Promise<Pipeline> {
  const reply = await ask(host, code, request)
  if (reply.t === 'error') throw new UsageError(reply.error)
  if (reply.t !== 'pipeline') throw new UsageError(`coordinator answered ${reply.t}`)
  return reply.pipeline
}

// The grid's ids, and every way one is read back. A build id names a build; `BUILD.aN` is its Nth attempt (the
// fencing token a worker's reports carry); `BUILD.aN.sM` is the log of that attempt's step M, named before any
// byte of it exists. A job's input `build:BUILD/PATH` names an artifact of another build. Ids are `[0-9a-z.]`
// only, so they go into database keys and protocol messages as they are; nothing else slices them.
import { randomBytes } from 'node:crypto'
import { z } from 'zod'

/** A build id as peers may send it: newBuildId makes 17 characters, the bound leaves room without inviting abuse. */
const BUILD_ID = '[0-9a-z]{9,40}'

/** Build ids, attempt ids and log ids: checked before they reach a database key or a protocol. */
export const ID_PATTERN = new RegExp(`^${BUILD_ID}(\\.a[0-9]{1,4}(\\.s[0-9]{1,4})?)?$`)

/** A build id alone (not an attempt's or a log's); pipeline ids have the same form. */
export const BUILD_ID_PATTERN = new RegExp(`^${BUILD_ID}$`)

/** Any id of the grid (build, attempt or log) in a protocol message. */
export const idSchema = z.string().regex(ID_PATTERN)

/** A job input naming another build's artifact: `build:BUILD_ID/ARTIFACT_PATH`. */
export const ARTIFACT_REF_PATTERN = new RegExp(`^build:${BUILD_ID}\\/[^\\0]+$`)

const ARTIFACT_REF_PREFIX = 'build:'

let lastMillis = 0

/** Build ids sort by creation time (LevelDB lists history newest first by key) and stay unguessable. */
export function newBuildId (now: number = Date.now()): string {
  lastMillis = Math.max(now, lastMillis + 1)
  return lastMillis.toString(36).padStart(9, '0') + randomBytes(4).toString('hex')
}

/** The id of a build's attempt `attemptNumber` (1 for the first). */
export function attemptId (buildId: string, attemptNumber: number): string {
  return `${buildId}.a${attemptNumber}`
}

/** A log id is made up front from the attempt and step, so it names the log before any byte exists. */
export function logId (attemptId: string, step: number): string {
  return `${attemptId}.s${step}`
}

/** A valid id that names a build (not one of its attempts or logs). */
export function isBuildId (id: string): boolean {
  return ID_PATTERN.test(id) && !id.includes('.')
}

/** A valid id that names a step's log. */
export function isLogId (id: string): boolean {
  return ID_PATTERN.test(id) && id.includes('.s')
}

/** The build an attempt id or log id belongs to (a build id is its own). */
export function buildOf (id: string): string {
  const dot = id.indexOf('.')
  return dot < 0 ? id : id.slice(0, dot)
}

/** The attempt a log belongs to; undefined for an id that is not a log's. */
export function attemptOfLog (log: string): string | undefined {
  const at = log.lastIndexOf('.s')
  return at > 0 ? log.slice(0, at) : undefined
}

/** A job input `build:ID/PATH`, read back. */
export interface ArtifactRef {
  build: string
  artifact: string
}

/** `build:ID/PATH` as `{ build: ID, artifact: PATH }`; undefined for any other input (a CID). */
export function parseArtifactRef (ref: string): ArtifactRef | undefined {
  if (!ref.startsWith(ARTIFACT_REF_PREFIX)) return undefined
  const slash = ref.indexOf('/')
  return { build: ref.slice(ARTIFACT_REF_PREFIX.length, slash), artifact: ref.slice(slash + 1) }
}

/** Pipeline ids are made like build ids: they sort by creation time and stay unguessable. */
export function newPipelineId (now: number = Date.now()): string {
  return newBuildId(now)
}

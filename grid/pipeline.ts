// A pipeline file (`.grid.yml`, CONTRACT.md "Pipelines"): read strictly, then planned into the builds of one
// pipeline. Pure code, no I/O: the coordinator and `grid run` hand it text (or the object the HTTP API took) and
// get back the builds to create, each a job validated as strictly as one sent to POST /api/builds, or one error
// naming the job, the key and the line. docs/pipeline.md is the user's reference.
import picomatch from 'picomatch'
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, visit } from 'yaml'
import type { Document, YAMLError } from 'yaml'
import { GridError } from '../net/errors.ts'
import {
  MAX_AFTER_BUILDS, MAX_MATRIX_COMBINATIONS, MAX_PIPELINE_ALIASES, MAX_PIPELINE_BUILDS, MAX_PIPELINE_EXPANDED_BYTES,
  MAX_PIPELINE_FILE_BYTES
} from './constants.ts'
import { InvalidJobError, closest, jobSchema, parseJob } from './job.ts'
import type { Job, JobInput } from './job.ts'

/** Job names: they appear in build names (`test (cflags=-O0)`), `needs` and URLs, so they stay plain. */
export const PIPELINE_JOB_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/

/** Matrix axis names (and include keys): what `${{ matrix.KEY }}` can name. */
export const MATRIX_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/

/** `${{ matrix.KEY }}`, whitespace inside the braces allowed (as GitHub Actions writes it); other `${{ … }}` are left alone. */
const MATRIX_REFERENCE = /\$\{\{\s*matrix\.([^\s}]*)\s*\}\}/g

/** One problem of a pipeline file: where (`jobs.test.matrix.cflags`), what, and the line when the file was YAML text. */
export interface PipelineFileIssue {
  where: string
  message: string
  line?: number
  /** The build (`test (cflags=-O0)`) whose job was invalid, when only some combination of a matrix makes it so. */
  build?: string
}

/**
 * A bad .grid.yml: one sentence naming the job and key, and the line:
 * `jobs.test.matrix.cflags: expected a list of values (line 7)`. When a job fails validation on several keys, each
 * is listed (`…; …`), as InvalidJobError does. status 400.
 */
export class PipelineFileError extends GridError {
  name = 'PipelineFileError'
  readonly status = 400
  readonly issues: PipelineFileIssue[]

  constructor (issues: PipelineFileIssue[]) {
    super(issues.map(issueText).join('; '))
    this.issues = issues
  }
}

function issueText (issue: PipelineFileIssue): string {
  const notes = [
    ...(issue.build !== undefined ? [`in ${issue.build}`] : []),
    ...(issue.line !== undefined ? [`line ${issue.line}`] : [])
  ]
  return `${issue.where}: ${issue.message}${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`
}

/** A matrix value: YAML scalars only, since each becomes text in a name and in `${{ matrix.KEY }}`. */
export type MatrixValue = string | number | boolean
/** One combination as written in `include`/`exclude`: axis (or added key) to value. */
export type MatrixCombination = Record<string, MatrixValue>

/** A job's `matrix`, checked: axes in the order written, and GitHub Actions' `include`/`exclude` lists. */
export interface PipelineMatrix {
  axes: Record<string, MatrixValue[]>
  include: MatrixCombination[]
  exclude: MatrixCombination[]
}

/** One need of a job: another job of the file, whose artifacts are placed in the work dir first unless `artifacts` is false. */
export interface PipelineNeed {
  job: string
  artifacts: boolean
}

/**
 * A job of the file: every key of a JSON job except `src` (the pipeline's) and `after` (filled from `needs`), as
 * written (checked by planPipeline, after matrix substitution), plus the pipeline's own keys, checked here.
 */
export type PipelineFileJob = Omit<Partial<JobInput>, 'src' | 'after'> & {
  needs: PipelineNeed[]
  matrix?: PipelineMatrix
  branches?: string[]
}

/** The file as written, checked (shape only): names, needs, matrix and branches; the jobs' JSON keys are checked by planPipeline. */
export interface PipelineFile {
  env: Record<string, string>
  jobs: Record<string, PipelineFileJob>
}

/** The parsed YAML a PipelineFile came from, so planPipeline's errors can say their line too. */
interface YamlSource {
  doc: Document.Parsed
  lines: LineCounter
}

const SOURCES = new WeakMap<PipelineFile, YamlSource>()

type Path = Array<string | number>

/** The keys a pipeline job takes beyond a JSON job's. */
const PIPELINE_KEYS = ['needs', 'matrix', 'branches']
/** A JSON job's keys a pipeline job may not set, and why. */
const REFUSED_KEYS: Record<string, string> = {
  src: 'every build of a pipeline gets the commit\'s tree as src, so a job may not set its own',
  after: 'a pipeline job runs after other jobs of the file by "needs" (their names), not by build ids'
}

/** Every key a pipeline job may have: read from the JSON job schema, so a key added there is taken here too. */
function jobKeys (): string[] {
  return [...Object.keys(jobSchema.shape).filter(k => !Object.hasOwn(REFUSED_KEYS, k)), ...PIPELINE_KEYS]
}

/**
 * Read a pipeline file: YAML text (anchors, aliases and `<<` merge keys allowed; duplicate keys refused) or an
 * already-parsed object (the HTTP API accepts both). Checks the shape only: top-level `env` and `jobs`, job names,
 * every job's keys, `needs`, `matrix` and `branches`; planPipeline checks the rest.
 * Throws PipelineFileError (one sentence, with the line for text) for a file over MAX_PIPELINE_FILE_BYTES, a YAML
 * syntax error, aliases past MAX_PIPELINE_ALIASES ("billion laughs"), or a bad shape.
 */
export function parsePipelineFile (source: string | unknown): PipelineFile {
  if (typeof source === 'string') return parseText(source)
  let json: string | undefined
  try {
    json = JSON.stringify(source)
  } catch {
    // A cycle or a BigInt: nothing a JSON body or YAML could hold.
  }
  if (json === undefined) throw new PipelineFileError([{ where: 'pipeline', message: 'expected YAML text or a JSON object' }])
  const bytes = Buffer.byteLength(json)
  if (bytes > MAX_PIPELINE_FILE_BYTES) throw new PipelineFileError([{ where: 'pipeline', message: `a pipeline file is at most ${MAX_PIPELINE_FILE_BYTES} bytes (this one is ${bytes} as JSON)` }])
  return readFile(source, undefined)
}

function parseText (text: string): PipelineFile {
  const bytes = Buffer.byteLength(text)
  if (bytes > MAX_PIPELINE_FILE_BYTES) throw new PipelineFileError([{ where: 'pipeline', message: `a pipeline file is at most ${MAX_PIPELINE_FILE_BYTES} bytes (this one is ${bytes})` }])
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, merge: true, uniqueKeys: true, prettyErrors: false })
  // The first error only: after a syntax error the parser's later complaints are mostly echoes of it.
  if (doc.errors.length > 0) throw new PipelineFileError([yamlIssue(doc.errors[0], text, lines)])
  const alias = aliasIssue(doc, lines)
  if (alias !== undefined) throw new PipelineFileError([alias])
  let value: unknown
  try {
    value = doc.toJS({ maxAliasCount: MAX_PIPELINE_ALIASES })
  } catch (err) {
    // yaml throws while expanding for what its parser let through: aliases past the limit, odd merges.
    if (!(err instanceof Error)) throw err
    const message = /excessive alias/i.test(err.message)
      ? `the file's aliases expand too far (an anchor may be used fewer than ${MAX_PIPELINE_ALIASES} times, fewer still when it holds aliases itself): refused as a "billion laughs" file`
      : err.message.split('\n')[0]
    throw new PipelineFileError([{ where: 'yaml', message }])
  }
  const expanded = Buffer.byteLength(JSON.stringify(value) ?? '')
  if (expanded > MAX_PIPELINE_EXPANDED_BYTES) {
    throw new PipelineFileError([{ where: 'yaml', message: `the file is ${expanded} bytes once its aliases are expanded; at most ${MAX_PIPELINE_EXPANDED_BYTES}` }])
  }
  const source = { doc, lines }
  const file = readFile(value, source)
  SOURCES.set(file, source)
  return file
}

/** A YAML syntax error as one issue with its line; the commonest ones said in the grid's words. */
function yamlIssue (error: YAMLError, text: string, lines: LineCounter): PipelineFileIssue {
  const line = lines.linePos(error.pos[0]).line
  if (error.code === 'DUPLICATE_KEY') {
    // yaml points at the key's first character; the key runs to its colon (a quoted one keeps its quotes).
    const key = shortened(/^[^:\n]*/.exec(text.slice(error.pos[0], error.pos[0] + 200))?.[0].trim() ?? '', 60)
    return { where: 'yaml', message: `the key ${/^["']/.test(key) ? key : JSON.stringify(key)} is written twice in the same map`, line }
  }
  if (error.code === 'MULTIPLE_DOCS') return { where: 'yaml', message: 'a pipeline file is one YAML document (it has a second "---")', line }
  return { where: 'yaml', message: error.message.split('\n')[0].replace(/[.:]\s*$/, ''), line }
}

/**
 * An alias naming no anchor, or a `<<` merging something other than maps: yaml's parser lets both through and its
 * expansion throws without a line, so they are found here first, with theirs.
 */
function aliasIssue (doc: Document.Parsed, lines: LineCounter): PipelineFileIssue | undefined {
  let issue: PipelineFileIssue | undefined
  const at = (node: unknown, message: string): typeof visit.BREAK => {
    const offset = rangeStart(node)
    issue = { where: 'yaml', message, ...(offset !== undefined ? { line: lines.linePos(offset).line } : {}) }
    return visit.BREAK
  }
  visit(doc, {
    Alias (_, alias) {
      if (alias.resolve(doc) === undefined) return at(alias, `the alias *${alias.source} names no anchor (an anchor &${alias.source} must come before it)`)
    },
    Pair (_, pair) {
      if (!isScalar(pair.key) || typeof pair.key.value !== 'symbol') return
      for (const from of isSeq(pair.value) ? pair.value.items : [pair.value]) {
        const target = isAlias(from) ? from.resolve(doc) : from
        if (isAlias(from) && target === undefined) continue // said by Alias
        if (!isMap(target)) return at(pair.key, '"<<" merges maps only: an alias of one (<<: *defaults) or a list of them')
      }
    }
  })
  return issue
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Text short enough to quote in a one-line message. */
function shortened (text: string, max = 40): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}

/** What a value is, in a message: `a list`, `the number 3`. */
function kind (value: unknown): string {
  if (value === null || value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a map'
  if (typeof value === 'string') return `the text ${JSON.stringify(shortened(value))}`
  if (typeof value === 'number') return `the number ${value}`
  return String(value)
}

/** A path as a problem names it (`jobs.test.needs.0`); a segment with a space or control character is quoted so the sentence stays readable. */
function pathText (path: Path): string {
  if (path.length === 0) return 'pipeline'
  return path.map(p => typeof p === 'string' && (p === '' || /[\s\x00-\x1f\x7f]/.test(p)) ? JSON.stringify(p) : String(p)).join('.')
}

/** ` (did you mean build?)` for the one name a typo most likely meant (grid/job.ts closest), else ''. */
function suggestion (word: string, known: Iterable<string>): string {
  const best = closest(word, [...known])
  return best !== undefined ? ` (did you mean ${best}?)` : ''
}

/**
 * The line (1-based) of the node at `path` in the YAML it came from: the key's line for a map entry, the item's
 * for a list item. Follows aliases and `<<` merge keys to where a value was written; a path that leads nowhere
 * (a key the job lacks) gives the line of the deepest part that exists. Segments may be dotted text split too
 * finely (`inputs.lib.a`): a map tries the longest run of segments that names one of its keys.
 */
function lineAt (source: YamlSource | undefined, path: Path): number | undefined {
  if (source === undefined) return undefined
  let node: unknown = source.doc.contents
  let offset = rangeStart(node)
  for (let i = 0; i < path.length;) {
    let found: { key?: unknown, value: unknown } | undefined
    let used = 1
    for (let n = path.length - i; n >= 1 && found === undefined; n--) {
      found = entryOf(source.doc, node, path.slice(i, i + n).map(String).join('.'), new Set())
      used = n
    }
    if (found === undefined) break
    offset = rangeStart(found.key) ?? rangeStart(found.value) ?? offset
    node = found.value
    i += used
  }
  return offset === undefined ? undefined : source.lines.linePos(offset).line
}

function rangeStart (node: unknown): number | undefined {
  const range = (node as { range?: unknown } | null | undefined)?.range
  return Array.isArray(range) && typeof range[0] === 'number' ? range[0] : undefined
}

/** The entry `segment` of a map (its own keys first, then what `<<` merges in, in order) or list. */
function entryOf (doc: Document.Parsed, node: unknown, segment: string, seen: Set<unknown>): { key?: unknown, value: unknown } | undefined {
  const target = isAlias(node) ? node.resolve(doc) : node
  if (target === undefined || seen.has(target)) return undefined
  seen.add(target)
  if (isMap(target)) {
    for (const pair of target.items) {
      if (isScalar(pair.key) && typeof pair.key.value !== 'symbol' && String(pair.key.value) === segment) return { key: pair.key, value: pair.value }
    }
    for (const pair of target.items) {
      if (!isScalar(pair.key) || typeof pair.key.value !== 'symbol') continue
      for (const from of isSeq(pair.value) ? pair.value.items : [pair.value]) {
        const found = entryOf(doc, from, segment, seen)
        if (found !== undefined) return found
      }
    }
  } else if (isSeq(target) && /^\d+$/.test(segment) && Number(segment) < target.items.length) {
    return { value: target.items[Number(segment)] }
  }
  return undefined
}

/** Check the file's shape and build a PipelineFile; every problem thrown as one PipelineFileError with its line. */
function readFile (value: unknown, source: YamlSource | undefined): PipelineFile {
  const fail = (path: Path, message: string): never => {
    throw new PipelineFileError([{ where: pathText(path), message, line: lineAt(source, path) }])
  }
  if (value === null || value === undefined) fail([], 'the file is empty: it needs "jobs" (a map of job names to jobs)')
  if (!isRecord(value)) return fail([], `expected a map with "jobs" (and optionally "env"), not ${kind(value)}`)
  for (const key of Object.keys(value)) {
    // `x-` keys hold anchors for the jobs to merge (`x-defaults: &defaults`), as Docker Compose's extension fields do.
    if (key.startsWith('x-')) continue
    if (key !== 'env' && key !== 'jobs') fail([key], `unknown key${suggestion(key, ['env', 'jobs'])}: a pipeline file has "env" and "jobs" (and "x-" keys for anchors)`)
  }
  const env = value.env === undefined ? {} : readEnv(value.env, ['env'], fail)
  const envIssues = jobSchema.shape.env.safeParse(env)
  if (!envIssues.success) {
    const issue = envIssues.error.issues[0]
    const path = ['env', ...issue.path.map(p => typeof p === 'symbol' ? String(p) : p)]
    fail(path, issue.code === 'invalid_key' ? issue.issues[0]?.message ?? issue.message : issue.message)
  }
  if (value.jobs === undefined) fail(['jobs'], 'a pipeline file needs "jobs" (a map of job names to jobs)')
  if (!isRecord(value.jobs)) return fail(['jobs'], `expected a map of job names to jobs, not ${kind(value.jobs)}`)
  const entries = Object.entries(value.jobs)
  if (entries.length === 0) fail(['jobs'], 'a pipeline needs at least one job')
  const jobs = entries.map(([name, job]): [string, PipelineFileJob] => {
    if (!PIPELINE_JOB_NAME_PATTERN.test(name)) fail(['jobs', name], 'job names are 1-64 letters, digits or _.- (they appear in build names and URLs)')
    return [name, readJob(job, ['jobs', name], fail)]
  })
  return { env: env as Record<string, string>, jobs: Object.fromEntries(jobs) }
}

type Fail = (path: Path, message: string) => never

/**
 * An `env` map, its values checked for the classic YAML trap: `CI: true` and `VERSION: 1.10` are a boolean and
 * the number 1.1, not text; GitHub turns them into strings silently, which loses the `0` of `1.10`. Say so instead.
 */
function readEnv (env: unknown, path: Path, fail: Fail): Record<string, unknown> {
  if (!isRecord(env)) return fail(path, `expected a map of environment variables, not ${kind(env)}`)
  for (const [key, value] of Object.entries(env)) {
    if (typeof value === 'number' || typeof value === 'boolean') {
      fail([...path, key], `expected text, not ${kind(value)}: quote it ("${String(value)}") so YAML keeps it as written`)
    }
  }
  return env
}

function readJob (raw: unknown, path: Path, fail: Fail): PipelineFileJob {
  if (!isRecord(raw)) return fail(path, `expected a map of job keys (steps, requires, needs, …), not ${kind(raw)}`)
  const known = jobKeys()
  for (const key of Object.keys(raw)) {
    if (Object.hasOwn(REFUSED_KEYS, key)) fail([...path, key], REFUSED_KEYS[key])
    if (!known.includes(key)) fail([...path, key], `unknown key${suggestion(key, known)}`)
  }
  if (raw.env !== undefined && isRecord(raw.env)) readEnv(raw.env, [...path, 'env'], fail)
  const rest = Object.fromEntries(Object.entries(raw).filter(([key]) => !PIPELINE_KEYS.includes(key)))
  const job: PipelineFileJob = { ...rest, needs: readNeeds(raw.needs, [...path, 'needs'], fail) }
  if (raw.matrix !== undefined) job.matrix = readMatrix(raw.matrix, [...path, 'matrix'], fail)
  if (raw.branches !== undefined) job.branches = readBranches(raw.branches, [...path, 'branches'], fail)
  return job
}

function readNeeds (raw: unknown, path: Path, fail: Fail): PipelineNeed[] {
  if (raw === undefined) return []
  if (!Array.isArray(raw)) return fail(path, `expected a list of job names (or { job: NAME, artifacts: false }), not ${kind(raw)}`)
  return raw.map((need: unknown, i): PipelineNeed => {
    if (typeof need === 'string') return { job: need, artifacts: true }
    if (!isRecord(need)) return fail([...path, i], `expected a job name or { job: NAME, artifacts: false }, not ${kind(need)}`)
    for (const key of Object.keys(need)) {
      if (key !== 'job' && key !== 'artifacts') fail([...path, i, key], `unknown key${suggestion(key, ['job', 'artifacts'])}`)
    }
    if (typeof need.job !== 'string') fail([...path, i, 'job'], `expected the name of a job, not ${kind(need.job)}`)
    if (need.artifacts !== undefined && typeof need.artifacts !== 'boolean') fail([...path, i, 'artifacts'], `expected true or false, not ${kind(need.artifacts)}`)
    return { job: need.job as string, artifacts: need.artifacts !== false }
  })
}

function isMatrixValue (value: unknown): value is MatrixValue {
  return typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))
}

/** Why a matrix value cannot be one, or undefined: values go into build names, shown on one line in lists and logs. */
function matrixValueProblem (value: unknown): string | undefined {
  if (!isMatrixValue(value)) return `expected text, a number or true/false, not ${kind(value)}`
  if (typeof value === 'string' && /[\x00-\x1f\x7f]/.test(value)) return 'a matrix value may not hold a control character or line break (it goes into the build\'s name)'
  return undefined
}

function readMatrix (raw: unknown, path: Path, fail: Fail): PipelineMatrix {
  if (!isRecord(raw)) return fail(path, `expected a map of axes ({ cflags: [-O0, -O2] }), not ${kind(raw)}`)
  const axes: Array<[string, MatrixValue[]]> = []
  for (const [axis, values] of Object.entries(raw)) {
    if (axis === 'include' || axis === 'exclude') continue
    if (!MATRIX_KEY_PATTERN.test(axis)) fail([...path, axis], 'axis names are a letter or _ then up to 63 letters, digits, _ or -')
    if (!Array.isArray(values)) fail([...path, axis], `expected a list of values, not ${kind(values)}`)
    if ((values as unknown[]).length === 0) fail([...path, axis], 'expected a list of values, not an empty one (it would leave no combination)')
    ;(values as unknown[]).forEach((value, i) => {
      const problem = matrixValueProblem(value)
      if (problem !== undefined) fail([...path, axis, i], problem)
    })
    axes.push([axis, values as MatrixValue[]])
  }
  const combinations = (key: 'include' | 'exclude'): MatrixCombination[] => {
    const list = raw[key]
    if (list === undefined) return []
    if (!Array.isArray(list)) return fail([...path, key], `expected a list of combinations ({ cc: gcc, opt: 2 }), not ${kind(list)}`)
    return list.map((combination: unknown, i) => {
      if (!isRecord(combination) || Object.keys(combination).length === 0) {
        return fail([...path, key, i], `expected a combination ({ cc: gcc, opt: 2 }), not ${isRecord(combination) ? 'an empty map' : kind(combination)}`)
      }
      for (const [name, value] of Object.entries(combination)) {
        if (!MATRIX_KEY_PATTERN.test(name)) fail([...path, key, i, name], 'matrix keys are a letter or _ then up to 63 letters, digits, _ or -')
        // GitHub refuses an exclude naming a key the matrix lacks: it is a typo, and it would exclude nothing.
        if (key === 'exclude' && !axes.some(([axis]) => axis === name)) fail([...path, key, i, name], `the matrix has no axis ${name}${suggestion(name, axes.map(([axis]) => axis))}`)
        const problem = matrixValueProblem(value)
        if (problem !== undefined) fail([...path, key, i, name], problem)
      }
      return combination as MatrixCombination
    })
  }
  const include = combinations('include')
  const exclude = combinations('exclude')
  if (axes.length === 0 && include.length === 0) fail(path, 'expected at least one axis ({ cflags: [-O0, -O2] }) or an include list')
  return { axes: Object.fromEntries(axes), include, exclude }
}

function readBranches (raw: unknown, path: Path, fail: Fail): string[] {
  if (!Array.isArray(raw)) return fail(path, `expected a list of branch globs ([ main, "release/*" ]), not ${kind(raw)}`)
  if (raw.length === 0) fail(path, 'an empty list would leave the job out of every pipeline (remove "branches" to run it on every branch)')
  raw.forEach((glob: unknown, i) => {
    if (typeof glob !== 'string' || glob === '') fail([...path, i], `expected a branch glob, not ${kind(glob)}`)
  })
  return raw as string[]
}

/** One build to create. `needs` are names of other PlannedBuilds; `job` is the job's key in the file; `spec` is a JSON job validated with parseJob (src set). */
export interface PlannedBuild {
  name: string
  job: string
  needs: Array<{ name: string, artifacts: boolean }>
  spec: Job
}

/**
 * Plan a pipeline: expand each job's matrix (one build per combination, named `test (cc=gcc, opt=2)` with the
 * keys in the order written, then keys `include` added), substitute `${{ matrix.KEY }}` in every string value,
 * put the file's `env` under each job's, validate each build's job with parseJob (src = options.src), filter by
 * branch, and order the builds topologically (needs first; otherwise in file order).
 *
 * `options.branch` (`main` or `refs/heads/main`): a job whose `branches` globs (picomatch) do not match it is left
 * out, and so is every job that needs a left-out job, transitively: a job runs with its needs' artifacts or not at
 * all. Without `branch` nothing is left out. The whole file is checked whatever the branch, so a file is valid on
 * every branch or none. May return [] when the branch leaves every job out.
 *
 * Throws PipelineFileError naming the job and key (and line, for YAML text): an unknown need, a job needing itself,
 * a cycle (`build → test → build`, read "needs"), an unknown `${{ matrix.KEY }}`, a matrix past
 * MAX_MATRIX_COMBINATIONS or a pipeline past MAX_PIPELINE_BUILDS, a build needing more than MAX_AFTER_BUILDS
 * builds, or anything parseJob refuses (naming the combination when the job has a matrix).
 */
export function planPipeline (file: PipelineFile, options: { src?: string, branch?: string }): PlannedBuild[] {
  const source = SOURCES.get(file)
  const fail = (path: Path, message: string): never => {
    throw new PipelineFileError([{ where: pathText(path), message, line: lineAt(source, path) }])
  }
  if (options.src !== undefined && !jobSchema.shape.src.safeParse(options.src).success) {
    throw new PipelineFileError([{ where: 'src', message: 'expected a CID (as grid put prints it)' }])
  }
  const jobs = new Map(Object.entries(file.jobs))
  checkNeeds(jobs, fail)
  const order = topologicalOrder(jobs)

  const expanded = new Map<string, Array<{ name: string, combination?: Map<string, MatrixValue> }>>()
  let total = 0
  for (const name of jobs.keys()) {
    const job = jobs.get(name) as PipelineFileJob
    const builds = job.matrix === undefined
      ? [{ name }]
      : combinations(job.matrix, (path, message) => fail(['jobs', name, 'matrix', ...path], message)).map(c => ({ name: `${name} (${combinationText(c)})`, combination: c }))
    const seen = new Set<string>()
    for (const build of builds) {
      if (seen.has(build.name)) fail(['jobs', name, 'matrix'], `two combinations are the same: ${build.name}`)
      seen.add(build.name)
    }
    total += builds.length
    expanded.set(name, builds)
  }
  if (total > MAX_PIPELINE_BUILDS) fail(['jobs'], `the pipeline has ${total} builds with every combination; at most ${MAX_PIPELINE_BUILDS}`)

  const planned = new Map<string, PlannedBuild[]>()
  for (const name of order) {
    const job = jobs.get(name) as PipelineFileJob
    const needs = job.needs.flatMap(need => (expanded.get(need.job) ?? []).map(build => ({ name: build.name, artifacts: need.artifacts })))
    if (needs.length > MAX_AFTER_BUILDS) {
      fail(['jobs', name, 'needs'], `a build runs after at most ${MAX_AFTER_BUILDS} builds; these needs are ${needs.length} (every combination of a matrix job counts)`)
    }
    const builds = expanded.get(name) ?? []
    planned.set(name, builds.map(build => ({
      name: build.name,
      job: name,
      needs,
      spec: buildSpec(file, name, job, build.name, build.combination, options.src, source)
    })))
  }

  const left = leftOut(jobs, order, options.branch)
  return order.filter(name => !left.has(name)).flatMap(name => planned.get(name) ?? [])
}

/** Every need names another job of the file, once. */
function checkNeeds (jobs: Map<string, PipelineFileJob>, fail: Fail): void {
  for (const [name, job] of jobs) {
    const seen = new Set<string>()
    job.needs.forEach((need, i) => {
      if (need.job === name) fail(['jobs', name, 'needs', i], 'a job cannot need itself')
      if (!jobs.has(need.job)) fail(['jobs', name, 'needs', i], `there is no job ${JSON.stringify(need.job)}${suggestion(need.job, jobs.keys())}`)
      if (seen.has(need.job)) fail(['jobs', name, 'needs', i], `${need.job} is listed twice`)
      seen.add(need.job)
    })
  }
  // A depth-first walk in file order finds a cycle and names it in the order the needs lead round it.
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (name: string): void => {
    state.set(name, 'open')
    stack.push(name)
    ;(jobs.get(name) as PipelineFileJob).needs.forEach((need, i) => {
      const seen = state.get(need.job)
      if (seen === 'open') fail(['jobs', name, 'needs', i], `the needs form a cycle: ${[...stack.slice(stack.indexOf(need.job)), need.job].join(' → ')}`)
      if (seen === undefined) visit(need.job)
    })
    stack.pop()
    state.set(name, 'done')
  }
  for (const name of jobs.keys()) if (!state.has(name)) visit(name)
}

/** Job names, each after everything it needs, otherwise in file order (Kahn's algorithm taking the earliest ready job). */
function topologicalOrder (jobs: Map<string, PipelineFileJob>): string[] {
  const names = [...jobs.keys()]
  const done = new Set<string>()
  const order: string[] = []
  while (order.length < names.length) {
    const next = names.find(name => !done.has(name) && (jobs.get(name) as PipelineFileJob).needs.every(need => done.has(need.job)))
    if (next === undefined) throw new Error('a cycle passed checkNeeds') // a bug, not a bad file
    done.add(next)
    order.push(next)
  }
  return order
}

/** Jobs a branch leaves out: their globs do not match it, or they need a job left out. */
function leftOut (jobs: Map<string, PipelineFileJob>, order: string[], ref: string | undefined): Set<string> {
  const left = new Set<string>()
  if (ref === undefined) return left
  const branch = ref.replace(/^refs\/heads\//, '')
  for (const name of order) {
    const job = jobs.get(name) as PipelineFileJob
    if ((job.branches !== undefined && !picomatch.isMatch(branch, job.branches, { dot: true })) || job.needs.some(need => left.has(need.job))) left.add(name)
  }
  return left
}

/**
 * A matrix's combinations, as GitHub Actions makes them: the product of the axes (the first axis varying
 * slowest), less every combination matching all of an `exclude` entry; then each `include` entry is added to
 * every combination whose axis values it does not contradict (overwriting values an earlier include added, never
 * an axis's), or, when it fits none, becomes a combination of its own.
 */
function combinations (matrix: PipelineMatrix, fail: Fail): Array<Map<string, MatrixValue>> {
  const axes = Object.entries(matrix.axes)
  const count = axes.reduce((n, [, values]) => n * values.length, 1)
  if (axes.length > 0 && count > MAX_MATRIX_COMBINATIONS) {
    fail([], `${count} combinations (${axes.map(([, values]) => values.length).join(' × ')}); a job has at most ${MAX_MATRIX_COMBINATIONS} (GitHub's limit)`)
  }
  let base: Array<Map<string, MatrixValue>> = axes.length === 0 ? [] : [new Map()]
  for (const [axis, values] of axes) base = base.flatMap(c => values.map(value => new Map([...c, [axis, value]])))
  base = base.filter(c => !matrix.exclude.some(entry => Object.entries(entry).every(([key, value]) => c.get(key) === value)))
  const extra: Array<Map<string, MatrixValue>> = []
  for (const entry of matrix.include) {
    let added = false
    for (const c of base) {
      if (!Object.entries(entry).every(([key, value]) => !Object.hasOwn(matrix.axes, key) || c.get(key) === value)) continue
      for (const [key, value] of Object.entries(entry)) c.set(key, value)
      added = true
    }
    if (!added) extra.push(new Map(Object.entries(entry)))
  }
  const all = [...base, ...extra]
  if (all.length === 0) fail(['exclude'], 'exclude leaves no combination: the job would never run')
  if (all.length > MAX_MATRIX_COMBINATIONS) fail([], `${all.length} combinations with include; a job has at most ${MAX_MATRIX_COMBINATIONS} (GitHub's limit)`)
  return all
}

/** `cc=gcc, opt=2`: axes in the order written, then keys include added, in the order they first appear (Map order). */
function combinationText (combination: Map<string, MatrixValue>): string {
  return [...combination].map(([key, value]) => `${key}=${String(value)}`).join(', ')
}

/** Every key the matrix can give a value to: its axes and whatever include adds. */
function matrixKeys (matrix: PipelineMatrix | undefined): string[] {
  if (matrix === undefined) return []
  return [...new Set([...Object.keys(matrix.axes), ...matrix.include.flatMap(entry => Object.keys(entry))])]
}

/** The JSON job of one build: matrix values substituted, the file's env under the job's, name and src filled in; validated. */
function buildSpec (
  file: PipelineFile, name: string, job: PipelineFileJob, buildName: string,
  combination: Map<string, MatrixValue> | undefined, src: string | undefined, source: YamlSource | undefined
): Job {
  const fail = (path: Path, message: string): never => {
    throw new PipelineFileError([{ where: pathText(path), message, line: lineAt(source, path) }])
  }
  const keys = matrixKeys(job.matrix)
  const lookup = (key: string, path: Path): string => {
    const value = combination?.get(key)
    if (value !== undefined) return String(value)
    // A key only some include entries set is empty in the other combinations, as in GitHub Actions.
    if (keys.includes(key)) return ''
    const hint = keys.length === 0 ? ' (this job has no matrix)' : suggestion(key, keys) || ` (the matrix has ${keys.join(', ')})`
    return fail(path, `there is no matrix key ${JSON.stringify(key)}${hint}`)
  }
  if (combination !== undefined && !Object.hasOwn(job, 'name')) {
    const named = jobSchema.shape.name.safeParse(buildName)
    if (!named.success) fail(['jobs', name, 'matrix'], `the build name ${JSON.stringify(shortened(buildName, 60))} is too long for a job's name (${named.error.issues[0].message}): shorten the matrix values or give the job a "name"`)
  }
  const { needs: _needs, matrix: _matrix, branches: _branches, ...rest } = job
  const body = substitute(rest, ['jobs', name], lookup, fail) as Record<string, unknown>
  const env = body.env === undefined ? { ...file.env } : isRecord(body.env) ? { ...file.env, ...body.env } : body.env
  const spec: Record<string, unknown> = { ...body, env, name: Object.hasOwn(body, 'name') ? body.name : buildName }
  if (src !== undefined) spec.src = src
  try {
    return parseJob(spec)
  } catch (err) {
    if (!(err instanceof InvalidJobError)) throw err
    throw new PipelineFileError(err.issues.map(issue => {
      const path: Path = issue.where === 'job' ? ['jobs', name] : ['jobs', name, ...issue.where.split('.')]
      return { where: pathText(path), message: issue.message, line: lineAt(source, path), ...(combination !== undefined ? { build: buildName } : {}) }
    }))
  }
}

/** A copy of `value` with `${{ matrix.KEY }}` replaced in every string; keys are left as written (a reference in one is refused). */
function substitute (value: unknown, path: Path, lookup: (key: string, path: Path) => string, fail: Fail): unknown {
  if (typeof value === 'string') return value.replace(MATRIX_REFERENCE, (_, key: string) => lookup(key, path))
  if (Array.isArray(value)) return value.map((item, i) => substitute(item, [...path, i], lookup, fail))
  if (!isRecord(value)) return value
  return Object.fromEntries(Object.entries(value).map(([key, item]) => {
    if (new RegExp(MATRIX_REFERENCE.source).test(key)) fail([...path, key], '${{ matrix.… }} is substituted in values, not in keys')
    return [key, substitute(item, [...path, key], lookup, fail)]
  }))
}

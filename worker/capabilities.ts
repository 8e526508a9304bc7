// What a worker says it can do. Detected: os, arch, cpus, memory and the tools on its PATH (with versions),
// so a job can require `{ "os": "linux", "python3": "*" }` without anyone configuring the worker. `git` is one of
// them (`git: "2.39.5"`): a pipeline's checkout build requires `git: "*"`.
import { execFile } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { availableParallelism, totalmem } from 'node:os'
import { delimiter, join } from 'node:path'
import { TOOL_PROBE_TIMEOUT_MS } from '../net/constants.ts'
import { GridError } from '../net/errors.ts'
import { CAPABILITY_KEY_PATTERN } from '../grid/job.ts'
import { MAX_CAPABILITY_VALUE_CHARS } from '../grid/constants.ts'
import type { Capabilities } from '../grid/build.ts'


const TOOLS = ['bash', 'git', 'make', 'cmake', 'gcc', 'clang', 'go', 'cargo', 'rustc', 'node', 'python3', 'java', 'docker', 'tar', 'zip'] as const

export class BadCapabilityError extends GridError {
  name = 'BadCapabilityError'
}

/**
 * `K=V` as given on the command line; `flag` is the option it came with (`--cap` on a worker, `--require` on
 * submit), named in the error so the user reads back what they typed.
 */
export function parseCapability (text: string, flag = '--cap'): [string, string] {
  const eq = text.indexOf('=')
  const key = eq < 0 ? text : text.slice(0, eq)
  if (eq < 0 || !CAPABILITY_KEY_PATTERN.test(key)) {
    throw new BadCapabilityError(`${flag} ${text}: expected KEY=VALUE with KEY made of letters, digits or _.:- (1-64 chars)`)
  }
  if (text.length - eq - 1 > MAX_CAPABILITY_VALUE_CHARS) {
    throw new BadCapabilityError(`${flag} ${key}=…: the value is longer than ${MAX_CAPABILITY_VALUE_CHARS} characters`)
  }
  return [key, text.slice(eq + 1)]
}

/**
 * The machine's environment as a step sees it: `env` without what npm adds when the worker itself runs under
 * `npx grid` or `npm start`, the `npm_*` variables and the `node_modules/.bin` folders (and npm's node-gyp shim) it
 * puts first on PATH. Otherwise every step, and the `node` capability, would get the grid's own bundled Node and
 * the project's package scripts instead of the host's tools, which is what a self-hosted CI agent promises.
 */
export function hostEnvironment (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const host: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(env)) if (!/^npm_/i.test(key)) host[key] = value
  if (env.PATH !== undefined && env.npm_lifecycle_event !== undefined) {
    host.PATH = env.PATH.split(delimiter).filter(dir => !/[\\/]node_modules[\\/]\.bin[\\/]?$/.test(dir) && !/[\\/]node-gyp-bin[\\/]?$/.test(dir)).join(delimiter)
  }
  return host
}

/**
 * What this machine offers a job: os, arch, cpus, memory (`16GiB`), and each tool of TOOLS found on the host's PATH
 * (hostEnvironment) with the version its `--version` prints (`git: "2.39.5"`), `yes` when it prints none. Each probe
 * is bounded by TOOL_PROBE_TIMEOUT_MS; run once, when the worker starts.
 */
export async function detectCapabilities (): Promise<Capabilities> {
  const caps: Capabilities = {
    os: process.platform,
    arch: process.arch,
    cpus: String(availableParallelism()),
    memory: `${Math.round(totalmem() / 2 ** 30)}GiB`
  }
  const found = await Promise.all(TOOLS.map(async tool => [tool, await toolVersion(tool)] as const))
  for (const [tool, version] of found) if (version !== undefined) caps[tool] = version
  return caps
}

async function onPath (tool: string): Promise<string | undefined> {
  for (const dir of (hostEnvironment().PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const path = join(dir, tool)
    try {
      await access(path, constants.X_OK)
      return path
    } catch {}
  }
  return undefined
}

async function toolVersion (tool: string): Promise<string | undefined> {
  const path = await onPath(tool)
  if (path === undefined) return undefined
  const flag = tool === 'go' ? 'version' : tool === 'java' ? '-version' : '--version'
  const probe = await new Promise<{ failed: boolean, output: string }>(resolve => {
    execFile(path, [flag], { timeout: TOOL_PROBE_TIMEOUT_MS }, (err, stdout, stderr) => resolve({ failed: err !== null, output: `${stdout}\n${stderr}` }))
  })
  // The first dotted number is the version in every tool above; "yes" when there is none to read. A tool that
  // failed without a word (a broken install, a probe past its timeout) is not there: a build requiring it (a
  // pipeline's checkout requires git) would only fail on this worker.
  const version = /(\d+\.\d+(?:\.\d+)?)/.exec(probe.output)?.[1]
  if (version === undefined && probe.failed && probe.output.trim() === '') return undefined
  return version ?? 'yes'
}

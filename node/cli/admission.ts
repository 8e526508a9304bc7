// Who may be in the grid, from beside the coordinator: `grid rotate` (a new secret and join code), `grid deny` and
// `grid allow` (one peer). They are writes to the coordinator's HTTP API with its token, not libp2p requests, so
// an operator needs only the data dir, not a place in the grid.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { GridCommand } from './usage.ts'
import { TOKEN_FILE, WEB_URL_FILE } from '../roles.ts'
import { dataOption, operatorListenOption } from './options.ts'
import { UsageError, log } from './report.ts'

/** An operator's write to the HTTP API of the grid whose data dir is `dataDir` (uses DATA/web-url and DATA/api-token). */
async function operatorRequest (dataDir: string, method: 'POST' | 'DELETE', path: string, json?: unknown): Promise<unknown> {
  const read = async (file: string): Promise<string> => {
    try {
      return (await readFile(join(dataDir, file), 'utf8')).trim()
    } catch {
      throw new UsageError(`no ${file} in ${dataDir}: run this beside a grid started with HTTP (grid up, or grid coordinator --http)`)
    }
  }
  const [url, token] = [await read(WEB_URL_FILE), await read(TOKEN_FILE)]
  let res: Response
  try {
    res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(json !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: json !== undefined ? JSON.stringify(json) : undefined
    })
  } catch (err: any) {
    throw new UsageError(`cannot reach the grid at ${url}: ${err.cause?.code ?? err.message}`)
  }
  const body = await res.json() as { error?: string }
  if (!res.ok) throw new UsageError(body.error ?? `the grid answered ${res.status}`)
  return body
}

/** Adds `grid rotate`, `grid deny` and `grid allow` to `grid`, in that order. */
export function admissionCommands (grid: GridCommand): void {
  grid.command('rotate')
    .description('make a new grid secret and join code; nodes holding only the old code are cut off (run beside the coordinator)')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .action(async (opts) => {
      const body = await operatorRequest(opts.data, 'POST', '/api/secret/rotate') as { join: string }
      process.stdout.write(`join: ${body.join}\n`)
      log('secret rotated: give the new join code to the nodes that stay')
    })

  grid.command('cancel')
    .description('cancel a queued or running build (run beside the coordinator: uses DATA/web-url and DATA/api-token)')
    .argument('<build-id>', 'what grid submit printed')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .action(async (id: string, opts) => {
      const build = await operatorRequest(opts.data, 'POST', `/api/builds/${encodeURIComponent(id)}/cancel`) as { status: string }
      log(`build ${id} ${build.status}`)
    })

  for (const [name, verb] of [['deny', 'shut a peer out of the grid now: dropped and refused by every node'], ['allow', 'let a denied peer back in']] as const) {
    grid.command(name)
      .description(`${verb} (run beside the coordinator: uses DATA/web-url and DATA/api-token)`)
      .argument('<peer>', 'a peer ID, as build history shows it (attempts[].worker)')
      .addOption(dataOption())
      .addOption(operatorListenOption())
      .action(async (peer: string, opts) => {
        const body = name === 'deny'
          ? await operatorRequest(opts.data, 'POST', '/api/denied', { peer })
          : await operatorRequest(opts.data, 'DELETE', `/api/denied/${encodeURIComponent(peer)}`)
        log(`${name === 'deny' ? 'denied' : 'allowed'} ${peer}; ${(body as { denied?: string[] }).denied?.length ?? 0} peer(s) denied`)
      })
  }
}

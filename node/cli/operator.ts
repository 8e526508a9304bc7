// Operator commands (`grid cancel`, `grid deny`, `grid repo`, `grid secret`, …) run beside the coordinator and talk
// to its HTTP API with its token: they need the data dir (DATA/web-url, DATA/api-token), not a place in the grid.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { TOKEN_FILE, WEB_URL_FILE } from '../roles.ts'
import { UsageError } from './report.ts'

async function dataFile (dataDir: string, file: string): Promise<string> {
  try {
    return (await readFile(join(dataDir, file), 'utf8')).trim()
  } catch {
    throw new UsageError(`no ${file} in ${dataDir}: run this beside a grid started with HTTP (grid up, or grid coordinator --http)`)
  }
}

/**
 * One request to the HTTP API of the grid whose data dir is `dataDir`, with its token; resolves with the answer's
 * JSON. Throws UsageError with the grid's own sentence (`{ "error" }`) for a 4xx or 5xx, or saying the grid could not
 * be reached, or that `dataDir` holds no web URL or token.
 */
export async function operatorRequest (dataDir: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, json?: unknown): Promise<unknown> {
  const [url, token] = [await dataFile(dataDir, WEB_URL_FILE), await dataFile(dataDir, TOKEN_FILE)]
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
  const body = await res.json().catch(() => ({})) as { error?: string }
  if (!res.ok) throw new UsageError(body.error ?? `the grid answered ${res.status}`)
  return body
}

/** The grid's web URL (DATA/web-url) without a trailing `/`, for printing whole URLs such as a webhook's. */
export async function operatorWebUrl (dataDir: string): Promise<string> {
  return (await dataFile(dataDir, WEB_URL_FILE)).replace(/\/+$/, '')
}

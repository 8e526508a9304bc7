// Serving the Hono app on a real port. `--http 127.0.0.1:0` picks a free one; the URL is what `web:` prints.
import { serve } from '@hono/node-server'
import type { ServerType } from '@hono/node-server'
import type { Hono } from 'hono'
import { GridError } from '../net/errors.ts'

export class BadHttpAddressError extends GridError {
  name = 'BadHttpAddressError'
}

export function parseHttpAddress (text: string): { host: string, port: number } {
  const match = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(text)
  const port = Number(match?.[2])
  if (match === null || port > 65535) throw new BadHttpAddressError(`--http ${text}: expected HOST:PORT, for example 127.0.0.1:8080`)
  return { host: match[1].replace(/^\[|\]$/g, ''), port }
}

export interface WebServer {
  url: string
  close (): Promise<void>
}

export async function startWebServer (app: Hono, address: string): Promise<WebServer> {
  const { host, port } = parseHttpAddress(address)
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s))
    s.once('error', reject)
  })
  const bound = server.address()
  const actualPort = typeof bound === 'object' && bound !== null ? bound.port : port
  const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host
  return {
    url: `http://${shown}:${actualPort}`,
    close: async () => {
      // Followers of live logs hold connections open; a shutdown must not wait for them.
      if ('closeAllConnections' in server) server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

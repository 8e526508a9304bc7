// The browser the web UI tests drive: Debian's chromium through playwright-core, one way for every test file.
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'

/** Debian's chromium, headless, with nothing that reaches out to the network by itself. */
export async function launchChromium (): Promise<Browser> {
  return await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
}

/**
 * Note every error `page` logs or throws in `errors` (a test asserts there are none), and every URL it asks for in
 * `urls` when given (the API token must never be in one); `label` says which page in the notes.
 */
export function watchPage (page: Page, label: string, errors: string[], urls?: string[]): void {
  page.on('pageerror', err => errors.push(`${label}: page error: ${err.message}`))
  page.on('console', message => { if (message.type() === 'error') errors.push(`${label}: console: ${message.text()}`) })
  if (urls !== undefined) page.on('request', request => { urls.push(request.url()) })
}

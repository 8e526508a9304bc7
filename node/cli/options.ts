// The options and argument parsers several commands share. A bad value is a commander InvalidArgumentError (or a
// GridError naming the flag itself), so it is a usage problem (node/cli/usage.ts), said with every other problem of
// the command line before any node starts.
import { InvalidArgumentError, Option } from 'commander'
import { multiaddr } from '@multiformats/multiaddr'
import { parseCapability } from '../../worker/capabilities.ts'
import { parseHttpAddress } from '../../web/server.ts'

/** Where a node keeps its identity and state, and where a client looks for DATA/join, unless told. */
export const DEFAULT_DATA = './.grid'

/** Accumulates a repeatable flag's values. */
export function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

/** A parser for a whole number from `min` to `max`. */
export function wholeNumber (min: number, max: number) {
  return (text: string): number => {
    const n = Number(text)
    if (!/^\d+$/.test(text) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`)
    return n
  }
}

/** A `host:port` for --http, checked as the web server will read it (a bad one names --http and the value). */
export function httpAddress (text: string): string {
  parseHttpAddress(text)
  return text
}

/** A repeatable `K=V` flag (`--cap`, `--require`), each checked as it is read; a bad one names `flag` and the value. */
export function capability (flag: string) {
  return (text: string, previous: string[] | undefined): string[] => {
    parseCapability(text, flag)
    return collect(text, previous)
  }
}

/** `K=V` values of a repeatable flag, checked already by `capability(flag)`. */
export function capabilities (texts: string[], flag = '--cap'): Record<string, string> {
  return Object.fromEntries(texts.map(text => parseCapability(text, flag)))
}

/** A repeatable --listen, each checked as a multiaddr here (a bad one is a flag error, not a failure to start). */
function listenAddress (allowNone: boolean) {
  return (text: string, previous: string[] | undefined): string[] => {
    if (!(allowNone && text === 'none')) {
      try {
        multiaddr(text)
      } catch {
        throw new InvalidArgumentError(`expected a multiaddr such as /ip4/0.0.0.0/tcp/0${allowNone ? ', or none' : ''}`)
      }
    }
    return collect(text, previous)
  }
}

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }

/** `10G`, `500M`, `1.5T`, `4096` (bytes): powers of 1024, with an optional `B` or `iB`. */
export function parseSize (text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim())
  const bytes = m === null ? NaN : Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()])
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new InvalidArgumentError(`expected a size such as 500M, 10G or 1T (got ${JSON.stringify(text.slice(0, 40))})`)
  return bytes
}

/** --data of a role command. */
export const dataOption = (): Option => new Option('--data <dir>', 'where this node keeps its identity and state').default(DEFAULT_DATA)

/** --listen, repeatable; `what` says its default and use for this command. */
export const listenOption = (what: string, allowNone = false): Option => new Option('--listen <multiaddr>', `listen address, repeatable (${what})`).argParser(listenAddress(allowNone))

/** --join of a role command that joins a grid (store, worker): it is required. */
export const joinOption = (): Option => new Option('--join <code-or-file>', 'the grid\'s join code, or a file holding it (DATA/join on the coordinator)').makeOptionMandatory()

/** Taken by operator commands too, so every command takes --data and --listen; they only talk HTTP, from anywhere. */
export const operatorListenOption = (): Option => listenOption('not used: this command only talks to the coordinator\'s HTTP API')

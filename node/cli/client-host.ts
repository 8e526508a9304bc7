// A client command (submit, tail, put, get) runs a throwaway libp2p node for as long as it talks to the grid. The
// options every client command takes and the host they describe live together: --listen reaches the host from
// the command's check, which runs before its action.
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Option } from 'commander'
import type { GridCommand } from './usage.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../../net/host.ts'
import type { GridHost } from '../../net/host.ts'
import type { JoinCode } from '../../net/join-code.ts'
import { JOIN_FILE, JOIN_TRUSTED_FILE } from '../roles.ts'
import { DEFAULT_DATA, listenOption } from './options.ts'

/** --listen of the client command being run: set before its action runs (one command per process). */
let clientListen: string[] = []

/**
 * The options every client command (submit, tail, put, get) takes: --join may be left out where DATA/join-trusted or
 * DATA/join exists (beside `grid up`, or with --data pointing at a grid's data dir: the operator's own machine, so
 * the trusted code first, and its builds may run on the grid's trusted workers); --listen makes its throwaway node listen.
 */
export function clientOptions (command: GridCommand): GridCommand {
  return command
    .addOption(new Option('--join <code-or-file>', 'the grid\'s join code, or a file holding it (default: DATA/join-trusted, else DATA/join, when one exists)'))
    .addOption(new Option('--data <dir>', 'a grid\'s data dir, where --join defaults to DATA/join-trusted or DATA/join; a client keeps nothing there').default(DEFAULT_DATA))
    .addOption(listenOption('none by default: a client only dials out'))
    .check(async command => {
      const opts = command.opts()
      clientListen = opts.listen ?? []
      if (opts.join !== undefined) return
      for (const name of [JOIN_TRUSTED_FILE, JOIN_FILE]) {
        const file = join(opts.data, name)
        if ((await stat(file).catch(() => undefined))?.isFile() === true) {
          command.setOptionValue('join', file)
          return
        }
      }
      command.problem(`give --join CODE_OR_FILE (there is no ${join(opts.data, JOIN_FILE)} to default to)`)
    })
}

/** A throwaway node for a client command: fresh identity, listening only where --listen says. */
export async function clientHost (code: JoinCode, listen: string[] = clientListen): Promise<GridHost> {
  return await createHost({ identity: await generateKeyPair('Ed25519'), secret: code.secret, listen, memory: code.addrs.some(a => a.toString().startsWith('/memory/')) })
}

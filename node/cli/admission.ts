// Who may be in the grid, from beside the coordinator: `grid code` (the join code to hand out, ordinary or trusted),
// `grid rotate` (a new secret and join codes, or with --trusted a new trusted code), `grid deny` and `grid allow`
// (one peer). Apart from `grid code`, which reads DATA, they are writes to the coordinator's HTTP API with its token,
// not libp2p requests, so an operator needs only the data dir, not a place in the grid.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { GridCommand } from './usage.ts'
import { JOIN_FILE, JOIN_TRUSTED_FILE } from '../roles.ts'
import { decodeJoinCode } from '../../net/join-code.ts'
import { dataOption, operatorListenOption } from './options.ts'
import { UsageError, log } from './report.ts'
import { operatorRequest } from './operator.ts'


/** Adds `grid code`, `grid rotate`, `grid cancel`, `grid deny` and `grid allow` to `grid`, in that order. */
export function admissionCommands (grid: GridCommand): void {
  grid.command('code')
    .description('print the grid\'s current join code, or with --trusted its trusted join code (run beside the coordinator: reads DATA)')
    .option('--trusted', 'the trusted join code: workers that join with it get secrets, and builds submitted with it may run on them')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .action(async (opts) => {
      const name = opts.trusted === true ? JOIN_TRUSTED_FILE : JOIN_FILE
      let text: string
      try {
        text = (await readFile(join(opts.data, name), 'utf8')).trim()
      } catch (err: any) {
        throw new UsageError(`no ${name} in ${opts.data} (${err.code ?? err.message}): run this beside a grid started with grid up or grid coordinator, which write it`)
      }
      // A damaged file says so here, not when a node given the code fails to join.
      const code = decodeJoinCode(text)
      if (opts.trusted === true && code.trust === undefined) throw new UsageError(`${join(opts.data, name)} holds an ordinary join code, not a trusted one`)
      process.stdout.write(`${text}\n`)
    })

  grid.command('rotate')
    .description('make a new grid secret and join codes, or with --trusted only a new trusted join code; nodes holding only an old code are cut off (run beside the coordinator)')
    .option('--trusted', 'only the trusted join code: workers trusted with the old one are cut off and come back untrusted with it')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .action(async (opts) => {
      if (opts.trusted === true) {
        const body = await operatorRequest(opts.data, 'POST', '/api/secret/rotate', { trusted: true }) as { join: string }
        process.stdout.write(`join: ${body.join}\n`)
        log('trusted join code rotated: give the new one to the trusted workers that stay; those holding only the old one are untrusted now')
        return
      }
      const body = await operatorRequest(opts.data, 'POST', '/api/secret/rotate') as { join: string }
      process.stdout.write(`join: ${body.join}\n`)
      log('secret rotated: give the new join code to the nodes that stay (grid code --trusted prints the new trusted one)')
    })

  grid.command('cancel')
    .description('cancel a queued or running build, or a pipeline and every build of it still queued or running (run beside the coordinator: uses DATA/web-url and DATA/api-token)')
    .argument('<id>', 'a build id (what grid submit printed) or a pipeline id (what grid run printed)')
    .addOption(dataOption())
    .addOption(operatorListenOption())
    .action(async (id: string, opts) => {
      // Build and pipeline ids look alike: a build is tried first, then a pipeline; an id that is neither says so once.
      try {
        const build = await operatorRequest(opts.data, 'POST', `/api/builds/${encodeURIComponent(id)}/cancel`) as { status: string }
        log(`build ${id} ${build.status}`)
        return
      } catch (err: any) {
        if (!(err instanceof UsageError) || !/^no build /.test(err.message)) throw err
      }
      try {
        const pipeline = await operatorRequest(opts.data, 'POST', `/api/pipelines/${encodeURIComponent(id)}/cancel`) as { status: string }
        log(`pipeline ${id} ${pipeline.status}`)
      } catch (err: any) {
        if (err instanceof UsageError && /^no pipeline /.test(err.message)) throw new UsageError(`no build or pipeline ${id}`)
        throw err
      }
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

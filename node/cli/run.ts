// `grid run`: a directory's .grid.yml as a pipeline on the grid, with the directory's working tree as its source (what
// git ignores left out, working-tree.ts), so a pipeline can be tried before anything is pushed. The file is checked
// here before anything is sent; the tree goes to the stores the way `submit --src` sends its directory; with
// --follow every build's log streams (follow-pipeline.ts) and the exit code says whether the pipeline succeeded.
import { readFile, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { GridCommand } from './usage.ts'
import { readJoinCode } from '../../net/join-code.ts'
import { isGridError } from '../../net/errors.ts'
import { ContentChangedError } from '../../grid/content.ts'
import { parsePipelineFile, planPipeline } from '../../grid/pipeline.ts'
import { putReadable } from '../../client/content/place.ts'
import { gridPlacement } from './ask.ts'
import { askPipeline } from './ask-pipeline.ts'
import { clientHost, clientOptions } from './client-host.ts'
import { tarDirectory } from './directory-tar.ts'
import { followPipeline } from './follow-pipeline.ts'
import { UsageError, log } from './report.ts'
import { readWorkingTree } from './working-tree.ts'

/** The file a directory's pipeline is read from (CONTRACT.md, Pipelines). */
export const PIPELINE_FILE = '.grid.yml'

/** Adds `grid run` to `grid`. */
export function runCommand (grid: GridCommand): GridCommand {
  /** The .grid.yml as read (and found sound) by the check: the action sends this text, not a later one. */
  let pipelineText = ''
  return clientOptions(grid.command('run')
    .description(`run DIR's ${PIPELINE_FILE} as a pipeline, with DIR's working tree as its source (what git ignores is left out); prints the pipeline id (or, with --follow, every build's log)`)
    .argument('[dir]', `the directory whose ${PIPELINE_FILE} runs`, '.')
    .option('--follow', 'stream every build\'s log, each after a header naming its job; exit 0 if the pipeline succeeded, 1 if not')
    .check(async (command, [dir]) => {
      const given = dir as string
      // `.` says nothing in a sentence: the directory is named as it is.
      const shown = given === '.' ? resolve(given) : given
      const info = await stat(given).catch(() => undefined)
      if (info === undefined || !info.isDirectory()) {
        command.problem(`${shown} is not a directory`)
        return
      }
      const file = join(given, PIPELINE_FILE)
      let text: string
      try {
        text = await readFile(file, 'utf8')
      } catch (err: any) {
        if (err.code !== 'ENOENT') command.problem(`cannot read ${file}: ${err.code ?? err.message}`)
        else if (await stat(join(given, '.grid.yaml')).catch(() => undefined) !== undefined) command.problem(`${shown} has no ${PIPELINE_FILE} (it has .grid.yaml: the grid reads ${PIPELINE_FILE})`)
        else command.problem(`${shown} has no ${PIPELINE_FILE}`)
        return
      }
      // A bad file fails here, before the tree is read or anything is sent: planned without a branch, the whole file
      // is checked (unknown needs, cycles, matrix keys, each build's job), as the coordinator will check it.
      try {
        planPipeline(parsePipelineFile(text), {})
      } catch (err) {
        if (!isGridError(err)) throw err
        command.problem(`${file}: ${err.message}`)
        return
      }
      pipelineText = text
    })
    .action(async (dir: string, opts) => {
      const code = await readJoinCode(opts.join)
      // The tree is listed before the grid is dialled: a git failure costs nothing, and the list is the same for the
      // tar's two passes (named, then sent) even if files appear meanwhile.
      const tree = await readWorkingTree(dir, log)
      const host = await clientHost(code)
      try {
        const placement = await gridPlacement(host, code)
        if (placement.stores.length === 0) throw new UsageError(`the grid has no store to send ${dir} to`)
        // Said once the grid answered: a grid that is down reads as one line, as from every other client command.
        log(tree.description)
        const put = await putReadable({ host, ...placement, warn: log }, () => tarDirectory(tree.dir, tree.selection)).catch((err: Error) => {
          throw err instanceof ContentChangedError ? new ContentChangedError(`${dir} changed while it was being sent: ${err.message}`) : err
        })
        log(`src ${dir === '.' ? tree.dir : dir}: ${put.cid} (${put.sentBytes} bytes sent)`)
        const pipeline = await askPipeline(host, code, {
          t: 'run-pipeline', pipeline: pipelineText, src: put.cid, url: tree.dir, ref: tree.git?.ref, commit: tree.git?.commit
        })
        if (opts.follow !== true) {
          process.stdout.write(`${pipeline.id}\n`)
          return
        }
        log(`pipeline ${pipeline.id} queued: ${pipeline.jobs.length} build${pipeline.jobs.length === 1 ? '' : 's'}`)
        const done = await followPipeline(host, code, pipeline.id)
        process.exitCode = done.status === 'succeeded' ? 0 : 1
      } finally {
        await host.stop()
      }
    }))
}

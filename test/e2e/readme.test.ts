// The README's examples run as written from a fresh clone. This starts `grid up` the way `npm start` does (the real
// CLI as a child process, its data in `./.grid` of a temp dir that stands in for the clone's root), checks it prints
// what the README says `npm start` prints, then runs every line of every ```sh block of README.md there, in order,
// one `sh -c` each, and checks what each prints: exit code 0 always; a build submitted over HTTP or with
// `grid submit` succeeds and its log holds what its steps echo; `--follow` streams that log; a `# … prints "TEXT"`
// comment means TEXT is on stdout; the history is newest first and holds the builds above.
//
// A block that cannot run on one machine (another machine, root, a process that runs until stopped, a value the
// reader fills in) is not run: the README says so itself with `<!-- not run by test/e2e/readme.test.ts: REASON -->`
// just before the block, so the skip list lives beside the blocks it skips. Skipped blocks are printed with their
// reasons. `npx node test/e2e/readme.test.ts OTHER.md` runs another copy of the README instead.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { GRID_BIN, ROOT, grid, removeDir, tempDir, waitFor } from '../helpers.ts'
import type { CliProcess } from '../helpers.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'

const SKIP_MARKER = /^<!--\s*not run by test\/e2e\/readme\.test\.ts:\s*(.*?)\s*-->$/
/** A README line that has not ended by then is a long-running process its block should be marked for. */
const LINE_TIMEOUT_MS = 120_000

interface Block { lang: string, line: number, body: string[], skip?: string, before: string }

/** Every fenced block of the README, with the line it starts on, its skip reason and the prose just before it. */
function fencedBlocks (text: string): Block[] {
  const lines = text.split('\n')
  const blocks: Block[] = []
  let prose: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i])
    if (open === null) {
      prose.push(lines[i])
      continue
    }
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i])
    // The marker is the last non-blank line before the fence.
    const last = [...prose].reverse().find(l => l.trim() !== '')?.trim() ?? ''
    const skip = SKIP_MARKER.exec(last)?.[1]
    blocks.push({ lang: open[1], line: start + 1, body, skip, before: prose.join('\n') })
    prose = []
  }
  return blocks
}

/** The command lines of an sh block: comments-only and blank lines dropped, `\` continuations joined. */
function commandLines (block: Block): Array<{ line: number, text: string }> {
  const out: Array<{ line: number, text: string }> = []
  let pending: { line: number, text: string } | undefined
  block.body.forEach((raw, i) => {
    const line = block.line + 1 + i
    if (pending === undefined && (raw.trim() === '' || raw.trim().startsWith('#'))) return
    const text = pending === undefined ? raw : `${pending.text}\n${raw}`
    pending = { line: pending?.line ?? line, text }
    if (!raw.endsWith('\\')) {
      out.push(pending)
      pending = undefined
    }
  })
  if (pending !== undefined) out.push(pending)
  return out
}

/** A command line without its trailing `# comment`. */
function withoutComment (text: string): string {
  return text.replace(/\s+#\s.*$/, '')
}

/** What the steps' `echo` commands print literally (up to the first expansion or operator): their log must hold it. */
function echoed (run: string): string[] {
  const said: string[] = []
  for (const m of run.matchAll(/\becho\s+(?:'([^']*)'|"([^"$`\\]*)"|([^;&|<>$`'"\n]+))/g)) {
    const text = (m[1] ?? m[2] ?? m[3]).trim()
    if (text !== '') said.push(text)
  }
  return said
}

const readmeFile = resolve(process.argv[2] ?? join(ROOT, 'README.md'))
const readmeName = basename(readmeFile)
const blocks = fencedBlocks(await readFile(readmeFile, 'utf8'))
const shBlocks = blocks.filter(b => b.lang === 'sh')
const printedBlock = blocks.find(b => b.lang === '' && /`npm start` prints/.test(b.before))
/** The web address the README's examples use: the `web:` line it shows `npm start` printing. */
const readmeUrl = printedBlock?.body.map(l => /^web: (\S+)$/.exec(l)?.[1]).find(u => u !== undefined)

interface Ctx {
  dir: string
  bin: string
  up: CliProcess
  url: string
  /** Builds the README's lines submitted, oldest first. */
  submitted: string[]
}

const readme = suite<Ctx>('README examples')

readme.before(async ctx => {
  ctx.submitted = []
  ctx.dir = await tempDir('readme')
  // `npx grid` in a clone runs the project's own bin (package.json "bin"). This temp dir, standing in for the
  // clone's root so that `.grid` lands here and not in a developer's checkout, has no package.json, and npx would
  // look `grid` up on the registry: so the README's lines see an `npx` that runs this checkout's bin with the Node
  // running this test (the node@22 devDependency, as npx provides it in the clone).
  ctx.bin = await tempDir('readme-bin')
  const quote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`
  await writeFile(join(ctx.bin, 'npx'), [
    '#!/bin/sh',
    '[ "$1" = grid ] || { echo "npx $1: only npx grid runs in the README test" >&2; exit 127; }',
    'shift',
    `exec ${quote(process.execPath)} ${quote(GRID_BIN)} "$@"`,
    ''
  ].join('\n'))
  await chmod(join(ctx.bin, 'npx'), 0o755)
  // `npm start` is `grid up` in the current folder. Its fixed addresses (HTTP 127.0.0.1:7341, libp2p 0.0.0.0:7340)
  // may be taken on this machine by the CI run or the grid of whoever runs the tests, so this one takes free ports
  // on loopback: the README tells readers to use the `web:` address it prints, and `.grid/join` names the real port.
  ctx.up = grid(['up', '--http', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'], ctx.dir)
  ctx.url = (await ctx.up.line(/^web: (http:\/\/\S+)$/m, 60_000))[1]
  await ctx.up.line(/^join: grid1-\S+$/m, 30_000)
})

readme.after(async ctx => {
  await ctx.up?.stop()
  await removeDir(ctx.dir)
  await removeDir(ctx.bin)
})

readme('every sh block is run, or the README says just before it why not', () => {
  assert.ok(shBlocks.length > 0, `${readmeFile} has no \`\`\`sh block`)
  const run = shBlocks.filter(b => b.skip === undefined)
  assert.ok(run.length > 0, 'at least one sh block runs')
  const skipped = shBlocks.filter(b => b.skip !== undefined)
  for (const b of skipped) assert.ok(b.skip!.length > 0, `the marker before the block on line ${b.line} gives a reason`)
  console.log(['', ...skipped.map(b => `  not run: ${readmeName}:${b.line} (${withoutComment(b.body[0]?.trim() ?? '')} …): ${b.skip}`)].join('\n'))
  for (const b of run) {
    for (const { line, text } of commandLines(b)) {
      assert.not.match(withoutComment(text), /…/, `${readmeName}:${line} holds a placeholder (…) but its block runs: mark it, or make it runnable`)
    }
  }
})

readme('grid up prints the two lines the README shows npm start printing', ({ up }) => {
  assert.ok(printedBlock !== undefined, 'the README shows what `npm start` prints')
  const shown = printedBlock.body.filter(l => l.trim() !== '')
  const printed = up.stdout().trim().split('\n')
  assert.is(printed.length, shown.length, `npm start prints ${shown.length} lines, printed:\n${up.stdout()}`)
  shown.forEach((line, i) => {
    const web = /^web: (http:\/\/[^:/]+:)\d+$/.exec(line)
    if (web !== null) {
      assert.ok(printed[i].startsWith(`web: ${web[1]}`), `"${printed[i]}" is like "${line}"`)
      return
    }
    const join = /^join: (\w+-)/.exec(line)
    assert.ok(join !== null, `README line "${line}" is one of web: or join:`)
    assert.match(printed[i], new RegExp(`^join: ${join[1]}\\S+$`), `"${printed[i]}" is like "${line}"`)
  })
})

/** Run one README line in the grid's folder, as a reader would paste it into a shell. */
async function sh (ctx: Ctx, text: string): Promise<{ code: number | string, stdout: string, stderr: string }> {
  const child = spawn('sh', ['-c', text], {
    cwd: ctx.dir,
    detached: true,
    env: { ...process.env, PATH: `${ctx.bin}:${process.env.PATH ?? ''}`, FORCE_COLOR: '0' }
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', d => { stdout += d })
  child.stderr.on('data', d => { stderr += d })
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; process.kill(-child.pid!, 'SIGKILL') }, LINE_TIMEOUT_MS)
  const code = await new Promise<number | string>(resolve => child.on('close', (c, signal) => resolve(c ?? signal ?? -1)))
  clearTimeout(timer)
  if (timedOut) assert.unreachable(`still running after ${LINE_TIMEOUT_MS / 1000} s: a line that runs until stopped needs its block marked`)
  return { code, stdout, stderr }
}

async function finished (url: string, id: string): Promise<Build> {
  return await waitFor(`build ${id} to finish`, async () => {
    const build = await (await fetch(`${url}/api/builds/${id}`)).json() as Build
    return FINISHED.has(build.status) ? build : undefined
  }, 60_000)
}

/** A build a README line submitted succeeded, and its log holds what its steps echo. */
async function checkBuild (ctx: Ctx, id: string, where: string): Promise<Build> {
  ctx.submitted.push(id)
  const build = await finished(ctx.url, id)
  assert.is(build.status, 'succeeded', `${where}: build ${id} ended ${build.status}${build.error !== undefined ? `: ${build.error}` : ''}`)
  const log = await (await fetch(`${ctx.url}/api/builds/${id}/log`)).text()
  for (const step of build.job.steps) {
    for (const text of echoed(step.run)) assert.ok(log.includes(text), `${where}: the log of ${id} holds "${text}":\n${log}`)
  }
  return build
}

for (const block of shBlocks.filter(b => b.skip === undefined)) {
  for (const { line, text } of commandLines(block)) {
    const where = `${readmeName}:${line}`
    readme(`${where}: ${text}`, async ctx => {
      const command = readmeUrl === undefined ? text : text.replaceAll(readmeUrl, ctx.url)
      const result = await sh(ctx, command)
      const output = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`
      assert.is(result.code, 0, `${where} exited ${result.code}\n${output}`)

      // What its comment says it prints.
      const comment = text.slice(withoutComment(text).length)
      for (const m of comment.matchAll(/prints "([^"]+)"/g)) {
        assert.ok(result.stdout.includes(m[1]), `${where} prints "${m[1]}"\n${output}`)
      }

      // A build over HTTP: the answer names it.
      if (/^curl\b/.test(text) && /\s-d\s/.test(text) && /\/api\/builds(\s|'|"|$)/.test(text)) {
        const answer = JSON.parse(result.stdout) as { id?: string, error?: string }
        assert.type(answer.id, 'string', `${where} answers the build's id\n${output}`)
        await checkBuild(ctx, answer.id!, where)
      }

      // A build with the CLI: its id on stdout, or with --follow its log on stdout and how it ended on stderr.
      if (/\bgrid submit\b/.test(text)) {
        if (/--follow\b/.test(text)) {
          const id = /^grid: build (\S+) queued$/m.exec(result.stderr)?.[1]
          assert.ok(id !== undefined, `${where} says which build it queued\n${output}`)
          assert.match(result.stderr, new RegExp(`^grid: build ${id} succeeded$`, 'm'), `${where} says how the build ended`)
          const build = await checkBuild(ctx, id, where)
          for (const step of build.job.steps) {
            for (const said of echoed(step.run)) assert.ok(result.stdout.includes(said), `${where} streams the log, "${said}" in it\n${output}`)
          }
        } else {
          await checkBuild(ctx, result.stdout.trim(), where)
        }
      }

      // The history: newest first, holding the builds the lines above submitted.
      const list = /^curl\b.*\/api\/builds\?limit=(\d+)/.exec(text)
      if (list !== null && !/\s-d\s/.test(text)) {
        const builds = JSON.parse(result.stdout) as Build[]
        assert.ok(Array.isArray(builds), `${where} prints a list of builds\n${output}`)
        assert.ok(builds.length <= Number(list[1]), `at most ${list[1]} builds`)
        const created = builds.map(b => Date.parse(b.created))
        assert.equal(created, [...created].sort((a, b) => b - a), 'newest first')
        const expected = ctx.submitted.slice(-Number(list[1])).reverse()
        assert.equal(builds.map(b => b.id).filter(id => expected.includes(id)), expected, `${where} lists the builds submitted above, newest first`)
      }
    })
  }
}

readme.run()

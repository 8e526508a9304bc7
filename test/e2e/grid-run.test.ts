// `grid run`: a working tree's .grid.yml as a pipeline on the grid, through the real CLI and real git. What git
// ignores never leaves the machine, a bad file fails before anything is sent, an unchanged tree is sent once, and
// --follow shows every build's log under a header naming its job, whole, and exits with how the pipeline ended.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { list as tarList } from 'tar'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { grid as gridCli, gridRun, oneLineError, removeDir, startTestGrid, tempDir, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import { rejection } from '../wait.ts'
import { encodeJoinCode, newSecret } from '../../net/join-code.ts'
import type { Pipeline } from '../../grid/build.ts'
import { PIPELINE_FINISHED } from '../../grid/build.ts'
import { nameOf } from '../../client/content/name.ts'
import { tarDirectory } from '../../node/cli/directory-tar.ts'
import type { TarSelection } from '../../node/cli/directory-tar.ts'
import { readWorkingTree } from '../../node/cli/working-tree.ts'

/** Run git in `cwd` with a fixed identity; fails the test when git does. */
function git (cwd: string, ...args: string[]): string {
  const run = spawnSync('git', ['-c', 'user.name=grid test', '-c', 'user.email=test@grid.invalid', '-c', 'commit.gpgsign=false', ...args], { cwd, encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${run.stderr}`)
  return run.stdout.trim()
}

/** Write files (path → content) under `dir`, making folders. */
async function files (dir: string, contents: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(contents)) {
    await mkdir(join(dir, path, '..'), { recursive: true })
    await writeFile(join(dir, path), content)
  }
}

/** A new git repository at `dir` on branch main, holding `tracked` (committed) and then `loose` (not committed). */
async function repository (dir: string, tracked: Record<string, string>, loose: Record<string, string> = {}): Promise<string> {
  await mkdir(dir, { recursive: true })
  git(dir, 'init', '-q', '-b', 'main')
  await files(dir, tracked)
  git(dir, 'add', '-A')
  git(dir, 'commit', '-q', '-m', 'first')
  await files(dir, loose)
  return git(dir, 'rev-parse', 'HEAD')
}

/** The paths a tar holds, as it names them. */
async function tarPaths (dir: string, selection: TarSelection): Promise<string[]> {
  const chunks: Buffer[] = []
  for await (const chunk of tarDirectory(dir, selection)) chunks.push(Buffer.from(chunk))
  const paths: string[] = []
  const parser = tarList({ onReadEntry: entry => { paths.push(entry.path) } })
  const ended = new Promise(resolve => parser.on('end', resolve))
  parser.end(Buffer.concat(chunks))
  await ended
  return paths
}

// ---------------------------------------------------------------- the working tree alone (real git, no grid)

const tree = suite<{ dir: string }>('grid run: the working tree')

tree.before.each(async ctx => { ctx.dir = await tempDir('run-tree') })
tree.after.each(async ctx => { await removeDir(ctx.dir) })

tree('a git work tree: tracked and untracked files, not the ignored ones, not .git, not deleted ones', async ({ dir }) => {
  const repo = join(dir, 'repo')
  const sha = await repository(repo, {
    '.gitignore': '*.log\nbuild/\n',
    'hello.txt': 'hello\n',
    'gone.txt': 'deleted after the commit\n',
    'src/main.c': 'int main () { return 0; }\n'
  }, { 'notes.txt': 'not committed\n', 'secret.log': 'ignored\n', 'build/out.o': 'ignored too\n' })
  await rm(join(repo, 'gone.txt'))
  const said: string[] = []
  const t = await readWorkingTree(repo, line => said.push(line))
  assert.equal(t.selection.files, ['.gitignore', 'hello.txt', 'notes.txt', 'src/main.c'])
  assert.equal(t.git, { ref: 'refs/heads/main', dirtyFrom: sha }, 'changes not committed: no commit is named')
  assert.is(t.dir, repo)
  assert.equal(said, [])
  assert.equal(await tarPaths(repo, t.selection), ['.gitignore', 'hello.txt', 'notes.txt', 'src/main.c'])
})

tree('a clean work tree names its commit; a detached HEAD has no ref; a repository without commits has no commit', async ({ dir }) => {
  const repo = join(dir, 'repo')
  const sha = await repository(repo, { 'a.txt': 'a\n', '.gitignore': '*.log\n' }, { 'ignored.log': 'x' })
  assert.equal((await readWorkingTree(repo, () => {})).git, { ref: 'refs/heads/main', commit: sha }, 'an ignored file does not make it dirty')
  git(repo, 'checkout', '-q', '--detach')
  assert.equal((await readWorkingTree(repo, () => {})).git, { commit: sha })
  const empty = join(dir, 'empty')
  await mkdir(empty)
  git(empty, 'init', '-q', '-b', 'trunk')
  await files(empty, { 'x.txt': 'x' })
  const t = await readWorkingTree(empty, () => {})
  assert.equal(t.git, { ref: 'refs/heads/trunk' })
  assert.equal(t.selection.files, ['x.txt'])
})

tree('a subdirectory of a work tree: its own files, relative to it, and its changes alone decide dirty', async ({ dir }) => {
  const repo = join(dir, 'repo')
  const sha = await repository(repo, { 'top.txt': 't', 'app/.grid.yml': 'jobs: {}\n', 'app/lib/a.txt': 'a' }, { 'loose-at-top.txt': 'x' })
  const t = await readWorkingTree(join(repo, 'app'), () => {})
  assert.equal(t.selection.files, ['.grid.yml', 'lib/a.txt'])
  assert.equal(t.git?.commit, sha, 'an untracked file outside DIR is not in the tree sent')
})

tree('a nested repository is left out, and said', async ({ dir }) => {
  const repo = join(dir, 'repo')
  await repository(repo, { 'a.txt': 'a' })
  await repository(join(repo, 'vendor', 'lib'), { 'lib.c': 'x' })
  const said: string[] = []
  const t = await readWorkingTree(repo, line => said.push(line))
  assert.equal(t.selection.files, ['a.txt'])
  assert.is(said.length, 1)
  assert.match(said[0], /vendor\/lib is a git repository of its own/)
})

tree('a directory outside git: every file, .git folders left out wherever they are', async ({ dir }) => {
  const plain = join(dir, 'plain')
  await files(plain, { 'a.txt': 'a', 'kept.log': 'not ignored: no git here', '.git/junk': 'x', 'deep/.git/x': 'y', 'deep/b.txt': 'b' })
  const t = await readWorkingTree(plain, () => {})
  assert.is(t.git, undefined)
  assert.is(t.selection.files, undefined)
  const paths = await tarPaths(plain, t.selection)
  assert.equal(paths.filter(p => !p.endsWith('/')).map(p => p.replace(/^\.\//, '')).sort(), ['a.txt', 'deep/b.txt', 'kept.log'])
  assert.not.ok(paths.some(p => p.includes('.git')))
})

tree('no git installed: a plain directory still goes, a work tree is refused rather than sent with what git ignores', async ({ dir }) => {
  const repo = join(dir, 'repo')
  await repository(repo, { '.gitignore': '.env\n', 'a.txt': 'a' }, { '.env': 'TOKEN=never-sent' })
  const plain = join(dir, 'plain')
  await files(plain, { 'a.txt': 'a' })
  const path = process.env.PATH
  process.env.PATH = join(dir, 'no-such-bin')
  try {
    const t = await readWorkingTree(plain, () => {})
    assert.is(t.git, undefined)
    assert.match(t.description, /git is not installed/)
    const err = await rejection(readWorkingTree(join(repo), () => {}))
    assert.is(err.name, 'GitNotInstalledError')
    assert.match(err.message, /git is not installed/)
    await mkdir(join(repo, 'sub'))
    assert.is((await rejection(readWorkingTree(join(repo, 'sub'), () => {}))).name, 'GitNotInstalledError', 'found from a subdirectory too')
  } finally {
    process.env.PATH = path
  }
})

tree('the same tree is the same tar: file times do not change its CID, content does', async ({ dir }) => {
  const repo = join(dir, 'repo')
  await repository(repo, { 'a.txt': 'a\n', 'run.sh': '#!/bin/sh\necho hi\n' })
  await symlink('a.txt', join(repo, 'link-to-a'))
  const cid = async (): Promise<string> => {
    const t = await readWorkingTree(repo, () => {})
    return (await nameOf(tarDirectory(t.dir, t.selection))).cid
  }
  const first = await cid()
  await utimes(join(repo, 'a.txt'), new Date(2_000_000_000_000), new Date(2_000_000_000_000))
  assert.is(await cid(), first)
  await writeFile(join(repo, 'a.txt'), 'b\n')
  assert.is.not(await cid(), first)
})

tree.run()

// ---------------------------------------------------------------- the command, on a grid

interface Ctx {
  grid: TestGrid
  dir: string
  joinFile: string
}

const run = suite<Ctx>('grid run')

run.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{ capabilities: { git: '2.39.5' }, slots: 3 }] })
  ctx.dir = await tempDir('run')
  ctx.joinFile = join(ctx.grid.dir, 'join-trusted')
})
run.after(async ctx => {
  await ctx.grid?.stop()
  await removeDir(ctx.dir)
})

async function pipelineRecord (grid: TestGrid, id: string): Promise<Pipeline> {
  return await (await grid.api(`/api/pipelines/${id}`)).json() as Pipeline
}

/** The pipeline id `grid run --follow` says on stderr. */
function queuedId (stderr: string): string {
  const m = /^grid: pipeline (\S+) queued/m.exec(stderr)
  assert.ok(m, `no "pipeline … queued" line in: ${stderr}`)
  return m[1]
}

/** The part of a --follow output under `header`, up to the next header. */
function section (stdout: string, name: string): string {
  const header = `── ${name} ──\n`
  const at = stdout.indexOf(header)
  assert.ok(at >= 0, `no header for ${name} in: ${stdout}`)
  const rest = stdout.slice(at + header.length)
  const next = rest.search(/^── .* ──$/m)
  return next < 0 ? rest : rest.slice(0, next)
}

const TWO_JOBS = `# build makes an artifact from a tracked file; test reads it, and checks what git ignores did not come
jobs:
  build:
    steps:
      - name: compile
        run: cat hello.txt && (cat hello.txt; echo "built here") > made.txt
    artifacts: [ made.txt ]
  test:
    needs: [ build ]
    steps:
      - run: cat made.txt && cat notes.txt && test ! -e secret.log && test ! -e .git && echo "no secret.log, no .git"
`

run('--follow in a git work tree: both jobs under their headers, in order, the artifact passed on, what git ignores left home', async ({ grid, dir, joinFile }) => {
  const repo = join(dir, 'two-jobs')
  const sha = await repository(repo, { '.gitignore': '*.log\n', '.grid.yml': TWO_JOBS, 'hello.txt': 'hello from a tracked file\n' },
    { 'notes.txt': 'an untracked note\n', 'secret.log': 'must not leave this machine\n' })
  const result = await gridRun(['run', '--join', joinFile, repo, '--follow'], undefined, 120_000)
  assert.is(result.code, 0, result.stderr)
  const out = result.stdout
  assert.ok(out.indexOf('── build ──\n') < out.indexOf('── test ──\n'), out)
  assert.match(section(out, 'build'), /hello from a tracked file\n/)
  const test = section(out, 'test')
  assert.match(test, /hello from a tracked file\nbuilt here\n/)
  assert.match(test, /an untracked note\n/)
  assert.match(test, /no secret\.log, no \.git\n/)
  assert.not.match(out, /must not leave this machine/)
  assert.match(result.stderr, /^grid: build succeeded$/m)
  assert.match(result.stderr, /^grid: test succeeded$/m)
  const id = queuedId(result.stderr)
  assert.match(result.stderr, new RegExp(`^grid: pipeline ${id} succeeded$`, 'm'))
  const record = await pipelineRecord(grid, id)
  assert.is(record.status, 'succeeded')
  assert.is(record.source.url, repo)
  assert.is(record.source.ref, 'refs/heads/main')
  assert.is(record.source.commit, undefined, 'an untracked file makes the tree no commit: none is named')
  assert.match(result.stderr, new RegExp(`at ${sha.slice(0, 12)} with changes not committed`))
  assert.is(record.source.trigger, 'run')
})

run('without --follow: the pipeline id alone on stdout; a clean tree names its commit', async ({ grid, dir, joinFile }) => {
  const repo = join(dir, 'quiet')
  const sha = await repository(repo, { '.grid.yml': 'jobs:\n  only:\n    steps: [ { run: "echo quiet" } ]\n' })
  const result = await gridRun(['run', '--join', joinFile, repo])
  assert.is(result.code, 0, result.stderr)
  assert.match(result.stdout, /^\S+\n$/)
  const id = result.stdout.trim()
  const done = await waitFor(`pipeline ${id} to finish`, async () => {
    const p = await pipelineRecord(grid, id)
    return PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, 60_000)
  assert.is(done.status, 'succeeded')
  assert.is(done.source.commit, sha)
})

run('a failing job: exit 1, its log shown, the job that needs it reported skipped and never shown', async ({ dir, joinFile }) => {
  const repo = join(dir, 'failing')
  await repository(repo, { '.grid.yml': 'jobs:\n  first:\n    steps: [ { run: "echo first says no; exit 3" } ]\n  second:\n    needs: [ first ]\n    steps: [ { run: "echo never runs" } ]\n' })
  const result = await gridRun(['run', '--join', joinFile, repo, '--follow'], undefined, 120_000)
  assert.is(result.code, 1, result.stderr)
  assert.match(section(result.stdout, 'first'), /first says no\n/)
  assert.not.match(result.stdout, /── second ──|never runs/)
  assert.match(result.stderr, /^grid: first failed/m)
  assert.match(result.stderr, /^grid: second skipped: .*first/m)
  assert.match(result.stderr, /^grid: pipeline \S+ failed/m)
})

run('parallel matrix builds: each log whole under its own header, never interleaved', async ({ dir, joinFile }) => {
  const repo = join(dir, 'matrix')
  await repository(repo, {
    '.grid.yml': 'jobs:\n  m:\n    matrix: { n: [ "1", "2", "3" ] }\n    steps:\n      - run: for i in 1 2 3 4; do echo "m${{ matrix.n }} line $i"; sleep 0.2; done\n'
  })
  const result = await gridRun(['run', '--join', joinFile, repo, '--follow'], undefined, 120_000)
  assert.is(result.code, 0, result.stderr)
  for (const n of ['1', '2', '3']) {
    const own = section(result.stdout, `m (n=${n})`)
    assert.match(own, new RegExp(`m${n} line 1\\nm${n} line 2\\nm${n} line 3\\nm${n} line 4\\n`), `m (n=${n}) whole: ${own}`)
    assert.not.match(own, new RegExp(`m[^${n}] line`), `only m (n=${n})'s lines under its header`)
    assert.is(result.stdout.split(`── m (n=${n}) ──\n`).length, 2, 'one header per build')
  }
})

run('Ctrl-C stops following, not the pipeline', async ({ grid, dir, joinFile }) => {
  const repo = join(dir, 'interrupted')
  await repository(repo, { '.grid.yml': 'jobs:\n  slow:\n    steps: [ { run: "echo started; sleep 2; echo finished" } ]\n' })
  const follow = gridCli(['run', '--join', joinFile, repo, '--follow'])
  await follow.line(/^started$/m, 60_000)
  const id = queuedId(follow.stderr())
  follow.child.kill('SIGINT')
  assert.is(await follow.exited, 130)
  assert.match(follow.stderr(), new RegExp(`^grid: stopped following; pipeline ${id} goes on$`, 'm'))
  assert.not.match(follow.stdout(), /finished/)
  const done = await waitFor(`pipeline ${id} to finish`, async () => {
    const p = await pipelineRecord(grid, id)
    return PIPELINE_FINISHED.has(p.status) ? p : undefined
  }, 60_000)
  assert.is(done.status, 'succeeded')
})

run('a directory outside git works: every file but .git, ignore files mean nothing there', async ({ dir, joinFile }) => {
  const plain = join(dir, 'plain')
  await files(plain, {
    '.grid.yml': 'jobs:\n  look:\n    steps: [ { run: "cat data.txt kept.log && test ! -e .git && echo no .git" } ]\n',
    '.gitignore': '*.log\n',
    'data.txt': 'plain data\n',
    'kept.log': 'kept: no git here\n',
    '.git/junk': 'not a repository, still left out\n'
  })
  const result = await gridRun(['run', '--join', joinFile, plain, '--follow'], undefined, 120_000)
  assert.is(result.code, 0, result.stderr)
  assert.match(section(result.stdout, 'look'), /plain data\nkept: no git here\nno \.git\n/)
  assert.match(result.stderr, /not in a git work tree/)
})

run('an unchanged tree is sent once: the same src CID, 0 bytes the second time', async ({ dir, joinFile }) => {
  const repo = join(dir, 'twice')
  await repository(repo, { '.grid.yml': 'jobs:\n  noop:\n    steps: [ { run: "true" } ]\n', 'payload.txt': `unique to this test ${Date.now()}\n`.repeat(200) })
  const src = (stderr: string): { cid: string, sent: number } => {
    const m = /^grid: src \S+: (\S+) \((\d+) bytes sent\)$/m.exec(stderr)
    assert.ok(m, `no src line in: ${stderr}`)
    return { cid: m[1], sent: Number(m[2]) }
  }
  const first = await gridRun(['run', '--join', joinFile, repo])
  assert.is(first.code, 0, first.stderr)
  const second = await gridRun(['run', '--join', joinFile, repo])
  assert.is(second.code, 0, second.stderr)
  assert.ok(src(first.stderr).sent > 0)
  assert.is(src(second.stderr).cid, src(first.stderr).cid)
  assert.is(src(second.stderr).sent, 0)
  assert.is.not(second.stdout.trim(), first.stdout.trim(), 'each run is a pipeline of its own')
})

run('a bad .grid.yml: one line naming the job, the key and the line, before anything is sent or dialled', async ({ dir }) => {
  const repo = join(dir, 'bad')
  await repository(repo, { '.grid.yml': 'jobs:\n  build:\n    steps: [ { run: "true" } ]\n  test:\n    needs: [ biuld ]\n    steps: [ { run: "true" } ]\n' })
  // A join code for a grid that is not there: reaching for it would fail differently, and later.
  const port = await new Promise<number>(resolve => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as any).port; s.close(() => resolve(p)) })
  })
  const down = encodeJoinCode({ secret: newSecret(), coordinator: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), addrs: [multiaddr(`/ip4/127.0.0.1/tcp/${port}`)] })
  const result = await gridRun(['run', '--join', down, repo])
  oneLineError(result, /\.grid\.yml/)
  assert.match(result.stderr, /\btest\b/, 'names the job')
  assert.match(result.stderr, /needs/, 'names the key')
  assert.match(result.stderr, /\b5\b/, 'names the line')
  assert.not.match(result.stderr, /src|cannot reach/)
  assert.is(result.stdout, '')
})

run('no .grid.yml, or not a directory: one line each', async ({ dir, joinFile }) => {
  const empty = join(dir, 'no-file')
  await mkdir(empty)
  const missing = await gridRun(['run', '--join', joinFile, empty])
  oneLineError(missing, new RegExp(`${empty.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} has no \\.grid\\.yml$`))
  await writeFile(join(empty, '.grid.yaml'), 'jobs: {}\n')
  oneLineError(await gridRun(['run', '--join', joinFile, empty]), /has no \.grid\.yml \(it has \.grid\.yaml/)
  oneLineError(await gridRun(['run', '--join', joinFile, join(dir, 'nowhere')]), /nowhere is not a directory$/)
  // The default directory is the current one, named in full.
  const here = await gridRun(['run', '--join', joinFile], empty)
  oneLineError(here, /has no \.grid\.yml/)
  assert.match(here.stderr, new RegExp(`grid: /`))
})

run('a grid that is down reads as one line, as from every client command', async ({ dir }) => {
  const repo = join(dir, 'down')
  await repository(repo, { '.grid.yml': 'jobs:\n  x:\n    steps: [ { run: "true" } ]\n' })
  const port = await new Promise<number>(resolve => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as any).port; s.close(() => resolve(p)) })
  })
  const down = encodeJoinCode({ secret: newSecret(), coordinator: peerIdFromPrivateKey(await generateKeyPair('Ed25519')), addrs: [multiaddr(`/ip4/127.0.0.1/tcp/${port}`)] })
  oneLineError(await gridRun(['run', '--join', down, repo]), /^grid: cannot reach the grid at /)
})

run('--help says what it sends, where the id goes, and how --follow exits', async () => {
  const help = await gridRun(['run', '--help'])
  assert.is(help.code, 0)
  assert.match(help.stdout, /\[dir\]/)
  assert.match(help.stdout, /\.grid\.yml/)
  assert.match(help.stdout, /git ignores/)
  assert.match(help.stdout, /--follow/)
  assert.match(help.stdout, /exit 0 if the pipeline succeeded/)
  assert.match(help.stdout, /DATA\/join/)
})

run('the file is sent as written: YAML anchors reach the coordinator and work there', async ({ dir, joinFile, grid }) => {
  const repo = join(dir, 'anchors')
  await repository(repo, { '.grid.yml': 'jobs:\n  a:\n    steps: &steps [ { run: "echo from an anchor" } ]\n  b:\n    steps: *steps\n' })
  const result = await gridRun(['run', '--join', joinFile, repo, '--follow'], undefined, 120_000)
  assert.is(result.code, 0, result.stderr)
  assert.match(section(result.stdout, 'a'), /from an anchor\n/)
  assert.match(section(result.stdout, 'b'), /from an anchor\n/)
  assert.is((await pipelineRecord(grid, queuedId(result.stderr))).status, 'succeeded')
})

run.run()

// Files as files: a mode (the executable bit) and a symbolic link survive every path a file takes (artifact →
// input, src tar, grid put/get --extract, the build's artifacts.tar), and keeping artifacts is never silent and
// never all-or-nothing (a named directory, a glob matching nothing, a file that cannot be taken, the count limit,
// a store that cannot take them).
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { lstat, mkdir, readFile, readdir, readlink, stat, symlink, writeFile } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { create as tarCreate, list as tarList } from 'tar'
import type { ReadEntry } from 'tar'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { gridRun, removeDir, startTestGrid, tempDir, waitFor } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'
import type { Build } from '../../grid/build.ts'
import { FINISHED } from '../../grid/build.ts'
import { MAX_ARTIFACTS } from '../../grid/constants.ts'
import { collect } from '../../worker/workspace.ts'
import { startCoordinatorNode, startWorkerNode } from '../../node/roles.ts'

const files = suite<{ grid: TestGrid, dir: string }>('artifact files: modes, links, what is kept and what is said')

files.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{}, {}] })
  ctx.dir = await tempDir('artifact-files')
})
files.after(async ctx => {
  await ctx.grid?.stop()
  await removeDir(ctx.dir)
})

/** The whole build's log (with its step headers). */
const logOf = async (grid: TestGrid, id: string): Promise<string> => await (await grid.api(`/api/builds/${id}/log`)).text()
/** One step's output alone. */
const stepLog = async (grid: TestGrid, build: Build, step = 0): Promise<string> => await (await grid.api(`/api/logs/${build.steps[step].log}`)).text()
const byPath = (build: Build): Record<string, Build['artifacts'][number]> => Object.fromEntries(build.artifacts.map(a => [a.path, a]))

/** A directory as a tar uploaded over HTTP; its CID. */
async function uploadTar (grid: TestGrid, tree: string): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of tarCreate({ cwd: tree, portable: true }, ['.']) as unknown as AsyncIterable<Buffer>) chunks.push(chunk)
  const up = await grid.api('/api/artifacts', { method: 'POST', body: Buffer.concat(chunks), headers: { authorization: `Bearer ${grid.token}` } })
  return (await up.json()).cid
}

/** Entries of a tar in memory: path → { type, mode, linkpath }. */
async function tarEntries (bytes: Buffer): Promise<Record<string, { type: string, mode?: number, linkpath?: string, size: number }>> {
  const entries: Record<string, { type: string, mode?: number, linkpath?: string, size: number }> = {}
  const parser = tarList({ strict: true, onReadEntry: (e: ReadEntry) => { entries[e.path.replace(/^\.\//, '')] = { type: e.type, mode: e.mode, linkpath: e.linkpath, size: e.size } } })
  const ended = new Promise<void>((resolve, reject) => { parser.on('end', () => resolve()); parser.on('error', reject) })
  parser.end(bytes)
  await ended
  return entries
}

files('an executable artifact stays executable as another build\'s input; setuid never travels', async ({ grid }) => {
  const a = await grid.finished(await grid.submit({
    steps: [{ run: 'printf "#!/bin/sh\\necho wow ran\\n" > wow && chmod +x wow && echo data > plain.txt && chmod 644 plain.txt && cp wow suid && chmod 4755 suid' }],
    artifacts: ['wow', 'plain.txt', 'suid']
  }))
  assert.is(a.status, 'succeeded')
  const kept = byPath(a)
  assert.is(kept.wow.mode, 0o755)
  assert.is(kept['plain.txt'].mode, 0o644)
  assert.is(kept.suid.mode, 0o755, 'the setuid bit is not recorded')
  const b = await grid.finished(await grid.submit({
    inputs: { 'bin/wow': `build:${a.id}/wow`, 'bin/suid': `build:${a.id}/suid` },
    steps: [{ run: './bin/wow && stat -c %a bin/suid' }]
  }))
  assert.is(b.status, 'succeeded', await logOf(grid, b.id))
  assert.is(await stepLog(grid, b), 'wow ran\n755\n')
})

files('links: a relative link is kept as a link and placed as one; a link out of the work dir is skipped and said', async ({ grid }) => {
  const a = await grid.finished(await grid.submit({
    steps: [{ run: 'mkdir -p logs/sub && echo line > logs/run.log && echo deep > logs/sub/deep.log && ln -s run.log logs/latest && ln -s /etc/hostname logs/host && ln -s ../../outside logs/up' }],
    artifacts: ['logs/**']
  }))
  assert.is(a.status, 'succeeded', 'the step exited 0 and the link out is only skipped')
  assert.equal(a.artifacts.map(x => x.path), ['logs/latest', 'logs/run.log', 'logs/sub/deep.log'])
  const latest = byPath(a)['logs/latest']
  assert.is(latest.link, 'run.log')
  assert.is(latest.size, 'run.log'.length, 'a link\'s content is its target\'s text')
  assert.is(await (await grid.api(`/api/artifacts/${latest.cid}`)).text(), 'run.log')
  assert.is(a.warnings?.length, 2, JSON.stringify(a.warnings))
  assert.match(a.warnings?.[0] ?? '', /logs\/host was not kept: it is a link to \/etc\/hostname, outside the work dir/)
  assert.match(a.warnings?.[1] ?? '', /logs\/up was not kept: .*leads outside the work dir/)
  const log = await logOf(grid, a.id)
  assert.match(log, /^grid: artifact logs\/host was not kept: it is a link to \/etc\/hostname, outside the work dir$/m)
  assert.match(log, /^grid: kept 3 artifacts \(\d+ bytes\) on 1 store; 2 not kept \(see above\)$/m)

  // A link among inputs arrives as a link, next to what it points to.
  const b = await grid.finished(await grid.submit({
    inputs: { 'in/run.log': `build:${a.id}/logs/run.log`, 'in/latest': `build:${a.id}/logs/latest` },
    steps: [{ run: 'test -L in/latest && readlink in/latest && cat in/latest' }]
  }))
  assert.is(b.status, 'succeeded', await logOf(grid, b.id))
  assert.is(await stepLog(grid, b), 'run.log\nline\n')
})

files('a named directory keeps the files under it, with or without its slash; a glob matching nothing says so', async ({ grid }) => {
  const built = await grid.finished(await grid.submit({
    steps: [{ run: 'mkdir -p build/sub build/empty && echo a > build/a.o && echo b > build/sub/b.o' }],
    artifacts: ['build', 'build/', 'nothing/*.xml']
  }))
  assert.is(built.status, 'succeeded')
  assert.equal(built.artifacts.map(x => x.path), ['build/a.o', 'build/sub/b.o'])
  const log = await logOf(grid, built.id)
  assert.match(log, /^grid: artifact glob "nothing\/\*\.xml" matched no file$/m)
  assert.match(log, /^grid: kept 2 artifacts \(4 bytes\) on 1 store$/m)
})

files('a fifo, a bad name and an unreadable file are skipped with a warning each; the rest are kept', async ({ grid }) => {
  const done = await grid.finished(await grid.submit({
    steps: [{ run: 'mkdir out && echo ok > out/good.txt && mkfifo out/pipe && echo x > "out/$(printf "tab\\tname")" && echo secret > out/locked && chmod 000 out/locked' }],
    artifacts: ['out/**']
  }))
  assert.is(done.status, 'succeeded')
  const running = process.getuid?.() === 0
  assert.equal(done.artifacts.map(x => x.path), running ? ['out/good.txt', 'out/locked'] : ['out/good.txt'])
  const warnings = done.warnings ?? []
  assert.ok(warnings.some(w => /out\/pipe was not kept: it is a fifo \(named pipe\), not a file/.test(w)), JSON.stringify(warnings))
  assert.ok(warnings.some(w => /"out\/tab\\tname" was not kept: its name holds a control character/.test(w)), JSON.stringify(warnings))
  if (!running) assert.ok(warnings.some(w => /out\/locked was not kept: it could not be read \(EACCES\)/.test(w)), JSON.stringify(warnings))
  const log = await logOf(grid, done.id)
  assert.match(log, /^grid: artifact out\/pipe was not kept: it is a fifo/m)
})

files(`over ${MAX_ARTIFACTS} files: the first ${MAX_ARTIFACTS} in path order are kept, and the rest are counted in the log and a warning`, async ({ grid }) => {
  const done = await grid.finished(await grid.submit({
    steps: [{ run: `mkdir many && cd many && seq -w 0 ${MAX_ARTIFACTS} | while read n; do echo $n > f$n; done` }],
    artifacts: ['many/**']
  }), 240_000) // a thousand puts take about 15 s on an idle 2-core machine, several times that on a busy one
  assert.is(done.status, 'succeeded')
  assert.is(done.artifacts.length, MAX_ARTIFACTS)
  assert.is(done.artifacts[0].path, 'many/f0000')
  assert.is(done.artifacts.at(-1)?.path, `many/f0${MAX_ARTIFACTS - 1}`)
  assert.equal(done.warnings?.length, 1)
  assert.match(done.warnings?.[0] ?? '', new RegExp(`${MAX_ARTIFACTS + 1} files matched .* at most ${MAX_ARTIFACTS}: kept the first ${MAX_ARTIFACTS} in path order and not the other 1 \\(the first not kept is many/f${MAX_ARTIFACTS}`))
  const log = await logOf(grid, done.id)
  assert.match(log, new RegExp(`^grid: ${MAX_ARTIFACTS + 1} files matched the artifact globs`, 'm'))
  assert.match(log, new RegExp(`^grid: kept ${MAX_ARTIFACTS} artifacts \\(`, 'm'))
})

files('src: modes and links survive the tar; setuid does not; a link out of the work dir refuses the src, saying which', async ({ grid, dir }) => {
  const tree = join(dir, 'src-tree')
  await mkdir(join(tree, 'bin'), { recursive: true })
  await writeFile(join(tree, 'bin', 'tool'), '#!/bin/sh\necho tool ran\n', { mode: 0o755 })
  await writeFile(join(tree, 'bin', 'suid'), '#!/bin/sh\n', { mode: 0o755 })
  execFileSync('chmod', ['4755', join(tree, 'bin', 'suid')])
  await symlink('bin/tool', join(tree, 'tool'))
  const ok = await grid.finished(await grid.submit({ src: await uploadTar(grid, tree), steps: [{ run: './tool && readlink tool && stat -c %a bin/suid' }] }))
  assert.is(ok.status, 'succeeded', await logOf(grid, ok.id))
  assert.is(await stepLog(grid, ok), 'tool ran\nbin/tool\n755\n')

  await symlink('/etc/hostname', join(tree, 'host'))
  const refused = await grid.finished(await grid.submit({ src: await uploadTar(grid, tree), steps: [{ run: 'echo never' }] }))
  assert.is(refused.status, 'failed')
  assert.match(refused.error ?? '', /could not unpack src .*: entry \.\/host is a link to \/etc\/hostname, an absolute path outside the directory/)
})

files('grid put of a directory and grid get --extract keep modes and links; a tar with an entry escaping DIR is refused whole', async ({ grid, dir }) => {
  const joinFile = join(grid.dir, 'join')
  const tree = join(dir, 'put-tree')
  await mkdir(join(tree, 'bin'), { recursive: true })
  await writeFile(join(tree, 'bin', 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 })
  await writeFile(join(tree, 'notes.txt'), 'notes\n', { mode: 0o644 })
  await symlink('bin/run.sh', join(tree, 'run'))
  // A fifo would keep the tar waiting forever for a writer: it is left out, said once.
  execFileSync('mkfifo', [join(tree, 'pipe')])
  const put = await gridRun(['put', '--join', joinFile, tree], undefined, 30_000)
  assert.is(put.code, 0, put.stderr)
  assert.is(put.stderr.split('\n').filter(l => l.includes('pipe is not a file, directory or link: left out')).length, 1, put.stderr)
  const cid = put.stdout.trim()
  const out = join(dir, 'extracted')
  const got = await gridRun(['get', '--join', joinFile, cid, '--extract', out])
  assert.is(got.code, 0, got.stderr)
  assert.is((await stat(join(out, 'bin', 'run.sh'))).mode & 0o111, 0o111)
  assert.is((await stat(join(out, 'notes.txt'))).mode & 0o111, 0)
  assert.ok((await lstat(join(out, 'run'))).isSymbolicLink())
  assert.is(await readlink(join(out, 'run')), 'bin/run.sh')
  assert.is(await readFile(join(out, 'run'), 'utf8'), '#!/bin/sh\necho hi\n')
  assert.is(await lstat(join(out, 'pipe')).catch(() => 'absent'), 'absent')

  const help = await gridRun(['get', '--help'])
  assert.match(help.stdout, /--extract <dir>/)

  const hostile = join(dir, 'hostile-tree')
  await mkdir(hostile, { recursive: true })
  await writeFile(join(hostile, 'fine.txt'), 'fine\n')
  await symlink('/etc/hostname', join(hostile, 'leak'))
  const bad = await gridRun(['get', '--join', joinFile, await uploadTar(grid, hostile), '--extract', join(dir, 'hostile-out')])
  assert.is(bad.code, 1)
  assert.match(bad.stderr, /^grid: refused to unpack: entry \.\/leak is a link to \/etc\/hostname, an absolute path outside the directory; nothing was written\n$/, bad.stderr)
  assert.is(await readdir(join(dir, 'hostile-out')).catch(() => 'absent'), 'absent')

  // grid put of that tree says so at once (once, though it reads the tree twice), rather than when a build fails on it.
  const warned = await gridRun(['put', '--join', joinFile, hostile])
  assert.is(warned.code, 0, warned.stderr)
  assert.is(warned.stderr.split('\n').filter(l => /leak is a link leading out of .*: a build's src and grid get --extract will refuse it$/.test(l)).length, 1, warned.stderr)
  assert.not.match(warned.stderr, /fine\.txt/)
})

files('GET /api/builds/:id/artifacts.tar streams the artifacts with their modes and links', async ({ grid }) => {
  const built = await grid.finished(await grid.submit({
    steps: [{ run: 'mkdir -p dist && printf "#!/bin/sh\\n" > dist/app && chmod 755 dist/app && echo doc > dist/README && ln -s app dist/current' }],
    artifacts: ['dist']
  }))
  assert.is(built.status, 'succeeded')
  const res = await grid.api(`/api/builds/${built.id}/artifacts.tar`)
  assert.is(res.status, 200)
  assert.is(res.headers.get('content-type'), 'application/x-tar')
  const bytes = Buffer.from(await res.arrayBuffer())
  assert.is(Number(res.headers.get('content-length')), bytes.length)
  const entries = await tarEntries(bytes)
  assert.equal(Object.keys(entries).sort(), ['dist/README', 'dist/app', 'dist/current'])
  assert.is(entries['dist/app'].mode, 0o755)
  assert.is(entries['dist/README'].mode, 0o644)
  assert.is(entries['dist/current'].type, 'SymbolicLink')
  assert.is(entries['dist/current'].linkpath, 'app')
  assert.is((await grid.api('/api/builds/nosuchbuild1/artifacts.tar')).status, 404)
})

files('a store that cannot take the artifacts fails the build with one sentence in the log and the record', async ({ dir }) => {
  const data = join(dir, 'full-grid')
  const node = await startCoordinatorNode({ dataDir: data, listen: ['/ip4/127.0.0.1/tcp/0'], http: '127.0.0.1:0', withStore: true, storeMaxBytes: 256 * 1024 })
  const worker = await startWorkerNode({ dataDir: join(data, 'worker'), join: node.localJoin, secret: node.secret, listen: [], capabilities: { os: process.platform }, slots: 1 })
  try {
    await worker.worker.ready(AbortSignal.timeout(10_000))
    const url = node.web?.url ?? ''
    const res = await fetch(`${url}/api/builds`, { method: 'POST', headers: { authorization: `Bearer ${node.token}` }, body: JSON.stringify({ steps: [{ run: 'head -c 3000000 /dev/urandom > big.bin' }], artifacts: ['big.bin'] }) })
    const { id } = await res.json()
    const build = await waitFor(`build ${id} to finish`, async () => {
      const b = await (await fetch(`${url}/api/builds/${id}`)).json() as Build
      return FINISHED.has(b.status) ? b : undefined
    }, 30_000)
    assert.is(build.status, 'failed')
    assert.match(build.error ?? '', /^could not keep artifact big\.bin \(2\.9 MiB\) on the stores: .*the store is full.*; kept 0 artifacts \(0 bytes\) on 0 stores before that$/, build.error)
    assert.not.match(build.error ?? '', /\n/)
    const log = await (await fetch(`${url}/api/builds/${id}/log`)).text()
    assert.match(log, /^grid: could not keep artifact big\.bin .*the store is full/m)
  } finally {
    await worker.stop()
    await node.stop()
  }
})

files('collect: no reachable store is one sentence (WorkspaceError), not a crash', async ({ grid, dir }) => {
  const work = join(dir, 'work-unreachable')
  await mkdir(work, { recursive: true })
  await writeFile(join(work, 'a.txt'), 'a\n')
  const nowhere = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const init = { host: grid.node.host, join: grid.node.localJoin, workDir: work, stores: [{ peer: nowhere, addrs: ['/ip4/127.0.0.1/tcp/1'] }], signal: AbortSignal.timeout(30_000) }
  const lines: string[] = []
  const err = await collect(init, ['a.txt'], line => lines.push(line)).then(() => undefined, (e: Error) => e)
  assert.is(err?.name, 'WorkspaceError')
  assert.match(err?.message ?? '', /^could not keep artifact a\.txt \(2 bytes\) on the stores: /, err?.stack)
  assert.not.match(err?.message ?? '', /\n/)
})

files.run()

// Builds with a source tar, inputs and artifacts: bytes go worker → store and store → worker, never through
// the coordinator; one build's artifact feeds the next.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { create as tarCreate } from 'tar'
import { gridRun, startTestGrid, tempDir, removeDir } from '../helpers.ts'
import type { TestGrid } from '../helpers.ts'

const artifacts = suite<{ grid: TestGrid, dir: string }>('artifacts, inputs and src')

artifacts.before(async ctx => {
  ctx.grid = await startTestGrid({ workers: [{}, {}] })
  ctx.dir = await tempDir('artifacts')
})
artifacts.after(async ctx => {
  await ctx.grid?.stop()
  await removeDir(ctx.dir)
})

const sha = (text: string): string => createHash('sha256').update(text).digest('hex')

artifacts('matched files are pushed to a store and recorded with CID, size and sha256', async ({ grid }) => {
  const id = await grid.submit({
    steps: [{ run: 'mkdir -p dist/sub && echo app > dist/app.js && echo deep > dist/sub/x.txt && echo "<ok/>" > report.xml && echo skip > other.txt' }],
    artifacts: ['dist/**', 'report.xml', 'nothing-matches/*']
  })
  const build = await grid.finished(id)
  assert.is(build.status, 'succeeded')
  assert.equal(build.artifacts.map(a => a.path), ['dist/app.js', 'dist/sub/x.txt', 'report.xml'])
  const app = build.artifacts[0]
  assert.is(app.size, 4)
  assert.is(app.sha256, sha('app\n'))
  assert.is(await (await grid.api(`/api/artifacts/${app.cid}`)).text(), 'app\n')
})

artifacts('a failed build keeps its artifacts too (the test report is wanted most then)', async ({ grid }) => {
  const build = await grid.finished(await grid.submit({ steps: [{ run: 'echo "<failures/>" > report.xml; exit 2' }], artifacts: ['report.xml'] }))
  assert.is(build.status, 'failed')
  assert.equal(build.artifacts.map(a => a.path), ['report.xml'])
})

artifacts('a build takes another build\'s artifact as input, waiting for it to succeed', async ({ grid }) => {
  const producer = await grid.submit({ steps: [{ run: 'sleep 1; echo "built by the producer" > out.txt' }], artifacts: ['out.txt'] })
  const consumer = await grid.submit({ inputs: { 'in/from-producer.txt': `build:${producer}/out.txt` }, steps: [{ run: 'cat in/from-producer.txt' }] })
  const done = await grid.finished(consumer)
  assert.is(done.status, 'succeeded')
  assert.is(await (await grid.api(`/api/logs/${done.steps[0].log}`)).text(), 'built by the producer\n')
})

artifacts('an input from a build that failed ends the build without running it, naming that build', async ({ grid }) => {
  const broken = await grid.submit({ steps: [{ run: 'exit 1' }], artifacts: ['out.txt'] })
  const consumer = await grid.submit({ inputs: { 'x.txt': `build:${broken}/out.txt` }, steps: [{ run: 'echo never' }] })
  const done = await grid.finished(consumer)
  assert.is(done.status, 'failed')
  assert.equal(done.attempts, [], 'it never took a slot')
  assert.match(done.error ?? '', new RegExp(`input x.txt: build ${broken} ended failed`))
})

artifacts('src: a tar is unpacked into the work dir before the first step', async ({ grid, dir }) => {
  const tree = join(dir, 'src')
  await mkdir(join(tree, 'lib'), { recursive: true })
  await writeFile(join(tree, 'lib', 'hello.txt'), 'from the source tree\n')
  const chunks: Buffer[] = []
  for await (const chunk of tarCreate({ cwd: tree, portable: true }, ['.']) as unknown as AsyncIterable<Buffer>) chunks.push(chunk)
  const up = await grid.api('/api/artifacts', { method: 'POST', body: Buffer.concat(chunks), headers: { authorization: `Bearer ${grid.token}` } })
  const { cid } = await up.json()
  const done = await grid.finished(await grid.submit({ src: cid, steps: [{ run: 'cat lib/hello.txt' }] }))
  assert.is(done.status, 'succeeded')
  assert.is(await (await grid.api(`/api/logs/${done.steps[0].log}`)).text(), 'from the source tree\n')
})

artifacts('grid submit --src DIR --artifact GLOB --follow', async ({ grid, dir }) => {
  const tree = join(dir, 'project')
  await mkdir(tree, { recursive: true })
  await writeFile(join(tree, 'Makefile'), 'all:\n\tmkdir -p dist && cp Makefile dist/copied\n')
  const joinFile = join(grid.dir, 'join-trusted')
  const run = await gridRun(['submit', '--join', joinFile, '--src', tree, '--run', 'make -s && ls dist', '--artifact', 'dist/*', '--follow'])
  assert.is(run.code, 0, run.stderr)
  assert.match(run.stdout, /copied\n/)
})

artifacts('paths that climb out of the work dir are refused at submit', async ({ grid }) => {
  for (const job of [
    { steps: [{ run: 'true' }], artifacts: ['../secret'] },
    { steps: [{ run: 'true' }], artifacts: ['/etc/passwd'] },
    { steps: [{ run: 'true' }], inputs: { '../../x': 'bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am' } },
    { steps: [{ run: 'true' }], inputs: { x: 'not-a-cid' } }
  ]) {
    const res = await grid.api('/api/builds', { method: 'POST', headers: { authorization: `Bearer ${grid.token}` }, body: JSON.stringify(job) })
    assert.is(res.status, 400, JSON.stringify(job))
  }
})

artifacts('a file reached through a link out of the work dir is not taken', async ({ grid }) => {
  const done = await grid.finished(await grid.submit({ steps: [{ run: 'ln -s /etc/hostname leak.txt' }], artifacts: ['leak.txt'] }))
  // Skipped with a warning, not a failed build (see artifact-files.test.ts).
  assert.is(done.status, 'succeeded')
  assert.equal(done.artifacts, [])
  assert.match(done.warnings?.[0] ?? '', /leak\.txt was not kept: it is a link to \/etc\/hostname, outside the work dir/)
})

artifacts.run()

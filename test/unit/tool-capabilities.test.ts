// The tools a worker announces, git above all: a pipeline's checkout build requires `git: "*"`, so a worker must
// announce git exactly when `git --version` works on its host, with the version it prints.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { detectCapabilities } from '../../worker/capabilities.ts'

const tools = suite<{ dir: string, path?: string }>('worker capabilities: tools on PATH')

tools.before.each(async ctx => {
  ctx.dir = await mkdtemp(join(tmpdir(), 'grid-tools-'))
  ctx.path = process.env.PATH
})
tools.after.each(async ctx => {
  process.env.PATH = ctx.path
  await rm(ctx.dir, { recursive: true, force: true })
})

/** A PATH of one folder holding a `git` that is this shell script. */
async function onlyGit (dir: string, script: string): Promise<void> {
  const bin = join(dir, 'bin')
  await mkdir(bin)
  await writeFile(join(bin, 'git'), `#!/bin/sh\n${script}\n`)
  await chmod(join(bin, 'git'), 0o755)
  process.env.PATH = bin
}

tools('a git whose --version works is announced with the version it prints', async ({ dir }) => {
  await onlyGit(dir, 'test "$1" = --version && echo "git version 2.39.5" || exit 129')
  const caps = await detectCapabilities()
  assert.is(caps.git, '2.39.5')
  assert.is(caps.make, undefined, 'nothing else is on this PATH')
})

tools('the version is read as Apple\'s git prints it, too', async ({ dir }) => {
  await onlyGit(dir, 'echo "git version 2.39.3 (Apple Git-146)"')
  assert.is((await detectCapabilities()).git, '2.39.3')
})

tools('a git that fails without a word is not announced', async ({ dir }) => {
  await onlyGit(dir, 'exit 1')
  const caps = await detectCapabilities()
  assert.is(caps.git, undefined)
  assert.ok(!('git' in caps))
})

tools('a git file that cannot run (not executable) is not announced', async ({ dir }) => {
  await onlyGit(dir, 'echo "git version 2.39.5"')
  await chmod(join(dir, 'bin', 'git'), 0o644)
  assert.ok(!('git' in await detectCapabilities()))
})

tools('no git on PATH: no git capability, and the rest is still there', async ({ dir }) => {
  process.env.PATH = dir
  const caps = await detectCapabilities()
  assert.ok(!('git' in caps))
  assert.is(caps.os, process.platform)
  assert.match(caps.cpus, /^\d+$/)
})

tools('a git that prints its name but no version is announced as yes', async ({ dir }) => {
  await onlyGit(dir, 'echo "git (custom build)"')
  assert.is((await detectCapabilities()).git, 'yes')
})

tools.run()

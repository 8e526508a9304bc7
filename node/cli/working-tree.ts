// What `grid run DIR` sends as a pipeline's source, and what it says of where that came from. In a git work tree the
// source is what git would see: tracked and untracked files, never what .gitignore (or .git/info/exclude, or the
// user's global excludes) leaves out, nor .git itself, so a build gets what a push would give it plus the changes
// not committed yet. Anywhere else it is every file under DIR but .git.
import { execFile } from 'node:child_process'
import { lstat } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { GridError } from '../../net/errors.ts'
import type { TarSelection } from './directory-tar.ts'

/**
 * Longest one git command of `grid run` may take (listing a work tree of a million files included); past it the
 * command is killed and the run stops with GitFailedError, before anything is sent.
 */
export const GIT_TIMEOUT_MS = 60_000

/**
 * Most output one git command may give: `ls-files -z` of a work tree of about a million paths. Past it the run stops
 * with GitFailedError (Node's own default, 1 MiB, is a work tree of some ten thousand files).
 */
export const GIT_MAX_OUTPUT_BYTES = 256 * 2 ** 20

/** A git command `grid run` needs failed in a way that says nothing about the tree (a timeout, a broken repository). */
export class GitFailedError extends GridError {
  name = 'GitFailedError'
  readonly status = 500
}

/** Where a pipeline's source came from, as `run-pipeline` records it (CONTRACT.md, Pipelines: `source`). */
export interface TreeOrigin {
  /** `refs/heads/NAME` of the checked out branch; absent on a detached HEAD. */
  ref?: string
  /**
   * HEAD's sha, only when the files under DIR are HEAD's: with changes not committed (untracked files included) the
   * tree sent is no commit at all, and naming HEAD would say it is (the coordinator takes only a full commit id, so
   * there is no `SHA-dirty` to mark it with). Absent too before the first commit.
   */
  commit?: string
  /** HEAD's sha when the tree differs from it (and so `commit` is absent). */
  dirtyFrom?: string
}

/** A directory about to be sent as a pipeline's source. */
export interface WorkingTree {
  /** The directory, absolute: the pipeline's `source.url`. */
  dir: string
  /** What goes into the tar (directory-tar.ts). */
  selection: TarSelection
  /** Set when DIR is in a git work tree. */
  git?: TreeOrigin
  /** One line saying what is sent, for stderr. */
  description: string
}

interface GitResult {
  /** The exit code; undefined when git is not installed. */
  code?: number
  stdout: string
  stderr: string
}

/** One git command in `dir`. Its exit code is the caller's to read; a timeout or too much output is GitFailedError. */
async function git (dir: string, args: string[]): Promise<GitResult> {
  return await new Promise((resolve, reject) => {
    // GIT_OPTIONAL_LOCKS=0: `git status` would otherwise take the index lock to refresh it, and fail a commit the
    // user runs at the same moment. LC_ALL=C: "not a git repository" is read from stderr, so it must be English.
    const env = { ...process.env, GIT_OPTIONAL_LOCKS: '0', LC_ALL: 'C' }
    execFile('git', args, { cwd: dir, timeout: GIT_TIMEOUT_MS, maxBuffer: GIT_MAX_OUTPUT_BYTES, encoding: 'utf8', env }, (err: any, stdout, stderr) => {
      if (err === null) return resolve({ code: 0, stdout, stderr })
      if (err.code === 'ENOENT') return resolve({ stdout: '', stderr: '' })
      if (err.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') return reject(new GitFailedError(`git ${args[0]} in ${dir} said more than ${GIT_MAX_OUTPUT_BYTES / 2 ** 20} MiB`))
      if (err.killed === true) return reject(new GitFailedError(`git ${args[0]} in ${dir} took longer than ${GIT_TIMEOUT_MS / 1000} s`))
      if (typeof err.code !== 'number') return reject(new GitFailedError(`git ${args[0]} in ${dir} could not run: ${err.code ?? err.message}`))
      resolve({ code: err.code, stdout, stderr })
    })
  })
}

/** A directory in a git work tree, on a machine without git: what git ignores cannot be left out. */
export class GitNotInstalledError extends GridError {
  name = 'GitNotInstalledError'
}

/** The first line git wrote on stderr, for a one-line error. */
const firstLine = (text: string): string => text.split('\n').map(l => l.trim()).find(l => l !== '') ?? 'no reason given'

/** The nearest folder from `dir` up that holds a `.git`, or undefined. */
async function enclosingGit (dir: string): Promise<string | undefined> {
  for (let at = dir; ; at = dirname(at)) {
    if (await lstat(join(at, '.git')).then(() => true, () => false)) return at
    if (dirname(at) === at) return undefined
  }
}

/** A plain directory: every file but `.git`, wherever one is (a copied clone inside a plain tree included). */
const PLAIN: TarSelection = { leaveOut: path => path.split('/').includes('.git') }

/**
 * The working tree under `dir`: the paths to send and, in a git work tree, the branch and commit it stands on.
 * `report` hears of what is left out that a user may not expect (a nested repository). Throws GitFailedError when
 * git is there but cannot read the tree, GitNotInstalledError for a work tree on a machine without git.
 */
export async function readWorkingTree (given: string, report: (line: string) => void): Promise<WorkingTree> {
  const abs = resolve(given)
  // How the directory is named in what is said: as given, but `.` says nothing in a sentence.
  const dir = given === '.' ? abs : given
  const inside = await git(abs, ['rev-parse', '--is-inside-work-tree'])
  if (inside.code === undefined) {
    // Without git, what it ignores cannot be known: a work tree's ignored files (a .env, a build folder) are not
    // sent anyway on a guess.
    const work = await enclosingGit(abs)
    if (work !== undefined) throw new GitNotInstalledError(`${dir} is in a git work tree (${work}) but git is not installed here: install it, so what git ignores is left out`)
    return { dir: abs, selection: PLAIN, description: `${dir}: every file but .git (git is not installed here)` }
  }
  // Inside a .git directory git says false. Any other failure (a repository owned by someone else, a broken one)
  // is said, not taken for "not a repository": that would send what git ignores.
  if (inside.code !== 0 && !/not a git repository/i.test(inside.stderr)) throw new GitFailedError(`git cannot read the work tree of ${dir}: ${firstLine(inside.stderr)}`)
  if (inside.code !== 0 || inside.stdout.trim() !== 'true') return { dir: abs, selection: PLAIN, description: `${dir} is not in a git work tree: every file but .git` }

  const listed = await git(abs, ['ls-files', '-z', '--cached', '--others', '--exclude-standard'])
  if (listed.code !== 0) throw new GitFailedError(`git ls-files in ${dir} failed: ${firstLine(listed.stderr)}`)
  // A conflicted path is listed once per stage; sorted, so the tar (and its CID) do not hang on git's order.
  const paths = [...new Set(listed.stdout.split('\0').filter(p => p !== ''))].sort()
  const files: string[] = []
  for (const path of paths) {
    const info = await lstat(join(abs, path)).catch(() => undefined)
    // Tracked but deleted in the work tree: the tree sent is the work tree, so it is not there either.
    if (info === undefined) continue
    // A submodule (or an untracked clone, listed as `name/`) is a repository of its own; its files are not this one's.
    if (info.isDirectory()) {
      report(`${join(dir, path.replace(/\/$/, ''))} is a git repository of its own (a submodule?): left out`)
      continue
    }
    files.push(path)
  }

  const head = await git(abs, ['rev-parse', '--verify', '--quiet', 'HEAD'])
  const branch = await git(abs, ['symbolic-ref', '--quiet', 'HEAD'])
  const origin: TreeOrigin = {}
  if (branch.code === 0 && branch.stdout.trim().startsWith('refs/heads/')) origin.ref = branch.stdout.trim()
  if (head.code === 0 && head.stdout.trim() !== '') {
    const status = await git(abs, ['status', '--porcelain', '-z', '--untracked-files=normal', '--', '.'])
    if (status.code !== 0) throw new GitFailedError(`git status in ${dir} failed: ${firstLine(status.stderr)}`)
    if (status.stdout === '') origin.commit = head.stdout.trim()
    else origin.dirtyFrom = head.stdout.trim()
  }
  const on = origin.ref !== undefined ? ` on ${origin.ref.slice('refs/heads/'.length)}` : ' (detached HEAD)'
  const at = origin.commit !== undefined
    ? ` at ${origin.commit.slice(0, 12)}`
    : origin.dirtyFrom !== undefined ? ` at ${origin.dirtyFrom.slice(0, 12)} with changes not committed (so the pipeline names no commit)` : ', no commit yet'
  return {
    dir: abs,
    selection: { files },
    git: origin,
    description: `${dir}: ${files.length} file${files.length === 1 ? '' : 's'} git does not ignore${on}${at}`
  }
}

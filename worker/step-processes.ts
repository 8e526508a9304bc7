// Every process a step started, so that none outlives it: the step's own process group is not enough, since
// `setsid`, a double fork or `set -m` leave it. Three marks, any one of which makes a process the step's:
// - a cgroup of the step's own, where the machine lets the worker make one (root, a writable cgroup v2, or a v1
//   `pids` hierarchy): a child is born into its parent's cgroup and only root can move it out;
// - an environment tag, GitHub's runner's way (RUNNER_TRACKING_ID): the step's env carries a value nobody else
//   has, and /proc/PID/environ shows it for any descendant that did not clear its environment;
// - the step's session: the step's shell is spawned in a session of its own, which `set -m` and nohup keep.
// Cgroups are optional: without them a step runs as well, found by its tag and session alone.
import { randomBytes } from 'node:crypto'
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs'
import type { Dirent } from 'node:fs'
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises'
import { STEP_CGROUP_MAX_DEPTH, STEP_CGROUP_STALE_MS, STEP_KILL_ROUNDS, STEP_SWEEP_POLL_MS } from '../net/constants.ts'

/** The environment variable whose value tags a step's processes. */
export const STEP_TAG_ENV = 'GRID_STEP_TAG'

/**
 * How a step's processes are found besides its tag and session: 'cgroup' in a cgroup v2 (whose `cgroup.kill` ends
 * them all at once) or else a v1 `pids` cgroup; 'cgroup-v1' only the latter; 'tag' in none (the fallback; tests use
 * it to check the fallback on a machine that has cgroups).
 */
export type StepTracking = 'cgroup' | 'cgroup-v1' | 'tag'

export interface StepProcess {
  pid: number
  /** Its process group: the step's own group is signalled at once through the leader while it lives. */
  pgid: number
  /** Its parent: a process whose parent is no longer the step's was orphaned (its parent died, say of SIGTERM). */
  ppid: number
}

interface Cgroup {
  version: 1 | 2
  dir: string
}

/**
 * /proc entries the sweep reads one after another before it lets the worker's other work run. Each read is a few
 * microseconds done in place (through the thread pool, the same reads took ten times as long under load, and the
 * sweep after every step was most of a trivial build's time); on a host with thousands of processes the sweep
 * yields every this many, so other steps' logs and the heartbeats never wait more than a few milliseconds.
 */
const PROC_READS_PER_TURN = 256

/**
 * Moves the shell into the cgroup before it runs the step (`exec` keeps its pid), so nothing the step starts is
 * forked outside it. If the move fails the step runs all the same, found by its tag and session.
 */
const ENTER_CGROUP = '{ echo $$ >"$1"; } 2>/dev/null; exec /bin/sh -c "$2"'

export class StepProcesses {
  /** The tag's value: random, so no process outside the step carries it. */
  readonly tag: string
  /** The step's shell, once spawned (see spawned()): detached, so its pid names its session and its process group too. */
  leader?: number
  private readonly cgroup?: Cgroup
  private leaderExited = false
  /**
   * When the leader started, in clock ticks since boot (/proc/PID/stat's starttime): a process started before it
   * cannot have inherited the step's tag, so only younger ones have their environment read.
   */
  private leaderStart: number | undefined
  /** Tasks the machine had created before the shell was spawned (see youngOnly()). */
  private readonly forksBefore: number | undefined

  private constructor (tag: string, cgroup?: Cgroup) {
    this.tag = tag
    this.cgroup = cgroup
    this.forksBefore = forksSoFar()
  }

  /** Never fails: a machine without usable cgroups gets a step found by its tag and session alone. */
  static async open (tracking: StepTracking = 'cgroup'): Promise<StepProcesses> {
    const tag = randomBytes(12).toString('hex')
    const cgroup = tracking === 'tag' ? undefined : await makeCgroup(`grid-step-${tag}`, tracking === 'cgroup' ? [2, 1] : [1])
    return new StepProcesses(tag, cgroup)
  }

  /** The cgroup the step runs in, if the machine gave it one. */
  get cgroupDir (): string | undefined { return this.cgroup?.dir }

  /** Arguments for `/bin/sh` that run `run`, in the step's cgroup when it has one. */
  shellArgs (run: string): string[] {
    if (this.cgroup === undefined) return ['-c', run]
    return ['-c', ENTER_CGROUP, '/bin/sh', join(this.cgroup.dir, 'cgroup.procs'), run]
  }

  /** The step's environment, tagged. */
  env (env: Record<string, string | undefined>): Record<string, string | undefined> {
    return { ...env, [STEP_TAG_ENV]: this.tag }
  }

  /**
   * The step's shell was spawned as `pid`, which started at `start` (clock ticks since boot) when whoever spawned it
   * read that. Without `start` it is read here: call this before the event loop turns, while a shell this process
   * spawned cannot have been reaped yet.
   */
  spawned (pid: number, start?: number): void {
    this.leader = pid
    this.leaderStart = start ?? readStat(pid)?.start
  }

  /** The leader was reaped: its pid may be reused, so its group is no longer signalled through it. */
  exited (): void {
    this.leaderExited = true
  }

  /** Signals the step's process group as one, while its leader lives. True if it was signalled. */
  signalGroup (signal: NodeJS.Signals): boolean {
    if (this.leader === undefined || this.leaderExited) return false
    try {
      process.kill(-this.leader, signal)
      return true
    } catch {
      return false
    }
  }

  signal (processes: StepProcess[], signal: NodeJS.Signals): void {
    for (const { pid } of processes) {
      if (!killable(pid)) continue
      try { process.kill(pid, signal) } catch {}
    }
  }

  /**
   * Whether every process started since the shell has a larger pid than the shell's. Linux hands pids out in
   * increasing order and starts again from the bottom only past pid_max; since the shell, at most as many pids were
   * handed out as tasks were created (/proc/stat's `processes`), and at most three per living task (its pid, process
   * group, session) are skipped as taken. While those cannot have reached pid_max, a process with a smaller pid
   * than the shell's is older than the step, and need not even be read. Any doubt: false, and every one is.
   */
  private youngOnly (): boolean {
    if (this.leader === undefined || this.forksBefore === undefined) return false
    const forks = forksSoFar()
    const tasks = tasksNow()
    const max = pidMax()
    if (forks === undefined || tasks === undefined || max === undefined) return false
    return this.leader + (forks - this.forksBefore) + 3 * tasks < max
  }

  /** The step's processes alive now (zombies are gone: some PID 1s never reap the orphans they inherit). */
  async list (): Promise<StepProcess[]> {
    const members = new Set(this.cgroup !== undefined ? cgroupMembers(this.cgroup.dir, STEP_CGROUP_MAX_DEPTH) : [])
    const young = this.youngOnly()
    const found: StepProcess[] = []
    /** Processes that are the step's only if they carry its tag: their environment is read after the scan. */
    const maybe: StepProcess[] = []
    const look = (pid: number): void => {
      const stat = readStat(pid)
      if (stat === undefined || stat.state === 'Z' || stat.state === 'X') return
      const proc = { pid, pgid: stat.pgid, ppid: stat.ppid }
      if (members.has(pid) || (this.leader !== undefined && stat.session === this.leader)) found.push(proc)
      // Reading the environment of a process in uninterruptible sleep can block as long as it sleeps: it is looked
      // at again on the next round, and could not die before waking anyway.
      else if (stat.state !== 'D' && (this.leaderStart === undefined || stat.start >= this.leaderStart)) maybe.push(proc)
    }
    let names: string[] = []
    try {
      names = readdirSync('/proc')
    } catch {}
    let read = 0
    for (const name of names) {
      const pid = Number(name)
      if (!Number.isInteger(pid) || !killable(pid)) continue
      // Older than the step (see youngOnly()): only its cgroup could make it the step's.
      if (young && pid < this.leader! && !members.has(pid)) continue
      if (++read % PROC_READS_PER_TURN === 0) await yieldToLoop()
      look(pid)
    }
    // Environments are read off the event loop: one of a process that has just gone into uninterruptible sleep
    // would hold it.
    const tagged = await Promise.all(maybe.map(async p => await carriesTag(p.pid, this.tag)))
    found.push(...maybe.filter((_, i) => tagged[i]))
    if (this.cgroup !== undefined) {
      // A process forked while /proc was being read (by a parent that then exited, say a shell dying of SIGTERM
      // that started one last child) is in neither snapshot: the cgroup, read again now, still holds it.
      const seen = new Set(found.map(p => p.pid))
      const late = cgroupMembers(this.cgroup.dir, STEP_CGROUP_MAX_DEPTH).filter(pid => !seen.has(pid) && killable(pid))
      for (const pid of late) members.add(pid)
      for (const pid of late) look(pid)
    }
    return found
  }

  /**
   * SIGKILL to every process of the step: the cgroup at once where it can (v2's `cgroup.kill`; v1 forbids forks
   * first), then whatever is still found, a bounded number of rounds. Resolves with the pids that outlived it all.
   */
  async kill (): Promise<number[]> {
    if (this.cgroup?.version === 2) await writeFile(join(this.cgroup.dir, 'cgroup.kill'), '1').catch(() => {})
    if (this.cgroup?.version === 1) await writeFile(join(this.cgroup.dir, 'pids.max'), '0').catch(() => {})
    this.signalGroup('SIGKILL')
    for (let round = 0; round < STEP_KILL_ROUNDS; round++) {
      const left = await this.list()
      if (left.length === 0) return []
      this.signal(left, 'SIGKILL')
      await sleep(STEP_SWEEP_POLL_MS)
    }
    return (await this.list()).map(p => p.pid)
  }

  /** Removes the step's cgroup (and any a nested worker left under it); one still busy is left where it is. */
  async close (): Promise<void> {
    if (this.cgroup !== undefined) await removeCgroup(this.cgroup.dir, STEP_CGROUP_MAX_DEPTH)
  }
}

/** Neither PID 1, the kernel's threads' parent, nor the worker itself, whatever a step wrote into its cgroup. */
function killable (pid: number): boolean {
  return pid > 2 && pid !== process.pid
}

/** A small /proc file's text, or undefined. */
function readProc (path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1')
  } catch {
    return undefined
  }
}

/** Tasks the machine has created since it booted (/proc/stat's `processes`): each took a pid. */
function forksSoFar (): number | undefined {
  const match = /^processes (\d+)$/m.exec(readProc('/proc/stat') ?? '')
  return match !== null ? Number(match[1]) : undefined
}

/** Tasks (processes and threads) alive now: /proc/loadavg's fourth field is `running/all`. */
function tasksNow (): number | undefined {
  const all = Number((readProc('/proc/loadavg') ?? '').split(' ')[3]?.split('/')[1])
  return Number.isInteger(all) ? all : undefined
}

/** The largest pid plus one: where pids start again from the bottom. */
function pidMax (): number | undefined {
  const max = Number((readProc('/proc/sys/kernel/pid_max') ?? '').trim())
  return Number.isInteger(max) && max > 0 ? max : undefined
}

/** One /proc/PID/stat at a time: a stat line is a few hundred bytes (comm is at most 64). */
const statBuffer = Buffer.alloc(1024)

/**
 * A process's /proc/PID/stat, read in place: unlike its environment, reading it never waits on the process.
 * Undefined once the process is gone.
 */
function readStat (pid: number): { state: string, ppid: number, pgid: number, session: number, start: number } | undefined {
  let stat: string
  try {
    const fd = openSync(`/proc/${pid}/stat`, 'r')
    try {
      stat = statBuffer.toString('latin1', 0, readSync(fd, statBuffer, 0, statBuffer.length, 0))
    } finally {
      closeSync(fd)
    }
  } catch {
    return undefined
  }
  // `pid (comm) state ppid pgrp session … starttime` (starttime is field 22); comm may hold spaces and
  // parentheses, so fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  if (fields.length < 20) return undefined
  return { state: fields[0], ppid: Number(fields[1]), pgid: Number(fields[2]), session: Number(fields[3]), start: Number(fields[19]) }
}

async function carriesTag (pid: number, tag: string): Promise<boolean> {
  const environ = await readFile(`/proc/${pid}/environ`).catch(() => undefined)
  if (environ === undefined) return false
  const entry = Buffer.from(`${STEP_TAG_ENV}=${tag}\0`)
  for (let at = environ.indexOf(entry); at !== -1; at = environ.indexOf(entry, at + 1)) {
    if (at === 0 || environ[at - 1] === 0) return true
  }
  return false
}

/**
 * Where each hierarchy puts steps' cgroups (the worker's own cgroup there), found once per worker process rather
 * than for every step: reading /proc/self/cgroup and mountinfo and listing a new cgroup's files each time cost a
 * trivial step milliseconds. null: the hierarchy gives the worker none (not mounted, or a v2 kernel without
 * cgroup.kill). A parent where a mkdir fails is looked for again (the worker may have been moved to another cgroup).
 */
const stepParents = new Map<1 | 2, string | null>()

/** v2 parents whose step cgroups were seen to have cgroup.kill (a kernel feature: one look is enough). */
const killChecked = new Set<string>()

/**
 * A cgroup for the step under the worker's own (so a worker run by a step makes its steps' cgroups inside that
 * step's), in the first hierarchy of `versions` that lets the worker make one.
 */
async function makeCgroup (name: string, versions: Array<1 | 2>): Promise<Cgroup | undefined> {
  for (const version of versions) {
    let parent = stepParents.get(version)
    let fresh = parent === undefined
    if (fresh) stepParents.set(version, parent = await findParent(version))
    let dir: string | undefined
    while (parent !== null && parent !== undefined) {
      await tidy(parent)
      try {
        await mkdir(join(parent, name))
        dir = join(parent, name)
        break
      } catch {
        if (fresh) break
        fresh = true
        stepParents.set(version, parent = await findParent(version))
      }
    }
    if (dir === undefined || parent === null || parent === undefined) continue
    // A v2 kernel before 5.14 has no cgroup.kill: a v1 pids cgroup, if there is one, can stop forks instead.
    if (version === 2 && !killChecked.has(parent)) {
      if (!(await readdir(dir).catch(() => [] as string[])).includes('cgroup.kill')) {
        await rmdir(dir).catch(() => {})
        stepParents.set(version, null)
        continue
      }
      killChecked.add(parent)
    }
    return { version, dir }
  }
  return undefined
}

/** The worker's own cgroup in hierarchy `version`, or null where it has none. */
async function findParent (version: 1 | 2): Promise<string | null> {
  const [own, mountinfo] = await Promise.all([
    readFile('/proc/self/cgroup', 'utf8').catch(() => ''),
    readFile('/proc/self/mountinfo', 'utf8').catch(() => '')
  ])
  return cgroupOf(own, mountinfo, version) ?? null
}

/** The directory of the worker's own cgroup in a v2 hierarchy, or in the v1 hierarchy of the `pids` controller. */
function cgroupOf (own: string, mountinfo: string, version: 1 | 2): string | undefined {
  // /proc/self/cgroup: `0::/path` for v2, `N:pids:/path` for v1.
  const line = own.split('\n').map(l => l.split(':')).find(([id, controllers]) =>
    version === 2 ? id === '0' && controllers === '' : controllers?.split(',').includes('pids'))
  if (line === undefined) return undefined
  const path = line.slice(2).join(':')
  for (const mount of mountinfo.split('\n')) {
    // `id parent major:minor root mountpoint options … - fstype source superoptions`
    const [before, after] = mount.split(' - ')
    if (after === undefined) continue
    const fields = before.split(' ')
    const [fstype, , superOptions = ''] = after.split(' ')
    const fits = version === 2 ? fstype === 'cgroup2' : fstype === 'cgroup' && superOptions.split(',').includes('pids')
    if (!fits) continue
    const root = fields[3]
    const mountPoint = fields[4]
    // A mount of part of the hierarchy (a container without a cgroup namespace) shows paths from its root down.
    if (root !== '/' && path !== root && !path.startsWith(root + '/')) continue
    return join(mountPoint, root === '/' ? path : path.slice(root.length))
  }
  return undefined
}

/** When each hierarchy's step cgroups were last tidied. */
const tidied = new Map<string, number>()

/**
 * Removes the empty cgroups of steps whose worker died before removing them (rmdir takes only an empty one). Those
 * made less than STEP_CGROUP_STALE_MS ago are left alone: another worker may be about to move its step in.
 */
async function tidy (parent: string): Promise<void> {
  if (Date.now() - (tidied.get(parent) ?? 0) < STEP_CGROUP_STALE_MS) return
  tidied.set(parent, Date.now())
  const stale = Date.now() - STEP_CGROUP_STALE_MS
  for (const name of await subdirs(parent)) {
    if (!/^grid-step-[0-9a-f]{24}$/.test(name)) continue
    const made = await stat(join(parent, name)).then(s => s.mtimeMs, () => Date.now())
    if (made < stale) await rmdir(join(parent, name)).catch(() => {})
  }
}

/** The pids in a cgroup and those under it, read in place (kernfs answers at once; see list()). */
function cgroupMembers (dir: string, depth: number): number[] {
  let procs = ''
  try {
    procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8')
  } catch {}
  const pids = procs.split('\n').filter(l => l !== '').map(Number)
  if (depth > 0) {
    let entries: Dirent[] = []
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch {}
    for (const child of entries) if (child.isDirectory()) pids.push(...cgroupMembers(join(dir, child.name), depth - 1))
  }
  return pids
}

async function removeCgroup (dir: string, depth: number): Promise<void> {
  // Nearly always empty, with no cgroup under it: removed at once, without listing it first.
  for (let round = 0; round < STEP_KILL_ROUNDS; round++) {
    try {
      await rmdir(dir)
      return
    } catch (err: any) {
      if (err.code !== 'EBUSY' && err.code !== 'ENOTEMPTY') return
    }
    // Cgroups a nested worker left under it go first, then it is tried again at once; just after its last process
    // died, a cgroup may still count as populated for a moment.
    const children = round === 0 && depth > 0 ? await subdirs(dir) : []
    for (const child of children) await removeCgroup(join(dir, child), depth - 1)
    if (children.length === 0) await sleep(STEP_SWEEP_POLL_MS)
  }
}

async function subdirs (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  return entries.filter(e => e.isDirectory()).map(e => e.name)
}

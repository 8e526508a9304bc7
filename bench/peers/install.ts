// What the peer bench needs and the grid does not: Debian's Buildbot (master and worker) and Helia from npm.
// Each is installed only when missing. Helia goes into bench/peers/helia/node_modules (git-ignored) from the pinned
// package-lock.json beside it, never into the grid's own dependencies.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { BenchError } from './processes.ts'

export const HELIA_DIR = join(import.meta.dirname, 'helia')
/** apt can take minutes on a cold cache; npm ci of Helia's ~600 packages about a minute. */
const APT_TIMEOUT_MS = 900_000
const NPM_TIMEOUT_MS = 600_000

/** One line on stderr and a non-zero exit: what the brief asks for when a peer cannot be installed. */
export class InstallError extends BenchError {
  name = 'InstallError'
}

const onPath = (command: string): boolean => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0

/** Buildbot master and worker from Debian (3.7.0 on bookworm); returns the master's version line. */
export function ensureBuildbot (report: (line: string) => void): string {
  if (!onPath('buildbot') || !onPath('buildbot-worker')) {
    if (!onPath('apt-get')) throw new InstallError('bench:peers: Buildbot is not installed and apt-get is not available (needs Debian\'s buildbot and buildbot-worker)')
    report('bench:peers: apt-get install -y buildbot buildbot-worker (Debian\'s Buildbot, once)')
    const install = (): number | null => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'buildbot', 'buildbot-worker'], {
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, stdio: ['ignore', 'ignore', 'inherit'], timeout: APT_TIMEOUT_MS
    }).status
    if (install() !== 0) {
      // A fresh machine may have no package lists yet.
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: APT_TIMEOUT_MS })
      if (install() !== 0) throw new InstallError('bench:peers: apt-get install buildbot buildbot-worker failed (needs root and Debian\'s package lists)')
    }
  }
  const version = spawnSync('buildbot', ['--version'], { encoding: 'utf8' }).stdout ?? ''
  const line = /Buildbot version: (\S+)/.exec(version)?.[1]
  if (line === undefined) throw new InstallError(`bench:peers: buildbot --version answered ${JSON.stringify(version.slice(0, 200))}`)
  return line
}

/** Helia from the pinned lock file, into bench/peers/helia/node_modules, when missing or older than the lock. */
export function ensureHelia (report: (line: string) => void): string {
  const installed = join(HELIA_DIR, 'node_modules', '.package-lock.json')
  const lock = join(HELIA_DIR, 'package-lock.json')
  if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
    report('bench:peers: npm ci --prefix bench/peers/helia (Helia, pinned, once)')
    const npm = spawnSync('npm', ['ci', '--prefix', HELIA_DIR, '--no-audit', '--no-fund', '--loglevel=error'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: NPM_TIMEOUT_MS })
    if (npm.status !== 0) throw new InstallError(`bench:peers: npm ci --prefix bench/peers/helia failed (${npm.error?.message ?? `exit ${npm.status}`})`)
  }
  return JSON.parse(readFileSync(join(HELIA_DIR, 'node_modules', 'helia', 'package.json'), 'utf8')).version
}

// Separate hosts on one machine: a network namespace per host, each with one veth link into a bridge that lives
// in its own namespace (the "switch"), plus one link from the machine itself so the runner can reach the
// coordinator's HTTP API. Everything is named `gridh-…` (namespaces, the runner's link) or lives inside those
// namespaces, so a crashed run's leftovers are recognisable and removed by the next run.
import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'

export const PREFIX = 'gridh-'
/** The switch: a namespace holding the bridge and the switch side of every host's link. */
export const SWITCH_NS = `${PREFIX}net`
/** The runner's own link into the switch (in the machine's namespace). */
export const CONTROL_LINK = `${PREFIX}ctl`
/** A private /24 used nowhere else here; hosts have no default route, so nothing leaves it. */
export const SUBNET = '10.231.77'
export const CONTROL_ADDR = `${SUBNET}.254`

export interface Host {
  name: string
  /** The host's network namespace. */
  ns: string
  addr: string
  /** The switch side of the host's link (in SWITCH_NS): cutting it is pulling the host's cable. */
  port: string
}

export const HOSTS = {
  coord: 1, store1: 11, store2: 12, w1: 21, w2: 22, w3: 23, tail: 31
} as const
export type HostName = keyof typeof HOSTS

/** Run `ip ARGS…`; throws with ip's own message. */
export function ip (...args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err: any) {
    throw new Error(`ip ${args.join(' ')}: ${String(err.stderr ?? err.message).trim()}`)
  }
}

function quietly (fn: () => unknown): void {
  try { fn() } catch {}
}

/** Namespaces of ours that exist now (from an earlier run, or this one). */
export function ourNamespaces (): string[] {
  let names: string[] = []
  try {
    names = readdirSync('/run/netns')
  } catch {
    return []
  }
  return names.filter(n => n.startsWith(PREFIX))
}

/** SIGKILL every process in namespace `ns` (only processes inside our own namespaces are touched). */
export function killNamespace (ns: string): number {
  let pids: number[] = []
  try {
    pids = ip('netns', 'pids', ns).split('\n').map(Number).filter(n => Number.isInteger(n) && n > 1)
  } catch {
    return 0
  }
  for (const pid of pids) quietly(() => process.kill(pid, 'SIGKILL'))
  return pids.length
}

/** Remove every namespace and link of ours, killing what still runs inside. Safe to call any number of times. */
export function removeAll (): { namespaces: number, processes: number } {
  const namespaces = ourNamespaces()
  let processes = 0
  for (const ns of namespaces) processes += killNamespace(ns)
  for (const ns of namespaces) quietly(() => ip('netns', 'del', ns))
  if (linkExists(CONTROL_LINK)) quietly(() => ip('link', 'del', CONTROL_LINK))
  return { namespaces: namespaces.length, processes }
}

function linkExists (name: string): boolean {
  try {
    readFileSync(`/sys/class/net/${name}/ifindex`)
    return true
  } catch {
    return false
  }
}

/** Build the switch, every host and the runner's link. */
export function createTopology (): Map<HostName, Host> {
  ip('netns', 'add', SWITCH_NS)
  ip('-n', SWITCH_NS, 'link', 'add', 'name', 'br0', 'type', 'bridge')
  ip('-n', SWITCH_NS, 'link', 'set', 'br0', 'up')
  ip('-n', SWITCH_NS, 'link', 'set', 'lo', 'up')
  const hosts = new Map<HostName, Host>()
  for (const [name, octet] of Object.entries(HOSTS) as Array<[HostName, number]>) {
    const host: Host = { name, ns: `${PREFIX}${name}`, addr: `${SUBNET}.${octet}`, port: `p-${name}` }
    ip('netns', 'add', host.ns)
    ip('-n', SWITCH_NS, 'link', 'add', 'name', host.port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.ns)
    ip('-n', SWITCH_NS, 'link', 'set', host.port, 'master', 'br0')
    ip('-n', SWITCH_NS, 'link', 'set', host.port, 'up')
    ip('-n', host.ns, 'addr', 'add', `${host.addr}/24`, 'dev', 'eth0')
    ip('-n', host.ns, 'link', 'set', 'eth0', 'up')
    ip('-n', host.ns, 'link', 'set', 'lo', 'up')
    hosts.set(name, host)
  }
  ip('link', 'add', 'name', CONTROL_LINK, 'type', 'veth', 'peer', 'name', 'p-ctl', 'netns', SWITCH_NS)
  ip('-n', SWITCH_NS, 'link', 'set', 'p-ctl', 'master', 'br0')
  ip('-n', SWITCH_NS, 'link', 'set', 'p-ctl', 'up')
  ip('addr', 'add', `${CONTROL_ADDR}/24`, 'dev', CONTROL_LINK)
  ip('link', 'set', CONTROL_LINK, 'up')
  return hosts
}

/** Pull the host's cable: its switch port goes down, so packets either way are dropped without a reset. */
export function cut (host: Host): void {
  ip('-n', SWITCH_NS, 'link', 'set', host.port, 'down')
}

export function heal (host: Host): void {
  ip('-n', SWITCH_NS, 'link', 'set', host.port, 'up')
}

/** True when `ip netns add` works here (root, and a kernel that allows it). */
export function namespacesWork (): { ok: boolean, why?: string } {
  const probe = `${PREFIX}probe-${process.pid}`
  try {
    ip('netns', 'add', probe)
    ip('netns', 'del', probe)
    return { ok: true }
  } catch (err: any) {
    return { ok: false, why: err.message }
  }
}

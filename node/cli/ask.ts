// A client command's requests to the grid's coordinator. Every failure to reach it becomes the same
// 'cannot reach the grid' line, so a user learns what to check (is it running, is the join code current) rather
// than which libp2p step failed.
import type { GridHost } from '../../net/host.ts'
import type { JoinCode } from '../../net/join-code.ts'
import { coordinatorAddress } from '../../net/join-code.ts'
import { GridError, isGridError } from '../../net/errors.ts'
import { PeerUnreachableError } from '../../net/dial.ts'
import { askCoordinator } from '../../protocols/builds.ts'
import type { BuildsReply, BuildsRequest } from '../../protocols/builds.ts'
import type { Build } from '../../grid/build.ts'
import { trustProof } from '../../grid/trust.ts'
import { UsageError } from './report.ts'

/** The multiaddr code of `/p2p/PEER_ID`: left out where an address is shown (the peer ID says nothing to a user). */
const PEER_ID_CODE = 421

/** The coordinator a join code names could not be asked: the grid is down, or the code is not its current one. */
export class GridUnreachableError extends GridError {
  name = 'GridUnreachableError'
  readonly status = 503
}

/**
 * One request to the grid's coordinator. Failing to reach it (a refused dial, a wrong secret, a reset stream, no
 * answer) is said in words a user can act on; the protocol's own message stays in `cause`. A request that queues
 * builds carries the proof of a trusted join code when `code` is one, so its builds may run on trusted workers.
 */
export async function ask (host: GridHost, code: JoinCode, request: BuildsRequest): Promise<BuildsReply> {
  const coordinator = coordinatorAddress(code)
  if ((request.t === 'submit' || request.t === 'run-pipeline') && code.trust !== undefined) {
    request = { ...request, trust: trustProof(code.trust, host.peerId.toString(), code.coordinator.toString()) }
  }
  try {
    return await askCoordinator(host, coordinator, request)
  } catch (err: any) {
    if (isGridError(err) && !(err instanceof PeerUnreachableError)) throw err
    const where = code.addrs.map(a => a.decapsulateCode(PEER_ID_CODE).toString()).join(', ')
    throw new GridUnreachableError(`cannot reach the grid at ${where}: is it running, and is the join code current?`, { cause: err })
  }
}

/** The build a reply carries; an error reply, or any other kind, is a one-line failure. */
export function expectBuild (reply: BuildsReply): Build {
  if (reply.t === 'error') throw new UsageError(reply.error)
  if (reply.t !== 'build') throw new UsageError(`coordinator answered ${reply.t}`)
  return reply.build
}

/** The grid's stores, as the coordinator knows them now. */
export async function gridStores (host: GridHost, code: JoinCode): Promise<Array<{ peer: string, addrs: string[] }>> {
  return (await gridPlacement(host, code)).stores
}

/** The grid's stores and how many of them each piece of content goes to (an older coordinator says nothing: 1). */
export async function gridPlacement (host: GridHost, code: JoinCode): Promise<{ stores: Array<{ peer: string, addrs: string[] }>, replicas: number }> {
  const reply = await ask(host, code, { t: 'stores' })
  return reply.t === 'stores' ? { stores: reply.stores, replicas: reply.replicas ?? 1 } : { stores: [], replicas: 1 }
}

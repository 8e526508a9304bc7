// What the long-running commands (up, coordinator, store, worker) share: starting workers with their detected
// capabilities, and stopping on a signal. The nodes themselves are wired in node/roles.ts.
import type { JoinCode } from '../../net/join-code.ts'
import type { SecretHolder } from '../../net/host.ts'
import type { TrustHolder } from '../../grid/trust.ts'
import { detectCapabilities } from '../../worker/capabilities.ts'
import { startWorkerNode } from '../roles.ts'
import type { WorkerNode } from '../roles.ts'
import { capabilities } from './options.ts'
import { log } from './report.ts'

/** Stop on SIGINT/SIGTERM, cleanly the first time, at once the second. */
export function stopOnSignal (stop: () => Promise<void>): void {
  let stopping = false
  const onSignal = (signal: string): void => {
    if (stopping) process.exit(130)
    stopping = true
    log(`${signal}: stopping`)
    stop().then(() => process.exit(0), err => { log(`stopping failed: ${err.message}`); process.exit(1) })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

/**
 * One worker node per data dir (each dir holds that worker's identity). Workers beside the coordinator (`secret`
 * given: `grid up`) leave saying they joined to the coordinator, so each joining is said once; they share its
 * `trust` key holder too, so they are trusted (the operator's own machine) across rotations. A worker apart is
 * trusted when `code` is the trusted join code.
 */
export async function startWorkers (dataDirs: string[], code: JoinCode, caps: string[], slots: number, listen: string[] = [], secret?: SecretHolder, trust?: TrustHolder): Promise<WorkerNode[]> {
  const detected = { ...await detectCapabilities(), ...capabilities(caps) }
  const workers: WorkerNode[] = []
  try {
    for (const dataDir of dataDirs) workers.push(await startWorkerNode({ dataDir, join: code, secret, trust, listen, capabilities: detected, slots, log, announce: secret === undefined }))
  } catch (err) {
    for (const w of workers) await w.stop().catch(() => {})
    throw err
  }
  return workers
}

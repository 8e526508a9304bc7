// A tailer in its own process for bench/logs.ts: joins the grid as any client does and follows one log through
// LogReader (the code `grid tail` runs) until it is sealed. Prints `ready` once it is on the grid, then one JSON line.
//   latency: every line starts with `T<ms since the epoch>`; the gap to its arrival here is one sample.
//   rate: bytes and lines received, and when the first and last bytes came.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../net/host.ts'
import { coordinatorAddress, readJoinCode } from '../net/join-code.ts'
import { askCoordinator } from '../protocols/builds.ts'
import { LogReader } from '../client/log-reader.ts'

const [joinFile, log, mode] = process.argv.slice(2)
const code = await readJoinCode(joinFile)
const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret: code.secret, listen: [] })
const reply = await askCoordinator(host, coordinatorAddress(code), { t: 'stores' })
const stores = reply.t === 'stores' ? reply.stores : []
const reader = new LogReader({ host, stores: () => stores })
process.stdout.write('ready\n')

const now = (): number => performance.timeOrigin + performance.now()
const samples: number[] = []
let bytes = 0
let lines = 0
let first = 0
let last = 0
let partial = ''
for await (const chunk of reader.read(log, { follow: true })) {
  const at = now()
  if (first === 0) first = at
  last = at
  bytes += chunk.length
  for (const byte of chunk) if (byte === 10) lines++
  if (mode === 'latency') {
    const text = partial + Buffer.from(chunk).toString('latin1')
    const parts = text.split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) if (line.startsWith('T')) samples.push(at - Number(line.slice(1, line.indexOf(' '))))
  }
}
process.stdout.write(JSON.stringify({ bytes, lines, first, last, samples }) + '\n')
await host.stop()
process.exit(0)

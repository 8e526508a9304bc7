// The sending side of the transfer bench, one phase per process so each phase's peak RSS is its own.
// Usage: transfer-client.ts SECRET_HEX PEER_ID PEER_ADDR TCP_PORT PHASE SIZE [FILE] [CID SHA256]
// Prints one JSON line: { ms, bytes, peakRss, ... }.
import { createHash, randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { createHost } from '../net/host.ts'
import { sendWithBackpressure } from '../net/backpressure.ts'
import { putContent } from '../client/content/put.ts'
import { putPool, readFileBlocks } from '../client/content/file-blocks.ts'
import { readContent } from '../client/content/read.ts'
import { parseCid } from '../grid/content.ts'
import { BARE_CHUNK_BYTES, SINK_PROTOCOL, SOURCE_PROTOCOL, readCount, writeCount, writeRaw } from './transfer-protocol.ts'

const [secretHex, peer, addr, tcpPort, phase, sizeText, file, cidText, sha256] = process.argv.slice(2)
const size = Number(sizeText)
const store = { peer, addrs: [addr] }
const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret: Buffer.from(secretHex, 'hex'), listen: [] })
// Connect before the clock starts: every phase measures moving bytes, not the handshake.
await host.dial(multiaddr(addr))
const payload = randomBytes(BARE_CHUNK_BYTES)
const began = performance.now()
let extra: Record<string, unknown> = {}

async function tcpPhase (upload: boolean): Promise<number> {
  return await new Promise((resolve, reject) => {
    const socket = connect(Number(tcpPort), '127.0.0.1')
    let received = 0
    let reply = Buffer.alloc(0)
    socket.on('error', reject)
    socket.on('data', (chunk: Buffer) => {
      if (upload) reply = Buffer.concat([reply, chunk])
      else received += chunk.length
    })
    socket.on('end', () => resolve(upload ? readCount(reply) : received))
    socket.on('connect', () => {
      if (!upload) {
        socket.write(Buffer.concat([Buffer.from('d'), writeCount(size)]))
        return
      }
      socket.write('u')
      writeRaw(socket, payload, size)
    })
  })
}

let bytes = 0
switch (phase) {
  case 'bare-up': {
    const stream = await host.dialProtocol(multiaddr(addr), SINK_PROTOCOL)
    for (let sent = 0; sent < size; sent += BARE_CHUNK_BYTES) await sendWithBackpressure(stream, payload.subarray(0, Math.min(BARE_CHUNK_BYTES, size - sent)))
    await stream.close()
    for await (const reply of stream) bytes = readCount(reply.subarray())
    break
  }
  case 'bare-down': {
    const stream = await host.dialProtocol(multiaddr(addr), SOURCE_PROTOCOL)
    await sendWithBackpressure(stream, writeCount(size))
    await stream.close()
    for await (const chunk of stream) bytes += chunk.byteLength
    break
  }
  case 'tcp-up': bytes = await tcpPhase(true); break
  case 'tcp-down': bytes = await tcpPhase(false); break
  case 'put': {
    // As `grid put` does (bar its first pass to name the file, as there is one store here).
    const pool = putPool()
    const put = await putContent({ host, store }, readFileBlocks(file, pool), { pool })
    bytes = put.size
    extra = { cid: put.cid, sha256: put.sha256, sentBytes: put.sentBytes }
    break
  }
  case 'get': {
    // As `grid get` does: every block checked against the manifest, and the whole sha256 against the put's.
    const whole = createHash('sha256')
    for await (const chunk of readContent({ host, holders: () => [store] }, parseCid(cidText))) {
      whole.update(chunk)
      bytes += chunk.length
    }
    if (whole.digest('hex') !== sha256) throw new Error('get: sha256 differs from the put')
    break
  }
  default: throw new Error(`unknown phase ${phase}`)
}
const ms = performance.now() - began
if (bytes !== size) throw new Error(`${phase}: moved ${bytes} bytes, expected ${size}`)
await host.stop()
process.stdout.write(JSON.stringify({ phase, ms, bytes, cpuMs: Math.round((process.cpuUsage().user + process.cpuUsage().system) / 1000), peakRss: process.resourceUsage().maxRSS * 1024, ...extra }) + '\n')
process.exit(0)

// The baseline of the user-level transfer rows (bench/user-transfer.ts): a bare libp2p stream between two processes,
// TCP + Noise + Yamux with no connection protector (no pnet) and no grid logic, beside raw TCP.
// Usage: bare-stream.ts serve                       prints `bare ADDR tcp PORT`, then serves until SIGTERM
//        bare-stream.ts PHASE ADDR PORT SIZE        PHASE is up, down, tcp-up or tcp-down; prints one JSON line
//                                                   { phase, ms, bytes }, ms from the dial to the last byte.
import { createServer, connect } from 'node:net'
import { randomBytes } from 'node:crypto'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { sendWithBackpressure } from '../net/backpressure.ts'
import { STREAM_READ_BUFFER_BYTES, STREAM_WINDOW_BYTES } from '../net/constants.ts'
import { BARE_CHUNK_BYTES, SINK_PROTOCOL, SOURCE_PROTOCOL, readCount, writeCount, writeRaw } from './transfer-protocol.ts'

const [phase, addr, tcpPort, sizeText] = process.argv.slice(2)
const payload = randomBytes(BARE_CHUNK_BYTES)

/** A libp2p node with the grid's transport, encryption and muxer settings (net/host.ts), minus the protector. */
async function bareNode (listen: string[]): Promise<Awaited<ReturnType<typeof createLibp2p>>> {
  return await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: STREAM_READ_BUFFER_BYTES } })],
    // As net/host.ts: no pings competing with the bulk stream.
    connectionMonitor: { enabled: false }
  })
}

if (phase === 'serve') {
  const node = await bareNode(['/ip4/127.0.0.1/tcp/0'])
  // Sink: count every byte until the writer closes, then answer with the count.
  await node.handle(SINK_PROTOCOL, async stream => {
    let received = 0
    for await (const chunk of stream) received += chunk.byteLength
    await sendWithBackpressure(stream, writeCount(received))
    await stream.close()
  })
  // Source: read how many bytes are wanted, send them 256 KiB at a time, close.
  await node.handle(SOURCE_PROTOCOL, async stream => {
    let wanted = 0
    for await (const chunk of stream) {
      wanted = readCount(chunk.subarray())
      break
    }
    for (let sent = 0; sent < wanted; sent += BARE_CHUNK_BYTES) await sendWithBackpressure(stream, payload.subarray(0, Math.min(BARE_CHUNK_BYTES, wanted - sent)))
    await stream.close()
  })
  // Raw TCP: 'u' then bytes until end (answered with the count), or 'd' + an 8-byte count (answered with that many).
  const server = createServer(socket => {
    let mode: number | undefined
    let received = 0
    socket.on('data', (chunk: Buffer) => {
      if (mode === undefined) {
        mode = chunk[0]
        chunk = chunk.subarray(1)
        if (mode === 0x64) {
          writeRaw(socket, payload, readCount(chunk))
          return
        }
      }
      received += chunk.length
    })
    socket.on('end', () => { if (mode === 0x75) socket.end(writeCount(received)) })
    socket.on('error', () => {})
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  process.stdout.write(`bare ${node.getMultiaddrs()[0].toString()} tcp ${(server.address() as { port: number }).port}\n`)
  process.on('SIGTERM', () => {
    server.close()
    Promise.resolve(node.stop()).then(() => process.exit(0), () => process.exit(1))
  })
} else {
  const size = Number(sizeText)
  const tcpPhase = async (upload: boolean): Promise<number> => await new Promise((resolve, reject) => {
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
      if (upload) {
        socket.write('u')
        writeRaw(socket, payload, size)
      } else {
        socket.write(Buffer.concat([Buffer.from('d'), writeCount(size)]))
      }
    })
  })
  const node = await bareNode([])
  // The clock starts before the dial: the baseline is the stream as a command would open it, bar the process start.
  const began = performance.now()
  let bytes = 0
  switch (phase) {
    case 'up': {
      const stream = await node.dialProtocol(multiaddr(addr), SINK_PROTOCOL)
      for (let sent = 0; sent < size; sent += BARE_CHUNK_BYTES) await sendWithBackpressure(stream, payload.subarray(0, Math.min(BARE_CHUNK_BYTES, size - sent)))
      await stream.close()
      for await (const reply of stream) bytes = readCount(reply.subarray())
      break
    }
    case 'down': {
      const stream = await node.dialProtocol(multiaddr(addr), SOURCE_PROTOCOL)
      await sendWithBackpressure(stream, writeCount(size))
      await stream.close()
      for await (const chunk of stream) bytes += chunk.byteLength
      break
    }
    case 'tcp-up': bytes = await tcpPhase(true); break
    case 'tcp-down': bytes = await tcpPhase(false); break
    default: throw new Error(`unknown phase ${phase}`)
  }
  const ms = performance.now() - began
  if (bytes !== size) throw new Error(`${phase}: moved ${bytes} bytes, expected ${size}`)
  await node.stop()
  process.stdout.write(JSON.stringify({ phase, ms, bytes }) + '\n')
  process.exit(0)
}

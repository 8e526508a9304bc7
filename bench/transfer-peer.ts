// The receiving side of the transfer bench, in its own process: a real store (LevelDB blockstore and the block
// protocols) and, on the same libp2p host, the bare baselines: a sink and a source protocol with no grid logic,
// plus a raw TCP server doing the same. Prints its addresses, then serves until SIGTERM.
import { createServer } from 'node:net'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../net/host.ts'
import { sendWithBackpressure } from '../net/backpressure.ts'
import { Store } from '../artifact-store/index.ts'
import { BARE_CHUNK_BYTES, SINK_PROTOCOL, SOURCE_PROTOCOL, readCount, writeCount, writeRaw } from './transfer-protocol.ts'

const secret = Buffer.from(process.argv[2], 'hex')
const dataDir = process.argv[3]
const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret, listen: ['/ip4/127.0.0.1/tcp/0'] })
const store = new Store({ host, dataDir, coordinator: host.peerId })
await store.start()
const payload = randomBytes(BARE_CHUNK_BYTES)

// Sink: count every byte until the writer closes, then answer with the count.
await host.handle(SINK_PROTOCOL, async stream => {
  let received = 0
  for await (const chunk of stream) received += chunk.byteLength
  await sendWithBackpressure(stream, writeCount(received))
  await stream.close()
})
// Source: read how many bytes are wanted, send them, close.
await host.handle(SOURCE_PROTOCOL, async stream => {
  let wanted: number | undefined
  for await (const chunk of stream) {
    wanted = readCount(chunk.subarray())
    break
  }
  for (let sent = 0; sent < (wanted ?? 0); sent += BARE_CHUNK_BYTES) {
    await sendWithBackpressure(stream, payload.subarray(0, Math.min(BARE_CHUNK_BYTES, wanted! - sent)))
  }
  await stream.close()
})

// Raw TCP: 'u' then bytes until end (answered with the count), or 'd' + an 8-byte count (answered with that many bytes).
const tcp = createServer(socket => {
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
await new Promise<void>(resolve => tcp.listen(0, '127.0.0.1', resolve))
const port = (tcp.address() as { port: number }).port
process.stdout.write(`peer ${host.peerId.toString()} ${host.getMultiaddrs()[0].toString()} tcp ${port}\n`)
process.on('SIGTERM', () => {
  tcp.close()
  Promise.resolve(store.stop()).then(async () => { await host.stop() }).then(() => process.exit(0), () => process.exit(1))
})

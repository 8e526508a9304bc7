// The bare baseline: a libp2p node with the grid's transport stack (TCP + Noise + Yamux) and an echo
// protocol, no grid logic. Prints its address, then echoes every stream until SIGTERM.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createHost } from '../net/host.ts'
import { sendWithBackpressure } from '../net/backpressure.ts'

import { ECHO_PROTOCOL } from './echo-protocol.ts'

const secret = Buffer.from(process.argv[2], 'hex')
const host = await createHost({ identity: await generateKeyPair('Ed25519'), secret, listen: ['/ip4/127.0.0.1/tcp/0'] })
await host.handle(ECHO_PROTOCOL, async stream => {
  for await (const chunk of stream) {
    await sendWithBackpressure(stream, chunk.subarray())
  }
  await stream.close()
}, { maxInboundStreams: 1024 })
process.stdout.write(`${host.getMultiaddrs()[0].toString()}\n`)
process.on('SIGTERM', () => { Promise.resolve(host.stop()).then(() => process.exit(0), () => process.exit(1)) })

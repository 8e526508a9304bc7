// Flow control between two real libp2p hosts over TCP (Noise + Yamux): a fast writer and a slow reader.
// libp2p's own length-prefixed reader aborts once 4 MiB sit unread, and yamux grants window as bytes arrive,
// not as they are read; MessageChannel pauses the stream instead. These runs fail with a StreamBufferError
// when that breaks.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import { z } from 'zod'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { createHost } from '../../net/host.ts'
import type { GridHost } from '../../net/host.ts'
import { newSecret } from '../../net/join-code.ts'
import { MessageChannel, bytesField } from '../../net/wire.ts'
import { sendWithBackpressure } from '../../net/backpressure.ts'

const PROTOCOL = '/test/flow/1.0.0'
const FRAME_BYTES = 1024 * 1024
const frame = z.object({ n: z.number().int(), bytes: bytesField(FRAME_BYTES) })

const flow = suite<{ server: GridHost, client: GridHost, received: Array<Promise<number[]>> }>('flow control')

flow.before(async ctx => {
  const secret = newSecret()
  ctx.server = await createHost({ identity: await generateKeyPair('Ed25519'), secret, listen: ['/ip4/127.0.0.1/tcp/0'] })
  ctx.client = await createHost({ identity: await generateKeyPair('Ed25519'), secret, listen: [] })
  ctx.received = []
  await ctx.server.handle(PROTOCOL, (stream: Stream) => {
    // The slow reader: a pause after every frame, as a store writing to disk would.
    ctx.received.push((async () => {
      const channel = new MessageChannel<z.infer<typeof frame>, never>(stream, frame, { maxMessageBytes: FRAME_BYTES + 1024 })
      const seen: number[] = []
      for await (const message of channel) {
        assert.is(message.bytes.length, FRAME_BYTES)
        seen.push(message.n)
        await new Promise(resolve => setTimeout(resolve, 10))
      }
      return seen
    })())
  })
})

flow.after(async ctx => {
  await ctx.client?.stop()
  await ctx.server?.stop()
})

flow('a slow reader gets every frame of a fast writer in order; the stream is never aborted', async ctx => {
  const count = 96
  const stream = await ctx.client.dialProtocol(ctx.server.getMultiaddrs()[0], PROTOCOL)
  const channel = new MessageChannel<never, z.infer<typeof frame>>(stream, z.never(), { maxMessageBytes: FRAME_BYTES + 1024 })
  const bytes = randomBytes(FRAME_BYTES)
  for (let n = 0; n < count; n++) await channel.send({ n, bytes })
  await channel.close()
  const seen = await ctx.received[0]
  assert.equal(seen, Array.from({ length: count }, (_, n) => n))
  assert.is.not(stream.status, 'aborted')
})

flow('raw bytes with sendWithBackpressure: 256 MiB through one stream arrive whole', async ctx => {
  const total = 256 * 1024 * 1024
  const done = new Promise<number>((resolve, reject) => {
    ctx.server.handle('/test/sink/1.0.0', async (stream: Stream) => {
      let n = 0
      try {
        for await (const chunk of stream) n += chunk.byteLength
        resolve(n)
      } catch (err) { reject(err) }
    }).catch(reject)
  })
  const stream = await ctx.client.dialProtocol(ctx.server.getMultiaddrs()[0], '/test/sink/1.0.0')
  const chunk = randomBytes(64 * 1024)
  for (let sent = 0; sent < total; sent += chunk.length) await sendWithBackpressure(stream, chunk)
  await stream.close()
  assert.is(await done, total)
})

flow.run()

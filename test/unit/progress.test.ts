// The put/get progress bar: drawn on a terminal for large transfers, never into pipes or for small ones.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Writable } from 'node:stream'
import { PROGRESS_MIN_BYTES, counted, transferProgress } from '../../node/progress.ts'

function fakeStream (tty: boolean): { stream: NodeJS.WriteStream, written: () => string } {
  let out = ''
  const stream = new Writable({ write (chunk, _encoding, done) { out += chunk; done() } }) as unknown as NodeJS.WriteStream
  Object.assign(stream, { isTTY: tty, columns: 120, cursorTo: () => true, clearLine: () => true, moveCursor: () => true })
  return { stream, written: () => out }
}

async function * chunks (count: number, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < count; i++) yield new Uint8Array(size)
}

test('a large transfer on a terminal draws a bar with the bytes done; the bytes pass unchanged', async () => {
  const { stream, written } = fakeStream(true)
  const size = 1024 * 1024
  const total = 2 * PROGRESS_MIN_BYTES
  const progress = transferProgress('put', total, stream)
  let seen = 0
  for await (const chunk of counted(chunks(total / size, size), progress)) seen += chunk.length
  progress.stop()
  assert.is(seen, total)
  assert.match(written(), /put \[/)
  assert.match(written(), new RegExp(`${total / 2 ** 20}/${total / 2 ** 20} MiB`))
})

test('nothing is drawn into a pipe, nor for a small transfer on a terminal', async () => {
  const pipe = fakeStream(false)
  const large = transferProgress('get', 4 * PROGRESS_MIN_BYTES, pipe.stream)
  for await (const chunk of counted(chunks(4, 1024), large)) assert.is(chunk.length, 1024)
  large.stop()
  assert.is(pipe.written(), '')
  const tty = fakeStream(true)
  const small = transferProgress('get', PROGRESS_MIN_BYTES - 1, tty.stream)
  small.add(100)
  small.stop()
  assert.is(tty.written(), '')
})

test.run()

// The redactor alone (worker/redact.ts): secret values replaced by `***` in output that arrives in pieces cut
// anywhere, against a plain reference (mask every occurrence in the whole output at once); then the log writer with
// a mask, over a stub store, for what it adds: masking before the limit and the CID, the held tail released at the
// seal, the worker's own lines masked too.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { MASK, PARTIAL_MASK_BYTES, Redactor, maskPatterns } from '../../worker/redact.ts'
import { LogWriter } from '../../worker/log-writer.ts'
import type { AppendStreams } from '../../worker/append-streams.ts'
import type { AppendReply, AppendRequest } from '../../protocols/log-append.ts'
import { ContentNamer } from '../../grid/content.ts'
import { LOG_BATCH_BYTES } from '../../net/constants.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()
const bytesOf = (text: string): Uint8Array => enc.encode(text)

/** Output of `values`' redactor fed `chunks`, then flushed; asserts the held tail never exceeds its bound. */
function redact (values: string[], chunks: Array<string | Uint8Array>): { text: string, bytes: Uint8Array, beforeFlush: string } {
  const redactor = new Redactor(values)
  const bound = Math.max(0, ...maskPatterns(values).map(p => p.length - 1))
  const out: Uint8Array[] = []
  for (const chunk of chunks) {
    out.push(redactor.push(typeof chunk === 'string' ? bytesOf(chunk) : chunk))
    assert.ok(redactor.held <= bound, `held ${redactor.held} bytes, more than the longest pattern less one (${bound})`)
  }
  const beforeFlush = Buffer.concat(out)
  out.push(redactor.flush())
  assert.is(redactor.held, 0, 'nothing held after the flush')
  const bytes = Buffer.concat(out)
  return { text: dec.decode(bytes), bytes, beforeFlush: dec.decode(beforeFlush) }
}

/** `text` cut into pieces of `size` bytes (as bytes: a piece may end inside a UTF-8 character). */
function piecesOf (text: string | Uint8Array, size: number): Uint8Array[] {
  const bytes = typeof text === 'string' ? bytesOf(text) : text
  const pieces: Uint8Array[] = []
  for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.subarray(at, at + size))
  return pieces
}

/** The reference: every occurrence in the whole input found at once, overlapping ones merged, each run one mask. */
function reference (values: string[], input: Uint8Array): Uint8Array {
  const data = Buffer.from(input)
  const runs: Array<[number, number]> = []
  for (const pattern of maskPatterns(values)) {
    for (let at = data.indexOf(pattern); at !== -1; at = data.indexOf(pattern, at + 1)) runs.push([at, at + pattern.length])
  }
  // The end of the output: a tail of PARTIAL_MASK_BYTES or more that is the start of a value is masked too.
  let tail = 0
  for (const pattern of maskPatterns(values)) {
    for (let n = Math.min(pattern.length - 1, data.length); n > tail; n--) {
      if (data.subarray(data.length - n).equals(pattern.subarray(0, n))) { tail = n; break }
    }
  }
  if (tail >= PARTIAL_MASK_BYTES) runs.push([data.length - tail, data.length])
  runs.sort((a, b) => a[0] - b[0])
  const parts: Uint8Array[] = []
  let cursor = 0
  let maskedTo = -1
  for (const [start, stop] of runs) {
    if (start < maskedTo) {
      maskedTo = Math.max(maskedTo, stop)
      cursor = maskedTo
      continue
    }
    parts.push(data.subarray(cursor, start), bytesOf(MASK))
    cursor = maskedTo = stop
  }
  parts.push(data.subarray(cursor))
  return Buffer.concat(parts)
}

const includes = (haystack: Uint8Array, needle: string): boolean => Buffer.from(haystack).includes(Buffer.from(needle))

// ---------------------------------------------------------------- one value

const one = suite('redactor: one value')
const TOKEN = 'ghp_s3cr3tT0kenValue0123456789abcdef'

one('a value printed whole is replaced by ***; the text around it is kept', () => {
  assert.is(redact([TOKEN], [`token=${TOKEN}\nnext line\n`]).text, 'token=***\nnext line\n')
  assert.is(redact([TOKEN], [`${TOKEN}`]).text, '***', 'the whole output')
  assert.is(redact([TOKEN], [`a ${TOKEN} b ${TOKEN} c`]).text, 'a *** b *** c', 'each occurrence')
})

one('a value split across two writes is caught wherever the split falls, and the first write releases what came before it', () => {
  const line = `export TOKEN=${TOKEN} # set\n`
  const at = line.indexOf(TOKEN)
  for (let split = 0; split <= line.length; split++) {
    const { text, beforeFlush } = redact([TOKEN], [line.slice(0, split), line.slice(split)])
    assert.is(text, 'export TOKEN=*** # set\n', `split at ${split}`)
    assert.is(beforeFlush, text, `split at ${split}: the line ends with text no value starts, so nothing waits for the flush`)
    // Bytes that cannot be part of the value go out at once; only a possible start of it is held.
    const first = new Redactor([TOKEN]).push(bytesOf(line.slice(0, split)))
    const released = split <= at ? line.slice(0, split) : split < at + TOKEN.length ? 'export TOKEN=' : `export TOKEN=***${line.slice(at + TOKEN.length, split)}`
    assert.is(dec.decode(first), released, `first write, split at ${split}`)
  }
})

one('a value written a byte at a time', () => {
  const line = `curl -H "x-token: ${TOKEN}" https://example.test\n`
  assert.is(redact([TOKEN], piecesOf(line, 1)).text, 'curl -H "x-token: ***" https://example.test\n')
})

one('at a 64 KiB boundary: split across two batch-sized writes at every offset around the boundary', () => {
  for (let shift = 0; shift <= TOKEN.length; shift++) {
    const before = 'b'.repeat(LOG_BATCH_BYTES - shift)
    const after = 'a'.repeat(LOG_BATCH_BYTES)
    const output = before + TOKEN + after
    const { bytes } = redact([TOKEN], piecesOf(output, LOG_BATCH_BYTES))
    assert.not.ok(includes(bytes, TOKEN), `${shift} bytes of the value before the boundary`)
    assert.is(dec.decode(bytes), before + MASK + after)
  }
})

one('inside a 10 MB line, written in 64 KiB pieces and as one piece: masked, and the redactor holds no more than one value', () => {
  const half = Buffer.alloc(5 * 1024 * 1024, 'x')
  const line = Buffer.concat([half, bytesOf(TOKEN), half, bytesOf('\n')])
  const expected = Buffer.concat([half, bytesOf(MASK), half, bytesOf('\n')])
  for (const size of [LOG_BATCH_BYTES, 65_521, line.length]) {
    const { bytes } = redact([TOKEN], piecesOf(line, size))
    assert.is(bytes.length, expected.length, `pieces of ${size}`)
    assert.ok(Buffer.from(bytes).equals(expected), `pieces of ${size}`)
  }
  // The memory bound: whatever the line, the redactor keeps at most a value's length (here: held, checked in redact).
  const redactor = new Redactor([TOKEN])
  for (const piece of piecesOf(Buffer.concat([half, bytesOf(TOKEN.slice(0, 10))]), LOG_BATCH_BYTES)) redactor.push(piece)
  assert.is(redactor.held, 10, 'only the possible start of the value is held, not the line')
})

one('a prefix of the value in ordinary text is released as soon as the next byte rules the value out', () => {
  const redactor = new Redactor(['hunter22'])
  assert.is(dec.decode(redactor.push(bytesOf('my password is hunter2'))), 'my password is ', 'the possible start is held')
  assert.is(redactor.held, 7)
  assert.is(dec.decode(redactor.push(bytesOf('!'))), 'hunter2!', 'released with the byte that rules it out')
  assert.is(redactor.held, 0)
})

one('a value cut off by the end of the output (a step stopped while printing it): its first part is masked, a short one released', () => {
  const { text, beforeFlush } = redact(['hunter22'], ['the end: hunter2'])
  assert.is(beforeFlush, 'the end: ')
  assert.is(text, 'the end: ***', 'seven of its eight bytes would say too much')
  assert.is(redact(['hunter22'], ['the end: hunt']).text, 'the end: ***', `${PARTIAL_MASK_BYTES} bytes are masked`)
  assert.is(redact(['hunter22'], ['the end: hun']).text, 'the end: hun', 'fewer are released: ordinary text may end like a value begins')
  assert.is(redact(['hunter22'], ['h']).text, 'h')
})

one('the value complete at the very end of the output is masked by the flush too', () => {
  const { text } = redact(['abcd', 'abcdef'], ['tail: abcd'])
  assert.is(text, 'tail: ***', 'abcd may still grow into abcdef, so it is held; at the end it is a whole value')
})

one('a value printed twice in a row is two masks; a pattern overlapping itself is one', () => {
  assert.is(redact([TOKEN], [TOKEN + TOKEN]).text, '******')
  assert.is(redact(['aaaa'], ['x aaaaaa y']).text, 'x *** y')
  assert.is(redact(['aaaa'], piecesOf('x aaaaaa y', 1)).text, 'x *** y')
  assert.is(redact(['abab'], piecesOf('ababab!', 1)).text, '***!')
})

one('set -x output: the expanded command line shows *** where the value was', () => {
  const trace = `+ curl -sf -H 'Authorization: Bearer ${TOKEN}' https://deploy.example.test/api\n` +
    `+ echo done\ndone\n`
  const expected = '+ curl -sf -H \'Authorization: Bearer ***\' https://deploy.example.test/api\n+ echo done\ndone\n'
  assert.is(redact([TOKEN], [trace]).text, expected)
  for (const size of [1, 3, 7, 40]) assert.is(redact([TOKEN], piecesOf(trace, size)).text, expected, `pieces of ${size}`)
})

one('non-ASCII values are matched as UTF-8 bytes, also split inside a character', () => {
  const value = 'pässwörd-ключ-🔑-秘密'
  const line = `key: ${value}; ok ✓\n`
  const bytes = bytesOf(line)
  for (let split = 0; split <= bytes.length; split++) {
    assert.is(redact([value], [bytes.subarray(0, split), bytes.subarray(split)]).text, 'key: ***; ok ✓\n', `split at byte ${split}`)
  }
  assert.is(redact([value], piecesOf(line, 1)).text, 'key: ***; ok ✓\n')
  // Text sharing the value's first bytes (the same first character) is not masked.
  assert.is(redact([value], ['pässwörd-key\n']).text, 'pässwörd-key\n')
})

// ---------------------------------------------------------------- several values

const several = suite('redactor: several values')

several('two values where one is a prefix of the other: the longer wins where it is whole, the shorter elsewhere', () => {
  const short = 'deploy-key-1234'
  const long = 'deploy-key-1234-extended'
  const text = `a=${long} b=${short} c=${short}-ext\n`
  const expected = 'a=*** b=*** c=***-ext\n'
  assert.is(redact([short, long], [text]).text, expected)
  assert.is(redact([long, short], [text]).text, expected, 'whatever the order they are given in')
  for (let split = 0; split <= text.length; split++) {
    assert.is(redact([short, long], [text.slice(0, split), text.slice(split)]).text, expected, `split at ${split}`)
  }
  assert.is(redact([short, long], piecesOf(text, 1)).text, expected)
})

several('values overlapping in the text leave no byte of either', () => {
  assert.is(redact(['abcd1234', '1234wxyz'], ['<abcd1234wxyz>']).text, '<***>')
  assert.is(redact(['abcd1234', '1234wxyz'], piecesOf('<abcd1234wxyz>', 1)).text, '<***>')
  assert.is(redact(['abcd1234', 'cd12'], ['<abcd1234>']).text, '<***>', 'one inside the other')
  assert.is(redact(['abcd1234', 'cd12'], ['<xcd12x>']).text, '<x***x>')
})

several('twenty values, each printed once between ordinary lines, all masked', () => {
  const values = Array.from({ length: 20 }, (_, i) => `secret-${i}-${'k'.repeat(i)}-${(i * 7919).toString(36)}`)
  let text = ''
  let expected = ''
  for (const [i, value] of values.entries()) {
    text += `step ${i}: using ${value} now\n`
    expected += `step ${i}: using *** now\n`
  }
  assert.is(redact(values, [text]).text, expected)
  assert.is(redact(values, piecesOf(text, 13)).text, expected)
})

several('no values, or only empty ones: the bytes go through as they are, the same bytes', () => {
  for (const values of [[], ['']]) {
    const redactor = new Redactor(values)
    assert.is(redactor.size, 0)
    const chunk = bytesOf('hello ***\n')
    assert.is(dec.decode(redactor.push(chunk)), 'hello ***\n')
    assert.is(redactor.flush().length, 0)
  }
})

several('against the reference: random output and values over a small alphabet, cut at random', () => {
  // A seeded generator, so a failure is the same failure on every run.
  let seed = 0x2545f491
  const random = (n: number): number => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5
    return (seed >>> 0) % n
  }
  const word = (length: number, alphabet: string): string => Array.from({ length }, () => alphabet[random(alphabet.length)]).join('')
  for (let round = 0; round < 3000; round++) {
    // Every third round is long and cut small, so the redactor chooses its anchors again (every 64 pushes) as the
    // mix of bytes changes halfway.
    const long = round % 3 === 0
    const values = Array.from({ length: 1 + random(4) }, () => word(1 + random(long ? 12 : 6), 'ab\ncd'))
    const input = bytesOf(long ? word(200, 'aab\n') + word(200, 'cdd\nb') : word(random(60), 'ab\nc'))
    const pieces: Uint8Array[] = []
    for (let at = 0; at < input.length;) {
      const size = 1 + random(long ? 3 : 8)
      pieces.push(input.subarray(at, at + size))
      at += size
    }
    const got = redact(values, pieces).bytes
    const want = reference(values, input)
    assert.is(dec.decode(got), dec.decode(want), `round ${round}: values ${JSON.stringify(values)}, input ${JSON.stringify(dec.decode(input))}`)
  }
})

// ---------------------------------------------------------------- multi-line values

const multiline = suite('redactor: multi-line values')

const PEM = '-----BEGIN TEST PRIVATE KEY-----\n' +
  'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n' +
  'MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n' +
  'NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n' +
  '-----END TEST PRIVATE KEY-----\n'
const PEM_LINES = PEM.split('\n').filter(line => line.length > 0)

multiline('each line of the value is a pattern, and so is the whole value; empty lines are none', () => {
  const patterns = maskPatterns([PEM, 'x\r\n\r\ny']).map(p => p.toString())
  for (const line of PEM_LINES) assert.ok(patterns.includes(line), line)
  assert.ok(patterns.includes(PEM))
  assert.ok(patterns.includes('x') && patterns.includes('y') && !patterns.includes(''))
  assert.not.ok(patterns.some(p => p.endsWith('\r')), 'lines split on \\r\\n lose the \\r')
})

multiline('a PEM key printed whole is one mask', () => {
  assert.is(redact([PEM], [`key:\n${PEM}done\n`]).text, 'key:\n***done\n')
  assert.is(redact([PEM], piecesOf(`key:\n${PEM}done\n`, 5)).text, 'key:\n***done\n')
})

multiline('printed with other line endings, each line is masked', () => {
  const crlf = PEM.replace(/\n/g, '\r\n')
  assert.is(redact([PEM], [crlf]).text, '***\r\n'.repeat(PEM_LINES.length))
  // JSON-escaped, as a step dumping its environment would print it.
  const json = JSON.stringify({ key: PEM })
  const masked = redact([PEM], [json]).text
  for (const line of PEM_LINES) assert.not.ok(masked.includes(line), line)
  assert.is(masked, `{"key":"${'***\\n'.repeat(PEM_LINES.length)}"}`)
})

multiline('lines arriving in separate writes, or only some of them, a byte at a time', () => {
  const lines = PEM.split('\n').map(line => line + '\n').slice(0, -1)
  assert.is(redact([PEM], lines).text, '***')
  const second = PEM_LINES[1]
  assert.is(redact([PEM], piecesOf(`line: ${second} (just one)\n`, 1)).text, 'line: *** (just one)\n')
  // The key's lines in another order are still each masked.
  const shuffled = [PEM_LINES[2], PEM_LINES[0], PEM_LINES[3]].join('\n') + '\n'
  assert.is(redact([PEM], piecesOf(shuffled, 7)).text, '***\n***\n***\n')
})

multiline('a value ending in a newline (as `echo VALUE | grid secret set` gives it) is masked without one', () => {
  assert.is(redact(['s3cr3t-value\n'], ['printf: s3cr3t-value.']).text, 'printf: ***.')
})

// ---------------------------------------------------------------- the log writer with a mask

/** A store taking appends and seals in order, as LogStore does on the happy path. */
function stubStreams (): { streams: AppendStreams, text: () => string, sizes: number[] } {
  let bytes = Buffer.alloc(0)
  const sizes: number[] = []
  const channel = {
    stream: { status: 'open', writeStatus: 'writable' },
    reply: undefined as AppendReply | undefined,
    async send (request: AppendRequest) {
      if (request.t === 'append') {
        if (request.offset === bytes.length) bytes = Buffer.concat([bytes, request.bytes])
        sizes.push(bytes.length)
        this.reply = { t: 'ok', size: bytes.length }
      } else {
        const namer = new ContentNamer()
        namer.add(bytes)
        this.reply = request.size === bytes.length ? { t: 'sealed', size: bytes.length, cid: namer.finish().cid.toString() } : { t: 'gap', size: bytes.length }
      }
    },
    async expect () { return this.reply! },
    abort () {},
    async close () {}
  }
  const streams = { take: async () => channel, give: () => {}, closeAll: () => {} } as unknown as AppendStreams
  return { streams, text: () => bytes.toString(), sizes }
}

function maskedWriter (mask: string[] | undefined, init: { limit?: number } = {}): { writer: LogWriter, text: () => string } {
  const { streams, text } = stubStreams()
  const writer = new LogWriter({ streams, log: '0mwv1se3l2c9ee100.a1.s0', grant: new Uint8Array(64), stores: [{ peer: 'A', addrs: [] }], mask, ...init })
  return { writer, text }
}

const nameOf = (text: string): string => {
  const namer = new ContentNamer()
  namer.add(bytesOf(text))
  return namer.finish().cid.toString()
}

const writer = suite('log writer with a mask')

writer('the log holds *** where the value was, its size and CID are those of the masked bytes', async () => {
  const { writer, text } = maskedWriter([TOKEN])
  writer.write(bytesOf(`token ${TOKEN.slice(0, 9)}`))
  writer.write(bytesOf(`${TOKEN.slice(9)} end\n`))
  writer.write(bytesOf(`grid: the step printed ${TOKEN}\n`))
  const sealed = await writer.seal()
  const expected = 'token *** end\ngrid: the step printed ***\n'
  assert.is(text(), expected)
  assert.equal(sealed, { size: expected.length, cid: nameOf(expected) })
})

writer('the held tail is released at the seal, before the log is named (masked when it is a value\'s start)', async () => {
  const { writer, text } = maskedWriter(['hunter22'])
  writer.write(bytesOf('last words: hunter2'))
  assert.is(writer.size, 'last words: '.length, 'the possible start of the value is not in the log yet')
  const sealed = await writer.seal()
  assert.is(text(), 'last words: ***')
  assert.equal(sealed, { size: 15, cid: nameOf('last words: ***') })
  const short = maskedWriter(['hunter22'])
  short.writer.write(bytesOf('last words: hu'))
  await short.writer.seal()
  assert.is(short.text(), 'last words: hu')
})

writer('the limit counts masked bytes: a long value does not eat the limit, and a value is never cut into the log', async () => {
  const value = `secret-value-${'v'.repeat(27)}`
  const { writer, text } = maskedWriter([value], { limit: 12 })
  writer.write(bytesOf(`ab${value}cd${value}`))
  assert.is(writer.size, 10, 'ab***cd***: 10 bytes of the 12, where the raw output was 84')
  writer.write(bytesOf(`${value}efghij`))
  await writer.seal()
  assert.is(text(), 'ab***cd*****\ngrid: log limit of 12 bytes reached; further output of this step is dropped\n')
  assert.not.ok(text().includes('secret'))
})

writer('without a mask (or an empty one) the writer keeps the very bytes written', async () => {
  for (const mask of [undefined, [], ['']]) {
    const { writer, text } = maskedWriter(mask)
    writer.write(bytesOf('*** hunter2 ***'))
    assert.is(writer.size, 15, `mask ${JSON.stringify(mask)}: nothing held`)
    await writer.seal()
    assert.is(text(), '*** hunter2 ***')
  }
})

one.run()
several.run()
multiline.run()
writer.run()

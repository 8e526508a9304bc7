// One Helia node (IPFS in JS) for `npm run bench:peers`, in its own process. Plain JS on purpose: it imports from
// bench/peers/helia/node_modules, which exists only once the bench has installed it, and the grid's type check
// must pass on a clean clone. libp2p here is the same stack as the grid's (TCP + Noise + Yamux, no pnet), listening
// on loopback only; no DHT, no bootstrap list, no HTTP gateways or delegated routing: the fetcher dials the server.
//
//   node.mjs serve DIR FILE CHUNK_BYTES     imports FILE (UnixFS, CIDv1, raw leaves), prints one JSON line
//                                           { cid, addr, addMs }, then serves its blocks over bitswap until SIGTERM
//   node.mjs fetch DIR ADDR CID OUT SHA256  dials ADDR, fetches CID into OUT, checks the whole sha256, prints
//                                           one JSON line { ms, firstByteMs, bytes, peakRss } and exits
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { unixfs } from '@helia/unixfs'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { FsBlockstore } from 'blockstore-fs'
import { MemoryDatastore } from 'datastore-core'
import { createHeliaLight } from 'helia'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { CID } from 'multiformats/cid'

/** No single phase may hang the bench: the parent kills us too, this only makes the error say what stalled. */
const PHASE_TIMEOUT_MS = 600_000

const [role, dir, ...rest] = process.argv.slice(2)

async function startNode (listen) {
  // The blocks live on disk, as the grid's store keeps them in LevelDB: a memory blockstore would hold the whole
  // import in the heap (the complaint DESIGN.md records) and measure that instead of the transfer.
  const blockstore = new FsBlockstore(join(dir, 'blocks'))
  await blockstore.open()
  const helia = withBitswap(withLibp2pLight(createHeliaLight({ blockstore, datastore: new MemoryDatastore() }), {
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  }))
  await helia.start()
  return helia
}

const signal = AbortSignal.timeout(PHASE_TIMEOUT_MS)

if (role === 'serve') {
  const [file, chunkText] = rest
  const helia = await startNode(['/ip4/127.0.0.1/tcp/0'])
  const began = performance.now()
  const cid = await unixfs(helia).addByteStream(createReadStream(file, { highWaterMark: 1024 * 1024 }), {
    profile: 'unixfs-v1-2025', cidVersion: 1, rawLeaves: true, chunker: fixedSize({ chunkSize: Number(chunkText) }), signal
  })
  const addMs = performance.now() - began
  const addr = helia.libp2p.getMultiaddrs().find(a => a.toString().startsWith('/ip4/127.0.0.1/'))
  process.stdout.write(JSON.stringify({ cid: cid.toString(), addr: addr.toString(), addMs }) + '\n')
  process.on('SIGTERM', () => { helia.stop().then(() => process.exit(0), () => process.exit(1)) })
} else if (role === 'fetch') {
  const [addr, cidText, out, sha256] = rest
  const helia = await startNode([])
  // Connect before the clock starts, as the grid's get does: the figure is moving bytes, not the handshake.
  await helia.libp2p.dial(multiaddr(addr), { signal })
  const whole = createHash('sha256')
  const file = createWriteStream(out)
  let bytes = 0
  let firstByteMs
  const began = performance.now()
  for await (const chunk of unixfs(helia).cat(CID.parse(cidText), { signal })) {
    firstByteMs ??= performance.now() - began
    whole.update(chunk)
    bytes += chunk.length
    if (!file.write(chunk)) await new Promise(resolve => file.once('drain', resolve))
  }
  await new Promise((resolve, reject) => file.end(err => err ? reject(err) : resolve()))
  const ms = performance.now() - began
  if (whole.digest('hex') !== sha256) throw new Error('helia fetch: sha256 differs from the file added')
  await helia.stop()
  process.stdout.write(JSON.stringify({ ms, firstByteMs, bytes, peakRss: process.resourceUsage().maxRSS * 1024 }) + '\n')
  process.exit(0)
} else {
  process.stderr.write('usage: node.mjs serve DIR FILE CHUNK_BYTES | fetch DIR ADDR CID OUT SHA256\n')
  process.exit(2)
}

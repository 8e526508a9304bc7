// Trust as data: the trusted join code carries the trust key (and a code without one still decodes), a proof is
// bound to the prover's peer ID and the coordinator's, a wrong or old key's proof reads `stale`, and a job's
// `secrets` are checked like environment names.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { encode } from 'cborg'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { decodeJoinCode, encodeJoinCode, newSecret } from '../../net/join-code.ts'
import { TRUST_PROOF_BYTES, newTrustKey, trustProof, verifyTrust } from '../../grid/trust.ts'
import { InvalidJobError, parseJob } from '../../grid/job.ts'
import { MAX_JOB_SECRETS } from '../../grid/constants.ts'
import { toCoordinator, toWorker } from '../../protocols/work.ts'

const peer = async (): Promise<string> => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()

const codes = suite('join codes: ordinary and trusted')

codes('a trusted code carries the trust key; an ordinary one none; both name the same grid', async () => {
  const key = await generateKeyPair('Ed25519')
  const coordinator = peerIdFromPrivateKey(key)
  const base = { secret: newSecret(), coordinator, addrs: [multiaddr('/ip4/127.0.0.1/tcp/7340')] }
  const trust = newTrustKey()
  const ordinary = decodeJoinCode(encodeJoinCode(base))
  const trusted = decodeJoinCode(encodeJoinCode({ ...base, trust }))
  assert.is(ordinary.trust, undefined)
  assert.equal(trusted.trust, trust)
  assert.equal(trusted.secret, ordinary.secret)
  assert.is(trusted.coordinator.toString(), coordinator.toString())
  assert.equal(trusted.addrs.map(String), ordinary.addrs.map(String))
})

codes('a code made before trust existed (no `t`) still decodes; a damaged trust key is refused', async () => {
  const coordinator = await peer()
  const old = 'grid1-' + Buffer.from(encode({ v: 1, k: newSecret(), p: coordinator, a: ['/ip4/10.0.0.1/tcp/7340'] })).toString('base64url')
  const decoded = decodeJoinCode(old)
  assert.is(decoded.trust, undefined)
  assert.is(decoded.coordinator.toString(), coordinator)
  const short = 'grid1-' + Buffer.from(encode({ v: 1, k: newSecret(), p: coordinator, a: ['/ip4/10.0.0.1/tcp/7340'], t: new Uint8Array(16) })).toString('base64url')
  assert.throws(() => decodeJoinCode(short), (err: Error) => err.name === 'BadJoinCodeError')
  const text = 'grid1-' + Buffer.from(encode({ v: 1, k: newSecret(), p: coordinator, a: ['/ip4/10.0.0.1/tcp/7340'], t: 'not bytes' })).toString('base64url')
  assert.throws(() => decodeJoinCode(text), (err: Error) => err.name === 'BadJoinCodeError')
})

const proofs = suite('trust proofs')

proofs('a proof checks out for its prover and coordinator only, in the current key only', async () => {
  const [worker, other, coordinator, elsewhere] = await Promise.all([peer(), peer(), peer(), peer()])
  const key = newTrustKey()
  const proof = trustProof(key, worker, coordinator)
  assert.is(proof.length, TRUST_PROOF_BYTES)
  assert.is(verifyTrust(key, proof, worker, coordinator), 'trusted')
  assert.is(verifyTrust(key, undefined, worker, coordinator), 'untrusted', 'no proof: the ordinary code')
  assert.is(verifyTrust(key, proof, other, coordinator), 'stale', 'replayed by another peer')
  assert.is(verifyTrust(key, proof, worker, elsewhere), 'stale', 'shown to another grid')
  assert.is(verifyTrust(newTrustKey(), proof, worker, coordinator), 'stale', 'made with a key rotated away')
  assert.is(verifyTrust(key, proof.subarray(0, 16), worker, coordinator), 'stale', 'cut short')
  assert.is(verifyTrust(key, new Uint8Array(0), worker, coordinator), 'stale')
  // The separator keeps prover and coordinator apart: moving a character across it makes another proof.
  assert.is.not(Buffer.from(trustProof(key, 'ab', 'c')).toString('hex'), Buffer.from(trustProof(key, 'a', 'bc')).toString('hex'))
})

proofs('the wire takes a proof of the right size only, and a welcome\'s verdict from the three', async () => {
  const hello = { t: 'hello', capabilities: {}, slots: 1, running: [] }
  assert.ok(toCoordinator.safeParse({ ...hello, trust: new Uint8Array(TRUST_PROOF_BYTES) }).success)
  assert.ok(toCoordinator.safeParse(hello).success, 'a worker with the ordinary code sends none')
  assert.not.ok(toCoordinator.safeParse({ ...hello, trust: new Uint8Array(TRUST_PROOF_BYTES + 1) }).success)
  assert.not.ok(toCoordinator.safeParse({ ...hello, trust: 'yes' }).success)
  const welcome = { t: 'welcome', heartbeatMs: 1000, silenceLimitMs: 5000 }
  for (const trust of ['trusted', 'untrusted', 'stale']) assert.ok(toWorker.safeParse({ ...welcome, trust }).success)
  assert.ok(toWorker.safeParse(welcome).success, 'an older coordinator says nothing')
  assert.not.ok(toWorker.safeParse({ ...welcome, trust: 'very' }).success)
})

const secrets = suite('parseJob: secrets')

secrets('names environment variables, upper case; none by default', () => {
  assert.equal(parseJob({ steps: [{ run: 'make' }] }).secrets, [])
  assert.equal(parseJob({ steps: [{ run: 'make' }], secrets: ['DEPLOY_TOKEN', '_X', 'A1'] }).secrets, ['DEPLOY_TOKEN', '_X', 'A1'])
})

secrets('a bad name, a repeated one, too many, or not a list: refused naming the field', () => {
  const refused = (secrets: unknown, where: RegExp): void => {
    try {
      parseJob({ steps: [{ run: 'make' }], secrets })
    } catch (err) {
      assert.instance(err, InvalidJobError)
      assert.match((err as Error).message, where)
      return
    }
    assert.unreachable(`accepted secrets ${JSON.stringify(secrets)}`)
  }
  refused(['deploy_token'], /^secrets\.0: secret names are upper-case/)
  refused(['1TOKEN'], /^secrets\.0: /)
  refused(['A-B'], /^secrets\.0: /)
  refused(['A\0B'], /^secrets\.0: /)
  refused([''], /^secrets\.0: /)
  refused(['X'.repeat(129)], /^secrets\.0: a secret's name is at most 128/)
  refused(['A', 'B', 'A'], /^secrets: each secret is named once/)
  refused(Array.from({ length: MAX_JOB_SECRETS + 1 }, (_, i) => `S${i}`), new RegExp(`^secrets: at most ${MAX_JOB_SECRETS} secrets`))
  refused('DEPLOY_TOKEN', /^secrets: /)
  refused([42], /^secrets\.0: /)
  assert.throws(() => parseJob({ steps: [{ run: 'make' }], secret: ['A'] }), /secret: unknown key \(did you mean secrets\?\)/)
})

codes.run()
proofs.run()
secrets.run()

// A node's identity is an Ed25519 key kept in its data dir, so its peer ID survives restarts
// (the coordinator's peer ID is part of the join code; a worker's appears in build history).
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { GridError } from './errors.ts'

export const IDENTITY_FILE = 'identity.key'

export class BadIdentityError extends GridError {
  name = 'BadIdentityError'
}

export async function loadIdentity (dataDir: string): Promise<PrivateKey> {
  const path = join(dataDir, IDENTITY_FILE)
  let bytes: Buffer | undefined
  try {
    bytes = await readFile(path)
  } catch (err: any) {
    if (err.code !== 'ENOENT') throw err
  }
  if (bytes !== undefined) {
    try {
      return privateKeyFromProtobuf(bytes)
    } catch {
      throw new BadIdentityError(`${path} is not a libp2p private key; move it away to make a new identity`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dataDir, { recursive: true })
  // 'wx' so two processes sharing a data dir cannot both write a different key.
  await writeFile(path, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' }).catch(async (err) => {
    if (err.code !== 'EEXIST') throw err
  })
  return privateKeyFromProtobuf(await readFile(path))
}

// Secrets at rest (a repository's hook secret, a commit-status token): sealed with AES-256-GCM under a key kept in
// the data dir (DATA/secrets.key, mode 0600), never written in plaintext. Each sealed value is bound to where it
// belongs (its `label`, such as "repo:ID:hookSecret") as associated data, so a value copied to another record or
// field does not open there.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { GridError } from '../net/errors.ts'

/** The file in the data dir that holds the key secrets are sealed with. */
export const SECRETS_KEY_FILE = 'secrets.key'

/** AES-256: a 32-byte key. */
export const SECRETS_KEY_BYTES = 32

/** GCM's recommended nonce: 12 random bytes per sealed value (NIST SP 800-38D). */
const IV_BYTES = 12

/** GCM's full 16-byte tag; a shorter tag is refused on opening rather than weakening the check. */
const TAG_BYTES = 16

/** A secret as it is stored: base64 of the nonce, the GCM tag and the ciphertext. */
export interface SealedSecret {
  iv: string
  tag: string
  data: string
}

/** A sealed secret that does not open: the key changed (DATA/secrets.key replaced) or the record was altered. */
export class SecretUnreadableError extends GridError {
  name = 'SecretUnreadableError'
  readonly status = 500
}

/**
 * Read the key at `path`, or make it (32 random bytes, mode 0600) the first time. Two processes racing to make it
 * agree on the one written first (`wx`). Throws SecretUnreadableError if the file is not a key.
 */
export async function secretsKey (path: string): Promise<Uint8Array> {
  try {
    return checkedKey(new Uint8Array(await readFile(path)), path)
  } catch (err: any) {
    if (err.code !== 'ENOENT') throw err
  }
  await writeFile(path, randomBytes(SECRETS_KEY_BYTES), { mode: 0o600, flag: 'wx' }).catch(err => { if (err.code !== 'EEXIST') throw err })
  return checkedKey(new Uint8Array(await readFile(path)), path)
}

function checkedKey (bytes: Uint8Array, path: string): Uint8Array {
  if (bytes.length !== SECRETS_KEY_BYTES) throw new SecretUnreadableError(`${path} is not a ${SECRETS_KEY_BYTES}-byte key: restore it from a backup (secrets sealed with it cannot be read without it)`)
  return bytes
}

/** Seals and opens secrets with one key (AES-256-GCM, a fresh nonce per value). */
export class SecretBox {
  private readonly key: Uint8Array

  /** `key`: SECRETS_KEY_BYTES bytes, from secretsKey(). */
  constructor (key: Uint8Array) {
    if (key.length !== SECRETS_KEY_BYTES) throw new TypeError(`a secrets key is ${SECRETS_KEY_BYTES} bytes, not ${key.length}`)
    this.key = key
  }

  /** `value` sealed for `label` (where it is stored); only open() with the same label reads it back. */
  seal (value: string, label: string): SealedSecret {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.key, iv)
    cipher.setAAD(Buffer.from(label, 'utf8'))
    const data = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()])
    return { iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), data: data.toString('base64') }
  }

  /** The value sealed for `label`; throws SecretUnreadableError if the key, the label or the bytes differ. */
  open (sealed: SealedSecret, label: string): string {
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(sealed.iv, 'base64'), { authTagLength: TAG_BYTES })
      decipher.setAAD(Buffer.from(label, 'utf8'))
      decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'))
      return Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]).toString('utf8')
    } catch {
      throw new SecretUnreadableError(`the ${label.split(':').pop() ?? 'secret'} stored for ${label.split(':').slice(0, 2).join(' ')} cannot be read: was DATA/${SECRETS_KEY_FILE} replaced?`)
    }
  }
}

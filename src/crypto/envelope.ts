/**
 * The envelope around every private block: version byte ‖ 24-byte random nonce ‖ XChaCha20-Poly1305
 * ciphertext (draft-irtf-cfrg-xchacha-03). Random 24-byte nonces are safe to draw for the life of a
 * key (the reason to use XChaCha over ChaCha). The associated data binds the ciphertext to the format
 * version and the space's IPNS name, so a block cannot be moved into another space or replayed as
 * another version. The plaintext is length-prefixed and padded (Padmé) so that stored sizes leak
 * little about what is inside.
 */
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { randomBytes } from '@noble/ciphers/utils.js'
import { abytes, concatBytes, utf8 } from './bytes.js'
import { IntegrityError } from '../errors.js'

export const ENVELOPE_VERSION = 1
const NONCE_BYTES = 24
const TAG_BYTES = 16
const LENGTH_BYTES = 4

/** Associated data: "userspace/v1" ‖ 0x00 ‖ name. */
export function associatedData (version: number, name: string): Uint8Array {
  return utf8(`userspace/v${version}\u0000${name}`)
}

/**
 * Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication with
 * PURBs", PETS 2019): pads a length L to one of O(log log L) sizes, at most ~12% overhead.
 */
export function padmeLength (length: number): number {
  if (length <= 1) return length
  const e = Math.floor(Math.log2(length))
  const s = Math.floor(Math.log2(e)) + 1
  const lastBits = e - s
  const mask = 2 ** lastBits - 1
  return Math.ceil(length / (mask + 1)) * (mask + 1)
}

/** Encrypts `plaintext` for the space `name` and returns the envelope bytes. */
export function seal (key: Uint8Array, name: string, plaintext: Uint8Array, nonce: Uint8Array = randomBytes(NONCE_BYTES)): Uint8Array {
  abytes(key, 32, 'key')
  abytes(nonce, NONCE_BYTES, 'nonce')
  const padded = new Uint8Array(padmeLength(LENGTH_BYTES + plaintext.length))
  new DataView(padded.buffer).setUint32(0, plaintext.length)
  padded.set(plaintext, LENGTH_BYTES)
  const ciphertext = xchacha20poly1305(key, nonce, associatedData(ENVELOPE_VERSION, name)).encrypt(padded)
  return concatBytes(new Uint8Array([ENVELOPE_VERSION]), nonce, ciphertext)
}

/** Decrypts an envelope for `name`; any change to any byte throws IntegrityError. */
export function open (key: Uint8Array, name: string, envelope: Uint8Array): Uint8Array {
  abytes(key, 32, 'key')
  if (envelope.length < 1 + NONCE_BYTES + TAG_BYTES + LENGTH_BYTES) throw new IntegrityError('envelope is too short')
  if (envelope[0] !== ENVELOPE_VERSION) throw new IntegrityError(`unknown envelope version ${envelope[0] as number}`)
  const nonce = envelope.subarray(1, 1 + NONCE_BYTES)
  let padded: Uint8Array
  try {
    padded = xchacha20poly1305(key, nonce, associatedData(ENVELOPE_VERSION, name)).decrypt(envelope.subarray(1 + NONCE_BYTES))
  } catch {
    throw new IntegrityError('private block failed authentication: it was changed, or belongs to another space or key')
  }
  const length = new DataView(padded.buffer, padded.byteOffset).getUint32(0)
  if (length > padded.length - LENGTH_BYTES) throw new IntegrityError('envelope length prefix is out of range')
  return padded.subarray(LENGTH_BYTES, LENGTH_BYTES + length)
}

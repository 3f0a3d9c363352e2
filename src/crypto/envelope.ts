/**
 * The envelope around every private block: version byte ‖ 24-byte random nonce ‖ XChaCha20-Poly1305
 * ciphertext (draft-irtf-cfrg-xchacha-03). Random 24-byte nonces are safe to draw for the life of a
 * key (the reason to use XChaCha over ChaCha). The associated data binds the ciphertext to the format
 * version, the space's IPNS name and the block's place, so a block cannot be moved into another
 * space, another place or another format version. The plaintext is length-prefixed and padded (Padmé) so that stored sizes leak
 * little about what is inside.
 */
import { randomBytes } from '@noble/ciphers/utils.js'
import { abytes, utf8 } from './bytes.js'
import { xchacha } from './xchacha.js'
import { IntegrityError } from '../errors.js'

export const ENVELOPE_VERSION = 1
const NONCE_BYTES = 24
const TAG_BYTES = 16
const LENGTH_BYTES = 4

/**
 * Associated data: "userspace/v<format version>" ‖ 0x00 ‖ name, then ‖ 0x00 ‖ context when given
 * (format 2 puts the bucket's place there, "bucket <index>/<count>", so a bucket cannot be moved to
 * another place in the index either).
 */
export function associatedData (version: number, name: string, context?: string): Uint8Array {
  return utf8(associatedDataText(version, name, context))
}

/** The text `associatedData` writes as UTF-8 (for callers that encode it into a buffer of their own). */
export function associatedDataText (version: number, name: string, context?: string): string {
  return context === undefined ? `userspace/v${version}\u0000${name}` : `userspace/v${version}\u0000${name}\u0000${context}`
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

/** Random bytes drawn ahead for nonces: one call to the system's generator per 128 nonces. */
const NONCE_POOL_BYTES = NONCE_BYTES * 128
let noncePool = new Uint8Array(0)
let noncePoolAt = 0

/**
 * A fresh random 24-byte nonce. Each one is a copy of bytes handed out once and never again (the
 * pool moves past them before the next call), so drawing them in bulk changes nothing about their
 * randomness; it saves a call into the system's generator per sealed block.
 */
export function randomNonce (): Uint8Array {
  if (noncePoolAt + NONCE_BYTES > noncePool.length) {
    noncePool = randomBytes(NONCE_POOL_BYTES)
    noncePoolAt = 0
  }
  const nonce = noncePool.slice(noncePoolAt, noncePoolAt + NONCE_BYTES)
  noncePool.fill(0, noncePoolAt, noncePoolAt + NONCE_BYTES)
  noncePoolAt += NONCE_BYTES
  return nonce
}

/**
 * Encrypts `plaintext` under the associated data `ad` (see `associatedData`) and returns the
 * envelope bytes. The padded length is `padTo(4 + plaintext length)` (Padmé by default).
 */
export function seal (key: Uint8Array, ad: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array = randomNonce(), padTo: (length: number) => number = padmeLength): Uint8Array {
  abytes(key, 32, 'key')
  abytes(ad, undefined, 'ad')
  abytes(nonce, NONCE_BYTES, 'nonce')
  const length = padTo(LENGTH_BYTES + plaintext.length)
  if (!Number.isSafeInteger(length) || length < LENGTH_BYTES + plaintext.length) throw new RangeError(`padding must not shrink the plaintext: ${length} < ${LENGTH_BYTES + plaintext.length}`)
  const padded = new Uint8Array(length)
  new DataView(padded.buffer).setUint32(0, plaintext.length)
  padded.set(plaintext, LENGTH_BYTES)
  // Sealed in place after the version byte and nonce: one output buffer, no concatenation.
  const envelope = new Uint8Array(1 + NONCE_BYTES + length + TAG_BYTES)
  envelope[0] = ENVELOPE_VERSION
  envelope.set(nonce, 1)
  xchacha.sealInto(key, nonce, ad, padded, envelope.subarray(1 + NONCE_BYTES))
  return envelope
}

/** Decrypts an envelope sealed under the associated data `ad`; any change to any byte throws IntegrityError. */
export function open (key: Uint8Array, ad: Uint8Array, envelope: Uint8Array): Uint8Array {
  abytes(key, 32, 'key')
  abytes(ad, undefined, 'ad')
  if (envelope.length < 1 + NONCE_BYTES + TAG_BYTES + LENGTH_BYTES) throw new IntegrityError('envelope is too short')
  if (envelope[0] !== ENVELOPE_VERSION) throw new IntegrityError(`unknown envelope version ${envelope[0] as number}`)
  const nonce = envelope.subarray(1, 1 + NONCE_BYTES)
  let padded: Uint8Array
  try {
    padded = xchacha.open(key, nonce, ad, envelope.subarray(1 + NONCE_BYTES))
  } catch {
    throw new IntegrityError('private block failed authentication: it was changed, or belongs to another space or key')
  }
  const length = new DataView(padded.buffer, padded.byteOffset).getUint32(0)
  if (length > padded.length - LENGTH_BYTES) throw new IntegrityError('envelope length prefix is out of range')
  return padded.subarray(LENGTH_BYTES, LENGTH_BYTES + length)
}

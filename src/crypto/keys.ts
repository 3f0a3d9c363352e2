/**
 * Key derivation: one wallet signature over the fixed "Open UserSpace" message becomes every key a
 * space needs, through HKDF-SHA256 (RFC 5869) with a salt naming the format version and one `info`
 * label per purpose, so that no key ever serves two purposes.
 *
 * The message bytes are part of the format: changing a single character changes every user's keys
 * and so every user's space. They are frozen per version; a new version gets a new message.
 */
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { concatBytes, utf8 } from './bytes.js'
import type { NormalizedSignature } from './eip191.js'

export const FORMAT_VERSION = 1

/** The message a wallet signs to open its space (version 1). Never edit: it is part of the format. */
export const OPEN_MESSAGE = [
  'Open UserSpace',
  '',
  'Signing this message unlocks your private UserSpace data. Any site that receives this signature can read and change everything you keep in your UserSpace.',
  '',
  'Only sign it on sites you trust.',
  '',
  'Version: 1'
].join('\n')

/** HKDF salt: names the format, so keys from another format version never collide with these. */
const SALT = utf8('userspace/v1')

/** One HKDF `info` label per purpose. */
export const KEY_LABELS = {
  ipns: 'userspace/v1/ipns-ed25519-seed',
  data: 'userspace/v1/xchacha20poly1305-data',
  bucket: 'userspace/v1/hmac-sha256-bucket'
} as const

export interface SpaceKeys {
  /** 32-byte Ed25519 seed for the IPNS key (RFC 8032 private key). */
  ipnsSeed: Uint8Array
  /** 32-byte XChaCha20-Poly1305 key for private sections. */
  dataKey: Uint8Array
  /** 32-byte HMAC-SHA256 key that places private keys in buckets without revealing them. */
  bucketKey: Uint8Array
}

/** Derives the space keys from a normalised signature; the input key material is r‖s (low s). */
export function deriveKeys (signature: NormalizedSignature): SpaceKeys {
  const ikm = concatBytes(signature.r, signature.s)
  return {
    ipnsSeed: hkdf(sha256, ikm, SALT, utf8(KEY_LABELS.ipns), 32),
    dataKey: hkdf(sha256, ikm, SALT, utf8(KEY_LABELS.data), 32),
    bucketKey: hkdf(sha256, ikm, SALT, utf8(KEY_LABELS.bucket), 32)
  }
}

/**
 * The statement a wallet signs once, when a space is created, binding its address to the space's
 * IPNS name. Anyone can check it; it reveals no secret.
 */
export function ownerStatement (address: string, name: string): string {
  return [
    'UserSpace owner binding',
    '',
    `I, ${address}, own the UserSpace published under the IPNS name ${name}.`,
    '',
    'Version: 1'
  ].join('\n')
}

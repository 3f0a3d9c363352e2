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

/**
 * The storage format this library writes and reads (root, bucket index tree, buckets, public JSON).
 * Key derivation did not change with format 2: the salt and labels below still say `v1`, so every
 * wallet keeps its IPNS name; the format version is bound into the root and into every bucket's
 * associated data instead.
 */
export const FORMAT_VERSION = 2

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

/**
 * HKDF salt: names the key-derivation version (1, unchanged in storage format 2), so keys from
 * another derivation never collide with these.
 */
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
 * The statement a wallet signs to bind its address to a space's IPNS name. Anyone can check it; it
 * reveals no secret.
 *
 * Without `issuedAtMs` it is the version 1 statement (first binding wins on a hub, for ever); roots
 * signed with it stay valid. With `issuedAtMs` (milliseconds since the epoch) it is the version 2
 * statement: dated, so that a later binding replaces an earlier one on every hub, which lets a wallet
 * take its address back from a space it was tricked into binding. Hubs refuse dates in the future.
 */
export function ownerStatement (address: string, name: string, issuedAtMs?: number): string {
  if (issuedAtMs === undefined) {
    return [
      'UserSpace owner binding',
      '',
      `I, ${address}, own the UserSpace published under the IPNS name ${name}.`,
      '',
      'Version: 1'
    ].join('\n')
  }
  if (!Number.isSafeInteger(issuedAtMs) || issuedAtMs < 0) throw new RangeError(`"issuedAtMs" expected a non-negative integer, got ${String(issuedAtMs)}`)
  return [
    'UserSpace owner binding',
    '',
    `I, ${address}, own the UserSpace published under the IPNS name ${name}.`,
    '',
    `Signing this makes every UserSpace hub list ${name} as the space of ${address}, replacing any binding signed before the date below. Sign it only for your own space, on a site you trust.`,
    '',
    `Issued at: ${new Date(issuedAtMs).toISOString()}`,
    'Version: 2'
  ].join('\n')
}

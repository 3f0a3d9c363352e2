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
import * as secp from '@noble/secp256k1'
import type { NormalizedSignature } from './eip191.js'
import { describeValue } from '../errors.js'

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

/** HKDF `info` labels of the keys that seal a device's pending writes, derived from a space's data key. */
export const PENDING_KEY_LABELS = {
  seal: 'userspace/v1/xchacha20poly1305-pending',
  id: 'userspace/v1/hmac-sha256-pending',
  nonce: 'userspace/v1/hmac-sha256-pending-nonce'
} as const

export interface PendingKeys {
  /** 32-byte XChaCha20-Poly1305 key for pending writes kept on the device. */
  seal: Uint8Array
  /** 32-byte HMAC-SHA256 key naming their keys (their place in the state) without revealing them. */
  id: Uint8Array
  /** 32-byte HMAC-SHA256 key of their nonces (synthetic: taken from all that a write seals and says). */
  nonce: Uint8Array
}

/**
 * The keys that seal pending writes in a device's state (a journal file, IndexedDB), derived from
 * the space's data key with labels of their own: a space's keys all come from one signature, and a
 * sub-space's from its own data key.
 */
export function derivePendingKeys (dataKey: Uint8Array): PendingKeys {
  return {
    seal: hkdf(sha256, dataKey, SALT, utf8(PENDING_KEY_LABELS.seal), 32),
    id: hkdf(sha256, dataKey, SALT, utf8(PENDING_KEY_LABELS.id), 32),
    nonce: hkdf(sha256, dataKey, SALT, utf8(PENDING_KEY_LABELS.nonce), 32)
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

// --- Scoped app access: per-namespace keys ---------------------------------------------------

/**
 * HKDF `info` label of the apps root: a secret derived from the open signature that every app
 * namespace key is derived from, so a space can issue grants without keeping the signature itself.
 */
export const APPS_ROOT_LABEL = 'userspace/v1/apps-root'

/** The purposes of a namespace's keys; one label each, per namespace and epoch. */
export const APP_KEY_PURPOSES = {
  ipnsSeed: 'ipns-ed25519-seed',
  dataKey: 'xchacha20poly1305-data',
  bucketKey: 'hmac-sha256-bucket',
  ownerKey: 'secp256k1-owner'
} as const

export interface AppKeys {
  /** 32-byte Ed25519 seed of the namespace's IPNS key: whoever holds it can publish. */
  ipnsSeed: Uint8Array
  /** 32-byte XChaCha20-Poly1305 key of the namespace's private section: whoever holds it can read. */
  dataKey: Uint8Array
  /** 32-byte HMAC-SHA256 key placing the namespace's keys in buckets (needed to read and to write). */
  bucketKey: Uint8Array
  /** 32-byte secp256k1 key that signs the namespace's owner binding, so no wallet prompt is needed per app. */
  ownerKey: Uint8Array
}

/** The apps root of a normalised open signature. */
export function deriveAppsRoot (signature: NormalizedSignature): Uint8Array {
  return hkdf(sha256, concatBytes(signature.r, signature.s), SALT, utf8(APPS_ROOT_LABEL), 32)
}

/**
 * `userspace/v1/app/<namespace>/<epoch>/<purpose>`. Unambiguous although a namespace may hold a `/`
 * (`@scope/name`): the epoch and the purpose are the last two segments and hold no `/`.
 */
export function appKeyLabel (namespace: string, epoch: number, purpose: string): string {
  if (typeof namespace !== 'string' || namespace.length === 0 || /[\s\0]/.test(namespace)) throw new RangeError(`"namespace" expected a non-empty name without spaces, got ${JSON.stringify(namespace)}`)
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError(`"epoch" expected a non-negative integer, got ${String(epoch)}`)
  return `userspace/v1/app/${namespace}/${epoch}/${purpose}`
}

/** The keys of one namespace at one epoch, from the apps root. A new epoch shares no key with the old. */
export function deriveAppKeys (appsRoot: Uint8Array, namespace: string, epoch: number): AppKeys {
  if (!(appsRoot instanceof Uint8Array) || appsRoot.length !== 32) throw new RangeError(`"appsRoot" expected Uint8Array of length 32, got ${describeValue(appsRoot)}`)
  const key = (purpose: string, length = 32): Uint8Array => hkdf(sha256, appsRoot, SALT, utf8(appKeyLabel(namespace, epoch, purpose)), length)
  return {
    ipnsSeed: key(APP_KEY_PURPOSES.ipnsSeed),
    dataKey: key(APP_KEY_PURPOSES.dataKey),
    bucketKey: key(APP_KEY_PURPOSES.bucketKey),
    // 48 bytes reduced mod n − 1, plus 1 (FIPS 186-5 A.2.1): always a valid secp256k1 key.
    ownerKey: secp.utils.randomSecretKey(key(APP_KEY_PURPOSES.ownerKey, 48))
  }
}

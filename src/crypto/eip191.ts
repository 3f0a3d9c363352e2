/**
 * Ethereum wallet signatures: EIP-191 `personal_sign` hashing, signer recovery and normalisation.
 *
 * Wallets return the same signature in several encodings (v as 0/1 or 27/28, high or low s). Every
 * encoding of one signature must derive the same keys, so `normalizeSignature` checks it (65 bytes,
 * r and s in range, v known), recovers the signer and requires the expected address, and maps s to
 * low-s (SEC 1 / EIP-2) before anything is derived from r‖s.
 */
import * as secp from '@noble/secp256k1'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, concatBytes, hexToBytes, utf8 } from './bytes.js'
import { InvalidInputError, InvalidSignatureError, SignerMismatchError } from '../errors.js'

const N = secp.Point.CURVE().n
const HALF_N = N >> 1n

/** keccak256("\x19Ethereum Signed Message:\n" + len(message) + message), EIP-191 version 0x45. */
export function hashPersonalMessage (message: string | Uint8Array): Uint8Array {
  const bytes = typeof message === 'string' ? utf8(message) : message
  return keccak_256(concatBytes(utf8(`\x19Ethereum Signed Message:\n${bytes.length}`), bytes))
}

/** EIP-55 mixed-case checksum form of an address; throws InvalidInputError on anything else. */
export function checksumAddress (address: string): string {
  if (typeof address !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(address)) {
    throw new InvalidInputError(`"address" expected 0x-prefixed 20-byte hex, got ${typeof address === 'string' ? `"${address.slice(0, 50)}"` : typeof address}`)
  }
  const lower = address.slice(2).toLowerCase()
  const hash = bytesToHex(keccak_256(utf8(lower)))
  let out = '0x'
  for (let i = 0; i < 40; i++) out += parseInt(hash[i] as string, 16) >= 8 ? (lower[i] as string).toUpperCase() : lower[i]
  return out
}

/** The address of an uncompressed (65-byte) or compressed (33-byte) secp256k1 public key. */
export function addressOfPublicKey (publicKey: Uint8Array): string {
  const point = secp.Point.fromBytes(publicKey)
  const uncompressed = point.toBytes(false)
  return checksumAddress('0x' + bytesToHex(keccak_256(uncompressed.subarray(1)).subarray(12)))
}

export interface NormalizedSignature {
  /** 32-byte r */
  r: Uint8Array
  /** 32-byte low s */
  s: Uint8Array
  /** recovery bit (0 or 1) matching the low-s form */
  recovery: 0 | 1
  /** the recovered signer, EIP-55 checksummed */
  address: string
  /** the uncompressed recovered public key (65 bytes) */
  publicKey: Uint8Array
  /** r‖s‖v with v in 27/28, low s: the canonical 65-byte form */
  bytes: Uint8Array
}

/** Parses a 65-byte r‖s‖v signature (hex or bytes) without recovering anything. */
function parse (signature: string | Uint8Array): { r: bigint, s: bigint, recovery: 0 | 1 } {
  const bytes = typeof signature === 'string' ? hexToBytes(signature, 'signature') : signature
  if (!(bytes instanceof Uint8Array)) throw new InvalidSignatureError(`"signature" expected hex string or Uint8Array, got ${typeof signature}`)
  if (bytes.length !== 65) {
    throw new InvalidSignatureError(`"signature" expected 65 bytes (r‖s‖v), got length=${bytes.length}; contract wallets (ERC-1271), passkey and Safe signatures cannot open a UserSpace`)
  }
  const r = BigInt('0x' + bytesToHex(bytes.subarray(0, 32)))
  const s = BigInt('0x' + bytesToHex(bytes.subarray(32, 64)))
  const v = bytes[64] as number
  if (v !== 0 && v !== 1 && v !== 27 && v !== 28) throw new InvalidSignatureError(`"signature" v expected 0, 1, 27 or 28, got ${v}`)
  if (r <= 0n || r >= N) throw new InvalidSignatureError('"signature" r is out of range')
  if (s <= 0n || s >= N) throw new InvalidSignatureError('"signature" s is out of range')
  return { r, s, recovery: (v >= 27 ? v - 27 : v) as 0 | 1 }
}

/** Recovers the signer of a personal_sign signature over `message`. */
export function recoverPersonalSigner (message: string | Uint8Array, signature: string | Uint8Array): NormalizedSignature {
  let { r, s, recovery } = parse(signature)
  // EIP-2: the high-s twin (r, n - s) recovers the same key with the other recovery bit.
  if (s > HALF_N) { s = N - s; recovery = (recovery ^ 1) as 0 | 1 }
  const compact = concatBytes(toBytes32(r), toBytes32(s))
  let publicKey: Uint8Array
  try {
    const sig = new secp.Signature(r, s, recovery)
    publicKey = secp.recoverPublicKey(sig.toBytes('recovered'), hashPersonalMessage(message), { prehash: false })
  } catch {
    throw new InvalidSignatureError('"signature" does not recover to any public key')
  }
  const uncompressed = secp.Point.fromBytes(publicKey).toBytes(false)
  return {
    r: compact.subarray(0, 32),
    s: compact.subarray(32, 64),
    recovery,
    address: addressOfPublicKey(uncompressed),
    publicKey: uncompressed,
    bytes: concatBytes(compact, new Uint8Array([27 + recovery]))
  }
}

/**
 * Normalises a wallet's personal_sign signature over `message` and requires that it was made by
 * `expectedAddress`. Throws InvalidSignatureError or SignerMismatchError.
 */
export function normalizeSignature (message: string | Uint8Array, signature: string | Uint8Array, expectedAddress: string): NormalizedSignature {
  const expected = checksumAddress(expectedAddress)
  const normalized = recoverPersonalSigner(message, signature)
  if (normalized.address !== expected) {
    throw new SignerMismatchError(`signature recovers to ${normalized.address}, not to the signer ${expected}; contract and smart-account wallets cannot open a UserSpace`)
  }
  return normalized
}

function toBytes32 (n: bigint): Uint8Array {
  return hexToBytes(n.toString(16).padStart(64, '0'))
}

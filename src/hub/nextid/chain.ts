/**
 * The signed patch chain of the Next.ID KV Service: key and uuid normalisation, the exact
 * `sign_payload` text kv_server signs, the dag-cbor block each accepted patch becomes, and the
 * check that anyone can run on a block (re-build its sign_payload, recover the signer, compare).
 * Recovery uses @noble/curves, whose precomputed base-point tables make it about 1.7× faster than
 * @noble/secp256k1 (measured on this project's machine): every Next.ID write pays one.
 */
import { secp256k1 } from '@noble/curves/secp256k1.js'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { bytesToHex, hexToBytes, toBase64 } from '../../crypto/bytes.js'
import { hashPersonalMessage } from '../../crypto/eip191.js'
import { InvalidInputError, InvalidSignatureError, IntegrityError, SignerMismatchError } from '../../errors.js'
import { cborBlock, verifyBlock } from '../../store/blocks.js'
import { canonicalJson, toJsonValue, type JsonValue } from './json.js'
import type { Block } from '../../store/interface.js'

/** The `version` of every sign_payload kv_server has issued. */
export const SIGN_PAYLOAD_VERSION = '1'

/** r‖s‖v */
export const SIGNATURE_BYTES = 65

/**
 * Parses a secp256k1 public key as kv_server accepts it (`0x` optional; 33-byte compressed,
 * 65-byte uncompressed, or the 64-byte raw x‖y that libsecp256k1's `parse_slice` also takes) and
 * returns the 65-byte uncompressed form. Throws InvalidInputError.
 */
export function parsePublicKey (input: unknown, what = 'avatar'): Uint8Array {
  if (input instanceof Uint8Array) return pointBytes(input, what)
  if (typeof input !== 'string') throw new InvalidInputError(`"${what}" expected a secp256k1 public key in hex, got ${input === undefined ? 'nothing' : typeof input}`)
  const body = input.startsWith('0x') || input.startsWith('0X') ? input.slice(2) : input
  if (body.length === 0 || body.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(body)) {
    throw new InvalidInputError(`"${what}" expected a secp256k1 public key in hex, got "${input.slice(0, 20)}${input.length > 20 ? '…' : ''}"`)
  }
  return pointBytes(hexToBytes(body, what), what)
}

function pointBytes (bytes: Uint8Array, what: string): Uint8Array {
  let key = bytes
  if (key.length === 64) key = Uint8Array.of(4, ...key)
  if (!((key.length === 33 && (key[0] === 2 || key[0] === 3)) || (key.length === 65 && key[0] === 4))) {
    throw new InvalidInputError(`"${what}" expected a 33-byte compressed or 65-byte uncompressed secp256k1 public key, got length=${bytes.length}`)
  }
  try {
    return secp256k1.Point.fromBytes(key).toBytes(false)
  } catch {
    throw new InvalidInputError(`"${what}" is not a point on secp256k1`)
  }
}

/** Uncompressed key as lowercase hex without `0x`: the `avatar` of a sign_payload. */
export function avatarHex (publicKey: Uint8Array): string {
  return bytesToHex(publicKey)
}

/** Compressed key as `0x` hex: how ProofService names a persona. */
export function compressedHex (publicKey: Uint8Array): string {
  return '0x' + bytesToHex(compress(publicKey))
}

const UUID_FORMS = [
  /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i,
  /^([0-9a-f]{8})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{12})$/i,
  /^\{([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})\}$/i,
  /^urn:uuid:([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i
]

/**
 * Parses a uuid in the forms Rust's `Uuid::parse_str` takes (hyphenated, simple, braced, urn) and
 * returns the lowercase hyphenated form kv_server puts in the sign_payload.
 */
export function parseUuid (input: unknown, what = 'uuid'): string {
  if (typeof input === 'string') {
    for (const form of UUID_FORMS) {
      const m = form.exec(input)
      if (m !== null) return m.slice(1, 6).join('-').toLowerCase()
    }
  }
  throw new InvalidInputError(`"${what}" expected a uuid, got ${typeof input === 'string' ? `"${input.slice(0, 40)}"` : typeof input}`)
}

export interface SignPayloadFields {
  /** any form `parseUuid` takes; printed lowercase hyphenated */
  uuid: string
  /** the avatar's public key, any form `parsePublicKey` takes; printed uncompressed, no `0x` */
  avatar: string | Uint8Array
  platform: string
  identity: string
  /** a JSON value (RFC 7396 merge patch); printed with sorted keys */
  patch: unknown
  /** unix time, whole seconds */
  createdAtSeconds: number
  /** the previous link of the avatar's chain: its signature bytes or their base64; null for the first */
  previous: string | Uint8Array | null
}

export function checkText (value: unknown, what: string): string {
  if (typeof value !== 'string') throw new InvalidInputError(`"${what}" expected string, got ${value === null ? 'null' : typeof value}`)
  if (value.length === 0) throw new InvalidInputError(`"${what}" expected a non-empty string, got ""`)
  if (!value.isWellFormed()) throw new InvalidInputError(`"${what}" contains a lone surrogate`)
  return value
}

export function checkSeconds (value: unknown, what = 'created_at'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new InvalidInputError(`"${what}" expected integer seconds, got ${typeof value === 'number' ? String(value) : typeof value}`)
  }
  return value
}

/**
 * The text kv_server signs: `serde_json::to_string` of its `SignPayload` struct, fields in
 * declaration order, the patch with sorted keys, no whitespace (kv_server
 * `src/model/kv_chains/mod.rs`).
 */
export function buildSignPayload (fields: SignPayloadFields): string {
  const previous = fields.previous === null
    ? 'null'
    : JSON.stringify(typeof fields.previous === 'string' ? fields.previous : toBase64(fields.previous))
  return '{"version":"' + SIGN_PAYLOAD_VERSION + '"' +
    ',"uuid":' + JSON.stringify(parseUuid(fields.uuid)) +
    ',"avatar":' + JSON.stringify(avatarHex(parsePublicKey(fields.avatar))) +
    ',"platform":' + JSON.stringify(checkText(fields.platform, 'platform')) +
    ',"identity":' + JSON.stringify(checkText(fields.identity, 'identity')) +
    ',"patch":' + canonicalJson(toJsonValue(fields.patch, 'patch')) +
    ',"created_at":' + String(checkSeconds(fields.createdAtSeconds)) +
    ',"previous":' + previous + '}'
}

/** One accepted patch, as stored in its dag-cbor block. */
export interface KvLink {
  version: typeof SIGN_PAYLOAD_VERSION
  /** uncompressed public key, lowercase hex without `0x` (as in the sign_payload) */
  avatar: string
  platform: string
  identity: string
  /** lowercase hyphenated */
  uuid: string
  /** unix seconds */
  created_at: number
  patch: JsonValue
  /** the 65 bytes as the client sent them (the next link's `previous` is their base64) */
  signature: Uint8Array
  /** the previous block of this avatar's chain */
  previous: CID | null
}

const LINK_KEYS = ['avatar', 'created_at', 'identity', 'patch', 'platform', 'previous', 'signature', 'uuid', 'version']

export async function encodeLink (link: KvLink): Promise<Block> {
  return cborBlock({
    version: link.version,
    avatar: link.avatar,
    platform: link.platform,
    identity: link.identity,
    uuid: link.uuid,
    created_at: link.created_at,
    patch: link.patch,
    signature: link.signature,
    previous: link.previous
  })
}

/** Decodes and checks the shape of a block (not its signature). Throws IntegrityError. */
export async function decodeLink (block: Block): Promise<KvLink> {
  const where = block.cid.toString()
  if (block.cid.code !== dagCbor.code) throw new IntegrityError(`block ${where} is not dag-cbor`)
  if (!await verifyBlock(block.cid, block.bytes)) throw new IntegrityError(`block ${where} does not hash to its CID`)
  let value: unknown
  try {
    value = dagCbor.decode(block.bytes)
  } catch (err) {
    throw new IntegrityError(`block ${where} is not valid dag-cbor: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  try {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidInputError(`expected a map, got ${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value}`)
    const v = value as Record<string, unknown>
    const keys = Object.keys(v).sort()
    if (keys.join(',') !== LINK_KEYS.join(',')) throw new InvalidInputError(`expected the fields ${LINK_KEYS.join(', ')}, got ${keys.join(', ')}`)
    if (v.version !== SIGN_PAYLOAD_VERSION) throw new InvalidInputError(`unknown version ${String(v.version)}`)
    if (typeof v.avatar !== 'string' || !/^04[0-9a-f]{128}$/.test(v.avatar)) throw new InvalidInputError(`"avatar" expected 130 lowercase hex digits, got ${typeof v.avatar === 'string' ? `"${v.avatar.slice(0, 40)}" (${v.avatar.length} characters)` : typeof v.avatar}`)
    parsePublicKey(v.avatar)
    const uuid = parseUuid(v.uuid)
    if (uuid !== v.uuid) throw new InvalidInputError('"uuid" is not in lowercase hyphenated form')
    if (!(v.signature instanceof Uint8Array) || v.signature.length !== SIGNATURE_BYTES) throw new InvalidInputError(`"signature" expected ${SIGNATURE_BYTES} bytes, got ${v.signature instanceof Uint8Array ? `${v.signature.length} bytes` : typeof v.signature}`)
    const previous = v.previous === null ? null : CID.asCID(v.previous)
    if (previous === null && v.previous !== null) throw new InvalidInputError(`"previous" expected a CID or null, got ${typeof v.previous}`)
    return {
      version: SIGN_PAYLOAD_VERSION,
      avatar: v.avatar,
      platform: checkText(v.platform, 'platform'),
      identity: checkText(v.identity, 'identity'),
      uuid,
      created_at: checkSeconds(v.created_at),
      patch: toJsonValue(v.patch, 'patch'),
      signature: v.signature,
      previous
    }
  } catch (err) {
    throw new IntegrityError(`block ${where} is not a Next.ID KV link: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

/** The sign_payload a link was signed over, given the signature of its previous link. */
export function linkSignPayload (link: KvLink, previousSignature: Uint8Array | null): string {
  return buildSignPayload({
    uuid: link.uuid,
    avatar: link.avatar,
    platform: link.platform,
    identity: link.identity,
    patch: link.patch,
    createdAtSeconds: link.created_at,
    previous: previousSignature
  })
}

const N = secp256k1.Point.CURVE().n

/**
 * Checks a 65-byte r‖s‖v signature's form without any curve arithmetic: length, v in {0, 1, 27, 28},
 * r and s in [1, n). Returns it in the `recovered` layout noble takes (recovery bit first). Throws
 * InvalidSignatureError. High s is accepted (the EIP-2 twin recovers the same key), as kv_server's
 * recovery does.
 */
export function parseSignature (signature: Uint8Array): Uint8Array {
  if (signature.length !== SIGNATURE_BYTES) {
    throw new InvalidSignatureError(`"signature" expected ${SIGNATURE_BYTES} bytes (r‖s‖v), got length=${signature.length}`)
  }
  const v = signature[64] as number
  if (v !== 0 && v !== 1 && v !== 27 && v !== 28) throw new InvalidSignatureError(`"signature" v expected 0, 1, 27 or 28, got ${v}`)
  const r = BigInt('0x' + bytesToHex(signature.subarray(0, 32)))
  const s = BigInt('0x' + bytesToHex(signature.subarray(32, 64)))
  if (r <= 0n || r >= N) throw new InvalidSignatureError('"signature" r is out of range')
  if (s <= 0n || s >= N) throw new InvalidSignatureError('"signature" s is out of range')
  const recovered = new Uint8Array(SIGNATURE_BYTES)
  recovered[0] = v >= 27 ? v - 27 : v
  recovered.set(signature.subarray(0, 64), 1)
  return recovered
}

/** How many secp256k1 recoveries this process has run (the cost a request caused, for tests and benches). */
export const recoveryCount = { value: 0 }

/**
 * True when `signature` is a personal_sign by `publicKey` (uncompressed) over `payload`. Throws
 * InvalidSignatureError when the signature is malformed (length, v, r or s) or recovers to no key.
 */
export function signedBy (payload: string, signature: Uint8Array, publicKey: Uint8Array): boolean {
  const recovered = parseSignature(signature)
  recoveryCount.value++
  let key: Uint8Array
  try {
    key = secp256k1.recoverPublicKey(recovered, hashPersonalMessage(payload), { prehash: false })
  } catch (err) {
    throw new InvalidSignatureError('"signature" does not recover to any public key', { cause: err })
  }
  // Compared compressed: compressing the expected key is free, decompressing the recovered one costs a square root.
  return bytesToHex(key) === bytesToHex(compress(publicKey))
}

/** The 33-byte compressed form of a 65-byte uncompressed key (no curve arithmetic: y's parity and x). */
function compress (publicKey: Uint8Array): Uint8Array {
  if (publicKey.length === 33) return publicKey
  const out = new Uint8Array(33)
  out[0] = 2 + ((publicKey[64] as number) & 1)
  out.set(publicKey.subarray(1, 33), 1)
  return out
}

/** Checks a link's signature against its avatar. Throws SignerMismatchError or InvalidSignatureError. */
export function verifyLinkSignature (link: KvLink, previousSignature: Uint8Array | null, cid?: CID): void {
  if (!signedBy(linkSignPayload(link, previousSignature), link.signature, hexToBytes(link.avatar))) {
    throw new SignerMismatchError(`the signature of ${cid?.toString() ?? `uuid ${link.uuid}`} was not made by avatar 0x${link.avatar} over its sign_payload`)
  }
}

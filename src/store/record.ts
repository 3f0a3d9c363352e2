/**
 * The one IPNS record codec shared by the Space (which signs records), the stores (which check what
 * they are handed) and the hub (which checks what strangers PUT). Records are V2-only (the spec makes
 * the V1 signature and fields optional; V2 is what every current implementation checks), Ed25519-
 * signed, valid for months and never over the spec's 10 KiB; validation follows the IPNS record spec
 * (ipfs/specs, "Record Verification") through the `ipns` package's validator, which accepts V1+V2
 * records from others as well.
 */
import { systemClock } from '../clock.js'
import { blockBytes, flatText } from '../crypto/bytes.js'
import { cidString } from './blocks.js'
import type { Clock } from '../clock.js'
import { multihashToIPNSRoutingKey, unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'
import { CID } from 'multiformats/cid'
import { base36 } from 'multiformats/bases/base36'
import { base58btc } from 'multiformats/bases/base58'
import * as Digest from 'multiformats/hashes/digest'
import { InvalidInputError, InvalidRecordError, TooLargeError, describeValue } from '../errors.js'
import type { PrivateKey } from '@libp2p/interface'
import type { MultihashDigest } from 'multiformats/hashes/interface'

/** IPNS record spec: records MUST NOT exceed 10 KiB. */
export const MAX_RECORD_BYTES = 10 * 1024

/**
 * How long a record stays valid. Long, so that hubs can keep re-announcing it for months without the
 * owner's key (the IPNS default of 48 h would let a space vanish while its owner is away).
 *
 * @default 365 days
 */
export const DEFAULT_RECORD_LIFETIME_MS = 365 * 24 * 60 * 60 * 1000

/** Cache hint for resolvers. @default 5 minutes */
export const DEFAULT_RECORD_TTL_MS = 5 * 60 * 1000

/** The multicodec of a libp2p public key in a CID (the `k51…` name form). */
const LIBP2P_KEY_CODEC = 0x72

export interface RecordInfo {
  /** The record's value, e.g. `/ipfs/bafy…`. */
  value: string
  /** The root CID the value points at, when the value is an `/ipfs/` path. */
  cid?: CID
  sequence: bigint
  /** Expiry as milliseconds since the epoch. */
  validUntilMs: number
  ttlMs: number
  /**
   * True when the validity has passed. Only `validateRecord(…, { allowExpired: true })` returns an
   * expired record; `readRecord` reports what the bytes say without judging.
   */
  expired: boolean
}

export interface ValidateRecordOptions {
  /**
   * Accept a record whose validity has passed, if everything else holds (size, name, V2 signature,
   * V1/V2 agreement), and report `expired: true`. An expired record is the last version its owner
   * signed: readers show it as such and the owner renews it. @default false
   */
  allowExpired?: boolean
  /** The clock that decides whether the validity has passed. @default systemClock */
  nowMs?: Clock
}

/** Decodes any IPNS name form (`k51…`/`bafz…` CIDs, `12D3Koo…`/`Qm…` peer ids) to its multihash. */
export function nameToMultihash (name: string): MultihashDigest {
  if (typeof name !== 'string' || name.length === 0 || name.length > 128) {
    throw new InvalidInputError(`"name" expected an IPNS name, got ${describe(name)}`)
  }
  try {
    if (name.startsWith('1') || name.startsWith('Qm')) {
      return Digest.decode(base58btc.baseDecode(name))
    }
    const cid = CID.parse(name, name.startsWith('k') ? base36 : undefined)
    if (cid.code !== LIBP2P_KEY_CODEC) throw new Error('not a libp2p-key CID')
    return cid.multihash
  } catch {
    throw new InvalidInputError(`"name" expected an IPNS name (k51…), got "${name.slice(0, 80)}"`)
  }
}

/** The canonical `k51…` form of a name given in any form. */
export function canonicalName (name: string): string {
  return nameText(CID.createV1(LIBP2P_KEY_CODEC, nameToMultihash(name)))
}

/** The IPNS name (`k51…`) of an Ed25519 private key's public half. */
export function nameOfKey (key: PrivateKey): string {
  return nameText(key.publicKey.toCID())
}

/**
 * A name CID's `k51…` text as a flat string. multiformats 13 writes base36 one character at a time
 * (`out += …`), which V8 keeps as a rope of one node per character (~1.7 KB of heap instead of
 * ~120 B) for as long as the string lives, and names live long: they key a hub's records, caches and
 * subscribers. The text is copied out of the rope once, here.
 */
export function nameText (cid: CID): string {
  // base36.encode rather than toString(base36), which would also cache the rope on the CID
  return flatText(base36.encode(cid.bytes))
}

export interface CreateRecordOptions {
  /** @default DEFAULT_RECORD_LIFETIME_MS */
  lifetimeMs?: number
  /** @default DEFAULT_RECORD_TTL_MS */
  ttlMs?: number
  /** The clock the validity counts from. @default systemClock */
  nowMs?: Clock
}

/**
 * Signs a V2-only record pointing at `/ipfs/<root>` and returns its protobuf bytes: one Ed25519
 * signature per version where a V1+V2 record costs two, and ~45 % fewer bytes (~220 rather than ~400).
 *
 * The bytes are exactly what the `ipns` package's `createIPNSRecord(…, { v1Compatible: false })` and
 * `marshalIPNSRecord` produce for the same inputs (a test holds them equal), written directly: that
 * builder parses the value back as a CID, formats the validity through a date library and encodes
 * through generic CBOR and protobuf codecs, which together cost more than the signature itself.
 */
export async function createRecord (key: PrivateKey, root: CID, sequence: number | bigint, options: CreateRecordOptions = {}): Promise<Uint8Array> {
  const lifetimeMs = options.lifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS
  const validUntilMs = (options.nowMs ?? systemClock)() + lifetimeMs
  const ttl = options.ttlMs === undefined ? DEFAULT_TTL_HEAD : cborHead(0, BigInt(options.ttlMs) * 1_000_000n)
  // IPNS record spec, "Record Creation": the V2 signature covers "ipns-signature:" ‖ data, so data is
  // written straight after that prefix and signed in place
  const signed = recordData(`/ipfs/${cidString(root)}`, validityString(validUntilMs), sequence, ttl)
  const data = signed.subarray(SIGNATURE_PREFIX.length)
  const signature = await key.sign(signed)
  // IpnsEntry protobuf, V2-only: signatureV2 = 8, data = 9 (bytes), in field order; an Ed25519 name
  // carries its public key, so there is no pubKey field (7).
  const bytes = blockBytes(1 + varintLength(signature.length) + signature.length + 1 + varintLength(data.length) + data.length)
  let at = 0
  bytes[at++] = 0x42
  at = writeVarint(bytes, at, signature.length)
  bytes.set(signature, at)
  at += signature.length
  bytes[at++] = 0x4a
  at = writeVarint(bytes, at, data.length)
  bytes.set(data, at)
  if (bytes.byteLength > MAX_RECORD_BYTES) {
    throw new TooLargeError(`IPNS record is ${bytes.byteLength} bytes, over the ${MAX_RECORD_BYTES}-byte limit`)
  }
  return bytes
}

const utf8 = new TextEncoder()
const SIGNATURE_PREFIX = utf8.encode('ipns-signature:')
/** The record data's map keys with their CBOR heads, in DAG-CBOR order. */
const KEY_TTL = cborText('TTL')
const KEY_VALUE = cborText('Value')
const KEY_SEQUENCE = cborText('Sequence')
const KEY_VALIDITY = cborText('Validity')
const KEY_VALIDITY_TYPE = cborText('ValidityType')

/**
 * "ipns-signature:" followed by the record's `data`: the DAG-CBOR map { TTL, Value, Sequence,
 * Validity, ValidityType: 0 (EOL) }, keys in DAG-CBOR's order (shorter first, then bytewise),
 * integers in their shortest form. One buffer, so that the signature covers it without a copy.
 */
function recordData (value: string, validity: string, sequence: number | bigint, ttl: Uint8Array): Uint8Array {
  // Value and Validity are ASCII (a path of base32 text, an RFC 3339 time): written as they are.
  const valueBytes = asciiBytes(value)
  const validityBytes = asciiBytes(validity)
  const parts = [
    SIGNATURE_PREFIX,
    MAP_OF_FIVE,
    KEY_TTL, ttl,
    KEY_VALUE, cborHead(2, valueBytes.length), valueBytes,
    KEY_SEQUENCE, cborHead(0, sequence),
    KEY_VALIDITY, cborHead(2, validityBytes.length), validityBytes,
    KEY_VALIDITY_TYPE, VALIDITY_TYPE_EOL
  ]
  return concatBytes(parts, blockBytes)
}

/** A string's bytes: one per character when it is ASCII (on V8's heap up to 64 bytes, no encoder call), else UTF-8. */
function asciiBytes (text: string): Uint8Array | number[] {
  const out = new Array<number>(text.length)
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c > 0x7f) return utf8.encode(text)
    out[i] = c
  }
  return out
}

const MAP_OF_FIVE = Uint8Array.of(0xa5)
/** The TTL field's value (nanoseconds) when the default applies. */
const DEFAULT_TTL_HEAD = cborHead(0, BigInt(DEFAULT_RECORD_TTL_MS) * 1_000_000n)
const VALIDITY_TYPE_EOL = Uint8Array.of(0x00)

/** A CBOR head: major type and argument in the shortest form (RFC 8949 §3, as DAG-CBOR requires). */
function cborHead (major: number, value: number | bigint): Uint8Array {
  // small safe integers (lengths, most sequences) take the number path: no BigInt arithmetic
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value < 0x100000000) {
    const m = major << 5
    if (value < 24) return Uint8Array.of(m | value)
    if (value < 0x100) return Uint8Array.of(m | 24, value)
    if (value < 0x10000) return Uint8Array.of(m | 25, value >>> 8, value & 0xff)
    return Uint8Array.of(m | 26, value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff)
  }
  let n = BigInt(value)
  if (n < 0n || n >= 1n << 64n) throw new RangeError(`"n" expected an unsigned 64-bit integer, got ${n}`)
  const m = major << 5
  if (n < 24n) return Uint8Array.of(m | Number(n))
  if (n < 0x100n) return Uint8Array.of(m | 24, Number(n))
  if (n < 0x10000n) return Uint8Array.of(m | 25, Number(n >> 8n), Number(n & 0xffn))
  const size = n < 0x100000000n ? 4 : 8
  const out = new Uint8Array(1 + size)
  out[0] = m | (size === 4 ? 26 : 27)
  for (let i = size; i >= 1; i--) { out[i] = Number(n & 0xffn); n >>= 8n }
  return out
}

function cborText (text: string): Uint8Array {
  const bytes = utf8.encode(text)
  return concatBytes([cborHead(3, bytes.length), bytes])
}

function varintLength (n: number): number {
  let length = 1
  while (n >= 0x80) { length++; n >>>= 7 }
  return length
}

function writeVarint (out: Uint8Array, at: number, n: number): number {
  while (n >= 0x80) { out[at++] = (n & 0x7f) | 0x80; n >>>= 7 }
  out[at++] = n
  return at
}

function concatBytes (parts: Array<Uint8Array | number[]>, alloc: (length: number) => Uint8Array = n => new Uint8Array(n)): Uint8Array {
  let length = 0
  for (const p of parts) length += p.length
  const out = alloc(length)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/**
 * RFC 3339 with nanoseconds, as IPNS validities are written (`2027-01-02T03:04:05.678000000Z`):
 * millisecond precision padded with zeros.
 */
function validityString (ms: number): string {
  const iso = new Date(ms).toISOString()
  if (!iso.endsWith('Z') || iso.length !== 24) throw new RangeError(`"validUntilMs" out of range for an RFC 3339 validity, got ${ms}`)
  return `${iso.slice(0, -1)}000000Z`
}

/**
 * Checks a marshalled record for `name` as the spec says (size, V2 signature by the name's key,
 * V1/V2 consistency, not expired) and returns what it says. Throws InvalidRecordError or TooLargeError.
 * With `allowExpired`, an expired but otherwise valid record is returned with `expired: true`.
 */
export async function validateRecord (name: string, bytes: Uint8Array, options: ValidateRecordOptions = {}): Promise<RecordInfo> {
  if (!(bytes instanceof Uint8Array)) throw new InvalidRecordError(`"record" expected Uint8Array, got ${describeValue(bytes)}`)
  if (bytes.byteLength > MAX_RECORD_BYTES) {
    throw new TooLargeError(`IPNS record is ${bytes.byteLength} bytes, over the ${MAX_RECORD_BYTES}-byte limit`)
  }
  const routingKey = multihashToIPNSRoutingKey(nameToMultihash(name) as MultihashDigest<0x00 | 0x12>)
  try {
    await ipnsValidator(routingKey, bytes)
  } catch (err) {
    // ipns 10's `validate` checks the V2 signature before the validity, so a RecordExpiredError
    // means the signature held: the record is authentic, and whether it is too old is decided below,
    // by the clock given (the validator reads the system time).
    if ((err as Error).name !== 'RecordExpiredError') {
      throw new InvalidRecordError(`invalid IPNS record for ${name}: ${(err as Error).message}`, { cause: err })
    }
  }
  const info = readRecord(bytes)
  // An unparsable validity counts as expired.
  info.expired = !(info.validUntilMs >= (options.nowMs ?? systemClock)())
  if (info.expired && options.allowExpired !== true) {
    throw new InvalidRecordError(`invalid IPNS record for ${name}: record has expired`)
  }
  return info
}

/** Reads a record's fields without checking its signature (use validateRecord for untrusted bytes). */
export function readRecord (bytes: Uint8Array): RecordInfo {
  let record
  try {
    record = unmarshalIPNSRecord(bytes)
  } catch (err) {
    throw new InvalidRecordError(`malformed IPNS record: ${(err as Error).message}`, { cause: err })
  }
  const value = record.value
  let cid: CID | undefined
  if (value.startsWith('/ipfs/')) {
    try { cid = CID.parse(value.slice('/ipfs/'.length).split('/')[0] ?? '') } catch { cid = undefined }
  }
  return {
    value,
    cid,
    sequence: record.sequence,
    validUntilMs: Date.parse(record.validity),
    ttlMs: Number((record.ttl ?? 0n) / 1_000_000n),
    expired: false
  }
}

/** A record's sequence number, read without verification. */
export function recordSequence (bytes: Uint8Array): bigint {
  return readRecord(bytes).sequence
}

function describe (value: unknown): string {
  return value === null ? 'null' : typeof value
}

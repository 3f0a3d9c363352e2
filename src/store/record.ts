/**
 * The one IPNS record codec shared by the Space (which signs records), the stores (which check what
 * they are handed) and the hub (which checks what strangers PUT). Records are V2-only (the spec makes
 * the V1 signature and fields optional; V2 is what every current implementation checks), Ed25519-
 * signed, valid for months and never over the spec's 10 KiB; validation follows the IPNS record spec
 * (ipfs/specs, "Record Verification") through the `ipns` package's validator, which accepts V1+V2
 * records from others as well.
 */
import { systemClock } from '../clock.js'
import type { Clock } from '../clock.js'
import { createIPNSRecordWithExpiration, marshalIPNSRecord, multihashToIPNSRoutingKey, unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'
import { CID } from 'multiformats/cid'
import { base36 } from 'multiformats/bases/base36'
import { base58btc } from 'multiformats/bases/base58'
import * as Digest from 'multiformats/hashes/digest'
import { InvalidInputError, InvalidRecordError, TooLargeError } from '../errors.js'
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
  return CID.createV1(LIBP2P_KEY_CODEC, nameToMultihash(name)).toString(base36)
}

/** The IPNS name (`k51…`) of an Ed25519 private key's public half. */
export function nameOfKey (key: PrivateKey): string {
  return key.publicKey.toCID().toString(base36)
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
 */
export async function createRecord (key: PrivateKey, root: CID, sequence: number | bigint, options: CreateRecordOptions = {}): Promise<Uint8Array> {
  const validUntil = new Date((options.nowMs ?? systemClock)() + (options.lifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS)).toISOString()
  const record = await createIPNSRecordWithExpiration(key, `/ipfs/${root.toString()}`, BigInt(sequence), validUntil, {
    ttlNs: BigInt(options.ttlMs ?? DEFAULT_RECORD_TTL_MS) * 1_000_000n,
    v1Compatible: false
  })
  const bytes = marshalIPNSRecord(record)
  if (bytes.byteLength > MAX_RECORD_BYTES) {
    throw new TooLargeError(`IPNS record is ${bytes.byteLength} bytes, over the ${MAX_RECORD_BYTES}-byte limit`)
  }
  return bytes
}

/**
 * Checks a marshalled record for `name` as the spec says (size, V2 signature by the name's key,
 * V1/V2 consistency, not expired) and returns what it says. Throws InvalidRecordError or TooLargeError.
 * With `allowExpired`, an expired but otherwise valid record is returned with `expired: true`.
 */
export async function validateRecord (name: string, bytes: Uint8Array, options: ValidateRecordOptions = {}): Promise<RecordInfo> {
  if (!(bytes instanceof Uint8Array)) throw new InvalidRecordError('"record" expected Uint8Array')
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

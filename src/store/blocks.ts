/**
 * Block helpers shared by every store and the space codec: raw (0x55) blocks for ciphertext,
 * dag-cbor blocks for roots and public sections, sha2-256 CIDv1 for both, and the check that a
 * block's bytes hash to its CID.
 */
import { blockLength, createWriter, headerLength } from '@ipld/car/buffer-writer'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { Digest, create as createDigest } from 'multiformats/hashes/digest'
import { equals } from 'multiformats/bytes'
import type { MultihashDigest } from 'multiformats/hashes/interface'
import { IntegrityError, NotFoundError } from '../errors.js'
import { encodeDagCbor, encodeLinks } from './cbor.js'
import type { AbortOptions, Block, Store } from './interface.js'

/** The bitswap limit: no block UserSpace writes or accepts is larger. */
export const MAX_BLOCK_BYTES = 1024 * 1024

type OneShotHash = (algorithm: 'sha256', data: Uint8Array, outputEncoding: 'latin1') => string

/**
 * Node's one-shot `crypto.hash` (Node ≥ 20.12), reached through `process.getBuiltinModule` so that
 * browser bundles never see `node:crypto`. Per block it costs about half of what a hasher object
 * does (multiformats' sha256 creates one per call): a cold open of 100 000 keys hashes ~5 500 blocks.
 */
const nativeHash: OneShotHash | undefined = (() => {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
  try {
    const hash = (proc?.getBuiltinModule?.('node:crypto') as { hash?: OneShotHash } | undefined)?.hash
    return typeof hash === 'function' ? hash : undefined
  } catch {
    return undefined
  }
})()

/**
 * Writes the native sha2-256 digest of `bytes` into `out` at `at`. The digest comes back as a
 * latin1 string (one character per byte), not a Buffer: a Buffer made in C++ is a new off-heap
 * allocation, while a 32-character string lives on V8's heap. In a tight loop over a 165-byte index
 * node: 1.4 µs a hash with a Buffer, 0.33 µs with a string (one-off measurement).
 */
function nativeDigestInto (hash: OneShotHash, bytes: Uint8Array, out: Uint8Array, at: number): void {
  const chars = hash('sha256', bytes, 'latin1')
  for (let i = 0; i < 32; i++) out[at + i] = chars.charCodeAt(i)
}

/** The sha2-256 digest of `bytes` (32 bytes), natively where the runtime can. */
async function sha256Bytes (bytes: Uint8Array): Promise<Uint8Array> {
  if (nativeHash === undefined) return (await sha256.digest(bytes)).digest
  const digest = new Uint8Array(32)
  nativeDigestInto(nativeHash, bytes, digest, 0)
  return digest
}

async function sha256Multihash (bytes: Uint8Array): Promise<MultihashDigest<typeof sha256.code>> {
  if (nativeHash === undefined) return sha256.digest(bytes)
  return createDigest(sha256.code, await sha256Bytes(bytes))
}

/** Slab size for `cidSpace`: sixteen 36-byte CIDs. */
const CID_SLAB_BYTES = 576
let cidSlab = new Uint8Array(0)
let cidSlabAt = 0

/**
 * Room for one CID's bytes, cut from a shared slab. A CID's multihash is a view of its bytes, and
 * multiformats checks each array's `.buffer`: an array of 64 bytes or fewer made on its own then
 * gets an ArrayBuffer and a backing store of its own (~1 µs, 0.6 µs more per CID than a cut, and
 * memory the collector tracks apart). A publish names ~8 blocks. A slab lives while any CID cut from
 * it does: a space's index holds its CIDs for long, so the slab is small (at most 576 bytes kept
 * per CID, where one made alone costs ~170).
 */
function cidSpace (length: number): Uint8Array {
  if (cidSlabAt + length > cidSlab.length) {
    cidSlab = new Uint8Array(CID_SLAB_BYTES)
    cidSlabAt = 0
  }
  const out = cidSlab.subarray(cidSlabAt, cidSlabAt + length)
  cidSlabAt += length
  return out
}

/**
 * The sha2-256 CIDv1 of `bytes` under `code` (a codec below 0x4000), hashed natively and written
 * straight into one buffer that the CID and its multihash share, as `CID.decode` leaves them;
 * undefined where the runtime has no native hash. A publish names ~10 blocks this way, with no
 * promise and one copy of the digest instead of three.
 */
export function nativeCid (code: number, bytes: Uint8Array): CID | undefined {
  if (nativeHash === undefined) return undefined
  const codeLength = code < 0x80 ? 1 : 2
  // version 1 ‖ codec (varint) ‖ sha2-256 (0x12) ‖ 32 (0x20) ‖ digest
  const cidBytes = cidSpace(1 + codeLength + 2 + 32)
  cidBytes[0] = 1
  if (codeLength === 1) cidBytes[1] = code
  else { cidBytes[1] = (code & 0x7f) | 0x80; cidBytes[2] = code >>> 7 }
  cidBytes[1 + codeLength] = sha256.code
  cidBytes[2 + codeLength] = 32
  nativeDigestInto(nativeHash, bytes, cidBytes, 3 + codeLength)
  const multihash = new Digest(sha256.code, 32, cidBytes.subarray(3 + codeLength), cidBytes.subarray(1 + codeLength))
  return new CID(1, code, multihash, cidBytes)
}

/**
 * The sha2-256 CIDv1 with a one-byte codec (raw, dag-cbor) that starts at `at` in `bytes`, as views
 * of `bytes` (no copy; undefined for any other CID, which `CID.decodeFirst` then reads). A cold
 * open reads ~11 000 CIDs (each block's in its CAR, each link in the index): built by
 * `CID.decodeFirst`, each CID is a fresh 36-byte array that multiformats then moves off the heap.
 */
export function cidAt (bytes: Uint8Array, at: number): CID | undefined {
  const end = at + CID_V1_SHA256_BYTES
  if (end > bytes.byteLength || bytes[at] !== 1 || (bytes[at + 1] as number) >= 0x80 || bytes[at + 2] !== sha256.code || bytes[at + 3] !== 32) return undefined
  const multihash = new Digest(sha256.code, 32, bytes.subarray(at + 4, end), bytes.subarray(at + 2, end))
  return new CID(1, bytes[at + 1] as number, multihash, bytes.subarray(at, end))
}

/** version ‖ one-byte codec ‖ sha2-256 ‖ 32 ‖ digest */
const CID_V1_SHA256_BYTES = 36

/**
 * The links of a dag-cbor block that is exactly an array of fewer than 24 links to sha2-256 CIDv1s
 * with one-byte codecs, written canonically (a space's index nodes), read as views of `bytes`; else
 * undefined, and the caller decodes the block in full. Both read the same links from such bytes;
 * this builds no intermediate objects for the ~1 400 index nodes of a 100 000-key space.
 */
export function canonicalLinkList (bytes: Uint8Array): CID[] | undefined {
  const count = (bytes[0] as number) - 0x80
  if (count < 0 || count >= 24 || bytes.byteLength !== 1 + count * LINK_BYTES) return undefined
  const links: CID[] = []
  for (let at = 1; at < bytes.byteLength; at += LINK_BYTES) {
    // tag 42, a byte string of 37 bytes, the identity multibase prefix, then the CID
    if (bytes[at] !== 0xd8 || bytes[at + 1] !== 42 || bytes[at + 2] !== 0x58 || bytes[at + 3] !== 37 || bytes[at + 4] !== 0) return undefined
    const cid = cidAt(bytes, at + 5)
    if (cid === undefined) return undefined
    links.push(cid)
  }
  return links
}

/** One link as canonicalLinkList reads it: d8 2a 58 25 00 ‖ 36-byte CID. */
const LINK_BYTES = 5 + CID_V1_SHA256_BYTES

/** A raw block, named synchronously where the runtime hashes natively (else undefined: use `rawBlock`). */
export function rawBlockNow (bytes: Uint8Array): Block | undefined {
  const cid = nativeCid(raw.code, bytes)
  return cid === undefined ? undefined : { cid, bytes }
}

export async function rawBlock (bytes: Uint8Array): Promise<Block> {
  return rawBlockNow(bytes) ?? { cid: CID.createV1(raw.code, await sha256Multihash(bytes)), bytes }
}

/** A dag-cbor block, named synchronously where the runtime hashes natively (else undefined: use `cborBlock`). */
export function cborBlockNow (value: unknown): Block | undefined {
  if (nativeHash === undefined) return undefined
  const bytes = encodeDagCbor(value) ?? dagCbor.encode(value)
  return { cid: nativeCid(dagCbor.code, bytes) as CID, bytes }
}

/** A bucket index node (a list of links) as a dag-cbor block, named natively (else undefined: use `cborBlock`). */
export function linksBlockNow (links: CID[]): Block | undefined {
  if (nativeHash === undefined) return undefined
  const bytes = encodeLinks(links)
  return { cid: nativeCid(dagCbor.code, bytes) as CID, bytes }
}

export async function cborBlock (value: unknown): Promise<Block> {
  const now = cborBlockNow(value)
  if (now !== undefined) return now
  // the direct encoder writes the same bytes for the format's own shapes, at a fraction of the cost
  const bytes = encodeDagCbor(value) ?? dagCbor.encode(value)
  return { cid: CID.createV1(dagCbor.code, await sha256Multihash(bytes)), bytes }
}

/**
 * Byte arrays this module has hashed, with the digest they matched. A block read by a store and
 * checked again by the space that asked for it is then hashed once, not twice (on a cold open of
 * 100 000 keys that was 8 MB hashed a second time). Only `verifyBlock` adds to it, and only after a
 * match, so a store cannot mark its own bytes as verified. Weak: entries go with their blocks.
 */
const verified = new WeakMap<Uint8Array, Uint8Array>()

/** True when `bytes` hash to `cid` (sha2-256 only; other hashes are refused as unverifiable). */
export async function verifyBlock (cid: CID, bytes: Uint8Array): Promise<boolean> {
  if (cid.multihash.code !== sha256.code) return false
  const known = verified.get(bytes)
  if (known !== undefined) return equals(known, cid.multihash.digest)
  const digest = await sha256Bytes(bytes)
  if (!equals(digest, cid.multihash.digest)) return false
  verified.set(bytes, digest)
  return true
}

/**
 * `verifyBlock` without a promise where the runtime hashes natively (undefined elsewhere: use
 * `verifyBlock`). Remembers a match as `verifyBlock` does.
 */
export function verifyBlockNow (cid: CID, bytes: Uint8Array): boolean | undefined {
  if (cid.multihash.code !== sha256.code) return false
  const known = verified.get(bytes)
  if (known !== undefined) return equals(known, cid.multihash.digest)
  if (nativeHash === undefined) return undefined
  const digest = new Uint8Array(32)
  nativeDigestInto(nativeHash, bytes, digest, 0)
  if (!equals(digest, cid.multihash.digest)) return false
  verified.set(bytes, digest)
  return true
}

/**
 * A map key for `cid`: its binary form as a string, one character per byte. Several times cheaper
 * than `toString()` (base32), which a cold open would pay twice for each of thousands of blocks.
 */
export function cidKey (cid: CID): string {
  return charsOf(cid.bytes)
}

/** A map key for any bytes, one character per byte, as `cidKey` writes a CID's. */
export function bytesKey (bytes: Uint8Array): string {
  return charsOf(bytes)
}

/**
 * A map key for the block `cid` names whatever its codec: its multihash as a string, one character
 * per byte. Blockstores keep, find and delete blocks by multihash, so the same bytes under another
 * codec are the same block on disk.
 */
export function multihashKey (cid: CID): string {
  return charsOf(cid.multihash.bytes)
}

/**
 * One character per byte of `codes`. A link in a stranger's block may be any CID (an identity hash
 * of a megabyte): one `fromCharCode` call per 4 096 bytes, as a single call would pass a million
 * arguments and overflow the stack.
 */
function charsOf (codes: Uint8Array): string {
  if (codes.length <= CHARS_PER_CALL) return String.fromCharCode.apply(null, codes as unknown as number[])
  let text = ''
  for (let i = 0; i < codes.length; i += CHARS_PER_CALL) text += String.fromCharCode.apply(null, codes.subarray(i, i + CHARS_PER_CALL) as unknown as number[])
  return text
}
const CHARS_PER_CALL = 4096

/** RFC 4648 base32, lower case: the alphabet of a CIDv1's canonical text. */
const BASE32_CODES = Uint8Array.from('abcdefghijklmnopqrstuvwxyz234567', c => c.charCodeAt(0))

/**
 * `cid.toString()` as a flat string, for CIDs kept as map and set keys or in long-lived lists.
 * multiformats 13 builds base32 text one character at a time (`out += …`), and V8 keeps such a
 * string as a rope of one node per character until something flattens it: ~1.6 KB of heap per key
 * instead of ~120 B (`npm run bench:keys`), and `toString()` also caches that rope on the CID. This
 * writes the character codes first and makes the string from them, 4 096 at a time (about twice as
 * fast). A CIDv0 (base58btc) goes through `toString()`.
 */
export function cidString (cid: CID): string {
  if (cid.version !== 1) return cid.toString()
  const bytes = cid.bytes
  const length = 1 + Math.ceil(bytes.length * 8 / 5)
  if (length > cidText.length) return charsOf(base32Codes(bytes, new Uint8Array(length)))
  return ascii.decode(base32Codes(bytes, cidText.subarray(0, length)))
}

/** `codes` filled with the multibase base32 text of `bytes` (`b`, then RFC 4648 lower case, no padding). */
function base32Codes (bytes: Uint8Array, codes: Uint8Array): Uint8Array {
  codes[0] = 98 // 'b', the multibase prefix of base32
  let at = 1
  let buffer = 0
  let bits = 0
  for (let i = 0; i < bytes.length; i++) {
    buffer = ((buffer << 8) | (bytes[i] as number)) & 0xfff
    bits += 8
    while (bits >= 5) {
      bits -= 5
      codes[at++] = BASE32_CODES[(buffer >> bits) & 31] as number
    }
  }
  if (bits > 0) codes[at++] = BASE32_CODES[(buffer << (5 - bits)) & 31] as number
  return codes
}

/**
 * A CID's text is written here, then decoded to a flat string at once (ASCII, which UTF-8, the one
 * encoding every TextDecoder has, reads byte for byte): 0.2 µs a CID where a new array of codes and `fromCharCode.apply`
 * cost 0.35 µs and ~600 bytes of garbage (one-off measurement; a publish to a memory store names ~8).
 * Longer CIDs (an identity hash) get an array of their own.
 */
const cidText = new Uint8Array(256)
const ascii = new TextDecoder()

/**
 * True for a CID a blockstore may hold a block for: a hash whose digest is at most 64 bytes (sha2-512,
 * the longest of the hashes helia checks; this project writes and verifies sha2-256 only). A
 * stranger's link may name a digest of a megabyte, which blockstores write out in base32 to look up
 * (~0.6 s a MiB): such a CID is missing without asking the blockstore or the network. Identity CIDs
 * carry their block inline and are not held either.
 */
export function isHeldHash (cid: CID): boolean {
  return cid.multihash.code !== IDENTITY_CODE && cid.multihash.size <= MAX_DIGEST_BYTES
}
const MAX_DIGEST_BYTES = 64

/** Throws NotFoundError, asking no one, for a CID no block can have (see isHeldHash); identity CIDs pass. */
export function refuseUnheld (cid: CID): void {
  if (cid.multihash.code !== IDENTITY_CODE && !isHeldHash(cid)) throw new NotFoundError(`block ${cidLabel(cid)} not found: no block has a digest that long`)
}
const IDENTITY_CODE = 0x00

/**
 * A CID as an error message names it: its text, or, past 128 bytes (four times a sha2-256 CID), its
 * length and multihash code. A stranger's CID may carry a digest of megabytes, whose text took
 * ~0.3 s a MiB to write and made an answer of as many megabytes.
 */
export function cidLabel (cid: CID): string {
  return cid.bytes.length <= MAX_LABELLED_CID_BYTES ? cidString(cid) : `<CID of ${cid.bytes.length} bytes, multihash 0x${cid.multihash.code.toString(16)}>`
}
const MAX_LABELLED_CID_BYTES = 128

/** Gets a block from a store and checks it against its CID, whatever the store did. */
export async function getVerifiedBlock (store: Store, cid: CID, options?: AbortOptions): Promise<Uint8Array> {
  const bytes = await store.getBlock(cid, options)
  if (!(await verifyBlock(cid, bytes))) throw new IntegrityError(`block ${cidLabel(cid)} does not match its CID`)
  return bytes
}

/**
 * A CARv1 of `blocks` (in the order given) with `roots` (default: the first block), written into one
 * exactly sized buffer. Hubs, exports and uploads all write CARs through this.
 */
export function encodeCar (blocks: Block[], roots: CID[] = blocks.length > 0 ? [(blocks[0] as Block).cid] : []): Uint8Array<ArrayBuffer> {
  const headerSize = headerLength({ roots })
  const size = blocks.reduce((n, b) => n + blockLength(b), headerSize)
  const writer = createWriter(new ArrayBuffer(size), { roots, headerSize })
  for (const block of blocks) writer.write(block)
  return writer.close() as Uint8Array<ArrayBuffer>
}

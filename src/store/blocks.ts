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
import { equals } from 'multiformats/bytes'
import { IntegrityError } from '../errors.js'
import { encodeDagCbor } from './cbor.js'
import type { AbortOptions, Block, Store } from './interface.js'

/** The bitswap limit: no block UserSpace writes or accepts is larger. */
export const MAX_BLOCK_BYTES = 1024 * 1024

export async function rawBlock (bytes: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

export async function cborBlock (value: unknown): Promise<Block> {
  // the direct encoder writes the same bytes for the format's own shapes, at a fraction of the cost
  const bytes = encodeDagCbor(value) ?? dagCbor.encode(value)
  return { cid: CID.createV1(dagCbor.code, await sha256.digest(bytes)), bytes }
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
  const digest = await sha256.digest(bytes)
  if (!equals(digest.digest, cid.multihash.digest)) return false
  verified.set(bytes, digest.digest)
  return true
}

/** Gets a block from a store and checks it against its CID, whatever the store did. */
export async function getVerifiedBlock (store: Store, cid: CID, options?: AbortOptions): Promise<Uint8Array> {
  const bytes = await store.getBlock(cid, options)
  if (!(await verifyBlock(cid, bytes))) throw new IntegrityError(`block ${cid.toString()} does not match its CID`)
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

/**
 * The root block of a space version (dag-cbor, plaintext) and the owner binding it carries. The
 * root is what an IPNS record points at; from it anyone can walk history (`parents`), read the public
 * section, see how many private buckets there are (not what is in them) and check which wallet
 * address owns the space — without learning any secret.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { FormatError, SignerMismatchError } from '../errors.js'
import { recoverPersonalSigner, checksumAddress } from '../crypto/eip191.js'
import { FORMAT_VERSION, ownerStatement } from '../crypto/keys.js'
import { cborBlock } from '../store/blocks.js'
import type { Block } from '../store/interface.js'

export interface OwnerBinding {
  /** EIP-55 wallet address */
  address: string
  /** 65-byte personal_sign signature over `ownerStatement(address, name, issuedAt)` */
  signature: Uint8Array
  /**
   * When the binding was signed (ms since the epoch): a version 2 binding, which replaces older ones
   * on hubs. Absent in version 1 bindings (first binding wins).
   */
  issuedAt?: number
}

export interface Root {
  version: number
  /** equals the IPNS record's sequence */
  sequence: number
  /** the root(s) this version was made from: one for a plain write, two or more after a merge */
  parents: CID[]
  /** milliseconds since the epoch */
  updatedAt: number
  /** the id of the device that wrote this version */
  device: string
  /** the plaintext public section (dag-cbor), or null when empty */
  public: CID | null
  /** the encrypted private buckets (raw blocks), in bucket order */
  private: CID[]
  owner: OwnerBinding
}

export async function encodeRoot (root: Root): Promise<Block> {
  return cborBlock({
    version: root.version,
    sequence: root.sequence,
    parents: root.parents,
    updatedAt: root.updatedAt,
    device: root.device,
    public: root.public,
    private: root.private,
    // A version 1 binding encodes exactly as before (no `issuedAt` key), so its root CID is unchanged.
    owner: root.owner.issuedAt === undefined
      ? { address: root.owner.address, signature: root.owner.signature }
      : { address: root.owner.address, signature: root.owner.signature, issuedAt: root.owner.issuedAt }
  })
}

/** Decodes and checks the shape of a root block; anything else is a FormatError. */
export function decodeRoot (bytes: Uint8Array): Root {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new FormatError(`root block is not dag-cbor: ${(err as Error).message}`)
  }
  if (typeof value !== 'object' || value === null) throw new FormatError('root block is not a map')
  const r = value as Record<string, unknown>
  if (r.version !== FORMAT_VERSION) throw new FormatError(`root block has unknown format version ${String(r.version)}`)
  const isCid = (x: unknown): x is CID => CID.asCID(x) !== null
  const owner = r.owner as Record<string, unknown> | undefined
  if (
    !Number.isSafeInteger(r.sequence) || (r.sequence as number) < 0 ||
    !Array.isArray(r.parents) || !r.parents.every(isCid) ||
    !Number.isSafeInteger(r.updatedAt) ||
    typeof r.device !== 'string' ||
    !(r.public === null || isCid(r.public)) ||
    !Array.isArray(r.private) || !r.private.every(isCid) ||
    typeof owner !== 'object' || owner === null ||
    typeof owner.address !== 'string' || !(owner.signature instanceof Uint8Array) ||
    !(owner.issuedAt === undefined || (Number.isSafeInteger(owner.issuedAt) && (owner.issuedAt as number) >= 0))
  ) {
    throw new FormatError('root block does not have the shape of a version 1 root')
  }
  // Keys are placed in bucket `hash & (count - 1)`: any other count than 0 or a power of two would
  // put keys in buckets the writer never sealed them in.
  const buckets = r.private.length
  if ((buckets & (buckets - 1)) !== 0) {
    throw new FormatError(`root block has ${buckets} private buckets; a version 1 root has 0 or a power of two`)
  }
  return {
    version: r.version,
    sequence: r.sequence as number,
    parents: r.parents.map(c => CID.asCID(c) as CID),
    updatedAt: r.updatedAt as number,
    device: r.device,
    public: r.public === null ? null : CID.asCID(r.public),
    private: r.private.map(c => CID.asCID(c) as CID),
    owner: owner.issuedAt === undefined
      ? { address: owner.address, signature: owner.signature }
      : { address: owner.address, signature: owner.signature, issuedAt: owner.issuedAt as number }
  }
}

/**
 * Checks the owner binding of a root published under `name` and returns the owner's address.
 * Throws SignerMismatchError when the signature is not the address's, InvalidSignatureError when it
 * is malformed.
 */
export function verifyOwner (owner: OwnerBinding, name: string): string {
  let address: string
  try {
    address = checksumAddress(owner.address)
  } catch {
    throw new FormatError('owner binding has a malformed address')
  }
  const signer = recoverPersonalSigner(ownerStatement(address, name, owner.issuedAt), owner.signature)
  if (signer.address !== address) {
    throw new SignerMismatchError(`owner binding of ${name} is signed by ${signer.address}, not by ${address}`)
  }
  return address
}

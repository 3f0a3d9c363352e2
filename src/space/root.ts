/**
 * The root block of a space version (dag-cbor, plaintext), the "current" node under it, and the
 * owner binding block the current node links. The root is what an IPNS record points at; from it
 * anyone can walk history (`parents`) and check which wallet address owns the space — without
 * learning any secret. Everything the version holds (owner binding, public profile, its clock, the
 * bucket index tree) sits under one link, `current`, so that one Trustless Gateway request for the
 * path `<root>/current` returns exactly the current version and no history.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as json from 'multiformats/codecs/json'
import * as raw from 'multiformats/codecs/raw'
import { FormatError, SignerMismatchError } from '../errors.js'
import { recoverPersonalSigner, checksumAddress } from '../crypto/eip191.js'
import { FORMAT_VERSION, ownerStatement } from '../crypto/keys.js'
import { CURRENT_VERSION_FIELD, currentVersionPath } from '../protocol.js'
import { cborBlock, cidString } from '../store/blocks.js'
import { decodeIndexNode, isBucketCount, treeWidths } from './tree.js'
import type { Block } from '../store/interface.js'

/**
 * The path of a version's current state under its root, and the Trustless Gateway request (path,
 * `format=car`, `dag-scope=all`) that returns the root and every block of that state — public
 * profile, clock, index nodes, buckets — and nothing of the history. Stores fetch a version with it.
 */
export function currentVersionRequest (root: CID): string {
  return currentVersionPath(root.toString())
}

export { CURRENT_VERSION_FIELD }

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
  /**
   * the public profile (plain JSON), the same link as `current.public`: here so that any IPFS tool
   * reads it at `ipns://<name>/public`
   */
  public: CID | null
  /** the version's state (a `Current` node, dag-cbor), which links the owner binding */
  current: CID
}

/** A version's state: `{ buckets, private, public, clock, owner, totals? }`, the node under `root.current`. */
export interface Current {
  /** the private bucket count: 0 or a power of two up to MAX_BUCKETS */
  buckets: number
  /** the top of the bucket index tree (the bucket itself when there is one), null when there are none */
  private: CID | null
  /** the public profile, a plain JSON document (codec json), null when the public section is empty */
  public: CID | null
  /** what merging the profile needs (dag-cbor stamps, tombstones included); null exactly when `public` is */
  clock: CID | null
  /**
   * The bucket whose first line carries the private section's totals (entry count, size, highest
   * stamp), so that an open decrypts that bucket alone; present exactly when there are 2 buckets or more.
   */
  totals?: number
  /**
   * The owner binding (a dag-cbor block, see `encodeOwner`): a link, since the binding changes only
   * when the owner signs a new one, while every version writes a new current node (148 bytes a
   * version, inline). Under the current node, so that the one request that fetches a version's
   * state (`<root>/current`, every block below) brings it too.
   */
  owner: CID
}

export async function encodeCurrent (current: Current): Promise<Block> {
  // keys in DAG-CBOR's order (shorter first, then bytewise), which the encoder then need not sort
  return cborBlock(current.totals === undefined
    ? { clock: current.clock, owner: current.owner, public: current.public, buckets: current.buckets, private: current.private }
    : { clock: current.clock, owner: current.owner, public: current.public, totals: current.totals, buckets: current.buckets, private: current.private })
}

/** A dag-cbor block's value; FormatError, naming `what`, when it is not dag-cbor. */
function cborValue (bytes: Uint8Array, what: string): unknown {
  try {
    return dagCbor.decode(bytes)
  } catch (err) {
    throw new FormatError(`${what} is not dag-cbor`, { cause: err })
  }
}

/** The owner binding block (dag-cbor): `{ address, issuedAt?, signature }`. */
export async function encodeOwner (owner: OwnerBinding): Promise<Block> {
  // A version 1 binding has no `issuedAt` key. Keys in DAG-CBOR's order.
  return cborBlock(owner.issuedAt === undefined
    ? { address: owner.address, signature: owner.signature }
    : { address: owner.address, issuedAt: owner.issuedAt, signature: owner.signature })
}

/** Decodes and checks the shape of an owner binding block (not its signature: see `verifyOwner`). */
export function decodeOwner (bytes: Uint8Array): OwnerBinding {
  const owner = cborValue(bytes, 'owner binding') as Record<string, unknown> | null
  if (
    typeof owner !== 'object' || owner === null ||
    typeof owner.address !== 'string' || !(owner.signature instanceof Uint8Array) ||
    !(owner.issuedAt === undefined || (Number.isSafeInteger(owner.issuedAt) && (owner.issuedAt as number) >= 0))
  ) {
    throw new FormatError('owner binding does not have the shape of one')
  }
  return owner.issuedAt === undefined
    ? { address: owner.address, signature: owner.signature }
    : { address: owner.address, signature: owner.signature, issuedAt: owner.issuedAt as number }
}

/** Decodes and checks a current node: link codecs, bucket count, and links present exactly when they must be. */
export function decodeCurrent (bytes: Uint8Array): Current {
  const c = cborValue(bytes, 'current node') as Record<string, unknown> | null
  const link = (x: unknown, code: number): CID | null | undefined => {
    if (x === null) return null
    const cid = CID.asCID(x)
    return cid !== null && cid.version === 1 && cid.code === code ? cid : undefined
  }
  if (typeof c !== 'object' || c === null || !isBucketCount(c.buckets)) throw new FormatError('current node does not have the shape of a version 2 state')
  const buckets = c.buckets
  const priv = link(c.private, buckets === 1 ? raw.code : dagCbor.code)
  const pub = link(c.public, json.code)
  const clock = link(c.clock, dagCbor.code)
  const owner = link(c.owner, dagCbor.code)
  if (priv === undefined || pub === undefined || clock === undefined || (priv === null) !== (buckets === 0) || (pub === null) !== (clock === null)) {
    throw new FormatError('current node does not have the shape of a version 2 state')
  }
  if (owner === undefined || owner === null) throw new FormatError('current node does not link an owner binding')
  if (c.totals === undefined) return { buckets, private: priv, public: pub, clock, owner }
  if (buckets < 2 || !Number.isSafeInteger(c.totals) || (c.totals as number) < 0 || (c.totals as number) >= buckets) {
    throw new FormatError(`current node names bucket ${String(c.totals)} for the totals of ${buckets} buckets`)
  }
  return { buckets, private: priv, public: pub, clock, owner, totals: c.totals as number }
}

/**
 * Every block of the state under `current` (the current node, owner binding, profile, clock, index
 * nodes and buckets), read through `get` and shape-checked on the way. A CID in `seen` is skipped with its
 * whole subtree (a walk of an older version that shares it took it already); taken CIDs are added.
 */
export async function currentBlocks (current: CID, get: (cid: CID) => Promise<Uint8Array>, seen = new Set<string>()): Promise<Block[]> {
  const out: Block[] = []
  const take = async (cid: CID): Promise<Uint8Array | undefined> => {
    const key = cidString(cid)
    if (seen.has(key)) return undefined
    seen.add(key)
    const bytes = await get(cid)
    out.push({ cid, bytes })
    return bytes
  }
  const node = await take(current)
  if (node === undefined) return out
  const state = decodeCurrent(node)
  for (const cid of [state.owner, state.public, state.clock]) if (cid !== null) await take(cid)
  if (state.private === null) return out
  const widths = treeWidths(state.buckets)
  let level: CID[] = [state.private]
  for (let d = 0; d < widths.length - 1; d++) {
    const per = (widths[d + 1] as number) / (widths[d] as number)
    const next: CID[] = []
    for (const cid of level) {
      const bytes = await take(cid)
      if (bytes !== undefined) next.push(...decodeIndexNode(bytes, per, d + 2 === widths.length))
    }
    level = next
  }
  for (const cid of level) await take(cid)
  return out
}

/**
 * The owner binding of the version at `root` (its root, current node and binding block, read
 * through `get`, which must check each block against its CID), shape-checked, not verified.
 */
export async function versionOwner (root: CID, get: (cid: CID) => Promise<Uint8Array>): Promise<OwnerBinding> {
  const r = decodeRoot(await get(root))
  const current = decodeCurrent(await get(r.current))
  checkCurrent(r, current)
  return decodeOwner(await get(current.owner))
}

/** Throws FormatError unless the root's `public` link is its current node's. */
export function checkCurrent (root: Root, current: Current): void {
  if ((root.public === null) !== (current.public === null) || (root.public !== null && !root.public.equals(current.public))) {
    throw new FormatError('the root and its current node link different public profiles')
  }
}

export async function encodeRoot (root: Root): Promise<Block> {
  // keys in DAG-CBOR's order (shorter first, then bytewise), which the encoder then need not sort
  return cborBlock({
    device: root.device,
    public: root.public,
    current: root.current,
    parents: root.parents,
    version: root.version,
    sequence: root.sequence,
    updatedAt: root.updatedAt
  })
}

/** Decodes and checks the shape of a root block; anything else is a FormatError. */
export function decodeRoot (bytes: Uint8Array): Root {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new FormatError(`root block is not dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  if (typeof value !== 'object' || value === null) throw new FormatError('root block is not a map')
  const r = value as Record<string, unknown>
  if (r.version === 1) throw new FormatError('root block is in storage format 1, which this version no longer reads (format 2 replaced it before any release)')
  if (r.version !== FORMAT_VERSION) throw new FormatError(`root block has unknown format version ${String(r.version)}`)
  const isCid = (x: unknown): x is CID => CID.asCID(x) !== null
  if (
    !Number.isSafeInteger(r.sequence) || (r.sequence as number) < 0 ||
    !Array.isArray(r.parents) || !r.parents.every(isCid) ||
    !Number.isSafeInteger(r.updatedAt) ||
    typeof r.device !== 'string' ||
    !isCid(r.current) || CID.asCID(r.current)?.code !== dagCbor.code ||
    !(r.public === null || (isCid(r.public) && CID.asCID(r.public)?.code === json.code))
  ) {
    throw new FormatError('root block does not have the shape of a version 2 root')
  }
  return {
    version: r.version,
    sequence: r.sequence as number,
    parents: r.parents.map(c => CID.asCID(c) as CID),
    updatedAt: r.updatedAt as number,
    device: r.device,
    public: r.public === null ? null : CID.asCID(r.public),
    current: CID.asCID(r.current) as CID
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

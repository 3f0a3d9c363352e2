/**
 * The per-name quota: the bytes the current version of a record makes the hub keep (its root and
 * the state under its `current` link: owner binding, public profile and clock, index nodes, private
 * buckets), summed with one bounded walk when the record is PUT
 * and refused (413) over the limit. Older versions are not refused here: retention (gc.ts) keeps as
 * many as fit in the same quota.
 */
import { TooLargeError } from '../errors.js'
import { decodeRoot } from '../space/root.js'
import { walkDag } from './walk.js'
import type { HubBlocks } from './blocks.js'
import type { Walked } from './walk.js'
import type { Root } from '../space/root.js'
import type { CID } from 'multiformats/cid'

/** What a quota walk reads: the hub's blocks, or those plus the blocks of a publish not stored yet. */
export type BlockSource = Pick<HubBlocks, 'localBlock' | 'blockSize' | 'walkCaps'>

/**
 * The blocks of the version under `cid` that the hub has, within the walk caps. `root` is the
 * decoded root block, or undefined when `rootBytes` is not a UserSpace root (then the whole dag-cbor
 * DAG below it counts, as for any IPNS record).
 */
export async function versionBlocks (blocks: BlockSource, cid: CID, rootBytes: Uint8Array, root: Root | undefined, max: number): Promise<Walked> {
  const io = { read: async (c: CID) => blocks.localBlock(c), size: async (c: CID) => blocks.blockSize(c) }
  if (root === undefined) return walkDag([cid], io, blocks.walkCaps(max))
  const below = stateLinks(root)
  const walked = await walkDag(below, io, blocks.walkCaps(Math.max(0, max - rootBytes.byteLength)))
  return { ...walked, cids: [cid, ...walked.cids], sizes: [rootBytes.byteLength, ...walked.sizes], bytes: walked.bytes + rootBytes.byteLength }
}

/**
 * The links below a root that hold its version's state. `parents` (history) is left out: that is
 * retention's business (gc.ts). `public` is the state's own profile (counted once), unless a root
 * links another.
 */
export function stateLinks (root: Root): CID[] {
  return root.public === null ? [root.current] : [root.current, root.public]
}

/** Throws TooLargeError when the version under `cid` is over `max` bytes or a walk cap. */
export async function checkSpaceQuota (blocks: BlockSource, name: string, cid: CID, rootBytes: Uint8Array, root: Root | undefined, max: number): Promise<Walked> {
  const walked = await versionBlocks(blocks, cid, rootBytes, root, max)
  if (walked.over === 'bytes') throw new TooLargeError(`${name} would store over the ${max}-byte limit per name`)
  if (walked.over !== undefined) throw new TooLargeError(`${name} has over ${walked.over === 'links' ? blocks.walkCaps(max).maxLinks : blocks.walkCaps(max).maxBlocks} ${walked.over}, the limit of one walk`)
  return walked
}

/**
 * Largest block the hub decodes as a UserSpace root. A format 2 root does not grow with the space
 * (~300 bytes, plus 41 per parent after a merge); decoding builds a CID object per link, so a 1 MiB
 * "root" of 24 000 links would hold the event loop.
 */
export const MAX_ROOT_BYTES = 16 * 1024

/** The UserSpace root in `bytes`, or undefined when it is not one (or too large to be one). */
export function rootOf (bytes: Uint8Array): Root | undefined {
  if (bytes.byteLength > MAX_ROOT_BYTES) return undefined
  try {
    return decodeRoot(bytes)
  } catch {
    return undefined
  }
}

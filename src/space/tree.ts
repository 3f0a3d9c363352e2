/**
 * The bucket index tree (format 2): a space's private buckets hang under a tree of small dag-cbor
 * index nodes of fixed fan-out, like one level of a HAMT per node, so that a single-key update
 * rewrites one bucket plus the index nodes on its path — bytes proportional to the change, not to
 * the bucket count. The shape follows from the bucket count alone (a power of two): a bucket's
 * index, written in base INDEX_FANOUT, is its path from the top. Readers check every node's shape
 * (its length and its links' codecs at its depth) and skip subtrees whose CID they already hold.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { FormatError } from '../errors.js'
import { canonicalLinkList, cborBlock, cidLabel, linksBlockNow } from '../store/blocks.js'
import type { Block } from '../store/interface.js'

/**
 * Children per index node. Four keeps the bytes an update rewrites near their minimum (each level
 * costs fan-out × 41 bytes of links) at six levels for the largest layout.
 */
export const INDEX_FANOUT = 4
/**
 * The largest bucket count: a version is then at most 4 096 buckets + 1 365 index nodes + 4 blocks,
 * inside a hub's default walk cap of 8 192 blocks.
 */
export const MAX_BUCKETS = 4096

/** The widths of a tree of `count` buckets: `widths[d]` items at depth d, the buckets last (`widths[depth]`). */
export function treeWidths (count: number): number[] {
  if (!isBucketCount(count) || count === 0) throw new RangeError(`a bucket count is a power of two from 1 to ${MAX_BUCKETS}, got ${count}`)
  const widths = [count]
  while ((widths[0] as number) > 1) widths.unshift(Math.max(1, (widths[0] as number) / INDEX_FANOUT))
  return widths
}

export function isBucketCount (n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) <= MAX_BUCKETS && ((n as number) & ((n as number) - 1)) === 0
}

/**
 * A stored tree: the CIDs at every depth, top (one CID: what the current node links) to buckets.
 * With one bucket the top is the bucket itself.
 */
export type TreeLevels = CID[][]

/**
 * Re-encodes the index nodes above the buckets at `changed` (all of them when `previous` is
 * undefined) given the new bucket CIDs, and returns the new levels and the new index blocks.
 */
export async function encodeTree (buckets: CID[], changed: Iterable<number>, previous: TreeLevels | undefined): Promise<{ levels: TreeLevels, blocks: Block[] }> {
  const widths = treeWidths(buckets.length)
  const depth = widths.length - 1
  const levels: TreeLevels = new Array(depth + 1)
  levels[depth] = buckets
  const blocks: Block[] = []
  let dirty = previous === undefined ? null : [...new Set(changed)]
  for (let d = depth - 1; d >= 0; d--) {
    const below = levels[d + 1] as CID[]
    const per = below.length / (widths[d] as number)
    const level = previous === undefined ? new Array<CID>(widths[d] as number) : (previous[d] as CID[]).slice()
    const nodes = dirty === null ? [...Array(widths[d] as number).keys()] : parentsOf(dirty, per)
    const encoded: Block[] = []
    // one at a time: each is hashed synchronously where the runtime can (no promise per node)
    for (const j of nodes) {
      const links = below.slice(j * per, (j + 1) * per)
      encoded.push(linksBlockNow(links) ?? await cborBlock(links))
    }
    nodes.forEach((j, n) => { level[j] = (encoded[n] as Block).cid })
    blocks.push(...encoded)
    levels[d] = level
    dirty = dirty === null ? null : nodes
  }
  return { levels, blocks }
}

/** What a version changes in a stored tree: per depth (as in TreeLevels), the new CID at each changed place. */
export type TreeChanges = Array<Map<number, CID>>

/**
 * Re-encodes the index nodes above the buckets in `changed` (bucket index → new CID) over the
 * stored tree `previous`, which it leaves as it is; `applyTreeChanges` writes the result into it
 * once the version is stored. Copying the levels instead cost ~44 KB per `set` at 4 096 buckets,
 * which the garbage collector then paid for.
 */
export async function encodeTreeChanges (previous: TreeLevels, changed: Map<number, CID>): Promise<{ top: CID, changes: TreeChanges, blocks: Block[] }> {
  const depth = previous.length - 1
  const changes: TreeChanges = new Array(depth + 1)
  changes[depth] = changed
  const blocks: Block[] = []
  let dirty = [...changed.keys()]
  for (let d = depth - 1; d >= 0; d--) {
    const below = previous[d + 1] as CID[]
    const belowChanges = changes[d + 1] as Map<number, CID>
    const per = below.length / (previous[d] as CID[]).length
    const level = new Map<number, CID>()
    const nodes = parentsOf(dirty, per)
    for (const j of nodes) {
      const links: CID[] = []
      for (let k = j * per; k < (j + 1) * per; k++) links.push(belowChanges.get(k) ?? below[k] as CID)
      const block = linksBlockNow(links) ?? await cborBlock(links)
      level.set(j, block.cid)
      blocks.push(block)
    }
    changes[d] = level
    dirty = nodes
  }
  const top = (changes[0] as Map<number, CID>).get(0) ?? (previous[0] as CID[])[0] as CID
  return { top, changes, blocks }
}

/** Writes `changes` (from encodeTreeChanges over `levels`) into `levels`. */
export function applyTreeChanges (levels: TreeLevels, changes: TreeChanges): void {
  changes.forEach((level, d) => { for (const [i, cid] of level) (levels[d] as CID[])[i] = cid })
}

/** Reads a block: at once when its bytes are at hand (a version fetched whole), else later. */
export type BlockGetter = (cid: CID) => Uint8Array | Promise<Uint8Array>

/**
 * Each of `cids` through `get`, in order, with no promise for the blocks it has at hand: an open of
 * 100 000 keys asks for 5 461 of them, almost always all at hand.
 */
export async function getEach (cids: CID[], get: BlockGetter): Promise<Uint8Array[]> {
  const out = new Array<Uint8Array>(cids.length)
  const waits: Array<Promise<void>> = []
  try {
    cids.forEach((cid, n) => {
      const got = get(cid)
      if (got instanceof Uint8Array) out[n] = got
      else waits.push(got.then(bytes => { out[n] = bytes }))
    })
  } catch (err) {
    // Reads already under way settle unobserved.
    for (const wait of waits) wait.catch(() => {})
    throw err
  }
  if (waits.length > 0) await Promise.all(waits)
  return out
}

/** The distinct parents (index / per) of `indexes`, in order of first appearance. */
function parentsOf (indexes: number[], per: number): number[] {
  if (indexes.length === 1) return [Math.floor((indexes[0] as number) / per)]
  const out: number[] = []
  const seen = new Set<number>()
  for (const i of indexes) {
    const j = Math.floor(i / per)
    if (!seen.has(j)) { seen.add(j); out.push(j) }
  }
  return out
}

/**
 * Reads the tree under `top` for `count` buckets, fetching index nodes level by level (each level's
 * nodes at once) and checking their shape. A subtree whose CID equals the one at the same place in
 * `known` (a tree of the same count) is not fetched. Returns the full levels.
 */
export async function readTree (top: CID, count: number, get: BlockGetter, known?: TreeLevels): Promise<TreeLevels> {
  const widths = treeWidths(count)
  const depth = widths.length - 1
  const same = known !== undefined && known.length === depth + 1 && known[depth]?.length === count ? known : undefined
  checkLink(top, depth === 0)
  const levels: TreeLevels = [[top]]
  for (let d = 0; d < depth; d++) {
    const above = levels[d] as CID[]
    const per = (widths[d + 1] as number) / (widths[d] as number)
    const level = same === undefined ? new Array<CID>(widths[d + 1] as number) : [...(same[d + 1] as CID[])]
    const fetch = above.map((cid, j) => same?.[d]?.[j]?.equals(cid) === true ? -1 : j).filter(j => j >= 0)
    const nodes = await getEach(fetch.map(j => above[j] as CID), get)
    fetch.forEach((j, n) => {
      const links = decodeIndexNode(nodes[n] as Uint8Array, per, d + 1 === depth)
      links.forEach((cid, k) => { level[j * per + k] = cid })
    })
    levels.push(level)
  }
  return levels
}

/** Decodes one index node: exactly `length` links, raw buckets at the last level, index nodes above. */
export function decodeIndexNode (bytes: Uint8Array, length: number, leaves: boolean): CID[] {
  const links = canonicalLinkList(bytes)
  if (links !== undefined && links.length === length) return links.map(link => checkLink(link, leaves))
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new FormatError('bucket index node is not dag-cbor', { cause: err })
  }
  if (!Array.isArray(value) || value.length !== length) {
    throw new FormatError(`bucket index node has ${Array.isArray(value) ? `${value.length} links` : 'another shape'}; ${length} links expected at its depth`)
  }
  return value.map(link => checkLink(link, leaves))
}

function checkLink (link: unknown, leaf: boolean): CID {
  const cid = CID.asCID(link)
  if (cid === null) throw new FormatError('bucket index node holds something other than links')
  if (cid.version !== 1 || cid.code !== (leaf ? raw.code : dagCbor.code)) {
    throw new FormatError(`bucket index link ${cidLabel(cid)} should be ${leaf ? 'a raw bucket' : 'a dag-cbor index node'} at its depth`)
  }
  return cid
}

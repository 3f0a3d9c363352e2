/**
 * The per-name quota: the bytes a record makes the hub keep (its root, the public DAG below it and
 * its private buckets), summed when the record is PUT and refused (413) over the limit.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { TooLargeError } from '../errors.js'
import { linksOf } from './blocks.js'
import type { HubBlocks } from './blocks.js'
import type { Root } from '../space/root.js'
import type { CID } from 'multiformats/cid'

/**
 * Throws TooLargeError when the space under `cid` is over `max` bytes. `root` is the decoded root
 * block, or undefined when `rootBytes` is not a UserSpace root (then the whole dag-cbor DAG counts).
 */
export async function checkSpaceQuota (blocks: HubBlocks, name: string, cid: CID, rootBytes: Uint8Array, root: Root | undefined, max: number): Promise<void> {
  let total: number
  if (root === undefined) {
    total = await dagBytes(blocks, [cid], max)
  } else {
    total = rootBytes.byteLength
    if (root.public !== null) total += await dagBytes(blocks, [root.public], max)
    for (const bucket of root.private) total += await blocks.blockSize(bucket)
  }
  if (total > max) throw new TooLargeError(`${name} would store ${total} bytes, over the ${max}-byte limit per name`)
}

/** Sum of the sizes of the blocks (present locally) of the dag-cbor DAG under `roots`. */
export async function dagBytes (blocks: HubBlocks, roots: CID[], max: number): Promise<number> {
  let total = 0
  const seen = new Set<string>()
  const queue = [...roots]
  while (queue.length > 0 && total <= max) {
    const cid = queue.shift() as CID
    const key = cid.toString()
    if (seen.has(key)) continue
    seen.add(key)
    if (cid.code !== dagCbor.code) {
      total += await blocks.blockSize(cid)
      continue
    }
    const bytes = await blocks.localBlock(cid)
    if (bytes === undefined) continue
    total += bytes.byteLength
    queue.push(...linksOf(bytes))
  }
  return total
}

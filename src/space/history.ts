/**
 * Walking a space's history: from a root, through `parents`, breadth first, each version once. Roots
 * are plaintext, so anyone holding the blocks can list versions; only the owner can read them.
 */
import { getVerifiedBlock } from '../store/blocks.js'
import { decodeRoot } from './root.js'
import type { AbortOptions, Store } from '../store/interface.js'
import type { CID } from 'multiformats/cid'

export interface VersionInfo {
  root: CID
  sequence: number
  updatedAt: number
  device: string
  parents: CID[]
}

/** Up to `limit` versions reachable from `root`, newest (highest sequence) first. */
export async function listVersions (store: Store, root: CID | null, limit = 100, options?: AbortOptions): Promise<VersionInfo[]> {
  const out: VersionInfo[] = []
  const seen = new Set<string>()
  let frontier: CID[] = root === null ? [] : [root]
  if (root !== null) seen.add(root.toString())
  while (frontier.length > 0 && out.length < limit) {
    const versions = await Promise.all(frontier.map(async cid => ({ cid, version: decodeRoot(await getVerifiedBlock(store, cid, options)) })))
    const next: CID[] = []
    for (const { cid, version } of versions) {
      out.push({ root: cid, sequence: version.sequence, updatedAt: version.updatedAt, device: version.device, parents: version.parents })
      for (const p of version.parents) if (!seen.has(p.toString())) { seen.add(p.toString()); next.push(p) }
    }
    frontier = next
  }
  return out.sort((a, b) => b.sequence - a.sequence || b.updatedAt - a.updatedAt).slice(0, limit)
}

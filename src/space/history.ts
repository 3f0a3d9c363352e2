/**
 * Walking a space's history: from a root, through `parents`, breadth first, each version once. Roots
 * are plaintext, so anyone holding the blocks can list versions; only the owner can read them.
 * Hubs keep older versions only within a space's quota, so a walk can reach a parent that is gone:
 * the version that names it is marked `truncated` and the walk goes on with what is there.
 */
import { NotFoundError } from '../errors.js'
import { cidString, getVerifiedBlock } from '../store/blocks.js'
import { decodeRoot } from './root.js'
import type { AbortOptions, Store } from '../store/interface.js'
import type { CID } from 'multiformats/cid'

export interface VersionInfo {
  root: CID
  sequence: number
  updatedAt: number
  device: string
  parents: CID[]
  /** True when an older version this one builds on is no longer stored (history was trimmed). */
  truncated?: boolean
}

/** Up to `limit` versions reachable from `root`, newest (highest sequence) first. */
export async function listVersions (store: Store, root: CID | null, limit = 100, options?: AbortOptions): Promise<VersionInfo[]> {
  const out: VersionInfo[] = []
  const seen = new Set<string>()
  const missing = new Set<string>()
  let frontier: CID[] = root === null ? [] : [root]
  if (root !== null) seen.add(cidString(root))
  while (frontier.length > 0 && out.length < limit) {
    const fetched = await Promise.all(frontier.map(async cid => {
      try {
        return { cid, version: decodeRoot(await getVerifiedBlock(store, cid, options)) }
      } catch (err) {
        // The current version must be there; an older one may have been dropped by retention.
        if (err instanceof NotFoundError && cid !== root) { missing.add(cidString(cid)); return undefined }
        throw err
      }
    }))
    const next: CID[] = []
    for (const item of fetched) {
      if (item === undefined) continue
      const { cid, version } = item
      out.push({ root: cid, sequence: version.sequence, updatedAt: version.updatedAt, device: version.device, parents: version.parents })
      for (const p of version.parents) if (!seen.has(cidString(p))) { seen.add(cidString(p)); next.push(p) }
    }
    frontier = next
  }
  for (const v of out) if (v.parents.some(p => missing.has(cidString(p)))) v.truncated = true
  return out.sort((a, b) => b.sequence - a.sequence || b.updatedAt - a.updatedAt).slice(0, limit)
}

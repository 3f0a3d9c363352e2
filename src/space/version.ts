/**
 * Reading one past version: its root, owner binding and both sections, decrypted into a read-only
 * view that leaves the open space untouched.
 */
import { CID } from 'multiformats/cid'
import { InvalidInputError } from '../errors.js'
import { checkKey } from './json.js'
import { checkCurrent, decodeCurrent, decodeRoot } from './root.js'
import { PrivateSection, PublicSection } from './section.js'
import type { SpaceContext } from './context.js'
import type { Merger } from './merger.js'
import type { SpaceVersion } from './types.js'
import type { AbortOptions, Block } from '../store/interface.js'

/** Reads the version at `rootRef`, checked like a merge (blocks against CIDs, the owner binding). */
export async function readVersion (ctx: SpaceContext, merger: Merger, rootRef: CID | string, options?: AbortOptions): Promise<SpaceVersion> {
  let cid: CID
  try { cid = typeof rootRef === 'string' ? CID.parse(rootRef) : rootRef } catch { throw new InvalidInputError(`"root" expected a CID, got "${String(rootRef).slice(0, 80)}"`) }
  const root = decodeRoot(await merger.fetchBlock(cid, options))
  const current = decodeCurrent(await merger.fetchBlock(root.current, options))
  checkCurrent(root, current)
  await merger.ownerOf(current, options)
  const priv = new PrivateSection(ctx.derived.dataKey, ctx.derived.bucketKey, ctx.name)
  await priv.absorb(current.buckets, current.private, merger.blockGetter(options), current.totals)
  const pub = new PublicSection()
  if (current.public !== null && current.clock !== null) {
    const [profile, clock] = await Promise.all([current.public, current.clock].map(async c => ({ cid: c, bytes: await merger.fetchBlock(c, options) })))
    pub.absorb(profile as Block, clock as Block)
  }
  return {
    root: cid,
    sequence: root.sequence,
    updatedAt: root.updatedAt,
    device: root.device,
    parents: root.parents,
    get: (key) => priv.get(checkKey(key)),
    getAll: () => priv.getAll(),
    public: { get: (key) => pub.get(checkKey(key)), getAll: () => pub.getAll() }
  }
}

/**
 * Retention for the spaces a helia store publishes: after a publish, the versions of that space the
 * hub's retention would keep (the current one and as many older ones as fit, gc.ts `markName` with
 * the hub's defaults) stay whole, and the blocks that only older versions reference are deleted
 * from helia's blockstore. It walks with the hub's walk (walk.ts, quota.ts `stateLinks`) over the
 * local blockstore only, never the network.
 *
 * Until a space has more versions here than the count kept, a pass reads only their roots and
 * deletes nothing (the byte budget then waits too).
 *
 * What may go: blocks reachable from a dropped version and from no kept one, and of those only
 * blocks that can belong to no other space on the node: encrypted (raw) blocks, which carry a random
 * nonce, the dropped roots, which name the space, and dag-cbor blocks that link such a block.
 * Plaintext blocks that link none (a public profile, a clock) may be shared with another space's
 * identical profile, and stay. A crash between steps leaves every kept version whole (no kept block
 * is ever a candidate); the dropped roots go last, so the next pass still finds what is left below them.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { markName } from '../hub/gc.js'
import { cidString, multihashKey } from './blocks.js'
import { DEFAULT_HUB_MAX_DAG_BLOCKS, DEFAULT_HUB_MAX_SPACE_BYTES, DEFAULT_MAX_DAG_LINKS, DEFAULT_MAX_RETAINED_VERSIONS } from '../hub/options.js'
import { rootOf, stateLinks, versionBlocks } from '../hub/quota.js'
import { walkDag } from '../hub/walk.js'
import type { GcReport } from '../hub/gc.js'
import type { HubBlocks } from '../hub/blocks.js'
import type { WalkCaps } from '../hub/walk.js'
import type { Blockstore } from 'interface-blockstore'

const RAW_CODE = 0x55

export interface RetentionOptions {
  /** Versions looked at, newest first. @default DEFAULT_MAX_RETAINED_VERSIONS (1 000, as a hub) */
  maxRetainedVersions?: number
  /** Bytes the kept versions may hold together. @default DEFAULT_HUB_MAX_SPACE_BYTES (64 MiB, as a hub) */
  maxSpaceBytes?: number
  /** Dropped versions handled in one pass (older ones wait for the next). @default 256 */
  maxDroppedVersions?: number
}

export interface RetentionReport {
  versionsKept: number
  versionsDropped: number
  deletedBlocks: number
}

/**
 * Deletes what the versions older than the kept ones of the space whose current root is `current`
 * alone reference. `blockstore` is helia's; only local blocks are read.
 */
export async function retainVersions (blockstore: Pick<Blockstore, 'has' | 'get' | 'delete'>, current: CID, options: RetentionOptions = {}): Promise<RetentionReport> {
  const maxSpaceBytes = options.maxSpaceBytes ?? DEFAULT_HUB_MAX_SPACE_BYTES
  const maxRetainedVersions = options.maxRetainedVersions ?? DEFAULT_MAX_RETAINED_VERSIONS
  const sizes = new Map<string, number>()
  // dag-cbor blocks (roots, index nodes: small) are read by several walks of one pass.
  const cbor = new Map<string, Uint8Array>()
  /** Blocks a walk asked for that are not here. */
  let missing = 0
  const read = async (cid: CID): Promise<Uint8Array | undefined> => {
    const key = cidString(cid)
    const cached = cbor.get(key)
    if (cached !== undefined) return cached
    if (!(await blockstore.has(cid))) { missing++; return undefined }
    const bytes = await concat(blockstore.get(cid))
    sizes.set(key, bytes.byteLength)
    if (cid.code === dagCbor.code) cbor.set(key, bytes)
    return bytes
  }
  const caps = (maxBytes: number): WalkCaps => ({ maxLinks: DEFAULT_MAX_DAG_LINKS, maxBlocks: DEFAULT_HUB_MAX_DAG_BLOCKS, maxBytes })
  const source = {
    localBlock: read,
    blockSize: async (cid: CID) => sizes.get(cidString(cid)) ?? (await read(cid))?.byteLength,
    walkCaps: caps
  } as unknown as HubBlocks

  // Nothing goes while the history here is no longer than the count kept: only the roots are read
  // (a pass over 1 000 kept versions walks each one's state, which is not free). Until then the byte
  // budget is not applied either: a device keeps its own space's history.
  const chain: CID[] = [current]
  const chained = new Set<string>([cidString(current)])
  for (let i = 0; i < chain.length && chain.length <= maxRetainedVersions; i++) {
    const bytes = await read(chain[i] as CID)
    const root = bytes === undefined ? undefined : rootOf(bytes)
    for (const parent of root?.parents ?? []) {
      if (!chained.has(cidString(parent)) && await blockstore.has(parent)) { chained.add(cidString(parent)); chain.push(parent) }
    }
  }
  if (chain.length <= maxRetainedVersions) {
    return { versionsKept: (await blockstore.has(current)) ? chain.length : 0, versionsDropped: 0, deletedBlocks: 0 }
  }

  // A current version this pass cannot walk whole (a block missing here, over a walk cap) would
  // leave kept blocks unmarked: then nothing is deleted.
  const currentBytes = await read(current)
  const currentRoot = currentBytes === undefined ? undefined : rootOf(currentBytes)
  if (currentBytes === undefined || currentRoot === undefined) return { versionsKept: 0, versionsDropped: 0, deletedBlocks: 0 }
  missing = 0
  const whole = await versionBlocks(source, current, currentBytes, currentRoot, maxSpaceBytes)
  if (whole.over !== undefined || missing > 0) return { versionsKept: 0, versionsDropped: 0, deletedBlocks: 0 }

  // The kept versions, exactly as a hub's retention keeps them.
  const live = new Set<string>()
  const report: GcReport = { names: 1, versionsKept: 0, versionsDropped: 0, liveBlocks: 0, deletedBlocks: 0, deletedBytes: 0, pendingBlocks: 0, durationMs: 0 }
  await markName(current, live, source, { maxSpaceBytes, maxRetainedVersions }, report)

  // The dropped versions still on disk: roots reached through `parents` that are not kept.
  const dropped: CID[] = []
  const queue: CID[] = [current]
  const queued = new Set<string>([cidString(current)])
  const maxDropped = options.maxDroppedVersions ?? 256
  for (let i = 0; i < queue.length && dropped.length < maxDropped; i++) {
    const cid = queue[i] as CID
    const bytes = await read(cid)
    const root = bytes === undefined ? undefined : rootOf(bytes)
    if (root === undefined) continue
    if (!live.has(multihashKey(cid))) dropped.push(cid)
    for (const parent of root.parents) {
      const key = cidString(parent)
      if (!queued.has(key)) { queued.add(key); queue.push(parent) }
    }
  }
  if (dropped.length === 0) return { versionsKept: report.versionsKept, versionsDropped: 0, deletedBlocks: 0 }

  // Their blocks that no kept version references.
  const candidates = new Map<string, CID>()
  for (const rootCid of dropped) {
    const root = rootOf(await read(rootCid) ?? new Uint8Array())
    if (root === undefined) continue
    const walked = await walkDag(stateLinks(root), { read, size: async (c) => sizes.get(cidString(c)) ?? (await read(c))?.byteLength }, caps(Number.MAX_SAFE_INTEGER))
    for (const cid of walked.cids) if (!live.has(multihashKey(cid))) candidates.set(cidString(cid), cid)
  }
  const roots = new Set(dropped.map(c => cidString(c)))

  // Of those, the ones no other space can share: raw blocks, and dag-cbor blocks that link one
  // (repeated until nothing changes, so an index node above an index node qualifies too).
  const own = new Set<string>()
  for (const [key, cid] of candidates) if (cid.code === RAW_CODE) own.add(key)
  const links = new Map<string, string[]>()
  for (const [key, cid] of candidates) {
    if (cid.code !== dagCbor.code) continue
    const bytes = await read(cid)
    links.set(key, bytes === undefined ? [] : linksOf(bytes))
  }
  for (let changed = true; changed;) {
    changed = false
    for (const [key, targets] of links) {
      if (own.has(key) || !targets.some(t => own.has(t))) continue
      own.add(key)
      changed = true
    }
  }

  let deleted = 0
  for (const key of own) {
    if (roots.has(key)) continue
    await blockstore.delete(candidates.get(key) as CID)
    deleted++
  }
  // The roots last: until they go, the next pass can still walk to anything a crash left behind.
  for (const cid of dropped) {
    await blockstore.delete(cid)
    deleted++
  }
  return { versionsKept: report.versionsKept, versionsDropped: dropped.length, deletedBlocks: deleted }
}

function linksOf (bytes: Uint8Array): string[] {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch {
    return []
  }
  const out: string[] = []
  const visit = (v: unknown): void => {
    const link = CID.asCID(v)
    if (link !== null) { out.push(cidString(link)); return }
    if (Array.isArray(v)) { for (const item of v) visit(item); return }
    if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) for (const item of Object.values(v)) visit(item)
  }
  visit(value)
  return out
}

async function concat (chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array | Promise<Uint8Array>): Promise<Uint8Array> {
  const value = await chunks
  if (value instanceof Uint8Array) return value
  const parts: Uint8Array[] = []
  let length = 0
  for await (const chunk of value) { parts.push(chunk); length += chunk.byteLength }
  const out = new Uint8Array(length)
  let offset = 0
  for (const part of parts) { out.set(part, offset); offset += part.byteLength }
  return out
}

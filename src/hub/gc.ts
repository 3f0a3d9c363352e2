/**
 * Garbage collection and retention. Mark: for every stored record, the blocks of its current
 * version (within the per-name quota and the walk caps), then older versions through the roots'
 * `parents`, newest first, while the current one and they fit in the quota together (blocks shared
 * between versions count once); the first version that does not fit is dropped with everything
 * older. Sweep: every block the API landed (storage.ts) that no kept version references and whose
 * grace period is over is deleted; the rest of the unreferenced ones are charged to their uploaders
 * again. Blocks the API did not land (the Next.ID chains, blocks bitswap peers pushed) are never
 * touched. Records accepted during a pass protect the blocks they reference, and so do uploads that
 * send them (an upload that reaches a block while it is being deleted waits, then stores it again).
 */
import { CID } from 'multiformats/cid'
import { readRecord } from '../store/record.js'
import { DEFAULT_GC_GRACE_MS, DEFAULT_MAX_RETAINED_VERSIONS, DEFAULT_HUB_MAX_SPACE_BYTES } from './options.js'
import { rootOf, versionBlocks } from './quota.js'
import { cidString, multihashKey } from '../store/blocks.js'
import type { HubBlocks } from './blocks.js'
import type { HubAppOptions } from './options.js'
import type { HubRecordStore } from './record-store.js'
import type { HubStorage, Landed } from './storage.js'

/** Blocks deleted per blockstore call. */
const DELETE_BATCH = 256

export interface GcReport {
  /** Names whose record was looked at. */
  names: number
  /** Versions kept and versions dropped by retention, all names together. */
  versionsKept: number
  versionsDropped: number
  /** Distinct blocks referenced by kept versions. */
  liveBlocks: number
  /** Landed blocks deleted, and their disk cost. */
  deletedBlocks: number
  deletedBytes: number
  /** Unreferenced landed blocks still in their grace period. */
  pendingBlocks: number
  durationMs: number
}

export interface GcDeps {
  records: HubRecordStore
  blocks: HubBlocks
  storage: HubStorage
  options: HubAppOptions
}

/** One collection pass; `nowMs` decides which grace periods are over. */
export async function collectGarbage ({ records, blocks, storage, options }: GcDeps, nowMs: number): Promise<GcReport> {
  const started = performance.now()
  const report: GcReport = { names: 0, versionsKept: 0, versionsDropped: 0, liveBlocks: 0, deletedBlocks: 0, deletedBytes: 0, pendingBlocks: 0, durationMs: 0 }
  const protect = storage.startCollection()
  try {
    const live = new Set<string>()
    for await (const { record } of records.all()) {
      report.names++
      let cid: CID | undefined
      try {
        cid = readRecord(record).cid
      } catch {
        continue
      }
      if (cid !== undefined) await markName(cid, live, blocks, options, report)
    }
    report.liveBlocks = live.size

    const grace = options.gcGraceMs ?? DEFAULT_GC_GRACE_MS
    const doomed = new Map<string, Landed>()
    const waiting = new Map<string, Landed>()
    // A block recorded twice (landed again after a crash between its deletion and its entry's)
    // keeps its newest record, whose grace period runs from when it last landed: the others are
    // forgotten, the block kept.
    const recorded = new Map<string, number>()
    const repeats: Landed[] = []
    for await (const entry of storage.entries()) {
      // By block (multihash), as the blockstore keeps and deletes them: the same bytes landed under
      // another codec are the block a kept version references, not a stray.
      const block = entry.block
      const keptAt = recorded.get(block)
      if (keptAt !== undefined) {
        const earlier = doomed.get(block) ?? waiting.get(block)
        // An older record, or one of a block that is kept anyway (referenced): this one goes.
        if (entry.atMs <= keptAt || earlier === undefined) { repeats.push(entry); continue }
        doomed.delete(block)
        waiting.delete(block)
        repeats.push(earlier)
      }
      recorded.set(block, entry.atMs)
      if (live.has(block) || protect.has(block)) continue
      if (entry.keep === true && (entry.candidates === undefined || entry.candidates.some(c => live.has(multihashKey(c)) || protect.has(multihashKey(c))))) continue
      if (nowMs - entry.atMs >= grace) doomed.set(block, entry)
      else waiting.set(block, entry)
    }
    recorded.clear()
    await storage.forget(repeats)
    const gone: Landed[] = []
    const doomedList = [...doomed.values()]
    doomed.clear()
    for (let i = 0; i < doomedList.length; i += DELETE_BATCH) {
      // A record accepted since the sweep began may reference one of them now. So may an upload
      // have sent one again (held blocks are not recorded again: see HubStorage.touch), be storing
      // one right now (it found the block held, or will look once this batch is deleted), or have
      // stored one again since the sweep read the entries (an entry left by a crash between a
      // block's deletion and its entry's names a block that was gone until then).
      const batch = doomedList.slice(i, i + DELETE_BATCH).filter(entry => {
        const keys = entry.candidates?.map(multihashKey) ?? [entry.block]
        if (!keys.some(key => protect.has(key) || storage.touchedWithin(key, nowMs, grace) || blocks.isStoring(key) || storage.landedDuringCollection(key))) return true
        waiting.set(entry.block, entry)
        return false
      })
      const cids: CID[] = []
      for (const entry of batch) {
        if (entry.candidates !== undefined) { cids.push(...entry.candidates); continue }
        try { cids.push(CID.parse(entry.cid)) } catch { /* not a CID: only its entry goes */ }
      }
      // From the checks above (no wait between): an upload that marks one of these from now on
      // waits for this deletion before it looks at what the hub holds.
      const deleted = storage.beginDeleting(cids.map(multihashKey))
      // One call per batch: helia's blockstore takes its write lock once per call.
      try {
        for await (const cid of blocks.blockstore.deleteMany(cids)) blocks.forget(cid)
      } catch {
        // Some were gone already: delete the rest one by one.
        for (const cid of cids) {
          try { await blocks.blockstore.delete(cid) } catch { /* gone already */ }
          blocks.forget(cid)
        }
      } finally {
        deleted()
      }
      for (const entry of batch) {
        gone.push(entry)
        report.deletedBytes += entry.costBytes
      }
      // Forgotten batch by batch: a crash leaves few entries naming deleted blocks.
      await storage.forget(batch)
    }
    storage.resetPending([...waiting.values()])
    storage.pruneTouched(nowMs, grace)
    report.deletedBlocks = gone.length
    report.pendingBlocks = waiting.size
  } finally {
    storage.endCollection()
  }
  report.durationMs = performance.now() - started
  return report
}

/** Marks the blocks of a name's kept versions in `live`, by `multihashKey` (helia stores run the same retention, helia-retention.ts). */
export async function markName (current: CID, live: Set<string>, blocks: HubBlocks, options: HubAppOptions, report: GcReport): Promise<void> {
  const max = options.maxSpaceBytes ?? DEFAULT_HUB_MAX_SPACE_BYTES
  const maxVersions = options.maxRetainedVersions ?? DEFAULT_MAX_RETAINED_VERSIONS
  const counted = new Set<string>()
  let total = 0
  const queue: CID[] = [current]
  const queued = new Set<string>([cidString(current)])
  for (let i = 0; i < queue.length; i++) {
    const cid = queue[i] as CID
    const isCurrent = i === 0
    if (!isCurrent && i >= maxVersions) { report.versionsDropped += queue.length - i; return }
    const bytes = await blocks.localBlock(cid)
    if (bytes === undefined) continue
    const root = rootOf(bytes)
    if (root === undefined) {
      // Not a UserSpace root: its DAG, within the quota, is all there is.
      if (isCurrent) {
        const walked = await versionBlocks(blocks, cid, bytes, undefined, max)
        for (const c of walked.cids) live.add(multihashKey(c))
        report.versionsKept++
      }
      return
    }
    const walked = await versionBlocks(blocks, cid, bytes, root, max)
    let added = 0
    const fresh: CID[] = []
    walked.cids.forEach((c, n) => {
      if (counted.has(cidString(c))) return
      fresh.push(c)
      added += walked.sizes[n] as number
    })
    if (!isCurrent && (walked.over !== undefined || total + added > max)) {
      // Retention: this version and everything older go.
      report.versionsDropped += queue.length - i
      return
    }
    for (const c of fresh) { counted.add(cidString(c)); live.add(multihashKey(c)) }
    total += added
    report.versionsKept++
    for (const parent of root.parents) {
      const key = cidString(parent)
      if (!queued.has(key)) { queued.add(key); queue.push(parent) }
    }
  }
}

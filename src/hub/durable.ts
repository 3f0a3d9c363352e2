/**
 * Durable means on disk: helpers that fsync what the hub acknowledges. LevelDB writes default to
 * `sync: false` (they survive a crash of the process, not of the machine) and blockstore-fs writes
 * a temporary file and renames it without fsync; the hub fsyncs both before its 2xx.
 */
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { NextToLast } from 'blockstore-fs/sharding'
import { Key } from 'interface-datastore'
import type { Datastore } from 'interface-datastore'
import type { CID } from 'multiformats/cid'

/** Files fsynced at once. */
const SYNC_CONCURRENCY = 16

/** The classic-level handle a LevelDatastore exposes as `db`. */
interface LevelHandle {
  batch(ops: Array<{ type: 'put', key: string, value: Uint8Array }>, options: { sync: boolean }): Promise<void>
}

/**
 * Writes `entries` in one atomic batch and, on LevelDB, fsyncs it (`sync: true`) before resolving.
 * Other datastores (memory) get a plain batch.
 */
export async function putDurably (datastore: Datastore, entries: Array<[key: string, value: Uint8Array]>, fsync = true): Promise<void> {
  const db = (datastore as unknown as { db?: Partial<LevelHandle> }).db
  if (fsync && typeof db?.batch === 'function') {
    await (db as LevelHandle).batch(entries.map(([key, value]) => ({ type: 'put', key, value })), { sync: true })
    return
  }
  const batch = datastore.batch()
  for (const [key, value] of entries) batch.put(new Key(key), value)
  await batch.commit()
}

/**
 * An fsync of the files (and their shard directories) that blockstore-fs keeps under `dir` for the
 * given blocks, with its default sharding.
 */
export function fsBlockSyncer (dir: string): (cids: CID[]) => Promise<void> {
  const sharding = new NextToLast()
  const syncPath = async (path: string): Promise<void> => {
    const handle = await open(path, 'r')
    try { await handle.sync() } finally { await handle.close() }
  }
  return async (cids) => {
    const files = new Set<string>()
    const dirs = new Set<string>()
    for (const cid of cids) {
      const { dir: shard, file } = sharding.encode(cid)
      files.add(join(dir, shard, file))
      dirs.add(join(dir, shard))
    }
    // The files first, then the directories that name them (the rename is durable once its
    // directory is).
    for (const group of [[...files], [...dirs]]) {
      for (let i = 0; i < group.length; i += SYNC_CONCURRENCY) {
        await Promise.all(group.slice(i, i + SYNC_CONCURRENCY).map(syncPath))
      }
    }
  }
}

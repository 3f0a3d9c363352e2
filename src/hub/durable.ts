/**
 * Durable means on disk: helpers that fsync what the hub acknowledges. LevelDB writes default to
 * `sync: false` (they survive a crash of the process, not of the machine); the hub writes its
 * records and bindings with `sync: true` before its 2xx (blocks: see store/level-blocks.ts).
 */
import { Key } from 'interface-datastore'
import type { Datastore } from 'interface-datastore'

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

/**
 * Blocks on disk in LevelDB (blockstore-level), with writes that can be fsynced, and the move from
 * the one-file-per-block layout that earlier versions kept (blockstore-fs). A space's blocks are
 * small (a bucket ~1–2 KiB, an index node 165 bytes, a root ~350 bytes): as one file each, every
 * block took at least a file-system block (4 KiB), so a single-key update of a 100 000-key space
 * that writes ~3.4 KB of blocks took ~37 KiB of disk (`node dist/bench/disk.js`). LevelDB packs them
 * into its log and tables, so the disk taken is about the bytes written.
 */
import { access, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { FsBlockstore } from 'blockstore-fs'
import { LevelBlockstore } from 'blockstore-level'
import { base64url } from 'multiformats/bases/base64'
import type { CID } from 'multiformats/cid'
import type { AbortOptions } from './interface.js'

/** Under a node's directory: the LevelDB of blocks, and the folder of files earlier versions kept. */
export const BLOCKS_FOLDER = 'blockstore'
export const LEGACY_BLOCKS_FOLDER = 'blocks'

/** Table files the blocks' LevelDB keeps open at most. */
const MAX_OPEN_TABLES = 256
/** Blocks moved from the legacy folder per batch. */
const MOVE_BATCH = 256

/** The classic-level handle blockstore-level keeps as `db`. */
interface LevelHandle {
  put(key: string, value: Uint8Array, options: { sync: boolean }): Promise<void>
  batch(ops: Array<{ type: 'put', key: string, value: Uint8Array }>, options: { sync: boolean }): Promise<void>
}

/**
 * blockstore-level with each `put` of bytes written with `sync: true` when `sync` is set (an
 * fsync of LevelDB's log before it resolves; concurrent puts share one). A hub acknowledges an
 * upload only once its blocks are on disk; a later fsync of the log alone would not do, since
 * LevelDB closes a full log without fsyncing it when it moves to the next.
 */
export class DiskBlockstore extends LevelBlockstore {
  constructor (path: string, private readonly sync: boolean) {
    // base64url keys: 46 characters for a sha2-256 multihash where base32 takes 56, and every
    // block's key is in LevelDB's log and tables (~9 blocks a single-key update). LevelDB keeps up
    // to `maxOpenFiles` tables open (1 000 by default, ~2 MB each): capped, so that a hub holding
    // gigabytes of blocks leaves its file descriptors to its connections.
    super(path, { base: base64url, maxOpenFiles: MAX_OPEN_TABLES })
  }

  override async put (cid: CID, bytes: Parameters<LevelBlockstore['put']>[1], options?: AbortOptions): Promise<CID> {
    if (!this.sync || !(bytes instanceof Uint8Array)) return super.put(cid, bytes, options)
    options?.signal?.throwIfAborted()
    await (this.db as unknown as LevelHandle).put(blockKey(cid), bytes, { sync: true })
    return cid
  }
}

/** The key of a block, as blockstore-level writes it with the base given above: `/` and the base64url multibase of its multihash. */
export function blockKey (cid: CID): string {
  return `/${base64url.encode(cid.multihash.bytes)}`
}

/**
 * Opens the blocks of a node's `directory`, moving any that an earlier version kept as files in
 * `blocks/` into the LevelDB first (fsynced), then removing that folder. A move cut short (a crash)
 * is taken up again at the next open: copying a block twice writes the same bytes.
 */
export async function openDiskBlockstore (directory: string, options: { sync: boolean }): Promise<DiskBlockstore> {
  const store = new DiskBlockstore(join(directory, BLOCKS_FOLDER), options.sync)
  await store.open()
  try {
    await moveLegacyBlocks(directory, store)
  } catch (err) {
    await store.close().catch(() => {})
    throw err
  }
  return store
}

async function moveLegacyBlocks (directory: string, store: DiskBlockstore): Promise<void> {
  const legacyPath = join(directory, LEGACY_BLOCKS_FOLDER)
  if (!await access(legacyPath).then(() => true, () => false)) return
  const legacy = new FsBlockstore(legacyPath)
  await legacy.open()
  const db = store.db as unknown as LevelHandle
  try {
    let batch: Array<{ type: 'put', key: string, value: Uint8Array }> = []
    for await (const { cid, bytes } of legacy.getAll()) {
      const chunks: Uint8Array[] = []
      for await (const chunk of bytes) chunks.push(chunk)
      batch.push({ type: 'put', key: blockKey(cid), value: chunks.length === 1 ? chunks[0] as Uint8Array : concat(chunks) })
      if (batch.length >= MOVE_BATCH) { await db.batch(batch, { sync: true }); batch = [] }
    }
    if (batch.length > 0) await db.batch(batch, { sync: true })
  } finally {
    await legacy.close()
  }
  await rm(legacyPath, { recursive: true, force: true })
}

function concat (chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0))
  let at = 0
  for (const c of chunks) { out.set(c, at); at += c.byteLength }
  return out
}

/**
 * Blocks on disk in LevelDB (blockstore-level), with writes that can be fsynced, and the move from
 * the one-file-per-block layout that earlier versions kept (blockstore-fs). A space's blocks are
 * small (a bucket ~1–2 KiB, an index node 165 bytes, a root ~350 bytes): as one file each, every
 * block took at least a file-system block (4 KiB), so a single-key update of a 100 000-key space
 * that writes ~3.4 KB of blocks took ~37 KiB of disk (`node dist/bench/disk.js`). LevelDB packs them
 * into its log and tables, so the disk taken is about the bytes written.
 */
import { readFile, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { LevelBlockstore } from 'blockstore-level'
import { base32upper } from 'multiformats/bases/base32'
import { base64url } from 'multiformats/bases/base64'
import { equals } from 'multiformats/bytes'
import { sha256 } from 'multiformats/hashes/sha2'
import { MAX_BLOCK_BYTES } from './blocks.js'
import { concatBytes } from '../crypto/bytes.js'
import type { CID } from 'multiformats/cid'
import type { AbortOptions } from './interface.js'

/** Under a node's directory: the LevelDB of blocks, and the folder of files earlier versions kept. */
const BLOCKS_FOLDER = 'blockstore'
const LEGACY_BLOCKS_FOLDER = 'blocks'

/** Deletes per synced batch. */
const DELETE_BATCH = 256
/** Blocks and bytes per LevelDB write of a `putMany`, at most. */
const WRITE_BATCH_BLOCKS = 256
const WRITE_BATCH_BYTES = 8 * 1024 * 1024
/** Table files the blocks' LevelDB keeps open at most. */
const MAX_OPEN_TABLES = 256
/** blockstore-fs's file names: the base32 (upper case) multihash and this. */
const LEGACY_EXTENSION = '.data'

/** The classic-level handle blockstore-level keeps as `db`. */
interface LevelHandle {
  put(key: string, value: Uint8Array, options: { sync: boolean }): Promise<void>
  del(key: string, options: { sync: boolean }): Promise<void>
  has(key: string): Promise<boolean>
  batch(ops: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }>, options: { sync: boolean }): Promise<void>
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
    if (!this.sync) return super.put(cid, bytes, options)
    options?.signal?.throwIfAborted()
    await this.level.put(blockKey(cid), bytes instanceof Uint8Array ? bytes : await collect(bytes), { sync: true })
    return cid
  }

  /**
   * Blocks in batches of up to 256 blocks or 8 MiB, one LevelDB write each (synced when `sync` is
   * set): blockstore-level puts them one by one, and a node that opens a large space stores the
   * ~5 500 blocks it fetched this way.
   */
  override async * putMany (source: Parameters<LevelBlockstore['putMany']>[0], options?: AbortOptions): AsyncGenerator<CID> {
    let batch: Array<{ type: 'put', key: string, value: Uint8Array }> = []
    let cids: CID[] = []
    let bytes = 0
    const flush = async (): Promise<CID[]> => {
      const done = cids
      if (batch.length > 0) await this.level.batch(batch, { sync: this.sync })
      batch = []
      cids = []
      bytes = 0
      return done
    }
    for await (const { cid, bytes: value } of source) {
      options?.signal?.throwIfAborted()
      const block = value instanceof Uint8Array ? value : await collect(value)
      batch.push({ type: 'put', key: blockKey(cid), value: block })
      cids.push(cid)
      bytes += block.byteLength
      if (batch.length >= WRITE_BATCH_BLOCKS || bytes >= WRITE_BATCH_BYTES) yield * await flush()
    }
    yield * await flush()
  }

  /**
   * Deletes are synced too (garbage collection): a delete lost in a crash after the hub forgot the
   * block would leave it on disk, charged to no one and never collected.
   */
  override async delete (cid: CID, options?: AbortOptions): Promise<void> {
    if (!this.sync) return super.delete(cid, options)
    options?.signal?.throwIfAborted()
    await this.level.del(blockKey(cid), { sync: true })
  }

  /** As `delete`, in synced batches of up to 256 (one fsync each). */
  override async * deleteMany (source: Parameters<LevelBlockstore['deleteMany']>[0], options?: AbortOptions): AsyncGenerator<CID> {
    if (!this.sync) { yield * super.deleteMany(source, options); return }
    let cids: CID[] = []
    const flush = async (): Promise<CID[]> => {
      const done = cids
      cids = []
      if (done.length > 0) await this.level.batch(done.map(cid => ({ type: 'del' as const, key: blockKey(cid) })), { sync: true })
      return done
    }
    for await (const cid of source) {
      options?.signal?.throwIfAborted()
      cids.push(cid)
      if (cids.length >= DELETE_BATCH) yield * await flush()
    }
    yield * await flush()
  }

  /** Whether a block is held, without reading it (blockstore-level reads the whole value). */
  override async has (cid: CID, options?: AbortOptions): Promise<boolean> {
    options?.signal?.throwIfAborted()
    return this.level.has(blockKey(cid))
  }

  private get level (): LevelHandle {
    return this.db as unknown as LevelHandle
  }
}

async function collect (chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) parts.push(chunk)
  return parts.length === 1 ? parts[0] as Uint8Array : concatBytes(...parts)
}

/** The key of a block, as blockstore-level writes it with the base given above: `/` and the base64url multibase of its multihash. */
function blockKey (cid: CID): string {
  return multihashKey(cid.multihash.bytes)
}

function multihashKey (multihash: Uint8Array): string {
  return `/${base64url.encode(multihash)}`
}

/** What opening moved from the legacy folder: blocks moved, and files dropped (unreadable, or not the block their name says). */
export interface LegacyMove {
  moved: number
  dropped: number
}

/**
 * Opens the blocks of a node's `directory`, moving any that an earlier version kept as files in
 * `blocks/` into the LevelDB first, then removing that folder (`onMove` hears what was moved). Each
 * file is checked against the sha2-256 digest its name carries: blockstore-fs renamed its files
 * into place without an fsync, so a power cut may have left one empty or torn, and a block kept
 * here is taken as held (an upload of it is not stored again). Files that fail are dropped. Blocks
 * go over in fsynced batches of at most 256 blocks or 8 MiB, each batch's files deleted once it is
 * on disk, so the move needs little more room than the blocks; a move cut short (a crash) resumes
 * at the next open.
 */
export async function openDiskBlockstore (directory: string, options: { sync: boolean, onMove?: (move: LegacyMove) => void }): Promise<DiskBlockstore> {
  const store = new DiskBlockstore(join(directory, BLOCKS_FOLDER), options.sync)
  await store.open()
  try {
    const move = await moveLegacyBlocks(join(directory, LEGACY_BLOCKS_FOLDER), store)
    if (move !== undefined) options.onMove?.(move)
  } catch (err) {
    await store.close().catch(() => {})
    throw err
  }
  return store
}

async function moveLegacyBlocks (legacyPath: string, store: DiskBlockstore): Promise<LegacyMove | undefined> {
  let shards
  try {
    shards = await readdir(legacyPath, { withFileTypes: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const db = store.db as unknown as LevelHandle
  const move: LegacyMove = { moved: 0, dropped: 0 }
  let batch: Array<{ type: 'put', key: string, value: Uint8Array }> = []
  let files: string[] = []
  let bytes = 0
  const commit = async (): Promise<void> => {
    if (batch.length > 0) await db.batch(batch, { sync: true })
    for (const file of files) await rm(file, { force: true })
    move.moved += batch.length
    batch = []
    files = []
    bytes = 0
  }
  for (const shard of shards) {
    if (!shard.isDirectory()) continue
    const shardPath = join(legacyPath, shard.name)
    for (const name of await readdir(shardPath)) {
      const file = join(shardPath, name)
      const block = await legacyBlock(file, name)
      if (block === undefined) { move.dropped++; continue }
      batch.push({ type: 'put', key: multihashKey(block.multihash), value: block.bytes })
      files.push(file)
      bytes += block.bytes.byteLength
      if (batch.length >= WRITE_BATCH_BLOCKS || bytes >= WRITE_BATCH_BYTES) await commit()
    }
  }
  await commit()
  await rm(legacyPath, { recursive: true, force: true })
  return move
}

/** A legacy block file's multihash and bytes, when its name is `<base32 sha2-256 multihash>.data` and its bytes hash to it. */
async function legacyBlock (file: string, name: string): Promise<{ multihash: Uint8Array, bytes: Uint8Array } | undefined> {
  if (!name.endsWith(LEGACY_EXTENSION)) return undefined
  let multihash: Uint8Array
  try {
    multihash = base32upper.decode(name.slice(0, -LEGACY_EXTENSION.length))
  } catch {
    return undefined
  }
  if (multihash.length !== 34 || multihash[0] !== sha256.code || multihash[1] !== 32) return undefined
  let bytes: Uint8Array
  try {
    if ((await stat(file)).size > MAX_BLOCK_BYTES) return undefined
    bytes = await readFile(file)
  } catch {
    return undefined
  }
  const digest = await sha256.digest(bytes)
  return equals(digest.bytes, multihash) ? { multihash, bytes } : undefined
}

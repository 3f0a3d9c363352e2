/**
 * Blocks on disk in LevelDB under binary keys, with writes that can be fsynced, and the moves from
 * what earlier versions kept: one file per block (blockstore-fs), then text keys (blockstore-level). A space's blocks are
 * small (a bucket ~1–2 KiB, an index node 165 bytes, a root ~170 bytes): as one file each, every
 * block took at least a file-system block (4 KiB), so a single-key update of a 100 000-key space
 * that writes ~3.4 KB of blocks took ~37 KiB of disk (`node dist/bench/disk.js`). LevelDB packs them
 * into its log and tables, so the disk taken is about the bytes written.
 */
import { readFile, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { BaseBlockstore } from 'blockstore-core'
import { GetFailedError, NotFoundError, PutFailedError } from 'interface-store'
import { Level } from 'level'
import { base32upper } from 'multiformats/bases/base32'
import { base64url } from 'multiformats/bases/base64'
import { equals } from 'multiformats/bytes'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { MAX_BLOCK_BYTES } from './blocks.js'
import { concatBytes } from '../crypto/bytes.js'
import type { AbortOptions } from './interface.js'
import type { InputPair, Pair } from 'interface-blockstore'

/** Under a node's directory: the LevelDB of blocks, and the folder of files earlier versions kept. */
const BLOCKS_FOLDER = 'blockstore'
const LEGACY_BLOCKS_FOLDER = 'blocks'

/** Deletes per synced batch. */
const DELETE_BATCH = 256
/** Blocks and bytes per LevelDB write of a `putMany` (and of a move), at most. */
const WRITE_BATCH_BLOCKS = 256
const WRITE_BATCH_BYTES = 8 * 1024 * 1024
/** Table files the blocks' LevelDB keeps open at most. */
const MAX_OPEN_TABLES = 256
/** blockstore-fs's file names: the base32 (upper case) multihash and this. */
const LEGACY_EXTENSION = '.data'
/**
 * The first byte of every text key (`/` and a multibase multihash) that the previous layouts
 * wrote. No multihash starts with it: 0x2f is multicodec's `path`, not a hash function.
 */
const TEXT_KEY_BYTE = 0x2f

type Batch = Array<{ type: 'put', key: Uint8Array, value: Uint8Array } | { type: 'del', key: Uint8Array }>

/**
 * Blocks in LevelDB, each under its multihash's bytes (34 for sha2-256): blockstore-level keys them
 * by a text multibase (48 characters in base64url, 56 in its base32), and every block's key is in
 * LevelDB's log and tables, ~9 blocks a single-key update (binary keys took ~12 bytes less of table
 * per block in a one-off run of 18 000 blocks). When `sync` is set, each `put`, `delete` and batch
 * is written with `sync: true`: an fsync of LevelDB's log before it resolves (concurrent writes share
 * one). A hub acknowledges an upload only once its blocks are on disk; a later fsync of the log
 * alone would not do, since LevelDB closes a full log without fsyncing it when it moves to the next.
 * Like blockstore-level, a block is found by its multihash whatever its CID's codec, and `getAll`
 * names blocks as raw CIDs.
 */
export class DiskBlockstore extends BaseBlockstore {
  /** The LevelDB (keys and values as bytes). */
  readonly db: Level<Uint8Array, Uint8Array>

  constructor (path: string, private readonly sync: boolean) {
    super()
    this.db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' })
  }

  /**
   * Opens the LevelDB (created if missing; no compression, as blockstore-level: blocks are mostly
   * hashes and ciphertext). LevelDB keeps up to `maxOpenFiles` tables open (1 000 by default, ~2 MB
   * each): capped, so that a hub holding gigabytes of blocks leaves its file descriptors to its
   * connections.
   */
  async open (): Promise<void> {
    await this.db.open({ createIfMissing: true, compression: false, maxOpenFiles: MAX_OPEN_TABLES })
  }

  async close (): Promise<void> {
    await this.db.close()
  }

  override async put (cid: CID, bytes: InputPair['bytes'], options?: AbortOptions): Promise<CID> {
    options?.signal?.throwIfAborted()
    const value = bytes instanceof Uint8Array ? bytes : await collect(bytes)
    try {
      await this.db.put(cid.multihash.bytes, value, { sync: this.sync })
    } catch (err) {
      throw new PutFailedError(String(err))
    }
    return cid
  }

  override async * get (cid: CID, options?: AbortOptions): AsyncGenerator<Uint8Array> {
    options?.signal?.throwIfAborted()
    let value: Uint8Array | undefined
    try {
      value = await this.db.get(cid.multihash.bytes)
    } catch (err) {
      throw new GetFailedError(String(err))
    }
    // interface-store's NotFoundError, which helia takes as "not held here: ask the network"
    if (value === undefined) throw new NotFoundError(`block ${cid.toString()} is not held`)
    yield value
  }

  /** Whether a block is held, without reading it. */
  override async has (cid: CID, options?: AbortOptions): Promise<boolean> {
    options?.signal?.throwIfAborted()
    return this.db.has(cid.multihash.bytes)
  }

  /**
   * Blocks in batches of up to 256 blocks or 8 MiB, one LevelDB write each: a node that opens a
   * large space stores the ~5 500 blocks it fetched this way.
   */
  override async * putMany (source: Iterable<InputPair> | AsyncIterable<InputPair>, options?: AbortOptions): AsyncGenerator<CID> {
    let batch: Batch = []
    let cids: CID[] = []
    let bytes = 0
    const flush = async (): Promise<CID[]> => {
      const done = cids
      if (batch.length > 0) await this.write(batch)
      batch = []
      cids = []
      bytes = 0
      return done
    }
    for await (const { cid, bytes: value } of source) {
      options?.signal?.throwIfAborted()
      const block = value instanceof Uint8Array ? value : await collect(value)
      batch.push({ type: 'put', key: cid.multihash.bytes, value: block })
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
    options?.signal?.throwIfAborted()
    await this.db.del(cid.multihash.bytes, { sync: this.sync })
  }

  /** As `delete`, in batches of up to 256 (one write, and one fsync when synced, each). */
  override async * deleteMany (source: Iterable<CID> | AsyncIterable<CID>, options?: AbortOptions): AsyncGenerator<CID> {
    let cids: CID[] = []
    const flush = async (): Promise<CID[]> => {
      const done = cids
      cids = []
      if (done.length > 0) await this.write(done.map(cid => ({ type: 'del' as const, key: cid.multihash.bytes })))
      return done
    }
    for await (const cid of source) {
      options?.signal?.throwIfAborted()
      cids.push(cid)
      if (cids.length >= DELETE_BATCH) yield * await flush()
    }
    yield * await flush()
  }

  /** Every block, named as a raw CID (the codec is not kept). */
  override async * getAll (options?: AbortOptions): AsyncGenerator<Pair> {
    for await (const [key, value] of this.db.iterator()) {
      options?.signal?.throwIfAborted()
      if (key[0] === TEXT_KEY_BYTE) continue
      let cid: CID
      try {
        cid = CID.createV1(raw.code, Digest.decode(key))
      } catch {
        continue
      }
      yield { cid, bytes: (function * () { yield value })() }
    }
  }

  /** The multihashes held that start with `prefix`, at most `limit`, in byte order (one seek). */
  async multihashesFrom (prefix: Uint8Array, limit: number): Promise<Uint8Array[]> {
    const found: Uint8Array[] = []
    for await (const key of this.db.keys({ gte: prefix, limit })) {
      if (key.byteLength < prefix.byteLength || !equals(key.subarray(0, prefix.byteLength), prefix)) break
      found.push(key)
    }
    return found
  }

  /** One LevelDB batch, synced when `sync` is set. */
  private async write (batch: Batch): Promise<void> {
    await this.db.batch(batch, { sync: this.sync })
  }
}

async function collect (chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const chunk of chunks) parts.push(chunk)
  return parts.length === 1 ? parts[0] as Uint8Array : concatBytes(...parts)
}

/**
 * What opening moved from an earlier layout: from `files` (blocks/, one file per block) or from
 * `text keys` (this LevelDB as it was keyed before). `moved`: blocks moved. `skipped`: files
 * dropped (unreadable, or not the block their name says), or text keys left as they are (naming no
 * multihash).
 */
export interface LegacyMove {
  from: 'files' | 'text keys'
  moved: number
  skipped: number
}

/**
 * Opens the blocks of a node's `directory`, first moving in what earlier versions kept (`onMove`
 * hears of each move that found blocks):
 * - blocks kept as files in `blocks/` (blockstore-fs), then that folder is removed. Each file is
 *   checked against the sha2-256 digest its name carries: blockstore-fs renamed its files into
 *   place without an fsync, so a power cut may have left one empty or torn, and a block kept here
 *   is taken as held (an upload of it is not stored again). Files that fail are dropped. Blocks go
 *   over in fsynced batches of at most 256 blocks or 8 MiB, each batch's files deleted once it is on
 *   disk, so the move needs little more room than the blocks;
 * - blocks this LevelDB kept under text keys (`/` and a multibase multihash: base64url, or
 *   blockstore-level's default base32), rewritten under binary ones in fsynced batches (each batch
 *   puts the new keys and deletes the old ones at once), then that key range compacted, so the old
 *   copies leave the disk. LevelDB checksums what it stores, and these blocks were verified when
 *   they came in, so they are not hashed again; a key that names no multihash is left as it is
 *   (`getAll` skips it), not deleted on a guess.
 *
 * A move cut short (a crash) resumes at the next open. `onMoveStart` hears of a move as it starts
 * (a large store takes a while), `onMove` of what it did.
 */
export async function openDiskBlockstore (directory: string, options: { sync: boolean, onMove?: (move: LegacyMove) => void, onMoveStart?: (from: LegacyMove['from']) => void }): Promise<DiskBlockstore> {
  const store = new DiskBlockstore(join(directory, BLOCKS_FOLDER), options.sync)
  await store.open()
  try {
    const rekeyed = await moveTextKeys(store, options.onMoveStart)
    if (rekeyed.moved + rekeyed.skipped > 0) options.onMove?.(rekeyed)
    const move = await moveLegacyBlocks(join(directory, LEGACY_BLOCKS_FOLDER), store, options.onMoveStart)
    if (move !== undefined) options.onMove?.(move)
  } catch (err) {
    await store.close().catch(() => {})
    throw err
  }
  return store
}

/** Batches of puts (and deletes) for a move, written synced once they reach 256 blocks or 8 MiB. */
class MoveBatches {
  private batch: Batch = []
  private bytes = 0
  private puts = 0
  readonly move: LegacyMove
  /** Whether the move has been announced as started. */
  started = false

  constructor (private readonly db: DiskBlockstore['db'], from: LegacyMove['from'], private readonly afterWrite: () => Promise<void> = async () => {}) {
    this.move = { from, moved: 0, skipped: 0 }
  }

  async add (ops: Batch, bytes: number): Promise<void> {
    this.batch.push(...ops)
    this.puts += ops.filter(op => op.type === 'put').length
    this.bytes += bytes
    if (this.puts >= WRITE_BATCH_BLOCKS || this.bytes >= WRITE_BATCH_BYTES) await this.commit()
  }

  async commit (): Promise<void> {
    if (this.batch.length > 0) await this.db.batch(this.batch, { sync: true })
    await this.afterWrite()
    this.move.moved += this.puts
    this.batch = []
    this.bytes = 0
    this.puts = 0
  }
}

async function moveTextKeys (store: DiskBlockstore, onStart?: (from: LegacyMove['from']) => void): Promise<LegacyMove> {
  const batches = new MoveBatches(store.db, 'text keys')
  // the text keys sort together: `/` and nothing below the next byte
  for await (const [key, value] of store.db.iterator({ gte: Uint8Array.of(TEXT_KEY_BYTE), lt: Uint8Array.of(TEXT_KEY_BYTE + 1) })) {
    const multihash = textKeyMultihash(key)
    if (multihash !== undefined && !batches.started) { batches.started = true; onStart?.('text keys') }
    if (multihash === undefined) { batches.move.skipped++; continue }
    await batches.add([{ type: 'put', key: multihash, value }, { type: 'del', key }], value.byteLength)
  }
  await batches.commit()
  // The moved blocks' old copies stay in LevelDB's tables until a compaction reaches them: now.
  // (classic-level, Node's LevelDB, has compactRange; `level`'s types also cover the browser's, which has not)
  if (batches.move.moved > 0) await (store.db as unknown as { compactRange: (start: Uint8Array, end: Uint8Array) => Promise<void> }).compactRange(Uint8Array.of(TEXT_KEY_BYTE), Uint8Array.of(TEXT_KEY_BYTE + 1))
  return batches.move
}

/** The multibases text keys were written in: base64url (`u`), and blockstore-level's default base32 upper case (`B`). */
const TEXT_KEY_BASES = base64url.decoder.or(base32upper.decoder)

/** The multihash a text key (`/` and a multibase) names, if it names one. */
function textKeyMultihash (key: Uint8Array): Uint8Array | undefined {
  try {
    const multihash = TEXT_KEY_BASES.decode(new TextDecoder('utf-8', { fatal: true }).decode(key.subarray(1)))
    return Digest.decode(multihash).bytes
  } catch {
    return undefined
  }
}

async function moveLegacyBlocks (legacyPath: string, store: DiskBlockstore, onStart?: (from: LegacyMove['from']) => void): Promise<LegacyMove | undefined> {
  let shards
  try {
    shards = await readdir(legacyPath, { withFileTypes: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  onStart?.('files')
  let files: string[] = []
  const batches = new MoveBatches(store.db, 'files', async () => {
    for (const file of files) await rm(file, { force: true })
    files = []
  })
  for (const shard of shards) {
    if (!shard.isDirectory()) continue
    const shardPath = join(legacyPath, shard.name)
    for (const name of await readdir(shardPath)) {
      const file = join(shardPath, name)
      const block = await legacyBlock(file, name)
      if (block === undefined) { batches.move.skipped++; continue }
      files.push(file)
      await batches.add([{ type: 'put', key: block.multihash, value: block.bytes }], block.bytes.byteLength)
    }
  }
  await batches.commit()
  await rm(legacyPath, { recursive: true, force: true })
  return batches.move
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

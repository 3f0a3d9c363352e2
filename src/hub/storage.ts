/**
 * What the hub's API has written to disk and who it is charged to. Every block the API stores (an
 * upload, or a block fetched from the network for a reader) is recorded as landed in the datastore
 * with its time, its size on disk and its uploader: the blocks stored together (a version's new
 * blocks, ~9 at a time) share one entry, since one entry per block (~125 bytes of LevelDB each) was
 * ~1.1 KB of every version's disk at 100 000 keys. Until an accepted record references it, an
 * uploaded block counts against its uploader (`maxPendingBytesPerClient`) and against the hub's
 * pending total; all landed blocks count against the hub's storage budget. Garbage collection
 * (gc.ts) deletes landed blocks that no retained version references once their grace period is
 * over, and recomputes these counts.
 */
import { InsufficientStorageError, TooLargeError } from '../errors.js'
import { putDurably } from './durable.js'
import {
  DEFAULT_MAX_PENDING_BYTES, DEFAULT_MAX_PENDING_BYTES_PER_CLIENT, DEFAULT_MAX_STORAGE_BYTES
} from './options.js'
import { randomBytes } from 'node:crypto'
import { Key } from 'interface-datastore'
import { CID } from 'multiformats/cid'
import { bytesKey, cidString, multihashKey } from '../store/blocks.js'
import { base16 } from 'multiformats/bases/base16'
import { varint } from 'multiformats'
import * as Digest from 'multiformats/hashes/digest'
import { concatBytes } from '../crypto/bytes.js'
import type { HubAppOptions } from './options.js'
import type { Datastore } from 'interface-datastore'

/**
 * Landed entries: `<prefix><batch id>` (the id holds a `.`) whose value is the UTF-8 line
 * `<ms since 1970> <client>\n`, then per block its disk cost (varint) and its CID (binary); or, where
 * the blockstore can find a block by the start of its multihash (a hub on disk), the line
 * `<ms since 1970> <client> s12\n`, then per block its disk cost above MIN_BLOCK_COST_BYTES (varint),
 * its CID's codec (varint) and the first 12 bytes of its sha2-256 digest: 14 bytes for most blocks,
 * where a cost and a CID take 38. Or, as earlier
 * versions wrote them and as still read, `<prefix><CID>` with the value `<ms> <cost> <client>`.
 */
export const LANDED_PREFIX = '/userspace/hub/landed/'
/**
 * A block is charged at least this much against a client's quota: a floor that keeps a flood of tiny
 * blocks as costly as a few large ones. On disk (LevelDB) a block takes about its size and its key
 * (~50 bytes), so the charge is conservative for small blocks.
 */
export const MIN_BLOCK_COST_BYTES = 4096
/** Uploads remembered as unclaimed between two collections (beyond, GC's recount is the truth). */
export const MAX_TRACKED_UPLOADS = 262_144
/**
 * Bytes of a block's sha2-256 digest a compact landed entry keeps. 96 bits: a block whose digest
 * starts like a given block's takes ~2^96 hashes to find; two of one's own that start alike, ~2^48,
 * gain nothing: a collection keeps and charges such a pair as one block, and deletes both (see `entries`).
 */
export const LANDED_DIGEST_BYTES = 12
/** The header's third word in a compact entry. */
const COMPACT_MARK = 's12'
/** A sha2-256 multihash's first two bytes: its code and its digest length. */
const SHA256_MULTIHASH = Uint8Array.of(0x12, 32)

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/**
 * The multihashes a blockstore holds that start with `prefix` (at most `limit`, in byte order).
 * A hub on disk passes its LevelDB's (level-blocks.ts), which finds them with one seek.
 */
export type BlockPrefixLookup = (prefix: Uint8Array, limit: number) => Promise<Uint8Array[]>

export interface Landed {
  /**
   * The block's CID (string). A compact entry's block that no single held block matches reads as
   * `?` and the hex of its codec and digest start: not a CID. When none matches (the block is
   * gone), a collection forgets the entry; for two, see `keep`.
   */
  cid: string
  atMs: number
  costBytes: number
  client: string
  /** The datastore key of the entry that records it (shared by the blocks landed together). */
  key: string
  /** Its record in that entry (the bytes, one character each), by which `forget` finds it however the entry was rewritten since. */
  record: string
  /**
   * The block, as blockstores keep it: its multihash, one character per byte (`multihashKey`); the
   * placeholder above when it is not known.
   */
  block: string
  /** In a compact entry: its CID's codec and the start of its digest, until looked up. */
  compact?: { codec: number, digest: Uint8Array }
  /**
   * Set when a compact entry's block cannot be named for sure: two held blocks start alike
   * (`candidates`, both), or the hub cannot look blocks up (no `candidates`: the entry and its
   * block stay untouched).
   */
  keep?: true
  /** With `keep`: the held blocks that start alike. A collection treats them as one: kept while either is referenced, else both go once the grace period is over. */
  candidates?: CID[]
}

/** A landed time; a damaged one reads as long past, so that its blocks are not kept for ever. */
function timeOf (text: string): number {
  const ms = Number(text)
  return Number.isFinite(ms) ? ms : 0
}

/** Whether a CID can be recorded in a compact entry (a sha2-256 multihash). */
function isSha256 (cid: CID): boolean {
  const mh = cid.multihash.bytes
  return mh.byteLength === 34 && mh[0] === SHA256_MULTIHASH[0] && mh[1] === SHA256_MULTIHASH[1]
}

/** Encodes a batch entry's value (see LANDED_PREFIX): compact when asked and every block is sha2-256. */
export function encodeLanded (atMs: number, client: string, blocks: Array<{ cid: CID, cost: number }>, compact = false): Uint8Array {
  const short = compact && blocks.every(b => isSha256(b.cid) && b.cost >= MIN_BLOCK_COST_BYTES)
  const header = encoder.encode(`${atMs} ${client.replace(/[\s]/g, '_')}${short ? ` ${COMPACT_MARK}` : ''}\n`)
  const record = (cid: CID): number => short ? varint.encodingLength(cid.code) + LANDED_DIGEST_BYTES : cid.bytes.byteLength
  let length = header.byteLength
  // a compact entry's costs are above the floor (never below it: see costOf)
  const costField = (cost: number): number => short ? cost - MIN_BLOCK_COST_BYTES : cost
  for (const { cid, cost } of blocks) length += varint.encodingLength(costField(cost)) + record(cid)
  const out = new Uint8Array(length)
  out.set(header, 0)
  let at = header.byteLength
  for (const { cid, cost } of blocks) {
    varint.encodeTo(costField(cost), out, at)
    at += varint.encodingLength(costField(cost))
    if (short) {
      varint.encodeTo(cid.code, out, at)
      at += varint.encodingLength(cid.code)
      out.set(cid.multihash.digest.subarray(0, LANDED_DIGEST_BYTES), at)
      at += LANDED_DIGEST_BYTES
    } else {
      out.set(cid.bytes, at)
      at += cid.bytes.byteLength
    }
  }
  return out
}

/** A batch entry's header and its block records, each as its bytes (a damaged tail ends the list). */
function splitLanded (value: Uint8Array): { header: Uint8Array, at: string, client: string, compact: boolean, records: Uint8Array[] } | undefined {
  const end = value.indexOf(0x0a)
  if (end < 0) return undefined
  const [at = '0', client = '', mark] = decoder.decode(value.subarray(0, end)).split(' ')
  const compact = mark === COMPACT_MARK
  const records: Uint8Array[] = []
  let rest = value.subarray(end + 1)
  try {
    while (rest.byteLength > 0) {
      const [, n] = varint.decode(rest)
      let length: number
      if (compact) {
        const [, m] = varint.decode(rest.subarray(n))
        length = n + m + LANDED_DIGEST_BYTES
        if (rest.byteLength < length) break
      } else {
        const [, after] = CID.decodeFirst(rest.subarray(n))
        length = rest.byteLength - after.byteLength
      }
      records.push(rest.subarray(0, length))
      rest = rest.subarray(length)
    }
  } catch { /* a damaged tail: the blocks before it */ }
  return { header: value.subarray(0, end + 1), at, client, compact, records }
}

/** Decodes a landed entry at `key` (any form); a damaged one yields what could be read of it. A compact entry's blocks are not looked up (see `Landed.cid`). */
export function decodeLanded (key: string, value: Uint8Array): Landed[] {
  const id = key.slice(LANDED_PREFIX.length)
  if (!id.includes('.')) {
    const [at = '0', cost = '0', client = ''] = decoder.decode(value).split(' ')
    const costBytes = Number(cost)
    let block = id
    try { block = multihashKey(CID.parse(id)) } catch { /* not a CID: only its entry goes */ }
    return [{ cid: id, block, atMs: timeOf(at), costBytes: Number.isSafeInteger(costBytes) && costBytes >= 0 ? costBytes : MIN_BLOCK_COST_BYTES, client, key, record: '' }]
  }
  const split = splitLanded(value)
  if (split === undefined) return []
  return split.records.map(record => {
    const [cost, n] = varint.decode(record)
    const base = { atMs: timeOf(split.at), costBytes: split.compact ? cost + MIN_BLOCK_COST_BYTES : cost, client: split.client, key, record: bytesKey(record) }
    if (!split.compact) {
      const cid = CID.decode(record.subarray(n))
      return { ...base, cid: cidString(cid), block: multihashKey(cid) }
    }
    const [codec, m] = varint.decode(record.subarray(n))
    const digest = record.subarray(n + m)
    const placeholder = `?${codec.toString(16)}:${base16.baseEncode(digest)}`
    return { ...base, cid: placeholder, block: placeholder, compact: { codec, digest } }
  })
}

/** The disk cost of a block of `size` bytes. */
export function costOf (size: number): number {
  return Math.max(MIN_BLOCK_COST_BYTES, size)
}

export class HubStorage {
  private readonly datastore: Datastore
  private readonly options: HubAppOptions
  /** Bytes uploaded per client that no accepted record references yet. */
  private pending = new Map<string, number>()
  private pendingTotal = 0
  /** Unclaimed uploads since the last collection, by `multihashKey`. */
  private uploads = new Map<string, { client: string, cost: number }>()
  /** Bytes of every landed block. */
  landedBytes = 0
  /** During a collection: blocks accepted records reference, which the sweep must keep. */
  private collecting: Set<string> | undefined
  readonly ready: Promise<void>
  /** Batch ids: this process's random prefix, then a counter. */
  private readonly batchPrefix = randomBytes(6).toString('hex')
  private batches = 0

  /** Finds a block by the start of its multihash; without it, landed entries keep whole CIDs. */
  private readonly lookup: BlockPrefixLookup | undefined

  constructor (datastore: Datastore, options: HubAppOptions, lookup?: BlockPrefixLookup) {
    this.datastore = datastore
    this.options = options
    this.lookup = lookup
    this.ready = this.recount()
  }

  private async recount (): Promise<void> {
    let total = 0
    for await (const entry of this.stored()) total += entry.costBytes
    this.landedBytes = total
  }

  private async * stored (): AsyncIterable<Landed> {
    for await (const { key, value } of this.datastore.query({ prefix: LANDED_PREFIX.slice(0, -1) })) {
      yield * decodeLanded(key.toString(), value)
    }
  }

  /**
   * Every landed entry, a compact entry's blocks looked up in the blockstore: a block is named by
   * the one held block whose digest starts so (and its codec). When none does, the block is gone
   * and its `cid` stays the placeholder (see `Landed.cid`), so a collection forgets the entry; when
   * two do, it is `keep` with both as `candidates` (a pair an uploader made, ~2^48 hashes: kept and
   * charged while either is referenced or in its grace period, then both deleted); when the hub
   * cannot look blocks up, it is `keep` alone and left untouched.
   */
  async * entries (): AsyncIterable<Landed> {
    for await (const entry of this.stored()) {
      if (entry.compact === undefined) { yield entry; continue }
      if (this.lookup === undefined) { yield { ...entry, keep: true }; continue }
      const { codec, digest } = entry.compact
      const found = (await this.lookup(concatBytes(SHA256_MULTIHASH, digest), 2)).map(mh => CID.createV1(codec, Digest.decode(mh)))
      const [only] = found
      if (found.length > 1) yield { ...entry, keep: true, candidates: found }
      else if (only !== undefined) yield { ...entry, cid: cidString(only), block: multihashKey(only) }
      else yield entry
    }
  }

  /**
   * Refuses an upload of `newBytes` (disk cost of the blocks not yet stored) from `client` when it
   * would pass the client's pending share (413), the hub's pending total or its budget (507), else
   * reserves them until the returned function is called (once the blocks are recorded by `landed`,
   * or failed): uploads admitted at the same time each count the others, so no number of them in
   * parallel passes a limit.
   */
  async admit (client: string, newBytes: number): Promise<() => void> {
    await this.ready
    const perClient = this.options.maxPendingBytesPerClient ?? DEFAULT_MAX_PENDING_BYTES_PER_CLIENT
    const mine = (this.pending.get(client) ?? 0) + (this.reserved.get(client) ?? 0)
    if (mine + newBytes > perClient) {
      throw new TooLargeError(`${client} has ${mine} bytes of uploads that no record references yet; ${newBytes} more would pass the ${perClient}-byte limit per client (publish a record that references them, or wait for unreferenced uploads to be collected)`)
    }
    const budget = this.options.maxStorageBytes ?? DEFAULT_MAX_STORAGE_BYTES
    if (this.landedBytes + this.reservedTotal + newBytes > budget) {
      throw new InsufficientStorageError(`this hub's storage budget (${budget} bytes) is spent; it stores nothing more until unreferenced blocks are collected`)
    }
    const maxPending = this.options.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES
    if (this.pendingTotal + this.reservedTotal + newBytes > maxPending) {
      throw new InsufficientStorageError(`this hub holds ${maxPending} bytes of uploads that no record references yet; try again after they are referenced or collected`)
    }
    this.reserve(client, newBytes)
    let released = false
    return () => {
      if (released) return
      released = true
      this.reserve(client, -newBytes)
    }
  }

  /** Bytes admitted per client and in all, not yet recorded as landed. */
  private readonly reserved = new Map<string, number>()
  private reservedTotal = 0

  private reserve (client: string, bytes: number): void {
    const next = (this.reserved.get(client) ?? 0) + bytes
    this.reservedTotal += bytes
    if (next <= 0) this.reserved.delete(client)
    else this.reserved.set(client, next)
  }

  /** Records newly stored blocks durably and charges them to `client`. */
  async landed (client: string, blocks: Array<{ cid: CID, size: number }>, nowMs: number): Promise<void> {
    if (blocks.length === 0) return
    const key = `${LANDED_PREFIX}${this.batchPrefix}.${(this.batches++).toString(36)}`
    await putDurably(this.datastore, [[key, encodeLanded(nowMs, client, blocks.map(({ cid, size }) => ({ cid, cost: costOf(size) })), this.lookup !== undefined)]])
    for (const { cid, size } of blocks) {
      const cost = costOf(size)
      this.landedBytes += cost
      this.charge(client, cost)
      if (this.uploads.size < MAX_TRACKED_UPLOADS) this.uploads.set(multihashKey(cid), { client, cost })
      if (this.collecting !== undefined && this.landedDuring.size < MAX_TRACKED_UPLOADS) this.landedDuring.set(multihashKey(cid), { client, cost })
    }
  }

  /**
   * Held blocks an upload sent again (by `multihashKey`, with when): a collection leaves them their
   * grace period, as it does fresh uploads, so that the record that follows finds them. (Stored
   * once, they are not recorded again; a block a stranger landed long ago would otherwise be
   * collected between the owner's upload and record.) Bounded; lost on a restart.
   */
  private readonly touched = new Map<string, number>()

  /**
   * Notes held blocks an upload sent again (see `touched`); returns those it could not note, the
   * map being full, for the upload to record as landed again (see HubBlocks.storeVerified).
   */
  touch (cids: Iterable<CID>, nowMs: number): CID[] {
    const untracked: CID[] = []
    for (const cid of cids) {
      const key = multihashKey(cid)
      if (this.touched.size >= MAX_TRACKED_UPLOADS && !this.touched.has(key)) { untracked.push(cid); continue }
      this.touched.set(key, nowMs)
    }
    return untracked
  }

  /** Whether an upload sent the block again within `graceMs` before `nowMs`. */
  touchedWithin (block: string, nowMs: number, graceMs: number): boolean {
    const at = this.touched.get(block)
    return at !== undefined && nowMs - at < graceMs
  }

  /** Forgets touches older than `graceMs`. */
  pruneTouched (nowMs: number, graceMs: number): void {
    for (const [key, at] of this.touched) if (nowMs - at >= graceMs) this.touched.delete(key)
  }

  /**
   * Whether the block `key` (a `multihashKey`) was recorded since the collection under way started:
   * its sweep did not read that record, and an older one of the same block must not delete it.
   */
  landedDuringCollection (key: string): boolean {
    return this.landedDuring.has(key)
  }

  /** Uploads recorded while a collection runs (its sweep may not have seen them), until it resets the charges. */
  private landedDuring = new Map<string, { client: string, cost: number }>()

  /** Blocks an accepted record references: no longer charged to their uploaders. */
  claim (cids: Iterable<CID>): void {
    if (this.uploads.size === 0 && this.collecting === undefined) return
    for (const cid of cids) {
      // by block: the bytes a record references are claimed under whatever codec they landed
      const key = multihashKey(cid)
      this.collecting?.add(key)
      this.landedDuring.delete(key)
      const upload = this.uploads.get(key)
      if (upload === undefined) continue
      this.uploads.delete(key)
      this.charge(upload.client, -upload.cost)
    }
  }

  /**
   * Forgets deleted blocks: an entry whose blocks are all deleted goes, one that still records others
   * is written again with those only, in its own form (garbage collection is its only writer after
   * it lands).
   */
  async forget (entries: Landed[]): Promise<void> {
    if (entries.length === 0) return
    const byKey = new Map<string, Set<string>>()
    for (const entry of entries) {
      let records = byKey.get(entry.key)
      if (records === undefined) byKey.set(entry.key, records = new Set())
      records.add(entry.record)
    }
    const batch = this.datastore.batch()
    for (const [key, gone] of byKey) {
      const k = new Key(key)
      let left: Uint8Array[] = []
      let header: Uint8Array | undefined
      if (key.slice(LANDED_PREFIX.length).includes('.')) {
        try {
          const split = splitLanded(await this.datastore.get(k))
          header = split?.header
          left = (split?.records ?? []).filter(record => !gone.has(bytesKey(record)))
        } catch (err) {
          // Gone already; any other failure fails the pass (the entry stays, to be tried again).
          if ((err as { name?: unknown }).name !== 'NotFoundError') throw err
        }
      }
      if (left.length === 0 || header === undefined) batch.delete(k)
      else batch.put(k, concatBytes(header, ...left))
    }
    await batch.commit()
    for (const entry of entries) this.landedBytes -= entry.costBytes
  }

  /** After a collection: the unreferenced uploads still in their grace period are the pending ones. */
  resetPending (unreferenced: Landed[]): void {
    this.pending = new Map()
    this.pendingTotal = 0
    this.uploads = new Map()
    for (const entry of unreferenced) {
      this.charge(entry.client, entry.costBytes)
      if (this.uploads.size < MAX_TRACKED_UPLOADS) this.uploads.set(entry.block, { client: entry.client, cost: entry.costBytes })
    }
    // Uploads recorded during the collection and not claimed since stay charged, whether or not
    // its sweep saw them (before, a client uploading while a sweep ran had those uploads forgiven).
    for (const [cid, upload] of this.landedDuring) {
      if (this.uploads.has(cid)) continue
      this.charge(upload.client, upload.cost)
      if (this.uploads.size < MAX_TRACKED_UPLOADS) this.uploads.set(cid, upload)
    }
    this.landedDuring = new Map()
  }

  /** The blocks (by `multihashKey`) a collection is deleting right now, and when that call ends. */
  private deleting: { keys: Set<string>, ended: Promise<void> } | undefined

  /**
   * Marks `keys` as being deleted until the returned function is called. A request that stores
   * blocks asks `deletionOf` before it looks at what the hub holds: a block found held while its
   * deletion is under way would be acknowledged and then be gone.
   */
  beginDeleting (keys: Iterable<string>): () => void {
    let end: () => void = () => {}
    const deleting = { keys: new Set(keys), ended: new Promise<void>(resolve => { end = resolve }) }
    this.deleting = deleting
    return () => {
      if (this.deleting === deleting) this.deleting = undefined
      end()
    }
  }

  /** Resolves once no deletion under way involves any of `keys`. */
  async deletionOf (keys: Iterable<string>): Promise<void> {
    const deleting = this.deleting
    if (deleting === undefined) return
    for (const key of keys) {
      if (deleting.keys.has(key)) { await deleting.ended; return }
    }
  }

  /** Starts protecting claimed blocks from the sweep; returns the set that grows as records arrive. */
  startCollection (): Set<string> {
    this.collecting = new Set()
    return this.collecting
  }

  endCollection (): void {
    this.collecting = undefined
    this.landedDuring = new Map()
  }

  /** True when `cost` more bytes fit in the storage budget (for blocks fetched for readers). */
  hasRoomFor (cost: number): boolean {
    return this.landedBytes + this.reservedTotal + cost <= (this.options.maxStorageBytes ?? DEFAULT_MAX_STORAGE_BYTES)
  }

  pendingOf (client: string): number {
    return this.pending.get(client) ?? 0
  }

  private charge (client: string, bytes: number): void {
    const next = (this.pending.get(client) ?? 0) + bytes
    this.pendingTotal = Math.max(0, this.pendingTotal + bytes)
    if (next <= 0) this.pending.delete(client)
    else this.pending.set(client, next)
  }
}

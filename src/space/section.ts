/**
 * A section is a key → entry map with its stored form: the public section is one plaintext
 * dag-cbor block; the private section is split into encrypted buckets by a keyed hash of the key, so
 * that one `set` re-encrypts one bucket, not the whole space. Both merge remote entries by the rule
 * in entries.ts and remember which stored parts are out of date ("dirty").
 */
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import * as dagCbor from '@ipld/dag-cbor'
import { seal, open } from '../crypto/envelope.js'
import { fromUtf8, utf8 } from '../crypto/bytes.js'
import { FormatError, TooLargeError } from '../errors.js'
import { MAX_BLOCK_BYTES, cborBlock, rawBlock } from '../store/blocks.js'
import { bucketText, entryLine, parseBucket, readPublicEntries, sameEntry, wins } from './entries.js'
import type { Entry } from './entries.js'
import type { Json } from './json.js'
import type { Block } from '../store/interface.js'
import type { CID } from 'multiformats/cid'

/** A private map up to this size is one bucket. @default 256 KiB */
export const SINGLE_BUCKET_BYTES = 256 * 1024
/** Above SINGLE_BUCKET_BYTES, buckets are made this small on average, so a `set` stays cheap. @default 16 KiB */
export const TARGET_BUCKET_BYTES = 16 * 1024
/** Envelope and padding overhead allowance when checking the block limit. */
const BLOCK_HEADROOM = 64 * 1024

interface Slot extends Entry {
  /** the entry's line in its bucket, cached */
  line: string
  /** keyed hash of the key (private section only) */
  hash: number
}

export abstract class Section {
  protected readonly entries = new Map<string, Slot>()
  /** sum of line lengths: the section's size in JSON */
  bytes = 0

  get size (): number { return this.entries.size }

  /** The highest stamp held, so the clock can move past it. */
  get maxStamp (): number {
    let max = 0
    for (const slot of this.entries.values()) if (slot.stamp > max) max = slot.stamp
    return max
  }

  get (key: string): Json | undefined {
    const json = this.entries.get(key)?.json
    return json === undefined ? undefined : JSON.parse(json)
  }

  has (key: string): boolean {
    return this.entries.get(key)?.json !== undefined
  }

  getAll (): Record<string, Json> {
    const out: Array<[string, Json]> = []
    for (const [key, slot] of this.entries) if (slot.json !== undefined) out.push([key, JSON.parse(slot.json)])
    return Object.fromEntries(out)
  }

  keys (): string[] {
    const out: string[] = []
    for (const [key, slot] of this.entries) if (slot.json !== undefined) out.push(key)
    return out
  }

  entry (key: string): Entry | undefined {
    return this.entries.get(key)
  }

  /** Size in bytes the section would have after writing `entry` at `key`. */
  sizeWith (key: string, entry: Entry): number {
    const old = this.entries.get(key)
    return this.bytes - (old === undefined ? 0 : old.line.length + 1) + entryLine(key, entry).length + 1
  }

  /** Writes an entry unconditionally (a local write) and marks its stored part dirty. */
  write (key: string, entry: Entry): void {
    this.markDirty(this.put(key, entry, this.entries.get(key)))
  }

  /** Merges a remote entry; returns true when it replaced the local one. */
  merge (key: string, entry: Entry): boolean {
    const old = this.entries.get(key)
    if (old !== undefined && !wins(entry, old)) return false
    this.put(key, entry, old)
    return true
  }

  private put (key: string, entry: Entry, old: Slot | undefined): Slot {
    const line = entryLine(key, entry)
    if (old !== undefined) this.bytes -= old.line.length + 1
    this.bytes += line.length + 1
    const slot: Slot = { ...entry, line, hash: old?.hash ?? this.hashOf(key) }
    this.entries.set(key, slot)
    if (old === undefined) this.added(key, slot)
    return slot
  }

  protected hashOf (_key: string): number { return 0 }
  /** Called once per key, when it first appears (keys are never deleted: removals are tombstones). */
  protected added (_key: string, _slot: Slot): void {}
  protected abstract markDirty (slot: Slot): void
  abstract get dirty (): boolean
  /** True when the stored form this section last took or merged holds the entry now at `key`. */
  abstract holds (key: string): boolean
}

/** The plaintext public section: one dag-cbor block `{ version: 1, entries: { key: [stamp, device, value?] } }`. */
export class PublicSection extends Section {
  cid: CID | null = null
  private changed = false
  /** Counts writes, so that `stored` keeps a write made while the block was being published. */
  private writes = 0
  private encodedAt = 0

  get dirty (): boolean { return this.changed }
  holds (key: string): boolean { return this.entries.has(key) && !this.changed }
  protected markDirty (): void { this.changed = true; this.writes++ }
  markChanged (): void { this.changed = true; this.writes++ }

  async encode (): Promise<Block | null> {
    this.encodedAt = this.writes
    if (this.entries.size === 0) return null
    const entries: Record<string, unknown[]> = {}
    for (const [key, slot] of this.entries) {
      Object.defineProperty(entries, key, {
        value: slot.json === undefined ? [slot.stamp, slot.device] : [slot.stamp, slot.device, JSON.parse(slot.json)],
        enumerable: true
      })
    }
    const block = await cborBlock({ version: 1, entries })
    if (block.bytes.length > MAX_BLOCK_BYTES) throw new TooLargeError(`public section is ${block.bytes.length} bytes, over the ${MAX_BLOCK_BYTES}-byte block limit`)
    return block
  }

  stored (cid: CID | null): void {
    this.cid = cid
    if (this.writes === this.encodedAt) this.changed = false
  }

  /**
   * Merges a decoded remote public block. Returns the keys whose value changed here, and whether
   * the local section now holds something the remote one lacks.
   */
  absorb (value: unknown): { changed: string[], ahead: boolean } {
    const remote = readPublicEntries(value)
    const changed: string[] = []
    const remoteKeys = new Map(remote)
    for (const [key, entry] of remote) if (this.merge(key, entry)) changed.push(key)
    let ahead = false
    for (const [key, slot] of this.entries) {
      const r = remoteKeys.get(key)
      if (r === undefined || !sameEntry(r, slot)) { ahead = true; break }
    }
    this.changed = ahead
    return { changed, ahead }
  }

  static decode (bytes: Uint8Array): unknown {
    try {
      return dagCbor.decode(bytes)
    } catch (err) {
      throw new FormatError(`public section is not dag-cbor: ${(err as Error).message}`)
    }
  }
}

/** The encrypted private section, split into 2^k buckets by HMAC-SHA256(bucketKey, key). */
export class PrivateSection extends Section {
  /** CIDs of the stored buckets, in bucket order (length = bucket count) */
  cids: CID[] = []
  private count = 1
  private dirtyBuckets = new Set<number>()
  /** bucket → keys, for `indexCount` buckets (0: not built yet) */
  private readonly index = new Map<number, string[]>()
  private indexCount = 0
  /** Buckets written to since the last `encode` began: `commit` leaves them dirty. */
  private touched = new Set<number>()

  constructor (private readonly dataKey: Uint8Array, private readonly bucketKey: Uint8Array, private readonly name: string) {
    super()
  }

  /** True when a bucket holds writes not yet sealed. A new, empty space has nothing to publish. */
  get dirty (): boolean { return this.dirtyBuckets.size > 0 }
  holds (key: string): boolean {
    const slot = this.entries.get(key)
    return slot !== undefined && this.cids.length === this.count && !this.dirtyBuckets.has(slot.hash & (this.count - 1))
  }
  get bucketCount (): number { return this.count }

  protected override hashOf (key: string): number {
    const mac = hmac(sha256, this.bucketKey, utf8(key))
    return ((mac[0] as number) << 24 | (mac[1] as number) << 16 | (mac[2] as number) << 8 | (mac[3] as number)) >>> 0
  }

  protected markDirty (slot: Slot): void {
    this.dirtyBuckets.add(slot.hash & (this.count - 1))
    this.touched.add(slot.hash & (this.count - 1))
  }

  /** The keys in bucket `i` of `count`, from an index rebuilt only when the bucket count changes. */
  private keysIn (i: number, count: number): string[] {
    if (this.indexCount !== count) {
      this.index.clear()
      for (const [key, slot] of this.entries) this.indexKey(key, slot, count)
      this.indexCount = count
    }
    return this.index.get(i) ?? []
  }

  private indexKey (key: string, slot: Slot, count: number): void {
    const i = slot.hash & (count - 1)
    let keys = this.index.get(i)
    if (keys === undefined) this.index.set(i, keys = [])
    keys.push(key)
  }

  protected override added (key: string, slot: Slot): void {
    if (this.indexCount > 0) this.indexKey(key, slot, this.indexCount)
  }

  /** Marks every bucket for re-sealing (after a failed publish). */
  markAllDirty (): void {
    for (let i = 0; i < this.count; i++) this.dirtyBuckets.add(i)
  }

  /** The bucket count the current size calls for: 1 up to SINGLE_BUCKET_BYTES, then ~TARGET_BUCKET_BYTES each. */
  static bucketCountFor (bytes: number): number {
    if (bytes <= SINGLE_BUCKET_BYTES) return 1
    let n = 1
    while (bytes / n > TARGET_BUCKET_BYTES) n *= 2
    return n
  }

  /**
   * Seals the dirty buckets (all of them when the bucket count changes) and returns the new blocks;
   * `commit` then records their CIDs. Nothing changes here until `commit`.
   */
  async encode (): Promise<{ blocks: Block[], commit: () => void }> {
    this.touched.clear()
    let count = PrivateSection.bucketCountFor(this.bytes)
    for (;;) {
      const rebucket = count !== this.count || this.cids.length !== count
      const indexes = rebucket ? [...Array(count).keys()] : [...this.dirtyBuckets]
      const texts = indexes.map(i => bucketText(this.keysIn(i, count).map(key => (this.entries.get(key) as Slot).line)))
      const limit = MAX_BLOCK_BYTES - BLOCK_HEADROOM
      if (texts.some(t => t.length * 3 > limit && utf8(t).length > limit)) {
        if (count >= 1 << 16) throw new TooLargeError('private section cannot be split into blocks under the 1 MiB limit')
        count *= 2
        continue
      }
      const blocks = await Promise.all(texts.map(async t => rawBlock(seal(this.dataKey, this.name, utf8(t)))))
      return {
        blocks,
        commit: () => {
          const cids = rebucket ? new Array<CID>(count) : [...this.cids]
          indexes.forEach((i, n) => { cids[i] = (blocks[n] as Block).cid })
          // A write that landed while the buckets were being sealed is not in these blocks.
          const rewritten = rebucket && this.touched.size > 0 ? [...Array(count).keys()] : [...this.touched]
          this.cids = cids
          this.count = count
          this.dirtyBuckets = new Set(rewritten)
        }
      }
    }
  }

  /** Decrypts a bucket block (IntegrityError on any tampering) into entries. */
  decrypt (bytes: Uint8Array): Array<[string, Entry]> {
    return parseBucket(fromUtf8(open(this.dataKey, this.name, bytes)))
  }

  /**
   * Merges a remote private section given as its bucket CIDs and a loader for their decrypted
   * entries. Buckets whose CID we already hold at the same place are skipped. Returns the keys whose
   * value changed here and whether the local section now holds something the remote one lacks.
   */
  async absorb (remoteCids: CID[], load: (cid: CID) => Promise<Array<[string, Entry]>>): Promise<{ changed: string[], ahead: boolean }> {
    const n = remoteCids.length
    if (n === 0 || (n & (n - 1)) !== 0) {
      // an empty or odd bucket list only comes from a malformed root; treat as nothing to merge
      return { changed: [], ahead: this.entries.size > 0 }
    }
    const sameLayout = n === this.count && this.cids.length === n
    const fetch = remoteCids.map((cid, i) => (sameLayout && this.cids[i]?.equals(cid) === true) ? null : cid)
    const loaded = await Promise.all(fetch.map(async cid => cid === null ? null : load(cid)))
    const changed: string[] = []
    const remoteEntries = new Map<string, Entry>()
    for (const bucket of loaded) {
      if (bucket === null) continue
      for (const [key, entry] of bucket) {
        remoteEntries.set(key, entry)
        if (this.merge(key, entry)) changed.push(key)
      }
    }
    // Adopt the remote layout; a bucket is dirty when we hold an entry its remote copy lacks.
    const wasDirty = sameLayout ? new Set(this.dirtyBuckets) : null
    this.count = n
    this.cids = [...remoteCids]
    this.dirtyBuckets = new Set()
    for (const [key, slot] of this.entries) {
      const i = slot.hash & (n - 1)
      if (fetch[i] === null) {
        if (wasDirty?.has(i) === true) this.dirtyBuckets.add(i)
        continue
      }
      const r = remoteEntries.get(key)
      if (r === undefined || !sameEntry(r, slot)) this.dirtyBuckets.add(i)
    }
    return { changed, ahead: this.dirtyBuckets.size > 0 }
  }
}

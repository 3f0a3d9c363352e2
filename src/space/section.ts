/**
 * A section is a key → entry map with its stored form (format 2). The public section is two
 * plaintext blocks: a plain JSON profile `{ key: value }` and a dag-cbor clock with what merging
 * needs. The private section is split by a keyed hash of the key into 2^k small encrypted buckets
 * under a tree of index nodes (tree.ts), so that one `set` re-seals one bucket and the index nodes
 * on its path. Both merge remote entries by the rule in entries.ts and remember which stored parts
 * are out of date ("dirty").
 */
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as json from 'multiformats/codecs/json'
import { sha256 as sha256Hash } from 'multiformats/hashes/sha2'
import { associatedDataText, open, padmeLength, seal } from '../crypto/envelope.js'
import { FORMAT_VERSION } from '../crypto/keys.js'
import { fromUtf8, utf8 } from '../crypto/bytes.js'
import { FormatError, TooLargeError } from '../errors.js'
import { MAX_BLOCK_BYTES, cborBlock, rawBlock, rawBlockNow } from '../store/blocks.js'
import { bucketLines, bucketLinesText, bucketTotals, editBucketLines, entrySize, keyText, readBucket, readPublicBlocks, sameEntry, scanBucket, wins } from './entries.js'
import { MAX_BUCKETS, applyTreeChanges, encodeTree, encodeTreeChanges, getEach, readTree } from './tree.js'
import type { BlockGetter, TreeLevels } from './tree.js'
import type { BucketLines, BucketTotals, Entry } from './entries.js'
import type { Json } from './json.js'
import type { Block } from '../store/interface.js'

/**
 * The bucket count doubles while the private map's average bucket would hold more than this many
 * bytes of entries (up to MAX_BUCKETS), so buckets hold between half of it and all of it on average:
 * with the index path and the root, a single-key update stays under 4 KiB (more past ~6 MiB of
 * entries, where the count stops at MAX_BUCKETS and buckets grow instead).
 * @default 1.5 KiB
 */
export const TARGET_BUCKET_BYTES = 1536
/**
 * A bucket's plaintext (with its 4-byte length prefix) is padded to at least this, then by Padmé
 * (steps of 32 bytes up to 1 KiB, 64 up to 2 KiB, 128 up to 4 KiB…), so a bucket's stored size
 * says little about how many entries it holds. @default 512 bytes
 */
export const MIN_BUCKET_PADDED_BYTES = 512
/**
 * Which buckets keep their lines between publishes (see PrivateSection.lines): those of a layout of
 * at least `buckets` buckets (by default only at the cap, MAX_BUCKETS, where buckets stop splitting
 * and grow with the space) holding at least `entries` entries. Below the cap a bucket averages
 * under TARGET_BUCKET_BYTES and costs little to write whole: side by side in one-off runs, keeping
 * lines gained nothing measurable at 10 000 and 30 000 keys, cost ~3 µs a
 * `set` at 10 keys, and added about a bucket's text per bucket to the heap; at 100 000 keys it saved
 * ~20 µs of ~160.
 */
export interface KeepLines {
  /** @default MAX_BUCKETS */
  buckets: number
  /** @default 16 */
  entries: number
}
export const KEEP_LINES: Readonly<KeepLines> = Object.freeze({ buckets: MAX_BUCKETS, entries: 16 })

/**
 * Buffers reused for bytes that are read at once and never kept (see `reusedUtf8`): a bucket's
 * associated data and its plaintext on their way into `seal`. Each byte array over 64 bytes made
 * for them would be an allocation outside V8's heap (see `blockBytes`).
 */
const AD_BUFFER = 0
const TEXT_BUFFER = 1
const reused = [new Uint8Array(256), new Uint8Array(4096)]
const encoder = new TextEncoder()

/** The UTF-8 of `text` in reused buffer `which`, valid until the next call for that buffer. */
function reusedUtf8 (text: string, which: number): Uint8Array {
  let buffer = reused[which] as Uint8Array
  // UTF-8 takes at most 3 bytes per UTF-16 code unit
  if (buffer.length < text.length * 3) reused[which] = buffer = new Uint8Array(Math.max(buffer.length * 2, text.length * 3))
  const { written } = encoder.encodeInto(text, buffer)
  return buffer.subarray(0, written)
}

interface Slot extends Entry {
  /** private section: the bucket holding the key under the current count; -1 before it is placed */
  bucket: number
  /** private section: the keyed hash of the key, -1 until a split needs it */
  hash: number
}

function parseValue (text: string): Json {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new FormatError('a stored value is not JSON', { cause: err })
  }
}

/** An own, enumerable property, even for keys such as `__proto__`. */
function define (target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

export abstract class Section {
  protected entries = new Map<string, Slot>()
  /** sum of entry sizes: the section's size, about its JSON length */
  bytes = 0
  protected highest = 0

  get size (): number { return this.entries.size }

  /** The slot at `key` (subclasses that load lazily make it present first). */
  protected slot (key: string): Slot | undefined { return this.entries.get(key) }
  /** Every slot (subclasses that load lazily load everything first). */
  protected all (): Map<string, Slot> { return this.entries }

  /** The highest stamp held, so the clock can move past it. */
  get maxStamp (): number { return this.highest }

  get (key: string): Json | undefined {
    const json = this.slot(key)?.json
    return json === undefined ? undefined : parseValue(json)
  }

  has (key: string): boolean {
    return this.slot(key)?.json !== undefined
  }

  getAll (): Record<string, Json> {
    const out: Record<string, Json> = {}
    for (const [key, slot] of this.all()) if (slot.json !== undefined) define(out, key, parseValue(slot.json))
    return out
  }

  keys (): string[] {
    const out: string[] = []
    for (const [key, slot] of this.all()) if (slot.json !== undefined) out.push(key)
    return out
  }

  entry (key: string): Entry | undefined {
    return this.slot(key)
  }

  /** Size in bytes the section would have after writing `entry` at `key`. */
  sizeWith (key: string, entry: Entry): number {
    const old = this.slot(key)
    const text = keyText(key)
    return this.bytes - (old === undefined ? 0 : entrySize(text, old)) + entrySize(text, entry)
  }

  /** Writes an entry unconditionally (a local write) and marks its stored part dirty. */
  write (key: string, entry: Entry): void {
    this.markDirty(this.put(key, entry, this.slot(key)))
  }

  /** Merges a remote entry; returns true when it replaced the local one. */
  merge (key: string, entry: Entry): boolean {
    const old = this.slot(key)
    if (old !== undefined && !wins(entry, old)) return false
    this.put(key, entry, old)
    return true
  }

  protected put (key: string, entry: Entry, old: Slot | undefined): Slot {
    const slot: Slot = { stamp: entry.stamp, device: entry.device, json: entry.json, bucket: old?.bucket ?? -1, hash: old?.hash ?? -1 }
    this.store(key, slot, old)
    if (old === undefined) this.added(key, slot)
    return slot
  }

  /** Puts a slot in the map and keeps the size and the highest stamp. */
  protected store (key: string, slot: Slot, old: Slot | undefined): void {
    const text = keyText(key)
    if (old !== undefined) this.bytes -= entrySize(text, old)
    this.bytes += entrySize(text, slot)
    if (slot.stamp > this.highest) this.highest = slot.stamp
    this.entries.set(key, slot)
  }

  /** Called once per key, when a write or a merge first brings it (keys are never deleted: removals are tombstones). */
  protected added (_key: string, _slot: Slot): void {}
  protected abstract markDirty (slot: Slot): void
  abstract get dirty (): boolean
  /** True when the stored form this section last took or merged holds the entry now at `key`. */
  abstract holds (key: string): boolean
}

/** The public section's stored form: the JSON profile and its clock. */
export interface PublicBlocks {
  profile: Block
  clock: Block
}

/** The plaintext public section: a JSON profile `{ key: value }` plus a clock block (see entries.ts). */
export class PublicSection extends Section {
  /** the stored profile (codec json) */
  cid: CID | null = null
  /** the stored clock (dag-cbor) */
  clockCid: CID | null = null
  private changed = false
  /** Counts writes, so that `stored` keeps a write made while the blocks were being published. */
  private writes = 0
  private encodedAt = 0

  get dirty (): boolean { return this.changed }
  holds (key: string): boolean { return this.entries.has(key) && !this.changed }
  protected markDirty (): void { this.changed = true; this.writes++ }
  markChanged (): void { this.changed = true; this.writes++ }

  /** True when the stored blocks are exactly these. */
  isStoredAs (profile: CID | null, clock: CID | null): boolean {
    return profile === null ? this.cid === null && clock === null : this.cid?.equals(profile) === true && clock !== null && this.clockCid?.equals(clock) === true
  }

  async encode (): Promise<PublicBlocks | null> {
    this.encodedAt = this.writes
    if (this.entries.size === 0) return null
    const profile: Record<string, unknown> = {}
    const stamps: Record<string, unknown> = {}
    for (const [key, slot] of this.entries) {
      define(stamps, key, [slot.stamp, slot.device, slot.json !== undefined])
      if (slot.json !== undefined) define(profile, key, JSON.parse(slot.json))
    }
    // json.encode is what @helia/json writes: the same object gives the same CID through either.
    const bytes = json.encode(profile)
    const blocks = { profile: { cid: CID.createV1(json.code, await sha256Hash.digest(bytes)), bytes }, clock: await cborBlock({ version: 2, entries: stamps }) }
    for (const block of [blocks.profile, blocks.clock]) {
      if (block.bytes.length > MAX_BLOCK_BYTES) throw new TooLargeError(`public section block is ${block.bytes.length} bytes, over the ${MAX_BLOCK_BYTES}-byte block limit`)
    }
    return blocks
  }

  stored (blocks: PublicBlocks | null): void {
    this.cid = blocks?.profile.cid ?? null
    this.clockCid = blocks?.clock.cid ?? null
    if (this.writes === this.encodedAt) this.changed = false
  }

  /** The remote version has no public section: ours is ahead when it holds anything. */
  absorbNone (): void {
    this.cid = null
    this.clockCid = null
    if (this.size > 0) this.markChanged()
  }

  /**
   * Merges a remote public section given as its stored blocks. All checks come before any change.
   * Returns the keys whose value changed here, and whether the local section now holds something
   * the remote one lacks.
   */
  absorb (profile: Block, clock: Block): { changed: string[], ahead: boolean } {
    const remote = readPublicBlocks(PublicSection.decodeProfile(profile.bytes), PublicSection.decodeClock(clock.bytes))
    const changed: string[] = []
    const remoteKeys = new Map(remote)
    for (const [key, entry] of remote) if (this.merge(key, entry)) changed.push(key)
    let ahead = false
    for (const [key, slot] of this.entries) {
      const r = remoteKeys.get(key)
      if (r === undefined || !sameEntry(r, slot)) { ahead = true; break }
    }
    this.cid = profile.cid
    this.clockCid = clock.cid
    this.changed = ahead
    return { changed, ahead }
  }

  static decodeProfile (bytes: Uint8Array): unknown {
    try {
      return JSON.parse(fromUtf8(bytes))
    } catch (err) {
      throw new FormatError('public profile is not JSON', { cause: err })
    }
  }

  static decodeClock (bytes: Uint8Array): unknown {
    try {
      return dagCbor.decode(bytes)
    } catch (err) {
      throw new FormatError('public clock block is not dag-cbor', { cause: err })
    }
  }
}

/** The private section's stored form after `encode`: new blocks, the tree top, and `commit` once stored. */
export interface SealedPrivate {
  /** new buckets and index nodes (unchanged ones are not repeated) */
  blocks: Block[]
  /** what the current node links as `private` */
  top: CID | null
  /** the bucket count (0 when the section is empty) */
  count: number
  /** the bucket that carries the section's totals (see `Current.totals`), undefined under 2 buckets */
  totals: number | undefined
  /** Records the stored form once the version is published. */
  commit: () => void
}

/** The encrypted private section: 2^k buckets by HMAC-SHA256(bucketKey, key), under an index tree. */
export class PrivateSection extends Section {
  private count = 1
  /** bucket → its keys */
  private members: string[][] = [[]]
  /** the stored tree of the layout held, undefined when this layout was never stored */
  private levels: TreeLevels | undefined
  /**
   * Bumped whenever `levels` changes (a version stored, merged or laid out again): a stored version
   * updates the levels in place, so an encode can tell its base is gone only by this count.
   */
  private levelsGeneration = 0
  private dirtyBuckets = new Set<number>()
  /**
   * bucket → its entry lines as this section last wrote them, and the keys stored in it since, so
   * that sealing a bucket again rewrites only those keys' lines (see `editBucketLines`). Dropped
   * with the layout. They hold about one bucket text per bucket written here, beside the entries.
   */
  private lines = new Map<number, BucketLines>()
  private edited = new Map<number, Set<string>>()
  /** Buckets written to since the last `encode` began: `commit` leaves them dirty. */
  private touched = new Set<number>()
  /**
   * Opening keeps no per-key structure: a bucket waits in `unread` until an entry of it is needed,
   * sealed (its envelope, not yet decrypted) or as checked text, and a key is found by hashing it to
   * its bucket. A version of 2 buckets or more names one that carries the section's totals, and an
   * open decrypts that one alone.
   */
  private unread = new Map<number, string | Uint8Array>()
  /** entries in the buckets of `unread` (as the totals said, for sealed ones) */
  private unreadEntries = 0
  /** the stored bucket that carries the totals of the stored layout, undefined when none does */
  private totalsAt: number | undefined
  /**
   * True while the entry count, size and highest stamp rest on a version's totals: once every
   * bucket has been read they are counted from the entries, so totals that were wrong (a faulty
   * writer) do not outlive the buckets they stood for.
   */
  private fromTotals = false
  /** the last key hashed and its hash: a write hashes to find the key, then to place it */
  private lastHashed: { key: string, hash: number } = { key: '', hash: -1 }
  private readonly mac: ReturnType<typeof hmac.create>

  /**
   * @param keepLines which buckets keep their lines between publishes (see `lines`) @default KEEP_LINES
   */
  constructor (private readonly dataKey: Uint8Array, bucketKey: Uint8Array, private readonly name: string, private readonly keepLines: Readonly<KeepLines> = KEEP_LINES) {
    super()
    // The keyed hash with its key already absorbed: each key then costs two SHA-256 blocks, not four.
    this.mac = hmac.create(sha256, bucketKey)
  }

  /** True when a bucket holds writes not yet sealed. A new, empty space has nothing to publish. */
  get dirty (): boolean { return this.dirtyBuckets.size > 0 }
  holds (key: string): boolean {
    const slot = this.slot(key)
    return slot !== undefined && this.levels !== undefined && !this.dirtyBuckets.has(slot.bucket)
  }

  override get size (): number { return this.entries.size + this.unreadEntries }
  /** No entry at all, read or not (what shapes the stored form; `size` may rest on a version's totals). */
  private get empty (): boolean { return this.entries.size === 0 && this.unread.size === 0 }
  get bucketCount (): number { return this.empty ? 0 : this.count }

  protected override slot (key: string): Slot | undefined {
    const slot = this.entries.get(key)
    if (slot !== undefined || this.unread.size === 0) return slot
    const bucket = this.hashOf(key) & (this.count - 1)
    if (!this.unread.has(bucket)) return undefined
    this.read(bucket)
    return this.entries.get(key)
  }

  protected override all (): Map<string, Slot> {
    if (this.unread.size === 0) return this.entries
    for (const bucket of [...this.unread.keys()]) this.read(bucket)
    return this.entries
  }

  /** The entry count, size and highest stamp counted from the entries, every bucket being read. */
  private recount (): void {
    this.fromTotals = false
    this.unreadEntries = 0
    this.bytes = 0
    this.highest = 0
    for (const [key, slot] of this.entries) {
      this.bytes += entrySize(keyText(key), slot)
      if (slot.stamp > this.highest) this.highest = slot.stamp
    }
  }

  /** A sealed bucket's text, decrypted under the layout held (IntegrityError, FormatError). */
  private openBucket (bucket: number, sealed: Uint8Array, count = this.count): string {
    const plaintext = open(this.dataKey, this.ad(bucket, count), sealed)
    try {
      return fromUtf8(plaintext)
    } catch (err) {
      throw new FormatError('private bucket is not UTF-8', { cause: err })
    }
  }

  /**
   * Reads the entries of a bucket left unread on open, decrypting it first when it is still sealed.
   * A sealed bucket that fails (IntegrityError, FormatError) stays unread and changes nothing; so
   * does a key written twice (in this bucket or another one read before), which only a faulty writer
   * holding the space's keys can produce (FormatError).
   */
  private read (bucket: number): void {
    const held = this.unread.get(bucket)
    if (held === undefined) return
    const text = typeof held === 'string' ? held : this.openBucket(bucket, held)
    const read: Array<[string, Slot]> = []
    const seen = new Set<string>()
    readBucket(text, (key, stamp, device, json) => {
      if (this.entries.has(key) || seen.size === seen.add(key).size) throw new FormatError('a key appears twice in the private buckets')
      read.push([key, { stamp, device, json, bucket, hash: -1 }])
    })
    this.unread.delete(bucket)
    this.unreadEntries = Math.max(0, this.unreadEntries - read.length)
    const keys = this.members[bucket] as string[]
    for (const [key, slot] of read) { this.entries.set(key, slot); keys.push(key) }
    if (this.fromTotals && this.unread.size === 0) this.recount()
  }

  /** The CIDs of the stored buckets, in bucket order ([] when this layout was never stored). */
  get cids (): CID[] { return this.levels?.[this.levels.length - 1] ?? [] }

  private hashOf (key: string): number {
    if (this.lastHashed.key === key && this.lastHashed.hash >= 0) return this.lastHashed.hash
    const mac = this.mac.clone().update(utf8(key)).digest()
    const hash = ((mac[0] as number) << 24 | (mac[1] as number) << 16 | (mac[2] as number) << 8 | (mac[3] as number)) >>> 0
    this.lastHashed = { key, hash }
    return hash
  }

  protected override added (key: string, slot: Slot): void {
    if (slot.hash < 0) slot.hash = this.hashOf(key)
    slot.bucket = slot.hash & (this.count - 1)
    // Its bucket's other entries are read first, so that the bucket is sealed with all of them.
    this.read(slot.bucket)
    ;(this.members[slot.bucket] as string[]).push(key)
    this.noteEdit(slot.bucket, key)
  }

  protected override store (key: string, slot: Slot, old: Slot | undefined): void {
    super.store(key, slot, old)
    // A new key has no bucket yet: `added` places it and notes it.
    if (slot.bucket >= 0) this.noteEdit(slot.bucket, key)
  }

  /** Every change to a bucket's entries passes here (a write, a merge, a new key), for its kept lines. */
  private noteEdit (bucket: number, key: string): void {
    if (!this.lines.has(bucket)) return
    let keys = this.edited.get(bucket)
    if (keys === undefined) this.edited.set(bucket, keys = new Set())
    keys.add(key)
  }

  /** A bucket's plaintext: its kept lines with the keys stored since rewritten, else written whole (and kept). */
  private bucketText (bucket: number, totals: BucketTotals | undefined): string {
    let kept = this.lines.get(bucket)
    const keys = this.edited.get(bucket)
    this.edited.delete(bucket)
    if (kept !== undefined && keys !== undefined) {
      for (const key of keys) {
        if (!editBucketLines(kept, key, this.entries.get(key) as Slot)) { kept = undefined; break }
      }
    }
    if (kept === undefined) {
      kept = bucketLines((this.members[bucket] as string[]).map(key => [key, this.entries.get(key) as Slot]))
      if (this.count >= this.keepLines.buckets && kept.lines >= this.keepLines.entries) this.lines.set(bucket, kept)
      else this.lines.delete(bucket)
    }
    return bucketLinesText(kept, totals)
  }

  protected markDirty (slot: Slot): void {
    this.dirtyBuckets.add(slot.bucket)
    this.touched.add(slot.bucket)
  }

  /** The bucket count a private map of `bytes` calls for. */
  static bucketCountFor (bytes: number): number {
    let n = 1
    while (bytes / n > TARGET_BUCKET_BYTES && n < MAX_BUCKETS) n *= 2
    return n
  }

  /**
   * Places every key under `count` buckets. A bucket index already holds the low bits of the key's
   * hash, so fewer buckets need no hashing; more buckets need the keyed hash, computed once per key
   * and kept. Keys placed by `placed` (read from a remote layout) go where it says.
   */
  private relayout (count: number, placed?: Map<string, Slot>): void {
    const members: string[][] = Array.from({ length: count }, () => [])
    for (const [key, slot] of this.all()) {
      const remote = placed?.get(key)
      if (remote !== undefined) slot.bucket = remote.bucket
      else if (count <= this.count && slot.bucket >= 0) slot.bucket &= count - 1
      else {
        if (slot.hash < 0) slot.hash = this.hashOf(key)
        slot.bucket = slot.hash & (count - 1)
      }
      ;(members[slot.bucket] as string[]).push(key)
    }
    this.count = count
    this.members = members
    this.lines.clear()
    this.edited.clear()
    this.levels = undefined
    this.totalsAt = undefined
    this.levelsGeneration++
    this.dirtyBuckets = new Set(this.empty ? [] : members.keys())
  }

  /**
   * A bucket's associated data (see `associatedData`), written into a reused buffer: `seal` and
   * `open` read it at once and keep nothing of it. The result is valid until the next call.
   */
  private ad (index: number, count: number): Uint8Array {
    return reusedUtf8(associatedDataText(FORMAT_VERSION, this.name, `bucket ${index}/${count}`), AD_BUFFER)
  }

  /**
   * Seals the dirty buckets (all of them when the bucket count grows) and the index nodes above
   * them. Nothing is recorded as stored until `commit`.
   */
  async encode (): Promise<SealedPrivate> {
    this.touched.clear()
    if (this.empty) return { blocks: [], top: null, count: 0, totals: undefined, commit: () => {} }
    const want = Math.max(this.count, PrivateSection.bucketCountFor(this.bytes))
    if (want !== this.count) this.relayout(want)
    const count = this.count
    const previous = this.levels
    // Read with `previous`: a merge or relayout while the buckets are sealed (hashing may wait)
    // makes both stale together.
    const generation = this.levelsGeneration
    const indexes = previous === undefined ? [...Array(count).keys()] : [...this.dirtyBuckets]
    for (const i of indexes) this.read(i)
    // The first bucket sealed carries the totals (with 2 buckets or more); none sealed: they stay where they are.
    const totalsAt = count < 2 ? undefined : indexes.length > 0 ? indexes[0] : this.totalsAt
    const totals: BucketTotals = { entries: this.size, bytes: this.bytes, highest: this.highest }
    const texts = indexes.map((i, n) => this.bucketText(i, n === 0 && totalsAt !== undefined ? totals : undefined))
    const pad = (n: number): number => Math.max(MIN_BUCKET_PADDED_BYTES, padmeLength(n))
    const sealed: Block[] = []
    for (let n = 0; n < texts.length; n++) {
      // the plaintext in a reused buffer too: seal copies it into its padded form at once
      const envelope = seal(this.dataKey, this.ad(indexes[n] as number, count), reusedUtf8(texts[n] as string, TEXT_BUFFER), undefined, pad)
      sealed.push(rawBlockNow(envelope) ?? await rawBlock(envelope))
    }
    for (const block of sealed) {
      if (block.bytes.length > MAX_BLOCK_BYTES) throw new TooLargeError(`a private bucket would be ${block.bytes.length} bytes, over the ${MAX_BLOCK_BYTES}-byte block limit`)
    }
    let tree: { top: CID, blocks: Block[], store: () => void }
    if (previous === undefined) {
      const buckets = new Array<CID>(count)
      indexes.forEach((i, n) => { buckets[i] = (sealed[n] as Block).cid })
      const full = await encodeTree(buckets, indexes, undefined)
      tree = { top: (full.levels[0] as CID[])[0] as CID, blocks: full.blocks, store: () => { this.levels = full.levels } }
    } else {
      // Only the changed places: the stored levels are updated in place once this version is stored.
      const { top, changes, blocks } = await encodeTreeChanges(previous, new Map(indexes.map((i, n) => [i, (sealed[n] as Block).cid])))
      tree = { top, blocks, store: () => { applyTreeChanges(previous, changes) } }
    }
    return {
      blocks: [...sealed, ...tree.blocks],
      top: tree.top,
      count,
      totals: totalsAt,
      commit: () => {
        // A merge or another version stored since then has made this stored form someone else's past.
        if (this.count !== count || this.levelsGeneration !== generation) return
        tree.store()
        this.totalsAt = totalsAt
        this.levelsGeneration++
        // A write that landed while the buckets were being sealed is not in these blocks.
        this.dirtyBuckets = new Set(this.touched)
      }
    }
  }

  /**
   * Merges a remote private section given as its bucket count and tree top, fetching through `get`
   * (blocks verified against their CIDs) only the index nodes and buckets whose CID differs from the
   * ones held at the same place. Every block is read and checked before anything changes here.
   * Returns the keys whose value changed here and whether the local section now holds something
   * the remote one lacks.
   */
  async absorb (count: number, top: CID | null, get: BlockGetter, totalsAt?: number): Promise<{ changed: string[], ahead: boolean }> {
    if (count === 0 || top === null) {
      // The remote version has no private data: everything held here is ahead of it.
      if (!this.empty) this.relayout(this.count)
      return { changed: [], ahead: !this.empty }
    }
    const sameLayout = count === this.count && this.levels !== undefined
    // A version stored while the tree is read updates the held levels in place: readTree compares a
    // depth and copies the one below it in the same step, and equal CIDs have equal children, so
    // what it keeps from them is right at whichever moment it looked.
    const levels = await readTree(top, count, get, sameLayout ? this.levels : undefined)
    const buckets = levels[levels.length - 1] as CID[]
    // A copy: the held levels change in place when a version is stored, and `known` is read again
    // after the buckets are fetched.
    const known = sameLayout ? [...this.cids] : undefined
    // The buckets dirty now: a version of them stored while the buckets are fetched makes them
    // clean there and changes `cids` in place, and `known` still holds what the remote builds on.
    const dirtyBefore = sameLayout ? [...this.dirtyBuckets] : []
    const fetch: number[] = []
    buckets.forEach((cid, i) => { if (known?.[i]?.equals(cid) !== true) fetch.push(i) })
    const sealed = await getEach(fetch.map(i => buckets[i] as CID), get)
    if (this.empty) return this.load(count, levels, fetch, sealed, totalsAt)
    const texts = fetch.map((i, n) => this.openBucket(i, sealed[n] as Uint8Array, count))
    // Merging into what is held: the buckets it touches are read in full first.
    if (sameLayout) for (const i of fetch) this.read(i)
    else this.all()
    // Read and check everything first: a bad block changes nothing.
    const incoming = new Map<string, Slot>()
    fetch.forEach((i, n) => {
      readBucket(texts[n] as string, (key, stamp, device, json) => {
        if (incoming.has(key)) throw new FormatError('a key appears twice in the private buckets')
        // Every bucket this key may be in locally has been read above.
        const local = this.entries.get(key)
        if (sameLayout && local !== undefined && local.bucket !== i) throw new FormatError(`private bucket ${i} holds a key that belongs in bucket ${local.bucket}`)
        incoming.set(key, { stamp, device, json, bucket: i, hash: local?.hash ?? -1 })
      })
    })
    const hadEntries = this.size > 0
    const dirty = sameLayout ? new Set([...dirtyBefore, ...this.dirtyBuckets].filter(i => known?.[i]?.equals(buckets[i] as CID) === true)) : new Set<number>()
    if (!sameLayout) this.relayout(count, incoming)
    const changed: string[] = []
    for (const [key, remote] of incoming) {
      const local = this.entries.get(key)
      if (local === undefined) {
        this.store(key, remote, undefined)
        ;(this.members[remote.bucket] as string[]).push(key)
        changed.push(key)
      } else if (wins(remote, local)) {
        remote.hash = local.hash
        this.store(key, remote, local)
        changed.push(key)
      } else if (!sameEntry(remote, local)) {
        dirty.add(remote.bucket)
      }
    }
    if (hadEntries) {
      // A key held here that the remote bucket lacks makes that bucket ahead.
      for (const i of fetch) {
        if (dirty.has(i)) continue
        if ((this.members[i] as string[]).some(key => !incoming.has(key))) dirty.add(i)
      }
    }
    this.levels = levels
    this.totalsAt = totalsAt
    this.levelsGeneration++
    this.dirtyBuckets = dirty
    return { changed, ahead: dirty.size > 0 }
  }

  /**
   * `absorb` into an empty section (opening a space). With the bucket the version names for its
   * totals, only that bucket is decrypted and checked: the others stay sealed until an entry of
   * theirs is needed, and the totals stand for them (the entry count, the entries' size, the highest
   * stamp). Without it (a single bucket), every line of every bucket is checked and only those three
   * are kept. No key is placed, hashed or parsed until it is needed, and nothing changes here until
   * every bucket checked has been read.
   */
  private load (count: number, levels: TreeLevels, fetch: number[], sealed: Uint8Array[], totalsAt: number | undefined): { changed: string[], ahead: boolean } {
    const unread = new Map<number, string | Uint8Array>()
    let entries = 0
    let bytes = 0
    let highest = 0
    const at = totalsAt === undefined ? -1 : fetch.indexOf(totalsAt)
    if (at >= 0) {
      const text = this.openBucket(totalsAt as number, sealed[at] as Uint8Array, count)
      const totals = bucketTotals(text)
      if (totals === undefined) throw new FormatError(`private bucket ${totalsAt as number} carries no totals, though the current node says it does`)
      const own = scanBucket(text)
      if (totals.entries < own.entries || totals.bytes < own.bytes || totals.highest < own.highest) {
        throw new FormatError(`private bucket ${totalsAt as number} carries totals below its own entries`)
      }
      ;({ entries, bytes, highest } = totals)
      fetch.forEach((i, n) => { unread.set(i, i === totalsAt ? text : sealed[n] as Uint8Array) })
    } else {
      fetch.forEach((i, n) => {
        const text = this.openBucket(i, sealed[n] as Uint8Array, count)
        const scan = scanBucket(text)
        entries += scan.entries
        bytes += scan.bytes
        if (scan.highest > highest) highest = scan.highest
        if (scan.entries > 0) unread.set(i, text)
      })
    }
    this.entries = new Map()
    this.unread = unread
    this.unreadEntries = entries
    // (no kept lines to drop: a section is empty only before its first entry, and keys are never deleted)
    this.members = Array.from({ length: count }, () => [])
    this.count = count
    this.bytes = bytes
    this.highest = highest
    this.levels = levels
    this.totalsAt = totalsAt
    this.fromTotals = at >= 0
    this.levelsGeneration++
    this.dirtyBuckets = new Set()
    // The keys are listed only when someone asks (a change listener): an open has none yet. A
    // sealed bucket that fails is left out here; reading a key of it fails (see read).
    let changed: string[] | undefined
    const loaded = [...unread]
    const list = (): string[] => {
      if (changed === undefined) {
        const keys: string[] = []
        for (const [i, held] of loaded) {
          const before = keys.length
          try {
            scanBucket(typeof held === 'string' ? held : this.openBucket(i, held, count), key => { keys.push(key) })
          } catch {
            keys.length = before
          }
        }
        changed = keys
      }
      return changed
    }
    return { get changed () { return list() }, ahead: false }
  }
}

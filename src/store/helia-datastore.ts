/**
 * The datastore a Node helia node runs on (see createHeliaNode): a persistent datastore (LevelDB)
 * that spares the disk the rewrites libp2p makes that carry nothing new.
 *
 * - libp2p's peer store rewrites a peer's entry every time a stream to or from it is negotiated
 *   (libp2p 3.2 `Connection.newStream` / `onIncomingStream` merge the stream's protocol, and
 *   @libp2p/peer-store 12 writes on every merge, stamping it with the time): five DHT streams per
 *   published version wrote ~2.6 KB to each side's LevelDB log, more than the version itself.
 *   Peer entries are kept in memory here and written to the inner datastore at most once per
 *   `peerWriteDelayMs`, the newest value, and whenever the datastore is flushed or closed. They are
 *   a cache of what the network says (addresses, protocols, tags); a crash loses at most that last
 *   interval of them, never a record or a block.
 * - kad-dht 16 stores a record locally on every DHT put, although @helia/ipns's local store has just
 *   stored the same record (it only skips identical bytes, and the DHT's copy differs by its time of
 *   receipt). A DHT record whose value equals the stored one and whose stored time of receipt is
 *   less than `recordRefreshMs` old is not written again; an older one is (the time of receipt is what
 *   keeps a record served for another 48 hours, see helia.ts), and a new value always is.
 *
 * - A node that keeps records elsewhere (a hub's record store, `heldRecord`) does not also copy one
 *   of them into kad-dht's records when the DHT put of that very record stores it locally: kad-dht's
 *   reads of a record it lacks are answered from the held one (stamped as received now: it is the
 *   record this node announces), and a stale copy under the key is deleted. On a hub that copy was
 *   ~330 bytes of LevelDB for every published version.
 *
 * Reads see every write at once: a peer entry waiting to be written is read from memory, and a
 * query that may list peer entries writes the waiting ones first.
 */
import { Record as Libp2pRecord } from '@libp2p/kad-dht'
import { equals } from 'multiformats/bytes'
import { base32 } from 'multiformats/bases/base32'
import { ipnsSelector } from 'ipns/selector'
import type { AbortOptions } from '@libp2p/interface'
import type { Batch, Datastore, Key, KeyQuery, Pair, Query } from 'interface-datastore'

/** How long a changed peer entry may wait in memory before it is written. */
export const DEFAULT_PEER_WRITE_DELAY_MS = 30_000

/** A DHT record with the stored value is written again only when the stored copy is older than this. */
export const DEFAULT_RECORD_REFRESH_MS = 60_000

/** libp2p's peer store keeps one entry per peer under this prefix (@libp2p/peer-store NAMESPACE_COMMON). */
const PEERS_PREFIX = '/peers/'

/** kad-dht (and @helia/ipns's local store) keep records under this prefix. */
const RECORD_PREFIX = '/dht/record/'

export interface QuietDatastoreOptions {
  /** @default DEFAULT_PEER_WRITE_DELAY_MS (30 s) */
  peerWriteDelayMs?: number

  /** @default DEFAULT_RECORD_REFRESH_MS (60 s) */
  recordRefreshMs?: number

  /** The clock records' time of receipt is compared with, in ms since 1970. @default Date.now */
  nowMs?: () => number

  /**
   * The record this node keeps elsewhere for a DHT routing key (`/ipns/` + multihash), if any: that
   * record is not copied into the DHT's records, and is what they answer for the key when they hold
   * nothing. @default none
   */
  heldRecord?: (routingKey: Uint8Array) => Promise<Uint8Array | undefined>
}

/** A datastore whose waiting writes can be written out (and are, by `close`). */
export interface QuietDatastore extends Datastore {
  /** Writes every waiting peer entry to the inner datastore. */
  flush(): Promise<void>
  /** Flushes, then stops the timer; the inner datastore stays open (its owner closes it). */
  close(): Promise<void>
}

/**
 * Wraps `inner` as described in the module doc, for libp2p (its `datastore` option): it must be the
 * only writer of `inner`'s peer entries. Others (helia, @helia/ipns) may keep using `inner` itself.
 */
export function quietDatastore (inner: Datastore, options: QuietDatastoreOptions = {}): QuietDatastore {
  return new Quiet(inner, options.peerWriteDelayMs ?? DEFAULT_PEER_WRITE_DELAY_MS, options.recordRefreshMs ?? DEFAULT_RECORD_REFRESH_MS, options.nowMs ?? Date.now, options.heldRecord)
}

const isPeerKey = (key: Key): boolean => key.toString().startsWith(PEERS_PREFIX)

/** Whether a query with `prefix` may list keys under `/peers/`. */
function mayListPeers (prefix: string | undefined): boolean {
  return prefix === undefined || PEERS_PREFIX.startsWith(prefix) || prefix.startsWith(PEERS_PREFIX)
}

class Quiet implements QuietDatastore {
  /** Peer entries written here and not yet to the inner datastore, by key string. */
  private readonly waiting = new Map<string, { key: Key, value: Uint8Array }>()
  private timer: ReturnType<typeof setTimeout> | undefined
  private flushing: Promise<void> = Promise.resolve()

  constructor (
    private readonly inner: Datastore,
    private readonly peerWriteDelayMs: number,
    private readonly recordRefreshMs: number,
    private readonly nowMs: () => number,
    private readonly heldRecord?: (routingKey: Uint8Array) => Promise<Uint8Array | undefined>
  ) {}

  async put (key: Key, value: Uint8Array, options?: AbortOptions): Promise<Key> {
    if (isPeerKey(key)) {
      this.wait(key, value)
      return key
    }
    if (await this.unchangedRecord(key, value, options)) return key
    const held = await this.heldFor(key, value)
    if (held !== undefined) {
      // Served from the held record from now on: an older copy under the key must not shadow it
      // (a newer one, which a DHT peer put here, stays).
      if (await this.storedIsWorse(key, held, options)) await this.inner.delete(key, options)
      return key
    }
    return await this.inner.put(key, value, options)
  }

  async get (key: Key, options?: AbortOptions): Promise<Uint8Array> {
    const waiting = this.waiting.get(key.toString())
    if (waiting !== undefined) return waiting.value
    let stored: Uint8Array
    try {
      stored = await this.inner.get(key, options)
    } catch (err) {
      if ((err as { name?: unknown }).name !== 'NotFoundError') throw err
      const held = await this.held(key)
      if (held === undefined) throw err
      return this.asStored(held)
    }
    // A copy under the key that is older than the held record (a peer's replay) is not served.
    const held = await this.held(key)
    if (held !== undefined && await this.storedIsWorse(key, held.record, options, stored)) return this.asStored(held)
    return stored
  }

  async has (key: Key, options?: AbortOptions): Promise<boolean> {
    if (this.waiting.has(key.toString())) return true
    return await this.inner.has(key, options) || await this.held(key) !== undefined
  }

  /** The held record for a DHT record key, with its routing key, or undefined. */
  private async held (key: Key): Promise<{ routingKey: Uint8Array, record: Uint8Array } | undefined> {
    const text = key.toString()
    if (this.heldRecord === undefined || !text.startsWith(RECORD_PREFIX)) return undefined
    let routingKey: Uint8Array
    try { routingKey = base32.baseDecode(text.slice(RECORD_PREFIX.length)) } catch { return undefined }
    const record = await this.heldRecord(routingKey).catch(() => undefined)
    return record === undefined ? undefined : { routingKey, record }
  }

  /** A held record as kad-dht stores records: received now (it is the record this node announces). */
  private asStored (held: { routingKey: Uint8Array, record: Uint8Array }): Uint8Array {
    return new Libp2pRecord(held.routingKey, held.record, new Date(this.nowMs())).serialize()
  }

  /** The held record when `value` is a DHT record whose value is it, else undefined. */
  private async heldFor (key: Key, value: Uint8Array): Promise<Uint8Array | undefined> {
    if (this.heldRecord === undefined || !key.toString().startsWith(RECORD_PREFIX)) return undefined
    let offered: Libp2pRecord
    try { offered = Libp2pRecord.deserialize(value) } catch { return undefined }
    const held = await this.heldRecord(offered.key).catch(() => undefined)
    return held !== undefined && equals(held, offered.value) ? held : undefined
  }

  /**
   * Whether the copy stored under `key` (read unless given) is an IPNS record the held one beats
   * (the IPNS selector: higher sequence, then later validity) or equals; false when none is stored.
   */
  private async storedIsWorse (key: Key, held: Uint8Array, options?: AbortOptions, stored?: Uint8Array): Promise<boolean> {
    let copy: Libp2pRecord
    try { copy = Libp2pRecord.deserialize(stored ?? await this.inner.get(key, options)) } catch { return false }
    if (equals(copy.value, held)) return true
    try { return ipnsSelector(copy.key, [held, copy.value]) === 0 } catch { return false }
  }

  async delete (key: Key, options?: AbortOptions): Promise<void> {
    if (isPeerKey(key)) await this.forget(key)
    await this.inner.delete(key, options)
  }

  async * putMany (source: Iterable<Pair> | AsyncIterable<Pair>, options?: AbortOptions): AsyncGenerator<Key> {
    for await (const { key, value } of source) yield await this.put(key, value, options)
  }

  async * getMany (source: Iterable<Key> | AsyncIterable<Key>, options?: AbortOptions): AsyncGenerator<Pair> {
    for await (const key of source) yield { key, value: await this.get(key, options) }
  }

  async * deleteMany (source: Iterable<Key> | AsyncIterable<Key>, options?: AbortOptions): AsyncGenerator<Key> {
    for await (const key of source) {
      await this.delete(key, options)
      yield key
    }
  }

  batch (): Batch {
    const ops: Array<{ key: Key, value?: Uint8Array }> = []
    return {
      put: (key, value) => { ops.push({ key, value }) },
      delete: (key) => { ops.push({ key }) },
      commit: async (options?: AbortOptions) => {
        const batch = this.inner.batch()
        let held: Uint8Array | undefined
        for (const { key, value } of ops) {
          if (value === undefined) {
            if (isPeerKey(key)) await this.forget(key)
            batch.delete(key)
          } else if (isPeerKey(key)) {
            this.wait(key, value)
          } else if ((held = await this.heldFor(key, value)) !== undefined) {
            if (await this.storedIsWorse(key, held, options)) batch.delete(key)
          } else if (!(await this.unchangedRecord(key, value, options))) {
            batch.put(key, value)
          }
        }
        await batch.commit(options)
      }
    }
  }

  async * query (query: Query, options?: AbortOptions): AsyncGenerator<Pair> {
    if (mayListPeers(query.prefix)) await this.flush()
    yield * this.inner.query(query, options)
  }

  async * queryKeys (query: KeyQuery, options?: AbortOptions): AsyncGenerator<Key> {
    if (mayListPeers(query.prefix)) await this.flush()
    yield * this.inner.queryKeys(query, options)
  }

  async flush (): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    // One flush at a time, in order: a later one writes what came after the earlier one took its batch.
    this.flushing = this.flushing.catch(() => {}).then(async () => {
      if (this.waiting.size === 0) return
      const entries = [...this.waiting.values()]
      const batch = this.inner.batch()
      for (const { key, value } of entries) batch.put(key, value)
      await batch.commit()
      // Only what was written leaves memory; an entry changed meanwhile waits for the next flush.
      for (const entry of entries) {
        if (this.waiting.get(entry.key.toString()) === entry) this.waiting.delete(entry.key.toString())
      }
    })
    await this.flushing
  }

  async close (): Promise<void> {
    await this.flush()
  }

  /**
   * Drops a waiting peer entry before it is deleted, after any flush that has already taken it
   * (which would otherwise write it back after the delete).
   */
  private async forget (key: Key): Promise<void> {
    this.waiting.delete(key.toString())
    await this.flushing.catch(() => {})
  }

  private wait (key: Key, value: Uint8Array): void {
    this.waiting.set(key.toString(), { key, value })
    if (this.timer !== undefined) return
    this.timer = setTimeout(() => { this.flush().catch(() => {}) }, this.peerWriteDelayMs)
    // A waiting peer entry never keeps the process alive; close() writes it.
    this.timer.unref?.()
  }

  /** Whether `value` is a DHT record that would only refresh a recent time of receipt of the stored one. */
  private async unchangedRecord (key: Key, value: Uint8Array, options?: AbortOptions): Promise<boolean> {
    if (!key.toString().startsWith(RECORD_PREFIX)) return false
    let stored: Libp2pRecord
    let offered: Libp2pRecord
    try {
      offered = Libp2pRecord.deserialize(value)
      stored = Libp2pRecord.deserialize(await this.inner.get(key, options))
    } catch {
      return false // none stored, or not a record: written as given
    }
    const ageMs = this.nowMs() - stored.timeReceived.getTime()
    return equals(stored.value, offered.value) && equals(stored.key, offered.key) && ageMs >= 0 && ageMs < this.recordRefreshMs
  }
}

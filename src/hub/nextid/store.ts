/**
 * Where the Next.ID KV Service keeps its state: all of it in the datastore, under `/nextid/`, so
 * that one (fsynced) batch makes an accepted patch durable as a whole:
 *
 * - `/nextid/block/<cid>` → the dag-cbor block of one accepted patch. Kept here rather than in
 *   the blockstore: written in the same fsynced batch as the head that names it (one fsync, no
 *   head without its block), and out of reach of the blockstore's garbage collection, which keeps
 *   only what IPNS records reference.
 * - `/nextid/head/<avatar>` → CID bytes of the avatar's newest block
 * - `/nextid/at/<cid>` → when this hub accepted the link (ms since the epoch, decimal): bounds the
 *   stale-head diagnosis to links accepted after a payload was issued
 * - `/nextid/stat/<avatar>` → JSON `{links, chainBytes, contentBytes}`: the avatar's totals,
 *   checked against the per-avatar caps without reading the chain
 * - `/nextid/uuid/<avatar>/<uuid>` → CID bytes of the block that used the uuid. Unique per avatar,
 *   not per hub (kv_server's index is global), so no stranger can take an avatar's uuids.
 * - `/nextid/kv/<avatar>/<platform>/<identity>` → canonical JSON `{platform, identity, content}`,
 *   the merged content
 * - `/nextid/identity/<platform>/<identity>/<avatar>` → empty, the by_identity index
 * - `/nextid/total` → decimal: the bytes of every other key and value under `/nextid/`, written in
 *   the batch of every write, so it never drifts from the data; checked against the hub-wide
 *   budget (`maxStoredBytes`), which fresh avatars (free to make) cannot get around
 *
 * `<avatar>` is the uncompressed key in hex; platform and identity are hex of their UTF-8 bytes so
 * any string is a single key segment. Hubs written before blocks moved here have them in the
 * blockstore: reads fall back to it, and the avatar's next write copies its chain here.
 */
import { Key, type Datastore } from 'interface-datastore'
import { LevelDatastore } from 'datastore-level'
import { CID } from 'multiformats/cid'
import { bytesToHex, fromUtf8, utf8 } from '../../crypto/bytes.js'
import { InsufficientStorageError, RateLimitError, StoreError } from '../../errors.js'
import { verifyBlock } from '../../store/blocks.js'
import { decodeLink, type KvLink } from './chain.js'
import { canonicalJson, compareCodePoints, isJsonObject, parseJson, type JsonValue } from './json.js'
import type { Blockstore } from 'interface-blockstore'
import type { AbortOptions } from '../../store/interface.js'

export interface NextIdStores {
  datastore: Datastore
  blockstore: Blockstore
}

const PREFIX = '/nextid'

function segment (text: string): string {
  return bytesToHex(utf8(text))
}

export const keys = {
  block: (cid: CID) => new Key(`${PREFIX}/block/${cid.toString()}`),
  head: (avatar: string) => new Key(`${PREFIX}/head/${avatar}`),
  acceptedAt: (cid: CID) => new Key(`${PREFIX}/at/${cid.toString()}`),
  stat: (avatar: string) => new Key(`${PREFIX}/stat/${avatar}`),
  uuid: (avatar: string, uuid: string) => new Key(`${PREFIX}/uuid/${avatar}/${uuid}`),
  kv: (avatar: string, platform: string, identity: string) => new Key(`${PREFIX}/kv/${avatar}/${segment(platform)}/${segment(identity)}`),
  kvPrefix: (avatar: string) => `${PREFIX}/kv/${avatar}/`,
  identity: (platform: string, identity: string, avatar: string) => new Key(`${PREFIX}/identity/${segment(platform)}/${segment(identity)}/${avatar}`),
  identityPrefix: (platform: string, identity: string) => `${PREFIX}/identity/${segment(platform)}/${segment(identity)}/`,
  total: new Key(`${PREFIX}/total`)
}

/** @default for `maxStoredBytes`: Next.ID bytes (chains, content, indexes) kept by one hub, all avatars together. */
export const DEFAULT_MAX_STORED_BYTES = 1024 * 1024 * 1024

function isNotFound (err: unknown): boolean {
  return err instanceof Error && (err.name === 'NotFoundError' || (err as { code?: string }).code === 'ERR_NOT_FOUND')
}

/** The value under `key`, or undefined when there is none. */
export async function getOptional (datastore: Datastore, key: Key, options?: AbortOptions): Promise<Uint8Array | undefined> {
  try {
    return await datastore.get(key, options)
  } catch (err) {
    if (isNotFound(err)) return undefined
    throw new StoreError(`datastore read of ${key.toString()} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

/**
 * The values under `keys` (undefined where there is none), read together: on LevelDB in one
 * `getMany` call, which costs about what one `get` does and throws nothing for a missing key.
 */
export async function getValues (datastore: Datastore, keys: Key[], options?: AbortOptions): Promise<Array<Uint8Array | undefined>> {
  if (!(datastore instanceof LevelDatastore)) return Promise.all(keys.map(async key => getOptional(datastore, key, options)))
  try {
    options?.signal?.throwIfAborted()
    return (await datastore.db.getMany(keys.map(key => key.toString()))).map(value => value ?? undefined)
  } catch (err) {
    throw new StoreError(`datastore read failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

export async function getCid (datastore: Datastore, key: Key, options?: AbortOptions): Promise<CID | null> {
  return decodeCid(await getOptional(datastore, key, options), key)
}

export function decodeCid (bytes: Uint8Array | undefined, key: Key): CID | null {
  if (bytes === undefined) return null
  try {
    return CID.decode(bytes)
  } catch {
    throw new StoreError(`datastore value of ${key.toString()} is not a CID`)
  }
}

/**
 * A chain block's bytes, checked against its CID: the datastore copy, or (for chains written before
 * it existed) the blockstore's.
 */
export async function readBlock (stores: NextIdStores, cid: CID, options?: AbortOptions): Promise<Uint8Array> {
  const bytes = await getOptional(stores.datastore, keys.block(cid), options) ?? await readBlockstore(stores.blockstore, cid, options)
  if (!await verifyBlock(cid, bytes)) throw new StoreError(`block ${cid.toString()} in the store does not hash to its CID`)
  return bytes
}

/**
 * interface-blockstore 7 returns a (sync or async) generator of chunks from `get`; older
 * blockstores return the bytes, possibly in a promise.
 */
async function readBlockstore (blockstore: Blockstore, cid: CID, options?: AbortOptions): Promise<Uint8Array> {
  let bytes: Uint8Array
  try {
    const result = await (blockstore.get(cid, options) as unknown as Promise<unknown>)
    if (result instanceof Uint8Array) {
      bytes = result
    } else if (result != null && (Symbol.asyncIterator in (result as object) || Symbol.iterator in (result as object))) {
      const chunks: Uint8Array[] = []
      let length = 0
      for await (const chunk of result as AsyncIterable<Uint8Array>) {
        chunks.push(chunk)
        length += chunk.length
      }
      bytes = new Uint8Array(length)
      let offset = 0
      for (const chunk of chunks) { bytes.set(chunk, offset); offset += chunk.length }
    } else {
      throw new Error('unexpected value from blockstore.get')
    }
  } catch (err) {
    throw new StoreError(`block ${cid.toString()} could not be read: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  return bytes
}

export async function loadLink (stores: NextIdStores, cid: CID, options?: AbortOptions): Promise<KvLink> {
  const bytes = await readBlock(stores, cid, options)
  try {
    return await decodeLink({ cid, bytes })
  } catch (err) {
    throw new StoreError(`stored block ${cid.toString()} is damaged: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

export interface KvEntry {
  platform: string
  identity: string
  content: JsonValue
}

export function encodeEntry (entry: KvEntry): Uint8Array {
  return utf8('{"platform":' + JSON.stringify(entry.platform) + ',"identity":' + JSON.stringify(entry.identity) + ',"content":' + canonicalJson(entry.content) + '}')
}

export function decodeEntry (bytes: Uint8Array, key: string): KvEntry {
  try {
    const value = parseJson(fromUtf8(bytes), key)
    if (!isJsonObject(value) || typeof value.platform !== 'string' || typeof value.identity !== 'string' || value.content === undefined) {
      throw new Error('unexpected shape')
    }
    return { platform: value.platform, identity: value.identity, content: value.content }
  } catch (err) {
    throw new StoreError(`datastore value of ${key} is damaged: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

export async function getEntry (datastore: Datastore, avatar: string, platform: string, identity: string, options?: AbortOptions): Promise<KvEntry | undefined> {
  const key = keys.kv(avatar, platform, identity)
  const bytes = await getOptional(datastore, key, options)
  return bytes === undefined ? undefined : decodeEntry(bytes, key.toString())
}

/** Every (platform, identity) entry of an avatar, ordered by platform then identity. */
export async function listEntries (datastore: Datastore, avatar: string, options?: AbortOptions): Promise<KvEntry[]> {
  const out: KvEntry[] = []
  try {
    for await (const { key, value } of datastore.query({ prefix: keys.kvPrefix(avatar) }, options)) {
      out.push(decodeEntry(value, key.toString()))
    }
  } catch (err) {
    if (err instanceof StoreError) throw err
    throw new StoreError(`datastore query failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  return out.sort((a, b) => compareCodePoints(a.platform, b.platform) || compareCodePoints(a.identity, b.identity))
}

/**
 * The avatars (uncompressed hex) holding an entry for (platform, identity), at most `limit` of them,
 * sorted. LevelDB yields keys in order, so these are the first `limit` avatars by key; the query
 * stops there, whatever the number of avatars claiming the identity.
 */
export async function listAvatars (datastore: Datastore, platform: string, identity: string, limit: number, options?: AbortOptions): Promise<string[]> {
  const prefix = keys.identityPrefix(platform, identity)
  const out: string[] = []
  try {
    for await (const key of datastore.queryKeys({ prefix, limit }, options)) {
      out.push(key.toString().slice(prefix.length))
      if (out.length >= limit) break
    }
  } catch (err) {
    throw new StoreError(`datastore query failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  return out.sort()
}

/** An avatar's totals, kept beside its head so that the per-avatar caps cost one read. */
export interface AvatarStat {
  /** blocks in the chain */
  links: number
  /** bytes of every block of the chain (what an export carries, without CAR framing) */
  chainBytes: number
  /** bytes of every merged entry, as stored (what GET /v1/kv returns, roughly) */
  contentBytes: number
}

export const EMPTY_STAT: AvatarStat = Object.freeze({ links: 0, chainBytes: 0, contentBytes: 0 })

export function encodeStat (stat: AvatarStat): Uint8Array {
  return utf8(JSON.stringify({ links: stat.links, chainBytes: stat.chainBytes, contentBytes: stat.contentBytes }))
}

/**
 * The avatar's totals, or undefined when none are stored (no chain, or a chain written before they
 * were kept: the caller then counts them once).
 */
export async function getStat (datastore: Datastore, avatar: string, options?: AbortOptions): Promise<AvatarStat | undefined> {
  return decodeStat(await getOptional(datastore, keys.stat(avatar), options), avatar)
}

export function decodeStat (bytes: Uint8Array | undefined, avatar: string): AvatarStat | undefined {
  const key = keys.stat(avatar)
  if (bytes === undefined) return undefined
  try {
    const value = JSON.parse(fromUtf8(bytes)) as Record<string, unknown>
    const stat = { links: value.links, chainBytes: value.chainBytes, contentBytes: value.contentBytes }
    if (!Object.values(stat).every(n => Number.isSafeInteger(n) && (n as number) >= 0)) throw new Error('unexpected shape')
    return stat as AvatarStat
  } catch (err) {
    throw new StoreError(`datastore value of ${key.toString()} is damaged: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

/** When this hub accepted the link `cid` (ms), or undefined (imported, or accepted before this was kept). */
export async function getAcceptedAtMs (datastore: Datastore, cid: CID, options?: AbortOptions): Promise<number | undefined> {
  const bytes = await getOptional(datastore, keys.acceptedAt(cid), options)
  if (bytes === undefined) return undefined
  const ms = Number(fromUtf8(bytes))
  return Number.isSafeInteger(ms) ? ms : undefined
}

export type Put = [Key, Uint8Array]

/**
 * Writes `puts` as one atomic batch, with the hub-wide total they leave, or refuses them with
 * InsufficientStorageError (writing nothing) when they would grow that total past `maxStoredBytes`.
 * What they add is counted exactly: a new key costs its key and value, an overwritten one the
 * difference of the values; the caller holds the lock of every key it writes (they are all its
 * avatar's), so the values read here are still there when the batch lands. On LevelDB with `sync`
 * the batch is fsynced before this resolves (datastore-level's own batch never asks for it:
 * classic-level then only hands the write to the OS, which survives a crash of the process but not
 * of the machine). Other datastores are written with their own batch and their own durability.
 */
export async function commitBatch (datastore: Datastore, puts: Put[], sync: boolean, maxStoredBytes = DEFAULT_MAX_STORED_BYTES, deletes: Key[] = []): Promise<void> {
  const writer = writerFor(datastore)
  await writer.storedBytes()
  const byKey = new Map<string, Uint8Array | undefined>()
  // Deletes first: a key both deleted and put is put (a chain replaced by one sharing blocks).
  for (const key of deletes) byKey.set(key.toString(), undefined)
  for (const [key, value] of puts) byKey.set(key.toString(), value)
  const names = [...byKey.keys()]
  const before = await getValues(datastore, names.map(name => new Key(name)))
  let deltaBytes = 0
  names.forEach((name, i) => {
    const old = before[i]
    const value = byKey.get(name)
    if (value === undefined) deltaBytes -= old === undefined ? 0 : utf8(name).length + old.length
    else deltaBytes += old === undefined ? utf8(name).length + value.length : value.length - old.length
  })
  const growth = Math.max(0, deltaBytes)
  // Writes already queued count as stored: they may land first.
  if (growth > 0 && writer.committedBytes + writer.reservedBytes + growth > maxStoredBytes) {
    throw new InsufficientStorageError(`this hub keeps at most ${maxStoredBytes} bytes of Next.ID data, all avatars together, and holds ${writer.committedBytes}; this write needs ${growth} more`)
  }
  try {
    await writer.write(names.map((name): LevelPut => {
      const value = byKey.get(name)
      return value === undefined ? { type: 'del', key: name } : { type: 'put', key: name, value }
    }), deltaBytes, growth, sync)
  } catch (err) {
    throw new StoreError(`datastore write failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

/**
 * The bytes of Next.ID data the hub holds (every key and value under `/nextid/` but the total),
 * as of the last completed write.
 */
export async function nextIdStoredBytes (datastore: Datastore): Promise<number> {
  return writerFor(datastore).storedBytes()
}

type LevelPut = { type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }

/**
 * The one way Next.ID writes reach the datastore, so that each batch carries the total it
 * leaves. Group commit: batches that arrive while a write is under way are written together by
 * the next one, as one batch (one fsync on LevelDB), and each caller resolves when the batch
 * holding its puts is on disk. An fsync costs milliseconds whatever it carries, so writes of
 * different avatars stop queueing behind each other's. Each caller's puts stay atomic (they are
 * never split between two batches); callers never share keys (each holds its avatar's lock). A
 * failed write fails every caller of its group, and none of their puts (nor the total) is written.
 */
class NextIdWriter {
  #queue: Array<{ ops: LevelPut[], deltaBytes: number, sync: boolean, resolve: () => void, reject: (err: unknown) => void }> = []
  #writing = false
  #loading: Promise<number> | undefined
  /** the total on disk; undefined until read (or counted) */
  #committed: number | undefined
  /** growth of the writes queued or under way */
  reservedBytes = 0
  constructor (private readonly datastore: Datastore) {}

  get committedBytes (): number {
    return this.#committed ?? 0
  }

  /**
   * The total on disk, read once. A hub whose Next.ID data predates the total has none: it is
   * counted once, by one pass over `/nextid/` (its data, read once per start until a write
   * persists the total).
   */
  async storedBytes (): Promise<number> {
    if (this.#committed !== undefined) return this.#committed
    this.#loading ??= this.#load()
    try {
      const total = await this.#loading
      this.#committed ??= total
      return this.#committed
    } catch (err) {
      this.#loading = undefined
      throw err
    }
  }

  async #load (): Promise<number> {
    const stored = await getOptional(this.datastore, keys.total)
    if (stored !== undefined) {
      const total = Number(fromUtf8(stored))
      if (!/^[0-9]+$/.test(fromUtf8(stored)) || !Number.isSafeInteger(total)) throw new StoreError(`datastore value of ${keys.total.toString()} is damaged`)
      return total
    }
    let total = 0
    const totalKey = keys.total.toString()
    try {
      for await (const { key, value } of this.datastore.query({ prefix: `${PREFIX}/` })) {
        const name = key.toString()
        if (name !== totalKey) total += utf8(name).length + value.length
      }
    } catch (err) {
      throw new StoreError(`datastore query failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
    return total
  }

  async write (ops: LevelPut[], deltaBytes: number, growthBytes: number, sync: boolean): Promise<void> {
    this.reservedBytes += growthBytes
    try {
      await new Promise<void>((resolve, reject) => {
        this.#queue.push({ ops, deltaBytes, sync, resolve, reject })
        if (!this.#writing) void this.#drain()
      })
    } finally {
      this.reservedBytes -= growthBytes
    }
  }

  async #drain (): Promise<void> {
    this.#writing = true
    while (this.#queue.length > 0) {
      const group = this.#queue
      this.#queue = []
      try {
        const total = (this.#committed ?? 0) + group.reduce((n, item) => n + item.deltaBytes, 0)
        const ops = [...group.flatMap(item => item.ops), { type: 'put' as const, key: keys.total.toString(), value: utf8(String(total)) }]
        if (this.datastore instanceof LevelDatastore) {
          await this.datastore.db.batch(ops, { sync: group.some(item => item.sync) })
        } else {
          const batch = this.datastore.batch()
          for (const op of ops) {
            if (op.type === 'put') batch.put(new Key(op.key), op.value)
            else batch.delete(new Key(op.key))
          }
          await batch.commit()
        }
        this.#committed = total
        for (const item of group) item.resolve()
      } catch (err) {
        for (const item of group) item.reject(err)
      }
    }
    this.#writing = false
  }
}

const writers = new WeakMap<Datastore, NextIdWriter>()

function writerFor (datastore: Datastore): NextIdWriter {
  let writer = writers.get(datastore)
  if (writer === undefined) {
    writer = new NextIdWriter(datastore)
    writers.set(datastore, writer)
  }
  return writer
}

/**
 * Serialises work per key: `run(keys, fn)` waits for every earlier holder of any of `keys`. Keys
 * are taken in sorted order, so two callers cannot deadlock. One instance per datastore, so the
 * HTTP app and `importAvatarChain` exclude each other. With `maxDepth`, a caller that would find
 * that many holders and waiters on one of its keys is refused at once (RateLimitError) instead of
 * joining the queue: no key's queue grows without bound.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>()
  readonly #depth = new Map<string, number>()

  /** Holders plus waiters on `key` right now. */
  depth (key: string): number {
    return this.#depth.get(key) ?? 0
  }

  async run<T> (lockKeys: string[], fn: () => Promise<T>, maxDepth = Infinity): Promise<T> {
    const sorted = [...new Set(lockKeys)].sort()
    const full = sorted.find(key => this.depth(key) >= maxDepth)
    if (full !== undefined) throw new RateLimitError(`${maxDepth} writes are already queued for ${full.slice(0, 40)}…; retry shortly`)
    for (const key of sorted) this.#depth.set(key, this.depth(key) + 1)
    const releases: Array<() => void> = []
    try {
      for (const key of sorted) releases.push(await this.#acquire(key))
      return await fn()
    } finally {
      for (const release of releases.reverse()) release()
      for (const key of sorted) {
        const left = this.depth(key) - 1
        if (left > 0) this.#depth.set(key, left)
        else this.#depth.delete(key)
      }
    }
  }

  async #acquire (key: string): Promise<() => void> {
    const previous = this.#tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const done = new Promise<void>(resolve => { release = resolve })
    const tail = previous.then(async () => done)
    this.#tails.set(key, tail)
    await previous
    return () => {
      release()
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    }
  }
}

const mutexes = new WeakMap<object, KeyedMutex>()

export function mutexFor (datastore: Datastore): KeyedMutex {
  let mutex = mutexes.get(datastore)
  if (mutex === undefined) {
    mutex = new KeyedMutex()
    mutexes.set(datastore, mutex)
  }
  return mutex
}

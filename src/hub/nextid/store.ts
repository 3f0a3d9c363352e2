/**
 * Where the Next.ID KV Service keeps its state. Blocks (one per accepted patch) go to the
 * blockstore; the datastore holds, under `/nextid/`, what makes reads and checks cheap:
 *
 * - `/nextid/head/<avatar>` → CID bytes of the avatar's newest block
 * - `/nextid/uuid/<uuid>` → CID bytes of the block that used the uuid (uuids are global, as
 *   kv_server's unique index on `kv_chains.uuid`)
 * - `/nextid/kv/<avatar>/<platform>/<identity>` → canonical JSON `{platform, identity, content}`,
 *   the merged content
 * - `/nextid/identity/<platform>/<identity>/<avatar>` → empty, the by_identity index
 *
 * `<avatar>` is the uncompressed key in hex; platform and identity are hex of their UTF-8 bytes so
 * any string is a single key segment. Every change to the datastore is one batch, written after
 * the blocks it refers to are stored.
 */
import { Key, type Datastore } from 'interface-datastore'
import { CID } from 'multiformats/cid'
import { bytesToHex, fromUtf8, utf8 } from '../../crypto/bytes.js'
import { StoreError } from '../../errors.js'
import { verifyBlock } from '../../store/blocks.js'
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
  head: (avatar: string) => new Key(`${PREFIX}/head/${avatar}`),
  uuid: (uuid: string) => new Key(`${PREFIX}/uuid/${uuid}`),
  kv: (avatar: string, platform: string, identity: string) => new Key(`${PREFIX}/kv/${avatar}/${segment(platform)}/${segment(identity)}`),
  kvPrefix: (avatar: string) => `${PREFIX}/kv/${avatar}/`,
  identity: (platform: string, identity: string, avatar: string) => new Key(`${PREFIX}/identity/${segment(platform)}/${segment(identity)}/${avatar}`),
  identityPrefix: (platform: string, identity: string) => `${PREFIX}/identity/${segment(platform)}/${segment(identity)}/`
}

function isNotFound (err: unknown): boolean {
  return err instanceof Error && (err.name === 'NotFoundError' || (err as { code?: string }).code === 'ERR_NOT_FOUND')
}

/** The value under `key`, or undefined when there is none. */
export async function getOptional (datastore: Datastore, key: Key, options?: AbortOptions): Promise<Uint8Array | undefined> {
  try {
    return await datastore.get(key, options)
  } catch (err) {
    if (isNotFound(err)) return undefined
    throw new StoreError(`datastore read of ${key.toString()} failed: ${err instanceof Error ? err.message : String(err)}`)
  }
}

export async function getCid (datastore: Datastore, key: Key, options?: AbortOptions): Promise<CID | null> {
  const bytes = await getOptional(datastore, key, options)
  if (bytes === undefined) return null
  try {
    return CID.decode(bytes)
  } catch {
    throw new StoreError(`datastore value of ${key.toString()} is not a CID`)
  }
}

/**
 * A block's bytes, checked against its CID. interface-blockstore 7 returns a (sync or async)
 * generator of chunks from `get`; older blockstores return the bytes, possibly in a promise.
 */
export async function readBlock (blockstore: Blockstore, cid: CID, options?: AbortOptions): Promise<Uint8Array> {
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
    throw new StoreError(`block ${cid.toString()} could not be read: ${err instanceof Error ? err.message : String(err)}`)
  }
  if (!await verifyBlock(cid, bytes)) throw new StoreError(`block ${cid.toString()} in the blockstore does not hash to its CID`)
  return bytes
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
    throw new StoreError(`datastore value of ${key} is damaged: ${err instanceof Error ? err.message : String(err)}`)
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
    throw new StoreError(`datastore query failed: ${err instanceof Error ? err.message : String(err)}`)
  }
  return out.sort((a, b) => compareCodePoints(a.platform, b.platform) || compareCodePoints(a.identity, b.identity))
}

/** The avatars (uncompressed hex) holding an entry for (platform, identity), in key order. */
export async function listAvatars (datastore: Datastore, platform: string, identity: string, options?: AbortOptions): Promise<string[]> {
  const prefix = keys.identityPrefix(platform, identity)
  const out: string[] = []
  try {
    for await (const key of datastore.queryKeys({ prefix }, options)) {
      out.push(key.toString().slice(prefix.length))
    }
  } catch (err) {
    throw new StoreError(`datastore query failed: ${err instanceof Error ? err.message : String(err)}`)
  }
  return out.sort()
}

/**
 * Serialises work per key: `run(keys, fn)` waits for every earlier holder of any of `keys`. Keys
 * are taken in sorted order, so two callers cannot deadlock. One instance per datastore, so the
 * HTTP app and `importAvatarChain` exclude each other.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>()

  async run<T> (lockKeys: string[], fn: () => Promise<T>): Promise<T> {
    const releases: Array<() => void> = []
    try {
      for (const key of [...new Set(lockKeys)].sort()) releases.push(await this.#acquire(key))
      return await fn()
    } finally {
      for (const release of releases.reverse()) release()
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

/**
 * The datastore under a Node helia node (quietDatastore): peer-store entries wait in memory and
 * reach the inner store at most once per interval (and on flush or close), a DHT record that only
 * refreshes a recent time of receipt is not written again, and every read sees every write at once.
 * Unit tests run on a counting MemoryDatastore; the last ones on nodes with a directory (loopback,
 * port 0, stopped by the test).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Record as Libp2pRecord } from '@libp2p/kad-dht'
import { MemoryDatastore } from 'datastore-core'
import { LevelDatastore } from 'datastore-level'
import { Key } from 'interface-datastore'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { quietDatastore } from '../src/store/helia-datastore.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { heliaStore } from '../src/store/helia.js'
import { cborBlock } from '../src/store/blocks.js'
import { createRecord, nameToMultihash } from '../src/store/record.js'
import { ipnsKeySource } from './helpers/ipns-key.js'
import type { Pair } from 'interface-datastore'
import type { MultihashDigest } from 'multiformats/hashes/interface'
import { multihashToIPNSRoutingKey } from 'ipns'
import { base32 } from 'multiformats/bases/base32'
import { equals } from 'multiformats/bytes'

const ipnsKey = ipnsKeySource(0x3d)
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const peerKey = new Key('/peers/bafzaajaiaejcaaaa')
const recordKey = new Key('/dht/record/abc')

/** A MemoryDatastore that counts the puts and deletes that reach it, by key. */
class CountingDatastore extends MemoryDatastore {
  readonly puts: string[] = []
  readonly deletes: string[] = []
  /** When set, a batch commit waits for it (and says so through `committing`). */
  gate: Promise<void> | undefined
  committing: () => void = () => {}
  override put (key: Key, value: Uint8Array): Key | Promise<Key> {
    this.puts.push(key.toString())
    return super.put(key, value)
  }

  override delete (key: Key): void | Promise<void> {
    this.deletes.push(key.toString())
    return super.delete(key)
  }

  override batch (): ReturnType<MemoryDatastore['batch']> {
    const ops: Array<() => unknown> = []
    return {
      put: (key, value) => { ops.push(async () => this.put(key, value)) },
      delete: (key) => { ops.push(async () => this.delete(key)) },
      commit: async () => {
        if (this.gate !== undefined) { this.committing(); await this.gate }
        for (const op of ops) await op()
      }
    }
  }
}

async function all<T> (source: AsyncIterable<T> | Iterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of source) out.push(item)
  return out
}

describe('quietDatastore: peer entries', () => {
  it('keeps peer entries in memory, readable at once, and writes only the newest on flush', async () => {
    const inner = new CountingDatastore()
    const store = quietDatastore(inner, { peerWriteDelayMs: 3_600_000 })
    for (let i = 0; i < 5; i++) await store.put(peerKey, bytes(`peer v${i}`))
    expect(await store.get(peerKey)).toEqual(bytes('peer v4'))
    expect(await store.has(peerKey)).toBe(true)
    expect(await all(store.getMany([peerKey]))).toEqual([{ key: peerKey, value: bytes('peer v4') }])
    expect(inner.puts).toEqual([])
    await store.flush()
    expect(inner.puts).toEqual([peerKey.toString()])
    expect(await inner.get(peerKey)).toEqual(bytes('peer v4'))
    // Nothing waits any more: a second flush writes nothing.
    await store.flush()
    expect(inner.puts).toHaveLength(1)
    await store.close()
  })

  it('writes waiting peer entries by itself after peerWriteDelayMs, once per interval', async () => {
    const inner = new CountingDatastore()
    const store = quietDatastore(inner, { peerWriteDelayMs: 20 })
    await store.put(peerKey, bytes('a'))
    await store.put(peerKey, bytes('b'))
    await expect.poll(() => inner.puts.length, { timeout: 5000, interval: 5 }).toBe(1)
    expect(await inner.get(peerKey)).toEqual(bytes('b'))
    await store.close()
  })

  it('writes waiting peer entries on close, so that a restarted node knows its peers', async () => {
    const inner = new CountingDatastore()
    const store = quietDatastore(inner, { peerWriteDelayMs: 3_600_000 })
    await store.put(peerKey, bytes('known peer'))
    await store.close()
    expect(await inner.get(peerKey)).toEqual(bytes('known peer'))
  })

  it('lists waiting peer entries in a query that may include them (and in none that cannot)', async () => {
    const inner = new CountingDatastore()
    const store = quietDatastore(inner, { peerWriteDelayMs: 3_600_000 })
    await store.put(peerKey, bytes('p'))
    await store.put(new Key('/other/x'), bytes('o'))
    expect(inner.puts).toEqual(['/other/x'])
    // A query of another prefix leaves the peer entry waiting.
    expect((await all(store.query({ prefix: '/other' }))).map((p: Pair) => p.key.toString())).toEqual(['/other/x'])
    expect(inner.puts).toEqual(['/other/x'])
    expect((await all(store.query({ prefix: '/peers/' }))).map((p: Pair) => p.key.toString())).toEqual([peerKey.toString()])
    await store.put(peerKey, bytes('p2'))
    expect((await all(store.queryKeys({}))).map(k => k.toString()).sort()).toEqual(['/other/x', peerKey.toString()])
    expect(await inner.get(peerKey)).toEqual(bytes('p2'))
    await store.close()
  })

  it('deletes a peer entry for good, also one a flush under way has already taken', async () => {
    const inner = new CountingDatastore()
    const store = quietDatastore(inner, { peerWriteDelayMs: 3_600_000 })
    await store.put(peerKey, bytes('gone'))
    await store.delete(peerKey)
    expect(await store.has(peerKey)).toBe(false)
    await store.flush()
    expect(await inner.has(peerKey)).toBe(false)

    await store.put(peerKey, bytes('taken by a flush'))
    let open!: () => void
    inner.gate = new Promise(resolve => { open = resolve })
    const committing = new Promise<void>(resolve => { inner.committing = resolve })
    const flushing = store.flush()
    await committing
    const deleting = store.delete(peerKey)
    open()
    await Promise.all([flushing, deleting])
    inner.gate = undefined
    expect(await inner.has(peerKey)).toBe(false)
    expect(await store.has(peerKey)).toBe(false)

    // Through a batch as well.
    await store.put(peerKey, bytes('batched away'))
    const batch = store.batch()
    batch.delete(peerKey)
    await batch.commit()
    await store.flush()
    expect(await inner.has(peerKey)).toBe(false)
    await store.close()
  })

  it('passes other keys straight through, in puts and batches', async () => {
    const inner = new CountingDatastore()
    const store = quietDatastore(inner, { peerWriteDelayMs: 3_600_000 })
    const batch = store.batch()
    batch.put(new Key('/pin/a'), bytes('1'))
    batch.put(peerKey, bytes('2'))
    await batch.commit()
    await store.put(new Key('/local/self'), bytes('3'))
    expect(inner.puts).toEqual(['/pin/a', '/local/self'])
    expect(await store.get(peerKey)).toEqual(bytes('2'))
    await store.close()
  })
})

describe('quietDatastore: DHT records', () => {
  const record = (value: string, receivedMs: number): Uint8Array =>
    new Libp2pRecord(bytes('/ipns/abc'), bytes(value), new Date(receivedMs)).serialize()

  it('does not rewrite a record whose value is stored and was received within recordRefreshMs', async () => {
    let now = 1_000_000
    const inner = new CountingDatastore()
    const store = quietDatastore(inner, { recordRefreshMs: 60_000, nowMs: () => now })
    await store.put(recordKey, record('v1', now))
    now += 5
    await store.put(recordKey, record('v1', now))
    const batch = store.batch()
    batch.put(recordKey, record('v1', now))
    await batch.commit()
    expect(inner.puts).toEqual([recordKey.toString()])
    expect(Libp2pRecord.deserialize(await store.get(recordKey)).timeReceived.getTime()).toBe(1_000_000)
  })

  it('rewrites the same value once the stored time of receipt is older than recordRefreshMs, and a new value always', async () => {
    let now = 1_000_000
    const inner = new CountingDatastore()
    const store = quietDatastore(inner, { recordRefreshMs: 60_000, nowMs: () => now })
    await store.put(recordKey, record('v1', now))
    now += 60_000
    await store.put(recordKey, record('v1', now))
    expect(Libp2pRecord.deserialize(await store.get(recordKey)).timeReceived.getTime()).toBe(now)
    now += 1
    await store.put(recordKey, record('v2', now))
    expect(Libp2pRecord.deserialize(await store.get(recordKey)).value).toEqual(bytes('v2'))
    // A stored time of receipt in the future (the clock went back) is no reason to skip.
    now -= 10_000
    await store.put(recordKey, record('v2', now))
    expect(Libp2pRecord.deserialize(await store.get(recordKey)).timeReceived.getTime()).toBe(now)
    expect(inner.puts).toHaveLength(4)
  })

  it('in a batch as in a put: a held record is not written, an older copy goes and a newer one stays', async () => {
    const { key, name } = await ipnsKey()
    const root = (await cborBlock({ held: true })).cid
    const [r1, r2, r3] = await Promise.all([1, 2, 3].map(async seq => createRecord(key, root, seq))) as [Uint8Array, Uint8Array, Uint8Array]
    const routingKey = multihashToIPNSRoutingKey(nameToMultihash(name) as MultihashDigest<0x00 | 0x12>)
    const dhtKey = new Key(`/dht/record/${base32.baseEncode(routingKey)}`)
    const inner = new CountingDatastore()
    const store = quietDatastore(inner, { heldRecord: async k => equals(k, routingKey) ? r2 : undefined })
    const copy = (r: Uint8Array): Uint8Array => new Libp2pRecord(routingKey, r, new Date()).serialize()
    const putInBatch = async (r: Uint8Array): Promise<void> => { const batch = store.batch(); batch.put(dhtKey, copy(r)); await batch.commit() }

    await inner.put(dhtKey, copy(r1))
    await putInBatch(r2)
    expect(await inner.has(dhtKey)).toBe(false)                       // the older copy went, the held one was not written
    expect(Libp2pRecord.deserialize(await store.get(dhtKey)).value).toEqual(r2)
    await inner.put(dhtKey, copy(r3))
    await putInBatch(r2)
    expect(Libp2pRecord.deserialize(await inner.get(dhtKey)).value).toEqual(r3)   // the newer one stays
    expect(Libp2pRecord.deserialize(await store.get(dhtKey)).value).toEqual(r3)
  })

  it('writes bytes under the record prefix that are not a record as given', async () => {
    const inner = new CountingDatastore()
    const store = quietDatastore(inner)
    await store.put(recordKey, bytes('not a record'))
    await store.put(recordKey, bytes('not a record'))
    expect(inner.puts).toHaveLength(2)
  })
})

describe('quietDatastore under createHeliaNode', () => {
  let directory: string
  beforeAll(async () => { directory = await mkdtemp(join(tmpdir(), 'userspace-quiet-')) })
  afterAll(async () => { if (directory !== undefined) await rm(directory, { recursive: true, force: true }) })

  it('a node on a directory keeps its peers across a restart, and serves the records it published', async () => {
    const peer = await createHeliaNode({ dhtServer: true })
    const nodeDir = join(directory, 'node')
    const { key, name } = await ipnsKey()
    const record = await createRecord(key, (await cborBlock({ v: 'kept' })).cid, 1)
    try {
      const node = await createHeliaNode({ directory: nodeDir, dhtServer: true, peers: peer.libp2p.getMultiaddrs().map(String) })
      try {
        // The hub's fsynced writes (putDurably, the Next.ID store) need the LevelDatastore itself;
        // only libp2p writes through the wrapper.
        expect(node.datastore).toBeInstanceOf(LevelDatastore)
        await heliaStore(node).putRecord(name, record)
        expect(await heliaStore(peer).getRecord(name, { nocache: true })).toEqual(record)
      } finally {
        await stopHeliaNode(node)
      }
      const restarted = await createHeliaNode({ directory: nodeDir })
      try {
        const known = await restarted.libp2p.peerStore.get(peer.libp2p.peerId)
        expect(known.addresses.length).toBeGreaterThan(0)
        expect(await heliaStore(restarted).getRecord(name, { nocache: true, signal: AbortSignal.timeout(5000) })).toEqual(record)
      } finally {
        await stopHeliaNode(restarted)
      }
    } finally {
      await stopHeliaNode(peer)
    }
  })
})

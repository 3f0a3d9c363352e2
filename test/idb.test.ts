/**
 * idbStore on fake-indexeddb (an in-memory IndexedDB for Node): blocks are checked against their
 * CIDs on the way in and out, the highest-sequence record per name is kept, rollback state never
 * goes down, data survives reopening the database, and a Space opens offline from it alone.
 * The same store runs in real Chromium in test/demo.test.ts.
 */
import { IDBFactory } from 'fake-indexeddb'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { idbStore } from '../src/store/idb.js'
import { idbState, layeredStore, memoryStore, openSpace, StoreError } from '../src/index.js'
import { rawBlock } from '../src/store/blocks.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import type { Store } from '../src/index.js'

async function recordAt (sequence: number, seedByte = 7): Promise<{ name: string, record: Uint8Array }> {
  const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(seedByte))
  const block = await rawBlock(new TextEncoder().encode(`root ${sequence}`))
  return { name: nameOfKey(key), record: await createRecord(key, block.cid, sequence) }
}

/** A remote that is down: every call fails like an unreachable hub. */
function downStore (): Store {
  const fail = async (): Promise<never> => { throw new StoreError('cannot reach hub') }
  return { putBlocks: fail, getBlock: fail, putRecord: fail, getRecord: fail, lookupAddress: fail }
}

describe('idbStore', () => {
  it('stores and returns blocks, all or none, checked against their CIDs', async () => {
    const store = idbStore('t1', { indexedDB: new IDBFactory() })
    const a = await rawBlock(new Uint8Array([1, 2, 3]))
    const b = await rawBlock(new Uint8Array([4, 5, 6]))
    await store.putBlocks([a, b])
    expect(await store.getBlock(a.cid)).toEqual(a.bytes)
    expect(await store.getBlock(b.cid)).toEqual(b.bytes)

    const c = await rawBlock(new Uint8Array([7]))
    const bad = { cid: (await rawBlock(new Uint8Array([8]))).cid, bytes: new Uint8Array([9]) }
    await expect(store.putBlocks([c, bad])).rejects.toMatchObject({ name: 'IntegrityError' })
    await expect(store.getBlock(c.cid)).rejects.toMatchObject({ name: 'NotFoundError' })
  })

  it('stores only the bytes of a view into a larger buffer', async () => {
    const factory = new IDBFactory()
    const store = idbStore('t2', { indexedDB: factory })
    const big = new Uint8Array(1000).fill(1)
    const view = big.subarray(10, 20)
    const block = await rawBlock(view)
    await store.putBlocks([block])
    const back = await store.getBlock(block.cid)
    expect(back.byteLength).toBe(10)
    expect(back.buffer.byteLength).toBe(10)
  })

  it('drops a damaged local block and reports it missing', async () => {
    const factory = new IDBFactory()
    const store = idbStore('t3', { indexedDB: factory })
    const block = await rawBlock(new Uint8Array([1, 2, 3]))
    await store.putBlocks([block])
    // Damage it behind the store's back.
    await new Promise<void>((resolve, reject) => {
      const req = factory.open('t3', 1)
      req.onsuccess = () => {
        const tx = req.result.transaction('blocks', 'readwrite')
        tx.objectStore('blocks').put(new Uint8Array([6, 6, 6]), block.cid.toString())
        tx.oncomplete = () => { req.result.close(); resolve() }
        tx.onerror = () => { reject(tx.error) }
      }
    })
    await expect(store.getBlock(block.cid)).rejects.toMatchObject({ name: 'NotFoundError' })
    await expect(store.getBlock(block.cid)).rejects.toThrow(/not found/)
  })

  it('keeps the highest-sequence record per name and refuses malformed ones', async () => {
    const store = idbStore('t4', { indexedDB: new IDBFactory() })
    const r5 = await recordAt(5)
    const r3 = await recordAt(3)
    const r8 = await recordAt(8)
    expect(await store.getRecord(r5.name)).toBeUndefined()
    await store.putRecord(r5.name, r5.record)
    await store.putRecord(r3.name, r3.record)
    expect(await store.getRecord(r5.name)).toEqual(r5.record)
    await store.putRecord(r8.name, r8.record)
    expect(await store.getRecord(r5.name)).toEqual(r8.record)
    await expect(store.putRecord(r5.name, new Uint8Array([1, 2, 3]))).rejects.toMatchObject({ name: 'InvalidRecordError' })
    expect(await store.getRecord(r5.name)).toEqual(r8.record)
  })

  it('keeps rollback state that never goes down, across reopening', async () => {
    const factory = new IDBFactory()
    const store = idbStore('t5', { indexedDB: factory })
    expect(await idbState(store).get('k51x')).toBeUndefined()
    await idbState(store).put('k51x', { sequence: 4, root: 'bafy4' })
    await idbState(store).put('k51x', { sequence: 2, root: 'bafy2' })
    expect(await idbState(store).get('k51x')).toEqual({ sequence: 4, root: 'bafy4', pending: [] })
    await idbState(store).put('k51x', { sequence: 6, root: 'bafy6' })
    store.close()
    const again = idbStore('t5', { indexedDB: factory })
    expect(await idbState(again).get('k51x')).toEqual({ sequence: 6, root: 'bafy6', pending: [] })
    await expect(idbState(again).put('k51x', { sequence: 1.5, root: 'x' })).rejects.toMatchObject({ name: 'InvalidInputError' })
  })

  it('honours an aborted signal', async () => {
    const store = idbStore('t6', { indexedDB: new IDBFactory() })
    const block = await rawBlock(new Uint8Array([1]))
    await expect(store.putBlocks([block], { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortedError' })
    await expect(store.getRecord('k51x', { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortedError' })
  })

  it('refuses a bad name and a missing IndexedDB with clear errors', () => {
    expect(() => idbStore('', { indexedDB: new IDBFactory() })).toThrow(/dbName/)
    const saved = (globalThis as { indexedDB?: unknown }).indexedDB
    expect(saved).toBeUndefined()
    expect(() => idbStore('x')).toThrow(/IndexedDB is not available/)
  })

  it('a space written through a hub opens offline from IndexedDB alone and publishes later', async () => {
    const factory = new IDBFactory()
    const signer = privateKeyToAccount(generatePrivateKey())
    const hub = memoryStore()
    const local = idbStore('space', { indexedDB: factory })
    const first = await openSpace({ signer, store: layeredStore(local, hub), state: idbState(local), offlineFirst: true, retryDelayMs: 0 })
    await first.set('theme', 'dark')
    await first.flush()
    await first.public.set('name', 'Alice')
    await first.flush()
    await first.close()
    local.close()

    // Reopen with the hub down: the data comes from IndexedDB; a new write stays pending and goes
    // out once the hub is back.
    let down = true
    const switchable: Store = {
      putBlocks: async (b, o) => { if (down) throw new StoreError('cannot reach hub'); await hub.putBlocks(b, o) },
      getBlock: async (c, o) => { if (down) throw new StoreError('cannot reach hub'); return hub.getBlock(c, o) },
      putRecord: async (n, r, o) => { if (down) throw new StoreError('cannot reach hub'); await hub.putRecord(n, r, o) },
      getRecord: async (n, o) => { if (down) throw new StoreError('cannot reach hub'); return hub.getRecord(n, o) }
    }
    const local2 = idbStore('space', { indexedDB: factory })
    const second = await openSpace({ signer, store: layeredStore(local2, switchable), state: idbState(local2), offlineFirst: true, retryDelayMs: 0 })
    second.on('error', () => {})
    expect(await second.get('theme')).toBe('dark')
    expect(await second.public.get('name')).toBe('Alice')
    await second.set('volume', 3)
    await expect(second.flush()).rejects.toMatchObject({ name: 'StoreError' })
    expect(await second.get('volume')).toBe(3)
    down = false
    await second.flush()
    await second.close()

    const third = await openSpace({ signer, store: hub })
    expect(await third.getAll()).toEqual({ theme: 'dark', volume: 3 })
    await third.close()
  })

  it('opens nothing from a hub that is down and an empty IndexedDB', async () => {
    const local = idbStore('empty', { indexedDB: new IDBFactory() })
    const signer = privateKeyToAccount(generatePrivateKey())
    await expect(openSpace({ signer, store: layeredStore(local, downStore()), offlineFirst: true })).rejects.toMatchObject({ name: 'StoreError' })
  })
})

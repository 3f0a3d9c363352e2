/**
 * failoverStore over stores that fail on cue (memory stores behind a switch): which failures move
 * on to the next hub, which are the answer, and that a record never reaches a hub without the
 * blocks it points at.
 */
import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { ConflictError, StoreError } from '../src/errors.js'
import { failoverStore } from '../src/store/failover.js'
import { memoryStore } from '../src/store/memory.js'
import { rawBlock } from '../src/store/blocks.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import type { Store } from '../src/store/interface.js'

/** A memory store that throws StoreError (as an unreachable hub does) while `down` is true. */
function switchable (): { store: Store, inner: ReturnType<typeof memoryStore>, down: boolean } {
  const inner = memoryStore()
  const box = { inner, down: false, store: undefined as unknown as Store }
  const guard = <T>(fn: () => Promise<T>): Promise<T> => box.down ? Promise.reject(new StoreError('cannot reach hub')) : fn()
  box.store = {
    conditional: true,
    putBlocks: async (b, o) => guard(async () => inner.putBlocks(b, o)),
    getBlock: async (c, o) => guard(async () => inner.getBlock(c, o)),
    putRecord: async (n, r, o) => guard(async () => inner.putRecord(n, r, o)),
    getRecord: async (n, o) => guard(async () => inner.getRecord(n, o))
  }
  return box
}

describe('failoverStore', () => {
  it('moves to the next hub when one is down, and puts the blocks of the unacknowledged version there first', async () => {
    const a = switchable()
    const b = switchable()
    const store = failoverStore([{ url: 'a', store: a.store }, { url: 'b', store: b.store }])
    const key = await generateKeyPair('Ed25519')
    const block = await rawBlock(new Uint8Array([1, 2, 3]))
    await store.putBlocks([block])
    expect(await a.inner.getBlock(block.cid)).toEqual(block.bytes)
    a.down = true
    await store.putRecord(nameOfKey(key), await createRecord(key, block.cid, 1))
    // b took the record and, before it, the block a had taken.
    expect(await b.inner.getBlock(block.cid)).toEqual(block.bytes)
    expect(await b.inner.getRecord(nameOfKey(key))).toBeDefined()
    expect(await a.inner.getRecord(nameOfKey(key))).toBeUndefined()
  })

  it("takes a hub's refusal of the request as the answer (a conflict is not retried elsewhere)", async () => {
    const a = switchable()
    const b = switchable()
    const store = failoverStore([{ url: 'a', store: a.store }, { url: 'b', store: b.store }])
    const key = await generateKeyPair('Ed25519')
    const block = await rawBlock(new Uint8Array([4]))
    await a.inner.putRecord(nameOfKey(key), await createRecord(key, block.cid, 5))
    const err = await store.putRecord(nameOfKey(key), await createRecord(key, block.cid, 2)).then(() => undefined, (e: Error) => e)
    expect(err).toBeInstanceOf(ConflictError)
    expect(err?.name).toBe('ConflictError')
    expect(await b.inner.getRecord(nameOfKey(key))).toBeUndefined()
  })

  it('throws the last StoreError when every hub is down', async () => {
    const a = switchable()
    const b = switchable()
    a.down = true
    b.down = true
    const store = failoverStore([{ url: 'a', store: a.store }, { url: 'b', store: b.store }])
    const err = await store.getRecord('k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8').then(() => undefined, (e: Error) => e)
    expect(err?.name).toBe('StoreError')
  })

  it('refuses an empty list with InvalidInputError', () => {
    expect(() => failoverStore([])).toThrow(expect.objectContaining({ name: 'InvalidInputError' }))
  })
})

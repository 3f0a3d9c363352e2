/**
 * The memory store's conditional write, the rule a hub keeps: a lower sequence is a lost race
 * (ConflictError), the same sequence with another value is equivocation (EquivocationError), and a
 * refused record leaves the stored one in place. It reads records it is handed directly, and hands
 * anything unusual to the record codec, which refuses malformed bytes.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { memoryStore } from '../src/store/memory.js'
import { createRecord, nameOfKey } from '../src/store/record.js'

async function cid (text: string): Promise<CID> {
  return CID.createV1(0x71, await sha256.digest(new TextEncoder().encode(text)))
}

describe('memoryStore putRecord', () => {
  it('takes a higher sequence, refuses a lower one (ConflictError) and another value at the same sequence (EquivocationError), keeping the stored record', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const store = memoryStore()
    const [a, b] = [await cid('a'), await cid('b')]
    const five = await createRecord(key, a, 5)
    await store.putRecord(name, five)
    await expect(store.putRecord(name, await createRecord(key, b, 4))).rejects.toMatchObject({ name: 'ConflictError' })
    await expect(store.putRecord(name, await createRecord(key, b, 5))).rejects.toMatchObject({ name: 'EquivocationError' })
    expect(store.records.get(name)).toBe(five)
    // the same version again (a retry) is fine
    const again = await createRecord(key, a, 5)
    await store.putRecord(name, again)
    // sequences beyond 2^53 compare exactly
    await store.putRecord(name, await createRecord(key, a, 2n ** 60n))
    await expect(store.putRecord(name, await createRecord(key, b, 2n ** 60n - 1n))).rejects.toMatchObject({ name: 'ConflictError' })
    await expect(store.putRecord(name, await createRecord(key, b, 2n ** 60n))).rejects.toMatchObject({ name: 'EquivocationError' })
  })

  it('reads V1+V2 records and records whose stored entry was swapped behind its back', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const store = memoryStore()
    const a = await cid('a')
    store.records.set(name, marshalIPNSRecord(await createIPNSRecord(key, `/ipfs/${a.toString()}`, 9n, 60_000, { v1Compatible: true })))
    await expect(store.putRecord(name, await createRecord(key, a, 8))).rejects.toMatchObject({ name: 'ConflictError' })
    await expect(store.putRecord(name, await createRecord(key, await cid('b'), 9))).rejects.toMatchObject({ name: 'EquivocationError' })
    await store.putRecord(name, await createRecord(key, a, 10))
  })

  it('refuses malformed bytes (InvalidRecordError) and stores nothing', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const store = memoryStore()
    const good = await createRecord(key, await cid('a'), 1)
    for (const bad of [new Uint8Array(0), Uint8Array.of(0xff, 0xff, 0xff), good.subarray(0, good.length - 3), Uint8Array.of(0x4a, 0x02, 0xa1, 0xff)]) {
      await expect(store.putRecord(name, bad)).rejects.toMatchObject({ name: 'InvalidRecordError' })
    }
    expect(store.records.size).toBe(0)
  })
})

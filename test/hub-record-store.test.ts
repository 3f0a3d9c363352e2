/**
 * The hub's record store over a datastore: records, the address index and each name's owner, each
 * put one batch that writes only what changed.
 */
import { MemoryDatastore } from 'datastore-core'
import { describe, expect, it } from 'vitest'
import { datastoreRecords } from '../src/hub/record-store.js'
import type { Batch } from 'interface-datastore'

const NAME = 'k51qzi5uqu5djtge0ytuuxft6nytrerco6wntnw00rdwln2gfimils7jf1wmmb'
const ALICE = '0x' + 'a1'.repeat(20)
const BOB = '0x' + 'b2'.repeat(20)

/** A memory datastore that lists the keys each batch put. */
class ListingDatastore extends MemoryDatastore {
  readonly batches: string[][] = []
  override batch (): Batch {
    const keys: string[] = []
    this.batches.push(keys)
    const inner = super.batch()
    return {
      put: (key, value) => { keys.push(key.toString()); inner.put(key, value) },
      delete: (key) => { inner.delete(key) },
      commit: async (options) => { await inner.commit(options) }
    }
  }
}

describe('datastoreRecords', () => {
  it('writes a name\'s owner when it first learns it or a dated binding changes it, not with every record', async () => {
    const datastore = new ListingDatastore()
    const records = datastoreRecords(datastore)
    await records.put(NAME, new Uint8Array([1]), ALICE, 1000)
    expect(datastore.batches.at(-1)?.sort()).toEqual([`/userspace/hub/address/${ALICE}`, `/userspace/hub/owner/${NAME}`, `/userspace/hub/ipns/${NAME}`].sort())
    await records.put(NAME, new Uint8Array([2]), ALICE, 1000)
    expect(datastore.batches.at(-1)).toEqual([`/userspace/hub/ipns/${NAME}`])
    await records.put(NAME, new Uint8Array([3]), ALICE, undefined)
    expect(datastore.batches.at(-1)).toEqual([`/userspace/hub/ipns/${NAME}`])
    expect(await records.get(NAME)).toEqual(new Uint8Array([3]))
    expect(await records.addressOf(NAME)).toBe(ALICE)
    expect(await records.nameOf(ALICE)).toBe(NAME)
    // a later dated binding to another address moves the owner
    await records.put(NAME, new Uint8Array([4]), BOB, 2000)
    expect(datastore.batches.at(-1)?.sort()).toEqual([`/userspace/hub/address/${BOB}`, `/userspace/hub/owner/${NAME}`, `/userspace/hub/ipns/${NAME}`].sort())
    expect(await records.addressOf(NAME)).toBe(BOB)
    // an undated one does not replace an owner already known
    await records.put(NAME, new Uint8Array([5]), ALICE, undefined)
    expect(await records.addressOf(NAME)).toBe(BOB)
  })
})

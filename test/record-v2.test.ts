/**
 * V2-only IPNS records, which `createRecord` signs (the IPNS record spec makes the V1 signature and
 * fields optional): accepted by every check in the project, while a V2-only record whose V2
 * signature is broken, or that another key signed, is refused by every one of them — the record
 * codec, the plain `ipns` validator (what @helia/ipns and the DHT run), a hub's PUT and one-request
 * publish, a record heard from a peered hub, and a device opening the space.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createIPNSRecord, marshalIPNSRecord, multihashToIPNSRoutingKey, unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as Digest from 'multiformats/hashes/digest'
import { base36 } from 'multiformats/bases/base36'
import fc from 'fast-check'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { createHub } from '../src/hub/app.js'
import { CAR_TYPE, IPNS_RECORD_CODEC, publishPath } from '../src/protocol.js'
import { openSpace } from '../src/space/space.js'
import { encodeCar } from '../src/store/blocks.js'
import { memoryStore } from '../src/store/memory.js'
import { createRecord, DEFAULT_RECORD_LIFETIME_MS, nameToMultihash, validateRecord } from '../src/store/record.js'
import { countBlocks, countKeys, expectRefusal, getRecord, makeHub, makeSpace, putRecord, upload } from './helpers/hub-app.js'
import { account } from './helpers/signers.js'
import type { Space } from './helpers/hub-app.js'
import type { MultihashDigest } from 'multiformats/hashes/interface'

/** The same record with one bit of its V2 signature flipped. */
function breakSignatureV2 (record: Uint8Array): Uint8Array {
  const r = unmarshalIPNSRecord(record)
  const signatureV2 = Uint8Array.from(r.signatureV2)
  signatureV2[10] = (signatureV2[10] as number) ^ 1
  return marshalIPNSRecord({ ...r, signatureV2 })
}

function hasV1 (record: Uint8Array): boolean {
  return (unmarshalIPNSRecord(record) as { signatureV1?: Uint8Array }).signatureV1 !== undefined
}

function routingKey (name: string): Uint8Array {
  return multihashToIPNSRoutingKey(nameToMultihash(name) as MultihashDigest<0x00 | 0x12>)
}

async function publishCar (record: Uint8Array, space: Space): Promise<Uint8Array> {
  const rb = { cid: CID.createV1(IPNS_RECORD_CODEC, await sha256.digest(record)), bytes: record }
  return encodeCar([rb, ...space.blocks], [rb.cid])
}

let space: Space
let good: Uint8Array
const bad: Array<[string, Uint8Array]> = []

beforeAll(async () => {
  space = await makeSpace()
  good = await createRecord(space.key, space.root.cid, 1)
  bad.push(['a broken V2 signature', breakSignatureV2(good)])
  bad.push(['a V2 signature by another key', await createRecord(await generateKeyPair('Ed25519'), space.root.cid, 1)])
})

describe('createRecord signs V2-only records', () => {
  it('has no V1 signature, is smaller than a V1+V2 record, and says what it was given', async () => {
    const r = unmarshalIPNSRecord(good)
    expect(hasV1(good)).toBe(false)
    expect(r.signatureV2).toHaveLength(64)
    expect(r.value).toBe(`/ipfs/${space.root.cid.toString()}`)
    const both = marshalIPNSRecord(await createIPNSRecord(space.key, r.value, 1n, DEFAULT_RECORD_LIFETIME_MS, { v1Compatible: true }))
    expect(hasV1(both)).toBe(true)
    expect(good.length).toBeLessThan(both.length)
    const info = await validateRecord(space.name, good)
    expect(info.sequence).toBe(1n)
    expect(info.cid?.equals(space.root.cid)).toBe(true)
  })

  it('writes exactly the bytes the ipns package builds for the same key, value, sequence, validity and TTL', async () => {
    const key = await generateKeyPair('Ed25519')
    // `createIPNSRecord` reads the clock itself: fake only Date, so both builders count from one instant
    vi.useFakeTimers({ toFake: ['Date'] })
    try {
      await fc.assert(fc.asyncProperty(
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.integer({ min: 0, max: 4_000_000_000_000 }),
        fc.integer({ min: 0, max: 100 * DEFAULT_RECORD_LIFETIME_MS }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        async (sequence, nowMs, lifetimeMs, ttlMs, digest) => {
          vi.setSystemTime(nowMs)
          const root = CID.createV1(0x71, Digest.create(sha256.code, digest))
          const ours = await createRecord(key, root, sequence, { lifetimeMs, ttlMs, nowMs: () => nowMs })
          const theirs = marshalIPNSRecord(await createIPNSRecord(key, `/ipfs/${root.toString()}`, sequence, lifetimeMs, { v1Compatible: false, ttlNs: BigInt(ttlMs) * 1_000_000n }))
          expect(ours).toEqual(theirs)
        }), { numRuns: 300 })
    } finally {
      vi.useRealTimers()
    }
    // and what it signs now is a valid record for its name
    const now = await createRecord(key, space.root.cid, 7)
    await expect(ipnsValidator(routingKey(key.publicKey.toCID().toString(base36)), now)).resolves.toBeUndefined()
  })

  it('the plain ipns validator (@helia/ipns, the DHT) accepts it', async () => {
    await expect(ipnsValidator(routingKey(space.name), good)).resolves.toBeUndefined()
  })
})

describe('a V2-only record with a bad V2 signature is refused everywhere', () => {
  it('by the record codec (InvalidRecordError), expired or not', async () => {
    for (const [, record] of bad) {
      await expect(validateRecord(space.name, record)).rejects.toMatchObject({ name: 'InvalidRecordError' })
      await expect(validateRecord(space.name, record, { allowExpired: true })).rejects.toMatchObject({ name: 'InvalidRecordError' })
    }
  })

  it('by the plain ipns validator', async () => {
    for (const [, record] of bad) {
      await expect(ipnsValidator(routingKey(space.name), record)).rejects.toMatchObject({ name: 'SignatureVerificationError' })
    }
  })

  it('by a hub\'s PUT (400, nothing stored), which takes the good one', async () => {
    const hub = makeHub()
    expect((await upload(hub, space.blocks)).status).toBe(200)
    const keys = await countKeys(hub.datastore)
    for (const [, record] of bad) {
      await expectRefusal(await putRecord(hub, space.name, record), 400, 'InvalidRecordError')
      expect(await countKeys(hub.datastore)).toBe(keys)
      expect((await getRecord(hub, space.name)).status).toBe(404)
    }
    expect((await putRecord(hub, space.name, good)).status).toBe(200)
    expect((await getRecord(hub, space.name)).status).toBe(200)
  })

  it('by a hub\'s one-request publish (400, no block stored), which takes the good one', async () => {
    const hub = makeHub()
    const post = async (record: Uint8Array): Promise<Response> => hub.app.request(publishPath(space.name), {
      method: 'POST', headers: { 'content-type': CAR_TYPE }, body: await publishCar(record, space) as Uint8Array<ArrayBuffer>
    })
    for (const [, record] of bad) {
      await expectRefusal(await post(record), 400, 'InvalidRecordError')
      expect(await countBlocks(hub.blockstore)).toBe(0)
    }
    expect((await post(good)).status).toBe(200)
    expect(await countBlocks(hub.blockstore)).toBe(space.blocks.length)
  })

  it('by a hub hearing it from a peered hub (gossip)', async () => {
    const { records } = createHub({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() }, { rateLimit: 0 })
    // the root, and the current node and owner binding a hub sends with it
    const binding = [space.blocks[1]!.bytes, space.blocks[2]!.bytes]
    for (const [, record] of bad) {
      await expect(records.acceptFromPeer(space.name, record, space.root.bytes, binding)).rejects.toMatchObject({ name: 'InvalidRecordError' })
    }
    await expect(records.acceptFromPeer(space.name, good, space.root.bytes, binding)).resolves.toBe(true)
  })

  it('by a device opening the space from a store that holds it (InvalidRecordError), which opens the good one', async () => {
    const store = memoryStore()
    const writer = await openSpace({ signer: account(), store })
    await writer.set('k', 'v')
    await writer.flush()
    await writer.close()
    const record = store.records.get(writer.name) as Uint8Array
    expect(hasV1(record)).toBe(false)
    const reader = await openSpace({ signer: account(), store })
    expect(await reader.get('k')).toBe('v')
    await reader.close()
    store.records.set(writer.name, breakSignatureV2(record))
    await expect(openSpace({ signer: account(), store })).rejects.toMatchObject({ name: 'InvalidRecordError' })
  })
})

/**
 * One-request publish (`POST /api/v1/publish/{name}`): a CAR whose root is the signed IPNS record
 * (as an `ipns-record` block) and whose other blocks are the version's. Through `app.request()` on
 * memory stores, and through `hubStore` and a Space with a counting fetch.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { openSpace } from '../src/index.js'
import { CAR_TYPE, IPNS_RECORD_CODEC, publishPath } from '../src/protocol.js'
import { encodeCar, rawBlock } from '../src/store/blocks.js'
import { hubStore } from '../src/store/hub.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import {
  bytesOf, countBlocks, countingStore, countKeys, expectRefusal, getRecord, makeHub, makeSpace, publish, putRecord, upload
} from './helpers/hub-app.js'
import type { Hub, Space } from './helpers/hub-app.js'
import type { HubAppOptions } from '../src/hub/app.js'
import type { Block } from '../src/store/interface.js'

async function recordBlock (record: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(IPNS_RECORD_CODEC, await sha256.digest(record)), bytes: record }
}

/** The body a client sends: the record block first and as the single root, then the blocks. */
async function publishCar (record: Uint8Array, blocks: Block[]): Promise<Uint8Array> {
  const rb = await recordBlock(record)
  return encodeCar([rb, ...blocks], [rb.cid])
}

async function post (hub: Hub, name: string, body: Uint8Array, type = CAR_TYPE): Promise<Response> {
  return hub.app.request(publishPath(name), { method: 'POST', headers: { 'content-type': type }, body: body as Uint8Array<ArrayBuffer> })
}

async function publishOne (hub: Hub, space: Space, sequence = 1, blocks: Block[] = space.blocks): Promise<Response> {
  return post(hub, space.name, await publishCar(await createRecord(space.key, space.root.cid, sequence), blocks))
}

/** Blocks and datastore keys (landed entries, records, index): what "changes nothing" compares. */
async function snapshot (hub: Hub): Promise<{ blocks: number, keys: number }> {
  return { blocks: await countBlocks(hub.blockstore), keys: await countKeys(hub.datastore) }
}

describe('POST /api/v1/publish/{name}', () => {
  it('stores the blocks and the record in one request, and claims the blocks for the name', async () => {
    const space = await makeSpace()
    // Room for one space's blocks (each costs at least 4 KiB of disk), not two.
    const hub = makeHub({ maxPendingBytesPerClient: space.blocks.length * 4096 })
    const record = await createRecord(space.key, space.root.cid, 1)
    const res = await post(hub, space.name, await publishCar(record, space.blocks))
    expect(res.status, await res.clone().text()).toBe(200)
    expect(await bytesOf(await getRecord(hub, space.name))).toEqual(record)
    for (const block of space.blocks) expect(await hub.blockstore.has(block.cid)).toBe(true)
    // The record block itself is not kept as a block.
    expect(await hub.blockstore.has((await recordBlock(record)).cid)).toBe(false)
    expect(await countBlocks(hub.blockstore)).toBe(space.blocks.length)
    // Indexed like a PUT.
    const bound = await hub.app.request(`/api/v1/address/${space.address}`)
    expect(await bound.json()).toMatchObject({ name: space.name })
    // Claimed: the client's pending share is free again, so another space of the same size fits.
    const next = await makeSpace()
    expect((await publishOne(hub, next)).status).toBe(200)
  })

  it('refuses a stale sequence with 409 and stores and charges none of its blocks', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    await publish(hub, space, 5)
    const before = await snapshot(hub)
    const older = await makeSpace({ key: space.key })
    await expectRefusal(await publishOne(hub, older, 4), 409, 'ConflictError')
    // The same sequence with another value is an equivocation, refused the same way.
    await expectRefusal(await publishOne(hub, older, 5), 409, 'EquivocationError')
    expect(await snapshot(hub)).toEqual(before)
    for (const block of older.blocks.filter(b => !space.blocks.some(k => k.cid.equals(b.cid)))) expect(await hub.blockstore.has(block.cid)).toBe(false)
  })

  it('treats an identical retry as done', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const body = await publishCar(await createRecord(space.key, space.root.cid, 1), space.blocks)
    expect((await post(hub, space.name, body)).status).toBe(200)
    expect((await post(hub, space.name, body)).status).toBe(200)
  })

  it('refuses the whole request when one block does not match its CID (400)', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const [root, pub, priv] = space.blocks as [Block, Block, Block]
    const bad = { cid: priv.cid, bytes: new Uint8Array([...priv.bytes.subarray(1), 0]) }
    const before = await snapshot(hub)
    await expectRefusal(await publishOne(hub, space, 1, [root, pub, bad]), 400, 'IntegrityError')
    expect(await snapshot(hub)).toEqual(before)
    await expectRefusal(await getRecord(hub, space.name), 404)
  })

  it('refuses the whole request when the record is not valid for the name (400)', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const stranger = await generateKeyPair('Ed25519')
    const before = await snapshot(hub)
    // Signed by another key
    const forged = await createRecord(stranger, space.root.cid, 1)
    await expectRefusal(await post(hub, space.name, await publishCar(forged, space.blocks)), 400, 'InvalidRecordError')
    // Expired
    const expired = await createRecord(space.key, space.root.cid, 1, { lifetimeMs: -1000 })
    await expectRefusal(await post(hub, space.name, await publishCar(expired, space.blocks)), 400, 'InvalidRecordError')
    // Not a record at all
    await expectRefusal(await post(hub, space.name, await publishCar(new Uint8Array([1, 2, 3]), space.blocks)), 400, 'InvalidRecordError')
    expect(await snapshot(hub)).toEqual(before)
    await expectRefusal(await getRecord(hub, space.name), 404)
  })

  it('refuses a record block that does not match its CID (400)', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const record = await createRecord(space.key, space.root.cid, 1)
    const rb = await recordBlock(record)
    const tampered = { cid: rb.cid, bytes: await createRecord(space.key, space.root.cid, 2) }
    const res = await post(hub, space.name, encodeCar([tampered, ...space.blocks], [rb.cid]))
    await expectRefusal(res, 400, 'IntegrityError')
    expect(await countBlocks(hub.blockstore)).toBe(0)
  })

  it('refuses a CAR that does not carry exactly one record as its single root (400)', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const record = await createRecord(space.key, space.root.cid, 1)
    const rb = await recordBlock(record)
    // A plain upload CAR (the root block as root)
    await expectRefusal(await post(hub, space.name, encodeCar(space.blocks)), 400, 'InvalidInputError')
    // The record named but missing
    await expectRefusal(await post(hub, space.name, encodeCar(space.blocks, [rb.cid])), 400, 'InvalidInputError')
    // Two records
    const second = await recordBlock(await createRecord(space.key, space.root.cid, 2))
    await expectRefusal(await post(hub, space.name, encodeCar([rb, second, ...space.blocks], [rb.cid])), 400, 'InvalidInputError')
    // Two roots
    await expectRefusal(await post(hub, space.name, encodeCar([rb, ...space.blocks], [rb.cid, space.root.cid])), 400, 'InvalidInputError')
    // Not a CAR, the wrong type, a malformed name
    await expectRefusal(await post(hub, space.name, new Uint8Array([1, 2, 3])), 400, 'InvalidInputError')
    await expectRefusal(await post(hub, space.name, await publishCar(record, space.blocks), 'application/octet-stream'), 415)
    await expectRefusal(await post(hub, 'not-a-name', await publishCar(record, space.blocks)), 400, 'InvalidInputError')
    expect(await countBlocks(hub.blockstore)).toBe(0)
    await expectRefusal(await getRecord(hub, space.name), 404)
  })

  it('refuses a root whose owner binding names another space, storing none of its blocks', async () => {
    const hub = makeHub()
    const other = await generateKeyPair('Ed25519')
    const space = await makeSpace({ name: nameOfKey(other) })
    await expectRefusal(await publishOne(hub, space), 400, 'SignerMismatchError')
    expect(await snapshot(hub)).toEqual({ blocks: 0, keys: 0 })
  })

  describe('is bounded like an upload', () => {
    it.each([
      ['the body cap', { maxBodyBytes: 2048 }, { privateBytes: 4000 }],
      ['the per-upload block cap', { maxUploadBlocks: 3 }, {}],
      ['the per-block cap', { maxBlockBytes: 1024 }, { privateBytes: 2000 }],
      ['the per-name space quota (checked before any block is stored)', { maxSpaceBytes: 4096 }, { privateBytes: 5000 }],
      ['the per-client pending quota', { maxPendingBytesPerClient: 2 * 4096 }, {}]
    ] as Array<[string, HubAppOptions, Parameters<typeof makeSpace>[0]]>)('refuses a publish over %s with 413 and changes nothing', async (_what, options, init) => {
      const hub = makeHub(options)
      const space = await makeSpace(init)
      await expectRefusal(await publishOne(hub, space), 413, 'TooLargeError')
      expect(await snapshot(hub)).toEqual({ blocks: 0, keys: 0 })
      await expectRefusal(await getRecord(hub, space.name), 404)
    })

    it('refuses a record over the record limit (413)', async () => {
      const hub = makeHub()
      const space = await makeSpace()
      const big = crypto.getRandomValues(new Uint8Array(10 * 1024 + 1))
      await expectRefusal(await post(hub, space.name, await publishCar(big, space.blocks)), 413, 'TooLargeError')
      expect(await countBlocks(hub.blockstore)).toBe(0)
    })

    it('is rate limited like every route (429)', async () => {
      const hub = makeHub({ rateLimit: { requestsPerSecond: 0.001, burst: 1 } })
      const space = await makeSpace()
      expect((await publishOne(hub, space)).status).toBe(200)
      await expectRefusal(await publishOne(hub, space, 2), 429, 'RateLimitError')
    })
  })

  it('keeps the sequence rule when publishes and PUTs race: one version per sequence wins', async () => {
    for (let round = 0; round < 5; round++) {
      const hub = makeHub()
      const a = await makeSpace()
      const b = await makeSpace({ key: a.key })
      expect((await upload(hub, b.blocks)).status).toBe(200)
      const ra = await createRecord(a.key, a.root.cid, 1)
      const rb = await createRecord(a.key, b.root.cid, 1)
      const [pa, pb] = await Promise.all([
        post(hub, a.name, await publishCar(ra, a.blocks)),
        putRecord(hub, a.name, rb)
      ])
      expect([pa.status, pb.status].sort()).toEqual([200, 409])
      const stored = await bytesOf(await getRecord(hub, a.name))
      expect(stored).toEqual(pa.status === 200 ? ra : rb)
      // The losing publish left none of its own blocks behind.
      if (pa.status === 409) for (const block of a.blocks.filter(x => !b.blocks.some(k => k.cid.equals(x.cid)))) expect(await hub.blockstore.has(block.cid)).toBe(false)
      // And a later lower sequence through either route is refused.
      await expectRefusal(await publishOne(hub, a, 0), 409, 'ConflictError')
    }
  })
})

describe('hubStore.publish and the Space', () => {
  it('publishes in one request and maps a stale sequence to ConflictError', async () => {
    const hub = makeHub()
    const { store, requests } = countingStore(hub)
    const space = await makeSpace()
    const r2 = await createRecord(space.key, space.root.cid, 2)
    await store.publish?.(space.name, r2, space.blocks)
    expect(requests).toEqual([`POST ${publishPath(space.name)}`])
    expect(await store.getRecord(space.name)).toEqual(r2)
    const older = await makeSpace({ key: space.key })
    await expect(store.publish?.(space.name, await createRecord(space.key, older.root.cid, 1), older.blocks)).rejects.toMatchObject({ name: 'ConflictError' })
    for (const block of older.blocks.filter(b => !space.blocks.some(k => k.cid.equals(b.cid)))) expect(await hub.blockstore.has(block.cid)).toBe(false)
    // A block that does not match its CID never leaves the client.
    await expect(store.publish?.(space.name, r2, [{ cid: space.root.cid, bytes: new Uint8Array([1]) }])).rejects.toMatchObject({ name: 'IntegrityError' })
  })

  it('sends blocks beyond maxUploadBytes in uploads first, the rest with the record', async () => {
    const hub = makeHub()
    const { store, requests } = countingStore(hub, { maxUploadBytes: 3000 })
    const space = await makeSpace()
    const extra = await Promise.all([1, 2, 3].map(async () => rawBlock(crypto.getRandomValues(new Uint8Array(2000)))))
    const record = await createRecord(space.key, space.root.cid, 1)
    await store.publish?.(space.name, record, [...extra, ...space.blocks])
    expect(requests.filter(r => r === 'POST /api/v1/blocks').length).toBeGreaterThanOrEqual(2)
    expect(requests.at(-1)).toBe(`POST ${publishPath(space.name)}`)
    for (const block of [...extra, ...space.blocks]) expect(await hub.blockstore.has(block.cid)).toBe(true)
    expect(await bytesOf(await getRecord(hub, space.name))).toEqual(record)
  })

  it('falls back to upload + PUT with a hub that predates the route, and remembers', async () => {
    const hub = makeHub()
    const requests: string[] = []
    const store = hubStore('http://hub.test', {
      fetch: async (input, init) => {
        const url = new URL(String(input))
        requests.push(`${init?.method ?? 'GET'} ${url.pathname}`)
        // An older hub: no such route.
        if (url.pathname.startsWith('/api/v1/publish/')) return Response.json({ message: 'no route', name: 'NotFoundError' }, { status: 404 })
        return hub.app.request(url.pathname + url.search, init)
      }
    })
    const space = await makeSpace()
    const r1 = await createRecord(space.key, space.root.cid, 1)
    await store.publish?.(space.name, r1, space.blocks)
    expect(requests).toEqual([`POST ${publishPath(space.name)}`, 'POST /api/v1/blocks', `PUT /routing/v1/ipns/${space.name}`])
    expect(await bytesOf(await getRecord(hub, space.name))).toEqual(r1)
    requests.length = 0
    await store.publish?.(space.name, await createRecord(space.key, space.root.cid, 2), space.blocks)
    expect(requests).toEqual(['POST /api/v1/blocks', `PUT /routing/v1/ipns/${space.name}`])
  })

  it('a Space publishes each version with one request and no resolve', async () => {
    const hub = makeHub()
    const { store, requests } = countingStore(hub)
    const signer = privateKeyToAccount(generatePrivateKey())
    const space = await openSpace({ signer, store })
    await space.flush()
    requests.length = 0
    await space.set('theme', 'dark')
    await space.flush()
    expect(requests).toEqual([`POST ${publishPath(space.name)}`])
    requests.length = 0
    await space.set('theme', 'light')
    await space.flush()
    expect(requests).toEqual([`POST ${publishPath(space.name)}`])
    // Another device reads it back.
    const reader = await openSpace({ signer, store: hubStore('http://hub.test', { fetch: async (input, init) => hub.app.request(String(input), init) }) })
    expect(await reader.get('theme')).toBe('light')
    await reader.close()
    await space.close()
  })

  it('a Space that lost a race merges and publishes again through the one-request route', async () => {
    const hub = makeHub()
    const signer = privateKeyToAccount(generatePrivateKey())
    const a = await openSpace({ signer, store: countingStore(hub).store, deviceId: 'a' })
    await a.set('x', 1)
    await a.flush()
    const b = await openSpace({ signer, store: countingStore(hub).store, deviceId: 'b' })
    await b.set('y', 2)
    await b.flush()
    // `a` still believes the sequence is 1: its publish is refused (409), it merges and retries.
    await a.set('z', 3)
    await a.flush()
    const c = await openSpace({ signer, store: countingStore(hub).store, deviceId: 'c' })
    expect(await c.getAll()).toEqual({ x: 1, y: 2, z: 3 })
    await Promise.all([a.close(), b.close(), c.close()])
  })
})

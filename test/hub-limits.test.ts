/**
 * The hub's resource limits through `app.request()` (memory stores, no socket): bounded DAG walks,
 * streamed and capped CARs, per-client stream slots, uploads charged until referenced, garbage
 * collection and retention, the storage budget, dated address bindings, the static-file
 * containment check, the rate limiter's client key, and fsync before acknowledgement. Each test
 * names the check it guards; removing that check fails it.
 */
import { mkdtemp, rm, stat, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as dagCbor from '@ipld/dag-cbor'
import { MemoryBlockstore } from 'blockstore-core'
import { FsBlockstore } from 'blockstore-fs'
import { LevelDatastore } from 'datastore-level'
import { Level } from 'level'
import { base64url } from 'multiformats/bases/base64'
import { base32upper } from 'multiformats/bases/base32'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it, vi } from 'vitest'
import { ownerStatement } from '../src/crypto/keys.js'
import { createHubApp } from '../src/hub/app.js'
import { groupAddress } from '../src/hub/client.js'
import { forEachLink } from '../src/hub/walk.js'
import { putDurably } from '../src/hub/durable.js'
import { DiskBlockstore, openDiskBlockstore } from '../src/store/level-blocks.js'
import type { LegacyMove } from '../src/store/level-blocks.js'
import { NextToLast } from 'blockstore-fs/sharding'
import { decodeLanded, encodeLanded, HubStorage, LANDED_PREFIX, MAX_TRACKED_UPLOADS } from '../src/hub/storage.js'
import type { Landed } from '../src/hub/storage.js'
import { MemoryDatastore } from 'datastore-core'
import { Key } from 'interface-datastore'
import { decodeOwner, decodeRoot, encodeRoot, verifyOwner } from '../src/space/root.js'
import { MAX_BLOCK_BYTES, cborBlock, encodeCar, rawBlock } from '../src/store/blocks.js'
import { hubStore } from '../src/store/hub.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identity } from 'multiformats/hashes/identity'
import { create as createMultihash } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { CAR_TYPE, IPNS_RECORD_CODEC, publishPath } from '../src/protocol.js'
import { openSpace } from '../src/index.js'
import { car, expectRefusal, makeHub, makeSpace, publish, putRecord, upload } from './helpers/hub-app.js'
import type { Hub } from './helpers/hub-app.js'
import { CID } from 'multiformats/cid'

const GRACE_MS = 60_000

const range = (n: number): number[] => [...Array(n).keys()]

async function carOf (hub: Hub, cid: CID, env?: object): Promise<Response> {
  return hub.app.request(`/ipfs/${cid.toString()}?format=car`, {}, env)
}

/** A block's bytes as a DiskBlockstore's `get` streams them. */
async function bytesOf (store: DiskBlockstore, cid: CID): Promise<Buffer> {
  const chunks: Uint8Array[] = []
  for await (const chunk of store.get(cid)) chunks.push(chunk)
  return Buffer.concat(chunks)
}

async function has (hub: Hub, cid: CID): Promise<boolean> {
  return hub.blockstore.has(cid)
}

const envOf = (ip: string): object => ({ incoming: { socket: { remoteAddress: ip } } })

/** A promise (`arrived`) and the function that settles it (`reached`): a point one side of a test waits for. */
function signal (): { reached: () => void, arrived: Promise<void> } {
  let reached: () => void = () => {}
  const arrived = new Promise<void>(resolve => { reached = resolve })
  return { reached, arrived }
}

/** `inner` with some methods replaced; the others read and write its blocks as they are. */
function over (inner: MemoryBlockstore, methods: Partial<Record<'put' | 'has' | 'deleteMany', unknown>>): MemoryBlockstore {
  return Object.assign(Object.create(inner) as MemoryBlockstore, methods)
}

/**
 * A hub whose collection, started here, stops in its sweep: the hub holds one unreferenced upload
 * long past its grace, and deleting it waits for `release`. Resolves once the sweep has reached it.
 */
async function collectionInSweep (options: Parameters<typeof makeHub>[0], seed: number, old?: { cid: CID, bytes: Uint8Array }): Promise<{ hub: Hub, release: () => void, collection: ReturnType<Hub['collectGarbage']> }> {
  old ??= await rawBlock(new Uint8Array([5, seed]))
  const { reached: deleting, arrived: inSweep } = signal()
  const { reached: release, arrived: gate } = signal()
  const inner = new MemoryBlockstore()
  const blockstore = over(inner, {
    deleteMany: async function * (cids: CID[]) { deleting(); await gate; yield * inner.deleteMany(cids) }
  })
  const hub = makeHub({ gcGraceMs: GRACE_MS, ...options }, { blockstore })
  await inner.put(old.cid, old.bytes)
  await hub.datastore.put(new Key(`${LANDED_PREFIX}0ld.0`), encodeLanded(Date.now() - 2 * GRACE_MS, '10.9.9.9', [{ cid: old.cid, cost: 4096 }]))
  const collection = hub.collectGarbage(Date.now())
  await inSweep                                    // the landed entries are read; deletion waits
  return { hub, release, collection }
}

/** Every CID the hub's landed entries record, repeats included. */
async function landedCids (hub: Hub): Promise<string[]> {
  const cids: string[] = []
  for await (const { key, value } of hub.datastore.query({ prefix: LANDED_PREFIX.slice(0, -1) })) {
    for (const entry of decodeLanded(key.toString(), value)) cids.push(entry.cid)
  }
  return cids
}

describe('DAG walks are linear and capped', () => {
  it('finds exactly the links dag-cbor decoding finds, without decoding', async () => {
    const a = await rawBlock(new Uint8Array([1]))
    const b = await cborBlock({ x: 1 })
    const values: unknown[] = [
      { a: a.cid, list: [b.cid, { deep: [[[a.cid]]] }], n: -5, f: 1.5, big: 2 ** 40, s: 'text', bytes: new Uint8Array([0, 1]), t: true, z: null },
      [a.cid, a.cid, b.cid],
      'no links',
      { nested: { map: { with: { cid: b.cid, more: new Array(300).fill(a.cid) } } } }
    ]
    for (const value of values) {
      const block = await cborBlock(value)
      const scanned: string[] = []
      expect(forEachLink(block.bytes, (start, end) => { scanned.push(CID.decode(block.bytes.subarray(start, end)).toString()); return true })).toBe(true)
      const decoded: string[] = []
      const visit = (node: unknown): void => {
        const cid = CID.asCID(node)
        if (cid !== null) { decoded.push(cid.toString()); return }
        if (node !== null && typeof node === 'object' && !(node instanceof Uint8Array)) for (const child of Object.values(node)) visit(child)
      }
      visit(dagCbor.decode(block.bytes))
      expect(scanned.sort()).toEqual(decoded.sort())
    }
    expect(forEachLink(new Uint8Array([0x82, 0x01]), () => true)).toBe(true) // truncated: no links
  })

  it('serves a CAR of a block that repeats one link 24 000 times (a 1 MiB block) with each block once', async () => {
    const hub = makeHub()
    const leaf = await rawBlock(new Uint8Array([1, 2, 3]))
    const fat = await cborBlock({ links: new Array(24_000).fill(leaf.cid) })
    expect((await upload(hub, [fat, leaf])).status).toBe(200)
    const res = await carOf(hub, fat.cid)
    expect(res.status).toBe(200)
    const bytes = new Uint8Array(await res.arrayBuffer())
    expect(Number(res.headers.get('content-length'))).toBe(bytes.byteLength)
    const blocks = [...CarBufferReader.fromBytes(bytes).blocks()].map(b => b.cid.toString())
    expect(blocks).toEqual([fat.cid.toString(), leaf.cid.toString()])
  })

  it('refuses a CAR over the link cap (413) before sending any of it', async () => {
    const hub = makeHub({ maxDagLinks: 1_000 })
    const leaf = await rawBlock(new Uint8Array([9]))
    const fat = await cborBlock({ links: new Array(1_001).fill(leaf.cid) })
    expect((await upload(hub, [fat, leaf])).status).toBe(200)
    await expectRefusal(await carOf(hub, fat.cid), 413, 'TooLargeError')
  })

  it('refuses a CAR over the block cap (413)', async () => {
    const hub = makeHub({ maxDagBlocks: 3 })
    const leaves = await Promise.all([1, 2, 3].map(async n => rawBlock(new Uint8Array([n]))))
    const node = await cborBlock({ links: leaves.map(l => l.cid) })
    expect((await upload(hub, [node, ...leaves])).status).toBe(200)
    await expectRefusal(await carOf(hub, node.cid), 413, 'TooLargeError')
    expect((await carOf(hub, leaves[0]!.cid)).status).toBe(200)
  })

  it('refuses a record whose space has more links than one walk may examine (413), storing nothing', async () => {
    const hub = makeHub({ maxDagLinks: 500 })
    const space = await makeSpace()
    const leaf = await rawBlock(new Uint8Array([7]))
    const fat = await cborBlock({ links: new Array(600).fill(leaf.cid) })
    // A root whose state is the fat block.
    const root = await encodeRoot({ ...decodeRoot(space.root.bytes), current: fat.cid })
    expect((await upload(hub, [root, fat, leaf, ...space.blocks.slice(1)])).status).toBe(200)
    const res = await putRecord(hub, space.name, await createRecord(space.key, root.cid, 1))
    await expectRefusal(res, 413, 'TooLargeError')
    expect((await hub.app.request(`/routing/v1/ipns/${space.name}`, { headers: { accept: 'application/vnd.ipfs.ipns-record' } })).status).toBe(404)
  })
})

describe('uploads', () => {
  it('refuses a CAR with more blocks than one upload may hold (413), storing none of them', async () => {
    const hub = makeHub({ maxUploadBlocks: 3 })
    const blocks = await Promise.all([1, 2, 3, 4].map(async n => rawBlock(new Uint8Array([n]))))
    await expectRefusal(await upload(hub, blocks), 413, 'TooLargeError')
    for (const block of blocks) expect(await has(hub, block.cid)).toBe(false)
    expect((await upload(hub, blocks.slice(0, 3))).status).toBe(200)
  })
})

describe('CAR responses are streamed and their concurrency capped', () => {
  it('holds a CAR slot while a body is unread: the hub-wide cap is a 503 with Retry-After, freed on cancel', async () => {
    const hub = makeHub({ maxCarStreams: 1, maxCarStreamsPerClient: 5 })
    const block = await rawBlock(new Uint8Array(1000))
    expect((await upload(hub, [block])).status).toBe(200)
    const first = await carOf(hub, block.cid, envOf('10.0.0.1'))
    expect(first.status).toBe(200)
    const busy = await carOf(hub, block.cid, envOf('10.0.0.2'))
    expect(busy.headers.get('retry-after')).toBe('1')
    await expectRefusal(busy, 503, 'UnavailableError')
    await first.body?.cancel()
    expect((await carOf(hub, block.cid, envOf('10.0.0.2'))).status).toBe(200)
  })

  it('caps CAR streams per client (429) without touching other clients', async () => {
    const hub = makeHub({ maxCarStreams: 10, maxCarStreamsPerClient: 1 })
    const block = await rawBlock(new Uint8Array(10))
    expect((await upload(hub, [block])).status).toBe(200)
    const first = await carOf(hub, block.cid, envOf('10.0.0.1'))
    expect(first.status).toBe(200)
    await expectRefusal(await carOf(hub, block.cid, envOf('10.0.0.1')), 429, 'RateLimitError')
    const other = await carOf(hub, block.cid, envOf('10.0.0.2'))
    expect(other.status).toBe(200)
    // Reading a body to its end frees the slot too.
    await first.arrayBuffer()
    await other.arrayBuffer()
    expect((await carOf(hub, block.cid, envOf('10.0.0.1'))).status).toBe(200)
  })
})

describe('event streams per client', () => {
  it('refuses a client its 3rd stream (429) while another client still gets one', async () => {
    const hub = makeHub({ maxEventStreamsPerClient: 2 })
    const space = await makeSpace()
    const open = async (ip: string): Promise<Response> => hub.app.request(`/api/v1/events/${space.name}`, {}, envOf(ip))
    const a = await open('2001:db8:1:2::1')
    const b = await open('2001:db8:1:2:ffff::9') // same /64
    expect([a.status, b.status]).toEqual([200, 200])
    await expectRefusal(await open('2001:db8:1:2::77'), 429, 'RateLimitError')
    const c = await open('2001:db8:1:3::1')
    expect(c.status).toBe(200)
    await Promise.all([a.body?.cancel(), b.body?.cancel(), c.body?.cancel()])
  })

  it('groups IPv6 clients by /64 and writes IPv4-mapped addresses as IPv4', () => {
    expect(groupAddress('2001:db8:0:1::5')).toBe(groupAddress('2001:0db8:0000:0001:ffff:1:2:3'))
    expect(groupAddress('2001:db8:0:1::5')).not.toBe(groupAddress('2001:db8:0:2::5'))
    expect(groupAddress('::ffff:10.1.2.3')).toBe('10.1.2.3')
    expect(groupAddress('10.1.2.3')).toBe('10.1.2.3')
  })
})

describe('uploads are charged to their uploader until a record references them', () => {
  it('refuses an upload over the per-client pending share (413), and a referencing record frees the share', async () => {
    // Each block costs at least 4 KiB; the space's 6 blocks fit, a 7th does not.
    const hub = makeHub({ maxPendingBytesPerClient: 6 * 4096 })
    const space = await makeSpace()
    expect((await upload(hub, space.blocks)).status).toBe(200)
    const extra = await rawBlock(new Uint8Array([42]))
    await expectRefusal(await upload(hub, [extra]), 413, 'TooLargeError')
    expect(await has(hub, extra.cid)).toBe(false)
    expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
    expect((await upload(hub, [extra])).status).toBe(200)
  })

  it('counts uploads admitted at the same time against each other: parallel uploads cannot pass the share together', async () => {
    const hub = makeHub({ maxPendingBytesPerClient: 2 * 4096 })
    const blocks = await Promise.all([1, 2, 3, 4].map(async i => rawBlock(new Uint8Array([5, i]))))
    const statuses = await Promise.all(blocks.map(async b => (await upload(hub, [b])).status))
    expect(statuses.filter(s => s === 200)).toHaveLength(2)
    expect(statuses.filter(s => s === 413)).toHaveLength(2)
  })

  it('an upload that fails after it was admitted gives its share back', async () => {
    let syncs = 0
    const hub = makeHub({ maxPendingBytesPerClient: 4096 }, {
      syncBlocks: async () => { if (syncs++ === 0) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }) }
    })
    expect((await upload(hub, [await rawBlock(new Uint8Array([5, 9]))])).status).toBeGreaterThanOrEqual(500)
    expect((await upload(hub, [await rawBlock(new Uint8Array([5, 10]))])).status).toBe(200)
  })

  it('keeps charging an upload recorded while a collection runs, which its sweep did not see', async () => {
    const { hub, release, collection } = await collectionInSweep({ maxPendingBytesPerClient: 4096 }, 20)
    expect((await upload(hub, [await rawBlock(new Uint8Array([5, 21]))])).status).toBe(200)
    release()
    expect((await collection).deletedBlocks).toBe(1)
    // the share is still spent by the upload made during the collection
    expect((await upload(hub, [await rawBlock(new Uint8Array([5, 22]))])).status).toBe(413)
  })

  it('does not charge again an upload made and referenced by a record while a collection runs', async () => {
    const space = await makeSpace()
    const { hub, release, collection } = await collectionInSweep({ maxPendingBytesPerClient: (space.blocks.length + 1) * 4096 }, 23)
    await publish(hub, space)                      // uploaded and referenced while the sweep runs
    release()
    await collection
    const fill = await Promise.all(Array.from({ length: space.blocks.length + 1 }, async (_, i) => rawBlock(new Uint8Array([5, 30 + i]))))
    expect((await upload(hub, fill)).status).toBe(200)
  })

  it('charges each client separately', async () => {
    const hub = makeHub({ maxPendingBytesPerClient: 4096 })
    const one = await rawBlock(new Uint8Array([1]))
    const two = await rawBlock(new Uint8Array([2]))
    const post = async (block: { cid: CID, bytes: Uint8Array }, ip: string): Promise<Response> => hub.app.request('/api/v1/blocks', {
      method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: encodeCar([block]) as Uint8Array<ArrayBuffer>
    }, envOf(ip))
    expect((await post(one, '10.0.0.1')).status).toBe(200)
    await expectRefusal(await post(two, '10.0.0.1'), 413, 'TooLargeError')
    expect((await post(two, '10.0.0.2')).status).toBe(200)
  })

  it('refuses uploads over the hub storage budget with 507 and a JSON reason', async () => {
    const hub = makeHub({ maxStorageBytes: 2 * 4096 })
    const blocks = await Promise.all([1, 2, 3].map(async n => rawBlock(new Uint8Array([n]))))
    expect((await upload(hub, blocks.slice(0, 2))).status).toBe(200)
    const res = await upload(hub, [blocks[2]!])
    expect(res.headers.get('retry-after')).toBe('1')
    await expectRefusal(res, 507, 'InsufficientStorageError')
    expect(await has(hub, blocks[2]!.cid)).toBe(false)
  })

  it('does not charge blocks the hub already has', async () => {
    const hub = makeHub({ maxPendingBytesPerClient: 4096 })
    const block = await rawBlock(new Uint8Array([5]))
    expect((await upload(hub, [block])).status).toBe(200)
    expect((await upload(hub, [block])).status).toBe(200)
  })
})

describe('garbage collection and retention', () => {
  it('keeps an unreferenced upload through its grace period, then deletes it; referenced blocks stay', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const space = await makeSpace()
    await publish(hub, space)
    const stray = await rawBlock(new Uint8Array([1, 1, 1]))
    expect((await upload(hub, [stray])).status).toBe(200)
    const early = await hub.collectGarbage(Date.now())
    expect(early.deletedBlocks).toBe(0)
    expect(early.pendingBlocks).toBe(1)
    expect(await has(hub, stray.cid)).toBe(true)
    const late = await hub.collectGarbage(Date.now() + GRACE_MS + 1)
    expect(late.deletedBlocks).toBe(1)
    expect(await has(hub, stray.cid)).toBe(false)
    expect((await hub.app.request(`/ipfs/${stray.cid.toString()}?format=raw`)).status).toBe(404)
    for (const block of space.blocks) expect(await has(hub, block.cid)).toBe(true)
  })

  it('collects the blocks a refused PUT left behind, and frees the uploader share', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS, maxSpaceBytes: 4_000, maxPendingBytesPerClient: 10 * 4096 })
    const big = await makeSpace({ privateBytes: 5_000 })
    expect((await upload(hub, big.blocks)).status).toBe(200)
    await expectRefusal(await putRecord(hub, big.name, await createRecord(big.key, big.root.cid, 1)), 413, 'TooLargeError')
    const report = await hub.collectGarbage(Date.now() + GRACE_MS + 1)
    expect(report.deletedBlocks).toBe(big.blocks.length)
    for (const block of big.blocks) expect(await has(hub, block.cid)).toBe(false)
  })

  it('never keeps a space over its quota when the record comes before its blocks', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS, maxSpaceBytes: 4_000 })
    const big = await makeSpace({ privateBytes: 5_000 })
    // The hub has no root yet: the record is accepted (any IPNS record is welcome).
    expect((await putRecord(hub, big.name, await createRecord(big.key, big.root.cid, 1))).status).toBe(200)
    expect((await upload(hub, big.blocks)).status).toBe(200)
    await hub.collectGarbage(Date.now() + GRACE_MS + 1)
    // The mark stopped at the quota: the 5 000-byte bucket is not kept.
    expect(await has(hub, big.blocks.at(-1)!.cid)).toBe(false)
  })

  it('keeps the newest versions that fit in the quota together and drops older ones, never the current one', async () => {
    // Each version is ~3.6 KB (a 3 000-byte bucket, root, current node, profile and clock): two fit, three do not.
    const hub = makeHub({ gcGraceMs: GRACE_MS, maxSpaceBytes: 8_000 })
    const walletKey = generatePrivateKey()
    const v1 = await makeSpace({ walletKey, privateBytes: 3_000, sequence: 1 })
    await publish(hub, v1, 1)
    const v2 = await makeSpace({ key: v1.key, walletKey, privateBytes: 3_000, sequence: 2, parents: [v1.root.cid] })
    await publish(hub, v2, 2)
    const v3 = await makeSpace({ key: v1.key, walletKey, privateBytes: 3_000, sequence: 3, parents: [v2.root.cid] })
    await publish(hub, v3, 3)
    const report = await hub.collectGarbage(Date.now() + GRACE_MS + 1)
    expect(report.versionsKept).toBe(2)
    expect(report.versionsDropped).toBe(1)
    for (const block of [...v3.blocks, ...v2.blocks]) expect(await has(hub, block.cid)).toBe(true)
    expect(await has(hub, v1.root.cid)).toBe(false)
    expect(await has(hub, v1.blocks.at(-1)!.cid)).toBe(false)
  })

  it('on a blockstore that finds blocks by their multihash start, records each stored block in 14 bytes and collects as with whole CIDs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userspace-compact-'))
    const blockstore = new DiskBlockstore(join(dir, 'blocks'), false)
    await blockstore.open()
    try {
      const lookup = async (prefix: Uint8Array, limit: number): Promise<Uint8Array[]> => await blockstore.multihashesFrom(prefix, limit)
      const hub = makeHub({ gcGraceMs: GRACE_MS }, { blockstore, blockPrefixes: lookup })
      const space = await makeSpace({ privateBytes: 5_000 })         // raw, dag-cbor and json blocks, one over the 4 KiB minimum
      const strays = [await rawBlock(new Uint8Array([8, 1])), await rawBlock(new Uint8Array([8, 2]))]
      expect((await upload(hub, [...space.blocks, ...strays])).status).toBe(200)
      expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
      const entry = async (): Promise<{ key: string, value: Uint8Array }> => {
        const found: Array<{ key: string, value: Uint8Array }> = []
        for await (const { key, value } of hub.datastore.query({ prefix: LANDED_PREFIX.slice(0, -1) })) found.push({ key: key.toString(), value })
        expect(found).toHaveLength(1)
        return found[0]!
      }
      const first = await entry()
      const header = first.value.indexOf(0x0a) + 1
      expect(new TextDecoder().decode(first.value.subarray(0, header))).toMatch(/ s12\n$/)
      // per block: its cost above the 4 KiB minimum (one byte, two for the 5 000-byte bucket), its
      // codec (two bytes for json) and 12 bytes of digest
      const json = 0x0200
      expect(first.value.byteLength - header).toBe([...space.blocks, ...strays].reduce((n, b) => n + (b.bytes.byteLength > 4096 + 127 ? 2 : 1) + (b.cid.code === json ? 2 : 1) + 12, 0))
      // read back, every block is named by its whole CID again
      const resolved = async (): Promise<string[]> => {
        const cids: string[] = []
        for await (const e of new HubStorage(hub.datastore, {}, lookup).entries()) cids.push(e.cid)
        return cids.sort()
      }
      expect(await resolved()).toEqual([...space.blocks, ...strays].map(b => b.cid.toString()).sort())
      // the strays go, the version stays, and so does the entry, for the version's blocks only
      const report = await hub.collectGarbage(Date.now() + GRACE_MS + 1)
      expect(report.deletedBlocks).toBe(2)
      for (const stray of strays) expect(await blockstore.has(stray.cid)).toBe(false)
      for (const block of space.blocks) expect(await blockstore.has(block.cid)).toBe(true)
      expect((await entry()).key).toBe(first.key)
      expect(await resolved()).toEqual(space.blocks.map(b => b.cid.toString()).sort())
      const restarted = new HubStorage(hub.datastore, {}, lookup)
      await restarted.ready
      expect(restarted.landedBytes).toBe(space.blocks.reduce((n, b) => n + Math.max(4096, b.bytes.byteLength), 0))
    } finally {
      await blockstore.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('treats two held blocks that start alike as one: kept while either is referenced, else both deleted; forgets entries of blocks gone; touches nothing without a lookup', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userspace-compact-'))
    const blockstore = new DiskBlockstore(join(dir, 'blocks'), false)
    await blockstore.open()
    try {
      const space = await makeSpace()
      const kept = space.blocks.at(-1)!                    // the version's bucket (raw), referenced once the record is in
      const twin = await rawBlock(new Uint8Array([8, 3]))  // a stray whose digest starts like the bucket's
      const pair = await rawBlock(new Uint8Array([8, 6]))  // a stray whose digest starts like `other`'s
      const other = await rawBlock(new Uint8Array([8, 7]))
      const gone = await rawBlock(new Uint8Array([8, 4]))
      const plain = await rawBlock(new Uint8Array([8, 5]))
      // as if those pairs' digests began with the same 12 bytes
      const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
      const alike = new Map([[twin, kept], [pair, other]].map(([a, b]) => [hex(a!.cid.multihash.bytes), b!.cid.multihash.bytes]))
      const lookup = async (prefix: Uint8Array, limit: number): Promise<Uint8Array[]> => {
        const found = await blockstore.multihashesFrom(prefix, limit)
        const partner = found.length === 1 ? alike.get(hex(found[0]!)) : undefined
        return partner === undefined ? found : [found[0]!, partner]
      }
      const hub = makeHub({ gcGraceMs: GRACE_MS }, { blockstore, blockPrefixes: lookup })
      expect((await upload(hub, space.blocks)).status).toBe(200)
      expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
      for (const b of [twin, pair, other, plain]) await blockstore.put(b.cid, b.bytes)
      const old = Date.now() - 2 * GRACE_MS
      await hub.datastore.put(new Key(`${LANDED_PREFIX}0ld.0`), encodeLanded(old, '10.9.9.9', [twin, pair, gone, plain].map(b => ({ cid: b.cid, cost: 4096 })), true))
      // a hub that cannot look blocks up (started without a blockstore that can) touches no compact entry
      const blind = makeHub({ gcGraceMs: GRACE_MS }, { blockstore, datastore: hub.datastore })
      expect((await blind.collectGarbage(Date.now())).deletedBlocks).toBe(0)
      for (const b of [twin, pair, other, plain]) expect(await blockstore.has(b.cid)).toBe(true)
      const report = await hub.collectGarbage(Date.now())
      // `gone`'s record is forgotten; `plain` is deleted, and so are `pair` and `other` (neither referenced)…
      expect(report.deletedBlocks).toBe(3)
      for (const b of [plain, pair, other]) expect(await blockstore.has(b.cid)).toBe(false)
      // …but `twin` stays with its record, since the block it starts like is referenced
      expect(await blockstore.has(twin.cid)).toBe(true)
      expect(await blockstore.has(kept.cid)).toBe(true)
      const left = decodeLanded(`${LANDED_PREFIX}0ld.0`, await hub.datastore.get(new Key(`${LANDED_PREFIX}0ld.0`)))
      expect(left.map(e => e.cid)).toEqual([`?55:${Buffer.from(twin.cid.multihash.digest.subarray(0, 12)).toString('hex')}`])
    } finally {
      await blockstore.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('leaves a held block an upload sent again its grace period, so that the record that follows finds it', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const space = await makeSpace()
    const binding = space.blocks[2]!
    // landed long ago by someone else, and referenced by nothing since
    await hub.blockstore.put(binding.cid, binding.bytes)
    await hub.datastore.put(new Key(`${LANDED_PREFIX}0ld.0`), encodeLanded(Date.now() - 2 * GRACE_MS, '10.9.9.9', [{ cid: binding.cid, cost: 4096 }]))
    // the owner's upload finds it held; a collection runs before the owner's record arrives
    expect((await upload(hub, space.blocks)).status).toBe(200)
    expect((await hub.collectGarbage(Date.now())).deletedBlocks).toBe(0)
    expect(await has(hub, binding.cid)).toBe(true)
    expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
    expect(await (await hub.app.request(`/api/v1/address/${space.address}`)).json()).toMatchObject({ name: space.name })
  })

  it('an upload of a held block that a collection is deleting at that moment waits, then stores it again: the block an acknowledged upload sent is never gone', async () => {
    const space = await makeSpace()
    const binding = space.blocks[2]!
    // landed long ago by someone else, referenced by nothing: the sweep is deleting it now
    const { hub, release, collection } = await collectionInSweep({}, 0, binding)
    let answered = false
    const uploaded = upload(hub, space.blocks).then(res => { answered = true; return res })
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(answered).toBe(false)                   // it waits for the deletion under way
    release()
    expect((await collection).deletedBlocks).toBe(1)
    expect((await uploaded).status).toBe(200)
    expect(await has(hub, binding.cid)).toBe(true)
    // stored again and recorded: the next collection leaves it its grace period
    expect((await hub.collectGarbage(Date.now())).deletedBlocks).toBe(0)
    expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
    expect(await (await hub.app.request(`/api/v1/address/${space.address}`)).json()).toMatchObject({ name: space.name })
  })

  it('a collection leaves a block an upload is storing at that moment, which it found held', async () => {
    const space = await makeSpace()
    const binding = space.blocks[2]!
    const { reached: looked, arrived: inHas } = signal()
    const { reached: release, arrived: gate } = signal()
    const inner = new MemoryBlockstore()
    const blockstore = over(inner, {
      // the answer is read, then held back: the upload has found the block held and not yet noted it
      has: async (cid: CID) => { const held = await inner.has(cid); if (cid.equals(binding.cid)) { looked(); await gate } return held }
    })
    const hub = makeHub({ gcGraceMs: GRACE_MS }, { blockstore })
    await inner.put(binding.cid, binding.bytes)
    await hub.datastore.put(new Key(`${LANDED_PREFIX}0ld.0`), encodeLanded(Date.now() - 2 * GRACE_MS, '10.9.9.9', [{ cid: binding.cid, cost: 4096 }]))
    const uploaded = upload(hub, space.blocks)
    await inHas
    const report = await hub.collectGarbage(Date.now())
    expect(report.deletedBlocks).toBe(0)
    expect(report.pendingBlocks).toBe(1)
    release()
    expect((await uploaded).status).toBe(200)
    expect(await inner.has(binding.cid)).toBe(true)
  })

  it('a block fetched from the network while a collection is deleting it waits for that deletion, then is kept again', async () => {
    const stray = await rawBlock(new Uint8Array([5, 77]))
    const { hub, release, collection } = await collectionInSweep({}, 0, stray)
    // a replica's carried bytes, or a reader's fetch: an upload of the block that arrives meanwhile trusts this answer
    const kept = hub.blocks.keepFromNetwork(stray.cid, stray.bytes)
    await new Promise(resolve => setTimeout(resolve, 50))
    release()
    expect((await collection).deletedBlocks).toBe(1)
    await kept
    expect(await has(hub, stray.cid)).toBe(true)
  })

  it('an older entry of a block an upload stored again during the collection does not delete it', async () => {
    // 256 held strays (one deletion batch) first, then an entry left by a crash: its block was deleted, not its entry
    const strays = await Promise.all(range(256).map(async i => rawBlock(new Uint8Array([8, i]))))
    const gone = await rawBlock(new Uint8Array([8, 1, 1]))
    const { reached: deleting, arrived: inSweep } = signal()
    const { reached: release, arrived: gate } = signal()
    const inner = new MemoryBlockstore()
    let calls = 0
    const blockstore = over(inner, {
      deleteMany: async function * (cids: CID[]) { if (calls++ === 0) { deleting(); await gate } yield * inner.deleteMany(cids) }
    })
    const hub = makeHub({ gcGraceMs: GRACE_MS }, { blockstore })
    for (const b of strays) await inner.put(b.cid, b.bytes)
    const longAgo = Date.now() - 2 * GRACE_MS
    await hub.datastore.put(new Key(`${LANDED_PREFIX}0a.0`), encodeLanded(longAgo, '10.9.9.9', strays.map(b => ({ cid: b.cid, cost: 4096 }))))
    await hub.datastore.put(new Key(`${LANDED_PREFIX}0b.0`), encodeLanded(longAgo, '10.9.9.9', [{ cid: gone.cid, cost: 4096 }]))
    const collection = hub.collectGarbage(Date.now())
    await inSweep
    // while the first batch is deleted, an upload finds the block missing and stores it: acknowledged
    expect((await upload(hub, [gone])).status).toBe(200)
    release()
    expect((await collection).deletedBlocks).toBe(256)
    expect(await has(hub, gone.cid)).toBe(true)
  })

  it('records a held block an upload sent again as landed when the memory of re-sent blocks is full, so a collection still leaves it its grace period', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const space = await makeSpace()
    const binding = space.blocks[2]!
    await hub.blockstore.put(binding.cid, binding.bytes)
    await hub.datastore.put(new Key(`${LANDED_PREFIX}0ld.0`), encodeLanded(Date.now() - 2 * GRACE_MS, '10.9.9.9', [{ cid: binding.cid, cost: 4096 }]))
    // a stranger has re-sent as many held blocks as the hub remembers (re-sending costs nothing)
    const filler = new Uint8Array(32)
    const fill: CID[] = []
    for (let i = 0; i < MAX_TRACKED_UPLOADS; i++) {
      new DataView(filler.buffer).setUint32(0, i)
      fill.push(CID.createV1(raw.code, createMultihash(sha256.code, filler.slice())))
    }
    expect(hub.blocks.storage.touch(fill, Date.now())).toEqual([])
    expect((await upload(hub, space.blocks)).status).toBe(200)
    expect((await hub.collectGarbage(Date.now())).deletedBlocks).toBe(0)
    expect(await has(hub, binding.cid)).toBe(true)
    expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
  }, 30_000)

  it('stores and charges the same bytes sent under two codecs in one upload once', async () => {
    const hub = makeHub({ maxPendingBytesPerClient: 2 * 4096 })
    const x = await cborBlock({ x: 1 })
    const y = await rawBlock(new Uint8Array([8, 8]))
    expect((await upload(hub, [x, { cid: CID.createV1(raw.code, x.cid.multihash), bytes: x.bytes }, y])).status).toBe(200)
    expect((await landedCids(hub))).toHaveLength(2)
  })

  it('keeps a block a kept version references though it landed under another codec first (blocks are kept and deleted by multihash)', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const space = await makeSpace()
    const binding = space.blocks[2]!
    // A stranger lands the binding's bytes as a raw block before the owner's upload arrives…
    const asRaw = { cid: CID.createV1(raw.code, binding.cid.multihash), bytes: binding.bytes }
    expect((await upload(hub, [asRaw])).status).toBe(200)
    // …so the owner's upload finds it held and lands the rest
    expect((await upload(hub, space.blocks)).status).toBe(200)
    expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
    const report = await hub.collectGarbage(Date.now() + GRACE_MS + 1)
    expect(report.deletedBlocks).toBe(0)
    for (const block of space.blocks) expect(await has(hub, block.cid)).toBe(true)
    // and a hub started again on the same stores serves and accepts the space as before
    const again = makeHub({ gcGraceMs: GRACE_MS }, { blockstore: hub.blockstore, datastore: hub.datastore })
    expect((await putRecord(again, space.name, await createRecord(space.key, space.root.cid, 2))).status).toBe(200)
    expect((await again.app.request(`/api/v1/address/${space.address}`)).status).toBe(200)
  })

  it('once it deletes a block, serves it under no codec (its caches are by multihash too)', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const stray = await cborBlock({ stray: 1 })
    // landed as raw, then read (and cached) as the dag-cbor block it also is
    expect((await upload(hub, [{ cid: CID.createV1(raw.code, stray.cid.multihash), bytes: stray.bytes }])).status).toBe(200)
    expect((await hub.app.request(`/ipfs/${stray.cid.toString()}?format=raw`)).status).toBe(200)
    expect((await hub.collectGarbage(Date.now() + GRACE_MS + 1)).deletedBlocks).toBe(1)
    expect((await hub.app.request(`/ipfs/${stray.cid.toString()}?format=raw`)).status).toBe(404)
  })

  it('records the blocks one upload stored in one landed entry; a collection that deletes some keeps it for the rest', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const space = await makeSpace({ privateBytes: 5_000 })          // a bucket that costs more than the 4 KiB minimum
    const strays = [await rawBlock(new Uint8Array([7, 1])), await rawBlock(new Uint8Array([7, 2]))]
    const landedKeys = async (): Promise<string[]> => {
      const keys: string[] = []
      for await (const key of hub.datastore.queryKeys({ prefix: LANDED_PREFIX.slice(0, -1) })) keys.push(key.toString())
      return keys
    }
    // the version's blocks and two strays in one CAR, then the record: one entry for all of them
    expect((await upload(hub, [...space.blocks, ...strays])).status).toBe(200)
    expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
    const [key] = await landedKeys()
    expect(await landedKeys()).toHaveLength(1)
    expect(decodeLanded(key as string, await hub.datastore.get(new Key(key as string))).map(e => e.cid).sort())
      .toEqual([...space.blocks, ...strays].map(b => b.cid.toString()).sort())
    // the strays go; the entry stays, recording the version's blocks only
    const report = await hub.collectGarbage(Date.now() + GRACE_MS + 1)
    expect(report.deletedBlocks).toBe(2)
    for (const stray of strays) expect(await has(hub, stray.cid)).toBe(false)
    expect(await landedKeys()).toEqual([key])
    const left = decodeLanded(key as string, await hub.datastore.get(new Key(key as string)))
    expect(left.map(e => e.cid).sort()).toEqual(space.blocks.map(b => b.cid.toString()).sort())
    // a hub started on the same datastore counts only what is left against its budget
    const restarted = new HubStorage(hub.datastore, {})
    await restarted.ready
    expect(restarted.landedBytes).toBe(space.blocks.reduce((n, b) => n + Math.max(4096, b.bytes.byteLength), 0))
    expect(restarted.landedBytes).toBeGreaterThan(space.blocks.length * 4096)
    // and the entry goes with its last block
    await restarted.forget(left)
    expect(await landedKeys()).toEqual([])
    expect(restarted.landedBytes).toBe(0)
  })

  it('records a block once when several uploads of it arrive at once, and counts it once', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const space = await makeSpace({ privateBytes: 5_000 })
    const results = await Promise.all([1, 2, 3].map(async () => (await upload(hub, space.blocks)).status))
    expect(results).toEqual([200, 200, 200])
    const recorded = await landedCids(hub)
    expect(recorded.sort()).toEqual(space.blocks.map(b => b.cid.toString()).sort())
    const restarted = new HubStorage(hub.datastore, {})
    await restarted.ready
    expect(restarted.landedBytes).toBe(space.blocks.reduce((n, b) => n + Math.max(4096, b.bytes.byteLength), 0))
  })

  it('an upload that waited for another upload of the same blocks stores them itself when that one is refused', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS, maxPendingBytesPerClient: 2 * 4096 })
    const filler = [await rawBlock(new Uint8Array([6, 1])), await rawBlock(new Uint8Array([6, 2]))]
    expect((await hub.app.request('/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: car(filler) as Uint8Array<ArrayBuffer> }, envOf('10.0.0.1'))).status).toBe(200)
    const shared = await rawBlock(new Uint8Array([6, 3]))
    const post = async (ip: string): Promise<number> =>
      (await hub.app.request('/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: car([shared]) as Uint8Array<ArrayBuffer> }, envOf(ip))).status
    // 10.0.0.1 has spent its share and is refused; 10.0.0.2, which waited for it, stores the block.
    expect(await Promise.all([post('10.0.0.1'), post('10.0.0.2')])).toEqual([413, 200])
    expect(await has(hub, shared.cid)).toBe(true)
    const recorded = await landedCids(hub)
    expect(recorded.filter(c => c === shared.cid.toString())).toHaveLength(1)
  })

  it('a block a reader had fetched from the network while an upload of it arrives is recorded once', async () => {
    const stray = await rawBlock(new Uint8Array([6, 4]))
    // The upload's write of the block is held until the reader's fetch has come back with it.
    const { reached: putStarted, arrived: started } = signal()
    const { reached: release, arrived: gate } = signal()
    const inner = new MemoryBlockstore()
    const blockstore = over(inner, {
      put: async (cid: CID, bytes: Uint8Array): Promise<CID> => { putStarted(); await gate; return await inner.put(cid, bytes) }
    })
    const hub = makeHub({ gcGraceMs: GRACE_MS }, {
      blockstore,
      // answers at once, and lets the held write go only after the reader's side has run on
      fetchBlock: async () => { setImmediate(release); return stray.bytes }
    })
    const uploaded = upload(hub, [stray])
    await started
    const got = await hub.app.request(`/ipfs/${stray.cid.toString()}?format=raw`)
    expect([got.status, (await uploaded).status]).toEqual([200, 200])
    const recorded = await landedCids(hub)
    expect(recorded).toEqual([stray.cid.toString()])
  })

  it('an upload of a block a reader\'s fetch is keeping at that moment waits for it, and the block is recorded once', async () => {
    const stray = await rawBlock(new Uint8Array([6, 5]))
    // The fetch's write of the block is held until the upload has arrived.
    const { reached: putStarted, arrived: started } = signal()
    const { reached: release, arrived: gate } = signal()
    const inner = new MemoryBlockstore()
    let puts = 0
    const blockstore = over(inner, {
      put: async (cid: CID, bytes: Uint8Array): Promise<CID> => { if (puts++ === 0) { putStarted(); await gate } return await inner.put(cid, bytes) }
    })
    const hub = makeHub({ gcGraceMs: GRACE_MS }, { blockstore, fetchBlock: async () => stray.bytes })
    const got = hub.app.request(`/ipfs/${stray.cid.toString()}?format=raw`)
    await started
    const uploaded = upload(hub, [stray])
    setImmediate(release)
    expect([(await got).status, (await uploaded).status]).toEqual([200, 200])
    expect(puts).toBe(1)
    expect(await landedCids(hub)).toEqual([stray.cid.toString()])
  })

  it('an upload that waited for another whose blocks could not be synced stores, syncs and records them itself', async () => {
    const block = await rawBlock(new Uint8Array([6, 5]))
    const { reached: putStarted, arrived: started } = signal()
    const { reached: release, arrived: gate } = signal()
    const inner = new MemoryBlockstore()
    const blockstore = over(inner, {
      put: async (cid: CID, bytes: Uint8Array): Promise<CID> => { putStarted(); await gate; return await inner.put(cid, bytes) }
    })
    const synced: string[] = []
    let syncs = 0
    const hub = makeHub({ gcGraceMs: GRACE_MS }, {
      blockstore,
      syncBlocks: async (cids: CID[]) => {
        if (cids.length > 0 && syncs++ === 0) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })
        synced.push(...cids.map(c => c.toString()))
      }
    })
    const post = async (ip: string): Promise<number> =>
      (await hub.app.request('/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: car([block]) as Uint8Array<ArrayBuffer> }, envOf(ip))).status
    const first = post('10.0.0.1')
    await started
    const second = post('10.0.0.2')       // finds the block being stored by the first, and waits
    await new Promise(resolve => setImmediate(resolve))
    release()
    expect(await first).toBeGreaterThanOrEqual(500)
    expect(await second).toBe(200)
    expect(await inner.has(block.cid)).toBe(true)
    expect(synced).toEqual([block.cid.toString()])
    const recorded = await landedCids(hub)
    expect(recorded).toEqual([block.cid.toString()])
  })

  it('a retried upload of blocks another upload has put but not yet synced waits for it, and stores them when that sync fails', async () => {
    const space = await makeSpace()
    const { reached: syncStarted, arrived: started } = signal()
    const { reached: release, arrived: gate } = signal()
    let syncs = 0
    const hub = makeHub({ gcGraceMs: GRACE_MS }, {
      syncBlocks: async () => {
        if (syncs++ > 0) return
        syncStarted()
        await gate
        throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })
      }
    })
    const first = upload(hub, space.blocks)
    await started                                  // the first upload's blocks are put, its sync hangs
    const retry = upload(hub, space.blocks)
    await new Promise(resolve => setImmediate(resolve))
    release()
    expect((await first).status).toBeGreaterThanOrEqual(500)
    expect((await retry).status).toBe(200)
    for (const block of space.blocks) expect(await has(hub, block.cid)).toBe(true)
    expect(syncs).toBe(2)
  })

  it('an upload of blocks the hub holds writes nothing: no reservation, no sync, no record', async () => {
    const synced: CID[][] = []
    const hub = makeHub({}, { syncBlocks: async (cids: CID[]) => { synced.push(cids) } })
    const block = await rawBlock(new Uint8Array([5, 11]))
    expect((await upload(hub, [block])).status).toBe(200)
    expect((await upload(hub, [block])).status).toBe(200)
    expect(synced).toHaveLength(1)
  })

  it('a block fetched for a reader is not kept while uploads in progress hold the rest of the budget', async () => {
    const uploaded = await rawBlock(new Uint8Array([5, 12]))
    const fetched = await rawBlock(new Uint8Array([5, 13]))
    const { reached: putStarted, arrived: started } = signal()
    const { reached: release, arrived: gate } = signal()
    const inner = new MemoryBlockstore()
    const blockstore = over(inner, {
      put: async (cid: CID, bytes: Uint8Array): Promise<CID> => { if (cid.equals(uploaded.cid)) { putStarted(); await gate } return await inner.put(cid, bytes) }
    })
    const hub = makeHub({ maxStorageBytes: 2 * 4096 - 1 }, { blockstore, fetchBlock: async () => fetched.bytes })
    const up = upload(hub, [uploaded])
    await started                                  // its 4 KiB are reserved
    expect((await hub.app.request(`/ipfs/${fetched.cid.toString()}?format=raw`)).status).toBe(200)
    expect(await inner.has(fetched.cid)).toBe(false)
    release()
    expect((await up).status).toBe(200)
  })

  it('forgets the second record of a block recorded twice and keeps the block, so a restart counts it once', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const space = await makeSpace()
    await publish(hub, space)
    const block = space.blocks[0] as { cid: CID, bytes: Uint8Array }
    await hub.datastore.put(new Key(`${LANDED_PREFIX}feedfeedfeed.0`), encodeLanded(Date.now(), '127.0.0.1', [{ cid: block.cid, cost: 4096 }]))
    const twice = new HubStorage(hub.datastore, {})
    await twice.ready
    await hub.collectGarbage(Date.now() + GRACE_MS + 1)
    expect(await has(hub, block.cid)).toBe(true)
    const once = new HubStorage(hub.datastore, {})
    await once.ready
    expect(once.landedBytes).toBe(twice.landedBytes - 4096)
  })

  it('keeps the newest of two records of an unreferenced block, so its grace runs from when it last landed', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const now = Date.now()
    for (const [older, newer] of [['aaaa.0', 'zzzz.0'], ['zzzz.1', 'aaaa.1']]) {
      const stray = await rawBlock(new TextEncoder().encode(`stray ${older}`))
      await hub.blockstore.put(stray.cid, stray.bytes)
      await hub.datastore.put(new Key(LANDED_PREFIX + older), encodeLanded(now - 3 * GRACE_MS, '127.0.0.1', [{ cid: stray.cid, cost: 4096 }]))
      await hub.datastore.put(new Key(LANDED_PREFIX + newer), encodeLanded(now, '127.0.0.1', [{ cid: stray.cid, cost: 4096 }]))
      const report = await hub.collectGarbage(now + 1)
      expect(report.deletedBlocks).toBe(0)
      expect(await has(hub, stray.cid)).toBe(true)
      expect(await hub.datastore.has(new Key(LANDED_PREFIX + older))).toBe(false)
      expect(await hub.datastore.has(new Key(LANDED_PREFIX + newer))).toBe(true)
    }
  })

  it('a landed entry that cannot be read fails the collection and stays; a damaged time counts as long past', async () => {
    const datastore = new MemoryDatastore()
    const storage = new HubStorage(datastore, {})
    const a = await rawBlock(new Uint8Array([9, 1]))
    await storage.landed('127.0.0.1', [{ cid: a.cid, size: 2 }], Date.now())
    const entries: Landed[] = []
    for await (const entry of storage.entries()) entries.push(entry)
    const get = datastore.get.bind(datastore)
    datastore.get = async () => { throw Object.assign(new Error('EIO: i/o error'), { name: 'Error' }) }
    await expect(storage.forget(entries)).rejects.toThrow('EIO')
    datastore.get = get
    const keys: string[] = []
    for await (const key of datastore.queryKeys({ prefix: LANDED_PREFIX.slice(0, -1) })) keys.push(key.toString())
    expect(keys).toHaveLength(1)
    expect(decodeLanded(`${LANDED_PREFIX}${a.cid.toString()}`, new TextEncoder().encode('not-a-time 4096 127.0.0.1'))[0]?.atMs).toBe(0)
    expect(decodeLanded(`${LANDED_PREFIX}${a.cid.toString()}`, new TextEncoder().encode('1 not-a-cost 127.0.0.1'))[0]?.costBytes).toBe(4096)
    // a batch cut short in its last CID still yields the blocks before it
    const b = await rawBlock(new Uint8Array([9, 2]))
    const batch = encodeLanded(1, '127.0.0.1', [{ cid: a.cid, cost: 4096 }, { cid: b.cid, cost: 5000 }])
    expect(decodeLanded(`${LANDED_PREFIX}x.0`, batch.subarray(0, batch.byteLength - 3)).map(e => [e.cid, e.costBytes])).toEqual([[a.cid.toString(), 4096]])
    expect(decodeLanded(`${LANDED_PREFIX}x.0`, batch).map(e => e.costBytes)).toEqual([4096, 5000])
  })

  it('reads and collects landed entries of the earlier form (one per block)', async () => {
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const stray = await rawBlock(new Uint8Array([7, 3]))
    await hub.blockstore.put(stray.cid, stray.bytes)
    await hub.datastore.put(new Key(LANDED_PREFIX + stray.cid.toString()), new TextEncoder().encode(`${Date.now()} 4096 127.0.0.1`))
    const report = await hub.collectGarbage(Date.now() + GRACE_MS + 1)
    expect(report.deletedBlocks).toBe(1)
    expect(await has(hub, stray.cid)).toBe(false)
    expect(await hub.datastore.has(new Key(LANDED_PREFIX + stray.cid.toString()))).toBe(false)
  })

  it('never deletes blocks the API did not land (another app on the same blockstore)', async () => {
    const hub = makeHub({ gcGraceMs: 0 })
    const foreign = await rawBlock(new Uint8Array([8, 8]))
    await hub.blockstore.put(foreign.cid, foreign.bytes)
    await hub.collectGarbage(Date.now() + 1)
    expect(await has(hub, foreign.cid)).toBe(true)
  })
})

describe('CIDs of megabytes in a stranger\'s blocks', () => {
  it('refuses an upload whose block is named by a CID of 4 MiB (an identity hash) with a short message (400)', async () => {
    // Its text took ~1.4 s to write into the message, which made an answer of 6.7 MB.
    const hub = makeHub()
    const cid = CID.createV1(raw.code, identity.digest(new Uint8Array(4 * 1024 * 1024).fill(3)))
    const res = await upload(hub, [{ cid, bytes: new Uint8Array([1]) }])
    expect(res.status).toBe(400)
    const body = await res.json() as { name: string, message: string }
    expect(body.name).toBe('InvalidInputError')
    expect(body.message).toBe('block <CID of 4194311 bytes, multihash 0x0> is not hashed with sha2-256')
  })

  it('answers a CAR whose DAG links a missing block named by 512 KiB with a 404 that names it by its length', async () => {
    // Every block the plan read was labelled with its CID's text, written before the read: ~0.3 s a MiB.
    // And the blockstore, which writes a CID's multihash out in base32 to look it up, is never asked
    // for a CID whose digest is over 64 bytes: no hash makes one.
    const blockstore = new MemoryBlockstore()
    const asked: number[] = []
    const get = blockstore.get.bind(blockstore)
    blockstore.get = ((cid: CID, options?: unknown) => { asked.push(cid.bytes.length); return get(cid, options as never) }) as typeof blockstore.get
    const hub = makeHub({}, { blockstore })
    const long = CID.createV1(dagCbor.code, createMultihash(sha256.code, new Uint8Array(512 * 1024).fill(4)))
    const root = await cborBlock({ link: long })
    expect((await upload(hub, [root])).status).toBe(200)
    const res = await carOf(hub, root.cid)
    expect(res.status).toBe(404)
    expect(await res.json()).toMatchObject({ name: 'NotFoundError', message: 'block <CID of 524294 bytes, multihash 0x12> not found on this hub' })
    expect(asked.length).toBeGreaterThan(0)
    expect(asked.filter(n => n > 64)).toEqual([])
  })

  it('serves a path through an identity CID of 600 KiB without putting it in X-Ipfs-Roots', async () => {
    const hub = makeHub()
    const inline = CID.createV1(dagCbor.code, identity.digest(dagCbor.encode({ pad: new Uint8Array(600 * 1024).fill(2) })))
    const root = await cborBlock({ a: inline })
    expect((await upload(hub, [root])).status).toBe(200)
    for (const method of ['GET', 'HEAD']) {
      const res = await hub.app.request(`/ipfs/${root.cid.toString()}/a?format=car`, { method, headers: { accept: 'application/vnd.ipld.car' } })
      expect(res.status).toBe(200)
      expect(res.headers.get('x-ipfs-roots')).toBeNull()
      await res.body?.cancel()
    }
    // a path through ordinary blocks still names them
    const leaf = await cborBlock({ b: 1 })
    const parent = await cborBlock({ a: leaf.cid })
    expect((await upload(hub, [parent, leaf])).status).toBe(200)
    const res = await hub.app.request(`/ipfs/${parent.cid.toString()}/a?format=car`, { headers: { accept: 'application/vnd.ipld.car' } })
    expect(res.headers.get('x-ipfs-roots')).toBe(`${parent.cid.toString()},${leaf.cid.toString()}`)
    await res.body?.cancel()
  })

  it('accepts, walks and collects around a link to a CID of 512 KiB (an identity hash), keyed without a call per byte', async () => {
    // Any IPNS record is welcome: a stranger's root may link any CID. Keyed by spreading its 512 Ki
    // bytes over one call's arguments, the PUT failed with a RangeError (500) and so did every
    // collection after it.
    const hub = makeHub({ gcGraceMs: GRACE_MS })
    const long = CID.createV1(dagCbor.code, identity.digest(new Uint8Array(512 * 1024).fill(1)))
    // once as an upload and a record PUT, once in one publish request (its blocks staged by CID)
    const [a, b] = [await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519')]
    const rootA = await cborBlock({ note: 'not a space', link: long })
    const rootB = await cborBlock({ note: 'not a space either', link: long })
    expect((await upload(hub, [rootA])).status).toBe(200)
    expect((await putRecord(hub, nameOfKey(a), await createRecord(a, rootA.cid, 1))).status).toBe(200)
    const record = await createRecord(b, rootB.cid, 1)
    const recordBlock = { cid: CID.createV1(IPNS_RECORD_CODEC, await sha256.digest(record)), bytes: record }
    const published = await hub.app.request(publishPath(nameOfKey(b)), { method: 'POST', headers: { 'content-type': CAR_TYPE }, body: encodeCar([recordBlock, rootB], [recordBlock.cid]) })
    expect(published.status).toBe(200)
    const report = await hub.collectGarbage(Date.now() + GRACE_MS + 1)
    expect(report.names).toBe(2)
    expect(report.deletedBlocks).toBe(0)
    expect(await has(hub, rootA.cid)).toBe(true)
    expect(await has(hub, rootB.cid)).toBe(true)
  })
})

describe('dated address bindings', () => {
  it('keeps the version 1 statement byte for byte and dates version 2', () => {
    const address = '0x' + 'ab'.repeat(20)
    expect(ownerStatement(address, 'k51x')).toBe(`UserSpace owner binding\n\nI, ${address}, own the UserSpace published under the IPNS name k51x.\n\nVersion: 1`)
    const v2 = ownerStatement(address, 'k51x', Date.UTC(2026, 0, 2))
    expect(v2).toMatch(/replacing any binding signed before the date below/)
    expect(v2).toMatch(/Issued at: 2026-01-02T00:00:00.000Z\nVersion: 2$/)
  })

  it('lets a later dated binding take an address back from a space it was tricked into binding; an earlier one cannot', async () => {
    const hub = makeHub()
    const walletKey = generatePrivateKey()
    const lookup = async (address: string): Promise<unknown> => (await (await hub.app.request(`/api/v1/address/${address}`)).json() as { name: unknown }).name
    // The attacker's space carries the victim's (phished) version 1 binding.
    const attacker = await makeSpace({ walletKey })
    await publish(hub, attacker)
    expect(await lookup(attacker.address)).toBe(attacker.name)
    const real = await makeSpace({ walletKey, issuedAt: Date.now() - 1_000 })
    await publish(hub, real)
    expect(await lookup(real.address)).toBe(real.name)
    // A phished binding dated before the real one does not win it back.
    const phished = await makeSpace({ key: attacker.key, walletKey, issuedAt: Date.now() - 60_000, sequence: 2 })
    await publish(hub, phished, 2)
    expect(await lookup(real.address)).toBe(real.name)
    // An undated (version 1) binding never replaces a dated one.
    const undated = await makeSpace({ walletKey })
    await publish(hub, undated)
    expect(await lookup(real.address)).toBe(real.name)
  })

  it('refuses a binding dated in the future (400), which would outrank every later one', async () => {
    const hub = makeHub()
    const space = await makeSpace({ issuedAt: Date.now() + 24 * 3600_000 })
    expect((await upload(hub, space.blocks)).status).toBe(200)
    await expectRefusal(await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1)), 400, 'InvalidInputError')
  })

  it('refuses a dated binding whose date was changed after signing', async () => {
    const space = await makeSpace({ issuedAt: 1_700_000_000_000 })
    const owner = decodeOwner(space.blocks[2]!.bytes)
    expect(verifyOwner(owner, space.name)).toBe(space.address)
    expect(() => verifyOwner({ ...owner, issuedAt: 1_700_000_000_001 }, space.name)).toThrow(expect.objectContaining({ name: 'SignerMismatchError' }))
  })
})

describe('guards that a single deleted line would open', () => {
  it('never serves a file outside demoDir, however the path is encoded', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userspace-static-'))
    try {
      await mkdir(join(dir, 'demo'))
      await writeFile(join(dir, 'demo', 'index.html'), '<!doctype html><title>demo</title>')
      await writeFile(join(dir, 'secret.txt'), 'TOP SECRET')
      const hub = makeHub({ demoDir: join(dir, 'demo') })
      for (const path of ['/..%2fsecret.txt', '/..%2F..%2F' + dir.slice(1).replaceAll('/', '%2F') + '%2Fsecret.txt', '/%2e%2e%2fsecret.txt', '/..%5csecret.txt']) {
        const res = await hub.app.request(path)
        expect(res.status, path).toBe(404)
        expect(await res.text()).not.toMatch(/TOP SECRET/)
      }
      expect(await (await hub.app.request('/')).text()).toMatch(/<title>demo/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('rate-limits by socket address, never by a forged X-Forwarded-For', async () => {
    const hub = makeHub({ rateLimit: { requestsPerSecond: 0.001, burst: 2 } })
    const path = `/api/v1/address/0x${'33'.repeat(20)}`
    const ask = async (forwarded: string): Promise<Response> => hub.app.request(path, { headers: { 'x-forwarded-for': forwarded, 'x-real-ip': forwarded } }, envOf('10.9.9.9'))
    expect((await ask('1.1.1.1')).status).toBe(404)
    expect((await ask('2.2.2.2')).status).toBe(404)
    await expectRefusal(await ask('3.3.3.3'), 429, 'RateLimitError')
  })

  it('turns running out of file descriptors into a 503 with Retry-After, not a 500', async () => {
    const hub = makeHub({}, {
      blockstore: Object.assign(new MemoryBlockstore(), {
        put: async () => { throw Object.assign(new Error('EMFILE: too many open files, open \'/x\''), { code: 'EMFILE' }) }
      })
    })
    const res = await upload(hub, [await rawBlock(new Uint8Array([1]))])
    expect(res.headers.get('retry-after')).toBe('1')
    await expectRefusal(res, 503, 'UnavailableError')
  })
})

describe('durable writes', () => {
  it('fsyncs uploaded blocks before the 200', async () => {
    const synced: string[] = []
    const hub = makeHub({}, { syncBlocks: async (cids) => { synced.push(...cids.map(String)) } })
    const block = await rawBlock(new Uint8Array([4, 4]))
    expect((await upload(hub, [block])).status).toBe(200)
    expect(synced).toEqual([block.cid.toString()])
  })

  it('puts blocks to LevelDB with sync: true when asked, and without otherwise', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userspace-fsync-'))
    try {
      for (const sync of [true, false]) {
        const store = new DiskBlockstore(join(dir, String(sync)), sync)
        await store.open()
        const calls: unknown[] = []
        const put = store.db.put.bind(store.db)
        ;(store.db as unknown as { put: unknown }).put = async (key: unknown, value: unknown, options: unknown) => { calls.push(options); return put(key as never, value as never, options as never) }
        const block = await rawBlock(new Uint8Array([6]))
        await store.put(block.cid, block.bytes)
        expect(calls.map(c => (c as { sync?: boolean } | undefined)?.sync === true)).toEqual([sync])
        expect(await bytesOf(store, block.cid)).toEqual(Buffer.from(block.bytes))
        await store.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('moves the blocks an earlier version kept as files into LevelDB, drops files that are not their block, then removes the folder', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userspace-move-'))
    try {
      const legacy = new FsBlockstore(join(dir, 'blocks'))
      await legacy.open()
      const blocks = await Promise.all([new Uint8Array([1]), new Uint8Array(300 * 1024).fill(9), new Uint8Array([2, 3])].map(rawBlock))
      const tree = await cborBlock([blocks[0]!.cid])
      const torn = await rawBlock(new Uint8Array(5000).fill(4))
      for (const b of [...blocks, tree, torn]) await legacy.put(b.cid, b.bytes)
      await legacy.close()
      // a power cut after blockstore-fs's rename: the file is there, its bytes are not all written
      const { dir: shard, file } = new NextToLast().encode(torn.cid)
      await writeFile(join(dir, 'blocks', shard, file), new Uint8Array(1000).fill(4))
      // a temporary file left mid-write, and a name that is no multihash
      await writeFile(join(dir, 'blocks', shard, `.${file}.tmp`), new Uint8Array([1]))
      await writeFile(join(dir, 'blocks', shard, 'NOTAHASH.data'), new Uint8Array([1]))
      // over the block limit: not read at all
      const huge = await rawBlock(new Uint8Array(MAX_BLOCK_BYTES + 1).fill(5))
      const hugeAt = new NextToLast().encode(huge.cid)
      await mkdir(join(dir, 'blocks', hugeAt.dir), { recursive: true })
      await writeFile(join(dir, 'blocks', hugeAt.dir, hugeAt.file), huge.bytes)
      const moves: LegacyMove[] = []
      const starts: string[] = []
      const store = await openDiskBlockstore(dir, { sync: false, onMove: m => { moves.push(m) }, onMoveStart: from => { starts.push(from) } })
      try {
        expect(starts).toEqual(['files'])
        expect(moves).toEqual([{ from: 'files', moved: 4, skipped: 4 }])
        for (const b of [...blocks, tree]) {
          expect(await bytesOf(store, b.cid)).toEqual(Buffer.from(b.bytes))
        }
        expect(await store.has(torn.cid)).toBe(false)
        expect(await store.has(huge.cid)).toBe(false)
        await expect(stat(join(dir, 'blocks'))).rejects.toMatchObject({ code: 'ENOENT' })
      } finally {
        await store.close()
      }
      // opened again: nothing left to move, everything still there
      const again = await openDiskBlockstore(dir, { sync: false, onMove: m => { moves.push(m) } })
      expect(await again.has(tree.cid)).toBe(true)
      expect(moves).toHaveLength(1)
      await again.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('rekeys blocks kept under text keys (base64url or base32) to binary ones, in synced batches, and leaves keys that name no multihash as they are', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userspace-rekey-'))
    try {
      // the previous layout: `/` and the base64url multibase of the multihash
      const old = new Level<string, Uint8Array>(join(dir, 'blockstore'), { keyEncoding: 'utf8', valueEncoding: 'view' })
      const blocks = await Promise.all(Array.from({ length: 300 }, async (_, i) => rawBlock(new Uint8Array([i & 255, i >> 8, 7]))))
      const tree = await cborBlock([blocks[0]!.cid])
      for (const b of blocks) await old.put(`/${base64url.encode(b.cid.multihash.bytes)}`, b.bytes)
      // blockstore-level's own default, base32 upper case
      await old.put(`/${base32upper.encode(tree.cid.multihash.bytes)}`, tree.bytes)
      await old.put('/unot-a-multihash', new Uint8Array([1]))
      await old.put('/\u00ff', new Uint8Array([1]))
      await old.close()
      const moves: LegacyMove[] = []
      const syncs: unknown[] = []
      const batch = Level.prototype.batch
      const spy = vi.spyOn(Level.prototype, 'batch').mockImplementation(function (this: Level, ...args: unknown[]) {
        syncs.push((args[1] as { sync?: boolean } | undefined)?.sync)
        return (batch as (...a: unknown[]) => unknown).apply(this, args)
      } as never)
      const starts: string[] = []
      let store
      try {
        store = await openDiskBlockstore(dir, { sync: false, onMove: m => { moves.push(m) }, onMoveStart: from => { starts.push(from) } })
      } finally {
        spy.mockRestore()
      }
      try {
        expect(starts).toEqual(['text keys'])
        expect(moves).toEqual([{ from: 'text keys', moved: 301, skipped: 2 }])
        expect(syncs).toEqual([true, true])
        for (const b of [...blocks, tree]) {
          expect(await bytesOf(store, b.cid)).toEqual(Buffer.from(b.bytes))
        }
        const keys: Uint8Array[] = []
        for await (const key of store.db.keys()) keys.push(key)
        expect(keys).toHaveLength(303)
        expect(keys.filter(k => k.length === 34 && k[0] === 0x12)).toHaveLength(301)
        // the two that name no multihash are left as they are
        expect(keys.filter(k => k[0] === 0x2f).map(k => new TextDecoder().decode(k)).sort()).toEqual(['/unot-a-multihash', '/\u00ff'])
        const all: string[] = []
        for await (const { cid } of store.getAll()) all.push(cid.multihash.toString())
        expect(all.sort()).toEqual([...blocks, tree].map(b => b.cid.multihash.toString()).sort())
      } finally {
        await store.close()
      }
      // opened again: nothing more to move
      const again = await openDiskBlockstore(dir, { sync: false, onMove: m => { moves.push(m) }, onMoveStart: from => { starts.push(from) } })
      expect(await again.has(tree.cid)).toBe(true)
      expect(moves.slice(1)).toEqual([{ from: 'text keys', moved: 0, skipped: 2 }])
      expect(starts).toEqual(['text keys'])
      await again.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('puts and deletes blocks in batches, with sync: true when asked', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userspace-del-'))
    const store = new DiskBlockstore(join(dir, 'b'), true)
    try {
      await store.open()
      const calls: string[] = []
      for (const method of ['del', 'batch'] as const) {
        const original = (store.db as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!.bind(store.db)
        ;(store.db as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => { calls.push(`${method} ${String((args[args.length - 1] as { sync?: boolean } | undefined)?.sync)}`); return original(...args) }
      }
      const blocks = await Promise.all(Array.from({ length: 300 }, async (_, i) => rawBlock(new Uint8Array([i & 255, i >> 8]))))
      const put: string[] = []
      for await (const cid of store.putMany(blocks.map(b => ({ cid: b.cid, bytes: b.bytes })))) put.push(cid.toString())
      expect(put).toEqual(blocks.map(b => b.cid.toString()))
      expect(calls).toEqual(['batch true', 'batch true'])
      for (const b of blocks) expect(await store.has(b.cid)).toBe(true)
      calls.length = 0
      await store.delete(blocks[0]!.cid)
      const deleted: string[] = []
      for await (const cid of store.deleteMany(blocks.slice(1).map(b => b.cid))) deleted.push(cid.toString())
      expect(deleted).toEqual(blocks.slice(1).map(b => b.cid.toString()))
      expect(calls).toEqual(['del true', 'batch true', 'batch true'])
      for (const b of blocks) expect(await store.has(b.cid)).toBe(false)
    } finally {
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('writes records and bindings to LevelDB with sync: true', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'userspace-level-'))
    const datastore = new LevelDatastore(join(dir, 'ds'))
    try {
      await datastore.open()
      const calls: unknown[] = []
      const batch = datastore.db.batch.bind(datastore.db)
      ;(datastore.db as unknown as { batch: unknown }).batch = async (ops: unknown, options: unknown) => { calls.push(options); return batch(ops as never, options as never) }
      await putDurably(datastore, [['/a', new Uint8Array([1])]])
      expect(calls).toEqual([{ sync: true }])
      const app = createHubApp({ blockstore: new MemoryBlockstore(), datastore }, { rateLimit: 0 })
      const space = await makeSpace()
      await publish({ app } as unknown as Hub, space)
      expect(calls.length).toBeGreaterThan(1)
      expect(calls.every(c => (c as { sync?: boolean }).sync === true)).toBe(true)
    } finally {
      await datastore.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('the default rate limit and honest use', () => {
  it('lets a cold open of a space of 4 096 keys in 256 buckets through a hub with default settings', async () => {
    const blockstore = new MemoryBlockstore()
    const datastore = new (await import('datastore-core')).MemoryDatastore()
    const writer = createHubApp({ blockstore, datastore }, { rateLimit: 0 })
    // The same stores behind the default limits, reached from one client address.
    const reader = createHubApp({ blockstore, datastore })
    const storeOf = (app: typeof writer): ReturnType<typeof hubStore> => hubStore('http://hub.test', { fetch: async (input, init) => app.request(String(input), init, envOf('10.1.1.1')) })
    const signer = privateKeyToAccount(generatePrivateKey())
    const entries: Record<string, string> = {}
    for (let i = 0; i < 4_096; i++) entries[`key-${i}`] = 'v'.repeat(1_000)
    const space = await openSpace({ signer, store: storeOf(writer) })
    await space.patch(entries)
    await space.close()
    const again = await openSpace({ signer, store: storeOf(reader) })
    try {
      expect(Object.keys(await again.getAll())).toHaveLength(4_096)
    } finally {
      await again.close()
    }
  }, 120_000)
})

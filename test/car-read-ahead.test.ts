/**
 * The gateway's CAR body reads blocks ahead of the client, a bounded window at a time: a client that
 * reads slowly (or not at all) holds at most that window in memory, and a block that disappears
 * mid-stream still ends the CAR with an error rather than a silent gap.
 */
import { MemoryBlockstore } from 'blockstore-core'
import { describe, expect, it } from 'vitest'
import { cborBlock, encodeCar, rawBlock } from '../src/store/blocks.js'
import { BLOCKS_PATH, CAR_TYPE } from '../src/protocol.js'
import { makeHub } from './helpers/hub-app.js'
import type { Hub } from './helpers/hub-app.js'
import type { Block } from '../src/store/interface.js'
import type { CID } from 'multiformats/cid'

/** A memory blockstore that counts reads. */
class CountingBlockstore extends MemoryBlockstore {
  reads = 0
  override async * get (cid: CID, options?: Parameters<MemoryBlockstore['get']>[1]): ReturnType<MemoryBlockstore['get']> {
    this.reads++
    yield * super.get(cid, options)
  }
}

/** A memory blockstore whose reads take a few milliseconds, as a disk's do, counting how many overlap. */
class SlowBlockstore extends MemoryBlockstore {
  inFlight = 0
  maxInFlight = 0
  override async * get (cid: CID, options?: Parameters<MemoryBlockstore['get']>[1]): ReturnType<MemoryBlockstore['get']> {
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    try {
      await new Promise<void>((resolve) => { setTimeout(resolve, 2) })
      yield * super.get(cid, options)
    } finally {
      this.inFlight--
    }
  }
}

/** 100 raw leaves of 70 KB (over the size the hub keeps in memory) under one dag-cbor root. */
async function bigDag (): Promise<{ root: Block, leaves: Block[] }> {
  const leaves = await Promise.all(Array.from({ length: 100 }, async (_, i) => rawBlock(new Uint8Array(70_000).fill(i))))
  const root = await cborBlock({ leaves: leaves.map(l => l.cid) })
  return { root, leaves }
}

/** Uploads `blocks` in CARs of 10 (under the per-request body cap). */
async function upload (hub: Hub, blocks: Block[]): Promise<void> {
  for (let i = 0; i < blocks.length; i += 10) {
    const res = await hub.app.request(BLOCKS_PATH, { method: 'POST', headers: { 'content-type': CAR_TYPE }, body: encodeCar(blocks.slice(i, i + 10)) })
    expect(res.status).toBeLessThan(300)
  }
}

describe('CAR responses read ahead of the client, within a window', () => {
  it('reads at most 32 blocks ahead of a client that has taken only the header, and sends every block once it reads on', async () => {
    const blockstore = new CountingBlockstore()
    const hub = makeHub({}, { blockstore })
    const { root, leaves } = await bigDag()
    await upload(hub, [root, ...leaves])
    // A hub restarted: nothing in its memory caches.
    const fresh = makeHub({}, { blockstore })
    blockstore.reads = 0
    const res = await fresh.app.request(`/ipfs/${root.cid.toString()}?format=car&dag-scope=all`)
    expect(res.status).toBe(200)
    const planned = blockstore.reads // the plan read the root and sized the leaves
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    await reader.read() // the header
    await new Promise<void>((resolve) => { setImmediate(resolve) })
    await new Promise<void>((resolve) => { setTimeout(resolve, 50) })
    expect(blockstore.reads - planned).toBeLessThanOrEqual(32)
    let bytes = 0
    for (;;) { const { done, value } = await reader.read(); if (done) break; bytes += value.byteLength }
    expect(bytes).toBeGreaterThan(100 * 70_000)
  })

  it('plans a CAR with up to 16 reads in flight, never more, and still plans every block of the DAG', async () => {
    const blockstore = new SlowBlockstore()
    const hub = makeHub({}, { blockstore })
    const { root, leaves } = await bigDag()
    // two levels, so that blocks that link are read ahead too, not only leaves sized
    const mid = await Promise.all([0, 1, 2, 3].map(async i => cborBlock({ leaves: leaves.slice(i * 25, i * 25 + 25).map(l => l.cid) })))
    const top = await cborBlock({ mid: mid.map(b => b.cid) })
    await upload(hub, [top, ...mid, ...leaves, root])
    const fresh = makeHub({}, { blockstore })
    blockstore.maxInFlight = 0
    const res = await fresh.app.request(`/ipfs/${top.cid.toString()}?format=car&dag-scope=all`, { method: 'HEAD' })
    expect(res.status).toBe(200)
    expect(Number(res.headers.get('content-length'))).toBeGreaterThan(100 * 70_000)
    expect(blockstore.maxInFlight).toBeGreaterThan(1)
    expect(blockstore.maxInFlight).toBeLessThanOrEqual(16)
    const dups = await fresh.app.request(`/ipfs/${top.cid.toString()}?format=car&dag-scope=all&dups=n`)
    const { CarReader } = await import('@ipld/car/reader')
    const car = await CarReader.fromBytes(new Uint8Array(await dups.arrayBuffer()))
    const got: string[] = []
    for await (const b of car.blocks()) got.push(b.cid.toString())
    expect(got).toEqual([top, mid[0], ...leaves.slice(0, 25), mid[1], ...leaves.slice(25, 50), mid[2], ...leaves.slice(50, 75), mid[3], ...leaves.slice(75)].map(b => (b as Block).cid.toString()))
  })

  it('ends the CAR with an error when a planned block is gone before it is sent', async () => {
    const blockstore = new CountingBlockstore()
    const hub = makeHub({}, { blockstore })
    const { root, leaves } = await bigDag()
    await upload(hub, [root, ...leaves])
    const fresh = makeHub({}, { blockstore })
    const res = await fresh.app.request(`/ipfs/${root.cid.toString()}?format=car&dag-scope=all`)
    expect(res.status).toBe(200)
    await blockstore.delete((leaves[80] as Block).cid)
    await expect(res.arrayBuffer()).rejects.toMatchObject({ name: 'NotFoundError' })
  })

  it('joins the frames of blocks already read into chunks (not a write per block), and on a block gone mid-stream sends the frames before it, then the error', async () => {
    const hub = makeHub()
    const leaves = await Promise.all(Array.from({ length: 600 }, async (_, i) => rawBlock(new TextEncoder().encode(`leaf ${i}`))))
    const root = await cborBlock({ leaves: leaves.map(l => l.cid) })
    await upload(hub, [root, ...leaves].slice(0, 1))
    for (let i = 0; i < leaves.length; i += 200) {
      const res = await hub.app.request(BLOCKS_PATH, { method: 'POST', headers: { 'content-type': CAR_TYPE }, body: encodeCar(leaves.slice(i, i + 200)) })
      expect(res.status).toBeLessThan(300)
    }
    const res = await hub.app.request(`/ipfs/${root.cid.toString()}?format=car&dag-scope=all`)
    expect(res.status).toBe(200)
    const chunks: Uint8Array[] = []
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    for (;;) { const { done, value } = await reader.read(); if (done) break; chunks.push(value) }
    // 601 blocks: one frame per chunk would be 602 chunks with the header
    expect(chunks.length).toBeLessThan(601 / 8)
    const { CarBufferReader } = await import('@ipld/car/buffer-reader')
    const body = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0))
    let at = 0
    for (const c of chunks) { body.set(c, at); at += c.byteLength }
    expect([...CarBufferReader.fromBytes(body).blocks()].map(b => b.cid.toString())).toEqual([root, ...leaves].map(b => b.cid.toString()))

    // A leaf deleted after the plan (a big one: small blocks stay in the hub's memory once planned):
    // every frame before it arrives, then the stream fails.
    const big = await rawBlock(new Uint8Array(70_000).fill(7))
    const mixed = [...leaves.slice(0, 300), big, ...leaves.slice(300)]
    const mixedRoot = await cborBlock({ leaves: mixed.map(l => l.cid) })
    const blockstore = new CountingBlockstore()
    const second = makeHub({}, { blockstore })
    await upload(second, [mixedRoot, big])
    for (let i = 0; i < leaves.length; i += 200) {
      await second.app.request(BLOCKS_PATH, { method: 'POST', headers: { 'content-type': CAR_TYPE }, body: encodeCar(leaves.slice(i, i + 200)) })
    }
    const fresh = makeHub({}, { blockstore })
    const partial = await fresh.app.request(`/ipfs/${mixedRoot.cid.toString()}?format=car&dag-scope=all`)
    expect(partial.status).toBe(200)
    await blockstore.delete(big.cid)
    const got: Uint8Array[] = []
    const partialReader = (partial.body as ReadableStream<Uint8Array>).getReader()
    await expect((async () => { for (;;) { const { done, value } = await partialReader.read(); if (done) return; got.push(value) } })()).rejects.toMatchObject({ name: 'NotFoundError' })
    const { CarBlockIterator } = await import('@ipld/car/iterator')
    const received: string[] = []
    // whole frames only: the body stops at a frame's end, right before the block that is gone
    for await (const b of await CarBlockIterator.fromIterable((async function * () { yield * got })())) received.push(b.cid.toString())
    expect(received).toEqual([mixedRoot, ...leaves.slice(0, 300)].map(b => b.cid.toString()))
  })

  it('follows a link only when its bytes are exactly a CID: one with a byte after the CID is not a link', async () => {
    const hub = makeHub({})
    const [good, other] = await Promise.all([rawBlock(new Uint8Array(10).fill(1)), rawBlock(new Uint8Array(10).fill(2))])
    // {"a": <good>, "b": <other's CID and one more byte>}, written by hand: no encoder makes the second
    const link = (bytes: Uint8Array, extra: number[]): number[] => [0xd8, 42, 0x58, 1 + bytes.byteLength + extra.length, 0, ...bytes, ...extra]
    const bytes = new Uint8Array([0xa2, 0x61, 0x61, ...link(good.cid.bytes, []), 0x61, 0x62, ...link(other.cid.bytes, [0])])
    const { CID } = await import('multiformats/cid')
    const { sha256 } = await import('multiformats/hashes/sha2')
    const root = { cid: CID.createV1(0x71, await sha256.digest(bytes)), bytes }
    await upload(hub, [root, good, other])
    const res = await hub.app.request(`/ipfs/${root.cid.toString()}?format=car&dag-scope=all`)
    expect(res.status).toBe(200)
    const { CarReader } = await import('@ipld/car/reader')
    const car = await CarReader.fromBytes(new Uint8Array(await res.arrayBuffer()))
    const got: string[] = []
    for await (const b of car.blocks()) got.push(b.cid.toString())
    expect(got).toEqual([root.cid.toString(), good.cid.toString()])
  })
})

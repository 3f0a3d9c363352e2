/**
 * Opening in a constant number of requests: `hubStore.getDag` reads a version's DAG as one
 * trustless-gateway CAR, held to byte, block and time caps and verified block by block, and a cold
 * open of a large space uses it. Requests are counted through an injected fetch on `createHubApp`.
 */
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { openSpace } from '../src/index.js'
import { CAR_TYPE } from '../src/protocol.js'
import { encodeCar, rawBlock } from '../src/store/blocks.js'
import { hubStore } from '../src/store/hub.js'
import { countBlocks, countingStore, makeHub, makeSpace, publish } from './helpers/hub-app.js'
import type { Block } from '../src/store/interface.js'

/** A hubStore whose hub answers every request with `respond`. */
function fakeHub (respond: () => Response | Promise<Response>, options: Parameters<typeof hubStore>[1] = {}): ReturnType<typeof hubStore> {
  return hubStore('http://hub.test', { ...options, fetch: async () => respond() })
}

function carResponse (body: Uint8Array | ReadableStream<Uint8Array>, headers: Record<string, string> = {}): Response {
  return new Response(body as BodyInit, { status: 200, headers: { 'content-type': CAR_TYPE, ...headers } })
}

describe('hubStore.getDag', () => {
  it('reads a DAG from the hub in one CAR request, every block verified', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    await publish(hub, space)
    const { store, requests } = countingStore(hub)
    const blocks = await store.getDag?.(space.root.cid) as Block[]
    expect(requests).toEqual([`GET /ipfs/${space.root.cid.toString()}?format=car&dag-scope=all`])
    expect(new Set(blocks.map(b => b.cid.toString()))).toEqual(new Set(space.blocks.map(b => b.cid.toString())))
    for (const block of blocks) expect(block.bytes).toEqual(space.blocks.find(b => b.cid.equals(block.cid))?.bytes)
  })

  it('asks for a path below the CID as the trustless gateway spells it', async () => {
    const space = await makeSpace()
    const asked: string[] = []
    const store = hubStore('http://hub.test', {
      fetch: async (input) => { asked.push(String(input)); return carResponse(encodeCar([space.root], [space.root.cid])) }
    })
    await store.getDag?.(space.root.cid, { path: 'private' })
    expect(asked).toEqual([`http://hub.test/ipfs/${space.root.cid.toString()}/private?format=car&dag-scope=all`])
  })

  it('refuses a CAR with a block that does not match its CID (UntrustedHubError), returning none of it', async () => {
    const space = await makeSpace()
    const [root, pub] = space.blocks as [Block, Block]
    const car = encodeCar([root, { cid: pub.cid, bytes: new Uint8Array([1, 2, 3]) }], [root.cid])
    await expect(fakeHub(() => carResponse(car)).getDag?.(root.cid)).rejects.toMatchObject({ name: 'UntrustedHubError' })
  })

  it('stops reading a CAR over maxDagBytes, declared or not, and over maxDagBlocks (UntrustedHubError)', async () => {
    const blocks = await Promise.all(Array.from({ length: 8 }, async () => rawBlock(crypto.getRandomValues(new Uint8Array(1000)))))
    const car = encodeCar(blocks)
    const cid = (blocks[0] as Block).cid
    await expect(fakeHub(() => carResponse(car, { 'content-length': String(car.byteLength) }), { maxDagBytes: 4000 }).getDag?.(cid))
      .rejects.toMatchObject({ name: 'UntrustedHubError' })
    // No Content-Length: counted as it streams, and the body is cancelled.
    let pulled = 0
    let cancelled = false
    const endless = (): ReadableStream<Uint8Array> => new ReadableStream<Uint8Array>({
      pull (c) { pulled++; c.enqueue(pulled === 1 ? car : new Uint8Array(1024)) },
      cancel () { cancelled = true }
    })
    await expect(fakeHub(() => carResponse(endless()), { maxDagBytes: 64 * 1024 }).getDag?.(cid)).rejects.toMatchObject({ name: 'UntrustedHubError' })
    expect(cancelled).toBe(true)
    expect(pulled).toBeLessThan(200)
    await expect(fakeHub(() => carResponse(car), { maxDagBlocks: 4 }).getDag?.(cid)).rejects.toMatchObject({ name: 'UntrustedHubError' })
    // Within the caps, the same CAR is read whole.
    expect((await fakeHub(() => carResponse(car)).getDag?.(cid))?.length).toBe(8)
  })

  it('gives up on a hub that trickles a CAR past the request timeout (StoreError)', async () => {
    const block = await rawBlock(new Uint8Array([1, 2, 3]))
    const car = encodeCar([block])
    const trickle = new ReadableStream<Uint8Array>({
      start (c) { c.enqueue(car.subarray(0, 10)) },
      pull: async () => { await new Promise(resolve => setTimeout(resolve, 10_000)) }
    })
    const started = Date.now()
    await expect(fakeHub(() => carResponse(trickle), { timeoutMs: 300 }).getDag?.(block.cid)).rejects.toMatchObject({ name: 'StoreError' })
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it('maps a refusal to its named error', async () => {
    const hub = makeHub()
    const block = await rawBlock(new Uint8Array([7]))
    await expect(countingStore(hub).store.getDag?.(block.cid)).rejects.toMatchObject({ name: 'NotFoundError' })
  })
})

describe('hubStore.getBlock', () => {
  it('keeps at most fetchConcurrency block requests in flight, and a waiter whose signal fires leaves the line', async () => {
    const blocks = await Promise.all(Array.from({ length: 100 }, async (_, i) => rawBlock(new Uint8Array([i, 1, 2]))))
    let inFlight = 0
    let most = 0
    const store = hubStore('http://hub.test', {
      fetchConcurrency: 8,
      fetch: async (input) => {
        inFlight++
        most = Math.max(most, inFlight)
        await new Promise(resolve => setTimeout(resolve, 5))
        inFlight--
        const cid = String(input).split('/ipfs/')[1]?.split('?')[0]
        const block = blocks.find(b => b.cid.toString() === cid) as Block
        return new Response(block.bytes as Uint8Array<ArrayBuffer>, { status: 200 })
      }
    })
    const read = await Promise.all(blocks.map(async b => store.getBlock(b.cid)))
    expect(read.map(r => r[0])).toEqual(blocks.map((_, i) => i))
    expect(most).toBe(8)
    // Eight slow requests hold every slot; a ninth caller gives up while waiting.
    const gate = Promise.withResolvers<void>()
    const slow = hubStore('http://hub.test', {
      fetchConcurrency: 8,
      fetch: async () => { await gate.promise; return new Response((blocks[0] as Block).bytes as Uint8Array<ArrayBuffer>, { status: 200 }) }
    })
    const holding = Array.from({ length: 8 }, async () => slow.getBlock((blocks[0] as Block).cid))
    const controller = new AbortController()
    const waiting = slow.getBlock((blocks[0] as Block).cid, { signal: controller.signal })
    controller.abort()
    await expect(waiting).rejects.toMatchObject({ name: 'AbortedError' })
    gate.resolve()
    await Promise.all(holding)
    // Its slot was passed on: the store still serves.
    expect(await slow.getBlock((blocks[0] as Block).cid)).toEqual((blocks[0] as Block).bytes)
  })
})

describe('a cold open through a hub', () => {
  it('opens a space of over 1 024 private blocks in at most 4 requests', async () => {
    const hub = makeHub()
    const signer = privateKeyToAccount(generatePrivateKey())
    const writer = await openSpace({ signer, store: hubStore('http://hub.test', { fetch: async (input, init) => hub.app.request(String(input), init) }) })
    // ~8.8 MB of private JSON: over a thousand buckets.
    const value = 'v'.repeat(8000)
    const patch: Record<string, string> = {}
    for (let i = 0; i < 1100; i++) patch[`key${i}`] = `${i}${value}`
    await writer.patch(patch)
    await writer.flush()
    await writer.close()
    expect(await countBlocks(hub.blockstore)).toBeGreaterThan(1024)

    const { store, requests } = countingStore(hub)
    const reader = await openSpace({ signer, store })
    expect(requests.length, requests.join('\n')).toBeLessThanOrEqual(4)
    // Every block came in the one CAR of the current version: none was read on its own.
    expect(requests.filter(r => r.includes('format=car')), requests.join('\n')).toEqual([expect.stringMatching(/^GET \/ipfs\/[a-z0-9]+\/current\?format=car&dag-scope=all$/)])
    expect(requests.filter(r => r.includes('format=raw')), requests.join('\n')).toEqual([])
    expect((await reader.keys()).length).toBe(1100)
    expect(await reader.get('key1099')).toBe(`1099${value}`)
    await reader.close()
  }, 120_000)

  it('still opens when the CAR is bad or the hub serves no paths, reading block by block', async () => {
    const hub = makeHub()
    const signer = privateKeyToAccount(generatePrivateKey())
    const writer = await openSpace({ signer, store: hubStore('http://hub.test', { fetch: async (input, init) => hub.app.request(String(input), init) }) })
    await writer.set('a', 1)
    await writer.flush()
    await writer.close()
    // A hub whose CARs are garbage but whose blocks and records are right.
    const store = hubStore('http://hub.test', {
      fetch: async (input, init) => String(input).includes('format=car')
        ? carResponse(new Uint8Array([1, 2, 3]))
        : hub.app.request(String(input), init)
    })
    const reader = await openSpace({ signer, store })
    expect(await reader.get('a')).toBe(1)
    await reader.close()
  })
})

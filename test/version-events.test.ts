/**
 * Version events: a hub tells a stream that asks (`?with=blocks`) of a version published in one
 * request as the record with the blocks it came with, so that a subscribed device merges the update
 * without asking the hub for a block. The client checks every such event before it keeps a block;
 * a hub that sends what no honest hub sends is not believed.
 */
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { fromBase64, toBase64 } from '../src/crypto/bytes.js'
import { memoryState, openSpace } from '../src/index.js'
import { IPNS_RECORD_CODEC, MAX_VERSION_EVENT_CHARS } from '../src/protocol.js'
import { encodeCar } from '../src/store/blocks.js'
import { hubStore, readEvents, readVersionEvent } from '../src/store/hub.js'
import { createRecord } from '../src/store/record.js'
import { makeHub, makeSpace, publish, putRecord, storeFor } from './helpers/hub-app.js'
import { account, KEY_B } from './helpers/signers.js'
import type { Hub } from './helpers/hub-app.js'
import type { ServerSentEvent } from '../src/store/hub.js'
import type { Block } from '../src/store/interface.js'

const VERSION_CAPS = { maxLineChars: MAX_VERSION_EVENT_CHARS + 16, maxEventChars: MAX_VERSION_EVENT_CHARS + 16 }

/** The events of a stream after its `ready`, one at a time. */
async function openEvents (hub: Hub, name: string, query = ''): Promise<{ next: () => Promise<ServerSentEvent>, close: () => Promise<void> }> {
  const res = await hub.app.request(`/api/v1/events/${name}${query}`)
  expect(res.status).toBe(200)
  const events = readEvents(res.body as ReadableStream<Uint8Array>, VERSION_CAPS)
  const next = async (): Promise<ServerSentEvent> => {
    const { value, done } = await events.next()
    if (done === true) throw new Error('stream ended')
    return value
  }
  // Once `ready` is read, the stream is subscribed: every record accepted from now on reaches it.
  expect((await next()).event).toBe('ready')
  return { next, close: async () => { await events.return(undefined) } }
}

/** Publishes a version through the hub client's one-request route. */
async function publishVersion (hub: Hub, name: string, record: Uint8Array, blocks: Block[]): Promise<void> {
  const store = storeFor(hub)
  if (store.publish === undefined) throw new Error('the hub store publishes in one request')
  await store.publish(name, record, blocks)
}

async function recordBlock (record: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(IPNS_RECORD_CODEC, await sha256.digest(record)), bytes: record }
}

describe('the hub sends versions with their blocks', () => {
  it('sends a version published in one request as one version event (record and blocks) to a stream that asks, and as a record event to one that does not', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const withBlocks = await openEvents(hub, space.name, '?with=blocks')
    const plain = await openEvents(hub, space.name)
    const record = await createRecord(space.key, space.root.cid, 1)
    await publishVersion(hub, space.name, record, space.blocks)

    const event = await withBlocks.next()
    expect(event.event).toBe('version')
    expect(event.id).toBe('1')
    const version = await readVersionEvent(event.data)
    expect(version.record).toEqual(record)
    expect(version.blocks.map(b => b.cid.toString()).sort()).toEqual(space.blocks.map(b => b.cid.toString()).sort())
    for (const block of version.blocks) expect(block.bytes).toEqual(space.blocks.find(b => b.cid.equals(block.cid))?.bytes)

    const other = await plain.next()
    expect(other.event).toBe('record')
    expect(fromBase64(other.data)).toEqual(record)
    await withBlocks.close()
    await plain.close()
  })

  it('sends a record that came without blocks (a record PUT) as a record event, even to a stream that asks for blocks', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    await publish(hub, space, 1)
    const stream = await openEvents(hub, space.name, '?with=blocks')
    // The current record on connect: no blocks came with it here.
    expect((await stream.next()).event).toBe('record')
    const two = await createRecord(space.key, space.root.cid, 2)
    expect((await putRecord(hub, space.name, two)).status).toBe(200)
    const event = await stream.next()
    expect(event.event).toBe('record')
    expect(fromBase64(event.data)).toEqual(two)
    await stream.close()
  })

  it('keeps at most one notice waiting for a stream that stops reading: the newest version reaches it once it reads on', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const res = await hub.app.request(`/api/v1/events/${space.name}?with=blocks`)
    const events = readEvents(res.body as ReadableStream<Uint8Array>, VERSION_CAPS)
    expect((await events.next()).value?.event).toBe('ready')
    // 40 versions while the client reads nothing
    for (let sequence = 1; sequence <= 40; sequence++) {
      await publishVersion(hub, space.name, await createRecord(space.key, space.root.cid, sequence), space.blocks)
    }
    const ids: string[] = []
    while (ids.at(-1) !== '40') {
      const { value, done } = await events.next()
      if (done === true) break
      ids.push(value.id ?? '')
    }
    expect(ids.at(-1)).toBe('40')
    // the one being written when the client stopped, perhaps one more in the stream's buffer, and the newest
    expect(ids.length).toBeLessThanOrEqual(4)
    await events.return(undefined)
  })

  it('sends a version whose event would be over the character limit as a record event', async () => {
    const hub = makeHub()
    const space = await makeSpace({ privateBytes: MAX_VERSION_EVENT_CHARS })
    const stream = await openEvents(hub, space.name, '?with=blocks')
    const record = await createRecord(space.key, space.root.cid, 1)
    await publishVersion(hub, space.name, record, space.blocks)
    const event = await stream.next()
    expect(event.event).toBe('record')
    expect(fromBase64(event.data)).toEqual(record)
    await stream.close()
  })
})

describe('a subscribed device reads a version from its event', () => {
  it("merges device A's set on device B without asking the hub for a block", async () => {
    const hub = makeHub()
    const signer = account(KEY_B)
    const a = await openSpace({ signer, store: storeFor(hub), state: memoryState(), deviceId: 'a' })
    await a.set('volume', 1)
    await a.flush()
    const requests: string[] = []
    let streaming!: () => void
    const live = new Promise<void>((resolve) => { streaming = resolve })
    const store = hubStore('http://hub.test', {
      fetch: async (input, init) => {
        const url = new URL(String(input))
        requests.push(`${init?.method ?? 'GET'} ${url.pathname}${url.search}`)
        const res = await hub.app.request(url.pathname + url.search, init)
        if (!url.pathname.startsWith('/api/v1/events/') || res.body === null) return res
        // The first chunk is the hub's `ready`: the stream is subscribed from then on.
        const reader = res.body.getReader()
        const body = new ReadableStream<Uint8Array>({
          async pull (controller) {
            const { value, done } = await reader.read()
            if (done) { controller.close(); return }
            streaming()
            controller.enqueue(value)
          },
          async cancel () { await reader.cancel() }
        })
        return new Response(body, { status: res.status, headers: res.headers })
      }
    })
    const b = await openSpace({ signer, store, state: memoryState(), deviceId: 'b' })
    expect(await b.get('volume')).toBe(1)
    const heard: string[][] = []
    b.subscribe((event) => { heard.push(event.keys) })
    await live
    expect(requests.filter(r => r.startsWith('GET /api/v1/events/'))).toEqual([expect.stringMatching(/\?with=blocks$/)])
    const before = requests.length
    await a.set('volume', 2)
    await a.flush()
    await expect.poll(async () => b.get('volume'), { timeout: 5000, interval: 5 }).toBe(2)
    expect(heard).toContainEqual(['volume'])
    // Everything B needed came with the event.
    expect(requests.slice(before)).toEqual([])
    await a.close()
    await b.close()
  })
})

describe('version events are checked before a block is kept', () => {
  async function goodEvent (): Promise<{ record: Uint8Array, blocks: Block[], data: string }> {
    const space = await makeSpace()
    const record = await createRecord(space.key, space.root.cid, 1)
    const rb = await recordBlock(record)
    return { record, blocks: space.blocks, data: toBase64(encodeCar([rb, ...space.blocks], [rb.cid])) }
  }

  it('reads a well-formed event: the record and every block', async () => {
    const good = await goodEvent()
    const version = await readVersionEvent(good.data)
    expect(version.record).toEqual(good.record)
    expect(version.blocks.map(b => b.cid.toString())).toEqual(good.blocks.map(b => b.cid.toString()))
  })

  it('refuses data that is not the base64 of a CAR', async () => {
    await expect(readVersionEvent('not base64!')).rejects.toMatchObject({ name: 'UntrustedHubError' })
    await expect(readVersionEvent(toBase64(new Uint8Array([1, 2, 3])))).rejects.toMatchObject({ name: 'UntrustedHubError' })
  })

  it('refuses an event over the character limit', async () => {
    await expect(readVersionEvent('A'.repeat(MAX_VERSION_EVENT_CHARS + 4))).rejects.toMatchObject({ name: 'UntrustedHubError', message: expect.stringMatching(/character limit/) })
  })

  it('refuses a CAR whose root is not a record, or that has two roots', async () => {
    const good = await goodEvent()
    const rb = await recordBlock(good.record)
    const first = good.blocks[0] as Block
    await expect(readVersionEvent(toBase64(encodeCar([rb, ...good.blocks], [first.cid])))).rejects.toMatchObject({ name: 'UntrustedHubError', message: expect.stringMatching(/root/) })
    await expect(readVersionEvent(toBase64(encodeCar([rb, ...good.blocks], [rb.cid, rb.cid])))).rejects.toMatchObject({ name: 'UntrustedHubError', message: expect.stringMatching(/2 root/) })
  })

  it('refuses a block that does not match its CID', async () => {
    const good = await goodEvent()
    const rb = await recordBlock(good.record)
    const bad = good.blocks.map((b, i) => i === 1 ? { cid: b.cid, bytes: Uint8Array.from(b.bytes, (x, j) => j === 0 ? x ^ 1 : x) } : b)
    await expect(readVersionEvent(toBase64(encodeCar([rb, ...bad], [rb.cid])))).rejects.toMatchObject({ name: 'UntrustedHubError', message: expect.stringMatching(/does not match its CID/) })
  })

  it('refuses a record block that does not match its CID', async () => {
    const good = await goodEvent()
    const rb = await recordBlock(good.record)
    const forged = { cid: rb.cid, bytes: Uint8Array.from(rb.bytes, (x, j) => j === 5 ? x ^ 1 : x) }
    await expect(readVersionEvent(toBase64(encodeCar([forged, ...good.blocks], [rb.cid])))).rejects.toMatchObject({ name: 'UntrustedHubError', message: expect.stringMatching(/does not match its CID/) })
  })

  it('refuses an event without its record, or with a second one', async () => {
    const good = await goodEvent()
    const rb = await recordBlock(good.record)
    await expect(readVersionEvent(toBase64(encodeCar(good.blocks, [rb.cid])))).rejects.toMatchObject({ name: 'UntrustedHubError', message: expect.stringMatching(/does not carry it/) })
    const second = await recordBlock(new Uint8Array([...good.record, 0]))
    await expect(readVersionEvent(toBase64(encodeCar([rb, second, ...good.blocks], [rb.cid])))).rejects.toMatchObject({ name: 'UntrustedHubError', message: expect.stringMatching(/more than its one record/) })
  })

  it('a subscriber hears nothing from a version event with a forged block, and does not keep the block', async () => {
    const good = await goodEvent()
    const rb = await recordBlock(good.record)
    const forgedBlocks = good.blocks.map((b, i) => i === 0 ? { cid: b.cid, bytes: Uint8Array.from(b.bytes, (x, j) => j === 0 ? x ^ 1 : x) } : b)
    const forged = toBase64(encodeCar([rb, ...forgedBlocks], [rb.cid]))
    const blockRequests: string[] = []
    const store = hubStore('http://hub.test', {
      reconnectMinMs: 60_000,
      fetch: async (input) => {
        const url = new URL(String(input))
        if (url.pathname.startsWith('/api/v1/events/')) {
          const text = `event: ready\ndata: x\n\nevent: version\ndata: ${forged}\n\nevent: version\ndata: ${good.data}\n\n`
          return new Response(text, { status: 200, headers: { 'content-type': 'text/event-stream' } })
        }
        blockRequests.push(url.pathname)
        return new Response('{"message":"not here"}', { status: 404, headers: { 'content-type': 'application/json' } })
      }
    })
    const heard: Uint8Array[] = []
    if (store.subscribe === undefined) throw new Error('the hub store has live updates')
    const stop = store.subscribe((await makeSpace()).name, (record) => { heard.push(record) })
    await expect.poll(() => heard.length, { timeout: 5000, interval: 5 }).toBe(1)
    stop()
    // Only the good event's record was heard, and its blocks (not the forged one's) are kept.
    expect(heard[0]).toEqual(good.record)
    const root = good.blocks[0] as Block
    expect(await store.getBlock(root.cid)).toEqual(root.bytes)
    expect(blockRequests).toEqual([])
  })
})

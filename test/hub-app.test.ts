/**
 * The hub's HTTP handlers through `app.request()`: no socket, memory stores, real signed IPNS records
 * and real owner bindings. The hub client Store (`hubStore`) is exercised against the same app
 * through an injected fetch.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { sha512 } from 'multiformats/hashes/sha2'
import { generatePrivateKey } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromBase64 } from '../src/crypto/bytes.js'
import { IPNS_RECORD_TYPE } from '../src/hub/app.js'
import { rawBlock } from '../src/store/blocks.js'
import { hubStore, readEvents } from '../src/store/hub.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import {
  bytesOf, car, countBlocks, countKeys, expectRefusal, getRecord, makeHub, makeSpace, publish, putRecord, storeFor, upload
} from './helpers/hub-app.js'
import type { Hub, Space } from './helpers/hub-app.js'

// --- records ----------------------------------------------------------------------------------

describe('Delegated Routing V1 IPNS', () => {
  it('stores a signed record and serves it back byte for byte', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const record = await publish(hub, space)
    const res = await getRecord(hub, space.name)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe(IPNS_RECORD_TYPE)
    expect(await bytesOf(res)).toEqual(record)
    // A wildcard Accept takes it too; no Accept at all is the routing spec's 406.
    expect(await bytesOf(await hub.app.request(`/routing/v1/ipns/${space.name}`, { headers: { accept: '*/*' } }))).toEqual(record)
    await expectRefusal(await hub.app.request(`/routing/v1/ipns/${space.name}`), 406, 'NotAcceptableError')
  })

  it('answers 404 JSON for an unknown name', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    await expectRefusal(await getRecord(hub, space.name), 404, 'NotFoundError')
  })

  it('accepts a higher sequence and refuses a lower one with 409', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    await publish(hub, space, 5)
    const six = await createRecord(space.key, space.root.cid, 6)
    expect((await putRecord(hub, space.name, six)).status).toBe(200)
    const four = await createRecord(space.key, space.root.cid, 4)
    await expectRefusal(await putRecord(hub, space.name, four), 409, 'ConflictError')
    expect(await bytesOf(await getRecord(hub, space.name))).toEqual(six)
  })

  it('refuses the same sequence with another value (409) and accepts an identical retry', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const record = await publish(hub, space, 3)
    expect((await putRecord(hub, space.name, record)).status).toBe(200)
    const other = await makeSpace({ key: space.key })
    await upload(hub, other.blocks)
    const forked = await createRecord(space.key, other.root.cid, 3)
    await expectRefusal(await putRecord(hub, space.name, forked), 409, 'EquivocationError')
    expect(await bytesOf(await getRecord(hub, space.name))).toEqual(record)
  })

  it('lets exactly one of two concurrent writes of the same sequence win', async () => {
    const hub = makeHub()
    const a = await makeSpace()
    const b = await makeSpace({ key: a.key })
    await upload(hub, [...a.blocks, ...b.blocks])
    const [ra, rb] = await Promise.all([
      putRecord(hub, a.name, await createRecord(a.key, a.root.cid, 1)),
      putRecord(hub, a.name, await createRecord(a.key, b.root.cid, 1))
    ])
    expect([ra.status, rb.status].sort()).toEqual([200, 409])
  })

  it('refuses an expired record with 400', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    await upload(hub, space.blocks)
    const record = await createRecord(space.key, space.root.cid, 1, { lifetimeMs: 1 })
    await new Promise(resolve => setTimeout(resolve, 20))
    await expectRefusal(await putRecord(hub, space.name, record), 400, 'InvalidRecordError')
    await expectRefusal(await getRecord(hub, space.name), 404)
  })

  it('refuses a record signed for another name with 400', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const stranger = await makeSpace()
    await upload(hub, space.blocks)
    const record = await createRecord(space.key, space.root.cid, 1)
    await expectRefusal(await putRecord(hub, stranger.name, record), 400, 'InvalidRecordError')
    await expectRefusal(await getRecord(hub, stranger.name), 404)
  })

  it('refuses a record over the IPNS spec\'s 10 KiB as invalid (400, as the routing spec lists)', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const big = crypto.getRandomValues(new Uint8Array(10 * 1024 + 1))
    await expectRefusal(await putRecord(hub, space.name, big), 400, 'InvalidRecordError')
    // Also when the client hides the size (a stream with no Content-Length)
    const stream = new ReadableStream<Uint8Array>({ start (c) { c.enqueue(big); c.close() } })
    const res = await hub.app.request(`/routing/v1/ipns/${space.name}`, {
      method: 'PUT', headers: { 'content-type': IPNS_RECORD_TYPE }, body: stream, duplex: 'half'
    } as RequestInit)
    await expectRefusal(res, 400, 'InvalidRecordError')
  })

  it('refuses a space over the per-name byte limit with 413 and stores nothing', async () => {
    const hub = makeHub({ maxSpaceBytes: 4096 })
    const space = await makeSpace({ privateBytes: 5000 })
    await upload(hub, space.blocks)
    const res = await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))
    await expectRefusal(res, 413, 'TooLargeError')
    await expectRefusal(await getRecord(hub, space.name), 404)
    await expectRefusal(await hub.app.request(`/api/v1/address/${space.address}`), 404)
  })

  it('refuses a root whose owner binding is signed for another name', async () => {
    const hub = makeHub()
    const other = await generateKeyPair('Ed25519')
    const space = await makeSpace({ name: nameOfKey(other) })
    await upload(hub, space.blocks)
    const res = await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))
    await expectRefusal(res, 400, 'SignerMismatchError')
    await expectRefusal(await getRecord(hub, space.name), 404)
  })

  it('stores a record whose owner binding block is not here yet without indexing its owner (as one whose root is not), and indexes it once a version finds it here', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const binding = space.blocks[2]!
    expect((await upload(hub, space.blocks.filter(b => b !== binding))).status).toBe(200)
    expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
    await expectRefusal(await hub.app.request(`/api/v1/address/${space.address}`), 404)
    expect((await upload(hub, [binding])).status).toBe(200)
    expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 2))).status).toBe(200)
    expect(await (await hub.app.request(`/api/v1/address/${space.address}`)).json()).toMatchObject({ name: space.name })
  })

  it('accepts records whose root is not a UserSpace root, without indexing them', async () => {
    const hub = makeHub()
    const key = await generateKeyPair('Ed25519')
    const block = await rawBlock(new Uint8Array([1, 2, 3]))
    await upload(hub, [block])
    const record = await createRecord(key, block.cid, 1)
    expect((await putRecord(hub, nameOfKey(key), record)).status).toBe(200)
    expect(await bytesOf(await getRecord(hub, nameOfKey(key)))).toEqual(record)
  })

  it('announces accepted records and never waits long for the announcement', async () => {
    const announced: string[] = []
    const hub = makeHub({ announceWaitMs: 50 }, {
      announce: async (name, _record, { signal }) => {
        announced.push(name)
        // A DHT with no peers: hangs until aborted
        await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
      }
    })
    const space = await makeSpace()
    const started = Date.now()
    await publish(hub, space)
    expect(Date.now() - started).toBeLessThan(2_000)
    expect(announced).toEqual([space.name])
  })
})

describe('IPNS spec vectors (ipfs/gateway-conformance, see test/fixtures/ipns/README.md)', () => {
  const dir = fileURLToPath(new URL('./fixtures/ipns/', import.meta.url))
  const valid = new Set(['v1-v2', 'v1-v2-broken-signature-v1', 'v2'])
  it('accepts the valid records and refuses the invalid ones with 400, storing nothing for them', async () => {
    const hub = makeHub()
    const files = (await readdir(dir)).filter(f => f.startsWith('fixtures_ipns_records_'))
    expect(files).toHaveLength(6)
    for (const file of files) {
      const [, name, variant] = /^fixtures_ipns_records_(k51\w+)_(.+)\.ipns-record$/.exec(file) ?? []
      const bytes = new Uint8Array(await readFile(join(dir, file)))
      const res = await putRecord(hub, name as string, bytes)
      if (valid.has(variant as string)) {
        expect(res.status, `${variant}: ${await res.text()}`).toBe(200)
        expect(await bytesOf(await getRecord(hub, name as string))).toEqual(bytes)
      } else {
        await expectRefusal(res, 400, 'InvalidRecordError')
        await expectRefusal(await getRecord(hub, name as string), 404)
      }
    }
  })
})

describe('address index', () => {
  it('binds the owner address to the name, first binding wins', async () => {
    const hub = makeHub()
    const walletKey = generatePrivateKey()
    const first = await makeSpace({ walletKey })
    await publish(hub, first)
    const res = await hub.app.request(`/api/v1/address/${first.address.toLowerCase()}`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ address: first.address, name: first.name })

    // The same wallet with another space (a wallet that signs non-deterministically): accepted, but
    // the address keeps its first name.
    const second = await makeSpace({ walletKey })
    await publish(hub, second)
    expect(await (await hub.app.request(`/api/v1/address/${first.address}`)).json()).toEqual({ address: first.address, name: first.name })
    expect(await storeFor(hub).lookupAddress?.(first.address)).toBe(first.name)
  })

  it('answers 404 for an unknown address and 400 for a malformed one', async () => {
    const hub = makeHub()
    await expectRefusal(await hub.app.request(`/api/v1/address/0x${'11'.repeat(20)}`), 404, 'NotFoundError')
    await expectRefusal(await hub.app.request('/api/v1/address/0x1234'), 400, 'InvalidInputError')
    expect(await storeFor(hub).lookupAddress?.(`0x${'11'.repeat(20)}`)).toBeUndefined()
  })

  it('names what it expected and what it got for a malformed IPNS name (400)', async () => {
    const res = await makeHub().app.request('/ipns/not-a-name')
    const text = await res.text()
    expect(res.status, text).toBe(400)
    expect(JSON.parse(text)).toEqual({ name: 'InvalidInputError', message: '"name" expected an IPNS name (k51…), got "not-a-name"' })
  })
})

// --- blocks -----------------------------------------------------------------------------------

describe('block upload and trustless gateway', () => {
  it('stores every block of a CAR and lists their CIDs', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const res = await upload(hub, space.blocks)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ cids: space.blocks.map(b => b.cid.toString()) })
    for (const block of space.blocks) expect(await hub.blockstore.has(block.cid)).toBe(true)
  })

  it('refuses a CAR with a block that does not match its CID (400) and stores none of it', async () => {
    const hub = makeHub()
    const good = await rawBlock(new Uint8Array([1, 2, 3]))
    const other = await rawBlock(new Uint8Array([4, 5, 6]))
    const res = await upload(hub, [good, { cid: other.cid, bytes: new Uint8Array([7, 8, 9]) }])
    await expectRefusal(res, 400, 'IntegrityError')
    expect(await hub.blockstore.has(good.cid)).toBe(false)
    expect(await countBlocks(hub.blockstore)).toBe(0)
  })

  it('refuses a CAR with a block over the block limit (413)', async () => {
    const hub = makeHub({ maxBlockBytes: 1000 })
    const small = await rawBlock(new Uint8Array(10))
    const big = await rawBlock(new Uint8Array(1001))
    await expectRefusal(await upload(hub, [small, big]), 413, 'TooLargeError')
    expect(await countBlocks(hub.blockstore)).toBe(0)
  })

  it('refuses a body over the body limit (413)', async () => {
    const hub = makeHub({ maxBodyBytes: 2000 })
    const blocks = await Promise.all([1, 2, 3].map(async i => rawBlock(new Uint8Array(900).fill(i))))
    await expectRefusal(await upload(hub, blocks), 413, 'TooLargeError')
    expect(await countBlocks(hub.blockstore)).toBe(0)
  })

  it('serves a block raw (Accept and ?format=raw) and as a CAR with its DAG', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    await upload(hub, space.blocks)
    const cid = space.root.cid.toString()

    const rawRes = await hub.app.request(`/ipfs/${cid}`, { headers: { accept: 'application/vnd.ipld.raw' } })
    expect(rawRes.status).toBe(200)
    expect(rawRes.headers.get('content-type')).toBe('application/vnd.ipld.raw')
    expect(await bytesOf(rawRes)).toEqual(space.root.bytes)
    expect(await bytesOf(await hub.app.request(`/ipfs/${cid}?format=raw`))).toEqual(space.root.bytes)

    const carRes = await hub.app.request(`/ipfs/${cid}?format=car`)
    expect(carRes.status).toBe(200)
    expect(carRes.headers.get('content-type')).toMatch(/^application\/vnd\.ipld\.car/)
    const reader = CarBufferReader.fromBytes(await bytesOf(carRes))
    expect(reader.getRoots().map(String)).toEqual([cid])
    expect(reader.blocks().map(b => b.cid.toString()).sort()).toEqual(space.blocks.map(b => b.cid.toString()).sort())

    const oneRes = await hub.app.request(`/ipfs/${cid}?dag-scope=block`, { headers: { accept: 'application/vnd.ipld.car' } })
    expect(CarBufferReader.fromBytes(await bytesOf(oneRes)).blocks().map(b => b.cid.toString())).toEqual([cid])
  })

  it('fetches a missing block from the network, verifies it and keeps it', async () => {
    const source = makeHub()
    const space = await makeSpace()
    await upload(source, space.blocks)
    const hub = makeHub({}, {
      fetchBlock: async (cid) => {
        const chunks: Uint8Array[] = []
        for await (const chunk of source.blockstore.get(cid)) chunks.push(chunk)
        return chunks[0] as Uint8Array
      }
    })
    const res = await hub.app.request(`/ipfs/${space.root.cid.toString()}?format=raw`)
    expect(await bytesOf(res)).toEqual(space.root.bytes)
    expect(await hub.blockstore.has(space.root.cid)).toBe(true)

    // A peer that lies: the block is not kept, the answer is 404
    const liar = makeHub({}, { fetchBlock: async () => new Uint8Array([1, 2, 3]) })
    await expectRefusal(await liar.app.request(`/ipfs/${space.root.cid.toString()}?format=raw`), 404)
    expect(await countBlocks(liar.blockstore)).toBe(0)
  })

  it('stops fetching a block from the network when the request that wanted it goes away', async () => {
    const space = await makeSpace()
    let aborted = (): void => {}
    const hub = makeHub({ fetchTimeoutMs: 60_000 }, {
      // A network that never answers: only the signal ends the fetch.
      fetchBlock: async (_cid, options) => await new Promise<never>((_resolve, reject) => {
        options?.signal?.addEventListener('abort', () => { aborted(); reject(new Error('aborted')) })
      })
    })
    for (const format of ['raw', 'car']) {
      const fetchAborted = new Promise<void>(resolve => { aborted = resolve })
      const controller = new AbortController()
      const res = hub.app.request(`/ipfs/${space.root.cid.toString()}?format=${format}`, { signal: controller.signal })
      setTimeout(() => { controller.abort() }, 50)
      await fetchAborted // long before the 60 s fetch timeout
      await Promise.resolve(res).catch(() => undefined)
    }
    expect(await countBlocks(hub.blockstore)).toBe(0)
  })

  it('resolves a record it does not have from the network, validates and keeps it', async () => {
    const source = makeHub()
    const space = await makeSpace()
    const record = await publish(source, space)
    const hub = makeHub({}, {
      resolveRemote: async (name) => {
        const res = await getRecord(source, name)
        return res.status === 200 ? bytesOf(res) : undefined
      }
    })
    expect(await bytesOf(await getRecord(hub, space.name))).toEqual(record)
    const stored = makeHub({}, { resolveRemote: async () => undefined })
    await expectRefusal(await getRecord(stored, space.name), 404)
  })
})

// --- the client Store against the app ---------------------------------------------------------

describe('hubStore against the hub app', () => {
  it('round-trips blocks and records, and maps refusals to named errors', async () => {
    const hub = makeHub()
    const store = storeFor(hub)
    const space = await makeSpace()
    await store.putBlocks(space.blocks)
    for (const block of space.blocks) expect(await store.getBlock(block.cid)).toEqual(block.bytes)
    expect(await store.getRecord(space.name)).toBeUndefined()
    const r2 = await createRecord(space.key, space.root.cid, 2)
    await store.putRecord(space.name, r2)
    expect(await store.getRecord(space.name, { nocache: true })).toEqual(r2)
    await expect(store.putRecord(space.name, await createRecord(space.key, space.root.cid, 1))).rejects.toMatchObject({ name: 'ConflictError' })
    await expect(store.getBlock((await rawBlock(new Uint8Array([9]))).cid)).rejects.toMatchObject({ name: 'NotFoundError' })
    await expect(store.putBlocks([{ cid: space.root.cid, bytes: new Uint8Array([1]) }])).rejects.toMatchObject({ name: 'IntegrityError' })
  })

  it('refuses a block the hub altered', async () => {
    const space = await makeSpace()
    const store = hubStore('http://hub.test', { fetch: async () => new Response(new Uint8Array([1, 2, 3]), { status: 200 }) })
    await expect(store.getBlock(space.root.cid)).rejects.toMatchObject({ name: 'IntegrityError' })
  })

  it('turns an unreachable hub into StoreError', async () => {
    const store = hubStore('http://127.0.0.1:9')
    const space = await makeSpace()
    await expect(store.getRecord(space.name)).rejects.toMatchObject({ name: 'StoreError' })
  })
})

// --- live events ------------------------------------------------------------------------------

describe('live events', () => {
  it('sends the current record on connect and every accepted record after', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const first = await publish(hub, space, 1)
    const res = await hub.app.request(`/api/v1/events/${space.name}`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const events = readEvents(res.body as ReadableStream<Uint8Array>)
    const next = async (): Promise<Uint8Array> => {
      for (;;) {
        const { value, done } = await events.next()
        if (done === true) throw new Error('stream ended')
        if (value.event === 'record') return fromBase64(value.data)
      }
    }
    expect(await next()).toEqual(first)
    const second = await createRecord(space.key, space.root.cid, 2)
    expect((await putRecord(hub, space.name, second)).status).toBe(200)
    expect(await next()).toEqual(second)
    await events.return(undefined)
  })

  it('frees a stream slot when the client goes away, and refuses streams over the limit (429)', async () => {
    const hub = makeHub({ maxEventStreams: 1 })
    const space = await makeSpace()
    const first = await hub.app.request(`/api/v1/events/${space.name}`)
    expect(first.status).toBe(200)
    await expectRefusal(await hub.app.request(`/api/v1/events/${space.name}`), 429, 'RateLimitError')
    await first.body?.cancel()
    await new Promise(resolve => setTimeout(resolve, 20))
    const again = await hub.app.request(`/api/v1/events/${space.name}`)
    expect(again.status).toBe(200)
    await again.body?.cancel()
  })

  it('reconnects a dropped event stream with backoff and hears the current record', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const record = await publish(hub, space, 1)
    let attempts = 0
    const store = hubStore('http://hub.test', {
      reconnectMinMs: 10,
      fetch: async (input, init) => {
        attempts++
        if (attempts === 1) throw new TypeError('fetch failed')
        if (attempts === 2) return new Response('bad gateway', { status: 502 })
        if (attempts === 3) return new Response(new ReadableStream({ start (c) { c.close() } }), { status: 200 })
        return hub.app.request(String(input), init)
      }
    })
    const heard: Uint8Array[] = []
    const stop = store.subscribe?.(space.name, (r) => heard.push(r))
    for (let i = 0; i < 200 && heard.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
    stop?.()
    expect(attempts).toBeGreaterThanOrEqual(4)
    expect(heard[0]).toEqual(record)
  })

  it('gives up on a stream the hub refuses for good (a malformed name)', async () => {
    let attempts = 0
    const space = await makeSpace()
    const store = hubStore('http://hub.test', {
      reconnectMinMs: 5,
      fetch: async () => { attempts++; return new Response('{"message":"no"}', { status: 400 }) }
    })
    const stop = store.subscribe?.(space.name, () => {})
    await new Promise(resolve => setTimeout(resolve, 100))
    stop?.()
    expect(attempts).toBe(1)
  })

  it('delivers records to a hubStore subscriber', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    await upload(hub, space.blocks)
    const store = storeFor(hub)
    const heard: Uint8Array[] = []
    const stop = store.subscribe?.(space.name, (record) => heard.push(record))
    await new Promise(resolve => setTimeout(resolve, 50))
    const record = await createRecord(space.key, space.root.cid, 1)
    await store.putRecord(space.name, record)
    for (let i = 0; i < 100 && heard.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
    stop?.()
    expect(heard[heard.length - 1]).toEqual(record)
  })
})

// --- CORS, rate limits, static files --------------------------------------------------------

describe('CORS, rate limits and the demo page', () => {
  it('answers a browser preflight for a record PUT', async () => {
    const hub = makeHub()
    const space = await makeSpace()
    const res = await hub.app.request(`/routing/v1/ipns/${space.name}`, {
      method: 'OPTIONS',
      headers: { origin: 'https://dapp.example', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' }
    })
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    expect(res.headers.get('access-control-allow-methods')).toMatch(/PUT/)
    expect(res.headers.get('access-control-allow-methods')).toMatch(/POST/)
    expect((res.headers.get('access-control-allow-headers') ?? '').toLowerCase()).toMatch(/content-type/)
    const get = await getRecord(hub, space.name)
    expect(get.headers.get('access-control-allow-origin')).toBe('*')
  })

  it('limits each client address with a token bucket (429 JSON), others unaffected', async () => {
    const hub = makeHub({ rateLimit: { requestsPerSecond: 1, burst: 2 } })
    const env = (ip: string): object => ({ incoming: { socket: { remoteAddress: ip } } })
    const path = `/api/v1/address/0x${'22'.repeat(20)}`
    expect((await hub.app.request(path, {}, env('10.0.0.1'))).status).toBe(404)
    expect((await hub.app.request(path, {}, env('10.0.0.1'))).status).toBe(404)
    const limited = await hub.app.request(path, {}, env('10.0.0.1'))
    expect(limited.headers.get('retry-after')).toBe('1')
    await expectRefusal(limited, 429, 'RateLimitError')
    expect((await hub.app.request(path, {}, env('10.0.0.2'))).status).toBe(404)
    // Preflights are free
    expect((await hub.app.request(path, { method: 'OPTIONS', headers: { origin: 'x', 'access-control-request-method': 'GET' } }, env('10.0.0.1'))).status).toBe(204)
  })

  it('serves a note when the demo is not built, and the demo files when it is', async () => {
    const bare = makeHub()
    const note = await bare.app.request('/')
    expect(note.status).toBe(200)
    expect(await note.text()).toMatch(/not built/)

    const dir = await mkdtemp(join(tmpdir(), 'userspace-demo-'))
    try {
      await writeFile(join(dir, 'index.html'), '<!doctype html><title>demo</title>')
      await writeFile(join(dir, 'app.js'), 'console.log(1)')
      const hub = makeHub({ demoDir: dir })
      expect(await (await hub.app.request('/')).text()).toMatch(/<title>demo/)
      const js = await hub.app.request('/app.js')
      expect(js.headers.get('content-type')).toMatch(/javascript/)
      expect((await hub.app.request('/%2e%2e/%2e%2e/etc/passwd')).status).toBe(404)
      expect((await hub.app.request('/nothing-here.js')).status).toBe(404)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

// --- malformed input ------------------------------------------------------------------------

describe('malformed requests', () => {
  let hub: Hub
  let space: Space
  let record: Uint8Array
  let keysBefore: number
  let blocksBefore: number

  beforeAll(async () => {
    hub = makeHub({ maxBodyBytes: 64 * 1024 })
    space = await makeSpace()
    record = await publish(hub, space, 1)
    keysBefore = await countKeys(hub.datastore)
    blocksBefore = await countBlocks(hub.blockstore)
  })

  afterAll(async () => {
    // The hub still serves, and nothing was stored by any refused request.
    expect(await bytesOf(await getRecord(hub, space.name))).toEqual(record)
    expect(await countKeys(hub.datastore)).toBe(keysBefore)
    expect(await countBlocks(hub.blockstore)).toBe(blocksBefore)
  })

  const ipns = (init: RequestInit, name?: string): [string, RequestInit] => [`/routing/v1/ipns/${name ?? '<name>'}`, { method: 'PUT', ...init }]
  const cases: Array<{ what: string, status: number, request: () => Promise<[string, RequestInit]> }> = [
    { what: 'GET record for a non-name', status: 400, request: async () => ['/routing/v1/ipns/not-a-name', {}] },
    { what: 'GET record for bad percent-encoding', status: 400, request: async () => ['/routing/v1/ipns/%E0%A4%A', {}] },
    { what: 'GET record for a CID that is not a key', status: 400, request: async () => [`/routing/v1/ipns/${space.root.cid.toString()}`, {}] },
    { what: 'GET record for a 2 KB name', status: 400, request: async () => [`/routing/v1/ipns/k51${'a'.repeat(2000)}`, {}] },
    { what: 'PUT record without Content-Type', status: 406, request: async () => ipns({ body: record as Uint8Array<ArrayBuffer> }, space.name) },
    { what: 'PUT record as JSON', status: 406, request: async () => ipns({ headers: { 'content-type': 'application/json' }, body: '{}' }, space.name) },
    { what: 'PUT empty record', status: 400, request: async () => ipns({ headers: { 'content-type': IPNS_RECORD_TYPE } }, space.name) },
    { what: 'PUT garbage record', status: 400, request: async () => ipns({ headers: { 'content-type': IPNS_RECORD_TYPE }, body: 'garbage' }, space.name) },
    { what: 'PUT truncated record', status: 400, request: async () => ipns({ headers: { 'content-type': IPNS_RECORD_TYPE }, body: record.slice(0, record.length - 10) as Uint8Array<ArrayBuffer> }, space.name) },
    { what: 'PUT record with a bit flipped', status: 400, request: async () => { const r = record.slice(); r[r.length - 5] = (r[r.length - 5] as number) ^ 1; return ipns({ headers: { 'content-type': IPNS_RECORD_TYPE }, body: r as Uint8Array<ArrayBuffer> }, space.name) } },
    { what: 'PUT record under a non-name', status: 400, request: async () => ipns({ headers: { 'content-type': IPNS_RECORD_TYPE }, body: record as Uint8Array<ArrayBuffer> }, 'nope') },
    { what: 'PUT record with a lying Content-Length', status: 400, request: async () => ipns({ headers: { 'content-type': IPNS_RECORD_TYPE, 'content-length': '999999' }, body: record as Uint8Array<ArrayBuffer> }, space.name) },
    { what: 'GET block with a non-CID', status: 400, request: async () => ['/ipfs/not-a-cid?format=raw', {}] },
    { what: 'GET block without a trustless format', status: 400, request: async () => [`/ipfs/${space.root.cid.toString()}`, {}] },
    { what: 'GET block as HTML', status: 406, request: async () => [`/ipfs/${space.root.cid.toString()}`, { headers: { accept: 'text/html' } }] },
    { what: 'GET block in an unknown format', status: 400, request: async () => [`/ipfs/${space.root.cid.toString()}?format=xml`, {}] },
    { what: 'GET CAR with an unknown dag-scope', status: 400, request: async () => [`/ipfs/${space.root.cid.toString()}?format=car&dag-scope=wat`, {}] },
    { what: 'GET a path below a CID', status: 400, request: async () => [`/ipfs/${space.root.cid.toString()}/a/b?format=raw`, {}] },
    { what: 'GET an unknown block', status: 404, request: async () => [`/ipfs/${(await rawBlock(new Uint8Array([42]))).cid.toString()}?format=raw`, {}] },
    { what: 'POST blocks without Content-Type', status: 415, request: async () => ['/api/v1/blocks', { method: 'POST', body: 'x' }] },
    { what: 'POST blocks that are not a CAR', status: 400, request: async () => ['/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: 'definitely not a car' }] },
    { what: 'POST an empty CAR body', status: 400, request: async () => ['/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' } }] },
    { what: 'POST a truncated CAR', status: 400, request: async () => { const b = await rawBlock(new Uint8Array(100).fill(3)); const c = car([b]); return ['/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: c.slice(0, c.length - 20) as Uint8Array<ArrayBuffer> }] } },
    { what: 'POST a CAR with a sha2-512 block', status: 400, request: async () => { const bytes = new Uint8Array([1]); const cid = CID.createV1(raw.code, await sha512.digest(bytes)); return ['/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: car([{ cid, bytes }]) as Uint8Array<ArrayBuffer> }] } },
    { what: 'POST a CAR with an identity block', status: 400, request: async () => { const bytes = new Uint8Array([1]); const cid = CID.createV1(raw.code, identity.digest(bytes)); return ['/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: car([{ cid, bytes }]) as Uint8Array<ArrayBuffer> }] } },
    { what: 'POST a body over the limit', status: 413, request: async () => ['/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: new Uint8Array(65 * 1024) as Uint8Array<ArrayBuffer> }] },
    { what: 'GET address that is not hex', status: 400, request: async () => ['/api/v1/address/0xnothex', {}] },
    { what: 'GET events for a non-name', status: 400, request: async () => ['/api/v1/events/nope', {}] },
    { what: 'GET an unknown API route', status: 404, request: async () => ['/api/v1/nothing', {}] },
    { what: 'DELETE a record', status: 501, request: async () => [`/routing/v1/ipns/${space.name}`, { method: 'DELETE' }] }
  ]

  for (const c of cases) {
    it(`${c.what} → ${c.status}`, async () => {
      const [path, init] = await c.request()
      await expectRefusal(await hub.app.request(path, init), c.status)
    })
  }
})

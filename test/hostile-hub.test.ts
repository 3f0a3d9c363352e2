/**
 * A hostile or broken hub cannot exhaust or fool the client: real malicious HTTP servers on
 * 127.0.0.1 (node:http) send huge bodies, gzip bombs, endless event lines, nothing at all, or lies
 * about the address index, and the hub store answers each with a bounded read, a timeout, or an
 * error that names the hub. The last part runs the `userspace` command against a silent hub.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { serve } from '@hono/node-server'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { afterEach, describe, expect, it } from 'vitest'
import { hexToBytes } from '../src/crypto/bytes.js'
import { ownerStatement } from '../src/crypto/keys.js'
import { EXIT_CODE } from '../src/errors.js'
import { createHubApp } from '../src/hub/app.js'
import { main } from '../src/cli/main.js'
import { openSpace } from '../src/space/space.js'
import { readPublic } from '../src/space/read-public.js'
import { encodeCurrent, encodeOwner, encodeRoot } from '../src/space/root.js'
import { rawBlock } from '../src/store/blocks.js'
import { DEFAULT_REQUEST_TIMEOUT_MS, MAX_EVENT_LINE_CHARS, MAX_JSON_RESPONSE_BYTES, hubStore as makeHubStore, readEvents } from '../src/store/hub.js'
import { MAX_BLOCK_BYTES } from '../src/store/blocks.js'
import { createRecord, MAX_RECORD_BYTES, nameOfKey } from '../src/store/record.js'
import { account, KEY_A, KEY_B } from './helpers/signers.js'
import { runCli } from './helpers/hub-process.js'
import type { RequestListener, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { CliIO } from '../src/cli/main.js'
import type { HubStoreOptions } from '../src/store/hub.js'
import type { Store } from '../src/store/interface.js'

/** A hub store with its optional methods (a hub store has them all). */
const hubStore = (url: string, options?: HubStoreOptions): Required<Store> => makeHubStore(url, options) as Required<Store>

interface Listening {
  url: string
  /** Connections accepted so far. */
  connections: () => number
  /** Resolves when the n-th connection arrives. */
  connection: (n: number) => Promise<void>
}

const servers: Array<{ server: Server, sockets: Set<Socket> }> = []

/** A node:http server on 127.0.0.1 at a port it picks, closed (sockets and all) after each test. */
async function listen (handler: RequestListener): Promise<Listening> {
  const server = createServer(handler)
  const sockets = new Set<Socket>()
  let count = 0
  const waiters: Array<{ n: number, resolve: () => void }> = []
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    count++
    for (const w of waiters.filter(w => count >= w.n)) w.resolve()
  })
  servers.push({ server, sockets })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    connections: () => count,
    connection: async (n) => { if (count < n) await new Promise<void>(resolve => waiters.push({ n, resolve })) }
  }
}

afterEach(async () => {
  for (const { server, sockets } of servers.splice(0)) {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>(resolve => server.close(() => { resolve() }))
  }
})

/** Writes `total` bytes of `fill` as fast as the client reads them, and counts what went out. */
function pump (res: ServerResponse, total: number, fill = 0x61): { sent: () => number } {
  const chunk = Buffer.alloc(64 * 1024, fill)
  let sent = 0
  const more = (): void => {
    while (sent < total && !res.destroyed) {
      sent += chunk.length
      if (!res.write(chunk)) { res.once('drain', more); return }
    }
    if (!res.destroyed) res.end()
  }
  more()
  return { sent: () => sent }
}

/** globalThis.fetch, counting the (decoded) body bytes the client actually pulled. */
function countingFetch (): { fetch: typeof globalThis.fetch, pulled: () => number } {
  let pulled = 0
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const res = await globalThis.fetch(input, init)
    if (res.body === null) return res
    const reader = res.body.getReader()
    const body = new ReadableStream<Uint8Array>({
      async pull (controller) {
        const { done, value } = await reader.read()
        if (done) { controller.close(); return }
        pulled += value.byteLength
        controller.enqueue(value)
      },
      async cancel (reason) { await reader.cancel(reason) }
    })
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers })
  }
  return { fetch, pulled: () => pulled }
}

const CID_A = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
const NAME = 'k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w'

describe('bounded reads', () => {
  it('stops reading a 256 MiB block body at the 1 MiB block limit (UntrustedHubError naming the hub)', async () => {
    let sent = (): number => 0
    const hub = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw' }) // no length: chunked
      sent = pump(res, 256 * 1024 * 1024).sent
    })
    const counting = countingFetch()
    const store = hubStore(hub.url, { fetch: counting.fetch })
    const err = await store.getBlock(CID_A).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'UntrustedHubError' })
    expect((err as Error).message).toContain(hub.url)
    expect(counting.pulled()).toBeLessThanOrEqual(MAX_BLOCK_BYTES + 64 * 1024)
    expect(sent()).toBeLessThan(64 * 1024 * 1024)
  })

  it('refuses a declared Content-Length over the block limit before reading the body', async () => {
    const hub = await listen((_req, res) => {
      res.writeHead(200, { 'content-length': String(300 * 1024 * 1024) })
      pump(res, 300 * 1024 * 1024)
    })
    const counting = countingFetch()
    const err = await hubStore(hub.url, { fetch: counting.fetch }).getBlock(CID_A).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'UntrustedHubError' })
    expect(counting.pulled()).toBe(0)
  })

  it('caps a gzip bomb after decoding: a 255 KB body that inflates to 256 MiB costs at most the cap', async () => {
    // 16 gzip members of 16 MiB of zeros each (gunzip reads concatenated members): cheap to make.
    const member = gzipSync(Buffer.alloc(16 * 1024 * 1024), { level: 9 })
    const bomb = Buffer.concat(Array.from({ length: 16 }, () => member))
    expect(bomb.byteLength).toBeLessThan(300 * 1024)
    const hub = await listen((_req, res) => {
      res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': String(bomb.byteLength) })
      res.end(bomb)
    })
    const counting = countingFetch()
    const store = hubStore(hub.url, { fetch: counting.fetch })
    await expect(store.getRecord(NAME)).rejects.toMatchObject({ name: 'UntrustedHubError' })
    expect(counting.pulled()).toBeLessThanOrEqual(MAX_RECORD_BYTES + 64 * 1024)
    await expect(store.getBlock(CID_A)).rejects.toMatchObject({ name: 'UntrustedHubError' })
    expect(counting.pulled()).toBeLessThanOrEqual(MAX_RECORD_BYTES + MAX_BLOCK_BYTES + 128 * 1024)
  })

  it('returns a record of exactly 10 KiB and refuses one byte more', async () => {
    let size = MAX_RECORD_BYTES
    const hub = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/vnd.ipfs.ipns-record' })
      res.end(Buffer.alloc(size, 7))
    })
    const store = hubStore(hub.url)
    expect((await store.getRecord(NAME))?.byteLength).toBe(MAX_RECORD_BYTES)
    size = MAX_RECORD_BYTES + 1
    const err = await store.getRecord(NAME).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'UntrustedHubError' })
    expect((err as Error).message).toContain(`${MAX_RECORD_BYTES}-byte limit`)
  })

  it('reads at most a few KiB of a JSON answer or an error body', async () => {
    const counting = countingFetch()
    const big = await listen((req, res) => {
      res.writeHead(req.url?.startsWith('/api/v1/address/') === true ? 200 : 500, { 'content-type': 'application/json' })
      pump(res, 100 * 1024 * 1024, 0x20) // spaces: valid JSON whitespace, forever
    })
    const store = hubStore(big.url, { fetch: counting.fetch })
    await expect(store.lookupAddress(account(KEY_A).address)).rejects.toMatchObject({ name: 'UntrustedHubError' })
    expect(counting.pulled()).toBeLessThanOrEqual(MAX_JSON_RESPONSE_BYTES + 64 * 1024)
    // A 500 with a huge body: the refusal is known from the status; the body is not read whole.
    await expect(store.getBlock(CID_A)).rejects.toMatchObject({ name: 'StoreError' })
    expect(counting.pulled()).toBeLessThanOrEqual(2 * (MAX_JSON_RESPONSE_BYTES + 64 * 1024))
  })

  it('lets a hub name only the failures a hub can have, never a verdict on the wallet', async () => {
    const hub = await listen((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ name: 'NonDeterministicSignerError', message: 'your wallet is broken' }))
    })
    await expect(hubStore(hub.url).getRecord(NAME)).rejects.toMatchObject({ name: 'InvalidInputError' })
  })
})

describe('request timeout', () => {
  it('fails a call to a hub that accepts the connection and never answers with StoreError', async () => {
    const hub = await listen(() => { /* never answers */ })
    const store = hubStore(hub.url, { timeoutMs: 300 })
    const started = Date.now()
    const err = await store.getRecord(NAME).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'StoreError' })
    expect((err as Error).message).toContain(`${hub.url} did not answer within 300 ms`)
    expect(Date.now() - started).toBeLessThan(10_000)
  })

  it('bounds the body too: a hub that sends headers and then trickles one byte at a time', async () => {
    const timers: Array<ReturnType<typeof setInterval>> = []
    const hub = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw' })
      timers.push(setInterval(() => { res.write('x') }, 50))
    })
    try {
      await expect(hubStore(hub.url, { timeoutMs: 400 }).getBlock(CID_A)).rejects.toMatchObject({ name: 'StoreError' })
    } finally {
      for (const t of timers) clearInterval(t)
    }
  })

  it('reports the caller\'s own abort as AbortedError, not as the hub\'s fault', async () => {
    const hub = await listen(() => {})
    const controller = new AbortController()
    const pending = hubStore(hub.url).getRecord(NAME, { signal: controller.signal })
    await hub.connection(1)
    controller.abort()
    await expect(pending).rejects.toMatchObject({ name: 'AbortedError' })
  })

  it('defaults to a timeout that lets the CLI exit within a minute', () => {
    expect(DEFAULT_REQUEST_TIMEOUT_MS).toBeGreaterThan(0)
    expect(DEFAULT_REQUEST_TIMEOUT_MS).toBeLessThanOrEqual(30_000)
  })

  it('refuses a timeout that is not a positive number', () => {
    expect(() => hubStore('http://127.0.0.1:1', { timeoutMs: 0 })).toThrow(expect.objectContaining({ name: 'InvalidInputError' }))
    expect(() => hubStore('http://127.0.0.1:1', { timeoutMs: Number.NaN })).toThrow(expect.objectContaining({ name: 'InvalidInputError' }))
  })
})

/** A stream that yields `chunk` forever and counts what was pulled. */
function endless (chunk: string): { stream: ReadableStream<Uint8Array>, pulled: () => number } {
  const bytes = new TextEncoder().encode(chunk)
  let pulled = 0
  return {
    stream: new ReadableStream<Uint8Array>({ pull (c) { pulled += bytes.byteLength; c.enqueue(bytes) } }),
    pulled: () => pulled
  }
}

describe('event streams', () => {
  it('ends a stream whose line never ends (TooLargeError) after reading about one line\'s cap', async () => {
    const { stream, pulled } = endless('x'.repeat(4096))
    const events = readEvents(stream)
    await expect(events.next()).rejects.toMatchObject({ name: 'TooLargeError' })
    expect(pulled()).toBeLessThanOrEqual(MAX_EVENT_LINE_CHARS + 8192)
  })

  it('refuses a finished line over the cap that arrives in one chunk', async () => {
    const bytes = new TextEncoder().encode(`data: ${'x'.repeat(MAX_EVENT_LINE_CHARS)}\n\n`)
    const stream = new ReadableStream<Uint8Array>({ start (c) { c.enqueue(bytes); c.close() } })
    await expect(readEvents(stream, { maxEventChars: 10 * MAX_EVENT_LINE_CHARS }).next()).rejects.toMatchObject({ name: 'TooLargeError' })
  })

  it('ends a stream whose event never ends (endless short data lines)', async () => {
    const { stream, pulled } = endless('data: AAAA\n')
    await expect(readEvents(stream).next()).rejects.toMatchObject({ name: 'TooLargeError' })
    // Each 11-byte line adds 5 characters of data: the event cap is reached after ~36 KiB of lines.
    expect(pulled()).toBeLessThanOrEqual(3 * MAX_EVENT_LINE_CHARS)
  })

  it('still parses events split anywhere, CRLF included, and a full-size record event', async () => {
    const record = 'A'.repeat(13_656)
    const text = `retry: 1500\r\nevent: record\r\ndata: ${record}\r\n\r\n: keepalive\n\nevent: ready\ndata: x\n\n`
    const bytes = new TextEncoder().encode(text)
    let i = 0
    const stream = new ReadableStream<Uint8Array>({
      pull (c) {
        if (i >= bytes.length) { c.close(); return }
        c.enqueue(bytes.slice(i, i + 7)); i += 7
      }
    })
    const got = []
    for await (const e of readEvents(stream)) got.push(e)
    expect(got).toEqual([
      { event: 'record', data: record, id: undefined, retry: 1500 },
      { event: 'ready', data: 'x', id: undefined, retry: undefined }
    ])
  })

  it('ends a silent stream after idleMs (StoreError)', async () => {
    const stream = new ReadableStream<Uint8Array>({ pull: async () => await new Promise(() => {}) })
    await expect(readEvents(stream, { idleMs: 100 }).next()).rejects.toMatchObject({ name: 'StoreError' })
  })

  it('drops and reconnects a live subscription whose hub sends an endless line', async () => {
    const sent: Array<() => number> = []
    const hub = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      sent.push(pump(res, 1024 * 1024 * 1024).sent)
    })
    const stop = hubStore(hub.url, { reconnectMinMs: 10, reconnectMaxMs: 20 }).subscribe(NAME, () => {})
    try {
      await hub.connection(3)
    } finally {
      stop()
    }
    // Each connection was dropped after about one line's cap, plus what sat in socket buffers.
    for (const s of sent.slice(0, 2)) expect(s()).toBeLessThan(32 * 1024 * 1024)
  })

  it('backs off ever longer from a hub that answers and then sends only garbage', async () => {
    const times: number[] = []
    let sixth = (): void => {}
    const sixRequests = new Promise<void>(resolve => { sixth = resolve })
    const hub = await listen((_req, res) => {
      if (times.push(Date.now()) === 6) sixth()
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      pump(res, 1024 * 1024)
    })
    const stop = hubStore(hub.url, { reconnectMinMs: 100, reconnectMaxMs: 10_000 }).subscribe(NAME, () => {})
    try {
      await sixRequests
    } finally {
      stop()
    }
    // Delays double from 100 ms with jitter of half: at least 50 + 100 + 200 + 400 + 800 ms in all
    // (restarting the backoff on every answer would take five times 50–100 ms).
    expect((times[5] as number) - (times[0] as number)).toBeGreaterThanOrEqual(1400)
  })

  it('reconnects a subscription whose hub never sends headers, or falls silent', async () => {
    const silentHeaders = await listen(() => {})
    const stopA = hubStore(silentHeaders.url, { timeoutMs: 100, reconnectMinMs: 10, reconnectMaxMs: 20 }).subscribe(NAME, () => {})
    const silentBody = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(': hello\n\n')
    })
    const stopB = hubStore(silentBody.url, { eventsIdleMs: 100, reconnectMinMs: 10, reconnectMaxMs: 20 }).subscribe(NAME, () => {})
    try {
      await Promise.all([silentHeaders.connection(2), silentBody.connection(2)])
    } finally {
      stopA()
      stopB()
    }
  })
})

/** A real hub (createHubApp over node:http) whose address index can be made to lie. */
async function lyingHub (): Promise<{ url: string, lies: Map<string, unknown> }> {
  const app = createHubApp({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() }, { rateLimit: 0 })
  const lies = new Map<string, unknown>()
  const server = serve({
    hostname: '127.0.0.1',
    port: 0,
    fetch: async (req: Request) => {
      const path = new URL(req.url).pathname
      const match = /^\/api\/v1\/address\/(0x[0-9a-fA-F]{40})$/.exec(path)
      const lie = match === null ? undefined : lies.get((match[1] as string).toLowerCase())
      if (lie !== undefined) return Response.json(lie)
      return await app.fetch(req)
    }
  }) as Server
  const sockets = new Set<Socket>()
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  servers.push({ server, sockets })
  await new Promise<void>(resolve => server.listening ? resolve() : server.once('listening', () => { resolve() }))
  const { port } = server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}`, lies }
}

describe('a hub that lies about the address index', () => {
  it('is named, not the wallet: openSpace, readPublic and inspect fail with UntrustedHubError', async () => {
    const hub = await lyingHub()
    const bob = await openSpace({ signer: account(KEY_B), hub: hub.url })
    await bob.public.set('nick', 'bob')
    await bob.flush()
    await bob.close()
    const alice = account(KEY_A)
    hub.lies.set(alice.address.toLowerCase(), { address: alice.address, name: bob.name })

    const err = await openSpace({ signer: alice, hub: hub.url }).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'UntrustedHubError' })
    expect((err as Error).message).toContain(hub.url)
    expect((err as Error).message).toContain(bob.address)
    await expect(readPublic({ address: alice.address, hub: hub.url })).rejects.toMatchObject({ name: 'UntrustedHubError' })

    const lines: string[] = []
    const io: CliIO = { out: l => lines.push(l), err: l => lines.push(l), env: {}, stopSignal: async () => await new Promise(() => {}) }
    expect(await main(['inspect', alice.address, '--hub', hub.url], io)).toBe(EXIT_CODE.UntrustedHubError)
    expect(EXIT_CODE.UntrustedHubError).toBe(10)
  })

  it('is named when it points at a name it has no record of, or answers with no valid name', async () => {
    const hub = await lyingHub()
    const alice = account(KEY_A)
    hub.lies.set(alice.address.toLowerCase(), { address: alice.address, name: NAME })
    await expect(openSpace({ signer: alice, hub: hub.url })).rejects.toMatchObject({ name: 'UntrustedHubError' })
    hub.lies.set(alice.address.toLowerCase(), { address: alice.address, name: 'not a name' })
    await expect(hubStore(hub.url).lookupAddress(alice.address)).rejects.toMatchObject({ name: 'UntrustedHubError' })
  })

  it('checks a binding signature sent with the answer, and needs no further request when it holds', async () => {
    const hub = await lyingHub()
    const alice = account(KEY_A)
    const bob = account(KEY_B)
    const other = nameOfKey(await generateKeyPair('Ed25519'))
    const sign = async (who: typeof alice, name: string): Promise<string> => await who.signMessage({ message: ownerStatement(who.address, name) })
    // Bob's genuine binding of his own name, offered as proof that Alice owns it.
    hub.lies.set(alice.address.toLowerCase(), { address: alice.address, name: other, signature: await sign(bob, other) })
    await expect(hubStore(hub.url).lookupAddress(alice.address)).rejects.toMatchObject({ name: 'UntrustedHubError' })
    hub.lies.set(alice.address.toLowerCase(), { address: alice.address, name: other, signature: 'zz' })
    await expect(hubStore(hub.url).lookupAddress(alice.address)).rejects.toMatchObject({ name: 'UntrustedHubError' })
    // Alice's genuine binding of a name the hub holds no record of: the signature alone is the proof.
    hub.lies.set(alice.address.toLowerCase(), { address: alice.address, name: other, signature: await sign(alice, other) })
    let requests = 0
    const store = hubStore(hub.url, { fetch: async (input, init) => { requests++; return await globalThis.fetch(input, init) } })
    expect(await store.lookupAddress(alice.address)).toBe(other)
    expect(requests).toBe(1)
  })

  it('still blames a wallet that really signs two ways: an index entry the owner binding confirms', async () => {
    const hub = await lyingHub()
    // Another space, really bound by the same wallet: what a non-deterministic wallet leaves behind.
    const alice = account(KEY_A)
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const priv = await rawBlock(new Uint8Array(32))
    const binding = await encodeOwner({ address: alice.address, signature: hexToBytes(await alice.signMessage({ message: ownerStatement(alice.address, name) })) })
    const pub = await encodeCurrent({ buckets: 1, private: priv.cid, public: null, clock: null, owner: binding.cid })
    const root = await encodeRoot({
      version: 2,
      sequence: 1,
      parents: [],
      updatedAt: Date.now(),
      device: 'other',
      public: null,
      current: pub.cid
    })
    const store = hubStore(hub.url)
    await store.putBlocks([root, pub, binding, priv])
    await store.putRecord(name, await createRecord(key, root.cid, 1))
    expect(await store.lookupAddress(alice.address)).toBe(name)
    await expect(openSpace({ signer: alice, hub: hub.url })).rejects.toMatchObject({ name: 'NonDeterministicSignerError' })
  })
})

describe('userspace on a hub that never answers', () => {
  function io (env: Record<string, string>): CliIO & { lines: string[] } {
    const lines: string[] = []
    return { lines, out: l => lines.push(l), err: l => lines.push(l), env, stopSignal: async () => await new Promise(() => {}) }
  }

  it('exits 8 (StoreError) after USERSPACE_TIMEOUT_MS, for ls and for inspect', async () => {
    const hub = await listen(() => {})
    const env = { USERSPACE_PRIVATE_KEY: KEY_A, USERSPACE_TIMEOUT_MS: '300' }
    const ls = io(env)
    expect(await main(['ls', '--hub', hub.url], ls)).toBe(8)
    expect(ls.lines.join('\n')).toMatch(/did not answer within 300 ms \(StoreError\)/)
    expect(await main(['inspect', account(KEY_A).address, '--hub', hub.url], io(env))).toBe(8)
    expect(await main(['ls', '--hub', hub.url], io({ ...env, USERSPACE_TIMEOUT_MS: 'soon' }))).toBe(2)
  })

  it('export --avatar stops at USERSPACE_MAX_CAR_BYTES (exit 10) and at the timeout (exit 8), writing no file', async () => {
    const big = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/vnd.ipld.car' })
      pump(res, 64 * 1024 * 1024)
    })
    const silent = await listen(() => {})
    const dir = await mkdtemp(join(tmpdir(), 'userspace-hostile-'))
    try {
      const out = join(dir, 'avatar.car')
      const args = (hub: string): string[] => ['export', '--avatar', '0x02d7', '-o', out, '--hub', hub]
      expect(await main(args(big.url), io({ USERSPACE_MAX_CAR_BYTES: '65536' }))).toBe(EXIT_CODE.UntrustedHubError)
      expect(await main(args(silent.url), io({ USERSPACE_TIMEOUT_MS: '300' }))).toBe(8)
      expect(await stat(out).then(() => true, () => false)).toBe(false)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('exits 8 within a minute with the default timeout, as a real process', async () => {
    const hub = await listen(() => {})
    const started = Date.now()
    const result = await runCli(['ls', '--hub', hub.url], { USERSPACE_PRIVATE_KEY: KEY_A })
    expect(result.code).toBe(8)
    expect(Date.now() - started).toBeLessThan(60_000)
    expect(result.stderr).toContain('StoreError')
  }, 70_000)
})

describe('a block no hub can have', () => {
  it('is not asked for when its CID carries a digest over 64 bytes (a stranger\'s link): NotFoundError, no request', async () => {
    let requests = 0
    const fetchSpy: typeof fetch = async (input, init) => { requests++; return await fetch(input, init) }
    const store = makeHubStore('http://127.0.0.1:9', { fetch: fetchSpy })
    const long = CID.createV1(0x55, createDigest(0x12, new Uint8Array(256 * 1024).fill(1)))
    await expect(store.getBlock(long, { signal: AbortSignal.timeout(5_000) })).rejects.toMatchObject({ name: 'NotFoundError', message: 'block <CID of 262150 bytes, multihash 0x12> not found: no block has a digest that long' })
    expect(requests).toBe(0)
  })
})

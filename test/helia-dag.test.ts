/**
 * A version's whole state in one libp2p round trip (DAG_PROTOCOL, src/store/helia-dag.ts): a new
 * node reads it from a connected peer without bitswap; a lying or stalling peer is refused and the
 * read falls back to bitswap; the server answers strangers within its bounds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { encode as encodeVarint } from 'uint8-varint'
import { memoryState, openSpace } from '../src/index.js'
import { cborBlock, encodeCar, rawBlock } from '../src/store/blocks.js'
import { DAG_PROTOCOL, MAX_DAG_REQUEST_BYTES, dagRequestPath, fetchDag, serveDags } from '../src/store/helia-dag.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { heliaStore } from '../src/store/helia.js'
import { account } from './helpers/signers.js'
import type { Block, Store } from '../src/store/interface.js'
import type { HeliaNode } from '../src/store/helia-node.js'
import type { Stream } from '@libp2p/interface'

const KEYS = 400
const value = (i: number): string => `value ${i} ${'x'.repeat(60)}`
const peersOf = (node: HeliaNode): string[] => node.libp2p.getMultiaddrs().map(String).filter(a => !a.includes('/ws'))
const cids = (blocks: Block[] | undefined): string[] => (blocks ?? []).map(b => b.cid.toString()).sort()

/**
 * Makes `node` send no block by bitswap, but those in `except` (its blockstore answers only reads
 * marked offline, as the DAG server's are). Returns a function that undoes it.
 */
function silenceBitswap (node: HeliaNode, except: CID[] = []): () => void {
  const original = node.blockstore.get
  const get = original.bind(node.blockstore)
  node.blockstore.get = ((cid: CID, options?: { offline?: boolean }) => {
    if (options?.offline === true || except.some(c => c.equals(cid))) return get(cid, options as Parameters<typeof get>[1])
    // eslint-disable-next-line require-yield
    return (async function * () { throw Object.assign(new Error('no bitswap here'), { name: 'NotFoundError' }) })()
  }) as typeof node.blockstore.get
  return () => { node.blockstore.get = original }
}

/** Sends `request` on a new DAG_PROTOCOL stream to `to` and reads the whole answer: status and rest, or 'reset'. */
async function rawAsk (from: HeliaNode, to: HeliaNode, request: Uint8Array, options: { close?: boolean } = {}): Promise<{ status: number, body: Uint8Array } | 'reset'> {
  const stream = await from.libp2p.dialProtocol(to.libp2p.peerId, DAG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
  if (request.byteLength > 0) stream.send(request)
  if (options.close !== false) await stream.close()
  const parts: Uint8Array[] = []
  try {
    for await (const chunk of stream) parts.push(chunk instanceof Uint8Array ? chunk : chunk.subarray())
  } catch {
    return 'reset'
  }
  if (stream.status === 'reset' || stream.status === 'aborted') return 'reset'
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const p of parts) { all.set(p, offset); offset += p.byteLength }
  if (all.byteLength === 0) return 'reset'
  // Statuses here are all two-byte varints (≥ 128).
  return { status: ((all[0] as number) & 0x7f) | ((all[1] as number) << 7), body: all.subarray(2) }
}

function request (path: string): Uint8Array {
  const bytes = new TextEncoder().encode(path)
  const out = new Uint8Array(encodeVarint(bytes.byteLength).byteLength + bytes.byteLength)
  out.set(encodeVarint(bytes.byteLength))
  out.set(bytes, out.byteLength - bytes.byteLength)
  return out
}

describe('a version in one DAG_PROTOCOL answer', () => {
  let holder: HeliaNode
  let root: CID
  let expected: Block[]
  const signer = account()
  const started: HeliaNode[] = []
  const newNode = async (peers: HeliaNode): Promise<HeliaNode> => {
    const node = await createHeliaNode({ peers: peersOf(peers) })
    started.push(node)
    return node
  }

  beforeAll(async () => {
    holder = await createHeliaNode({ dhtServer: true })
    const writer = await openSpace({ signer, store: heliaStore(holder), state: memoryState() })
    const patch: Record<string, string> = {}
    for (let i = 0; i < KEYS; i++) patch[`key${i}`] = value(i)
    await writer.patch(patch)
    await writer.flush()
    root = writer.root as CID
    await writer.close()
    expected = await heliaStore(holder).getDag?.(root, { path: 'current' }) ?? []
  }, 60_000)

  afterAll(async () => {
    await Promise.all(started.map(stopHeliaNode))
    if (holder !== undefined) await stopHeliaNode(holder)
  })

  it('holds a root, index nodes and buckets', () => {
    expect(expected.length).toBeGreaterThan(8)
  })

  it('a new node reads the whole state from a connected peer that sends nothing by bitswap, and keeps the blocks', async () => {
    const silent = await createHeliaNode({ dhtServer: true })
    started.push(silent)
    await heliaStore(silent).putBlocks(expected)
    silenceBitswap(silent)
    const reader = await newNode(silent)
    const store = heliaStore(reader, { fetchTimeoutMs: 5_000 })
    expect(cids(await store.getDag?.(root, { path: 'current' }))).toEqual(cids(expected))
    await (store as unknown as { fetchedWrites: Promise<void> }).fetchedWrites
    for (const block of expected) expect(await reader.blockstore.has(block.cid)).toBe(true)

    // Without the protocol, bitswap is the only way, and the silent peer gives nothing.
    const other = await newNode(silent)
    await expect(heliaStore(other, { dagPeers: 0, fetchTimeoutMs: 1_000 }).getDag?.(root, { path: 'current' })).rejects.toMatchObject({ name: 'NotFoundError' })
  }, 60_000)

  it('a space opens on a new node with every key, its state in one answer', async () => {
    const reader = await newNode(holder)
    const space = await openSpace({ signer, store: heliaStore(reader), state: memoryState(), signal: AbortSignal.timeout(30_000) })
    expect((await space.keys()).length).toBe(KEYS)
    expect(await space.get(`key${KEYS - 1}`)).toBe(value(KEYS - 1))
    await space.close()
  }, 60_000)

  it('a node not connected to the holder gets the root by bitswap from the provider the DHT names, and the rest from it in one answer', async () => {
    const middle = await createHeliaNode({ dhtServer: true, peers: peersOf(holder) })
    started.push(middle)
    const far = await createHeliaNode({ dhtServer: true, peers: peersOf(middle) })
    started.push(far)
    // Announced now that the holder has a DHT peer to tell.
    await holder.routing.provide(root, { signal: AbortSignal.timeout(10_000) })
    const restore = silenceBitswap(holder, [root])
    try {
      const got = await heliaStore(far, { fetchTimeoutMs: 10_000 }).getDag?.(root, { path: 'current' })
      expect(cids(got)).toEqual(cids(expected))
    } finally {
      restore()
    }
  }, 60_000)

  describe('answers from a lying peer are refused whole, and the read falls back to bitswap', () => {
    let liar: HeliaNode
    let reply: (stream: Stream) => Promise<void>
    const car = (blocks: Block[], roots?: CID[]): Uint8Array => {
      const body = encodeCar(blocks, roots)
      const out = new Uint8Array(2 + body.byteLength)
      out.set(encodeVarint(200))
      out.set(body, 2)
      return out
    }
    const send = (bytes: Uint8Array) => async (stream: Stream): Promise<void> => {
      for await (const _ of stream) break // the request
      stream.send(bytes)
      await stream.close()
    }

    beforeAll(async () => {
      liar = await createHeliaNode({ dhtServer: true })
      started.push(liar)
      // The liar holds the real blocks (bitswap serves them) but answers DAG requests its own way.
      await heliaStore(liar, { serveDags: false }).putBlocks(expected)
      await liar.libp2p.handle(DAG_PROTOCOL, (stream) => { reply(stream).catch((err: Error) => { stream.abort(err) }) })
    })

    const cases: Array<[string, () => (stream: Stream) => Promise<void>, string]> = [
      ['a block that does not match its CID', () => {
        const tampered = expected.map((b, i) => i === expected.length - 1 ? { cid: b.cid, bytes: b.bytes.map((x, j) => j === 0 ? x ^ 1 : x) } : b)
        return send(car(tampered, [root]))
      }, 'IntegrityError'],
      ['an answer without the requested root', () => send(car(expected.slice(1), [root])), 'IntegrityError'],
      ['an answer for another root', () => send(car(expected, [(expected[1] as Block).cid])), 'IntegrityError'],
      ['more blocks than asked for', () => send(car([...expected, ...expected], [root])), 'TooLargeError'],
      ['a refusal', () => send(new Uint8Array([...encodeVarint(404), ...new TextEncoder().encode('not here')])), 'NotFoundError'],
      ['no answer at all', () => async (stream) => { for await (const _ of stream) { /* never answers */ } }, 'AbortedError']
    ]
    for (const [what, make, name] of cases) {
      it(`${what}: ${name}`, async () => {
        reply = make()
        // A new reader each time: it holds none of the blocks.
        const reader = await newNode(liar)
        const maxBlocks = what === 'more blocks than asked for' ? expected.length + 2 : 8192
        const err = await fetchDag(reader.libp2p, liar.libp2p.peerId, root, 'current', { signal: AbortSignal.timeout(what === 'no answer at all' ? 500 : 10_000), maxBlocks, maxBytes: 1 << 20 }).then(() => undefined, (e: Error) => e)
        expect(err?.name).toBe(name)
        // The store reads through bitswap instead, whatever the liar sent.
        // A stalled answer costs the DAG attempt its fetchTimeoutMs; the same bound then holds each bitswap block.
        const store = heliaStore(reader, { fetchTimeoutMs: what === 'no answer at all' ? 3_000 : 10_000 })
        const got = await store.getDag?.(root, { path: 'current' })
        expect(cids(got)).toEqual(cids(expected))
        for (const block of got ?? []) expect(block.bytes).toEqual(expected.find(b => b.cid.equals(block.cid))?.bytes)
      }, 30_000)
    }

    it('an answer over the byte cap: TooLargeError', async () => {
      reply = send(car(expected, [root]))
      const reader = await newNode(liar)
      await expect(fetchDag(reader.libp2p, liar.libp2p.peerId, root, 'current', { signal: AbortSignal.timeout(10_000), maxBlocks: 8192, maxBytes: 2048 }))
        .rejects.toMatchObject({ name: 'TooLargeError' })
    })
  })

  describe('the server, asked by a stranger', () => {
    let server: HeliaNode
    let stranger: HeliaNode
    let big: Block
    let small: Block
    const leaves: Block[] = []

    beforeAll(async () => {
      server = await createHeliaNode({ dhtServer: true })
      started.push(server)
      await serveDags(server, { maxBlocks: 8, requestTimeoutMs: 300 })
      const store: Store = heliaStore(server)
      for (let i = 0; i < 10; i++) leaves.push(await rawBlock(new Uint8Array([i, 7, 7])))
      big = await cborBlock({ leaves: leaves.map(l => l.cid) })
      small = await cborBlock({ leaves: leaves.slice(0, 3).map(l => l.cid) })
      await store.putBlocks([...leaves, big, small])
      stranger = await newNode(server)
    })

    it('answers a whole DAG within its caps: 200 and a CAR', async () => {
      const answer = await rawAsk(stranger, server, request(dagRequestPath(small.cid)))
      expect(answer).toMatchObject({ status: 200 })
      expect(cids(await fetchDag(stranger.libp2p, server.libp2p.peerId, small.cid, undefined, { signal: AbortSignal.timeout(10_000), maxBlocks: 8, maxBytes: 1 << 20 })))
        .toEqual(cids([small, ...leaves.slice(0, 3)]))
    })

    it('refuses a DAG that links a CID with a 512 KiB digest (a missing block: reset past the root), without asking its blockstore for it', async () => {
      const long = CID.createV1(raw.code, createDigest(sha256.code, new Uint8Array(512 * 1024).fill(8)))
      const linking = await cborBlock({ long })
      await heliaStore(server, { serveDags: false }).putBlocks([linking])
      const asked: number[] = []
      const get = server.blockstore.get.bind(server.blockstore)
      server.blockstore.get = ((cid: CID, options?: unknown) => { asked.push(cid.bytes.length); return get(cid, options as never) }) as typeof server.blockstore.get
      try {
        expect(await rawAsk(stranger, server, request(dagRequestPath(linking.cid)))).toBe('reset')
        expect(asked.length).toBeGreaterThan(0)
        expect(asked.filter(n => n > 64)).toEqual([])
      } finally {
        server.blockstore.get = get
      }
    })

    it('refuses a DAG over its block cap (413), a CID it lacks (404) and a request it does not serve (400)', async () => {
      expect(await rawAsk(stranger, server, request(dagRequestPath(big.cid)))).toMatchObject({ status: 413 })
      const missing = await rawBlock(new Uint8Array([1, 2, 3, 4, 5]))
      expect(await rawAsk(stranger, server, request(dagRequestPath(missing.cid)))).toMatchObject({ status: 404 })
      expect(await rawAsk(stranger, server, request(`/ipfs/${big.cid.toString()}?format=raw`))).toMatchObject({ status: 400 })
      expect(await rawAsk(stranger, server, request('/ipfs/not-a-cid?format=car&dag-scope=all'))).toMatchObject({ status: 400 })
    })

    it('answers one stranger at a time at maxStreams 1 (503 to the next), and cuts off one that stops reading at its deadline', async () => {
      const busy = await createHeliaNode({ dhtServer: true })
      started.push(busy)
      await serveDags(busy, { maxStreams: 1, timeoutMs: 1_000 })
      // 40 blocks of 256 KiB: far more than the connection's buffers hold for a reader that stops.
      const large = await Promise.all(Array.from({ length: 40 }, async (_, i) => rawBlock(new Uint8Array(256 * 1024).fill(i))))
      const top = await cborBlock({ large: large.map(b => b.cid) })
      await heliaStore(busy).putBlocks([...large, top])
      const stalled = await newNode(busy)
      const other = await newNode(busy)
      const stream = await stalled.libp2p.dialProtocol(busy.libp2p.peerId, DAG_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      stream.maxReadBufferLength = Number.MAX_SAFE_INTEGER
      stream.pause()
      stream.send(request(dagRequestPath(top.cid)))
      await stream.close()
      const closed = new Promise<void>((resolve) => { stream.addEventListener('close', () => { resolve() }, { once: true }) })
      // The stalled answer holds the only slot: the other peer is turned away until it ends.
      let first: Awaited<ReturnType<typeof rawAsk>> = 'reset'
      for (let i = 0; i < 50 && (first === 'reset' || first.status !== 503); i++) {
        first = await rawAsk(other, busy, request(dagRequestPath(top.cid)))
        if (first !== 'reset' && first.status === 200) break
      }
      expect(first).toMatchObject({ status: 503 })
      // The deadline resets the stalled stream and frees the slot.
      await closed
      expect(stream.status).not.toBe('closed')
      let next: Awaited<ReturnType<typeof rawAsk>> = 'reset'
      for (let i = 0; i < 50 && (next === 'reset' || next.status !== 200); i++) next = await rawAsk(other, busy, request(dagRequestPath(top.cid)))
      expect(next).toMatchObject({ status: 200 })
    }, 60_000)

    it('resets a stream whose request is over the size limit, or does not come in time', async () => {
      expect(await rawAsk(stranger, server, request('/' + 'a'.repeat(MAX_DAG_REQUEST_BYTES + 1)))).toBe('reset')
      // Half a request, and the stream left open: the server's request deadline ends it.
      expect(await rawAsk(stranger, server, request(dagRequestPath(big.cid)).subarray(0, 10), { close: false })).toBe('reset')
    })
  })
})

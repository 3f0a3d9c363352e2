/**
 * The helia Store on real libp2p nodes on loopback: records through the LAN DHT, blocks through
 * bitswap, persistence across a restart, and the bounds that keep a missing block or a lonely node
 * from hanging a caller. Every node listens on 127.0.0.1 port 0 and is stopped by the test that
 * started it.
 */
import { startHeliaPair, stopHeliaPair } from './helpers/helia-pair.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ipns } from '@helia/ipns'
import { privateKeyToAccount } from 'viem/accounts'
import { createHeliaLight } from 'helia'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openSpace } from '../src/index.js'
import { cborBlock, rawBlock } from '../src/store/blocks.js'
import { createHeliaNode, stopHeliaNode, waitForDhtPeer } from '../src/store/helia-node.js'
import { heliaStore } from '../src/store/helia.js'
import { createRecord, nameOfKey, nameToMultihash, readRecord } from '../src/store/record.js'
import { multihashToIPNSRoutingKey } from 'ipns'
import { base64url } from 'multiformats/bases/base64'
import type { Json, Space } from '../src/index.js'
import type { Block } from '../src/store/interface.js'
import type { HeliaNode } from '../src/store/helia-node.js'
import { ipnsKeySource } from './helpers/ipns-key.js'
import { lineForSuite, nodeForSuite } from './helpers/helia-pair.js'

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)

/** Test wallets (well-known development keys; viem's test suite uses the first). */
const KEY_A = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
const KEY_B = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
const KEY_C = '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a'

/** A fresh Ed25519 IPNS key per call, deterministic across runs. */
const ipnsKey = ipnsKeySource(0xa5)

/** Two raw blocks and a dag-cbor root linking them, like a small space. */
async function sampleBlocks (label: string): Promise<{ root: Block, blocks: Block[] }> {
  const a = await rawBlock(utf8(`${label}: bucket a`))
  const b = await rawBlock(utf8(`${label}: bucket b`))
  const root = await cborBlock({ label, buckets: [a.cid, b.cid] })
  return { root, blocks: [a, b, root] }
}

/** Node 3 is connected to node 2 only, node 2 to node 1: what node 3 reads comes by DHT and bitswap. */
describe('heliaStore on three nodes in a line', () => {
  let node1: HeliaNode
  let node2: HeliaNode
  let node3: HeliaNode
  lineForSuite({ thirdDhtServer: true }, (nodes) => { [node1, node2, node3] = nodes })

  it('listens on loopback only', () => {
    for (const node of [node1, node2, node3]) {
      const addresses = node.libp2p.getMultiaddrs().map(String)
      expect(addresses.some(a => a.includes('/tcp/') && !a.includes('/ws'))).toBe(true)
      expect(addresses.some(a => a.includes('/ws'))).toBe(true)
      for (const address of addresses) expect(address.startsWith('/ip4/127.0.0.1/tcp/')).toBe(true)
    }
  })

  it('reads on node 3 the record and blocks put on node 1', async () => {
    const { key, name } = await ipnsKey()
    const { root, blocks } = await sampleBlocks('line')
    const record = await createRecord(key, root.cid, 1)
    const store1 = heliaStore(node1)
    await store1.putBlocks(blocks, { signal: AbortSignal.timeout(5000) })
    await store1.putRecord(name, record, { signal: AbortSignal.timeout(5000) })

    // Node 3 was only given node 2, but its DHT self-query soon connects it to the peers node 2
    // knows; hang up so that the read must find node 1 again through the DHT. Node 2 never had the
    // blocks, so bitswap can only get them from node 1.
    // Node 1's DHT put and provides, still going on in the background under load, may dial node 3
    // again right after a hang-up: hang up until the connection stays down (a bounded number of times).
    for (let tries = 0; tries < 20; tries++) {
      await node3.libp2p.hangUp(node1.libp2p.peerId)
      await new Promise(resolve => setTimeout(resolve, 100))
      if (node3.libp2p.getConnections(node1.libp2p.peerId).length === 0) break
    }
    expect(node3.libp2p.getConnections(node1.libp2p.peerId)).toHaveLength(0)
    for (const block of blocks) expect(await node2.blockstore.has(block.cid)).toBe(false)

    const store3 = heliaStore(node3)
    const got = await store3.getRecord(name, { nocache: true, signal: AbortSignal.timeout(5000) })
    expect(got).toEqual(record)
    for (const block of blocks) {
      expect(await store3.getBlock(block.cid, { signal: AbortSignal.timeout(5000) })).toEqual(block.bytes)
    }
    // Node 3 now holds them and serves them itself.
    expect(await node3.blockstore.has(root.cid)).toBe(true)
    expect(await node2.blockstore.has(root.cid)).toBe(false)
  })

  it('resolves through a stock @helia/ipns on another node', async () => {
    const { key, name } = await ipnsKey()
    const { root, blocks } = await sampleBlocks('stock')
    const store1 = heliaStore(node1)
    await store1.putBlocks(blocks)
    await store1.putRecord(name, await createRecord(key, root.cid, 7))

    const values: string[] = []
    for await (const result of ipns(node3).resolve(key.publicKey.toCID(), { nocache: true, signal: AbortSignal.timeout(5000) })) {
      values.push(result.value)
    }
    expect(values).toEqual([`/ipfs/${root.cid.toString()}`])
  })

  it('lets a higher sequence replace a record everywhere and never a lower one', async () => {
    const { key, name } = await ipnsKey()
    const { root: first } = await sampleBlocks('v1')
    const { root: second } = await sampleBlocks('v2')
    const store1 = heliaStore(node1)
    const store3 = heliaStore(node3)
    const v1 = await createRecord(key, first.cid, 1)
    const v2 = await createRecord(key, second.cid, 2)
    await store1.putRecord(name, v1)
    expect(await store3.getRecord(name, { nocache: true })).toEqual(v1)

    await store3.putRecord(name, v2)
    expect(await store1.getRecord(name, { nocache: true })).toEqual(v2)

    // The stale record is refused as a lost race (a conditional write) and changes nothing: node 1
    // keeps the newer one, and node 3 still resolves it.
    await expect(store1.putRecord(name, v1)).rejects.toMatchObject({ name: 'ConflictError' })
    expect(await store1.getRecord(name)).toEqual(v2)
    expect(await store3.getRecord(name, { nocache: true })).toEqual(v2)
    expect(readRecord(await store1.getRecord(name, { nocache: true }) ?? new Uint8Array()).sequence).toBe(2n)
  })

  it('answers from the local record within its TTL unless told nocache', async () => {
    // A DHT client: DHT servers (nodes 1–3) would receive the newer record by the DHT put itself.
    const client = await createHeliaNode({ peers: node2.libp2p.getMultiaddrs().map(String) })
    try {
      const { key, name } = await ipnsKey()
      const { root: first } = await sampleBlocks('ttl1')
      const { root: second } = await sampleBlocks('ttl2')
      const store1 = heliaStore(node1)
      const store4 = heliaStore(client)
      const sequence = async (options = {}): Promise<bigint | undefined> => {
        const bytes = await store4.getRecord(name, options)
        return bytes === undefined ? undefined : readRecord(bytes).sequence
      }
      // putRecord stores locally and puts to the DHT in the background: wait until the DHT has it.
      await store1.putRecord(name, await createRecord(key, first.cid, 1))
      await expect.poll(async () => sequence({ nocache: true }), { timeout: 5000, interval: 50 }).toBe(1n)

      await store1.putRecord(name, await createRecord(key, second.cid, 2))
      // Cached (TTL 5 min): the plain read does not go to the network…
      expect(await sequence()).toBe(1n)
      await expect.poll(async () => sequence({ nocache: true }), { timeout: 5000, interval: 50 }).toBe(2n)
      // …and the newer record is now the cached one.
      expect(await sequence()).toBe(2n)
    } finally {
      await stopHeliaNode(client)
    }
  })

  it('returns undefined for a name nobody published', async () => {
    const { name } = await ipnsKey()
    const started = Date.now()
    expect(await heliaStore(node3).getRecord(name, { nocache: true, signal: AbortSignal.timeout(5000) })).toBeUndefined()
    expect(Date.now() - started).toBeLessThan(4000)
  })

  it('fails a block missing everywhere with NotFoundError within the caller\'s signal', async () => {
    const missing = await rawBlock(utf8(`nobody has this ${Math.random()}`))
    const started = Date.now()
    await expect(heliaStore(node3).getBlock(missing.cid, { signal: AbortSignal.timeout(1000) }))
      .rejects.toMatchObject({ name: 'NotFoundError' })
    const elapsed = Date.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(900)
    expect(elapsed).toBeLessThan(2000)
  })

  it('bounds a missing block by fetchTimeoutMs when the caller gives no signal', async () => {
    const missing = await rawBlock(utf8(`nobody has this either ${Math.random()}`))
    const started = Date.now()
    await expect(heliaStore(node3, { fetchTimeoutMs: 300 }).getBlock(missing.cid)).rejects.toMatchObject({ name: 'NotFoundError' })
    expect(Date.now() - started).toBeLessThan(1500)
  })

  it('throws AbortedError for a signal that has already fired', async () => {
    const { cid } = await rawBlock(utf8('aborted'))
    const signal = AbortSignal.abort()
    const store = heliaStore(node1)
    await expect(store.getBlock(cid, { signal })).rejects.toMatchObject({ name: 'AbortedError' })
    await expect(store.putBlocks([], { signal })).rejects.toMatchObject({ name: 'AbortedError' })
    await expect(store.getRecord(nameOfKey((await ipnsKey()).key), { signal })).rejects.toMatchObject({ name: 'AbortedError' })
  })

  it('refuses a block that does not match its CID and stores none of the batch', async () => {
    const good = await rawBlock(utf8('good block'))
    const bad = await rawBlock(utf8('bad block'))
    const store = heliaStore(node1)
    await expect(store.putBlocks([good, { cid: bad.cid, bytes: utf8('not the bad block') }]))
      .rejects.toMatchObject({ name: 'IntegrityError' })
    expect(await node1.blockstore.has(good.cid)).toBe(false)
    expect(await node1.blockstore.has(bad.cid)).toBe(false)
  })

  it('refuses blocks over the bitswap limit and malformed input', async () => {
    const store = heliaStore(node1)
    const big = await rawBlock(new Uint8Array(1024 * 1024 + 1))
    await expect(store.putBlocks([big])).rejects.toMatchObject({ name: 'TooLargeError' })
    await expect(store.putBlocks([{ cid: 'bafy' as never, bytes: utf8('x') }])).rejects.toMatchObject({ name: 'InvalidInputError' })
    await expect(store.putBlocks('nope' as never)).rejects.toMatchObject({ name: 'InvalidInputError' })
    await expect(store.getBlock('bafy' as never)).rejects.toMatchObject({ name: 'InvalidInputError' })
    expect(() => heliaStore(node1, { fetchTimeoutMs: -1 })).toThrow(expect.objectContaining({ name: 'InvalidInputError' }))
  })

  it('reports a block whose stored bytes were changed, instead of returning them', async () => {
    const block = await rawBlock(utf8('will be tampered with'))
    // Written behind the store's back, as a corrupted disk would.
    await node1.blockstore.put(block.cid, utf8('tampered bytes'))
    await expect(heliaStore(node1).getBlock(block.cid, { signal: AbortSignal.timeout(1000) }))
      .rejects.toMatchObject({ name: 'IntegrityError' })
  })

  it('refuses a record that is not valid for the name', async () => {
    const { key } = await ipnsKey()
    const other = await ipnsKey()
    const { root } = await sampleBlocks('wrong name')
    const record = await createRecord(key, root.cid, 1)
    const store = heliaStore(node1)
    await expect(store.putRecord(other.name, record)).rejects.toMatchObject({ name: 'InvalidRecordError' })
    await expect(store.putRecord(other.name, utf8('garbage'))).rejects.toMatchObject({ name: 'InvalidRecordError' })
    await expect(store.putRecord('not-a-name', record)).rejects.toMatchObject({ name: 'InvalidInputError' })
    expect(await store.getRecord(other.name)).toBeUndefined()
  })
})

describe('heliaStore on a node with no peers', () => {
  let node: HeliaNode
  nodeForSuite((n) => { node = n })

  it('writes and reads locally without waiting for a network that is not there', async () => {
    const { key, name } = await ipnsKey()
    const { root, blocks } = await sampleBlocks('alone')
    const record = await createRecord(key, root.cid, 1)
    const store = heliaStore(node)
    const started = Date.now()
    await store.putBlocks(blocks)
    await store.putRecord(name, record)
    expect(await store.getRecord(name, { nocache: true })).toEqual(record)
    expect(await store.getBlock(root.cid)).toEqual(root.bytes)
    expect(Date.now() - started).toBeLessThan(2000)
  })

  it('refuses to work on a stopped node', async () => {
    const stopped = await createHeliaNode()
    await stopHeliaNode(stopped)
    const { name } = await ipnsKey()
    await expect(heliaStore(stopped).getRecord(name)).rejects.toMatchObject({ name: 'StoreError' })
  })
})

describe('heliaStore on a helia with no networking (createHeliaLight)', () => {
  it('stores and reads locally, and a missing block is NotFoundError at once', async () => {
    const helia = await createHeliaLight().start()
    try {
      const store = heliaStore(helia)
      const { key, name } = await ipnsKey()
      const { root, blocks } = await sampleBlocks('light')
      const record = await createRecord(key, root.cid, 1)
      await store.putBlocks(blocks)
      await store.putRecord(name, record)
      expect(await store.getRecord(name, { nocache: true })).toEqual(record)
      expect(await store.getBlock(root.cid)).toEqual(root.bytes)
      const missing = await rawBlock(utf8('not here'))
      await expect(store.getBlock(missing.cid)).rejects.toMatchObject({ name: 'NotFoundError' })
      expect(await store.getRecord((await ipnsKey()).name)).toBeUndefined()
    } finally {
      await helia.stop()
    }
  })
})

describe('heliaStore across a restart', () => {
  let directory: string

  beforeAll(async () => { directory = await mkdtemp(join(tmpdir(), 'userspace-helia-')) })
  afterAll(async () => { if (directory !== undefined) await rm(directory, { recursive: true, force: true }) })

  it('reads back records and blocks, with the same peer id, after the node restarts on its directory', async () => {
    const { key, name } = await ipnsKey()
    const { root, blocks } = await sampleBlocks('restart')
    const record = await createRecord(key, root.cid, 4)

    const before = await createHeliaNode({ directory })
    const peerId = before.libp2p.peerId.toString()
    try {
      const store = heliaStore(before)
      await store.putBlocks(blocks)
      await store.putRecord(name, record)
    } finally {
      await stopHeliaNode(before)
    }

    const after = await createHeliaNode({ directory })
    try {
      expect(after.libp2p.peerId.toString()).toBe(peerId)
      const store = heliaStore(after)
      expect(await store.getRecord(name, { nocache: true, signal: AbortSignal.timeout(2000) })).toEqual(record)
      expect(await store.getRecord(name)).toEqual(record)
      for (const block of blocks) {
        expect(await store.getBlock(block.cid, { signal: AbortSignal.timeout(2000) })).toEqual(block.bytes)
      }
    } finally {
      await stopHeliaNode(after)
    }
  })
})

describe('createHeliaNode', () => {
  it('refuses malformed options', async () => {
    await expect(createHeliaNode({ peers: ['not a multiaddr'] })).rejects.toMatchObject({ name: 'InvalidInputError' })
    await expect(createHeliaNode({ listen: [42 as never] })).rejects.toMatchObject({ name: 'InvalidInputError' })
    await expect(createHeliaNode({ directory: '' })).rejects.toMatchObject({ name: 'InvalidInputError' })
  })

  it('fails with StoreError when it cannot listen, and releases its directory', async () => {
    const other = await createHeliaNode()
    const directory = await mkdtemp(join(tmpdir(), 'userspace-listen-'))
    try {
      const taken = other.libp2p.getMultiaddrs()[0]?.decapsulate('/p2p').toString() ?? ''
      await expect(createHeliaNode({ directory, listen: [taken] })).rejects.toMatchObject({ name: 'StoreError' })
      // The LevelDB lock was released: the same directory opens again.
      await stopHeliaNode(await createHeliaNode({ directory }))
    } finally {
      await stopHeliaNode(other)
      await rm(directory, { recursive: true, force: true })
    }
  })

  it('fails with StoreError when no peer can be reached, over TCP or WebSocket, without crashing', async () => {
    const node = await createHeliaNode()
    const addresses = node.libp2p.getMultiaddrs().map(String)
    await stopHeliaNode(node)
    expect(addresses).toHaveLength(2)
    for (const address of addresses) {
      await expect(createHeliaNode({ peers: [address], peerDialTimeoutMs: 1000 }), address).rejects.toMatchObject({ name: 'StoreError' })
    }
  })

  it('accepts a dozen loopback peers starting at once (libp2p limits a host to 5 inbound a second)', async () => {
    const hub = await createHeliaNode({ dhtServer: true })
    const nodes: HeliaNode[] = []
    try {
      const started = await Promise.allSettled(Array.from({ length: 12 }, async () => {
        const node = await createHeliaNode({ peers: hub.libp2p.getMultiaddrs().map(String) })
        nodes.push(node)
      }))
      expect(started.filter(r => r.status === 'rejected')).toEqual([])
      expect(new Set(hub.libp2p.getConnections().map(c => c.remotePeer.toString())).size).toBe(12)
    } finally {
      await Promise.all(nodes.map(stopHeliaNode))
      await stopHeliaNode(hub)
    }
  })

  it('returns once a DHT server peer is in the routing table, and waitForDhtPeer tells a DHT server from a client', async () => {
    const hub = await createHeliaNode({ dhtServer: true })
    try {
      const client = await createHeliaNode({ peers: hub.libp2p.getMultiaddrs().map(String) })
      try {
        // A query made at once has somewhere to go: the wait ended on identify/routing-table events.
        expect(client.libp2p.services.dht.routingTable.size).toBeGreaterThanOrEqual(1)
        expect(await waitForDhtPeer(client, hub.libp2p.peerId.toString(), 5_000)).toBe(true)
        // The client does not serve the DHT: the hub's wait ends when its signal fires, with false.
        expect(await waitForDhtPeer(hub, client.libp2p.peerId.toString(), 300)).toBe(false)
      } finally {
        await stopHeliaNode(client)
      }
    } finally {
      await stopHeliaNode(hub)
    }
  })

  it('leaves a global WebSocket that, like a WHATWG one, drops error events nobody listens to', async () => {
    await stopHeliaNode(await createHeliaNode())
    const WebSocketClass = (globalThis as { WebSocket?: new (url: string) => { readyState: number } }).WebSocket
    expect(typeof WebSocketClass).toBe('function')
    // Port 1 on loopback refuses at once. The `ws` package's client, as is, would throw the
    // 'error' event out of the event loop here and crash the process (seen when libp2p aborts a
    // dial of several addresses and drops its listeners before the refusal arrives).
    const socket = new (WebSocketClass as new (url: string) => { readyState: number })('ws://127.0.0.1:1')
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(socket.readyState).toBe(3) // CLOSED
  })

  it('dials a peer given by its WebSocket address (Node 20 has no global WebSocket)', async () => {
    const hub = await createHeliaNode({ dhtServer: true })
    try {
      const ws = hub.libp2p.getMultiaddrs().map(String).find(a => a.includes('/ws'))
      expect(ws).toBeDefined()
      const client = await createHeliaNode({ peers: [ws ?? ''] })
      try {
        expect(client.libp2p.getConnections(hub.libp2p.peerId).length).toBeGreaterThan(0)
      } finally {
        await stopHeliaNode(client)
      }
    } finally {
      await stopHeliaNode(hub)
    }
  })
})

/** The same wallet on two devices: A on node 1, B on node 3, which was only given node 2. */
describe('a space on three nodes in a line', () => {
  let node1: HeliaNode
  let node2: HeliaNode
  let node3: HeliaNode
  const spaces: Space[] = []

  beforeAll(async () => {
    node1 = await createHeliaNode({ dhtServer: true })
    node2 = await createHeliaNode({ dhtServer: true, peers: node1.libp2p.getMultiaddrs().map(String) })
    node3 = await createHeliaNode({ dhtServer: true, peers: node2.libp2p.getMultiaddrs().map(String) })
  })

  afterAll(async () => {
    await Promise.all(spaces.map(async space => space.close()))
    await Promise.all([node3, node2, node1].filter(Boolean).map(stopHeliaNode))
  })

  async function device (node: HeliaNode, key: string): Promise<Space> {
    const space = await openSpace({ signer: privateKeyToAccount(key as `0x${string}`), store: heliaStore(node), signal: AbortSignal.timeout(10_000) })
    spaces.push(space)
    return space
  }

  it('device B reads every value device A wrote, and A sees B\'s write after refresh', async () => {
    const a = await device(node1, KEY_A)
    const values: Record<string, Json> = {
      theme: 'dark',
      'io.example.app': { volume: 3, muted: false, tags: ['a', 'b'] },
      count: 42,
      empty: null,
      unicode: 'ünïcødé ✓'
    }
    for (const [key, value] of Object.entries(values)) await a.set(key, value)
    await a.public.set('name', 'Alice')
    await a.flush()

    const b = await device(node3, KEY_A)
    expect(b.name).toBe(a.name)
    expect(b.sequence).toBe(a.sequence)
    for (const [key, value] of Object.entries(values)) expect(await b.get(key)).toEqual(value)
    expect(await b.getAll()).toEqual(values)
    expect(await b.public.get('name')).toBe('Alice')

    await b.set('theme', 'light')
    await b.flush()
    await b.set('from-b', true)
    await b.flush()
    await b.remove('count')
    await b.flush()
    await a.refresh()
    expect(await a.get('theme')).toBe('light')
    expect(await a.get('from-b')).toBe(true)
    expect(await a.get('count')).toBeUndefined()
    expect(await a.getAll()).toEqual(await b.getAll())
    expect(a.sequence).toBe(b.sequence)
  })

  it('keeps both devices\' writes to different keys when neither refreshed first', async () => {
    const a = await device(node1, KEY_C)
    await a.set('shared', 'from a')
    await a.flush()
    const b = await device(node3, KEY_C)
    // Each publish goes out against the sequence its device knows; the DHT's newer record makes it
    // a lost race, merged and published again.
    await a.set('only-a', 1)
    await a.flush()
    await b.set('only-b', 2)
    await b.flush()
    await a.set('shared', 'a again')
    await a.flush()
    await b.refresh()
    await a.refresh()
    const expected = { shared: 'a again', 'only-a': 1, 'only-b': 2 }
    expect(await a.getAll()).toEqual(expected)
    expect(await b.getAll()).toEqual(expected)
  })
})

describe('a space across a node restart', () => {
  let directory: string

  beforeAll(async () => { directory = await mkdtemp(join(tmpdir(), 'userspace-space-')) })
  afterAll(async () => { if (directory !== undefined) await rm(directory, { recursive: true, force: true }) })

  it('opens with every value on a node restarted on its directory, with no peers, and writes on', async () => {
    const signer = privateKeyToAccount(KEY_B)
    const values: Record<string, Json> = { theme: 'dark', settings: { lang: 'en', fontSize: 14 } }

    const before = await createHeliaNode({ directory })
    let sequence: number
    try {
      const space = await openSpace({ signer, store: heliaStore(before) })
      for (const [key, value] of Object.entries(values)) await space.set(key, value)
      await space.flush()
      sequence = space.sequence
      await space.close()
    } finally {
      await stopHeliaNode(before)
    }

    const after = await createHeliaNode({ directory })
    try {
      const space = await openSpace({ signer, store: heliaStore(after), signal: AbortSignal.timeout(5000) })
      expect(space.sequence).toBe(sequence)
      expect(await space.getAll()).toEqual(values)
      await space.set('after-restart', true)
      await space.flush()
      expect(space.sequence).toBe(sequence + 1)
      await space.close()
    } finally {
      await stopHeliaNode(after)
    }
  })
})

describe('live updates over libp2p pubsub between Node peers', () => {
  let node1: HeliaNode
  let node2: HeliaNode

  beforeAll(async () => { [node1, node2] = await startHeliaPair() })
  afterAll(async () => { await stopHeliaPair(node2, node1) })

  it("device B's subscriber on node 2 hears device A's set on node 1, with the map merged", async () => {
    const signer = privateKeyToAccount(KEY_C as `0x${string}`)
    const a = await openSpace({ signer, store: heliaStore(node1), signal: AbortSignal.timeout(10_000) })
    await a.set('volume', 1)
    await a.flush()
    const b = await openSpace({ signer, store: heliaStore(node2), signal: AbortSignal.timeout(10_000) })
    expect(await b.get('volume')).toBe(1)
    const heard: Array<Json | undefined> = []
    b.subscribe(() => { void b.get('volume').then(v => heard.push(v)) })
    // floodsub learns the other node's subscription asynchronously
    await expect.poll(() => node1.libp2p.services.pubsub.getSubscribers(`/record/${recordTopicOf(a.name)}`).length, { timeout: 5000 }).toBe(1)
    await a.set('volume', 2)
    await a.flush()
    await expect.poll(() => heard, { timeout: 2000, interval: 10 }).toContain(2)
    // a forged message on the topic is ignored: only records signed by the space's key count
    await node1.libp2p.services.pubsub.publish(`/record/${recordTopicOf(a.name)}`, utf8('not a record'))
    await a.set('volume', 3)
    await a.flush()
    await expect.poll(() => heard, { timeout: 2000, interval: 10 }).toContain(3)
    expect(heard.every(v => v === 2 || v === 3)).toBe(true)
    await a.close(); await b.close()
  })
})

function recordTopicOf (name: string): string {
  return base64url.baseEncode(multihashToIPNSRoutingKey(nameToMultihash(name) as Parameters<typeof multihashToIPNSRoutingKey>[0]))
}

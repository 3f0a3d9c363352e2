/**
 * The helia Store as a conditional store with live updates: records heard on a name's IPNS-over-PubSub
 * topic are validated and kept only when they beat the held one, `putRecord` refuses a stale or
 * equivocating record, a publish that the DHT holds a newer record for is a lost race that leaves
 * the DHT alone, and a space on helia publishes without resolving first. Nodes listen on 127.0.0.1
 * port 0 and are stopped by the tests that start them.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { floodsub } from '@libp2p/floodsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { multihashToIPNSRoutingKey } from 'ipns'
import { base64url } from 'multiformats/bases/base64'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memoryState, openSpace } from '../src/index.js'
import { cborBlock, rawBlock } from '../src/store/blocks.js'
import { VERSION_TOPIC_PREFIX } from '../src/protocol.js'
import * as dagCbor from '@ipld/dag-cbor'
import { createHeliaLight, withBitswap } from '../src/store/helia-core.js'
import { withLibp2p } from '../src/store/helia-libp2p.js'
import { heliaStore } from '../src/store/helia.js'
import { createRecord, nameToMultihash, readRecord } from '../src/store/record.js'
import type { Json, Space } from '../src/index.js'
import type { HeliaWithLibp2p } from '../src/store/helia-libp2p.js'
import type { HeliaNode } from '../src/store/helia-node.js'
import type { Store } from '../src/store/interface.js'
import type { FloodSub } from '@libp2p/floodsub'
import type { CID } from 'multiformats/cid'
import { ipnsKeySource } from './helpers/ipns-key.js'
import { lineForSuite, nodeForSuite } from './helpers/helia-pair.js'

const KEY_A = '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6'
const KEY_B = '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a'

/** A fresh Ed25519 IPNS key per call, deterministic across runs. */
const ipnsKey = ipnsKeySource(0x5e)

const topicOf = (name: string): string => '/record/' + base64url.baseEncode(multihashToIPNSRoutingKey(nameToMultihash(name) as Parameters<typeof multihashToIPNSRoutingKey>[0]))
/** The DHT announcements queued or under way on a store's node. */
const announcingOf = (store: Store): Map<string, unknown> => (store as unknown as { announcing: Map<string, unknown> }).announcing
const sequenceOf = (bytes: Uint8Array | undefined): bigint | undefined => bytes === undefined ? undefined : readRecord(bytes).sequence

type PubsubNode = HeliaWithLibp2p<{ identify: ReturnType<ReturnType<typeof identify>>, pubsub: FloodSub }>

/** A helia node with libp2p, bitswap and floodsub but no DHT at all: records can only travel by pubsub. */
async function pubsubOnlyNode (): Promise<PubsubNode> {
  const helia = withBitswap(withLibp2p(createHeliaLight({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() }), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), pubsub: floodsub() as unknown as (components: unknown) => FloodSub }
  })) as unknown as PubsubNode
  await helia.start()
  return helia
}

/** Waits until `node` sees a peer subscribed to `topic` (floodsub learns subscriptions asynchronously). */
async function subscribed (node: PubsubNode | HeliaNode, topic: string): Promise<void> {
  await expect.poll(() => node.libp2p.services.pubsub.getSubscribers(topic).length, { timeout: 5000, interval: 10 }).toBeGreaterThan(0)
}

describe('heliaStore live updates over pubsub, on nodes with no DHT', () => {
  let nodeA: PubsubNode
  let nodeB: PubsubNode

  beforeAll(async () => {
    nodeA = await pubsubOnlyNode()
    nodeB = await pubsubOnlyNode()
    await nodeB.libp2p.dial(nodeA.libp2p.getMultiaddrs()[0] as Parameters<typeof nodeB.libp2p.dial>[0])
  })

  afterAll(async () => {
    await nodeB?.stop()
    await nodeA?.stop()
  })

  it('a space on node B hears a write on node A at once, though no DHT exists to resolve it', async () => {
    const signer = privateKeyToAccount(KEY_A)
    const a = await openSpace({ signer, store: heliaStore(nodeA), state: memoryState() })
    await a.set('volume', 1)
    await a.flush()
    // B cannot resolve the name anywhere: it opens empty and learns everything from pubsub.
    const storeB = heliaStore(nodeB)
    const b = await openSpace({ signer, store: storeB, state: memoryState() })
    expect(await b.get('volume')).toBeUndefined()
    const changed = new Promise<void>((resolve) => {
      b.subscribe(() => { void b.getAll().then((all) => { if (all.volume === 2 && all.theme === 'dark') resolve() }) })
    })
    await subscribed(nodeA, topicOf(a.name))
    await a.set('volume', 2)
    await a.set('theme', 'dark')
    await changed
    expect(await b.getAll()).toEqual({ volume: 2, theme: 'dark' })
    // The record B heard is the one its store now holds.
    expect(sequenceOf(await storeB.getRecord(a.name))).toBe(BigInt(a.sequence))
    await a.close()
    await b.close()
  })

  it('B reads the new version from the blocks that rode with its record: no bitswap fetch, nothing written to B\'s disk', async () => {
    const signer = privateKeyToAccount(KEY_B)
    const a = await openSpace({ signer, store: heliaStore(nodeA), state: memoryState() })
    await a.set('x', 0)
    await a.flush()
    const b = await openSpace({ signer, store: heliaStore(nodeB), state: memoryState() })
    const values: Json[] = []
    const seen = async (value: Json): Promise<void> => { await expect.poll(() => values, { timeout: 5000, interval: 10 }).toContain(value) }
    b.subscribe(() => { void b.get('x').then((v) => { if (v !== undefined) values.push(v) }) })
    await subscribed(nodeA, VERSION_TOPIC_PREFIX + topicOf(a.name).slice('/record/'.length))
    // B has no version yet: its first one is a cold open (one bitswap session).
    await a.set('x', 1)
    await seen(1)
    // The next one is an update: read from what rode with the record.
    await a.set('x', 2)
    await seen(2)
    // Bitswap keeps what it fetches in the blockstore; the pushed blocks were read from memory.
    expect(await nodeB.blockstore.has(a.root as CID)).toBe(false)
    await a.close()
    await b.close()
  })

  it('drops a version message whose blocks do not match their CIDs, record and all', async () => {
    const { key, name } = await ipnsKey()
    const storeB = heliaStore(nodeB)
    const heard: Array<bigint | undefined> = []
    const unsubscribe = storeB.subscribe?.(name, (bytes) => { heard.push(sequenceOf(bytes)) }) ?? (() => {})
    try {
      const topic = VERSION_TOPIC_PREFIX + topicOf(name).slice('/record/'.length)
      await subscribed(nodeA, topic)
      const block = await cborBlock({ label: 'pushed' })
      const tampered = dagCbor.encode({ record: await createRecord(key, block.cid, 1), blocks: [[block.cid.bytes, dagCbor.encode({ label: 'other' })]] })
      await nodeA.libp2p.services.pubsub.publish(topic, tampered)
      await nodeA.libp2p.services.pubsub.publish(topic, new TextEncoder().encode('not cbor'))
      const good = dagCbor.encode({ record: await createRecord(key, block.cid, 2), blocks: [[block.cid.bytes, block.bytes]] })
      await nodeA.libp2p.services.pubsub.publish(topic, good)
      await expect.poll(() => heard, { timeout: 5000, interval: 10 }).toEqual([2n])
      expect(await storeB.getBlock(block.cid, { signal: AbortSignal.timeout(100) })).toEqual(block.bytes)
    } finally {
      unsubscribe()
    }
  })

  it('drops a forged, a stale, an equal and a foreign record heard on the topic; only a newer one changes anything', async () => {
    const { key, name } = await ipnsKey()
    const other = await ipnsKey()
    const value = async (label: string): Promise<ReturnType<typeof cborBlock>> => cborBlock({ label })
    const storeA = heliaStore(nodeA)
    const storeB = heliaStore(nodeB)
    const heard: Array<bigint | undefined> = []
    const unsubscribe = storeB.subscribe?.(name, (bytes) => { heard.push(sequenceOf(bytes)) }) ?? (() => {})
    try {
      await subscribed(nodeA, topicOf(name))
      const v5 = await createRecord(key, (await value('five')).cid, 5)
      await storeA.putRecord(name, v5)
      await expect.poll(() => heard, { timeout: 5000, interval: 10 }).toEqual([5n])
      expect(await storeB.getRecord(name)).toEqual(v5)

      const pubsub = nodeA.libp2p.services.pubsub
      const topic = topicOf(name)
      await pubsub.publish(topic, new TextEncoder().encode('not a record'))
      // signed by another key: valid for its own name, never for this one
      await pubsub.publish(topic, await createRecord(other.key, (await value('foreign')).cid, 99))
      await pubsub.publish(topic, await createRecord(key, (await value('three')).cid, 3))
      await pubsub.publish(topic, v5)
      // Sent last: once it is heard, everything before it has been judged (one stream, in order).
      const v6 = await createRecord(key, (await value('six')).cid, 6)
      await pubsub.publish(topic, v6)
      await expect.poll(() => heard.length, { timeout: 5000, interval: 10 }).toBe(2)
      expect(heard).toEqual([5n, 6n])
      expect(await storeB.getRecord(name)).toEqual(v6)
    } finally {
      unsubscribe()
    }
  })

  it('passes on a record with the held sequence and another value (a race to merge) without keeping it', async () => {
    const { key, name } = await ipnsKey()
    const storeA = heliaStore(nodeA)
    const storeB = heliaStore(nodeB)
    const mine = await createRecord(key, (await cborBlock({ label: 'mine' })).cid, 4)
    await storeB.putRecord(name, mine)
    const heard: Uint8Array[] = []
    const unsubscribe = storeB.subscribe?.(name, (bytes) => { heard.push(bytes) }) ?? (() => {})
    try {
      await subscribed(nodeA, topicOf(name))
      const theirs = await createRecord(key, (await cborBlock({ label: 'theirs' })).cid, 4)
      await storeA.putRecord(name, theirs)
      await expect.poll(() => heard.length, { timeout: 5000, interval: 10 }).toBe(1)
      expect(heard[0]).toEqual(theirs)
      expect(await storeB.getRecord(name)).toEqual(mine)
    } finally {
      unsubscribe()
    }
  })
})

describe('heliaStore as a conditional store', () => {
  let node: HeliaNode
  nodeForSuite((n) => { node = n })

  it('says it is conditional and refuses a lower sequence (ConflictError) or the same one with another value (EquivocationError), keeping the held record', async () => {
    const { key, name } = await ipnsKey()
    const store = heliaStore(node)
    expect(store.conditional).toBe(true)
    const v2 = await createRecord(key, (await cborBlock({ v: 2 })).cid, 2)
    await store.putRecord(name, v2)
    await expect(store.putRecord(name, await createRecord(key, (await cborBlock({ v: 1 })).cid, 1))).rejects.toMatchObject({ name: 'ConflictError' })
    await expect(store.putRecord(name, await createRecord(key, (await cborBlock({ v: 'other' })).cid, 2))).rejects.toMatchObject({ name: 'EquivocationError' })
    expect(await store.getRecord(name)).toEqual(v2)
    // The same record again is stored and announced again (how hubs re-announce), and a newer one wins.
    await store.putRecord(name, v2)
    const v3 = await createRecord(key, (await cborBlock({ v: 3 })).cid, 3)
    await store.putRecord(name, v3)
    expect(await store.getRecord(name)).toEqual(v3)
  })

  it('publish stores the blocks and the record as one step and announces only the root; a refused record stores no block', async () => {
    const { key, name } = await ipnsKey()
    const store = heliaStore(node)
    const provided: string[] = []
    const provide = node.routing.provide.bind(node.routing)
    node.routing.provide = async (cid, options) => { provided.push(cid.toString()); await provide(cid, options) }
    try {
      const leaf = await rawBlock(new TextEncoder().encode('bucket'))
      const root = await cborBlock({ bucket: leaf.cid })
      await store.publish?.(name, await createRecord(key, root.cid, 3), [leaf, root])
      expect(await store.getBlock(leaf.cid)).toEqual(leaf.bytes)
      expect(sequenceOf(await store.getRecord(name))).toBe(3n)
      await expect.poll(() => provided, { timeout: 5000, interval: 10 }).toEqual([root.cid.toString()])

      const staleLeaf = await rawBlock(new TextEncoder().encode('stale bucket'))
      const staleRoot = await cborBlock({ bucket: staleLeaf.cid })
      await expect(store.publish?.(name, await createRecord(key, staleRoot.cid, 2), [staleLeaf, staleRoot])).rejects.toMatchObject({ name: 'ConflictError' })
      expect(await node.blockstore.has(staleLeaf.cid)).toBe(false)
      expect(await node.blockstore.has(staleRoot.cid)).toBe(false)
      expect(sequenceOf(await store.getRecord(name))).toBe(3n)
    } finally {
      node.routing.provide = provide
    }
  })

  it('two spaces sharing a node race without an error: the second merges and publishes next', async () => {
    const signer = privateKeyToAccount(KEY_B)
    const a = await openSpace({ signer, store: heliaStore(node), state: memoryState() })
    const b = await openSpace({ signer, store: heliaStore(node), state: memoryState() })
    await a.set('from-a', 1)
    await a.flush()
    // b knows nothing of a's version: its publish is refused by the store, merged and sent again.
    await b.set('from-b', 2)
    await b.flush()
    expect(b.sequence).toBe(a.sequence + 1)
    expect(await b.getAll()).toEqual({ 'from-a': 1, 'from-b': 2 })
    await a.close()
    await b.close()
  })
})

describe('heliaStore and the DHT: publish without resolving, never roll the DHT back', () => {
  let node1: HeliaNode
  let node2: HeliaNode
  let node3: HeliaNode
  // Node 3 hears nothing of node 1 by pubsub (node 2 joins no topic), and as a DHT client it is not
  // sent node 1's record by the DHT put itself.
  lineForSuite({ thirdDhtServer: false }, (nodes) => { [node1, node2, node3] = nodes })

  it('refuses a publish that the DHT holds a newer record for, keeps that record, and leaves the DHT with it', async () => {
    // Node 3 never heard of sequence 2: its local check passes, the DHT's answer refuses a lower
    // sequence, and the same sequence with another value (a race the other device won).
    for (const [sequence, label] of [[1, 'stale'], [2, 'rival']] as const) {
      const { key, name } = await ipnsKey()
      const store1 = heliaStore(node1, { recordPutWaitMs: 5000 })
      const store3 = heliaStore(node3, { recordPutWaitMs: 5000 })
      const newer = await createRecord(key, (await cborBlock({ v: 'newer' })).cid, 2)
      await store1.putRecord(name, newer)
      await expect.poll(async () => sequenceOf(await heliaStore(node2).getRecord(name, { nocache: true })), { timeout: 5000, interval: 50 }).toBe(2n)

      // As a publish: the blocks it added are removed again with the refused record.
      const leaf = await rawBlock(new TextEncoder().encode(`${label} bucket`))
      const root = await cborBlock({ v: label, bucket: leaf.cid })
      await expect(store3.publish?.(name, await createRecord(key, root.cid, sequence), [leaf, root]), label).rejects.toMatchObject({ name: 'ConflictError' })
      expect(await node3.blockstore.has(leaf.cid), label).toBe(false)
      expect(await node3.blockstore.has(root.cid), label).toBe(false)
      expect(await store3.getRecord(name), label).toEqual(newer)
      expect(await heliaStore(node2).getRecord(name, { nocache: true }), label).toEqual(newer)
      expect(await store1.getRecord(name, { nocache: true }), label).toEqual(newer)
    }
  })

  it('announces back-to-back versions once the put under way ends: the newest only, never an older one after it, and a reader elsewhere resolves it', async () => {
    const { key, name } = await ipnsKey()
    const store = heliaStore(node1)
    const puts: bigint[] = []
    const provided: string[] = []
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    const put = node1.routing.put.bind(node1.routing)
    const provide = node1.routing.provide.bind(node1.routing)
    // The first put does its work, then holds on (a slow peer): later versions wait behind it.
    node1.routing.put = async (k, value, options) => {
      puts.push(readRecord(value).sequence)
      await put(k, value, options)
      if (puts.length === 1) await gate
    }
    node1.routing.provide = async (cid, options) => { provided.push(cid.toString()); await provide(cid, options) }
    try {
      const roots: CID[] = []
      for (let sequence = 1; sequence <= 5; sequence++) {
        const leaf = await rawBlock(new TextEncoder().encode(`bucket ${sequence}`))
        const root = await cborBlock({ v: sequence, bucket: leaf.cid })
        roots.push(root.cid)
        await store.publish?.(name, await createRecord(key, root.cid, sequence), [leaf, root])
        await expect.poll(() => puts.length, { timeout: 5000, interval: 5 }).toBe(1)
      }
      release()
      await expect.poll(() => puts, { timeout: 5000, interval: 10 }).toEqual([1n, 5n])
      await expect.poll(() => provided, { timeout: 5000, interval: 10 }).toEqual([roots[0]?.toString(), roots[4]?.toString()])
      await expect.poll(async () => sequenceOf(await heliaStore(node2).getRecord(name, { nocache: true })), { timeout: 5000, interval: 50 }).toBe(5n)
      expect(puts).toEqual([1n, 5n])
    } finally {
      release()
      node1.routing.put = put
      node1.routing.provide = provide
    }
  })

  it('does not put a waiting record once a newer one from elsewhere is held on the node, and never one older than the last it put', async () => {
    const { key, name } = await ipnsKey()
    const ours = heliaStore(node1, { recordPutWaitMs: 1 })
    const other = heliaStore(node1, { recordPutWaitMs: 1 })
    const puts: bigint[] = []
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    const put = node1.routing.put.bind(node1.routing)
    // The first put does its work, then holds on (a slow peer): later versions wait behind it.
    node1.routing.put = async (k, value, options) => {
      puts.push(readRecord(value).sequence)
      await put(k, value, options)
      if (puts.length === 1) await gate
    }
    try {
      await ours.putRecord(name, await createRecord(key, (await cborBlock({ v: 1 })).cid, 1))
      await expect.poll(() => puts.length, { timeout: 5000, interval: 5 }).toBe(1)
      await ours.putRecord(name, await createRecord(key, (await cborBlock({ v: 2 })).cid, 2))
      // Another store on the same node waits in the same queue, and its newer record replaces ours.
      await other.putRecord(name, await createRecord(key, (await cborBlock({ v: 3 })).cid, 3))
      // Another device (on node 2) publishes sequence 4; its DHT put stores it on node 1 too.
      await heliaStore(node2).putRecord(name, await createRecord(key, (await cborBlock({ v: 4 })).cid, 4))
      await expect.poll(async () => sequenceOf(await ours.getRecord(name)), { timeout: 5000, interval: 20 }).toBe(4n)
      release()
      // The queue ends with nothing left to put: 2 was replaced, 3 is older than what the node holds.
      await expect.poll(() => announcingOf(ours).size, { timeout: 5000, interval: 10 }).toBe(0)
      expect(puts).toEqual([1n])
      expect(sequenceOf(await heliaStore(node2).getRecord(name, { nocache: true }))).toBe(4n)
    } finally {
      release()
      node1.routing.put = put
    }
  })

  it('a space publishes with no resolve, and two devices that raced both keep their writes', async () => {
    const signer = privateKeyToAccount(KEY_A)
    const calls: string[] = []
    const counted = (store: Store): Store => Object.assign(Object.create(store) as Store, {
      getRecord: async (...args: Parameters<Store['getRecord']>) => { calls.push('getRecord'); return store.getRecord(...args) }
    })
    const spaces: Space[] = []
    try {
      const a = await openSpace({ signer, store: counted(heliaStore(node1)), state: memoryState() })
      spaces.push(a)
      await a.set('shared', 'a')
      await a.flush()
      const b = await openSpace({ signer, store: counted(heliaStore(node3)), state: memoryState() })
      spaces.push(b)
      calls.length = 0
      await a.set('only-a', 1)
      await a.flush()
      expect(calls).toEqual([])
      // b publishes against the sequence it knows, which a has used: a lost race, merged and retried.
      await b.set('only-b', 2)
      await b.flush()
      await a.refresh()
      const expected: Record<string, Json> = { shared: 'a', 'only-a': 1, 'only-b': 2 }
      expect(await a.getAll()).toEqual(expected)
      expect(await b.getAll()).toEqual(expected)
      expect(a.sequence).toBe(b.sequence)
    } finally {
      for (const space of spaces) await space.close()
    }
  })
})

/**
 * A large space between two helia nodes on loopback: a new node opens a space of over 1 024 private
 * blocks written on another node, through one helia session (`heliaStore.getDag`) and, without it,
 * block by block with bounded fetch concurrency. Before both, every block fetched at once started a
 * DHT lookup, ~1 000 of them exhausted the connection's yamux stream limit and the open failed with
 * NotFoundError after 10 s.
 */
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memoryState, openSpace } from '../src/index.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { heliaStore } from '../src/store/helia.js'
import { rawBlock } from '../src/store/blocks.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Store } from '../src/store/interface.js'
import type { HeliaNode } from '../src/store/helia-node.js'

const KEYS = 1100
const value = (i: number): string => `${i}:${'v'.repeat(8000)}`

describe('a space of over 1 024 buckets between two helia nodes', () => {
  let writerNode: HeliaNode
  const signer = privateKeyToAccount(generatePrivateKey())
  let blocks = 0

  beforeAll(async () => {
    writerNode = await createHeliaNode({ dhtServer: true })
    const writer = await openSpace({ signer, store: heliaStore(writerNode), state: memoryState(), signal: AbortSignal.timeout(20_000) })
    const patch: Record<string, string> = {}
    for (let i = 0; i < KEYS; i++) patch[`key${i}`] = value(i)
    await writer.patch(patch)
    await writer.flush()
    blocks = writer.root === null ? 0 : (await heliaStore(writerNode).getDag?.(writer.root, { path: 'current' }))?.length ?? 0
    await writer.close()
  }, 120_000)

  afterAll(async () => {
    if (writerNode !== undefined) await stopHeliaNode(writerNode)
  })

  async function openOnNewNode (wrap: (store: Store) => Store): Promise<void> {
    const node = await createHeliaNode({ dhtServer: true, peers: writerNode.libp2p.getMultiaddrs().map(String) })
    try {
      // 100 s: block by block, ~1 100 bitswap fetches took 33–61 s on a loaded 2-core machine; the point is that it completes
      const reader = await openSpace({ signer, store: wrap(heliaStore(node)), state: memoryState(), signal: AbortSignal.timeout(100_000) })
      expect((await reader.keys()).length).toBe(KEYS)
      expect(await reader.get(`key${KEYS - 1}`)).toBe(value(KEYS - 1))
      await reader.close()
    } finally {
      await stopHeliaNode(node)
    }
  }

  it('has over 1 024 private blocks', () => {
    expect(blocks).toBeGreaterThan(1024)
  })

  it('opens on a new node through one session', async () => {
    await openOnNewNode(store => store)
  }, 120_000)

  it('opens on a new node block by block, at most fetchConcurrency at a time', async () => {
    // The same store without getDag: the space reads every bucket with getBlock, all at once.
    await openOnNewNode(store => ({
      putBlocks: store.putBlocks.bind(store),
      getBlock: store.getBlock.bind(store),
      putRecord: store.putRecord.bind(store),
      getRecord: store.getRecord.bind(store)
    }))
  }, 120_000)
})

describe('publishing on helia without waiting for the DHT', () => {
  it('stores blocks and record locally and returns, after a short wait for the DHT put, while the provide and the put still hang', async () => {
    const node = await createHeliaNode()
    try {
      const started: string[] = []
      // Routers that never answer: only the signal ends them.
      const hang = async (what: string, options?: { signal?: AbortSignal }): Promise<never> => {
        started.push(what)
        return await new Promise<never>((_resolve, reject) => { options?.signal?.addEventListener('abort', () => { reject(new Error('aborted')) }) })
      }
      node.routing.put = async (_key, _value, options) => hang('put', options)
      node.routing.provide = async (_cid, options) => hang('provide', options)
      const store = heliaStore(node, { routingTimeoutMs: 60_000 })
      const block = await rawBlock(new Uint8Array([1, 2, 3]))
      const key = await generateKeyPair('Ed25519')
      const name = nameOfKey(key)
      const record = await createRecord(key, block.cid, 1)
      const t0 = Date.now()
      await store.putBlocks([block])
      await store.putRecord(name, record)
      // putRecord waits recordPutWaitMs (1 s) for the put; the hanging routers would hold each call for 60 s.
      expect(Date.now() - t0).toBeLessThan(10_000)
      expect(started.sort()).toEqual(['provide', 'put'])
      expect(await store.getBlock(block.cid)).toEqual(block.bytes)
      expect(await store.getRecord(name)).toEqual(record)
    } finally {
      await stopHeliaNode(node)
    }
  }, 60_000)
})

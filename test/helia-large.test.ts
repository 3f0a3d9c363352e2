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
    blocks = writer.root === null ? 0 : (await heliaStore(writerNode).getDag?.(writer.root, { path: 'private' }))?.length ?? 0
    await writer.close()
  }, 120_000)

  afterAll(async () => {
    if (writerNode !== undefined) await stopHeliaNode(writerNode)
  })

  async function openOnNewNode (wrap: (store: Store) => Store): Promise<void> {
    const node = await createHeliaNode({ dhtServer: true, peers: writerNode.libp2p.getMultiaddrs().map(String) })
    try {
      const reader = await openSpace({ signer, store: wrap(heliaStore(node)), state: memoryState(), signal: AbortSignal.timeout(60_000) })
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

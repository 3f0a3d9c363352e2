/**
 * Publishing on a helia node while the DHT check of the previous version is under way: the store
 * accepts a version (stored, sent to listeners) before it asks the DHT for a newer record, and the
 * space publishes its next version on that acceptance. These tests hold the DHT's answers back to
 * see what happens in between, and make the check refuse a version the space has already built on.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CURRENT_VERSION_FIELD, fileState, memoryState, memoryStore, openSpace, privateKeySigner } from '../src/index.js'
import { decodeRoot } from '../src/space/root.js'
import { cborBlock, rawBlock } from '../src/store/blocks.js'
import { heliaStore } from '../src/store/helia.js'
import { createRecord, nameToMultihash, readRecord } from '../src/store/record.js'
import { multihashToIPNSRoutingKey } from 'ipns'
import { base64url } from 'multiformats/bases/base64'
import { nodeForSuite, startHeliaPair, stopHeliaPair } from './helpers/helia-pair.js'
import { ipnsKeySource } from './helpers/ipns-key.js'
import type { HeliaNode } from '../src/store/helia-node.js'
import type { MultihashDigest } from 'multiformats/hashes/interface'

type Get = (key: Uint8Array, options?: { signal?: AbortSignal }) => Promise<Uint8Array>

/**
 * Holds every DHT get of `node` (the check a publish makes) until `release`, then answers with
 * `answer` (the network's real answer when none is given). `held` counts the gets waiting.
 */
function holdDhtGets (node: HeliaNode, answer?: Get): { held: () => number, release: () => void, restore: () => void } {
  const routing = node.routing as unknown as { get: Get }
  const original = routing.get
  let release!: () => void
  const released = new Promise<void>(resolve => { release = resolve })
  let held = 0
  routing.get = async (key, options) => {
    held++
    await released
    held--
    return await (answer ?? original.bind(routing))(key, options)
  }
  return { held: () => held, release, restore: () => { routing.get = original } }
}

const ipnsKey = ipnsKeySource(0x7c)

/** A version of `label` at `sequence`: its record and blocks. */
async function version (key: Awaited<ReturnType<typeof ipnsKey>>['key'], label: string, sequence: number): Promise<{ record: Uint8Array, blocks: Array<{ cid: CID, bytes: Uint8Array }> }> {
  const leaf = await rawBlock(new TextEncoder().encode(label))
  const root = await cborBlock({ label, leaf: leaf.cid })
  return { record: await createRecord(key, root.cid, sequence), blocks: [leaf, root] }
}

const signer = (n: number): ReturnType<typeof privateKeySigner> => privateKeySigner(n.toString(16).padStart(64, '0'))

describe('a helia space publishes its next version while the previous one is checked against the DHT', () => {
  let nodeA: HeliaNode
  let nodeB: HeliaNode
  let dir: string
  beforeAll(async () => {
    [nodeA, nodeB] = await startHeliaPair()
    dir = await mkdtemp(join(tmpdir(), 'userspace-pipeline-'))
  })
  afterAll(async () => {
    await stopHeliaPair(nodeB, nodeA)
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('sends each version to listening devices at once, and keeps its writes pending (in the state file too) until the check ends', async () => {
    const wallet = signer(0x51)
    // A store whose callers that do not pipeline would wait a minute for the check (nor does the
    // check time out): only the acceptance lets the second version out while the first is held.
    const races: number[] = []
    const a = await openSpace({
      signer: wallet,
      store: heliaStore(nodeA, { recordPutWaitMs: 60_000, routingTimeoutMs: 60_000 }),
      state: fileState(join(dir, 'a')),
      onProgress: (event) => { if (event.type === 'space:publish:race') races.push(event.detail.sequence) }
    })
    await a.set('x', 0)
    await a.flush()
    const b = await openSpace({ signer: wallet, store: heliaStore(nodeB), state: memoryState() })
    b.subscribe(() => {})
    expect(await b.get('x')).toBe(0)

    const gate = holdDhtGets(nodeA)
    try {
      await a.set('x', 1)
      await expect.poll(async () => b.get('x'), { timeout: 10_000, interval: 20 }).toBe(1)
      await a.set('y', 2)
      await expect.poll(async () => b.get('y'), { timeout: 10_000, interval: 20 }).toBe(2)
      expect(gate.held()).toBeGreaterThan(0)

      // Published, not settled: the writes stay pending here and in the state a restart reads.
      let flushed = false
      const flushing = a.flush().then(() => { flushed = true })
      await new Promise(resolve => setTimeout(resolve, 200))
      expect(flushed).toBe(false)
      expect(a.pending).toBe(2)
      // two entries, x's and y's, their keys sealed (sealed-state.ts)
      expect((await fileState(join(dir, 'a')).get(a.name))?.pending.map(e => e.key)).toEqual([expect.stringMatching(/^k:[\w-]{22}$/), expect.stringMatching(/^k:[\w-]{22}$/)])

      // Version 2 settles while version 3 is out: its writes leave the state with version 3's.
      gate.release()
      await flushing
      expect(a.pending).toBe(0)
      expect((await fileState(join(dir, 'a')).get(a.name))?.pending).toEqual([])
      // Node B heard version 3 and answers the check of version 2 with it (kad-dht may also have
      // stored it here): this node's own later version is no rival, so nothing was refused.
      expect(races).toEqual([])
      expect(a.sequence).toBe(3)
      expect(readRecord(await heliaStore(nodeA).getRecord(a.name) as Uint8Array).sequence).toBe(BigInt(a.sequence))
    } finally {
      gate.restore()
      gate.release()
      await a.close()
      await b.close()
    }
  })
  it('does not keep its own accepted version heard back from a peer ahead of the check, so the record that wins the check stands', async () => {
    const { key, name } = await ipnsKey()
    const storeA = heliaStore(nodeA)
    const [ours, rival] = await Promise.all([version(key, 'ours', 1), version(key, 'rival', 1)])
    const topic = '/record/' + base64url.baseEncode(multihashToIPNSRoutingKey(nameToMultihash(name) as MultihashDigest<0x00 | 0x12>))
    const gate = holdDhtGets(nodeA, async () => rival.record)
    try {
      let accepted = false
      const answer = storeA.publish?.(name, ours.record, ours.blocks, { onAccepted: () => { accepted = true } })
      answer?.catch(() => {})
      await expect.poll(() => accepted, { timeout: 5000, interval: 10 }).toBe(true)
      // Node B sends node A's own record back on the name's IPNS-over-PubSub topic, as a peer that
      // relays it would, while the check is held.
      const pubsubB = nodeB.libp2p.services.pubsub as unknown as { getSubscribers: (t: string) => Array<{ equals: (p: unknown) => boolean }>, publish: (t: string, d: Uint8Array) => Promise<unknown> }
      const pubsubA = nodeA.libp2p.services.pubsub as unknown as EventTarget
      await expect.poll(() => pubsubB.getSubscribers(topic).some(p => p.equals(nodeA.libp2p.peerId)), { timeout: 10_000, interval: 20 }).toBe(true)
      const heard = new Promise<void>(resolve => {
        pubsubA.addEventListener('message', (event) => { if ((event as CustomEvent<{ topic: string }>).detail.topic === topic) resolve() })
      })
      await pubsubB.publish(topic, ours.record)
      await heard
      await new Promise(resolve => setTimeout(resolve, 200))
      gate.release()
      // The DHT answers with the rival (the same sequence, another value): it is kept, ours refused.
      await expect(answer).rejects.toMatchObject({ name: 'ConflictError' })
      expect(await storeA.getRecord(name)).toEqual(rival.record)
    } finally {
      gate.restore()
      gate.release()
    }
  })
})

describe('a version the DHT check refuses after the space built on it', () => {
  let node: HeliaNode
  nodeForSuite((n) => { node = n })

  /**
   * A second device's version of `name` at the same sequence as the next one of `a` (a race it won
   * at the DHT): made on a store of its own from `a`'s current version, its blocks then copied to
   * `node` as a fetch would.
   */
  async function rivalOf (a: Awaited<ReturnType<typeof openSpace>>, wallet: ReturnType<typeof privateKeySigner>, writes: Record<string, string>): Promise<Uint8Array> {
    const store = heliaStore(node)
    const record = await store.getRecord(a.name) as Uint8Array
    const root = CID.parse(readRecord(record).value.slice('/ipfs/'.length))
    const other = memoryStore()
    await other.putBlocks(await store.getDag?.(root, { path: CURRENT_VERSION_FIELD }) ?? [])
    await other.putRecord(a.name, record)
    const c = await openSpace({ signer: wallet, store: other, state: memoryState() })
    for (const [key, value] of Object.entries(writes)) await c.set(key, value)
    await c.flush()
    await c.close()
    for (const [text, bytes] of other.blocks) await node.blockstore.put(CID.parse(text), bytes)
    return other.records.get(a.name) as Uint8Array
  }

  it('merges the record that won beside the newer version and publishes both devices\' writes', async () => {
    const wallet = signer(0x52)
    const a = await openSpace({ signer: wallet, store: heliaStore(node), state: memoryState() })
    await a.set('shared', 0)
    await a.flush()
    const rival = await rivalOf(a, wallet, { 'from-c': 'c' })
    expect(readRecord(rival).sequence).toBe(BigInt(a.sequence + 1))
    // Listening, as an app showing live changes does: the store tells it of the rival too, which
    // is a race with a version in its check, not a rollback.
    const rollbacks: unknown[] = []
    a.on('rollback', (event) => { rollbacks.push(event) })
    a.subscribe(() => {})

    const gate = holdDhtGets(node, async () => rival)
    try {
      // Version 2 is accepted and held at its check; version 3 is built on it.
      await a.set('a1', 1)
      await expect.poll(() => a.sequence, { timeout: 10_000, interval: 10 }).toBe(2)
      await a.set('a2', 2)
      await expect.poll(() => a.sequence, { timeout: 10_000, interval: 10 }).toBe(3)
      gate.release()
      // The check of version 2 finds the rival (the same sequence, another value) and refuses it;
      // the rival, now below the head, is merged beside it and a version with both goes out.
      await a.flush()
      const expected = { shared: 0, a1: 1, a2: 2, 'from-c': 'c' }
      expect(await a.getAll()).toEqual(expected)
      expect(a.pending).toBe(0)
      expect(rollbacks).toEqual([])
      const record = await heliaStore(node).getRecord(a.name) as Uint8Array
      expect(readRecord(record).sequence).toBe(BigInt(a.sequence))
      const rivalRoot = readRecord(rival).value.slice('/ipfs/'.length)
      const root = decodeRoot(await heliaStore(node).getBlock(CID.parse(readRecord(record).value.slice('/ipfs/'.length))))
      expect(root.parents.map(String)).toContain(rivalRoot)
      // What the store now holds, read by another device.
      const reader = await openSpace({ signer: wallet, store: heliaStore(node), state: memoryState() })
      expect(await reader.getAll()).toEqual(expected)
      await reader.close()
    } finally {
      gate.restore()
      gate.release()
      await a.close()
    }
  })

  it('takes the version its node still holds, while a later one is in its check, for its own and not for a rollback', async () => {
    const wallet = signer(0x54)
    const a = await openSpace({ signer: wallet, store: heliaStore(node), state: memoryState() })
    await a.set('x', 0)
    await a.flush()
    const rollbacks: unknown[] = []
    a.on('rollback', (event) => { rollbacks.push(event) })
    // The first query (version 2's check) is held; the refresh's is answered at once.
    let release!: () => void
    const held = new Promise<void>(resolve => { release = resolve })
    let gets = 0
    const gate = holdDhtGets(node, async () => { if (gets++ === 0) await held; throw new Error('not found') })
    gate.release()
    try {
      await a.set('y', 1)
      await expect.poll(() => gets, { timeout: 10_000, interval: 10 }).toBe(1)
      expect(a.sequence).toBe(2)
      // The node answers with version 1, which it holds until version 2's check ends.
      await a.refresh()
      expect(rollbacks).toEqual([])
      expect(a.sequence).toBe(2)
      release()
      await a.flush()
      expect(await a.getAll()).toEqual({ x: 0, y: 1 })
      expect(rollbacks).toEqual([])
    } finally {
      gate.restore()
      release()
      await a.close()
    }
  })

  it('keeps the writes of a version whose record the store failed to keep after accepting it, reports it, and publishes them on the retry', async () => {
    const wallet = signer(0x53)
    const a = await openSpace({ signer: wallet, store: heliaStore(node), state: memoryState(), retryDelayMs: 100 })
    await a.set('before', 0)
    await a.flush()
    // The first record put after the check fails, as a full disk would fail it.
    const datastore = node.datastore as unknown as { put: (key: { toString: () => string }, value: Uint8Array, options?: unknown) => Promise<unknown> }
    const put = datastore.put
    let failed = 0
    const gate = holdDhtGets(node, async () => { throw new Error('not found') })
    datastore.put = async (key, value, options) => {
      if (failed === 0 && key.toString().startsWith('/dht/record/')) { failed++; throw new Error('no space left on device') }
      return await put.call(datastore, key, value, options)
    }
    try {
      await a.set('lost?', 'no')
      await expect.poll(() => a.sequence, { timeout: 10_000, interval: 10 }).toBe(2)
      const flushing = a.flush()
      gate.release()
      await expect(flushing).rejects.toThrow('no space left on device')
      expect(failed).toBe(1)
      expect(a.pending).toBe(1)
      // The retry timer publishes the write again.
      await expect.poll(() => a.pending, { timeout: 10_000, interval: 20 }).toBe(0)
      await a.flush()
      const reader = await openSpace({ signer: wallet, store: heliaStore(node), state: memoryState() })
      expect(await reader.getAll()).toEqual({ before: 0, 'lost?': 'no' })
      expect(reader.sequence).toBeGreaterThan(2)
      await reader.close()
    } finally {
      datastore.put = put
      gate.restore()
      gate.release()
      await a.close()
    }
  })
})

describe('heliaStore: publishing while a version is in its network step', () => {
  let node: HeliaNode
  nodeForSuite((n) => { node = n })

  it('takes every version accepted during a network step into the next: one DHT query, the newest kept', async () => {
    const { key, name } = await ipnsKey()
    const store = heliaStore(node)
    const versions = await Promise.all([1, 2, 3].map(async n => version(key, `burst ${n}`, n)))
    let gets = 0
    const gate = holdDhtGets(node, async () => { gets++; throw new Error('not found') })
    try {
      const accepted: number[] = []
      const answers = versions.map(async (v, i) => store.publish?.(name, v.record, v.blocks, { onAccepted: () => { accepted.push(i + 1) } }))
      await expect.poll(() => accepted, { timeout: 5000, interval: 10 }).toEqual([1, 2, 3])
      // Version 1's query is held; 2 and 3 wait for the next, which takes both.
      await expect.poll(() => gate.held(), { timeout: 5000, interval: 10 }).toBe(1)
      gate.release()
      await Promise.all(answers)
      expect(gets).toBe(2)
      expect(await store.getRecord(name)).toEqual(versions[2]?.record)
    } finally {
      gate.restore()
      gate.release()
    }
  })

  it('refuses every version of the step when the DHT holds a record the oldest must not replace', async () => {
    const { key, name } = await ipnsKey()
    const store = heliaStore(node)
    const ours = await Promise.all([1, 2, 3].map(async n => version(key, `ours ${n}`, n)))
    const rival = await version(key, 'rival 2', 2)
    let release!: () => void
    const first = new Promise<void>(resolve => { release = resolve })
    let gets = 0
    // The first query answers nothing (version 1 stands); the next finds the rival of version 2.
    const gate = holdDhtGets(node, async () => { if (gets++ === 0) { await first; throw new Error('not found') } return rival.record })
    try {
      const answers = ours.map(v => {
        let accepted!: () => void
        const isAccepted = new Promise<void>(resolve => { accepted = resolve })
        const answer = (store.publish as NonNullable<typeof store.publish>)(name, v.record, v.blocks, { onAccepted: accepted })
        answer.catch(() => {})
        return { isAccepted, answer }
      })
      await Promise.all(answers.map(async a => a.isAccepted))
      gate.release()
      await expect.poll(() => gets, { timeout: 5000, interval: 10 }).toBe(1)
      release()
      await expect(answers[0]?.answer).resolves.toBeUndefined()
      for (const a of answers.slice(1)) await expect(a.answer).rejects.toMatchObject({ name: 'ConflictError', record: rival.record })
      expect(gets).toBe(2)
      // The rival stands here; version 1 was kept before it.
      expect(await store.getRecord(name)).toEqual(rival.record)
    } finally {
      gate.restore()
      gate.release()
    }
  })

  it('judges a publish against the version accepted and not yet kept', async () => {
    const { key, name } = await ipnsKey()
    const store = heliaStore(node)
    const [first, other, second] = await Promise.all([version(key, 'first', 2), version(key, 'other', 2), version(key, 'second', 1)])
    const gate = holdDhtGets(node, async () => { throw new Error('not found') })
    try {
      let accepted = false
      const answer = store.publish?.(name, first.record, first.blocks, { onAccepted: () => { accepted = true } })
      await expect.poll(() => accepted, { timeout: 5000, interval: 10 }).toBe(true)
      // The node holds no record of the name yet; the accepted one decides.
      await expect(store.publish?.(name, other.record, other.blocks)).rejects.toMatchObject({ name: 'EquivocationError' })
      await expect(store.publish?.(name, second.record, second.blocks)).rejects.toMatchObject({ name: 'ConflictError' })
      gate.release()
      await answer
      expect(await store.getRecord(name)).toEqual(first.record)
    } finally {
      gate.restore()
      gate.release()
    }
  })

  it('forgets a version whose blocks could not be stored', async () => {
    const { key, name } = await ipnsKey()
    const store = heliaStore(node)
    const [first, other] = await Promise.all([version(key, 'unstored', 1), version(key, 'stored', 1)])
    const blockstore = node.blockstore as unknown as { put: (...args: unknown[]) => Promise<unknown> }
    const put = blockstore.put
    let failed = 0
    blockstore.put = async (...args) => { if (failed++ === 0) throw new Error('no space left on device'); return await put.apply(blockstore, args) }
    try {
      await expect(store.publish?.(name, first.record, first.blocks)).rejects.toMatchObject({ name: 'StoreError' })
    } finally {
      blockstore.put = put
    }
    // Nothing of the refused version counts: another at the same sequence is no equivocation.
    await store.publish?.(name, other.record, other.blocks)
    expect(await store.getRecord(name)).toEqual(other.record)
  })
})

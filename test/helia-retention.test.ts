/**
 * Retention for the spaces a helia store publishes: the kept versions (the current one and the
 * older ones a hub would keep) stay whole, the blocks only older versions reference go, and a pass
 * cut short (a crash) leaves a space that opens and reads, which the next pass finishes. Real helia
 * nodes with no peers, on loopback; each test stops what it starts.
 */
import { privateKeyToAccount } from 'viem/accounts'
import { afterEach, describe, expect, it } from 'vitest'
import { memoryState, openSpace } from '../src/index.js'
import { cborBlock } from '../src/store/blocks.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { retainVersions } from '../src/store/helia-retention.js'
import { heliaStore } from '../src/store/helia.js'
import { decodeRoot } from '../src/space/root.js'
import type { Json, Space } from '../src/index.js'
import type { HeliaNode } from '../src/store/helia-node.js'
import { base58btc } from 'multiformats/bases/base58'
import type { CID } from 'multiformats/cid'

const KEY = '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba'

const nodes: HeliaNode[] = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(stopHeliaNode)) })

async function node (): Promise<HeliaNode> {
  const n = await createHeliaNode()
  nodes.push(n)
  return n
}

/** The blockstore keeps blocks by multihash: compare by it. */
const mh = (cid: CID): string => base58btc.encode(cid.multihash.bytes)

/** The multihash of every block in the blockstore. */
async function stored (n: HeliaNode): Promise<Set<string>> {
  const out = new Set<string>()
  for await (const { cid } of n.blockstore.getAll()) out.add(mh(cid))
  return out
}

async function readBlock (n: HeliaNode, cid: CID): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const chunk of n.blockstore.get(cid, { signal: AbortSignal.timeout(1000) })) parts.push(chunk)
  return new Uint8Array(Buffer.concat(parts))
}

/** A space with `count` keys, written over `versions` publishes; returns the roots, oldest first. */
async function versions (store: ReturnType<typeof heliaStore>, count: number, publishes: number): Promise<{ space: Space, roots: CID[], values: Record<string, Json> }> {
  const space = await openSpace({ signer: privateKeyToAccount(KEY), store, state: memoryState() })
  const values: Record<string, Json> = {}
  for (let i = 0; i < count; i++) values[`key-${i}`] = { i, text: 'x'.repeat(40) }
  await space.patch(values)
  await space.flush()
  const roots: CID[] = [space.root as CID]
  for (let v = 1; v < publishes; v++) {
    const key = `key-${(v * 37) % count}`
    values[key] = { i: v, text: `version ${v}` }
    await space.set(key, values[key] as Json)
    await space.flush()
    roots.push(space.root as CID)
  }
  return { space, roots, values }
}

describe('retainVersions on a helia blockstore', () => {
  it('keeps the current version and the kept older ones whole, and deletes what only dropped versions reference', async () => {
    const n = await node()
    const store = heliaStore(n, { retention: false })
    const { space, roots, values } = await versions(store, 300, 6)
    const before = await stored(n)

    const report = await retainVersions(n.blockstore, roots.at(-1) as CID, { maxRetainedVersions: 2 })
    expect(report.versionsKept).toBe(2)
    expect(report.versionsDropped).toBe(4)
    const after = await stored(n)
    expect(after.size).toBe(before.size - report.deletedBlocks)
    expect(report.deletedBlocks).toBeGreaterThanOrEqual(4 * 2)
    // The dropped roots are gone; the kept ones are here.
    for (const root of roots.slice(0, 4)) expect(after.has(mh(root))).toBe(false)
    for (const root of roots.slice(4)) expect(after.has(mh(root))).toBe(true)

    // Both kept versions read whole from this node alone (no peers: a missing block would fail).
    const current = await space.at(roots[5] as CID, { signal: AbortSignal.timeout(5000) })
    expect(current.getAll()).toEqual(values)
    const previous = await space.at(roots[4] as CID, { signal: AbortSignal.timeout(5000) })
    expect(Object.keys(previous.getAll())).toHaveLength(300)
    await space.close()
    const reopened = await openSpace({ signer: privateKeyToAccount(KEY), store: heliaStore(n, { retention: false }), state: memoryState() })
    expect(await reopened.getAll()).toEqual(values)
    await reopened.close()

    // A second pass finds nothing more to do.
    expect((await retainVersions(n.blockstore, roots.at(-1) as CID, { maxRetainedVersions: 2 })).deletedBlocks).toBe(0)
  })

  it('reads only the roots and deletes nothing while the history is no longer than the count kept', async () => {
    const n = await node()
    const { space, roots } = await versions(heliaStore(n, { retention: false }), 100, 4)
    await space.close()
    const before = await stored(n)
    let reads = 0
    const counting = {
      has: n.blockstore.has.bind(n.blockstore),
      get: (cid: CID, options?: Parameters<HeliaNode['blockstore']['get']>[1]) => { reads++; return n.blockstore.get(cid, options) },
      delete: n.blockstore.delete.bind(n.blockstore)
    }
    expect(await retainVersions(counting, roots.at(-1) as CID, { maxRetainedVersions: 4 })).toEqual({ versionsKept: 4, versionsDropped: 0, deletedBlocks: 0 })
    expect(reads).toBeLessThanOrEqual(4)
    expect(await stored(n)).toEqual(before)
  })

  it('deletes nothing when the current version is not whole here, and never a block a kept version reaches', async () => {
    const n = await node()
    const { space, roots } = await versions(heliaStore(n, { retention: false }), 50, 3)
    await space.close()
    // The current root is missing: nothing is known, nothing goes.
    const missing = (await cborBlock({ not: 'stored' })).cid
    expect(await retainVersions(n.blockstore, missing, { maxRetainedVersions: 2 })).toEqual({ versionsKept: 0, versionsDropped: 0, deletedBlocks: 0 })
    // A block of the current version gone (a partial copy): nothing goes either.
    const root = decodeRoot(await readBlock(n, roots[2] as CID))
    await n.blockstore.delete(root.current)
    const before = await stored(n)
    expect((await retainVersions(n.blockstore, roots[2] as CID, { maxRetainedVersions: 2 })).deletedBlocks).toBe(0)
    expect(await stored(n)).toEqual(before)
  })

  it('leaves a space that opens and reads after a pass cut short by a crash, and the next pass finishes it', async () => {
    const n = await node()
    const { space, roots, values } = await versions(heliaStore(n, { retention: false }), 300, 5)
    await space.close()
    const before = await stored(n)
    // The process dies after three deletes.
    let deletes = 0
    const crashing = {
      has: n.blockstore.has.bind(n.blockstore),
      get: n.blockstore.get.bind(n.blockstore),
      delete: async (cid: CID) => {
        if (++deletes > 3) throw Object.assign(new Error('process killed'), { name: 'Crash' })
        await n.blockstore.delete(cid)
      }
    }
    await expect(retainVersions(crashing, roots.at(-1) as CID, { maxRetainedVersions: 2 })).rejects.toMatchObject({ name: 'Crash' })
    expect((await stored(n)).size).toBe(before.size - 3)
    // The dropped roots go last: all still here, so the next pass can walk below them.
    for (const root of roots.slice(0, 3)) expect((await stored(n)).has(mh(root))).toBe(true)

    const reopened = await openSpace({ signer: privateKeyToAccount(KEY), store: heliaStore(n, { retention: false }), state: memoryState() })
    expect(await reopened.getAll()).toEqual(values)
    await reopened.close()

    const finished = await retainVersions(n.blockstore, roots.at(-1) as CID, { maxRetainedVersions: 2 })
    expect(finished.versionsDropped).toBe(3)
    const after = await stored(n)
    for (const root of roots.slice(0, 3)) expect(after.has(mh(root))).toBe(false)
    const clean = await retainVersions(n.blockstore, roots.at(-1) as CID, { maxRetainedVersions: 2 })
    expect(clean).toMatchObject({ versionsDropped: 0, deletedBlocks: 0 })
  })

  it('keeps a dropped version\'s plaintext public blocks (another space may hold the same bytes) and deletes its encrypted ones', async () => {
    const n = await node()
    const space = await openSpace({ signer: privateKeyToAccount(KEY), store: heliaStore(n, { retention: false }), state: memoryState() })
    await space.public.set('name', 'Alice')
    await space.set('a', 1)
    await space.flush()
    const first = space.root as CID
    const firstRoot = decodeRoot(await readBlock(n, first))
    const firstBlocks = await stored(n)
    await space.public.set('name', 'Bob')
    await space.set('a', 2)
    await space.flush()
    await space.set('a', 3)
    await space.flush()
    const report = await retainVersions(n.blockstore, space.root as CID, { maxRetainedVersions: 2 })
    // Each write publishes in the background: at least the first version is dropped.
    expect(report.versionsDropped).toBeGreaterThanOrEqual(1)
    const after = await stored(n)
    expect(after.has(mh(first))).toBe(false)
    expect(firstRoot.public).not.toBeNull()
    expect(after.has(mh(firstRoot.public as CID))).toBe(true)
    // Besides its root, the first version's encrypted bucket (replaced twice since) is gone.
    expect([...firstBlocks].filter(c => !after.has(c)).length).toBeGreaterThanOrEqual(2)
    expect(await space.get('a')).toBe(3)
    await space.close()
  })
})

describe('heliaStore runs retention as it publishes', () => {
  it('after every retentionIntervalVersions publishes, drops the versions past maxRetainedVersions and keeps the space whole', async () => {
    const n = await node()
    const store = heliaStore(n, { maxRetainedVersions: 2, retentionIntervalVersions: 1 })
    const { space, roots, values } = await versions(store, 200, 5)
    await (store as unknown as { retentionRuns: Promise<void> }).retentionRuns
    const after = await stored(n)
    for (const root of roots.slice(0, 3)) expect(after.has(mh(root))).toBe(false)
    for (const root of roots.slice(3)) expect(after.has(mh(root))).toBe(true)
    await space.close()
    const reopened = await openSpace({ signer: privateKeyToAccount(KEY), store: heliaStore(n, { retention: false }), state: memoryState() })
    expect(await reopened.getAll()).toEqual(values)
    await reopened.close()
  })
})

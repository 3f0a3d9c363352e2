import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { openSpace, memoryState, memoryStore, StoreError } from '../src/index.js'
import type { Json, MemoryStore, Space, SpaceOptions, Store } from '../src/index.js'
import { readRecord } from '../src/store/record.js'
import { decodeRoot } from '../src/space/root.js'
import { mergePatch } from './helpers/merge-patch.js'
import { account, KEY_A, nonDeterministicSigner } from './helpers/signers.js'

/** A device's view of the network: a store it can be cut off from. */
interface Link extends Store { online: boolean }

function link (network: Store): Link {
  const l: Link = {
    online: true,
    async putBlocks (blocks, o) { check(); return network.putBlocks(blocks, o) },
    async getBlock (cid, o) { check(); return network.getBlock(cid, o) },
    async putRecord (name, record, o) { check(); return network.putRecord(name, record, o) },
    async getRecord (name, o) { check(); return network.getRecord(name, o) },
    subscribe: network.subscribe?.bind(network)
  }
  function check (): void { if (!l.online) throw new StoreError('offline') }
  return l
}

/** A shared fake wall clock: every stamp anywhere is later than the previous one. */
function fakeClock (): () => number {
  let t = 1_700_000_000_000
  return () => ++t
}

/** A device: its own state (the devices share a network, never a state). */
async function device (store: Store, extra: Partial<SpaceOptions> = {}): Promise<Space> {
  return openSpace({ signer: account(KEY_A), store, retryDelayMs: 0, state: memoryState(), ...extra })
}

describe('two devices', () => {
  it('both keep their writes to different keys made while disconnected', async () => {
    const network = memoryStore()
    const now = fakeClock()
    const la = link(network)
    const lb = link(network)
    const a = await device(la, { now })
    await a.set('shared', 'before')
    await a.flush()
    const b = await device(lb, { now })
    la.online = false
    lb.online = false
    await a.set('from-a', 1)
    await expect(a.flush()).rejects.toMatchObject({ name: 'StoreError' })
    await b.set('from-b', 2)
    await expect(b.flush()).rejects.toMatchObject({ name: 'StoreError' })
    // the writes are kept locally while offline
    expect(await a.get('from-a')).toBe(1)
    la.online = true
    lb.online = true
    await a.refresh()
    await b.refresh()
    await a.refresh()
    const expected = { shared: 'before', 'from-a': 1, 'from-b': 2 }
    expect(await a.getAll()).toEqual(expected)
    expect(await b.getAll()).toEqual(expected)
    expect(await (await device(network)).getAll()).toEqual(expected)
  })

  it('converge on the later write when both set the same key', async () => {
    const network = memoryStore()
    const now = fakeClock()
    const la = link(network); const lb = link(network)
    const a = await device(la, { now }); const b = await device(lb, { now })
    la.online = false; lb.online = false
    await a.set('theme', 'dark')
    await b.set('theme', 'light') // later stamp
    la.online = true; lb.online = true
    await b.refresh(); await a.refresh(); await b.refresh()
    expect(await a.get('theme')).toBe('light')
    expect(await b.get('theme')).toBe('light')
  })

  it('remove on one and set on the other: the later of the two wins, everywhere', async () => {
    for (const removeFirst of [true, false]) {
      const network = memoryStore()
      const now = fakeClock()
      const la = link(network); const lb = link(network)
      const a = await device(la, { now }); await a.set('k', 'original'); await a.flush()
      const b = await device(lb, { now })
      la.online = false; lb.online = false
      if (removeFirst) {
        await a.remove('k')
        await b.set('k', 'revived')
      } else {
        await b.set('k', 'revived')
        await a.remove('k')
      }
      la.online = true; lb.online = true
      await a.refresh(); await b.refresh(); await a.refresh()
      const expected = removeFirst ? 'revived' : undefined
      expect(await a.get('k')).toBe(expected)
      expect(await b.get('k')).toBe(expected)
    }
  })

  it('an offline write goes out on top of the newer version', async () => {
    const network = memoryStore()
    const la = link(network); const lb = link(network)
    const a = await device(la); await a.set('base', 0); await a.flush()
    const b = await device(lb)
    await a.set('a', 1)
    await a.flush()
    lb.online = false
    await b.set('b', 1)
    lb.online = true
    await b.refresh()
    // b's offline write was never published, so the new version simply follows a's
    const root = decodeRoot(network.blocks.get(readRecord(network.records.get(a.name)!).cid!.toString())!)
    expect(root.parents).toHaveLength(1)
    expect((await b.history()).map(h => h.sequence)).toEqual([3, 2, 1])
    expect(await b.getAll()).toEqual({ base: 0, a: 1, b: 1 })
  })
})

describe('three devices, random interleavings (property)', () => {
  type Op =
    | { d: number, op: 'set', key: string, value: Json }
    | { d: number, op: 'remove', key: string }
    | { d: number, op: 'patch', key: string, value: Json }
    | { d: number, op: 'sync' }
    | { d: number, op: 'offline' }
    | { d: number, op: 'online' }
  const key = fc.constantFrom('a', 'b', 'c', 'd')
  const value: fc.Arbitrary<Json> = fc.oneof(fc.integer(), fc.string({ maxLength: 4 }), fc.dictionary(fc.constantFrom('x', 'y'), fc.oneof(fc.integer(), fc.constant(null)), { maxKeys: 2 }))
  const d = fc.nat(2)
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ d, op: fc.constant('set' as const), key, value }),
    fc.record({ d, op: fc.constant('remove' as const), key }),
    fc.record({ d, op: fc.constant('patch' as const), key, value }),
    fc.record({ d, op: fc.constant('sync' as const) }),
    fc.record({ d, op: fc.constant('offline' as const) }),
    fc.record({ d, op: fc.constant('online' as const) })
  )

  it('all devices end with the same map, equal to the last-writer-wins model', async () => {
    await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
      const network = memoryStore()
      const now = fakeClock()
      const links = [link(network), link(network), link(network)]
      const devices: Space[] = []
      for (const l of links) devices.push(await device(l, { now }))
      // The model: each device's replica, and the network's, as key → [stamp order, value | tombstone].
      type Cell = { t: number, v: Json | undefined }
      const replicas = [new Map<string, Cell>(), new Map<string, Cell>(), new Map<string, Cell>()]
      let net = new Map<string, Cell>()
      let t = 0
      const merge = (into: Map<string, Cell>, from: Map<string, Cell>): void => {
        for (const [k, c] of from) if ((into.get(k)?.t ?? -1) < c.t) into.set(k, c)
      }
      const publish = (i: number): void => {
        if (!links[i]!.online) return
        merge(replicas[i]!, net)
        net = new Map(replicas[i]!)
      }
      for (const step of ops) {
        const space = devices[step.d]!
        const replica = replicas[step.d]!
        if (step.op === 'offline') { links[step.d]!.online = false; continue }
        if (step.op === 'online') { links[step.d]!.online = true; continue }
        if (step.op === 'sync') {
          await space.refresh().catch((err: Error) => { if (err.name !== 'StoreError') throw err })
          publish(step.d)
          continue
        }
        const current = replica.get(step.key)?.v
        let next: Json | undefined
        if (step.op === 'set') next = step.value
        if (step.op === 'remove') next = undefined
        if (step.op === 'patch') next = step.value === null ? undefined : mergePatch(current ?? null, step.value)
        const write = step.op === 'set'
          ? space.set(step.key, step.value)
          : step.op === 'remove' ? space.remove(step.key) : space.patch({ [step.key]: step.value })
        await write
        await space.flush().catch((err: Error) => { if (err.name !== 'StoreError') throw err })
        // A write that leaves the value as this device sees it is no write at all: no new stamp, so
        // it cannot override a concurrent change made elsewhere.
        if (JSON.stringify(next) === JSON.stringify(current)) continue
        replica.set(step.key, { t: ++t, v: next })
        publish(step.d)
      }
      for (const l of links) l.online = true
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 3; i++) { await devices[i]!.refresh(); publish(i) }
      }
      const expected = Object.fromEntries([...net].filter(([, c]) => c.v !== undefined).map(([k, c]) => [k, c.v]))
      for (const space of devices) expect(await space.getAll()).toEqual(expected)
    }), { numRuns: 40 })
  })
})


describe('one process', () => {
  it('keeps all of 100 concurrent sets, in a few publishes', async () => {
    const network = memoryStore()
    const space = await device(network)
    await Promise.all(Array.from({ length: 100 }, async (_, i) => space.set(`k${i}`, i)))
    await space.flush()
    const all = await space.getAll()
    expect(Object.keys(all)).toHaveLength(100)
    for (let i = 0; i < 100; i++) expect(all[`k${i}`]).toBe(i)
    expect(space.sequence).toBeLessThanOrEqual(3)
    expect(Object.keys(await (await device(network)).getAll())).toHaveLength(100)
  })

  it('publishes offline writes by itself once the store is back', async () => {
    const network = memoryStore()
    const l = link(network)
    const space = await device(l, { retryDelayMs: 20 })
    l.online = false
    await space.set('offline-edit', true)
    await expect(space.flush()).rejects.toBeInstanceOf(StoreError)
    l.online = true
    await expect.poll(async () => (await device(network)).get('offline-edit'), { timeout: 2000, interval: 50 }).toBe(true)
  })
})

describe('rollback protection', () => {
  /** A store that, once told to, serves an old record instead of the newest one. */
  function replaying (network: MemoryStore): Store & { replay?: Uint8Array } {
    const s: Store & { replay?: Uint8Array } = {
      putBlocks: network.putBlocks.bind(network),
      getBlock: network.getBlock.bind(network),
      putRecord: async (name, record, o) => { if (s.replay === undefined) await network.putRecord(name, record, o) },
      getRecord: async (name, o) => s.replay ?? network.getRecord(name, o)
    }
    return s
  }

  it('keeps the newer state and reports a rollback when a store serves an older record', async () => {
    const network = memoryStore()
    const store = replaying(network)
    const space = await device(store)
    await space.set('v', 1)
    await space.flush()
    const old = network.records.get(space.name)!
    await space.set('v', 2)
    await space.flush()
    const events: unknown[] = []
    space.on('rollback', e => events.push(e))
    store.replay = old
    await space.refresh()
    expect(await space.get('v')).toBe(2)
    expect(space.sequence).toBe(2)
    expect(events).toEqual([{ sequence: 1, seen: 2 }])
  })

  it('remembers the highest sequence across re-opens through its state store', async () => {
    const network = memoryStore()
    const state = memoryState()
    const store = replaying(network)
    const first = await device(store, { state })
    await first.set('v', 1)
    await first.flush()
    const old = network.records.get(first.name)!
    await first.set('v', 2)
    await first.flush()
    await first.close()
    store.replay = old
    const events: unknown[] = []
    const again = await openSpace({ signer: account(KEY_A), store, state, retryDelayMs: 0 })
    again.on('rollback', e => events.push(e))
    expect(again.sequence).toBe(2)
    expect(await again.get('v')).toBe(2)
    await again.refresh()
    expect(events).toEqual([{ sequence: 1, seen: 2 }])
  })

  it('reports a record with the same sequence and another value, and merges it', async () => {
    const network = memoryStore()
    const la = link(network); const lb = link(network)
    const a = await device(la); await a.set('base', 0); await a.flush()
    const b = await device(lb)
    // both publish sequence 2 from the same base, without seeing each other
    const bRecordBefore = network.records.get(a.name)!
    await a.set('a', 1)
    await a.flush()
    const aRecord = network.records.get(a.name)!
    network.records.set(a.name, bRecordBefore)
    await b.set('b', 1)
    await b.flush()
    expect(readRecord(network.records.get(a.name)!).sequence).toBe(readRecord(aRecord).sequence)
    const conflicts: unknown[] = []
    a.on('conflict', e => conflicts.push(e))
    await a.refresh()
    expect(conflicts).toHaveLength(1)
    expect(await a.getAll()).toEqual({ base: 0, a: 1, b: 1 })
    // the merge names both versions of sequence 2 as parents: history is a DAG
    const merged = decodeRoot(network.blocks.get(readRecord(network.records.get(a.name)!).cid!.toString())!)
    expect(merged.sequence).toBe(3)
    expect(merged.parents.map(String).sort()).toEqual([readRecord(aRecord).cid!.toString(), b.root!.toString()].sort())
    const history = await a.history()
    expect(history.map(h => h.sequence)).toEqual([3, 2, 2, 1])
  })
})

describe('wallets that do not sign deterministically', () => {
  it('are refused when the address is already bound to another name', async () => {
    const network = memoryStore()
    const first = await openSpace({ signer: account(KEY_A), store: network })
    await first.set('precious', 'data')
    await first.flush()
    // a store with an address index (as a hub keeps) that knows the first name
    const indexed: Store = { ...bind(network), lookupAddress: async () => first.name }
    await expect(openSpace({ signer: nonDeterministicSigner(KEY_A), store: indexed }))
      .rejects.toMatchObject({ name: 'NonDeterministicSignerError' })
    // and the real space is untouched
    expect(await (await openSpace({ signer: account(KEY_A), store: network })).get('precious')).toBe('data')
  })
})

function bind (store: MemoryStore): Store {
  return {
    putBlocks: store.putBlocks.bind(store),
    getBlock: store.getBlock.bind(store),
    putRecord: store.putRecord.bind(store),
    getRecord: store.getRecord.bind(store)
  }
}

describe('live updates', () => {
  it("device B's subscriber hears device A's set, with the map already merged", async () => {
    const network = memoryStore()
    const a = await device(network)
    await a.set('x', 0)
    await a.flush()
    const b = await device(network)
    const heard = new Promise<{ keys: string[], value: Json | undefined }>((resolve) => {
      b.subscribe((event) => { void b.get('x').then(value => resolve({ keys: event.keys, value })) })
    })
    await a.set('x', 42)
    await a.flush()
    expect(await heard).toEqual({ keys: ['x'], value: 42 })
  })
})

describe('record upkeep', () => {
  it('re-signs a record past half its lifetime when the space is opened', async () => {
    const network = memoryStore()
    const a = await device(network, { recordLifetimeMs: 1000 })
    await a.set('k', 1)
    await a.flush()
    const before = readRecord(network.records.get(a.name)!)
    // the device's clock says 600 ms have passed: past half the record's lifetime
    const again = await device(network, { recordLifetimeMs: 1000, now: () => Date.now() + 600 })
    const after = readRecord(network.records.get(a.name)!)
    expect(after.sequence).toBe(before.sequence)
    expect(after.value).toBe(before.value)
    expect(after.validUntilMs).toBeGreaterThan(before.validUntilMs)
    expect(await again.get('k')).toBe(1)
  })
})

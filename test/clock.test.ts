/**
 * The clock reaches every path that needs the date: a space, its records, the state's lock file,
 * the hub (its cluster and its worker-thread record checks too) and the helia store all follow the
 * clock they were given, never the system's. Each check here fails if a path read the system time
 * instead (the given clocks are years, days or minutes away from it).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { fileState, memoryState, memoryStore, openSpace } from '../src/index.js'
import type { Space, SpaceOptions, Store } from '../src/index.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createRecord, nameOfKey, readRecord, validateRecord } from '../src/store/record.js'
import { rawBlock } from '../src/store/blocks.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { heliaStore } from '../src/store/helia.js'
import { hubStore } from '../src/store/hub.js'
import { startHub, VerifierPool } from '../src/hub/server.js'
import { CLUSTER_RECORDS_TOPIC } from '../src/protocol.js'
import { decodeLanded, LANDED_PREFIX } from '../src/hub/storage.js'
import type { RunningHub } from '../src/hub/server.js'
import type { GossipSub } from '@libp2p/gossipsub'
import { decodeRoot, versionOwner } from '../src/space/root.js'
import { account, KEY_A } from './helpers/signers.js'
import { makeHub, storeFor } from './helpers/hub-app.js'

const DAY_MS = 24 * 3600_000
/** 2040-01-01T00:00:00Z: years away from the system clock. */
const FUTURE_MS = Date.UTC(2040, 0, 1)

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 5 }) })
const open: Space[] = []
afterEach(async () => { for (const s of open.splice(0)) await s.close().catch(() => {}) })

async function device (store: Store, extra: Partial<SpaceOptions> = {}): Promise<Space> {
  const space = await openSpace({ signer: account(KEY_A), store, state: memoryState(), retryDelayMs: 0, ...extra })
  open.push(space)
  return space
}

describe('a space follows its clock', () => {
  it('dates the version, the owner binding and the record validity by `now`', async () => {
    const store = memoryStore()
    const lifetimeMs = 30 * DAY_MS
    const space = await device(store, { now: () => FUTURE_MS, recordLifetimeMs: lifetimeMs })
    await space.set('k', 'v')
    await space.flush()
    const record = await store.getRecord(space.name) as Uint8Array
    expect(readRecord(record).validUntilMs).toBe(FUTURE_MS + lifetimeMs)
    const root = decodeRoot(await store.getBlock(space.root as NonNullable<Space['root']>))
    expect(root.updatedAt).toBe(FUTURE_MS)
    expect((await versionOwner(space.root as NonNullable<Space['root']>, async cid => await store.getBlock(cid))).issuedAt).toBe(FUTURE_MS)
  })

  it('judges expiry by `now`: a record past its validity on this clock is expired, one past it only on the system clock is not', async () => {
    const store = memoryStore()
    const writer = await device(store, { recordLifetimeMs: DAY_MS })
    await writer.set('k', 'v')
    await writer.flush()
    await writer.close()
    open.splice(0)
    const record = await store.getRecord(writer.name) as Uint8Array
    expect((await validateRecord(writer.name, record, { allowExpired: true, nowMs: () => Date.now() + 2 * DAY_MS })).expired).toBe(true)

    // Opened two days later: the open finds the record expired, and a new version renews it.
    const later = await device(store, { now: () => Date.now() + 2 * DAY_MS })
    await later.flush()
    expect(later.sequence).toBe(2)
    expect(readRecord(await store.getRecord(later.name) as Uint8Array).validUntilMs).toBeGreaterThan(Date.now() + 2 * DAY_MS)

    // Signed two days ago by its own clock with a one-day lifetime: expired for the system, not for that clock.
    const pastStore = memoryStore()
    const past = await device(pastStore, { now: () => Date.now() - 2 * DAY_MS, recordLifetimeMs: DAY_MS })
    await past.set('k', 'v')
    await past.flush()
    const old = await pastStore.getRecord(past.name) as Uint8Array
    await expect(validateRecord(past.name, old)).rejects.toMatchObject({ name: 'InvalidRecordError' })
    const info = await validateRecord(past.name, old, { nowMs: () => Date.now() - 2 * DAY_MS })
    expect(info.expired).toBe(false)
  })

  it('renews an aging record by `now`: past half its lifetime on this clock, it is signed again from this clock', async () => {
    const store = memoryStore()
    const lifetimeMs = 10 * DAY_MS
    const writer = await device(store, { recordLifetimeMs: lifetimeMs })
    await writer.set('k', 'v')
    await writer.flush()
    const before = readRecord(await store.getRecord(writer.name) as Uint8Array)
    const laterMs = Date.now() + 6 * DAY_MS
    await device(store, { recordLifetimeMs: lifetimeMs, now: () => laterMs })
    const after = readRecord(await store.getRecord(writer.name) as Uint8Array)
    expect(after.sequence).toBe(before.sequence)
    expect(after.validUntilMs).toBe(laterMs + lifetimeMs)
  })
})

describe('the state lock follows its clock', () => {
  it('takes over a lock that is old on the given clock at once (on the system clock it is fresh and held by a live process)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'userspace-clock-'))
    dirs.push(dir)
    const name = 'k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8'
    // A lock naming this (live) process, written just now: only a lock over ten minutes old is taken from a live pid.
    writeFileSync(join(dir, `${name}.lock`), String(process.pid))
    const state = fileState(dir, { nowMs: () => Date.now() + 11 * 60_000 })
    await state.put(name, { sequence: 1, root: '' })
    expect((await state.get(name))?.sequence).toBe(1)
  })
})

describe('the hub follows its clock', () => {
  it('refills rate-limit tokens by `nowMs`', async () => {
    let nowMs = FUTURE_MS
    const hub = makeHub({ rateLimit: { requestsPerSecond: 1, burst: 1 }, nowMs: () => nowMs })
    const get = async (): Promise<number> => (await hub.app.request('/healthz')).status
    expect(await get()).not.toBe(429)
    expect(await get()).toBe(429)
    nowMs += 1_000
    expect(await get()).not.toBe(429)
  })

  it('accepts an owner binding dated by a clock a day ahead only when its own clock is there too', async () => {
    const aheadMs = (): number => Date.now() + DAY_MS
    const ahead = makeHub({ nowMs: aheadMs })
    const space = await device(storeFor(ahead), { now: aheadMs })
    await space.set('k', 'v')
    await space.flush()
    expect(space.sequence).toBe(1)

    const behind = makeHub()
    const refused = await device(storeFor(behind), { now: aheadMs })
    await refused.set('k', 'v')
    await expect(refused.flush()).rejects.toMatchObject({ name: 'InvalidInputError', message: expect.stringContaining('in the future') })
  })

  it('dates its answers by `nowMs`', async () => {
    const hub = makeHub({ nowMs: () => FUTURE_MS })
    const res = await hub.app.request('/routing/v1/providers/bafkqaaa')
    expect(res.headers.get('last-modified')).toBe(new Date(FUTURE_MS).toUTCString())
  })
})

/** A record of a fresh key, signed at `signedAtMs` and valid for `lifetimeMs` from then. */
async function recordAt (signedAtMs: number, lifetimeMs: number, sequence = 1): Promise<{ name: string, record: Uint8Array }> {
  const key = await generateKeyPair('Ed25519')
  const { cid } = await rawBlock(new Uint8Array([sequence]))
  return { name: nameOfKey(key), record: await createRecord(key, cid, sequence, { lifetimeMs, nowMs: () => signedAtMs }) }
}

describe('hub record checks on worker threads follow the hub clock', () => {
  it('judges a record\'s validity at the hub\'s time, on a worker and on the main thread alike', async () => {
    const server = new URL('../dist/src/hub/server.js', import.meta.url)
    // Workers load the compiled record codec: only the built pool runs checks off the main thread.
    if (!existsSync(server)) throw new Error('dist/ is missing: run `npm run build` (npm test does) before this test')
    const built = await import(server.href) as { VerifierPool: typeof VerifierPool }
    const twoDaysAgo = (): number => Date.now() - 2 * DAY_MS
    // Signed two days ago for one day: expired on the system clock, live on a clock two days behind.
    const old = await recordAt(twoDaysAgo(), DAY_MS)
    // Signed now for a month: live on the system clock, expired in 2040.
    const fresh = await recordAt(Date.now(), 30 * DAY_MS)
    const behind = new built.VerifierPool(1, twoDaysAgo)
    const ahead = new built.VerifierPool(1, () => FUTURE_MS)
    try {
      await Promise.all([behind.started(), ahead.started()])
      expect([behind.threads, ahead.threads]).toEqual([1, 1])
      expect(await behind.validate(old.name, old.record)).toMatchObject({ sequence: 1n, expired: false })
      await expect(ahead.validate(fresh.name, fresh.record)).rejects.toMatchObject({ name: 'InvalidRecordError', message: expect.stringContaining('expired') })
    } finally {
      await behind.stop()
      await ahead.stop()
    }
    // No threads: the main thread checks, at the same time.
    expect(await new VerifierPool(0, twoDaysAgo).validate(old.name, old.record)).toMatchObject({ expired: false })
    await expect(new VerifierPool(0, () => FUTURE_MS).validate(fresh.name, fresh.record)).rejects.toMatchObject({ name: 'InvalidRecordError' })
  })
})

describe('the helia store follows its clock', () => {
  it('judges records by `nowMs` and keeps the local record fresh for its TTL on that clock', async () => {
    const node = await createHeliaNode()
    try {
      let nowMs = Date.now() - 2 * DAY_MS
      const store = heliaStore(node, { nowMs: () => nowMs })
      const { name, record } = await recordAt(nowMs, DAY_MS)
      // Expired for the system clock: a store on it refuses the record, one on the given clock keeps it.
      await expect(heliaStore(node).putRecord(name, record)).rejects.toMatchObject({ name: 'InvalidRecordError' })
      await store.putRecord(name, record)
      expect(await store.getRecord(name)).toEqual(record)
      expect(await heliaStore(node).getRecord(name)).toBeUndefined()

      // The network is asked once per TTL (5 min), measured on the given clock.
      let asked = 0
      const get = node.routing.get.bind(node.routing)
      node.routing.get = async (...args) => { asked++; return get(...args) }
      await store.getRecord(name)
      const before = asked
      await store.getRecord(name)
      expect(asked).toBe(before)
      nowMs += 6 * 60_000
      await store.getRecord(name)
      expect(asked).toBeGreaterThan(before)
    } finally {
      await stopHeliaNode(node)
    }
  })
})

describe('the hub cluster follows the hub clock', () => {
  const hubs: RunningHub[] = []
  afterAll(async () => { await Promise.all(hubs.map(async h => h.stop())) })

  it('refills a peer\'s message allowance and dates replicated blocks by `nowMs`', async () => {
    // A day ahead of the system; a burst of one message per peer, refilled every 20 s of this clock.
    let shiftMs = DAY_MS
    const nowMs = (): number => Date.now() + shiftMs
    const options = { port: 0, directory: false as const, rateLimit: 0 as const, verifyThreads: 0, republishIntervalMs: 0, nextId: false as const, nowMs, cluster: { peerMessagesPerSecond: 0.05, replicaWaitMs: 400 } }
    const a = await startHub(options)
    hubs.push(a)
    const b = await startHub({ ...options, peers: a.multiaddrs })
    hubs.push(b)
    for (const h of [a, b]) {
      const pubsub = h.helia.libp2p.services.pubsub as GossipSub
      while (pubsub.getSubscribers(CLUSTER_RECORDS_TOPIC).length < 1) {
        await new Promise(resolve => pubsub.addEventListener('subscription-change', resolve, { once: true }))
      }
    }
    const space = await device(hubStore(a.url))
    const sequenceAtB = async (): Promise<bigint | undefined> => {
      const res = await fetch(new URL(`/routing/v1/ipns/${space.name}`, b.url))
      return res.status === 200 ? readRecord(new Uint8Array(await res.arrayBuffer())).sequence : undefined
    }
    const write = async (n: number): Promise<void> => {
      await space.set('n', n)
      await space.flush()
    }

    await write(1)
    await expect.poll(sequenceAtB, { timeout: 5_000, interval: 20 }).toBe(1n)
    // The allowance is spent: the next record (and its resend) is ignored.
    await write(2)
    expect(await sequenceAtB()).toBe(1n)
    // 20 s later on the hubs' clock (milliseconds on the system's), one more message is allowed.
    shiftMs += 20_000
    await write(3)
    await expect.poll(sequenceAtB, { timeout: 5_000, interval: 20 }).toBe(3n)

    // The blocks that rode with the records landed at B on B's clock.
    const landed: number[] = []
    for await (const { key, value } of b.helia.datastore.query({ prefix: LANDED_PREFIX.slice(0, -1) })) {
      for (const entry of decodeLanded(key.toString(), value)) if (entry.client === 'network') landed.push(entry.atMs)
    }
    expect(landed.length).toBeGreaterThan(0)
    for (const at of landed) expect(at).toBeGreaterThan(Date.now() + DAY_MS / 2)
  }, 60_000)
})

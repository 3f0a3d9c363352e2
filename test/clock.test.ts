/**
 * The clock reaches every path that needs the date: a space, its records, the state's lock file and
 * the hub all follow the clock they were given, never the system's. Each check here fails if a path
 * read the system time instead (the given clocks are years or minutes away from it).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { fileState, memoryState, memoryStore, openSpace } from '../src/index.js'
import type { Space, SpaceOptions, Store } from '../src/index.js'
import { readRecord, validateRecord } from '../src/store/record.js'
import { decodeRoot } from '../src/space/root.js'
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
    expect(root.owner.issuedAt).toBe(FUTURE_MS)
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

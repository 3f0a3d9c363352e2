/**
 * An expired record is the last version its owner signed, not an error: `validateRecord` with
 * `allowExpired` accepts it only when everything but the validity holds, and readers (`readPublic`,
 * `exportSpace`, `userspace inspect`) read that version and say it has expired. Records are signed
 * by a clock two days behind with a one-hour lifetime, so they are expired on the system clock at
 * once: no test waits for time to pass.
 */
import { serve } from '@hono/node-server'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { afterAll, describe, expect, it } from 'vitest'
import { main } from '../src/cli/main.js'
import { createHubApp } from '../src/hub/app.js'
import { openSpace } from '../src/space/space.js'
import { readPublic } from '../src/space/read-public.js'
import { exportSpace, importSpace } from '../src/space/transfer.js'
import { rawBlock } from '../src/store/blocks.js'
import { memoryStore } from '../src/store/memory.js'
import { createRecord, nameOfKey, validateRecord } from '../src/store/record.js'
import { account, KEY_A } from './helpers/signers.js'
import type { Server } from 'node:http'
import type { CliIO } from '../src/cli/main.js'
import type { Store } from '../src/store/interface.js'

const LIFETIME_MS = 3600_000
/** The writers' clock: two days behind the system's, so a record it signs for LIFETIME_MS has expired. */
const past = (): number => Date.now() - 2 * 24 * 3600_000

/** Wallet A's space with a public nick, published two days ago with a record valid for LIFETIME_MS. */
async function expiredSpace (store: Store): Promise<string> {
  const space = await openSpace({ signer: account(KEY_A), store, recordLifetimeMs: LIFETIME_MS, now: past })
  await space.public.set('nick', 'alice')
  await space.flush()
  await space.set('secret', 1)
  await space.flush()
  const name = space.name
  await space.close()
  return name
}

describe('validateRecord', () => {
  it('refuses an expired record by default and returns it as expired with allowExpired', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const { cid } = await rawBlock(new Uint8Array([1]))
    const fresh = await createRecord(key, cid, 3)
    expect(await validateRecord(name, fresh)).toMatchObject({ sequence: 3n, expired: false })
    expect(await validateRecord(name, fresh, { allowExpired: true })).toMatchObject({ expired: false })

    const old = await createRecord(key, cid, 4, { lifetimeMs: LIFETIME_MS, nowMs: past })
    const err = await validateRecord(name, old).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'InvalidRecordError' })
    expect((err as Error).message).toMatch(/expired/)
    const info = await validateRecord(name, old, { allowExpired: true })
    expect(info).toMatchObject({ sequence: 4n, expired: true })
    expect(info.cid?.equals(cid)).toBe(true)
    expect(info.validUntilMs).toBeLessThan(Date.now())
  })

  it('still checks everything but the validity: a tampered or misnamed expired record is refused', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const old = await createRecord(key, (await rawBlock(new Uint8Array([1]))).cid, 1, { lifetimeMs: LIFETIME_MS, nowMs: past })
    expect(await validateRecord(name, old, { allowExpired: true })).toMatchObject({ expired: true })
    const tampered = old.slice()
    const at = tampered.length - 10 // inside the V2 data, under the signature
    tampered[at] = (tampered[at] as number) ^ 1
    await expect(validateRecord(name, tampered, { allowExpired: true })).rejects.toMatchObject({ name: 'InvalidRecordError' })
    const other = nameOfKey(await generateKeyPair('Ed25519'))
    await expect(validateRecord(other, old, { allowExpired: true })).rejects.toMatchObject({ name: 'InvalidRecordError' })
  })
})

describe('readers of an expired space', () => {
  it('readPublic reads the last version and says it has expired', async () => {
    const store = memoryStore()
    const name = await expiredSpace(store)
    const profile = await readPublic({ name, store })
    expect(profile.data).toEqual({ nick: 'alice' })
    expect(profile.expired).toBe(true)
    expect(profile.validUntilMs).toBeLessThan(Date.now())
    expect(profile.address).toBe(account(KEY_A).address)
    // The reader's clock decides: on the writer's clock the same record is live.
    expect(await readPublic({ name, store, nowMs: past })).toMatchObject({ expired: false, data: { nick: 'alice' } })
  })

  it('readPublic of a live space says it has not expired', async () => {
    const store = memoryStore()
    const space = await openSpace({ signer: account(KEY_A), store })
    await space.public.set('nick', 'alice')
    await space.flush()
    await space.close()
    const profile = await readPublic({ name: space.name, store })
    expect(profile.expired).toBe(false)
    expect(profile.validUntilMs).toBeGreaterThan(Date.now())
  })

  it('exportSpace backs up an expired space; importSpace refuses it before writing anything', async () => {
    const store = memoryStore()
    const name = await expiredSpace(store)
    const result = await exportSpace(store, name)
    expect(result).toMatchObject({ name, expired: true, sequence: 2 })
    const target = memoryStore()
    const err = await importSpace(target, result.car).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'InvalidRecordError' })
    expect((err as Error).message).toMatch(/expired/)
    expect(await target.getRecord(name)).toBeUndefined()
    expect(await target.getBlock(result.root).then(() => true, () => false)).toBe(false)
  })
})

const servers: Server[] = []
afterAll(async () => {
  for (const server of servers) {
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => { resolve() }))
  }
})

describe('userspace inspect', () => {
  it('shows an expired space\'s last version and says it has expired', async () => {
    // The hub keeps the writers' clock, so it accepts the records that are expired for the reader.
    const app = createHubApp({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() }, { rateLimit: 0, nowMs: past })
    const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }) as Server
    servers.push(server)
    await new Promise<void>(resolve => server.listening ? resolve() : server.once('listening', () => { resolve() }))
    const hub = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const { hubStore } = await import('../src/store/hub.js')
    await expiredSpace(hubStore(hub))

    const out: string[] = []
    const io = (): CliIO => ({ out: l => out.push(l), err: l => out.push(l), env: {}, stopSignal: async () => await new Promise(() => {}) })
    expect(await main(['inspect', account(KEY_A).address, '--hub', hub, '--json'], io())).toBe(0)
    const info = JSON.parse(out.pop() as string) as { expired: boolean, validUntil: string, public: unknown, owner: string }
    expect(info).toMatchObject({ expired: true, public: { nick: 'alice' }, owner: account(KEY_A).address })
    expect(Date.parse(info.validUntil)).toBeLessThan(Date.now())
    out.length = 0
    expect(await main(['inspect', account(KEY_A).address, '--hub', hub], io())).toBe(0)
    expect(out.join('\n')).toMatch(/record: +EXPIRED on /)
  })
})

/**
 * The Next.ID app's request limits that ride on the hub's shared body reader and Content-Type
 * check: the import CAR cap (`maxImportBytes`, inclusive, refused before anything is stored) and
 * the JSON charset rule (UTF-8, spelled with or without quotes; anything else is 415). Through
 * `app.request()` on in-memory stores, signed with a real secp256k1 key (viem).
 */
import { describe, expect, it } from 'vitest'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { MemoryDatastore } from 'datastore-core/memory'
import { privateKeyToAccount } from 'viem/accounts'
import { hexToBytes, toBase64 } from '../src/crypto/bytes.js'
import { createNextIdApp, type NextIdOptions } from '../src/hub/nextid.js'
import type { Hono } from 'hono'

// viem's test account 0 (also the EIP-191 vector's key in shared notes).
const account = privateKeyToAccount('0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80')
const avatar = account.publicKey

function newApp (options: Partial<NextIdOptions> = {}): Hono {
  return createNextIdApp({ datastore: new MemoryDatastore(), blockstore: new MemoryBlockstore(), ...options })
}

async function postJson (app: Hono, path: string, body: unknown, type = 'application/json'): Promise<Response> {
  return app.request(path, { method: 'POST', headers: { 'content-type': type }, body: JSON.stringify(body) })
}

/** Writes one signed patch under the avatar's own "nextid" identity. */
async function writePatch (app: Hono, patch: unknown): Promise<void> {
  const fields = { avatar, platform: 'nextid', identity: avatar, patch }
  const payloadRes = await postJson(app, '/v1/kv/payload', fields)
  expect(payloadRes.status, await payloadRes.clone().text()).toBe(200)
  const payload = await payloadRes.json() as { uuid: string, sign_payload: string, created_at: number }
  const signature = toBase64(hexToBytes(await account.signMessage({ message: payload.sign_payload })))
  const res = await postJson(app, '/v1/kv', { ...fields, uuid: payload.uuid, created_at: payload.created_at, signature })
  expect(res.status, await res.clone().text()).toBe(201)
}

async function exportCar (app: Hono): Promise<Uint8Array> {
  const res = await app.request(`/api/v1/nextid/export?avatar=${avatar}`)
  expect(res.status).toBe(200)
  return new Uint8Array(await res.arrayBuffer())
}

async function importCar (app: Hono, car: Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
  return app.request('/api/v1/nextid/import', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car', ...headers }, body: Uint8Array.from(car) })
}

describe('Next.ID request limits', () => {
  it('refuses an import CAR over maxImportBytes with 413 TooLargeError and stores nothing; one at the limit is taken', async () => {
    const source = newApp()
    await writePatch(source, { a: 1 })
    await writePatch(source, { b: 2 })
    const car = await exportCar(source)

    const small = newApp({ maxImportBytes: car.length - 1 })
    const refused = await importCar(small, car)
    expect(refused.status).toBe(413)
    expect(await refused.json()).toMatchObject({ name: 'TooLargeError' })
    // A declared length over the cap is refused before the body is read.
    const declared = await importCar(small, car, { 'content-length': String(car.length) })
    expect(declared.status).toBe(413)
    expect((await small.request(`/api/v1/nextid/export?avatar=${avatar}`)).status).toBe(404)
    expect(await (await small.request(`/v1/kv?avatar=${avatar}`)).json()).toMatchObject({ proofs: [] })

    const exact = newApp({ maxImportBytes: car.length })
    const taken = await importCar(exact, car)
    expect(taken.status, await taken.clone().text()).toBe(201)
    expect(await (await exact.request(`/v1/kv?avatar=${avatar}`)).json()).toMatchObject({ proofs: [{ platform: 'nextid', content: { a: 1, b: 2 } }] })
  })

  it('takes JSON declared as UTF-8 in any spelling, and refuses another charset with 415', async () => {
    const app = newApp()
    const fields = { avatar, platform: 'nextid', identity: avatar, patch: { a: 1 } }
    for (const type of ['application/json; charset=utf-8', 'application/json;charset="UTF-8"', 'Application/JSON']) {
      expect((await postJson(app, '/v1/kv/payload', fields, type)).status, type).toBe(200)
    }
    for (const type of ['application/json; charset=latin1', 'application/json; charset="utf-16"', 'text/plain']) {
      const res = await postJson(app, '/v1/kv/payload', fields, type)
      expect(res.status, type).toBe(415)
      expect(await res.json()).toMatchObject({ message: expect.stringMatching(/Content-Type/) })
    }
  })
})

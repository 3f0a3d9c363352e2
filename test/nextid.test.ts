/**
 * The Next.ID KV Service module: kv_server's own vectors, the JSON dialect its signatures depend on,
 * every route through `app.request()` with real secp256k1 signatures, the defects of the original
 * that must stay fixed, and the export/import of an avatar's block chain.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as secp from '@noble/secp256k1'
import * as dagCbor from '@ipld/dag-cbor'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { MemoryDatastore } from 'datastore-core/memory'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { apply as jsonMergeApply } from 'json-merge-patch'
import { privateKeyToAccount } from 'viem/accounts'
import { CID } from 'multiformats/cid'
import {
  MAX_STALE_CANDIDATES, buildSignPayload, createNextIdApp, exportAvatarChain, importAvatarChain, nextIdStoredBytes, type NextIdOptions
} from '../src/hub/nextid.js'
import { parsePublicKey, recoveryCount, signedBy } from '../src/hub/nextid/chain.js'
import { canonicalJson, compareCodePoints, formatNumber, mergePatch, parseJson, toJsonValue } from '../src/hub/nextid/json.js'
import { bytesToHex, concatBytes, fromBase64, hexToBytes, toBase64, utf8 } from '../src/crypto/bytes.js'
import { hashPersonalMessage, recoverPersonalSigner } from '../src/crypto/eip191.js'
import { cborBlock, encodeCar } from '../src/store/blocks.js'
import { CarReader } from '@ipld/car'
import { Key as DatastoreKey } from 'interface-datastore'
import type { Block } from '../src/store/interface.js'
import { Hono } from 'hono'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serve, type ServerType } from '@hono/node-server'
import { LevelDatastore } from 'datastore-level'
import { FsBlockstore } from 'blockstore-fs'
import type { AddressInfo } from 'node:net'
import vectors from './fixtures/nextid-vectors.json' with { type: 'json' }

// ---------------------------------------------------------------------------------------------
// fixture factories

const NOW_MS = 1_700_000_000_000
const WINDOW_MS = 10 * 60 * 1000

interface Key {
  secretKey: Uint8Array
  /** 65-byte uncompressed */
  publicKey: Uint8Array
  /** `0x04…` as the API reports it */
  avatar: string
  /** `0x02…`/`0x03…` */
  compressed: string
}

function makeKey (seed: string): Key {
  const secretKey = keccak_256(utf8(seed))
  const publicKey = secp.getPublicKey(secretKey, false)
  return { secretKey, publicKey, avatar: '0x' + bytesToHex(publicKey), compressed: '0x' + bytesToHex(secp.getPublicKey(secretKey, true)) }
}

const alice = makeKey('nextid test alice')
const bob = makeKey('nextid test bob')

/** personal_sign as r‖s‖v; v as 0/1 (kv_server's own signer) or 27/28 (wallets). */
async function personalSign (key: Key, message: string, vStyle: 'raw' | 'eth' = 'raw'): Promise<Uint8Array> {
  const recovered = await secp.signAsync(hashPersonalMessage(message), key.secretKey, { prehash: false, format: 'recovered' })
  const sig = secp.Signature.fromBytes(recovered, 'recovered')
  const v = (sig.recovery ?? 0) + (vStyle === 'eth' ? 27 : 0)
  return concatBytes(hexToBytes(sig.r.toString(16).padStart(64, '0')), hexToBytes(sig.s.toString(16).padStart(64, '0')), Uint8Array.of(v))
}

interface Hub {
  app: Hono
  stores: { datastore: MemoryDatastore, blockstore: MemoryBlockstore }
  clock: { now: number }
}

function makeHub (options: Partial<NextIdOptions> = {}, stores: Hub['stores'] = { datastore: new MemoryDatastore(), blockstore: new MemoryBlockstore() }): Hub {
  const clock = { now: NOW_MS }
  const app = createNextIdApp({ ...stores, nowMs: () => clock.now, ...options })
  return { app, stores, clock }
}

async function post (app: Hono, path: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<Response> {
  const data: BodyInit = typeof body === 'string' ? body : body instanceof Uint8Array ? Uint8Array.from(body) : JSON.stringify(body)
  return app.request(path, { method: 'POST', headers, body: data })
}

interface PayloadResponse { uuid: string, sign_payload: string, created_at: number }

async function requestPayload (app: Hono, key: Key, platform: string, identity: string, patch: unknown): Promise<PayloadResponse> {
  const res = await post(app, '/v1/kv/payload', { avatar: key.compressed, platform, identity, patch })
  expect(res.status, await res.clone().text()).toBe(200)
  return await res.json() as PayloadResponse
}

interface Signed {
  payload: PayloadResponse
  body: Record<string, unknown>
  signature: Uint8Array
}

/** Asks for a payload, signs it, and returns the POST body (not yet posted). */
async function prepare (app: Hono, key: Key, platform: string, identity: string, patch: unknown, vStyle: 'raw' | 'eth' = 'raw'): Promise<Signed> {
  const payload = await requestPayload(app, key, platform, identity, patch)
  const signature = await personalSign(key, payload.sign_payload, vStyle)
  return {
    payload,
    signature,
    body: { avatar: key.compressed, platform, identity, uuid: payload.uuid, created_at: payload.created_at, signature: toBase64(signature), patch }
  }
}

async function write (app: Hono, key: Key, platform: string, identity: string, patch: unknown, vStyle: 'raw' | 'eth' = 'raw'): Promise<Signed> {
  const signed = await prepare(app, key, platform, identity, patch, vStyle)
  const res = await post(app, '/v1/kv', signed.body)
  expect(res.status, await res.clone().text()).toBe(201)
  return signed
}

async function getText (app: Hono, path: string): Promise<string> {
  const res = await app.request(path)
  expect(res.status, await res.clone().text()).toBe(200)
  return res.text()
}

async function nextidKeys (datastore: MemoryDatastore): Promise<string[]> {
  const out: string[] = []
  for await (const { key, value } of datastore.query({ prefix: '/nextid' })) out.push(`${key.toString()}=${bytesToHex(value)}`)
  return out.sort()
}

/** What the hub-wide total must equal: every key and value under /nextid/ but the total itself. */
async function countedBytes (datastore: MemoryDatastore): Promise<number> {
  let n = 0
  for await (const { key, value } of datastore.query({ prefix: '/nextid/' })) {
    if (key.toString() !== '/nextid/total') n += utf8(key.toString()).length + value.length
  }
  return n
}

async function storedTotal (datastore: MemoryDatastore): Promise<number> {
  return Number(new TextDecoder().decode(await datastore.get(new DatastoreKey('/nextid/total'))))
}

async function blockCount (blockstore: MemoryBlockstore): Promise<number> {
  let n = 0
  for await (const _ of blockstore.getAll()) n++
  return n
}

/** Everything a client or the store could observe. */
async function snapshot (hub: Hub): Promise<unknown> {
  return {
    alice: await getText(hub.app, `/v1/kv?avatar=${alice.avatar}`),
    bob: await getText(hub.app, `/v1/kv?avatar=${bob.avatar}`),
    byIdentity: await getText(hub.app, '/v1/kv/by_identity?platform=twitter&identity=alice'),
    keys: await nextidKeys(hub.stores.datastore),
    blocks: await blockCount(hub.stores.blockstore)
  }
}

async function expectError (res: Response, status: number): Promise<string> {
  const text = await res.text()
  expect(res.status, text).toBe(status)
  expect(res.headers.get('access-control-allow-origin')).toBe('*')
  const body = JSON.parse(text) as { message?: unknown }
  expect(typeof body.message).toBe('string')
  expect((body.message as string).length).toBeGreaterThan(0)
  return body.message as string
}

async function rejectsWith (promise: Promise<unknown>, name: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ name })
}

// ---------------------------------------------------------------------------------------------

describe('kv_server vectors', () => {
  it('personal_sign of "Test123!" by the kv_server doc-test key', async () => {
    const [v] = vectors.personalSign
    if (v === undefined) throw new Error('fixture missing')
    const secretKey = hexToBytes(v.secretKey)
    const key: Key = { secretKey, publicKey: secp.getPublicKey(secretKey, false), avatar: '', compressed: '' }
    const signature = await personalSign(key, v.message)
    expect(bytesToHex(signature)).toBe(v.signatureHex)
    expect(toBase64(signature)).toBe(v.signatureBase64)
    expect(recoverPersonalSigner(v.message, fromBase64(v.signatureBase64)).publicKey).toEqual(key.publicKey)
  })

  for (const v of vectors.signPayloads) {
    it(`sign_payload byte for byte: ${v.name}`, () => {
      const text = buildSignPayload({
        uuid: v.uuid,
        avatar: v.avatar,
        platform: v.platform,
        identity: v.identity,
        patch: parseJson(v.patchText, 'patch'),
        createdAtSeconds: v.createdAt,
        previous: v.previous
      })
      expect(text).toBe(v.expected)
      if (v.signatureBase64 !== null) {
        expect(signedBy(text, fromBase64(v.signatureBase64), parsePublicKey(v.avatar))).toBe(true)
        // One byte off and the same signature no longer recovers to the avatar.
        expect(signedBy(text.replace('"version":"1"', '"version":"2"'), fromBase64(v.signatureBase64), parsePublicKey(v.avatar))).toBe(false)
      }
    })
  }

  it('previous may be given as the signature bytes or their base64', () => {
    const v = vectors.signPayloads[2]
    if (v === undefined || v.previous === null) throw new Error('fixture missing')
    const fields = { uuid: v.uuid, avatar: v.avatar, platform: v.platform, identity: v.identity, patch: parseJson(v.patchText), createdAtSeconds: v.createdAt }
    expect(buildSignPayload({ ...fields, previous: fromBase64(v.previous) })).toBe(v.expected)
  })

  for (const [input, expected] of vectors.floats.cases) {
    it(`prints ${String(input)} as serde_json/ryu 1.0.13 does: ${String(expected)}`, () => {
      expect(formatNumber(parseJson(input as string) as number)).toBe(expected)
    })
  }

  it('RFC 7396 Appendix A merge patch examples', () => {
    for (const { target, patch, result } of vectors.rfc7396.cases) {
      const merged = mergePatch(toJsonValue(target), toJsonValue(patch))
      expect(canonicalJson(merged)).toBe(canonicalJson(toJsonValue(result)))
    }
  })
})

describe('JSON dialect', () => {
  const refused: Array<[string, string]> = [
    ['integral float', '{"a":1.0}'],
    ['integral exponent', '{"a":1e2}'],
    ['negative zero', '{"a":-0}'],
    ['negative zero float', '{"a":-0.0}'],
    ['unsafe integer', '{"a":9007199254740992}'],
    ['huge exponent', '{"a":1e400}'],
    ['lone leading surrogate', '{"a":"\\ud800"}'],
    ['lone trailing surrogate', '{"a":"\\udc00"}'],
    ['leading surrogate then letter', '{"a":"\\ud800\\u0041"}'],
    ['raw control character', '{"a":"\u0001"}'],
    ['trailing comma', '{"a":1,}'],
    ['single quotes', "{'a':1}"],
    ['leading zero', '{"a":01}'],
    ['NaN', '{"a":NaN}'],
    ['bad escape', '{"a":"\\x41"}'],
    ['unterminated', '{"a":"b'],
    ['two values', '{} {}'],
    ['byte order mark', '\ufeff{}'],
    ['too deep', '['.repeat(128) + ']'.repeat(128)],
    ['raw lone surrogate', '{"a":"\ud800"}']
  ]
  for (const [name, text] of refused) {
    it(`refuses ${name}`, () => {
      expect(() => parseJson(text)).toThrow(expect.objectContaining({ name: 'InvalidInputError' }))
    })
  }

  it('accepts nesting up to serde_json\'s limit', () => {
    expect(canonicalJson(parseJson('['.repeat(127) + ']'.repeat(127)))).toBe('['.repeat(127) + ']'.repeat(127))
  })

  it('keeps the last of repeated keys, as serde_json does', () => {
    expect(canonicalJson(parseJson('{"a":1,"a":2}'))).toBe('{"a":2}')
  })

  it('treats __proto__ as data and pollutes nothing', () => {
    const value = parseJson('{"__proto__":{"polluted":1},"constructor":2}')
    expect(Object.keys(value as object).sort()).toEqual(['__proto__', 'constructor'])
    const merged = mergePatch(parseJson('{"x":1}'), value)
    expect(canonicalJson(merged)).toBe('{"__proto__":{"polluted":1},"constructor":2,"x":1}')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    // json-merge-patch would have dropped the rest of this patch at "__proto__".
    expect(canonicalJson(mergePatch(parseJson('{}'), parseJson('{"__proto__":{},"z":1}')))).toBe('{"__proto__":{},"z":1}')
  })

  it('orders keys by code point like Rust, not by UTF-16 unit like Array.prototype.sort', () => {
    const keys = ['\u{1F600}', '\uFF01', 'a', 'B']
    expect([...keys].sort()).toEqual(['B', 'a', '\u{1F600}', '\uFF01'])
    expect([...keys].sort(compareCodePoints)).toEqual(['B', 'a', '\uFF01', '\u{1F600}'])
  })

  it('refuses values it cannot carry when given as JavaScript', () => {
    for (const bad of [undefined, -0, 2 ** 60, Number.NaN, 1n, new Uint8Array(1), new Date(0), '\ud800', { a: () => 1 }]) {
      expect(() => toJsonValue(bad)).toThrow(expect.objectContaining({ name: 'InvalidInputError' }))
    }
  })

  const carried = fc.jsonValue().filter(value => {
    try { toJsonValue(value); return true } catch { return false }
  })

  it('property: canonical text re-parses to itself and survives dag-cbor', () => {
    fc.assert(fc.property(carried, value => {
      const text = canonicalJson(toJsonValue(value))
      expect(canonicalJson(parseJson(text))).toBe(text)
      expect(canonicalJson(toJsonValue(dagCbor.decode(dagCbor.encode(parseJson(text)))))).toBe(text)
      expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)))
    }))
  })

  it('property: mergePatch agrees with json-merge-patch where that one is safe', () => {
    const safe = carried.filter(v => !/"(__proto__|constructor|prototype)"/.test(JSON.stringify(v)))
    fc.assert(fc.property(safe, safe, (target, patch) => {
      const ours = canonicalJson(mergePatch(toJsonValue(target), toJsonValue(patch)))
      const theirs = jsonMergeApply(structuredClone(target), structuredClone(patch)) as unknown
      expect(ours).toBe(canonicalJson(toJsonValue(theirs)))
    }))
  })
})

describe('HTTP routes', () => {
  it('GET /healthz', async () => {
    const { app } = makeHub({ buildAt: '2024-01-01', commitVersion: 'abc123' })
    const res = await app.request('/healthz')
    expect(res.status).toBe(200)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    expect(await res.json()).toEqual({ hello: 'kv server', build_at: '2024-01-01', commit_version: 'abc123' })
    expect(await (await makeHub().app.request('/healthz')).json()).toEqual({ hello: 'kv server', build_at: 'UNKNOWN', commit_version: 'UNKNOWN' })
  })

  it('answers CORS preflight on every route, and CORS on errors', async () => {
    const { app } = makeHub()
    for (const path of ['/healthz', '/v1/kv', '/v1/kv/payload', '/v1/kv/by_identity', '/v1/kv/unknown']) {
      const res = await app.request(path, { method: 'OPTIONS', headers: { origin: 'https://example.org', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } })
      expect(res.status, path).toBe(204)
      expect(res.headers.get('access-control-allow-origin')).toBe('*')
      expect(res.headers.get('access-control-allow-methods')).toContain('POST')
      expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('content-type')
    }
    await expectError(await app.request('/v1/kv'), 400)
    await expectError(await app.request('/v1/kv/nothing'), 404)
    await expectError(await app.request('/v1/kv', { method: 'PUT' }), 404)
    expect((await app.request('/v1/other')).status).toBe(404)
  })

  it('works mounted in a hub app without touching the hub\'s other routes', async () => {
    const { app } = makeHub()
    const hubApp = new Hono()
    hubApp.put('/routing/v1/ipns/:name', c => c.text('put'))
    hubApp.route('/', app)
    expect((await hubApp.request('/healthz')).headers.get('access-control-allow-origin')).toBe('*')
    await expectError(await hubApp.request('/v1/kv?avatar=zz'), 400)
    await expectError(await post(hubApp, '/v1/kv', '{', { 'content-type': 'application/json' }), 400)
    const preflight = await hubApp.request('/v1/kv', { method: 'OPTIONS', headers: { origin: 'https://example.org', 'access-control-request-method': 'POST' } })
    expect(preflight.status).toBe(204)
    const other = await hubApp.request('/routing/v1/ipns/x', { method: 'OPTIONS', headers: { origin: 'https://example.org', 'access-control-request-method': 'PUT' } })
    expect(other.headers.get('access-control-allow-methods')).toBeNull()
    expect(await (await hubApp.request('/routing/v1/ipns/x', { method: 'PUT' })).text()).toBe('put')
  })

  it('GET /v1/kv of an unknown avatar is 200 with no proofs, for every key form', async () => {
    const { app } = makeHub()
    const raw64 = alice.avatar.slice(4)
    const forms = [alice.avatar, alice.avatar.slice(2), alice.compressed, alice.compressed.slice(2), alice.compressed.toUpperCase().replace('0X', '0x'), raw64]
    for (const form of forms) {
      for (const param of ['avatar', 'persona']) {
        const res = await app.request(`/v1/kv?${param}=${form}`)
        expect(res.status, form).toBe(200)
        expect(res.headers.get('access-control-allow-origin')).toBe('*')
        expect(await res.json()).toEqual({ persona: alice.avatar, avatar: alice.avatar, proofs: [] })
      }
    }
  })

  it('GET /v1/kv refuses bad keys with 400', async () => {
    const { app } = makeHub()
    const notOnCurve = '0x02' + 'ff'.repeat(32)
    const bad = ['', '0x', 'zz', '0x1234', alice.compressed.slice(0, -1), '0x05' + alice.compressed.slice(4), notOnCurve, '0x06' + alice.avatar.slice(4), alice.avatar + '00', '%ZZ', '0x0x' + alice.compressed.slice(2)]
    for (const key of bad) await expectError(await app.request(`/v1/kv?avatar=${key}`), 400)
    await expectError(await app.request('/v1/kv'), 400)
    await expectError(await app.request('/v1/kv/by_identity?platform=twitter'), 400)
    await expectError(await app.request('/v1/kv/by_identity?identity=x'), 400)
    expect(await (await app.request('/v1/kv/by_identity?platform=twitter&identity=nobody')).json()).toEqual({ values: [] })
  })

  it('full flow with a wallet signature: payload, personal_sign, POST, GET, by_identity', async () => {
    const { app } = makeHub()
    const secretHex = ('0x' + bytesToHex(alice.secretKey)) as `0x${string}`
    const account = privateKeyToAccount(secretHex)
    const patch = { 'com.mask.plugin': { nickname: 'Alice', tags: ['a', 'b'], n: 1.5 } }

    const payloadRes = await post(app, '/v1/kv/payload', { avatar: alice.compressed, platform: 'twitter', identity: 'alice', patch })
    expect(payloadRes.status).toBe(200)
    expect(payloadRes.headers.get('access-control-allow-origin')).toBe('*')
    const payload = await payloadRes.json() as PayloadResponse
    expect(Object.keys(payload)).toEqual(['uuid', 'sign_payload', 'created_at'])
    expect(payload.created_at).toBe(NOW_MS / 1000)
    expect(payload.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(payload.sign_payload).toBe(
      `{"version":"1","uuid":"${payload.uuid}","avatar":"${alice.avatar.slice(2)}","platform":"twitter","identity":"alice",` +
      '"patch":{"com.mask.plugin":{"n":1.5,"nickname":"Alice","tags":["a","b"]}},' +
      `"created_at":${payload.created_at},"previous":null}`)

    const signature = await account.signMessage({ message: payload.sign_payload })
    const res = await post(app, '/v1/kv', {
      avatar: alice.avatar, platform: 'twitter', identity: 'alice', uuid: payload.uuid, created_at: payload.created_at, signature: toBase64(hexToBytes(signature)), patch
    })
    expect(res.status, await res.clone().text()).toBe(201)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    const expected = { persona: alice.avatar, avatar: alice.avatar, proofs: [{ platform: 'twitter', identity: 'alice', content: patch, arweave_id: null }] }
    expect(await res.json()).toEqual(expected)
    expect(JSON.parse(await getText(app, `/v1/kv?avatar=${alice.compressed}`))).toEqual(expected)
    expect(JSON.parse(await getText(app, '/v1/kv/by_identity?platform=twitter&identity=alice'))).toEqual({ values: [{ avatar: alice.avatar, content: patch }] })
  })

  it('chains patches per avatar across platforms, merges by RFC 7396, and every block verifies on its own', async () => {
    const { app, stores } = makeHub()
    const first = await write(app, alice, 'twitter', 'alice', { a: 1, b: { c: 2 } })
    expect(first.payload.sign_payload).toContain('"previous":null')

    // `previous` is per avatar (kv_server's find_last_link filters on persona only), so a patch on
    // another platform still links to the last signature.
    const second = await write(app, alice, 'github', 'alice-gh', { x: true }, 'eth')
    expect(second.payload.sign_payload).toContain(`"previous":"${toBase64(first.signature)}"`)
    const third = await write(app, alice, 'twitter', 'alice', { a: null, b: { d: 3 } })
    expect(third.payload.sign_payload).toContain(`"previous":"${toBase64(second.signature)}"`)
    expect(second.signature[64]).toBeGreaterThanOrEqual(27) // kept as sent, v = 27/28
    await write(app, bob, 'twitter', 'alice', { bob: 'was here' })

    expect(JSON.parse(await getText(app, `/v1/kv?avatar=${alice.avatar}`))).toEqual({
      persona: alice.avatar,
      avatar: alice.avatar,
      proofs: [
        { platform: 'github', identity: 'alice-gh', content: { x: true }, arweave_id: null },
        { platform: 'twitter', identity: 'alice', content: { b: { c: 2, d: 3 } }, arweave_id: null }
      ]
    })
    const byIdentity = JSON.parse(await getText(app, '/v1/kv/by_identity?platform=twitter&identity=alice')) as { values: Array<{ avatar: string }> }
    expect(byIdentity.values.map(v => v.avatar).sort()).toEqual([alice.avatar, bob.avatar].sort())

    const chain = await exportAvatarChain(stores, alice.compressed)
    expect(chain.blocks).toHaveLength(3)
    expect(chain.head?.equals(chain.blocks[2]?.cid)).toBe(true)
    // Verify as an outsider would: decode the dag-cbor, re-build the sign_payload, recover the signer.
    let previousSignature: Uint8Array | null = null
    let previousCid: CID | null = null
    for (const block of chain.blocks) {
      const link = dagCbor.decode(block.bytes) as Record<string, unknown>
      expect(Object.keys(link).sort()).toEqual(['avatar', 'created_at', 'identity', 'patch', 'platform', 'previous', 'signature', 'uuid', 'version'])
      expect(link.previous === null ? null : CID.asCID(link.previous)?.toString()).toBe(previousCid?.toString() ?? null)
      const text = buildSignPayload({
        uuid: link.uuid as string,
        avatar: link.avatar as string,
        platform: link.platform as string,
        identity: link.identity as string,
        patch: link.patch,
        createdAtSeconds: link.created_at as number,
        previous: previousSignature
      })
      expect(bytesToHex(recoverPersonalSigner(text, link.signature as Uint8Array).publicKey)).toBe(link.avatar)
      expect(link.avatar).toBe(alice.avatar.slice(2))
      previousSignature = link.signature as Uint8Array
      previousCid = block.cid
    }
  })

  it('a replayed uuid is 409 and changes nothing; another avatar may use the same uuid', async () => {
    const hub = makeHub()
    const signed = await write(hub.app, alice, 'twitter', 'alice', { a: 1 })
    const before = await snapshot(hub)
    await expectError(await post(hub.app, '/v1/kv', signed.body), 409)
    expect(await snapshot(hub)).toEqual(before)
    // uuids are unique per avatar, not per hub: bob's use of alice's uuid takes nothing from her.
    const bobPayload = await requestPayload(hub.app, bob, 'twitter', 'bob', { b: 1 })
    const text = bobPayload.sign_payload.replace(bobPayload.uuid, signed.payload.uuid)
    const bobSig = await personalSign(bob, text)
    const res = await post(hub.app, '/v1/kv', { avatar: bob.avatar, platform: 'twitter', identity: 'bob', uuid: signed.payload.uuid.toUpperCase(), created_at: bobPayload.created_at, signature: toBase64(bobSig), patch: { b: 1 } })
    expect(res.status, await res.clone().text()).toBe(201)
    // A uuid alice used once stays refused for her, whatever the payload.
    const again = await requestPayload(hub.app, alice, 'twitter', 'alice', { a: 2 })
    const reused = again.sign_payload.replace(again.uuid, signed.payload.uuid)
    const body = { avatar: alice.avatar, platform: 'twitter', identity: 'alice', uuid: signed.payload.uuid, created_at: again.created_at, signature: toBase64(await personalSign(alice, reused)), patch: { a: 2 } }
    expect(await expectError(await post(hub.app, '/v1/kv', body), 409)).toMatch(/uuid/)
  })

  it('a payload signed over a stale head is 409 and changes nothing', async () => {
    const hub = makeHub()
    const early = await prepare(hub.app, alice, 'twitter', 'alice', { early: true })
    await write(hub.app, alice, 'twitter', 'alice', { a: 1 })
    const middle = await prepare(hub.app, alice, 'github', 'alice', { middle: true })
    await write(hub.app, alice, 'twitter', 'alice', { a: 2 })
    const before = await snapshot(hub)
    await expectError(await post(hub.app, '/v1/kv', early.body), 409)
    await expectError(await post(hub.app, '/v1/kv', middle.body), 409)
    expect(await snapshot(hub)).toEqual(before)
    await write(hub.app, alice, 'github', 'alice', { middle: true })
  })

  it('concurrent POSTs built on one head: exactly one wins', async () => {
    const hub = makeHub()
    await write(hub.app, alice, 'twitter', 'alice', { start: 0 })
    const contenders = await Promise.all([1, 2, 3, 4].map(async n => prepare(hub.app, alice, 'twitter', 'alice', { n })))
    const responses = await Promise.all(contenders.map(async c => post(hub.app, '/v1/kv', c.body)))
    const statuses = responses.map(r => r.status).sort()
    expect(statuses).toEqual([201, 409, 409, 409])
    const chain = await exportAvatarChain(hub.stores, alice.avatar)
    expect(chain.blocks).toHaveLength(2)
    const winner = contenders[responses.findIndex(r => r.status === 201)]
    const content = JSON.parse(await getText(hub.app, `/v1/kv?avatar=${alice.avatar}`)) as { proofs: Array<{ content: unknown }> }
    expect(content.proofs[0]?.content).toEqual({ start: 0, ...(winner?.body.patch as object) })
  })

  it('created_at outside the window is 400; inside it is accepted', async () => {
    const hub = makeHub()
    const late = await prepare(hub.app, alice, 'twitter', 'alice', { late: true })
    const before = await snapshot(hub)
    hub.clock.now = NOW_MS + WINDOW_MS + 1000
    expect(await expectError(await post(hub.app, '/v1/kv', late.body), 400)).toMatch(/created_at/)
    hub.clock.now = NOW_MS - WINDOW_MS - 1000
    await expectError(await post(hub.app, '/v1/kv', late.body), 400)
    expect(await snapshot(hub)).toEqual(before)
    hub.clock.now = NOW_MS + WINDOW_MS - 1000
    expect((await post(hub.app, '/v1/kv', late.body)).status).toBe(201)

    const strict = makeHub({ createdAtWindowMs: 5000 })
    const signed = await prepare(strict.app, alice, 'twitter', 'alice', { a: 1 })
    strict.clock.now = NOW_MS + 6000
    await expectError(await post(strict.app, '/v1/kv', signed.body), 400)
  })

  it('malformed requests are 4xx with a message and change nothing', async () => {
    const hub = makeHub({ maxBodyBytes: 4096 })
    await write(hub.app, alice, 'twitter', 'alice', { kept: true })
    const good = await prepare(hub.app, alice, 'twitter', 'alice', { next: 1 })
    const body = good.body
    const sig = good.signature
    const with_ = (changes: Record<string, unknown>): Record<string, unknown> => ({ ...body, ...changes })
    const without = (name: string): Record<string, unknown> => Object.fromEntries(Object.entries(body).filter(([k]) => k !== name))
    const bobSig = await personalSign(bob, good.payload.sign_payload)
    const json = { 'content-type': 'application/json' }

    const cases: Array<[string, number, unknown, Record<string, string>?]> = [
      ['bad JSON', 400, '{"avatar":'],
      ['JSON with trailing garbage', 400, JSON.stringify(body) + 'x'],
      ['wrong content type', 415, JSON.stringify(body), { 'content-type': 'text/plain' }],
      ['form content type', 415, 'a=b', { 'content-type': 'application/x-www-form-urlencoded' }],
      ['no content type', 415, new TextEncoder().encode(JSON.stringify(body)), {}],
      ['non-utf-8 charset', 415, JSON.stringify(body), { 'content-type': 'application/json; charset=latin1' }],
      ['huge body', 413, JSON.stringify(with_({ patch: { big: 'x'.repeat(5000) } }))],
      ['huge declared length', 413, JSON.stringify(body), { ...json, 'content-length': '99999999' }],
      ['empty body', 400, ''],
      ['invalid UTF-8', 400, Uint8Array.of(0x7b, 0xff, 0x7d)],
      ['array body', 400, [body]],
      ['null body', 400, 'null'],
      ['string body', 400, '"hello"'],
      ['bad base64 signature', 400, with_({ signature: '!!!not base64!!!' })],
      ['signature by another key', 400, with_({ signature: toBase64(bobSig) })],
      ['64-byte signature', 400, with_({ signature: toBase64(sig.subarray(0, 64)) })],
      ['66-byte signature', 400, with_({ signature: toBase64(concatBytes(sig, Uint8Array.of(0))) })],
      ['v = 5', 400, with_({ signature: toBase64(concatBytes(sig.subarray(0, 64), Uint8Array.of(5))) })],
      ['r = 0', 400, with_({ signature: toBase64(concatBytes(new Uint8Array(32), sig.subarray(32))) })],
      ['signature as number', 400, with_({ signature: 12 })],
      ['missing signature', 400, without('signature')],
      ['avatar not hex', 400, with_({ avatar: 'not hex' })],
      ['avatar too short', 400, with_({ avatar: '0x1234' })],
      ['avatar off the curve', 400, with_({ avatar: '0x02' + 'ff'.repeat(32) })],
      ['avatar as number', 400, with_({ avatar: 42 })],
      ['avatar missing', 400, without('avatar')],
      ['avatar of another key', 400, with_({ avatar: bob.compressed })],
      ['platform as number', 400, with_({ platform: 7 })],
      ['empty platform', 400, with_({ platform: '' })],
      ['identity as array', 400, with_({ identity: ['alice'] })],
      ['uuid as number', 400, with_({ uuid: 1 })],
      ['uuid not a uuid', 400, with_({ uuid: 'not-a-uuid' })],
      ['created_at as string', 400, with_({ created_at: String(body.created_at) })],
      ['created_at fractional', 400, with_({ created_at: (body.created_at as number) + 0.5 })],
      ['created_at changed after signing', 400, with_({ created_at: (body.created_at as number) + 1 })],
      ['patch missing', 400, without('patch')],
      ['patch changed after signing', 400, with_({ patch: { next: 2 } })],
      ['patch with an integral float', 400, JSON.stringify(body).replace('"next":1', '"next":1.0')],
      ['patch with a lone surrogate', 400, JSON.stringify(body).replace('"next":1', '"next":"\\ud800"')],
      ['patch nested too deep', 400, JSON.stringify(with_({ patch: 0 })).replace('"patch":0', '"patch":' + '['.repeat(200) + ']'.repeat(200))],
      ['nextid identity that is not the avatar', 400, with_({ platform: 'nextid', identity: bob.compressed })],
      ['nextid identity that is not a key', 400, with_({ platform: 'nextid', identity: 'alice' })]
    ]
    const before = await snapshot(hub)
    for (const [name, status, payload, headers] of cases) {
      const res = await post(hub.app, '/v1/kv', payload, headers ?? json)
      const text = await res.clone().text()
      expect(res.status, `${name}: ${text}`).toBe(status)
      await expectError(res, status)
    }
    // The payload endpoint validates the same way.
    const payloadCases: Array<[number, unknown, Record<string, string>?]> = [
      [415, { avatar: alice.compressed, platform: 'twitter', identity: 'alice', patch: {} }, { 'content-type': 'text/plain' }],
      [400, { avatar: 'zz', platform: 'twitter', identity: 'alice', patch: {} }],
      [400, { avatar: alice.compressed, platform: 'twitter', identity: 'alice' }],
      [400, { avatar: alice.compressed, platform: 'nextid', identity: bob.compressed, patch: {} }],
      [400, { avatar: alice.compressed, platform: 3, identity: 'alice', patch: {} }],
      [400, '{"avatar":"' + alice.compressed + '","platform":"twitter","identity":"alice","patch":{"a":1e2}}']
    ]
    for (const [status, payload, headers] of payloadCases) await expectError(await post(hub.app, '/v1/kv/payload', payload, headers ?? json), status)

    expect(await snapshot(hub)).toEqual(before)
    // Nothing was consumed either: the untouched request still goes through.
    expect((await post(hub.app, '/v1/kv', body)).status).toBe(201)
  })

  it('platform "nextid" takes the avatar\'s own key in any form', async () => {
    const hub = makeHub()
    await write(hub.app, alice, 'nextid', alice.compressed, { 'com.maskbook.tip': [{ platform: 'ethereum' }] })
    const values = JSON.parse(await getText(hub.app, `/v1/kv/by_identity?platform=nextid&identity=${alice.compressed}`)) as { values: unknown[] }
    expect(values.values).toHaveLength(1)
    await write(hub.app, alice, 'nextid', alice.avatar.slice(2).toUpperCase(), { other: 1 })
  })

  it('the "persona" field is accepted in place of "avatar"', async () => {
    const hub = makeHub()
    const signed = await prepare(hub.app, alice, 'twitter', 'alice', { p: 1 })
    const { avatar, ...rest } = signed.body
    expect(avatar).toBe(alice.compressed)
    const res = await post(hub.app, '/v1/kv', { ...rest, avatar: null, persona: alice.compressed })
    expect(res.status).toBe(201)
  })

  it('consults a ProofService binding check when one is given', async () => {
    const calls: unknown[] = []
    let answer: boolean | Error = false
    const hub = makeHub({
      proofService: async query => {
        calls.push(query)
        if (answer instanceof Error) throw answer
        return answer
      }
    })
    await expectError(await post(hub.app, '/v1/kv/payload', { avatar: alice.avatar, platform: 'twitter', identity: 'alice', patch: {} }), 400)
    expect(calls).toEqual([{ platform: 'twitter', identity: 'alice', avatar: alice.compressed }])
    answer = true
    const signed = await prepare(hub.app, alice, 'twitter', 'alice', { ok: 1 })
    answer = false
    await expectError(await post(hub.app, '/v1/kv', signed.body), 400)
    answer = new Error('connection refused')
    expect(await expectError(await post(hub.app, '/v1/kv', signed.body), 502)).toMatch(/ProofService/)
    answer = true
    expect((await post(hub.app, '/v1/kv', signed.body)).status).toBe(201)
    const before = calls.length
    await write(hub.app, alice, 'nextid', alice.compressed, { own: 1 })
    expect(calls.length).toBe(before) // "nextid" is checked locally
  })

  it('a restarted hub on the same stores serves the data and continues the chain', async () => {
    const hub = makeHub()
    const first = await write(hub.app, alice, 'twitter', 'alice', { a: 1 })
    const restarted = makeHub({}, hub.stores)
    expect(await getText(restarted.app, `/v1/kv?avatar=${alice.avatar}`)).toBe(await getText(hub.app, `/v1/kv?avatar=${alice.avatar}`))
    const second = await write(restarted.app, alice, 'twitter', 'alice', { b: 2 })
    expect(second.payload.sign_payload).toContain(`"previous":"${toBase64(first.signature)}"`)
  })
})

describe('export and import', () => {
  async function populated (): Promise<Hub> {
    const hub = makeHub()
    await write(hub.app, alice, 'twitter', 'alice', { a: 1, nested: { x: [1, 2] } })
    await write(hub.app, alice, 'nextid', alice.compressed, { tip: true })
    await write(hub.app, alice, 'twitter', 'alice', { a: null, b: 0.25 }, 'eth')
    await write(hub.app, bob, 'twitter', 'alice', { other: 'avatar' })
    return hub
  }

  it('export then import into fresh stores reproduces the same reads and blocks', async () => {
    const hub = await populated()
    const chain = await exportAvatarChain(hub.stores, alice.avatar)
    expect(chain.blocks).toHaveLength(3)
    const target = makeHub()
    await importAvatarChain(target.stores, chain.blocks, chain.head)
    expect(await getText(target.app, `/v1/kv?avatar=${alice.avatar}`)).toBe(await getText(hub.app, `/v1/kv?avatar=${alice.avatar}`))
    expect(await getText(target.app, `/v1/kv/by_identity?platform=nextid&identity=${alice.compressed}`))
      .toBe(await getText(hub.app, `/v1/kv/by_identity?platform=nextid&identity=${alice.compressed}`))
    const again = await exportAvatarChain(target.stores, alice.avatar)
    expect(again.head?.toString()).toBe(chain.head?.toString())
    expect(again.blocks.map(b => b.cid.toString())).toEqual(chain.blocks.map(b => b.cid.toString()))

    // Importing again is a no-op; the imported hub continues the chain.
    await importAvatarChain(target.stores, chain.blocks, chain.head)
    const next = await write(target.app, alice, 'twitter', 'alice', { c: 3 })
    expect(next.payload.sign_payload).toContain(`"previous":"${toBase64(dagCbor.decode<{ signature: Uint8Array }>(chain.blocks[2]?.bytes ?? new Uint8Array()).signature)}"`)
  })

  it('an unknown avatar exports as empty, which imports as nothing', async () => {
    const hub = makeHub()
    expect(await exportAvatarChain(hub.stores, bob.avatar)).toEqual({ head: null, blocks: [] })
    await importAvatarChain(hub.stores, [], null)
    expect(await nextidKeys(hub.stores.datastore)).toEqual([])
  })

  it('fast-forwards a hub holding a prefix of the chain, refuses a diverged one', async () => {
    const hub = makeHub()
    await write(hub.app, alice, 'twitter', 'alice', { a: 1 })
    const prefix = await exportAvatarChain(hub.stores, alice.avatar)
    await write(hub.app, alice, 'twitter', 'alice', { b: 2 })
    const full = await exportAvatarChain(hub.stores, alice.avatar)

    const behind = makeHub()
    await importAvatarChain(behind.stores, prefix.blocks, prefix.head)
    await importAvatarChain(behind.stores, full.blocks, full.head)
    expect(await getText(behind.app, `/v1/kv?avatar=${alice.avatar}`)).toBe(await getText(hub.app, `/v1/kv?avatar=${alice.avatar}`))

    const diverged = makeHub()
    await importAvatarChain(diverged.stores, prefix.blocks, prefix.head)
    await write(diverged.app, alice, 'twitter', 'alice', { other: true })
    const before = await snapshot(diverged)
    await rejectsWith(importAvatarChain(diverged.stores, full.blocks, full.head), 'ConflictError')
    expect(await snapshot(diverged)).toEqual(before)
  })

  it('refuses a tampered or incomplete chain and imports nothing', async () => {
    const hub = await populated()
    const chain = await exportAvatarChain(hub.stores, alice.avatar)
    const [b0, b1, b2] = chain.blocks as [Block, Block, Block]
    const reencode = async (block: Block, change: (link: Record<string, unknown>) => void): Promise<Block> => {
      const link = dagCbor.decode<Record<string, unknown>>(block.bytes)
      change(link)
      return cborBlock(link)
    }
    const flipped = Uint8Array.from(b1.bytes)
    flipped[flipped.length - 5] = (flipped[flipped.length - 5] as number) ^ 1
    const forgedHead = await reencode(b2, link => { link.patch = { a: 'forged' } })
    const forgedMiddle = await reencode(b1, link => { link.patch = { tip: false } })
    const otherAvatar = (await exportAvatarChain(hub.stores, bob.avatar)).blocks
    const resignedByBob = await reencode(b2, link => { link.avatar = bob.avatar.slice(2) })
    const wrongShape = await reencode(b2, link => { link.extra = 1 })

    const attempts: Array<[string, Block[], CID | null, string]> = [
      ['bytes changed under the same CID', [b0, { cid: b1.cid, bytes: flipped }, b2], chain.head, 'IntegrityError'],
      ['head re-encoded with another patch', [b0, b1, forgedHead], forgedHead.cid, 'SignerMismatchError'],
      ['middle block re-encoded', [b0, forgedMiddle, b2], chain.head, 'InvalidInputError'],
      ['middle block missing', [b0, b2], chain.head, 'InvalidInputError'],
      ['an extra block of another avatar', [...chain.blocks, ...otherAvatar], chain.head, 'InvalidInputError'],
      ['head claims another avatar', [b0, b1, resignedByBob], resignedByBob.cid, 'IntegrityError'],
      ['head with an unknown field', [b0, b1, wrongShape], wrongShape.cid, 'IntegrityError'],
      ['blocks without a head', chain.blocks, null, 'InvalidInputError']
    ]
    for (const [name, blocks, head, errorName] of attempts) {
      const target = makeHub()
      await expect(importAvatarChain(target.stores, blocks, head), name).rejects.toMatchObject({ name: errorName })
      expect(await nextidKeys(target.stores.datastore), name).toEqual([])
      expect(await blockCount(target.stores.blockstore), name).toBe(0)
      expect(JSON.parse(await getText(target.app, `/v1/kv?avatar=${alice.avatar}`)).proofs, name).toEqual([])
    }
  })

  it('property: any flipped byte in any block is refused', async () => {
    const hub = await populated()
    const chain = await exportAvatarChain(hub.stores, alice.avatar)
    await fc.assert(fc.asyncProperty(fc.nat({ max: 2 }), fc.nat(), fc.integer({ min: 1, max: 255 }), async (which, offset, mask) => {
      const blocks = chain.blocks.map(b => ({ cid: b.cid, bytes: Uint8Array.from(b.bytes) }))
      const target = blocks[which] as Block
      const at = offset % target.bytes.length
      target.bytes[at] = (target.bytes[at] as number) ^ mask
      const fresh = { datastore: new MemoryDatastore(), blockstore: new MemoryBlockstore() }
      const error = await importAvatarChain(fresh, blocks, chain.head).then(() => undefined, (err: unknown) => err)
      expect(['IntegrityError', 'SignerMismatchError', 'InvalidSignatureError', 'InvalidInputError']).toContain((error as Error | undefined)?.name)
      expect(await nextidKeys(fresh.datastore)).toEqual([])
    }), { numRuns: 40 })
  })
})

describe('moving a chain between hubs over HTTP', () => {
  it('GET /api/v1/nextid/export gives a CAR that POST /api/v1/nextid/import loads, signature by signature', async () => {
    const one = makeHub()
    await write(one.app, alice, 'nextid', alice.compressed, { name: 'alice' })
    await write(one.app, alice, 'twitter', 'alice_tw', { bio: 'hi' })
    await write(one.app, alice, 'nextid', alice.compressed, { name: null, avatar: 'ipfs://x' })
    const res = await one.app.request(`/api/v1/nextid/export?avatar=${alice.compressed}`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/application\/vnd\.ipld\.car/)
    const car = new Uint8Array(await res.arrayBuffer())
    const two = makeHub()
    const imported = await post(two.app, '/api/v1/nextid/import', car, { 'content-type': 'application/vnd.ipld.car' })
    expect(imported.status, await imported.clone().text()).toBe(201)
    expect(await getText(two.app, `/v1/kv?avatar=${alice.compressed}`)).toBe(await getText(one.app, `/v1/kv?avatar=${alice.compressed}`))
    // and the chain goes on from its imported head
    await write(two.app, alice, 'nextid', alice.compressed, { more: 1 })
  })

  it('refuses a tampered CAR, a wrong content type and an unknown avatar, importing nothing', async () => {
    const one = makeHub()
    await write(one.app, alice, 'nextid', alice.compressed, { name: 'alice' })
    const car = new Uint8Array(await (await one.app.request(`/api/v1/nextid/export?avatar=${alice.compressed}`)).arrayBuffer())
    const tampered = car.slice()
    tampered[tampered.length - 5]! ^= 1
    const two = makeHub()
    const before = await snapshot(two)
    await expectError(await post(two.app, '/api/v1/nextid/import', tampered, { 'content-type': 'application/vnd.ipld.car' }), 400)
    await expectError(await post(two.app, '/api/v1/nextid/import', car, { 'content-type': 'application/json' }), 415)
    await expectError(await post(two.app, '/api/v1/nextid/import', new Uint8Array([1, 2, 3]), { 'content-type': 'application/vnd.ipld.car' }), 400)
    expect(await snapshot(two)).toEqual(before)
    await expectError(await two.app.request(`/api/v1/nextid/export?avatar=${bob.compressed}`), 404)
    await expectError(await two.app.request('/api/v1/nextid/export'), 400)
  })
})

// ---------------------------------------------------------------------------------------------
// Under attack: what a stranger's requests cost, and what they can never block.

/** A body whose signature has the right form but was not made by the avatar: a stranger's POST. */
function strangerBody (target: Key, createdAt: number, patch: unknown = { stranger: true }): Record<string, unknown> {
  const signature = crypto.getRandomValues(new Uint8Array(65))
  signature[0] = 1 // r in range
  signature[32] = 1 // s in range
  signature[64] = 27
  return { avatar: target.compressed, platform: 'twitter', identity: 'alice', uuid: randomUUID(), created_at: createdAt, signature: toBase64(signature), patch }
}

/** A datastore whose batch commits wait for `open()`: holds an avatar's lock for as long as a test wants. */
class GatedDatastore extends MemoryDatastore {
  #gate: Promise<void> = Promise.resolve()
  #open: () => void = () => {}
  commits = 0
  close (): void { this.#gate = new Promise(resolve => { this.#open = resolve }) }
  open (): void { this.#open() }
  override batch (): ReturnType<MemoryDatastore['batch']> {
    const inner = super.batch()
    const gate = (): Promise<void> => this.#gate
    return {
      put: (key, value) => { inner.put(key, value) },
      delete: (key) => { inner.delete(key) },
      commit: async (options) => { this.commits++; await gate(); await inner.commit(options) }
    }
  }
}

describe('under attack', () => {
  it('checks that need no curve arithmetic run before any signature recovery', async () => {
    const hub = makeHub()
    const first = await write(hub.app, alice, 'twitter', 'alice', { a: 1 })
    const good = await prepare(hub.app, alice, 'twitter', 'alice', { next: 1 })
    const sig = good.signature
    const with_ = (changes: Record<string, unknown>): Record<string, unknown> => ({ ...good.body, ...changes })
    const cheap: Array<[string, number, Record<string, unknown>]> = [
      ['replayed uuid', 409, first.body],
      ['v = 5', 400, with_({ signature: toBase64(concatBytes(sig.subarray(0, 64), Uint8Array.of(5))) })],
      ['r = 0', 400, with_({ signature: toBase64(concatBytes(new Uint8Array(32), sig.subarray(32))) })],
      ['s = n', 400, with_({ signature: toBase64(concatBytes(sig.subarray(0, 32), hexToBytes('fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141'), Uint8Array.of(27))) })],
      ['64-byte signature', 400, with_({ signature: toBase64(sig.subarray(0, 64)) })],
      ['created_at outside the window', 400, with_({ created_at: (good.body.created_at as number) - WINDOW_MS / 1000 - 60 })],
      ['nextid identity of another key', 400, with_({ platform: 'nextid', identity: bob.compressed })],
      ['lone surrogate in platform', 400, with_({ platform: '\ud800' })]
    ]
    for (const [name, status, body] of cheap) {
      const before = recoveryCount.value
      await expectError(await post(hub.app, '/v1/kv', body), status)
      expect(recoveryCount.value - before, name).toBe(0)
    }
    const before = recoveryCount.value
    expect((await post(hub.app, '/v1/kv', good.body)).status).toBe(201)
    expect(recoveryCount.value - before).toBe(1)
  })

  it(`the stale-head diagnosis costs at most ${MAX_STALE_CANDIDATES} more recoveries, and none for a payload issued after the head`, async () => {
    const hub = makeHub()
    for (let i = 0; i < 20; i++) await write(hub.app, alice, 'twitter', 'alice', { i })
    // Issued "before" all 20 links were accepted: the worst case a stranger can pick.
    let before = recoveryCount.value
    await expectError(await post(hub.app, '/v1/kv', strangerBody(alice, NOW_MS / 1000 - 60)), 400)
    expect(recoveryCount.value - before).toBeLessThanOrEqual(1 + MAX_STALE_CANDIDATES)
    // Issued after the head was accepted: its `previous` can only be the head, one recovery.
    hub.clock.now = NOW_MS + 5000
    before = recoveryCount.value
    await expectError(await post(hub.app, '/v1/kv', strangerBody(alice, NOW_MS / 1000 + 2)), 400)
    expect(recoveryCount.value - before).toBe(1)
  })

  it('a payload outpaced by more writes than the diagnosis tries is a 400 that says to ask again', async () => {
    const hub = makeHub()
    await write(hub.app, alice, 'twitter', 'alice', { a: 0 })
    const old = await prepare(hub.app, alice, 'twitter', 'alice', { old: true })
    for (let i = 0; i <= MAX_STALE_CANDIDATES; i++) await write(hub.app, alice, 'twitter', 'alice', { i })
    const before = await snapshot(hub)
    expect(await expectError(await post(hub.app, '/v1/kv', old.body), 400)).toMatch(/request.*again|issued before/)
    expect(await snapshot(hub)).toEqual(before)
  })

  it('refused signatures neither wait on nor hold the avatar\'s lock; its queue is capped with 429', async () => {
    const datastore = new GatedDatastore()
    const hub = makeHub({ maxQueuedWritesPerAvatar: 2 }, { datastore, blockstore: new MemoryBlockstore() })
    await write(hub.app, alice, 'twitter', 'alice', { a: 0 })
    const contenders = await Promise.all([1, 2, 3].map(async n => prepare(hub.app, alice, 'twitter', 'alice', { n })))
    datastore.close()
    const commitsBefore = datastore.commits
    const holder = post(hub.app, '/v1/kv', contenders[0]?.body)
    while (datastore.commits === commitsBefore) await new Promise(resolve => setImmediate(resolve))
    // The lock is held (its write is waiting): a stranger is answered at once, without queueing.
    await expectError(await post(hub.app, '/v1/kv', strangerBody(alice, NOW_MS / 1000)), 400)
    const waiter = post(hub.app, '/v1/kv', contenders[1]?.body)
    // Let the waiter reach the queue before the third arrives.
    for (let i = 0; i < 20; i++) await new Promise(resolve => setImmediate(resolve))
    const refused = await post(hub.app, '/v1/kv', contenders[2]?.body)
    expect(refused.headers.get('retry-after')).toBe('1')
    expect(refused.status).toBe(429)
    expect(await refused.json()).toMatchObject({ name: 'RateLimitError' })
    datastore.open()
    expect((await holder).status).toBe(201)
    // Signed over the head the holder replaced.
    await expectError(await waiter, 409)
  })

  it('a stranger cannot take an avatar\'s uuids: its chain still imports on a hub where they were used', async () => {
    const home = makeHub()
    const signed = await write(home.app, alice, 'twitter', 'alice', { a: 1 })
    await write(home.app, alice, 'twitter', 'alice', { b: 2 })
    const chain = await exportAvatarChain(home.stores, alice.avatar)

    const other = makeHub()
    const bobPayload = await requestPayload(other.app, bob, 'twitter', 'bob', { squat: true })
    const text = bobPayload.sign_payload.replace(bobPayload.uuid, signed.payload.uuid)
    const squat = await post(other.app, '/v1/kv', { avatar: bob.avatar, platform: 'twitter', identity: 'bob', uuid: signed.payload.uuid, created_at: bobPayload.created_at, signature: toBase64(await personalSign(bob, text)), patch: { squat: true } })
    expect(squat.status).toBe(201)
    await importAvatarChain(other.stores, chain.blocks, chain.head)
    expect(await getText(other.app, `/v1/kv?avatar=${alice.avatar}`)).toBe(await getText(home.app, `/v1/kv?avatar=${alice.avatar}`))
    // and alice writes on from there
    await write(other.app, alice, 'twitter', 'alice', { c: 3 })
  })

  it('the avatar\'s own POST completes within 1 s while a stranger sends ~40 refused POSTs/s at its 20-link chain (real HTTP server)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nextid-attack-'))
    const datastore = new LevelDatastore(join(dir, 'datastore'))
    const blockstore = new FsBlockstore(join(dir, 'blocks'))
    await datastore.open()
    await blockstore.open()
    const app = createNextIdApp({ datastore, blockstore })
    const server = await new Promise<ServerType>(resolve => { const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => { resolve(s) }) })
    const { port } = server.address() as AddressInfo
    const base = `http://127.0.0.1:${port}`
    const send = async (path: string, body: unknown): Promise<Response> =>
      fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    /** The avatar's write; resolves with how long its POST /v1/kv took (the payload and signing are the client's). */
    const ownWrite = async (patch: unknown): Promise<number> => {
      const payloadRes = await send('/v1/kv/payload', { avatar: alice.compressed, platform: 'twitter', identity: 'alice', patch })
      const payload = await payloadRes.json() as PayloadResponse
      const signature = toBase64(await personalSign(alice, payload.sign_payload))
      const started = performance.now()
      const res = await send('/v1/kv', { avatar: alice.compressed, platform: 'twitter', identity: 'alice', uuid: payload.uuid, created_at: payload.created_at, signature, patch })
      expect(res.status, await res.clone().text()).toBe(201)
      await res.arrayBuffer()
      return performance.now() - started
    }
    try {
      for (let i = 0; i < 20; i++) await ownWrite({ i })
      const statuses: number[] = []
      const inFlight: Array<Promise<void>> = []
      let attacking = true
      // The stranger picks the worst created_at it may (the far end of the window).
      const attacker = (async () => {
        const end = Date.now() + 10_000
        while (attacking && Date.now() < end) {
          inFlight.push(send('/v1/kv', strangerBody(alice, Math.floor(Date.now() / 1000) - 9 * 60)).then(async r => { statuses.push(r.status); await r.arrayBuffer() }))
          await new Promise(resolve => setTimeout(resolve, 25))
        }
      })()
      await new Promise(resolve => setTimeout(resolve, 500))
      // For at least 2 s (and 5 writes), so the stranger keeps sending throughout.
      const latenciesMs: number[] = []
      const until = performance.now() + 2000
      while (latenciesMs.length < 5 || (performance.now() < until && latenciesMs.length < 100)) latenciesMs.push(await ownWrite({ during: latenciesMs.length }))
      attacking = false
      await attacker
      await Promise.all(inFlight)
      expect(statuses.length).toBeGreaterThanOrEqual(40)
      expect(new Set(statuses)).toEqual(new Set([400]))
      expect(Math.max(...latenciesMs), latenciesMs.map(ms => ms.toFixed(0)).join(', ')).toBeLessThan(1000)
      expect((await exportAvatarChain({ datastore, blockstore }, alice.avatar)).blocks).toHaveLength(20 + latenciesMs.length)
    } finally {
      await new Promise(resolve => server.close(resolve))
      await datastore.close()
      await blockstore.close()
      await rm(dir, { recursive: true, force: true })
    }
  }, 30_000)
})

describe('guards', () => {
  it('refuses a lone surrogate in platform or identity with a clear 400, on both POST routes, and in buildSignPayload', async () => {
    const hub = makeHub()
    const good = await prepare(hub.app, alice, 'twitter', 'alice', { a: 1 })
    const before = await snapshot(hub)
    for (const field of ['platform', 'identity']) {
      for (const lone of ['\\ud800', '\\udfff', 'x\\ud83dy']) {
        const text = JSON.stringify({ ...good.body, [field]: 'PLACEHOLDER' }).replace('PLACEHOLDER', lone)
        const res = await post(hub.app, '/v1/kv', text)
        expect(await expectError(res.clone(), 400), `${field} ${lone}`).toMatch(/surrogate/)
        expect(await res.json()).toMatchObject({ name: 'InvalidInputError' })
        const payloadText = JSON.stringify({ avatar: alice.compressed, platform: 'twitter', identity: 'alice', patch: {}, [field]: 'PLACEHOLDER' }).replace('PLACEHOLDER', lone)
        expect(await expectError(await post(hub.app, '/v1/kv/payload', payloadText), 400)).toMatch(/surrogate/)
      }
    }
    expect(await snapshot(hub)).toEqual(before)
    // The same guard for callers of the module, whose strings never went through the JSON parser.
    const fields = { uuid: randomUUID(), avatar: alice.avatar, platform: 'twitter', identity: 'alice', patch: {}, createdAtSeconds: 1, previous: null }
    for (const field of ['platform', 'identity'] as const) {
      expect(() => buildSignPayload({ ...fields, [field]: 'a\ud800' }), field).toThrow(expect.objectContaining({ name: 'InvalidInputError', message: expect.stringMatching(/surrogate/) }))
    }
    expect(buildSignPayload({ ...fields, identity: 'a\ud83d\ude00' })).toContain('"identity":"a\ud83d\ude00"')
  })

  it('refuses an imported chain that uses a uuid twice, correctly signed, and changes nothing', async () => {
    const hub = makeHub()
    const first = await write(hub.app, alice, 'twitter', 'alice', { a: 1 })
    const chain = await exportAvatarChain(hub.stores, alice.avatar)
    const [b0] = chain.blocks as [Block]
    // A second link re-using the first link's uuid, signed by alice over the right previous.
    const createdAt = first.payload.created_at
    const patch = { a: 2 }
    const text = buildSignPayload({ uuid: first.payload.uuid, avatar: alice.avatar, platform: 'twitter', identity: 'alice', patch, createdAtSeconds: createdAt, previous: first.signature })
    const signature = await personalSign(alice, text)
    const b1 = await cborBlock({ version: '1', avatar: alice.avatar.slice(2), platform: 'twitter', identity: 'alice', uuid: first.payload.uuid, created_at: createdAt, patch, signature, previous: b0.cid })
    const target = makeHub()
    const before = await snapshot(target)
    await rejectsWith(importAvatarChain(target.stores, [b0, b1], b1.cid), 'IntegrityError')
    expect(await snapshot(target)).toEqual(before)
    // Over HTTP, as a CAR: 400 and nothing imported.
    const car = encodeCar([b1, b0], [b1.cid])
    expect(await expectError(await post(target.app, '/api/v1/nextid/import', car, { 'content-type': 'application/vnd.ipld.car' }), 400)).toMatch(/uuid .* twice/)
    expect(await snapshot(target)).toEqual(before)
    // The same chain with a fresh uuid in the second link imports.
    const uuid = randomUUID()
    const text2 = buildSignPayload({ uuid, avatar: alice.avatar, platform: 'twitter', identity: 'alice', patch, createdAtSeconds: createdAt, previous: first.signature })
    const b1ok = await cborBlock({ version: '1', avatar: alice.avatar.slice(2), platform: 'twitter', identity: 'alice', uuid, created_at: createdAt, patch, signature: await personalSign(alice, text2), previous: b0.cid })
    await importAvatarChain(target.stores, [b0, b1ok], b1ok.cid)
    expect(JSON.parse(await getText(target.app, `/v1/kv?avatar=${alice.avatar}`)).proofs[0].content).toEqual({ a: 2 })
  })

  it('signature recovery agrees with the EIP-191 recovery for v 0/1/27/28 and high s', async () => {
    const N = BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141')
    await fc.assert(fc.asyncProperty(fc.string({ minLength: 1, maxLength: 80 }), fc.boolean(), fc.boolean(), async (message, eth, high) => {
      const sig = await personalSign(alice, message, eth ? 'eth' : 'raw')
      let bytes = sig
      if (high) {
        const s = BigInt('0x' + bytesToHex(sig.subarray(32, 64)))
        const v = sig[64] as number
        bytes = concatBytes(sig.subarray(0, 32), hexToBytes((N - s).toString(16).padStart(64, '0')), Uint8Array.of(v >= 27 ? 55 - v : v ^ 1))
      }
      expect(bytesToHex(recoverPersonalSigner(message, bytes).publicKey)).toBe(bytesToHex(alice.publicKey))
      expect(signedBy(message, bytes, alice.publicKey)).toBe(true)
      expect(signedBy(message, bytes, bob.publicKey)).toBe(false)
      expect(signedBy(message + '.', bytes, alice.publicKey)).toBe(false)
    }), { numRuns: 30 })
  })
})

describe('bounds on what a request can cost', () => {
  it('caps the links, block bytes and content kept per avatar (413), and lets a write shrink content that is over', async () => {
    const hub = makeHub({ maxChainLinks: 3 })
    for (let i = 0; i < 3; i++) await write(hub.app, alice, 'twitter', 'alice', { i })
    const before = await snapshot(hub)
    const fourth = await prepare(hub.app, alice, 'twitter', 'alice', { i: 3 })
    expect(await expectError(await post(hub.app, '/v1/kv', fourth.body), 413)).toMatch(/3/)
    expect(await snapshot(hub)).toEqual(before)
    await write(hub.app, bob, 'twitter', 'alice', { other: 'avatar, own cap' })

    const bytes = makeHub({ maxChainBytes: 1500 })
    await write(bytes.app, alice, 'twitter', 'alice', { s: 'x'.repeat(400) })
    const big = await prepare(bytes.app, alice, 'twitter', 'alice', { s: 'y'.repeat(900) })
    expect(await expectError(await post(bytes.app, '/v1/kv', big.body), 413)).toMatch(/chain/)

    const content = makeHub({ maxAvatarContentBytes: 700 })
    await write(content.app, alice, 'twitter', 'alice', { s: 'x'.repeat(250) })
    await write(content.app, alice, 'github', 'alice', { s: 'x'.repeat(250) })
    const third = await prepare(content.app, alice, 'mastodon', 'alice', { s: 'x'.repeat(250) })
    expect(await expectError(await post(content.app, '/v1/kv', third.body), 413)).toMatch(/content/)
    // Over the cap after a lowered limit (a restart with other options): removing is still allowed.
    const lowered = makeHub({ maxAvatarContentBytes: 100 }, content.stores)
    await write(lowered.app, alice, 'github', 'alice', { s: null })
  })

  it('refuses an import over the chain caps before checking any signature (413)', async () => {
    const hub = makeHub()
    for (let i = 0; i < 4; i++) await write(hub.app, alice, 'twitter', 'alice', { i })
    const chain = await exportAvatarChain(hub.stores, alice.avatar)
    const target = makeHub({ maxChainLinks: 3 })
    const before = recoveryCount.value
    await rejectsWith(importAvatarChain({ ...target.stores, maxChainLinks: 3 }, chain.blocks, chain.head), 'TooLargeError')
    await rejectsWith(importAvatarChain({ ...target.stores, maxChainBytes: 100 }, chain.blocks, chain.head), 'TooLargeError')
    const car = new Uint8Array(await (await hub.app.request(`/api/v1/nextid/export?avatar=${alice.avatar}`)).arrayBuffer())
    await expectError(await post(target.app, '/api/v1/nextid/import', car, { 'content-type': 'application/vnd.ipld.car' }), 413)
    expect(recoveryCount.value).toBe(before)
    expect(await nextidKeys(target.stores.datastore)).toEqual([])
  })

  it('runs one import at a time per hub: another is refused at once with RateLimitError', async () => {
    const hub = makeHub()
    for (let i = 0; i < 3; i++) await write(hub.app, alice, 'twitter', 'alice', { i })
    const chain = await exportAvatarChain(hub.stores, alice.avatar)
    const target = makeHub()
    const first = importAvatarChain(target.stores, chain.blocks, chain.head)
    await rejectsWith(importAvatarChain(target.stores, chain.blocks, chain.head), 'RateLimitError')
    await first
    await importAvatarChain(target.stores, chain.blocks, chain.head)
    // Re-importing what the hub holds verifies nothing again.
    const before = recoveryCount.value
    await importAvatarChain(target.stores, chain.blocks, chain.head)
    expect(recoveryCount.value).toBe(before)
  })

  it('takes one import at a time over HTTP, refusing another before reading its body (429)', async () => {
    const one = makeHub()
    await write(one.app, alice, 'twitter', 'alice', { a: 1 })
    const car = new Uint8Array(await (await one.app.request(`/api/v1/nextid/export?avatar=${alice.avatar}`)).arrayBuffer())
    const target = makeHub()
    let finish: () => void = () => {}
    const slow = new ReadableStream<Uint8Array>({
      start (controller) {
        controller.enqueue(car.subarray(0, 10))
        finish = () => { controller.enqueue(car.subarray(10)); controller.close() }
      }
    })
    let pulled = false
    const watched = new ReadableStream<Uint8Array>({ pull (controller) { pulled = true; controller.enqueue(car); controller.close() } }, { highWaterMark: 0 })
    const upload = async (body: ReadableStream<Uint8Array>): Promise<Response> =>
      target.app.request('/api/v1/nextid/import', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body, duplex: 'half' } as RequestInit)
    const first = upload(slow)
    await new Promise(resolve => setImmediate(resolve))
    const second = await upload(watched)
    expect(second.status).toBe(429)
    expect(second.headers.get('retry-after')).toBe('1')
    expect(await second.json()).toMatchObject({ name: 'RateLimitError' })
    expect(pulled).toBe(false)
    finish()
    expect((await first).status).toBe(201)
    expect((await upload(new ReadableStream({ start (c) { c.enqueue(car); c.close() } }))).status).toBe(201)
  })

  it('by_identity lists at most maxIdentityResults avatars and stays under maxIdentityResponseBytes', async () => {
    const keys = Array.from({ length: 5 }, (_, i) => makeKey(`claimant ${i}`))
    const hub = makeHub({ maxIdentityResults: 3 })
    for (const key of keys) await write(hub.app, key, 'twitter', 'alice', { note: 'x'.repeat(100) })
    const listed = JSON.parse(await getText(hub.app, '/v1/kv/by_identity?platform=twitter&identity=alice')) as { values: Array<{ avatar: string }> }
    expect(listed.values).toHaveLength(3)
    expect(listed.values.map(v => v.avatar)).toEqual([...listed.values.map(v => v.avatar)].sort())
    const small = makeHub({ maxIdentityResponseBytes: 600 }, hub.stores)
    const text = await getText(small.app, '/v1/kv/by_identity?platform=twitter&identity=alice')
    expect(text.length).toBeLessThanOrEqual(600 + 20)
    expect((JSON.parse(text) as { values: unknown[] }).values.length).toBe(2)
    expect(JSON.parse(await getText(makeHub({}, hub.stores).app, '/v1/kv/by_identity?platform=twitter&identity=alice')).values).toHaveLength(5)
  })

  it('streams an export block by block, newest first, and re-imports it', async () => {
    const hub = makeHub()
    for (let i = 0; i < 5; i++) await write(hub.app, alice, 'twitter', 'alice', { i })
    const chain = await exportAvatarChain(hub.stores, alice.avatar)
    const res = await hub.app.request(`/api/v1/nextid/export?avatar=${alice.avatar}`)
    const reader = await CarReader.fromBytes(new Uint8Array(await res.arrayBuffer()))
    expect((await reader.getRoots()).map(String)).toEqual([String(chain.head)])
    const order: string[] = []
    for await (const block of reader.blocks()) order.push(block.cid.toString())
    expect(order).toEqual(chain.blocks.map(b => b.cid.toString()).reverse())
  })
})

/** What writing `patch` as bob's first link costs: the same for any avatar (keys and blocks have fixed-width fields). */
async function firstWriteCost (patch: unknown): Promise<number> {
  const scratch = makeHub()
  await write(scratch.app, bob, 'twitter', 'bob', patch)
  return nextIdStoredBytes(scratch.stores.datastore)
}

describe('hub-wide storage budget', () => {
  it('counts every key and value it writes, and refuses a POST past maxStoredBytes with 507, changing nothing', async () => {
    const patch = { bio: 'x'.repeat(300) }
    const cost = await firstWriteCost(patch)
    const hub = makeHub()
    await write(hub.app, alice, 'twitter', 'alice', { a: 1 })
    await write(hub.app, alice, 'twitter', 'alice', { b: 2 })
    const total = await nextIdStoredBytes(hub.stores.datastore)
    expect(total).toBe(await countedBytes(hub.stores.datastore))
    expect(await storedTotal(hub.stores.datastore)).toBe(total)

    // One byte short of what bob's write adds: refused, and nothing moves (the total included).
    const tight = makeHub({ maxStoredBytes: total + cost - 1 }, hub.stores)
    const before = await snapshot(hub)
    const over = await prepare(tight.app, bob, 'twitter', 'bob', patch)
    const res = await post(tight.app, '/v1/kv', over.body)
    expect(res.status).toBe(507)
    expect(await res.json()).toMatchObject({ name: 'InsufficientStorageError', message: expect.stringMatching(/Next\.ID/) })
    expect(await snapshot(hub)).toEqual(before)
    expect(await nextIdStoredBytes(hub.stores.datastore)).toBe(total)
    expect(await getText(tight.app, `/v1/kv?avatar=${bob.avatar}`)).toContain('"proofs":[]')

    // Exactly the budget fits; then even a known avatar's next patch is refused.
    const exact = makeHub({ maxStoredBytes: total + cost }, hub.stores)
    await write(exact.app, bob, 'twitter', 'bob', patch)
    expect(await nextIdStoredBytes(hub.stores.datastore)).toBe(total + cost)
    await expectError(await post(exact.app, '/v1/kv', (await prepare(exact.app, alice, 'twitter', 'alice', { c: 3 })).body), 507)
    expect(await nextIdStoredBytes(hub.stores.datastore)).toBe(await countedBytes(hub.stores.datastore))
    expect(await storedTotal(hub.stores.datastore)).toBe(await countedBytes(hub.stores.datastore))
  })

  it('fresh avatars cannot get around it: of concurrent first writes, only those that fit are stored', async () => {
    const patch = { s: 'y'.repeat(200) }
    const cost = await firstWriteCost(patch)
    const hub = makeHub({ maxStoredBytes: 2 * cost })
    const writers = Array.from({ length: 5 }, (_, i) => makeKey(`budget ${i}`))
    const bodies = await Promise.all(writers.map(async key => (await prepare(hub.app, key, 'twitter', 'bob', patch)).body))
    const statuses = (await Promise.all(bodies.map(async body => post(hub.app, '/v1/kv', body)))).map(r => r.status)
    expect(statuses.filter(s => s === 201)).toHaveLength(2)
    expect(statuses.filter(s => s === 507)).toHaveLength(3)
    expect(await nextIdStoredBytes(hub.stores.datastore)).toBe(2 * cost)
    expect(await countedBytes(hub.stores.datastore)).toBe(2 * cost)
  })

  it('refuses an import past maxStoredBytes with 507 (over HTTP and through importAvatarChain), importing nothing', async () => {
    const source = makeHub()
    for (let i = 0; i < 3; i++) await write(source.app, alice, 'twitter', 'alice', { i })
    const chain = await exportAvatarChain(source.stores, alice.avatar)
    const car = new Uint8Array(await (await source.app.request(`/api/v1/nextid/export?avatar=${alice.avatar}`)).arrayBuffer())
    // An import keeps no acceptance times: it costs less than the writes did. Measure it once.
    const scratch = makeHub()
    await importAvatarChain(scratch.stores, chain.blocks, chain.head)
    const needed = await nextIdStoredBytes(scratch.stores.datastore)
    expect(needed).toBe(await countedBytes(scratch.stores.datastore))

    const target = makeHub({ maxStoredBytes: needed - 1 })
    const res = await post(target.app, '/api/v1/nextid/import', car, { 'content-type': 'application/vnd.ipld.car' })
    expect(res.status).toBe(507)
    expect(await res.json()).toMatchObject({ name: 'InsufficientStorageError' })
    await rejectsWith(importAvatarChain({ ...target.stores, maxStoredBytes: needed - 1 }, chain.blocks, chain.head), 'InsufficientStorageError')
    expect(await nextidKeys(target.stores.datastore)).toEqual([])
    expect(await nextIdStoredBytes(target.stores.datastore)).toBe(0)
    expect(await getText(target.app, `/v1/kv?avatar=${alice.avatar}`)).toContain('"proofs":[]')

    // The same chain within the budget: the importing hub then holds what the writing hub did.
    await importAvatarChain({ ...target.stores, maxStoredBytes: needed }, chain.blocks, chain.head)
    expect(await nextIdStoredBytes(target.stores.datastore)).toBe(needed)
    expect(await storedTotal(target.stores.datastore)).toBe(await countedBytes(target.stores.datastore))
  })
})

describe('durability', () => {
  async function levelHub (options: Partial<NextIdOptions> = {}): Promise<{ hub: Hub, datastore: LevelDatastore, blockstore: FsBlockstore, batches: Array<{ keys: string[], sync: boolean }>, done: () => Promise<void> }> {
    const dir = await mkdtemp(join(tmpdir(), 'nextid-durable-'))
    const datastore = new LevelDatastore(join(dir, 'datastore'))
    const blockstore = new FsBlockstore(join(dir, 'blocks'))
    await datastore.open()
    await blockstore.open()
    const batches: Array<{ keys: string[], sync: boolean }> = []
    const db = datastore.db as unknown as { batch: (ops: Array<{ key: string }>, options?: { sync?: boolean }) => Promise<void> }
    const original = db.batch.bind(db)
    db.batch = async (ops, opts) => {
      batches.push({ keys: ops.map(op => op.key), sync: opts?.sync === true })
      return original(ops, opts)
    }
    const hub = makeHub(options, { datastore, blockstore } as unknown as Hub['stores'])
    return { hub, datastore, blockstore, batches, done: async () => { await datastore.close(); await blockstore.close(); await rm(dir, { recursive: true, force: true }) } }
  }

  it('writes the block, head, entry and uuid of an accepted patch in one fsynced LevelDB batch before the 201', async () => {
    const { hub, datastore, blockstore, batches, done } = await levelHub()
    try {
      const first = await write(hub.app, alice, 'twitter', 'alice', { a: 1 })
      // The uuid, head, totals and entry are read from LevelDB together: a replay is still caught.
      await expectError(await post(hub.app, '/v1/kv', first.body), 409)
      await write(hub.app, alice, 'twitter', 'alice', { b: 2 })
      expect(JSON.parse(await getText(hub.app, `/v1/kv?avatar=${alice.avatar}`)).proofs[0].content).toEqual({ a: 1, b: 2 })
      const avatar = alice.avatar.slice(2)
      const head = (await exportAvatarChain({ datastore, blockstore }, alice.avatar)).head
      const batch = batches.filter(b => b.keys.includes(`/nextid/head/${avatar}`)).at(-1)
      expect(batch?.sync).toBe(true)
      expect(batch?.keys).toEqual(expect.arrayContaining([`/nextid/block/${String(head)}`, `/nextid/stat/${avatar}`, expect.stringMatching(`^/nextid/uuid/${avatar}/`), expect.stringMatching(`^/nextid/kv/${avatar}/`)]))
      // Imports too.
      const other = await levelHub()
      try {
        const chain = await exportAvatarChain({ datastore, blockstore }, alice.avatar)
        await importAvatarChain({ datastore: other.datastore, blockstore: other.blockstore }, chain.blocks, chain.head)
        expect(other.batches.find(b => b.keys.includes(`/nextid/head/${avatar}`))?.sync).toBe(true)
      } finally {
        await other.done()
      }
    } finally {
      await done()
    }
  })

  it('writes of different avatars that arrive during an fsync share the next one (group commit); a failed group writes nothing', async () => {
    const { hub, datastore, batches, done } = await levelHub()
    try {
      const db = datastore.db as unknown as { batch: (ops: unknown[], options?: { sync?: boolean }) => Promise<void> }
      const recording = db.batch
      let release: () => void = () => {}
      const gate = new Promise<void>(resolve => { release = resolve })
      let calls = 0
      db.batch = async (ops, opts) => { if (calls++ === 0) await gate; return recording(ops, opts) }
      const writers = Array.from({ length: 5 }, (_, i) => makeKey(`group ${i}`))
      const bodies = await Promise.all(writers.map(async key => (await prepare(hub.app, key, 'twitter', 'group', { g: 1 })).body))
      const responses = bodies.map(async body => post(hub.app, '/v1/kv', body))
      while (calls < 1) await new Promise(resolve => setImmediate(resolve))
      // The first write's fsync is under way: the other four join the queue behind it.
      for (let i = 0; i < 50; i++) await new Promise(resolve => setImmediate(resolve))
      release()
      expect((await Promise.all(responses)).map(r => r.status)).toEqual([201, 201, 201, 201, 201])
      const heads = batches.filter(b => b.sync && b.keys.some(k => k.startsWith('/nextid/head/')))
      expect(heads.map(b => b.keys.filter(k => k.startsWith('/nextid/head/')).length)).toEqual([1, 4])

      // A group whose write fails: every writer in it gets 502, and none of them wrote anything.
      const before = await nextidKeys(datastore as unknown as MemoryDatastore)
      // The group's total is the sum of what each of its writes added.
      expect(await storedTotal(datastore as unknown as MemoryDatastore)).toBe(await countedBytes(datastore as unknown as MemoryDatastore))
      db.batch = async () => { throw new Error('disk on fire') }
      const failing = await Promise.all(writers.slice(0, 3).map(async key => post(hub.app, '/v1/kv', (await prepare(hub.app, key, 'twitter', 'group', { g: 2 })).body)))
      for (const res of failing) expect(await res.json()).toMatchObject({ name: 'StoreError' })
      expect(failing.map(r => r.status)).toEqual([502, 502, 502])
      expect(await nextidKeys(datastore as unknown as MemoryDatastore)).toEqual(before)
      db.batch = recording
      await write(hub.app, writers[0] as Key, 'twitter', 'group', { g: 3 })
      expect(await storedTotal(datastore as unknown as MemoryDatastore)).toBe(await countedBytes(datastore as unknown as MemoryDatastore))
    } finally {
      await done()
    }
  })

  it('syncWrites: false writes the same batch without fsync', async () => {
    const { hub, batches, done } = await levelHub({ syncWrites: false })
    try {
      await write(hub.app, alice, 'twitter', 'alice', { a: 1 })
      expect(batches.some(b => b.keys.includes(`/nextid/head/${alice.avatar.slice(2)}`))).toBe(true)
      expect(batches.some(b => b.sync)).toBe(false)
    } finally {
      await done()
    }
  })

  it('the Next.ID total survives a restart on the same datastore, and a hub without one counts it once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nextid-total-'))
    const open = async (): Promise<{ datastore: LevelDatastore, blockstore: FsBlockstore }> => {
      const datastore = new LevelDatastore(join(dir, 'datastore'))
      const blockstore = new FsBlockstore(join(dir, 'blocks'))
      await datastore.open()
      await blockstore.open()
      return { datastore, blockstore }
    }
    const patch = { s: 'z'.repeat(300) }
    const cost = await firstWriteCost(patch)
    try {
      let stores = await open()
      const first = makeHub({}, stores as unknown as Hub['stores'])
      await write(first.app, alice, 'twitter', 'alice', { a: 1 })
      await write(first.app, alice, 'github', 'alice', { b: 2 })
      const total = await nextIdStoredBytes(stores.datastore)
      await stores.datastore.close()
      await stores.blockstore.close()

      // A new process on the same directory reads the total, and the budget holds against it.
      stores = await open()
      const ds = stores.datastore as unknown as MemoryDatastore
      expect(await storedTotal(ds)).toBe(total)
      expect(await nextIdStoredBytes(stores.datastore)).toBe(total)
      const restarted = makeHub({ maxStoredBytes: total + cost - 1 }, stores as unknown as Hub['stores'])
      await expectError(await post(restarted.app, '/v1/kv', (await prepare(restarted.app, bob, 'twitter', 'bob', patch)).body), 507)
      expect(await storedTotal(ds)).toBe(total)

      // A hub written before the total was kept: counted from its data at the first write, then kept.
      await stores.datastore.delete(new DatastoreKey('/nextid/total'))
      await stores.datastore.close()
      await stores.blockstore.close()
      stores = await open()
      const legacy = stores.datastore as unknown as MemoryDatastore
      expect(await nextIdStoredBytes(stores.datastore)).toBe(total)
      const counted = makeHub({ maxStoredBytes: total + cost }, stores as unknown as Hub['stores'])
      await write(counted.app, bob, 'twitter', 'bob', patch)
      expect(await storedTotal(legacy)).toBe(total + cost)
      expect(await countedBytes(legacy)).toBe(total + cost)
      await stores.datastore.close()
      await stores.blockstore.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a chain whose blocks are only in the blockstore (written before they moved to the datastore) still reads, exports, and is copied over by its next write', async () => {
    const hub = makeHub()
    for (let i = 0; i < 3; i++) await write(hub.app, alice, 'twitter', 'alice', { i })
    // Next.ID keeps nothing in the blockstore, whose garbage collection only spares what IPNS records reference.
    expect(await blockCount(hub.stores.blockstore)).toBe(0)
    const expected = await exportAvatarChain(hub.stores, alice.avatar)
    // Make it look like a chain written before: blocks in the blockstore, no totals, no acceptance times.
    for await (const { key, value } of hub.stores.datastore.query({ prefix: '/nextid/' })) {
      const match = /^\/nextid\/block\/(.+)$/.exec(key.toString())
      if (match !== null) await hub.stores.blockstore.put(CID.parse(match[1] as string), value)
      if (/^\/nextid\/(block|stat|at)\//.test(key.toString())) await hub.stores.datastore.delete(key)
    }
    expect((await exportAvatarChain(hub.stores, alice.avatar)).blocks.map(String)).toEqual(expected.blocks.map(String))
    await write(hub.app, alice, 'twitter', 'alice', { i: 3 })
    const stat = JSON.parse(new TextDecoder().decode(await hub.stores.datastore.get(new DatastoreKey(`/nextid/stat/${alice.avatar.slice(2)}`)))) as Record<string, number>
    expect(stat.links).toBe(4)
    // Its blocks were copied: the chain no longer needs the blockstore.
    for await (const { cid } of hub.stores.blockstore.getAll()) await hub.stores.blockstore.delete(cid)
    expect((await exportAvatarChain(hub.stores, alice.avatar)).blocks).toHaveLength(4)
  })

})

/**
 * Next.ID chains across two peered hubs in this process: a patch posted at one hub is served by the
 * other; two patches accepted at once on the same head by different hubs (a fork) end as one chain
 * on both, the one the documented rule picks; a chain that does not check out changes nothing.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { wins } from '../src/hub/nextid/replicate.js'
import * as secp from '@noble/secp256k1'
import * as dagCbor from '@ipld/dag-cbor'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { encode } from 'cborg'
import { startHub } from '../src/hub/server.js'
import { exportAvatarChain } from '../src/hub/nextid.js'
import { CLUSTER_NEXTID_TOPIC, CLUSTER_RECORDS_TOPIC } from '../src/protocol.js'
import { bytesToHex, concatBytes, hexToBytes, toBase64, utf8 } from '../src/crypto/bytes.js'
import { hashPersonalMessage } from '../src/crypto/eip191.js'
import type { RunningHub } from '../src/hub/server.js'
import type { GossipSub } from '@libp2p/gossipsub'

interface Key { secretKey: Uint8Array, avatar: string, compressed: string }

function makeKey (seed: string): Key {
  const secretKey = keccak_256(utf8(seed))
  return { secretKey, avatar: '0x' + bytesToHex(secp.getPublicKey(secretKey, false)), compressed: '0x' + bytesToHex(secp.getPublicKey(secretKey, true)) }
}

async function personalSign (key: Key, message: string): Promise<Uint8Array> {
  const recovered = await secp.signAsync(hashPersonalMessage(message), key.secretKey, { prehash: false, format: 'recovered' })
  const sig = secp.Signature.fromBytes(recovered, 'recovered')
  return concatBytes(hexToBytes(sig.r.toString(16).padStart(64, '0')), hexToBytes(sig.s.toString(16).padStart(64, '0')), Uint8Array.of(sig.recovery ?? 0))
}

async function postJson (url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
}

/** Asks `hub` for a payload, signs it; returns the body to POST. */
async function prepare (hub: RunningHub, key: Key, patch: unknown): Promise<Record<string, unknown>> {
  const res = await postJson(hub.url + '/v1/kv/payload', { avatar: key.compressed, platform: 'nextid', identity: key.compressed, patch })
  expect(res.status, await res.clone().text()).toBe(200)
  const payload = await res.json() as { uuid: string, sign_payload: string, created_at: number }
  const signature = await personalSign(key, payload.sign_payload)
  return { avatar: key.compressed, platform: 'nextid', identity: key.compressed, uuid: payload.uuid, created_at: payload.created_at, signature: toBase64(signature), patch }
}

async function proofs (hub: RunningHub, key: Key): Promise<unknown> {
  const res = await fetch(`${hub.url}/v1/kv?avatar=${key.compressed}`)
  expect(res.status).toBe(200)
  return (await res.json() as { proofs: unknown }).proofs
}

async function head (hub: RunningHub, key: Key): Promise<string | undefined> {
  return (await exportAvatarChain({ datastore: hub.helia.datastore, blockstore: hub.helia.blockstore }, key.avatar)).head?.toString()
}

const hubs: RunningHub[] = []
let h1: RunningHub
let h2: RunningHub

beforeAll(async () => {
  const options = { port: 0, directory: false as const, rateLimit: 0 as const, verifyThreads: 0, republishIntervalMs: 0 }
  h1 = await startHub(options)
  hubs.push(h1)
  h2 = await startHub({ ...options, peers: h1.multiaddrs })
  hubs.push(h2)
  for (const h of hubs) {
    const pubsub = h.helia.libp2p.services.pubsub as GossipSub
    while (pubsub.getSubscribers(CLUSTER_NEXTID_TOPIC).length < 1 || pubsub.getSubscribers(CLUSTER_RECORDS_TOPIC).length < 1) {
      await new Promise(resolve => pubsub.addEventListener('subscription-change', resolve, { once: true }))
    }
  }
}, 60_000)

afterAll(async () => { await Promise.all(hubs.map(async h => h.stop())) })

describe('the fork rule', () => {
  it('the longer chain wins; at equal length, the lower CID after the common prefix; the same answer from either side', async () => {
    const cids = await Promise.all(['w', 'x', 'y', 'z'].map(async t => CID.createV1(dagCbor.code, await sha256.digest(utf8(t)))))
    cids.sort((a, b) => a.toString() < b.toString() ? -1 : 1)
    const [base, low, high, tip] = cids.map(cid => ({ block: { cid, bytes: new Uint8Array() }, link: undefined as never })) as Array<Parameters<typeof wins>[0][number]>
    expect(wins([base!, high!, tip!], [base!, low!])).toBe(true)
    expect(wins([base!, low!], [base!, high!, tip!])).toBe(false)
    expect(wins([base!, low!], [base!, high!])).toBe(true)
    expect(wins([base!, high!], [base!, low!])).toBe(false)
    expect(wins([base!, low!], [base!, low!])).toBe(false)
  })
})

describe('Next.ID across hubs', () => {
  it('a patch posted at hub 1 is served by hub 2 within a second, and the next one extends it there', async () => {
    const key = makeKey('cluster alice')
    expect((await postJson(h1.url + '/v1/kv', await prepare(h1, key, { a: 1 }))).status).toBe(201)
    await expect.poll(async () => JSON.stringify(await proofs(h2, key)), { timeout: 1000, interval: 10 }).toContain('"a":1')
    // Hub 2 now holds the head: a patch made there extends the same chain, and hub 1 follows.
    expect((await postJson(h2.url + '/v1/kv', await prepare(h2, key, { b: 2 }))).status).toBe(201)
    await expect.poll(async () => head(h1, key), { timeout: 1000, interval: 10 }).toBe(await head(h2, key))
    expect(await proofs(h1, key)).toEqual(await proofs(h2, key))
    expect(JSON.stringify(await proofs(h1, key))).toContain('"b":2')
  })

  it('two hubs accepting patches on the same head at once end with one chain, the one the rule picks, on both', async () => {
    const key = makeKey('cluster bob')
    expect((await postJson(h1.url + '/v1/kv', await prepare(h1, key, { base: true }))).status).toBe(201)
    await expect.poll(async () => head(h2, key), { timeout: 2000, interval: 10 }).toBe(await head(h1, key))
    // Both payloads name the same previous link: whichever lands second at a hub forks the chain.
    const [one, two] = await Promise.all([prepare(h1, key, { side: 'one' }), prepare(h2, key, { side: 'two' })])
    const [r1, r2] = await Promise.all([postJson(h1.url + '/v1/kv', one), postJson(h2.url + '/v1/kv', two)])
    expect([r1.status, r2.status].filter(s => s === 201).length).toBeGreaterThan(0)
    await expect.poll(async () => (await head(h1, key)) === (await head(h2, key)), { timeout: 3000, interval: 20 }).toBe(true)
    const served = await proofs(h1, key)
    expect(await proofs(h2, key)).toEqual(served)
    const text = JSON.stringify(served)
    // Exactly one side survives, on both hubs.
    expect(text.includes('"side":"one"') !== text.includes('"side":"two"')).toBe(true)
    const chain = await exportAvatarChain({ datastore: h1.helia.datastore, blockstore: h1.helia.blockstore }, key.avatar)
    expect(chain.blocks).toHaveLength(2)
  })

  it('a gossiped chain whose signature does not check out changes nothing', async () => {
    const key = makeKey('cluster carol')
    expect((await postJson(h1.url + '/v1/kv', await prepare(h1, key, { real: 1 }))).status).toBe(201)
    await expect.poll(async () => head(h2, key), { timeout: 2000, interval: 10 }).toBe(await head(h1, key))
    const before = await proofs(h2, key)
    const { blocks } = await exportAvatarChain({ datastore: h1.helia.datastore, blockstore: h1.helia.blockstore }, key.avatar)
    // The real chain with one more link on top whose signature is copied from the first: it extends
    // the head hub 2 holds, so only the signature check stands in its way.
    const link = dagCbor.decode(blocks[0]?.bytes as Uint8Array) as Record<string, unknown>
    const forged = dagCbor.encode({ ...link, uuid: randomUUID(), patch: { real: 666 }, previous: blocks[0]?.cid })
    await (h1.helia.libp2p.services.pubsub as GossipSub).publish(CLUSTER_NEXTID_TOPIC, encode({ blocks: [blocks[0]?.bytes, forged] }))
    await (h1.helia.libp2p.services.pubsub as GossipSub).publish(CLUSTER_NEXTID_TOPIC, encode({ blocks: 'not a list' }))
    // A good chain sent after them arrives: the bad ones were handled by then.
    const other = makeKey('cluster dave')
    expect((await postJson(h1.url + '/v1/kv', await prepare(h1, other, { ok: 1 }))).status).toBe(201)
    await expect.poll(async () => JSON.stringify(await proofs(h2, other)), { timeout: 2000, interval: 10 }).toContain('"ok":1')
    expect(await proofs(h2, key)).toEqual(before)
  })
})

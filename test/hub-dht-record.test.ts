/**
 * A hub's records on the DHT without a second copy: kad-dht's local put of a record the hub's record
 * store holds writes nothing to LevelDB (and deletes an older copy under the key), and DHT peers
 * that ask the hub for the name get the stored record all the same. A real hub on a directory and a
 * helia node on loopback; each test stops what it starts.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Key } from 'interface-datastore'
import { Record as Libp2pRecord } from '@libp2p/kad-dht'
import { multihashToIPNSRoutingKey } from 'ipns'
import { base32 } from 'multiformats/bases/base32'
import { equals } from 'multiformats/bytes'
import { hubStore, memoryState, openSpace } from '../src/index.js'
import { nameOfRoutingKey, startHub } from '../src/hub/server.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { nameToMultihash } from '../src/store/record.js'
import { account } from './helpers/signers.js'
import { ipnsKeySource } from './helpers/ipns-key.js'
import { createRecord } from '../src/store/record.js'
import { rawBlock } from '../src/store/blocks.js'
import type { MultihashDigest } from 'multiformats/hashes/interface'

const dirs: string[] = []
const nextKey = ipnsKeySource(0x4d)
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

/** A hub process on its own directory (removed after the file's tests), with nothing on a timer. */
async function quietHub (nowMs?: () => number): Promise<Awaited<ReturnType<typeof startHub>>> {
  const dir = await mkdtemp(join(tmpdir(), 'userspace-dht-record-'))
  dirs.push(dir)
  return await startHub({ port: 0, directory: dir, rateLimit: 0, verifyThreads: 0, republishIntervalMs: 0, nextId: false, ...(nowMs === undefined ? {} : { nowMs }) })
}

const routingKeyOf = (name: string): Uint8Array => multihashToIPNSRoutingKey(nameToMultihash(name) as MultihashDigest<0x00 | 0x12>)
const dhtKeyOf = (name: string): Key => new Key(`/dht/record/${base32.baseEncode(routingKeyOf(name))}`)

/** An unsigned LEB128 varint. */
function varint (n: number): number[] {
  const out: number[] = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return out
}

describe("a hub's records on the DHT", () => {
  it('keeps no second copy of a record it stores, serves it to DHT peers, and drops an older copy under the key', async () => {
    const hub = await quietHub()
    const peer = await createHeliaNode({ peers: hub.multiaddrs.filter(a => !a.includes('/ws')) })
    try {
      const space = await openSpace({ signer: account(), store: hubStore(hub.url), state: memoryState() })
      await space.set('k', 1)
      await space.flush()
      const name = space.name
      const first = await (await fetch(`${hub.url}/routing/v1/ipns/${name}`)).arrayBuffer().then(b => new Uint8Array(b))

      // An older copy under the key, as kad-dht kept before (or a peer's PUT_VALUE of the first version).
      await hub.helia.datastore.put(dhtKeyOf(name), new Libp2pRecord(routingKeyOf(name), first, new Date()).serialize())
      await space.set('k', 2)
      await space.flush()
      const second = await (await fetch(`${hub.url}/routing/v1/ipns/${name}`)).arrayBuffer().then(b => new Uint8Array(b))
      expect(equals(first, second)).toBe(false)
      // The DHT put of every stored record, now: kad-dht stores locally first.
      expect(await hub.republish()).toBeGreaterThan(0)
      expect(await hub.helia.datastore.has(dhtKeyOf(name))).toBe(false)

      // A DHT peer asking the hub gets the stored record, the newer one.
      const got = await peer.routing.get(routingKeyOf(name), { signal: AbortSignal.timeout(10_000) })
      expect(equals(got, second)).toBe(true)
      await space.close()
    } finally {
      await stopHeliaNode(peer)
      await hub.stop()
    }
  }, 60_000)

  it('keeps a newer copy a DHT peer put under the key, never serves an older one, and stops serving its record once expired', async () => {
    let shiftMs = 0
    const hub = await quietHub(() => Date.now() + shiftMs)
    const peer = await createHeliaNode({ peers: hub.multiaddrs.filter(a => !a.includes('/ws')) })
    try {
      const { key, name } = await nextKey()
      const root = (await rawBlock(new Uint8Array([1]))).cid
      const [r1, r2, r3] = await Promise.all([1, 2, 3].map(async seq => createRecord(key, root, seq, { lifetimeMs: 60 * 60_000 })))
      const put = await fetch(`${hub.url}/routing/v1/ipns/${name}`, { method: 'PUT', headers: { 'content-type': 'application/vnd.ipfs.ipns-record' }, body: r2 as Uint8Array<ArrayBuffer> })
      expect(put.status).toBe(200)
      const copy = (record: Uint8Array): Uint8Array => new Libp2pRecord(routingKeyOf(name), record, new Date()).serialize()
      const resolve = async (): Promise<Uint8Array> => await peer.routing.get(routingKeyOf(name), { signal: AbortSignal.timeout(10_000) })

      // An older copy under the key (a peer's replay) is not served, and goes with the next announcement.
      await hub.helia.datastore.put(dhtKeyOf(name), copy(r1 as Uint8Array))
      expect(equals(await resolve(), r2 as Uint8Array)).toBe(true)
      await hub.republish()
      expect(await hub.helia.datastore.has(dhtKeyOf(name))).toBe(false)

      // A newer copy a DHT peer put under the key stays, and is what the hub answers.
      await hub.helia.datastore.put(dhtKeyOf(name), copy(r3 as Uint8Array))
      await hub.republish()
      expect(await hub.helia.datastore.has(dhtKeyOf(name))).toBe(true)
      expect(equals(await resolve(), r3 as Uint8Array)).toBe(true)

      // Past its validity the held record is served no more.
      await hub.helia.datastore.delete(dhtKeyOf(name))
      shiftMs = 2 * 60 * 60_000
      await expect(resolve()).rejects.toMatchObject({ name: 'GetFailedError' })
    } finally {
      await stopHeliaNode(peer)
      await hub.stop()
    }
  }, 60_000)

  it('announces the record stored when each put runs, not the one a long pass listed when it began', async () => {
    const hub = await quietHub()
    try {
      const root = (await rawBlock(new Uint8Array([2]))).cid
      const spaces = await Promise.all([1, 2, 3].map(async () => nextKey()))
      const putRecord = async (key: (typeof spaces)[number], seq: number): Promise<Uint8Array> => {
        const record = await createRecord(key.key, root, seq, { lifetimeMs: 60 * 60_000 })
        const res = await fetch(`${hub.url}/routing/v1/ipns/${key.name}`, { method: 'PUT', headers: { 'content-type': 'application/vnd.ipfs.ipns-record' }, body: record as Uint8Array<ArrayBuffer> })
        expect(res.status).toBe(200)
        return record
      }
      for (const space of spaces) await putRecord(space, 1)
      // The pass's first put waits while every space gets a newer record.
      const announced = new Map<string, Uint8Array>()
      const newer = new Map<string, Uint8Array>()
      const routing = hub.helia.routing
      const put = routing.put.bind(routing)
      let first = true
      routing.put = async (key, value, options) => {
        if (first) {
          first = false
          for (const space of spaces) newer.set(space.name, await putRecord(space, 2))
        }
        announced.set(nameOfRoutingKey(key) as string, value)
        return await put(key, value, options)
      }
      await hub.republish()
      routing.put = put
      // the first name's put had started with the record of its time; every later one is the newer
      const later = spaces.filter(space => !equals(announced.get(space.name) as Uint8Array, newer.get(space.name) as Uint8Array))
      expect(later.length).toBeLessThanOrEqual(1)
    } finally {
      await hub.stop()
    }
  }, 60_000)

  it('reads the name of an Ed25519 IPNS routing key, and nothing else', () => {
    const name = 'k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8'
    expect(nameOfRoutingKey(routingKeyOf(name))).toBe(name)
    expect(nameOfRoutingKey(new TextEncoder().encode('/pk/abc'))).toBeUndefined()
    expect(nameOfRoutingKey(new TextEncoder().encode('/ipns/'))).toBeUndefined()
    expect(nameOfRoutingKey(new Uint8Array([...new TextEncoder().encode('/ipns/'), 0x12, 0x20, ...new Uint8Array(32)]))).toBeUndefined()
    // an identity multihash longer than libp2p inlines: never encoded (base36 of 16 KiB takes ~1 s)
    const identityKey = (bytes: Uint8Array): Uint8Array => new Uint8Array([...new TextEncoder().encode('/ipns/'), 0x00, ...varint(bytes.length), ...bytes])
    expect(nameOfRoutingKey(identityKey(new Uint8Array([8, 1, 18, 32, ...new Uint8Array(16 * 1024)])))).toBeUndefined()
    expect(nameOfRoutingKey(identityKey(new Uint8Array(43)))).toBeUndefined()
    expect(nameOfRoutingKey(identityKey(new Uint8Array([8, 1, 18, 32, ...new Uint8Array(32)])))).toMatch(/^k51/)
  })
})

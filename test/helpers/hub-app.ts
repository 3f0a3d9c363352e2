/**
 * Fixtures for hub tests through `app.request()`: a hub on memory stores, spaces in storage format 2
 * with real owner bindings (version 1, or dated version 2), and the requests every test makes.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { CID } from 'multiformats/cid'
import * as json from 'multiformats/codecs/json'
import { sha256 } from 'multiformats/hashes/sha2'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { expect } from 'vitest'
import { hexToBytes } from '../../src/crypto/bytes.js'
import { ownerStatement } from '../../src/crypto/keys.js'
import { createHub, IPNS_RECORD_TYPE } from '../../src/hub/app.js'
import type { HubBlocks } from '../../src/hub/blocks.js'
import { encodeCurrent, encodeOwner, encodeRoot } from '../../src/space/root.js'
import { cborBlock, encodeCar, rawBlock } from '../../src/store/blocks.js'
import { hubStore } from '../../src/store/hub.js'
import { createRecord, nameOfKey } from '../../src/store/record.js'
import type { GcReport, HubAppOptions, HubComponents } from '../../src/hub/app.js'
import type { Block } from '../../src/store/interface.js'
import type { PrivateKey } from '@libp2p/interface'
import type { Hono } from 'hono'


export interface Hub {
  app: Hono
  blockstore: MemoryBlockstore
  datastore: MemoryDatastore
  collectGarbage: (nowMs?: number) => Promise<GcReport>
  blocks: HubBlocks
}

/** A hub app on memory stores, rate limit off unless asked for. */
export function makeHub (options: HubAppOptions = {}, components: Partial<HubComponents> = {}): Hub {
  const blockstore = new MemoryBlockstore()
  const datastore = new MemoryDatastore()
  const { app, collectGarbage, blocks } = createHub({ blockstore, datastore, ...components }, { rateLimit: 0, ...options })
  // the blockstore the hub was given, when it was given one
  return { app, blockstore: (components.blockstore as MemoryBlockstore | undefined) ?? blockstore, datastore, collectGarbage, blocks }
}

export interface Space {
  key: PrivateKey
  name: string
  address: string
  ownerSignature: Uint8Array
  /** root, current node, owner binding, public profile (JSON), its clock, private bucket */
  blocks: Block[]
  root: Block
}

export interface SpaceInit {
  key?: PrivateKey
  walletKey?: `0x${string}`
  sequence?: number
  privateBytes?: number
  /** The name the owner statement names (default: the space's own). */
  name?: string
  /** A dated (version 2) owner binding. */
  issuedAt?: number
  parents?: CID[]
}

/** A space version: a format 2 root with a public profile and its clock, one private bucket and a real owner binding. */
export async function makeSpace (init: SpaceInit = {}): Promise<Space> {
  const key = init.key ?? await generateKeyPair('Ed25519')
  const name = nameOfKey(key)
  const account = privateKeyToAccount(init.walletKey ?? generatePrivateKey())
  const ownerSignature = hexToBytes(await account.signMessage({ message: ownerStatement(account.address, init.name ?? name, init.issuedAt) }))
  const pub = await jsonBlock({ nick: `n${Math.random()}` })
  const clock = await cborBlock({ version: 2, entries: { nick: [1, 'test-device', true] } })
  const priv = await rawBlock(crypto.getRandomValues(new Uint8Array(init.privateBytes ?? 100)))
  const owner = await encodeOwner(init.issuedAt === undefined ? { address: account.address, signature: ownerSignature } : { address: account.address, signature: ownerSignature, issuedAt: init.issuedAt })
  const current = await encodeCurrent({ buckets: 1, private: priv.cid, public: pub.cid, clock: clock.cid, owner: owner.cid })
  const root = await encodeRoot({
    version: 2,
    sequence: init.sequence ?? 1,
    parents: init.parents ?? [],
    updatedAt: Date.now(),
    device: 'test-device',
    public: pub.cid,
    current: current.cid
  })
  // dag-cbor may hand back a Buffer for a small block; tests compare with what the hub serves
  const plain = (b: Block): Block => ({ cid: b.cid, bytes: new Uint8Array(b.bytes) })
  const blocks = [root, current, owner, pub, clock, priv].map(plain)
  return { key, name, address: account.address, ownerSignature, blocks, root: blocks[0] as Block }
}

/** A block of the JSON codec (0x0200), as `@helia/json` writes it. */
export async function jsonBlock (value: unknown): Promise<Block> {
  const bytes = json.encode(value)
  return { cid: CID.createV1(json.code, await sha256.digest(bytes)), bytes }
}

export function car (blocks: Array<{ cid: CID, bytes: Uint8Array }>): Uint8Array {
  return encodeCar(blocks)
}

export async function upload (hub: Hub, blocks: Array<{ cid: CID, bytes: Uint8Array }>): Promise<Response> {
  return hub.app.request('/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: car(blocks) as Uint8Array<ArrayBuffer> })
}

export async function putRecord (hub: Hub, name: string, record: Uint8Array): Promise<Response> {
  return hub.app.request(`/routing/v1/ipns/${name}`, { method: 'PUT', headers: { 'content-type': IPNS_RECORD_TYPE }, body: record as Uint8Array<ArrayBuffer> })
}

export async function getRecord (hub: Hub, name: string): Promise<Response> {
  return hub.app.request(`/routing/v1/ipns/${name}`, { headers: { accept: IPNS_RECORD_TYPE } })
}

/** Uploads a space's blocks and PUTs a record for it; returns the record. */
export async function publish (hub: Hub, space: Space, sequence = 1): Promise<Uint8Array> {
  expect((await upload(hub, space.blocks)).status).toBe(200)
  const record = await createRecord(space.key, space.root.cid, sequence)
  const res = await putRecord(hub, space.name, record)
  expect(res.status, await res.clone().text()).toBe(200)
  return record
}

export async function bytesOf (res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer())
}

export async function countKeys (datastore: MemoryDatastore): Promise<number> {
  let n = 0
  for await (const _ of datastore.queryKeys({})) n++
  return n
}

export async function countBlocks (blockstore: MemoryBlockstore): Promise<number> {
  let n = 0
  for await (const _ of blockstore.getAll()) n++
  return n
}

export function storeFor (hub: Hub): ReturnType<typeof hubStore> {
  return hubStore('http://hub.test', { fetch: async (input, init) => hub.app.request(String(input), init) })
}

export async function expectRefusal (res: Response, status: number, name?: string): Promise<void> {
  const text = await res.text()
  expect(res.status, text).toBe(status)
  expect(res.headers.get('content-type') ?? '').toMatch(/application\/json/)
  const body = JSON.parse(text) as { message: unknown, name?: unknown }
  expect(typeof body.message).toBe('string')
  if (name !== undefined) expect(body.name).toBe(name)
}

/** A hubStore on the app whose requests are listed as `METHOD path?query`. */
export function countingStore (hub: Hub, options: Parameters<typeof hubStore>[1] = {}): { store: ReturnType<typeof hubStore>, requests: string[] } {
  const requests: string[] = []
  const store = hubStore('http://hub.test', {
    ...options,
    fetch: async (input, init) => {
      const url = new URL(String(input))
      requests.push(`${init?.method ?? 'GET'} ${url.pathname}${url.search}`)
      return hub.app.request(url.pathname + url.search, init)
    }
  })
  return { store, requests }
}

/**
 * Hubs as one network, in this process: three `startHub` hubs on 127.0.0.1 peered over libp2p
 * (gossipsub). Live events, address bindings and replicas cross hubs; records a peer sends are
 * checked exactly like a PUT, and a bad one changes nothing. Each test stops what it starts.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decode, encode } from 'cborg'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { openSpace } from '../src/index.js'
import { startHub } from '../src/hub/server.js'
import { lineLogger } from '../src/logger.js'
import { CLUSTER_HELD_TOPIC, CLUSTER_RECORDS_TOPIC, addressPath, ipfsPath } from '../src/protocol.js'
import { createRecord } from '../src/store/record.js'
import { ipnsTopic, rankHubs } from '../src/hub/pubsub.js'
import { account, KEY_A, KEY_B } from './helpers/signers.js'
import { makeSpace } from './helpers/hub-app.js'
import { decodeCurrent, encodeCurrent, encodeOwner } from '../src/space/root.js'
import { ownerStatement } from '../src/crypto/keys.js'
import { hexToBytes } from '../src/crypto/bytes.js'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import type { RunningHub } from '../src/hub/server.js'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { CID } from 'multiformats/cid'

const hubs: RunningHub[] = []
const dirs: string[] = []

async function hub (peers: string[] = []): Promise<RunningHub> {
  const started = await startHub({ port: 0, directory: false, rateLimit: 0, verifyThreads: 0, republishIntervalMs: 0, nextId: false, peers })
  hubs.push(started)
  return started
}

function pubsubOf (h: RunningHub): GossipSub {
  return h.helia.libp2p.services.pubsub as GossipSub
}

/** Waits until every hub hears the others on the cluster topic (gossipsub learns subscriptions asynchronously). */
async function meshed (all: RunningHub[]): Promise<void> {
  for (const h of all) {
    const pubsub = pubsubOf(h)
    while (pubsub.getSubscribers(CLUSTER_RECORDS_TOPIC).length < all.length - 1) {
      await new Promise(resolve => pubsub.addEventListener('subscription-change', resolve, { once: true }))
    }
  }
}

let h1: RunningHub
let h2: RunningHub
let h3: RunningHub

beforeAll(async () => {
  h1 = await hub()
  h2 = await hub(h1.multiaddrs)
  h3 = await hub([...h1.multiaddrs, ...h2.multiaddrs])
  await meshed([h1, h2, h3])
}, 60_000)

afterAll(async () => {
  await Promise.all(hubs.map(async h => h.stop()))
  await Promise.all(dirs.map(async d => rm(d, { recursive: true, force: true })))
})

describe('live across hubs', () => {
  it("a subscriber on hub 2 hears a device's writes through hub 1 within 1 s, merged", async () => {
    const a = await openSpace({ signer: account(KEY_A), hub: h1.url })
    await a.set('volume', 0)
    await a.flush()
    const b = await openSpace({ signer: account(KEY_A), hub: h2.url })
    const heard: unknown[] = []
    b.subscribe(() => { void b.get('volume').then(value => heard.push(value)) })
    await new Promise(resolve => setTimeout(resolve, 200)) // the event stream connects
    for (let i = 1; i <= 3; i++) {
      await a.set('volume', i)
      await a.flush()
      await expect.poll(() => heard.includes(i), { timeout: 1000, interval: 5 }).toBe(true)
    }
    await a.close()
    await b.close()
  })

  it('publishes each accepted record on its IPNS-over-PubSub topic, as the record itself', async () => {
    const space = await makeSpace()
    const topic = ipnsTopic(space.name)
    pubsubOf(h3).subscribe(topic)
    const received = new Promise<Uint8Array>((resolve) => {
      pubsubOf(h3).addEventListener('message', (event) => { if (event.detail.topic === topic) resolve(event.detail.data) })
    })
    await expect.poll(() => pubsubOf(h1).getSubscribers(topic).length, { timeout: 5000, interval: 20 }).toBe(1)
    const record = await createRecord(space.key, space.root.cid, 1)
    await uploadAndPut(h1, space, record)
    expect(new Uint8Array(await received)).toEqual(record)
    pubsubOf(h3).unsubscribe(topic)
  })
})

describe('address bindings everywhere', () => {
  it('hub 3, which never saw the space, answers its address within 1 s of the write at hub 1', async () => {
    const a = await openSpace({ signer: account(KEY_B), hub: h1.url })
    await a.set('theme', 'dark')
    await a.flush()
    const address = account(KEY_B).address
    const started = Date.now()
    await expect.poll(async () => (await fetch(h3.url + addressPath(address))).status, { timeout: 1000, interval: 10 }).toBe(200)
    const body = await (await fetch(h3.url + addressPath(address))).json() as { name: string }
    expect(body.name).toBe(a.name)
    expect(Date.now() - started).toBeLessThan(1000)
    await a.close()
  })
})

describe('records from peers are checked like a PUT', () => {
  it('a record signed by another key, garbage, and a record for a name it does not sign change nothing on the other hubs', async () => {
    const space = await makeSpace()
    const otherKey = await generateKeyPair('Ed25519')
    const forged = await createRecord(otherKey, space.root.cid, 5)
    const pubsub = pubsubOf(h1)
    await pubsub.publish(CLUSTER_RECORDS_TOPIC, encode({ name: space.name, record: forged, replicas: [] }))
    await pubsub.publish(CLUSTER_RECORDS_TOPIC, new TextEncoder().encode('not cbor at all'))
    await pubsub.publish(CLUSTER_RECORDS_TOPIC, encode({ name: 'not-a-name', record: forged, replicas: [] }))
    // Then a good record for a fresh name, sent the same way (with the root, current node and owner
    // binding a hub sends): once it arrives, the bad ones were handled.
    const good = await makeSpace()
    const record = await createRecord(good.key, good.root.cid, 1)
    await pubsub.publish(CLUSTER_RECORDS_TOPIC, encode({ name: good.name, record, root: good.root.bytes, binding: [good.blocks[1]!.bytes, good.blocks[2]!.bytes], replicas: [] }))
    for (const h of [h2, h3]) {
      await expect.poll(async () => (await fetch(`${h.url}/routing/v1/ipns/${good.name}`)).status, { timeout: 2000, interval: 10 }).toBe(200)
      expect((await fetch(`${h.url}/routing/v1/ipns/${space.name}`)).status).toBe(404)
    }
  })

  it('takes a peer\'s current node and owner binding only as the blocks the root links: another wallet\'s binding sent along is not believed', async () => {
    const space = await makeSpace()
    // Another wallet's genuine binding of this name: valid on its own, but not the block the version links.
    const b = privateKeyToAccount(generatePrivateKey())
    const theirs = await encodeOwner({ address: b.address, signature: hexToBytes(await b.signMessage({ message: ownerStatement(b.address, space.name) })) })
    const record = await createRecord(space.key, space.root.cid, 1)
    await pubsubOf(h1).publish(CLUSTER_RECORDS_TOPIC, encode({ name: space.name, record, root: space.root.bytes, binding: [space.blocks[1]!.bytes, theirs.bytes], replicas: [] }))
    // nor with a current node of its own that links it
    const forged = await encodeCurrent({ ...decodeCurrent(space.blocks[1]!.bytes), owner: theirs.cid })
    await pubsubOf(h1).publish(CLUSTER_RECORDS_TOPIC, encode({ name: space.name, record, root: space.root.bytes, binding: [forged.bytes, theirs.bytes], replicas: [] }))
    // Then the honest message for a fresh name: once it arrives, the forged one was handled.
    const good = await makeSpace()
    await pubsubOf(h1).publish(CLUSTER_RECORDS_TOPIC, encode({ name: good.name, record: await createRecord(good.key, good.root.cid, 1), root: good.root.bytes, binding: [good.blocks[1]!.bytes, good.blocks[2]!.bytes], replicas: [] }))
    for (const h of [h2, h3]) {
      await expect.poll(async () => (await fetch(`${h.url}/routing/v1/ipns/${good.name}`)).status, { timeout: 2000, interval: 10 }).toBe(200)
      expect((await fetch(`${h.url}/routing/v1/ipns/${space.name}`)).status).toBe(404)
      expect((await fetch(`${h.url}${addressPath(b.address)}`)).status).toBe(404)
    }
  })

  it('a lower sequence from a peer does not replace a newer record', async () => {
    const space = await makeSpace()
    const newer = await createRecord(space.key, space.root.cid, 7)
    await uploadAndPut(h2, space, newer)
    await expect.poll(async () => (await fetch(`${h3.url}/routing/v1/ipns/${space.name}`)).status, { timeout: 2000, interval: 10 }).toBe(200)
    const older = await createRecord(space.key, space.root.cid, 3)
    await pubsubOf(h1).publish(CLUSTER_RECORDS_TOPIC, encode({ name: space.name, record: older, replicas: [] }))
    await new Promise(resolve => setTimeout(resolve, 300))
    for (const h of [h2, h3]) {
      const bytes = new Uint8Array(await (await fetch(`${h.url}/routing/v1/ipns/${space.name}`)).arrayBuffer())
      expect(bytes).toEqual(newer)
    }
  })
})

describe('replication', () => {
  it('the replica chosen for a name holds every block of the version when the PUT is answered', async () => {
    const space = await makeSpace()
    const record = await createRecord(space.key, space.root.cid, 1)
    await uploadAndPut(h1, space, record)
    const [replica] = rankHubs(space.name, [h2.peerId, h3.peerId])
    const holder = replica === h2.peerId ? h2 : h3
    for (const block of space.blocks) {
      expect(await holder.helia.blockstore.has(block.cid)).toBe(true)
    }
    // And serves them over the gateway.
    const res = await fetch(holder.url + ipfsPath(space.root.cid.toString()) + '?format=raw')
    expect(res.status).toBe(200)
  })
})

describe('replication when messages go wrong', () => {
  /** The replica of a fresh space's name among hubs 2 and 3, as hub 1 ranks them. */
  async function spaceReplicatedBy (): Promise<{ space: Awaited<ReturnType<typeof makeSpace>>, holder: RunningHub }> {
    const space = await makeSpace()
    const [replica] = rankHubs(space.name, [h2.peerId, h3.peerId])
    return { space, holder: replica === h2.peerId ? h2 : h3 }
  }

  it('a replica that missed the record message is sent it again, and holds the version when the PUT is answered', async () => {
    const { space, holder } = await spaceReplicatedBy()
    const validators = pubsubOf(holder).topicValidators
    const validate = validators.get(CLUSTER_RECORDS_TOPIC)
    if (validate === undefined) throw new Error('no validator')
    let heard = 0
    // The first record message for this name is lost on the way (as on a gossip stream not open yet).
    validators.set(CLUSTER_RECORDS_TOPIC, async (peer, message) => {
      const decoded = decode(message.data) as { name?: string }
      if (decoded.name === space.name && heard++ === 0) return TopicValidatorResult.Ignore
      return validate(peer, message)
    })
    try {
      await uploadAndPut(h1, space, await createRecord(space.key, space.root.cid, 1))
      // Sent again after half of the 5 s wait (without that, the PUT would answer after 5 s with the
      // replica holding nothing).
      expect(heard).toBeGreaterThanOrEqual(2)
      for (const block of space.blocks) expect(await holder.helia.blockstore.has(block.cid)).toBe(true)
    } finally {
      validators.set(CLUSTER_RECORDS_TOPIC, validate)
    }
  })

  it('a replica keeps only carried blocks that hash to the CIDs the version links, and fetches the rest', async () => {
    const { space, holder } = await spaceReplicatedBy()
    const { encodeCar } = await import('../src/store/blocks.js')
    // Hub 1 has the real blocks (bitswap serves them); the message carries one of them altered.
    const up = await fetch(h1.url + '/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: encodeCar(space.blocks) })
    expect(up.status).toBe(200)
    const [root, ...below] = space.blocks
    const altered = below.map((b, i) => i === below.length - 1 ? Uint8Array.from(b.bytes, (x, j) => j === 0 ? x ^ 1 : x) : b.bytes)
    const record = await createRecord(space.key, space.root.cid, 1)
    const held = new Promise<void>((resolve) => {
      const onMessage = (event: CustomEvent<Message>): void => {
        if (event.detail.topic !== CLUSTER_HELD_TOPIC) return
        if ((decode(event.detail.data) as { name?: string }).name !== space.name) return
        pubsubOf(h1).removeEventListener('message', onMessage)
        resolve()
      }
      pubsubOf(h1).addEventListener('message', onMessage)
    })
    await pubsubOf(h1).publish(CLUSTER_RECORDS_TOPIC, encode({ name: space.name, record, root: root?.bytes, blocks: altered, replicas: [holder.peerId] }))
    await held
    const last = below[below.length - 1] as { cid: CID, bytes: Uint8Array }
    const chunks: Uint8Array[] = []
    for await (const chunk of holder.helia.blockstore.get(last.cid)) chunks.push(chunk)
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(last.bytes))
  })
})

describe('cluster configuration', () => {
  it('two pings of one peer at once both succeed: a refused ping makes libp2p abort the connection', async () => {
    const { ping } = h1.helia.libp2p.services
    const peer = h1.helia.libp2p.getConnections().find(c => c.remotePeer.toString() === h2.peerId)?.remotePeer
    if (peer === undefined) throw new Error('hubs 1 and 2 are not connected')
    const rtts = await Promise.all([ping.ping(peer), ping.ping(peer)])
    expect(rtts.every(ms => ms >= 0)).toBe(true)
  })

  it('a listed peer that restarts is dialled again, and a peers list naming the hub itself is fine', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'userspace-redial-'))
    dirs.push(tmp)
    const directory = join(tmp, 'b')
    const options = { port: 0, rateLimit: 0 as const, verifyThreads: 0, republishIntervalMs: 0, nextId: false as const }
    let b = await startHub({ ...options, directory })
    const id = b.peerId
    const lines: string[] = []
    const a = await startHub({ ...options, directory: false, peerRetryMinMs: 100, peerRetryMaxMs: 400, peers: [b.multiaddrs[0] as string], logger: lineLogger((line) => { lines.push(line) }) })
    hubs.push(a)
    const connections = (): number => lines.filter(l => l.startsWith('peer: connected to ')).length
    await expect.poll(connections, { timeout: 10_000, interval: 20 }).toBe(1)
    await b.stop()
    await expect.poll(() => lines.some(l => l.startsWith('peer: lost ')), { timeout: 10_000, interval: 20 }).toBe(true)
    // Same directory: same peer id and ports. The other hub finds it again on its own.
    b = await startHub({ ...options, directory, peers: [b.multiaddrs[0] as string] })
    hubs.push(b)
    await expect.poll(connections, { timeout: 15_000, interval: 20 }).toBe(2)
    expect(b.peerId).toBe(id)
    const before = b.peerId
    expect(a.helia.libp2p.getConnections().map(c => c.remotePeer.toString())).toContain(before)
    await expect.poll(() => b.helia.libp2p.getConnections().map(c => c.remotePeer.toString()), { timeout: 5_000, interval: 20 }).toContain(a.peerId)
  }, 40_000)
})

describe('listed hubs coming back', () => {
  it("a listed hub that restarts and dials this hub first is dialled back at once, not after this hub's backoff", async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'userspace-back-'))
    dirs.push(tmp)
    const directory = join(tmp, 'b')
    const options = { port: 0, rateLimit: 0 as const, verifyThreads: 0, republishIntervalMs: 0, nextId: false as const }
    let b = await startHub({ ...options, directory })
    const lines: string[] = []
    // A minute between dials: without the hub coming back on its own, the test would time out.
    const a = await startHub({ ...options, directory: false, peerRetryMinMs: 60_000, peerRetryMaxMs: 60_000, peers: [b.multiaddrs[0] as string], logger: lineLogger((line) => { lines.push(line) }) })
    hubs.push(a)
    const connections = (): number => lines.filter(l => l.startsWith('peer: connected to ')).length
    await expect.poll(connections, { timeout: 10_000, interval: 20 }).toBe(1)
    await b.stop()
    await expect.poll(() => lines.some(l => l.startsWith('peer: lost ')), { timeout: 10_000, interval: 20 }).toBe(true)
    // Back on the same directory (same peer id and ports), listing the other hub.
    b = await startHub({ ...options, directory, peers: a.multiaddrs })
    hubs.push(b)
    await expect.poll(connections, { timeout: 15_000, interval: 20 }).toBe(2)
  }, 40_000)
})

async function uploadAndPut (h: RunningHub, space: Awaited<ReturnType<typeof makeSpace>>, record: Uint8Array): Promise<void> {
  const { encodeCar } = await import('../src/store/blocks.js')
  const up = await fetch(h.url + '/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: encodeCar(space.blocks) })
  expect(up.status).toBe(200)
  const put = await fetch(`${h.url}/routing/v1/ipns/${space.name}`, { method: 'PUT', headers: { 'content-type': 'application/vnd.ipfs.ipns-record' }, body: record as Uint8Array<ArrayBuffer> })
  expect(put.status).toBe(200)
}

describe('a connected hub that is not heard on the cluster topic', () => {
  it('is hung up on and dialled again, and is heard once more: a link whose subscriptions were lost repairs itself', async () => {
    const options = { port: 0, rateLimit: 0 as const, verifyThreads: 0, republishIntervalMs: 0, nextId: false as const, silentHubCheckMs: 100 }
    const b = await startHub({ ...options, directory: false })
    hubs.push(b)
    const lines: string[] = []
    const a = await startHub({ ...options, directory: false, peerRetryMinMs: 100, peers: [b.multiaddrs[0] as string], logger: lineLogger((line) => { lines.push(line) }) })
    hubs.push(a)
    await expect.poll(() => pubsubOf(a).getSubscribers(CLUSTER_RECORDS_TOPIC).map(String), { timeout: 10_000, interval: 20 }).toContain(b.peerId)
    // The state seen after a restart under load: connected, but this side never learnt the other's
    // subscriptions (gossipsub sends them once, when its stream to the peer opens).
    const topics = (pubsubOf(a) as unknown as { topics: Map<string, Set<string>> }).topics
    topics.get(CLUSTER_RECORDS_TOPIC)?.delete(b.peerId)
    expect(pubsubOf(a).getSubscribers(CLUSTER_RECORDS_TOPIC).map(String)).not.toContain(b.peerId)
    await expect.poll(() => lines.some(l => l.startsWith(`peer: ${b.peerId} is connected but not heard on the cluster topic`)), { timeout: 10_000, interval: 20 }).toBe(true)
    await expect.poll(() => pubsubOf(a).getSubscribers(CLUSTER_RECORDS_TOPIC).map(String), { timeout: 15_000, interval: 20 }).toContain(b.peerId)
  }, 40_000)
})

/**
 * The bounds on what peered hubs cost each other, each with small settings so that passing them is
 * quick: a PUT waits for its replica at most `replicaWaitMs`, a peer's messages beyond its rate are
 * ignored, and record checks beyond `maxPeerChecks` at once are ignored. Two `startHub` hubs per
 * test, in this process, on 127.0.0.1; each test stops what it starts.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { encode } from 'cborg'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { startHub } from '../src/hub/server.js'
import { CLUSTER_RECORDS_TOPIC } from '../src/protocol.js'
import { encodeCar, rawBlock } from '../src/store/blocks.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import { makeSpace } from './helpers/hub-app.js'
import type { HubOptions, RunningHub } from '../src/hub/server.js'
import type { GossipSub } from '@libp2p/gossipsub'

const running: RunningHub[] = []

afterEach(async () => {
  await Promise.all(running.splice(0).map(async h => h.stop()))
})

const base = { port: 0, directory: false as const, rateLimit: 0 as const, verifyThreads: 0, republishIntervalMs: 0, nextId: false as const }

function pubsubOf (h: RunningHub): GossipSub {
  return h.helia.libp2p.services.pubsub as GossipSub
}

/** A hub and a second one peered with it, each hearing the other on the cluster topic. */
async function pair (first: Partial<HubOptions> = {}, second: Partial<HubOptions> = {}): Promise<[RunningHub, RunningHub]> {
  const a = await startHub({ ...base, ...first })
  running.push(a)
  const b = await startHub({ ...base, ...second, peers: a.multiaddrs })
  running.push(b)
  for (const h of [a, b]) {
    const pubsub = pubsubOf(h)
    while (pubsub.getSubscribers(CLUSTER_RECORDS_TOPIC).length < 1) {
      await new Promise(resolve => pubsub.addEventListener('subscription-change', resolve, { once: true }))
    }
  }
  return [a, b]
}

/** A valid record for a fresh name, pointing at a raw block sent along as its root. */
async function recordMessage (withRoot = true): Promise<{ name: string, message: Uint8Array }> {
  const key = await generateKeyPair('Ed25519')
  const name = nameOfKey(key)
  const block = await rawBlock(crypto.getRandomValues(new Uint8Array(16)))
  const record = await createRecord(key, block.cid, 1)
  return { name, message: encode(withRoot ? { name, record, root: block.bytes, replicas: [] } : { name, record, replicas: [] }) }
}

async function stored (h: RunningHub, name: string): Promise<boolean> {
  return (await fetch(`${h.url}/routing/v1/ipns/${name}`)).status === 200
}

/** Uploads a space's blocks to a hub, then PUTs its first record there (both must answer 200); resolves with the PUT's milliseconds. */
async function publishTimed (h: RunningHub, space: Awaited<ReturnType<typeof makeSpace>>): Promise<number> {
  const up = await fetch(h.url + '/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: encodeCar(space.blocks) })
  expect(up.status).toBe(200)
  const started = Date.now()
  const put = await fetch(`${h.url}/routing/v1/ipns/${space.name}`, { method: 'PUT', headers: { 'content-type': 'application/vnd.ipfs.ipns-record' }, body: await createRecord(space.key, space.root.cid, 1) as Uint8Array<ArrayBuffer> })
  expect(put.status).toBe(200)
  return Date.now() - started
}

describe('cluster bounds', () => {
  it('a PUT answers after `replicaWaitMs` when its replica never says it holds the version', async () => {
    const [a, b] = await pair({ cluster: { replicaWaitMs: 400 } })
    // The replica hears nothing: every record message (the first and the one sent again) is lost.
    let dropped = 0
    pubsubOf(b).topicValidators.set(CLUSTER_RECORDS_TOPIC, () => { dropped++; return TopicValidatorResult.Ignore })
    const space = await makeSpace()
    const elapsed = await publishTimed(a, space)
    expect(elapsed).toBeGreaterThanOrEqual(390)
    expect(elapsed).toBeLessThan(4_000)
    // Sent once, then once again after half the wait.
    expect(dropped).toBe(2)
  })

  it('a replica that joins the cluster topic again while a PUT waits for it is sent the record at once', async () => {
    const [a, b] = await pair({ cluster: { replicaWaitMs: 20_000 } })
    const validators = pubsubOf(b).topicValidators
    const validate = validators.get(CLUSTER_RECORDS_TOPIC)
    if (validate === undefined) throw new Error('no validator')
    let heard = 0
    validators.set(CLUSTER_RECORDS_TOPIC, async (peer, message) => {
      if (heard++ > 0) return validate(peer, message)
      // Lost, as with a connection being replaced: the replica then leaves the topic and joins it again.
      setTimeout(() => { pubsubOf(b).unsubscribe(CLUSTER_RECORDS_TOPIC); pubsubOf(b).subscribe(CLUSTER_RECORDS_TOPIC) }, 0)
      return TopicValidatorResult.Ignore
    })
    const space = await makeSpace()
    // Well before the resend at half the wait (10 s).
    expect(await publishTimed(a, space)).toBeLessThan(8_000)
    expect(heard).toBe(2)
    for (const block of space.blocks) expect(await b.helia.blockstore.has(block.cid)).toBe(true)
  }, 30_000)

  it("ignores a peer's record messages beyond its rate (bursts of 20× the rate)", async () => {
    const [a, b] = await pair({}, { cluster: { peerMessagesPerSecond: 1 } })
    const sent = await Promise.all(Array.from({ length: 40 }, async () => recordMessage()))
    for (const { message } of sent) await pubsubOf(a).publish(CLUSTER_RECORDS_TOPIC, message)
    // After the burst, one more a second later: when it is stored, the burst has been handled.
    await new Promise(resolve => setTimeout(resolve, 1_100))
    const last = await recordMessage()
    await pubsubOf(a).publish(CLUSTER_RECORDS_TOPIC, last.message)
    await expect.poll(async () => stored(b, last.name), { timeout: 10_000, interval: 20 }).toBe(true)
    const kept = (await Promise.all(sent.map(async ({ name }) => stored(b, name)))).filter(Boolean).length
    // A burst of 20, plus one a second of refill while the 40 arrive (a few seconds on a loaded machine).
    expect(kept).toBeGreaterThanOrEqual(20)
    expect(kept).toBeLessThanOrEqual(30)
  })

  it('ignores record messages while `maxPeerChecks` checks are running', async () => {
    // Records whose root nobody has: each check waits `fetchTimeoutMs` for it.
    const [a, b] = await pair({}, { fetchTimeoutMs: 1_500, cluster: { maxPeerChecks: 2 } })
    const slow = await Promise.all(Array.from({ length: 10 }, async () => recordMessage(false)))
    for (const { message } of slow) await pubsubOf(a).publish(CLUSTER_RECORDS_TOPIC, message)
    // The two checked ones are stored once their root fetch gives up; the rest were ignored.
    await expect.poll(async () => (await Promise.all(slow.map(async ({ name }) => stored(b, name)))).filter(Boolean).length, { timeout: 10_000, interval: 50 }).toBeGreaterThanOrEqual(2)
    const after = await recordMessage()
    await pubsubOf(a).publish(CLUSTER_RECORDS_TOPIC, after.message)
    await expect.poll(async () => stored(b, after.name), { timeout: 10_000, interval: 20 }).toBe(true)
    const kept = (await Promise.all(slow.map(async ({ name }) => stored(b, name)))).filter(Boolean).length
    expect(kept).toBe(2)
  })

  it('counts a peer by the address the hub\'s `peerAddressGroup` gives its connection', async () => {
    const asked: string[] = []
    const [a, b] = await pair({ peerAddressGroup: (remoteAddr) => { asked.push(remoteAddr.toString()); return undefined } })
    const { message } = await recordMessage()
    await pubsubOf(b).publish(CLUSTER_RECORDS_TOPIC, message)
    await expect.poll(() => asked.length, { timeout: 5_000 }).toBeGreaterThan(0)
    expect(asked.every(address => address.startsWith('/ip4/127.0.0.1/'))).toBe(true)
    expect(a.peerId).not.toBe(b.peerId)
  })
})

/**
 * A gossipsub node drops, before checking any signature: an RPC that carries more than
 * MAX_PUBSUB_RPC_MESSAGES messages, whole; messages not signed by an Ed25519 key; and messages past
 * what a peer may send at once (pubsub-guard.ts). Everything else is delivered as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { MAX_PUBSUB_RPC_MESSAGES, createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { PUBSUB_PEER_MESSAGES_PER_SECOND, PUBSUB_PEER_MESSAGE_BURST, limitPubsubMessages, signedByEd25519 } from '../src/store/pubsub-guard.js'
import { PeerRate } from '../src/store/peer-rate.js'
import type { HeliaNode, HeliaNodeOptions } from '../src/store/helia-node.js'
import type { Multiaddr } from '@multiformats/multiaddr'
import { signedRpc } from './helpers/pubsub-rpc.js'
import type { PrivateKey, Stream } from '@libp2p/interface'
import type { GossipSub } from '@libp2p/gossipsub'

const TOPIC = 'a topic the node follows'

/** The node and sender a describe block sends RPCs between. */
interface Pair {
  node: HeliaNode
  sender: HeliaNode
  /** the key the sender signs messages with (Ed25519) */
  key: PrivateKey
  /** the sender's meshsub stream to the node */
  stream: Stream
  /** the data of each message the node delivered on TOPIC */
  delivered: string[]
}

/**
 * A gossipsub node following TOPIC and a sender with a meshsub stream to it, made before the tests
 * of the describe block this is called in and stopped after them; `guard` runs on the node's
 * gossipsub before it subscribes.
 */
function gossipsubPair (guard?: (pubsub: GossipSub) => void, options: HeliaNodeOptions = {}): Pair {
  const pair = { delivered: [] as string[] } as Pair
  beforeAll(async () => {
    pair.node = await createHeliaNode({ pubsub: 'gossipsub', ...options })
    pair.sender = await createHeliaNode({ peers: pair.node.libp2p.getMultiaddrs().map(String).filter(a => !a.includes('/ws')) })
    const pubsub = pair.node.libp2p.services.pubsub as GossipSub
    guard?.(pubsub)
    pubsub.subscribe(TOPIC)
    pubsub.addEventListener('message', (event) => {
      if (event.detail.topic === TOPIC) pair.delivered.push(new TextDecoder().decode(event.detail.data))
    })
    pair.key = await generateKeyPair('Ed25519')
    pair.stream = await pair.sender.libp2p.dialProtocol(pair.node.libp2p.peerId, '/meshsub/1.2.0', { signal: AbortSignal.timeout(10_000) })
  }, 30_000)
  afterAll(async () => {
    pair.stream?.abort(new Error('test done'))
    await stopHeliaNode(pair.sender)
    await stopHeliaNode(pair.node)
  })
  return pair
}

describe('gossipsub: messages per RPC', () => {
  const pair = gossipsubPair()
  const { delivered } = pair

  /** Sends one RPC of `count` messages on TOPIC, signed by `signer`, each with data `${label} ${i}`. */
  async function sendRpc (label: string, count: number, seqnoBase: number, signer = pair.key): Promise<void> {
    pair.stream.send(await signedRpc(TOPIC, label, count, seqnoBase, signer))
  }

  it('delivers every message of an RPC at the limit', async () => {
    await sendRpc('within', MAX_PUBSUB_RPC_MESSAGES, 0)
    await expect.poll(() => delivered.filter(d => d.startsWith('within ')).length, { timeout: 10_000 }).toBe(MAX_PUBSUB_RPC_MESSAGES)
  }, 30_000)

  it('drops messages signed by other keys than Ed25519, before checking them', async () => {
    const secp = await generateKeyPair('secp256k1')
    expect(signedByEd25519(peerIdFromPrivateKey(secp).toMultihash().bytes)).toBe(false)
    expect(signedByEd25519(peerIdFromPrivateKey(pair.key).toMultihash().bytes)).toBe(true)
    expect(signedByEd25519(new Uint8Array([...peerIdFromPrivateKey(pair.key).toMultihash().bytes, 0]))).toBe(false)
    await sendRpc('secp', 4, 500, secp)
    await sendRpc('ed', 1, 600)
    await expect.poll(() => delivered.includes('ed 0'), { timeout: 10_000 }).toBe(true)
    expect(delivered.filter(d => d.startsWith('secp '))).toEqual([])
  }, 30_000)

  it('drops an RPC of one message more, whole, and reads the next one on the same stream', async () => {
    await sendRpc('over', MAX_PUBSUB_RPC_MESSAGES + 1, 1000)
    await sendRpc('after', 1, 2000)
    // the RPC sent after it is delivered: the one before was read, and dropped
    await expect.poll(() => delivered.includes('after 0'), { timeout: 10_000 }).toBe(true)
    expect(delivered.filter(d => d.startsWith('over '))).toEqual([])
  }, 30_000)

  it('delivers no more messages from one peer than its burst and what refills meanwhile', async () => {
    // the peer's bucket holds what the tests above left of it
    const burst = PUBSUB_PEER_MESSAGE_BURST
    const started = performance.now()
    for (let sent = 0; sent < 1500; sent += MAX_PUBSUB_RPC_MESSAGES) await sendRpc(`burst${sent}`, Math.min(MAX_PUBSUB_RPC_MESSAGES, 1500 - sent), 10_000 + sent)
    const count = (): number => delivered.filter(d => d.startsWith('burst')).length
    await expect.poll(count, { timeout: 10_000 }).toBeGreaterThanOrEqual(burst - 100)
    await new Promise(resolve => setTimeout(resolve, 300))
    const seconds = (performance.now() - started) / 1000
    expect(count()).toBeLessThanOrEqual(burst + Math.ceil(seconds * PUBSUB_PEER_MESSAGES_PER_SECOND))
    expect(count()).toBeLessThan(1500)
  }, 30_000)
})

describe('gossipsub: copies of messages the node holds', () => {
  // a second guard over the node's own, with room for 11 messages from a peer
  const pair = gossipsubPair(pubsub => { limitPubsubMessages(pubsub, new PeerRate('pubsub messages', { peerBurst: 11, peerPerSecond: 0.001, burst: 1e9, perSecond: 1e9 })) })
  const { delivered } = pair

  it('takes nothing from a peer\'s rate for a copy of a message it holds', async () => {
    const first = await signedRpc(TOPIC, 'original', 10, 0, pair.key)
    pair.stream.send(first)
    await expect.poll(() => delivered.length, { timeout: 10_000 }).toBe(10)
    // the same ten again (as a mesh sends one from each peer), then one new message: the eleventh the rate allows
    pair.stream.send(first)
    pair.stream.send(await signedRpc(TOPIC, 'new', 1, 100, pair.key))
    await expect.poll(() => delivered.includes('new 0'), { timeout: 10_000 }).toBe(true)
    expect(delivered.filter(d => d.startsWith('original '))).toHaveLength(10)
  }, 30_000)
})

describe('gossipsub: peers counted by the address they connect from', () => {
  const groupedAs: string[] = []
  // a second guard over the node's own: 1 000 messages a peer, 12 for all peers of one address
  const pair = gossipsubPair(pubsub => {
    limitPubsubMessages(pubsub, new PeerRate('pubsub messages', { peerBurst: 1000, peerPerSecond: 0.001, groupBurst: 12, groupPerSecond: 0.001, burst: 1e9, perSecond: 1e9 }), () => 'one address')
  }, {
    // the node's own guard asks this of each sender's connection (loopback is not grouped by default)
    peerAddressGroup: (remoteAddr: Multiaddr) => { groupedAs.push(remoteAddr.toString()); return undefined }
  })
  const { delivered } = pair

  it('holds a peer to what its address may send, below its own rate', async () => {
    pair.stream.send(await signedRpc(TOPIC, 'grouped', 30, 0, pair.key))
    await expect.poll(() => delivered.length, { timeout: 10_000 }).toBe(12)
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(delivered).toHaveLength(12)
  }, 30_000)

  it('asks the node\'s address grouping about the connection a message came on', () => {
    expect(groupedAs.length).toBeGreaterThan(0)
    expect(groupedAs.every(a => a.startsWith('/ip4/127.0.0.1/tcp/'))).toBe(true)
  })
})

/**
 * Floodsub, which devices run, drops before checking any signature the messages not signed by an
 * Ed25519 key and those past what a peer may send (pubsub-guard.ts), and reads no RPC of more than
 * MAX_PUBSUB_RPC_MESSAGES messages: a hub a device dials is a stranger too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { MAX_PUBSUB_RPC_MESSAGES, createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { PUBSUB_PEER_MESSAGES_PER_SECOND, PUBSUB_PEER_MESSAGE_BURST } from '../src/store/pubsub-guard.js'
import type { HeliaNode } from '../src/store/helia-node.js'
import { signedRpc } from './helpers/pubsub-rpc.js'
import type { PrivateKey, Stream } from '@libp2p/interface'
import type { FloodSub } from '@libp2p/floodsub'

const TOPIC = 'a topic the device follows'
const FLOODSUB = '/floodsub/1.0.0'

describe('floodsub: messages a device checks', () => {
  let device: HeliaNode
  let sender: HeliaNode
  let key: PrivateKey
  let stream: Stream
  /** The data of each message the device delivered on TOPIC. */
  const delivered: string[] = []

  /** A floodsub stream from the sender (its own floodsub stopped: a device takes one inbound stream per peer). */
  async function open (): Promise<Stream> {
    return await sender.libp2p.dialProtocol(device.libp2p.peerId, FLOODSUB, { signal: AbortSignal.timeout(10_000) })
  }

  beforeAll(async () => {
    device = await createHeliaNode()
    sender = await createHeliaNode()
    // the service class has start and stop (libp2p calls them), the FloodSub interface does not
    await (sender.libp2p.services.pubsub as unknown as { stop: () => Promise<void> }).stop()
    // the device opens a floodsub stream back, and drops the peer if it cannot: take it, read nothing
    await sender.libp2p.handle(FLOODSUB, () => {})
    await sender.libp2p.dial(device.libp2p.getMultiaddrs().filter(a => !a.toString().includes('/ws'))[0]!, { signal: AbortSignal.timeout(10_000) })
    const pubsub = device.libp2p.services.pubsub as FloodSub
    pubsub.subscribe(TOPIC)
    pubsub.addEventListener('message', (event) => {
      if (event.detail.topic === TOPIC) delivered.push(new TextDecoder().decode(event.detail.data))
    })
    key = await generateKeyPair('Ed25519')
    stream = await open()
  }, 30_000)

  afterAll(async () => {
    stream?.abort(new Error('test done'))
    await stopHeliaNode(sender)
    await stopHeliaNode(device)
  })

  /** One RPC of `count` messages on TOPIC, signed by `signer`, each with data `${label} ${i}`. */
  const rpc = async (label: string, count: number, seqnoBase: number, signer = key): Promise<Uint8Array> => await signedRpc(TOPIC, label, count, seqnoBase, signer)

  it('delivers every message of an RPC at the limit', async () => {
    stream.send(await rpc('within', MAX_PUBSUB_RPC_MESSAGES, 0))
    await expect.poll(() => delivered.filter(d => d.startsWith('within ')).length, { timeout: 10_000 }).toBe(MAX_PUBSUB_RPC_MESSAGES)
  }, 30_000)

  it('drops messages signed by other keys than Ed25519, before checking them', async () => {
    const secp = await generateKeyPair('secp256k1')
    stream.send(await rpc('secp', 4, 500, secp))
    stream.send(await rpc('ed', 1, 600))
    await expect.poll(() => delivered.includes('ed 0'), { timeout: 10_000 }).toBe(true)
    expect(delivered.filter(d => d.startsWith('secp '))).toEqual([])
  }, 30_000)

  it('delivers no more messages from one peer than its burst and what refills meanwhile', async () => {
    // the peer's bucket holds what the tests above left of it
    const started = performance.now()
    for (let sent = 0; sent < 1500; sent += MAX_PUBSUB_RPC_MESSAGES) stream.send(await rpc(`burst${sent}`, Math.min(MAX_PUBSUB_RPC_MESSAGES, 1500 - sent), 10_000 + sent))
    const count = (): number => delivered.filter(d => d.startsWith('burst')).length
    await expect.poll(count, { timeout: 10_000 }).toBeGreaterThanOrEqual(PUBSUB_PEER_MESSAGE_BURST - 100)
    await new Promise(resolve => setTimeout(resolve, 300))
    const seconds = (performance.now() - started) / 1000
    expect(count()).toBeLessThanOrEqual(PUBSUB_PEER_MESSAGE_BURST + Math.ceil(seconds * PUBSUB_PEER_MESSAGES_PER_SECOND))
    expect(count()).toBeLessThan(1500)
  }, 30_000)

  it('resets the stream of an RPC of one message more, and delivers none of it', async () => {
    await new Promise(resolve => setTimeout(resolve, 1000))
    const ended = new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }) })
    stream.send(await rpc('over', MAX_PUBSUB_RPC_MESSAGES + 1, 100_000))
    await Promise.race([ended, new Promise(resolve => setTimeout(resolve, 5_000))])
    expect(stream.status).not.toBe('open')
    // a new stream is read again
    stream = await open()
    stream.send(await rpc('after', 1, 200_000))
    await expect.poll(() => delivered.includes('after 0'), { timeout: 10_000 }).toBe(true)
    expect(delivered.filter(d => d.startsWith('over '))).toEqual([])
  }, 30_000)
})

/**
 * A bound on the signed messages a gossipsub node checks for its peers. Gossipsub checks the
 * signature of every message an RPC carries, also on topics the node does not follow, before it
 * knows whether anyone wants it: a secp256k1 signature costs 1.2–4 ms (JavaScript), and 28 RPCs of
 * 16 such messages written at once held a node's event loop 0.7 s. Here, before any check:
 * - a message not signed by an Ed25519 key (an identity peer id of one; every UserSpace node and
 *   js-libp2p's default) is dropped: Node checks those natively, ~85 µs each;
 * - each peer may send 1 000 messages at once and 200 a second after that (the rate a hub's own
 *   check allows a peer, see src/hub/pubsub.ts), all peers 4 000 and 2 000; the rest are dropped.
 *   Copies of messages gossipsub already holds take nothing.
 * Dropped messages are as if never sent: they are not delivered, forwarded or scored.
 *
 * Floodsub (what devices run) checks the signature of every message on a topic the node follows,
 * one after another: one RPC of 300 secp256k1-signed messages from a hub held a device 0.5 s. It is
 * held to the same rules (and to MAX_PUBSUB_RPC_MESSAGES per RPC, through its decode limits).
 */
import { PeerRate } from './peer-rate.js'
import type { FloodSub } from '@libp2p/floodsub'
import type { GossipSub } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'

interface Rpc { messages: Array<{ from?: Uint8Array }> }
/** gossipsub's step from a decoded RPC to its handling */
interface GossipsubRpcHandler {
  handleReceivedRpc: (from: PeerId, rpc: Rpc) => Promise<void>
}
/** gossipsub's ids of the messages it holds (with a `fastMsgIdFn`, as createHeliaNode gives it) */
interface SeenMessages {
  fastMsgIdFn: (message: Rpc['messages'][number]) => string | undefined
  fastMsgIdCache: { get: (id: string) => unknown } | undefined
}
/** floodsub's */
interface FloodsubRpcHandler {
  processRpc: (peerStream: { peerId: PeerId }, rpc: Rpc) => Promise<boolean>
}

export const PUBSUB_PEER_MESSAGE_BURST = 1000
export const PUBSUB_PEER_MESSAGES_PER_SECOND = 200
export const PUBSUB_MESSAGE_BURST = 4000
export const PUBSUB_MESSAGES_PER_SECOND = 2000

/** The first bytes of an Ed25519 identity peer id's multihash: identity, 36 bytes, protobuf key type 1, 32-byte key. */
const ED25519_PEER_PREFIX = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20]

/** Whether `from` (a message's author, as multihash bytes) is an Ed25519 identity peer id. */
export function signedByEd25519 (from: Uint8Array | undefined): boolean {
  if (from?.byteLength !== 38) return false
  for (let i = 0; i < ED25519_PEER_PREFIX.length; i++) if (from[i] !== ED25519_PEER_PREFIX[i]) return false
  return true
}

/** The message rate `limitPubsubMessages` holds peers to by default. */
export function pubsubRate (now?: () => number): PeerRate {
  return new PeerRate('pubsub messages', {
    peerBurst: PUBSUB_PEER_MESSAGE_BURST,
    peerPerSecond: PUBSUB_PEER_MESSAGES_PER_SECOND,
    burst: PUBSUB_MESSAGE_BURST,
    perSecond: PUBSUB_MESSAGES_PER_SECOND
  }, now)
}

/**
 * Drops, from every RPC `pubsub` (gossipsub or floodsub) receives, the messages not signed by
 * Ed25519 keys and those past `rate`, before it reads any of them; `groupOf` names the address a
 * peer is connected from (see `addressGroup`). Subscriptions and control messages pass as they are.
 */
export function limitPubsubMessages (pubsub: GossipSub | FloodSub, rate: PeerRate = pubsubRate(), groupOf: (peer: PeerId) => string | undefined = () => undefined): void {
  // each class's own step from a decoded RPC to its handling (on neither's public interface)
  const gossipsub = pubsub as unknown as Partial<GossipsubRpcHandler & SeenMessages>
  // A copy of a message gossipsub already holds (a mesh sends one from each peer that has it) is
  // dropped by gossipsub itself before any check: it takes nothing, so relaying peers do not look heavy.
  const seen = (message: Rpc['messages'][number]): boolean => {
    const id = gossipsub.fastMsgIdFn?.(message)
    return id !== undefined && gossipsub.fastMsgIdCache?.get(id) != null
  }
  const keep = (peer: PeerId, rpc: Rpc): void => {
    if (rpc.messages.length === 0) return
    const id = peer.toString()
    const group = groupOf(peer)
    rpc.messages = rpc.messages.filter(message => signedByEd25519(message.from) && (seen(message) || rate.take(id, group) === undefined))
  }
  const floodsub = pubsub as unknown as Partial<FloodsubRpcHandler>
  if (typeof gossipsub.handleReceivedRpc === 'function') {
    const handle = gossipsub.handleReceivedRpc.bind(pubsub)
    gossipsub.handleReceivedRpc = async (from, rpc) => {
      keep(from, rpc)
      await handle(from, rpc)
    }
  } else if (typeof floodsub.processRpc === 'function') {
    const handle = floodsub.processRpc.bind(pubsub)
    floodsub.processRpc = async (peerStream, rpc) => {
      keep(peerStream.peerId, rpc)
      return await handle(peerStream, rpc)
    }
  } else {
    throw new Error('this pubsub has neither handleReceivedRpc nor processRpc to guard')
  }
}

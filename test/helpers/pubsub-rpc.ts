/**
 * Pubsub RPCs written by hand (the RPC of gossipsub and floodsub, which share its messages field):
 * signed messages on one topic, length-prefixed as both read them from a stream.
 */
import { RPC } from '@libp2p/gossipsub/message'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { encode as encodeVarint } from 'uint8-varint'
import type { PrivateKey } from '@libp2p/interface'

/**
 * One RPC of `count` messages on `topic`, signed by `signer`, each with data `${label} ${i}` and
 * sequence number `seqnoBase + i`.
 */
export async function signedRpc (topic: string, label: string, count: number, seqnoBase: number, signer: PrivateKey): Promise<Uint8Array> {
  const from = peerIdFromPrivateKey(signer).toMultihash().bytes
  const messages = []
  for (let i = 0; i < count; i++) {
    // floodsub reads the sequence number as an integer and writes it back in its shortest form to
    // check the signature: no leading zero byte
    const seqno = new Uint8Array(8)
    seqno[0] = 1
    new DataView(seqno.buffer).setUint32(4, seqnoBase + i)
    const message = { from, data: new TextEncoder().encode(`${label} ${i}`), seqno, topic }
    const signed = new Uint8Array([...new TextEncoder().encode('libp2p-pubsub:'), ...RPC.Message.encode(message)])
    messages.push({ ...message, signature: await signer.sign(signed) })
  }
  const rpc = RPC.encode({ subscriptions: [], messages })
  return new Uint8Array([...encodeVarint(rpc.byteLength), ...rpc])
}

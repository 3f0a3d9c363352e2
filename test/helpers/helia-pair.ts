/**
 * Two DHT-server helia nodes on loopback, the second dialled to the first: the set-up of the tests
 * that need a second node to find what the first published.
 */
import { createHeliaNode, stopHeliaNode } from '../../src/store/helia-node.js'
import type { HeliaNode } from '../../src/store/helia-node.js'

export async function startHeliaPair (): Promise<[HeliaNode, HeliaNode]> {
  const node1 = await createHeliaNode({ dhtServer: true })
  const node2 = await createHeliaNode({ dhtServer: true, peers: node1.libp2p.getMultiaddrs().map(String) })
  return [node1, node2]
}

/** Stops whichever of the nodes started. */
export async function stopHeliaPair (...nodes: Array<HeliaNode | undefined>): Promise<void> {
  await Promise.all(nodes.filter(n => n !== undefined).map(stopHeliaNode))
}

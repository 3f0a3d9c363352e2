/**
 * Two DHT-server helia nodes on loopback, the second dialled to the first: the set-up of the tests
 * that need a second node to find what the first published.
 */
import { afterAll, beforeAll } from 'vitest'
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

/**
 * One helia node with no peers for the tests of the calling `describe`: started before them and
 * handed to `use`, stopped after them.
 */
export function nodeForSuite (use: (node: HeliaNode) => void): void {
  let node: HeliaNode | undefined
  beforeAll(async () => { node = await createHeliaNode(); use(node) })
  afterAll(async () => { if (node !== undefined) await stopHeliaNode(node) })
}

/**
 * Three helia nodes in a line for the tests of the calling `describe`: node 2 dialled to node 1,
 * node 3 to node 2 only (a DHT server, or a DHT client with `thirdDhtServer: false`), so what node 3
 * reads of node 1 travels through node 2. Started before the tests, stopped after them.
 */
export function lineForSuite (options: { thirdDhtServer: boolean }, use: (nodes: [HeliaNode, HeliaNode, HeliaNode]) => void): void {
  const nodes: HeliaNode[] = []
  beforeAll(async () => {
    nodes.push(await createHeliaNode({ dhtServer: true }))
    nodes.push(await createHeliaNode({ dhtServer: true, peers: (nodes[0] as HeliaNode).libp2p.getMultiaddrs().map(String) }))
    nodes.push(await createHeliaNode({ dhtServer: options.thirdDhtServer, peers: (nodes[1] as HeliaNode).libp2p.getMultiaddrs().map(String) }))
    use(nodes as [HeliaNode, HeliaNode, HeliaNode])
  })
  afterAll(async () => { await stopHeliaPair(...nodes.reverse()) })
}

/**
 * A Node.js helia node for a private UserSpace network: libp2p over TCP and WebSockets (noise,
 * yamux), identify, ping, a LAN kad-dht that accepts IPNS records, and bitswap. It never dials the
 * public bootstrappers or delegated routers — the peers it knows are the ones it is given. With a
 * `directory` it keeps its blocks and its datastore (IPNS records, DHT records, peer store, its
 * own peer key) in LevelDB, so a restarted hub keeps its peer id and its data; peer-store entries
 * reach LevelDB at most every 30 s (helia-datastore.ts). Node-only: the
 * browser builds its own helia with IndexedDB stores. This module is the `userspace/helia/node` entry.
 */
import '../polyfill.js'
import { floodsub } from '@libp2p/floodsub'
import type { FloodSub } from '@libp2p/floodsub'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { KEEP_ALIVE } from '@libp2p/interface'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { base64 } from 'multiformats/bases/base64'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { LevelDatastore } from 'datastore-level'
import { ipnsSelector } from 'ipns/selector'
import { ipnsValidator } from 'ipns/validator'
import { WebSocket as NodeWebSocket } from 'ws'
import { InvalidInputError, StoreError, describeValue } from '../errors.js'
import { flatText } from '../crypto/bytes.js'
import { createHeliaLight, withBitswap } from './helia-core.js'
import { quietDatastore } from './helia-datastore.js'
import { openDiskBlockstore } from './level-blocks.js'
import type { DiskBlockstore, LegacyMove } from './level-blocks.js'
import { MAX_DHT_REQUEST_BYTES, MAX_DHT_RESPONSE_BYTES, guardedOpener, guardedRegistrar } from './dht-guard.js'
import { withLibp2p } from './helia-libp2p.js'
import { BITSWAP_PROTOCOL, PendingBytes, bitswapRate, limitBitswapEntries } from './bitswap-guard.js'
import { addressGroup } from './peer-rate.js'
import { limitPubsubMessages } from './pubsub-guard.js'
import type { HeliaWithLibp2p } from './helia-libp2p.js'
import type { Identify } from '@libp2p/identify'
import type { IdentifyResult, PeerId } from '@libp2p/interface'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Blockstore } from 'interface-blockstore'
import type { Libp2pOptions } from 'libp2p'
import type { Datastore } from 'interface-datastore'

/**
 * The DHT protocol UserSpace nodes speak. The LAN variant keeps a private network of hubs apart from
 * the public Amino DHT (whose peers would drop loopback and private addresses anyway).
 */
export const DHT_PROTOCOL = '/ipfs/lan/kad/1.0.0'

/** Where a node listens when no `listen` option is given: loopback only, one TCP and one WebSocket port. */
export const DEFAULT_LISTEN: readonly string[] = Object.freeze(['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'])

/**
 * `service` (a libp2p service factory) seeing libp2p's components with a registrar and a connection
 * manager that limit the length of every message peers send on DHT_PROTOCOL streams: requests to
 * MAX_DHT_REQUEST_BYTES, answers to this node's queries to MAX_DHT_RESPONSE_BYTES (dht-guard.ts).
 */
function withMessageLimit<C extends { registrar: Parameters<typeof guardedRegistrar>[0], connectionManager: Parameters<typeof guardedOpener>[0] }, S> (service: (components: C) => S): (components: C) => S {
  return (components) => {
    let registrar: C['registrar'] | undefined
    let connectionManager: C['connectionManager'] | undefined
    return service(new Proxy(components, {
      get (target, prop) {
        if (prop === 'registrar') return (registrar ??= guardedRegistrar(target.registrar, DHT_PROTOCOL, MAX_DHT_REQUEST_BYTES))
        if (prop === 'connectionManager') return (connectionManager ??= guardedOpener(target.connectionManager, DHT_PROTOCOL, MAX_DHT_RESPONSE_BYTES))
        return Reflect.get(target, prop)
      }
    }))
  }
}

/** Exempt from libp2p's per-host inbound connection rate limit (see createHeliaNode). */
const LOOPBACK = ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']

/**
 * Bitswap's batching delays, in ms (@helia/bitswap 3 waits 10 ms before it sends a wantlist and
 * before it sends wanted blocks). Opening a space is a chain of round trips (root, current state,
 * each level of the bucket index), each paying both; the wants of one level are issued in one
 * synchronous loop, so 1 ms still sends them as one message.
 */
export const BITSWAP_DEBOUNCE_MS = 1

/** How long `createHeliaNode` waits for each of `peers` to be dialled and join the DHT routing table. */
export const DEFAULT_PEER_DIAL_TIMEOUT_MS = 10_000

export interface HeliaNodeOptions {
  /**
   * Directory for persistent storage: blocks in `<directory>/blockstore` and the datastore in
   * `<directory>/datastore`, both LevelDB. Created when missing; blocks an earlier version kept as
   * files in `<directory>/blocks` are moved in on opening (level-blocks.ts). Omit to keep everything
   * in memory (tests, short-lived nodes).
   *
   * @default undefined (memory)
   */
  directory?: string

  /**
   * With a `directory`: each block put is fsynced before it resolves (a hub acknowledges uploads
   * only once they are on disk). A device's blocks need not be: its pending writes are in its state.
   *
   * @default false
   */
  syncBlocks?: boolean

  /** Hears what opening moved from a legacy `<directory>/blocks` folder, when there was one. */
  onBlocksMoved?(move: LegacyMove): void

  /** Hears that opening starts such a move (or the rekeying of blocks kept under text keys), which takes a while for many blocks. */
  onBlocksMoving?(from: LegacyMove['from']): void

  /**
   * The address a peer's connection comes from, as the bitswap and pubsub rate limits count peers
   * (peer-rate.ts): peers from one address share a bucket, so new peer ids cannot use up what is
   * kept for light peers. Undefined counts the peer alone.
   *
   * @default addressGroup (an IPv4 address, an IPv6 /64; loopback is not grouped)
   */
  peerAddressGroup?(remoteAddr: Multiaddr): string | undefined

  /**
   * libp2p listen multiaddrs. Port 0 picks a free port; read the bound addresses from
   * `node.libp2p.getMultiaddrs()`.
   *
   * @default ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws']
   */
  listen?: string[]

  /**
   * Multiaddrs of peers to dial at start (e.g. other hubs). Addresses that end in `/p2p/<peer id>`
   * are also kept alive: libp2p re-dials them when the connection drops and after a restart.
   * Start fails with StoreError if none of them can be reached; unreachable ones are skipped.
   *
   * @default []
   */
  peers?: string[]

  /**
   * Answer DHT queries from other peers (store their records and provider announcements). Hubs
   * should; short-lived clients need not.
   *
   * @default false
   */
  dhtServer?: boolean

  /**
   * How long to wait for each peer in `peers` to connect and join the DHT routing table.
   *
   * @default DEFAULT_PEER_DIAL_TIMEOUT_MS (10 s)
   */
  peerDialTimeoutMs?: number

  /**
   * The pubsub router. Hubs run gossipsub (a mesh that scales past a handful of peers, with peer
   * scoring); it also speaks floodsub, so devices on the default keep hearing hubs and each other.
   *
   * @default 'floodsub'
   */
  pubsub?: 'floodsub' | 'gossipsub'

  /**
   * Largest pubsub RPC accepted from a peer, in bytes (gossipsub only; an IPNS record is ≤ 10 KiB).
   *
   * @default DEFAULT_MAX_PUBSUB_MESSAGE_BYTES (64 KiB)
   */
  maxPubsubMessageBytes?: number

  /**
   * Bytes of bitswap messages not complete yet this node holds for all peers together (each peer:
   * at most MAX_BITSWAP_PEER_PENDING_BYTES); a stream that would pass it is aborted.
   *
   * @default MAX_BITSWAP_PENDING_BYTES (64 MiB)
   */
  maxBitswapPendingBytes?: number

  /**
   * Records this node keeps elsewhere, by DHT routing key (a hub's record store): kad-dht does not
   * copy them into its datastore and serves them from there (see `quietDatastore`). Only for a node
   * on a `directory`.
   *
   * @default none
   */
  heldRecord?: (routingKey: Uint8Array) => Promise<Uint8Array | undefined>
}

export { quietDatastore, DEFAULT_PEER_WRITE_DELAY_MS, DEFAULT_RECORD_REFRESH_MS } from './helia-datastore.js'
export type { QuietDatastore, QuietDatastoreOptions } from './helia-datastore.js'

/** @default 64 KiB — room for one IPNS record and the small block that may ride with it. */
export const DEFAULT_MAX_PUBSUB_MESSAGE_BYTES = 64 * 1024

/**
 * The most messages one gossipsub or floodsub RPC from a peer may carry. Gossipsub drops an RPC
 * with more whole, before anything in it is read; floodsub resets the stream it came on. A node
 * sends one message per RPC; only an answer to IWANT gossip bundles several. What each message
 * costs, and how many a peer may send, is bound apart (pubsub-guard.ts). @default 64 (gossipsub's
 * and floodsub's own: 5 000)
 */
export const MAX_PUBSUB_RPC_MESSAGES = 64

// A type alias, not an interface: libp2p's ServiceMap constraint needs an index signature.
export type HeliaNodeServices = {
  identify: Identify
  ping: Ping
  dht: SingleKadDHT
  /** floodsub (or gossipsub on hubs): spaces announce new records on it, so devices on connected nodes hear them at once */
  pubsub: FloodSub | GossipSub
}

/** A started helia node with the libp2p services above; `node.libp2p` is its libp2p instance. */
export type HeliaNode = HeliaWithLibp2p<HeliaNodeServices>

/** Closes the on-disk stores of nodes made by createHeliaNode, once, after the node stops. */
const closers = new WeakMap<object, () => Promise<void>>()
/** The LevelDB of blocks under the helia blockstore of nodes made with a directory. */
const diskBlocks = new WeakMap<object, DiskBlockstore>()

/** The LevelDB of blocks of a node made by createHeliaNode with a `directory` (undefined in memory). */
export function diskBlockstoreOf (node: HeliaNode): DiskBlockstore | undefined {
  return diskBlocks.get(node)
}

/**
 * Creates and starts a helia node (see the module doc for what it runs).
 *
 * @example
 * ```ts
 * const hub = await createHeliaNode({ directory: './data', dhtServer: true })
 * const device = await createHeliaNode({ peers: hub.libp2p.getMultiaddrs().map(String) })
 * const store = heliaStore(device)
 * // …
 * await stopHeliaNode(device)
 * await stopHeliaNode(hub)
 * ```
 */
export async function createHeliaNode (options: HeliaNodeOptions = {}): Promise<HeliaNode> {
  ensureWebSocket()
  const listen = options.listen ?? [...DEFAULT_LISTEN]
  const peers = parseMultiaddrs(options.peers ?? [], 'peers')
  parseMultiaddrs(listen, 'listen')

  let blockstore: Blockstore
  let datastore: Datastore
  let libp2pDatastore: Datastore | undefined
  let close: () => Promise<void> = async () => {}
  let onDisk: DiskBlockstore | undefined
  if (options.directory !== undefined) {
    if (typeof options.directory !== 'string' || options.directory === '') {
      throw new InvalidInputError(`"directory" expected a non-empty path, got ${describeValue(options.directory)}`)
    }
    const levelDatastore = new LevelDatastore(join(options.directory, 'datastore'))
    let diskBlockstore: DiskBlockstore
    try {
      diskBlockstore = await openDiskBlockstore(options.directory, { sync: options.syncBlocks === true, onMove: options.onBlocksMoved, onMoveStart: options.onBlocksMoving })
      try {
        await levelDatastore.open()
      } catch (err) {
        await diskBlockstore.close().catch(() => {})
        throw err
      }
    } catch (err) {
      await levelDatastore.close().catch(() => {})
      throw new StoreError(`cannot open storage in ${options.directory}: ${(err as Error).message}`, { cause: err })
    }
    blockstore = onDisk = diskBlockstore
    datastore = levelDatastore
    // libp2p (its peer store, kad-dht) writes through a wrapper that spares LevelDB its rewrites of
    // unchanged peer entries and of the record just stored. helia, @helia/ipns and the hub use the
    // LevelDatastore itself (the hub's fsynced writes go to its LevelDB handle).
    const quiet = quietDatastore(levelDatastore, { heldRecord: options.heldRecord })
    libp2pDatastore = quiet
    close = async () => {
      await quiet.close().catch(() => {})
      await levelDatastore.close()
      await diskBlockstore.close()
    }
  } else {
    blockstore = new MemoryBlockstore()
    datastore = new MemoryDatastore()
  }

  const bitswapPending = new PendingBytes(options.maxBitswapPendingBytes)
  const entryRate = bitswapRate()
  const groupOf = options.peerAddressGroup ?? addressGroup
  const helia = withBitswap(withLibp2p(createHeliaLight({ blockstore, datastore }), {
    // libp2p 3.2 types its datastore against interface-datastore 9: the same shape.
    ...(libp2pDatastore === undefined ? {} : { datastore: libp2pDatastore as unknown as Libp2pOptions['datastore'] }),
    addresses: { listen },
    connectionManager: {
      // libp2p refuses a host's inbound connections past 5 a second. Loopback peers are this
      // machine's own processes (local devices, tests, a reverse proxy in front of the hub, which
      // must then do its own rate limiting); several of them starting at once would be refused.
      allow: LOOPBACK
    },
    transports: [tcp(), webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      // libp2p's connection monitor pings every connection each 10 s and aborts the connection when
      // that ping fails, also when kad-dht's own ping of the peer holds the one outbound ping stream
      // @libp2p/ping allows: under load that dropped peered hubs every few seconds (and the gossip
      // in flight with them). Two outbound streams fit the two inbound ones a peer accepts.
      ping: ping({ maxOutboundStreams: 2 }),
      // gossipsub and floodsub check every message's signature before anything else: guarded as
      // soon as the service exists, before the node listens (pubsub-guard.ts)
      pubsub: guardedPubsub(options.pubsub === 'gossipsub'
        ? gossipsub({
          // A hub with no peer on a topic yet (a name nobody listens to) publishes into nothing.
          allowPublishToZeroTopicPeers: true,
          fallbackToFloodsub: true,
          // A message reaches a node once from each mesh peer that has it; by default every copy's
          // signature is checked before it is known as a duplicate. Sender and sequence number (the
          // message id of signed messages) name it before that check; an id is only remembered once
          // its message passed the check, so a forged copy cannot shadow the real one.
          fastMsgIdFn: (message) => message.from === undefined || message.seqno === undefined ? '' : flatText(`${base64.baseEncode(message.from)} ${base64.baseEncode(message.seqno)}`),
          maxInboundDataLength: options.maxPubsubMessageBytes ?? DEFAULT_MAX_PUBSUB_MESSAGE_BYTES,
          // gossipsub's defaults, but for the messages an RPC may carry
          decodeRpcLimits: {
            maxSubscriptions: 5000,
            maxMessages: MAX_PUBSUB_RPC_MESSAGES,
            maxIhaveMessageIDs: 5000,
            maxIwantMessageIDs: 5000,
            maxIdontwantMessageIDs: 512,
            maxControlMessages: 5000,
            maxPeerInfos: 16
          }
        }) as unknown as (components: unknown) => GossipSub
        // floodsub's defaults, but for the messages an RPC may carry (pubsub-guard.ts)
        : floodsub({ decodeRpcLimits: { maxSubscriptions: 5000, maxMessages: MAX_PUBSUB_RPC_MESSAGES } }) as (components: unknown) => FloodSub, groupOf),
      // libp2p is held at 3.2.0 (later 3.x depend on p-retry 8, which declares Node >= 22), whose
      // components are typed against interface-datastore 9 and kad-dht against 10: the same shape.
      // kad-dht registers its handler and opens its queries' streams through components that put a
      // message length limit on them (dht-guard.ts): kad-dht itself reads messages of up to 4 MiB.
      dht: withMessageLimit(kadDHT({
        protocol: DHT_PROTOCOL,
        clientMode: options.dhtServer !== true,
        // The default mapper drops private and loopback addresses, which are all a LAN/loopback
        // network has.
        peerInfoMapper: passthroughMapper,
        // Without this, every query on a node with no peers yet (a lone hub) waits until one
        // appears; with it, such a query finds nothing at once and the caller falls back to local data.
        allowQueryWithZeroPeers: true,
        // Accept IPNS records even on nodes that never create `ipns(helia)` (a hub that only relays).
        validators: { ipns: async (key, value) => { await ipnsValidator(key, value) } },
        selectors: { ipns: (key, records) => ipnsSelector(key, records) }
      })) as unknown as (components: unknown) => SingleKadDHT
    }
  }, {
    // bitswap buffers messages of up to 4 MiB whole, then handles each entry in turn (bitswap-guard.ts)
    [BITSWAP_PROTOCOL]: (stream, connection) => { limitBitswapEntries(stream, connection.remotePeer.toString(), bitswapPending, entryRate, undefined, groupOf(connection.remoteAddr)) }
  }), { sendWantlistDebounce: BITSWAP_DEBOUNCE_MS, sendBlocksDebounce: BITSWAP_DEBOUNCE_MS })

  try {
    await helia.start()
  } catch (err) {
    // Undo whatever did start (a listener that bound before another failed, the stores).
    await helia.stop().catch(() => {})
    await close().catch(() => {})
    throw new StoreError(`cannot start helia: ${(err as Error).message}`, { cause: err })
  }
  const node = helia as HeliaNode
  closers.set(node, once(close))
  if (onDisk !== undefined) diskBlocks.set(node, onDisk)

  if (peers.length > 0) {
    try {
      await connectPeers(node, peers, options.peerDialTimeoutMs ?? DEFAULT_PEER_DIAL_TIMEOUT_MS)
    } catch (err) {
      await stopHeliaNode(node)
      throw err
    }
  }
  return node
}

/**
 * A pubsub service factory whose service drops messages as `limitPubsubMessages` does, counting
 * each peer with the address (`groupOf`) of its first open connection.
 */
function guardedPubsub (factory: (components: unknown) => GossipSub | FloodSub, groupOf: (remoteAddr: Multiaddr) => string | undefined): (components: unknown) => GossipSub | FloodSub {
  return (components) => {
    const pubsub = factory(components)
    const connections = (components as { connectionManager?: { getConnections: (peer?: PeerId) => Array<{ remoteAddr: Multiaddr }> } }).connectionManager
    limitPubsubMessages(pubsub, undefined, (peer) => {
      const remoteAddr = connections?.getConnections(peer)[0]?.remoteAddr
      return remoteAddr === undefined ? undefined : groupOf(remoteAddr)
    })
    return pubsub
  }
}

/** Stops a node made by createHeliaNode and closes its on-disk stores. Safe to call twice. */
export async function stopHeliaNode (node: HeliaNode): Promise<void> {
  if (node.status !== 'stopped') await node.stop()
  await closers.get(node)?.()
}

/**
 * Dials every peer, then waits (briefly) until those that speak the DHT are in the routing table, so
 * that the first query after start already has somewhere to go. Fails only if no peer answered.
 */
async function connectPeers (node: HeliaNode, peers: Multiaddr[], timeoutMs: number): Promise<void> {
  const libp2p = node.libp2p
  // Which peers identify says speak the DHT; listened for before dialling so no event is missed.
  const identified = new Map<string, boolean>()
  const onIdentify = (event: CustomEvent<IdentifyResult>): void => {
    identified.set(event.detail.peerId.toString(), event.detail.protocols.includes(DHT_PROTOCOL))
  }
  libp2p.addEventListener('peer:identify', onIdentify)
  try {
    const errors: string[] = []
    // Several addresses may reach the same peer; count each peer once.
    const connected = new Set<string>()
    await Promise.all(peers.map(async (address) => {
      try {
        connected.add(await dialPeer(node, address, timeoutMs))
      } catch (err) {
        errors.push(`${address.toString()}: ${(err as Error).message}`)
      }
    }))
    if (connected.size === 0) {
      throw new StoreError(`could not reach any peer: ${errors.join('; ')}`)
    }
    // The routing table's only public property is its size: wait until it holds at least as many
    // peers as identified themselves as DHT servers, re-checking whenever identify or the table says so.
    await settled(node, () => {
      const known = [...connected].filter(id => identified.has(id))
      const servers = known.filter(id => identified.get(id) === true).length
      return known.length === connected.size && libp2p.services.dht.routingTable.size >= servers
    }, AbortSignal.timeout(Math.min(timeoutMs, ROUTING_TABLE_WAIT_MS)))
  } finally {
    libp2p.removeEventListener('peer:identify', onIdentify)
  }
}

/**
 * Dials one peer and resolves with its peer id. An address that ends in `/p2p/<peer id>` is also
 * tagged keep-alive, so libp2p re-dials it when the connection drops.
 */
export async function dialPeer (node: HeliaNode, address: Multiaddr | string, timeoutMs: number = DEFAULT_PEER_DIAL_TIMEOUT_MS): Promise<string> {
  const target = typeof address === 'string' ? parseMultiaddrs([address], 'peers')[0] as Multiaddr : address
  const connection = await node.libp2p.dial(target, { signal: AbortSignal.timeout(timeoutMs) })
  if (target.getComponents().some(c => c.name === 'p2p')) {
    await node.libp2p.peerStore.merge(connection.remotePeer, { tags: { [KEEP_ALIVE]: { value: 1 } } })
  }
  return connection.remotePeer.toString()
}

/**
 * Waits (at most `timeoutMs`) until a connected peer has identified itself as a DHT server and this
 * node's routing table holds a peer, so that a DHT query made next has somewhere to go.
 */
export async function waitForDhtPeer (node: HeliaNode, peerId: string, timeoutMs: number = ROUTING_TABLE_WAIT_MS): Promise<boolean> {
  const id = peerIdFromString(peerId)
  let speaksDht = false
  const check = async (): Promise<boolean> => {
    speaksDht ||= (await node.libp2p.peerStore.get(id).catch(() => undefined))?.protocols.includes(DHT_PROTOCOL) === true
    return speaksDht && node.libp2p.services.dht.routingTable.size > 0
  }
  return await settled(node, check, AbortSignal.timeout(timeoutMs))
}

/**
 * Resolves true once `check()` holds, re-checking it when the node identifies or updates a peer or
 * its DHT routing table gains one (the events that can change the answer), or false when `signal` fires
 * first. No polling and no clock of its own: the caller's signal bounds the wait.
 */
export async function settled (node: HeliaNode, check: () => boolean | Promise<boolean>, signal: AbortSignal): Promise<boolean> {
  if (await check()) return true
  if (signal.aborted) return false
  // The table is an event target at run time (kad-dht 16 emits 'peer:add'); its public type is only `size`.
  const table = node.libp2p.services.dht.routingTable as Partial<EventTarget>
  return await new Promise<boolean>((resolve) => {
    let checking = false
    let again = false
    const finish = (ok: boolean): void => {
      node.libp2p.removeEventListener('peer:identify', recheck)
      node.libp2p.removeEventListener('peer:update', recheck)
      table.removeEventListener?.('peer:add', recheck)
      signal.removeEventListener('abort', onAbort)
      resolve(ok)
    }
    const onAbort = (): void => { finish(false) }
    // One check at a time; an event during a check asks for one more after it.
    function recheck (): void {
      if (checking) { again = true; return }
      checking = true
      Promise.resolve(check()).then((ok) => {
        checking = false
        if (signal.aborted) return
        if (ok) finish(true)
        else if (again) { again = false; recheck() }
      }, () => { checking = false })
    }
    node.libp2p.addEventListener('peer:identify', recheck)
    node.libp2p.addEventListener('peer:update', recheck)
    table.addEventListener?.('peer:add', recheck)
    signal.addEventListener('abort', onAbort, { once: true })
    // An event may have come between the first check and the listeners.
    recheck()
  })
}

/** Upper bound on the wait for dialled peers to be identified and join the DHT routing table. */
const ROUTING_TABLE_WAIT_MS = 2_000

/**
 * @libp2p/websockets dials with the global `WebSocket`, which Node has only from version 22; on Node
 * 20 every dial of a `/ws` address fails with "WebSocket is not defined". Install the `ws` package's
 * client (the one the transport already uses for its listener) when the global is missing.
 */
function ensureWebSocket (): void {
  const global = globalThis as { WebSocket?: unknown }
  if (typeof global.WebSocket !== 'function') global.WebSocket = QuietWebSocket
}

/**
 * `ws` is also an EventEmitter, which throws an 'error' event nobody listens to: a refused or
 * aborted dial would crash the process once the transport has removed its listeners. A WHATWG
 * WebSocket (browsers, Node 22) drops such events; so does this one.
 */
class QuietWebSocket extends NodeWebSocket {
  constructor (address: string | URL, protocols?: string | string[]) {
    super(address, protocols)
    this.on('error', () => {})
  }
}

/** Parses multiaddr strings, or throws InvalidInputError naming the option and the bad value. */
export function parseMultiaddrs (values: unknown, option: string): Multiaddr[] {
  if (!Array.isArray(values)) throw new InvalidInputError(`"${option}" expected an array of multiaddrs, got ${describeValue(values)}`)
  return values.map((value) => {
    if (typeof value !== 'string') throw new InvalidInputError(`"${option}" expected multiaddr strings, got ${typeof value}`)
    try {
      return multiaddr(value)
    } catch {
      throw new InvalidInputError(`"${option}" has an invalid multiaddr: "${value.slice(0, 120)}"`)
    }
  })
}

function once (fn: () => Promise<void>): () => Promise<void> {
  let promise: Promise<void> | undefined
  return async () => { await (promise ??= fn()) }
}

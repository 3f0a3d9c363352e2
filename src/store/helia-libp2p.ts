/**
 * Gives a helia node a libp2p instance: a helia mixin that, on start, loads (or creates) the peer key
 * from the node's datastore, creates libp2p with exactly the configuration given (no defaults added),
 * and adds a router that sends helia's routing calls (DHT records, providers, peers) to libp2p.
 * It does what `withLibp2pLight` from `@helia/libp2p` does, without that package, whose dependencies
 * (see helia-core.ts) a Node hub must not install.
 */
import { loadOrCreateSelfKey } from '@libp2p/config'
import { peerIdFromCID } from '@libp2p/peer-id'
import { createLibp2p } from 'libp2p'
import type { Helia, Peer, Provider, Router, RoutingOptions } from '@helia/interface'
import type { AbortOptions, Connection, Libp2p, PeerInfo, ServiceMap, Stream, StreamHandler } from '@libp2p/interface'
import type { Libp2pOptions } from 'libp2p'
import type { CID } from 'multiformats/cid'

/** A helia node that runs libp2p with the services `S`. */
export type HeliaWithLibp2p<S extends ServiceMap = ServiceMap> = Helia & { libp2p: Libp2p<S> }

/**
 * Adds libp2p to a stopped helia node; it is created and started with the node. `helia.libp2p`
 * throws until then.
 */
export function withLibp2p<S extends ServiceMap> (helia: Helia, options: Libp2pOptions<S>, guards: InboundGuards = {}): HeliaWithLibp2p<S> {
  let libp2p: Libp2p<S> | undefined
  Object.defineProperty(helia, 'libp2p', {
    configurable: true,
    enumerable: true,
    get (): Libp2p<S> {
      if (libp2p === undefined) throw Object.assign(new Error('start the helia node before using its libp2p'), { name: 'NotStartedError' })
      return libp2p
    }
  })
  helia.addMixin({
    name: 'libp2p',
    start: async (node: Helia) => {
      if (libp2p === undefined) {
        // The key lives in the datastore, so a node on a directory keeps its peer id across restarts.
        const privateKey = options.privateKey ?? await loadOrCreateSelfKey(node.datastore as Parameters<typeof loadOrCreateSelfKey>[0])
        // libp2p 3.2 types its datastore against interface-datastore 9, helia against 10: the same shape.
        libp2p = await createLibp2p({ datastore: node.datastore as unknown as Libp2pOptions['datastore'], ...options, privateKey })
        guardHandlers(libp2p, guards)
        node.addRouter(new Libp2pRouter(libp2p))
      }
      await libp2p.start()
    },
    stop: async () => { await libp2p?.stop() }
  })
  return helia as HeliaWithLibp2p<S>
}

/**
 * Per protocol, a function shown each inbound stream before the handler registered through
 * `libp2p.handle` (helia's block brokers register theirs there): a guard on what the stream
 * receives (see dht-guard.ts).
 */
export type InboundGuards = Record<string, (stream: Stream, connection: Connection) => void>

/** Puts `guards` in front of the handlers later registered on `libp2p` for their protocols. */
function guardHandlers (libp2p: Libp2p, guards: InboundGuards): void {
  if (Object.keys(guards).length === 0) return
  const handle = libp2p.handle.bind(libp2p)
  libp2p.handle = async (protocols, handler, options) => {
    const guarded: StreamHandler = async (stream, connection) => {
      guards[stream.protocol]?.(stream, connection)
      await handler(stream, connection)
    }
    const names = Array.isArray(protocols) ? protocols : [protocols]
    await handle(protocols, names.some(name => Object.hasOwn(guards, name)) ? guarded : handler, options)
  }
}

/** helia's Router over libp2p's content and peer routing (the DHT here). */
class Libp2pRouter implements Router {
  readonly name = 'libp2p-router'
  constructor (private readonly libp2p: Libp2p) {}

  async provide (cid: CID, options?: RoutingOptions): Promise<void> {
    await this.libp2p.contentRouting.provide(cid, options)
  }

  async cancelReprovide (key: CID, options?: AbortOptions): Promise<void> {
    await this.libp2p.contentRouting.cancelReprovide(key, options)
  }

  async * findProviders (cid: CID, options?: RoutingOptions): AsyncIterable<Provider> {
    for await (const info of this.libp2p.contentRouting.findProviders(cid, options)) {
      yield { ...toPeer(info), fallback: false } as Provider
    }
  }

  async put (key: Uint8Array, value: Uint8Array, options?: RoutingOptions): Promise<void> {
    await this.libp2p.contentRouting.put(key, value, options)
  }

  async get (key: Uint8Array, options?: RoutingOptions): Promise<Uint8Array<ArrayBuffer>> {
    const value = await this.libp2p.contentRouting.get(key, options)
    // helia's interface promises an ArrayBuffer-backed array; copy when libp2p gave a view of another buffer.
    return value.buffer instanceof ArrayBuffer ? value as Uint8Array<ArrayBuffer> : new Uint8Array(value)
  }

  async findPeer (peer: CID, options?: RoutingOptions): Promise<Peer> {
    return toPeer(await this.libp2p.peerRouting.findPeer(peerIdFromCID(peer), options))
  }

  async * getClosestPeers (key: Uint8Array, options?: RoutingOptions): AsyncIterable<Peer> {
    for await (const info of this.libp2p.peerRouting.getClosestPeers(key, options)) yield toPeer(info)
  }
}

function toPeer (info: PeerInfo): Peer {
  return { ...info, id: info.id.toCID(), router: 'libp2p-router' } as Peer
}

/**
 * `startHub`: wires a hub together — a helia node (libp2p with TCP and WebSockets, kad-dht, bitswap,
 * LevelDB datastore and file blockstore), the HTTP app with the Next.ID KV API mounted, an HTTP
 * server, and a timer that re-announces every stored record to the DHT. A hub holds no keys: it
 * re-announces the signed records it was given, exactly as they are, so they stay findable for as
 * long as their validity (months) lasts.
 */
import { systemClock } from '../clock.js'
import type { Clock } from '../clock.js'
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join, resolve as resolvePath } from 'node:path'
import { Worker } from 'node:worker_threads'
import { serve } from '@hono/node-server'
import { multiaddr } from '@multiformats/multiaddr'
import { multihashToIPNSRoutingKey } from 'ipns'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { DataDirectoryLockedError, errorFromName, InvalidInputError, StoreError, UserSpaceError } from '../errors.js'
import { noopLogger } from '../logger.js'
import { createHeliaNode, DEFAULT_LISTEN, diskBlockstoreOf, dialPeer, parseMultiaddrs, stopHeliaNode, waitForDhtPeer } from '../store/helia-node.js'
import { heliaStore } from '../store/helia.js'
import { nameText, nameToMultihash, readRecord, validateRecord } from '../store/record.js'
import { createHub, datastoreRecords } from './app.js'
import { guardConnections, raiseFileLimit, serverOptions } from './connections.js'
import { createNextIdApp } from './nextid.js'
import { urlToMultiaddr } from './routing.js'
import { HubCluster } from './pubsub.js'
import type { ClusterOptions } from './pubsub.js'
import type { HubConnectionOptions } from './connections.js'
import type { GcReport, HubAppOptions, HubComponents } from './app.js'
import type { NextIdOptions } from './nextid.js'
import type { RecordInfo } from '../store/record.js'
import type { HeliaNode, HeliaNodeOptions } from '../store/helia-node.js'
import type { HubRecordStore } from './record-store.js'
import type { ComponentLogger, Logger } from '../logger.js'
import type { LegacyMove } from '../store/level-blocks.js'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { MultihashDigest } from 'multiformats/hashes/interface'
import type { GossipSub } from '@libp2p/gossipsub'

/** @default '127.0.0.1' — loopback only; pass '0.0.0.0' (or '::') to serve other machines. */
export const DEFAULT_HOST = '127.0.0.1'
/** @default 8787 */
export const DEFAULT_PORT = 8787
/** @default './data' */
export const DEFAULT_DIRECTORY = './data'
/**
 * How often every stored record is put to the DHT again. DHT peers drop records after about a day
 * (go-ipfs/kubo: 48 h, kad-dht's default: 48 h); hourly keeps them well inside that.
 *
 * @default 1 hour
 */
export const DEFAULT_REPUBLISH_INTERVAL_MS = 60 * 60 * 1000
/** How often garbage collection runs (unreferenced blocks past their grace period, retention). @default 10 minutes */
export const DEFAULT_GC_INTERVAL_MS = 10 * 60 * 1000
/** Upper bound of one record's DHT put, in announcements and re-announcements. @default 10 s */
export const DEFAULT_HUB_ROUTING_TIMEOUT_MS = 10_000
/** First wait before dialling an unreachable `peers` entry again; it doubles up to the maximum. @default 1 s */
export const DEFAULT_PEER_RETRY_MIN_MS = 1_000
/**
 * Longest wait between dials of an unreachable `peers` entry: a listed hub that restarts is heard
 * again within this (sooner when it dials this hub first). @default 30 s
 */
export const DEFAULT_PEER_RETRY_MAX_MS = 30_000
/**
 * How often a hub checks that every listed peer it is connected to, and that speaks gossipsub, is
 * heard on the cluster topic. One that stays silent for two checks in a row is hung up on and
 * dialled again (see `reconnectSilentHubs`). @default 5 s
 */
export const DEFAULT_SILENT_HUB_CHECK_MS = 5_000
/** The file in the data directory naming the process that runs a hub on it. */
export const LOCK_FILE = 'hub.pid'
/** The file in the data directory that keeps the libp2p listen addresses across restarts. */
export const LISTEN_FILE = 'listen.json'

export interface HubOptions extends HubAppOptions, HubConnectionOptions {
  /** @default DEFAULT_HOST ('127.0.0.1') */
  host?: string
  /** HTTP port; 0 picks a free one (read it from the returned `url`). @default DEFAULT_PORT (8787) */
  port?: number
  /**
   * Where the blocks (`<directory>/blockstore`, LevelDB) and the LevelDB datastore (`<directory>/datastore`: records,
   * the address index, Next.ID chains, the node's peer key) live. `false` keeps everything in memory.
   *
   * @default DEFAULT_DIRECTORY ('./data')
   */
  directory?: string | false
  /**
   * Multiaddrs of other hubs to dial (ending in `/p2p/<peer id>` keeps them connected). Dialled in
   * the background: start-up never waits for them; an unreachable one is retried with backoff
   * (`peerRetryMinMs` doubling to `peerRetryMaxMs`) until it answers, and each outcome is logged.
   *
   * @default []
   */
  peers?: string[]
  /** @default DEFAULT_PEER_RETRY_MIN_MS (1 s) */
  peerRetryMinMs?: number
  /** @default DEFAULT_PEER_RETRY_MAX_MS (30 s) */
  peerRetryMaxMs?: number
  /** @default DEFAULT_SILENT_HUB_CHECK_MS (5 s) */
  silentHubCheckMs?: number
  /**
   * libp2p listen multiaddrs. When omitted, a hub on a directory listens on the ports it used last
   * time (kept in `<directory>/listen.json`), so its printed multiaddrs stay valid across restarts;
   * the first start (or one whose old ports are taken) picks free loopback ports.
   *
   * @default the ports of the last start, else ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws']
   */
  listen?: string[]
  /**
   * The address a peer's libp2p connection comes from, as the bitswap and pubsub rate limits count
   * peers (see `createHeliaNode`'s option of the same name). A hub whose peers all reach it through
   * one address that is not loopback (a container bridge, an ingress proxy for WebSockets) passes
   * `() => undefined`, which counts each peer alone (`userspace serve --peer-groups off`).
   *
   * @default addressGroup (an IPv4 address, an IPv6 /64; loopback is not grouped)
   */
  peerAddressGroup?: HeliaNodeOptions['peerAddressGroup']
  /**
   * Where the hub reports what happens in the background (peer dials, changed ports, the cluster),
   * as the `userspace:hub` component. `lineLogger(line => { console.log(line) })` prints plain lines.
   * @default noopLogger() (nothing)
   */
  logger?: ComponentLogger
  /** @default DEFAULT_REPUBLISH_INTERVAL_MS (1 hour); 0 turns re-announcing off */
  republishIntervalMs?: number
  /** @default DEFAULT_HUB_ROUTING_TIMEOUT_MS (10 s) */
  routingTimeoutMs?: number
  /**
   * fsync records, address bindings and uploaded blocks before acknowledging them. `false` keeps
   * them safe from a crash of the process but not of the machine (for disks with their own
   * power-loss protection, or benchmarks).
   *
   * @default true
   */
  fsync?: boolean
  /** @default DEFAULT_GC_INTERVAL_MS (10 minutes); 0 turns the timer off (`collectGarbage()` still works) */
  gcIntervalMs?: number
  /**
   * Worker threads that check IPNS record signatures, so record PUTs use more than one core.
   * 0 checks on the main thread.
   *
   * @default min(4, available cores − 1)
   */
  verifyThreads?: number
  /** Options of the Next.ID KV API, or `false` to leave it out. @default {} */
  nextId?: Omit<NextIdOptions, 'datastore' | 'blockstore'> | false
  /**
   * Peered hubs: how many hold each space's current version (`replicas`, the accepting hub
   * included), how long a PUT waits for them, and the bounds on what peers may send. See pubsub.ts.
   *
   * @default { replicas: DEFAULT_REPLICAS (2), replicaWaitMs: DEFAULT_REPLICA_WAIT_MS (5 s) }
   */
  cluster?: Omit<ClusterOptions, 'log' | 'maxSpaceBytes' | 'fetchTimeoutMs'>
}

export interface RunningHub {
  /** The HTTP API's base URL, e.g. `http://127.0.0.1:8787`. */
  url: string
  /** The libp2p peer id (stable across restarts on the same directory). */
  peerId: string
  /** The libp2p addresses other hubs can `--peer` to, each ending in `/p2p/<peer id>`. */
  multiaddrs: string[]
  /** The helia node, for callers that want more of it. */
  helia: HeliaNode
  /** Re-announces every stored record now; resolves with how many were put. */
  republish(): Promise<number>
  /** Runs one garbage-collection pass now. */
  collectGarbage(): Promise<GcReport>
  /** Stops the HTTP server (closing event streams), the timer and the node; closes the stores. */
  stop(): Promise<void>
}

/**
 * Starts a hub.
 *
 * @example
 * ```ts
 * const hub = await startHub({ port: 0, directory: './data' })
 * console.log(hub.url, hub.multiaddrs)
 * const other = await startHub({ port: 0, directory: './data2', peers: hub.multiaddrs })
 * await other.stop()
 * await hub.stop()
 * ```
 */
export async function startHub (options: HubOptions = {}): Promise<RunningHub> {
  const host = options.host ?? DEFAULT_HOST
  const port = options.port ?? DEFAULT_PORT
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidInputError(`"port" expected 0–65535, got ${String(port)}`)
  const directory = options.directory === false ? undefined : options.directory ?? DEFAULT_DIRECTORY
  const fsync = options.fsync ?? true
  const routingTimeoutMs = options.routingTimeoutMs ?? DEFAULT_HUB_ROUTING_TIMEOUT_MS

  const log = (options.logger ?? noopLogger()).forComponent('userspace:hub')
  const nowMs = options.nowMs ?? systemClock
  parseMultiaddrs(options.peers ?? [], 'peers')
  if (options.publicUrl !== undefined) urlToMultiaddr(options.publicUrl)
  const releaseLock = directory === undefined ? async () => {} : await lockDirectory(directory)
  let node: HeliaNode
  // The DHT serves the records the hub stores from its record store, not from a second copy of each
  // (set once the store exists; until then kad-dht keeps its own copies as usual).
  let held: HubRecordStore | undefined
  const heldRecord = async (key: Uint8Array): Promise<Uint8Array | undefined> => {
    const name = held === undefined ? undefined : nameOfRoutingKey(key)
    const record = name === undefined ? undefined : await held?.get(name)
    // An expired record is no longer announced, nor served to DHT peers (who would refuse it).
    return record !== undefined && readRecord(record).validUntilMs > nowMs() ? record : undefined
  }
  try {
    // Acknowledged means on disk: each block an upload puts is fsynced before the put resolves.
    node = await startNode(directory, options.listen, log, heldRecord, fsync, options.peerAddressGroup)
  } catch (err) {
    await releaseLock()
    throw err
  }
  const dialer = dialInBackground(node, options.peers ?? [], options.peerRetryMinMs ?? DEFAULT_PEER_RETRY_MIN_MS, options.peerRetryMaxMs ?? DEFAULT_PEER_RETRY_MAX_MS, log)
  const connected = (): boolean => node.libp2p.getConnections().length > 0
  // Used for its verified, bounded bitswap fetch.
  const store = heliaStore(node, { routingTimeoutMs, fetchTimeoutMs: routingTimeoutMs, provide: false, nowMs })
  const records = datastoreRecords(node.datastore, { fsync })
  held = records
  const verifiers = new VerifierPool(options.verifyThreads ?? Math.min(4, Math.max(0, availableParallelism() - 1)), nowMs)

  const components: HubComponents = {
    // helia's blockstore: local reads, and puts are offered to bitswap peers that want them.
    blockstore: node.blockstore,
    blockPrefixes: blockPrefixesOf(node),
    datastore: node.datastore,
    // (no syncBlocks: the blockstore fsyncs each put itself, see startNode)
    records,
    validate: verifiers.validate,
    // The app has validated the record: put it to the DHT as it is. kad-dht keeps a local copy that
    // it serves to peers (also to hubs that connect later), then sends it to the closest peers it
    // knows; with none, that part ends at once.
    announce: async (name, record, { signal }) => { await node.routing.put(routingKey(name), record, { signal }) },
    // kad-dht's get validates each record it hears and picks the best with the IPNS selector; the
    // app validates again against the name before keeping it.
    resolveRemote: async (name, { signal }) => {
      if (!connected()) return undefined
      try {
        return await node.routing.get(routingKey(name), { signal })
      } catch {
        return undefined
      }
    },
    fetchBlock: async (cid, { signal }) => {
      // Nobody to ask: say so at once instead of waiting for bitswap until the timeout.
      if (!connected()) throw new StoreError('no peers')
      return store.getBlock(cid, { signal })
    },
    // Provider records name this node: its peer id (kept across restarts) and libp2p addresses.
    peerId: node.libp2p.peerId.toString(),
    libp2pAddrs: () => node.libp2p.getMultiaddrs().map(String),
    routes: options.nextId === false
      ? []
      : [createNextIdApp({
          ...options.nextId,
          datastore: node.datastore,
          blockstore: node.blockstore,
          onAccepted: (avatar) => {
            if (options.nextId !== false) options.nextId?.onAccepted?.(avatar)
            cluster?.publishChain(avatar).catch((err: Error) => { log.error('cluster: cannot gossip a Next.ID chain: %s', err.message) })
          }
        })],
    // Bound below, once the hub's state exists.
    cluster: { publish: async (name, record, rootBytes) => cluster?.publish(name, record, rootBytes) }
  }
  // publicUrl defaults to the address the server ends up listening on (port 0 picks one below).
  const appOptions: HubAppOptions = { ...options }
  let cluster: HubCluster | undefined
  const { app, collectGarbage, records: hubRecords, blocks: hubBlocks } = createHub(components, appOptions)
  const nextId = options.nextId === false
    ? undefined
    : { datastore: node.datastore, blockstore: node.blockstore, maxChainLinks: options.nextId?.maxChainLinks, maxChainBytes: options.nextId?.maxChainBytes, maxStoredBytes: options.nextId?.maxStoredBytes, syncWrites: options.nextId?.syncWrites }
  cluster = new HubCluster({ pubsub: node.libp2p.services.pubsub as GossipSub, records: hubRecords, blocks: hubBlocks, nextId }, node.libp2p.peerId.toString(), {
    ...options.cluster,
    fetchTimeoutMs: options.fetchTimeoutMs,
    maxSpaceBytes: options.maxSpaceBytes,
    nowMs,
    log: (line) => { log('%s', line) }
  })
  const silent = reconnectSilentHubs(node, dialer.listed, () => cluster?.hubs() ?? [], options.silentHubCheckMs ?? DEFAULT_SILENT_HUB_CHECK_MS, log)

  let server: Server
  let address: AddressInfo
  try {
    ({ server, address } = await listen(app.fetch, host, port, options))
  } catch (err) {
    dialer.stop()
    silent.stop()
    cluster.stop()
    await stopHeliaNode(node).catch(() => {})
    await verifiers.stop()
    await releaseLock()
    throw err
  }

  const republish = async (): Promise<number> => {
    let count = 0
    for await (const { name, record: listed } of records.all()) {
      if (node.status !== 'started') break
      try {
        // The listing is a snapshot taken when the pass began, and a pass can take minutes: the
        // record announced is the one stored now (a stale one would roll DHT peers back).
        const record = await records.get(name) ?? listed
        // Expired records are no longer announced (DHT peers would refuse them anyway).
        const { validUntilMs } = readRecord(record)
        if (!(validUntilMs > nowMs())) continue
        await node.routing.put(routingKey(name), record, { signal: AbortSignal.timeout(routingTimeoutMs) })
        count++
      } catch {
        // The DHT failed: next round.
      }
    }
    return count
  }

  // Re-announce on a timer, and soon after a new peer connects (it may be a hub that just
  // (re)started with an empty DHT table), debounced so a burst of connections costs one pass.
  let running: Promise<unknown> = Promise.resolve()
  const schedule = (): void => { running = running.then(republish).catch(() => {}) }
  const interval = options.republishIntervalMs ?? DEFAULT_REPUBLISH_INTERVAL_MS
  const timer = interval > 0 ? setInterval(schedule, interval) : undefined
  timer?.unref()
  let debounce: ReturnType<typeof setTimeout> | undefined
  const onPeer = (): void => {
    clearTimeout(debounce)
    debounce = setTimeout(schedule, 1_000)
    debounce.unref()
  }
  if (interval > 0) {
    node.libp2p.addEventListener('peer:connect', onPeer)
    onPeer()
  }

  const gcInterval = options.gcIntervalMs ?? DEFAULT_GC_INTERVAL_MS
  let gcRunning: Promise<unknown> = Promise.resolve()
  const gcTimer = gcInterval > 0
    ? setInterval(() => { gcRunning = gcRunning.then(async () => collectGarbage()).catch((err: Error) => { console.error('userspace hub: garbage collection failed', err) }) }, gcInterval)
    : undefined
  gcTimer?.unref()

  const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address
  // A wildcard address names no host a client can use: then each request's origin is named.
  const wildcard = address.address === '0.0.0.0' || address.address === '::'
  if (!wildcard) appOptions.publicUrl ??= `http://${hostForUrl}:${address.port}`
  let stopped: Promise<void> | undefined
  return {
    url: `http://${hostForUrl}:${address.port}`,
    peerId: node.libp2p.peerId.toString(),
    multiaddrs: node.libp2p.getMultiaddrs().map(String),
    helia: node,
    republish,
    collectGarbage: async () => collectGarbage(),
    stop: async () => {
      stopped ??= (async () => {
        clearInterval(timer)
        clearInterval(gcTimer)
        clearTimeout(debounce)
        dialer.stop()
        silent.stop()
        cluster?.stop()
        hubRecords.stop()
        node.libp2p.removeEventListener('peer:connect', onPeer)
        await new Promise<void>((resolve) => {
          server.close(() => { resolve() })
          // Event streams never end on their own.
          server.closeAllConnections()
        })
        await running
        await gcRunning
        await stopHeliaNode(node)
        await verifiers.stop()
        await releaseLock()
      })()
      await stopped
    }
  }
}

/**
 * Takes the data directory for this process: creates `<directory>/hub.pid` holding its pid, or, when
 * that file names a process that is still running, refuses with DataDirectoryLockedError naming it
 * (LevelDB would otherwise fail later with a bare "Database failed to open"). A file left by a
 * process that has died is taken over. Resolves with the function that releases the directory.
 */
async function lockDirectory (directory: string): Promise<() => Promise<void>> {
  await mkdir(directory, { recursive: true })
  const file = join(directory, LOCK_FILE)
  const key = resolvePath(file)
  // A file naming this very pid is stale (a container's hub is pid 1 on every start) unless a hub in
  // this process holds it.
  if (lockedHere.has(key)) throw new DataDirectoryLockedError(`${directory} is in use by another hub in this process (${process.pid})`)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, 'wx')
      await handle.writeFile(`${process.pid}\n`)
      await handle.close()
      lockedHere.add(key)
      return async () => {
        lockedHere.delete(key)
        await rm(file, { force: true })
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StoreError(`cannot lock ${directory}: ${(err as Error).message}`, { cause: err })
    }
    const pid = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10)
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isRunning(pid)) {
      throw new DataDirectoryLockedError(`${directory} is in use by another hub (process ${pid}); stop it, or pass another --data directory`)
    }
    // Stale: its process is gone.
    await rm(file, { force: true })
  }
  throw new DataDirectoryLockedError(`${directory} is being locked by another process at the same time`)
}

/** Lock files held by hubs in this process. */
const lockedHere = new Set<string>()

function isRunning (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Starts the node. Without explicit `listen` addresses, a node on a directory listens where it did
 * last time (if those ports are free), and the bound addresses are saved for next time.
 */
/** Finds a node's blocks by the start of their multihash, when they are on disk (landed entries are then compact). */
function blockPrefixesOf (node: HeliaNode): HubComponents['blockPrefixes'] {
  const disk = diskBlockstoreOf(node)
  return disk === undefined ? undefined : async (prefix, limit) => await disk.multihashesFrom(prefix, limit)
}

async function startNode (directory: string | undefined, listen: string[] | undefined, log: Logger, heldRecord: (routingKey: Uint8Array) => Promise<Uint8Array | undefined>, syncBlocks: boolean, peerAddressGroup: HeliaNodeOptions['peerAddressGroup']): Promise<HeliaNode> {
  const onBlocksMoved = (move: LegacyMove): void => {
    if (move.from === 'files') log('moved %d block(s) from blocks/ (one file per block) into blockstore/ (LevelDB); dropped %d file(s) that were unreadable or did not hash to their name', move.moved, move.skipped)
    else log('rekeyed %d block(s) in blockstore/ from text keys to binary ones; left %d key(s) that name no multihash as they are', move.moved, move.skipped)
  }
  const onBlocksMoving = (from: LegacyMove['from']): void => {
    log(from === 'files' ? 'moving blocks from blocks/ (one file per block) into blockstore/ (LevelDB); the hub starts once done' : 'rekeying blocks in blockstore/ from text keys to binary ones; the hub starts once done')
  }
  const storage = { dhtServer: true, pubsub: 'gossipsub' as const, heldRecord, syncBlocks, onBlocksMoved, onBlocksMoving, peerAddressGroup }
  if (listen !== undefined || directory === undefined) return createHeliaNode({ directory, listen, ...storage })
  const file = join(directory, LISTEN_FILE)
  const saved = await readFile(file, 'utf8').then(text => JSON.parse(text) as unknown, () => undefined)
  let node: HeliaNode | undefined
  if (Array.isArray(saved) && saved.length > 0 && saved.every(a => typeof a === 'string')) {
    try {
      node = await createHeliaNode({ directory, listen: saved, ...storage })
    } catch (err) {
      log('libp2p: cannot listen on the previous addresses (%s); picking new ports, so the multiaddrs change', (err as Error).message)
    }
  }
  node ??= await createHeliaNode({ directory, listen: [...DEFAULT_LISTEN], ...storage })
  // The bound addresses without the /p2p/<id> suffix, e.g. /ip4/127.0.0.1/tcp/40123/ws.
  const bound = node.libp2p.getMultiaddrs().map(a => a.decapsulateCode(P2P_CODE).toString())
  await writeFile(`${file}.tmp`, JSON.stringify(bound) + '\n')
  await rename(`${file}.tmp`, file)
  return node
}

const P2P_CODE = 0x01a5

/**
 * Dials every peer in the background; one that does not answer is dialled again after a wait that
 * doubles from `minMs` to `maxMs`, until it answers or `stop()`. A listed peer that connects to this
 * hub on its own while it waits (a restarted hub dialling its own peers list, or found through the
 * DHT) is dialled at once. Once connected, libp2p keeps the connection (see dialPeer).
 */
function dialInBackground (node: HeliaNode, peers: string[], minMs: number, maxMs: number, log: Logger): { stop: () => void, listed: () => string[] } {
  let stopped = false
  /** The pending retry of each address that waits for one. */
  const waiting = new Map<string, ReturnType<typeof setTimeout>>()
  /** Configured addresses by the peer id they name or reached, to dial again when that peer goes away or comes back. */
  const reached = new Map<string, string>()
  const dialling = new Set<string>()
  const retry = (address: string, waitMs: number, nextMs: number): void => {
    clearTimeout(waiting.get(address))
    const timer = setTimeout(() => { waiting.delete(address); attempt(address, nextMs) }, waitMs)
    timer.unref()
    waiting.set(address, timer)
  }
  const attempt = (address: string, waitMs: number): void => {
    if (stopped) return
    dialling.add(address)
    dialPeer(node, address).then(async (peerId) => {
      reached.set(peerId, address)
      // Logged once the peer is in the DHT routing table, so that what follows the line can use it.
      await waitForDhtPeer(node, peerId)
      dialling.delete(address)
      if (!stopped) log('peer: connected to %s (%s)', address, peerId)
    }, (err: Error) => {
      if (stopped) return
      log.error('peer: cannot reach %s (%s); retrying in %d s', address, err.message, Math.round(waitMs / 1000))
      retry(address, waitMs, Math.min(waitMs * 2, maxMs))
    })
  }
  // libp2p re-dials keep-alive peers only a few times (about half a minute); a hub that is down
  // longer (a restart, a crash) is dialled again here, with backoff, for as long as it is listed.
  const onDisconnect = (event: CustomEvent<{ toString: () => string }>): void => {
    const address = reached.get(event.detail.toString())
    if (address === undefined || stopped || dialling.has(address)) return
    log('peer: lost %s; dialling it again', address)
    retry(address, minMs, minMs)
  }
  // A listed hub that is back need not wait out this side's backoff.
  const onConnect = (event: CustomEvent<{ toString: () => string }>): void => {
    const address = reached.get(event.detail.toString())
    if (address === undefined || stopped || !waiting.has(address)) return
    clearTimeout(waiting.get(address))
    waiting.delete(address)
    attempt(address, minMs)
  }
  node.libp2p.addEventListener('peer:disconnect', onDisconnect as EventListener)
  node.libp2p.addEventListener('peer:connect', onConnect as EventListener)
  // One peers list can serve every hub of a cluster: each skips its own entry.
  const self = node.libp2p.peerId.toString()
  const own = new Set(node.libp2p.getMultiaddrs().map(a => a.decapsulateCode(P2P_CODE).toString()))
  for (const address of peers) {
    if (address.endsWith(`/p2p/${self}`) || own.has(address)) continue
    const id = multiaddr(address).getComponents().findLast(c => c.code === P2P_CODE)?.value
    if (id !== undefined) reached.set(id, address)
    attempt(address, minMs)
  }
  return {
    listed: () => [...reached.keys()],
    stop: () => {
      stopped = true
      node.libp2p.removeEventListener('peer:disconnect', onDisconnect as EventListener)
      node.libp2p.removeEventListener('peer:connect', onConnect as EventListener)
      for (const timer of waiting.values()) clearTimeout(timer)
      waiting.clear()
    }
  }
}

/**
 * Repairs a cluster link that is connected but silent: a listed peer that speaks gossipsub yet is not
 * on the cluster topic for two checks in a row is hung up on (the dialler, or the peer's own, dials
 * it again at once), so both sides open fresh pubsub streams and exchange their subscriptions. Seen
 * under load after a hub restarted with the same peer id: the connection came back, the other side's
 * subscriptions never arrived, and the hub heard none of the cluster. A listed peer that is not a hub
 * (another gossipsub node) is hung up on again only after a wait that doubles up to 10 minutes.
 */
function reconnectSilentHubs (node: HeliaNode, listed: () => string[], hubs: () => string[], intervalMs: number, log: Logger): { stop: () => void } {
  const silentChecks = new Map<string, number>()
  const backoff = new Map<string, { untilMs: number, waitMs: number }>()
  const timer = setInterval(() => {
    const heard = new Set(hubs())
    for (const id of listed()) {
      const connections = node.libp2p.getConnections().filter(c => c.remotePeer.toString() === id)
      if (heard.has(id) || connections.length === 0) {
        silentChecks.delete(id)
        if (heard.has(id)) backoff.delete(id)
        continue
      }
      const now = performance.now()
      if ((backoff.get(id)?.untilMs ?? 0) > now) continue
      const checks = (silentChecks.get(id) ?? 0) + 1
      silentChecks.set(id, checks)
      if (checks < 2) continue
      void node.libp2p.peerStore.get(connections[0]!.remotePeer).then(async (peer) => {
        if (!peer.protocols.some(p => p.startsWith('/meshsub/'))) return
        silentChecks.delete(id)
        const waitMs = Math.min((backoff.get(id)?.waitMs ?? intervalMs * 3) * 2, 10 * 60_000)
        backoff.set(id, { untilMs: performance.now() + waitMs, waitMs })
        log('peer: %s is connected but not heard on the cluster topic; reconnecting', id)
        await node.libp2p.hangUp(connections[0]!.remotePeer)
      }).catch(() => {})
    }
  }, intervalMs)
  timer.unref()
  return { stop: () => { clearInterval(timer) } }
}

/** Starts the HTTP server and resolves once it listens (rejects on EADDRINUSE and the like). */
async function listen (fetch: (request: Request, env: unknown) => Response | Promise<Response>, host: string, port: number, limits: HubConnectionOptions): Promise<{ server: Server, address: AddressInfo }> {
  // Sockets count against the descriptor limit: raise it, then size the connection caps from it.
  const fdSoftLimit = raiseFileLimit()
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, hostname: host, port, serverOptions: serverOptions(limits) }) as Server
    guardConnections(server, limits, fdSoftLimit)
    const onError = (err: NodeJS.ErrnoException): void => {
      server.close()
      reject(err.code === 'EADDRINUSE'
        ? new StoreError(`port ${port} on ${host} is in use; pick another with --port (0 picks a free one)`)
        : err instanceof UserSpaceError ? err : new StoreError(`cannot listen on ${host}:${port}: ${err.message}`))
    }
    server.once('error', onError)
    server.once('listening', () => {
      server.off('error', onError)
      resolve({ server, address: server.address() as AddressInfo })
    })
  })
}

/** The DHT key of an IPNS name: `/ipns/` followed by the name's multihash bytes. */
function routingKey (name: string): Uint8Array {
  return multihashToIPNSRoutingKey(nameToMultihash(name) as MultihashDigest<0x00 | 0x12>)
}

/** Public keys libp2p inlines in a peer id or IPNS name with the identity hash (libp2p peer-ids spec). */
const MAX_INLINE_KEY_BYTES = 42

/** The IPNS name (`k51…`) of a DHT routing key, or undefined when it is not an Ed25519 name's. */
export function nameOfRoutingKey (key: Uint8Array): string | undefined {
  const prefix = IPNS_ROUTING_PREFIX
  if (key.byteLength <= prefix.byteLength || !prefix.every((b, i) => key[i] === b)) return undefined
  try {
    const digest = Digest.decode(key.subarray(prefix.byteLength))
    // an identity multihash, as every space's name (an Ed25519 key) is; libp2p inlines keys of
    // at most 42 bytes (peer-ids spec), and a longer one would only cost base36's quadratic
    // encoding (a DHT peer's key may be megabytes)
    if (digest.code !== 0x00 || digest.size > MAX_INLINE_KEY_BYTES) return undefined
    return nameText(CID.createV1(LIBP2P_KEY_CODE, digest))
  } catch {
    return undefined
  }
}

const IPNS_ROUTING_PREFIX = new TextEncoder().encode('/ipns/')
const LIBP2P_KEY_CODE = 0x72

/**
 * The worker's code: loads the same record codec the app uses (`validateRecord` from
 * store/record.js, next to this file in dist/), checks `{ id, name, bytes, atMs }` at time `atMs`
 * and answers `{ id }` or `{ id, error }`. When the codec cannot be loaded (running from
 * TypeScript sources), it says so and the pool checks on the main thread instead.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
;(async () => {
  await import(workerData.polyfill)
  const { validateRecord } = await import(workerData.record)
  // The validity is judged at the caller's time (the hub's clock), not the worker's.
  parentPort.on('message', ({ id, name, bytes, atMs }) => {
    validateRecord(name, bytes, { nowMs: () => atMs }).then(
      () => parentPort.postMessage({ id }),
      (err) => parentPort.postMessage({ id, error: { name: err && err.name, message: String(err && err.message) } })
    )
  })
  parentPort.postMessage({ ready: true })
})().catch((err) => parentPort.postMessage({ failed: String(err && err.message) }))
`

interface Pending {
  name: string
  bytes: Uint8Array
  /** The hub's time when the check was asked for: the record's validity is judged at it. */
  atMs: number
  resolve: (info: RecordInfo) => void
  reject: (err: Error) => void
}

interface Verifier {
  worker: Worker
  ready: boolean
  pending: Map<number, Pending>
}

/**
 * IPNS record checks on worker threads, falling back to the main thread when there are none; every
 * check judges the validity at `nowMs()` of when it was asked for. Exported for tests.
 */
export class VerifierPool {
  private readonly verifiers: Verifier[] = []
  private nextId = 0
  private readonly starting: Array<Promise<void>> = []

  constructor (threads: number, private readonly nowMs: Clock = systemClock) {
    for (let i = 0; i < threads; i++) this.spawn()
  }

  /** Resolves once every worker spawned has started or given up (then `threads` says how many run). */
  async started (): Promise<void> {
    await Promise.all(this.starting)
  }

  /** Workers running and ready to check. */
  get threads (): number {
    return this.verifiers.filter(v => v.ready).length
  }

  private spawn (): void {
    let worker: Worker
    try {
      worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: {
          polyfill: new URL('../polyfill.js', import.meta.url).href,
          record: new URL('../store/record.js', import.meta.url).href
        }
      })
    } catch {
      return
    }
    worker.unref()
    const verifier: Verifier = { worker, ready: false, pending: new Map() }
    this.verifiers.push(verifier)
    let settle = (): void => {}
    this.starting.push(new Promise<void>(resolve => { settle = resolve }))
    const retire = (): void => {
      const index = this.verifiers.indexOf(verifier)
      if (index !== -1) this.verifiers.splice(index, 1)
      // Whatever it was checking is checked here instead.
      for (const job of verifier.pending.values()) validateRecord(job.name, job.bytes, { nowMs: () => job.atMs }).then(job.resolve, job.reject)
      verifier.pending.clear()
      void worker.terminate()
      settle()
    }
    worker.on('message', (message: { ready?: boolean, failed?: string, id?: number, error?: { name?: string, message: string } }) => {
      if (message.ready === true) { verifier.ready = true; settle(); return }
      if (message.failed !== undefined) { retire(); return }
      const job = verifier.pending.get(message.id ?? -1)
      if (job === undefined) return
      verifier.pending.delete(message.id ?? -1)
      if (message.error !== undefined) {
        job.reject(errorFromName(message.error.name, message.error.message))
        return
      }
      try {
        job.resolve(readRecord(job.bytes))
      } catch (err) {
        job.reject(err as Error)
      }
    })
    worker.on('error', retire)
    worker.on('exit', retire)
  }

  readonly validate = async (name: string, bytes: Uint8Array): Promise<RecordInfo> => {
    let best: Verifier | undefined
    for (const v of this.verifiers) {
      if (v.ready && (best === undefined || v.pending.size < best.pending.size)) best = v
    }
    const atMs = this.nowMs()
    if (best === undefined) return validateRecord(name, bytes, { nowMs: () => atMs })
    const verifier = best
    return new Promise<RecordInfo>((resolve, reject) => {
      const id = this.nextId++
      verifier.pending.set(id, { name, bytes, atMs, resolve, reject })
      verifier.worker.postMessage({ id, name, bytes, atMs })
    })
  }

  async stop (): Promise<void> {
    const all = this.verifiers.splice(0)
    await Promise.all(all.map(async v => v.worker.terminate()))
  }
}

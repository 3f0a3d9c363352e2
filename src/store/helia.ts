/**
 * A Store on a helia node: blocks live in helia's blockstore and travel by bitswap, IPNS records are
 * kept in @helia/ipns's local store and announced through helia's routers (the DHT on a libp2p
 * node). Isomorphic — it only asks helia for its blockstore, routing, datastore and keychain, so the
 * same code runs on a Node hub (see `createHeliaNode`) and on a browser helia.
 *
 * The network is never trusted and never waited on without a bound: every block is checked against
 * its CID, every record against its name, and every network call ends when the caller's `signal`
 * fires or, when there is none, after the timeouts below. Local data always wins over a slow network:
 * writes land locally first and reads fall back to what is stored.
 *
 * A conditional store: `putRecord` refuses a record older than the one this node holds (ConflictError,
 * EquivocationError for the same sequence with another value), so spaces publish against the
 * sequence they know without resolving first. Live updates keep that knowledge fresh: the store
 * listens on the IPNS-over-PubSub topic (ipfs/specs "IPNS PubSub Router") of every name it publishes,
 * resolves or is subscribed to, and keeps each record heard there that validates (signature, name)
 * and beats the one it holds (sequence, then validity); any other is dropped. Before a record goes
 * to the DHT, the DHT is asked for a better one: a newer record found there is kept instead, and the
 * publish is refused as a lost race, so a device that missed an update never rolls the DHT back.
 * A version published with `publish` also goes out with its blocks, when they are small, on the
 * name's version topic (VERSION_TOPIC_PREFIX): listening devices check them against their CIDs and
 * read the update from memory instead of one bitswap round trip per level of the version.
 * Retention (helia-retention.ts) deletes the blocks only versions older than the kept ones reference.
 *
 * Keeping records alive: @helia/ipns's local store and kad-dht share the datastore keys
 * (`/dht/record/…`), so what this store keeps is what the node serves to DHT peers — but when a
 * peer asks for a record this node received more than 48 hours ago, kad-dht deletes it instead
 * (@libp2p/kad-dht 16, GET_VALUE handler). A node that keeps records for others (a hub) must
 * `putRecord` the same bytes again more often than that: the DHT put refreshes the time of receipt,
 * here and on the peers it reaches.
 */
import { DEFAULT_FETCH_CONCURRENCY, DEFAULT_MAX_DAG_BLOCKS, DEFAULT_MAX_DAG_BYTES } from './limits.js'
export { DEFAULT_FETCH_CONCURRENCY, DEFAULT_MAX_DAG_BLOCKS, DEFAULT_MAX_DAG_BYTES }
import '../polyfill.js'
import { base64url } from 'multiformats/bases/base64'
import { ipns } from '@helia/ipns'
import { multihashToIPNSRoutingKey } from 'ipns'
import { ipnsSelector } from 'ipns/selector'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { ConflictError, EquivocationError, IntegrityError, InvalidInputError, NotFoundError, StoreError, TooLargeError, throwIfAborted, describeValue } from '../errors.js'
import { MAX_BLOCK_BYTES, cidKey, cidLabel, refuseUnheld, verifyBlock } from './blocks.js'
import { flatText } from '../crypto/bytes.js'
import { VERSION_TOPIC_PREFIX } from '../protocol.js'
import { Limiter } from './limiter.js'
import { DEFAULT_DAG_PEERS, dagServerOf, fetchDag, dagPeers, libp2pOf, linksAt, serveDags } from './helia-dag.js'
import { MAX_RECORD_BYTES, nameToMultihash, readRecord, validateRecord } from './record.js'
import { equals } from 'multiformats/bytes'
import { systemClock } from '../clock.js'
import type { Clock } from '../clock.js'
import type { AbortOptions, Block, GetDagOptions, GetRecordOptions, PublishOptions, RecordListener, Store } from './interface.js'
import type { IPNS, IPNSRouting } from '@helia/ipns'
import type { Helia } from '@helia/interface'
import type { MultihashDigest } from 'multiformats/hashes/interface'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromCID } from '@libp2p/peer-id'

/** How long `getBlock` may look for a missing block on the network when the caller gives no signal. */
export const DEFAULT_FETCH_TIMEOUT_MS = 10_000

/**
 * How long announcing (DHT put of a record, provide of a block) and asking the network for a record
 * may take when the caller gives no signal. Past it, a write is kept locally only and a read returns
 * the best record found so far.
 */
export const DEFAULT_ROUTING_TIMEOUT_MS = 5_000

/**
 * How long `putRecord` waits for the DHT put before returning with the put still running: long
 * enough that a reader elsewhere finds the record at once on a healthy network (a loopback put
 * takes ~40 ms), short enough that a DHT with no reachable peers never holds a publish for long.
 */
export const DEFAULT_RECORD_PUT_WAIT_MS = 1_000

/**
 * How many names a store keeps listening to on its own (those it published or resolved; names
 * with a subscriber are kept besides): the oldest is dropped beyond this.
 */
export const DEFAULT_MAX_WATCHED_NAMES = 64

/** Versions retention keeps, as a hub does (its DEFAULT_MAX_RETAINED_VERSIONS). */
export const DEFAULT_MAX_RETAINED_VERSIONS = 1_000

/** Publishes of one name between two retention passes. */
export const DEFAULT_RETENTION_INTERVAL_VERSIONS = 64

/** How many blocks of a version are written to the blockstore at once. */
const STORE_CONCURRENCY = 8

/** How many blocks are announced to the routers at once. */
const PROVIDE_CONCURRENCY = 8

/**
 * How many blocks one `getDag` asks its session for at once. A session sends no provider lookups
 * (its bitswap messages to a peer are merged), so it can keep many more requests in flight than
 * plain fetches; on a loaded 2-core machine 256 opened 1 024 blocks in 12 s where 32 took 28 s.
 */
export const DEFAULT_SESSION_CONCURRENCY = 256

export interface HeliaStoreOptions {
  /**
   * Upper bound for fetching a block that is not stored locally, when the call has no `signal`.
   *
   * @default DEFAULT_FETCH_TIMEOUT_MS (10 s)
   */
  fetchTimeoutMs?: number

  /**
   * Upper bound for the network part of putBlocks/putRecord/getRecord, whether or not the call has a
   * `signal` (the earlier of the two ends it).
   *
   * @default DEFAULT_ROUTING_TIMEOUT_MS (5 s)
   */
  routingTimeoutMs?: number

  /**
   * How long `putRecord` waits for the DHT put; past it the put goes on in the background (bounded
   * by `routingTimeoutMs`) and the record is already stored and served by this node.
   *
   * @default DEFAULT_RECORD_PUT_WAIT_MS (1 s)
   */
  recordPutWaitMs?: number

  /**
   * How many blocks may be fetched from the network at once (by `getBlock` calls together, and within
   * one `getDag`).
   *
   * @default DEFAULT_FETCH_CONCURRENCY (32)
   */
  fetchConcurrency?: number

  /**
   * How many blocks one `getDag` requests from its session at a time.
   *
   * @default DEFAULT_SESSION_CONCURRENCY (256)
   */
  sessionConcurrency?: number

  /**
   * How many names the store listens to on its own over pubsub (see the module doc).
   *
   * @default DEFAULT_MAX_WATCHED_NAMES (64)
   */
  maxWatchedNames?: number

  /**
   * Retention for the spaces this store publishes (helia-retention.ts): after every
   * `retentionIntervalVersions` publishes of a name, the blocks only versions older than the kept
   * ones reference are deleted from helia's blockstore. Kept, as a hub keeps them: the current
   * version and as many older ones (up to `maxRetainedVersions`) as fit in 64 MiB together.
   *
   * @default true
   */
  retention?: boolean

  /**
   * Versions of a space that retention keeps at most, the current one included (at least 2).
   *
   * @default DEFAULT_MAX_RETAINED_VERSIONS (1 000, as a hub)
   */
  maxRetainedVersions?: number

  /**
   * Publishes of one name between two retention passes (a pass walks every kept version's state).
   *
   * @default DEFAULT_RETENTION_INTERVAL_VERSIONS (64)
   */
  retentionIntervalVersions?: number

  /**
   * Announce new blocks as provided by this node (a DHT provider record per block), so that peers
   * that are not connected to it can find them. Turn off for a node that only reads.
   *
   * @default true
   */
  provide?: boolean

  /**
   * Answer other nodes' requests for a version's whole state in one round trip (DAG_PROTOCOL,
   * helia-dag.ts) from the blocks this node holds, within the bounds that module sets for strangers.
   * Once per libp2p node, by the first store made on it.
   *
   * @default true
   */
  serveDags?: boolean

  /**
   * Connected peers `getDag` asks in turn for a DAG whose root this node lacks, over DAG_PROTOCOL,
   * before it falls back to bitswap. 0 never asks.
   *
   * @default DEFAULT_DAG_PEERS (3)
   */
  dagPeers?: number

  /**
   * The clock, in ms since 1970, that records' validity and the local record's freshness (its TTL)
   * are judged by.
   *
   * @default systemClock (Date.now)
   */
  nowMs?: Clock
}

/**
 * Wraps a started helia node as a Store. The node needs a block broker (bitswap) to fetch blocks it
 * does not have and a router (kad-dht, delegated routing) to exchange records with other nodes;
 * without them it works offline on its own stores.
 *
 * @example
 * ```ts
 * const helia = await createHeliaNode({ peers: ['/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo…'] })
 * const space = await openSpace({ signer, store: heliaStore(helia) })
 * ```
 */
export function heliaStore (helia: Helia, options: HeliaStoreOptions = {}): Store {
  return new HeliaStore(helia, {
    fetchTimeoutMs: positive(options.fetchTimeoutMs, 'fetchTimeoutMs') ?? DEFAULT_FETCH_TIMEOUT_MS,
    routingTimeoutMs: positive(options.routingTimeoutMs, 'routingTimeoutMs') ?? DEFAULT_ROUTING_TIMEOUT_MS,
    recordPutWaitMs: positive(options.recordPutWaitMs, 'recordPutWaitMs', '') ?? DEFAULT_RECORD_PUT_WAIT_MS,
    fetchConcurrency: Math.max(1, Math.floor(positive(options.fetchConcurrency, 'fetchConcurrency', '') ?? DEFAULT_FETCH_CONCURRENCY)),
    sessionConcurrency: Math.max(1, Math.floor(positive(options.sessionConcurrency, 'sessionConcurrency', '') ?? DEFAULT_SESSION_CONCURRENCY)),
    maxWatchedNames: Math.max(1, Math.floor(positive(options.maxWatchedNames, 'maxWatchedNames', '') ?? DEFAULT_MAX_WATCHED_NAMES)),
    retention: options.retention ?? true,
    maxRetainedVersions: Math.max(2, Math.floor(positive(options.maxRetainedVersions, 'maxRetainedVersions', '') ?? DEFAULT_MAX_RETAINED_VERSIONS)),
    retentionIntervalVersions: Math.max(1, Math.floor(positive(options.retentionIntervalVersions, 'retentionIntervalVersions', '') ?? DEFAULT_RETENTION_INTERVAL_VERSIONS)),
    provide: options.provide ?? true,
    serveDags: options.serveDags ?? true,
    dagPeers: Math.floor(nonNegative(options.dagPeers, 'dagPeers') ?? DEFAULT_DAG_PEERS),
    nowMs: options.nowMs ?? systemClock
  })
}

/** The part of a libp2p pubsub service (floodsub, gossipsub) this store uses. */
interface PubSubLike extends EventTarget {
  publish(topic: string, data: Uint8Array): Promise<unknown>
  subscribe(topic: string): void
  unsubscribe(topic: string): void
}

/** IPNS over PubSub (ipfs/specs): the topic of a name is `/record/` + base64url(routing key). */
function recordTopic (routingKey: Uint8Array): string {
  return flatText('/record/' + base64url.baseEncode(routingKey))
}

/** The topic on which a name's new versions travel with their blocks (see VERSION_TOPIC_PREFIX). */
function versionTopic (routingKey: Uint8Array): string {
  return flatText(VERSION_TOPIC_PREFIX + base64url.baseEncode(routingKey))
}

/**
 * Bytes of blocks a version message may carry: a single-key update (a bucket, the index nodes on
 * its path, the current node, the root) fits; a bigger version goes out as its record alone and
 * readers fetch its blocks by bitswap. Under gossipsub's 64 KiB message limit on hubs, with the record.
 */
export const DEFAULT_MAX_PUSHED_VERSION_BYTES = 32 * 1024

/** Bytes of pushed blocks a store holds in memory for readers, newest kept. */
const PUSHED_CACHE_BYTES = 512 * 1024

interface ValidRecord {
  bytes: Uint8Array
  ttlMs: number
}

/** A name whose pubsub topic this store listens on. */
interface Watch {
  name: string
  routingKey: Uint8Array
  listeners: Set<RecordListener>
  /** Listened to on the store's own account (published or resolved here), within maxWatchedNames. */
  auto: boolean
}

/**
 * How a record compares with the one held: `new` replaces it; `same` is the same bytes; `older`
 * is the same version with an earlier validity; `lower` a lower sequence; `equivocation` the same
 * sequence with another value.
 */
type Verdict = 'new' | 'same' | 'older' | 'lower' | 'equivocation'

/**
 * Judges `record` against the held one. For a publish an equal record is `new` (stored and
 * announced again); heard from elsewhere it is `same`.
 */
function judge (routingKey: Uint8Array, held: ValidRecord | undefined, record: Uint8Array, mode: 'publish' | 'heard'): Verdict {
  if (held === undefined) return 'new'
  if (equals(held.bytes, record)) return mode === 'publish' ? 'new' : 'same'
  const current = readRecord(held.bytes)
  const offered = readRecord(record)
  if (offered.sequence < current.sequence) return 'lower'
  if (offered.sequence === current.sequence && offered.value !== current.value) return 'equivocation'
  return ipnsSelector(routingKey, [record, held.bytes]) === 0 ? 'new' : 'older'
}

/** A version accepted by publish, waiting for its network step (see HeliaStore.runChecks). */
interface Check {
  offered: ValidRecord
  root: CID | undefined
  done: (err?: Error) => void
}

/** A record waiting for the DHT, the version root to provide with it, and the callers waiting on it. */
interface Announcement {
  record: Uint8Array
  root: CID | undefined
  done: Array<() => void>
}

/** The DHT announcements of each node, by routing key (see HeliaStore.announce). */
const announcements = new WeakMap<Helia, Map<string, { next: Announcement | undefined }>>()

interface Routers {
  /** @helia/ipns's local record store (the helia datastore, under the DHT's record keys). */
  local: IPNSRouting
  /** Everything else: helia's routers (the DHT), plus any the IPNS instance was given. */
  network: IPNSRouting[]
}

class HeliaStore implements Store {
  readonly conditional = true
  private routers?: Routers
  /** By topic. */
  private readonly watches = new Map<string, Watch>()
  private messageListener: EventListener | undefined
  /** Per routing key: the tail of the local record updates, so a check and its write are one step. */
  private readonly recordLocks = new Map<string, Promise<unknown>>()
  /** Per routing key: the versions accepted by publish whose network step has not ended, oldest first. */
  private readonly accepted = new Map<string, ValidRecord[]>()
  /**
   * Per routing key: the versions waiting for their network step, in the order they were accepted;
   * a name is in the map while its steps run (see runChecks).
   */
  private readonly checks = new Map<string, Check[]>()
  /** Verified blocks that rode with versions heard on pubsub, by CID string, oldest first; read before bitswap. */
  private readonly pushed = new Map<string, Uint8Array>()
  private pushedBytes = 0
  /** Per routing key: publishes since the last retention pass. */
  private readonly sinceRetention = new Map<string, number>()
  private readonly fetchSlots: Limiter
  /**
   * Per routing key: the next record to announce on the DHT while one announcement is under way (see
   * announce). Shared by every store on the node, so that two spaces on one node never put out of order.
   */
  private readonly announcing: Map<string, { next: Announcement | undefined }>
  /** Per routing key: until when the local record counts as fresh (its TTL, from when it was last confirmed). */
  private readonly freshUntil = new Map<string, number>()

  constructor (private readonly helia: Helia, private readonly options: Required<HeliaStoreOptions>) {
    this.fetchSlots = new Limiter(options.fetchConcurrency)
    let announcing = announcements.get(helia)
    if (announcing === undefined) announcements.set(helia, announcing = new Map())
    this.announcing = announcing
    this.serve()
  }

  /** Starts answering DAG_PROTOCOL on the node once it runs (see `serveDags`). */
  private serve (): void {
    if (this.serving || !this.options.serveDags || libp2pOf(this.helia) === undefined) return
    this.serving = true
    serveDags(this.helia).catch(() => { this.serving = false })
  }

  private serving = false

  async putBlocks (blocks: Block[], options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    await checkBlocks(blocks)
    // Verified all before storing any: a bad block leaves the store unchanged.
    const added = await this.storeBlocks(blocks)
    // Blocks stored on their own may be anything: each is announced.
    this.provideAll(added)
  }

  /**
   * Stores a version's blocks and the record that points into them, in two steps. The local step:
   * the record is checked against the newest one this node holds or has accepted (ConflictError,
   * EquivocationError: nothing stored), the version goes out on pubsub, its blocks are stored.
   * Then `options.onAccepted` is called, and the network step follows: the DHT is asked for a newer
   * record (see betterOnNetwork), and the record is kept and put to the DHT in the background
   * (bounded by `routingTimeoutMs`; back-to-back versions of a name share one put, see announce).
   * The network steps of a name run in the order their versions were accepted, so a caller that
   * passes `onAccepted` may publish its next version while the previous one's check is under way:
   * each version reaches listening devices at once instead of after the previous check.
   *
   * The promise settles with the network step. A refusal there (ConflictError carrying the record
   * that won) leaves the blocks in place when the caller was told of acceptance (its next version
   * may build on them, and listeners have heard it); without `onAccepted` one that comes within
   * `recordPutWaitMs` removes the blocks it added, and past that wait the version counts as published.
   * Only the version's root is announced to the DHT: a reader that finds this node through it
   * fetches the rest from here (a session, or bitswap over the connection the root opened), and a
   * version adds one provider record instead of one per block.
   */
  async publish (name: string, record: Uint8Array, blocks: Block[], options: PublishOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    await checkBlocks(blocks)
    const info = await validateRecord(name, record, { nowMs: this.options.nowMs })
    const routingKey = routingKeyOf(name)
    // Fails at once on a node that is not started.
    this.getRouters()
    const key = keyString(routingKey)
    const offered: ValidRecord = { bytes: record, ttlMs: info.ttlMs }

    const added = await this.exclusive(routingKey, async () => {
      // A conditional write, against what this node holds (kept fresh by pubsub) or has accepted.
      const judged = judge(routingKey, this.newestOf(routingKey, await this.readLocal(name, routingKey)), record, 'publish')
      if (judged === 'lower') throw new ConflictError(`record sequence ${info.sequence} for ${name} is lower than the one this node holds`)
      if (judged === 'equivocation') throw new EquivocationError(`record sequence ${info.sequence} for ${name} already points elsewhere on this node`)
      if (judged !== 'new') return undefined
      // Counted as accepted before it goes out: peers that hear it may answer the DHT check of the
      // version before it with this one.
      const accepted = this.accepted.get(key)
      if (accepted === undefined) this.accepted.set(key, [offered])
      else accepted.push(offered)
      try {
        this.watch(name, routingKey)
        // Devices listening on connected nodes hear of the version at once: first with its blocks,
        // when they are small, for UserSpace devices (they need nothing from this node's disk, so
        // it goes out before the blocks are written), then its record alone on the
        // IPNS-over-PubSub topic, for everyone, once the blocks can be fetched from here.
        const pubsub = this.pubsub()
        if (pubsub !== undefined) {
          const message = versionMessage(record, blocks)
          if (message !== undefined) pubsub.publish(versionTopic(routingKey), message).catch(() => {})
        }
        const added = await this.storeBlocks(blocks)
        pubsub?.publish(recordTopic(routingKey), record).catch(() => {})
        return added
      } catch (err) {
        // Refused whole: nothing of it counts as accepted.
        this.unaccept(key, offered)
        throw err
      }
    })
    // The same version with an earlier validity than the one held: nothing to do.
    if (added === undefined) return

    const check = new Promise<void>((resolve, reject) => {
      const item: Check = { offered, root: info.cid, done: (err) => { if (err === undefined) resolve(); else reject(err) } }
      const queue = this.checks.get(key)
      if (queue !== undefined) { queue.push(item); return }
      this.checks.set(key, [item])
      void this.runChecks(name, routingKey, key)
    })

    if (options.onAccepted !== undefined) {
      options.onAccepted()
      return await check
    }
    // Waited for only briefly, so that a DHT without reachable peers never holds a publish for long.
    let timer: ReturnType<typeof setTimeout> | undefined
    const waited = await Promise.race([
      check.then(() => false, async (err: unknown) => {
        // A refusal the caller hears leaves no block behind.
        await this.dropBlocks(added)
        throw err
      }),
      new Promise<boolean>(resolve => { timer = setTimeout(() => { resolve(true) }, this.options.recordPutWaitMs) })
    ])
    clearTimeout(timer)
    // Past the wait the version counts as published (its record went out on pubsub) and a refusal
    // that comes later reaches listeners (the record that won is told to them) and the next publish.
    if (waited) check.catch(() => {})
  }

  /** The newer of the record this node holds for `key` and the version it accepted last. */
  private newestOf (routingKey: Uint8Array, held: ValidRecord | undefined): ValidRecord | undefined {
    const accepted = this.accepted.get(keyString(routingKey))?.at(-1)
    if (accepted === undefined) return held
    if (held === undefined) return accepted
    return ipnsSelector(routingKey, [accepted.bytes, held.bytes]) === 0 ? accepted : held
  }

  /**
   * The network steps of a name, one at a time: each takes every version accepted since the last
   * one began, so a burst of versions costs one DHT query per step, not one per version.
   */
  private async runChecks (name: string, routingKey: Uint8Array, key: string): Promise<void> {
    const queue = this.checks.get(key) as Check[]
    try {
      while (queue.length > 0) {
        const batch = queue.splice(0)
        let failure: Error | undefined
        try {
          await this.checkAndKeep(name, routingKey, batch)
        } catch (err) {
          failure = err instanceof Error ? err : new StoreError(String(err))
        } finally {
          for (const item of batch) this.unaccept(key, item.offered)
        }
        for (const item of batch) item.done(failure)
      }
    } finally {
      this.checks.delete(key)
    }
  }

  /**
   * The network step of versions accepted one after another (`batch`, oldest first): before this
   * node keeps or announces the newest, the DHT is asked for a record the oldest must not replace
   * (this node may have missed one). It is asked while the local store still holds the older
   * record: kad-dht answers with the best of its local and network copies and sends that best to
   * peers that lack it, so asking with ours stored would spread ours over a better one. A better
   * record found there, or heard meanwhile, stands here too (listeners hear of it, the space merges
   * it) and every version of the batch is refused with it: the later ones were built on the first.
   */
  private async checkAndKeep (name: string, routingKey: Uint8Array, batch: Check[]): Promise<void> {
    const key = keyString(routingKey)
    const oldest = (batch[0] as Check).offered
    const newest = batch.at(-1) as Check
    // A later version of this node's, accepted meanwhile, may already be out there (peers heard it
    // on pubsub): it is no rival, its own step keeps it.
    const found = await this.bounded(async (signal) => this.betterOnNetwork(name, routingKey, oldest.bytes, signal))
    const better = this.isAccepted(key, found) ? undefined : found
    await this.exclusive(routingKey, async () => {
      const held = await this.readLocal(name, routingKey)
      if (better !== undefined) {
        if (judge(routingKey, held, better.bytes, 'heard') === 'new') await this.keep(name, routingKey, better)
        this.tell(routingKey, better.bytes)
        throw new ConflictError(`a newer record for ${name} than sequence ${readRecord(oldest.bytes).sequence} is on the network`, { record: better.bytes })
      }
      // A record heard from another device while the DHT was asked may have beaten this one; a
      // later version of this node's may be there already (kad-dht stores the best record a
      // query found), and then this one is done.
      const judged = judge(routingKey, held, newest.offered.bytes, 'publish')
      if (judged === 'older' || (judged !== 'new' && this.isAccepted(key, held))) return
      if (judged !== 'new' && held !== undefined) {
        throw new ConflictError(`a newer record for ${name} than sequence ${readRecord(newest.offered.bytes).sequence} reached this node first`, { record: held.bytes })
      }
      await this.keep(name, routingKey, newest.offered)
      this.scheduleRetention(name, routingKey)
      // The DHT put copies the record to the closest peers, and the version's root is announced
      // as provided, in the background (see announce).
      void this.announce(name, routingKey, newest.offered.bytes, newest.root)
    })
  }

  /** Whether `record` is one of the versions accepted here whose network step has not ended. */
  private isAccepted (key: string, record: ValidRecord | undefined): boolean {
    return record !== undefined && this.accepted.get(key)?.some(r => equals(r.bytes, record.bytes)) === true
  }

  private unaccept (key: string, offered: ValidRecord): void {
    const accepted = this.accepted.get(key)?.filter(r => r !== offered) ?? []
    if (accepted.length === 0) this.accepted.delete(key)
    else this.accepted.set(key, accepted)
  }

  /** Stores the blocks this node lacks and returns their CIDs. */
  private async storeBlocks (blocks: Block[]): Promise<CID[]> {
    const added: CID[] = []
    let failure: unknown
    try {
      // A few at a time (a version's blocks are independent files on a disk blockstore); after a
      // failure the writes under way end before any block added is removed.
      await eachLimited(blocks, STORE_CONCURRENCY, async (block) => {
        if (failure !== undefined) return
        try {
          if (await this.helia.blockstore.has(block.cid)) return
          await this.helia.blockstore.put(block.cid, block.bytes)
          added.push(block.cid)
        } catch (err) {
          failure ??= err
        }
      })
      if (failure !== undefined) throw failure
      // Verified blocks just stored are what a peer asks for next: a DAG_PROTOCOL answer reads them from memory.
      dagServerOf(this.helia)?.remember(blocks)
    } catch (err) {
      await this.dropBlocks(added)
      throw new StoreError(`cannot store blocks: ${(err as Error).message}`, { cause: err })
    }
    return added
  }

  /** Deletes blocks this store has just added and no record references. */
  private async dropBlocks (cids: CID[]): Promise<void> {
    for (const cid of cids) await Promise.resolve(this.helia.blockstore.delete(cid)).catch(() => {})
  }

  /**
   * Announces blocks as provided by this node, in the background, bounded by the routing timeout:
   * the blocks are stored, and peers connected to this node fetch them by bitswap without any
   * provider record; the DHT only helps others find them.
   */
  private provideAll (cids: CID[]): void {
    if (!this.options.provide || cids.length === 0) return
    void this.background(async (signal) => {
      await eachLimited(cids, PROVIDE_CONCURRENCY, async (cid) => {
        await this.helia.routing.provide(cid, { signal }).catch(() => {})
      })
    })
  }

  async getBlock (cid: CID, options: AbortOptions = {}): Promise<Uint8Array> {
    throwIfAborted(options.signal)
    cid = asCID(cid)
    const pushed = this.pushed.get(cidKey(cid))
    if (pushed !== undefined) return pushed
    // A digest no hash makes is never looked for; identity CIDs carry their block, which helia's
    // blockstore hands back.
    refuseUnheld(cid)
    const signal = options.signal ?? AbortSignal.timeout(this.options.fetchTimeoutMs)
    // Local reads go straight through; network fetches wait for one of `fetchConcurrency` slots.
    const local = await Promise.resolve(this.helia.blockstore.has(cid)).catch(() => false)
    return await (local ? this.readBlock(cid, this.helia.blockstore, signal) : this.fetchSlots.run(signal, async () => this.readBlock(cid, this.helia.blockstore, signal), () => new NotFoundError(`block ${cidLabel(cid)} not found before the signal fired`)))
  }

  /**
   * The blocks of the DAG under `cid` (and `path`), fetched through one helia session: providers are
   * looked up once, for the root (or the peer that sent the root is asked), never once per block,
   * and at most `sessionConcurrency` blocks are requested at a time. Follows dag-cbor links (raw blocks
   * are leaves), within DEFAULT_MAX_DAG_BLOCKS and DEFAULT_MAX_DAG_BYTES. Each block is verified and
   * kept locally; a block that cannot be had fails the call (NotFoundError) after `fetchTimeoutMs`.
   */
  async getDag (cid: CID, options: GetDagOptions = {}): Promise<Block[]> {
    throwIfAborted(options.signal)
    cid = asCID(cid)
    this.serve()
    // A DAG whose root this node lacks is first asked of connected peers whole, in one round trip.
    const asked = new Set<string>()
    const held = this.pushed.get(cidKey(cid)) !== undefined || await Promise.resolve(this.helia.blockstore.has(cid)).catch(() => false)
    if (!held) {
      const libp2p = libp2pOf(this.helia)
      const fetched = libp2p === undefined ? undefined : await this.getDagFromPeers(await dagPeers(libp2p, this.options.dagPeers), cid, options, asked)
      if (fetched !== undefined) return fetched
    }
    const perBlock = (): AbortSignal => options.signal === undefined
      ? AbortSignal.timeout(this.options.fetchTimeoutMs)
      : AbortSignal.any([options.signal, AbortSignal.timeout(this.options.fetchTimeoutMs)])
    // The root first, noting which peer sent it: that peer is the session's first provider.
    let provider: CID | undefined
    const onProgress = (event: { type: string, detail?: unknown }): void => {
      if (event.type === 'helia:block-broker:receive-block') provider ??= (event.detail as { provider?: CID }).provider
    }
    const rootBytes = await this.readBlock(cid, this.helia.blockstore, perBlock(), onProgress)
    if (!held && provider !== undefined) {
      // The peer that sent the root (found through the routers) may answer the rest in one go.
      const fetched = await this.getDagFromPeers([peerIdFromCID(provider)], cid, options, asked)
      if (fetched !== undefined) return fetched
    }
    // A node with no block brokers has no sessions (helia throws InvalidConfigurationError): it reads
    // what it holds, and a missing block is NotFoundError.
    let session: Pick<Helia['blockstore'], 'get'> & { close: () => void }
    try {
      session = this.helia.blockstore.createSession(cid, { providers: provider === undefined ? undefined : [provider], signal: options.signal })
    } catch (err) {
      if ((err as { name?: unknown })?.name !== 'InvalidConfigurationError') throw err
      session = { get: this.helia.blockstore.get.bind(this.helia.blockstore), close: () => {} }
    }
    try {
      const out: Block[] = [{ cid, bytes: rootBytes }]
      let bytes = rootBytes.byteLength
      const seen = new Set<string>([cidKey(cid)])
      // No barrier between levels: a block's children are asked for as soon as it arrives, so one
      // slow block holds up only what lies below it. The queue is read by index (no shift()).
      const queue: CID[] = []
      const enqueue = (links: CID[]): void => {
        for (const link of links) {
          const key = cidKey(link)
          if (seen.has(key)) continue
          seen.add(key)
          queue.push(link)
        }
        if (seen.size > DEFAULT_MAX_DAG_BLOCKS) throw new TooLargeError(`the DAG under ${cidLabel(cid)} has over ${DEFAULT_MAX_DAG_BLOCKS} blocks`)
      }
      enqueue(linksAt(cid, rootBytes, segmentsOf(options.path)))
      await new Promise<void>((resolve, reject) => {
        let next = 0
        let active = 0
        let failed = false
        const fail = (err: unknown): void => { failed = true; reject(err) }
        const pump = (): void => {
          while (!failed && active < this.options.sessionConcurrency && next < queue.length) {
            const child = queue[next++] as CID
            active++
            this.readBlock(child, session, perBlock()).then((block) => {
              active--
              if (failed) return
              bytes += block.byteLength
              if (bytes > DEFAULT_MAX_DAG_BYTES) throw new TooLargeError(`the DAG under ${cidLabel(cid)} is over ${DEFAULT_MAX_DAG_BYTES} bytes`)
              out.push({ cid: child, bytes: block })
              if (child.code === dagCbor.code) enqueue(linksAt(child, block, []))
              pump()
            }).catch(fail)
          }
          if (!failed && active === 0 && next >= queue.length) resolve()
        }
        pump()
      })
      return out
    } finally {
      session.close()
    }
  }

  /**
   * The DAG under `cid` (and `path`) from the first of `peers` that answers it whole over
   * DAG_PROTOCOL (fetchDag checks every block), or undefined when none does. Each peer gets
   * `fetchTimeoutMs`; `dagPeers` 0 asks none, and none is asked twice (`asked`). The blocks are kept in helia's blockstore in the
   * background, in one `putMany`, not written one file at a time on the way to the caller.
   */
  private async getDagFromPeers (peers: PeerId[], cid: CID, options: GetDagOptions, asked: Set<string>): Promise<Block[] | undefined> {
    const libp2p = libp2pOf(this.helia)
    if (libp2p === undefined || this.options.dagPeers === 0) return undefined
    for (const peer of peers.slice(0, this.options.dagPeers)) {
      // A peer asked once for this DAG is not asked again.
      if (asked.has(peer.toString())) continue
      asked.add(peer.toString())
      const timeout = AbortSignal.timeout(this.options.fetchTimeoutMs)
      const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
      try {
        const blocks = await fetchDag(libp2p, peer, cid, options.path, { signal, maxBlocks: DEFAULT_MAX_DAG_BLOCKS, maxBytes: DEFAULT_MAX_DAG_BYTES })
        this.keepFetched(blocks)
        return blocks
      } catch {
        // Refused, unreachable, too slow, too big or a bad block: the next peer, then bitswap.
        throwIfAborted(options.signal)
      }
    }
    return undefined
  }

  /** Writes fetched blocks this node lacks to its blockstore, one batch after another, in the background. */
  private keepFetched (blocks: Block[]): void {
    const helia = this.helia
    // Stops at the first block after the node stops: its stores are closing.
    const whileStarted = function * (): Generator<Block> {
      for (const block of blocks) {
        if (helia.status !== 'started') return
        yield block
      }
    }
    this.fetchedWrites = this.fetchedWrites.then(async () => {
      for await (const _ of helia.blockstore.putMany(whileStarted())) { /* drained */ }
    }).catch(() => {})
  }

  /** The background writes of blocks `getDag` fetched over DAG_PROTOCOL; resolves when those started so far are done. */
  fetchedWrites: Promise<void> = Promise.resolve()

  /** One block from `blockstore` (helia's, or a session), bounded by `signal` and the block limit, verified. */
  private async readBlock (cid: CID, blockstore: Pick<Helia['blockstore'], 'get'>, signal: AbortSignal, onProgress?: (event: any) => void): Promise<Uint8Array> {
    const pushed = this.pushed.get(cidKey(cid))
    if (pushed !== undefined) return pushed
    let bytes: Uint8Array
    try {
      bytes = await concat(blockstore.get(cid, { signal, onProgress }))
    } catch (err) {
      // UserSpace never writes a block over the bitswap limit: a bigger one is not one of ours.
      if (err instanceof TooLargeError) throw new TooLargeError(`block ${cidLabel(cid)} is over the ${MAX_BLOCK_BYTES}-byte limit`, { cause: err })
      if (signal.aborted || isNotFound(err)) {
        throw new NotFoundError(`block ${cidLabel(cid)} not found${signal.aborted ? ' before the signal fired' : ''}`)
      }
      throw new StoreError(`cannot read block ${cidLabel(cid)}: ${(err as Error).message}`, { cause: err })
    }
    if (!(await verifyBlock(cid, bytes))) {
      throw new IntegrityError(`block ${cidLabel(cid)} does not match its CID`)
    }
    return plain(bytes)
  }

  async putRecord (name: string, record: Uint8Array, options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    await this.commitRecord(name, record, options)
  }

  /** Stores a record after the local and network checks (see publish), and puts it to the DHT. */
  private async commitRecord (name: string, record: Uint8Array, options: AbortOptions): Promise<void> {
    throwIfAborted(options.signal)
    const info = await validateRecord(name, record, { nowMs: this.options.nowMs })
    const routingKey = routingKeyOf(name)
    // Fails at once on a node that is not started.
    this.getRouters()
    const offered: ValidRecord = { bytes: record, ttlMs: info.ttlMs }

    // One step per name, so that no other record of it is stored between the check and the write.
    let checked!: (verdict: Verdict | Error) => void
    const verdict = new Promise<Verdict | Error>((resolve) => { checked = resolve })
    let superseded = false
    let put: Promise<void> = Promise.resolve()
    const work = this.exclusive(routingKey, async () => {
      // A conditional write (see publish). An equal record is stored and announced again (hubs
      // re-announce this way).
      const judged = judge(routingKey, this.newestOf(routingKey, await this.readLocal(name, routingKey)), record, 'publish')
      checked(judged)
      if (judged !== 'new') return
      this.watch(name, routingKey)
      this.pubsub()?.publish(recordTopic(routingKey), record).catch(() => {})
      // Asked while the local store still holds the older record (see checkAndKeep).
      const better = await this.bounded(async (signal) => this.betterOnNetwork(name, routingKey, record, signal))
      if (better !== undefined) {
        superseded = true
        await this.keep(name, routingKey, better)
        this.tell(routingKey, better.bytes)
        return
      }
      await this.keep(name, routingKey, offered)
      put = this.announce(name, routingKey, record, undefined)
    })
    // A failure of the local check or store reaches the caller whether or not the wait is over.
    work.catch((err: unknown) => { checked(err instanceof Error ? err : new StoreError(String(err))) })
    const judged = await verdict
    if (judged instanceof Error) throw judged
    if (judged === 'lower') throw new ConflictError(`record sequence ${info.sequence} for ${name} is lower than the one this node holds`)
    if (judged === 'equivocation') throw new EquivocationError(`record sequence ${info.sequence} for ${name} already points elsewhere on this node`)
    if (judged !== 'new') return
    // Waits for the DHT put too, so that a reader elsewhere finds the record at once on a healthy
    // network, but only briefly, so that a DHT without reachable peers never holds it for long.
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      work.then(async () => put),
      new Promise<void>(resolve => { timer = setTimeout(resolve, this.options.recordPutWaitMs) })
    ])
    clearTimeout(timer)
    if (superseded) throw new ConflictError(`a newer record for ${name} than sequence ${info.sequence} is on the network`)
  }

  /**
   * Sends a record to the DHT and announces its version's root (`root`) as provided here, bounded by
   * the routing timeout. One announcement per name at a time: a record that comes while one is under
   * way waits, and a newer one that comes meanwhile replaces it, so back-to-back versions cost one
   * DHT put and one provide each time the last ones end, not one per version, and this node never
   * puts a record after a newer one of the same name (the queue is the node's, shared by its stores). A record that a newer one held here has replaced (heard
   * from another device) is not put at all. Resolves when a put of this record or a newer one ended.
   * Readers lose nothing by a skipped version: they resolve the newest record, whose root is provided.
   */
  private async announce (name: string, routingKey: Uint8Array, record: Uint8Array, root: CID | undefined): Promise<void> {
    const key = keyString(routingKey)
    await new Promise<void>((resolve) => {
      const slot = this.announcing.get(key)
      if (slot !== undefined) {
        slot.next = { record, root, done: [...(slot.next?.done ?? []), resolve] }
        return
      }
      const started = { next: { record, root, done: [resolve] } as Announcement | undefined }
      this.announcing.set(key, started)
      void this.announceAll(name, routingKey, key, started)
    })
  }

  private async announceAll (name: string, routingKey: Uint8Array, key: string, slot: { next: Announcement | undefined }): Promise<void> {
    try {
      for (let next = slot.next; next !== undefined; next = slot.next) {
        slot.next = undefined
        const { record, root, done } = next
        try {
          const held = await this.readLocal(name, routingKey)
          const superseded = held !== undefined && !equals(held.bytes, record) && ipnsSelector(routingKey, [record, held.bytes]) === 1
          if (superseded) continue
          await this.background(async (signal) => {
            await Promise.all([
              ...this.getRouters().network.map(async router => router.put(routingKey, record, { signal }).catch(() => {})),
              ...(root !== undefined && this.options.provide ? [this.helia.routing.provide(root, { signal }).catch(() => {})] : [])
            ])
          })
        } finally {
          for (const resolve of done) resolve()
        }
      }
    } finally {
      this.announcing.delete(key)
    }
  }

  /**
   * A valid record on the network that `record` must not replace: a higher sequence, or the same
   * sequence with another value (a race another device won at the DHT). Undefined when none.
   */
  private async betterOnNetwork (name: string, routingKey: Uint8Array, record: Uint8Array, signal: AbortSignal): Promise<ValidRecord | undefined> {
    const ours = readRecord(record)
    const found = await Promise.all(this.getRouters().network.map(async (router) => {
      try {
        const bytes = plain(await router.get(routingKey, { signal, validate: false }))
        if (equals(bytes, record)) return undefined
        const info = await validateRecord(name, bytes, { nowMs: this.options.nowMs })
        const wins = info.sequence > ours.sequence || (info.sequence === ours.sequence && info.value !== ours.value)
        return wins ? { bytes, ttlMs: info.ttlMs } : undefined
      } catch {
        return undefined // none, unreachable, timed out or invalid: nothing better there
      }
    }))
    return found.find(r => r !== undefined)
  }

  /**
   * Every `retentionIntervalVersions` publishes of a name, one retention pass in the background. It
   * runs as a step of the name (no publish stores blocks meanwhile, so none can lean on a block it
   * is deleting) against the newest record held then, which may be another device's.
   */
  private scheduleRetention (name: string, routingKey: Uint8Array): void {
    if (!this.options.retention) return
    const key = keyString(routingKey)
    const count = (this.sinceRetention.get(key) ?? 0) + 1
    if (count < this.options.retentionIntervalVersions) { this.sinceRetention.set(key, count); return }
    this.sinceRetention.set(key, 0)
    this.retentionRuns = this.retentionRuns.then(async () => this.exclusive(routingKey, async () => {
      const held = await this.readLocal(name, routingKey)
      const current = held === undefined ? undefined : readRecord(held.bytes).cid
      if (current === undefined) return
      const { retainVersions } = await import('./helia-retention.js')
      await retainVersions(this.helia.blockstore, current, { maxRetainedVersions: this.options.maxRetainedVersions })
    })).catch(() => {})
  }

  /** The retention passes, one after another; resolves when those started so far are done. */
  retentionRuns: Promise<void> = Promise.resolve()

  /** Runs `step` after every earlier step for the same name has ended. */
  private async exclusive<T> (routingKey: Uint8Array, step: () => Promise<T>): Promise<T> {
    const key = keyString(routingKey)
    const run = (this.recordLocks.get(key) ?? Promise.resolve()).catch(() => {}).then(step)
    this.recordLocks.set(key, run)
    try {
      return await run
    } finally {
      if (this.recordLocks.get(key) === run) this.recordLocks.delete(key)
    }
  }

  /** Stores a validated record locally and counts it fresh for its TTL. */
  private async keep (name: string, routingKey: Uint8Array, record: ValidRecord): Promise<void> {
    try {
      await this.getRouters().local.put(routingKey, record.bytes)
    } catch (err) {
      throw new StoreError(`cannot store the record for ${name}: ${(err as Error).message}`, { cause: err })
    }
    this.markFresh(routingKey, record.ttlMs)
  }

  /** Passes a record to the listeners of its name. */
  private tell (routingKey: Uint8Array, bytes: Uint8Array): void {
    for (const listener of this.watches.get(recordTopic(routingKey))?.listeners ?? []) {
      try { listener(bytes) } catch { /* a listener's failure is its own */ }
    }
  }

  /**
   * A record heard from elsewhere (pubsub, the DHT), already validated for `name`. One that beats
   * the local record (and the version accepted here, if any) replaces it; one with the same sequence and another value (two devices raced)
   * is not kept, but both reach the name's listeners, whose spaces merge them. Any other is dropped.
   */
  private async hear (name: string, routingKey: Uint8Array, record: ValidRecord): Promise<void> {
    const judged = await this.exclusive(routingKey, async () => {
      // Judged against a version accepted here too: its own network step keeps it, or not.
      const judged = judge(routingKey, this.newestOf(routingKey, await this.readLocal(name, routingKey)), record.bytes, 'heard')
      if (judged === 'new') await this.keep(name, routingKey, record)
      return judged
    })
    if (judged === 'new' || judged === 'equivocation') this.tell(routingKey, record.bytes)
  }

  /** Runs a network step bounded by the routing timeout; a failure or timeout counts as no answer. */
  private async bounded<T> (step: (signal: AbortSignal) => Promise<T | undefined>): Promise<T | undefined> {
    const signal = AbortSignal.timeout(this.options.routingTimeoutMs)
    return await Promise.race([step(signal).catch(() => undefined), aborted(signal).then(() => undefined)])
  }

  /** Runs best-effort network work, ended by the routing timeout; callers may leave it running. */
  private async background (step: (signal: AbortSignal) => Promise<void>): Promise<void> {
    const signal = AbortSignal.timeout(this.options.routingTimeoutMs)
    await step(signal).catch(() => {})
  }

  /**
   * Listens for records of `name` published by connected nodes over libp2p pubsub (the node needs a
   * `pubsub` service, as createHeliaNode gives it). `listener` hears a record only once it is
   * validated (signature, name) and either beats the one this node holds, which it then replaces,
   * or has its sequence with another value (a race to merge); a forged, stale or repeated record
   * is dropped. Without pubsub this listens to nothing.
   */
  subscribe (name: string, listener: RecordListener): () => void {
    const watch = this.watch(name, routingKeyOf(name), listener)
    if (watch === undefined) return () => {}
    return () => {
      watch.listeners.delete(listener)
      if (watch.listeners.size === 0 && !watch.auto) this.unwatch(watch)
    }
  }

  /**
   * Joins the pubsub topic of `name`: for `listener`, or on the store's own account (then at most
   * `maxWatchedNames` names are kept, the oldest dropped first).
   */
  private watch (name: string, routingKey: Uint8Array, listener?: RecordListener): Watch | undefined {
    const pubsub = this.pubsub()
    if (pubsub === undefined) return undefined
    const topic = recordTopic(routingKey)
    let watch = this.watches.get(topic)
    if (watch === undefined) {
      watch = { name, routingKey, listeners: new Set(), auto: false }
      this.watches.set(topic, watch)
      if (this.messageListener === undefined) {
        this.messageListener = ((event: CustomEvent<{ topic?: string, data?: Uint8Array }>) => { this.onMessage(event.detail) }) as EventListener
        pubsub.addEventListener('message', this.messageListener)
      }
      pubsub.subscribe(topic)
      pubsub.subscribe(versionTopic(routingKey))
    }
    if (listener !== undefined) {
      watch.listeners.add(listener)
    } else {
      // Most recently used last, so the oldest is the first dropped.
      this.watches.delete(topic)
      this.watches.set(topic, watch)
      watch.auto = true
      const auto = [...this.watches.values()].filter(w => w.auto)
      for (const old of auto.slice(0, Math.max(0, auto.length - this.options.maxWatchedNames))) {
        old.auto = false
        if (old.listeners.size === 0) this.unwatch(old)
      }
    }
    return watch
  }

  private unwatch (watch: Watch): void {
    const topic = recordTopic(watch.routingKey)
    if (this.watches.get(topic) !== watch) return
    this.watches.delete(topic)
    this.pubsub()?.unsubscribe(topic)
    this.pubsub()?.unsubscribe(versionTopic(watch.routingKey))
  }

  private onMessage (message: { topic?: string, data?: Uint8Array }): void {
    if (typeof message?.topic !== 'string' || !(message.data instanceof Uint8Array)) return
    if (message.topic.startsWith(VERSION_TOPIC_PREFIX)) {
      const watch = this.watches.get('/record/' + message.topic.slice(VERSION_TOPIC_PREFIX.length))
      if (watch !== undefined) this.onVersion(watch, plain(message.data)).catch(() => {})
      return
    }
    const watch = this.watches.get(message.topic)
    if (watch === undefined) return
    const bytes = plain(message.data)
    validateRecord(watch.name, bytes, { nowMs: this.options.nowMs })
      .then(async (info) => { await this.hear(watch.name, watch.routingKey, { bytes, ttlMs: info.ttlMs }) })
      .catch(() => {}) // forged, malformed, expired or unstorable: dropped
  }

  /**
   * A version message: its record is judged like any heard record, after its blocks are checked
   * against their CIDs and kept in memory (bounded) for the reads the record's listeners make next.
   * A message that is malformed, too large, or carries one block that does not match its CID is
   * dropped whole. The blocks are never written to disk: only the record decides what is kept.
   */
  private async onVersion (watch: Watch, data: Uint8Array): Promise<void> {
    if (data.byteLength > DEFAULT_MAX_PUSHED_VERSION_BYTES + MAX_RECORD_BYTES + 1024) return
    const decoded = decodeVersionMessage(data)
    if (decoded === undefined) return
    const info = await validateRecord(watch.name, decoded.record, { nowMs: this.options.nowMs })
    for (const block of decoded.blocks) if (!(await verifyBlock(block.cid, block.bytes))) return
    for (const block of decoded.blocks) this.remember(block)
    await this.hear(watch.name, watch.routingKey, { bytes: decoded.record, ttlMs: info.ttlMs })
  }

  private remember (block: Block): void {
    const key = cidKey(block.cid)
    if (this.pushed.has(key)) return
    this.pushed.set(key, block.bytes)
    this.pushedBytes += block.bytes.byteLength
    for (const [old, bytes] of this.pushed) {
      if (this.pushedBytes <= PUSHED_CACHE_BYTES) break
      this.pushed.delete(old)
      this.pushedBytes -= bytes.byteLength
    }
  }

  private pubsub (): PubSubLike | undefined {
    if (this.helia.status !== 'started') return undefined
    const pubsub = (this.helia as { libp2p?: { services?: { pubsub?: PubSubLike } } }).libp2p?.services?.pubsub
    return typeof pubsub?.publish === 'function' ? pubsub : undefined
  }

  async getRecord (name: string, options: GetRecordOptions = {}): Promise<Uint8Array | undefined> {
    throwIfAborted(options.signal)
    const routingKey = routingKeyOf(name)
    const routers = this.getRouters()
    const local = await this.readLocal(name, routingKey)
    if (options.nocache !== true && local !== undefined && (this.freshUntil.get(keyString(routingKey)) ?? 0) > this.options.nowMs()) {
      return local.bytes
    }

    const found: ValidRecord[] = []
    // Whether some router answered (with a record or a clean "none") before the deadline.
    let answered = false
    await this.network(options.signal, async (signal) => {
      await Promise.all(routers.network.map(async (router) => {
        let bytes: Uint8Array
        try {
          bytes = plain(await router.get(routingKey, { signal, validate: false }))
        } catch {
          // not found, unreachable or timed out: the other routers may still have it
          if (!signal.aborted) answered = true
          return
        }
        answered = true
        try {
          found.push({ bytes, ttlMs: (await validateRecord(name, bytes, { nowMs: this.options.nowMs })).ttlMs })
        } catch {
          // an invalid record from the network is ignored, never returned
        }
      }))
    })

    // A copy: a router that answers after the deadline must not change what is being returned.
    const candidates = local === undefined ? [...found] : [local, ...found]
    if (candidates.length === 0) return undefined
    const best = candidates[ipnsSelector(routingKey, candidates.map(c => c.bytes))]
    if (best === undefined) return undefined
    if (best !== local) {
      // Keep what the network had: it is then served to DHT peers and survives going offline, and
      // this node's listeners hear of it.
      await this.hear(name, routingKey, best).catch(() => {})
    }
    this.watch(name, routingKey)
    // Only a record the network confirmed counts as fresh; after a timeout the next read asks again.
    if (answered) this.markFresh(routingKey, best.ttlMs)
    return best.bytes
  }

  /** The valid local record for a name, or undefined (an expired or corrupt one counts as none). */
  private async readLocal (name: string, routingKey: Uint8Array): Promise<ValidRecord | undefined> {
    let bytes: Uint8Array
    try {
      bytes = plain(await this.getRouters().local.get(routingKey))
    } catch {
      return undefined
    }
    try {
      return { bytes, ttlMs: (await validateRecord(name, bytes, { nowMs: this.options.nowMs })).ttlMs }
    } catch {
      return undefined
    }
  }

  private markFresh (routingKey: Uint8Array, ttlMs: number): void {
    this.freshUntil.set(keyString(routingKey), this.options.nowMs() + ttlMs)
  }

  /**
   * Runs a network step bounded by the caller's signal and the routing timeout. Returns normally
   * when the timeout ends it (the step is best effort); throws AbortedError when the caller's
   * signal does.
   */
  private async network (callerSignal: AbortSignal | undefined, step: (signal: AbortSignal) => Promise<void>): Promise<void> {
    const timeout = AbortSignal.timeout(this.options.routingTimeoutMs)
    const signal = callerSignal === undefined ? timeout : AbortSignal.any([callerSignal, timeout])
    await Promise.race([step(signal), aborted(signal)])
    throwIfAborted(callerSignal)
  }

  /**
   * @helia/ipns is created on first use, because it must be created after helia has started (it
   * registers its DHT validator on the running libp2p node).
   */
  private getRouters (): Routers {
    if (this.routers !== undefined) return this.routers
    if (this.helia.status !== 'started') {
      throw new StoreError(`the helia node is ${this.helia.status}, not started`)
    }
    const name: IPNS = ipns(this.helia)
    // @helia/ipns puts its local store first, then helia's routing, then any custom routers.
    const [local, ...network] = name.routers
    if (local === undefined || String(local) !== 'LocalStoreRouting()') {
      throw new StoreError('unsupported @helia/ipns: its first router is not the local store')
    }
    this.routers = { local, network }
    return this.routers
  }
}

/** The version message for `record` and `blocks`, or undefined when the blocks are too big to ride along. */
function versionMessage (record: Uint8Array, blocks: Block[]): Uint8Array | undefined {
  let bytes = 0
  for (const block of blocks) bytes += block.bytes.byteLength
  if (bytes > DEFAULT_MAX_PUSHED_VERSION_BYTES) return undefined
  return dagCbor.encode({ record, blocks: blocks.map(b => [b.cid.bytes, b.bytes]) })
}

/** Reads a version message, or undefined when it is not one. */
function decodeVersionMessage (data: Uint8Array): { record: Uint8Array, blocks: Block[] } | undefined {
  let value: unknown
  try {
    value = dagCbor.decode(data)
  } catch {
    return undefined
  }
  const message = value as { record?: unknown, blocks?: unknown }
  if (typeof message !== 'object' || message === null || !(message.record instanceof Uint8Array) || !Array.isArray(message.blocks)) return undefined
  const blocks: Block[] = []
  let bytes = 0
  for (const item of message.blocks as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || !(item[0] instanceof Uint8Array) || !(item[1] instanceof Uint8Array)) return undefined
    let cid: CID
    try { cid = CID.decode(item[0]) } catch { return undefined }
    bytes += item[1].byteLength
    if (bytes > DEFAULT_MAX_PUSHED_VERSION_BYTES) return undefined
    blocks.push({ cid, bytes: item[1] })
  }
  return { record: message.record, blocks }
}

/** Checks every block (shape, size, CID) before any is stored: a bad one leaves the store unchanged. */
async function checkBlocks (blocks: Block[]): Promise<void> {
  if (!Array.isArray(blocks)) throw new InvalidInputError(`"blocks" expected an array of { cid, bytes }, got ${describeValue(blocks)}`)
  for (const block of blocks) {
    const cid = asCID(block?.cid)
    if (!(block.bytes instanceof Uint8Array)) throw new InvalidInputError(`"bytes" expected Uint8Array, got ${describeValue(block.bytes)}`)
    if (block.bytes.byteLength > MAX_BLOCK_BYTES) {
      throw new TooLargeError(`block ${cidLabel(cid)} is ${block.bytes.byteLength} bytes, over the ${MAX_BLOCK_BYTES}-byte limit`)
    }
    if (!(await verifyBlock(cid, block.bytes))) {
      throw new IntegrityError(`block ${cidLabel(cid)} does not match its CID`)
    }
  }
}

/** Resolves when the signal fires (never rejects), so a step can be raced against it. */
async function aborted (signal: AbortSignal): Promise<void> {
  if (signal.aborted) return
  await new Promise<void>(resolve => { signal.addEventListener('abort', () => { resolve() }, { once: true }) })
}

/** The chunks of one block, joined; more than `maxBytes` of them is a TooLargeError, read no further. */
async function concat (chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, maxBytes = MAX_BLOCK_BYTES): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let length = 0
  for await (const chunk of chunks) {
    length += chunk.byteLength
    if (length > maxBytes) throw new TooLargeError(`block is over the ${maxBytes}-byte limit`)
    parts.push(chunk)
  }
  if (parts.length === 1 && parts[0] !== undefined) return parts[0]
  const bytes = new Uint8Array(length)
  let offset = 0
  for (const part of parts) {
    bytes.set(part, offset)
    offset += part.byteLength
  }
  return bytes
}

/**
 * A plain Uint8Array view of the same memory: Node datastores hand out Buffers, which compare and
 * serialise differently from the Uint8Array a browser store would return.
 */
function plain (bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

async function eachLimited<T> (items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await fn(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/**
 * Errors helia, its block brokers and datastores raise for "no such block" — including helia's
 * InvalidConfigurationError for a node with no block brokers at all, which has nowhere to look.
 */
function isNotFound (err: unknown): boolean {
  const name = (err as { name?: unknown })?.name
  return name === 'NotFoundError' || name === 'LoadBlockFailedError' || name === 'BlockNotFoundWhileOfflineError' ||
    name === 'AbortError' || name === 'TimeoutError' || name === 'InvalidConfigurationError'
}

function asCID (value: unknown): CID {
  const cid = CID.asCID(value)
  if (cid === null) throw new InvalidInputError(`"cid" expected a CID, got ${describeValue(value)}`)
  return cid
}

function routingKeyOf (name: string): Uint8Array {
  return multihashToIPNSRoutingKey(nameToMultihash(name) as MultihashDigest<0x00 | 0x12>)
}

function keyString (routingKey: Uint8Array): string {
  let s = ''
  for (const byte of routingKey) s += byte.toString(16).padStart(2, '0')
  return s
}

function nonNegative (value: number | undefined, option: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidInputError(`"${option}" expected a number of 0 or more, got ${String(value)}`)
  }
  return value
}

/** The segments of a path below a CID (`current`, `a/b`). */
function segmentsOf (path: string | undefined): string[] {
  return (path ?? '').split('/').filter(s => s !== '')
}

function positive (value: number | undefined, option: string, unit = ' of milliseconds'): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidInputError(`"${option}" expected a positive number${unit}, got ${String(value)}`)
  }
  return value
}

/**
 * The hub's wire constants, defaults and option types: media types, the `DEFAULT_*` limits with
 * their units, and the components `createHubApp` is built from. Every other hub file reads its
 * limits from here, so a default has one name and one value.
 */
import type { BlockPrefixLookup } from './storage.js'
import type { HubRecordStore } from './record-store.js'
import type { RecordInfo } from '../store/record.js'
import type { Context, Hono } from 'hono'
import type { IncomingMessage } from 'node:http'
import type { Blockstore } from 'interface-blockstore'
import type { Datastore } from 'interface-datastore'
import type { CID } from 'multiformats/cid'

export { IPNS_RECORD_TYPE, RAW_TYPE, CAR_TYPE } from '../protocol.js'

/** @default 16 MiB */
export const DEFAULT_HUB_MAX_BODY_BYTES = 16 * 1024 * 1024
/** @default 64 MiB */
export const DEFAULT_HUB_MAX_SPACE_BYTES = 64 * 1024 * 1024
/** @default 64 MiB */
export const DEFAULT_HUB_MAX_CAR_BYTES = 64 * 1024 * 1024
/**
 * Per client address (IPv6: per /64). The burst lets one cold open of the largest space the library
 * writes (a 16 MiB private section: 1 024 buckets, one GET each, plus the record, the root and, for
 * stock helia, one provider look-up per block) through in one go; the rate still slows a flood.
 *
 * @default 200 requests per second, bursts of 2 500
 */
export const DEFAULT_RATE_LIMIT: Readonly<RateLimit> = Object.freeze({ requestsPerSecond: 200, burst: 2_500 })
/** Links one DAG walk (a CAR, a quota check, a GC mark) examines, repeated links included. @default 65 536 */
export const DEFAULT_MAX_DAG_LINKS = 65_536
/** Distinct blocks one DAG walk visits. @default 8 192 */
export const DEFAULT_HUB_MAX_DAG_BLOCKS = 8_192
/** Blocks in one upload (a 16 MiB private section is ~1 030 blocks). @default 4 096 */
export const DEFAULT_HUB_MAX_UPLOAD_BLOCKS = 4_096
/** CAR responses streaming at once, hub-wide (503 with Retry-After beyond). @default 8 */
export const DEFAULT_MAX_CAR_STREAMS = 8
/** CAR responses streaming at once to one client (429 beyond). @default 2 */
export const DEFAULT_MAX_CAR_STREAMS_PER_CLIENT = 2
/** Uploaded bytes per client that no accepted record references yet (413 beyond). @default 64 MiB */
export const DEFAULT_MAX_PENDING_BYTES_PER_CLIENT = 64 * 1024 * 1024
/** Uploaded bytes, all clients together, that no accepted record references yet (507 beyond). @default 1 GiB */
export const DEFAULT_MAX_PENDING_BYTES = 1024 * 1024 * 1024
/** Disk the hub's API may fill with blocks, hub-wide (uploads are a 507 beyond). @default 10 GiB */
export const DEFAULT_MAX_STORAGE_BYTES = 10 * 1024 * 1024 * 1024
/** How long an unreferenced block is kept before garbage collection may delete it. @default 1 hour */
export const DEFAULT_GC_GRACE_MS = 60 * 60 * 1000
/** Versions of one name that retention looks at, newest first. @default 1 000 */
export const DEFAULT_MAX_RETAINED_VERSIONS = 1_000
/** Open event streams per client address (429 beyond). @default 32 */
export const DEFAULT_MAX_EVENT_STREAMS_PER_CLIENT = 32
/**
 * How long a record PUT waits for its DHT announcement before answering anyway, when no peered hub
 * heard the record (with peered hubs, a PUT never waits for the DHT). @default 1 s
 */
export const DEFAULT_ANNOUNCE_WAIT_MS = 1_000
/** How long an announcement may run in the background. @default 30 s */
export const DEFAULT_ANNOUNCE_TIMEOUT_MS = 30_000
/** DHT announcements running at once (each name's newest record; see announce.ts). @default 4 */
export const DEFAULT_ANNOUNCE_CONCURRENCY = 4
/** Names waiting to be announced; more are left to the periodic re-announcement. @default 10 000 */
export const DEFAULT_MAX_PENDING_ANNOUNCEMENTS = 10_000
/**
 * Least time between two DHT announcements of a name whose records peered hubs hear (they serve
 * it meanwhile); the newest record waiting is the one announced. @default 10 s
 */
export const DEFAULT_ANNOUNCE_SPACING_MS = 10_000
/** How long a GET may ask the network for a record. @default 3 s */
export const DEFAULT_RESOLVE_TIMEOUT_MS = 3_000
/** How long a GET may ask the network for a missing block. @default 3 s */
export const DEFAULT_HUB_FETCH_TIMEOUT_MS = 3_000
/** Interval of the comment lines that keep event streams open through proxies. @default 15 s */
export const DEFAULT_HEARTBEAT_MS = 15_000
/** Open event streams the hub accepts at once. @default 10 000 */
export const DEFAULT_MAX_EVENT_STREAMS = 10_000
/**
 * The longest a record GET may be cached by browsers and proxies, whatever its TTL (the routing
 * spec asks for max-age = TTL; this bounds a record that asks for days). @default 1 hour
 */
export const DEFAULT_MAX_RECORD_CACHE_SECONDS = 3_600

export interface RateLimit {
  /** Tokens added per second. 0 disables rate limiting. */
  requestsPerSecond: number
  /** Bucket size: how many requests a quiet client may make at once. */
  burst: number
}

/** Sizes and rates. Every refusal is a JSON 4xx that changes nothing. */
export interface HubLimits {
  /**
   * Largest request body (CAR uploads). Checked against Content-Length and while reading.
   *
   * @default DEFAULT_HUB_MAX_BODY_BYTES (16 MiB)
   */
  maxBodyBytes?: number
  /**
   * Largest block accepted in an upload or served from the network (the bitswap limit).
   *
   * @default MAX_BLOCK_BYTES (1 MiB)
   */
  maxBlockBytes?: number
  /**
   * Largest IPNS record. The spec's limit; a lower one is allowed.
   *
   * @default MAX_RECORD_BYTES (10 KiB)
   */
  maxRecordBytes?: number
  /**
   * Stored bytes per name: the root block, its public DAG and its private blocks, summed when a
   * record is PUT (over it, the PUT is a 413). Older versions are kept only while the current one
   * and they fit in it together (retention, applied by garbage collection).
   *
   * @default DEFAULT_HUB_MAX_SPACE_BYTES (64 MiB)
   */
  maxSpaceBytes?: number
  /**
   * Largest CAR the gateway builds for one `GET /ipfs/{cid}?format=car`.
   *
   * @default DEFAULT_HUB_MAX_CAR_BYTES (64 MiB)
   */
  maxCarBytes?: number
  /**
   * Token bucket per client address. `0` (or `requestsPerSecond: 0`) disables it. CORS preflights
   * are not counted.
   *
   * @default DEFAULT_RATE_LIMIT ({ requestsPerSecond: 200, burst: 2 500 })
   */
  rateLimit?: RateLimit | 0
  /**
   * Open event streams at once (all clients); more are refused with 429.
   *
   * @default DEFAULT_MAX_EVENT_STREAMS (10 000)
   */
  maxEventStreams?: number
  /**
   * Open event streams per client address (IPv6: per /64); more are refused with 429.
   *
   * @default DEFAULT_MAX_EVENT_STREAMS_PER_CLIENT (32)
   */
  maxEventStreamsPerClient?: number
  /**
   * Links one DAG walk examines (repeated links count each time): a CAR, the quota check of a record
   * PUT, the mark of one name in garbage collection. Over it, the request is a 413.
   *
   * @default DEFAULT_MAX_DAG_LINKS (65 536)
   */
  maxDagLinks?: number
  /**
   * Blocks in one upload; more are a 413 (counted from the CAR's length prefixes, before parsing).
   *
   * @default DEFAULT_HUB_MAX_UPLOAD_BLOCKS (4 096)
   */
  maxUploadBlocks?: number
  /**
   * Distinct blocks one DAG walk visits. Over it, the request is a 413.
   *
   * @default DEFAULT_HUB_MAX_DAG_BLOCKS (8 192)
   */
  maxDagBlocks?: number
  /**
   * CAR responses streaming at once, hub-wide; more are a 503 with Retry-After.
   *
   * @default DEFAULT_MAX_CAR_STREAMS (8)
   */
  maxCarStreams?: number
  /**
   * CAR responses streaming at once to one client; more are a 429.
   *
   * @default DEFAULT_MAX_CAR_STREAMS_PER_CLIENT (2)
   */
  maxCarStreamsPerClient?: number
  /**
   * Bytes (each block charged its size, at least 4 KiB: see MIN_BLOCK_COST_BYTES) a client may have uploaded that no accepted record
   * references yet; an upload over it is a 413. Referenced blocks count against their name's quota
   * instead; unreferenced ones are collected after `gcGraceMs`.
   *
   * @default DEFAULT_MAX_PENDING_BYTES_PER_CLIENT (64 MiB)
   */
  maxPendingBytesPerClient?: number
  /**
   * Unreferenced uploaded bytes, all clients together; an upload over it is a 507.
   *
   * @default DEFAULT_MAX_PENDING_BYTES (1 GiB)
   */
  maxPendingBytes?: number
  /**
   * The hub's storage budget: what the API's blocks may be charged (each its size, at least 4 KiB;
   * on disk a small block takes less, so the budget is conservative). An upload
   * over it is a 507 until garbage collection frees space.
   *
   * @default DEFAULT_MAX_STORAGE_BYTES (10 GiB)
   */
  maxStorageBytes?: number
  /**
   * How long an uploaded (or fetched) block no retained version references is kept before garbage
   * collection deletes it: time for its record to follow.
   *
   * @default DEFAULT_GC_GRACE_MS (1 hour)
   */
  gcGraceMs?: number
  /**
   * Retention: versions of one name looked at, newest first. A name keeps its current version and
   * as many older ones as fit in `maxSpaceBytes` together (blocks shared between versions count
   * once); older ones are dropped.
   *
   * @default DEFAULT_MAX_RETAINED_VERSIONS (1 000)
   */
  maxRetainedVersions?: number
}

export interface HubAppOptions extends HubLimits {
  /**
   * The wall clock, in ms since 1970: record freshness headers, owner-binding dates, rate limits,
   * when blocks landed (garbage-collection grace). @default systemClock (Date.now)
   */
  nowMs?: () => number
  /**
   * Directory of the built demo page (`index.html` and its assets), served at `/`. When absent or
   * missing, `/` is a short page saying the demo is not built.
   *
   * @default undefined
   */
  demoDir?: string
  /** @default DEFAULT_ANNOUNCE_WAIT_MS (1 s) */
  announceWaitMs?: number
  /** @default DEFAULT_ANNOUNCE_TIMEOUT_MS (30 s) */
  announceTimeoutMs?: number
  /** @default DEFAULT_ANNOUNCE_CONCURRENCY (4) */
  announceConcurrency?: number
  /** @default DEFAULT_MAX_PENDING_ANNOUNCEMENTS (10 000) */
  maxPendingAnnouncements?: number
  /** @default DEFAULT_ANNOUNCE_SPACING_MS (10 s) */
  announceSpacingMs?: number
  /** @default DEFAULT_RESOLVE_TIMEOUT_MS (3 s) */
  resolveTimeoutMs?: number
  /** @default DEFAULT_HUB_FETCH_TIMEOUT_MS (3 s) */
  fetchTimeoutMs?: number
  /** @default DEFAULT_HEARTBEAT_MS (15 s) */
  heartbeatMs?: number
  /** @default DEFAULT_MAX_RECORD_CACHE_SECONDS (1 hour) */
  maxRecordCacheSeconds?: number
  /**
   * The origin clients reach this hub's HTTP API at (`https://hub.example.org`), named as the
   * trustless gateway in `/routing/v1/providers` answers. `startHub` defaults it to the address it
   * listens on; without it, an app answers with the origin each request was made to.
   *
   * @default the listening address (startHub), else the request's origin
   */
  publicUrl?: string
  /**
   * The key a client is rate-limited by. The default is the socket's remote address (never a
   * forwarded-for header, which any client can forge); put the hub behind a proxy that limits
   * instead, or pass a function that trusts your proxy's header.
   *
   * @default the TCP peer address, or 'unknown' when there is no socket (tests)
   */
  clientAddress?: (c: Context) => string
}

export interface HubComponents {
  /** Local blocks. A networked hub passes its helia blockstore (puts are then offered to bitswap). */
  blockstore: Blockstore
  /**
   * Finds held blocks by the start of their multihash, cheaply (a hub on disk passes its LevelDB's).
   * With it, the hub records what it stored in compact entries (storage.ts); without, whole CIDs.
   */
  blockPrefixes?: BlockPrefixLookup
  /** Durable key-value storage for records and the address index. */
  datastore: Datastore
  /** @default datastoreRecords(datastore) */
  records?: HubRecordStore
  /** Announces an accepted record to the network (the DHT); should honour `signal`. */
  announce?(name: string, record: Uint8Array, options: { signal: AbortSignal }): Promise<void>
  /** Looks a record up on the network; undefined when nobody has one. */
  resolveRemote?(name: string, options: { signal: AbortSignal }): Promise<Uint8Array | undefined>
  /** Fetches a block from the network (bitswap); throws when it cannot. Bytes are verified here. */
  fetchBlock?(cid: CID, options: { signal: AbortSignal }): Promise<Uint8Array>
  /**
   * Checks a record as `validateRecord` does (the default), e.g. on worker threads so that
   * signature checks use more than one core. Must throw the same named errors.
   */
  validate?(name: string, bytes: Uint8Array): Promise<RecordInfo>
  /**
   * Makes the given blocks durable (fsync) before an upload is acknowledged; absent when the
   * blockstore is durable by itself (or in memory).
   */
  syncBlocks?(cids: CID[]): Promise<void>
  /** More apps mounted at `/` before the static files (the Next.ID KV API). */
  routes?: Hono[]
  /**
   * The hub's peer id (`12D3Koo…`), the `ID` of its provider records; a networked hub passes its
   * libp2p node's, which is kept across restarts.
   *
   * @default a fresh Ed25519 peer id per app
   */
  peerId?: string
  /** The hub's libp2p multiaddrs, sent beside its gateway in provider records (bitswap). @default none */
  libp2pAddrs?(): string[]
  /**
   * Peered hubs (pubsub.ts): `publish` tells them of an accepted record (with its root block when
   * the hub has it) and resolves once enough of them hold the version, or after a bounded wait,
   * with the number of hubs the record was sent to (0 or nothing: none heard it).
   */
  cluster?: { publish(name: string, record: Uint8Array, rootBytes?: Uint8Array): Promise<number | undefined> }
}

/** What @hono/node-server passes as `c.env`; absent under `app.request()`. */
export type Env = { Bindings: { incoming?: IncomingMessage } }

// Cluster (pubsub.ts): replication between peered hubs.
/** Hubs holding each space's current version, the accepting hub included. @default 2 */
export const DEFAULT_REPLICAS = 2
/** Longest a PUT waits for the chosen replicas to hold the version before answering anyway. @default 5 s */
export const DEFAULT_REPLICA_WAIT_MS = 5_000
/** Pubsub messages a hub takes from one peer per second on the cluster topics (bursts of 20×). @default 200 */
export const DEFAULT_PEER_MESSAGES_PER_SECOND = 200
/** Record checks from peers running at once; more are ignored (the sender's DHT put still carries them). @default 64 */
export const DEFAULT_MAX_PEER_CHECKS = 64
/** Versions waiting to be replicated; a newer record of a queued name replaces its entry. @default 1 024 */
export const DEFAULT_MAX_REPLICATION_QUEUE = 1_024
/** Versions replicated at once. @default 2 */
export const DEFAULT_REPLICATION_CONCURRENCY = 2

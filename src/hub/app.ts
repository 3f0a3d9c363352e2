/**
 * The hub's HTTP API as a Hono app, built from small injected components (a blockstore, a datastore
 * and, on a networked hub, functions that announce, resolve and fetch over libp2p), so that every
 * handler runs in tests through `app.request()` with memory stores and no socket.
 *
 * Routes (standards first):
 * - `GET`/`PUT /routing/v1/ipns/{name}` — Delegated Routing V1 IPNS (`application/vnd.ipfs.ipns-record`)
 * - `GET /ipfs/{cid}` — trustless gateway: `application/vnd.ipld.raw` (`?format=raw`) or
 *   `application/vnd.ipld.car` (`?format=car`, `dag-scope=block|entity|all`)
 * - `POST /api/v1/blocks` — upload a CAR of blocks, each verified against its CID, all or nothing
 * - `GET /api/v1/events/{name}` — server-sent events, `event: record` with the base64 record
 * - `GET /api/v1/address/{address}` — the IPNS name bound to a wallet address
 * - `GET /` and files below it — the demo page from `demoDir`
 *
 * Every refusal is JSON `{ "message", "name" }` with a 4xx status and changes nothing (see
 * http-errors.ts); checks all run before the first write.
 */
import { readFile, stat } from 'node:fs/promises'
import { resolve, sep } from 'node:path'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as dagCbor from '@ipld/dag-cbor'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { streamSSE } from 'hono/streaming'
import { getMimeType } from 'hono/utils/mime'
import { Key } from 'interface-datastore'
import { equals } from 'multiformats/bytes'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { toBase64 } from '../crypto/bytes.js'
import { checksumAddress } from '../crypto/eip191.js'
import {
  ConflictError, EquivocationError, IntegrityError, InvalidInputError, NotFoundError, RateLimitError,
  TooLargeError, UserSpaceError
} from '../errors.js'
import { decodeRoot, verifyOwner } from '../space/root.js'
import { MAX_BLOCK_BYTES, encodeCar, verifyBlock } from '../store/blocks.js'
import { canonicalName, MAX_RECORD_BYTES, readRecord, validateRecord } from '../store/record.js'
import { httpErrorHandler } from './http-errors.js'
import type { RecordInfo } from '../store/record.js'
import type { Context, MiddlewareHandler } from 'hono'
import type { IncomingMessage } from 'node:http'
import type { Blockstore } from 'interface-blockstore'
import type { Datastore } from 'interface-datastore'

/** The IPNS record media type (Delegated Routing V1, IPNS record spec). */
export const IPNS_RECORD_TYPE = 'application/vnd.ipfs.ipns-record'
/** Trustless gateway media types. */
export const RAW_TYPE = 'application/vnd.ipld.raw'
export const CAR_TYPE = 'application/vnd.ipld.car'

/** @default 16 MiB */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
/** @default 64 MiB */
export const DEFAULT_MAX_SPACE_BYTES = 64 * 1024 * 1024
/** @default 64 MiB */
export const DEFAULT_MAX_CAR_BYTES = 64 * 1024 * 1024
/** @default 50 requests per second, bursts of 200, per client address */
export const DEFAULT_RATE_LIMIT: Readonly<RateLimit> = Object.freeze({ requestsPerSecond: 50, burst: 200 })
/** How long a record PUT waits for its DHT announcement before answering anyway. @default 1 s */
export const DEFAULT_ANNOUNCE_WAIT_MS = 1_000
/** How long an announcement may run in the background. @default 30 s */
export const DEFAULT_ANNOUNCE_TIMEOUT_MS = 30_000
/** How long a GET may ask the network for a record. @default 3 s */
export const DEFAULT_RESOLVE_TIMEOUT_MS = 3_000
/** How long a GET may ask the network for a missing block. @default 3 s */
export const DEFAULT_FETCH_TIMEOUT_MS = 3_000
/** Interval of the comment lines that keep event streams open through proxies. @default 15 s */
export const DEFAULT_HEARTBEAT_MS = 15_000
/** Open event streams the hub accepts at once. @default 10 000 */
export const DEFAULT_MAX_EVENT_STREAMS = 10_000
/** The longest a record GET may be cached by browsers and proxies, whatever its TTL. @default 60 s */
export const DEFAULT_MAX_RECORD_CACHE_SECONDS = 60

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
   * @default DEFAULT_MAX_BODY_BYTES (16 MiB)
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
   * record is PUT (history is not counted). Over it, the PUT is a 413.
   *
   * @default DEFAULT_MAX_SPACE_BYTES (64 MiB)
   */
  maxSpaceBytes?: number
  /**
   * Largest CAR the gateway builds for one `GET /ipfs/{cid}?format=car`.
   *
   * @default DEFAULT_MAX_CAR_BYTES (64 MiB)
   */
  maxCarBytes?: number
  /**
   * Token bucket per client address. `0` (or `requestsPerSecond: 0`) disables it. CORS preflights
   * are not counted.
   *
   * @default DEFAULT_RATE_LIMIT ({ requestsPerSecond: 50, burst: 200 })
   */
  rateLimit?: RateLimit | 0
  /**
   * Open event streams at once (all clients); more are refused with 429.
   *
   * @default DEFAULT_MAX_EVENT_STREAMS (10 000)
   */
  maxEventStreams?: number
}

export interface HubAppOptions extends HubLimits {
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
  /** @default DEFAULT_RESOLVE_TIMEOUT_MS (3 s) */
  resolveTimeoutMs?: number
  /** @default DEFAULT_FETCH_TIMEOUT_MS (3 s) */
  fetchTimeoutMs?: number
  /** @default DEFAULT_HEARTBEAT_MS (15 s) */
  heartbeatMs?: number
  /** @default DEFAULT_MAX_RECORD_CACHE_SECONDS (60 s) */
  maxRecordCacheSeconds?: number
  /**
   * The key a client is rate-limited by. The default is the socket's remote address (never a
   * forwarded-for header, which any client can forge); put the hub behind a proxy that limits
   * instead, or pass a function that trusts your proxy's header.
   *
   * @default the TCP peer address, or 'unknown' when there is no socket (tests)
   */
  clientAddress?: (c: Context) => string
}

/** Stored records and the address index. `datastoreRecords` keeps them in the hub's datastore. */
export interface HubRecordStore {
  /** The stored record of a canonical name. */
  get(name: string): Promise<Uint8Array | undefined>
  /**
   * Stores a record durably (resolved means on disk) and, in the same batch, binds `owner` to the
   * name when given (an address already bound to another name keeps its name).
   */
  put(name: string, record: Uint8Array, owner?: string): Promise<void>
  /** The name an address (EIP-55) is bound to. */
  nameOf(address: string): Promise<string | undefined>
  /** The address a name is bound to. */
  addressOf(name: string): Promise<string | undefined>
  /** Every stored record (for re-announcing). */
  all(): AsyncIterable<{ name: string, record: Uint8Array }>
}

export interface HubComponents {
  /** Local blocks. A networked hub passes its helia blockstore (puts are then offered to bitswap). */
  blockstore: Blockstore
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
  /** More apps mounted at `/` before the static files (the Next.ID KV API). */
  routes?: Hono[]
}

/** How many names' newest records (and index state) the hub keeps in memory. */
const RECENT_RECORDS = 10_000
/** Blocks up to this size are kept in the in-memory block cache. */
const SMALL_BLOCK_BYTES = 64 * 1024
/** Total size of the in-memory block cache. */
const SMALL_BLOCK_CACHE_BYTES = 16 * 1024 * 1024

const RECORD_PREFIX = '/userspace/hub/ipns/'
const ADDRESS_PREFIX = '/userspace/hub/address/'
const OWNER_PREFIX = '/userspace/hub/owner/'
const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** Records and the address index in a datastore, under `/userspace/hub/`. */
export function datastoreRecords (datastore: Datastore): HubRecordStore {
  const read = async (key: string): Promise<Uint8Array | undefined> => {
    try {
      return await datastore.get(new Key(key))
    } catch (err) {
      if ((err as Error).name === 'NotFoundError') return undefined
      throw err
    }
  }
  return {
    get: async (name) => read(RECORD_PREFIX + name),
    async put (name, record, owner) {
      // One key: a plain put (cheaper than a batch). The index keys go in one batch with the record.
      if (owner === undefined) { await datastore.put(new Key(RECORD_PREFIX + name), record); return }
      const batch = datastore.batch()
      batch.put(new Key(RECORD_PREFIX + name), record)
      const addressKey = ADDRESS_PREFIX + owner.toLowerCase()
      if (await read(addressKey) === undefined) batch.put(new Key(addressKey), encoder.encode(name))
      if (await read(OWNER_PREFIX + name) === undefined) batch.put(new Key(OWNER_PREFIX + name), encoder.encode(owner))
      await batch.commit()
    },
    async nameOf (address) {
      const bytes = await read(ADDRESS_PREFIX + address.toLowerCase())
      return bytes === undefined ? undefined : decoder.decode(bytes)
    },
    async addressOf (name) {
      const bytes = await read(OWNER_PREFIX + name)
      return bytes === undefined ? undefined : decoder.decode(bytes)
    },
    async * all () {
      for await (const { key, value } of datastore.query({ prefix: RECORD_PREFIX.slice(0, -1) })) {
        yield { name: key.toString().slice(RECORD_PREFIX.length), record: value }
      }
    }
  }
}

/** What @hono/node-server passes as `c.env`; absent under `app.request()`. */
type Env = { Bindings: { incoming?: IncomingMessage } }

/**
 * Builds the hub's HTTP app. Install it with @hono/node-server (see server.ts) or call
 * `app.request()` in tests.
 *
 * @example
 * ```ts
 * const app = createHubApp({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() })
 * const res = await app.request(`/routing/v1/ipns/${name}`, { headers: { accept: IPNS_RECORD_TYPE } })
 * ```
 */
export function createHubApp (components: HubComponents, options: HubAppOptions = {}): Hono {
  const hub = new HubCore(components, options)
  const app = new Hono<Env>()
  app.onError(httpErrorHandler)
  app.notFound((c) => c.json({ message: `no route for ${c.req.method} ${c.req.path}`, name: 'NotFoundError' }, 404))

  app.use('*', corsHeaders())
  app.use('*', rateLimiter(options))

  app.get('/routing/v1/ipns/:name', async (c) => {
    const name = parseName(c.req.param('name'))
    const cacheControl = c.req.header('cache-control') ?? ''
    const nocache = /no-cache|no-store|max-age=0/i.test(cacheControl) || c.req.header('pragma') === 'no-cache'
    const record = await hub.getRecord(name, nocache)
    if (record === undefined) throw new NotFoundError(`no IPNS record for ${name}`)
    const { ttlMs } = hub.infoOf(name, record)
    const maxAge = Math.max(0, Math.min(Math.floor(ttlMs / 1000), options.maxRecordCacheSeconds ?? DEFAULT_MAX_RECORD_CACHE_SECONDS))
    return c.body(record as Uint8Array<ArrayBuffer>, 200, {
      'Content-Type': IPNS_RECORD_TYPE,
      'Cache-Control': `public, max-age=${maxAge}`,
      Vary: 'Accept'
    })
  })

  app.put('/routing/v1/ipns/:name', async (c) => {
    const name = parseName(c.req.param('name'))
    requireContentType(c, IPNS_RECORD_TYPE)
    const maxRecordBytes = Math.min(options.maxRecordBytes ?? MAX_RECORD_BYTES, MAX_RECORD_BYTES)
    const bytes = await readBody(c, maxRecordBytes, 'IPNS record')
    await hub.putRecord(name, bytes)
    return c.body(null, 200)
  })

  app.get('/ipfs/:cid', async (c) => {
    const cid = parseCid(c.req.param('cid'))
    const format = responseFormat(c)
    if (format === 'raw') {
      const bytes = await hub.getBlock(cid)
      return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
        'Content-Type': RAW_TYPE,
        'Cache-Control': 'public, max-age=29030400, immutable',
        ETag: `"${cid.toString()}.raw"`,
        'X-Content-Type-Options': 'nosniff',
        'Content-Disposition': `attachment; filename="${cid.toString()}.bin"`
      })
    }
    const scope = c.req.query('dag-scope') ?? 'all'
    if (scope !== 'all' && scope !== 'block' && scope !== 'entity') {
      throw new InvalidInputError(`"dag-scope" expected block, entity or all, got "${scope.slice(0, 40)}"`)
    }
    const car = await hub.getCar(cid, scope)
    return c.body(car as Uint8Array<ArrayBuffer>, 200, {
      'Content-Type': `${CAR_TYPE}; version=1`,
      'Cache-Control': 'public, max-age=29030400, immutable',
      ETag: `"${cid.toString()}.car.${scope}"`,
      'X-Content-Type-Options': 'nosniff',
      'X-Ipfs-Roots': cid.toString(),
      'Content-Disposition': `attachment; filename="${cid.toString()}.car"`
    })
  })
  app.get('/ipfs/:cid/*', () => {
    throw new InvalidInputError('paths below a CID are not supported; ask for the CID itself')
  })

  app.post('/api/v1/blocks', async (c) => {
    requireContentType(c, CAR_TYPE)
    const body = await readBody(c, options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, 'request body')
    const cids = await hub.putCar(body)
    return c.json({ cids: cids.map(String) })
  })

  app.get('/api/v1/events/:name', async (c) => {
    const name = parseName(c.req.param('name'))
    const release = hub.openStream()
    c.header('Cache-Control', 'no-cache, no-transform')
    c.header('X-Accel-Buffering', 'no')
    return streamSSE(c, async (stream) => {
      const queue: Uint8Array[] = []
      let wake: (() => void) | undefined
      const unsubscribe = hub.subscribe(name, (record) => {
        queue.push(record)
        wake?.()
      })
      let open = true
      const heartbeat = setInterval(() => {
        stream.write(': keepalive\n\n').catch(() => { open = false; wake?.() })
      }, options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS)
      stream.onAbort(() => { open = false; wake?.() })
      try {
        // A client that reconnects hears the current record first, so it never misses the newest.
        const current = await hub.stored(name)
        await stream.writeSSE({ event: 'ready', data: name, retry: 2_000 })
        if (current !== undefined) queue.unshift(current)
        while (open && !stream.aborted && !stream.closed) {
          const record = queue.shift()
          if (record === undefined) {
            await new Promise<void>((resolve) => { wake = resolve })
            wake = undefined
            continue
          }
          await stream.writeSSE({ event: 'record', data: toBase64(record), id: readRecord(record).sequence.toString() })
        }
      } finally {
        clearInterval(heartbeat)
        unsubscribe()
        release()
      }
    }, async () => {
      // The client went away mid-write: nothing to report.
    })
  })

  app.get('/api/v1/address/:address', async (c) => {
    const raw = c.req.param('address')
    let address: string
    try {
      address = checksumAddress(raw)
    } catch {
      throw new InvalidInputError(`"address" expected 0x-prefixed 20-byte hex, got "${raw.slice(0, 50)}"`)
    }
    const name = await hub.records.nameOf(address)
    if (name === undefined) throw new NotFoundError(`no space is bound to ${address}`)
    return c.json({ address, name })
  })

  for (const routes of components.routes ?? []) app.route('/', routes as unknown as Hono<Env>)

  app.get('*', staticFiles(options.demoDir))
  return app as unknown as Hono
}

/** The state behind the routes: storage, subscribers, per-name write locks. */
class HubCore {
  readonly records: HubRecordStore
  private readonly blockstore: Blockstore
  private readonly components: HubComponents
  private readonly options: HubAppOptions
  private readonly listeners = new Map<string, Set<(record: Uint8Array) => void>>()
  private readonly locks = new Map<string, Promise<void>>()
  private readonly resolving = new Map<string, Promise<Uint8Array | undefined>>()
  /** Block sizes by CID (blocks never change), so quota checks do not re-read big blocks. */
  private readonly sizes = new Map<string, number>()
  /** `name owner-signature` pairs already verified, so a space's later versions skip the secp256k1 recovery. */
  private readonly verifiedOwners = new Map<string, string>()
  /** The newest stored record per name, for names seen lately (the datastore stays the truth). */
  private readonly recent = new Map<string, { bytes: Uint8Array, info: RecordInfo }>()
  /** Names whose owner binding is already in the index (bindings never change). */
  private readonly indexed = new Set<string>()
  /** Recently used small blocks, newest last, at most SMALL_BLOCK_CACHE_BYTES in all. */
  private readonly smallBlocks = new Map<string, Uint8Array>()
  private smallBlockBytes = 0
  private streams = 0

  private readonly validate: (name: string, bytes: Uint8Array) => Promise<RecordInfo>

  constructor (components: HubComponents, options: HubAppOptions) {
    this.components = components
    this.validate = components.validate ?? validateRecord
    this.blockstore = components.blockstore
    this.records = components.records ?? datastoreRecords(components.datastore)
    this.options = options
  }

  /** The stored record of a name (through a small cache: only this process writes the datastore). */
  async stored (name: string): Promise<Uint8Array | undefined> {
    return (await this.storedWithInfo(name))?.bytes
  }

  /** What a record says, from the cache when it is the stored one. */
  infoOf (name: string, bytes: Uint8Array): RecordInfo {
    const cached = this.recent.get(name)
    return cached !== undefined && cached.bytes === bytes ? cached.info : readRecord(bytes)
  }

  private async storedWithInfo (name: string): Promise<{ bytes: Uint8Array, info: RecordInfo } | undefined> {
    const cached = this.recent.get(name)
    if (cached !== undefined) return cached
    const bytes = await this.records.get(name)
    if (bytes === undefined) return undefined
    const entry = { bytes, info: readRecord(bytes) }
    this.remember(name, entry)
    return entry
  }

  private remember (name: string, entry: { bytes: Uint8Array, info: RecordInfo }): void {
    this.recent.delete(name)
    this.recent.set(name, entry)
    if (this.recent.size > RECENT_RECORDS) this.recent.delete(this.recent.keys().next().value as string)
  }

  subscribe (name: string, listener: (record: Uint8Array) => void): () => void {
    let set = this.listeners.get(name)
    if (set === undefined) this.listeners.set(name, set = new Set())
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.listeners.get(name) === set) this.listeners.delete(name)
    }
  }

  openStream (): () => void {
    if (this.streams >= (this.options.maxEventStreams ?? DEFAULT_MAX_EVENT_STREAMS)) {
      throw new RateLimitError('too many open event streams; try again later')
    }
    this.streams++
    let released = false
    return () => {
      if (!released) { released = true; this.streams-- }
    }
  }

  /** Validates, checks against what is stored, stores durably, notifies and announces. */
  async putRecord (name: string, bytes: Uint8Array): Promise<void> {
    const info = await this.validate(name, bytes)
    const changed = await this.accept(name, bytes, info)
    if (changed) await this.announce(name, bytes)
  }

  /**
   * The checks-then-write part of a PUT, under the name's lock. Returns false when the record is
   * the one already stored (an idempotent retry).
   */
  private async accept (name: string, bytes: Uint8Array, info: RecordInfo): Promise<boolean> {
    return this.withLock(name, async () => {
      const current = await this.storedWithInfo(name)
      if (current !== undefined) {
        if (equals(current.bytes, bytes)) return false
        const stored = current.info
        if (info.sequence < stored.sequence) {
          throw new ConflictError(`record sequence ${info.sequence} is lower than the stored ${stored.sequence} for ${name}`)
        }
        if (info.sequence === stored.sequence) {
          if (info.value !== stored.value) {
            throw new EquivocationError(`record sequence ${info.sequence} for ${name} already points at ${stored.value}`)
          }
          // Same version re-signed: the IPNS rule keeps the one valid longer.
          if (info.validUntilMs <= stored.validUntilMs) return false
        }
      }
      const owner = info.cid === undefined ? undefined : await this.checkRoot(name, info.cid)
      await this.records.put(name, bytes, this.indexed.has(name) ? undefined : owner)
      if (owner !== undefined) {
        if (this.indexed.size > RECENT_RECORDS) this.indexed.clear()
        this.indexed.add(name)
      }
      this.remember(name, { bytes, info })
      for (const listener of this.listeners.get(name) ?? []) listener(bytes)
      return true
    })
  }

  /**
   * Reads the root a record points at (when the hub has it or can fetch it), enforces the per-name
   * quota and verifies the owner binding. Returns the owner's address for the index, or undefined
   * when the root is not a UserSpace root (any IPNS record is welcome; only spaces are indexed).
   */
  private async checkRoot (name: string, cid: CID): Promise<string | undefined> {
    const bytes = await this.readBlock(cid, this.options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS)
    if (bytes === undefined) return undefined
    const max = this.options.maxSpaceBytes ?? DEFAULT_MAX_SPACE_BYTES
    let root
    try {
      root = decodeRoot(bytes)
    } catch {
      const total = await this.dagBytes([cid], max)
      if (total > max) throw new TooLargeError(`${name} would store ${total} bytes, over the ${max}-byte limit per name`)
      return undefined
    }
    let total = bytes.byteLength
    if (root.public !== null) total += await this.dagBytes([root.public], max)
    for (const bucket of root.private) total += await this.blockSize(bucket)
    if (total > max) throw new TooLargeError(`${name} would store ${total} bytes, over the ${max}-byte limit per name`)

    const signature = toBase64(root.owner.signature)
    const known = this.verifiedOwners.get(name)
    if (known !== undefined && known === `${root.owner.address} ${signature}`) return root.owner.address
    // A root that claims an owner it cannot prove is refused: clients would refuse to open it.
    const address = verifyOwner(root.owner, name)
    if (this.verifiedOwners.size > 10_000) this.verifiedOwners.clear()
    this.verifiedOwners.set(name, `${root.owner.address} ${signature}`)
    return address
  }

  /** Sum of the sizes of the blocks (present locally) of the dag-cbor DAG under `roots`. */
  private async dagBytes (roots: CID[], max: number): Promise<number> {
    let total = 0
    const seen = new Set<string>()
    const queue = [...roots]
    while (queue.length > 0 && total <= max) {
      const cid = queue.shift() as CID
      const key = cid.toString()
      if (seen.has(key)) continue
      seen.add(key)
      if (cid.code !== dagCbor.code) {
        total += await this.blockSize(cid)
        continue
      }
      const bytes = await this.localBlock(cid)
      if (bytes === undefined) continue
      total += bytes.byteLength
      queue.push(...linksOf(bytes))
    }
    return total
  }

  private async blockSize (cid: CID): Promise<number> {
    const key = cid.toString()
    const known = this.sizes.get(key)
    if (known !== undefined) return known
    const bytes = await this.localBlock(cid)
    if (bytes === undefined) return 0
    this.noteSize(key, bytes.byteLength)
    return bytes.byteLength
  }

  private noteSize (key: string, size: number): void {
    if (this.sizes.size > 100_000) this.sizes.clear()
    this.sizes.set(key, size)
  }

  private async announce (name: string, bytes: Uint8Array): Promise<void> {
    const announce = this.components.announce
    if (announce === undefined) return
    // A timer cleared as soon as the announcement ends (AbortSignal.timeout would keep one alive
    // per PUT for the whole timeout).
    const controller = new AbortController()
    const deadline = setTimeout(() => { controller.abort(new Error('announcement timed out')) }, this.options.announceTimeoutMs ?? DEFAULT_ANNOUNCE_TIMEOUT_MS)
    let finished = false
    const done = announce(name, bytes, { signal: controller.signal }).catch(() => {
      // The periodic re-announcement retries; the record is stored either way.
    }).finally(() => { finished = true; clearTimeout(deadline) })
    // Wait briefly so that a reader on another hub finds the record at once; never for long.
    await Promise.resolve()
    if (finished) return
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([done, new Promise<void>((resolve) => { timer = setTimeout(resolve, this.options.announceWaitMs ?? DEFAULT_ANNOUNCE_WAIT_MS) })])
    clearTimeout(timer)
  }

  /** The stored record, refreshed from the network when the hub has none or the client asks. */
  async getRecord (name: string, nocache: boolean): Promise<Uint8Array | undefined> {
    const local = await this.stored(name)
    if (this.components.resolveRemote === undefined || (local !== undefined && !nocache)) return local
    let pending = this.resolving.get(name)
    if (pending === undefined) {
      pending = this.resolveRemote(name).finally(() => this.resolving.delete(name))
      this.resolving.set(name, pending)
    }
    return (await pending) ?? local
  }

  private async resolveRemote (name: string): Promise<Uint8Array | undefined> {
    let remote: Uint8Array | undefined
    let info: RecordInfo
    try {
      remote = await this.components.resolveRemote?.(name, { signal: AbortSignal.timeout(this.options.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS) })
      if (remote === undefined) return await this.stored(name)
      info = await this.validate(name, remote)
    } catch {
      return this.stored(name)
    }
    try {
      await this.accept(name, remote, info)
    } catch (err) {
      // Older than ours, or over this hub's quota: serve what we have.
      const local = await this.stored(name)
      if (local !== undefined || !(err instanceof TooLargeError)) return local
      return remote
    }
    return this.stored(name)
  }

  async getBlock (cid: CID): Promise<Uint8Array> {
    const bytes = await this.readBlock(cid, this.options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS)
    if (bytes === undefined) throw new NotFoundError(`block ${cid.toString()} not found`)
    return bytes
  }

  /** A CARv1 of `cid` and, for `all`, the dag-cbor DAG below it (blocks the hub can get). */
  async getCar (cid: CID, scope: 'block' | 'entity' | 'all'): Promise<Uint8Array> {
    const max = this.options.maxCarBytes ?? DEFAULT_MAX_CAR_BYTES
    const fetchMs = this.options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS
    const deadline = Date.now() + fetchMs
    const blocks: Array<{ cid: CID, bytes: Uint8Array }> = []
    const seen = new Set<string>()
    const queue = [cid]
    let total = 0
    while (queue.length > 0) {
      const next = queue.shift() as CID
      const key = next.toString()
      if (seen.has(key)) continue
      seen.add(key)
      const bytes = next === cid
        ? await this.getBlock(next)
        : await this.readBlock(next, Math.max(0, deadline - Date.now()))
      // A block nobody has is left out; the client, verifying the CAR, sees which.
      if (bytes === undefined) continue
      total += bytes.byteLength
      if (total > max) throw new TooLargeError(`the CAR for ${cid.toString()} would be over the ${max}-byte limit; ask for dag-scope=block`)
      blocks.push({ cid: next, bytes })
      if (scope === 'all' && next.code === dagCbor.code) queue.push(...linksOf(bytes))
    }
    return encodeCar(blocks, [cid])
  }

  /** Verifies every block of a CAR, then stores them all; nothing is stored when one fails. */
  async putCar (body: Uint8Array): Promise<CID[]> {
    let reader
    try {
      reader = CarBufferReader.fromBytes(body)
    } catch (err) {
      throw new InvalidInputError(`body is not a CAR: ${(err as Error).message}`)
    }
    const maxBlockBytes = Math.min(this.options.maxBlockBytes ?? MAX_BLOCK_BYTES, MAX_BLOCK_BYTES)
    const blocks = reader.blocks()
    const unique = new Map<string, { cid: CID, bytes: Uint8Array }>()
    for (const block of blocks) {
      const cid = CID.asCID(block.cid) as CID
      if (block.bytes.byteLength > maxBlockBytes) {
        throw new TooLargeError(`block ${cid.toString()} is ${block.bytes.byteLength} bytes, over the ${maxBlockBytes}-byte limit`)
      }
      if (cid.multihash.code !== sha256.code) {
        throw new InvalidInputError(`block ${cid.toString()} is not hashed with sha2-256`)
      }
      if (!(await verifyBlock(cid, block.bytes))) {
        throw new IntegrityError(`block ${cid.toString()} does not match its CID`)
      }
      unique.set(cid.toString(), { cid, bytes: block.bytes })
    }
    for (const { cid, bytes } of unique.values()) {
      await this.blockstore.put(cid, bytes)
    }
    for (const { cid, bytes } of unique.values()) {
      // The record PUT that follows an upload reads its root and public section: keep them at hand.
      if (cid.code === dagCbor.code) this.keepSmall(cid.toString(), bytes)
      this.noteSize(cid.toString(), bytes.byteLength)
    }
    return [...unique.values()].map(b => b.cid)
  }

  /** A local block, or undefined. */
  private async localBlock (cid: CID): Promise<Uint8Array | undefined> {
    const key = cid.toString()
    const cached = this.smallBlocks.get(key)
    if (cached !== undefined) return cached
    if (!(await this.blockstore.has(cid))) return undefined
    let bytes: Uint8Array
    try {
      bytes = await collect(this.blockstore.get(cid))
    } catch (err) {
      if ((err as Error).name === 'NotFoundError') return undefined
      throw err
    }
    this.keepSmall(key, bytes)
    return bytes
  }

  /**
   * Keeps a small block in memory (roots and public sections: what every record PUT and most
   * gateway reads touch). Blocks are content-addressed, so a cached block is never stale.
   */
  private keepSmall (key: string, bytes: Uint8Array): void {
    if (bytes.byteLength > SMALL_BLOCK_BYTES) return
    if (this.smallBlocks.has(key)) this.smallBlocks.delete(key)
    else this.smallBlockBytes += bytes.byteLength
    this.smallBlocks.set(key, bytes)
    while (this.smallBlockBytes > SMALL_BLOCK_CACHE_BYTES) {
      const [oldest, value] = this.smallBlocks.entries().next().value as [string, Uint8Array]
      this.smallBlocks.delete(oldest)
      this.smallBlockBytes -= value.byteLength
    }
  }

  /** A local block, else one fetched from the network within `timeoutMs`, verified and kept. */
  private async readBlock (cid: CID, timeoutMs: number): Promise<Uint8Array | undefined> {
    const local = await this.localBlock(cid)
    if (local !== undefined || this.components.fetchBlock === undefined || timeoutMs <= 0) return local
    let bytes: Uint8Array
    try {
      bytes = await this.components.fetchBlock(cid, { signal: AbortSignal.timeout(timeoutMs) })
    } catch {
      return undefined
    }
    const max = Math.min(this.options.maxBlockBytes ?? MAX_BLOCK_BYTES, MAX_BLOCK_BYTES)
    if (bytes.byteLength > max || !(await verifyBlock(cid, bytes))) return undefined
    if (!(await this.blockstore.has(cid))) await this.blockstore.put(cid, bytes)
    this.keepSmall(cid.toString(), bytes)
    return bytes
  }

  private async withLock<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((resolve) => { release = resolve })
    const tail = previous.then(() => mine)
    this.locks.set(key, tail)
    await previous
    try {
      return await fn()
    } finally {
      release()
      if (this.locks.get(key) === tail) this.locks.delete(key)
    }
  }
}

/** Every CID linked from a dag-cbor block (none when it does not decode). */
function linksOf (bytes: Uint8Array): CID[] {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch {
    return []
  }
  const links: CID[] = []
  const walk = (node: unknown, depth: number): void => {
    if (depth > 64 || node === null || typeof node !== 'object') return
    const cid = CID.asCID(node)
    if (cid !== null) { links.push(cid); return }
    if (node instanceof Uint8Array) return
    for (const child of Array.isArray(node) ? node : Object.values(node)) walk(child, depth + 1)
  }
  walk(value, 0)
  return links
}

async function collect (chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let length = 0
  for await (const chunk of chunks) { parts.push(chunk); length += chunk.byteLength }
  if (parts.length === 1) return parts[0] as Uint8Array
  const out = new Uint8Array(length)
  let offset = 0
  for (const part of parts) { out.set(part, offset); offset += part.byteLength }
  return out
}

/** Names as clients write them → canonical `k51…` form (parsing a CID costs more than a lookup). */
const canonicalNames = new Map<string, string>()

function parseName (raw: string): string {
  const known = canonicalNames.get(raw)
  if (known !== undefined) return known
  let name: string
  try {
    name = canonicalName(raw)
  } catch (err) {
    if (err instanceof UserSpaceError) throw err
    throw new InvalidInputError('"name" expected an IPNS name (k51…)')
  }
  if (canonicalNames.size >= RECENT_RECORDS) canonicalNames.clear()
  canonicalNames.set(raw, name)
  return name
}

function parseCid (raw: string): CID {
  try {
    return CID.parse(raw)
  } catch {
    throw new InvalidInputError(`"cid" expected a CID, got "${raw.slice(0, 80)}"`)
  }
}

/** `raw` or `car`, from `?format=` first, then `Accept`; anything else is a 406. */
function responseFormat (c: Context): 'raw' | 'car' {
  const format = c.req.query('format')
  if (format === 'raw' || format === 'car') return format
  if (format !== undefined) throw new InvalidInputError(`"format" expected raw or car, got "${format.slice(0, 40)}"`)
  const accept = (c.req.header('accept') ?? '').toLowerCase()
  if (accept.includes(RAW_TYPE)) return 'raw'
  if (accept.includes(CAR_TYPE)) return 'car'
  throw new HTTPException(406, { message: `this is a trustless gateway: ask for ${RAW_TYPE} or ${CAR_TYPE} (or ?format=raw|car)` })
}

function requireContentType (c: Context, type: string): void {
  const given = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
  if (given !== type) {
    throw new HTTPException(415, { message: `Content-Type expected ${type}, got ${given === '' || given === undefined ? 'none' : `"${given.slice(0, 80)}"`}` })
  }
}

/** Reads a request body, refusing it (413) as soon as it is larger than `max` bytes. */
async function readBody (c: Context, max: number, what: string): Promise<Uint8Array> {
  const declared = c.req.header('content-length')
  if (declared !== undefined && Number(declared) > max) {
    throw new TooLargeError(`${what} is ${declared} bytes, over the ${max}-byte limit`)
  }
  const parts: Uint8Array[] = []
  let length = 0
  const take = (chunk: Uint8Array): void => {
    length += chunk.byteLength
    if (length > max) throw new TooLargeError(`${what} is over the ${max}-byte limit`)
    parts.push(chunk)
  }
  const incoming = (c.env as Env['Bindings'] | undefined)?.incoming
  try {
    if (incoming !== undefined && typeof incoming.on === 'function' && !incoming.readableEnded) {
      // Under @hono/node-server, read the request directly: a web ReadableStream costs more than
      // verifying the record it carries.
      await readIncoming(incoming, take)
    } else {
      const body = c.req.raw.body
      if (body === null) throw new InvalidInputError(`${what} expected, got an empty body`)
      const reader = body.getReader()
      try {
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          take(value)
        }
      } finally {
        await reader.cancel().catch(() => {})
      }
    }
  } catch (err) {
    if (err instanceof UserSpaceError) throw err
    throw new InvalidInputError(`${what} could not be read: ${(err as Error).message}`)
  }
  if (length === 0) throw new InvalidInputError(`${what} expected, got an empty body`)
  return collect(parts)
}

/**
 * Feeds a Node request's chunks to `take` until the end. When `take` throws (too large), stops
 * listening and lets the rest drain unread, so the refusal can still be sent on the connection.
 */
async function readIncoming (incoming: IncomingMessage, take: (chunk: Uint8Array) => void): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const finish = (err?: Error): void => {
      incoming.off('data', onData)
      incoming.off('end', onEnd)
      incoming.off('error', finish)
      incoming.off('close', onClose)
      if (err === undefined) resolve()
      else { incoming.resume(); reject(err) }
    }
    const onData = (chunk: Uint8Array): void => {
      try { take(chunk) } catch (err) { finish(err as Error) }
    }
    const onEnd = (): void => { finish() }
    const onClose = (): void => { if (!incoming.readableEnded) finish(new Error('the client closed the connection')) }
    incoming.on('data', onData)
    incoming.once('end', onEnd)
    incoming.once('error', finish)
    incoming.once('close', onClose)
  })
}

/**
 * CORS for browsers on every route: any origin, the methods and headers the API uses, preflights
 * answered here. (hono/cors touches `c.res` and so rebuilds every response; this sets prepared
 * headers only.)
 */
function corsHeaders (): MiddlewareHandler<Env> {
  const preflight = {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Allow-Methods': 'GET, HEAD, PUT, POST, OPTIONS',
    // The API's headers, plus those the Next.ID KV service allows (its clients may send them).
    'Access-Control-Allow-Headers': 'Content-Type, Accept, Cache-Control, Last-Event-ID, Authorization, X-Amz-Date, X-Api-Key, X-Amz-Security-Token',
    'Access-Control-Max-Age': '86400'
  }
  const expose = 'Content-Length, Content-Type, ETag, Retry-After, X-Ipfs-Roots'
  return async (c, next) => {
    if (c.req.method === 'OPTIONS') return c.body(null, 204, preflight)
    c.header('Access-Control-Allow-Origin', '*')
    c.header('Access-Control-Expose-Headers', expose)
    await next()
  }
}

/** A token bucket per client address; refusals are 429 with Retry-After. */
function rateLimiter (options: HubAppOptions): MiddlewareHandler<Env> {
  const limit = options.rateLimit ?? DEFAULT_RATE_LIMIT
  if (limit === 0 || limit.requestsPerSecond <= 0) return async (_c, next) => { await next() }
  const { requestsPerSecond: rate } = limit
  const burst = Math.max(1, limit.burst)
  const buckets = new Map<string, { tokens: number, at: number }>()
  const clientOf = options.clientAddress ?? ((c: Context) => (c.env as Env['Bindings'] | undefined)?.incoming?.socket?.remoteAddress ?? 'unknown')
  return async (c, next) => {
    if (c.req.method === 'OPTIONS') { await next(); return }
    const now = Date.now()
    if (buckets.size > 50_000) {
      // Forget clients whose buckets have refilled: they are indistinguishable from new ones.
      for (const [key, b] of buckets) if (b.tokens + (now - b.at) * rate / 1000 >= burst) buckets.delete(key)
    }
    const key = clientOf(c as unknown as Context)
    const bucket = buckets.get(key) ?? { tokens: burst, at: now }
    bucket.tokens = Math.min(burst, bucket.tokens + (now - bucket.at) * rate / 1000)
    bucket.at = now
    if (bucket.tokens < 1) {
      buckets.set(key, bucket)
      const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / rate))
      c.header('Retry-After', String(retryAfter))
      throw new RateLimitError(`too many requests from ${key}; retry in ${retryAfter} s`)
    }
    bucket.tokens -= 1
    buckets.set(key, bucket)
    await next()
  }
}

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>UserSpace hub</title></head>
<body><h1>UserSpace hub</h1>
<p>This hub is running, but the demo page is not built. Build it (it goes to <code>dist/demo</code>) and
restart the hub, or pass <code>demoDir</code>.</p>
<p>API: <code>/routing/v1/ipns/{name}</code>, <code>/ipfs/{cid}</code>, <code>/api/v1/blocks</code>,
<code>/api/v1/events/{name}</code>, <code>/api/v1/address/{address}</code>, <code>/v1/kv</code>.</p>
</body></html>
`

/** Serves files below `dir` (never outside it); `/` is `index.html`. */
function staticFiles (dir: string | undefined): MiddlewareHandler<Env> {
  const root = dir === undefined ? undefined : resolve(dir)
  return async (c, next) => {
    const path = c.req.path
    if (root === undefined) {
      if (path === '/' || path === '/index.html') return c.html(NOT_BUILT)
      await next(); return
    }
    let relative: string
    try {
      relative = decodeURIComponent(path === '/' ? '/index.html' : path)
    } catch {
      throw new InvalidInputError('malformed path')
    }
    const file = resolve(root, '.' + relative)
    if (relative.includes('\0') || (file !== root && !file.startsWith(root + sep))) {
      await next(); return
    }
    const info = await stat(file).catch(() => undefined)
    if (info === undefined || !info.isFile()) {
      if (path === '/') return c.html(NOT_BUILT)
      await next(); return
    }
    const bytes = await readFile(file)
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
      'Content-Type': getMimeType(file) ?? 'application/octet-stream',
      'Cache-Control': relative === '/index.html' ? 'no-cache' : 'public, max-age=3600',
      'X-Content-Type-Options': 'nosniff'
    })
  }
}

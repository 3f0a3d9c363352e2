/**
 * The hub's HTTP API as a Hono app, built from small injected components (a blockstore, a datastore
 * and, on a networked hub, functions that announce, resolve and fetch over libp2p), so that every
 * handler runs in tests through `app.request()` with memory stores and no socket.
 *
 * Routes (standards first):
 * - `/routing/v1/…` — Delegated Routing V1: providers (this hub, for blocks it holds) and IPNS
 *   records (`application/vnd.ipfs.ipns-record`); see routing.ts
 * - `GET /ipfs/{cid}[/{path}]`, `GET /ipns/{name}[/{path}]` — trustless gateway: raw blocks, CARs
 *   and IPNS records; see gateway.ts
 * - `POST /api/v1/blocks` — upload a CAR of blocks, each verified against its CID, all or nothing
 * - `POST /api/v1/publish/{name}` — blocks and the signed record in one CAR, all or nothing (publish.ts)
 * - `GET /api/v1/events/{name}` — server-sent events, `event: record` with the base64 record
 * - `GET /api/v1/address/{address}` — the IPNS name bound to a wallet address
 * - `GET /` and files below it — the demo page from `demoDir`
 *
 * This file wires the routes; each concern has its own file (routing.ts, gateway.ts, records.ts, blocks.ts, quota.ts,
 * events.ts, record-store.ts, params.ts, middleware/). Every refusal is JSON `{ "message", "name" }`
 * with a 4xx status and changes nothing (see http-errors.ts); checks all run before the first write.
 */
import { systemClock } from '../clock.js'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { ed25519 } from '@noble/curves/ed25519.js'
import { Hono } from 'hono'
import { checksumAddress } from '../crypto/eip191.js'
import { InvalidInputError, NotFoundError } from '../errors.js'
import { HubBlocks } from './blocks.js'
import { clientKey } from './client.js'
import { eventStream, HubEvents } from './events.js'
import { collectGarbage } from './gc.js'
import { httpErrorHandler } from './http-errors.js'
import { readBody, requireContentType } from './middleware/body.js'
import { corsHeaders } from './middleware/cors.js'
import { rateLimiter } from './middleware/rate-limit.js'
import { staticFiles } from './middleware/static.js'
import { CAR_TYPE, DEFAULT_HUB_MAX_BODY_BYTES } from './options.js'
import { mountGateway } from './gateway.js'
import { mountRouting, urlToMultiaddr } from './routing.js'
import { HubRecords } from './records.js'
import { publishHandler } from './publish.js'
import { publishPath } from '../protocol.js'
import { HubStorage } from './storage.js'
import type { GcReport } from './gc.js'
import type { Env, HubAppOptions, HubComponents } from './options.js'

export {
  IPNS_RECORD_TYPE, RAW_TYPE, CAR_TYPE, DEFAULT_HUB_MAX_BODY_BYTES, DEFAULT_HUB_MAX_SPACE_BYTES, DEFAULT_HUB_MAX_CAR_BYTES,
  DEFAULT_RATE_LIMIT, DEFAULT_ANNOUNCE_WAIT_MS, DEFAULT_ANNOUNCE_TIMEOUT_MS, DEFAULT_RESOLVE_TIMEOUT_MS,
  DEFAULT_HUB_FETCH_TIMEOUT_MS, DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_EVENT_STREAMS, DEFAULT_MAX_RECORD_CACHE_SECONDS,
  DEFAULT_MAX_EVENT_STREAMS_PER_CLIENT, DEFAULT_MAX_DAG_LINKS, DEFAULT_HUB_MAX_DAG_BLOCKS, DEFAULT_MAX_CAR_STREAMS,
  DEFAULT_MAX_CAR_STREAMS_PER_CLIENT, DEFAULT_MAX_PENDING_BYTES_PER_CLIENT, DEFAULT_MAX_PENDING_BYTES,
  DEFAULT_MAX_STORAGE_BYTES, DEFAULT_GC_GRACE_MS, DEFAULT_MAX_RETAINED_VERSIONS, DEFAULT_HUB_MAX_UPLOAD_BLOCKS
} from './options.js'
export type { GcReport } from './gc.js'
export type { HubAppOptions, HubComponents, HubLimits, RateLimit } from './options.js'
export { datastoreRecords } from './record-store.js'
export type { HubRecordStore } from './record-store.js'

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
  return createHub(components, options).app
}

/** The app and the hub's background work (garbage collection) that a server runs on a timer. */
export interface Hub {
  app: Hono
  /** One garbage-collection pass (see gc.ts); `nowMs` decides which grace periods are over. */
  collectGarbage(nowMs?: number): Promise<GcReport>
  /** The record and block state, for a server that peers hubs (pubsub.ts). */
  records: HubRecords
  blocks: HubBlocks
}

/** Like createHubApp, and also returns the garbage collector of the same state. */
export function createHub (components: HubComponents, options: HubAppOptions = {}): Hub {
  if (options.publicUrl !== undefined) urlToMultiaddr(options.publicUrl)
  // Only an identifier here (nothing is signed with it): a random Ed25519 public key.
  const peerId = components.peerId ?? peerIdFromPublicKey(publicKeyFromRaw(ed25519.getPublicKey(ed25519.utils.randomSecretKey()))).toString()
  const storage = new HubStorage(components.datastore, options, components.blockPrefixes)
  const blocks = new HubBlocks(components, options, storage)
  const events = new HubEvents(options)
  const records = new HubRecords(components, options, blocks, events)
  // One pass at a time: a second caller waits for the running one.
  let collecting: Promise<GcReport> | undefined
  const collect = async (nowMs = (options.nowMs ?? systemClock)()): Promise<GcReport> => {
    while (collecting !== undefined) await collecting.catch(() => {})
    collecting = collectGarbage({ records: records.records, blocks, storage, options }, nowMs)
    try { return await collecting } finally { collecting = undefined }
  }
  const app = new Hono<Env>()
  app.onError(httpErrorHandler)
  app.notFound((c) => c.json({ message: `no route for ${c.req.method} ${c.req.path}`, name: 'NotFoundError' }, 404))

  app.use('*', corsHeaders())
  app.use('*', rateLimiter(options))

  mountRouting(app as unknown as Hono, blocks, records, components, options, peerId)
  mountGateway(app as unknown as Hono, blocks, records, options)

  app.post('/api/v1/blocks', async (c) => {
    requireContentType(c, CAR_TYPE)
    const body = await readBody(c, options.maxBodyBytes ?? DEFAULT_HUB_MAX_BODY_BYTES, 'request body')
    const cids = await blocks.putCar(body, clientKey(c, options))
    return c.json({ cids: cids.map(String) })
  })

  app.post(publishPath(':name'), publishHandler({ records, blocks }, options))

  app.get('/api/v1/events/:name', eventStream(events, async (name) => records.stored(name), options))

  app.get('/api/v1/address/:address', async (c) => {
    const raw = c.req.param('address')
    let address: string
    try {
      address = checksumAddress(raw)
    } catch {
      throw new InvalidInputError(`"address" expected 0x-prefixed 20-byte hex, got "${raw.slice(0, 50)}"`)
    }
    const name = await records.records.nameOf(address)
    if (name === undefined) throw new NotFoundError(`no space is bound to ${address}`)
    return c.json({ address, name })
  })

  for (const routes of components.routes ?? []) app.route('/', routes as unknown as Hono<Env>)

  app.get('*', staticFiles(options.demoDir))
  return { app: app as unknown as Hono, collectGarbage: collect, records, blocks }
}

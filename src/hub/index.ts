/**
 * @packageDocumentation
 *
 * `userspace/hub`: the UserSpace hub, Node only. A hub is an IPFS node (helia: libp2p with TCP and
 * WebSockets, kad-dht, bitswap; LevelDB and file-system storage) with an HTTP API that stores,
 * serves and re-announces spaces, plus the Next.ID KV Service API. `userspace serve` runs one.
 * This entry installs the Node 20 `Promise.withResolvers` polyfill that libp2p needs.
 *
 * @example Run a hub in a program
 *
 * ```ts
 * import { startHub } from 'userspace/hub'
 *
 * const hub = await startHub({ port: 8787, directory: './data' })
 * console.log(`listening on ${hub.url}, peer ${hub.peerId}`)
 * process.on('SIGTERM', () => { void hub.stop() })
 * ```
 *
 * @example Test handlers without a socket
 *
 * ```ts
 * import { MemoryBlockstore } from 'blockstore-core'
 * import { MemoryDatastore } from 'datastore-core'
 * import { createHubApp } from 'userspace/hub'
 *
 * const app = createHubApp({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() })
 * const res = await app.request('/api/v1/address/0x0000000000000000000000000000000000000000')
 * res.status // 404
 * ```
 */
import '../polyfill.js'

export {
  startHub, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_DIRECTORY, DEFAULT_REPUBLISH_INTERVAL_MS, DEFAULT_HUB_ROUTING_TIMEOUT_MS, DEFAULT_GC_INTERVAL_MS,
  DEFAULT_PEER_RETRY_MIN_MS, DEFAULT_PEER_RETRY_MAX_MS, LOCK_FILE, LISTEN_FILE
} from './server.js'
export type { HubOptions, RunningHub } from './server.js'
export {
  createHubApp, createHub, datastoreRecords, IPNS_RECORD_TYPE, RAW_TYPE, CAR_TYPE,
  DEFAULT_HUB_MAX_BODY_BYTES, DEFAULT_HUB_MAX_SPACE_BYTES, DEFAULT_HUB_MAX_CAR_BYTES, DEFAULT_RATE_LIMIT,
  DEFAULT_ANNOUNCE_WAIT_MS, DEFAULT_ANNOUNCE_TIMEOUT_MS, DEFAULT_RESOLVE_TIMEOUT_MS, DEFAULT_HUB_FETCH_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_EVENT_STREAMS, DEFAULT_MAX_RECORD_CACHE_SECONDS,
  DEFAULT_MAX_EVENT_STREAMS_PER_CLIENT, DEFAULT_MAX_DAG_LINKS, DEFAULT_HUB_MAX_DAG_BLOCKS, DEFAULT_MAX_CAR_STREAMS,
  DEFAULT_MAX_CAR_STREAMS_PER_CLIENT, DEFAULT_MAX_PENDING_BYTES_PER_CLIENT, DEFAULT_MAX_PENDING_BYTES,
  DEFAULT_MAX_STORAGE_BYTES, DEFAULT_GC_GRACE_MS, DEFAULT_MAX_RETAINED_VERSIONS, DEFAULT_HUB_MAX_UPLOAD_BLOCKS
} from './app.js'
export type { GcReport, Hub, HubComponents, HubAppOptions, HubLimits, HubRecordStore, RateLimit } from './app.js'
export {
  DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_HUB_REQUEST_TIMEOUT_MS, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT
} from './connections.js'
export type { HubConnectionOptions } from './connections.js'
export { createNextIdApp } from './nextid.js'
export type { NextIdOptions } from './nextid.js'
export { lineLogger, noopLogger } from '../logger.js'
export type { ComponentLogger, Logger, LineLoggerOptions } from '../logger.js'

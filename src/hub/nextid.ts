/**
 * The hub's Next.ID KV Service API: a hono sub-application that speaks the wire format of the
 * public NextDotID/kv_server (`/healthz`, `GET /v1/kv`, `POST /v1/kv/payload`, `POST /v1/kv`,
 * `GET /v1/kv/by_identity`), so Next.ID clients can point at any hub. Each accepted patch becomes a
 * signed dag-cbor block linked to the avatar's previous one, a chain anyone can verify and that
 * `exportAvatarChain` / `importAvatarChain` move between hubs.
 *
 * Unlike the original it refuses a replayed uuid with 409 (not a 500), keeps uuids unique per
 * avatar (not per server, so nobody can take another avatar's uuids), bounds `created_at` to a
 * window around the hub's clock, signs over the true chain head (a payload signed over an older
 * head gets 409), serialises the write per avatar so two concurrent writes cannot both build on one
 * head, answers CORS preflight on every route, and never answers bad input with 500. Every cost a
 * stranger can cause is bounded: bodies, per-avatar chains and content, by_identity results, one
 * import at a time; refused signatures never wait on (or hold up) the avatar's own writes
 * (see `nextid/write.ts`).
 *
 * This file assembles the app and is its front door; the parts live in `nextid/`: options.ts
 * (options and defaults), routes.ts (the KV routes), body.ts (request bodies), proof.ts (the
 * identity and ProofService checks), transfer-routes.ts (export and import), write.ts (accepting a
 * signed patch), chain.ts, store.ts, json.ts and transfer.ts.
 *
 * @example
 * ```ts
 * import { Hono } from 'hono'
 * import { MemoryDatastore } from 'datastore-core'
 * import { MemoryBlockstore } from 'blockstore-core/memory'
 * import { createNextIdApp } from './hub/nextid.js'
 *
 * const hub = new Hono()
 * hub.route('/', createNextIdApp({ datastore: new MemoryDatastore(), blockstore: new MemoryBlockstore() }))
 * ```
 */
import { Hono } from 'hono'
import { httpErrorHandler } from './http-errors.js'
import { corsHeaders } from './middleware/cors.js'
import { configure, type NextIdOptions } from './nextid/options.js'
import { addKvRoutes } from './nextid/routes.js'
import { addTransferRoutes } from './nextid/transfer-routes.js'

export { buildSignPayload, type SignPayloadFields, type KvLink } from './nextid/chain.js'
export type { NextIdStores } from './nextid/store.js'
export { DEFAULT_MAX_STORED_BYTES, nextIdStoredBytes } from './nextid/store.js'
export {
  DEFAULT_MAX_CHAIN_BYTES, DEFAULT_MAX_CHAIN_LINKS, exportAvatarChain, importAvatarChain, streamAvatarChain, type AvatarChain, type ImportLimits
} from './nextid/transfer.js'
export {
  DEFAULT_CREATED_AT_WINDOW_MS, DEFAULT_MAX_AVATAR_CONTENT_BYTES, DEFAULT_NEXTID_MAX_BODY_BYTES, DEFAULT_MAX_CONTENT_BYTES,
  DEFAULT_MAX_IDENTITY_RESPONSE_BYTES, DEFAULT_MAX_IDENTITY_RESULTS, DEFAULT_MAX_IMPORT_BYTES, DEFAULT_MAX_QUEUED_WRITES_PER_AVATAR,
  type NextIdOptions
} from './nextid/options.js'
export type { ProofServiceCheck, ProofServiceQuery } from './nextid/proof.js'
export { MAX_STALE_CANDIDATES } from './nextid/write.js'

/** The Next.ID KV Service routes, with CORS and JSON errors; mount with `hub.route('/', app)`. */
export function createNextIdApp (options: NextIdOptions): Hono {
  const config = configure(options)
  const app = new Hono()
  // The hub's CORS, scoped to this API's paths, so that mounting at '/' does not answer other
  // routes' preflights.
  const cors = corsHeaders()
  for (const path of ['/healthz', '/v1/kv', '/v1/kv/*', '/api/v1/nextid/*']) app.use(path, cors)
  app.onError(httpErrorHandler)
  app.notFound(c => c.json({ message: `Not Found: ${c.req.method} ${c.req.path}` }, 404))
  addKvRoutes(app, config)
  addTransferRoutes(app, config)
  return app
}

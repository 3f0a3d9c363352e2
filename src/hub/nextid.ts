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
import { randomUUID } from 'node:crypto'
import { Hono, type Context } from 'hono'
import { cors } from 'hono/cors'
import { HTTPException } from 'hono/http-exception'
import { CarReader } from '@ipld/car'
import { CID } from 'multiformats/cid'
import { fromBase64, fromUtf8 } from '../crypto/bytes.js'
import {
  IntegrityError, InvalidInputError, InvalidSignatureError, NotFoundError, RateLimitError, StoreError, TooLargeError, UserSpaceError
} from '../errors.js'
import { verifyBlock } from '../store/blocks.js'
import { httpErrorHandler } from './http-errors.js'
import {
  SIGNATURE_BYTES, SIGN_PAYLOAD_VERSION, avatarHex, buildSignPayload, checkSeconds, checkText, compressedHex, parsePublicKey,
  parseSignature, parseUuid
} from './nextid/chain.js'
import { canonicalJson, isJsonObject, parseJson, type JsonObject, type JsonValue } from './nextid/json.js'
import { DEFAULT_MAX_STORED_BYTES, getCid, getEntry, listAvatars, listEntries, keys, loadLink } from './nextid/store.js'
import { DEFAULT_MAX_CHAIN_BYTES, DEFAULT_MAX_CHAIN_LINKS, importAvatarChain, sameKey, streamAvatarChain } from './nextid/transfer.js'
import { acceptLink, type WriteConfig } from './nextid/write.js'
import type { Block, AbortOptions } from '../store/interface.js'
import type { Blockstore } from 'interface-blockstore'
import type { Datastore } from 'interface-datastore'

export { buildSignPayload, type SignPayloadFields, type KvLink } from './nextid/chain.js'
export type { NextIdStores } from './nextid/store.js'
export { DEFAULT_MAX_STORED_BYTES, nextIdStoredBytes } from './nextid/store.js'
export {
  DEFAULT_MAX_CHAIN_BYTES, DEFAULT_MAX_CHAIN_LINKS, exportAvatarChain, importAvatarChain, streamAvatarChain, type AvatarChain, type ImportLimits
} from './nextid/transfer.js'

/** @default for `createdAtWindowMs`: a wallet prompt may take a while; a replay a day later may not. */
export const DEFAULT_CREATED_AT_WINDOW_MS = 10 * 60 * 1000

/** @default for `maxImportBytes`: a whole avatar chain (DEFAULT_MAX_CHAIN_BYTES) with its CAR framing. */
export const DEFAULT_MAX_IMPORT_BYTES = 16 * 1024 * 1024

/** @default for `maxBodyBytes`: Next.ID patches are small profile documents. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024

/** @default for `maxContentBytes`. */
export const DEFAULT_MAX_CONTENT_BYTES = 1024 * 1024

/** @default for `maxAvatarContentBytes`: what one GET /v1/kv answers, roughly. */
export const DEFAULT_MAX_AVATAR_CONTENT_BYTES = 2 * 1024 * 1024

/** @default for `maxQueuedWritesPerAvatar`. */
export const DEFAULT_MAX_QUEUED_WRITES_PER_AVATAR = 8

/** @default for `maxIdentityResults`. */
export const DEFAULT_MAX_IDENTITY_RESULTS = 100

/** @default for `maxIdentityResponseBytes`. */
export const DEFAULT_MAX_IDENTITY_RESPONSE_BYTES = 4 * 1024 * 1024

export { MAX_STALE_CANDIDATES } from './nextid/write.js'

/** The headers kv_server allows in CORS. */
const ALLOW_HEADERS = ['Content-Type', 'Authorization', 'X-Amz-Date', 'X-Api-Key', 'X-Amz-Security-Token']

export interface ProofServiceQuery {
  platform: string
  identity: string
  /** the avatar's compressed public key, `0x` hex (how ProofService names a persona) */
  avatar: string
}

/**
 * Whether ProofService binds `identity` on `platform` to the avatar. kv_server asks
 * `GET {proof}/v1/proof?platform=nextid&identity=<avatar>` and looks for the pair among the proofs.
 */
export type ProofServiceCheck = (query: ProofServiceQuery, options?: { signal?: AbortSignal }) => Promise<boolean>

export interface NextIdOptions {
  /** The hub's datastore (LevelDB in `userspace serve`); state lives under `/nextid/`. */
  datastore: Datastore
  /** The hub's blockstore; one dag-cbor block per accepted patch. */
  blockstore: Blockstore
  /** The clock. @default Date.now */
  nowMs?: () => number
  /**
   * How far a written `created_at` may be from now, either way. A payload must be signed and posted
   * within this time. @default DEFAULT_CREATED_AT_WINDOW_MS (10 minutes)
   */
  createdAtWindowMs?: number
  /** Largest request body. @default DEFAULT_MAX_BODY_BYTES (64 KiB) */
  maxBodyBytes?: number
  /** Largest CAR accepted by `POST /api/v1/nextid/import`. @default DEFAULT_MAX_IMPORT_BYTES (16 MiB) */
  maxImportBytes?: number
  /** Largest merged content of one (avatar, platform, identity), as canonical JSON. @default DEFAULT_MAX_CONTENT_BYTES (1 MiB) */
  maxContentBytes?: number
  /**
   * Largest merged content of all of one avatar's entries together; a write that would grow it
   * past this is refused (413), one that shrinks it is not. @default DEFAULT_MAX_AVATAR_CONTENT_BYTES (2 MiB)
   */
  maxAvatarContentBytes?: number
  /** Most patches kept per avatar (and accepted in one import). @default DEFAULT_MAX_CHAIN_LINKS (10 000) */
  maxChainLinks?: number
  /** Most block bytes kept per avatar (and accepted in one import). @default DEFAULT_MAX_CHAIN_BYTES (8 MiB) */
  maxChainBytes?: number
  /**
   * Writes of one avatar that may hold or wait for its lock at once (only writes whose signature
   * checked out get that far); one more is refused with 429. @default DEFAULT_MAX_QUEUED_WRITES_PER_AVATAR (8)
   */
  maxQueuedWritesPerAvatar?: number
  /**
   * Most bytes of Next.ID data (chain blocks, content and indexes, keys included) this hub keeps,
   * all avatars together: a write or import that would grow it past this is refused (507). Keys
   * are free, so without it fresh avatars could fill the disk past every per-avatar cap.
   * @default DEFAULT_MAX_STORED_BYTES (1 GiB)
   */
  maxStoredBytes?: number
  /** Most avatars listed by one `GET /v1/kv/by_identity`. @default DEFAULT_MAX_IDENTITY_RESULTS (100) */
  maxIdentityResults?: number
  /** Largest `GET /v1/kv/by_identity` body: values past it are left out. @default DEFAULT_MAX_IDENTITY_RESPONSE_BYTES (4 MiB) */
  maxIdentityResponseBytes?: number
  /**
   * fsync each accepted write (on a LevelDB datastore) before answering 201, so an acknowledged
   * patch survives a power loss; `false` trades that for throughput. @default true
   */
  syncWrites?: boolean
  /**
   * Checks that a non-"nextid" platform identity is bound to the avatar. When absent (the default,
   * for a self-hosted hub) such platforms are accepted without a binding check: anyone holding the
   * avatar key may write under any platform/identity, and readers must not take the pair as proven.
   * kv_server always asks the public ProofService. The "nextid" platform is always checked (its
   * identity must be the avatar's own key).
   */
  proofService?: ProofServiceCheck
  /** `build_at` reported by /healthz. @default 'UNKNOWN' (kv_server's fallback) */
  buildAt?: string
  /** `commit_version` reported by /healthz. @default 'UNKNOWN' */
  commitVersion?: string
  /** Told the avatar (uncompressed hex) of every accepted patch, e.g. to tell peered hubs. @default nothing */
  onAccepted?: (avatar: string) => void
}

interface Config extends WriteConfig {
  createdAtWindowMs: number
  maxBodyBytes: number
  maxImportBytes: number
  maxIdentityResults: number
  maxIdentityResponseBytes: number
  proofService?: ProofServiceCheck
  buildAt: string
  commitVersion: string
}

function positive (value: number | undefined, fallback: number, what: string, allowZero = false): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new InvalidInputError(`"${what}" expected a positive number, got ${String(value)}`)
  }
  return value
}

function configure (options: NextIdOptions): Config {
  if (options?.datastore == null || options.blockstore == null) throw new InvalidInputError('"datastore" and "blockstore" are required')
  return {
    datastore: options.datastore,
    blockstore: options.blockstore,
    nowMs: options.nowMs ?? Date.now,
    createdAtWindowMs: positive(options.createdAtWindowMs, DEFAULT_CREATED_AT_WINDOW_MS, 'createdAtWindowMs', true),
    maxBodyBytes: positive(options.maxBodyBytes, DEFAULT_MAX_BODY_BYTES, 'maxBodyBytes'),
    maxImportBytes: positive(options.maxImportBytes, DEFAULT_MAX_IMPORT_BYTES, 'maxImportBytes'),
    maxContentBytes: positive(options.maxContentBytes, DEFAULT_MAX_CONTENT_BYTES, 'maxContentBytes'),
    maxAvatarContentBytes: positive(options.maxAvatarContentBytes, DEFAULT_MAX_AVATAR_CONTENT_BYTES, 'maxAvatarContentBytes'),
    maxChainLinks: positive(options.maxChainLinks, DEFAULT_MAX_CHAIN_LINKS, 'maxChainLinks'),
    maxChainBytes: positive(options.maxChainBytes, DEFAULT_MAX_CHAIN_BYTES, 'maxChainBytes'),
    maxQueuedWritesPerAvatar: positive(options.maxQueuedWritesPerAvatar, DEFAULT_MAX_QUEUED_WRITES_PER_AVATAR, 'maxQueuedWritesPerAvatar'),
    maxStoredBytes: positive(options.maxStoredBytes, DEFAULT_MAX_STORED_BYTES, 'maxStoredBytes', true),
    maxIdentityResults: positive(options.maxIdentityResults, DEFAULT_MAX_IDENTITY_RESULTS, 'maxIdentityResults'),
    maxIdentityResponseBytes: positive(options.maxIdentityResponseBytes, DEFAULT_MAX_IDENTITY_RESPONSE_BYTES, 'maxIdentityResponseBytes'),
    syncWrites: options.syncWrites ?? true,
    proofService: options.proofService,
    buildAt: options.buildAt ?? 'UNKNOWN',
    commitVersion: options.commitVersion ?? 'UNKNOWN'
  }
}

/** The Next.ID KV Service routes, with CORS and JSON errors; mount with `hub.route('/', app)`. */
export function createNextIdApp (options: NextIdOptions): Hono {
  const config = configure(options)
  const app = new Hono()
  // Scoped to this API's paths, so that mounting at '/' does not answer other routes' preflights.
  const withCors = cors({ origin: '*', allowMethods: ['GET', 'POST', 'OPTIONS'], allowHeaders: ALLOW_HEADERS, maxAge: 86400 })
  for (const path of ['/healthz', '/v1/kv', '/v1/kv/*']) app.use(path, withCors)
  app.onError(httpErrorHandler)
  app.notFound(c => c.json({ message: `Not Found: ${c.req.method} ${c.req.path}` }, 404))

  app.get('/healthz', c => jsonText(c, 200, JSON.stringify({ hello: 'kv server', build_at: config.buildAt, commit_version: config.commitVersion })))

  app.get('/v1/kv', async c => {
    const param = c.req.query('avatar') ?? c.req.query('persona')
    if (param === undefined) throw new InvalidInputError('Param missing: avatar')
    const avatar = avatarHex(parsePublicKey(param))
    return jsonText(c, 200, await avatarResponse(config, avatar, { signal: c.req.raw.signal }))
  })

  app.get('/v1/kv/by_identity', async c => {
    const platform = c.req.query('platform')
    const identity = c.req.query('identity')
    if (platform === undefined) throw new InvalidInputError('Param missing: platform')
    if (identity === undefined) throw new InvalidInputError('Param missing: identity')
    checkText(platform, 'platform')
    checkText(identity, 'identity')
    const values: string[] = []
    let bytes = 0
    // At most maxIdentityResults avatars, in key order, and values only while the body stays under
    // maxIdentityResponseBytes: anyone can claim any identity on a hub without a ProofService.
    for (const avatar of await listAvatars(config.datastore, platform, identity, config.maxIdentityResults, { signal: c.req.raw.signal })) {
      const entry = await getEntry(config.datastore, avatar, platform, identity, { signal: c.req.raw.signal })
      if (entry === undefined) continue
      const value = '{"avatar":"0x' + avatar + '","content":' + canonicalJson(entry.content) + '}'
      bytes += value.length + 1
      if (bytes > config.maxIdentityResponseBytes) break
      values.push(value)
    }
    return jsonText(c, 200, '{"values":[' + values.join(',') + ']}')
  })

  app.post('/v1/kv/payload', async c => {
    const signal = c.req.raw.signal
    const body = await readJsonObject(c, config.maxBodyBytes)
    const publicKey = bodyAvatar(body)
    const platform = checkText(body.platform, 'platform')
    const identity = checkText(body.identity, 'identity')
    const patch = bodyPatch(body)
    checkNextIdIdentity(publicKey, platform, identity)
    await checkProof(config, publicKey, platform, identity, signal)
    const avatar = avatarHex(publicKey)
    const headCid = await getCid(config.datastore, keys.head(avatar), { signal })
    const head = headCid === null ? null : await loadLink(config, headCid, { signal })
    const uuid = randomUUID()
    const createdAt = Math.floor(config.nowMs() / 1000)
    const signPayload = buildSignPayload({ uuid, avatar: publicKey, platform, identity, patch, createdAtSeconds: createdAt, previous: head?.signature ?? null })
    return jsonText(c, 200, JSON.stringify({ uuid, sign_payload: signPayload, created_at: createdAt }))
  })

  app.post('/v1/kv', async c => {
    const signal = c.req.raw.signal
    // Everything up to acceptLink is parsing: no store access, no curve arithmetic.
    const body = await readJsonObject(c, config.maxBodyBytes)
    const publicKey = bodyAvatar(body)
    const platform = checkText(body.platform, 'platform')
    const identity = checkText(body.identity, 'identity')
    const uuid = parseUuid(body.uuid)
    const createdAt = checkSeconds(body.created_at)
    if (typeof body.signature !== 'string') throw new InvalidInputError(`"signature" expected base64 string, got ${describe(body.signature)}`)
    const signature = fromBase64(body.signature, 'signature')
    if (signature.length !== SIGNATURE_BYTES) {
      throw new InvalidSignatureError(`"signature" expected ${SIGNATURE_BYTES} bytes (r‖s‖v), got length=${signature.length}`)
    }
    parseSignature(signature)
    const patch = bodyPatch(body)
    const skewMs = Math.abs(createdAt * 1000 - config.nowMs())
    if (skewMs > config.createdAtWindowMs) {
      throw new InvalidInputError(`"created_at" ${createdAt} is ${Math.round(skewMs / 1000)} s from the hub's clock; it must be within ${Math.floor(config.createdAtWindowMs / 1000)} s: request a new payload`)
    }
    checkNextIdIdentity(publicKey, platform, identity)
    const avatar = avatarHex(publicKey)
    try {
      await acceptLink(config, { version: SIGN_PAYLOAD_VERSION, avatar, platform, identity, uuid, created_at: createdAt, patch, signature }, publicKey, {
        signal,
        afterSignature: async () => { await checkProof(config, publicKey, platform, identity, signal) }
      })
    } catch (err) {
      if (err instanceof RateLimitError) c.header('Retry-After', '1')
      throw err
    }
    options.onAccepted?.(avatar)
    return jsonText(c, 201, await avatarResponse(config, avatar))
  })

  // Not part of the Next.ID API: moving an avatar's chain between hubs as a CAR whose root is the head.
  app.use('/api/v1/nextid/*', cors({ origin: '*', allowMethods: ['GET', 'POST', 'OPTIONS'], allowHeaders: ALLOW_HEADERS, maxAge: 86400 }))
  app.get('/api/v1/nextid/export', async c => {
    const param = c.req.query('avatar')
    if (param === undefined) throw new InvalidInputError('Param missing: avatar')
    const stream = await streamAvatarChain({ ...config, signal: c.req.raw.signal }, param)
    if (stream === null) throw new NotFoundError(`this hub has no chain for avatar ${param.slice(0, 140)}`)
    return c.body(stream, 200, { 'Content-Type': 'application/vnd.ipld.car; version=1' })
  })
  let importing = false
  app.post('/api/v1/nextid/import', async c => {
    const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
    if (type !== 'application/vnd.ipld.car') {
      throw new HTTPException(415, { message: `Content-Type must be application/vnd.ipld.car, got ${JSON.stringify((c.req.header('content-type') ?? 'none').slice(0, 80))}` })
    }
    // One import at a time, counted before its body is read: n concurrent uploads would otherwise
    // hold n × maxImportBytes before the import itself refused all but one.
    if (importing) {
      c.header('Retry-After', '1')
      throw new RateLimitError('another chain import is running on this hub; retry shortly')
    }
    importing = true
    try {
      return await importCar(c)
    } finally {
      importing = false
    }
  })

  const importCar = async (c: Context): Promise<Response> => {
    const bytes = await readLimited(c.req.raw.body, config.maxImportBytes)
    let reader: CarReader
    try {
      reader = await CarReader.fromBytes(bytes)
    } catch (err) {
      throw new InvalidInputError(`body is not a CAR: ${(err as Error).message}`, { cause: err })
    }
    const roots = await reader.getRoots()
    if (roots.length !== 1) throw new InvalidInputError(`an avatar chain CAR has one root (its head), this one has ${roots.length}`)
    const blocks: Block[] = []
    for await (const block of reader.blocks()) {
      if (blocks.length >= config.maxChainLinks) throw new TooLargeError(`the CAR has more than ${config.maxChainLinks} blocks, the most this hub keeps per avatar`)
      if (!(await verifyBlock(block.cid, block.bytes))) throw new IntegrityError(`block ${block.cid.toString()} does not match its CID`)
      blocks.push({ cid: block.cid, bytes: block.bytes })
    }
    try {
      await importAvatarChain({ ...config, signal: c.req.raw.signal }, blocks, roots[0] as CID)
    } catch (err) {
      if (err instanceof RateLimitError) c.header('Retry-After', '1')
      throw err
    }
    return c.json({ head: (roots[0] as CID).toString(), blocks: blocks.length }, 201)
  }

  return app
}

function jsonText (c: Context, status: 200 | 201, text: string): Response {
  return c.body(text, status, { 'Content-Type': 'application/json' })
}

function describe (value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  return Array.isArray(value) ? 'array' : typeof value
}

/** The GET /v1/kv (and 201) body, in kv_server's field order. */
async function avatarResponse (config: Config, avatar: string, options?: AbortOptions): Promise<string> {
  const proofs = (await listEntries(config.datastore, avatar, options)).map(entry =>
    '{"platform":' + JSON.stringify(entry.platform) +
    ',"identity":' + JSON.stringify(entry.identity) +
    ',"content":' + canonicalJson(entry.content) +
    // kv_server also reports where it mirrored the link on Arweave; this hub does not.
    ',"arweave_id":null}')
  const key = JSON.stringify('0x' + avatar)
  return '{"persona":' + key + ',"avatar":' + key + ',"proofs":[' + proofs.join(',') + ']}'
}

/**
 * Reads a JSON object body: `application/json` only (a wrong type is 415, not `{}`), at most
 * `maxBytes` (413), strict UTF-8 and strict JSON (400).
 */
async function readJsonObject (c: Context, maxBytes: number): Promise<JsonObject> {
  const type = c.req.header('content-type')
  const [media = '', ...params] = (type ?? '').split(';')
  if (media.trim().toLowerCase() !== 'application/json') {
    throw new HTTPException(415, { message: `Content-Type must be application/json, got ${type === undefined ? 'none' : JSON.stringify(type.slice(0, 80))}` })
  }
  for (const param of params) {
    const [name = '', value = ''] = param.split('=')
    if (name.trim().toLowerCase() === 'charset' && !/^"?utf-8"?$/i.test(value.trim())) {
      throw new HTTPException(415, { message: `Content-Type charset must be utf-8, got ${JSON.stringify(value.trim().slice(0, 40))}` })
    }
  }
  const declared = c.req.header('content-length')
  if (declared !== undefined && /^[0-9]+$/.test(declared) && Number(declared) > maxBytes) {
    throw new TooLargeError(`body is ${declared} bytes, larger than the limit of ${maxBytes}`)
  }
  const bytes = await readLimited(c.req.raw.body, maxBytes)
  if (bytes.length === 0) throw new InvalidInputError('"body" is empty; expected a JSON object')
  let text: string
  try {
    text = fromUtf8(bytes)
  } catch {
    throw new InvalidInputError('"body" is not valid UTF-8')
  }
  const value = parseJson(text, 'body')
  if (!isJsonObject(value)) throw new InvalidInputError(`"body" expected a JSON object, got ${describe(value)}`)
  return value
}

async function readLimited (stream: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<Uint8Array> {
  if (stream === null) return new Uint8Array(0)
  const reader = stream.getReader()
  const chunks: Uint8Array[] = []
  let length = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      length += value.length
      if (length > maxBytes) {
        await reader.cancel().catch(() => {})
        throw new TooLargeError(`body is larger than the limit of ${maxBytes} bytes`)
      }
      chunks.push(value)
    }
  } catch (err) {
    if (err instanceof UserSpaceError) throw err
    throw new InvalidInputError(`"body" could not be read: ${err instanceof Error ? err.message : String(err)}`)
  } finally {
    reader.releaseLock()
  }
  const out = new Uint8Array(length)
  let offset = 0
  for (const chunk of chunks) { out.set(chunk, offset); offset += chunk.length }
  return out
}

/** `avatar`, or kv_server's older name `persona` (avatar wins when both are given). */
function bodyAvatar (body: JsonObject): Uint8Array {
  for (const name of ['avatar', 'persona']) {
    const value = body[name]
    if (value !== undefined && value !== null && typeof value !== 'string') {
      throw new InvalidInputError(`"${name}" expected a secp256k1 public key in hex, got ${describe(value)}`)
    }
  }
  const given = body.avatar ?? body.persona
  if (given === undefined || given === null) throw new InvalidInputError('"avatar" is missing')
  return parsePublicKey(given, body.avatar != null ? 'avatar' : 'persona')
}

function bodyPatch (body: JsonObject): JsonValue {
  const patch = body.patch
  if (patch === undefined) throw new InvalidInputError('"patch" is missing; expected a JSON merge patch (RFC 7396)')
  return patch
}

/** For platform "nextid" the identity is the avatar's own key (checked locally, before any signature). */
function checkNextIdIdentity (publicKey: Uint8Array, platform: string, identity: string): void {
  if (platform === 'nextid' && !sameKey(identity, publicKey)) {
    throw new InvalidInputError('"identity" must be the avatar\'s own public key when "platform" is "nextid"')
  }
}

/** Other platforms ask the ProofService, when one is configured. */
async function checkProof (config: Config, publicKey: Uint8Array, platform: string, identity: string, signal?: AbortSignal): Promise<void> {
  if (platform === 'nextid' || config.proofService === undefined) return
  const avatar = compressedHex(publicKey)
  let bound: boolean
  try {
    bound = await config.proofService({ platform, identity, avatar }, { signal })
  } catch (err) {
    if (err instanceof UserSpaceError) throw err
    throw new StoreError(`ProofService check failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  if (bound !== true) throw new InvalidInputError(`Proof not found under this persona: ProofService binds no ${platform} identity ${JSON.stringify(identity)} to ${avatar}`)
}

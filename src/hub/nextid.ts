/**
 * The hub's Next.ID KV Service API: a hono sub-application that speaks the wire format of the
 * public NextDotID/kv_server (`/healthz`, `GET /v1/kv`, `POST /v1/kv/payload`, `POST /v1/kv`,
 * `GET /v1/kv/by_identity`), so Next.ID clients can point at any hub. Each accepted patch becomes a
 * signed dag-cbor block linked to the avatar's previous one, a chain anyone can verify and that
 * `exportAvatarChain` / `importAvatarChain` move between hubs.
 *
 * Unlike the original it refuses a replayed uuid with 409 (not a 500), bounds `created_at` to a
 * window around the hub's clock, signs over the true chain head (a payload signed over an older
 * head gets 409), serialises verify-then-merge per avatar so two concurrent writes cannot both
 * build on one head, answers CORS preflight on every route, and never answers bad input with 500.
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
import { CID } from 'multiformats/cid'
import { bytesToHex, fromBase64, fromUtf8, hexToBytes } from '../crypto/bytes.js'
import {
  ConflictError, IntegrityError, InvalidInputError, InvalidSignatureError, NotFoundError, SignerMismatchError, StoreError,
  TooLargeError, UserSpaceError, throwIfAborted
} from '../errors.js'
import { MAX_BLOCK_BYTES, encodeCar, verifyBlock } from '../store/blocks.js'
import { CarReader } from '@ipld/car'
import { httpErrorHandler } from './http-errors.js'
import {
  SIGNATURE_BYTES, SIGN_PAYLOAD_VERSION, avatarHex, buildSignPayload, checkSeconds, checkText, compressedHex, decodeLink,
  encodeLink, linkSignPayload, parsePublicKey, parseUuid, signedBy, verifyLinkSignature, type KvLink
} from './nextid/chain.js'
import { canonicalJson, isJsonObject, mergePatch, parseJson, type JsonObject, type JsonValue } from './nextid/json.js'
import {
  encodeEntry, getCid, getEntry, keys, listAvatars, listEntries, mutexFor, readBlock, type KvEntry, type NextIdStores
} from './nextid/store.js'
import type { Block, AbortOptions } from '../store/interface.js'
import type { Blockstore } from 'interface-blockstore'
import type { Datastore } from 'interface-datastore'

export { buildSignPayload, type SignPayloadFields, type KvLink } from './nextid/chain.js'
export type { NextIdStores } from './nextid/store.js'

/** @default for `createdAtWindowMs`: a wallet prompt may take a while; a replay a day later may not. */
export const DEFAULT_CREATED_AT_WINDOW_MS = 10 * 60 * 1000

/** @default for `maxImportBytes`: a whole avatar chain, moved between hubs. */
export const DEFAULT_MAX_IMPORT_BYTES = 16 * 1024 * 1024

/** @default for `maxBodyBytes`: Next.ID patches are small profile documents. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024

/** @default for `maxContentBytes`. */
export const DEFAULT_MAX_CONTENT_BYTES = 1024 * 1024

/**
 * How many older links a refused signature is tried against, to tell "signed over a stale head"
 * (409) from "not signed by the avatar" (400).
 */
const STALE_LOOKBACK = 16

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
  /** Largest CAR accepted by `POST /api/v1/nextid/import`. @default 16 MiB */
  maxImportBytes?: number
  /** Largest merged content of one (avatar, platform, identity), as canonical JSON. @default DEFAULT_MAX_CONTENT_BYTES (1 MiB) */
  maxContentBytes?: number
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
}

interface Config extends NextIdStores {
  nowMs: () => number
  createdAtWindowMs: number
  maxBodyBytes: number
  maxImportBytes: number
  maxContentBytes: number
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
    const values: string[] = []
    for (const avatar of await listAvatars(config.datastore, platform, identity, { signal: c.req.raw.signal })) {
      const entry = await getEntry(config.datastore, avatar, platform, identity)
      if (entry !== undefined) values.push('{"avatar":"0x' + avatar + '","content":' + canonicalJson(entry.content) + '}')
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
    await checkBinding(config, publicKey, platform, identity, signal)
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
    const patch = bodyPatch(body)
    const skewMs = Math.abs(createdAt * 1000 - config.nowMs())
    if (skewMs > config.createdAtWindowMs) {
      throw new InvalidInputError(`"created_at" ${createdAt} is ${Math.round(skewMs / 1000)} s from the hub's clock; it must be within ${Math.floor(config.createdAtWindowMs / 1000)} s: request a new payload`)
    }
    await checkBinding(config, publicKey, platform, identity, signal)
    const avatar = avatarHex(publicKey)
    await mutexFor(config.datastore).run([`avatar:${avatar}`, `uuid:${uuid}`], async () => {
      await appendLink(config, { version: SIGN_PAYLOAD_VERSION, avatar, platform, identity, uuid, created_at: createdAt, patch, signature, previous: null }, publicKey, { signal })
    })
    return jsonText(c, 201, await avatarResponse(config, avatar))
  })

  // Not part of the Next.ID API: moving an avatar's chain between hubs as a CAR whose root is the head.
  app.use('/api/v1/nextid/*', cors({ origin: '*', allowMethods: ['GET', 'POST', 'OPTIONS'], allowHeaders: ALLOW_HEADERS, maxAge: 86400 }))
  app.get('/api/v1/nextid/export', async c => {
    const param = c.req.query('avatar')
    if (param === undefined) throw new InvalidInputError('Param missing: avatar')
    const chain = await exportAvatarChain({ ...config, signal: c.req.raw.signal }, param)
    if (chain.head === null) throw new NotFoundError(`this hub has no chain for avatar ${param.slice(0, 140)}`)
    return c.body(encodeCar(chain.blocks, [chain.head]), 200, { 'Content-Type': 'application/vnd.ipld.car; version=1' })
  })
  app.post('/api/v1/nextid/import', async c => {
    const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
    if (type !== 'application/vnd.ipld.car') {
      throw new HTTPException(415, { message: `Content-Type must be application/vnd.ipld.car, got ${JSON.stringify((c.req.header('content-type') ?? 'none').slice(0, 80))}` })
    }
    const bytes = await readLimited(c.req.raw.body, config.maxImportBytes)
    let reader: CarReader
    try {
      reader = await CarReader.fromBytes(bytes)
    } catch (err) {
      throw new InvalidInputError(`body is not a CAR: ${(err as Error).message}`)
    }
    const roots = await reader.getRoots()
    if (roots.length !== 1) throw new InvalidInputError(`an avatar chain CAR has one root (its head), this one has ${roots.length}`)
    const blocks: Block[] = []
    for await (const block of reader.blocks()) {
      if (!(await verifyBlock(block.cid, block.bytes))) throw new IntegrityError(`block ${block.cid.toString()} does not match its CID`)
      blocks.push({ cid: block.cid, bytes: block.bytes })
    }
    await importAvatarChain({ ...config, signal: c.req.raw.signal }, blocks, roots[0] as CID)
    return c.json({ head: (roots[0] as CID).toString(), blocks: blocks.length }, 201)
  })

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

async function checkBinding (config: Config, publicKey: Uint8Array, platform: string, identity: string, signal?: AbortSignal): Promise<void> {
  if (platform === 'nextid') {
    if (!sameKey(identity, publicKey)) throw new InvalidInputError('"identity" must be the avatar\'s own public key when "platform" is "nextid"')
    return
  }
  if (config.proofService === undefined) return
  const avatar = compressedHex(publicKey)
  let bound: boolean
  try {
    bound = await config.proofService({ platform, identity, avatar }, { signal })
  } catch (err) {
    if (err instanceof UserSpaceError) throw err
    throw new StoreError(`ProofService check failed: ${err instanceof Error ? err.message : String(err)}`)
  }
  if (bound !== true) throw new InvalidInputError(`Proof not found under this persona: ProofService binds no ${platform} identity ${JSON.stringify(identity)} to ${avatar}`)
}

async function loadLink (stores: NextIdStores, cid: CID, options?: AbortOptions): Promise<KvLink> {
  const bytes = await readBlock(stores.blockstore, cid, options)
  try {
    return await decodeLink({ cid, bytes })
  } catch (err) {
    throw new StoreError(`stored block ${cid.toString()} is damaged: ${err instanceof Error ? err.message : String(err)}`)
  }
}

async function putBlock (blockstore: Blockstore, block: Block, options?: AbortOptions): Promise<void> {
  try {
    await blockstore.put(block.cid, block.bytes, options)
  } catch (err) {
    throw new StoreError(`block ${block.cid.toString()} could not be stored: ${err instanceof Error ? err.message : String(err)}`)
  }
}

async function commit (datastore: Datastore, puts: Array<[ReturnType<typeof keys.head>, Uint8Array]>, options?: AbortOptions): Promise<void> {
  try {
    const batch = datastore.batch()
    for (const [key, value] of puts) batch.put(key, value)
    await batch.commit(options)
  } catch (err) {
    throw new StoreError(`datastore write failed: ${err instanceof Error ? err.message : String(err)}`)
  }
}

/**
 * Verifies a new link over the avatar's true head and appends it: block first, then one datastore
 * batch (merged content, index, uuid, head), so a reader never sees a head without its block.
 * Runs under the avatar's and the uuid's locks.
 */
async function appendLink (config: Config, draft: KvLink, publicKey: Uint8Array, options: AbortOptions): Promise<void> {
  const { datastore, blockstore } = config
  if (await getCid(datastore, keys.uuid(draft.uuid), options) !== null) {
    throw new ConflictError(`uuid ${draft.uuid} was already used; request a new payload`)
  }
  const headCid = await getCid(datastore, keys.head(draft.avatar), options)
  const head = headCid === null ? null : await loadLink(config, headCid, options)
  const link: KvLink = { ...draft, previous: headCid }
  if (!signedBy(linkSignPayload(link, head?.signature ?? null), link.signature, publicKey)) {
    if (head !== null && await signedOverOlderHead(config, link, head, publicKey, options)) {
      throw new ConflictError('the payload was signed over an older head of this avatar\'s chain (another patch was accepted since); request a new payload and sign it again')
    }
    throw new SignerMismatchError('"signature" was not made by the avatar over the sign_payload of this request')
  }
  const entry = await getEntry(datastore, link.avatar, link.platform, link.identity, options)
  const merged: KvEntry = { platform: link.platform, identity: link.identity, content: mergePatch(entry?.content, link.patch) }
  const entryBytes = encodeEntry(merged)
  if (entryBytes.length > config.maxContentBytes) {
    throw new TooLargeError(`the merged content would be ${entryBytes.length} bytes, larger than the limit of ${config.maxContentBytes}`)
  }
  const block = await encodeLink(link)
  if (block.bytes.length > MAX_BLOCK_BYTES) throw new TooLargeError(`the patch block would be ${block.bytes.length} bytes, larger than ${MAX_BLOCK_BYTES}`)
  throwIfAborted(options.signal)
  await putBlock(blockstore, block)
  // From here on the request is not abortable: the write completes or fails as a whole.
  await commit(datastore, [
    [keys.kv(link.avatar, link.platform, link.identity), entryBytes],
    [keys.identity(link.platform, link.identity, link.avatar), new Uint8Array(0)],
    [keys.uuid(link.uuid), block.cid.bytes],
    [keys.head(link.avatar), block.cid.bytes]
  ])
}

/** Whether the signature verifies over an older `previous` (null, or an ancestor of the head). */
async function signedOverOlderHead (stores: NextIdStores, link: KvLink, head: KvLink, publicKey: Uint8Array, options: AbortOptions): Promise<boolean> {
  const over = (previous: Uint8Array | null): boolean => {
    try {
      return signedBy(linkSignPayload(link, previous), link.signature, publicKey)
    } catch {
      return false
    }
  }
  if (over(null)) return true
  let cid = head.previous
  for (let i = 0; cid !== null && i < STALE_LOOKBACK; i++) {
    const older = await loadLink(stores, cid, options)
    if (over(older.signature)) return true
    cid = older.previous
  }
  return false
}

export interface AvatarChain {
  /** the newest block, or null when the hub holds nothing for the avatar */
  head: CID | null
  /** every block of the chain, oldest first */
  blocks: Block[]
}

/**
 * Reads an avatar's whole chain (for `userspace export --avatar`). Each block is checked against
 * its CID as it is read.
 */
export async function exportAvatarChain (options: NextIdStores & AbortOptions, avatar: string | Uint8Array): Promise<AvatarChain> {
  const hex = avatarHex(parsePublicKey(avatar))
  const head = await getCid(options.datastore, keys.head(hex), options)
  const blocks: Block[] = []
  const seen = new Set<string>()
  for (let cid = head; cid !== null;) {
    throwIfAborted(options.signal)
    if (seen.has(cid.toString())) throw new StoreError(`the chain of 0x${hex} loops at ${cid.toString()}`)
    seen.add(cid.toString())
    const bytes = await readBlock(options.blockstore, cid, options)
    const link = await decodeLink({ cid, bytes })
    blocks.push({ cid, bytes })
    cid = link.previous
  }
  return { head, blocks: blocks.reverse() }
}

/**
 * Imports a chain exported by `exportAvatarChain`, all or nothing. Every block must hash to its CID,
 * decode to a link of one avatar, and carry a signature by that avatar over its sign_payload given
 * the previous link (checked one by one from the first); every block must be on the chain from
 * `head`, and uuids must be unused elsewhere on this hub. The hub's existing chain for the avatar,
 * if any, must be a prefix of the imported one (ConflictError otherwise). Nothing is written until
 * all of it has been checked. History is taken as it was accepted: `created_at` is not compared
 * with the clock, ProofService bindings and `maxContentBytes` are not re-checked (the "nextid"
 * identity rule is).
 */
export async function importAvatarChain (options: NextIdStores & AbortOptions, blocks: Block[], head: CID | null): Promise<void> {
  if (!Array.isArray(blocks)) throw new InvalidInputError('"blocks" expected an array')
  if (head === null) {
    if (blocks.length > 0) throw new InvalidInputError('"head" is null but blocks were given')
    return
  }
  const headCid = CID.asCID(head)
  if (headCid === null) throw new InvalidInputError('"head" expected a CID')

  const byCid = new Map<string, { block: Block, link: KvLink }>()
  for (const given of blocks) {
    const cid = CID.asCID(given?.cid)
    if (cid === null || !(given.bytes instanceof Uint8Array)) throw new InvalidInputError('"blocks" expected { cid, bytes } items')
    const block = { cid, bytes: given.bytes }
    byCid.set(cid.toString(), { block, link: await decodeLink(block) })
  }

  const chain: Array<{ block: Block, link: KvLink }> = []
  for (let cid: CID | null = headCid; cid !== null;) {
    const item = byCid.get(cid.toString())
    if (item === undefined) throw new InvalidInputError(`block ${cid.toString()} of the chain is missing`)
    if (chain.length >= byCid.size) throw new IntegrityError('the chain loops')
    chain.push(item)
    cid = item.link.previous
  }
  if (chain.length !== byCid.size) throw new InvalidInputError(`${byCid.size - chain.length} of the blocks are not on the chain from the head`)
  chain.reverse()

  const first = chain[0] as { block: Block, link: KvLink }
  const avatar = first.link.avatar
  const publicKey = hexToBytes(avatar)
  const uuids = new Set<string>()
  const entries = new Map<string, KvEntry>()
  let previous: Uint8Array | null = null
  for (const { block, link } of chain) {
    if (link.avatar !== avatar) throw new IntegrityError(`block ${block.cid.toString()} belongs to another avatar than the chain`)
    if (uuids.has(link.uuid)) throw new IntegrityError(`uuid ${link.uuid} is used twice in the chain`)
    uuids.add(link.uuid)
    if (link.platform === 'nextid' && !sameKey(link.identity, publicKey)) {
      throw new IntegrityError(`block ${block.cid.toString()} has platform "nextid" with another identity than its avatar`)
    }
    verifyLinkSignature(link, previous, block.cid)
    previous = link.signature
    const slot = JSON.stringify([link.platform, link.identity])
    const merged: KvEntry = { platform: link.platform, identity: link.identity, content: mergePatch(entries.get(slot)?.content, link.patch) }
    entries.set(slot, merged)
  }

  const inChain = new Set(chain.map(({ block }) => block.cid.toString()))
  await mutexFor(options.datastore).run([`avatar:${avatar}`, ...[...uuids].map(uuid => `uuid:${uuid}`)], async () => {
    throwIfAborted(options.signal)
    const local = await getCid(options.datastore, keys.head(avatar), options)
    if (local !== null && !inChain.has(local.toString())) {
      throw new ConflictError(`avatar 0x${avatar} already has a chain on this hub (head ${local.toString()}) that the imported chain does not extend`)
    }
    for (const { block, link } of chain) {
      const used = await getCid(options.datastore, keys.uuid(link.uuid), options)
      if (used !== null && !used.equals(block.cid)) throw new ConflictError(`uuid ${link.uuid} is already used on this hub by block ${used.toString()}`)
    }
    for (const { block } of chain) await putBlock(options.blockstore, block, options)
    const puts: Array<[ReturnType<typeof keys.head>, Uint8Array]> = []
    for (const entry of entries.values()) {
      puts.push([keys.kv(avatar, entry.platform, entry.identity), encodeEntry(entry)])
      puts.push([keys.identity(entry.platform, entry.identity, avatar), new Uint8Array(0)])
    }
    for (const { block, link } of chain) puts.push([keys.uuid(link.uuid), block.cid.bytes])
    puts.push([keys.head(avatar), headCid.bytes])
    await commit(options.datastore, puts)
  })
}

function sameKey (identity: string, publicKey: Uint8Array): boolean {
  try {
    return bytesToHex(parsePublicKey(identity, 'identity')) === bytesToHex(publicKey)
  } catch {
    return false
  }
}

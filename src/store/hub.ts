/**
 * A Store that talks to a UserSpace hub over HTTP, with nothing but `fetch` (Node 20+ and browsers):
 * blocks go up as one CAR per call and come down as raw blocks checked against their CIDs; records
 * go through Delegated Routing V1; live records arrive over the hub's server-sent-events stream,
 * read with fetch streaming (Node 20 has no EventSource) and reconnected with backoff.
 *
 * The hub is not trusted, with integrity or with resources: every block is verified here, the Space
 * validates every record it is handed, and every body is read through a reader capped for its kind
 * (a block, a record, a JSON answer, an event line) and counted after any content decoding, so a
 * huge or compressed body costs at most the cap. Every call ends after `timeoutMs`. An address-index
 * answer is checked against the named space's owner binding before it is believed. Hub refusals
 * come back as the named errors of errors.ts; an unreachable or silent hub is a StoreError, a hub
 * that sends what no honest hub sends is an UntrustedHubError naming it.
 */
import { DEFAULT_FETCH_CONCURRENCY, DEFAULT_MAX_DAG_BLOCKS, DEFAULT_MAX_DAG_BYTES } from './limits.js'
export { DEFAULT_FETCH_CONCURRENCY, DEFAULT_MAX_DAG_BLOCKS, DEFAULT_MAX_DAG_BYTES }
import {
  BLOCKS_PATH, CAR_TYPE, IPNS_RECORD_CODEC, IPNS_RECORD_TYPE, JSON_TYPE, RAW_TYPE, addressPath, eventsPath, ipfsPath, ipnsRecordPath, publishPath
} from '../protocol.js'
import { fromBase64, hexToBytes } from '../crypto/bytes.js'
import {
  AbortedError, errorFromName, IntegrityError, InvalidInputError, NotFoundError, StoreError, TooLargeError, UntrustedHubError, UserSpaceError,
  throwIfAborted
} from '../errors.js'
import { blockLength } from '@ipld/car/buffer-writer'
import { CarBlockIterator } from '@ipld/car/iterator'
import { MAX_BLOCK_BYTES, encodeCar, verifyBlock } from './blocks.js'
import { Limiter } from './limiter.js'
import { canonicalName, MAX_RECORD_BYTES, validateRecord } from './record.js'
// The root codec lives with the space; the hub store needs it for one check: that the space an
// address-index answer names is bound to that address (an index is a claim, a binding is a proof).
import { decodeRoot, verifyOwner } from '../space/root.js'
import type { AbortOptions, Block, GetDagOptions, GetRecordOptions, LookupAddressOptions, RecordListener, Store } from './interface.js'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

/** Largest CAR sent in one upload; more blocks go in several uploads. @default 8 MiB */
export const DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 * 1024
/** Most blocks sent in one upload or publish (the hub's default per-request limit). @default 4 096 */
export const DEFAULT_MAX_UPLOAD_BLOCKS = 4_096
/** First delay before reconnecting a dropped event stream. @default 250 ms */
export const DEFAULT_RECONNECT_MIN_MS = 250
/** Longest delay between reconnection attempts. @default 30 s */
export const DEFAULT_RECONNECT_MAX_MS = 30_000
/**
 * How long one call to a hub may take, from sending the request to the last byte of the answer.
 * A hub that accepts the connection and never answers fails the call with StoreError after this.
 * @default 30 s
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
/**
 * How long an event stream may stay silent before it is dropped and reconnected. Hubs send a
 * keepalive comment every 15 s, so only a stalled or hostile hub stays silent longer. @default 45 s
 */
export const DEFAULT_EVENTS_IDLE_MS = 45_000
/** Largest JSON answer (address lookups, error bodies) read from a hub. @default 8 KiB */
export const MAX_JSON_RESPONSE_BYTES = 8 * 1024
/**
 * Longest line, and longest event, read from an event stream. A record event is the base64 of a
 * record of at most 10 KiB (13 656 characters) plus its field name. @default 16 KiB
 */
export const MAX_EVENT_LINE_CHARS = 16 * 1024

export interface HubStoreOptions {
  /**
   * The fetch to use (a test double, or one that adds auth headers).
   *
   * @default globalThis.fetch
   */
  fetch?: typeof globalThis.fetch
  /** @default DEFAULT_MAX_UPLOAD_BYTES (8 MiB; the hub's default body limit is 16 MiB) */
  maxUploadBytes?: number
  /** @default DEFAULT_MAX_UPLOAD_BLOCKS (4 096, the hub's default) */
  maxUploadBlocks?: number
  /** @default DEFAULT_RECONNECT_MIN_MS (250 ms) */
  reconnectMinMs?: number
  /** @default DEFAULT_RECONNECT_MAX_MS (30 s) */
  reconnectMaxMs?: number
  /**
   * Upper bound for each call, body included; the caller's `signal` can end it sooner.
   *
   * @default DEFAULT_REQUEST_TIMEOUT_MS (30 s)
   */
  timeoutMs?: number
  /** @default DEFAULT_EVENTS_IDLE_MS (45 s) */
  eventsIdleMs?: number
  /** Block requests in flight at once. @default DEFAULT_FETCH_CONCURRENCY (32) */
  fetchConcurrency?: number
  /** @default DEFAULT_MAX_DAG_BYTES (64 MiB) */
  maxDagBytes?: number
  /** @default DEFAULT_MAX_DAG_BLOCKS (65 536) */
  maxDagBlocks?: number
}

/** Status → error name, for refusals that carry no `name` (proxies, 406/415 from the framework). */
const NAME_BY_STATUS: Record<number, string> = {
  400: 'InvalidInputError',
  404: 'NotFoundError',
  406: 'InvalidInputError',
  409: 'ConflictError',
  413: 'TooLargeError',
  415: 'InvalidInputError',
  429: 'RateLimitError'
}

/**
 * A Store backed by the hub at `url`.
 *
 * @example
 * ```ts
 * const store = hubStore('http://127.0.0.1:8787')
 * const space = await openSpace({ signer, store })
 * ```
 */
export function hubStore (url: string, options: HubStoreOptions = {}): Store {
  if (typeof url !== 'string') throw new InvalidInputError(`"url" expected a string, got ${typeof url}`)
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new InvalidInputError(`"url" expected an http(s) URL, got "${url.slice(0, 100)}"`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new InvalidInputError(`"url" expected an http(s) URL, got "${url.slice(0, 100)}"`)
  }
  for (const key of ['maxUploadBytes', 'reconnectMinMs', 'reconnectMaxMs', 'timeoutMs', 'eventsIdleMs', 'maxDagBytes', 'maxDagBlocks', 'fetchConcurrency', 'maxUploadBlocks'] as const) {
    const value = options[key]
    if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value > 0)) {
      throw new InvalidInputError(`"${key}" expected a positive number, got ${String(value)}`)
    }
  }
  return new HubStore(parsed.href.replace(/\/+$/, ''), options)
}

class HubStore implements Store {
  /** A hub refuses (409) a record whose sequence is not above the one it holds, or equal with another value. */
  readonly conditional = true
  private readonly base: string
  private readonly fetch: typeof globalThis.fetch
  private readonly options: HubStoreOptions
  private readonly fetchSlots: Limiter
  /** Set once the hub answered the one-request publish route with 404 (a hub that predates it). */
  private publishUnsupported = false

  constructor (base: string, options: HubStoreOptions) {
    this.base = base
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
    this.options = options
    this.fetchSlots = new Limiter(options.fetchConcurrency ?? DEFAULT_FETCH_CONCURRENCY)
  }

  async putBlocks (blocks: Block[], options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    await this.checkBlocks(blocks)
    await this.uploadInParts(blocks, options)
  }

  private async checkBlocks (blocks: Block[]): Promise<void> {
    for (const block of blocks) {
      if (block.bytes.byteLength > MAX_BLOCK_BYTES) {
        throw new InvalidInputError(`block ${block.cid.toString()} is ${block.bytes.byteLength} bytes, over the ${MAX_BLOCK_BYTES}-byte limit`)
      }
      if (!(await verifyBlock(block.cid, block.bytes))) {
        throw new IntegrityError(`block ${block.cid.toString()} does not match its CID`)
      }
    }
  }

  private async uploadInParts (blocks: Block[], options: AbortOptions): Promise<void> {
    // Usually one CAR. Several when the blocks are many: each upload is all-or-nothing, and a
    // later failure leaves only unreferenced blocks behind (nothing points at them until a record does).
    const max = this.options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES
    let batch: Block[] = []
    let size = 0
    for (const block of blocks) {
      const length = blockLength(block)
      if (batch.length > 0 && (size + length > max || batch.length >= (this.options.maxUploadBlocks ?? DEFAULT_MAX_UPLOAD_BLOCKS))) {
        await this.upload(batch, options)
        batch = []
        size = 0
      }
      batch.push(block)
      size += length
    }
    if (batch.length > 0) await this.upload(batch, options)
  }

  /**
   * Blocks and record in one request (`POST /api/v1/publish/{name}`, a CAR whose root is the record
   * as an `ipns-record` block). Blocks beyond `maxUploadBytes` go first in plain uploads; the last
   * part travels with the record, so the hub checks the record with every block in view.
   */
  async publish (name: string, record: Uint8Array, blocks: Block[], options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    if (!(record instanceof Uint8Array) || record.byteLength > MAX_RECORD_BYTES) {
      throw new InvalidInputError(`"record" expected a Uint8Array of at most ${MAX_RECORD_BYTES} bytes`)
    }
    await this.checkBlocks(blocks)
    if (this.publishUnsupported) {
      await this.uploadInParts(blocks, options)
      await this.putRecord(name, record, options)
      return
    }
    const recordBlock: Block = { cid: CID.createV1(IPNS_RECORD_CODEC, await sha256.digest(record)), bytes: record }
    const max = this.options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES
    let size = blockLength(recordBlock)
    let split = blocks.length
    const maxBlocks = this.options.maxUploadBlocks ?? DEFAULT_MAX_UPLOAD_BLOCKS
    // The record counts as one of the request's blocks.
    while (split > 0 && blocks.length - split + 2 <= maxBlocks && size + blockLength(blocks[split - 1] as Block) <= max) size += blockLength(blocks[--split] as Block)
    await this.uploadInParts(blocks.slice(0, split), options)
    const car = encodeCar([recordBlock, ...blocks.slice(split)], [recordBlock.cid])
    try {
      await this.call(publishPath(this.name(name)), {
        method: 'POST',
        headers: { 'content-type': CAR_TYPE, accept: JSON_TYPE },
        body: car
      }, options, async () => undefined)
    } catch (err) {
      // The route never answers 404 for a name: a hub that predates it does. Use the two standard
      // routes with it from now on.
      if (!(err instanceof NotFoundError)) throw err
      this.publishUnsupported = true
      await this.uploadInParts(blocks.slice(split), options)
      await this.putRecord(name, record, options)
    }
  }

  private async upload (blocks: Block[], options: AbortOptions): Promise<void> {
    const car = encodeCar(blocks)
    await this.call(BLOCKS_PATH, {
      method: 'POST',
      headers: { 'content-type': CAR_TYPE, accept: JSON_TYPE },
      body: car as Uint8Array<ArrayBuffer>
    }, options, async () => undefined)
  }

  async getBlock (cid: CID, options: AbortOptions = {}): Promise<Uint8Array> {
    // A space read block by block asks for every bucket at once: at most `fetchConcurrency` go out together.
    const bytes = await this.fetchSlots.run(options.signal, async () => await this.call(`${ipfsPath(cid.toString())}?format=raw`, {
      headers: { accept: RAW_TYPE }
    }, options, async (res, signal) => await this.read(res, MAX_BLOCK_BYTES, `block ${cid.toString()}`, signal)),
    () => new AbortedError(`request to ${this.base} was aborted`))
    if (!(await verifyBlock(cid, bytes))) {
      throw new IntegrityError(`block ${cid.toString()} from ${this.base} does not match its CID`)
    }
    return bytes
  }

  /**
   * One trustless-gateway CAR (`GET /ipfs/{cid}[/{path}]?format=car&dag-scope=all`), read as a stream
   * and held to the caps: at most `maxDagBytes` (counted after content decoding) and `maxDagBlocks`,
   * each block at most MAX_BLOCK_BYTES, hashed with sha2-256 and matching its CID, all within the
   * request timeout. A hub that sends more, or a block that does not match, is an UntrustedHubError;
   * nothing it sent is returned then.
   */
  async getDag (cid: CID, options: GetDagOptions = {}): Promise<Block[]> {
    const path = options.path === undefined || options.path === '' ? '' : '/' + options.path.split('/').map(encodeURIComponent).join('/')
    const maxBytes = this.options.maxDagBytes ?? DEFAULT_MAX_DAG_BYTES
    const maxBlocks = this.options.maxDagBlocks ?? DEFAULT_MAX_DAG_BLOCKS
    return await this.call(`${ipfsPath(cid.toString())}${path}?format=car&dag-scope=all`, {
      headers: { accept: CAR_TYPE }
    }, options, async (res, signal) => {
      const declared = Number(res.headers.get('content-length') ?? Number.NaN)
      if (res.headers.get('content-encoding') === null && declared > maxBytes) {
        throw new UntrustedHubError(`hub ${this.base} offers a CAR of ${declared} bytes for ${cid.toString()}, over the ${maxBytes}-byte limit`)
      }
      if (res.body === null) throw new UntrustedHubError(`hub ${this.base} answered the CAR of ${cid.toString()} with no body`)
      const blocks: Block[] = []
      const chunks = cappedChunks(res.body, maxBytes, signal)
      try {
        const iterator = await CarBlockIterator.fromIterable(chunks)
        for await (const block of iterator) {
          if (blocks.length >= maxBlocks) throw new TooLargeError(`the CAR holds over ${maxBlocks} blocks`)
          const blockCid = CID.asCID(block.cid) as CID
          if (block.bytes.byteLength > MAX_BLOCK_BYTES) throw new TooLargeError(`block ${blockCid.toString()} is over the ${MAX_BLOCK_BYTES}-byte limit`)
          if (!(await verifyBlock(blockCid, block.bytes))) throw new IntegrityError(`block ${blockCid.toString()} does not match its CID`)
          blocks.push({ cid: blockCid, bytes: block.bytes })
        }
      } catch (err) {
        if (signal.aborted) throw err
        if (err instanceof StoreError) throw err
        throw new UntrustedHubError(`hub ${this.base} sent a bad CAR for ${cid.toString()}: ${(err as Error).message}`, { cause: err })
      } finally {
        // The parser may stop with the body half read: release it.
        await chunks.return(undefined)
      }
      return blocks
    })
  }

  async putRecord (name: string, record: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.call(ipnsRecordPath(this.name(name)), {
      method: 'PUT',
      headers: { 'content-type': IPNS_RECORD_TYPE },
      body: record as Uint8Array<ArrayBuffer>
    }, options, async () => undefined)
  }

  async getRecord (name: string, options: GetRecordOptions = {}): Promise<Uint8Array | undefined> {
    return await this.call(ipnsRecordPath(this.name(name)), {
      headers: { accept: IPNS_RECORD_TYPE },
      // `no-store` makes browsers and Node send `Cache-Control: no-cache`, which also tells the hub
      // to ask the network for a newer record; it adds no header of ours, so no CORS preflight.
      cache: options.nocache === true ? 'no-store' : 'default'
    }, options, async (res, signal) => await this.read(res, MAX_RECORD_BYTES, `the record of ${name}`, signal), true)
  }

  /**
   * The name the hub's address index gives for `address`, believed only once the named space's
   * owner binding names that address: the binding's `signature` when the answer carries it, else
   * the binding in the space's current root (two more requests: record and root). A hub whose index
   * contradicts the binding is lying or broken: UntrustedHubError, never a verdict on the wallet.
   */
  async lookupAddress (address: string, options: LookupAddressOptions = {}): Promise<string | undefined> {
    if (typeof address !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(address)) {
      throw new InvalidInputError(`"address" expected 0x-prefixed 20-byte hex, got ${typeof address === 'string' ? `"${address.slice(0, 50)}"` : typeof address}`)
    }
    const body = await this.call(addressPath(address), { headers: { accept: JSON_TYPE } }, options,
      async (res, signal) => await this.readJson(res, 'the address lookup', signal), true)
    if (body === undefined) return undefined
    const claimed = (body as { name?: unknown } | null)?.name
    let name: string
    try {
      if (typeof claimed !== 'string') throw new InvalidInputError('no name')
      name = canonicalName(claimed)
    } catch (err) {
      throw new UntrustedHubError(`hub ${this.base} answered the address lookup of ${address} without a valid IPNS name`, { cause: err })
    }
    // The expected name needs no proof here: whoever reads that space checks its binding anyway.
    if (name === options.expected) return name
    const signature = (body as { signature?: unknown }).signature
    if (signature === undefined) {
      await this.checkBinding(address, name, options)
      return name
    }
    // The hub sent the binding's signature with its answer: checked here, with no further request.
    try {
      if (typeof signature !== 'string') throw new InvalidInputError('"signature" expected hex')
      verifyOwner({ address, signature: hexToBytes(signature, 'signature') }, name)
    } catch (err) {
      throw new UntrustedHubError(`hub ${this.base} says ${address} owns ${name}, but sent a signature that does not bind them: ${(err as Error).message}`, { cause: err })
    }
    return name
  }

  /** Throws UntrustedHubError unless the space `name`, as this hub serves it, is bound to `address`. */
  private async checkBinding (address: string, name: string, options: AbortOptions): Promise<void> {
    const claim = `hub ${this.base} says ${address} owns ${name}`
    const record = await this.getRecord(name, options)
    if (record === undefined) throw new UntrustedHubError(`${claim}, but has no record of ${name}`)
    let owner: string
    try {
      const info = await validateRecord(name, record, { allowExpired: true })
      if (info.cid === undefined) throw new InvalidInputError(`the record points at ${info.value.slice(0, 100)}`)
      owner = verifyOwner(decodeRoot(await this.getBlock(info.cid, options)).owner, name)
    } catch (err) {
      if (err instanceof StoreError || (err as Error).name === 'AbortedError') throw err
      throw new UntrustedHubError(`${claim}, but serves no valid owner binding for it: ${(err as Error).message}`, { cause: err })
    }
    if (owner.toLowerCase() !== address.toLowerCase()) {
      throw new UntrustedHubError(`${claim}, but the owner binding of ${name} names ${owner}`)
    }
  }

  subscribe (name: string, listener: RecordListener): () => void {
    const path = eventsPath(this.name(name))
    const controller = new AbortController()
    const min = this.options.reconnectMinMs ?? DEFAULT_RECONNECT_MIN_MS
    const max = this.options.reconnectMaxMs ?? DEFAULT_RECONNECT_MAX_MS
    const idleMs = this.options.eventsIdleMs ?? DEFAULT_EVENTS_IDLE_MS
    const run = async (): Promise<void> => {
      let delay = min
      while (!controller.signal.aborted) {
        // One attempt: the headers must come within the request timeout, then bytes at least
        // every `idleMs`; anything else drops the connection and retries with backoff.
        const attempt = new AbortController()
        const stop = (): void => { attempt.abort() }
        controller.signal.addEventListener('abort', stop, { once: true })
        const headersTimer = setTimeout(stop, this.timeoutMs)
        ;(headersTimer as { unref?: () => void }).unref?.()
        try {
          const res = await this.fetch(this.base + path, {
            headers: { accept: 'text/event-stream' },
            cache: 'no-store',
            signal: attempt.signal
          })
          clearTimeout(headersTimer)
          if (res.ok && res.body !== null) {
            for await (const event of readEvents(res.body, { idleMs })) {
              // Backoff restarts only once the stream has delivered a whole event (hubs send `ready`
              // at once): a hub that answers and then sends garbage is retried ever more slowly.
              delay = min
              if (event.retry !== undefined) delay = Math.min(Math.max(event.retry, min), max)
              if (event.event !== 'record') continue
              let record: Uint8Array
              try {
                record = fromBase64(event.data, 'record')
              } catch {
                continue
              }
              try {
                listener(record)
              } catch {
                // A listener's failure is its own; the stream goes on.
              }
            }
          } else {
            await res.body?.cancel().catch(() => {})
            // A refusal that retrying cannot fix (a malformed name) ends the subscription.
            if (res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 408) return
          }
        } catch {
          // Dropped, unreachable, silent or over a limit: retry below.
        } finally {
          clearTimeout(headersTimer)
          controller.signal.removeEventListener('abort', stop)
          attempt.abort()
        }
        if (controller.signal.aborted) return
        await sleep(delay * (0.5 + Math.random() / 2), controller.signal)
        delay = Math.min(delay * 2, max)
      }
    }
    void run()
    return () => { controller.abort() }
  }

  private name (name: string): string {
    return encodeURIComponent(canonicalName(name))
  }

  private get timeoutMs (): number {
    return this.options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
  }

  /**
   * One call to the hub, bounded by the caller's signal and the request timeout from the first byte
   * sent to the last byte read: sends the request, hands a 2xx response to `read`, and turns
   * anything else into the named error the hub sent. With `notFoundIsUndefined`, a 404 resolves to
   * undefined.
   */
  private async call<T> (path: string, init: RequestInit, options: AbortOptions, read: (res: Response, signal: AbortSignal) => Promise<T>, notFoundIsUndefined: true): Promise<T | undefined>
  private async call<T> (path: string, init: RequestInit, options: AbortOptions, read: (res: Response, signal: AbortSignal) => Promise<T>): Promise<T>
  private async call<T> (path: string, init: RequestInit, options: AbortOptions, read: (res: Response, signal: AbortSignal) => Promise<T>, notFoundIsUndefined = false): Promise<T | undefined> {
    throwIfAborted(options.signal)
    const timeout = AbortSignal.timeout(this.timeoutMs)
    const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
    try {
      let res: Response
      try {
        res = await this.fetch(this.base + path, { ...init, signal })
      } catch (err) {
        throw new StoreError(`cannot reach hub ${this.base}: ${(err as Error).message}`, { cause: err })
      }
      if (res.ok) {
        try {
          return await read(res, signal)
        } finally {
          // Whatever `read` left unread (an upload's receipt) is not wanted: free the connection.
          await res.body?.cancel().catch(() => {})
        }
      }
      if (res.status === 404 && notFoundIsUndefined) {
        await res.body?.cancel().catch(() => {})
        return undefined
      }
      throw await this.failure(res, signal)
    } catch (err) {
      // The signal decides what an interrupted call was, whatever the fetch threw.
      if (options.signal?.aborted === true) throw new AbortedError(`request to ${this.base} was aborted`, { cause: err })
      if (timeout.aborted) throw new StoreError(`hub ${this.base} did not answer within ${this.timeoutMs} ms`, { cause: err })
      throw err
    }
  }

  /** A body read whole, but never more than `maxBytes` of it (after any content decoding). */
  private async read (res: Response, maxBytes: number, what: string, signal: AbortSignal): Promise<Uint8Array> {
    try {
      return await readCapped(res, maxBytes)
    } catch (err) {
      if (err instanceof TooLargeError) {
        throw new UntrustedHubError(`hub ${this.base} sent ${what} over the ${maxBytes}-byte limit`, { cause: err })
      }
      if (signal.aborted) throw err
      throw new StoreError(`hub ${this.base} dropped the response: ${(err as Error).message}`, { cause: err })
    }
  }

  private async readJson (res: Response, what: string, signal: AbortSignal): Promise<unknown> {
    const bytes = await this.read(res, MAX_JSON_RESPONSE_BYTES, what, signal)
    try {
      return JSON.parse(new TextDecoder().decode(bytes))
    } catch (err) {
      throw new UntrustedHubError(`hub ${this.base} answered ${what} with something that is not JSON`, { cause: err })
    }
  }

  /** The named error a hub's refusal describes, read from at most MAX_JSON_RESPONSE_BYTES of body. */
  private async failure (res: Response, signal: AbortSignal): Promise<UserSpaceError> {
    let body: unknown
    try {
      body = JSON.parse(new TextDecoder().decode(await readCapped(res, MAX_JSON_RESPONSE_BYTES)))
    } catch {
      if (signal.aborted) throw new AbortedError(`request to ${this.base} was aborted`)
      body = undefined
    }
    const fields = (typeof body === 'object' && body !== null ? body : {}) as { message?: unknown, name?: unknown }
    const message = typeof fields.message === 'string'
      ? fields.message.slice(0, 500)
      : `hub ${this.base} answered ${res.status} ${res.statusText.slice(0, 100)}`
    // A hub may only report the failures a hub can have: never a verdict on the user's wallet.
    const name = typeof fields.name === 'string' && HUB_ERROR_NAMES.has(fields.name) ? fields.name : NAME_BY_STATUS[res.status]
    return errorFromName(name, message)
  }
}

/** The error names a hub's refusal may carry; any other name falls back to the status's. */
const HUB_ERROR_NAMES = new Set([
  'InvalidInputError', 'TooLargeError', 'InvalidSignatureError', 'SignerMismatchError', 'IntegrityError',
  'NotFoundError', 'InvalidRecordError', 'ConflictError', 'EquivocationError', 'FormatError', 'StoreError',
  'RateLimitError'
])

/**
 * Reads a response body whole, refusing (TooLargeError) as soon as it passes `maxBytes`: a declared
 * Content-Length over the cap is refused before reading, and the bytes are counted as they arrive,
 * after fetch's content decoding, so a gzip bomb stops at the cap too. The body is cancelled on
 * refusal. Exported for the other hub answers read elsewhere (the CLI's CARs).
 */
export async function readCapped (res: Response, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? Number.NaN)
  // A declared length describes the encoded bytes; it can only refuse early, never admit.
  if (res.headers.get('content-encoding') === null && declared > maxBytes) {
    await res.body?.cancel().catch(() => {})
    throw new TooLargeError(`the response declares ${declared} bytes, over the ${maxBytes}-byte limit`)
  }
  if (res.body === null) return new Uint8Array(0)
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let length = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      length += value.byteLength
      if (length > maxBytes) throw new TooLargeError(`the response is over the ${maxBytes}-byte limit`)
      chunks.push(value)
    }
  } catch (err) {
    await reader.cancel().catch(() => {})
    throw err
  }
  if (chunks.length === 1) return chunks[0] as Uint8Array
  const out = new Uint8Array(length)
  let offset = 0
  for (const chunk of chunks) { out.set(chunk, offset); offset += chunk.byteLength }
  return out
}

export interface ServerSentEvent {
  event: string
  data: string
  id?: string
  retry?: number
}

export interface ReadEventsOptions {
  /** @default MAX_EVENT_LINE_CHARS */
  maxLineChars?: number
  /** Longest data of one event (its `data` lines joined). @default MAX_EVENT_LINE_CHARS */
  maxEventChars?: number
  /** Ends the stream with StoreError when no bytes arrive for this long. @default no limit */
  idleMs?: number
}

/**
 * Parses a `text/event-stream` body (HTML Living Standard, "Interpreting an event stream"). Bounded:
 * a line or an event over its cap ends the stream with TooLargeError (a line without end would
 * otherwise grow without limit), and so does silence longer than `idleMs`.
 */
export async function * readEvents (body: ReadableStream<Uint8Array>, options: ReadEventsOptions = {}): AsyncGenerator<ServerSentEvent> {
  const maxLine = options.maxLineChars ?? MAX_EVENT_LINE_CHARS
  const maxEvent = options.maxEventChars ?? MAX_EVENT_LINE_CHARS
  const decoder = new TextDecoder()
  const reader = body.getReader()
  let buffer = ''
  let event = ''
  let data: string[] = []
  let dataChars = 0
  let id: string | undefined
  let retry: number | undefined
  try {
    for (;;) {
      const { done, value } = await readWithin(reader, options.idleMs)
      if (done) return
      buffer += decoder.decode(value, { stream: true })
      // Scan by index and keep only the unfinished tail: no copying of the buffer per line.
      // The next \n and \r are each searched again only once passed, so a chunk of many short lines
      // costs one pass, not one pass per line.
      let start = 0
      let lf = -2
      let cr = -2
      for (;;) {
        if (lf !== -1 && lf < start) lf = buffer.indexOf('\n', start)
        if (cr !== -1 && cr < start) cr = buffer.indexOf('\r', start)
        const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr)
        if (end === -1) break
        // A lone \r at the end may be the first half of \r\n: wait for more.
        if (end === cr && end === buffer.length - 1) break
        const line = buffer.slice(start, end)
        start = end + (end === cr && buffer[end + 1] === '\n' ? 2 : 1)
        if (line.length > maxLine) throw new TooLargeError(`an event-stream line is over ${maxLine} characters`)
        if (line === '') {
          if (data.length > 0) yield { event: event === '' ? 'message' : event, data: data.join('\n'), id, retry }
          event = ''
          data = []
          dataChars = 0
          retry = undefined
          continue
        }
        if (line.startsWith(':')) continue
        const colon = line.indexOf(':')
        const field = colon === -1 ? line : line.slice(0, colon)
        let value = colon === -1 ? '' : line.slice(colon + 1)
        if (value.startsWith(' ')) value = value.slice(1)
        if (field === 'event') event = value
        else if (field === 'data') {
          dataChars += value.length + 1
          if (dataChars > maxEvent) throw new TooLargeError(`an event is over ${maxEvent} characters`)
          data.push(value)
        } else if (field === 'id') id = value
        else if (field === 'retry' && /^\d{1,9}$/.test(value)) retry = Number(value)
      }
      buffer = buffer.slice(start)
      if (buffer.length > maxLine) throw new TooLargeError(`an event-stream line is over ${maxLine} characters`)
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
}

/** The chunks of a body, ending with TooLargeError (and cancelling the body) once they pass `maxBytes`. */
async function * cappedChunks (body: ReadableStream<Uint8Array>, maxBytes: number, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const reader = body.getReader()
  // A fetch that ignores the signal (a wrapper, a test double) must not outlive the call's deadline.
  const stop = (): void => { reader.cancel().catch(() => {}) }
  signal.addEventListener('abort', stop, { once: true })
  let length = 0
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>
      try {
        chunk = await reader.read()
      } catch (err) {
        throw new StoreError(`the hub dropped the CAR: ${(err as Error).message}`, { cause: err })
      }
      const { done, value } = chunk
      if (done) return
      length += value.byteLength
      if (length > maxBytes) throw new TooLargeError(`the CAR is over the ${maxBytes}-byte limit`)
      yield value
    }
  } finally {
    signal.removeEventListener('abort', stop)
    await reader.cancel().catch(() => {})
  }
}

/** One read, or StoreError when nothing arrives within `idleMs`. */
async function readWithin (reader: ReadableStreamDefaultReader<Uint8Array>, idleMs: number | undefined): Promise<ReadableStreamReadResult<Uint8Array>> {
  if (idleMs === undefined) return await reader.read()
  let timer: ReturnType<typeof setTimeout> | undefined
  const silent = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new StoreError(`the event stream was silent for ${idleMs} ms`)) }, idleMs)
    // The open stream keeps a process alive if anything does; its watchdog should not.
    ;(timer as { unref?: () => void }).unref?.()
  })
  try {
    return await Promise.race([reader.read(), silent])
  } finally {
    clearTimeout(timer)
  }
}

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
    function done (): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
  })
}

/**
 * A Store that talks to a UserSpace hub over HTTP, with nothing but `fetch` (Node 20+ and browsers):
 * blocks go up as one CAR per call and come down as raw blocks checked against their CIDs; records
 * go through Delegated Routing V1; live records arrive over the hub's server-sent-events stream,
 * read with fetch streaming (Node 20 has no EventSource) and reconnected with backoff.
 *
 * The hub is not trusted with integrity: every block is verified here, and the Space validates every
 * record it is handed. Hub refusals come back as the named errors of errors.ts; an unreachable hub
 * is a StoreError.
 */
import { fromBase64 } from '../crypto/bytes.js'
import {
  AbortedError, errorFromName, IntegrityError, InvalidInputError, StoreError, UserSpaceError, throwIfAborted
} from '../errors.js'
import { blockLength } from '@ipld/car/buffer-writer'
import { MAX_BLOCK_BYTES, encodeCar, verifyBlock } from './blocks.js'
import { canonicalName, MAX_RECORD_BYTES } from './record.js'
import type { AbortOptions, Block, GetRecordOptions, RecordListener, Store } from './interface.js'
import type { CID } from 'multiformats/cid'

/** Largest CAR sent in one upload; more blocks go in several uploads. @default 8 MiB */
export const DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 * 1024
/** First delay before reconnecting a dropped event stream. @default 250 ms */
export const DEFAULT_RECONNECT_MIN_MS = 250
/** Longest delay between reconnection attempts. @default 30 s */
export const DEFAULT_RECONNECT_MAX_MS = 30_000

export interface HubStoreOptions {
  /**
   * The fetch to use (a test double, or one that adds auth headers).
   *
   * @default globalThis.fetch
   */
  fetch?: typeof globalThis.fetch
  /** @default DEFAULT_MAX_UPLOAD_BYTES (8 MiB; the hub's default body limit is 16 MiB) */
  maxUploadBytes?: number
  /** @default DEFAULT_RECONNECT_MIN_MS (250 ms) */
  reconnectMinMs?: number
  /** @default DEFAULT_RECONNECT_MAX_MS (30 s) */
  reconnectMaxMs?: number
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
  return new HubStore(parsed.href.replace(/\/+$/, ''), options)
}

class HubStore implements Store {
  private readonly base: string
  private readonly fetch: typeof globalThis.fetch
  private readonly options: HubStoreOptions

  constructor (base: string, options: HubStoreOptions) {
    this.base = base
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
    this.options = options
  }

  async putBlocks (blocks: Block[], options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    for (const block of blocks) {
      if (block.bytes.byteLength > MAX_BLOCK_BYTES) {
        throw new InvalidInputError(`block ${block.cid.toString()} is ${block.bytes.byteLength} bytes, over the ${MAX_BLOCK_BYTES}-byte limit`)
      }
      if (!(await verifyBlock(block.cid, block.bytes))) {
        throw new IntegrityError(`block ${block.cid.toString()} does not match its CID`)
      }
    }
    // Usually one CAR. Several when the blocks are many: each upload is all-or-nothing, and a
    // later failure leaves only unreferenced blocks behind (nothing points at them until a record does).
    const max = this.options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES
    let batch: Block[] = []
    let size = 0
    for (const block of blocks) {
      const length = blockLength(block)
      if (batch.length > 0 && size + length > max) {
        await this.upload(batch, options)
        batch = []
        size = 0
      }
      batch.push(block)
      size += length
    }
    if (batch.length > 0) await this.upload(batch, options)
  }

  private async upload (blocks: Block[], options: AbortOptions): Promise<void> {
    const car = encodeCar(blocks)
    await this.request('/api/v1/blocks', {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.ipld.car', accept: 'application/json' },
      body: car as Uint8Array<ArrayBuffer>,
      signal: options.signal
    })
  }

  async getBlock (cid: CID, options: AbortOptions = {}): Promise<Uint8Array> {
    const res = await this.request(`/ipfs/${cid.toString()}?format=raw`, {
      headers: { accept: 'application/vnd.ipld.raw' },
      signal: options.signal
    })
    const bytes = await this.bytes(res, options)
    if (!(await verifyBlock(cid, bytes))) {
      throw new IntegrityError(`block ${cid.toString()} from ${this.base} does not match its CID`)
    }
    return bytes
  }

  async putRecord (name: string, record: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.request(`/routing/v1/ipns/${this.name(name)}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.ipfs.ipns-record' },
      body: record as Uint8Array<ArrayBuffer>,
      signal: options.signal
    })
  }

  async getRecord (name: string, options: GetRecordOptions = {}): Promise<Uint8Array | undefined> {
    const res = await this.request(`/routing/v1/ipns/${this.name(name)}`, {
      headers: { accept: 'application/vnd.ipfs.ipns-record' },
      // `no-store` makes browsers and Node send `Cache-Control: no-cache`, which also tells the hub
      // to ask the network for a newer record; it adds no header of ours, so no CORS preflight.
      cache: options.nocache === true ? 'no-store' : 'default',
      signal: options.signal
    }, true)
    if (res === undefined) return undefined
    const bytes = await this.bytes(res, options)
    if (bytes.byteLength > MAX_RECORD_BYTES) {
      throw new IntegrityError(`record for ${name} from ${this.base} is over the ${MAX_RECORD_BYTES}-byte limit`)
    }
    return bytes
  }

  async lookupAddress (address: string, options: AbortOptions = {}): Promise<string | undefined> {
    if (typeof address !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(address)) {
      throw new InvalidInputError(`"address" expected 0x-prefixed 20-byte hex, got ${typeof address === 'string' ? `"${address.slice(0, 50)}"` : typeof address}`)
    }
    const res = await this.request(`/api/v1/address/${address}`, { headers: { accept: 'application/json' }, signal: options.signal }, true)
    if (res === undefined) return undefined
    let body: unknown
    try {
      body = await res.json()
    } catch {
      throw new StoreError(`hub ${this.base} answered the address lookup with something that is not JSON`)
    }
    const name = (body as { name?: unknown } | null)?.name
    if (typeof name !== 'string') throw new StoreError(`hub ${this.base} answered the address lookup without a name`)
    return canonicalName(name)
  }

  subscribe (name: string, listener: RecordListener): () => void {
    const path = `/api/v1/events/${this.name(name)}`
    const controller = new AbortController()
    const min = this.options.reconnectMinMs ?? DEFAULT_RECONNECT_MIN_MS
    const max = this.options.reconnectMaxMs ?? DEFAULT_RECONNECT_MAX_MS
    const run = async (): Promise<void> => {
      let delay = min
      while (!controller.signal.aborted) {
        try {
          const res = await this.fetch(this.base + path, {
            headers: { accept: 'text/event-stream' },
            cache: 'no-store',
            signal: controller.signal
          })
          if (res.ok && res.body !== null) {
            delay = min
            for await (const event of readEvents(res.body)) {
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
          // Dropped or unreachable: retry below.
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

  /**
   * Sends a request and returns the response when it is a 2xx. With `notFoundIsUndefined`, a 404
   * resolves to undefined. Any other status becomes the named error the hub sent.
   */
  private async request (path: string, init: RequestInit, notFoundIsUndefined: true): Promise<Response | undefined>
  private async request (path: string, init: RequestInit): Promise<Response>
  private async request (path: string, init: RequestInit, notFoundIsUndefined = false): Promise<Response | undefined> {
    throwIfAborted(init.signal ?? undefined)
    let res: Response
    try {
      res = await this.fetch(this.base + path, init)
    } catch (err) {
      if (init.signal?.aborted === true) throw new AbortedError(`request to ${this.base} was aborted`)
      throw new StoreError(`cannot reach hub ${this.base}: ${(err as Error).message}`)
    }
    if (res.ok) return res
    if (res.status === 404 && notFoundIsUndefined) {
      await res.body?.cancel().catch(() => {})
      return undefined
    }
    throw await failure(res, this.base)
  }

  private async bytes (res: Response, options: AbortOptions): Promise<Uint8Array> {
    try {
      return new Uint8Array(await res.arrayBuffer())
    } catch (err) {
      if (options.signal?.aborted === true) throw new AbortedError(`request to ${this.base} was aborted`)
      throw new StoreError(`hub ${this.base} dropped the response: ${(err as Error).message}`)
    }
  }
}

/** The named error a hub's JSON refusal describes. */
async function failure (res: Response, base: string): Promise<UserSpaceError> {
  let body: unknown
  try {
    body = await res.json()
  } catch {
    body = undefined
  }
  const fields = (typeof body === 'object' && body !== null ? body : {}) as { message?: unknown, name?: unknown }
  const message = typeof fields.message === 'string' ? fields.message : `hub ${base} answered ${res.status} ${res.statusText}`
  const name = typeof fields.name === 'string' ? fields.name : NAME_BY_STATUS[res.status]
  return errorFromName(name, message)
}

export interface ServerSentEvent {
  event: string
  data: string
  id?: string
  retry?: number
}

/** Parses a `text/event-stream` body (HTML Living Standard, "Interpreting an event stream"). */
export async function * readEvents (body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder()
  const reader = body.getReader()
  let buffer = ''
  let event = ''
  let data: string[] = []
  let id: string | undefined
  let retry: number | undefined
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      buffer += decoder.decode(value, { stream: true })
      let match: RegExpExecArray | null
      while ((match = /\r\n|\r|\n/.exec(buffer)) !== null) {
        // A lone \r at the end may be the first half of \r\n: wait for more.
        if (match[0] === '\r' && match.index === buffer.length - 1) break
        const line = buffer.slice(0, match.index)
        buffer = buffer.slice(match.index + match[0].length)
        if (line === '') {
          if (data.length > 0) yield { event: event === '' ? 'message' : event, data: data.join('\n'), id, retry }
          event = ''
          data = []
          retry = undefined
          continue
        }
        if (line.startsWith(':')) continue
        const colon = line.indexOf(':')
        const field = colon === -1 ? line : line.slice(0, colon)
        let value = colon === -1 ? '' : line.slice(colon + 1)
        if (value.startsWith(' ')) value = value.slice(1)
        if (field === 'event') event = value
        else if (field === 'data') data.push(value)
        else if (field === 'id') id = value
        else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value)
      }
    }
  } finally {
    await reader.cancel().catch(() => {})
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

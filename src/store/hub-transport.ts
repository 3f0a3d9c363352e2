/**
 * One call to a hub: the request, bounded by the caller's signal and a timeout from the first byte
 * sent to the last byte read; the answer read through a capped reader; a refusal turned into the
 * named error the hub sent (only names a hub may send), an unreachable or silent hub into
 * StoreError, an oversized or malformed answer into UntrustedHubError naming the hub.
 */
import { AbortedError, errorFromName, StoreError, TooLargeError, UntrustedHubError, throwIfAborted } from '../errors.js'
import { readCapped } from './hub-body.js'
import { canonicalName } from './record.js'
import type { UserSpaceError } from '../errors.js'
import type { AbortOptions } from './interface.js'

/**
 * How long one call to a hub may take, from sending the request to the last byte of the answer.
 * A hub that accepts the connection and never answers fails the call with StoreError after this.
 * @default 30 s
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
/** Largest JSON answer (address lookups, error bodies) read from a hub. @default 8 KiB */
export const MAX_JSON_RESPONSE_BYTES = 8 * 1024

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

/** The error names a hub's refusal may carry; any other name falls back to the status's. */
const HUB_ERROR_NAMES = new Set([
  'InvalidInputError', 'TooLargeError', 'InvalidSignatureError', 'SignerMismatchError', 'IntegrityError',
  'NotFoundError', 'InvalidRecordError', 'ConflictError', 'EquivocationError', 'FormatError', 'StoreError',
  'RateLimitError'
])

/** Reads a 2xx response; `signal` ends with the call. */
export type ReadResponse<T> = (res: Response, signal: AbortSignal) => Promise<T>

export class HubTransport {
  constructor (
    /** The hub's URL, without a trailing slash. */
    readonly base: string,
    readonly fetch: typeof globalThis.fetch,
    readonly timeoutMs: number
  ) {}

  /** An IPNS name as it goes in a hub path: canonical, then URL-encoded. */
  pathName (name: string): string {
    return encodeURIComponent(canonicalName(name))
  }

  /**
   * One call to the hub, bounded by the caller's signal and the request timeout from the first byte
   * sent to the last byte read: sends the request, hands a 2xx response to `read`, and turns
   * anything else into the named error the hub sent. With `notFoundIsUndefined`, a 404 resolves to
   * undefined.
   */
  async call<T> (path: string, init: RequestInit, options: AbortOptions, read: ReadResponse<T>, notFoundIsUndefined: true): Promise<T | undefined>
  async call<T> (path: string, init: RequestInit, options: AbortOptions, read: ReadResponse<T>): Promise<T>
  async call<T> (path: string, init: RequestInit, options: AbortOptions, read: ReadResponse<T>, notFoundIsUndefined = false): Promise<T | undefined> {
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
  async read (res: Response, maxBytes: number, what: string, signal: AbortSignal): Promise<Uint8Array> {
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

  async readJson (res: Response, what: string, signal: AbortSignal): Promise<unknown> {
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

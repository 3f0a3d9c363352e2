/**
 * A length limit on the messages peers send on inbound DHT streams. @libp2p/kad-dht reads each
 * length-prefixed message up to its stream reader's 4 MiB buffer and then base32-encodes the key a
 * request names (about 0.36 s of the event loop per MiB) before it looks anything up: one stranger
 * sending large GET_VALUE or GET_PROVIDERS requests could keep a DHT server node busy for as long as
 * it kept sending. The guard reads only the length prefixes, as the bytes arrive, and aborts the
 * stream as soon as one declares more than the limit, before the message body is even received.
 */
import { TooLargeError } from '../errors.js'
import type { Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'

/** The part of libp2p's registrar (`components.registrar`) a protocol's handler is registered through. */
interface HandlerRegistrar {
  handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
}

/**
 * The longest message a peer may send on an inbound DHT stream. The largest legitimate request is
 * a PUT_VALUE of an IPNS record (at most 10 KiB by the IPNS spec) with its key twice and framing;
 * every other request names a key of tens of bytes. @default 16 KiB
 */
export const MAX_DHT_REQUEST_BYTES = 16 * 1024

/** Bytes of a length prefix (varint) that can name up to MAX_SAFE_INTEGER. */
const MAX_PREFIX_BYTES = 8

/**
 * Follows a stream of length-prefixed messages (unsigned varint length, then that many bytes) chunk
 * by chunk, reading only the prefixes. Returns a function to call with each chunk in order: it
 * returns a message when a prefix declares more than `maxBytes` (or cannot be a length), and
 * undefined while every message so far is within it.
 */
export function lengthPrefixGuard (maxBytes: number): (chunk: Uint8Array) => string | undefined {
  /** Body bytes of the current message still to come (0: the next byte starts a prefix). */
  let skip = 0
  let length = 0
  let prefixBytes = 0
  let failed: string | undefined
  return (chunk) => {
    if (failed !== undefined) return failed
    let at = 0
    while (at < chunk.byteLength) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.byteLength - at)
        skip -= n
        at += n
        continue
      }
      const byte = chunk[at++] as number
      // multiplication rather than shifts: a prefix may pass 2^31 before it is refused
      length += (byte & 0x7f) * 2 ** (7 * prefixBytes)
      prefixBytes++
      if (length > maxBytes) return (failed = `a DHT message of ${length} bytes or more, over the ${maxBytes}-byte limit`)
      if ((byte & 0x80) !== 0) {
        if (prefixBytes >= MAX_PREFIX_BYTES) return (failed = 'a DHT message length prefix that does not end')
        continue
      }
      skip = length
      length = 0
      prefixBytes = 0
    }
    return undefined
  }
}

/** Aborts `stream` once a message on it declares more than `maxBytes` (see lengthPrefixGuard). */
export function limitInboundMessages (stream: Stream, maxBytes: number): void {
  const check = lengthPrefixGuard(maxBytes)
  // Added before the protocol's own reader, which receives every chunk after this has seen it.
  stream.addEventListener('message', (event) => {
    const data = event.data
    const over = data instanceof Uint8Array ? check(data) : checkList(check, data)
    if (over !== undefined && stream.status === 'open') stream.abort(new TooLargeError(over))
  })
}

function checkList (check: (chunk: Uint8Array) => string | undefined, list: Iterable<Uint8Array>): string | undefined {
  let over: string | undefined
  for (const part of list) over ??= check(part)
  return over
}

/**
 * A view of libp2p's registrar for kad-dht: the handler kad-dht registers for `protocol` is
 * registered with the message limit in front of it. Everything else is the registrar's own.
 */
export function guardedRegistrar<R extends HandlerRegistrar> (registrar: R, protocol: string, maxBytes = MAX_DHT_REQUEST_BYTES): R {
  const guard = (handler: StreamHandler): StreamHandler => async (stream, connection) => {
    limitInboundMessages(stream, maxBytes)
    await handler(stream, connection)
  }
  return new Proxy(registrar, {
    get (target, prop) {
      if (prop === 'handle') {
        return async (name: string, handler: StreamHandler, options?: StreamHandlerOptions) =>
          await target.handle(name, name === protocol ? guard(handler) : handler, options)
      }
      const value = Reflect.get(target, prop, target) as unknown
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    }
  })
}

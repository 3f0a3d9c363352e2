/**
 * Length limits on the messages peers send on DHT streams. @libp2p/kad-dht reads each
 * length-prefixed message up to its stream reader's 4 MiB buffer. A request's key is then written
 * out in base32 (about 0.36 s of the event loop per MiB) before anything is looked up: one stranger
 * sending large GET_VALUE or GET_PROVIDERS requests could keep a DHT server node busy for as long as
 * it kept sending. An answer to this node's own queries is decoded whole, and every peer it lists
 * is announced to the routing table and the peer store. The guard reads only the length prefixes,
 * as the bytes arrive, and aborts the stream as soon as one declares more than the limit, before
 * the message body is even received.
 */
import { guardReceived } from './stream-guard.js'
import type { Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'

/** The part of libp2p's registrar (`components.registrar`) a protocol's handler is registered through. */
interface HandlerRegistrar {
  handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
}
/** The part of libp2p's connection manager (`components.connectionManager`) streams are opened through. */
interface StreamOpener {
  openStream(peer: unknown, protocol: string | string[], options?: unknown): Promise<Stream>
}

/**
 * The longest message a peer may send on an inbound DHT stream. The largest legitimate request is
 * a PUT_VALUE of an IPNS record (at most 10 KiB by the IPNS spec) with its key twice and framing;
 * every other request names a key of tens of bytes. @default 16 KiB
 */
export const MAX_DHT_REQUEST_BYTES = 16 * 1024

/**
 * The longest answer a peer may send to this node's DHT queries: a record (IPNS: at most 10 KiB)
 * and the closest peers it knows (k = 20, each with its addresses). @default 64 KiB
 */
export const MAX_DHT_RESPONSE_BYTES = 64 * 1024

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
      // The protocol's reader reads the value, then skips as many bytes as its shortest form takes:
      // a longer form would have it read each later message from another place than this does.
      if (byte === 0 && prefixBytes > 1) return (failed = 'a DHT message length prefix written in more bytes than it needs')
      skip = length
      length = 0
      prefixBytes = 0
    }
    return undefined
  }
}

/** Aborts `stream` once a message it receives declares more than `maxBytes` (see lengthPrefixGuard). */
export function limitReceivedMessages (stream: Stream, maxBytes: number): void {
  guardReceived(stream, lengthPrefixGuard(maxBytes))
}

/**
 * A view of libp2p's registrar for kad-dht: the handler kad-dht registers for `protocol` is
 * registered with the message limit in front of it. Everything else is the registrar's own.
 */
export function guardedRegistrar<R extends HandlerRegistrar> (registrar: R, protocol: string, maxBytes = MAX_DHT_REQUEST_BYTES): R {
  const guard = (handler: StreamHandler): StreamHandler => async (stream, connection) => {
    limitReceivedMessages(stream, maxBytes)
    await handler(stream, connection)
  }
  return forwarding(registrar, 'handle', async (name: string, handler: StreamHandler, options?: StreamHandlerOptions) =>
    await registrar.handle(name, name === protocol ? guard(handler) : handler, options))
}

/**
 * A view of libp2p's connection manager for kad-dht: a stream it opens for `protocol` (a query)
 * aborts at an answer longer than `maxBytes`. Everything else is the connection manager's own.
 */
export function guardedOpener<O extends StreamOpener> (opener: O, protocol: string, maxBytes = MAX_DHT_RESPONSE_BYTES): O {
  return forwarding(opener, 'openStream', async (peer: unknown, protocols: string | string[], options?: unknown) => {
    const stream = await opener.openStream(peer, protocols, options)
    if (protocols === protocol || (Array.isArray(protocols) && protocols.includes(protocol))) limitReceivedMessages(stream, maxBytes)
    return stream
  })
}

/** `target` with its method `name` replaced by `method`; its other methods called on `target` itself. */
function forwarding<T extends object> (target: T, name: string, method: unknown): T {
  return new Proxy(target, {
    get (t, prop) {
      if (prop === name) return method
      const value = Reflect.get(t, prop, t) as unknown
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(t) : value
    }
  })
}

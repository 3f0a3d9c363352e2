/**
 * Live events: subscribers per name, the cap on open streams, and the server-sent-events route that
 * sends a name's current record on connect and every accepted record after it.
 */
import { streamSSE } from 'hono/streaming'
import { toBase64 } from '../crypto/bytes.js'
import { RateLimitError, UnavailableError } from '../errors.js'
import { readRecord } from '../store/record.js'
import { clientKey } from './client.js'
import { DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_EVENT_STREAMS, DEFAULT_MAX_EVENT_STREAMS_PER_CLIENT } from './options.js'
import { parseName } from './params.js'
import { Slots } from './slots.js'
import type { Env, HubAppOptions } from './options.js'
import type { Context } from 'hono'

/** Who listens to which name, and how many streams are open. */
export class HubEvents {
  private readonly listeners = new Map<string, Set<(record: Uint8Array) => void>>()
  private readonly streams: Slots

  constructor (options: HubAppOptions) {
    // Over the hub-wide cap a stream is a 429 as before (clients back off and reconnect).
    this.streams = new Slots('event streams', options.maxEventStreams ?? DEFAULT_MAX_EVENT_STREAMS, options.maxEventStreamsPerClient ?? DEFAULT_MAX_EVENT_STREAMS_PER_CLIENT)
  }

  subscribe (name: string, listener: (record: Uint8Array) => void): () => void {
    let set = this.listeners.get(name)
    if (set === undefined) this.listeners.set(name, set = new Set())
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.listeners.get(name) === set) this.listeners.delete(name)
    }
  }

  /** Tells every subscriber of `name` about an accepted record. */
  notify (name: string, record: Uint8Array): void {
    for (const listener of this.listeners.get(name) ?? []) listener(record)
  }

  /** Takes a stream slot for `client` (429 over its share or the hub's cap). */
  openStream (client: string): () => void {
    try {
      return this.streams.acquire(client)
    } catch (err) {
      if (err instanceof UnavailableError) throw new RateLimitError('too many open event streams; try again later', { cause: err })
      throw err
    }
  }
}

/** `GET /api/v1/events/{name}`: `event: ready`, then `event: record` with each base64 record. */
export function eventStream (events: HubEvents, stored: (name: string) => Promise<Uint8Array | undefined>, options: HubAppOptions) {
  return async (c: Context<Env, '/api/v1/events/:name'>): Promise<Response> => {
    const name = parseName(c.req.param('name'))
    const release = events.openStream(clientKey(c, options))
    c.header('Cache-Control', 'no-cache, no-transform')
    c.header('X-Accel-Buffering', 'no')
    return streamSSE(c, async (stream) => {
      const queue: Uint8Array[] = []
      let wake: (() => void) | undefined
      const unsubscribe = events.subscribe(name, (record) => {
        queue.push(record)
        wake?.()
      })
      let open = true
      const heartbeat = setInterval(() => {
        stream.write(': keepalive\n\n').catch(() => { open = false; wake?.() })
      }, options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS)
      stream.onAbort(() => { open = false; wake?.() })
      try {
        // A client that reconnects hears the current record first, so it never misses the newest.
        const current = await stored(name)
        await stream.writeSSE({ event: 'ready', data: name, retry: 2_000 })
        if (current !== undefined) queue.unshift(current)
        while (open && !stream.aborted && !stream.closed) {
          const record = queue.shift()
          if (record === undefined) {
            await new Promise<void>((resolve) => { wake = resolve })
            wake = undefined
            continue
          }
          await stream.writeSSE({ event: 'record', data: toBase64(record), id: readRecord(record).sequence.toString() })
        }
      } finally {
        clearInterval(heartbeat)
        unsubscribe()
        release()
      }
    }, async () => {
      // The client went away mid-write: nothing to report.
    })
  }
}

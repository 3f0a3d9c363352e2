/**
 * Live events: subscribers per name, the cap on open streams, and the server-sent-events route that
 * sends a name's current record on connect and every accepted record after it — with the blocks it
 * was published with, for a client that asks (VERSION_EVENTS_QUERY), so that it reads the update
 * without a request per block.
 */
import { streamSSE } from 'hono/streaming'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { toBase64 } from '../crypto/bytes.js'
import { RateLimitError, UnavailableError } from '../errors.js'
import { IPNS_RECORD_CODEC, MAX_VERSION_EVENT_CHARS } from '../protocol.js'
import { encodeCar } from '../store/blocks.js'
import { readRecord } from '../store/record.js'
import { clientKey } from './client.js'
import { DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_EVENT_STREAMS, DEFAULT_MAX_EVENT_STREAMS_PER_CLIENT } from './options.js'
import { parseName } from './params.js'
import { Slots } from './slots.js'
import type { Env, HubAppOptions } from './options.js'
import type { Block } from '../store/interface.js'
import type { Context } from 'hono'

/** An accepted record, told to the streams of its name. */
export class Notice {
  private versionData: Promise<string | undefined> | undefined

  /** `blocks`: what a one-request publish carried with the record (checked and stored by then). */
  constructor (readonly record: Uint8Array, private readonly blocks?: Block[]) {}

  /**
   * The data of a `version` event (base64 of a CAR: the record block as its root, then the
   * blocks), or undefined when the record came without blocks or the event would be over
   * MAX_VERSION_EVENT_CHARS. Encoded once, whatever the number of streams.
   */
  async version (): Promise<string | undefined> {
    this.versionData ??= this.encodeVersion()
    return await this.versionData
  }

  private async encodeVersion (): Promise<string | undefined> {
    const blocks = this.blocks
    if (blocks === undefined) return undefined
    let bytes = this.record.byteLength
    for (const block of blocks) bytes += block.bytes.byteLength
    // Base64 makes 4 characters of 3 bytes: a version plainly too big is not encoded at all.
    if (bytes * 4 / 3 > MAX_VERSION_EVENT_CHARS) return undefined
    const recordBlock = { cid: CID.createV1(IPNS_RECORD_CODEC, await sha256.digest(this.record)), bytes: this.record }
    const data = toBase64(encodeCar([recordBlock, ...blocks], [recordBlock.cid]))
    return data.length > MAX_VERSION_EVENT_CHARS ? undefined : data
  }
}

/** Who listens to which name, and how many streams are open. */
export class HubEvents {
  private readonly listeners = new Map<string, Set<(notice: Notice) => void>>()
  private readonly streams: Slots

  constructor (options: HubAppOptions) {
    // Over the hub-wide cap a stream is a 429 as before (clients back off and reconnect).
    this.streams = new Slots('event streams', options.maxEventStreams ?? DEFAULT_MAX_EVENT_STREAMS, options.maxEventStreamsPerClient ?? DEFAULT_MAX_EVENT_STREAMS_PER_CLIENT)
  }

  subscribe (name: string, listener: (notice: Notice) => void): () => void {
    let set = this.listeners.get(name)
    if (set === undefined) this.listeners.set(name, set = new Set())
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.listeners.get(name) === set) this.listeners.delete(name)
    }
  }

  /** Tells every subscriber of `name` about an accepted record (and the blocks published with it). */
  notify (name: string, record: Uint8Array, blocks?: Block[]): void {
    const listeners = this.listeners.get(name)
    if (listeners === undefined) return
    const notice = new Notice(record, blocks)
    for (const listener of listeners) listener(notice)
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

/**
 * `GET /api/v1/events/{name}`: `event: ready`, then `event: record` with each base64 record; with
 * `?with=blocks`, a record published with its blocks comes as `event: version` (see VERSION_EVENTS_QUERY).
 */
export function eventStream (events: HubEvents, stored: (name: string) => Promise<Uint8Array | undefined>, options: HubAppOptions) {
  return async (c: Context<Env, '/api/v1/events/:name'>): Promise<Response> => {
    const name = parseName(c.req.param('name'))
    const withBlocks = c.req.query('with') === 'blocks'
    const release = events.openStream(clientKey(c, options))
    c.header('Cache-Control', 'no-cache, no-transform')
    c.header('X-Accel-Buffering', 'no')
    return streamSSE(c, async (stream) => {
      // At most one notice waits: a newer record replaces one not yet sent. A stream that stops
      // reading (a stranger's, or a sleeping laptop's) then holds one notice, however many versions
      // are published meanwhile; every version holds the whole state, and a client that missed one
      // asks for the blocks it lacks.
      const queue: Notice[] = []
      let wake: (() => void) | undefined
      const unsubscribe = events.subscribe(name, (notice) => {
        queue.length = 0
        queue.push(notice)
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
        if (current !== undefined) queue.unshift(new Notice(current))
        while (open && !stream.aborted && !stream.closed) {
          const notice = queue.shift()
          if (notice === undefined) {
            await new Promise<void>((resolve) => { wake = resolve })
            wake = undefined
            continue
          }
          const id = readRecord(notice.record).sequence.toString()
          const version = withBlocks ? await notice.version() : undefined
          if (version !== undefined) await stream.writeSSE({ event: 'version', data: version, id })
          else await stream.writeSSE({ event: 'record', data: toBase64(notice.record), id })
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

/**
 * Live records from a hub: its server-sent-events stream per name, read with fetch streaming (Node
 * 20 has no EventSource), parsed with caps on every line and event, dropped when silent, and
 * reconnected with jittered, doubling backoff. A refusal that retrying cannot fix ends it. A
 * subscriber that keeps blocks (`onBlocks`) asks for `version` events: a record with the blocks it
 * was published with, each checked against its CID here, so that reading the update needs no
 * request per block.
 */
import { CarBufferReader } from '@ipld/car/buffer-reader'
import { CID } from 'multiformats/cid'
import { equals } from 'multiformats/bytes'
import { fromBase64 } from '../crypto/bytes.js'
import { StoreError, TooLargeError, UntrustedHubError } from '../errors.js'
import { IPNS_RECORD_CODEC, MAX_VERSION_EVENT_CHARS, VERSION_EVENTS_QUERY, eventsPath } from '../protocol.js'
import { cidLabel, verifyBlock } from './blocks.js'
import { MAX_RECORD_BYTES } from './record.js'
import type { HubTransport } from './hub-transport.js'
import type { Block, RecordListener } from './interface.js'

/** First delay before reconnecting a dropped event stream. @default 250 ms */
export const DEFAULT_RECONNECT_MIN_MS = 250
/** Longest delay between reconnection attempts. @default 30 s */
export const DEFAULT_RECONNECT_MAX_MS = 30_000
/**
 * How long an event stream may stay silent before it is dropped and reconnected. Hubs send a
 * keepalive comment every 15 s, so only a stalled or hostile hub stays silent longer. @default 45 s
 */
export const DEFAULT_EVENTS_IDLE_MS = 45_000
/**
 * Longest line, and longest event, read from an event stream. A record event is the base64 of a
 * record of at most 10 KiB (13 656 characters) plus its field name. @default 16 KiB
 */
export const MAX_EVENT_LINE_CHARS = 16 * 1024

export interface SubscribeRecordsOptions {
  /** @default DEFAULT_RECONNECT_MIN_MS (250 ms) */
  reconnectMinMs?: number
  /** @default DEFAULT_RECONNECT_MAX_MS (30 s) */
  reconnectMaxMs?: number
  /** @default DEFAULT_EVENTS_IDLE_MS (45 s) */
  eventsIdleMs?: number
}

/**
 * Calls `listener` with every record the hub announces for `name` (undecoded: the Space validates
 * it) until the returned function is called. With `onBlocks`, a record the hub sends with its
 * blocks (a `version` event) reaches `onBlocks` with those blocks, verified, just before `listener`
 * hears the record; a `version` event that does not check out is dropped whole.
 */
export function subscribeRecords (transport: HubTransport, name: string, listener: RecordListener, options: SubscribeRecordsOptions = {}, onBlocks?: (blocks: Block[]) => void): () => void {
  const path = eventsPath(transport.pathName(name)) + (onBlocks === undefined ? '' : `?${VERSION_EVENTS_QUERY}`)
  // A version event is one data line of up to MAX_VERSION_EVENT_CHARS; record events stay far below.
  const caps = onBlocks === undefined ? {} : { maxLineChars: MAX_VERSION_EVENT_CHARS + 16, maxEventChars: MAX_VERSION_EVENT_CHARS + 16 }
  const controller = new AbortController()
  const min = options.reconnectMinMs ?? DEFAULT_RECONNECT_MIN_MS
  const max = options.reconnectMaxMs ?? DEFAULT_RECONNECT_MAX_MS
  const idleMs = options.eventsIdleMs ?? DEFAULT_EVENTS_IDLE_MS
  const log = transport.log
  const run = async (): Promise<void> => {
    let delay = min
    while (!controller.signal.aborted) {
      // One attempt: the headers must come within the request timeout, then bytes at least
      // every `idleMs`; anything else drops the connection and retries with backoff.
      const attempt = new AbortController()
      const stop = (): void => { attempt.abort() }
      controller.signal.addEventListener('abort', stop, { once: true })
      const headersTimer = setTimeout(stop, transport.timeoutMs)
      ;(headersTimer as { unref?: () => void }).unref?.()
      try {
        const res = await transport.fetch(transport.base + path, {
          headers: { accept: 'text/event-stream' },
          cache: 'no-store',
          signal: attempt.signal
        })
        clearTimeout(headersTimer)
        if (res.ok && res.body !== null) {
          for await (const event of readEvents(res.body, { idleMs, ...caps })) {
            // Backoff restarts only once the stream has delivered a whole event (hubs send `ready`
            // at once): a hub that answers and then sends garbage is retried ever more slowly.
            delay = min
            if (event.retry !== undefined) delay = Math.min(Math.max(event.retry, min), max)
            let record: Uint8Array
            if (event.event === 'version' && onBlocks !== undefined) {
              let version: { record: Uint8Array, blocks: Block[] }
              try {
                version = await readVersionEvent(event.data)
              } catch (err) {
                log.error('the event stream of %s at %s sent a bad version event: %s', name, transport.base, (err as Error).message)
                continue
              }
              onBlocks(version.blocks)
              record = version.record
            } else if (event.event === 'record') {
              try {
                record = fromBase64(event.data, 'record')
              } catch {
                log.error('the event stream of %s at %s sent a record that is not base64', name, transport.base)
                continue
              }
            } else {
              continue
            }
            try {
              listener(record)
            } catch (err) {
              // A listener's failure is its own; the stream goes on.
              log.error('a record listener of %s failed: %s', name, err)
            }
          }
        } else {
          await res.body?.cancel().catch(() => {})
          // A refusal that retrying cannot fix (a malformed name) ends the subscription.
          if (res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 408) {
            log.error('the event stream of %s at %s was refused (%d): not retried', name, transport.base, res.status)
            return
          }
          log.trace('the event stream of %s at %s answered %d', name, transport.base, res.status)
        }
      } catch (err) {
        // Dropped, unreachable, silent or over a limit: retry below.
        if (!controller.signal.aborted) log.trace('the event stream of %s at %s ended: %s', name, transport.base, err)
      } finally {
        clearTimeout(headersTimer)
        controller.signal.removeEventListener('abort', stop)
        attempt.abort()
      }
      if (controller.signal.aborted) return
      log.trace('reconnecting the event stream of %s at %s in about %d ms', name, transport.base, delay)
      await sleep(delay * (0.5 + Math.random() / 2), controller.signal)
      delay = Math.min(delay * 2, max)
    }
  }
  void run()
  return () => { controller.abort() }
}

/**
 * Reads the data of a `version` event: base64 of a CAR whose single root is the record, as a block
 * of the `ipns-record` codec, and whose other blocks are each hashed with sha2-256 and match their
 * CIDs, all within MAX_VERSION_EVENT_CHARS. Anything else is an UntrustedHubError (no honest hub sends it).
 * The record is returned undecoded: its listener validates it.
 */
export async function readVersionEvent (data: string): Promise<{ record: Uint8Array, blocks: Block[] }> {
  if (data.length > MAX_VERSION_EVENT_CHARS) throw new UntrustedHubError(`a version event is over the ${MAX_VERSION_EVENT_CHARS}-character limit`)
  let reader: CarBufferReader
  try {
    reader = CarBufferReader.fromBytes(fromBase64(data, 'version event'))
  } catch (err) {
    throw new UntrustedHubError(`a version event is not the base64 of a CAR: ${(err as Error).message}`, { cause: err })
  }
  const roots = reader.getRoots()
  const root = roots.length === 1 ? CID.asCID(roots[0]) : null
  if (root == null || root.code !== IPNS_RECORD_CODEC) {
    throw new UntrustedHubError(`a version event's CAR has ${roots.length} root(s); expected one, the record as a block of codec 0x${IPNS_RECORD_CODEC.toString(16)}`)
  }
  let record: Uint8Array | undefined
  const blocks: Block[] = []
  for (const block of reader.blocks()) {
    // No block can be over MAX_BLOCK_BYTES: the character cap bounds the whole event far below it.
    const cid = CID.asCID(block.cid) as CID
    if (!(await verifyBlock(cid, block.bytes))) throw new UntrustedHubError(`a version event carries block ${cidLabel(cid)}, which does not match its CID`)
    if (cid.code !== IPNS_RECORD_CODEC) {
      blocks.push({ cid, bytes: block.bytes })
    } else if (record === undefined && equals(cid.bytes, root.bytes)) {
      record = block.bytes
    } else {
      throw new UntrustedHubError('a version event carries more than its one record')
    }
  }
  if (record === undefined) throw new UntrustedHubError(`a version event names the record ${cidLabel(root)} as its root but does not carry it`)
  if (record.byteLength > MAX_RECORD_BYTES) throw new UntrustedHubError(`a version event carries a record of ${record.byteLength} bytes, over the ${MAX_RECORD_BYTES}-byte limit`)
  return { record, blocks }
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
        if (line.length > maxLine) throw new TooLargeError(`an event-stream line is over the ${maxLine}-character limit`)
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
          if (dataChars > maxEvent) throw new TooLargeError(`an event is over the ${maxEvent}-character limit`)
          data.push(value)
        } else if (field === 'id') id = value
        else if (field === 'retry' && /^\d{1,9}$/.test(value)) retry = Number(value)
      }
      buffer = buffer.slice(start)
      if (buffer.length > maxLine) throw new TooLargeError(`an event-stream line is over the ${maxLine}-character limit`)
    }
  } finally {
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

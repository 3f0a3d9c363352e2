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
 *
 * This file is the front door: options, the factory, and the Store that joins the parts:
 * `hub-transport.ts` (one bounded call), `hub-body.ts` (capped body readers), `hub-reads.ts`
 * (blocks, DAGs, records), `hub-writes.ts` (uploads and publishing), `hub-events.ts` (live records),
 * `hub-address.ts` (the address index, checked against the owner binding).
 */
import { InvalidInputError } from '../errors.js'
import { noopLogger } from '../logger.js'
import { lookupAddress } from './hub-address.js'
import { subscribeRecords } from './hub-events.js'
import { HubReader } from './hub-reads.js'
import { DEFAULT_REQUEST_TIMEOUT_MS, HubTransport } from './hub-transport.js'
import { HubWriter } from './hub-writes.js'
import type { SubscribeRecordsOptions } from './hub-events.js'
import type { HubReaderOptions } from './hub-reads.js'
import type { HubWriterOptions } from './hub-writes.js'
import type { AbortOptions, Block, GetDagOptions, GetRecordOptions, LookupAddressOptions, RecordListener, Store } from './interface.js'
import type { CID } from 'multiformats/cid'
import type { ComponentLogger } from '../logger.js'

export { DEFAULT_FETCH_CONCURRENCY, DEFAULT_MAX_DAG_BLOCKS, DEFAULT_MAX_DAG_BYTES } from './limits.js'
export { readCapped } from './hub-body.js'
export { DEFAULT_EVENTS_IDLE_MS, DEFAULT_RECONNECT_MAX_MS, DEFAULT_RECONNECT_MIN_MS, MAX_EVENT_LINE_CHARS, readEvents, readVersionEvent } from './hub-events.js'
export type { ReadEventsOptions, ServerSentEvent } from './hub-events.js'
export { DEFAULT_REQUEST_TIMEOUT_MS, MAX_JSON_RESPONSE_BYTES } from './hub-transport.js'
export { DEFAULT_MAX_UPLOAD_BLOCKS, DEFAULT_MAX_UPLOAD_BYTES } from './hub-writes.js'

export interface HubStoreOptions extends HubWriterOptions, HubReaderOptions, SubscribeRecordsOptions {
  /**
   * The fetch to use (a test double, or one that adds auth headers).
   *
   * @default globalThis.fetch
   */
  fetch?: typeof globalThis.fetch
  /**
   * Upper bound for each call, body included; the caller's `signal` can end it sooner.
   *
   * @default DEFAULT_REQUEST_TIMEOUT_MS (30 s)
   */
  timeoutMs?: number
  /** Logs event-stream reconnects and route fallbacks as the `userspace:store:hub` component. @default noopLogger() */
  logger?: ComponentLogger
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
  private readonly transport: HubTransport
  private readonly reader: HubReader
  private readonly writer: HubWriter

  constructor (base: string, private readonly options: HubStoreOptions) {
    const fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
    const log = (options.logger ?? noopLogger()).forComponent('userspace:store:hub')
    this.transport = new HubTransport(base, fetch, options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, log)
    this.reader = new HubReader(this.transport, options)
    this.writer = new HubWriter(this.transport, options)
  }

  async putBlocks (blocks: Block[], options: AbortOptions = {}): Promise<void> {
    return await this.writer.putBlocks(blocks, options)
  }

  async publish (name: string, record: Uint8Array, blocks: Block[], options: AbortOptions = {}): Promise<void> {
    return await this.writer.publish(name, record, blocks, options)
  }

  async putRecord (name: string, record: Uint8Array, options: AbortOptions = {}): Promise<void> {
    return await this.writer.putRecord(name, record, options)
  }

  async getBlock (cid: CID, options: AbortOptions = {}): Promise<Uint8Array> {
    return await this.reader.getBlock(cid, options)
  }

  async getDag (cid: CID, options: GetDagOptions = {}): Promise<Block[]> {
    return await this.reader.getDag(cid, options)
  }

  async getRecord (name: string, options: GetRecordOptions = {}): Promise<Uint8Array | undefined> {
    return await this.reader.getRecord(name, options)
  }

  async lookupAddress (address: string, options: LookupAddressOptions = {}): Promise<string | undefined> {
    return await lookupAddress(this.transport, this.reader, address, options)
  }

  subscribe (name: string, listener: RecordListener): () => void {
    // Blocks that come with a record are read from memory when the listener merges its version.
    return subscribeRecords(this.transport, name, listener, this.options, (blocks) => { this.reader.remember(blocks) })
  }
}

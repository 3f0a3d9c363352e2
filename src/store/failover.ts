/**
 * One Store over several hubs of a cluster: every call goes to the hub that answered last, and on
 * a StoreError (unreachable, timed out, 5xx, a hub caught lying), a 503 or a 507 moves on to the
 * next, once around. A hub's refusal of the request itself (400, 404, 409, 413…) is the answer and
 * is not retried elsewhere. Blocks put since the last accepted record are kept (bounded) and put
 * again on the hub taken over, so a record never reaches a hub without the blocks it points at.
 * Subscriptions listen on every hub and pass each newer record on once. Browser-safe.
 */
import { InsufficientStorageError, InvalidInputError, NotFoundError, StoreError, UnavailableError } from '../errors.js'
import { hubStore } from './hub.js'
import { readRecord } from './record.js'
import type { HubStoreOptions } from './hub.js'
import type { AbortOptions, Block, GetRecordOptions, RecordListener, Store } from './interface.js'
import type { CID } from 'multiformats/cid'

/** Upper bound of each call to one hub before the next is tried. @default 10 s */
export const DEFAULT_FAILOVER_TIMEOUT_MS = 10_000
/** Bytes of blocks kept to put again on the next hub until a record referencing them is accepted. @default 64 MiB */
export const DEFAULT_MAX_REPLAY_BYTES = 64 * 1024 * 1024

export interface FailoverStoreOptions extends HubStoreOptions {
  /** Per call to one hub. @default DEFAULT_FAILOVER_TIMEOUT_MS (10 s) */
  timeoutMs?: number
  /** @default DEFAULT_MAX_REPLAY_BYTES (64 MiB) */
  maxReplayBytes?: number
  /** Told when calls move from one hub to another. @default nothing */
  onFailover?: (event: { from: string, to: string, error: Error }) => void
}

/** Whether `err` says the hub, not the request, failed. */
function hubFailed (err: unknown): boolean {
  return err instanceof StoreError || err instanceof UnavailableError || err instanceof InsufficientStorageError
}

/**
 * A Store over the hubs at `urls` (one cluster: any of them serves any space).
 *
 * @example
 * ```ts
 * const store = failoverStore(['http://hub1:8787', 'http://hub2:8787', 'http://hub3:8787'])
 * const space = await openSpace({ signer, store })
 * ```
 */
export function failoverStore (urls: string[] | Array<{ url: string, store: Store }>, options: FailoverStoreOptions = {}): Store {
  if (!Array.isArray(urls) || urls.length === 0) throw new InvalidInputError(`"urls" expected a non-empty array of hub URLs, got ${Array.isArray(urls) ? 'an empty array' : typeof urls}`)
  const hubs = urls.map(entry => typeof entry === 'string'
    ? { url: entry, store: hubStore(entry, { ...options, timeoutMs: options.timeoutMs ?? DEFAULT_FAILOVER_TIMEOUT_MS }) }
    : entry)
  return new FailoverStore(hubs, options)
}

class FailoverStore implements Store {
  readonly conditional: boolean
  private current = 0
  /** Blocks put since the last accepted record, and which hubs already have them. */
  private replay: Block[] = []
  private replayBytes = 0
  private replayedTo = new Set<number>()

  constructor (private readonly hubs: Array<{ url: string, store: Store }>, private readonly options: FailoverStoreOptions) {
    this.conditional = hubs.every(h => h.store.conditional === true)
  }

  /** Runs `op` on the current hub, then on each other once, while the hub is what failed. */
  private async attempt<T> (op: (store: Store, index: number) => Promise<T>, retryOn: (err: unknown) => boolean = hubFailed): Promise<T> {
    let lastError: unknown
    for (let i = 0; i < this.hubs.length; i++) {
      const index = (this.current + i) % this.hubs.length
      const hub = this.hubs[index] as { url: string, store: Store }
      try {
        const result = await op(hub.store, index)
        if (index !== this.current) {
          this.options.onFailover?.({ from: (this.hubs[this.current] as { url: string }).url, to: hub.url, error: lastError as Error })
          this.current = index
        }
        return result
      } catch (err) {
        if (!retryOn(err)) throw err
        lastError = err
      }
    }
    throw lastError
  }

  async putBlocks (blocks: Block[], options?: AbortOptions): Promise<void> {
    await this.attempt(async (store, index) => {
      await this.replayTo(store, index, options)
      await store.putBlocks(blocks, options)
    })
    this.remember(blocks)
  }

  async getBlock (cid: CID, options?: AbortOptions): Promise<Uint8Array> {
    // A hub that cannot find a block may be one whose peer holding it is gone: ask the others too.
    return this.attempt(async store => store.getBlock(cid, options), err => hubFailed(err) || err instanceof NotFoundError)
  }

  async putRecord (name: string, record: Uint8Array, options?: AbortOptions): Promise<void> {
    await this.attempt(async (store, index) => {
      await this.replayTo(store, index, options)
      await store.putRecord(name, record, options)
    })
    // The hub that took the record has its blocks: nothing left to carry over.
    this.replay = []
    this.replayBytes = 0
    this.replayedTo.clear()
  }

  async getRecord (name: string, options?: GetRecordOptions): Promise<Uint8Array | undefined> {
    return this.attempt(async store => store.getRecord(name, options))
  }

  async lookupAddress (address: string, options?: AbortOptions): Promise<string | undefined> {
    return this.attempt(async store => store.lookupAddress?.(address, options))
  }

  subscribe (name: string, listener: RecordListener): () => void {
    // Every hub hears every record (they are peered), so one that dies costs no event; a record
    // heard from several hubs is passed on once, and an older one never after a newer.
    let newest: { sequence: bigint, bytes: Uint8Array } | undefined
    const onRecord = (bytes: Uint8Array): void => {
      let sequence: bigint
      try {
        sequence = readRecord(bytes).sequence
      } catch {
        return
      }
      if (newest !== undefined && (sequence < newest.sequence || (sequence === newest.sequence && sameBytes(bytes, newest.bytes)))) return
      newest = { sequence, bytes }
      listener(bytes)
    }
    const stops = this.hubs.map(h => h.store.subscribe?.(name, onRecord) ?? (() => {}))
    return () => { for (const stop of stops) stop() }
  }

  private remember (blocks: Block[]): void {
    for (const block of blocks) {
      if (this.replayBytes + block.bytes.byteLength > (this.options.maxReplayBytes ?? DEFAULT_MAX_REPLAY_BYTES)) return
      this.replay.push(block)
      this.replayBytes += block.bytes.byteLength
    }
    // Only the hub that just took them has every kept block.
    this.replayedTo = new Set([this.current])
  }

  /** Puts the kept blocks on a hub that has not had them yet (the one taken over after a failure). */
  private async replayTo (store: Store, index: number, options?: AbortOptions): Promise<void> {
    if (this.replay.length === 0 || this.replayedTo.has(index)) return
    await store.putBlocks(this.replay, options)
    this.replayedTo.add(index)
  }
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * A Store in memory: blocks in a Map keyed by CID, records by name. For tests, benchmarks and
 * short-lived spaces. Two Spaces given the same MemoryStore behave like two devices on one network.
 * It is the caller's own memory, not a trust boundary: it takes the blocks and records it is handed
 * as they are (every reader verifies each block against its CID and each record's signature when it
 * fetches them), and only keeps the conditional-write rule a hub keeps, so races behave the same.
 */
import { ConflictError, EquivocationError, NotFoundError, throwIfAborted } from '../errors.js'
import { readRecord } from './record.js'
import type { AbortOptions, Block, Store, RecordListener } from './interface.js'
import type { RecordInfo } from './record.js'
import type { CID } from 'multiformats/cid'

export interface MemoryStore extends Store {
  /** Every block, for tests that inspect or tamper with what was stored. */
  readonly blocks: Map<string, Uint8Array>
  /** Every record, by name. */
  readonly records: Map<string, Uint8Array>
}

export function memoryStore (): MemoryStore {
  return new DefaultMemoryStore()
}

class DefaultMemoryStore implements MemoryStore {
  readonly blocks = new Map<string, Uint8Array>()
  readonly records = new Map<string, Uint8Array>()
  readonly conditional = true
  readonly ephemeral = true
  private readonly listeners = new Map<string, Set<RecordListener>>()
  /** what each stored record says, parsed once when it was put (tests may swap `records` entries) */
  private readonly parsed = new WeakMap<Uint8Array, RecordInfo>()

  async putBlocks (blocks: Block[], options?: AbortOptions): Promise<void> {
    throwIfAborted(options?.signal)
    // Not hashed again here: the writer just hashed these bytes to name them, and readers verify.
    for (const block of blocks) this.blocks.set(block.cid.toString(), block.bytes)
  }

  async getBlock (cid: CID, options?: AbortOptions): Promise<Uint8Array> {
    throwIfAborted(options?.signal)
    const bytes = this.blocks.get(cid.toString())
    if (bytes === undefined) throw new NotFoundError(`block ${cid.toString()} not found`)
    return bytes
  }

  async putRecord (name: string, record: Uint8Array, options?: AbortOptions): Promise<void> {
    throwIfAborted(options?.signal)
    // A conditional write, as a hub does: a lower sequence, or the same one with another value, is
    // a lost race. It trusts the Space to have signed the record; the hub and helia stores validate
    // what strangers send.
    const current = this.records.get(name)
    const offered = readRecord(record)
    if (current !== undefined) {
      const stored = this.parsed.get(current) ?? readRecord(current)
      if (offered.sequence < stored.sequence) throw new ConflictError(`record sequence ${offered.sequence} is lower than the stored ${stored.sequence} for ${name}`)
      if (offered.sequence === stored.sequence && offered.value !== stored.value) throw new EquivocationError(`record sequence ${offered.sequence} for ${name} already points at ${stored.value}`)
    }
    this.records.set(name, record)
    this.parsed.set(record, offered)
    for (const listener of this.listeners.get(name) ?? []) listener(record)
  }

  async getRecord (name: string, options?: AbortOptions): Promise<Uint8Array | undefined> {
    throwIfAborted(options?.signal)
    return this.records.get(name)
  }

  subscribe (name: string, listener: RecordListener): () => void {
    let set = this.listeners.get(name)
    if (set === undefined) this.listeners.set(name, set = new Set())
    set.add(listener)
    return () => { set.delete(listener) }
  }
}

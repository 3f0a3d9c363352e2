/**
 * A Store in memory: blocks in a Map keyed by CID, records by name. For tests, benchmarks and
 * short-lived spaces. Two Spaces given the same MemoryStore behave like two devices on one network.
 */
import { IntegrityError, NotFoundError, throwIfAborted } from '../errors.js'
import { verifyBlock } from './blocks.js'
import { recordSequence } from './record.js'
import type { AbortOptions, Block, Store, RecordListener } from './interface.js'
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
  private readonly listeners = new Map<string, Set<RecordListener>>()

  async putBlocks (blocks: Block[], options?: AbortOptions): Promise<void> {
    throwIfAborted(options?.signal)
    for (const block of blocks) {
      if (!(await verifyBlock(block.cid, block.bytes))) {
        throw new IntegrityError(`block ${block.cid.toString()} does not match its CID`)
      }
    }
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
    // Like a DHT peer, a memory store keeps the record with the highest sequence. It trusts the
    // Space to have signed it; the hub and helia stores validate what strangers send.
    const current = this.records.get(name)
    if (current !== undefined && recordSequence(current) > recordSequence(record)) return
    this.records.set(name, record)
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

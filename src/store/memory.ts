/**
 * A Store in memory: blocks in a Map keyed by CID, records by name. For tests, benchmarks and
 * short-lived spaces. Two Spaces given the same MemoryStore behave like two devices on one network.
 * It is the caller's own memory, not a trust boundary: it takes the blocks and records it is handed
 * as they are (every reader verifies each block against its CID and each record's signature when it
 * fetches them), and only keeps the conditional-write rule a hub keeps, so races behave the same.
 */
import { ConflictError, EquivocationError, NotFoundError, throwIfAborted } from '../errors.js'
import { cidLabel, cidString } from './blocks.js'
import { readRecord } from './record.js'
import type { AbortOptions, Block, Store, RecordListener } from './interface.js'
import type { RecordInfo } from './record.js'

type RecordFields = Pick<RecordInfo, 'sequence' | 'value'>
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
  /** what each stored record says, read once when it was put (tests may swap `records` entries) */
  private readonly parsed = new WeakMap<Uint8Array, RecordFields>()

  async putBlocks (blocks: Block[], options?: AbortOptions): Promise<void> {
    throwIfAborted(options?.signal)
    // Not hashed again here: the writer just hashed these bytes to name them, and readers verify.
    for (const block of blocks) this.blocks.set(cidString(block.cid), block.bytes)
  }

  async getBlock (cid: CID, options?: AbortOptions): Promise<Uint8Array> {
    throwIfAborted(options?.signal)
    const bytes = this.blocks.get(cidString(cid))
    if (bytes === undefined) throw new NotFoundError(`block ${cidLabel(cid)} not found`)
    return bytes
  }

  async putRecord (name: string, record: Uint8Array, options?: AbortOptions): Promise<void> {
    throwIfAborted(options?.signal)
    // A conditional write, as a hub does: a lower sequence, or the same one with another value, is
    // a lost race. It trusts the Space to have signed the record; the hub and helia stores validate
    // what strangers send.
    const current = this.records.get(name)
    const offered = peekRecord(record) ?? readRecord(record)
    if (current !== undefined) {
      const stored = this.parsed.get(current) ?? peekRecord(current) ?? readRecord(current)
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


/**
 * The sequence and value of a record, read straight from its bytes (the protobuf's `data` field, a
 * CBOR map) without the generic decoders, which cost more than this store's whole check. Anything
 * it does not recognise returns undefined, for `readRecord` to read or refuse. No signature check:
 * this store trusts its caller (see above).
 */
function peekRecord (bytes: Uint8Array): RecordFields | undefined {
  try {
    return peekFields(bytes)
  } catch {
    // bytes that are not UTF-8 where text belongs
    return undefined
  }
}

function peekFields (bytes: Uint8Array): RecordFields | undefined {
  let data: Uint8Array | undefined
  let signed = false
  const r = { at: 0 }
  while (r.at < bytes.length) {
    const tag = readVarint(bytes, r)
    if (tag === undefined) return undefined
    const field = Math.floor(tag / 8)
    const wire = tag % 8
    if (wire === 0) {
      if (readVarint(bytes, r) === undefined) return undefined
    } else if (wire === 2) {
      const length = readVarint(bytes, r)
      if (length === undefined || r.at + length > bytes.length) return undefined
      if (field === 9) data = bytes.subarray(r.at, r.at + length)
      if (field === 8 && length > 0) signed = true
      r.at += length
    } else {
      return undefined
    }
  }
  if (data === undefined || !signed) return undefined
  // data: a definite-length CBOR map of text keys to unsigned integers and byte strings
  const c = { at: 0 }
  const map = cborHead(data, c)
  if (map?.major !== 5) return undefined
  let sequence: bigint | undefined
  let value: string | undefined
  for (let i = 0n; i < map.n; i++) {
    const key = cborHead(data, c)
    if (key?.major !== 3 || c.at + Number(key.n) > data.length) return undefined
    const name = decoder.decode(data.subarray(c.at, c.at + Number(key.n)))
    c.at += Number(key.n)
    const item = cborHead(data, c)
    if (item === undefined) return undefined
    if (item.major === 0) {
      if (name === 'Sequence') sequence = item.n
    } else if (item.major === 2) {
      if (c.at + Number(item.n) > data.length) return undefined
      if (name === 'Value') value = decoder.decode(data.subarray(c.at, c.at + Number(item.n)))
      c.at += Number(item.n)
    } else {
      return undefined
    }
  }
  // a value that is not a path is normalised by readRecord; leave those to it
  if (sequence === undefined || value === undefined || !value.startsWith('/') || c.at !== data.length) return undefined
  return { sequence, value }
}

const decoder = new TextDecoder('utf-8', { fatal: true })

function readVarint (bytes: Uint8Array, r: { at: number }): number | undefined {
  let n = 0
  for (let shift = 0; shift < 35; shift += 7) {
    const b = bytes[r.at++]
    if (b === undefined) return undefined
    n += (b & 0x7f) * 2 ** shift
    if (b < 0x80) return n
  }
  return undefined
}

function cborHead (bytes: Uint8Array, c: { at: number }): { major: number, n: bigint } | undefined {
  const first = bytes[c.at++]
  if (first === undefined) return undefined
  const info = first & 0x1f
  if (info < 24) return { major: first >> 5, n: BigInt(info) }
  if (info > 27) return undefined
  const size = 1 << (info - 24)
  if (c.at + size > bytes.length) return undefined
  let n = 0n
  for (let i = 0; i < size; i++) n = (n << 8n) | BigInt(bytes[c.at++] as number)
  return { major: first >> 5, n }
}

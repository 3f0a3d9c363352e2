/**
 * Durable storage of the hub's IPNS records and its address index (wallet address ↔ IPNS name), in
 * the hub's datastore under `/userspace/hub/`.
 */
import { Key } from 'interface-datastore'
import { putDurably } from './durable.js'
import type { Datastore } from 'interface-datastore'

/** Stored records and the address index. `datastoreRecords` keeps them in the hub's datastore. */
export interface HubRecordStore {
  /** The stored record of a canonical name. */
  get(name: string): Promise<Uint8Array | undefined>
  /**
   * Stores a record durably (resolved means on disk) and, in the same batch, binds `owner` to the
   * name when given. An address already bound keeps its name unless this binding is dated
   * (`issuedAt`, ms) later than the stored one; undated (version 1) bindings count as dated 0.
   */
  put(name: string, record: Uint8Array, owner?: string, issuedAt?: number): Promise<void>
  /** The name an address (EIP-55) is bound to. */
  nameOf(address: string): Promise<string | undefined>
  /** The address a name is bound to. */
  addressOf(name: string): Promise<string | undefined>
  /** Every stored record (for re-announcing). */
  all(): AsyncIterable<{ name: string, record: Uint8Array }>
}

const RECORD_PREFIX = '/userspace/hub/ipns/'
const ADDRESS_PREFIX = '/userspace/hub/address/'
const OWNER_PREFIX = '/userspace/hub/owner/'
const decoder = new TextDecoder()
const encoder = new TextEncoder()

/**
 * Records and the address index in a datastore, under `/userspace/hub/`. Each put is one batch,
 * fsynced on LevelDB unless `fsync: false`.
 */
export function datastoreRecords (datastore: Datastore, options: { fsync?: boolean } = {}): HubRecordStore {
  const fsync = options.fsync ?? true
  const read = async (key: string): Promise<Uint8Array | undefined> => {
    try {
      return await datastore.get(new Key(key))
    } catch (err) {
      if ((err as Error).name === 'NotFoundError') return undefined
      throw err
    }
  }
  return {
    get: async (name) => read(RECORD_PREFIX + name),
    async put (name, record, owner, issuedAt) {
      // One batch, fsynced before it resolves: the record and, for a new binding, the index keys.
      const entries: Array<[string, Uint8Array]> = [[RECORD_PREFIX + name, record]]
      if (owner !== undefined) {
        const addressKey = ADDRESS_PREFIX + owner.toLowerCase()
        const bound = await read(addressKey)
        if (bound === undefined || (issuedAt ?? 0) > parseBinding(bound).issuedAt) {
          entries.push([addressKey, encodeBinding(name, issuedAt)])
        }
        // Written when it changes: the caller passes a binding once per process and name (and again
        // when it changes), and rewriting an unchanged owner on the first record after each start
        // was a LevelDB write for nothing.
        const held = await read(OWNER_PREFIX + name)
        if (held === undefined || (issuedAt !== undefined && decoder.decode(held) !== owner)) entries.push([OWNER_PREFIX + name, encoder.encode(owner)])
      }
      await putDurably(datastore, entries, fsync)
    },
    async nameOf (address) {
      const bytes = await read(ADDRESS_PREFIX + address.toLowerCase())
      return bytes === undefined ? undefined : parseBinding(bytes).name
    },
    async addressOf (name) {
      const bytes = await read(OWNER_PREFIX + name)
      return bytes === undefined ? undefined : decoder.decode(bytes)
    },
    async * all () {
      for await (const { key, value } of datastore.query({ prefix: RECORD_PREFIX.slice(0, -1) })) {
        yield { name: key.toString().slice(RECORD_PREFIX.length), record: value }
      }
    }
  }
}


/** An address binding as stored: the bare name (version 1, as hubs always stored it) or `name issuedAt`. */
function encodeBinding (name: string, issuedAt: number | undefined): Uint8Array {
  return encoder.encode(issuedAt === undefined ? name : `${name} ${issuedAt}`)
}

function parseBinding (bytes: Uint8Array): { name: string, issuedAt: number } {
  const [name = '', issuedAt] = decoder.decode(bytes).split(' ')
  return { name, issuedAt: issuedAt === undefined ? 0 : Number(issuedAt) }
}

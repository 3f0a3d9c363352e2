/**
 * A Store on the browser's IndexedDB: the device's own copy of its spaces, so that a page shows its
 * data before the network answers and keeps working offline. Put it in front of a hub with
 * `layeredStore(idbStore('userspace'), hubStore(url))`.
 *
 * One database holds three object stores: `blocks` (bytes by CID string, each checked against its
 * CID on the way in and on the way out), `records` (the marshalled IPNS record with the highest
 * sequence seen per name, like a DHT peer keeps) and `state` (the newest version this device has
 * seen of each space and the writes not yet published, for the Space: `idbState(store)` is its view,
 * and `openSpace` uses it by default in browsers). Plain IndexedDB, no wrapper library: the whole API is a few requests.
 */
import { AbortedError, InvalidInputError, NotFoundError, StoreError, IntegrityError, throwIfAborted, describeValue } from '../errors.js'
import { verifyBlock } from './blocks.js'
import { readRecord } from './record.js'
import type { AbortOptions, Block, GetRecordOptions, Store } from './interface.js'
import type { CID } from 'multiformats/cid'

export interface IdbStore extends Store {
  /** The database's name. */
  readonly dbName: string
  /**
   * Reads one value of the `state` object store (a Space's rollback state and unpublished writes;
   * `idbState(store)` gives the Space its view of it).
   */
  readState(name: string): Promise<unknown>
  /** Replaces one value of the `state` object store by `fn(current)`, in one transaction (atomic across tabs). */
  updateState(name: string, fn: (current: unknown) => unknown): Promise<void>
  /** Closes the database connection; a later call opens it again. */
  close(): void
}

export interface IdbStoreOptions {
  /** The IndexedDB factory (a test double). @default globalThis.indexedDB */
  indexedDB?: IDBFactory
}

const VERSION = 1
const BLOCKS = 'blocks'
const RECORDS = 'records'
const STATE = 'state'

/**
 * A Store in the IndexedDB database `dbName` (created on first use).
 *
 * @example
 * ```ts
 * const local = idbStore('userspace')
 * const space = await openSpace({
 *   signer: window.ethereum,
 *   store: layeredStore(local, hubStore('https://hub.example')),
 *   state: local.state,
 *   offlineFirst: true
 * })
 * ```
 */
export function idbStore (dbName = 'userspace', options: IdbStoreOptions = {}): IdbStore {
  if (typeof dbName !== 'string' || dbName === '') throw new InvalidInputError(`"dbName" expected a non-empty string, got ${typeof dbName === 'string' ? '""' : typeof dbName}`)
  const factory = options.indexedDB ?? globalThis.indexedDB
  if (factory === undefined) throw new StoreError('IndexedDB is not available here (a browser, or a polyfill such as fake-indexeddb, is needed)')

  let opening: Promise<IDBDatabase> | undefined
  const db = async (): Promise<IDBDatabase> => {
    opening ??= new Promise<IDBDatabase>((resolve, reject) => {
      const req = factory.open(dbName, VERSION)
      req.onupgradeneeded = () => {
        const d = req.result
        for (const name of [BLOCKS, RECORDS, STATE]) if (!d.objectStoreNames.contains(name)) d.createObjectStore(name)
      }
      req.onsuccess = () => {
        const d = req.result
        // Another tab upgrading the database: let it, and reopen on the next call.
        d.onversionchange = () => { d.close(); opening = undefined }
        d.onclose = () => { opening = undefined }
        resolve(d)
      }
      req.onerror = () => { opening = undefined; reject(new StoreError(`cannot open IndexedDB "${dbName}": ${req.error?.message ?? 'unknown error'}`)) }
      req.onblocked = () => { opening = undefined; reject(new StoreError(`IndexedDB "${dbName}" is blocked by another tab holding an older version open`)) }
    })
    return opening
  }

  /** Runs `body` in one transaction and resolves with its result once the transaction commits. */
  const run = async <T>(stores: string[], mode: IDBTransactionMode, body: (tx: IDBTransaction) => () => T, signal?: AbortSignal): Promise<T> => {
    throwIfAborted(signal)
    const d = await db()
    return new Promise<T>((resolve, reject) => {
      let tx: IDBTransaction
      try {
        tx = d.transaction(stores, mode)
      } catch (err) {
        opening = undefined
        reject(new StoreError(`IndexedDB "${dbName}": ${(err as Error).message}`)); return
      }
      const result = body(tx)
      const onAbort = (): void => { try { tx.abort() } catch {} }
      signal?.addEventListener('abort', onAbort, { once: true })
      tx.oncomplete = () => { signal?.removeEventListener('abort', onAbort); resolve(result()) }
      tx.onerror = tx.onabort = () => {
        signal?.removeEventListener('abort', onAbort)
        reject(signal?.aborted === true
          ? new AbortedError('the IndexedDB transaction was aborted')
          : new StoreError(`IndexedDB "${dbName}": ${tx.error?.message ?? 'transaction failed'}`))
      }
    })
  }

  const updateState = async (name: string, fn: (current: unknown) => unknown): Promise<void> => {
    let failure: Error | undefined
    await run([STATE], 'readwrite', (tx) => {
      const os = tx.objectStore(STATE)
      const req = os.get(name)
      // Read and write in one transaction, from the request callback so it stays active.
      req.onsuccess = () => {
        try {
          os.put(fn(req.result), name)
        } catch (err) {
          failure = err as Error
          tx.abort()
        }
      }
      return () => undefined
    }).catch((err: Error) => { throw failure ?? err })
  }

  const readState = async (name: string): Promise<unknown> => {
    return run([STATE], 'readonly', (tx) => {
      const req = tx.objectStore(STATE).get(name)
      return () => req.result as unknown
    })
  }

  return {
    dbName,
    readState,
    updateState,

    close () {
      const pending = opening
      opening = undefined
      void pending?.then(d => { d.close() }, () => {})
    },

    async putBlocks (blocks: Block[], options?: AbortOptions): Promise<void> {
      throwIfAborted(options?.signal)
      for (const block of blocks) {
        if (!(await verifyBlock(block.cid, block.bytes))) {
          throw new IntegrityError(`block ${block.cid.toString()} does not match its CID`)
        }
      }
      // All or none: one transaction. Copies, so a view into a larger buffer stores only its bytes.
      await run([BLOCKS], 'readwrite', (tx) => {
        const os = tx.objectStore(BLOCKS)
        for (const block of blocks) os.put(block.bytes.slice(), block.cid.toString())
        return () => undefined
      }, options?.signal)
    },

    async getBlock (cid: CID, options?: AbortOptions): Promise<Uint8Array> {
      const key = cid.toString()
      const bytes = await run([BLOCKS], 'readonly', (tx) => {
        const req = tx.objectStore(BLOCKS).get(key)
        return () => req.result as unknown
      }, options?.signal)
      if (!(bytes instanceof Uint8Array)) throw new NotFoundError(`block ${key} not found`)
      if (!(await verifyBlock(cid, bytes))) {
        // A damaged local copy is dropped and reported missing, so a layered store fetches it again.
        await run([BLOCKS], 'readwrite', (tx) => { tx.objectStore(BLOCKS).delete(key); return () => undefined }).catch(() => {})
        throw new NotFoundError(`block ${key} was damaged in IndexedDB and has been dropped`)
      }
      return bytes
    },

    async putRecord (name: string, record: Uint8Array, options?: AbortOptions): Promise<void> {
      if (!(record instanceof Uint8Array)) throw new InvalidInputError(`"record" expected Uint8Array, got ${describeValue(record)}`)
      // Malformed bytes are refused here, so what is kept can always be read back. The Space
      // validates signatures on everything it reads; this keeps the highest sequence.
      const sequence = readRecord(record).sequence
      const bytes = record.slice()
      await run([RECORDS], 'readwrite', (tx) => {
        const os = tx.objectStore(RECORDS)
        const req = os.get(name)
        req.onsuccess = () => {
          const current = req.result as unknown
          let keep = false
          if (current instanceof Uint8Array) {
            try { keep = readRecord(current).sequence > sequence } catch { keep = false }
          }
          if (!keep) os.put(bytes, name)
        }
        return () => undefined
      }, options?.signal)
    },

    async getRecord (name: string, options?: GetRecordOptions): Promise<Uint8Array | undefined> {
      const bytes = await run([RECORDS], 'readonly', (tx) => {
        const req = tx.objectStore(RECORDS).get(name)
        return () => req.result as unknown
      }, options?.signal)
      return bytes instanceof Uint8Array ? bytes : undefined
    }
  }
}


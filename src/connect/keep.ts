/**
 * Keeping a grant in a browser with its publishing keys out of reach: `keepGrant` verifies a grant,
 * imports the IPNS seed of each namespace it may write as a non-extractable Ed25519 CryptoKey, and
 * stores the grant without those seeds (IndexedDB keeps CryptoKeys as they are, unexportable).
 * `loadGrant` returns what `openSpace({ grant })` accepts. Where WebCrypto has no Ed25519, the seed
 * stays in the stored grant (`nonExtractable: false` says so). The data keys cannot be protected this
 * way (WebCrypto has no XChaCha20-Poly1305): whoever runs script on the app's origin can read what the
 * app can read, and while the grant is kept, sign for it.
 */
import { concatBytes, fromBase64 } from '../crypto/bytes.js'
import { StoreError } from '../errors.js'
import { verifyGrant } from '../apps/grant.js'
import type { Grant } from '../apps/grant.js'

/** The IndexedDB database kept grants live in. @default 'userspace-grants' */
export const DEFAULT_GRANT_DATABASE = 'userspace-grants'
const STORE = 'grants'
/** RFC 8410 PKCS#8 prefix for a 32-byte Ed25519 seed. */
const PKCS8_ED25519_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20])

export interface KeptGrant {
  /** The grant, without the IPNS seeds that `signingKeys` hold. */
  grant: Grant
  /** namespace → its IPNS signing key, non-extractable */
  signingKeys: Record<string, CryptoKey>
  /** True when every write namespace's seed became a non-extractable key. */
  nonExtractable: boolean
}

export interface KeepOptions {
  /** @default DEFAULT_GRANT_DATABASE */
  database?: string
  /** @default globalThis.indexedDB */
  indexedDB?: IDBFactory
}

/** Verifies `grant`, stores it (by app id) with its IPNS seeds as non-extractable keys, and returns it. */
export async function keepGrant (grant: Grant | string, options: KeepOptions = {}): Promise<KeptGrant> {
  const verified = await verifyGrant(grant)
  const signingKeys: Record<string, CryptoKey> = {}
  let nonExtractable = true
  const namespaces = await Promise.all(verified.namespaces.map(async (n) => {
    if (n.access !== 'write' || n.ipnsSeed === undefined) return n
    try {
      const pkcs8 = concatBytes(PKCS8_ED25519_PREFIX, fromBase64(n.ipnsSeed, `${n.namespace}.ipnsSeed`))
      signingKeys[n.namespace] = await crypto.subtle.importKey('pkcs8', pkcs8 as Uint8Array<ArrayBuffer>, { name: 'Ed25519' }, false, ['sign'])
    } catch {
      nonExtractable = false // no Ed25519 in this WebCrypto: the seed stays
      return n
    }
    const { ipnsSeed: _seed, ...rest } = n
    return rest
  }))
  const kept: KeptGrant = { grant: { ...verified, namespaces }, signingKeys, nonExtractable }
  await withStore(options, 'readwrite', store => store.put(kept, verified.app))
  return kept
}

/** The grant kept for `app`, or undefined. */
export async function loadGrant (app: string, options: KeepOptions = {}): Promise<KeptGrant | undefined> {
  const value = await withStore(options, 'readonly', store => store.get(app))
  return value === undefined ? undefined : value as KeptGrant
}

/** Deletes the grant kept for `app`. */
export async function forgetGrant (app: string, options: KeepOptions = {}): Promise<void> {
  await withStore(options, 'readwrite', store => store.delete(app))
}

async function withStore (options: KeepOptions, mode: IDBTransactionMode, fn: (store: IDBObjectStore) => IDBRequest): Promise<unknown> {
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const open = (options.indexedDB ?? indexedDB).open(options.database ?? DEFAULT_GRANT_DATABASE, 1)
    open.onupgradeneeded = () => { open.result.createObjectStore(STORE) }
    open.onsuccess = () => { resolve(open.result) }
    open.onerror = () => { reject(new StoreError(`cannot open IndexedDB: ${open.error?.message ?? 'unknown error'}`, { cause: open.error })) }
  })
  try {
    return await new Promise((resolve, reject) => {
      const request = fn(db.transaction(STORE, mode).objectStore(STORE))
      request.onsuccess = () => { resolve(request.result) }
      request.onerror = () => { reject(new StoreError(`IndexedDB refused the grant: ${request.error?.message ?? 'unknown error'}`, { cause: request.error })) }
    })
  } finally {
    db.close()
  }
}

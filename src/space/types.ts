/**
 * The public types of a Space: its options, its events, its verbs, and the limits behind their
 * defaults. Nothing here runs; `open.ts` opens a space and `default-space.ts` implements one.
 */
import type { PendingEntry, SeenVersion, SpaceStateStore } from './state.js'
import type { VersionInfo } from './history.js'
import type { Json } from './json.js'
import type { Signer } from './signer.js'
import type { AbortOptions, Store } from '../store/interface.js'
import type { CID } from 'multiformats/cid'
import type { AppInfo, GrantOptions } from '../apps/directory.js'
import type { Grant } from '../apps/grant.js'
import type { ComponentLogger } from '../logger.js'

/** Largest JSON text of one value. @default 64 KiB */
export const DEFAULT_MAX_VALUE_BYTES = 64 * 1024
/** Largest private section, in JSON bytes. @default 16 MiB */
export const DEFAULT_MAX_SPACE_BYTES = 16 * 1024 * 1024
/** Largest public section, in JSON bytes (it is one block). @default 256 KiB */
export const DEFAULT_MAX_PUBLIC_BYTES = 256 * 1024

export type ProgressEvent =
  | { type: 'space:open:signature' }
  | { type: 'space:open:resolved', detail: { name: string, sequence: number | null } }
  | { type: 'space:open:owner-binding' }
  | { type: 'space:publish:start', detail: { sequence: number } }
  | { type: 'space:publish:end', detail: { sequence: number, root: CID } }
  | { type: 'space:publish:error', detail: { error: Error, retryInMs: number | null } }
  | { type: 'space:publish:race', detail: { sequence: number, attempt: number } }

export interface SpaceOptions extends AbortOptions {
  /** The wallet: an EIP-1193 provider or any `{ address, signMessage }` (viem, ethers). */
  signer: Signer
  /** Where blocks and records live. One of store / hub / helia is required. */
  store?: Store
  /** A UserSpace hub URL, e.g. `http://127.0.0.1:8787` (uses `hubStore`). */
  hub?: string
  /** A started helia node the app already has (uses `heliaStore`; no public bootstrapping is started). */
  helia?: unknown
  /** This device's id, shown in history and used to break ties. @default random per open */
  deviceId?: string
  /** @default DEFAULT_MAX_VALUE_BYTES */
  maxValueBytes?: number
  /** @default DEFAULT_MAX_SPACE_BYTES */
  maxSpaceBytes?: number
  /** @default DEFAULT_MAX_PUBLIC_BYTES */
  maxPublicBytes?: number
  /**
   * When creating a new space, ask the wallet to sign the open message a second time and refuse
   * (NonDeterministicSignerError) if the two signatures derive different spaces. One more prompt,
   * once per space. @default false
   */
  checkDeterministic?: boolean
  /**
   * Sign a new, dated owner binding for this space and publish it, so that every hub lists this
   * space as the wallet address's space again, replacing a binding signed before (say one the user
   * was tricked into signing for another space). Also opens a space the hub's address index binds
   * elsewhere, which otherwise fails with NonDeterministicSignerError: use it only when this is the
   * user's real space. One more signature prompt. @default false
   */
  rebind?: boolean
  /**
   * Where this device keeps the newest version it has seen (rollback protection) and its unpublished
   * writes, across restarts. @default `idbState` in browsers, `fileState()` (the user's state
   * directory) in Node, memory for a `memoryStore()` and where neither exists
   */
  state?: SpaceStateStore
  /** IPNS record lifetime. @default 365 days */
  recordLifetimeMs?: number
  /**
   * When a publish fails (store unreachable), the writes stay queued locally and are retried after
   * this delay, doubling up to a minute, until they go out. 0 turns retrying off (then the next
   * write, `flush()` or `refresh()` retries). @default 2000
   */
  retryDelayMs?: number
  /**
   * Open from the store's cached record (e.g. a `layeredStore` with IndexedDB in front of a hub)
   * without waiting for the network, then refresh in the background; a failed refresh is an
   * 'error' event, not a failed open. @default false
   */
  offlineFirst?: boolean
  /**
   * The wall clock, in ms since 1970: entry stamps, version dates, the owner binding's date, record
   * validity and expiry, renewal. For simulations and tests. @default systemClock (Date.now)
   */
  now?: () => number
  onProgress?: (event: ProgressEvent) => void
  /**
   * Logs publish failures and retries, races, renewals and merges as the `userspace:space` component
   * (and the hub store's as `userspace:store:hub`). Helia's `helia.logger` fits. @default noopLogger()
   */
  logger?: ComponentLogger
}

export type { SpaceStateStore, SeenVersion, PendingEntry }

/** What `close()` reports. */
export interface CloseResult {
  /**
   * Keys (`public:` before public ones) written on this device that no store has taken yet. They are
   * kept in the device's durable state and published on the next open.
   */
  unpublished: string[]
}

export interface ChangeEvent {
  section: 'private' | 'public'
  /** keys whose value changed (set, replaced or removed) */
  keys: string[]
  sequence: number
}

export interface RollbackEvent {
  /** the sequence of the stale record that was ignored */
  sequence: number
  /** the newest sequence this device has seen */
  seen: number
}

export interface ConflictEvent {
  sequence: number
  /** the root this device knew at that sequence and the other one that was published with it */
  roots: [string, string]
}

export interface PendingEvent {
  /** writes (per section and key) not yet taken by the store */
  count: number
}

export interface SpaceEvents {
  change: ChangeEvent
  rollback: RollbackEvent
  conflict: ConflictEvent
  pending: PendingEvent
  expired: ExpiredEvent
  error: Error
}

export interface ExpiredEvent {
  /** when the newest record's validity ended, in ms since the epoch */
  validUntilMs: number
  sequence: number
}

export type { VersionInfo }

/** A read-only view of a space as it was at one version. */
export interface SpaceVersion extends VersionInfo {
  get(key: string): Json | undefined
  getAll(): Record<string, Json>
  public: { get(key: string): Json | undefined, getAll(): Record<string, Json> }
}

export interface SectionApi {
  get(key: string): Promise<Json | undefined>
  getAll(): Promise<Record<string, Json>>
  keys(): Promise<string[]>
  set(key: string, value: Json, options?: AbortOptions): Promise<void>
  remove(key: string, options?: AbortOptions): Promise<void>
  /** Applies an RFC 7396 JSON merge patch to the whole section: `null` removes, objects merge. */
  patch(patch: Record<string, Json>, options?: AbortOptions): Promise<void>
}

export interface Space extends SectionApi {
  /** The IPNS name (`k51…`), the space's address on IPFS. */
  readonly name: string
  /** The owner's EIP-55 wallet address. */
  readonly address: string
  /** This device's id. */
  readonly deviceId: string
  /** Plaintext entries anyone can read (a profile). Same verbs as the space. */
  readonly public: SectionApi
  /** The sequence of the newest version this device has seen or written (0 before the first write). */
  readonly sequence: number
  /** The root CID of that version. */
  readonly root: CID | null
  /** How many writes (per section and key) are durable on this device but not yet published. */
  readonly pending: number
  /** Resolves the newest record (past caches) and merges it; publishes if this device holds newer entries. */
  refresh(options?: AbortOptions): Promise<void>
  /** Waits until every write made so far is published; rejects when the store cannot take it now (the writes stay pending). */
  flush(options?: AbortOptions): Promise<void>
  on<E extends keyof SpaceEvents>(event: E, listener: (event: SpaceEvents[E]) => void): () => void
  /** Calls `listener` on every change from another device; listens to the store's live updates. */
  subscribe(listener: (event: ChangeEvent) => void): () => void
  /** Past versions, newest first, following parent links. */
  history(options?: AbortOptions & { limit?: number }): Promise<VersionInfo[]>
  /** Reads a past version. */
  at(root: CID | string, options?: AbortOptions): Promise<SpaceVersion>
  /**
   * Publishes what is pending, then closes. When the store cannot be reached, unpublished writes stay
   * in the device's durable state and are listed in the result; without a durable state it rejects
   * with UnpublishedWritesError naming them.
   */
  close(options?: AbortOptions): Promise<CloseResult>
  /**
   * Scoped app access: issues `app` a grant for its own namespace plus `read` (and, approved, `write`)
   * namespaces, recorded in this space's directory. Only the owner's space (opened with the wallet).
   */
  grant(app: string, options: GrantOptions): Promise<Grant>
  /** The apps holding grants, from this space's directory. */
  apps(): Promise<AppInfo[]>
  /** Moves every namespace `app` held keys for to a new epoch (data re-encrypted) and drops its grant. */
  revoke(app: string, options?: AbortOptions): Promise<Array<{ namespace: string, epoch: number, name: string }>>
}

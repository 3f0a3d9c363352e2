/**
 * The Next.ID app's options: what `createNextIdApp` accepts, the defaults behind each limit, and
 * `configure`, which checks them once and fills in the defaults for the routes.
 */
import { systemClock } from '../../clock.js'
import { InvalidInputError } from '../../errors.js'
import { DEFAULT_MAX_STORED_BYTES } from './store.js'
import { DEFAULT_MAX_CHAIN_BYTES, DEFAULT_MAX_CHAIN_LINKS } from './transfer.js'
import type { ProofServiceCheck } from './proof.js'
import type { WriteConfig } from './write.js'
import type { Blockstore } from 'interface-blockstore'
import type { Datastore } from 'interface-datastore'

/** @default for `createdAtWindowMs`: a wallet prompt may take a while; a replay a day later may not. */
export const DEFAULT_CREATED_AT_WINDOW_MS = 10 * 60 * 1000

/** @default for `maxImportBytes`: a whole avatar chain (DEFAULT_MAX_CHAIN_BYTES) with its CAR framing. */
export const DEFAULT_MAX_IMPORT_BYTES = 16 * 1024 * 1024

/** @default for `maxBodyBytes`: Next.ID patches are small profile documents. */
export const DEFAULT_NEXTID_MAX_BODY_BYTES = 64 * 1024

/** @default for `maxContentBytes`. */
export const DEFAULT_MAX_CONTENT_BYTES = 1024 * 1024

/** @default for `maxAvatarContentBytes`: what one GET /v1/kv answers, roughly. */
export const DEFAULT_MAX_AVATAR_CONTENT_BYTES = 2 * 1024 * 1024

/** @default for `maxQueuedWritesPerAvatar`. */
export const DEFAULT_MAX_QUEUED_WRITES_PER_AVATAR = 8

/** @default for `maxIdentityResults`. */
export const DEFAULT_MAX_IDENTITY_RESULTS = 100

/** @default for `maxIdentityResponseBytes`. */
export const DEFAULT_MAX_IDENTITY_RESPONSE_BYTES = 4 * 1024 * 1024

export interface NextIdOptions {
  /** The hub's datastore (LevelDB in `userspace serve`); state lives under `/nextid/`. */
  datastore: Datastore
  /** The hub's blockstore; one dag-cbor block per accepted patch. */
  blockstore: Blockstore
  /** The clock, in ms since 1970. @default systemClock (Date.now) */
  nowMs?: () => number
  /**
   * How far a written `created_at` may be from now, either way. A payload must be signed and posted
   * within this time. @default DEFAULT_CREATED_AT_WINDOW_MS (10 minutes)
   */
  createdAtWindowMs?: number
  /** Largest request body. @default DEFAULT_NEXTID_MAX_BODY_BYTES (64 KiB) */
  maxBodyBytes?: number
  /** Largest CAR accepted by `POST /api/v1/nextid/import`. @default DEFAULT_MAX_IMPORT_BYTES (16 MiB) */
  maxImportBytes?: number
  /** Largest merged content of one (avatar, platform, identity), as canonical JSON. @default DEFAULT_MAX_CONTENT_BYTES (1 MiB) */
  maxContentBytes?: number
  /**
   * Largest merged content of all of one avatar's entries together; a write that would grow it
   * past this is refused (413), one that shrinks it is not. @default DEFAULT_MAX_AVATAR_CONTENT_BYTES (2 MiB)
   */
  maxAvatarContentBytes?: number
  /** Most patches kept per avatar (and accepted in one import). @default DEFAULT_MAX_CHAIN_LINKS (10 000) */
  maxChainLinks?: number
  /** Most block bytes kept per avatar (and accepted in one import). @default DEFAULT_MAX_CHAIN_BYTES (8 MiB) */
  maxChainBytes?: number
  /**
   * Writes of one avatar that may hold or wait for its lock at once (only writes whose signature
   * checked out get that far); one more is refused with 429. @default DEFAULT_MAX_QUEUED_WRITES_PER_AVATAR (8)
   */
  maxQueuedWritesPerAvatar?: number
  /**
   * Most bytes of Next.ID data (chain blocks, content and indexes, keys included) this hub keeps,
   * all avatars together: a write or import that would grow it past this is refused (507). Keys
   * are free, so without it fresh avatars could fill the disk past every per-avatar cap.
   * @default DEFAULT_MAX_STORED_BYTES (1 GiB)
   */
  maxStoredBytes?: number
  /** Most avatars listed by one `GET /v1/kv/by_identity`. @default DEFAULT_MAX_IDENTITY_RESULTS (100) */
  maxIdentityResults?: number
  /** Largest `GET /v1/kv/by_identity` body: values past it are left out. @default DEFAULT_MAX_IDENTITY_RESPONSE_BYTES (4 MiB) */
  maxIdentityResponseBytes?: number
  /**
   * fsync each accepted write (on a LevelDB datastore) before answering 201, so an acknowledged
   * patch survives a power loss; `false` trades that for throughput. @default true
   */
  syncWrites?: boolean
  /**
   * Checks that a non-"nextid" platform identity is bound to the avatar. When absent (the default,
   * for a self-hosted hub) such platforms are accepted without a binding check: anyone holding the
   * avatar key may write under any platform/identity, and readers must not take the pair as proven.
   * kv_server always asks the public ProofService. The "nextid" platform is always checked (its
   * identity must be the avatar's own key).
   */
  proofService?: ProofServiceCheck
  /** `build_at` reported by /healthz. @default 'UNKNOWN' (kv_server's fallback) */
  buildAt?: string
  /** `commit_version` reported by /healthz. @default 'UNKNOWN' */
  commitVersion?: string
  /** Told the avatar (uncompressed hex) of every accepted patch, e.g. to tell peered hubs. @default nothing */
  onAccepted?: (avatar: string) => void
}

/** The options with every default filled in, as the routes use them. */
export interface NextIdConfig extends WriteConfig {
  createdAtWindowMs: number
  maxBodyBytes: number
  maxImportBytes: number
  maxIdentityResults: number
  maxIdentityResponseBytes: number
  proofService?: ProofServiceCheck
  buildAt: string
  commitVersion: string
  onAccepted?: (avatar: string) => void
}

function positive (value: number | undefined, fallback: number, what: string, allowZero = false): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new InvalidInputError(`"${what}" expected a positive number, got ${String(value)}`)
  }
  return value
}

export function configure (options: NextIdOptions): NextIdConfig {
  if (options?.datastore == null || options.blockstore == null) throw new InvalidInputError('"datastore" and "blockstore" are required')
  return {
    datastore: options.datastore,
    blockstore: options.blockstore,
    nowMs: options.nowMs ?? systemClock,
    createdAtWindowMs: positive(options.createdAtWindowMs, DEFAULT_CREATED_AT_WINDOW_MS, 'createdAtWindowMs', true),
    maxBodyBytes: positive(options.maxBodyBytes, DEFAULT_NEXTID_MAX_BODY_BYTES, 'maxBodyBytes'),
    maxImportBytes: positive(options.maxImportBytes, DEFAULT_MAX_IMPORT_BYTES, 'maxImportBytes'),
    maxContentBytes: positive(options.maxContentBytes, DEFAULT_MAX_CONTENT_BYTES, 'maxContentBytes'),
    maxAvatarContentBytes: positive(options.maxAvatarContentBytes, DEFAULT_MAX_AVATAR_CONTENT_BYTES, 'maxAvatarContentBytes'),
    maxChainLinks: positive(options.maxChainLinks, DEFAULT_MAX_CHAIN_LINKS, 'maxChainLinks'),
    maxChainBytes: positive(options.maxChainBytes, DEFAULT_MAX_CHAIN_BYTES, 'maxChainBytes'),
    maxQueuedWritesPerAvatar: positive(options.maxQueuedWritesPerAvatar, DEFAULT_MAX_QUEUED_WRITES_PER_AVATAR, 'maxQueuedWritesPerAvatar'),
    maxStoredBytes: positive(options.maxStoredBytes, DEFAULT_MAX_STORED_BYTES, 'maxStoredBytes', true),
    maxIdentityResults: positive(options.maxIdentityResults, DEFAULT_MAX_IDENTITY_RESULTS, 'maxIdentityResults'),
    maxIdentityResponseBytes: positive(options.maxIdentityResponseBytes, DEFAULT_MAX_IDENTITY_RESPONSE_BYTES, 'maxIdentityResponseBytes'),
    syncWrites: options.syncWrites ?? true,
    proofService: options.proofService,
    buildAt: options.buildAt ?? 'UNKNOWN',
    commitVersion: options.commitVersion ?? 'UNKNOWN',
    onAccepted: options.onAccepted
  }
}

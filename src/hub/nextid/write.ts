/**
 * Accepting one signed patch onto an avatar's chain, built to stay cheap when strangers send
 * refusals on purpose. Every check that needs no curve arithmetic runs first (form of the
 * signature, uuid, sizes and per-avatar caps); the signature is recovered outside the avatar's
 * lock, so a refused request never holds up the avatar's own writes; the "signed over an older
 * head" diagnosis tries only links this hub accepted after the payload was issued, at most
 * `MAX_STALE_CANDIDATES` of them; the lock's queue has a depth cap (429 beyond); and the accepted
 * link, its block included, is written as one batch, fsynced on LevelDB before the caller answers.
 */
import { ConflictError, SignerMismatchError, TooLargeError, throwIfAborted } from '../../errors.js'
import { MAX_BLOCK_BYTES } from '../../store/blocks.js'
import { encodeLink, linkSignPayload, signedBy, type KvLink } from './chain.js'
import { mergePatch } from './json.js'
import {
  EMPTY_STAT, commitBatch, decodeCid, decodeEntry, decodeStat, encodeEntry, encodeStat, getAcceptedAtMs, getCid, getValues, keys, loadLink, mutexFor,
  type AvatarStat, type KvEntry, type NextIdStores, type Put
} from './store.js'
import { avatarStatFromChain } from './transfer.js'
import type { CID } from 'multiformats/cid'
import type { AbortOptions } from '../../store/interface.js'

/**
 * How many older heads a refused signature is tried against to tell "signed over a head that has
 * moved on since" (409) from "not signed by the avatar" (400). Each try is one secp256k1 recovery,
 * which a stranger can cause at will, so it stays small: a payload outpaced by two writes is the
 * ordinary race; beyond that the client gets the 400, whose message says to request a new payload.
 */
export const MAX_STALE_CANDIDATES = 2

export interface WriteConfig extends NextIdStores {
  nowMs: () => number
  maxContentBytes: number
  maxAvatarContentBytes: number
  maxChainBytes: number
  maxChainLinks: number
  maxQueuedWritesPerAvatar: number
  maxStoredBytes: number
  syncWrites: boolean
}

export interface AcceptOptions extends AbortOptions {
  /**
   * Runs after the signature has been checked and before anything is written (the ProofService
   * binding check: a network call, which strangers must not be able to cause for free).
   */
  afterSignature?: () => Promise<void>
}

/**
 * Verifies `draft` (every field but `previous`) over the avatar's head and appends it. Throws
 * ConflictError (uuid used by this avatar, or signed over an older head), SignerMismatchError,
 * InvalidSignatureError, TooLargeError, RateLimitError (the avatar's write queue is full),
 * InsufficientStorageError (the hub's Next.ID budget is spent) or StoreError; on any of them nothing is written.
 */
export async function acceptLink (config: WriteConfig, draft: Omit<KvLink, 'previous'>, publicKey: Uint8Array, options: AcceptOptions = {}): Promise<void> {
  const { datastore } = config
  const avatar = draft.avatar
  const entryKey = keys.kv(avatar, draft.platform, draft.identity)
  const [used, headBytes, statBytes, entryBytes] = await getValues(datastore, [keys.uuid(avatar, draft.uuid), keys.head(avatar), keys.stat(avatar), entryKey], options)
  if (used !== undefined) throw new ConflictError(`uuid ${draft.uuid} was already used by this avatar; request a new payload`)
  const headCid = decodeCid(headBytes, keys.head(avatar))
  const head = headCid === null ? null : await loadLink(config, headCid, options)
  const link: KvLink = { ...draft, previous: headCid }
  // Sizes first: encoding and merging cost microseconds, a recovery milliseconds.
  const stored = decodeStat(statBytes, avatar)
  const entry = entryBytes === undefined ? undefined : decodeEntry(entryBytes, entryKey.toString())
  const prepared = await prepare(config, link, entry, stored ?? (headCid === null ? EMPTY_STAT : undefined))

  if (!signedBy(linkSignPayload(link, head?.signature ?? null), link.signature, publicKey)) {
    if (head !== null && headCid !== null && await signedOverOlderHead(config, link, headCid, head, publicKey, options)) {
      throw new ConflictError('the payload was signed over an older head of this avatar\'s chain (another patch was accepted since); request a new payload and sign it again')
    }
    throw new SignerMismatchError('"signature" was not made by the avatar over the sign_payload of this request (a payload issued before other writes of this avatar must be requested again)')
  }
  await options.afterSignature?.()

  await mutexFor(datastore).run([`avatar:${avatar}`], async () => {
    throwIfAborted(options.signal)
    // Whatever moved the head since (a write or an import) came after this payload was issued.
    const now = await getCid(datastore, keys.head(avatar), options)
    if (!(now === null ? headCid === null : headCid !== null && now.equals(headCid))) {
      throw new ConflictError('another patch of this avatar was accepted while this one was checked; request a new payload and sign it again')
    }
    // A chain written before totals were kept is counted once, by its owner's write, which also
    // copies its blocks from the blockstore.
    const legacy = prepared.stat === undefined ? await avatarStatFromChain(config, avatar, headCid, options) : undefined
    const counted = legacy === undefined ? prepared : await prepare(config, link, entry, legacy.stat)
    // From here on the request is not abortable: the write completes or fails as a whole.
    await commitBatch(datastore, [
      ...(legacy?.blocks ?? []).map(({ cid, bytes }): Put => [keys.block(cid), bytes]),
      [keys.block(counted.block.cid), counted.block.bytes],
      [keys.acceptedAt(counted.block.cid), new TextEncoder().encode(String(config.nowMs()))],
      [keys.kv(avatar, link.platform, link.identity), counted.entryBytes],
      [keys.identity(link.platform, link.identity, avatar), new Uint8Array(0)],
      [keys.uuid(avatar, link.uuid), counted.block.cid.bytes],
      [keys.stat(avatar), encodeStat(counted.stat as AvatarStat)],
      [keys.head(avatar), counted.block.cid.bytes]
    ] satisfies Put[], config.syncWrites, config.maxStoredBytes)
  }, config.maxQueuedWritesPerAvatar)
}

interface Prepared {
  block: { cid: CID, bytes: Uint8Array }
  entryBytes: Uint8Array
  /** the avatar's totals after this link; undefined when the totals before it were not known */
  stat?: AvatarStat
}

/** Encodes the block and the merged entry and checks them against every size cap. */
async function prepare (config: WriteConfig, link: KvLink, entry: KvEntry | undefined, before: AvatarStat | undefined): Promise<Prepared> {
  const block = await encodeLink(link)
  if (block.bytes.length > MAX_BLOCK_BYTES) throw new TooLargeError(`the patch block would be ${block.bytes.length} bytes, larger than ${MAX_BLOCK_BYTES}`)
  const entryBytes = encodeEntry({ platform: link.platform, identity: link.identity, content: mergePatch(entry?.content, link.patch) })
  if (entryBytes.length > config.maxContentBytes) {
    throw new TooLargeError(`the merged content would be ${entryBytes.length} bytes, over the ${config.maxContentBytes}-byte limit`)
  }
  if (before === undefined) return { block, entryBytes }
  const oldEntryBytes = entry === undefined ? 0 : encodeEntry(entry).length
  const stat: AvatarStat = {
    links: before.links + 1,
    chainBytes: before.chainBytes + block.bytes.length,
    contentBytes: before.contentBytes - oldEntryBytes + entryBytes.length
  }
  if (stat.links > config.maxChainLinks) {
    throw new TooLargeError(`this avatar's chain holds ${before.links} patches, the most this hub keeps per avatar (${config.maxChainLinks})`)
  }
  if (stat.chainBytes > config.maxChainBytes) {
    throw new TooLargeError(`this avatar's chain would be ${stat.chainBytes} bytes, more than this hub keeps per avatar (${config.maxChainBytes})`)
  }
  if (stat.contentBytes > config.maxAvatarContentBytes && stat.contentBytes > before.contentBytes) {
    throw new TooLargeError(`this avatar's content would be ${stat.contentBytes} bytes, more than this hub keeps per avatar (${config.maxAvatarContentBytes}); remove something first`)
  }
  return { block, entryBytes, stat }
}

/**
 * Whether the signature verifies over an older `previous`. A payload carries the head of when it
 * was issued (`created_at`, whole seconds): only links this hub accepted at or after that second
 * can have replaced it, so the walk stops at the first link accepted before (or not accepted here:
 * imported or older than this record), and after MAX_STALE_CANDIDATES tries.
 */
async function signedOverOlderHead (stores: NextIdStores, link: KvLink, headCid: CID, head: KvLink, publicKey: Uint8Array, options: AbortOptions): Promise<boolean> {
  const issuedMs = link.created_at * 1000
  let cid = headCid
  let current = head
  for (let tries = 0; tries < MAX_STALE_CANDIDATES; tries++) {
    const acceptedMs = await getAcceptedAtMs(stores.datastore, cid, options)
    if (acceptedMs === undefined || acceptedMs < issuedMs) return false
    // `current` became the head after the payload was issued: it was signed over its predecessor.
    const older = current.previous === null ? null : await loadLink(stores, current.previous, options)
    let over: boolean
    try {
      over = signedBy(linkSignPayload(link, older?.signature ?? null), link.signature, publicKey)
    } catch {
      over = false
    }
    if (over) return true
    if (older === null || current.previous === null) return false
    cid = current.previous
    current = older
  }
  return false
}

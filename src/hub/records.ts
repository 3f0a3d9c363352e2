/**
 * IPNS records: validation, the conditional write (a lower sequence is a conflict, the same sequence
 * with another value an equivocation), the owner binding and quota of the root a record points at,
 * the address index, DHT announcements (announce.ts) and network look-ups of names the hub does not hold.
 */
import { systemClock } from '../clock.js'
import { equals } from 'multiformats/bytes'
import { toBase64 } from '../crypto/bytes.js'
import { ConflictError, EquivocationError, IntegrityError, InvalidInputError, TooLargeError } from '../errors.js'
import { decodeCurrent, verifyOwner, versionOwner } from '../space/root.js'
import { cidString, verifyBlock } from '../store/blocks.js'
import { readRecord, validateRecord } from '../store/record.js'
import { Announcer } from './announce.js'
import {
  DEFAULT_ANNOUNCE_CONCURRENCY, DEFAULT_ANNOUNCE_SPACING_MS, DEFAULT_ANNOUNCE_TIMEOUT_MS, DEFAULT_ANNOUNCE_WAIT_MS, DEFAULT_HUB_FETCH_TIMEOUT_MS,
  DEFAULT_HUB_MAX_SPACE_BYTES, DEFAULT_MAX_PENDING_ANNOUNCEMENTS, DEFAULT_RESOLVE_TIMEOUT_MS
} from './options.js'
import { checkSpaceQuota, rootOf } from './quota.js'
import { datastoreRecords } from './record-store.js'
import type { HubBlocks } from './blocks.js'
import type { HubEvents } from './events.js'
import type { HubAppOptions, HubComponents } from './options.js'
import type { BlockSource } from './quota.js'
import type { HubRecordStore } from './record-store.js'
import type { Walked } from './walk.js'
import type { RecordInfo } from '../store/record.js'
import type { OwnerBinding } from '../space/root.js'
import type { CID } from 'multiformats/cid'

/** How many names' newest records (and index state) the hub keeps in memory. */
const RECENT_RECORDS = 10_000
/** A block the owner binding check needs is not on this hub. */
class BindingNotHere extends Error {}

/** The owner binding link of a current node, if it is one. */
function ownerOfCurrent (bytes: Uint8Array): CID | undefined {
  try {
    return decodeCurrent(bytes).owner
  } catch {
    return undefined
  }
}

/** How far in the future a dated owner binding may be (clocks differ). */
const MAX_BINDING_CLOCK_SKEW_MS = 10 * 60 * 1000

/** Stored records with their caches and per-name write locks. */
export class HubRecords {
  readonly records: HubRecordStore
  private readonly blocks: HubBlocks
  private readonly events: HubEvents
  private readonly components: HubComponents
  private readonly options: HubAppOptions
  private readonly locks = new Map<string, Promise<void>>()
  private readonly resolving = new Map<string, Promise<Uint8Array | undefined>>()
  /** `name owner-signature` pairs already verified, so a space's later versions skip the secp256k1 recovery. */
  private readonly verifiedOwners = new Map<string, string>()
  /** The newest stored record per name, for names seen lately (the datastore stays the truth). */
  private readonly recent = new Map<string, { bytes: Uint8Array, info: RecordInfo }>()
  /** The binding (`address issuedAt`) each name last wrote to the index, so unchanged ones are not re-read. */
  private readonly indexed = new Map<string, string>()

  private readonly validate: (name: string, bytes: Uint8Array) => Promise<RecordInfo>
  private readonly announcer: Announcer | undefined

  constructor (components: HubComponents, options: HubAppOptions, blocks: HubBlocks, events: HubEvents) {
    this.components = components
    this.validate = components.validate ?? (async (name, bytes) => await validateRecord(name, bytes, { nowMs: options.nowMs }))
    this.records = components.records ?? datastoreRecords(components.datastore)
    this.options = options
    this.blocks = blocks
    this.events = events
    this.announcer = components.announce === undefined
      ? undefined
      : new Announcer(components.announce, {
        concurrency: options.announceConcurrency ?? DEFAULT_ANNOUNCE_CONCURRENCY,
        maxPending: options.maxPendingAnnouncements ?? DEFAULT_MAX_PENDING_ANNOUNCEMENTS,
        timeoutMs: options.announceTimeoutMs ?? DEFAULT_ANNOUNCE_TIMEOUT_MS
      })
  }

  /** Whether the last record of a name reached peered hubs (names written lately only). */
  private readonly gossipedLately = new Map<string, boolean>()

  private noteGossiped (name: string, heard: boolean): void {
    this.gossipedLately.delete(name)
    this.gossipedLately.set(name, heard)
    if (this.gossipedLately.size > RECENT_RECORDS) this.gossipedLately.delete(this.gossipedLately.keys().next().value as string)
  }

  /** Stops announcing: records still waiting for their DHT announcement are left to the next start's re-announcement. */
  stop (): void {
    this.announcer?.stop()
  }


  /** The stored record of a name (through a small cache: only this process writes the datastore). */
  async stored (name: string): Promise<Uint8Array | undefined> {
    return (await this.storedWithInfo(name))?.bytes
  }

  /** What a record says, from the cache when it is the stored one. */
  infoOf (name: string, bytes: Uint8Array): RecordInfo {
    const cached = this.recent.get(name)
    return cached !== undefined && cached.bytes === bytes ? cached.info : readRecord(bytes)
  }

  private async storedWithInfo (name: string): Promise<{ bytes: Uint8Array, info: RecordInfo } | undefined> {
    const cached = this.recent.get(name)
    if (cached !== undefined) return cached
    const bytes = await this.records.get(name)
    if (bytes === undefined) return undefined
    const entry = { bytes, info: readRecord(bytes) }
    this.remember(name, entry)
    return entry
  }

  private remember (name: string, entry: { bytes: Uint8Array, info: RecordInfo }): void {
    this.recent.delete(name)
    this.recent.set(name, entry)
    if (this.recent.size > RECENT_RECORDS) this.recent.delete(this.recent.keys().next().value as string)
  }


  /**
   * Validates, checks against what is stored, stores durably, notifies, announces and (on a hub
   * with peers) waits, bounded, until the version is held by enough other hubs.
   */
  async putRecord (name: string, bytes: Uint8Array): Promise<void> {
    const info = await this.validate(name, bytes)
    const changed = await this.accept(name, bytes, info)
    if (changed) await this.spread(name, bytes, info)
  }

  /**
   * Tells the network of an accepted record: the DHT announcement starts in the background, and
   * peered hubs hear it by gossip (the PUT waits, bounded, for its replicas). When at least one
   * peered hub heard it, readers through any hub find it already, so the PUT does not wait for the
   * DHT; otherwise it waits up to `announceWaitMs`, so that a reader on another node finds the
   * record at once.
   */
  private async spread (name: string, bytes: Uint8Array, info: RecordInfo): Promise<void> {
    // Before the gossip, so the DHT's copy is not held up by it; spaced once peered hubs are known
    // to serve the name (they heard its records), at once otherwise.
    const spacingMs = this.components.cluster === undefined || this.gossipedLately.get(name) !== true ? 0 : this.options.announceSpacingMs ?? DEFAULT_ANNOUNCE_SPACING_MS
    const announced = this.announcer?.add(name, bytes, spacingMs)
    const hubs = await this.replicate(name, bytes, info)
    this.noteGossiped(name, hubs > 0)
    if (announced === undefined || hubs > 0) return
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([announced, new Promise<void>((resolve) => { timer = setTimeout(resolve, this.options.announceWaitMs ?? DEFAULT_ANNOUNCE_WAIT_MS) })])
    clearTimeout(timer)
  }

  /**
   * A record heard from a peered hub: the same checks as a PUT (signature, size, sequence, owner
   * binding, quota), then stored, indexed and told to subscribers; never announced again (the
   * sender did). `rootBytes`, when the sender sent the root block along, is used only if it hashes
   * to the record's CID. Resolves true when stored, false when already held; throws the PUT's errors.
   */
  async acceptFromPeer (name: string, bytes: Uint8Array, rootBytes?: Uint8Array, bindingBytes: Uint8Array[] = []): Promise<boolean> {
    // The record already stored, byte for byte (a copy, a resend): checked when it was stored.
    const current = await this.storedWithInfo(name)
    if (current !== undefined && equals(current.bytes, bytes)) return false
    const info = await this.validate(name, bytes)
    const root = rootBytes !== undefined && info.cid !== undefined && await verifyBlock(info.cid, rootBytes) ? rootBytes : undefined
    // The root, and the current node and owner binding under it, are read from the message for the
    // checks (each only if it is the block its parent links); blocks reach this hub by replication.
    if (root === undefined || info.cid === undefined) return this.accept(name, bytes, info, undefined)
    const blocks = new Map([[cidString(info.cid), root]])
    const [currentBytes, ownerBytes] = bindingBytes
    const parsed = rootOf(root)
    if (parsed !== undefined && currentBytes !== undefined) {
      // A peer that sends other blocks than those the root links is refused, not asked again.
      if (!await verifyBlock(parsed.current, currentBytes)) throw new IntegrityError(`the current node sent with ${name} is not the one its root links`)
      blocks.set(cidString(parsed.current), currentBytes)
      const owner = ownerOfCurrent(currentBytes)
      if (owner !== undefined && ownerBytes !== undefined) {
        if (!await verifyBlock(owner, ownerBytes)) throw new IntegrityError(`the owner binding sent with ${name} is not the one its current node links`)
        blocks.set(cidString(owner), ownerBytes)
      }
    }
    return this.accept(name, bytes, info, { blocks, store: async () => {} })
  }

  /** Gossips the record to peered hubs and waits (bounded) for its replicas; resolves with the number of hubs it reached. */
  private async replicate (name: string, bytes: Uint8Array, info: RecordInfo): Promise<number> {
    const cluster = this.components.cluster
    if (cluster === undefined) return 0
    const root = info.cid === undefined ? undefined : await this.blocks.localBlock(info.cid)
    // Best effort: a PUT is acknowledged once stored here; the wait only narrows the window in
    // which losing this hub loses the version.
    return (await cluster.publish(name, bytes, root).catch(() => 0)) ?? 0
  }

  /**
   * A record and the blocks it needs, in one step: the record is validated and checked exactly as a
   * PUT is, with the blocks visible to the root and quota checks before any of them is stored; the
   * blocks are stored (and charged to `client`, then claimed by the record) only once every check
   * has passed. A stale record (409) or any other refusal stores nothing.
   */
  async publish (name: string, bytes: Uint8Array, blocks: Array<{ cid: CID, bytes: Uint8Array }>, client: string): Promise<void> {
    const info = await this.validate(name, bytes)
    const staged = new Map(blocks.map(b => [cidString(b.cid), b.bytes]))
    const changed = await this.accept(name, bytes, info, {
      blocks: staged,
      pushed: blocks,
      store: async () => { await this.blocks.storeVerified(blocks, client) }
    })
    if (changed) await this.spread(name, bytes, info)
  }

  /**
   * The checks-then-write part of a PUT, under the name's lock. Returns false when the record is
   * the one already stored (an idempotent retry). `staged` blocks are read by the checks and stored
   * after them, just before the record.
   */
  private async accept (name: string, bytes: Uint8Array, info: RecordInfo, staged?: Staged): Promise<boolean> {
    return this.withLock(name, async () => {
      const current = await this.storedWithInfo(name)
      if (current !== undefined) {
        if (equals(current.bytes, bytes)) return false
        const stored = current.info
        if (info.sequence < stored.sequence) {
          throw new ConflictError(`record sequence ${info.sequence} is lower than the stored ${stored.sequence} for ${name}`)
        }
        if (info.sequence === stored.sequence) {
          if (info.value !== stored.value) {
            throw new EquivocationError(`record sequence ${info.sequence} for ${name} already points at ${stored.value}`)
          }
          // Same version re-signed: the IPNS rule keeps the one valid longer.
          if (info.validUntilMs <= stored.validUntilMs) return false
        }
      }
      const checked = info.cid === undefined ? undefined : await this.checkRoot(name, info.cid, staged?.blocks)
      await staged?.store()
      // Accepted: its blocks now count against the name, no longer against their uploaders.
      if (checked !== undefined) this.blocks.storage.claim(checked.walked.cids)
      const owner = checked?.owner
      const binding = owner === undefined ? undefined : `${owner.address} ${owner.issuedAt ?? 0}`
      const fresh = binding !== undefined && this.indexed.get(name) !== binding
      await this.records.put(name, bytes, fresh ? owner?.address : undefined, fresh ? owner?.issuedAt : undefined)
      if (binding !== undefined) {
        if (this.indexed.size > RECENT_RECORDS) this.indexed.clear()
        this.indexed.set(name, binding)
      }
      this.remember(name, { bytes, info })
      // Streams that ask for them hear the record with the blocks it came with: stored by now.
      this.events.notify(name, bytes, staged?.pushed)
      return true
    })
  }

  /**
   * Reads the root a record points at (when the hub has it, can fetch it, or it is among `staged`),
   * enforces the per-name quota and verifies the owner binding. Returns the blocks of the version
   * and the owner's binding for the index (undefined when the root is not a UserSpace root: any
   * IPNS record is welcome; only spaces are indexed), or undefined when the root cannot be had.
   */
  private async checkRoot (name: string, cid: CID, staged?: Map<string, Uint8Array>): Promise<{ walked: Walked, owner?: { address: string, issuedAt?: number } } | undefined> {
    const source = staged === undefined ? this.blocks : withStaged(this.blocks, staged)
    const bytes = staged?.get(cidString(cid)) ?? await this.blocks.readBlock(cid, this.options.fetchTimeoutMs ?? DEFAULT_HUB_FETCH_TIMEOUT_MS)
    if (bytes === undefined) return undefined
    const root = rootOf(bytes)
    if (root === undefined) {
      return { walked: await checkSpaceQuota(source, name, cid, bytes, undefined, this.options.maxSpaceBytes ?? DEFAULT_HUB_MAX_SPACE_BYTES) }
    }
    const walked = await checkSpaceQuota(source, name, cid, bytes, root, this.options.maxSpaceBytes ?? DEFAULT_HUB_MAX_SPACE_BYTES)

    // The current node and the binding, staged or here. Never fetched (that would hold the name's
    // lock for two more network waits): a record whose binding is not here yet is stored, as one
    // whose root is not, and its owner is indexed from a later version.
    let owner: OwnerBinding
    try {
      owner = await versionOwner(cid, async (c) => {
        const block = c.equals(cid) ? bytes : staged?.get(cidString(c)) ?? await this.blocks.localBlock(c)
        if (block === undefined) throw new BindingNotHere()
        return block
      })
    } catch (err) {
      if (err instanceof BindingNotHere) return { walked }
      throw err
    }
    const { issuedAt } = owner
    // A date in the future would outrank every later binding until that date: refused.
    if (issuedAt !== undefined && issuedAt > (this.options.nowMs ?? systemClock)() + MAX_BINDING_CLOCK_SKEW_MS) {
      throw new InvalidInputError(`the owner binding of ${name} is dated ${new Date(issuedAt).toISOString()}, in the future`)
    }
    const signature = toBase64(owner.signature)
    const known = this.verifiedOwners.get(name)
    let address: string
    if (known !== undefined && known === `${owner.address} ${signature}`) {
      address = owner.address
    } else {
      // A root that claims an owner it cannot prove is refused: clients would refuse to open it.
      address = verifyOwner(owner, name)
      if (this.verifiedOwners.size > 10_000) this.verifiedOwners.clear()
      this.verifiedOwners.set(name, `${owner.address} ${signature}`)
    }
    return { walked, owner: { address, issuedAt } }
  }

  /** The stored record, refreshed from the network when the hub has none or the client asks. */
  async getRecord (name: string, nocache: boolean): Promise<Uint8Array | undefined> {
    const local = await this.stored(name)
    if (this.components.resolveRemote === undefined || (local !== undefined && !nocache)) return local
    let pending = this.resolving.get(name)
    if (pending === undefined) {
      pending = this.resolveRemote(name).finally(() => this.resolving.delete(name))
      this.resolving.set(name, pending)
    }
    return (await pending) ?? local
  }

  private async resolveRemote (name: string): Promise<Uint8Array | undefined> {
    let remote: Uint8Array | undefined
    let info: RecordInfo
    try {
      remote = await this.components.resolveRemote?.(name, { signal: AbortSignal.timeout(this.options.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS) })
      if (remote === undefined) return await this.stored(name)
      info = await this.validate(name, remote)
    } catch {
      return this.stored(name)
    }
    try {
      await this.accept(name, remote, info)
    } catch (err) {
      // Older than ours, or over this hub's quota: serve what we have.
      const local = await this.stored(name)
      if (local !== undefined || !(err instanceof TooLargeError)) return local
      return remote
    }
    return this.stored(name)
  }

  private async withLock<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((resolve) => { release = resolve })
    const tail = previous.then(() => mine)
    this.locks.set(key, tail)
    await previous
    try {
      return await fn()
    } finally {
      release()
      if (this.locks.get(key) === tail) this.locks.delete(key)
    }
  }
}

/** Blocks of a publish, readable by the checks before they are stored, and the step that stores them. */
interface Staged {
  blocks: Map<string, Uint8Array>
  /** The blocks a publish carried, for the event streams that ask for them. */
  pushed?: Array<{ cid: CID, bytes: Uint8Array }>
  store: () => Promise<void>
}

/** The hub's blocks with `staged` ones in front, for the checks of a publish. */
function withStaged (blocks: HubBlocks, staged: Map<string, Uint8Array>): BlockSource {
  return {
    localBlock: async (cid) => staged.get(cidString(cid)) ?? await blocks.localBlock(cid),
    blockSize: async (cid) => staged.get(cidString(cid))?.byteLength ?? await blocks.blockSize(cid),
    walkCaps: (max) => blocks.walkCaps(max)
  }
}

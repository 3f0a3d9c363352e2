/**
 * The Space: a user's key-value map, opened from one wallet signature, held in memory, merged with
 * what other devices published, and written back as encrypted blocks plus a signed IPNS record.
 *
 * A write resolves once it is durable on the device: it is added to the device's state (IndexedDB in
 * browsers, a file in Node) and applied to the map; publishing follows in the background, from that
 * state, and survives reloads, crashes and `close()`. `flush()` waits for the network. Writes made
 * while a publish is in flight are coalesced into the next one. A publish goes out against the
 * newest sequence the device knows; a store that holds a newer one refuses it (a conditional write)
 * and the space merges what it missed and publishes again, so an ordinary race is never an error.
 */
import { equals } from 'multiformats/bytes'
import { CID } from 'multiformats/cid'
import { apply as applyMergePatch } from 'json-merge-patch'
import { normalizeSignature } from '../crypto/eip191.js'
import { FORMAT_VERSION, ownerStatement } from '../crypto/keys.js'
import {
  ClosedError, ConflictError, IntegrityError, InvalidInputError, NonDeterministicSignerError, SignerMismatchError, TooLargeError,
  UnpublishedWritesError, throwIfAborted
} from '../errors.js'
import { createRecord, DEFAULT_RECORD_LIFETIME_MS, nameOfKey, validateRecord } from '../store/record.js'
import { CURRENT_VERSION_FIELD } from '../protocol.js'
import { getVerifiedBlock, verifyBlock } from '../store/blocks.js'
import { HybridClock, readPublicBlocks, sameEntry, wins as winsOver } from './entries.js'
import { listVersions } from './history.js'
import { checkKey, checkValue } from './json.js'
import { bytesToHex, randomBytes } from './random.js'
import { checkCurrent, decodeCurrent, decodeRoot, encodeCurrent, encodeRoot, verifyOwner } from './root.js'
import { PrivateSection, PublicSection } from './section.js'
import { DEFAULT_MAX_PUBLIC_BYTES, DEFAULT_MAX_SPACE_BYTES, DEFAULT_MAX_VALUE_BYTES } from './types.js'
import { keysFromWallet } from './wallet-keys.js'
import type { Entry } from './entries.js'
import type { VersionInfo } from './history.js'
import type { Json } from './json.js'
import type { OwnerBinding } from './root.js'
import type { Section } from './section.js'
import type { WalletAdapter } from './signer.js'
import type { PendingEntry, SpaceStateStore } from './state.js'
import type { ChangeEvent, CloseResult, SectionApi, Space, SpaceEvents, SpaceOptions, SpaceVersion } from './types.js'
import type { DerivedKeys } from './wallet-keys.js'
import type { AbortOptions, Block, Store } from '../store/interface.js'
import type { AppInfo, GrantOptions, MasterContext } from '../apps/directory.js'
import type { Grant } from '../apps/grant.js'

/** How many times a publish that lost a race merges and tries again before it waits for the retry timer. */
const MAX_RACE_ATTEMPTS = 8

type Listener = (event: any) => void

export class DefaultSpace implements Space {
  readonly public: SectionApi
  readonly deviceId: string
  private readonly privateSection: PrivateSection
  private readonly publicSection = new PublicSection()
  private readonly clock: HybridClock
  private readonly now: () => number
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  private retryDelay = 0
  private readonly listeners = new Map<string, Set<Listener>>()
  private readonly maxValueBytes: number
  private readonly maxSpaceBytes: number
  private readonly maxPublicBytes: number
  private owner: OwnerBinding | undefined
  private seq = 0
  private rootCid: CID | null = null
  /** the roots the next version descends from */
  private heads: CID[] = []
  private lastRecord: Uint8Array | undefined
  private validUntilMs = 0
  /** the newest record has expired: the next publish goes out even with nothing new, to renew it */
  private mustRenew = false
  private tail: Promise<void> = Promise.resolve()
  private queued: Promise<void> | undefined
  /** writes applied here and durable in the state, not yet published; by section and key */
  private readonly unpublished = new Map<string, PendingEntry>()
  /** writes being made durable, applied once the state has them (group commit) */
  private batch: { items: PendingEntry[], done: Promise<void> } | undefined
  /** the newest entry per section and key of every batch not applied yet (queued or being written) */
  private readonly unapplied = new Map<string, PendingEntry>()
  private persistTail: Promise<void> = Promise.resolve()
  /** state updates made in the background (settling published writes); `close()` waits for them */
  private stateWrites: Promise<void> = Promise.resolve()
  private closed = false
  private unsubscribe: (() => void) | undefined
  /** Blocks a DAG request brought in ahead of a cold merge, taken by fetchBlock as they are read. */
  private readonly prefetched = new Map<string, Uint8Array>()

  constructor (
    private readonly store: Store,
    private readonly wallet: WalletAdapter,
    readonly address: string,
    readonly name: string,
    private readonly derived: DerivedKeys,
    private readonly state: SpaceStateStore,
    private readonly options: SpaceOptions
  ) {
    this.deviceId = options.deviceId ?? bytesToHex(randomBytes(8))
    this.now = options.now ?? Date.now
    this.clock = new HybridClock(this.now)
    this.privateSection = new PrivateSection(derived.dataKey, derived.bucketKey, name)
    this.maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES
    this.maxSpaceBytes = options.maxSpaceBytes ?? DEFAULT_MAX_SPACE_BYTES
    this.maxPublicBytes = options.maxPublicBytes ?? DEFAULT_MAX_PUBLIC_BYTES
    this.public = this.sectionApi(this.publicSection, this.maxPublicBytes)
  }

  get sequence (): number { return this.seq }
  get root (): CID | null { return this.rootCid }
  get pending (): number { return this.unpublished.size }

  async init (record: Uint8Array | undefined, options: SpaceOptions): Promise<void> {
    const seen = await this.state.get(this.name)
    if (seen !== undefined) this.seq = seen.sequence
    if (record !== undefined) await this.absorb(record, options)
    if (seen !== undefined && seen.root !== '' && this.rootCid === null) {
      // The store offers nothing newer than what this device saw last time (an old record, or
      // none): start from the version this device remembers, never from an older one.
      try {
        await this.absorbVersion(CID.parse(seen.root), seen.sequence, options)
      } catch (err) {
        this.emit('error', err as Error)
      }
    }
    if (this.owner === undefined) {
      if (seen !== undefined && seen.sequence > 0) {
        // This device has seen the space before, but the store does not have it now.
        this.emit('error', new Error(`the store has no record of ${this.name}, though sequence ${seen.sequence} was seen before`))
      }
      // Taking an address back must never bind it to a space the wallet cannot open again.
      if (options.checkDeterministic === true || options.rebind === true) await this.checkDeterministic()
      await this.signBinding(options)
    } else if (options.rebind === true) {
      await this.checkDeterministic()
      await this.signBinding(options)
    }
    // Take the address back: a binding dated now replaces any older one on every hub, and a version
    // published at once (even of an empty space) carries it.
    if (options.rebind === true) this.mustRenew = true
    // Writes this device made before a crash, a reload or an offline close go out now.
    if (seen !== undefined && seen.pending.length > 0) this.restorePending(seen.pending)
    if (this.privateSection.dirty || this.publicSection.dirty || this.mustRenew) {
      this.flush().catch(() => {})
    } else {
      await this.renewIfAging(options)
    }
  }

  /** Asks the wallet for the open signature once more: a wallet that signs differently derives another space. */
  private async checkDeterministic (): Promise<void> {
    const again = await keysFromWallet(this.wallet, this.address)
    const other = nameOfKey(again.ipnsKey)
    if (other !== this.name) {
      throw new NonDeterministicSignerError(`the wallet ${this.address} signed the same message twice with different results (${this.name} ≠ ${other}): it does not sign deterministically, so it cannot keep a UserSpace`)
    }
  }

  /**
   * Asks the wallet to sign a dated (version 2) owner binding: what hubs list as the address's space,
   * newest binding first.
   */
  private async signBinding (options: SpaceOptions): Promise<void> {
    options.onProgress?.({ type: 'space:open:owner-binding' })
    const issuedAt = Math.floor(this.now())
    const statement = ownerStatement(this.address, this.name, issuedAt)
    const signature = normalizeSignature(statement, await this.wallet.signMessage(statement), this.address)
    this.owner = { address: this.address, signature: signature.bytes, issuedAt }
  }

  /** Re-applies writes kept in the state: each goes out again unless a newer entry replaced it. */
  private restorePending (entries: PendingEntry[]): void {
    const superseded: PendingEntry[] = []
    for (const e of entries) {
      const section = e.section === 'public' ? this.publicSection : this.privateSection
      this.clock.observe(e.stamp)
      const current = section.entry(e.key)
      if (current !== undefined && (sameEntry(current, e) || !winsOver(e, current))) {
        // The store already holds it (published before the state heard), or a later write won.
        superseded.push(e)
        continue
      }
      section.write(e.key, pendingEntry(e))
      this.unpublished.set(slotOf(e.section, e.key), e)
    }
    if (superseded.length > 0) this.settle(superseded)
    this.emit('pending', { count: this.unpublished.size })
  }

  // --- reads -------------------------------------------------------------------------------

  async get (key: string): Promise<Json | undefined> {
    this.assertOpen()
    return this.privateSection.get(checkKey(key))
  }

  async getAll (): Promise<Record<string, Json>> {
    this.assertOpen()
    return this.privateSection.getAll()
  }

  async keys (): Promise<string[]> {
    this.assertOpen()
    return this.privateSection.keys()
  }

  // --- writes ------------------------------------------------------------------------------

  async set (key: string, value: Json, options?: AbortOptions): Promise<void> {
    return this.writeMany(this.privateSection, this.maxSpaceBytes, [[checkKey(key), checkValue(value, this.maxValueBytes)]], options)
  }

  async remove (key: string, options?: AbortOptions): Promise<void> {
    return this.writeMany(this.privateSection, this.maxSpaceBytes, [[checkKey(key), undefined]], options)
  }

  async patch (patch: Record<string, Json>, options?: AbortOptions): Promise<void> {
    return this.applyPatch(this.privateSection, this.maxSpaceBytes, patch, options)
  }

  private sectionApi (section: Section, maxBytes: number): SectionApi {
    return {
      get: async (key) => { this.assertOpen(); return section.get(checkKey(key)) },
      getAll: async () => { this.assertOpen(); return section.getAll() },
      keys: async () => { this.assertOpen(); return section.keys() },
      set: async (key, value, options) => this.writeMany(section, maxBytes, [[checkKey(key), checkValue(value, this.maxValueBytes)]], options),
      remove: async (key, options) => this.writeMany(section, maxBytes, [[checkKey(key), undefined]], options),
      patch: async (patch, options) => this.applyPatch(section, maxBytes, patch, options)
    }
  }

  private async applyPatch (section: Section, maxBytes: number, patch: Record<string, Json>, options?: AbortOptions): Promise<void> {
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
      throw new InvalidInputError('"patch" expected a JSON object (an RFC 7396 merge patch of the whole map)')
    }
    checkValue(patch, Number.MAX_SAFE_INTEGER, 'patch')
    // A patch applies to the map as it will be once earlier writes are durable, including a batch
    // whose state write is already under way (no longer `this.batch`).
    await this.persistTail
    const writes: Array<[string, string | undefined]> = []
    for (const key of Object.keys(patch)) {
      checkKey(key)
      const change = patch[key] as Json
      if (change === null) {
        writes.push([key, undefined])
        continue
      }
      refuseUnsafeKeys(change, key)
      const next = applyMergePatch(section.get(key) ?? null, structuredClone(change)) as Json
      writes.push([key, checkValue(next, this.maxValueBytes, key)])
    }
    return this.writeMany(section, maxBytes, writes, options)
  }

  /**
   * Validates every write, makes all of them durable in the state or none, applies them, and starts
   * publishing in the background. A write that changes nothing (the same value, or removing a key
   * that is not there) is dropped, so it publishes nothing.
   */
  private async writeMany (section: Section, maxBytes: number, writes: Array<[string, string | undefined]>, options?: AbortOptions): Promise<void> {
    this.assertOpen()
    throwIfAborted(options?.signal)
    const name = section === this.publicSection ? 'public' : 'private'
    const items: PendingEntry[] = []
    let size = section.bytes
    for (const [key, json] of writes) {
      const current = this.latestEntry(name, section, key)
      if (current?.json === json) continue
      const entry: PendingEntry = { section: name, key, stamp: this.clock.next(), device: this.deviceId }
      if (json !== undefined) entry.json = json
      size += section.sizeWith(key, entry) - section.bytes
      items.push(entry)
    }
    if (size > maxBytes) {
      throw new TooLargeError(`the ${name} section would be ${size} bytes, over its ${maxBytes}-byte limit`)
    }
    if (items.length === 0) return
    await this.persist(items)
    this.flush().catch(() => {})
  }

  /** The entry a key will hold once the writes being made durable are applied. */
  private latestEntry (section: 'private' | 'public', sectionMap: Section, key: string): Entry | undefined {
    return this.unapplied.get(slotOf(section, key)) ?? sectionMap.entry(key)
  }

  /**
   * Group commit: writes that arrive while the state is being written wait for one more write of
   * the state that carries all of them; they are applied to the map in stamp order once it is done.
   */
  private async persist (items: PendingEntry[]): Promise<void> {
    if (this.batch === undefined) {
      const batch: { items: PendingEntry[], done: Promise<void> } = { items: [], done: Promise.resolve() }
      batch.done = this.persistTail.then(async () => {
        if (this.batch === batch) this.batch = undefined
        try {
          await this.state.addPending(this.name, batch.items)
        } finally {
          // Applied below, or refused: either way later writes compare against the map again.
          for (const e of batch.items) {
            const slot = slotOf(e.section, e.key)
            if (this.unapplied.get(slot) === e) this.unapplied.delete(slot)
          }
        }
        const superseded: PendingEntry[] = []
        for (const e of batch.items) {
          const section = e.section === 'public' ? this.publicSection : this.privateSection
          // A version merged while the state was being written may hold a later entry for this key.
          const current = section.entry(e.key)
          if (current !== undefined && winsOver(current, e)) { superseded.push(e); continue }
          section.write(e.key, pendingEntry(e))
          this.unpublished.set(slotOf(e.section, e.key), e)
        }
        if (superseded.length > 0) this.settle(superseded)
        this.emit('pending', { count: this.unpublished.size })
      })
      this.persistTail = batch.done.catch(() => {})
      this.batch = batch
    }
    this.batch.items.push(...items)
    for (const e of items) this.unapplied.set(slotOf(e.section, e.key), e)
    return this.batch.done
  }

  // --- publishing --------------------------------------------------------------------------

  async flush (options?: AbortOptions): Promise<void> {
    this.assertOpen()
    await this.persistTail
    if (!this.needsPublish() && this.queued === undefined) return this.tail
    if (this.queued !== undefined) return this.queued
    const run = this.tail.then(async () => {
      this.queued = undefined
      if (this.needsPublish()) await this.publish(options)
    })
    this.queued = run
    this.tail = run.then(() => { this.retryDelay = 0 }, (err: Error) => { this.scheduleRetry(err) })
    return run
  }

  private needsPublish (): boolean {
    return this.privateSection.dirty || this.publicSection.dirty || this.mustRenew
  }

  /** After a failed publish, tries again later so that offline writes go out once the store is back. */
  private scheduleRetry (err: Error): void {
    const base = this.options.retryDelayMs ?? 2000
    if (this.retryTimer !== undefined) return
    // An abort cancels one caller's wait, not the writes of others that joined the same publish.
    if (this.closed || base <= 0) {
      this.options.onProgress?.({ type: 'space:publish:error', detail: { error: err, retryInMs: null } })
      return
    }
    this.retryDelay = Math.min(this.retryDelay === 0 ? base : this.retryDelay * 2, 60_000)
    this.options.onProgress?.({ type: 'space:publish:error', detail: { error: err, retryInMs: this.retryDelay } })
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      if (!this.closed && this.needsPublish()) this.flush().catch(() => {})
    }, this.retryDelay)
    // never keep a Node process alive just to retry
    ;(this.retryTimer as { unref?: () => void }).unref?.()
  }

  /**
   * Publishes one version. Against a store that refuses stale records (`conditional`), it goes out
   * at once, built on the newest version this device knows; elsewhere it resolves first. A refusal
   * because another device published first is a race, not an error: merge what it published, try
   * again with the next sequence.
   */
  private async publish (options?: AbortOptions): Promise<void> {
    const signal = options?.signal
    for (let attempt = 1; ; attempt++) {
      if (this.store.conditional !== true || attempt > 1) {
        const latest = await this.store.getRecord(this.name, { nocache: true, signal })
        if (latest !== undefined && (this.lastRecord === undefined || !equals(latest, this.lastRecord))) {
          await this.absorb(latest, { signal })
        }
      }
      if (!this.needsPublish()) {
        // A lost race whose winner already holds everything: the newest version is published, so
        // this publish ends there (whoever showed "publishing" hears that it ended).
        if (attempt > 1 && this.rootCid !== null) this.options.onProgress?.({ type: 'space:publish:end', detail: { sequence: this.seq, root: this.rootCid } })
        return
      }
      try {
        await this.publishOnce(signal)
        return
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt >= MAX_RACE_ATTEMPTS) throw err
        this.options.onProgress?.({ type: 'space:publish:race', detail: { sequence: this.seq + 1, attempt } })
      }
    }
  }

  private async publishOnce (signal: AbortSignal | undefined): Promise<void> {
    const sequence = this.seq + 1
    this.options.onProgress?.({ type: 'space:publish:start', detail: { sequence } })
    // What each section's blocks hold is fixed when its encoding starts (synchronously): the writes
    // applied by then are the ones this version publishes.
    const included = [...this.unpublished.values()].filter(e => e.section === 'private')
    const version = await this.sealVersion(sequence, () => included.push(...[...this.unpublished.values()].filter(e => e.section === 'public')))
    const rootBlock = version.root
    const lifetimeMs = this.options.recordLifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS
    // On failure nothing is recorded as stored: the writes stay in the map, dirty, for the next publish.
    const record = await createRecord(this.derived.ipnsKey, rootBlock.cid, sequence, { lifetimeMs })
    if (this.store.publish !== undefined) {
      // One step (one request to a hub): a stale sequence leaves nothing behind.
      await this.store.publish(this.name, record, version.blocks, { signal })
    } else {
      await this.store.putBlocks(version.blocks, { signal })
      await this.store.putRecord(this.name, record, { signal })
    }
    this.lastRecord = record
    this.validUntilMs = this.now() + lifetimeMs
    version.commit()
    this.seq = sequence
    this.rootCid = rootBlock.cid
    this.heads = [rootBlock.cid]
    this.mustRenew = false
    // The store holds these writes now, whatever happens to the state write below.
    this.published(included)
    await this.state.put(this.name, { sequence, root: rootBlock.cid.toString() })
    this.options.onProgress?.({ type: 'space:publish:end', detail: { sequence, root: rootBlock.cid } })
  }

  /**
   * Seals the next version (format 2): the dirty buckets and the index nodes on their paths, the
   * public profile and clock when they changed, the current node and the root. `blocks` ends with
   * the root; `commit` records the sections' stored form once the version is published.
   * `publicIncluded` is called when the public section's content is fixed.
   */
  private async sealVersion (sequence: number, publicIncluded: () => void): Promise<{ blocks: Block[], root: Block, commit: () => void }> {
    const priv = await this.privateSection.encode()
    const pubDirty = this.publicSection.dirty
    if (pubDirty) publicIncluded()
    const pub = pubDirty ? await this.publicSection.encode() : undefined
    const profile = pub === undefined ? this.publicSection.cid : pub?.profile.cid ?? null
    const current = await encodeCurrent({
      buckets: priv.count,
      private: priv.top,
      public: profile,
      clock: pub === undefined ? this.publicSection.clockCid : pub?.clock.cid ?? null
    })
    const root = await encodeRoot({
      version: FORMAT_VERSION,
      sequence,
      parents: this.heads,
      updatedAt: this.now(),
      device: this.deviceId,
      public: profile,
      current: current.cid,
      owner: this.owner as OwnerBinding
    })
    const blocks = [...priv.blocks, ...(pub == null ? [] : [pub.profile, pub.clock]), current, root]
    return {
      blocks,
      root,
      commit: () => {
        priv.commit()
        if (pub !== undefined) this.publicSection.stored(pub)
      }
    }
  }

  /** Drops from the pending set the entries a store has now taken (or a newer entry replaced). */
  private published (entries: PendingEntry[]): void {
    const done: PendingEntry[] = []
    for (const e of entries) {
      const slot = slotOf(e.section, e.key)
      if (this.unpublished.get(slot) === e) this.unpublished.delete(slot)
      done.push(e)
    }
    if (done.length === 0) return
    this.emit('pending', { count: this.unpublished.size })
    this.settle(done)
  }

  /** Removes settled entries from the state, in the background but in order. */
  private settle (entries: PendingEntry[]): void {
    this.stateWrites = this.stateWrites.then(async () => this.state.removePending(this.name, entries)).catch((err: Error) => { this.emit('error', err) })
  }

  /**
   * After merging another version: pending entries that lost to a newer write elsewhere, or that the
   * merged version already holds (a publish whose answer was lost, another process sharing the
   * state), are settled.
   */
  private pruneSuperseded (): void {
    const done: PendingEntry[] = []
    for (const e of this.unpublished.values()) {
      const section = e.section === 'public' ? this.publicSection : this.privateSection
      const current = section.entry(e.key)
      if (current !== undefined && (!sameEntry(current, e) || section.holds(e.key))) done.push(e)
    }
    if (done.length > 0) this.published(done)
  }

  /**
   * Hubs re-announce a record without the key, but cannot extend its validity. When this device
   * opens a space whose record has used up half its lifetime, it signs the same version again with
   * a fresh validity (same sequence and value: IPNS prefers the later validity). An expired record
   * is renewed with a new version instead (see `absorb`).
   */
  private async renewIfAging (options?: AbortOptions): Promise<void> {
    const lifetime = this.options.recordLifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS
    if (this.rootCid === null || this.validUntilMs - this.now() > lifetime / 2) return
    try {
      const record = await createRecord(this.derived.ipnsKey, this.rootCid, this.seq, { lifetimeMs: lifetime })
      await this.store.putRecord(this.name, record, options)
      this.lastRecord = record
      this.validUntilMs = this.now() + lifetime
    } catch (err) {
      this.emit('error', err as Error)
    }
  }

  // --- merging -----------------------------------------------------------------------------

  /** Validates a record and merges the version it points at. */
  private async absorb (recordBytes: Uint8Array, options?: AbortOptions): Promise<void> {
    const info = await validateRecord(this.name, recordBytes, { allowExpired: true })
    const sequence = Number(info.sequence)
    if (info.cid === undefined) return
    if (sequence < this.seq) {
      this.emit('rollback', { sequence, seen: this.seq })
      return
    }
    if (info.expired) {
      // The last version its owner published: read it, and renew it with the next publish.
      this.mustRenew = true
      this.emit('expired', { validUntilMs: info.validUntilMs, sequence })
    }
    if (this.rootCid?.equals(info.cid) === true) {
      this.lastRecord = recordBytes
      this.validUntilMs = Math.max(this.validUntilMs, info.validUntilMs)
      return
    }
    await this.absorbVersion(info.cid, sequence, options)
    this.lastRecord = recordBytes
    this.validUntilMs = info.validUntilMs
  }

  /**
   * Merges a version, and on a cold open (nothing merged yet) first asks the store for its blocks in
   * one request where it can (`getDag`), rather than one request per block.
   */
  private async absorbVersion (cid: CID, sequence: number, options?: AbortOptions): Promise<void> {
    if (this.rootCid === null && this.store.getDag !== undefined) await this.prefetch(cid, options)
    try {
      await this.absorbRoot(cid, sequence, options)
    } finally {
      this.prefetched.clear()
    }
  }

  /**
   * Fills `prefetched` with the version's DAG: the root and its current state (`current`). Not the root's whole
   * DAG, which holds every earlier version through `parents`. Any failure (a store that serves no
   * paths, a lying hub) leaves reading to fetchBlock, block by block; an abort ends the open.
   */
  private async prefetch (cid: CID, options?: AbortOptions): Promise<void> {
    let blocks: Block[] = []
    try {
      blocks = await (this.store.getDag as NonNullable<Store['getDag']>)(cid, { path: CURRENT_VERSION_FIELD, signal: options?.signal })
    } catch {
      throwIfAborted(options?.signal)
    }
    // Checked here too, whatever the store did (as fetchBlock does).
    for (const block of blocks) if (await verifyBlock(block.cid, block.bytes)) this.prefetched.set(block.cid.toString(), block.bytes)
  }

  /** Merges the version at `cid` (whose record said `sequence`) into the local map. */
  private async absorbRoot (cid: CID, sequence: number, options?: AbortOptions): Promise<void> {
    if (sequence === this.seq && this.rootCid !== null) {
      this.emit('conflict', { sequence, roots: [this.rootCid.toString(), cid.toString()] })
    }
    const root = decodeRoot(await this.fetchBlock(cid, options))
    if (root.sequence !== sequence) throw new IntegrityError(`root ${cid.toString()} says sequence ${root.sequence} but its record says ${sequence}`)
    this.checkOwner(root.owner)
    const current = decodeCurrent(await this.fetchBlock(root.current, options))
    checkCurrent(root, current)
    // Both sections are read and checked before either changes.
    const pubBlocks = current.public === null || this.publicSection.isStoredAs(current.public, current.clock)
      ? undefined
      : await Promise.all([current.public, current.clock as CID].map(async c => ({ cid: c, bytes: await this.fetchBlock(c, options) })))
    if (pubBlocks !== undefined) {
      const [profile, clock] = pubBlocks as [Block, Block]
      readPublicBlocks(PublicSection.decodeProfile(profile.bytes), PublicSection.decodeClock(clock.bytes))
    }
    const priv = await this.privateSection.absorb(current.buckets, current.private, async c => this.fetchBlock(c, options))
    let pubChanged: string[] = []
    if (current.public === null) {
      this.publicSection.absorbNone()
    } else if (pubBlocks !== undefined) {
      pubChanged = this.publicSection.absorb(pubBlocks[0] as Block, pubBlocks[1] as Block).changed
    }
    this.clock.observe(Math.max(this.privateSection.maxStamp, this.publicSection.maxStamp))
    // History: when this device holds entries the remote version lacks and that version does not
    // build on ours, both are heads and the next version names both as parents.
    const ahead = this.privateSection.dirty || this.publicSection.dirty
    const builtOnOurs = this.rootCid === null || root.parents.some(p => p.equals(this.rootCid as CID))
    this.heads = ahead && !builtOnOurs ? [cid, ...this.heads.filter(h => !h.equals(cid))] : [cid]
    this.seq = Math.max(this.seq, sequence)
    this.rootCid = cid
    // The newest binding a version carries is the one to carry on (a re-binding from another device).
    if (this.owner === undefined || (root.owner.issuedAt ?? -1) > (this.owner.issuedAt ?? -1)) this.owner = root.owner
    await this.state.put(this.name, { sequence: this.seq, root: cid.toString() })
    this.pruneSuperseded()
    // Keys are listed only for a listener: an open has none yet, and would pay a walk of every bucket.
    if ((this.listeners.get('change')?.size ?? 0) > 0 && priv.changed.length > 0) this.emit('change', { section: 'private', keys: priv.changed, sequence })
    if (pubChanged.length > 0) this.emit('change', { section: 'public', keys: pubChanged, sequence })
  }

  private checkOwner (owner: OwnerBinding): void {
    if (this.owner !== undefined && equals(owner.signature, this.owner.signature) && owner.address === this.owner.address) return
    const address = verifyOwner(owner, this.name)
    if (address !== this.address) {
      throw new SignerMismatchError(`the space ${this.name} is bound to ${address}, not to ${this.address}`)
    }
  }

  async refresh (options?: AbortOptions): Promise<void> {
    this.assertOpen()
    await this.pull(options)
  }

  private async pull (options?: AbortOptions): Promise<void> {
    // Run in the write queue so a refresh never interleaves with a publish.
    const run = this.tail.then(async () => {
      const latest = await this.store.getRecord(this.name, { nocache: true, signal: options?.signal })
      if (latest !== undefined && (this.lastRecord === undefined || !equals(latest, this.lastRecord))) {
        await this.absorb(latest, options)
      }
    })
    this.tail = run.catch(() => {})
    await run
    if (this.needsPublish()) await this.flush(options)
  }

  // --- events ------------------------------------------------------------------------------

  on<E extends keyof SpaceEvents>(event: E, listener: (event: SpaceEvents[E]) => void): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) this.listeners.set(event, set = new Set())
    set.add(listener)
    return () => { set.delete(listener) }
  }

  /** @internal */
  emit<E extends keyof SpaceEvents>(event: E, detail: SpaceEvents[E]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try { listener(detail) } catch (err) { if (event !== 'error') this.emit('error', err as Error) }
    }
  }

  subscribe (listener: (event: ChangeEvent) => void): () => void {
    this.assertOpen()
    const off = this.on('change', listener)
    if (this.unsubscribe === undefined && this.store.subscribe !== undefined) {
      this.unsubscribe = this.store.subscribe(this.name, (record) => {
        if (this.closed || (this.lastRecord !== undefined && equals(record, this.lastRecord))) return
        const run = this.tail.then(async () => this.absorb(record))
        this.tail = run.catch((err: Error) => { this.emit('error', err) })
        void run.then(async () => this.needsPublish() ? this.flush() : undefined).catch(() => {})
      })
    }
    return off
  }

  // --- history -----------------------------------------------------------------------------

  async history (options?: AbortOptions & { limit?: number }): Promise<VersionInfo[]> {
    this.assertOpen()
    return listVersions(this.store, this.rootCid, options?.limit ?? 100, options)
  }

  async at (rootRef: CID | string, options?: AbortOptions): Promise<SpaceVersion> {
    this.assertOpen()
    let cid: CID
    try { cid = typeof rootRef === 'string' ? CID.parse(rootRef) : rootRef } catch { throw new InvalidInputError(`"root" expected a CID, got "${String(rootRef).slice(0, 80)}"`) }
    const root = decodeRoot(await this.fetchBlock(cid, options))
    this.checkOwner(root.owner)
    const current = decodeCurrent(await this.fetchBlock(root.current, options))
    checkCurrent(root, current)
    const priv = new PrivateSection(this.derived.dataKey, this.derived.bucketKey, this.name)
    await priv.absorb(current.buckets, current.private, async c => this.fetchBlock(c, options))
    const pub = new PublicSection()
    if (current.public !== null && current.clock !== null) {
      const [profile, clock] = await Promise.all([current.public, current.clock].map(async c => ({ cid: c, bytes: await this.fetchBlock(c, options) })))
      pub.absorb(profile as Block, clock as Block)
    }
    return {
      root: cid,
      sequence: root.sequence,
      updatedAt: root.updatedAt,
      device: root.device,
      parents: root.parents,
      get: (key) => priv.get(checkKey(key)),
      getAll: () => priv.getAll(),
      public: { get: (key) => pub.get(checkKey(key)), getAll: () => pub.getAll() }
    }
  }

  /** Fetches a block and checks it against its CID, whatever the store did. */
  private async fetchBlock (cid: CID, options?: AbortOptions): Promise<Uint8Array> {
    const prefetched = this.prefetched.get(cid.toString())
    if (prefetched !== undefined) return prefetched
    return getVerifiedBlock(this.store, cid, options)
  }

  async close (options?: AbortOptions): Promise<CloseResult> {
    if (this.closed) return { unpublished: [] }
    let failure: unknown
    try {
      await this.flush(options)
    } catch (err) {
      failure = err
    } finally {
      this.closed = true
      clearTimeout(this.retryTimer)
      this.unsubscribe?.()
    }
    // A write that started before `closed` was set lands in the state and is counted below.
    await this.persistTail
    await this.stateWrites
    const unpublished = [...this.unpublished.values()].map(e => e.section === 'public' ? `public:${e.key}` : e.key)
    this.listeners.clear()
    if (unpublished.length > 0 && !this.state.durable) {
      throw new UnpublishedWritesError(`${unpublished.length} write(s) to ${this.name} were not published and this device keeps no durable state, so they are lost: ${unpublished.slice(0, 20).join(', ')}${unpublished.length > 20 ? ', …' : ''}`, { keys: unpublished, cause: failure })
    }
    return { unpublished }
  }

  // --- scoped app access (src/apps/) ------------------------------------------------------

  async grant (app: string, options: GrantOptions): Promise<Grant> {
    const { grantApp } = await import('../apps/directory.js')
    return grantApp(this.appsContext(), app, options)
  }

  async apps (): Promise<AppInfo[]> {
    const { listApps } = await import('../apps/directory.js')
    return listApps(this.appsContext())
  }

  async revoke (app: string, options?: AbortOptions): Promise<Array<{ namespace: string, epoch: number, name: string }>> {
    const { revokeApp } = await import('../apps/directory.js')
    return revokeApp(this.appsContext(), app, options)
  }

  private appsContext (): MasterContext {
    this.assertOpen()
    if (this.derived.appsRoot === undefined) throw new InvalidInputError(`${this.name} is an app namespace: only the owner's space, opened with the wallet, grants and revokes`)
    return { space: this, store: this.store, ipnsKey: this.derived.ipnsKey, appsRoot: this.derived.appsRoot, state: this.state, options: this.options }
  }

  private assertOpen (): void {
    if (this.closed) throw new ClosedError(`the space ${this.name} is closed`)
  }
}

function slotOf (section: 'private' | 'public', key: string): string {
  return `${section}\u0000${key}`
}

/** The Entry part of a pending entry, as the sections keep it. */
function pendingEntry (e: PendingEntry): Entry {
  const entry: Entry = { stamp: e.stamp, device: e.device }
  if (e.json !== undefined) entry.json = e.json
  return entry
}

/** json-merge-patch stops at these keys (prototype-pollution guard) and would drop the rest of the patch. */
function refuseUnsafeKeys (value: Json, path: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return
  for (const k of Object.keys(value)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') {
      throw new InvalidInputError(`"${path}.${k}": merge patches cannot contain the key "${k}"`)
    }
    refuseUnsafeKeys(value[k] as Json, `${path}.${k}`)
  }
}

/**
 * The Space: a user's key-value map, opened from one wallet signature, held in memory, merged with
 * what other devices published, and written back as encrypted blocks plus a signed IPNS record.
 *
 * Writes apply to the in-memory map at once and resolve when published. Writes made while a publish
 * is in flight are coalesced into the next one, so 100 concurrent `set`s cost a couple of publishes
 * and none is lost. Before every publish the space resolves the newest record past any cache and
 * merges it in when another device moved it, then publishes with a higher sequence.
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { equals } from 'multiformats/bytes'
import { apply as applyMergePatch } from 'json-merge-patch'
import { normalizeSignature } from '../crypto/eip191.js'
import { deriveKeys, FORMAT_VERSION, OPEN_MESSAGE, ownerStatement } from '../crypto/keys.js'
import { withFastSigning } from '../crypto/ed25519.js'
import { bytesToHex, randomBytes } from './random.js'
import {
  ClosedError, IntegrityError, InvalidInputError, NonDeterministicSignerError, SignerMismatchError, TooLargeError, throwIfAborted
} from '../errors.js'
import { createRecord, DEFAULT_RECORD_LIFETIME_MS, nameOfKey, validateRecord } from '../store/record.js'
import { getVerifiedBlock } from '../store/blocks.js'
import { HybridClock } from './entries.js'
import { listVersions } from './history.js'
import type { VersionInfo } from './history.js'
import { checkKey, checkValue } from './json.js'
import { decodeRoot, encodeRoot, verifyOwner } from './root.js'
import { PrivateSection, PublicSection } from './section.js'
import type { Section } from './section.js'
import { toWallet } from './signer.js'
import type { Entry } from './entries.js'
import type { Json } from './json.js'
import type { OwnerBinding, Root } from './root.js'
import type { Signer, WalletAdapter } from './signer.js'
import type { AbortOptions, Block, Store } from '../store/interface.js'
import type { PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'

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
  /** Remembers the highest sequence seen per name across restarts (rollback protection). @default in memory */
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
  /** Wall clock for entry stamps, in milliseconds; for simulations and tests. @default Date.now */
  now?: () => number
  onProgress?: (event: ProgressEvent) => void
}

/** Where a device keeps the newest version it has seen of each space. */
export interface SpaceStateStore {
  get(name: string): Promise<SeenVersion | undefined>
  put(name: string, seen: SeenVersion): Promise<void>
}

export interface SeenVersion {
  sequence: number
  root: string
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

export interface SpaceEvents {
  change: ChangeEvent
  rollback: RollbackEvent
  conflict: ConflictEvent
  error: Error
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
  /** Resolves the newest record (past caches) and merges it; publishes if this device holds newer entries. */
  refresh(options?: AbortOptions): Promise<void>
  /** Waits for pending writes to be published. */
  flush(options?: AbortOptions): Promise<void>
  on<E extends keyof SpaceEvents>(event: E, listener: (event: SpaceEvents[E]) => void): () => void
  /** Calls `listener` on every change from another device; listens to the store's live updates. */
  subscribe(listener: (event: ChangeEvent) => void): () => void
  /** Past versions, newest first, following parent links. */
  history(options?: AbortOptions & { limit?: number }): Promise<VersionInfo[]>
  /** Reads a past version. */
  at(root: CID | string, options?: AbortOptions): Promise<SpaceVersion>
  close(): Promise<void>
}

/**
 * Opens the space of the wallet behind `signer`: one signature prompt, plus one more the first time
 * the space is created (the owner binding).
 */
export async function openSpace (options: SpaceOptions): Promise<Space> {
  const store = await resolveStore(options)
  const wallet = toWallet(options.signer)
  const address = await wallet.getAddress()
  throwIfAborted(options.signal)
  options.onProgress?.({ type: 'space:open:signature' })
  const keys = await keysFromWallet(wallet, address)
  const name = nameOfKey(keys.ipnsKey)

  const bound = await store.lookupAddress?.(address, { signal: options.signal })
  if (bound !== undefined && bound !== name) {
    throw new NonDeterministicSignerError(`the wallet ${address} already owns the space ${bound}, but this signature derives ${name}: the wallet does not sign deterministically (some hardware, MPC and smart-contract wallets), so it cannot open its UserSpace`)
  }

  const space = new DefaultSpace(store, wallet, address, name, keys, options)
  const record = await store.getRecord(name, { nocache: options.offlineFirst !== true, signal: options.signal })
  options.onProgress?.({ type: 'space:open:resolved', detail: { name, sequence: record === undefined ? null : Number((await validateRecord(name, record)).sequence) } })
  await space.init(record, options)
  if (options.offlineFirst === true) space.refresh().catch((err: Error) => { space.emit('error', err) })
  return space
}

async function resolveStore (options: SpaceOptions): Promise<Store> {
  if (options.store !== undefined) return options.store
  if (typeof options.hub === 'string') {
    const { hubStore } = await import('../store/hub.js')
    return hubStore(options.hub)
  }
  if (options.helia !== undefined) {
    const { heliaStore } = await import('../store/helia.js')
    return heliaStore(options.helia as Parameters<typeof heliaStore>[0])
  }
  throw new InvalidInputError('openSpace expected one of "store", "hub" or "helia"')
}

interface DerivedKeys {
  ipnsKey: PrivateKey
  dataKey: Uint8Array
  bucketKey: Uint8Array
}

async function keysFromWallet (wallet: WalletAdapter, address: string): Promise<DerivedKeys> {
  const signature = normalizeSignature(OPEN_MESSAGE, await wallet.signMessage(OPEN_MESSAGE), address)
  const keys = deriveKeys(signature)
  const ipnsKey = await withFastSigning(await generateKeyPairFromSeed('Ed25519', keys.ipnsSeed), keys.ipnsSeed)
  return { ipnsKey, dataKey: keys.dataKey, bucketKey: keys.bucketKey }
}

class MemoryState implements SpaceStateStore {
  private readonly seen = new Map<string, SeenVersion>()
  async get (name: string): Promise<SeenVersion | undefined> { return this.seen.get(name) }
  async put (name: string, seen: SeenVersion): Promise<void> { this.seen.set(name, seen) }
}

type Listener = (event: any) => void

class DefaultSpace implements Space {
  readonly public: SectionApi
  readonly deviceId: string
  private readonly privateSection: PrivateSection
  private readonly publicSection = new PublicSection()
  private readonly clock: HybridClock
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  private retryDelay = 0
  private readonly listeners = new Map<string, Set<Listener>>()
  private readonly state: SpaceStateStore
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
  private tail: Promise<void> = Promise.resolve()
  private queued: Promise<void> | undefined
  private closed = false
  private unsubscribe: (() => void) | undefined

  constructor (
    private readonly store: Store,
    private readonly wallet: WalletAdapter,
    readonly address: string,
    readonly name: string,
    private readonly derived: DerivedKeys,
    private readonly options: SpaceOptions
  ) {
    this.deviceId = options.deviceId ?? bytesToHex(randomBytes(8))
    this.clock = new HybridClock(options.now)
    this.privateSection = new PrivateSection(derived.dataKey, derived.bucketKey, name)
    this.state = options.state ?? new MemoryState()
    this.maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES
    this.maxSpaceBytes = options.maxSpaceBytes ?? DEFAULT_MAX_SPACE_BYTES
    this.maxPublicBytes = options.maxPublicBytes ?? DEFAULT_MAX_PUBLIC_BYTES
    this.public = this.sectionApi(this.publicSection, this.maxPublicBytes)
  }

  get sequence (): number { return this.seq }
  get root (): CID | null { return this.rootCid }

  async init (record: Uint8Array | undefined, options: SpaceOptions): Promise<void> {
    const seen = await this.state.get(this.name)
    if (seen !== undefined) this.seq = seen.sequence
    if (record !== undefined) {
      await this.absorb(record, options)
      await this.renewIfAging(options)
    }
    if (seen !== undefined && this.rootCid === null) {
      // The store offers nothing newer than what this device saw last time (an old record, or
      // none): start from the version this device remembers, never from an older one.
      try {
        await this.absorbRoot(CID.parse(seen.root), seen.sequence, options)
      } catch (err) {
        this.emit('error', err as Error)
      }
    }
    if (this.owner === undefined) {
      if (seen !== undefined && seen.sequence > 0) {
        // This device has seen the space before, but the store does not have it now.
        this.emit('error', new Error(`the store has no record of ${this.name}, though sequence ${seen.sequence} was seen before`))
      }
      if (options.checkDeterministic === true) {
        const again = await keysFromWallet(this.wallet, this.address)
        const other = nameOfKey(again.ipnsKey)
        if (other !== this.name) {
          throw new NonDeterministicSignerError(`the wallet ${this.address} signed the same message twice with different results (${this.name} ≠ ${other}): it does not sign deterministically, so it cannot keep a UserSpace`)
        }
      }
      options.onProgress?.({ type: 'space:open:owner-binding' })
      const statement = ownerStatement(this.address, this.name)
      const signature = normalizeSignature(statement, await this.wallet.signMessage(statement), this.address)
      this.owner = { address: this.address, signature: signature.bytes }
    }
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
    const writes: Array<[string, string | undefined]> = []
    for (const key of Object.keys(patch)) {
      checkKey(key)
      const change = patch[key] as Json
      if (change === null) {
        if (section.has(key)) writes.push([key, undefined])
        continue
      }
      refuseUnsafeKeys(change, key)
      const next = applyMergePatch(section.get(key) ?? null, structuredClone(change)) as Json
      writes.push([key, checkValue(next, this.maxValueBytes, key)])
    }
    return this.writeMany(section, maxBytes, writes, options)
  }

  /** Validates every write, applies all of them or none, then publishes. */
  private async writeMany (section: Section, maxBytes: number, writes: Array<[string, string | undefined]>, options?: AbortOptions): Promise<void> {
    this.assertOpen()
    throwIfAborted(options?.signal)
    const entries: Array<[string, Entry]> = []
    let size = section.bytes
    for (const [key, json] of writes) {
      const entry: Entry = { stamp: this.clock.next(), device: this.deviceId }
      if (json !== undefined) entry.json = json
      size += section.sizeWith(key, entry) - section.bytes
      entries.push([key, entry])
    }
    if (size > maxBytes) {
      throw new TooLargeError(`the ${section === this.publicSection ? 'public' : 'private'} section would be ${size} bytes, over its ${maxBytes}-byte limit`)
    }
    if (entries.length === 0) return
    for (const [key, entry] of entries) section.write(key, entry)
    return this.flush(options)
  }

  // --- publishing --------------------------------------------------------------------------

  async flush (options?: AbortOptions): Promise<void> {
    this.assertOpen()
    if (!this.privateSection.dirty && !this.publicSection.dirty && this.queued === undefined) return this.tail
    if (this.queued !== undefined) return this.queued
    const run = this.tail.then(async () => {
      this.queued = undefined
      if (this.privateSection.dirty || this.publicSection.dirty) await this.publish(options)
    })
    this.queued = run
    this.tail = run.then(() => { this.retryDelay = 0 }, (err: Error) => { this.scheduleRetry(err) })
    return run
  }

  /** After a failed publish, tries again later so that offline writes go out once the store is back. */
  private scheduleRetry (err: Error): void {
    const base = this.options.retryDelayMs ?? 2000
    if (this.retryTimer !== undefined) return
    if (this.closed || base <= 0 || err.name === 'AbortedError') {
      this.options.onProgress?.({ type: 'space:publish:error', detail: { error: err, retryInMs: null } })
      return
    }
    this.retryDelay = Math.min(this.retryDelay === 0 ? base : this.retryDelay * 2, 60_000)
    this.options.onProgress?.({ type: 'space:publish:error', detail: { error: err, retryInMs: this.retryDelay } })
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      if (!this.closed && (this.privateSection.dirty || this.publicSection.dirty)) this.flush().catch(() => {})
    }, this.retryDelay)
    // never keep a Node process alive just to retry
    ;(this.retryTimer as { unref?: () => void }).unref?.()
  }

  private async publish (options?: AbortOptions): Promise<void> {
    const signal = options?.signal
    // Resolve past caches; merge another device's newer version before building on it.
    const latest = await this.store.getRecord(this.name, { nocache: true, signal })
    if (latest !== undefined && (this.lastRecord === undefined || !equals(latest, this.lastRecord))) {
      await this.absorb(latest, { signal })
    }
    if (!this.privateSection.dirty && !this.publicSection.dirty) return

    const sequence = this.seq + 1
    this.options.onProgress?.({ type: 'space:publish:start', detail: { sequence } })
    const privateBlocks = await this.privateSection.encode()
    const publicBlock = this.publicSection.dirty ? await this.publicSection.encode() : undefined
    const root: Root = {
      version: FORMAT_VERSION,
      sequence,
      parents: this.heads,
      updatedAt: Date.now(),
      device: this.deviceId,
      public: publicBlock === undefined ? this.publicSection.cid : publicBlock?.cid ?? null,
      private: [],
      owner: this.owner as OwnerBinding
    }
    // The root names every bucket: the ones sealed now and the unchanged ones.
    const previousCids = this.privateSection.cids
    privateBlocks.commit()
    root.private = this.privateSection.cids
    const rootBlock = await encodeRoot(root)
    const blocks: Block[] = [...privateBlocks.blocks]
    if (publicBlock != null) blocks.push(publicBlock)
    blocks.push(rootBlock)
    try {
      await this.store.putBlocks(blocks, { signal })
      const record = await createRecord(this.derived.ipnsKey, rootBlock.cid, sequence, { lifetimeMs: this.options.recordLifetimeMs })
      await this.store.putRecord(this.name, record, { signal })
      this.lastRecord = record
      this.validUntilMs = Date.now() + (this.options.recordLifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS)
    } catch (err) {
      // Keep the writes: they stay in the map, marked dirty, and go out with the next publish.
      this.privateSection.cids = previousCids
      this.privateSection.markAllDirty()
      if (publicBlock !== undefined) this.publicSection.markChanged()
      throw err
    }
    if (publicBlock !== undefined) this.publicSection.stored(publicBlock?.cid ?? null)
    this.seq = sequence
    this.rootCid = rootBlock.cid
    this.heads = [rootBlock.cid]
    await this.state.put(this.name, { sequence, root: rootBlock.cid.toString() })
    this.options.onProgress?.({ type: 'space:publish:end', detail: { sequence, root: rootBlock.cid } })
  }

  /**
   * Hubs re-announce a record without the key, but cannot extend its validity. When this device
   * opens a space whose record has used up half its lifetime, it signs the same version again with
   * a fresh validity (same sequence and value: IPNS prefers the later validity).
   */
  private async renewIfAging (options?: AbortOptions): Promise<void> {
    const lifetime = this.options.recordLifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS
    if (this.rootCid === null || this.validUntilMs - Date.now() > lifetime / 2) return
    try {
      const record = await createRecord(this.derived.ipnsKey, this.rootCid, this.seq, { lifetimeMs: lifetime })
      await this.store.putRecord(this.name, record, options)
      this.lastRecord = record
      this.validUntilMs = Date.now() + lifetime
    } catch (err) {
      this.emit('error', err as Error)
    }
  }

  // --- merging -----------------------------------------------------------------------------

  /** Validates a record and merges the version it points at. */
  private async absorb (recordBytes: Uint8Array, options?: AbortOptions): Promise<void> {
    const info = await validateRecord(this.name, recordBytes)
    const sequence = Number(info.sequence)
    if (info.cid === undefined) return
    if (sequence < this.seq) {
      this.emit('rollback', { sequence, seen: this.seq })
      return
    }
    if (this.rootCid?.equals(info.cid) === true) {
      this.lastRecord = recordBytes
      this.validUntilMs = Math.max(this.validUntilMs, info.validUntilMs)
      return
    }
    await this.absorbRoot(info.cid, sequence, options)
    this.lastRecord = recordBytes
    this.validUntilMs = info.validUntilMs
  }

  /** Merges the version at `cid` (whose record said `sequence`) into the local map. */
  private async absorbRoot (cid: CID, sequence: number, options?: AbortOptions): Promise<void> {
    if (sequence === this.seq && this.rootCid !== null) {
      this.emit('conflict', { sequence, roots: [this.rootCid.toString(), cid.toString()] })
    }
    const root = decodeRoot(await this.fetchBlock(cid, options))
    if (root.sequence !== sequence) throw new IntegrityError(`root ${cid.toString()} says sequence ${root.sequence} but its record says ${sequence}`)
    this.checkOwner(root.owner)
    const priv = await this.privateSection.absorb(root.private, async cid => this.privateSection.decrypt(await this.fetchBlock(cid, options)))
    let pubChanged: string[] = []
    if (root.public === null) {
      this.publicSection.cid = null
      if (this.publicSection.size > 0) this.publicSection.markChanged()
    } else if (this.publicSection.cid?.equals(root.public) !== true) {
      const pub = this.publicSection.absorb(PublicSection.decode(await this.fetchBlock(root.public, options)))
      this.publicSection.cid = root.public
      pubChanged = pub.changed
    }
    this.clock.observe(Math.max(this.privateSection.maxStamp, this.publicSection.maxStamp))
    // History: when this device holds entries the remote version lacks and that version does not
    // build on ours, both are heads and the next version names both as parents.
    const ahead = this.privateSection.dirty || this.publicSection.dirty
    const builtOnOurs = this.rootCid === null || root.parents.some(p => p.equals(this.rootCid as CID))
    this.heads = ahead && !builtOnOurs ? [cid, ...this.heads.filter(h => !h.equals(cid))] : [cid]
    this.seq = Math.max(this.seq, sequence)
    this.rootCid = cid
    this.owner ??= root.owner
    await this.state.put(this.name, { sequence: this.seq, root: cid.toString() })
    if (priv.changed.length > 0) this.emit('change', { section: 'private', keys: priv.changed, sequence })
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
    if (this.privateSection.dirty || this.publicSection.dirty) await this.flush(options)
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
        void run.then(async () => (this.privateSection.dirty || this.publicSection.dirty) ? this.flush() : undefined).catch(() => {})
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
    const priv = new PrivateSection(this.derived.dataKey, this.derived.bucketKey, this.name)
    await priv.absorb(root.private, async c => priv.decrypt(await this.fetchBlock(c, options)))
    const pub = new PublicSection()
    if (root.public !== null) pub.absorb(PublicSection.decode(await this.fetchBlock(root.public, options)))
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
    return getVerifiedBlock(this.store, cid, options)
  }

  async close (): Promise<void> {
    if (this.closed) return
    try { await this.tail } finally {
      this.closed = true
      clearTimeout(this.retryTimer)
      this.unsubscribe?.()
      this.listeners.clear()
    }
  }

  private assertOpen (): void {
    if (this.closed) throw new ClosedError(`the space ${this.name} is closed`)
  }
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

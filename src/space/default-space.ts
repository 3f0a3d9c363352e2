/**
 * The Space: a user's key-value map, opened from one wallet signature, held in memory, merged with
 * what other devices published, and written back as encrypted blocks plus a signed IPNS record.
 *
 * A write resolves once it is durable on the device: it is added to the device's state (IndexedDB in
 * browsers, a file in Node) and applied to the map; publishing follows in the background, from that
 * state, and survives reloads, crashes and `close()`. `flush()` waits for the network.
 *
 * This class wires the parts together and holds the public verbs; each part has one job:
 * `writer.ts` (durable local writes and what is still unpublished), `publisher.ts` (the publish
 * queue, races and retries), `merger.ts` (records and versions from elsewhere), `renewer.ts` (record
 * renewal), `binding.ts` (the owner binding), `version.ts` (reading a past version), `emitter.ts`
 * (events); `context.ts` is what they share.
 */
import { systemClock } from '../clock.js'
import { equals } from 'multiformats/bytes'
import { CID } from 'multiformats/cid'
import { InvalidInputError, UnpublishedWritesError } from '../errors.js'
import { noopLogger } from '../logger.js'
import { checkDeterministic, signBinding } from './binding.js'
import { assertOpen, needsPublish } from './context.js'
import { SpaceEmitter } from './emitter.js'
import { HybridClock } from './entries.js'
import { listVersions } from './history.js'
import { checkKey } from './json.js'
import { Merger } from './merger.js'
import { Publisher } from './publisher.js'
import { bytesToHex, randomBytes } from './random.js'
import { renewIfAging } from './renewer.js'
import { PrivateSection, PublicSection } from './section.js'
import { readVersion } from './version.js'
import { Writer } from './writer.js'
import { sealedState } from './sealed-state.js'
import type { SpaceContext } from './context.js'
import type { VersionInfo } from './history.js'
import type { Json } from './json.js'
import type { Section } from './section.js'
import type { WalletAdapter } from './signer.js'
import type { SpaceStateStore } from './state.js'
import type { ChangeEvent, CloseResult, SectionApi, Space, SpaceEvents, SpaceOptions, SpaceVersion } from './types.js'
import type { DerivedKeys } from './wallet-keys.js'
import type { AbortOptions, Store } from '../store/interface.js'
import type { AppInfo, GrantOptions, MasterContext } from '../apps/directory.js'
import type { Grant } from '../apps/grant.js'

export class DefaultSpace implements Space {
  readonly public: SectionApi
  readonly deviceId: string
  private readonly ctx: SpaceContext
  private readonly writer: Writer
  private readonly merger: Merger
  private readonly publisher: Publisher
  private unsubscribe: (() => void) | undefined

  constructor (
    private readonly store: Store,
    wallet: WalletAdapter,
    readonly address: string,
    readonly name: string,
    private readonly derived: DerivedKeys,
    private readonly state: SpaceStateStore,
    private readonly options: SpaceOptions
  ) {
    this.deviceId = options.deviceId ?? bytesToHex(randomBytes(8))
    const now = options.now ?? systemClock
    this.ctx = {
      store,
      wallet,
      address,
      name,
      derived,
      // kept on the device past this process: its pending writes are sealed there (sealed-state.ts)
      // (an entry that cannot be opened is logged at once, and its `error` event comes once the
      // space is open: nobody can listen while it opens)
      state: state.durable ? sealedState(state, derived.dataKey, (err) => { this.ctx.log.error('%s', err.message); this.reportOnceOpen(err) }) : state,
      options,
      deviceId: this.deviceId,
      now,
      clock: new HybridClock(now),
      privateSection: new PrivateSection(derived.dataKey, derived.bucketKey, name),
      publicSection: new PublicSection(),
      events: new SpaceEmitter(),
      log: (options.logger ?? noopLogger()).forComponent('userspace:space'),
      head: { owner: undefined, seq: 0, rootCid: null, heads: [], lastRecord: undefined, validUntilMs: 0, mustRenew: false, closed: false }
    }
    this.writer = new Writer(this.ctx, () => { this.flush().catch(() => {}) })
    this.merger = new Merger(this.ctx, this.writer)
    this.publisher = new Publisher(this.ctx, this.merger, this.writer)
    this.public = this.sectionApi('public', this.ctx.publicSection)
  }

  /** Errors met while the space opens, for listeners added once `openSpace` has returned it. */
  private openErrors: Error[] | undefined = []

  private reportOnceOpen (err: Error): void {
    if (this.openErrors !== undefined) this.openErrors.push(err)
    else this.ctx.events.emit('error', err)
  }

  get sequence (): number { return this.ctx.head.seq }
  get root (): CID | null { return this.ctx.head.rootCid }
  get pending (): number { return this.writer.unpublished.size }

  async init (record: Uint8Array | undefined, options: SpaceOptions): Promise<void> {
    const { head } = this.ctx
    const seen = await this.ctx.state.get(this.name)
    if (seen !== undefined) head.seq = seen.sequence
    if (record !== undefined) await this.merger.absorb(record, options)
    if (seen !== undefined && seen.root !== '' && head.rootCid === null) {
      // The store offers nothing newer than what this device saw last time (an old record, or
      // none): start from the version this device remembers, never from an older one.
      try {
        await this.merger.absorbVersion(CID.parse(seen.root), seen.sequence, options)
      } catch (err) {
        this.emit('error', err as Error)
      }
    }
    if (head.owner === undefined) {
      if (seen !== undefined && seen.sequence > 0) {
        // This device has seen the space before, but the store does not have it now.
        this.emit('error', new Error(`the store has no record of ${this.name}, though sequence ${seen.sequence} was seen before`))
      }
      // Taking an address back must never bind it to a space the wallet cannot open again.
      if (options.checkDeterministic === true || options.rebind === true) await checkDeterministic(this.ctx)
      await signBinding(this.ctx, options)
    } else if (options.rebind === true) {
      await checkDeterministic(this.ctx)
      await signBinding(this.ctx, options)
    }
    // Take the address back: a binding dated now replaces any older one on every hub, and a version
    // published at once (even of an empty space) carries it.
    if (options.rebind === true) head.mustRenew = true
    // Writes this device made before a crash, a reload or an offline close go out now.
    if (seen !== undefined && seen.pending.length > 0) this.writer.restore(seen.pending)
    if (needsPublish(this.ctx)) {
      this.flush().catch(() => {})
    } else {
      await renewIfAging(this.ctx, options)
    }
    // a turn later: after `openSpace` has returned the space to its caller
    const met = this.openErrors ?? []
    this.openErrors = undefined
    if (met.length > 0) setTimeout(() => { for (const err of met) this.ctx.events.emit('error', err) }, 0)
  }

  // --- reads -------------------------------------------------------------------------------

  async get (key: string): Promise<Json | undefined> {
    this.assertOpen()
    return this.ctx.privateSection.get(checkKey(key))
  }

  async getAll (): Promise<Record<string, Json>> {
    this.assertOpen()
    return this.ctx.privateSection.getAll()
  }

  async keys (): Promise<string[]> {
    this.assertOpen()
    return this.ctx.privateSection.keys()
  }

  // --- writes ------------------------------------------------------------------------------

  async set (key: string, value: Json, options?: AbortOptions): Promise<void> {
    return this.writer.set('private', key, value, options)
  }

  async remove (key: string, options?: AbortOptions): Promise<void> {
    return this.writer.remove('private', key, options)
  }

  async patch (patch: Record<string, Json>, options?: AbortOptions): Promise<void> {
    return this.writer.patch('private', patch, options)
  }

  private sectionApi (name: 'private' | 'public', section: Section): SectionApi {
    return {
      get: async (key) => { this.assertOpen(); return section.get(checkKey(key)) },
      getAll: async () => { this.assertOpen(); return section.getAll() },
      keys: async () => { this.assertOpen(); return section.keys() },
      set: async (key, value, options) => this.writer.set(name, key, value, options),
      remove: async (key, options) => this.writer.remove(name, key, options),
      patch: async (patch, options) => this.writer.patch(name, patch, options)
    }
  }

  // --- publishing and merging --------------------------------------------------------------

  async flush (options?: AbortOptions): Promise<void> {
    return this.publisher.flush(options)
  }

  async refresh (options?: AbortOptions): Promise<void> {
    this.assertOpen()
    // Run in the publish queue so a refresh never interleaves with a publish.
    await this.publisher.enqueue(async () => {
      const { head } = this.ctx
      const latest = await this.store.getRecord(this.name, { nocache: true, signal: options?.signal })
      if (latest !== undefined && (head.lastRecord === undefined || !equals(latest, head.lastRecord))) {
        await this.merger.absorb(latest, options)
      }
    })
    if (needsPublish(this.ctx)) await this.flush(options)
  }

  // --- events ------------------------------------------------------------------------------

  on<E extends keyof SpaceEvents>(event: E, listener: (event: SpaceEvents[E]) => void): () => void {
    return this.ctx.events.on(event, listener)
  }

  /** @internal */
  emit<E extends keyof SpaceEvents>(event: E, detail: SpaceEvents[E]): void {
    this.ctx.events.emit(event, detail)
  }

  subscribe (listener: (event: ChangeEvent) => void): () => void {
    this.assertOpen()
    const off = this.on('change', listener)
    if (this.unsubscribe === undefined && this.store.subscribe !== undefined) {
      this.unsubscribe = this.store.subscribe(this.name, (record) => {
        const { head } = this.ctx
        if (head.closed || (head.lastRecord !== undefined && equals(record, head.lastRecord))) return
        const run = this.publisher.enqueue(async () => this.merger.absorb(record))
        void run.then(async () => needsPublish(this.ctx) ? this.flush() : undefined, (err: Error) => { this.emit('error', err) }).catch(() => {})
      })
    }
    return off
  }

  // --- history -----------------------------------------------------------------------------

  async history (options?: AbortOptions & { limit?: number }): Promise<VersionInfo[]> {
    this.assertOpen()
    return listVersions(this.store, this.ctx.head.rootCid, options?.limit ?? 100, options)
  }

  async at (rootRef: CID | string, options?: AbortOptions): Promise<SpaceVersion> {
    this.assertOpen()
    return readVersion(this.ctx, this.merger, rootRef, options)
  }

  async close (options?: AbortOptions): Promise<CloseResult> {
    const { head } = this.ctx
    if (head.closed) return { unpublished: [] }
    let failure: unknown
    try {
      await this.flush(options)
    } catch (err) {
      failure = err
    } finally {
      head.closed = true
      this.publisher.stop()
      this.unsubscribe?.()
    }
    // A write that started before `closed` was set lands in the state and is counted below.
    await this.writer.idle()
    const unpublished = [...this.writer.unpublished.values()].map(e => e.section === 'public' ? `public:${e.key}` : e.key)
    this.ctx.events.clear()
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
    assertOpen(this.ctx)
  }
}

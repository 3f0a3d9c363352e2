/**
 * Publishing: seal the next version from the map (encrypted buckets, public profile, root), sign its
 * IPNS record, and hand both to the store. Publishes run one at a time in a queue that refreshes and
 * live merges share; writes made while one is in flight are coalesced into the next. Against a store
 * that refuses stale records (`conditional`) a publish goes out at once against the newest sequence
 * this device knows; a refusal because another device published first is a race, not an error: merge
 * what it published and try again. A failed publish is retried later, the delay doubling.
 */
import { equals } from 'multiformats/bytes'
import { FORMAT_VERSION } from '../crypto/keys.js'
import { ConflictError } from '../errors.js'
import { cidString } from '../store/blocks.js'
import { createRecord, DEFAULT_RECORD_LIFETIME_MS } from '../store/record.js'
import { assertOpen, needsPublish } from './context.js'
import { encodeCurrent, encodeOwner, encodeRoot } from './root.js'
import type { SpaceContext } from './context.js'
import type { Merger } from './merger.js'
import type { OwnerBinding } from './root.js'
import type { Writer } from './writer.js'
import type { AbortOptions, Block } from '../store/interface.js'
import type { PendingEntry } from './state.js'
import type { CID } from 'multiformats/cid'

/**
 * Versions a store has accepted and not yet settled, at most: the next waits for the oldest to
 * settle. Two lets a version go out while the one before is in its check, and coalesces a burst of
 * writes into fewer versions than one per write.
 */
const MAX_UNSETTLED = 2
/** How many times a publish that lost a race merges and tries again before it waits for the retry timer. */
const MAX_RACE_ATTEMPTS = 8
/** The first retry delay when `retryDelayMs` is not given. @default 2 s */
const DEFAULT_RETRY_DELAY_MS = 2000
/** The retry delay stops doubling here. */
const MAX_RETRY_DELAY_MS = 60_000

export class Publisher {
  private tail: Promise<void> = Promise.resolve()
  /**
   * The versions a store accepted and has not settled yet (see PublishOptions.onAccepted), settled
   * one after another in the order they were published. Never rejects.
   */
  private settling: Promise<void> = Promise.resolve()
  /** The links of `settling` not yet settled and their versions' sequences, oldest first. */
  private readonly unsettled: Array<{ link: Promise<void>, sequence: number }> = []
  /** Versions refused after they were accepted, since the space opened; and in a row. */
  private lateRefusals = 0
  private lateInARow = 0
  /** The last late refusal other than a conflict, and the count of late refusals it made. */
  private lateFailure: { err: Error, count: number } | undefined
  /** A version settled without writing the state (a later one was out): recorded by the next write. */
  private unrecorded: { sequence: number, root: string } | undefined
  private queued: Promise<void> | undefined
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  private retryDelay = 0

  /** The owner binding's block, encoded once per binding. */
  private ownerBlock: { owner: OwnerBinding, block: Block } | undefined

  constructor (private readonly ctx: SpaceContext, private readonly merger: Merger, private readonly writer: Writer) {}

  /**
   * Publishes what is pending and resolves once the store has settled every version published so
   * far (a helia store's network check included). A version the store refused after accepting it
   * leaves its writes pending: they are merged with the record that won and published again, and
   * flush waits for that too.
   */
  async flush (options?: AbortOptions): Promise<void> {
    assertOpen(this.ctx)
    await this.writer.durable()
    const refusedBefore = this.lateRefusals
    for (;;) {
      const refusals = this.lateRefusals
      await this.publishPending(options)
      // Every version published so far, this one's included, settles in this chain's order.
      await this.settling
      if (this.lateRefusals === refusals) return
      // A version was refused after it was accepted: its writes go out again (a conflict, merged
      // with the record that won) or wait for the retry timer (any other failure, reported here).
      const failure = this.lateFailure
      if (failure !== undefined && failure.count > refusals) throw failure.err
      if (this.lateRefusals - refusedBefore >= MAX_RACE_ATTEMPTS) throw new ConflictError(`${this.ctx.name}: the store refused ${this.lateRefusals - refusedBefore} versions after accepting them; the writes stay pending`)
    }
  }

  /** Publishes what is pending; joins the publish already queued, if any. */
  private async publishPending (options?: AbortOptions): Promise<void> {
    if (!needsPublish(this.ctx) && this.queued === undefined) return this.tail
    if (this.queued !== undefined) return this.queued
    const run = this.tail.then(async () => {
      this.queued = undefined
      if (!needsPublish(this.ctx)) return
      while (this.unsettled.length >= MAX_UNSETTLED) await this.unsettled[0]?.link
      if (needsPublish(this.ctx)) await this.publish(options)
    })
    this.queued = run
    this.tail = run.then(() => { this.retryDelay = 0 }, (err: Error) => { this.scheduleRetry(err) })
    return run
  }

  /**
   * Runs `task` in the publish queue, so that a merge never interleaves with a publish. The returned
   * promise carries the task's failure; the queue goes on either way.
   */
  enqueue (task: () => Promise<void>): Promise<void> {
    const run = this.tail.then(task)
    this.tail = run.catch(() => {})
    return run
  }

  /** Stops retrying (on close). */
  stop (): void {
    clearTimeout(this.retryTimer)
  }

  /** After a failed publish, tries again later so that offline writes go out once the store is back. */
  private scheduleRetry (err: Error): void {
    const { options } = this.ctx
    const base = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS
    if (this.retryTimer !== undefined) return
    // An abort cancels one caller's wait, not the writes of others that joined the same publish.
    if (this.ctx.head.closed || base <= 0) {
      this.ctx.log.error('publish of %s failed, not retried: %s', this.ctx.name, err.message)
      options.onProgress?.({ type: 'space:publish:error', detail: { error: err, retryInMs: null } })
      return
    }
    this.retryDelay = Math.min(this.retryDelay === 0 ? base : this.retryDelay * 2, MAX_RETRY_DELAY_MS)
    this.ctx.log.error('publish of %s failed, retrying in %d ms: %s', this.ctx.name, this.retryDelay, err.message)
    options.onProgress?.({ type: 'space:publish:error', detail: { error: err, retryInMs: this.retryDelay } })
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      if (!this.ctx.head.closed && needsPublish(this.ctx)) this.flush().catch(() => {})
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
    const { store, head } = this.ctx
    const signal = options?.signal
    for (let attempt = 1; ; attempt++) {
      if (store.conditional !== true || attempt > 1) {
        const latest = await store.getRecord(this.ctx.name, { nocache: true, signal })
        if (latest !== undefined && (head.lastRecord === undefined || !equals(latest, head.lastRecord))) {
          await this.merger.absorb(latest, { signal })
        }
      }
      if (!needsPublish(this.ctx)) {
        // A lost race whose winner already holds everything: the newest version is published, so
        // this publish ends there (whoever showed "publishing" hears that it ended).
        if (attempt > 1 && head.rootCid !== null) this.ctx.options.onProgress?.({ type: 'space:publish:end', detail: { sequence: head.seq, root: head.rootCid } })
        return
      }
      try {
        await this.publishOnce(signal)
        return
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt >= MAX_RACE_ATTEMPTS) throw err
        this.ctx.log.trace('publish of %s #%d lost a race (attempt %d): merging and trying again', this.ctx.name, head.seq + 1, attempt)
        this.ctx.options.onProgress?.({ type: 'space:publish:race', detail: { sequence: head.seq + 1, attempt } })
      }
    }
  }

  private async publishOnce (signal: AbortSignal | undefined): Promise<void> {
    const { store, head, options } = this.ctx
    const sequence = head.seq + 1
    options.onProgress?.({ type: 'space:publish:start', detail: { sequence } })
    // What each section's blocks hold is fixed when its encoding starts (synchronously): the writes
    // applied by then are the ones this version publishes.
    const unpublished = this.writer.unpublished
    const included = [...unpublished.values()].filter(e => e.section === 'private')
    const version = await this.sealVersion(sequence, () => included.push(...[...unpublished.values()].filter(e => e.section === 'public')))
    const rootBlock = version.root
    const lifetimeMs = options.recordLifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS
    // On failure nothing is recorded as stored: the writes stay in the map, dirty, for the next publish.
    const record = await createRecord(this.ctx.derived.ipnsKey, rootBlock.cid, sequence, { lifetimeMs, nowMs: this.ctx.now })
    // Settles with the store's answer; `undefined` when the store accepted the version and checks
    // the network after (a helia node): the next version may then go out before that check ends.
    let outcome: Promise<void> | undefined
    if (store.publish !== undefined) {
      // One step (one request to a hub): a stale sequence refused at once leaves nothing behind
      // (one refused after acceptance keeps its blocks: later versions may build on them).
      let accepted!: () => void
      const early = new Promise<void>(resolve => { accepted = resolve })
      let answered = false
      const answer = store.publish(this.ctx.name, record, version.blocks, { signal, onAccepted: accepted })
      const ended = answer.then(() => { answered = true })
      await Promise.race([ended, early])
      if (!answered) outcome = answer
    } else {
      await store.putBlocks(version.blocks, { signal })
      await store.putRecord(this.ctx.name, record, { signal })
    }
    head.lastRecord = record
    head.validUntilMs = this.ctx.now() + lifetimeMs
    version.commit()
    head.seq = sequence
    head.rootCid = rootBlock.cid
    head.heads = [rootBlock.cid]
    head.mustRenew = false
    head.ownRoots = [...(head.ownRoots ?? []).slice(-(MAX_UNSETTLED + 2)), rootBlock.cid]
    if (outcome === undefined) {
      await this.settle(included, sequence, rootBlock.cid)
      return
    }
    // Accepted, not settled: the writes stay pending (in the state too) until the store's answer.
    const answer = outcome
    const run = this.settling.then(async () => {
      try {
        await answer
      } catch (err) {
        await this.refusedLate(err as Error, included, sequence)
        return
      }
      this.lateInARow = 0
      await this.settle(included, sequence, rootBlock.cid, this.unsettled.length > 1)
    })
    const link = run.catch((err: Error) => { this.ctx.events.emit('error', err) })
    this.settling = link
    const entry = { link, sequence }
    this.unsettled.push(entry)
    head.unsettledFrom = this.unsettled[0]?.sequence
    void link.then(() => {
      this.unsettled.splice(this.unsettled.indexOf(entry), 1)
      head.unsettledFrom = this.unsettled[0]?.sequence
    })
  }

  /** A version the store holds: its writes leave the pending set and the state records it. */
  private async settle (included: PendingEntry[], sequence: number, root: CID, later = false): Promise<void> {
    if (later) {
      // A later version is out already: the next state write (its settling, or the retry of its
      // writes if it is refused) removes these writes and records this version.
      await this.writer.published(included, { later: true })
      this.unrecorded = { sequence, root: cidString(root) }
    } else {
      // The store holds these writes now, whatever happens to the state write below. Removing them
      // from the state and recording the version are started together, so that a state store with
      // group commit (fileState) makes them one write, and done before the publish ends, so that a
      // `set` right after `flush()` finds no state write of this publish ahead of its own.
      this.unrecorded = undefined
      const settled = this.writer.published(included)
      await this.ctx.state.put(this.ctx.name, { sequence, root: cidString(root) })
      await settled
    }
    this.ctx.log.trace('published %s #%d (%s), %d write(s)', this.ctx.name, sequence, root, included.length)
    this.ctx.options.onProgress?.({ type: 'space:publish:end', detail: { sequence, root } })
  }

  /**
   * A version the store accepted, then refused (another record won at the DHT, or reached the node
   * first): its writes are still pending and go out again, merged with the record that won. That
   * record may be lower than versions this device published since (built on the refused one): it
   * is merged beside them, never adopted as the head.
   */
  private async refusedLate (err: Error, included: PendingEntry[], sequence: number): Promise<void> {
    const { store, name, head } = this.ctx
    this.ctx.log.trace('the store refused %s #%d after accepting it: %s', name, sequence, err.message)
    this.lateRefusals++
    this.lateInARow++
    this.writer.republish(included)
    // A version settled just before this one, without its own state write, is recorded now.
    const unrecorded = this.unrecorded
    this.unrecorded = undefined
    if (unrecorded !== undefined) await this.ctx.state.put(name, unrecorded).catch((e: Error) => { this.ctx.events.emit('error', e) })
    if (head.closed) return
    if (!(err instanceof ConflictError)) {
      // The store failed (a full disk, say): the writes wait for the retry timer, as after any
      // failed publish, and the flush under way reports it.
      this.lateFailure = { err, count: this.lateRefusals }
      this.scheduleRetry(err)
      return
    }
    this.ctx.options.onProgress?.({ type: 'space:publish:race', detail: { sequence, attempt: this.lateInARow } })
    const winner = err.record ?? await store.getRecord(name, { nocache: true }).catch(() => undefined)
    // Queued, not awaited: the publish queue may be waiting for this version to settle.
    if (winner !== undefined) this.enqueue(async () => { if (!head.closed) await this.merger.absorb(winner, undefined, true) }).catch((e: Error) => { this.ctx.events.emit('error', e) })
    // Published again from the queue (a flush under way waits for it), unless refusals keep coming.
    if (this.lateInARow < MAX_RACE_ATTEMPTS) this.publishPending().catch(() => {})
    else this.scheduleRetry(err)
  }

  /**
   * Seals the next version (format 2): the dirty buckets and the index nodes on their paths, the
   * public profile and clock when they changed, the owner binding, the current node and the root. `blocks` ends with
   * the root; `commit` records the sections' stored form once the version is published.
   * `publicIncluded` is called when the public section's content is fixed.
   */
  private async sealVersion (sequence: number, publicIncluded: () => void): Promise<{ blocks: Block[], root: Block, commit: () => void }> {
    const { privateSection, publicSection, head } = this.ctx
    const priv = await privateSection.encode()
    const pubDirty = publicSection.dirty
    if (pubDirty) publicIncluded()
    const pub = pubDirty ? await publicSection.encode() : undefined
    const profile = pub === undefined ? publicSection.cid : pub?.profile.cid ?? null
    const owner = head.owner as OwnerBinding
    if (this.ownerBlock?.owner !== owner) this.ownerBlock = { owner, block: await encodeOwner(owner) }
    const ownerBlock = this.ownerBlock.block
    const current = await encodeCurrent({
      buckets: priv.count,
      private: priv.top,
      totals: priv.totals,
      public: profile,
      clock: pub === undefined ? publicSection.clockCid : pub?.clock.cid ?? null,
      owner: ownerBlock.cid
    })
    const root = await encodeRoot({
      version: FORMAT_VERSION,
      sequence,
      parents: head.heads,
      updatedAt: this.ctx.now(),
      device: this.ctx.deviceId,
      public: profile,
      current: current.cid
    })
    // The binding goes with every version (~150 bytes; stores keep it once): a store that lost it,
    // or never had it, can still check and serve the version.
    const blocks = [...priv.blocks, ...(pub == null ? [] : [pub.profile, pub.clock]), ownerBlock, current, root]
    return {
      blocks,
      root,
      commit: () => {
        priv.commit()
        if (pub !== undefined) publicSection.stored(pub)
      }
    }
  }
}

/**
 * Merging what other devices published: validate a record, fetch and verify the version it names
 * (on a cold open, its DAG in one request where the store can), check the owner binding, merge both
 * sections per key, and advance the head. A lower sequence is a rollback and is refused; a record
 * that expired is still the last version its owner published, read and marked for renewal.
 */
import { equals } from 'multiformats/bytes'
import { IntegrityError, SignerMismatchError, throwIfAborted } from '../errors.js'
import { validateRecord } from '../store/record.js'
import { CURRENT_VERSION_FIELD } from '../protocol.js'
import { cidKey, cidString, getVerifiedBlock, verifyBlock, verifyBlockNow } from '../store/blocks.js'
import { readPublicBlocks } from './entries.js'
import { checkCurrent, decodeCurrent, decodeOwner, decodeRoot, verifyOwner } from './root.js'
import { PublicSection } from './section.js'
import type { SpaceContext } from './context.js'
import type { Current, OwnerBinding } from './root.js'
import type { Writer } from './writer.js'
import type { BlockGetter } from './tree.js'
import type { AbortOptions, Block, Store } from '../store/interface.js'
import type { CID } from 'multiformats/cid'

export class Merger {
  /** Blocks a DAG request brought in ahead of a cold merge, taken by fetchBlock as they are read. */
  private readonly prefetched = new Map<string, Uint8Array>()

  constructor (private readonly ctx: SpaceContext, private readonly writer: Writer) {}

  /**
   * Validates a record and merges the version it points at. A `rival` is a record that won over a
   * version this device published and its store accepted before refusing it (see Publisher): its
   * version is merged even when its sequence is below the head's (this device has published on top
   * of the refused version since), beside the head, never as it: the next version names both as
   * parents and carries both's writes.
   */
  async absorb (recordBytes: Uint8Array, options?: AbortOptions, rival = false): Promise<void> {
    const { head } = this.ctx
    const info = await validateRecord(this.ctx.name, recordBytes, { allowExpired: true, nowMs: this.ctx.now })
    const sequence = Number(info.sequence)
    if (info.cid === undefined) return
    const cid = info.cid
    // While versions of this device's are in their network check, a store may answer with the
    // one it still holds, which this device published: nothing to merge, and no rollback. (With
    // none in their check, an older version of its own is a rollback like any other.)
    if (head.unsettledFrom !== undefined && head.ownRoots?.some(r => r.equals(cid)) === true) return
    if (sequence < head.seq && (rival || (head.unsettledFrom !== undefined && sequence >= head.unsettledFrom))) {
      // Another device's version that won over one of ours, or at the sequence of one of ours still
      // in its check: a race, merged beside the head, not a rollback.
      if (!head.heads.some(h => h.equals(cid))) await this.absorbRoot(cid, sequence, options, true)
      return
    }
    if (sequence < head.seq) {
      this.ctx.log.error('ignored a record of %s at #%d: this device has seen #%d', this.ctx.name, sequence, head.seq)
      this.ctx.events.emit('rollback', { sequence, seen: head.seq })
      return
    }
    if (info.expired) {
      // The last version its owner published: read it, and renew it with the next publish.
      head.mustRenew = true
      this.ctx.log('the record of %s #%d has expired: the next publish renews it', this.ctx.name, sequence)
      this.ctx.events.emit('expired', { validUntilMs: info.validUntilMs, sequence })
    }
    if (head.rootCid?.equals(info.cid) === true) {
      head.lastRecord = recordBytes
      head.validUntilMs = Math.max(head.validUntilMs, info.validUntilMs)
      return
    }
    await this.absorbVersion(info.cid, sequence, options)
    head.lastRecord = recordBytes
    head.validUntilMs = info.validUntilMs
  }

  /**
   * Merges a version, and on a cold open (nothing merged yet) first asks the store for its blocks in
   * one request where it can (`getDag`), rather than one request per block.
   */
  async absorbVersion (cid: CID, sequence: number, options?: AbortOptions): Promise<void> {
    if (this.ctx.head.rootCid === null && this.ctx.store.getDag !== undefined) await this.prefetch(cid, options)
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
      blocks = await (this.ctx.store.getDag as NonNullable<Store['getDag']>)(cid, { path: CURRENT_VERSION_FIELD, signal: options?.signal })
    } catch {
      throwIfAborted(options?.signal)
    }
    // Checked here, whatever the store did (as fetchBlock does); bytes the store already checked
    // through verifyBlock are not hashed again.
    for (const block of blocks) {
      if (verifyBlockNow(block.cid, block.bytes) ?? await verifyBlock(block.cid, block.bytes)) this.prefetched.set(cidKey(block.cid), block.bytes)
    }
  }

  /** Merges the version at `cid` (whose record said `sequence`) into the local map. */
  private async absorbRoot (cid: CID, sequence: number, options?: AbortOptions, beside = false): Promise<void> {
    const { head, privateSection, publicSection, events } = this.ctx
    if (sequence === head.seq && head.rootCid !== null) {
      this.ctx.log.error('two versions of %s claim #%d: %s and %s', this.ctx.name, sequence, head.rootCid.toString(), cid.toString())
      events.emit('conflict', { sequence, roots: [head.rootCid.toString(), cid.toString()] })
    }
    const root = decodeRoot(await this.fetchBlock(cid, options))
    if (root.sequence !== sequence) throw new IntegrityError(`root ${cid.toString()} says sequence ${root.sequence} but its record says ${sequence}`)
    const current = decodeCurrent(await this.fetchBlock(root.current, options))
    checkCurrent(root, current)
    const owner = await this.ownerOf(current, options)
    // Both sections are read and checked before either changes.
    const pubBlocks = current.public === null || publicSection.isStoredAs(current.public, current.clock)
      ? undefined
      : await Promise.all([current.public, current.clock as CID].map(async c => ({ cid: c, bytes: await this.fetchBlock(c, options) })))
    if (pubBlocks !== undefined) {
      const [profile, clock] = pubBlocks as [Block, Block]
      readPublicBlocks(PublicSection.decodeProfile(profile.bytes), PublicSection.decodeClock(clock.bytes))
    }
    const priv = await privateSection.absorb(current.buckets, current.private, this.blockGetter(options), current.totals)
    let pubChanged: string[] = []
    if (current.public === null) {
      publicSection.absorbNone()
    } else if (pubBlocks !== undefined) {
      pubChanged = publicSection.absorb(pubBlocks[0] as Block, pubBlocks[1] as Block).changed
    }
    this.ctx.clock.observe(Math.max(privateSection.maxStamp, publicSection.maxStamp))
    // History: when this device holds entries the remote version lacks and that version does not
    // build on ours, both are heads and the next version names both as parents.
    const ahead = privateSection.dirty || publicSection.dirty
    if (beside) {
      // The head stays: the merged version becomes one more parent of the next.
      head.heads = [...head.heads.filter(h => !h.equals(cid)), cid]
    } else {
      const builtOnOurs = head.rootCid === null || root.parents.some(p => p.equals(head.rootCid as CID))
      head.heads = ahead && !builtOnOurs ? [cid, ...head.heads.filter(h => !h.equals(cid))] : [cid]
      head.seq = Math.max(head.seq, sequence)
      head.rootCid = cid
    }
    // The newest binding a version carries is the one to carry on (a re-binding from another device).
    if (head.owner === undefined || (owner.issuedAt ?? -1) > (head.owner.issuedAt ?? -1)) head.owner = owner
    // No count of private keys here: on an open, listing them is the walk of every bucket skipped below.
    this.ctx.log.trace('merged %s #%d (%s): %d public key(s) changed', this.ctx.name, sequence, cid.toString(), pubChanged.length)
    // Listeners hear of the change as soon as the map holds it (`get` already returns it), not after
    // the state write below: that write records the version as seen (the rollback floor), and the
    // step that merged it ends only once it is durable, so the next publish or merge follows it.
    // Keys are listed only for a listener: an open has none yet, and would pay a walk of every bucket.
    if (events.listening('change') && priv.changed.length > 0) events.emit('change', { section: 'private', keys: priv.changed, sequence })
    if (pubChanged.length > 0) events.emit('change', { section: 'public', keys: pubChanged, sequence })
    if (!beside) await this.ctx.state.put(this.ctx.name, { sequence: head.seq, root: cid.toString() })
    this.writer.pruneSuperseded()
  }

  /**
   * The owner binding a version's current node links, checked (`checkOwner`). A binding changes
   * rarely: the last one read is kept with its CID, and a version that links it again costs no fetch.
   */
  async ownerOf (current: Current, options?: AbortOptions): Promise<OwnerBinding> {
    const key = cidString(current.owner)
    if (this.lastOwner?.cid === key) return this.lastOwner.owner
    const owner = decodeOwner(await this.fetchBlock(current.owner, options))
    this.checkOwner(owner)
    this.lastOwner = { cid: key, owner }
    return owner
  }

  /** The owner binding last read and checked, and its block's CID string. */
  private lastOwner: { cid: string, owner: OwnerBinding } | undefined

  /** Refuses a version whose owner binding does not name this space's wallet address. */
  checkOwner (owner: OwnerBinding): void {
    const known = this.ctx.head.owner
    if (known !== undefined && equals(owner.signature, known.signature) && owner.address === known.address) return
    const address = verifyOwner(owner, this.ctx.name)
    if (address !== this.ctx.address) {
      throw new SignerMismatchError(`the space ${this.ctx.name} is bound to ${address}, not to ${this.ctx.address}`)
    }
  }

  /** Fetches a block and checks it against its CID, whatever the store did. */
  /** fetchBlock, answering at once for a block of the version fetched whole. */
  blockGetter (options?: AbortOptions): BlockGetter {
    return cid => this.prefetched.get(cidKey(cid)) ?? this.fetchBlock(cid, options)
  }

  async fetchBlock (cid: CID, options?: AbortOptions): Promise<Uint8Array> {
    const prefetched = this.prefetched.get(cidKey(cid))
    if (prefetched !== undefined) return prefetched
    return getVerifiedBlock(this.ctx.store, cid, options)
  }
}

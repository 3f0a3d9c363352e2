/**
 * What the parts of an open space share: the injected components (store, wallet, device state,
 * options, clock), the two sections, the event emitter, and the mutable head (the newest version
 * this device knows, the record that names it, the owner binding). The writer, the merger, the
 * publisher and the renewer each read and advance the one head, so they never disagree on it.
 */
import { ClosedError } from '../errors.js'
import type { HybridClock } from './entries.js'
import type { Entry } from './entries.js'
import type { SpaceEmitter } from './emitter.js'
import type { OwnerBinding } from './root.js'
import type { PrivateSection, PublicSection, Section } from './section.js'
import type { WalletAdapter } from './signer.js'
import type { PendingEntry, SpaceStateStore } from './state.js'
import type { SpaceOptions } from './types.js'
import type { DerivedKeys } from './wallet-keys.js'
import type { Logger } from '../logger.js'
import type { Store } from '../store/interface.js'
import type { CID } from 'multiformats/cid'

/** The newest version this device knows and what it takes to publish the next one. */
export interface SpaceHead {
  owner: OwnerBinding | undefined
  seq: number
  rootCid: CID | null
  /** the roots the next version descends from */
  heads: CID[]
  lastRecord: Uint8Array | undefined
  validUntilMs: number
  /** the newest record has expired: the next publish goes out even with nothing new, to renew it */
  mustRenew: boolean
  closed: boolean
  /**
   * The lowest sequence of the versions a store accepted and has not settled (see Publisher), when
   * there are any: a record of the name at or above it and below `seq` may be a rival of one of
   * them, merged beside the head rather than refused as a rollback.
   */
  unsettledFrom?: number
  /** Roots of versions this device published lately (accepted by the store), newest last. */
  ownRoots?: CID[]
}

export interface SpaceContext {
  readonly store: Store
  readonly wallet: WalletAdapter
  readonly address: string
  readonly name: string
  readonly derived: DerivedKeys
  readonly state: SpaceStateStore
  readonly options: SpaceOptions
  readonly deviceId: string
  readonly now: () => number
  readonly clock: HybridClock
  readonly privateSection: PrivateSection
  readonly publicSection: PublicSection
  readonly events: SpaceEmitter
  /** the `userspace:space` component's log */
  readonly log: Logger
  readonly head: SpaceHead
}

export function assertOpen (ctx: SpaceContext): void {
  if (ctx.head.closed) throw new ClosedError(`the space ${ctx.name} is closed`)
}

/** True when the map holds writes no version carries yet, or the newest record must be renewed. */
export function needsPublish (ctx: SpaceContext): boolean {
  return ctx.privateSection.dirty || ctx.publicSection.dirty || ctx.head.mustRenew
}

export function sectionNamed (ctx: SpaceContext, section: 'private' | 'public'): Section {
  return section === 'public' ? ctx.publicSection : ctx.privateSection
}

export function slotOf (section: 'private' | 'public', key: string): string {
  return `${section}\u0000${key}`
}

/** The Entry part of a pending entry, as the sections keep it. */
export function pendingEntry (e: PendingEntry): Entry {
  const entry: Entry = { stamp: e.stamp, device: e.device }
  if (e.json !== undefined) entry.json = e.json
  return entry
}

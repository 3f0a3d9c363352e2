/**
 * Local writes: validated, made durable in the device's state (group commit: writes that arrive
 * while the state is being written share the next state write), then applied to the map. Keeps the
 * set of writes not yet published, and settles them in the state once a store holds them or a newer
 * write elsewhere replaced them. Publishing is not its job: it calls `onDurable` when there is
 * something new to publish.
 */
import { apply as applyMergePatch } from 'json-merge-patch'
import { InvalidInputError, TooLargeError, throwIfAborted } from '../errors.js'
import { sameEntry, wins as winsOver } from './entries.js'
import { checkKey, checkValue } from './json.js'
import { assertOpen, pendingEntry, sectionNamed, slotOf } from './context.js'
import { DEFAULT_MAX_PUBLIC_BYTES, DEFAULT_MAX_SPACE_BYTES, DEFAULT_MAX_VALUE_BYTES } from './types.js'
import type { SpaceContext } from './context.js'
import type { Entry } from './entries.js'
import type { Json } from './json.js'
import type { PendingEntry } from './state.js'
import type { AbortOptions } from '../store/interface.js'

type SectionName = 'private' | 'public'

export class Writer {
  /** writes applied here and durable in the state, not yet published; by section and key */
  readonly unpublished = new Map<string, PendingEntry>()
  /** writes being made durable, applied once the state has them (group commit) */
  private batch: { items: PendingEntry[], done: Promise<void> } | undefined
  /** the newest entry per section and key of every batch not applied yet (queued or being written) */
  private readonly unapplied = new Map<string, PendingEntry>()
  private persistTail: Promise<void> = Promise.resolve()
  /** published writes whose removal from the state waits for the next removal (see published) */
  private readonly carried: PendingEntry[] = []
  /** state updates made in the background (settling published writes); `close()` waits for them */
  private stateWrites: Promise<void> = Promise.resolve()
  private readonly maxValueBytes: number
  private readonly maxBytes: Record<SectionName, number>

  constructor (private readonly ctx: SpaceContext, private readonly onDurable: () => void) {
    this.maxValueBytes = ctx.options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES
    this.maxBytes = {
      private: ctx.options.maxSpaceBytes ?? DEFAULT_MAX_SPACE_BYTES,
      public: ctx.options.maxPublicBytes ?? DEFAULT_MAX_PUBLIC_BYTES
    }
  }

  /** Resolves once every write started so far is durable (or refused). */
  durable (): Promise<void> {
    return this.persistTail
  }

  /** Resolves once the writes started so far and the background state updates are done. */
  async idle (): Promise<void> {
    await this.persistTail
    await this.stateWrites
  }

  async set (section: SectionName, key: string, value: Json, options?: AbortOptions): Promise<void> {
    return this.writeMany(section, [[checkKey(key), checkValue(value, this.maxValueBytes)]], options)
  }

  async remove (section: SectionName, key: string, options?: AbortOptions): Promise<void> {
    return this.writeMany(section, [[checkKey(key), undefined]], options)
  }

  async patch (sectionName: SectionName, patch: Record<string, Json>, options?: AbortOptions): Promise<void> {
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
      throw new InvalidInputError(`"patch" expected a JSON object (an RFC 7396 merge patch of the whole map), got ${patch === null ? 'null' : Array.isArray(patch) ? 'an array' : typeof patch}`)
    }
    checkValue(patch, Number.MAX_SAFE_INTEGER, 'patch')
    // A patch applies to the map as it will be once earlier writes are durable, including a batch
    // whose state write is already under way (no longer `this.batch`).
    await this.persistTail
    const section = sectionNamed(this.ctx, sectionName)
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
    return this.writeMany(sectionName, writes, options)
  }

  /**
   * Validates every write, makes all of them durable in the state or none, applies them, and starts
   * publishing in the background. A write that changes nothing (the same value, or removing a key
   * that is not there) is dropped, so it publishes nothing.
   */
  private async writeMany (name: SectionName, writes: Array<[string, string | undefined]>, options?: AbortOptions): Promise<void> {
    assertOpen(this.ctx)
    throwIfAborted(options?.signal)
    const section = sectionNamed(this.ctx, name)
    const maxBytes = this.maxBytes[name]
    const items: PendingEntry[] = []
    let size = section.bytes
    for (const [key, json] of writes) {
      const current = this.latestEntry(name, key)
      if (current?.json === json) continue
      const entry: PendingEntry = { section: name, key, stamp: this.ctx.clock.next(), device: this.ctx.deviceId }
      if (json !== undefined) entry.json = json
      size += section.sizeWith(key, entry) - section.bytes
      items.push(entry)
    }
    if (size > maxBytes) {
      throw new TooLargeError(`the ${name} section would be ${size} bytes, over the ${maxBytes}-byte limit`)
    }
    if (items.length === 0) return
    await this.persist(items)
    this.onDurable()
  }

  /** The entry a key will hold once the writes being made durable are applied. */
  private latestEntry (section: SectionName, key: string): Entry | undefined {
    return this.unapplied.get(slotOf(section, key)) ?? sectionNamed(this.ctx, section).entry(key)
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
          await this.ctx.state.addPending(this.ctx.name, batch.items)
        } finally {
          // Applied below, or refused: either way later writes compare against the map again.
          for (const e of batch.items) {
            const slot = slotOf(e.section, e.key)
            if (this.unapplied.get(slot) === e) this.unapplied.delete(slot)
          }
        }
        const superseded: PendingEntry[] = []
        for (const e of batch.items) {
          const section = sectionNamed(this.ctx, e.section)
          // A version merged while the state was being written may hold a later entry for this key.
          const current = section.entry(e.key)
          if (current !== undefined && winsOver(current, e)) { superseded.push(e); continue }
          section.write(e.key, pendingEntry(e))
          this.unpublished.set(slotOf(e.section, e.key), e)
        }
        if (superseded.length > 0) this.settle(superseded)
        this.ctx.events.emit('pending', { count: this.unpublished.size })
      })
      this.persistTail = batch.done.catch(() => {})
      this.batch = batch
    }
    this.batch.items.push(...items)
    for (const e of items) this.unapplied.set(slotOf(e.section, e.key), e)
    return this.batch.done
  }

  /** Re-applies writes kept in the state: each goes out again unless a newer entry replaced it. */
  restore (entries: PendingEntry[]): void {
    const superseded: PendingEntry[] = []
    for (const e of entries) {
      const section = sectionNamed(this.ctx, e.section)
      this.ctx.clock.observe(e.stamp)
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
    this.ctx.events.emit('pending', { count: this.unpublished.size })
  }

  /**
   * Drops from the pending set the entries a store has now taken (or a newer entry replaced), and
   * removes them from the state (with `later`, at the next removal instead). The returned promise
   * settles once the state has them removed (it never rejects: a failure is an `error` event); a
   * publish starts this removal in the same tick as its own state write, so that the state store
   * can make both in one write.
   */
  published (entries: PendingEntry[], options: { later?: boolean } = {}): Promise<void> {
    const done: PendingEntry[] = []
    for (const e of entries) {
      const slot = slotOf(e.section, e.key)
      if (this.unpublished.get(slot) === e) this.unpublished.delete(slot)
      done.push(e)
    }
    if (done.length > 0) this.ctx.events.emit('pending', { count: this.unpublished.size })
    if (options.later === true) {
      // Removed from the state with the next removal: until then a restart publishes them again,
      // which the store already holds (see restore).
      this.carried.push(...done)
      return Promise.resolve()
    }
    done.push(...this.carried.splice(0))
    if (done.length === 0) return Promise.resolve()
    return this.settleNow(done)
  }

  /** Removes settled entries from the state, in the background but in order. */
  private settle (entries: PendingEntry[]): void {
    this.stateWrites = this.stateWrites.then(async () => this.ctx.state.removePending(this.ctx.name, entries)).catch((err: Error) => { this.ctx.events.emit('error', err) })
  }

  /**
   * Removes settled entries from the state at once (each state store orders its own changes, and a
   * removal takes out only the exact entries given, so it cannot undo a later write). `close()`
   * still waits for it.
   */
  private settleNow (entries: PendingEntry[]): Promise<void> {
    const removal = this.ctx.state.removePending(this.ctx.name, entries).catch((err: Error) => { this.ctx.events.emit('error', err) })
    const before = this.stateWrites
    this.stateWrites = Promise.all([before, removal]).then(() => {})
    return removal
  }

  /**
   * Writes of a version the store accepted and then refused: those still pending, and still the
   * newest entry of their key, mark their part of the map out of date again, so that the next
   * version carries them.
   */
  republish (entries: PendingEntry[]): void {
    for (const e of entries) {
      if (this.unpublished.get(slotOf(e.section, e.key)) !== e) continue
      const section = sectionNamed(this.ctx, e.section)
      const current = section.entry(e.key)
      if (current !== undefined && sameEntry(current, e)) section.write(e.key, pendingEntry(e))
    }
  }

  /**
   * After merging another version: pending entries that lost to a newer write elsewhere, or that the
   * merged version already holds (a publish whose answer was lost, another process sharing the
   * state), are settled.
   */
  pruneSuperseded (): void {
    const done: PendingEntry[] = []
    for (const e of this.unpublished.values()) {
      const section = sectionNamed(this.ctx, e.section)
      const current = section.entry(e.key)
      if (current !== undefined && (!sameEntry(current, e) || section.holds(e.key))) done.push(e)
    }
    if (done.length > 0) void this.published(done)
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

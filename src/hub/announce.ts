/**
 * DHT announcements of accepted records, in the background and bounded: only the newest record of a
 * name is worth announcing, so a name waiting for its turn keeps one entry that later records
 * replace; a fixed number run at once, each under its own timeout; names beyond the pending cap are
 * left to the hub's periodic re-announcement; a name whose records other hubs already serve is
 * announced at most once per spacing interval. A kad-dht put opens several libp2p streams (a
 * closest-peers query, then one PUT_VALUE per peer), each costing a peer-store read and write on
 * both ends: one announcement per PUT, unbounded, cost peered hubs more CPU than the PUTs themselves.
 */

/** Puts one record to the DHT; should honour `signal`. */
export type AnnounceFn = (name: string, record: Uint8Array, options: { signal: AbortSignal }) => Promise<void>

export interface AnnouncerOptions {
  /** Announcements running at once. */
  concurrency: number
  /** Names waiting for their turn; a new name beyond this is not announced now (the periodic re-announcement covers it). */
  maxPending: number
  /** Longest one announcement may run before it is aborted. */
  timeoutMs: number
}

interface Entry { record: Uint8Array, settled: Array<() => void>, notBeforeMs: number }

/** The newest record per name, announced `concurrency` at a time. */
export class Announcer {
  private readonly pending = new Map<string, Entry>()
  private readonly running = new Set<string>()
  /** When each name's last announcement started (`performance.now()`), for `spacingMs`. */
  private readonly startedAt = new Map<string, number>()
  private wake: ReturnType<typeof setTimeout> | undefined
  private stopped = false

  constructor (private readonly announce: AnnounceFn, private readonly options: AnnouncerOptions) {}

  /** Names waiting plus names being announced. */
  get size (): number {
    return this.pending.size + this.running.size
  }

  /**
   * Queues `record` for `name`, replacing a record of that name still waiting. With `spacingMs`,
   * the announcement starts no sooner than that long after the name's previous one started (for
   * records other hubs already serve: a name written many times a second is announced once per
   * `spacingMs`, its newest record). Resolves (never rejects) once a record of the name queued at
   * or after this one has been announced, or failed, or was not queued (pending cap, stopped).
   */
  add (name: string, record: Uint8Array, spacingMs = 0): Promise<void> {
    if (this.stopped) return Promise.resolve()
    const waiting = this.pending.get(name)
    if (waiting === undefined && this.pending.size >= this.options.maxPending) return Promise.resolve()
    const notBeforeMs = spacingMs > 0 ? (this.startedAt.get(name) ?? -Infinity) + spacingMs : -Infinity
    return new Promise<void>((resolve) => {
      if (waiting !== undefined) {
        waiting.record = record
        waiting.settled.push(resolve)
        // The sooner of the two: a record that must not wait makes the entry not wait.
        waiting.notBeforeMs = Math.min(waiting.notBeforeMs, notBeforeMs)
      } else {
        this.pending.set(name, { record, settled: [resolve], notBeforeMs })
      }
      this.drain()
    })
  }

  private drain (): void {
    if (this.stopped || this.running.size >= this.options.concurrency) return
    // A spacing is a duration, timed by setTimeout: measured on the monotonic clock, not the date.
    const now = performance.now()
    let soonest = Infinity
    // The oldest waiting name that is due and not being announced already (one announcement per name at once).
    for (const [name, entry] of this.pending) {
      if (this.running.size >= this.options.concurrency) return
      if (this.running.has(name)) continue
      if (entry.notBeforeMs > now) { soonest = Math.min(soonest, entry.notBeforeMs); continue }
      this.pending.delete(name)
      this.running.add(name)
      this.noteStart(name, now)
      void this.run(name, entry).finally(() => {
        this.running.delete(name)
        this.drain()
      })
    }
    if (soonest < Infinity) {
      clearTimeout(this.wake)
      this.wake = setTimeout(() => { this.drain() }, soonest - now)
      this.wake.unref()
    }
  }

  private noteStart (name: string, now: number): void {
    this.startedAt.delete(name)
    this.startedAt.set(name, now)
    // Oldest first: beyond the cap, the names announced longest ago are forgotten (they wait no more).
    if (this.startedAt.size > this.options.maxPending) this.startedAt.delete(this.startedAt.keys().next().value as string)
  }

  private async run (name: string, entry: Entry): Promise<void> {
    // A timer cleared as soon as the announcement ends (AbortSignal.timeout would keep one alive
    // for the whole timeout).
    const controller = new AbortController()
    const deadline = setTimeout(() => { controller.abort(new Error('announcement timed out')) }, this.options.timeoutMs)
    try {
      await this.announce(name, entry.record, { signal: controller.signal })
    } catch {
      // The periodic re-announcement retries; the record is stored either way.
    } finally {
      clearTimeout(deadline)
      for (const settle of entry.settled) settle()
    }
  }

  /** Drops what waits (its waiters resolve); announcements running finish under their timeout. */
  stop (): void {
    this.stopped = true
    clearTimeout(this.wake)
    for (const entry of this.pending.values()) for (const settle of entry.settled) settle()
    this.pending.clear()
  }
}

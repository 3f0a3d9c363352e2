/**
 * A concurrency limit for a store's network fetches: at most `limit` run at once, the rest wait in
 * order. Browser-safe; shared by the helia and hub stores.
 */
/** At most `limit` tasks at a time; the others wait in order (a waiter whose signal fires leaves the line). */
export class Limiter {
  private active = 0
  private readonly waiting: Array<() => void> = []
  private head = 0

  constructor (private readonly limit: number) {}

  /** Runs `task` in a slot; a `signal` that fires while waiting rejects with `aborted()` instead. */
  async run<T> (signal: AbortSignal | undefined, task: () => Promise<T>, aborted: () => Error): Promise<T> {
    if (signal?.aborted === true) throw aborted()
    if (this.active >= this.limit) {
      let abandoned = false
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => { abandoned = true; reject(aborted()) }
        signal?.addEventListener('abort', onAbort, { once: true })
        this.waiting.push(() => {
          signal?.removeEventListener('abort', onAbort)
          // A waiter that gave up passes its slot straight on.
          if (abandoned) { this.release(); return }
          resolve()
        })
      })
    } else {
      this.active++
    }
    try {
      return await task()
    } finally {
      this.release()
    }
  }

  /** Hands the slot to the next waiter (an index, not shift(): the line can be long). */
  private release (): void {
    const next = this.waiting[this.head]
    if (next === undefined) { this.active--; return }
    this.waiting[this.head++] = undefined as unknown as () => void
    if (this.head === this.waiting.length) { this.waiting.length = 0; this.head = 0 }
    next()
  }
}

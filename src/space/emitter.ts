/**
 * The space's event emitter: typed listeners per event name. A listener that throws is reported as
 * an `error` event instead of breaking the caller that emitted.
 */
import type { SpaceEvents } from './types.js'

type Listener = (event: any) => void

export class SpaceEmitter {
  private readonly listeners = new Map<string, Set<Listener>>()

  on<E extends keyof SpaceEvents>(event: E, listener: (event: SpaceEvents[E]) => void): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) this.listeners.set(event, set = new Set())
    set.add(listener)
    return () => { set.delete(listener) }
  }

  emit<E extends keyof SpaceEvents>(event: E, detail: SpaceEvents[E]): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try { listener(detail) } catch (err) { if (event !== 'error') this.emit('error', err as Error) }
    }
  }

  clear (): void {
    this.listeners.clear()
  }
}

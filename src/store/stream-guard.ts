/**
 * Guards on what a libp2p stream receives, run inside the protocol's own readers (see
 * guardReceived): the DHT's length limits (dht-guard.ts) and bitswap's entry counts
 * (bitswap-guard.ts) are each one `check` over the chunks.
 */
import { TooLargeError } from '../errors.js'
import type { Stream } from '@libp2p/interface'

/**
 * Shows `check` every chunk `stream` receives, in order, before the protocol's own reader sees it:
 * once it returns a message, the stream is aborted with it (TooLargeError) and no chunk reaches the
 * reader. Call it before the protocol adds its listeners.
 */
export function guardReceived (stream: Stream, check: (chunk: Uint8Array) => string | undefined): void {
  // The check runs inside the protocol's own 'message' listeners rather than as a listener of its
  // own. A stream hands the data that arrived before any listener to the first one added: a guard
  // listening from the start would take, and the protocol's reader (@helia/bitswap attaches its own
  // only after an await) never see, the first message of a peer that sends it with its protocol
  // proposal. Each event is judged once, however many listeners the protocol has; a chunk that
  // trips the check reaches none of them (the stream may already be closed by the remote, so that
  // abort does nothing, and a reader handed the chunk would decode what it holds).
  const verdicts = new WeakMap<Event, string | undefined>()
  const judge = (event: Event): string | undefined => {
    if (verdicts.has(event)) return verdicts.get(event)
    const data = (event as Event & { data: Uint8Array | Iterable<Uint8Array> }).data
    const over = data instanceof Uint8Array ? check(data) : checkList(check, data)
    verdicts.set(event, over)
    if (over !== undefined) stream.abort(new TooLargeError(over))
    return over
  }
  type Listener = EventListener | EventListenerObject
  type Method = (type: string, listener: Listener | null, options?: unknown) => void
  const target = stream as unknown as { addEventListener: Method, removeEventListener: Method }
  const add = target.addEventListener.bind(stream)
  const remove = target.removeEventListener.bind(stream)
  const wrapped = new WeakMap<Listener, EventListener>()
  target.addEventListener = (type, listener, options) => {
    if (type !== 'message' || listener === null) { add(type, listener, options); return }
    let guarded = wrapped.get(listener)
    if (guarded === undefined) {
      guarded = (event) => {
        if (judge(event) !== undefined) return
        if (typeof listener === 'function') listener.call(stream, event)
        else listener.handleEvent(event)
      }
      wrapped.set(listener, guarded)
    }
    add(type, guarded, options)
  }
  target.removeEventListener = (type, listener, options) => {
    remove(type, type === 'message' && listener !== null ? wrapped.get(listener) ?? listener : listener, options)
  }
}

function checkList (check: (chunk: Uint8Array) => string | undefined, list: Iterable<Uint8Array>): string | undefined {
  let over: string | undefined
  for (const part of list) over ??= check(part)
  return over
}

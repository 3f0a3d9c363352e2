/**
 * Capped readers for bodies a hub sends. A hub is not trusted with resources: a body is refused
 * (TooLargeError) as soon as it passes its cap, counted as the bytes arrive after fetch's content
 * decoding, so a huge or compressed body costs at most the cap.
 */
import { StoreError, TooLargeError } from '../errors.js'

/**
 * Reads a response body whole, refusing (TooLargeError) as soon as it passes `maxBytes`: a declared
 * Content-Length over the cap is refused before reading, and the bytes are counted as they arrive,
 * after fetch's content decoding, so a gzip bomb stops at the cap too. The body is cancelled on
 * refusal. Exported for the other hub answers read elsewhere (the CLI's CARs).
 */
export async function readCapped (res: Response, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? Number.NaN)
  // A declared length describes the encoded bytes; it can only refuse early, never admit.
  if (res.headers.get('content-encoding') === null && declared > maxBytes) {
    await res.body?.cancel().catch(() => {})
    throw new TooLargeError(`the response declares ${declared} bytes, over the ${maxBytes}-byte limit`)
  }
  if (res.body === null) return new Uint8Array(0)
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let length = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      length += value.byteLength
      if (length > maxBytes) throw new TooLargeError(`the response is over the ${maxBytes}-byte limit`)
      chunks.push(value)
    }
  } catch (err) {
    await reader.cancel().catch(() => {})
    throw err
  }
  if (chunks.length === 1) return chunks[0] as Uint8Array
  const out = new Uint8Array(length)
  let offset = 0
  for (const chunk of chunks) { out.set(chunk, offset); offset += chunk.byteLength }
  return out
}

/** The chunks of a body, ending with TooLargeError (and cancelling the body) once they pass `maxBytes`. */
export async function * cappedChunks (body: ReadableStream<Uint8Array>, maxBytes: number, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const reader = body.getReader()
  // A fetch that ignores the signal (a wrapper, a test double) must not outlive the call's deadline.
  const stop = (): void => { reader.cancel().catch(() => {}) }
  signal.addEventListener('abort', stop, { once: true })
  let length = 0
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>
      try {
        chunk = await reader.read()
      } catch (err) {
        throw new StoreError(`the hub dropped the CAR: ${(err as Error).message}`, { cause: err })
      }
      const { done, value } = chunk
      if (done) return
      length += value.byteLength
      if (length > maxBytes) throw new TooLargeError(`the CAR is over the ${maxBytes}-byte limit`)
      yield value
    }
  } finally {
    signal.removeEventListener('abort', stop)
    await reader.cancel().catch(() => {})
  }
}

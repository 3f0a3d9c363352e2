/**
 * The hub's single error handler: every refusal is JSON `{ "message", "name" }` with the status that
 * `HTTP_STATUS` gives its error name; running out of file descriptors is a 503 with Retry-After (the
 * client may retry; nothing was written); anything else unexpected is a 500 with a generic message
 * (and is logged), so internals never leak and a client's mistake is never a 500.
 */
import { HTTPException } from 'hono/http-exception'
import { HTTP_STATUS, UserSpaceError } from '../errors.js'
import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'

/** Seconds a client is asked to wait after a 503 or 507. */
export const RETRY_AFTER_SECONDS = 1

/** Node error codes that mean "out of a resource for now", not "broken". */
const EXHAUSTED = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'ENOMEM'])

export function httpErrorHandler (err: Error, c: Context): Response {
  if (err instanceof UserSpaceError) {
    const status = (HTTP_STATUS[err.name] ?? 400) as ContentfulStatusCode
    if ((status === 503 || status === 507) && c.res.headers.get('Retry-After') === null) c.header('Retry-After', String(RETRY_AFTER_SECONDS))
    return c.json({ message: err.message, name: err.name }, status)
  }
  if (err instanceof HTTPException) {
    return c.json({ message: err.message !== '' ? err.message : 'request refused', name: nameOfStatus(err.status) }, err.status)
  }
  if (isExhausted(err)) {
    c.header('Retry-After', String(RETRY_AFTER_SECONDS))
    return c.json({ message: 'the hub is out of file descriptors or memory for now; retry shortly', name: 'UnavailableError' }, 503)
  }
  console.error('userspace hub: unexpected error', err)
  return c.json({ message: 'internal error' }, 500)
}

/** The error name for a status raised as an HTTPException (hono's own 4xx included): the first name mapped to it. */
function nameOfStatus (status: number): string {
  for (const [name, s] of Object.entries(HTTP_STATUS)) if (s === status) return name
  return status >= 500 ? 'StoreError' : 'InvalidInputError'
}

/** True for an error (or one of its causes) that says the process ran out of descriptors or memory. */
function isExhausted (err: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && EXHAUSTED.has(code)) return true
    // Some stores wrap the system error into their own message (datastore-level: `String(err)`).
    if (e instanceof Error && /\b(EMFILE|ENFILE)\b/.test(e.message)) return true
  }
  return false
}

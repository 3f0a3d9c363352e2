/**
 * The hub's single error handler: every refusal is JSON `{ "message", "name" }` with the status that
 * `HTTP_STATUS` gives its error name; anything unexpected is a 500 with a generic message (and is
 * logged), so internals never leak and a client's mistake is never a 500.
 */
import { HTTPException } from 'hono/http-exception'
import { HTTP_STATUS, UserSpaceError } from '../errors.js'
import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'

export function httpErrorHandler (err: Error, c: Context): Response {
  if (err instanceof UserSpaceError) {
    const status = (HTTP_STATUS[err.name] ?? 400) as ContentfulStatusCode
    return c.json({ message: err.message, name: err.name }, status)
  }
  if (err instanceof HTTPException) {
    return c.json({ message: err.message !== '' ? err.message : 'request refused', name: nameOfStatus(err.status) }, err.status)
  }
  console.error('userspace hub: unexpected error', err)
  return c.json({ message: 'internal error' }, 500)
}

/** The error name for a status raised as an HTTPException (hono's own 4xx included): the first name mapped to it. */
function nameOfStatus (status: number): string {
  for (const [name, s] of Object.entries(HTTP_STATUS)) if (s === status) return name
  return status >= 500 ? 'StoreError' : 'InvalidInputError'
}

/**
 * The messages between a dapp and the connect page (a popup on the hub's origin), and the checks the
 * connect page makes on a request before it shows anything to the user. Browser-safe.
 *
 * 1. popup → opener, `ready` (targetOrigin `*`: it carries nothing);
 * 2. opener → popup, `request` { id, app, read, write } (targetOrigin: the connect page's origin);
 * 3. popup → opener, `grant` { id, grant } or `refused` { id, error: { name, message } }, posted with
 *    targetOrigin = the origin the browser reported for the request (`MessageEvent.origin`).
 *
 * The requester's origin is never taken from the message: a request that claims one (`origin`) that
 * differs from where it came from is refused as forged.
 */
import { InvalidScopeError, OriginMismatchError } from '../errors.js'
import { checkNamespace, checkOrigin, checkScope } from '../apps/scope.js'
import type { Grant } from '../apps/grant.js'

export const CONNECT_READY = 'userspace:connect:ready'
export const CONNECT_REQUEST = 'userspace:connect:request'
export const CONNECT_GRANT = 'userspace:connect:grant'
export const CONNECT_REFUSED = 'userspace:connect:refused'

const REQUEST_WORDS = new Set(['type', 'id', 'app', 'read', 'write', 'origin'])

export interface ConnectRequest {
  /** The requester's nonce, echoed in the answer. */
  id: string
  app: string
  read: string[]
  write: string[]
  /** Where the request came from, as the browser reported it. */
  origin: string
}

export interface GrantMessage { type: typeof CONNECT_GRANT, id: string, grant: Grant }
export interface RefusedMessage { type: typeof CONNECT_REFUSED, id: string, error: { name: string, message: string } }

/**
 * Checks a message event the connect page received: it must come from the window that opened the
 * page, from a web origin, and hold a well-formed request whose every word is known. Throws a named
 * error (OriginMismatchError, InvalidScopeError) saying what is wrong.
 */
export function checkRequest (event: Pick<MessageEvent, 'data' | 'origin' | 'source'>, opener: unknown): ConnectRequest {
  if (opener === null || opener === undefined || event.source !== opener) {
    throw new OriginMismatchError('the request did not come from the window that opened this page')
  }
  const origin = checkOrigin(event.origin)
  const data = event.data as Record<string, unknown>
  if (typeof data !== 'object' || data === null || data.type !== CONNECT_REQUEST) throw new InvalidScopeError(`expected a connect request, got ${typeof data === 'object' && data !== null ? `type ${JSON.stringify(String(data.type).slice(0, 40))}` : typeof data}`)
  for (const word of Object.keys(data)) {
    if (!REQUEST_WORDS.has(word)) throw new InvalidScopeError(`unknown scope word ${JSON.stringify(word.slice(0, 40))} (known: app, read, write)`)
  }
  if (data.origin !== undefined && data.origin !== origin) {
    throw new OriginMismatchError(`the request claims to come from ${String(data.origin).slice(0, 80)}, but the browser says it came from ${origin}`)
  }
  if (typeof data.id !== 'string' || !/^[A-Za-z0-9_-]{8,64}$/.test(data.id)) throw new InvalidScopeError(`"id" expected 8 to 64 letters, digits, _ or -, got ${typeof data.id === 'string' ? JSON.stringify(data.id.slice(0, 80)) : typeof data.id}`)
  const app = checkNamespace(data.app, 'app')
  const scope = checkScope(app, { ...(data.read === undefined ? {} : { read: data.read }), ...(data.write === undefined ? {} : { write: data.write }) })
  return { id: data.id, app, read: scope.read, write: scope.write, origin }
}

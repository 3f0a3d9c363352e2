/**
 * `connect()`: what a dapp calls to get a grant without ever seeing the user's master signature. It
 * opens the connect page (served by a hub, on the hub's origin) in a popup, sends it the request once
 * the page says it is ready, and resolves with the grant the page posts back — after checking that
 * the answer came from that popup on that origin, that the grant is signed by the master key it
 * names, and that it was issued to this app on this origin.
 *
 * Call it from a click handler: browsers open popups only in answer to a user gesture.
 */
import { AbortedError, errorFromName, IntegrityError, InvalidInputError, SignerError } from '../errors.js'
import { CONNECT_PATH } from '../protocol.js'
import { verifyGrant } from '../apps/grant.js'
import { checkNamespace, checkScope } from '../apps/scope.js'
import { CONNECT_GRANT, CONNECT_READY, CONNECT_REFUSED, CONNECT_REQUEST } from './messages.js'
import type { Grant } from '../apps/grant.js'
import type { AbortOptions } from '../store/interface.js'

/** How long the user has to answer the connect page. @default 10 minutes */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10 * 60 * 1000

export interface ConnectOptions extends AbortOptions {
  /** The app id: a reverse-DNS name or an npm package name; its own namespace. */
  app: string
  /** Namespaces to read (shared data such as `profile`). */
  read?: string[]
  /** Other apps' namespaces to write: the user must approve this explicitly. */
  write?: string[]
  /** The connect page, e.g. `https://hub.example/connect`, or a hub URL (`/connect` is added). */
  connectUrl: string
  /** @default DEFAULT_CONNECT_TIMEOUT_MS */
  timeoutMs?: number
}

/** Opens the connect page and resolves with the grant the user approved. */
export async function connect (options: ConnectOptions): Promise<Grant> {
  const app = checkNamespace(options.app, 'app')
  const scope = checkScope(app, { ...(options.read === undefined ? {} : { read: options.read }), ...(options.write === undefined ? {} : { write: options.write }) })
  let url: URL
  try {
    url = new URL(options.connectUrl, globalThis.location?.href)
  } catch {
    throw new InvalidInputError(`"connectUrl" expected a URL, got ${JSON.stringify(String(options.connectUrl).slice(0, 80))}`)
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = CONNECT_PATH
  const connectOrigin = url.origin
  const id = randomId()
  const popup = window.open(url.href, 'userspace-connect', 'popup,width=520,height=720')
  if (popup === null) throw new SignerError('the browser blocked the connect window: call connect() from a click handler')

  return new Promise<Grant>((resolve, reject) => {
    let settled = false
    const finish = (err: Error | undefined, grant?: Grant): void => {
      if (settled) return
      settled = true
      window.removeEventListener('message', onMessage)
      clearInterval(watch)
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      // A refusal stays on screen in the popup, saying why; a grant or an abort closes it.
      if (err === undefined || err.name === 'AbortedError') { try { popup.close() } catch {} }
      if (err !== undefined) reject(err); else resolve(grant as Grant)
    }
    const onMessage = (event: MessageEvent): void => {
      // Only the popup we opened, on the origin we opened it at.
      if (event.source !== popup || event.origin !== connectOrigin) return
      const data = event.data as Record<string, unknown> | null
      if (typeof data !== 'object' || data === null) return
      if (data.type === CONNECT_READY) {
        popup.postMessage({ type: CONNECT_REQUEST, id, app, read: scope.read, write: scope.write }, connectOrigin)
      } else if (data.type === CONNECT_REFUSED && data.id === id) {
        const error = data.error as { name?: string, message?: string } | undefined
        finish(errorFromName(error?.name, String(error?.message ?? 'the connect page refused the request')))
      } else if (data.type === CONNECT_GRANT && data.id === id) {
        verifyGrant(data.grant).then((grant) => {
          if (grant.app !== app || grant.origin !== location.origin) {
            throw new IntegrityError(`the connect page issued a grant for ${grant.app} on ${String(grant.origin)}, not for ${app} on ${location.origin}`)
          }
          finish(undefined, grant)
        }).catch((err: Error) => { finish(err) })
      }
    }
    const onAbort = (): void => { finish(new AbortedError('connect() was aborted')) }
    window.addEventListener('message', onMessage)
    options.signal?.addEventListener('abort', onAbort)
    // A closed popup never answers: say so instead of waiting for the timeout.
    const watch = setInterval(() => { if (popup.closed) finish(new AbortedError('the connect window was closed before granting access')) }, 250)
    const timer = setTimeout(() => { finish(new AbortedError('the connect page did not answer in time')) }, options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS)
  })
}

function randomId (): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('')
}

/**
 * What an app may ask for, checked before anything is derived or shown to the user: its id (a
 * reverse-DNS name or an npm package name), the origin it runs on (a serialised web origin, as the
 * browser reports it), and its scope — the namespaces it may read and the other apps' namespaces it
 * may write. Anything else in a request is an unknown scope word and is refused, never ignored, so a
 * request can never mean more than the consent screen shows.
 */
import { InvalidScopeError, describeValue } from '../errors.js'

/** Longest app id or namespace (npm's package-name limit). @default 214 */
export const MAX_NAMESPACE_LENGTH = 214
/** Most namespaces one grant may name (its own included). @default 16 */
export const MAX_GRANT_NAMESPACES = 16

/** The words a scope may hold. */
export const SCOPE_WORDS = ['read', 'write'] as const

export interface AppScope {
  /** Namespaces the app may read (not write): shared data such as `profile`. */
  read?: string[]
  /**
   * Other apps' namespaces the app may also write. Its own namespace (its app id) is always
   * writable. Needs the user's explicit approval (`approveForeignWrite`).
   */
  write?: string[]
}

/** A scope as checked: sorted, without duplicates; `read` holds nothing that `write` holds. */
export interface CheckedScope {
  read: string[]
  write: string[]
}

// Reverse-DNS: two or more dot-separated labels of a–z, 0–9 and inner hyphens (RFC 1123), the
// first (a top-level domain) starting with a letter.
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?'
const REVERSE_DNS = new RegExp(`^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\\.${LABEL})+$`)
// npm package names: lowercase, URL-safe, optionally scoped, never starting with `.` or `_`
// (and here never holding `..`, so no namespace reads like a path).
const PACKAGE = /^(?:@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/

/**
 * Checks an app id or namespace: a reverse-DNS name (`io.example.app`) or an npm package name
 * (`example-app`, `@example/app`), at most MAX_NAMESPACE_LENGTH characters. Returns it unchanged.
 */
export function checkNamespace (value: unknown, what = 'app'): string {
  if (typeof value !== 'string') throw new InvalidScopeError(`"${what}" expected a string, got ${value === null ? 'null' : typeof value}`)
  if (value.length === 0 || value.length > MAX_NAMESPACE_LENGTH) {
    throw new InvalidScopeError(`"${what}" expected 1 to ${MAX_NAMESPACE_LENGTH} characters, got length=${value.length}`)
  }
  if ((!REVERSE_DNS.test(value) && !PACKAGE.test(value)) || value.includes('..')) {
    throw new InvalidScopeError(`"${what}" expected a reverse-DNS name (io.example.app) or an npm package name (example-app, @example/app), got ${JSON.stringify(value.slice(0, 80))}`)
  }
  return value
}

/**
 * Checks a web origin: `http:` or `https:`, serialised exactly as `URL.origin` spells it (no path,
 * no trailing slash, lowercase host, no default port). The opaque origin `null` is refused.
 */
export function checkOrigin (value: unknown): string {
  if (typeof value !== 'string') throw new InvalidScopeError(`"origin" expected a string, got ${value === null ? 'null' : typeof value}`)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new InvalidScopeError(`"origin" expected a web origin such as https://app.example, got ${JSON.stringify(value.slice(0, 80))}`)
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.origin !== value) {
    throw new InvalidScopeError(`"origin" expected a web origin such as https://app.example, got ${JSON.stringify(value.slice(0, 80))}`)
  }
  return value
}

/** Checks a scope for `app`; unknown words, malformed or duplicate-only lists are refused. */
export function checkScope (app: string, scope: unknown): CheckedScope {
  if (scope === undefined) return { read: [], write: [] }
  if (typeof scope !== 'object' || scope === null || Array.isArray(scope)) throw new InvalidScopeError(`"scope" expected an object with "read" and/or "write" lists, got ${describeValue(scope)}`)
  for (const word of Object.keys(scope)) {
    if (!(SCOPE_WORDS as readonly string[]).includes(word)) throw new InvalidScopeError(`unknown scope word ${JSON.stringify(word.slice(0, 40))} (known: ${SCOPE_WORDS.join(', ')})`)
  }
  const list = (word: 'read' | 'write'): string[] => {
    const value = (scope as Record<string, unknown>)[word]
    if (value === undefined) return []
    if (!Array.isArray(value)) throw new InvalidScopeError(`"${word}" expected a list of namespaces, got ${describeValue(value)}`)
    if (value.length > MAX_GRANT_NAMESPACES) throw new InvalidScopeError(`"${word}" names ${value.length} namespaces, over the limit of ${MAX_GRANT_NAMESPACES}`)
    return [...new Set(value.map((ns, i) => checkNamespace(ns, `${word}[${i}]`)))].sort()
  }
  const write = list('write').filter(ns => ns !== app)
  const read = list('read').filter(ns => ns !== app && !write.includes(ns))
  if (read.length + write.length + 1 > MAX_GRANT_NAMESPACES) throw new InvalidScopeError(`the scope names ${read.length + write.length + 1} namespaces, over the limit of ${MAX_GRANT_NAMESPACES}`)
  return { read, write }
}

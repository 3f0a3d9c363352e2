/**
 * The demo page's service worker: an app-shell cache, so the page a hub served once still loads
 * while that hub is down (the page then opens the space from IndexedDB and publishes when the hub
 * is back). It caches the built page only — `index.html` and the files the build emitted, listed
 * at build time in `SHELL_FILES` — and never a hub API response: spaces, records and blocks are
 * the page's business (IndexedDB), and every other request goes to the network untouched.
 *
 * Scope: the folder `sw.js` is served from (the hub's `/`). Inside it, only a navigation to the
 * folder itself (or `index.html`, with any query such as `?hub=`) and the shell files are answered.
 *
 * Update strategy: the build embeds a hash of every shell file in `SHELL_VERSION`, so a new build is
 * a new `sw.js`; the browser checks it on every navigation (`updateViaCache: 'none'`), installs it
 * (caching the new shell whole, before it takes over), activates it at once and drops older caches.
 * Navigations are network-first with a short timeout, so a reachable hub always serves its current
 * page; the cached page is the fallback. Shell assets have content-hashed names and are cache-first.
 *
 * Built by the plugin in `vite.config.ts`, which strips the types and prepends the two constants.
 */

/** Files of the built page, relative to this script; set by the build. */
declare const SHELL_FILES: string[]
/** Hash of the shell's contents; set by the build. */
declare const SHELL_VERSION: string

// The few service-worker types used here (the DOM lib the demo compiles with lacks them).
interface ExtendableEvent extends Event { waitUntil(promise: Promise<unknown>): void }
interface FetchEvent extends ExtendableEvent { readonly request: Request, respondWith(response: Promise<Response>): void }
interface WorkerScope {
  readonly location: { readonly href: string }
  readonly registration: { readonly scope: string }
  readonly clients: { claim(): Promise<void> }
  skipWaiting(): Promise<void>
  addEventListener(type: 'install' | 'activate', listener: (event: ExtendableEvent) => void): void
  addEventListener(type: 'fetch', listener: (event: FetchEvent) => void): void
}

const worker = self as unknown as WorkerScope
const CACHE_PREFIX = 'userspace-demo-shell-'
const CACHE = CACHE_PREFIX + SHELL_VERSION
/** How long a navigation waits for the hub before the cached page is shown. @default 3 s */
const NAVIGATION_TIMEOUT_MS = 3_000

/** The scope's folder (where a navigation shows the page) and the script's (where the files are). */
const scope = new URL('./', worker.registration.scope)
const base = new URL('./', worker.location.href)
const indexUrl = new URL('index.html', base).href
const shellUrls = new Set(SHELL_FILES.map(file => new URL(file, base).href))

worker.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE)
    // Past the HTTP cache: the shell must be this build's files, all of them, or the install fails.
    await cache.addAll([...shellUrls].map(url => new Request(url, { cache: 'reload' })))
    await worker.skipWaiting()
  })())
})

worker.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(CACHE_PREFIX) && name !== CACHE) await caches.delete(name)
    }
    await worker.clients.claim()
  })())
})

worker.addEventListener('fetch', (event) => {
  const request = event.request
  if (request.method !== 'GET') return
  const url = new URL(request.url)
  url.search = ''
  url.hash = ''
  if (request.mode === 'navigate') {
    if (url.href === scope.href || url.href === indexUrl) event.respondWith(navigation(request))
    return
  }
  if (shellUrls.has(url.href) && url.href !== indexUrl) event.respondWith(cacheFirst(request, url.href))
})

/** The hub's current page when it answers in time, else the cached one. */
async function navigation (request: Request): Promise<Response> {
  try {
    const response = await fetch(request, { signal: AbortSignal.timeout(NAVIGATION_TIMEOUT_MS) })
    // A hub that answers with an error (restarting, misconfigured) is as good as a hub that is down.
    if (response.ok) return response
    return (await cached(indexUrl)) ?? response
  } catch (err) {
    const fallback = await cached(indexUrl)
    if (fallback !== undefined) return fallback
    throw err
  }
}

async function cacheFirst (request: Request, href: string): Promise<Response> {
  return (await cached(href)) ?? fetch(request)
}

async function cached (href: string): Promise<Response | undefined> {
  const cache = await caches.open(CACHE)
  return cache.match(href)
}

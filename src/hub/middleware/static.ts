/**
 * The demo page: files below `demoDir` served at `/`, never a file outside it, and a short note
 * when the demo is not built.
 */
import { readFile, stat } from 'node:fs/promises'
import { resolve, sep } from 'node:path'
import { getMimeType } from 'hono/utils/mime'
import { InvalidInputError } from '../../errors.js'
import { CONNECT_PATH } from '../../protocol.js'
import type { Env } from '../options.js'
import type { MiddlewareHandler } from 'hono'

/** The connect page's file in the built demo, served at CONNECT_PATH. */
const CONNECT_PAGE = '/connect.html'

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>UserSpace hub</title></head>
<body><h1>UserSpace hub</h1>
<p>This hub is running, but the demo page is not built. Build it (it goes to <code>dist/demo</code>) and
restart the hub, or pass <code>demoDir</code>.</p>
<p>API: <code>/routing/v1/ipns/{name}</code>, <code>/ipfs/{cid}</code>, <code>/api/v1/blocks</code>,
<code>/api/v1/events/{name}</code>, <code>/api/v1/address/{address}</code>, <code>/v1/kv</code>.</p>
</body></html>
`

/** Serves files below `dir` (never outside it); `/` is `index.html`. */
export function staticFiles (dir: string | undefined): MiddlewareHandler<Env> {
  const root = dir === undefined ? undefined : resolve(dir)
  return async (c, next) => {
    const path = c.req.path
    if (root === undefined) {
      if (path === '/' || path === '/index.html') return c.html(NOT_BUILT)
      await next(); return
    }
    let relative: string
    try {
      relative = decodeURIComponent(path === '/' ? '/index.html' : path === CONNECT_PATH ? CONNECT_PAGE : path)
    } catch {
      throw new InvalidInputError('malformed path')
    }
    const file = resolve(root, '.' + relative)
    if (relative.includes('\0') || (file !== root && !file.startsWith(root + sep))) {
      await next(); return
    }
    const info = await stat(file).catch(() => undefined)
    if (info === undefined || !info.isFile()) {
      if (path === '/') return c.html(NOT_BUILT)
      await next(); return
    }
    const bytes = await readFile(file)
    const headers: Record<string, string> = {
      'Content-Type': getMimeType(file) ?? 'application/octet-stream',
      'Cache-Control': relative.endsWith('.html') ? 'no-cache' : 'public, max-age=3600',
      'X-Content-Type-Options': 'nosniff'
    }
    // The consent screen must never be framed (a framing page could dress it up: clickjacking).
    if (relative === CONNECT_PAGE) Object.assign(headers, { 'X-Frame-Options': 'DENY', 'Content-Security-Policy': "frame-ancestors 'none'" })
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, headers)
  }
}

/**
 * CORS for every hub route: browsers on any origin may call the API. Preflights are answered here
 * and never reach the rate limiter or a handler.
 */
import type { Env } from '../options.js'
import type { MiddlewareHandler } from 'hono'

/**
 * CORS for browsers on every route: any origin, the methods and headers the API uses, preflights
 * answered here. (hono/cors touches `c.res` and so rebuilds every response; this sets prepared
 * headers only.)
 */
export function corsHeaders (): MiddlewareHandler<Env> {
  const preflight = {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Allow-Methods': 'GET, HEAD, PUT, POST, OPTIONS',
    // The API's headers, plus those the Next.ID KV service allows (its clients may send them).
    'Access-Control-Allow-Headers': 'Content-Type, Accept, Cache-Control, Last-Event-ID, Range, If-None-Match, Authorization, X-Amz-Date, X-Api-Key, X-Amz-Security-Token',
    'Access-Control-Max-Age': '86400'
  }
  // The gateway's headers a browser client reads (trustless gateway and routing specs).
  const expose = 'Content-Length, Content-Type, ETag, Retry-After, X-Ipfs-Roots, X-Ipfs-Path, Content-Range, Content-Location, Content-Disposition, Cache-Control, Expires'
  return async (c, next) => {
    if (c.req.method === 'OPTIONS') return c.body(null, 204, preflight)
    c.header('Access-Control-Allow-Origin', '*')
    c.header('Access-Control-Expose-Headers', expose)
    await next()
    return undefined
  }
}


/**
 * The per-client token bucket in front of every route. Clients are keyed by the socket's address
 * unless the operator passes `clientAddress` (a forwarded-for header is never trusted by default).
 */
import { systemClock } from '../../clock.js'
import { RateLimitError } from '../../errors.js'
import { clientKey } from '../client.js'
import { DEFAULT_RATE_LIMIT } from '../options.js'
import type { Env, HubAppOptions } from '../options.js'
import type { MiddlewareHandler } from 'hono'

/** A token bucket per client address; refusals are 429 with Retry-After. */
export function rateLimiter (options: HubAppOptions): MiddlewareHandler<Env> {
  const limit = options.rateLimit ?? DEFAULT_RATE_LIMIT
  if (limit === 0 || limit.requestsPerSecond <= 0) return async (_c, next) => { await next() }
  const { requestsPerSecond: rate } = limit
  const burst = Math.max(1, limit.burst)
  const nowMs = options.nowMs ?? systemClock
  const buckets = new Map<string, { tokens: number, at: number }>()
  return async (c, next) => {
    if (c.req.method === 'OPTIONS') { await next(); return }
    const now = nowMs()
    if (buckets.size > 50_000) {
      // Forget clients whose buckets have refilled: they are indistinguishable from new ones.
      for (const [key, b] of buckets) if (b.tokens + (now - b.at) * rate / 1000 >= burst) buckets.delete(key)
    }
    const key = clientKey(c, options)
    const bucket = buckets.get(key) ?? { tokens: burst, at: now }
    bucket.tokens = Math.min(burst, bucket.tokens + (now - bucket.at) * rate / 1000)
    bucket.at = now
    if (bucket.tokens < 1) {
      buckets.set(key, bucket)
      const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / rate))
      c.header('Retry-After', String(retryAfter))
      throw new RateLimitError(`too many requests from ${key}; retry in ${retryAfter} s`)
    }
    bucket.tokens -= 1
    buckets.set(key, bucket)
    await next()
  }
}

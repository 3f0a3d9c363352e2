/**
 * Record renewal. Hubs re-announce a record without the key, but cannot extend its validity. When
 * this device opens a space whose record has used up half its lifetime, it signs the same version
 * again with a fresh validity (same sequence and value: IPNS prefers the later validity). An expired
 * record is renewed with a new version instead (the merger marks it, the publisher publishes).
 */
import { createRecord, DEFAULT_RECORD_LIFETIME_MS } from '../store/record.js'
import type { SpaceContext } from './context.js'
import type { AbortOptions } from '../store/interface.js'

/** Re-signs the newest version when its record is past half its lifetime; a failure is an `error` event. */
export async function renewIfAging (ctx: SpaceContext, options?: AbortOptions): Promise<void> {
  const { head } = ctx
  const lifetime = ctx.options.recordLifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS
  if (head.rootCid === null || head.validUntilMs - ctx.now() > lifetime / 2) return
  try {
    const record = await createRecord(ctx.derived.ipnsKey, head.rootCid, head.seq, { lifetimeMs: lifetime, nowMs: ctx.now })
    await ctx.store.putRecord(ctx.name, record, options)
    head.lastRecord = record
    head.validUntilMs = ctx.now() + lifetime
    ctx.log('renewed the record of %s #%d', ctx.name, head.seq)
  } catch (err) {
    ctx.log.error('cannot renew the record of %s #%d: %s', ctx.name, head.seq, (err as Error).message)
    ctx.events.emit('error', err as Error)
  }
}

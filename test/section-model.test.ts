/**
 * A model-based test of the private section: two devices write, publish, merge any earlier version
 * (with and without the bucket that carries its totals), reopen from their last version, and let a
 * version land while a merge reads the tree or while writes arrive, in random order. Every version
 * published must hold exactly what its device held when it was sealed; opened lazily (one bucket
 * decrypted), its entry count, size and highest stamp must equal a count of every entry; and a
 * device's own counts must match its model after every step, without reading anything.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { entrySize, keyText, wins } from '../src/space/entries.js'
import { KEEP_LINES, PrivateSection } from '../src/space/section.js'
import type { KeepLines } from '../src/space/section.js'
import type { CID } from 'multiformats/cid'
import type { Entry } from '../src/space/entries.js'

const NAME = 'k51qzi5uqu5djtge0ytuuxft6nytrerco6wntnw00rdwln2gfimils7jf1wmmb'
const DATA_KEY = new Uint8Array(32).fill(3)
const BUCKET_KEY = new Uint8Array(32).fill(4)

interface Version { count: number, top: CID | null, totals: number | undefined }

function getter (blocks: Map<string, Uint8Array>): (cid: CID) => Promise<Uint8Array> {
  return async (cid) => {
    const bytes = blocks.get(cid.toString())
    if (bytes === undefined) throw new Error(`missing ${cid.toString()}`)
    return bytes
  }
}

/** Sections whose buckets keep their lines as `keep` says (every bucket: so that the model reaches edited lines). */
const sections = (keep: KeepLines) => (): PrivateSection => new PrivateSection(DATA_KEY, BUCKET_KEY, NAME, keep)

type Op =
  | { t: 'write', d: number, k: number, big: boolean, tomb: boolean }
  | { t: 'publish', d: number }
  | { t: 'merge', d: number, v: number }
  | { t: 'reopen', d: number }
  | { t: 'encodeMergeCommit', d: number, v: number }
  | { t: 'encodeWriteCommit', d: number, k: number }
  | { t: 'bulk', d: number, n: number }
  | { t: 'mergeLegacy', d: number, v: number }
  | { t: 'mergeEmpty', d: number }
  | { t: 'encodeUncommitted', d: number }
  | { t: 'commitDuringTree', d: number, v: number }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('write' as const), d: fc.integer({ min: 0, max: 1 }), k: fc.integer({ min: 0, max: 400 }), big: fc.boolean(), tomb: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('publish' as const), d: fc.integer({ min: 0, max: 1 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('merge' as const), d: fc.integer({ min: 0, max: 1 }), v: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('reopen' as const), d: fc.integer({ min: 0, max: 1 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('encodeMergeCommit' as const), d: fc.integer({ min: 0, max: 1 }), v: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('encodeWriteCommit' as const), d: fc.integer({ min: 0, max: 1 }), k: fc.integer({ min: 0, max: 400 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('bulk' as const), d: fc.integer({ min: 0, max: 1 }), n: fc.integer({ min: 10, max: 400 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('mergeLegacy' as const), d: fc.integer({ min: 0, max: 1 }), v: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('mergeEmpty' as const), d: fc.integer({ min: 0, max: 1 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('encodeUncommitted' as const), d: fc.integer({ min: 0, max: 1 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('commitDuringTree' as const), d: fc.integer({ min: 0, max: 1 }), v: fc.nat() }) }
)


type Model = Map<string, Entry>
const plain = (e: Entry): Entry => e.json === undefined ? { stamp: e.stamp, device: e.device } : { stamp: e.stamp, device: e.device, json: e.json }
function modelCounters (m: Model): { size: number, bytes: number, max: number } {
  let bytes = 0; let max = 0
  for (const [k, e] of m) { bytes += entrySize(keyText(k), e); if (e.stamp > max) max = e.stamp }
  return { size: m.size, bytes, max }
}
function entriesOf (s: PrivateSection): Model {
  const out: Model = new Map()
  // internal: read every entry, tombstones included
  for (const [k, slot] of (s as unknown as { all: () => Map<string, Entry> }).all()) out.set(k, plain(slot))
  return out
}

describe('private section: a model of two devices', () => {
  it.each([{ what: 'as by default', keep: KEEP_LINES }, { what: 'every bucket', keep: { buckets: 1, entries: 1 } }])('every version published holds what its device held, and opened lazily gives the counts of a full read (lines kept: $what)', async ({ keep }) => {
    const fresh = sections(keep)
    await fc.assert(fc.asyncProperty(fc.array(opArb, { maxLength: 60, minLength: 10 }), async (ops) => {
      const blocks = new Map<string, Uint8Array>()
      const devs = [fresh(), fresh()]
      const models: Model[] = [new Map(), new Map()]
      const lastPub: Array<(Version & { model: Model }) | undefined> = [undefined, undefined]
      const versions: Array<Version & { model: Model }> = []
      let stamp = 1
      const entry = (d: number, big: boolean, tomb: boolean): Entry => tomb ? { stamp: stamp++, device: `d${d}` } : { stamp: stamp++, device: `d${d}`, json: JSON.stringify(big ? 'x'.repeat(120) + stamp : stamp) }
      const write = (d: number, k: string, e: Entry): void => { (devs[d] as PrivateSection).write(k, e); (models[d] as Model).set(k, plain(e)) }
      const mergeModel = (d: number, m: Model): void => { const mine = models[d] as Model; for (const [k, e] of m) { const o = mine.get(k); if (o === undefined || wins(e, o)) mine.set(k, e) } }
      const publish = async (d: number, sealed: Awaited<ReturnType<PrivateSection['encode']>>, model: Model): Promise<void> => {
        for (const b of sealed.blocks) blocks.set(b.cid.toString(), b.bytes)
        const v = { count: sealed.count, top: sealed.top, totals: sealed.totals, model: new Map(model) }
        lastPub[d] = v
        if (v.count === 0) { expect(model.size).toBe(0); return }
        versions.push(v)
        const eager = fresh()
        await eager.absorb(v.count, v.top, getter(blocks))
        expect(entriesOf(eager)).toEqual(model)
        const lazy = fresh()
        await lazy.absorb(v.count, v.top, getter(blocks), v.totals)
        expect({ size: lazy.size, bytes: lazy.bytes, max: lazy.maxStamp }).toEqual(modelCounters(model))
        for (const [k, e] of model) expect(lazy.entry(k) === undefined ? undefined : plain(lazy.entry(k)!)).toEqual(e)
        expect({ size: lazy.size, bytes: lazy.bytes, max: lazy.maxStamp }).toEqual(modelCounters(model))
      }
      for (const op of ops) {
        const s = devs[op.d] as PrivateSection
        // the earlier version a merge takes, when the step names one and there is one
        const v = 'v' in op && versions.length > 0 ? versions[op.v % versions.length] : undefined
        switch (op.t) {
          case 'write': write(op.d, `key-${op.k}`, entry(op.d, op.big, op.tomb)); break
          case 'bulk': for (let i = 0; i < op.n; i++) write(op.d, `bulk-${op.d}-${stamp}-${i}`, entry(op.d, true, false)); break
          case 'publish': {
            const snap = new Map(models[op.d])
            const sealed = await s.encode()
            sealed.commit()
            await publish(op.d, sealed, snap)
            break
          }
          case 'merge': {
            if (v === undefined) break
            await s.absorb(v.count, v.top, getter(blocks), v.totals)
            mergeModel(op.d, v.model)
            break
          }
          case 'reopen': {
            const last = lastPub[op.d]
            if (last === undefined || s.dirty || last.count === 0) break
            const n = fresh()
            await n.absorb(last.count, last.top, getter(blocks), last.totals)
            devs[op.d] = n
            models[op.d] = new Map(last.model)
            break
          }
          case 'encodeMergeCommit': {
            if (v === undefined) break
            const snap = new Map(models[op.d])
            const sealed = await s.encode()
            await s.absorb(v.count, v.top, getter(blocks), v.totals)
            mergeModel(op.d, v.model)
            sealed.commit()
            await publish(op.d, sealed, snap)
            break
          }
          case 'mergeLegacy': {
            if (v === undefined) break
            await s.absorb(v.count, v.top, getter(blocks))
            mergeModel(op.d, v.model)
            break
          }
          case 'mergeEmpty': {
            await s.absorb(0, null, getter(blocks))
            break
          }
          case 'encodeUncommitted': {
            await s.encode()
            break
          }
          case 'commitDuringTree': {
            if (v === undefined) break
            const snap = new Map(models[op.d])
            const sealed = await s.encode()
            for (const b of sealed.blocks) blocks.set(b.cid.toString(), b.bytes)
            let landed = false
            const read = getter(blocks)
            await s.absorb(v.count, v.top, async cid => { if (!landed) { landed = true; sealed.commit() } return read(cid) }, v.totals)
            if (!landed) sealed.commit()
            mergeModel(op.d, v.model)
            await publish(op.d, sealed, snap)
            break
          }
          case 'encodeWriteCommit': {
            const snap = new Map(models[op.d])
            const p = s.encode()
            write(op.d, `key-${op.k}`, entry(op.d, false, false))
            const sealed = await p
            sealed.commit()
            await publish(op.d, sealed, snap)
            break
          }
        }
        // the device's counters match its model without reading anything
        const d = devs[op.d] as PrivateSection
        const c = modelCounters(models[op.d] as Model)
        expect({ size: d.size, bytes: d.bytes }).toEqual({ size: c.size, bytes: c.bytes })
      }
      // final: every device publishes; its version holds what it holds
      for (let d = 0; d < 2; d++) {
        const s = devs[d] as PrivateSection
        const snap = new Map(models[d])
        const sealed = await s.encode()
        sealed.commit()
        await publish(d, sealed, snap)
        expect(entriesOf(s)).toEqual(models[d])
      }
    }), { numRuns: 60 })
  }, 120_000)
})

/**
 * A bucket's kept lines (entries.ts): a writer rewrites the lines of the keys written since the last
 * publish instead of writing the whole bucket again. Whatever the edits, the text must read back as
 * exactly the entries written whole would, and an edit it cannot make must change nothing.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { bucketLines, bucketLinesText, bucketText, editBucketLines, readBucket } from '../src/space/entries.js'
import type { BucketLines, Entry } from '../src/space/entries.js'

const T0 = 1_780_000_000_000_000

function read (text: string): Map<string, Entry> {
  const out = new Map<string, Entry>()
  readBucket(text, (key, stamp, device, json) => {
    expect(out.has(key)).toBe(false)
    out.set(key, json === undefined ? { stamp, device } : { stamp, device, json })
  })
  return out
}

const entry = (stamp: number, device = 'dev-a', json?: string): Entry => json === undefined ? { stamp, device } : { stamp, device, json }
const copy = (b: BucketLines): BucketLines => ({ ...b, devices: [...b.devices] })

describe('kept bucket lines', () => {
  it('rewrites a key\'s own line, leaving keys that start the same alone', () => {
    const entries: Array<[string, Entry]> = [['a', entry(T0, 'dev-a', '1')], ['ab', entry(T0 + 5, 'dev-a', '2')], ['b', entry(T0 + 9, 'dev-a', '3')]]
    const b = bucketLines(entries)
    expect(editBucketLines(b, 'a', entry(T0 + 20, 'dev-a', '"new"'))).toBe(true)
    expect(read(bucketLinesText(b))).toEqual(new Map([['a', entry(T0 + 20, 'dev-a', '"new"')], ['ab', entry(T0 + 5, 'dev-a', '2')], ['b', entry(T0 + 9, 'dev-a', '3')]]))
    expect(b.lines).toBe(3)
  })

  it('finds keys written quoted (a leading quote, a TAB, an LF) and does not write them twice', () => {
    const keys = ['"quoted', 'tab\there', 'line\nbreak', 'plain']
    const b = bucketLines(keys.map((k, i) => [k, entry(T0 + i, 'dev-a', String(i))]))
    for (const [i, k] of keys.entries()) expect(editBucketLines(b, k, entry(T0 + 100 + i, 'dev-a', `"v${i}"`))).toBe(true)
    const back = read(bucketLinesText(b))
    expect([...back.keys()].sort()).toEqual([...keys].sort())
    for (const [i, k] of keys.entries()) expect(back.get(k)).toEqual(entry(T0 + 100 + i, 'dev-a', `"v${i}"`))
  })

  it('appends a new key, a tombstone and a new device (added to line 0)', () => {
    const b = bucketLines([['x', entry(T0, 'dev-a', '1')], ['y', entry(T0 + 1, 'dev-a', '2')]])
    expect(editBucketLines(b, 'z', entry(T0 + 7, 'dev-b', 'true'))).toBe(true)
    expect(editBucketLines(b, 'x', entry(T0 + 8, 'dev-a'))).toBe(true)
    expect(b.devices).toEqual(['dev-a', 'dev-b'])
    expect(read(bucketLinesText(b, { entries: 3, bytes: 99, highest: T0 + 8 }))).toEqual(new Map([['x', entry(T0 + 8)], ['y', entry(T0 + 1, 'dev-a', '2')], ['z', entry(T0 + 7, 'dev-b', 'true')]]))
  })

  it('refuses, changing nothing, an entry older than the base, a bucket that held no line, and an edit past the line count', () => {
    const b = bucketLines([['x', entry(T0 + 10, 'dev-a', '1')], ['y', entry(T0 + 20, 'dev-a', '2')]])
    const before = copy(b)
    expect(editBucketLines(b, 'z', entry(T0 + 9, 'dev-b', '3'))).toBe(false)
    expect(b).toEqual(before)

    const empty = bucketLines([])
    expect(editBucketLines(empty, 'x', entry(T0, 'dev-a', '1'))).toBe(false)
    expect(empty).toEqual(bucketLines([]))

    // two lines: two edits, then the bucket is written whole (its base moves up to the lowest stamp)
    expect(editBucketLines(b, 'x', entry(T0 + 30, 'dev-a', '4'))).toBe(true)
    expect(editBucketLines(b, 'y', entry(T0 + 40, 'dev-a', '5'))).toBe(true)
    const full = copy(b)
    expect(editBucketLines(b, 'x', entry(T0 + 50, 'dev-a', '6'))).toBe(false)
    expect(b).toEqual(full)
    expect(b.base).toBe(T0 + 10)
    expect(bucketLines([['x', entry(T0 + 30, 'dev-a', '4')], ['y', entry(T0 + 40, 'dev-a', '5')]]).base).toBe(T0 + 30)
  })

  it('any run of edits reads back as the same entries written whole', () => {
    const keyArb = fc.oneof(fc.constantFrom('k', 'k1', 'k10', '"k', 'a\tb', 'a\nb', 'ключ', '𝄞'), fc.string({ minLength: 1, maxLength: 6 }))
    const entryArb = fc.record({
      stamp: fc.integer({ min: T0 - 1_000_000, max: T0 + 1_000_000_000 }),
      device: fc.constantFrom('dev-a', 'dev-b', 'dev-c'),
      json: fc.option(fc.json({ maxDepth: 1 }).map(j => JSON.stringify(JSON.parse(j))), { nil: undefined })
    }).map(e => e.json === undefined ? { stamp: e.stamp, device: e.device } : e)
    fc.assert(fc.property(fc.array(fc.tuple(keyArb, entryArb), { minLength: 1, maxLength: 12 }), fc.array(fc.tuple(keyArb, entryArb), { maxLength: 40 }), (initial, edits) => {
      const model = new Map<string, Entry>(initial)
      let b = bucketLines([...model])
      for (const [key, e] of edits) {
        model.set(key, e)
        // as the section does: an edit refused is a bucket written whole
        if (!editBucketLines(b, key, e)) b = bucketLines([...model])
        expect(b.base).toBeLessThanOrEqual(Math.min(...[...model.values()].map(x => x.stamp)))
      }
      expect(read(bucketLinesText(b))).toEqual(model)
      expect(read(bucketText([...model]))).toEqual(model)
      expect(b.lines).toBe(model.size)
    }), { numRuns: 300 })
  })
})

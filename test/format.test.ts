/**
 * Storage format 2: the sections' stored form round-trips and merges (property tests on the
 * sections themselves), every forged or malformed part of a version is refused with a named error
 * and changes nothing on a device that has the space open, a single-key update adds a few KB of
 * blocks whatever the space size, the profile is plain JSON, and the state under `current` holds
 * the version and none of its history.
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as json from 'multiformats/codecs/json'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { normalizeSignature } from '../src/crypto/eip191.js'
import { deriveKeys, OPEN_MESSAGE } from '../src/crypto/keys.js'
import { PUBLIC_PROFILE_PATH } from '../src/protocol.js'
import { openSpace } from '../src/space/space.js'
import { readPublic } from '../src/space/read-public.js'
import { currentBlocks, currentVersionRequest, decodeCurrent, decodeOwner, decodeRoot, encodeCurrent, encodeOwner, encodeRoot } from '../src/space/root.js'
import { PrivateSection, PublicSection } from '../src/space/section.js'
import { encodeTree, getEach, INDEX_FANOUT, MAX_BUCKETS, treeWidths } from '../src/space/tree.js'
import { associatedData, seal } from '../src/crypto/envelope.js'
import { FORMAT_VERSION } from '../src/crypto/keys.js'
import { utf8 } from '../src/crypto/bytes.js'
import { open as openEnvelope } from '../src/crypto/envelope.js'
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js'
import { bucketTotals } from '../src/space/entries.js'
import { cborBlock, rawBlock } from '../src/store/blocks.js'
import { memoryStore } from '../src/store/memory.js'
import { createRecord, readRecord } from '../src/store/record.js'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import { bytesOf, makeHub, putRecord, upload } from './helpers/hub-app.js'
import { account, KEY_A, KEY_B } from './helpers/signers.js'
import type { Entry } from '../src/space/entries.js'
import type { Current, Root } from '../src/space/root.js'
import type { Space } from '../src/space/types.js'
import type { Block } from '../src/store/interface.js'
import type { MemoryStore } from '../src/store/memory.js'
import type { PrivateKey } from '@libp2p/interface'

const NAME = 'k51qzi5uqu5djtge0ytuuxft6nytrerco6wntnw00rdwln2gfimils7jf1wmmb'
const DATA_KEY = new Uint8Array(32).fill(3)
const BUCKET_KEY = new Uint8Array(32).fill(4)

/** Seals a section into a block map and returns what a current node would say of it. */
async function stored (section: PrivateSection, blocks: Map<string, Uint8Array>): Promise<{ count: number, top: CID | null, totals: number | undefined }> {
  const sealed = await section.encode()
  for (const b of sealed.blocks) blocks.set(b.cid.toString(), b.bytes)
  sealed.commit()
  return { count: sealed.count, top: sealed.top, totals: sealed.totals }
}

function getter (blocks: Map<string, Uint8Array>): (cid: CID) => Promise<Uint8Array> {
  return async (cid) => {
    const bytes = blocks.get(cid.toString())
    if (bytes === undefined) throw new Error(`missing ${cid.toString()}`)
    return bytes
  }
}

const keyArb = fc.oneof(fc.constantFrom('a', 'b', 'k e y', 'ключ', '"quoted"', 'tab\there', 'new\nline', 'back\\slash', '__proto__', '🔑'), fc.string({ minLength: 1, maxLength: 12 }).filter(k => k.isWellFormed()))
const entryArb: fc.Arbitrary<Entry> = fc.record({
  stamp: fc.integer({ min: 1, max: 2 ** 52 }),
  device: fc.constantFrom('d1', 'd2', 'device-three'),
  json: fc.option(fc.jsonValue({ maxDepth: 2 }).map(v => JSON.stringify(v)), { nil: undefined })
}).map(e => e.json === undefined ? { stamp: e.stamp, device: e.device } : e)

/** Two devices' private sections holding the same stored 3 000-key version. */
async function twoOnOneVersion (): Promise<{ a: PrivateSection, b: PrivateSection, blocks: Map<string, Uint8Array> }> {
  const a = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
  for (let i = 0; i < 3000; i++) a.write(`key-${i}`, { stamp: 1, device: 'd1', json: JSON.stringify({ i }) })
  const blocks = new Map<string, Uint8Array>()
  const base = await stored(a, blocks)
  const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
  await b.absorb(base.count, base.top, getter(blocks), base.totals)
  return { a, b, blocks }
}

/** Stores `section`'s next version and reads it into a third, new section. */
async function readBack (section: PrivateSection, blocks: Map<string, Uint8Array>): Promise<PrivateSection> {
  const next = await stored(section, blocks)
  const c = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
  await c.absorb(next.count, next.top, getter(blocks), next.totals)
  return c
}

describe('private section: stored form', () => {
  it('round-trips any entries, tombstones and awkward keys included, through buckets and the index tree', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(keyArb, entryArb), { maxLength: 60 }), fc.integer({ min: 0, max: 3000 }), async (writes, pad) => {
      const a = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
      for (const [k, e] of writes) a.write(k, e)
      // Filler entries grow the bucket count past one, so the tree has levels.
      for (let i = 0; i < pad; i += 40) a.write(`filler-${i}`, { stamp: 1, device: 'd1', json: JSON.stringify('x'.repeat(100)) })
      const blocks = new Map<string, Uint8Array>()
      const { count, top, totals } = await stored(a, blocks)
      const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
      await b.absorb(count, top, getter(blocks), totals)
      expect(b.getAll()).toEqual(a.getAll())
      const plain = (e: Entry | undefined): unknown => e === undefined ? e : { stamp: e.stamp, device: e.device, json: e.json }
      for (const [k] of writes) expect(plain(b.entry(k))).toEqual(plain(a.entry(k)))
      expect(b.bytes).toBe(a.bytes)
      expect(b.dirty).toBe(false)
    }), { numRuns: 40 })
  })

  it('merges to the same map both ways, per key by the higher stamp, whatever the two layouts', async () => {
    const side = fc.array(fc.tuple(keyArb, entryArb), { maxLength: 40 })
    await fc.assert(fc.asyncProperty(side, side, fc.boolean(), async (left, right, grow) => {
      const a = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
      const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
      for (const [k, e] of left) a.write(k, e)
      for (const [k, e] of right) b.write(k, e)
      // One side large enough for several buckets: the merge crosses layouts.
      if (grow) for (let i = 0; i < 200; i++) a.write(`grow-${i}`, { stamp: 5, device: 'd1', json: JSON.stringify('y'.repeat(60)) })
      const blocks = new Map<string, Uint8Array>()
      const sa = await stored(a, blocks)
      const sb = await stored(b, blocks)
      const ab = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
      for (const [k, e] of left) ab.write(k, e)
      if (grow) for (let i = 0; i < 200; i++) ab.write(`grow-${i}`, { stamp: 5, device: 'd1', json: JSON.stringify('y'.repeat(60)) })
      await stored(ab, blocks)
      await ab.absorb(sb.count, sb.top, getter(blocks), sb.totals)
      const ba = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
      for (const [k, e] of right) ba.write(k, e)
      await stored(ba, blocks)
      await ba.absorb(sa.count, sa.top, getter(blocks), sa.totals)
      expect(ab.getAll()).toEqual(ba.getAll())
      // and each merged side re-seals what it holds that the other lacked; a third reads it all
      const merged = await stored(ab, blocks)
      const third = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
      await third.absorb(merged.count, merged.top, getter(blocks), merged.totals)
      expect(third.getAll()).toEqual(ba.getAll())
    }), { numRuns: 30 })
  })

  it('re-seals only the touched bucket and the index nodes on its path', async () => {
    const a = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    for (let i = 0; i < 3000; i++) a.write(`key-${i}`, { stamp: 1, device: 'd1', json: JSON.stringify({ i, label: `value number ${i}` }) })
    const blocks = new Map<string, Uint8Array>()
    const first = await stored(a, blocks)
    expect(first.count).toBeGreaterThan(16)
    a.write('key-7', { stamp: 2, device: 'd1', json: '"changed"' })
    const sealed = await a.encode()
    expect(sealed.blocks.filter(b => b.cid.code === raw.code)).toHaveLength(1)
    expect(sealed.blocks.filter(b => b.cid.code === dagCbor.code)).toHaveLength(treeWidths(first.count).length - 1)
  })

  it('a version sealed before a merge and stored after it changes nothing: the next version holds both sides', async () => {
    const { a, b, blocks } = await twoOnOneVersion()
    b.write('key-5', { stamp: 2, device: 'd2', json: '"from b"' })
    const fromB = await stored(b, blocks)
    a.write('key-9', { stamp: 3, device: 'd1', json: '"from a"' })
    const sealed = await a.encode() // a publish under way…
    await a.absorb(fromB.count, fromB.top, getter(blocks), fromB.totals) // …when b's version is merged
    sealed.commit() // the publish lands: its tree no longer describes what a holds
    const c = await readBack(a, blocks)
    expect(c.get('key-5')).toBe('from b')
    expect(c.get('key-9')).toBe('from a')
    expect(c.size).toBe(3000)
  })

  it('a version stored while a merge reads the tree does not mix into the tree being read', async () => {
    const { a, b, blocks } = await twoOnOneVersion()
    for (let i = 0; i < 3000; i += 100) b.write(`key-${i}`, { stamp: 2, device: 'd2', json: '"from b"' })
    const fromB = await stored(b, blocks)
    for (let i = 50; i < 3000; i += 100) a.write(`key-${i}`, { stamp: 3, device: 'd1', json: '"from a"' })
    const sealed = await a.encode()
    for (const block of sealed.blocks) blocks.set(block.cid.toString(), block.bytes)
    const read = getter(blocks)
    let landed = false
    // a's publish lands while the merge waits for the first index node it asked for
    await a.absorb(fromB.count, fromB.top, async cid => { if (!landed) { landed = true; sealed.commit() } return read(cid) }, fromB.totals)
    const c = await readBack(a, blocks)
    for (let i = 0; i < 3000; i += 50) expect(c.get(`key-${i}`)).toBe(i % 100 === 0 ? 'from b' : 'from a')
    expect(c.getAll()).toEqual(a.getAll())
  })

  it('a version stored while a merge fetches the buckets keeps its write in the next version', async () => {
    const { a, b, blocks } = await twoOnOneVersion()
    b.write('key-5', { stamp: 2, device: 'd2', json: '"from b"' })
    const fromB = await stored(b, blocks)
    a.write('key-9', { stamp: 3, device: 'd1', json: '"from a"' })
    const sealed = await a.encode()
    for (const block of sealed.blocks) blocks.set(block.cid.toString(), block.bytes)
    const read = getter(blocks)
    let landed = false
    // a's publish lands once the merge has read the tree and asks for the first bucket
    await a.absorb(fromB.count, fromB.top, async cid => { if (cid.code === raw.code && !landed) { landed = true; sealed.commit() } return await read(cid) }, fromB.totals)
    expect(landed).toBe(true)
    const c = await readBack(a, blocks)
    expect(c.get('key-9')).toBe('from a')
    expect(c.get('key-5')).toBe('from b')
  })

  it('lays out 1 to MAX_BUCKETS buckets under index nodes of INDEX_FANOUT links', () => {
    expect(treeWidths(1)).toEqual([1])
    expect(treeWidths(2)).toEqual([1, 2])
    expect(treeWidths(INDEX_FANOUT * 2)).toEqual([1, 2, INDEX_FANOUT * 2])
    expect(treeWidths(MAX_BUCKETS).at(-1)).toBe(MAX_BUCKETS)
    for (const bad of [0, 3, 6, MAX_BUCKETS * 2]) expect(() => treeWidths(bad)).toThrow(RangeError)
  })
})

/** Seals hand-written bucket texts as this space's buckets 0…n-1 (n a power of two) under their index tree. */
async function sealTexts (texts: string[], blocks: Map<string, Uint8Array>): Promise<{ count: number, top: CID }> {
  const count = texts.length
  const buckets = await Promise.all(texts.map(async (t, i) => rawBlock(seal(DATA_KEY, associatedData(FORMAT_VERSION, NAME, `bucket ${i}/${count}`), utf8(t)))))
  for (const b of buckets) blocks.set(b.cid.toString(), b.bytes)
  const tree = await encodeTree(buckets.map(b => b.cid), [], undefined)
  for (const b of tree.blocks) blocks.set(b.cid.toString(), b.bytes)
  return { count, top: (tree.levels[0] as CID[])[0] as CID }
}

describe('reading blocks for a version', () => {
  it('getEach keeps the order of its CIDs, blocks at hand and blocks waited for alike, and fails with the getter\'s error', async () => {
    const blocks = await Promise.all(['a', 'b', 'c', 'd'].map(async t => rawBlock(utf8(t))))
    const cids = blocks.map(b => b.cid)
    const get = (cid: CID): Uint8Array | Promise<Uint8Array> => {
      const n = cids.findIndex(c => c.equals(cid))
      const bytes = blocks[n]!.bytes
      return n % 2 === 0 ? bytes : new Promise(resolve => setTimeout(() => { resolve(bytes) }, 5 - n))
    }
    expect((await getEach(cids, get)).map(b => new TextDecoder().decode(b))).toEqual(['a', 'b', 'c', 'd'])
    const thrown = new Error('no such block')
    await expect(getEach(cids, cid => { if (cid.equals(cids[2]!)) throw thrown; return get(cid) })).rejects.toBe(thrown)
    await expect(getEach(cids, async cid => { if (cid.equals(cids[1]!)) throw thrown; return await get(cid) })).rejects.toBe(thrown)
  })
})

describe('private bucket text: every line is checked', () => {
  // base stamp 1 000 000; entries at base + 5 (device 0, index left out) and base + 36 ("10" in base 36, device 1)
  const good = '[1000000,"d1","d2"]\na\t5\t1\n"\\"quoted\\tkey"\t10:1'
  it('reads a well-formed bucket: raw and quoted keys, stamps from the base in base 36, a tombstone, two devices', async () => {
    const blocks = new Map<string, Uint8Array>()
    const { count, top } = await sealTexts([good], blocks)
    const s = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await s.absorb(count, top, getter(blocks))
    expect(s.getAll()).toEqual({ a: 1 })
    expect(s.entry('a')).toMatchObject({ stamp: 1_000_005, device: 'd1', json: '1' })
    expect(s.entry('"quoted\tkey')).toMatchObject({ stamp: 1_000_036, device: 'd2', json: undefined })
    expect(s.size).toBe(2)
    expect(s.maxStamp).toBe(1_000_036)
  })

  it('writes keys raw unless they start with a quote or hold a TAB or LF, and stamps from the lowest one', async () => {
    const a = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    const keys = ['plain', 'with "inner" quotes', '"leading', 'tab\there', 'line\nbreak', 'back\\slash', 'ключ 🔑']
    keys.forEach((k, i) => a.write(k, { stamp: 1_764_000_000_000_000 + i * 1000, device: 'd1', json: String(i) }))
    const blocks = new Map<string, Uint8Array>()
    const { count, top, totals } = await stored(a, blocks)
    expect(count).toBe(1)
    // a single bucket carries no totals: an open reads it whole anyway
    expect(totals).toBeUndefined()
    const { open: openEnvelope } = await import('../src/crypto/envelope.js')
    const text = new TextDecoder().decode(openEnvelope(DATA_KEY, associatedData(FORMAT_VERSION, NAME, 'bucket 0/1'), blocks.get(top!.toString())!))
    const lines = text.split('\n')
    expect(JSON.parse(lines[0]!)).toEqual([1_764_000_000_000_000, 'd1'])
    expect(lines.slice(1).map(l => l.split('\t')[0]).sort()).toEqual(['"\\"leading"', '"line\\nbreak"', '"tab\\there"', 'back\\slash', 'plain', 'with "inner" quotes', 'ключ 🔑'].sort())
    expect(lines.slice(1).map(l => l.split('\t')[1]).sort()).toEqual(['0', 'rs', '1jk', '2bc', '334', '3uw', '4mo'].sort())
    const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await b.absorb(count, top, getter(blocks))
    expect(b.getAll()).toEqual(a.getAll())
  })

  it.each([
    ['no device table', 'a\t5\t1'],
    ['a device table that is not an array of strings after the base', '[0,1]\na\t5\t1'],
    ['a device table without a base stamp', '["d1"]\na\t5\t1'],
    ['a negative base stamp', '[-1,"d1"]\na\t5\t1'],
    ['a base stamp that is not an integer', '[1.5,"d1"]\na\t5\t1'],
    ['a line without tabs', '[0,"d1"]\na'],
    ['a line that is a key and a TAB', '[0,"d1"]\na\t'],
    ['a stamp with a leading zero', '[0,"d1"]\na\t05\t1'],
    ['a stamp with a capital letter (not base 36 as written)', '[0,"d1"]\na\t5Z\t1'],
    ['a stamp with a sign', '[0,"d1"]\na\t-5\t1'],
    ['a stamp of twelve base-36 digits', '[0,"d1"]\na\t100000000000\t1'],
    ['a stamp past the safe integers (base + delta)', '[9007199254740991,"d1"]\na\t1\t1'],
    ['an empty stamp', '[0,"d1"]\na\t\t1'],
    ['an empty stamp before a device index', '[0,"d1","d2"]\na\t:1\t1'],
    ['a device index past the table', '[0,"d1"]\na\t5:1\t1'],
    ['a device index with a leading zero', '[0,"d1","d2"]\na\t5:01\t1'],
    ['device 0 written out (a writer leaves it out)', '[0,"d1"]\na\t5:0\t1'],
    ['an empty device index', '[0,"d1"]\na\t5:\t1'],
    ['an empty value (neither a value nor a tombstone)', '[0,"d1"]\na\t5\t'],
    ['a quoted key that is not a JSON string', '[0,"d1"]\n"a\t5\t1'],
    ['an empty key', '[0,"d1"]\n\t5\t1'],
    ['an empty quoted key', '[0,"d1"]\n""\t5\t1'],
    ['a quoted key with an unescaped quote', '[0,"d1"]\n"a"b"\t5\t1'],
    ['an empty line', '[0,"d1"]\na\t5\t1\n\nb\t5\t1'],
    ['totals of two numbers', '[0,"d1",[1,2]]\na\t5\t1'],
    ['negative totals', '[0,"d1",[1,-2,3]]\na\t5\t1'],
    ['totals that are not integers', '[0,"d1",[1,2.5,3]]\na\t5\t1'],
    ['totals before a device id', '[0,[1,2,3],"d1"]\na\t5\t1']
  ])('refuses a bucket with %s: FormatError, on open and on merge, and changes nothing', async (_what, text) => {
    const blocks = new Map<string, Uint8Array>()
    const { count, top } = await sealTexts([text], blocks)
    const empty = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await expect(empty.absorb(count, top, getter(blocks))).rejects.toMatchObject({ name: 'FormatError' })
    expect(empty.size).toBe(0)
    const held = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    held.write('mine', { stamp: 1, device: 'd9', json: '"kept"' })
    await expect(held.absorb(count, top, getter(blocks))).rejects.toMatchObject({ name: 'FormatError' })
    expect(held.getAll()).toEqual({ mine: 'kept' })
    expect(held.dirty).toBe(true)
  })

  it('a key written in two buckets (a faulty writer holding the keys) is a FormatError once both are read, and changes nothing', async () => {
    const blocks = new Map<string, Uint8Array>()
    const { count, top } = await sealTexts(['[0,"d1"]\na\t5\t1', '[0,"d1"]\na\t6\t2'], blocks)
    // An open checks every line but keeps no per-key map: the repeat shows when the buckets are read.
    const opened = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await opened.absorb(count, top, getter(blocks))
    expect(() => opened.getAll()).toThrow(expect.objectContaining({ name: 'FormatError' }))
    expect(() => opened.keys()).toThrow(expect.objectContaining({ name: 'FormatError' }))
    // A merge reads every bucket it takes before it changes anything.
    const held = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    held.write('mine', { stamp: 1, device: 'd9', json: '"kept"' })
    await expect(held.absorb(count, top, getter(blocks))).rejects.toMatchObject({ name: 'FormatError' })
    expect(held.getAll()).toEqual({ mine: 'kept' })
  })

  it('an opened section finds a key by its hash, reads only that bucket, and lists keys for a listener', async () => {
    const a = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    for (let i = 0; i < 2000; i++) a.write(`key-${i}`, { stamp: i + 1, device: 'd1', json: String(i) })
    const blocks = new Map<string, Uint8Array>()
    const { count, top, totals } = await stored(a, blocks)
    expect(count).toBeGreaterThan(4)
    const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    const result = await b.absorb(count, top, getter(blocks), totals)
    expect(b.size).toBe(2000)
    expect(b.maxStamp).toBe(2000)
    expect(b.get('key-1234')).toBe(1234)
    expect(b.get('absent')).toBeUndefined()
    expect(b.has('key-7')).toBe(true)
    // a write to a key of an unread bucket keeps that bucket's other entries
    b.write('key-9', { stamp: 5000, device: 'd2', json: '"new"' })
    b.write('brand-new', { stamp: 5001, device: 'd2', json: '1' })
    expect(b.size).toBe(2001)
    expect([...result.changed].sort()).toEqual([...a.keys()].sort())
    const c = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    const next = await stored(b, blocks)
    await c.absorb(next.count, next.top, getter(blocks), next.totals)
    expect(c.getAll()).toEqual({ ...a.getAll(), 'key-9': 'new', 'brand-new': 1 })
  })

  it('counts an entry\'s size the same whether the bucket was read in full or only scanned on open', async () => {
    const a = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    a.write('a', { stamp: 1234, device: 'dev', json: '{"x":[1,2]}' })
    a.write('b"q', { stamp: 7, device: 'other', json: undefined })
    const blocks = new Map<string, Uint8Array>()
    const { count, top, totals } = await stored(a, blocks)
    const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await b.absorb(count, top, getter(blocks), totals)
    expect(b.bytes).toBe(a.bytes)
    b.getAll()
    expect(b.bytes).toBe(a.bytes)
  })
})

/** The bucket `key` is placed in under `count` buckets (format 2: HMAC-SHA256 of the key, first 4 bytes). */
function bucketOf (key: string, count: number): number {
  const mac = hmac(nobleSha256, BUCKET_KEY, utf8(key))
  return new DataView(mac.buffer, mac.byteOffset).getUint32(0) & (count - 1)
}

describe('an open decrypts one bucket: the one that carries the totals', () => {
  async function twoThousand (): Promise<{ a: PrivateSection, blocks: Map<string, Uint8Array>, count: number, top: CID | null, totals: number | undefined }> {
    const a = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    for (let i = 0; i < 2000; i++) a.write(`key-${i}`, { stamp: i + 1, device: 'd1', json: String(i) })
    const blocks = new Map<string, Uint8Array>()
    return { a, blocks, ...await stored(a, blocks) }
  }

  /**
   * A getter of `blocks` that answers, for the last bucket of `a`'s layout, a bucket sealed for the
   * first place (what a faulty writer holding the keys could link): the victim's index and the getter.
   */
  function forgingLast (a: PrivateSection, blocks: Map<string, Uint8Array>, count: number): { victim: number, get: (cid: CID) => Promise<Uint8Array> } {
    const victim = count - 1
    const forged = seal(DATA_KEY, associatedData(FORMAT_VERSION, NAME, `bucket 0/${count}`), utf8('[0]'))
    const read = getter(blocks)
    return { victim, get: async cid => cid.equals(a.cids[victim]) ? forged : await read(cid) }
  }

  it('the other buckets stay sealed until an entry of theirs is needed: one that fails then is refused each time it is needed, and changes nothing', async () => {
    const { a, blocks, count, top, totals } = await twoThousand()
    expect(count).toBeGreaterThan(4)
    expect(totals).toBe(0)
    // A faulty writer holding the keys linked, at the last place, a bucket sealed for the first.
    const { victim, get } = forgingLast(a, blocks, count)
    // Read whole, as without totals, the open fails…
    await expect(new PrivateSection(DATA_KEY, BUCKET_KEY, NAME).absorb(count, top, get)).rejects.toMatchObject({ name: 'IntegrityError' })
    // …with them it succeeds, and the totals stand for the sealed buckets.
    const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await b.absorb(count, top, get, totals)
    expect(b.size).toBe(2000)
    expect(b.bytes).toBe(a.bytes)
    expect(b.maxStamp).toBe(2000)
    const keys = [...a.keys()]
    const inVictim = keys.find(k => bucketOf(k, count) === victim) as string
    const elsewhere = keys.find(k => bucketOf(k, count) !== victim) as string
    expect(inVictim).toBeDefined()
    expect(b.get(elsewhere)).toBe(a.get(elsewhere))
    for (let attempt = 0; attempt < 2; attempt++) expect(() => b.get(inVictim)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    expect(() => b.write(inVictim, { stamp: 9999, device: 'd2', json: '1' })).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    expect(() => b.getAll()).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    expect(b.dirty).toBe(false)
    expect(b.size).toBe(2000)
  })

  it('the totals a version carries are its entries\' own, after an open that read one bucket and writes to others', async () => {
    const { blocks, count, top, totals } = await twoThousand()
    const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await b.absorb(count, top, getter(blocks), totals)
    b.write('key-9', { stamp: 5000, device: 'd2', json: '"new"' })
    b.write('brand-new', { stamp: 5001, device: 'd2', json: '1' })
    b.write('key-10', { stamp: 5002, device: 'd2' })
    const next = await stored(b, blocks)
    expect(next.totals).toBeDefined()
    expect(next.totals).toBe(bucketOf('key-9', count))
    const at = next.totals as number
    const text = new TextDecoder().decode(openEnvelope(DATA_KEY, associatedData(FORMAT_VERSION, NAME, `bucket ${at}/${next.count}`), blocks.get(b.cids[at]!.toString())!))
    // Counted again from every line: a section read whole, without the totals.
    const whole = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await whole.absorb(next.count, next.top, getter(blocks))
    expect(whole.size).toBe(2001)
    expect(bucketTotals(text)).toEqual({ entries: whole.size, bytes: whole.bytes, highest: whole.maxStamp })
    expect(whole.maxStamp).toBe(5002)
    // and a bucket sealed in that version other than the first carries none
    expect(bucketTotals('[0,"d1"]\na\t5\t1')).toBeUndefined()
  })

  it('a merged version names the bucket that carries its totals: the next version that changes no bucket names it too', async () => {
    const { a, blocks, count, top, totals } = await twoThousand()
    // the writer's own next version that changes no bucket names the same one
    expect((await a.encode()).totals).toBe(totals)
    const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await b.absorb(count, top, getter(blocks), totals)
    const key = [...a.keys()].find(k => bucketOf(k, count) !== totals) as string
    a.write(key, { stamp: 9000, device: 'd1', json: '"later"' })
    const v2 = await stored(a, blocks)
    expect(v2.totals).toBe(bucketOf(key, count))
    await b.absorb(v2.count, v2.top, getter(blocks), v2.totals)
    const unchanged = await b.encode()
    expect(unchanged.top?.equals(v2.top)).toBe(true)
    expect(unchanged.totals).toBe(v2.totals)
  })

  it('a bucket named for the totals that carries none, or with a malformed line, is a FormatError on open', async () => {
    for (const first of ['[0,"d1"]\na\t5\t1', '[0,"d1",[2,40,5]]\na\t05\t1']) {
      const blocks = new Map<string, Uint8Array>()
      const { count, top } = await sealTexts([first, '[0,"d1"]\nb\t5\t2'], blocks)
      const s = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
      await expect(s.absorb(count, top, getter(blocks), 0)).rejects.toMatchObject({ name: 'FormatError' })
      expect(s.size).toBe(0)
    }
  })

  it.each([
    ['too many entries, too large a size, too high a stamp', '[0,"d1",[7,100000,99]]\na\t5\t1'],
    ['too few entries', '[0,"d1",[1,1000,9]]\na\t5\t1'],
    ['the right count, the wrong size and stamp', '[0,"d1",[2,1000,9]]\na\t5\t1'],
    ['the right count, a size past every limit', '[0,"d1",[2,4000000000,9]]\na\t5\t1']
  ])('totals with %s (a faulty writer) give way to the entries once every bucket is read', async (_what, first) => {
    const blocks = new Map<string, Uint8Array>()
    const { count, top } = await sealTexts([first, '[0,"d1"]\nb\t6\t2'], blocks)
    const whole = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await whole.absorb(count, top, getter(blocks))
    const s = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await s.absorb(count, top, getter(blocks), 0)
    expect(s.getAll()).toEqual({ a: 1, b: 2 })
    expect({ size: s.size, bytes: s.bytes, highest: s.maxStamp }).toEqual({ size: 2, bytes: whole.bytes, highest: 6 })
    // and the next version carries the counted ones
    s.write('c', { stamp: 7, device: 'd1', json: '3' })
    const next = await stored(s, blocks)
    const back = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await back.absorb(next.count, next.top, getter(blocks), next.totals)
    expect({ size: back.size, bytes: back.bytes, highest: back.maxStamp }).toEqual({ size: 3, bytes: s.bytes, highest: 7 })
  })

  it('totals below what their own bucket holds: FormatError on open', async () => {
    for (const first of ['[0,"d1",[0,1000,9]]\na\t5\t1', '[0,"d1",[5,1,9]]\na\t5\t1', '[0,"d1",[5,1000,4]]\na\t5\t1']) {
      const blocks = new Map<string, Uint8Array>()
      const { count, top } = await sealTexts([first, '[0,"d1"]\nb\t6\t2'], blocks)
      const s = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
      await expect(s.absorb(count, top, getter(blocks), 0)).rejects.toMatchObject({ name: 'FormatError' })
      expect(s.size).toBe(0)
    }
  })

  it('totals of no entries over buckets that hold some: no version drops them', async () => {
    const blocks = new Map<string, Uint8Array>()
    const zero = await sealTexts(['[0,"d1",[0,0,0]]', '[0,"d1"]\na\t5\t1\nb\t6\t2'], blocks)
    const t = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await t.absorb(zero.count, zero.top, getter(blocks), 0)
    expect(t.size).toBe(0)
    // a version that changes only the public section keeps the private tree as it is
    const unchanged = await t.encode()
    expect(unchanged.count).toBe(2)
    expect(unchanged.top?.equals(zero.top)).toBe(true)
    expect(unchanged.totals).toBe(0)
    t.write('c', { stamp: 7, device: 'd1', json: '3' })
    const next = await stored(t, blocks)
    const back = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    await back.absorb(next.count, next.top, getter(blocks), next.totals)
    expect(back.getAll()).toEqual({ a: 1, b: 2, c: 3 })
  })

  it('the keys listed for a listener leave out a sealed bucket that fails; reading a key of it fails', async () => {
    const { a, blocks, count, top, totals } = await twoThousand()
    const { victim, get } = forgingLast(a, blocks, count)
    const b = new PrivateSection(DATA_KEY, BUCKET_KEY, NAME)
    const result = await b.absorb(count, top, get, totals)
    const listed = new Set(result.changed)
    const keys = [...a.keys()]
    expect(listed).toEqual(new Set(keys.filter(k => bucketOf(k, count) !== victim)))
    expect(() => b.get(keys.find(k => bucketOf(k, count) === victim) as string)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
  })
})

describe('public section: stored form', () => {
  it('round-trips through a plain JSON profile and its clock, and merges by stamp', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(keyArb, entryArb), { maxLength: 30 }), fc.array(fc.tuple(keyArb, entryArb), { maxLength: 30 }), async (left, right) => {
      const encodeNow = (writes: Array<[string, Entry]>): PublicSection => {
        const s = new PublicSection()
        for (const [k, e] of writes) s.write(k, e)
        return s
      }
      const a = encodeNow(left)
      const b = encodeNow(right)
      await Promise.all([a.encode(), b.encode()]).then(([ea, eb]) => {
        const ab = encodeNow(left)
        const ba = encodeNow(right)
        if (eb !== null) ab.absorb(eb.profile, eb.clock)
        if (ea !== null) ba.absorb(ea.profile, ea.clock)
        expect(ab.getAll()).toEqual(ba.getAll())
        if (ea !== null) {
          // the profile is exactly what json.encode (and so @helia/json) writes for the live keys
          expect(json.encode(json.decode(ea.profile.bytes))).toEqual(ea.profile.bytes)
          expect(json.decode(ea.profile.bytes)).toEqual(a.getAll())
        }
      })
    }), { numRuns: 60 })
  })
})

/** The IPNS key a wallet's open signature derives, as openSpace derives it. */
async function ipnsKeyOf (walletKey: string): Promise<PrivateKey> {
  const wallet = account(walletKey)
  const signature = normalizeSignature(OPEN_MESSAGE, await wallet.signMessage({ message: OPEN_MESSAGE }), wallet.address)
  return await generateKeyPairFromSeed('Ed25519', deriveKeys(signature).ipnsSeed)
}

interface Published { store: MemoryStore, space: Space, key: PrivateKey, root: Root, current: Current }

/** Wallet A's space with `keys` private keys and a public profile, published; the space stays open. */
async function published (keys: number): Promise<Published> {
  const store = memoryStore()
  const space = await openSpace({ signer: account(KEY_A), store })
  const patch: Record<string, string> = {}
  for (let i = 0; i < keys; i++) patch[`key-${i}`] = `value ${i} `.repeat(8)
  await space.patch(patch)
  await space.public.set('nick', 'alice')
  await space.flush()
  const root = decodeRoot(store.blocks.get(space.root!.toString())!)
  return { store, space, key: await ipnsKeyOf(KEY_A), root, current: decodeCurrent(store.blocks.get(root.current.toString())!) }
}

/** Publishes the next version of `p` with the state `current` (plus `extra` blocks). */
async function forge (p: Published, current: Current, extra: Block[] = []): Promise<void> {
  const node = await encodeCurrent(current)
  const root = await encodeRoot({ ...p.root, sequence: p.root.sequence + 1, parents: [p.space.root!], public: current.public, current: node.cid })
  await p.store.putBlocks([...extra, node, root])
  await p.store.putRecord(p.space.name, await createRecord(p.key, root.cid, p.root.sequence + 1))
}

/** The forged version is refused with `name` by the open device (which keeps its map) and by a new one. */
async function expectRefused (p: Published, name: string): Promise<void> {
  const before = await p.space.getAll()
  const sequence = p.space.sequence
  await expect(p.space.refresh()).rejects.toMatchObject({ name })
  expect(await p.space.getAll()).toEqual(before)
  expect(p.space.sequence).toBe(sequence)
  await expect(openSpace({ signer: account(KEY_A), store: p.store })).rejects.toMatchObject({ name })
}

async function jsonBlock (bytes: Uint8Array): Promise<Block> {
  return { cid: CID.createV1(json.code, await sha256.digest(bytes)), bytes }
}

describe('a forged or malformed version is refused and changes nothing', () => {
  it('a bucket of another space linked into the index: IntegrityError (associated data names the space)', async () => {
    const p = await published(5)
    const other = await openSpace({ signer: account(KEY_B), store: p.store })
    await other.set('k', 'theirs')
    await other.flush()
    const theirs = decodeCurrent(p.store.blocks.get(decodeRoot(p.store.blocks.get(other.root!.toString())!).current.toString())!)
    await forge(p, { ...p.current, buckets: 1, private: theirs.private })
    await expectRefused(p, 'IntegrityError')
  })

  it('two buckets of this space swapped in an index node: IntegrityError (associated data names the place)', async () => {
    const p = await published(50)
    expect(p.current.buckets).toBe(INDEX_FANOUT)
    const links = dagCbor.decode(p.store.blocks.get(p.current.private!.toString())!) as CID[]
    const swapped = await cborBlock([links[1], links[0], ...links.slice(2)])
    await forge(p, { ...p.current, private: swapped.cid }, [swapped])
    await expectRefused(p, 'IntegrityError')
  })

  it('an index node with a link too few: FormatError', async () => {
    const p = await published(50)
    const links = dagCbor.decode(p.store.blocks.get(p.current.private!.toString())!) as CID[]
    const short = await cborBlock(links.slice(1))
    await forge(p, { ...p.current, private: short.cid }, [short])
    await expectRefused(p, 'FormatError')
  })

  it('a tree one level deeper or shallower than its bucket count: FormatError', async () => {
    const p = await published(50)
    expect(p.current.buckets).toBe(INDEX_FANOUT)
    const links = dagCbor.decode(p.store.blocks.get(p.current.private!.toString())!) as CID[]
    // an index node where a bucket belongs
    const deeper = await cborBlock([p.current.private, ...links.slice(1)])
    await forge(p, { ...p.current, private: deeper.cid }, [deeper])
    await expectRefused(p, 'FormatError')
    // the same tree announced with more buckets than it has
    const q = await published(50)
    await forge(q, { ...q.current, buckets: INDEX_FANOUT * INDEX_FANOUT })
    await expectRefused(q, 'FormatError')
  })

  it('a public profile that is not JSON: FormatError', async () => {
    const p = await published(3)
    const bad = await jsonBlock(new TextEncoder().encode('{"nick": "alice",'))
    await forge(p, { ...p.current, public: bad.cid }, [bad])
    await expectRefused(p, 'FormatError')
    await expect(readPublic({ name: p.space.name, store: p.store })).rejects.toMatchObject({ name: 'FormatError' })
  })

  it('a root whose public link is not its current node\'s: FormatError', async () => {
    const p = await published(3)
    const other = await jsonBlock(json.encode({ nick: 'mallory' }))
    const root = await encodeRoot({ ...p.root, sequence: p.root.sequence + 1, parents: [p.space.root!], public: other.cid })
    await p.store.putBlocks([other, root])
    await p.store.putRecord(p.space.name, await createRecord(p.key, root.cid, p.root.sequence + 1))
    await expectRefused(p, 'FormatError')
    await expect(readPublic({ name: p.space.name, store: p.store })).rejects.toMatchObject({ name: 'FormatError' })
  })

  it('a public profile that is JSON but not an object: FormatError', async () => {
    const p = await published(3)
    const bad = await jsonBlock(json.encode(['alice']))
    await forge(p, { ...p.current, public: bad.cid }, [bad])
    await expectRefused(p, 'FormatError')
  })

  it('a clock block that disagrees with the profile: FormatError, either way round', async () => {
    const p = await published(3)
    const clock = dagCbor.decode(p.store.blocks.get(p.current.clock!.toString())!) as { version: number, entries: Record<string, unknown[]> }
    // the profile gains a key its clock does not stamp
    const more = await jsonBlock(json.encode({ nick: 'alice', extra: 1 }))
    await forge(p, { ...p.current, public: more.cid }, [more])
    await expectRefused(p, 'FormatError')
    // the clock says a key is live that the profile lacks
    const q = await published(3)
    const lying = await cborBlock({ version: 2, entries: { ...clock.entries, ghost: [1, 'd', true] } })
    await forge(q, { ...q.current, clock: lying.cid }, [lying])
    await expectRefused(q, 'FormatError')
    await expect(readPublic({ name: q.space.name, store: q.store })).rejects.toMatchObject({ name: 'FormatError' })
  })

  it('an owner binding block of another shape: FormatError', async () => {
    const ok = { address: '0x0000000000000000000000000000000000000001', issuedAt: 5, signature: new Uint8Array(65) }
    expect(decodeOwner((await encodeOwner(ok)).bytes)).toEqual(ok)
    for (const bad of [[], 'owner', { ...ok, address: 1 }, { ...ok, signature: 'sig' }, { ...ok, issuedAt: -1 }, { ...ok, issuedAt: 1.5 }]) {
      expect(() => decodeOwner(dagCbor.encode(bad))).toThrow(expect.objectContaining({ name: 'FormatError' }))
    }
    expect(() => decodeOwner(new Uint8Array([0xff]))).toThrow(expect.objectContaining({ name: 'FormatError' }))
  })

  it('a current node whose links have the wrong codecs, or a profile without its clock, or no owner binding: FormatError', async () => {
    const bucket = (await rawBlock(new Uint8Array(8))).cid
    const profile = (await jsonBlock(json.encode({}))).cid
    const clock = (await cborBlock({ version: 2, entries: {} })).cid
    const owner = (await encodeOwner({ address: '0x0000000000000000000000000000000000000001', signature: new Uint8Array(65) })).cid
    const ok: Current = { buckets: 1, private: bucket, public: profile, clock, owner }
    expect(decodeCurrent((await encodeCurrent(ok)).bytes)).toEqual(ok)
    const four: Current = { buckets: 4, private: clock, public: profile, clock, owner, totals: 3 }
    expect(decodeCurrent((await encodeCurrent(four)).bytes)).toEqual(four)
    expect([...(await encodeCurrent(four)).bytes]).toEqual([...dagCbor.encode(four)])
    for (const bad of [
      { ...ok, private: clock },
      { ...ok, buckets: 2 },
      { ...ok, buckets: 3 },
      { ...ok, buckets: 0 },
      { ...ok, public: clock },
      { ...ok, clock: null },
      { ...ok, public: null },
      // the owner binding: a dag-cbor link, always there
      (({ owner: _, ...rest }) => rest)(ok),
      { ...ok, owner: null },
      { ...ok, owner: bucket },
      // totals name a bucket of 2 or more
      { ...ok, totals: 0 },
      { ...ok, private: clock, buckets: 4, totals: 4 },
      { ...ok, private: clock, buckets: 4, totals: -1 },
      { ...ok, private: clock, buckets: 4, totals: 1.5 },
      { ...ok, private: clock, buckets: 4, totals: '0' }
    ]) {
      expect(() => decodeCurrent(dagCbor.encode(bad))).toThrow(expect.objectContaining({ name: 'FormatError' }))
    }
  })
})

/** Bytes of the blocks a store did not hold before `run`. */
async function addedBytes (store: MemoryStore, run: () => Promise<void>): Promise<number> {
  const before = new Set(store.blocks.keys())
  await run()
  let bytes = 0
  for (const [cid, b] of store.blocks) if (!before.has(cid)) bytes += b.length
  return bytes
}

describe('bytes proportional to the change', () => {
  it('a single-key update of a 10 000-key space adds at most 4 KiB of blocks', async () => {
    const store = memoryStore()
    const space = await openSpace({ signer: account(KEY_A), store })
    const patch: Record<string, unknown> = {}
    for (let i = 0; i < 10_000; i++) patch[`key-${i}`] = { i, label: `value number ${i}`, on: i % 2 === 0 }
    await space.patch(patch as Record<string, never>)
    await space.flush()
    for (const key of ['key-1', 'key-5000', 'key-9999', 'key-42']) {
      const bytes = await addedBytes(store, async () => { await space.set(key, { changed: true }); await space.flush() })
      expect(bytes).toBeGreaterThan(0)
      expect(bytes).toBeLessThanOrEqual(4096)
    }
    await space.close()
  })
})

describe('the current version, one request away', () => {
  it('the state under `current` holds every block of the version and none of its history', async () => {
    const store = memoryStore()
    const space = await openSpace({ signer: account(KEY_A), store })
    for (let v = 0; v < 3; v++) {
      const patch: Record<string, string> = {}
      for (let i = 0; i < 100; i++) patch[`v${v}-key-${i}`] = 'x'.repeat(40)
      await space.patch(patch)
      await space.public.set('nick', `alice ${v}`)
      await space.flush()
    }
    const rootCid = readRecord(store.records.get(space.name)!).cid!
    const root = decodeRoot(store.blocks.get(rootCid.toString())!)
    expect(root.parents).toHaveLength(1)
    const state = await currentBlocks(root.current, async c => store.getBlock(c))
    // no root block (of this version or an older one) below `current`
    expect(state.some(b => b.cid.code === dagCbor.code && 'parents' in (dagCbor.decode(b.bytes) as object))).toBe(false)
    // and what it holds is enough to open the space on a store holding nothing else
    const alone = memoryStore()
    await alone.putBlocks([{ cid: rootCid, bytes: store.blocks.get(rootCid.toString())! }, ...state])
    await alone.putRecord(space.name, store.records.get(space.name)!)
    const fresh = await openSpace({ signer: account(KEY_A), store: alone })
    expect(await fresh.getAll()).toEqual(await space.getAll())
    expect(await fresh.public.get('nick')).toBe('alice 2')
    expect(currentVersionRequest(rootCid)).toBe(`/ipfs/${rootCid.toString()}/current?format=car&dag-scope=all`)
    expect(PUBLIC_PROFILE_PATH).toBe('public')
    // the root links the profile too, for ipns://<name>/public
    expect(root.public?.equals(decodeCurrent(store.blocks.get(root.current.toString())!).public)).toBe(true)
    await space.close()
    await fresh.close()
  })
})

describe('through a hub', () => {
  it('GET <root>/current?format=car&dag-scope=all returns the root and the whole current state, and no history', async () => {
    const store = memoryStore()
    const space = await openSpace({ signer: account(KEY_A), store })
    for (let v = 0; v < 3; v++) {
      const patch: Record<string, string> = {}
      for (let i = 0; i < 80; i++) patch[`v${v}-key-${i}`] = 'x'.repeat(40)
      await space.patch(patch)
      await space.public.set('nick', `alice ${v}`)
      await space.flush()
    }
    const hub = makeHub()
    const all = [...store.blocks].map(([c, bytes]) => ({ cid: CID.parse(c), bytes }))
    for (let i = 0; i < all.length; i += 200) expect((await upload(hub, all.slice(i, i + 200))).status).toBe(200)
    expect((await putRecord(hub, space.name, store.records.get(space.name)!)).status).toBe(200)
    const rootCid = space.root!
    const res = await hub.app.request(currentVersionRequest(rootCid), { headers: { accept: 'application/vnd.ipld.car' } })
    expect(res.status).toBe(200)
    const got = CarBufferReader.fromBytes(await bytesOf(res)).blocks().map(b => b.cid.toString()).sort()
    const state = await currentBlocks(decodeRoot(store.blocks.get(rootCid.toString())!).current, async c => store.getBlock(c))
    expect(got).toEqual([rootCid.toString(), ...state.map(b => b.cid.toString())].sort())
    await space.close()
  })
})

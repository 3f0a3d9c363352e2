/**
 * The direct DAG-CBOR encoder against `@ipld/dag-cbor`: the same bytes for every value of the shapes
 * it handles (and so the same CIDs for the format's blocks), and undefined, never other bytes, for
 * the rest.
 */
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { describe, expect, it, vi } from 'vitest'
import { encodeDagCbor, encodeLinks } from '../src/store/cbor.js'
import { cborBlock } from '../src/store/blocks.js'

/** The bytes alone (dag-cbor hands back a Node Buffer). */
function bytes (b: Uint8Array): Uint8Array {
  return new Uint8Array(b)
}

const cid = fc.tuple(fc.constantFrom(0x55, 0x71, 0x72), fc.uint8Array({ minLength: 32, maxLength: 32 }))
  .map(([code, digest]) => CID.createV1(code, Digest.create(0x12, digest)))
const leaf = fc.oneof(
  fc.constant(null), fc.boolean(), fc.maxSafeInteger(), fc.integer(), fc.constant(-0),
  fc.constantFrom(23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, -24, -25, -256, -257, -(2 ** 32), -(2 ** 32) - 1),
  fc.string({ unit: 'grapheme' }), fc.string(), fc.string({ unit: 'binary', maxLength: 8 }), fc.uint8Array({ maxLength: 300 }), cid
)
const value = fc.letrec(tie => ({
  node: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('node'), { maxLength: 5 }), fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 12 }), tie('node'), { maxKeys: 6 }))
})).node

describe('encodeDagCbor', () => {
  it('writes exactly what @ipld/dag-cbor writes for maps, arrays, integers, strings, bytes, CIDs, null and booleans', () => {
    fc.assert(fc.property(value, v => {
      expect(encodeDagCbor(v)).toEqual(bytes(dagCbor.encode(v)))
    }), { numRuns: 2000 })
  })

  it('the format\'s shapes: a root with an owner binding, a current node, an index node', () => {
    const c = CID.parse('bafyreigdmqpykrgxyaxtlafqpqhzrb7qy2rh75nldvfd4tucqmqqme5yje')
    const shapes = [
      { version: 2, sequence: 123456, parents: [c, c], updatedAt: 1_764_000_000_000, device: 'd-1', public: null, current: c, owner: { address: '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266', signature: new Uint8Array(65).fill(7), issuedAt: 1_764_000_000_000 } },
      { buckets: 4096, private: c, public: c, clock: null },
      [c, c, c, c]
    ]
    for (const s of shapes) expect(encodeDagCbor(s)).toEqual(bytes(dagCbor.encode(s)))
  })

  it('writes a list of links (an index node) as encodeDagCbor and @ipld/dag-cbor do, in bytes no later encoding writes over', () => {
    const kept: Array<[Uint8Array, Uint8Array]> = []
    fc.assert(fc.property(fc.array(cid, { maxLength: 30 }), links => {
      const encoded = encodeLinks(links)
      expect(encoded).toEqual(bytes(dagCbor.encode(links)))
      expect(encoded).toEqual(encodeDagCbor(links))
      kept.push([encoded, encoded.slice()])
    }), { numRuns: 300 })
    // what one encoding hands back is never overwritten by the next (blocks are cut from shared chunks)
    const first = encodeDagCbor({ a: 'x'.repeat(3000) }) as Uint8Array
    const small = encodeDagCbor({ a: 'x'.repeat(100) }) as Uint8Array
    kept.push([first, first.slice()], [small, small.slice()])
    encodeDagCbor({ b: 'y'.repeat(5000) })
    for (let i = 0; i < 200; i++) encodeDagCbor({ c: 'z'.repeat(i * 10) })
    encodeLinks([])
    for (const [encoded, copy] of kept) expect(encoded).toEqual(copy)
  })

  it('hands other values to the full encoder (undefined), and cborBlock still encodes or refuses them as it did', async () => {
    for (const v of ['\uD800', { '\uDC00': 1 }, 1.5, NaN, Infinity, 10n, { a: undefined }, [undefined], new Map(), new Date(0), { x: 0.1 }]) {
      expect(encodeDagCbor(v)).toBeUndefined()
    }
    expect((await cborBlock({ x: 0.5 })).bytes).toEqual(dagCbor.encode({ x: 0.5 }))
    await expect(cborBlock({ a: undefined })).rejects.toThrow(/undefined/)
  })
})

describe('blockBytes', () => {
  it('cuts block bytes from shared chunks in Node, and gives each its own buffer where IndexedDB exists (which would store a whole chunk)', async () => {
    const load = async (): Promise<typeof import('../src/crypto/bytes.js')> => { vi.resetModules(); return import('../src/crypto/bytes.js') }
    const plain = await load()
    const a = plain.blockBytes(100)
    const b = plain.blockBytes(100)
    expect(a.buffer).toBe(b.buffer)
    expect(a.buffer.byteLength).toBeGreaterThan(200)
    expect(plain.blockBytes(4096).buffer.byteLength).toBe(4096)
    ;(globalThis as { indexedDB?: unknown }).indexedDB = {}
    try {
      const browserLike = await load()
      expect(browserLike.blockBytes(100).buffer.byteLength).toBe(100)
    } finally {
      delete (globalThis as { indexedDB?: unknown }).indexedDB
      vi.resetModules()
    }
  })
})


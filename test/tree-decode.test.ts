/**
 * The index-node and CAR fast paths read CIDs as views of the bytes they arrive in. They must read
 * exactly what the full decoders read, and hand anything else to them.
 */
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha512 } from 'multiformats/hashes/sha2'
import { create as createDigest } from 'multiformats/hashes/digest'
import { describe, expect, it } from 'vitest'
import { decodeIndexNode } from '../src/space/tree.js'
import { cidAt } from '../src/store/blocks.js'
import { linksAt } from '../src/store/helia-dag.js'

const digest = fc.uint8Array({ minLength: 32, maxLength: 32 })
const cidOf = (code: number, d: Uint8Array): CID => CID.createV1(code, createDigest(0x12, d))

describe('cidAt', () => {
  it('reads the same CID as CID.decode, at any offset, for raw and dag-cbor sha2-256 CIDv1s', () => {
    fc.assert(fc.property(digest, fc.constantFrom(raw.code, dagCbor.code), fc.uint8Array({ maxLength: 5 }), (d, code, before) => {
      const cid = cidOf(code, d)
      const bytes = new Uint8Array([...before, ...cid.bytes, 7, 7])
      const read = cidAt(bytes, before.length)
      expect(read?.equals(cid)).toBe(true)
      expect(read?.toString()).toBe(cid.toString())
      expect(read?.multihash.digest).toEqual(d)
    }))
  })

  it('leaves every other CID to the full decoder (undefined): CIDv0, two-byte codecs, other hashes, cut bytes', async () => {
    const v1 = cidOf(raw.code, new Uint8Array(32).fill(1))
    expect(cidAt(CID.createV0(createDigest(0x12, new Uint8Array(32))).bytes, 0)).toBeUndefined()
    expect(cidAt(cidOf(0x0129, new Uint8Array(32)).bytes, 0)).toBeUndefined()
    expect(cidAt(CID.createV1(raw.code, await sha512.digest(new Uint8Array(3))).bytes, 0)).toBeUndefined()
    expect(cidAt(v1.bytes.subarray(0, 35), 0)).toBeUndefined()
  })
})

describe('decodeIndexNode', () => {
  it('reads the links the dag-cbor decoder reads, for any links', () => {
    fc.assert(fc.property(fc.array(digest, { minLength: 4, maxLength: 4 }), fc.boolean(), (digests, leaves) => {
      const links = digests.map(d => cidOf(leaves ? raw.code : dagCbor.code, d))
      const bytes = dagCbor.encode(links)
      const read = decodeIndexNode(bytes, 4, leaves)
      expect(read.map(c => c.toString())).toEqual((dagCbor.decode(bytes) as CID[]).map(c => c.toString()))
    }))
  })

  it('refuses what the full decoder refuses: a link of the wrong kind, a link too few, bytes that are not dag-cbor (FormatError)', () => {
    const links = [1, 2, 3, 4].map(i => cidOf(raw.code, new Uint8Array(32).fill(i)))
    expect(() => decodeIndexNode(dagCbor.encode(links), 4, false)).toThrow(expect.objectContaining({ name: 'FormatError' }))
    expect(() => decodeIndexNode(dagCbor.encode(links.slice(1)), 4, true)).toThrow(expect.objectContaining({ name: 'FormatError' }))
    const broken = dagCbor.encode(links)
    broken[1] = 0xd9 // the first link's tag made two bytes long: the layout no longer parses
    expect(() => decodeIndexNode(broken, 4, true)).toThrow(expect.objectContaining({ name: 'FormatError' }))
  })

  it('leaves to the full decoder a node with a link after its array, or a link whose multibase prefix is not 0x00 (both refused: FormatError)', () => {
    const links = [1, 2, 3, 4].map(i => cidOf(raw.code, new Uint8Array(32).fill(i)))
    const bytes = dagCbor.encode(links)
    // one more whole link after the array: the full decoder refuses bytes after the value
    const trailing = new Uint8Array([...bytes, ...bytes.subarray(1, 42)])
    expect(() => decodeIndexNode(trailing, 4, true)).toThrow(expect.objectContaining({ name: 'FormatError' }))
    const prefixed = bytes.slice()
    prefixed[1 + 4] = 1 // the first link's multibase prefix
    expect(() => decodeIndexNode(prefixed, 4, true)).toThrow(expect.objectContaining({ name: 'FormatError' }))
    const holder = cidOf(dagCbor.code, new Uint8Array(32))
    expect(linksAt(holder, trailing, [])).toEqual([])
    expect(linksAt(holder, prefixed, [])).toEqual([])
  })

  it('reads links the fast path does not (sha2-512) through the full decoder, and checks them the same way', async () => {
    const odd = CID.createV1(raw.code, await sha512.digest(new Uint8Array([1])))
    const links = [odd, ...[2, 3, 4].map(i => cidOf(raw.code, new Uint8Array(32).fill(i)))]
    expect(decodeIndexNode(dagCbor.encode(links), 4, true).map(c => c.toString())).toEqual(links.map(c => c.toString()))
  })
})

describe('linksAt (the DAG protocol server\'s walk)', () => {
  it('finds the same links in a list of links as in any other block, in order', () => {
    fc.assert(fc.property(fc.array(digest, { maxLength: 8 }), fc.boolean(), (digests, wrapped) => {
      const links = digests.map((d, i) => cidOf(i % 2 === 0 ? raw.code : dagCbor.code, d))
      // a bare list takes the fast path; the same list inside a map takes the full decoder
      const bytes = dagCbor.encode(wrapped ? { links } : links)
      const holder = cidOf(dagCbor.code, new Uint8Array(32))
      expect(linksAt(holder, bytes, []).map(c => c.toString())).toEqual(links.map(c => c.toString()))
    }))
  })
})

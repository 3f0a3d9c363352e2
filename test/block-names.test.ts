/**
 * Block names made on the fast path (hashed natively, the CID written straight into one buffer)
 * against the generic path of multiformats: the same CID in every form a reader or a store uses.
 */
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as json from 'multiformats/codecs/json'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import * as dagCbor from '@ipld/dag-cbor'
import { cborBlock, cborBlockNow, cidKey, cidString, nativeCid, rawBlock, rawBlockNow, verifyBlock } from '../src/store/blocks.js'
import { create as createDigest } from 'multiformats/hashes/digest'
import { base36 } from 'multiformats/bases/base36'
import { nameText } from '../src/store/record.js'
import { flatText } from '../src/crypto/bytes.js'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

async function generic (code: number, bytes: Uint8Array): Promise<CID> {
  return CID.createV1(code, await sha256.digest(bytes))
}

function sameCid (a: CID, b: CID): void {
  expect(a.equals(b)).toBe(true)
  expect(a.toString()).toBe(b.toString())
  expect(a.bytes).toEqual(b.bytes)
  expect(a.multihash.bytes).toEqual(b.multihash.bytes)
  expect(a.multihash.digest).toEqual(b.multihash.digest)
  expect([a.version, a.code, a.multihash.code, a.multihash.size]).toEqual([b.version, b.code, b.multihash.code, b.multihash.size])
  expect(CID.decode(a.bytes).equals(b)).toBe(true)
  expect(CID.asCID(a)).toBe(a)
}

describe('block names on the native path', () => {
  it('runs natively in Node (the path the space takes here)', () => {
    expect(rawBlockNow(new Uint8Array([1]))).toBeDefined()
  })

  it('names raw, dag-cbor and json (a two-byte codec) blocks exactly as CID.createV1 does', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), fc.constantFrom(raw.code, dagCbor.code, json.code), async (bytes, code) => {
      sameCid(nativeCid(code, bytes) as CID, await generic(code, bytes))
    }), { numRuns: 300 })
  })

  it('rawBlock and cborBlock give the generic CIDs and blocks that verify', async () => {
    const bytes = new TextEncoder().encode('a sealed bucket, say')
    const r = await rawBlock(bytes)
    sameCid(r.cid, await generic(raw.code, bytes))
    expect(await verifyBlock(r.cid, bytes)).toBe(true)
    const value = { links: [r.cid], n: 3 }
    const c = cborBlockNow(value) as { cid: CID, bytes: Uint8Array }
    expect(c.bytes).toEqual(new Uint8Array(dagCbor.encode(value)))
    sameCid(c.cid, await generic(dagCbor.code, c.bytes))
    sameCid((await cborBlock(value)).cid, c.cid)
    expect(await verifyBlock(c.cid, new Uint8Array([...c.bytes.subarray(1), 0]))).toBe(false)
  })
})

describe('CID text for keys', () => {
  it('cidString writes what toString does, for CIDv1 of any codec and multihash length, and CIDv0', async () => {
    await fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 80 }), fc.integer({ min: 0, max: 0x3fffff }), fc.integer({ min: 0, max: 0x3fff }), (digest, code, hashCode) => {
      const cid = CID.createV1(code, createDigest(hashCode, digest))
      expect(cidString(cid)).toBe(cid.toString())
    }), { numRuns: 500 })
    const v0 = CID.createV0(await sha256.digest(new Uint8Array([1, 2, 3])))
    expect(cidString(v0)).toBe(v0.toString())
    expect(cidString(v0)).toMatch(/^Qm/)
  })

  it('cidKey and cidString take a CID of any length, as a link in a stranger\'s block may be (an identity hash of 1 MiB)', () => {
    const digest = new Uint8Array(1024 * 1024).fill(7)
    const a = CID.createV1(0x71, createDigest(0x00, digest))
    const b = CID.createV1(0x71, createDigest(0x00, digest.map((x, i) => i === digest.length - 1 ? 8 : x)))
    expect(cidString(a)).toBe(a.toString())
    expect(cidKey(a)).toHaveLength(a.bytes.length)
    expect(cidKey(a)).not.toBe(cidKey(b))
    expect([...cidKey(a).slice(0, 8)].map(c => c.charCodeAt(0))).toEqual([...a.bytes.subarray(0, 8)])
  })

  it('nameText writes the k51 text of a name CID, as toString(base36) does', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (key) => {
      const cid = CID.createV1(0x72, createDigest(0x00, new Uint8Array([8, 1, 18, 32, ...key])))
      expect(nameText(cid)).toBe(cid.toString(base36))
      expect(nameText(cid)).toMatch(/^k51/)
    }), { numRuns: 200 })
  })

  it('keeps a key in a few hundred bytes of heap where toString()\'s rope of one node per character takes ~1.6 KB', () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const KEYS = 20_000
    /** Heap per key of a map of fresh CIDs' keys (the CIDs themselves dropped, as at the stores' key sites). */
    const perKey = (key: (cid: CID) => string): number => {
      const map = new Map<string, number>()
      gc()
      const before = process.memoryUsage().heapUsed
      for (let i = 0; i < KEYS; i++) {
        const digest = new Uint8Array(32)
        new DataView(digest.buffer).setUint32(0, i)
        map.set(key(CID.createV1(raw.code, createDigest(0x12, digest))), i)
      }
      gc()
      const bytes = (process.memoryUsage().heapUsed - before) / KEYS
      expect(map.size).toBe(KEYS)
      return bytes
    }
    // the measure tells the two apart: multiformats' text is a rope
    expect(perKey(cid => cid.toString())).toBeGreaterThan(1000)
    expect(perKey(cidString)).toBeLessThan(400)
    expect(perKey(cid => nameText(CID.createV1(0x72, cid.multihash)))).toBeLessThan(400)
    expect(perKey(cid => flatText(base36.encode(cid.bytes)))).toBeLessThan(400)
  })

  it('flatText gives back the same text, any UTF-16 included, long text as it is', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
      expect(flatText(text)).toBe(text)
    }), { numRuns: 300 })
    const long = 'x'.repeat(5000)
    expect(flatText(long)).toBe(long)
  })
})

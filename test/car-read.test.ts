/**
 * The streaming CARv1 reader readers use for hub CARs and peers' DAG answers: it yields what
 * @ipld/car reads from the same bytes however the chunks fall, checks every block against its CID,
 * and refuses malformed or oversized input early, holding no more than one frame.
 */
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { varint } from 'multiformats'
import { describe, expect, it } from 'vitest'
import { cborBlock, encodeCar, rawBlock } from '../src/store/blocks.js'
import { readCar } from '../src/store/car-read.js'
import type { Block } from '../src/store/interface.js'
import type { CID } from 'multiformats/cid'
import { CID as CIDClass } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'

async function * chunked (bytes: Uint8Array, cuts: number[]): AsyncGenerator<Uint8Array> {
  let at = 0
  for (const cut of [...new Set(cuts.map(c => c % (bytes.byteLength + 1)))].sort((a, b) => a - b)) {
    yield bytes.slice(at, cut)
    at = cut
  }
  yield bytes.slice(at)
}

async function read (source: AsyncIterable<Uint8Array>, maxBlockBytes = 1024 * 1024): Promise<{ roots: CID[], blocks: Block[] }> {
  const blocks: Block[] = []
  const roots = await readCar(source, { maxBlockBytes }, b => { blocks.push(b) })
  return { roots, blocks }
}

/** A CAR frame: varint(length) ‖ bytes. */
function frame (bytes: Uint8Array): Uint8Array {
  const prefix = varint.encodeTo(bytes.byteLength, new Uint8Array(varint.encodingLength(bytes.byteLength)))
  const out = new Uint8Array(prefix.byteLength + bytes.byteLength)
  out.set(prefix)
  out.set(bytes, prefix.byteLength)
  return out
}

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

describe('readCar', () => {
  it('reads the same roots and blocks as @ipld/car, wherever the chunks are cut', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.uint8Array({ maxLength: 3000 }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      async (payloads, cuts) => {
        const blocks = await Promise.all(payloads.map(async (p, i) => i % 3 === 0 ? cborBlock({ p, i }) : rawBlock(p)))
        const car = encodeCar(blocks)
        const expected = [...CarBufferReader.fromBytes(car).blocks()].map(b => [b.cid.toString(), [...b.bytes]])
        const got = await read(chunked(car, cuts))
        expect(got.blocks.map(b => [b.cid.toString(), [...b.bytes]])).toEqual(expected)
        expect(got.roots.map(r => r.toString())).toEqual([(blocks[0] as Block).cid.toString()])
      }
    ), { numRuns: 150 })
  })

  it('refuses a frame whose CID reads back as other bytes (version 0 before a codec: multiformats would take it as CIDv0)', async () => {
    const block = await cborBlock(['  '])
    const car = encodeCar([block])
    const at = car.byteLength - block.bytes.byteLength - block.cid.bytes.byteLength
    expect(car[at]).toBe(1)
    car[at] = 0
    await expect(read(chunked(car, []))).rejects.toThrow(/read back as another/)
  })

  it('reads a CAR sent one byte at a time', async () => {
    const blocks = await Promise.all(Array.from({ length: 5 }, async (_, i) => rawBlock(new Uint8Array(200 + i * 50).fill(i))))
    const car = encodeCar(blocks)
    const got = await read(chunked(car, Array.from({ length: car.byteLength }, (_, i) => i)))
    expect(got.blocks.map(b => b.cid.toString())).toEqual(blocks.map(b => b.cid.toString()))
  })

  it('hands over a block as soon as its frame is complete, before the CAR ends', async () => {
    const a = await rawBlock(new Uint8Array(500).fill(1))
    const b = await rawBlock(new Uint8Array(500).fill(2))
    const car = encodeCar([a, b])
    const seen: string[] = []
    const source = async function * (): AsyncGenerator<Uint8Array> {
      yield car.subarray(0, car.byteLength - 100)
      // by now the first block has been handed over; the second is not complete yet
      expect(seen).toEqual([a.cid.toString()])
      yield car.subarray(car.byteLength - 100)
    }
    await readCar(source(), { maxBlockBytes: 1024 }, block => { seen.push(block.cid.toString()) })
    expect(seen).toEqual([a.cid.toString(), b.cid.toString()])
  })

  it('refuses a block that does not match its CID (IntegrityError), after handing over the ones before it', async () => {
    const good = await rawBlock(new Uint8Array([1, 2, 3]))
    const bad = await rawBlock(new Uint8Array([4, 5, 6]))
    const car = encodeCar([good, { cid: bad.cid, bytes: new Uint8Array([4, 5, 7]) }])
    const seen: string[] = []
    await expect(readCar(chunked(car, [7, 50]), { maxBlockBytes: 1024 }, b => { seen.push(b.cid.toString()) })).rejects.toMatchObject({ name: 'IntegrityError' })
    expect(seen).toEqual([good.cid.toString()])
  })

  it('names a block whose CID carries 1 MiB (an identity hash) by its length in the error, not by 1.7 million characters', async () => {
    const cid = CIDClass.createV1(0x55, identity.digest(new Uint8Array(1024 * 1024).fill(5)))
    const first = await rawBlock(new Uint8Array([9]))
    const car = encodeCar([first, { cid, bytes: new Uint8Array([1, 2, 3]) }], [first.cid])
    await expect(read(chunked(car, []), 2 * 1024 * 1024)).rejects.toMatchObject({ name: 'IntegrityError', message: 'block <CID of 1048582 bytes, multihash 0x0> does not match its CID' })
  })

  it('refuses a frame over the block limit as soon as its length is read, without reading on', async () => {
    const root = await rawBlock(new Uint8Array(1))
    const head = frame(dagCbor.encode({ version: 1, roots: [root.cid] }))
    let pulled = 0
    const source = async function * (): AsyncGenerator<Uint8Array> {
      yield head
      yield varint.encodeTo(10 * 1024 * 1024, new Uint8Array(varint.encodingLength(10 * 1024 * 1024)))
      // a hostile sender that would go on for ever
      for (;;) { pulled++; yield new Uint8Array(65536) }
    }
    await expect(read(source(), 1024 * 1024)).rejects.toMatchObject({ name: 'TooLargeError' })
    expect(pulled).toBe(0)
  })

  it('refuses a block over the limit even inside a frame that fits', async () => {
    const block = await rawBlock(new Uint8Array(2000))
    await expect(read(chunked(encodeCar([block]), []), 1990)).rejects.toMatchObject({ name: 'TooLargeError' })
  })

  it('refuses a CAR that ends inside a frame, an empty body, another version and a bad header or CID', async () => {
    const block = await rawBlock(new Uint8Array(100).fill(9))
    const car = encodeCar([block])
    await expect(read(chunked(car.subarray(0, car.byteLength - 1), [10]))).rejects.toThrow(/ends inside a frame/)
    await expect(read(chunked(new Uint8Array(0), []))).rejects.toThrow(/no header/)
    await expect(read(chunked(frame(dagCbor.encode({ version: 2, roots: [block.cid] })), []))).rejects.toThrow(/version 2/)
    await expect(read(chunked(frame(dagCbor.encode({ version: 1 })), []))).rejects.toThrow(/no roots/)
    await expect(read(chunked(frame(dagCbor.encode({ version: 1, roots: ['x'] })), []))).rejects.toThrow(/not a CID/)
    await expect(read(chunked(frame(new Uint8Array([0xff, 0x00])), []))).rejects.toThrow(/not dag-cbor/)
    await expect(read(chunked(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), []))).rejects.toThrow(/varint/)
    const head = frame(dagCbor.encode({ version: 1, roots: [block.cid] }))
    await expect(read(chunked(concat([head, frame(new Uint8Array([0x01, 0x55, 0x12]))]), []))).rejects.toThrow(/bad CID/)
  })

  it('calls onRoots with the header before any block, and stops when it throws', async () => {
    const block = await rawBlock(new Uint8Array(10))
    const seen: Block[] = []
    await expect(readCar(chunked(encodeCar([block]), []), {
      maxBlockBytes: 1024,
      onRoots: roots => { expect(roots[0]?.equals(block.cid)).toBe(true); throw new Error('wrong root') }
    }, b => { seen.push(b) })).rejects.toThrow(/wrong root/)
    expect(seen).toEqual([])
  })
})

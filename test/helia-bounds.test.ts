/**
 * The helia store reads no block over the 1 MiB bitswap limit, whatever its blockstore holds (a
 * shared node may hold anything): it stops at the limit with TooLargeError.
 */
import { createHeliaLight } from 'helia'
import { describe, expect, it } from 'vitest'
import { MAX_BLOCK_BYTES, cborBlock, rawBlock } from '../src/store/blocks.js'
import { heliaStore } from '../src/store/helia.js'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'

describe('heliaStore block bound', () => {
  it('returns a block of exactly 1 MiB and refuses a bigger one the node holds (TooLargeError)', async () => {
    const helia = await createHeliaLight().start()
    try {
      const store = heliaStore(helia)
      const fits = await rawBlock(new Uint8Array(MAX_BLOCK_BYTES).fill(1))
      const big = await rawBlock(new Uint8Array(MAX_BLOCK_BYTES + 1).fill(2))
      // Straight into the node's blockstore: the store itself would never accept the big one.
      await helia.blockstore.put(fits.cid, fits.bytes)
      await helia.blockstore.put(big.cid, big.bytes)
      expect((await store.getBlock(fits.cid)).byteLength).toBe(MAX_BLOCK_BYTES)
      await expect(store.getBlock(big.cid)).rejects.toMatchObject({ name: 'TooLargeError' })
    } finally {
      await helia.stop()
    }
  })

  it('getDag returns every block below the root, across levels, and fails with NotFoundError when one cannot be had', async () => {
    const helia = await createHeliaLight().start()
    try {
      const store = heliaStore(helia)
      const leaves = await Promise.all(Array.from({ length: 40 }, async (_, i) => rawBlock(new Uint8Array([i, 1, 2]))))
      const middles = await Promise.all(Array.from({ length: 4 }, async (_, m) => cborBlock({ m, leaves: leaves.slice(m * 10, m * 10 + 10).map(l => l.cid) })))
      const root = await cborBlock({ middles: middles.map(b => b.cid) })
      await store.putBlocks([...leaves, ...middles, root])
      const got = await store.getDag?.(root.cid)
      expect(new Set(got?.map(b => b.cid.toString()))).toEqual(new Set([root, ...middles, ...leaves].map(b => b.cid.toString())))

      const missing = await rawBlock(new Uint8Array([9, 9, 9]))
      const broken = await cborBlock({ middles: middles.map(b => b.cid), extra: missing.cid })
      await store.putBlocks([broken])
      await expect(store.getDag?.(broken.cid)).rejects.toMatchObject({ name: 'NotFoundError' })
    } finally {
      await helia.stop()
    }
  })

  it('looks for no block whose CID has a digest over 64 bytes (a stranger\'s link may carry a megabyte one): NotFoundError, blockstore untouched', async () => {
    const helia = await createHeliaLight().start()
    try {
      const store = heliaStore(helia)
      const asked: number[] = []
      const has = helia.blockstore.has.bind(helia.blockstore)
      helia.blockstore.has = (async (cid: CID, options?: unknown) => { asked.push(cid.bytes.length); return has(cid, options as never) }) as typeof helia.blockstore.has
      const long = CID.createV1(raw.code, createDigest(sha256.code, new Uint8Array(512 * 1024).fill(6)))
      await expect(store.getBlock(long, { signal: AbortSignal.timeout(5_000) })).rejects.toMatchObject({ name: 'NotFoundError', message: 'block <CID of 524294 bytes, multihash 0x12> not found: no block has a digest that long' })
      expect(asked).toEqual([])
      // a sha2-256 one is looked for
      const held = await rawBlock(new Uint8Array([4, 5]))
      await store.putBlocks([held])
      expect([...await store.getBlock(held.cid)]).toEqual([4, 5])
      expect(asked.length).toBeGreaterThan(0)
    } finally {
      await helia.stop()
    }
  })
})

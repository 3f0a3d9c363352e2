/**
 * The helia store reads no block over the 1 MiB bitswap limit, whatever its blockstore holds (a
 * shared node may hold anything): it stops at the limit with TooLargeError.
 */
import { createHeliaLight } from 'helia'
import { describe, expect, it } from 'vitest'
import { MAX_BLOCK_BYTES, rawBlock } from '../src/store/blocks.js'
import { heliaStore } from '../src/store/helia.js'

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
})

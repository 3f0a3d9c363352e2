/**
 * A write made while a publish is on the wire must go out with the next publish, not be marked as
 * stored by the one in flight. Found by the demo page's browser test (two quick edits of the public
 * profile: the second stayed local for good).
 */
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { memoryStore, openSpace } from '../src/index.js'
import type { Store } from '../src/index.js'

/** A store whose uploads wait until `release` is called, and that reports when one starts. */
function slowStore (inner: Store): { store: Store, uploading: Promise<void>, release: () => void } {
  let started!: () => void
  let release!: () => void
  const uploading = new Promise<void>((resolve) => { started = resolve })
  const gate = new Promise<void>((resolve) => { release = resolve })
  const store: Store = {
    ...inner,
    putBlocks: async (blocks, options) => { started(); await gate; await inner.putBlocks(blocks, options) },
    getBlock: inner.getBlock.bind(inner),
    putRecord: inner.putRecord.bind(inner),
    getRecord: inner.getRecord.bind(inner)
  }
  return { store, uploading, release }
}

describe('writes during an in-flight publish', () => {
  for (const section of ['public', 'private'] as const) {
    it(`are published by the next one (${section} section)`, async () => {
      const signer = privateKeyToAccount(generatePrivateKey())
      const hub = memoryStore()
      const { store, uploading, release } = slowStore(hub)
      const space = await openSpace({ signer, store })
      const api = section === 'public' ? space.public : space
      const first = api.set('name', 'Alice')
      await uploading
      const second = api.set('bio', 'Writes things down.')
      release()
      await Promise.all([first, second])
      await space.flush()

      const reader = await openSpace({ signer, store: hub })
      const read = section === 'public' ? reader.public : reader
      expect(await read.getAll()).toEqual({ name: 'Alice', bio: 'Writes things down.' })
      await reader.close()
      await space.close()
    })
  }
})

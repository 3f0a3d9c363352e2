import { describe, expect, it } from 'vitest'
import { openSpace, memoryStore, layeredStore, StoreError } from '../src/index.js'
import type { Store } from '../src/index.js'
import { account, KEY_B } from './helpers/signers.js'

/** A remote (a hub) that can go down, with an address index like a hub's. */
function remote (): Store & { up: boolean, index: Map<string, string> } {
  const network = memoryStore()
  const r = {
    up: true,
    index: new Map<string, string>(),
    putBlocks: async (b: any, o: any) => { check(); return network.putBlocks(b, o) },
    getBlock: async (c: any, o: any) => { check(); return network.getBlock(c, o) },
    putRecord: async (n: string, rec: Uint8Array, o: any) => { check(); return network.putRecord(n, rec, o) },
    getRecord: async (n: string, o: any) => { check(); return network.getRecord(n, o) },
    lookupAddress: async (a: string) => { check(); return r.index.get(a) }
  }
  function check (): void { if (!r.up) throw new StoreError('hub unreachable') }
  return r
}

describe('layeredStore', () => {
  it('opens from the local copy while the remote is down, and publishes once it is back', async () => {
    const hub = remote()
    const local = memoryStore()
    const first = await openSpace({ signer: account(KEY_B), store: layeredStore(local, hub), retryDelayMs: 0 })
    await first.set('theme', 'dark')
    await first.flush()
    hub.index.set(first.address, first.name)
    await first.close()

    hub.up = false
    const events: string[] = []
    const offline = await openSpace({
      signer: account(KEY_B), store: layeredStore(local, hub), retryDelayMs: 20, offlineFirst: true,
      onProgress: (e) => { events.push(e.type) }
    })
    expect(await offline.get('theme')).toBe('dark')
    await offline.set('theme', 'light')
    await expect(offline.flush()).rejects.toMatchObject({ name: 'StoreError' })
    expect(events).toContain('space:publish:error')
    hub.up = true
    await expect.poll(async () => (await openSpace({ signer: account(KEY_B), store: hub })).get('theme'), { timeout: 3000, interval: 50 }).toBe('light')
    await offline.close()
  })

  it('serves blocks from the local copy and caches what it fetches', async () => {
    const hub = remote()
    const writer = await openSpace({ signer: account(KEY_B), store: hub })
    await writer.set('k', 1)
    await writer.flush()
    const local = memoryStore()
    const reader = await openSpace({ signer: account(KEY_B), store: layeredStore(local, hub) })
    expect(await reader.get('k')).toBe(1)
    expect(local.blocks.size).toBeGreaterThan(0)
    expect(local.records.size).toBe(1)
  })

  it('does not publish an empty first version when a new space opens', async () => {
    const hub = remote()
    const space = await openSpace({ signer: account(KEY_B), store: layeredStore(memoryStore(), hub), offlineFirst: true })
    await space.flush()
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(space.sequence).toBe(0)
    expect(await hub.getRecord(space.name)).toBeUndefined()
  })
})

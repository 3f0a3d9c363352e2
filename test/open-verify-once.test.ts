/**
 * A cold open checks every block the store's one DAG request brought against its CID itself,
 * whatever the store did, and hashes no block twice: bytes already checked by `verifyBlock` are
 * known by their digest.
 */
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { openSpace } from '../src/index.js'
import { rawBlock, verifyBlock } from '../src/store/blocks.js'
import { hubStore } from '../src/store/hub.js'
import { makeHub } from './helpers/hub-app.js'
import type { Block, Store } from '../src/store/interface.js'
import * as raw from 'multiformats/codecs/raw'

describe('verifyBlock', () => {
  it('remembers bytes it checked, but only against the CID they matched', async () => {
    const a = await rawBlock(new Uint8Array([1, 2, 3]))
    const b = await rawBlock(new Uint8Array([4, 5, 6]))
    expect(await verifyBlock(a.cid, a.bytes)).toBe(true)
    expect(await verifyBlock(a.cid, a.bytes)).toBe(true)
    expect(await verifyBlock(b.cid, a.bytes)).toBe(false)
    expect(await verifyBlock(a.cid, b.bytes)).toBe(false)
  })
})

describe('a cold open through a store whose DAG request lies', () => {
  it('drops a block that does not match its CID and reads it on its own, opening the right data', async () => {
    const hub = makeHub()
    const signer = privateKeyToAccount(generatePrivateKey())
    const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => hub.app.request(String(input), init)
    const writer = await openSpace({ signer, store: hubStore('http://hub.test', { fetch }) })
    await writer.set('a', 'right')
    await writer.flush()
    await writer.close()
    // A store that checks nothing and changes one encrypted block of the DAG it hands over.
    const inner = hubStore('http://hub.test', { fetch })
    const single: string[] = []
    const store: Store = Object.assign(Object.create(inner) as Store, {
      getDag: async (cid: Block['cid'], options?: Parameters<NonNullable<Store['getDag']>>[1]) => {
        const blocks = await (inner.getDag as NonNullable<Store['getDag']>)(cid, options)
        let tampered = 0
        const out = blocks.map(b => {
          if (b.cid.code !== raw.code || tampered > 0) return b
          tampered++
          const bytes = b.bytes.slice()
          bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1
          return { cid: b.cid, bytes }
        })
        expect(tampered).toBe(1)
        return out
      },
      getBlock: async (cid: Block['cid'], options?: Parameters<Store['getBlock']>[1]) => {
        single.push(cid.toString())
        return inner.getBlock(cid, options)
      }
    })
    const reader = await openSpace({ signer, store })
    expect(await reader.get('a')).toBe('right')
    // The tampered block, and only it, was read on its own.
    expect(single).toHaveLength(1)
    await reader.close()
  })
})

import { describe, expect, it } from 'vitest'
import { CarReader } from '@ipld/car'
import { encodeCar } from '../src/store/blocks.js'
import { openSpace, memoryStore } from '../src/index.js'
import type { MemoryStore } from '../src/index.js'
import { exportSpace, importSpace } from '../src/space/transfer.js'
import { account, KEY_A, KEY_B } from './helpers/signers.js'

async function filled (): Promise<{ store: MemoryStore, name: string }> {
  const store = memoryStore()
  const space = await openSpace({ signer: account(KEY_A), store })
  await space.set('a', 1)
  await space.flush()
  await space.public.set('name', 'Alice')
  await space.flush()
  await space.patch({ b: { deep: [1, 2] }, c: 'three' })
  await space.flush()
  await space.remove('a')
  await space.flush()
  return { store, name: space.name }
}

/** Rewrites a CAR, letting `edit` change its blocks and roots. */
async function rewrite (car: Uint8Array, edit: (blocks: Array<{ cid: any, bytes: Uint8Array }>, roots: any[]) => void): Promise<Uint8Array> {
  const reader = await CarReader.fromBytes(car)
  const roots = await reader.getRoots()
  const blocks: Array<{ cid: any, bytes: Uint8Array }> = []
  for await (const b of reader.blocks()) blocks.push({ cid: b.cid, bytes: b.bytes.slice() })
  edit(blocks, roots)
  return encodeCar(blocks, roots)
}

describe('export and import', () => {
  it('moves a space with its whole history to an empty store, where the owner opens it', async () => {
    const { store, name } = await filled()
    const exported = await exportSpace(store, name)
    expect(exported.sequence).toBe(4)
    const target = memoryStore()
    const progress: string[] = []
    const result = await importSpace(target, exported.car, { onProgress: p => progress.push(p.type) })
    expect(result.name).toBe(name)
    expect(progress).toContain('transfer:upload')
    const there = await openSpace({ signer: account(KEY_A), store: target })
    const here = await openSpace({ signer: account(KEY_A), store })
    expect(await there.getAll()).toEqual(await here.getAll())
    expect(await there.public.getAll()).toEqual({ name: 'Alice' })
    expect((await there.history()).map(h => [h.sequence, h.root.toString()])).toEqual((await here.history()).map(h => [h.sequence, h.root.toString()]))
  })

  const tamper: Array<[string, (blocks: Array<{ cid: any, bytes: Uint8Array }>, roots: any[]) => void, string]> = [
    ['a changed byte in a block', (blocks) => { const b = blocks[blocks.length - 1]!; b.bytes[b.bytes.length >> 1]! ^= 1 }, 'IntegrityError'],
    ['a missing block', (blocks) => { blocks.splice(blocks.length - 1, 1) }, 'IntegrityError'],
    ['a second root', (_b, roots) => { roots.push(roots[0]) }, 'FormatError']
  ]
  for (const [what, edit, name] of tamper) {
    it(`refuses ${what} and imports nothing`, async () => {
      const { store, name: spaceName } = await filled()
      const car = await rewrite((await exportSpace(store, spaceName)).car, edit)
      const target = memoryStore()
      await expect(importSpace(target, car)).rejects.toMatchObject({ name })
      expect(target.blocks.size).toBe(0)
      expect(target.records.size).toBe(0)
    })
  }

  it('refuses a record for another name and imports nothing', async () => {
    const { store, name } = await filled()
    const other = memoryStore()
    const b = await openSpace({ signer: account(KEY_B), store: other })
    await b.set('x', 1)
    await b.flush()
    const mine = await exportSpace(store, name)
    const theirs = await exportSpace(other, b.name)
    // put B's signed record into A's manifest
    const dagCbor = await import('@ipld/dag-cbor')
    const { cborBlock } = await import('../src/store/blocks.js')
    const reader = await CarReader.fromBytes(mine.car)
    const [root] = await reader.getRoots()
    const manifest = dagCbor.decode((await reader.get(root!))!.bytes) as Record<string, unknown>
    const theirManifest = dagCbor.decode((await (await CarReader.fromBytes(theirs.car)).get((await (await CarReader.fromBytes(theirs.car)).getRoots())[0]!))!.bytes) as Record<string, unknown>
    const forged = await cborBlock({ ...manifest, record: theirManifest.record })
    const car = await rewrite(mine.car, (blocks, roots) => { blocks.unshift(forged); roots[0] = forged.cid })
    const target = memoryStore()
    await expect(importSpace(target, car)).rejects.toMatchObject({ name: 'InvalidRecordError' })
    expect(target.blocks.size + target.records.size).toBe(0)
  })

  it('refuses something that is not a CAR', async () => {
    await expect(importSpace(memoryStore(), new Uint8Array([1, 2, 3]))).rejects.toMatchObject({ name: 'InvalidInputError' })
  })
})

/**
 * sealedState: pending writes sealed for a device's state, opened back, bound to their space and key.
 */
import { describe, expect, it } from 'vitest'
import { memoryState } from '../src/index.js'
import { sealedState } from '../src/space/sealed-state.js'
import type { PendingEntry } from '../src/index.js'

const NAME = 'k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8'
const OTHER = 'k51qzi5uqu5djtge0ytuuxft6nytrerco6wntnw00rdwln2gfimils7jf1wmmb'
const dataKey = new Uint8Array(32).fill(7)
const write = (key: string, json: string | undefined, stamp = 1_700_000_000_000_000): PendingEntry => json === undefined
  ? { section: 'private', key, stamp, device: 'dev' }
  : { section: 'private', key, stamp, device: 'dev', json }

describe('sealedState', () => {
  it('keeps neither key nor value in the state it wraps, and gives both back', async () => {
    const inner = memoryState()
    const errors: Error[] = []
    const state = sealedState(inner, dataKey, (err) => { errors.push(err) })
    await state.addPending(NAME, [write('secret key', '"secret value"'), write('gone', undefined, 1_700_000_000_000_001)])
    const raw = JSON.stringify(await inner.get(NAME))
    expect(raw).not.toMatch(/secret|gone/)
    expect((await state.get(NAME))?.pending).toEqual([write('secret key', '"secret value"'), write('gone', undefined, 1_700_000_000_000_001)])
    expect(errors).toEqual([])
  })

  it('seals a write to the same text every time, so that it is removed by it; another write seals otherwise', async () => {
    const inner = memoryState()
    const state = sealedState(inner, dataKey, () => {})
    await state.addPending(NAME, [write('a', '1')])
    const first = (await inner.get(NAME))?.pending[0]
    await state.addPending(NAME, [write('a', '1')])
    expect((await inner.get(NAME))?.pending).toEqual([first])
    await state.addPending(NAME, [write('b', '1')])
    const [a, b] = (await inner.get(NAME))?.pending ?? []
    expect(b?.json).not.toBe(a?.json)
    expect(b?.key).not.toBe(a?.key)
    await state.removePending(NAME, [write('a', '1'), write('b', '1')])
    expect((await inner.get(NAME))?.pending).toEqual([])
  })

  it('removes, and reports, a write read back under another space\'s name', async () => {
    const inner = memoryState()
    const errors: Error[] = []
    const state = sealedState(inner, dataKey, (err) => { errors.push(err) })
    await state.addPending(NAME, [write('a', '1')])
    await inner.addPending(OTHER, (await inner.get(NAME))?.pending ?? [])
    expect((await state.get(OTHER))?.pending).toEqual([])
    expect(errors.map(e => e.message)).toEqual([expect.stringMatching(new RegExp(`^a pending write of ${OTHER} in the device state could not be opened and was removed: `))])
    expect((await inner.get(OTHER))?.pending).toEqual([])
    expect((await inner.get(NAME))?.pending).toHaveLength(1)
  })

  it('refuses a sealed write whose stamp, device or section was changed, and removes it', async () => {
    for (const change of [{ stamp: 1_800_000_000_000_000 }, { device: 'other' }, { section: 'public' as const }]) {
      const inner = memoryState()
      const errors: Error[] = []
      const state = sealedState(inner, dataKey, (err) => { errors.push(err) })
      await state.addPending(NAME, [write('a', '1')])
      const [sealed] = (await inner.get(NAME))?.pending ?? []
      await inner.removePending(NAME, [sealed!])
      await inner.addPending(NAME, [{ ...sealed!, ...change }])
      expect((await state.get(NAME))?.pending).toEqual([])
      expect(errors.map(e => e.message)).toEqual([expect.stringMatching(/could not be opened and was removed: its stamp, device or section was changed$/)])
      expect((await inner.get(NAME))?.pending).toEqual([])
    }
  })

  it('reads plain entries (an earlier version\'s) as they are, seals them in their place, and removes them with their write', async () => {
    const inner = memoryState()
    const state = sealedState(inner, dataKey, () => {})
    await inner.addPending(NAME, [write('plain', '"text"')])
    expect((await state.get(NAME))?.pending).toEqual([write('plain', '"text"')])
    const raw = (await inner.get(NAME))?.pending ?? []
    expect(raw).toHaveLength(1)
    expect(JSON.stringify(raw)).not.toMatch(/plain|text/)
    await state.removePending(NAME, [write('plain', '"text"')])
    expect((await inner.get(NAME))?.pending).toEqual([])
  })
})

/**
 * When a change from another device is told: as soon as this device's map holds it, before the
 * device's state records the version as seen; the step that merged it (and so the next publish or
 * merge of the space) ends only once that record is written.
 */
import { expect, it } from 'vitest'
import { memoryState, memoryStore, openSpace } from '../src/index.js'
import { account, KEY_A } from './helpers/signers.js'
import type { SpaceStateStore } from '../src/index.js'

it("tells a change from another device before the device's state records the version, and the merge step waits for that record", async () => {
  const store = memoryStore()
  const signer = account(KEY_A)
  const a = await openSpace({ signer, store, state: memoryState(), deviceId: 'a' })
  await a.set('volume', 1)
  await a.flush()

  const inner = memoryState()
  const order: string[] = []
  let hold = false
  let open!: () => void
  const opened = new Promise<void>((resolve) => { open = resolve })
  let started!: () => void
  const putStarted = new Promise<void>((resolve) => { started = resolve })
  const gated: SpaceStateStore = {
    durable: inner.durable,
    get: async (name) => inner.get(name),
    addPending: async (name, entries) => inner.addPending(name, entries),
    removePending: async (name, entries) => inner.removePending(name, entries),
    put: async (name, seen) => {
      if (hold) {
        order.push(`state put #${seen.sequence}`)
        started()
        await opened
      }
      await inner.put(name, seen)
    }
  }
  const b = await openSpace({ signer, store, state: gated, deviceId: 'b' })
  expect((await inner.get(b.name))?.sequence).toBe(1)
  b.subscribe((event) => { order.push(`change ${event.keys.join(',')}`) })
  hold = true
  await a.set('volume', 2)
  await a.flush()
  await putStarted
  expect(order).toEqual(['change volume', 'state put #2'])
  expect(await b.get('volume')).toBe(2)
  expect((await inner.get(b.name))?.sequence).toBe(1)

  // The merge step is still writing: B's queue (a flush joins it) ends only once the record is written.
  let flushed = false
  const flush = b.flush().then(() => { flushed = true })
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => { setImmediate(resolve) })
  expect(flushed).toBe(false)
  open()
  await flush
  expect((await inner.get(b.name))?.sequence).toBe(2)
  await a.close()
  await b.close()
})

/**
 * DHT announcements of accepted records: in the background, each name's newest record only, a
 * bounded number at once and a bounded number waiting; a PUT that peered hubs heard never waits for
 * the DHT, one that no hub heard waits for it (up to `announceWaitMs`). Hubs through
 * `app.request()` on memory stores, with a DHT and a cluster that the test drives.
 */
import { describe, expect, it } from 'vitest'
import { Announcer } from '../src/hub/announce.js'
import { createRecord } from '../src/store/record.js'
import { makeHub, makeSpace, putRecord, upload } from './helpers/hub-app.js'
import type { AnnounceFn } from '../src/hub/announce.js'

interface Call { name: string, record: Uint8Array, release: () => void, signal: AbortSignal }

/** A DHT whose puts end only when the test releases them (or they are aborted). */
function heldDht (): { announce: AnnounceFn, calls: Call[], running: () => number, next: () => Promise<Call> } {
  const calls: Call[] = []
  let active = 0
  let wake: (() => void) | undefined
  const announce: AnnounceFn = async (name, record, { signal }) => {
    active++
    try {
      await new Promise<void>((resolve, reject) => {
        calls.push({ name, record, release: resolve, signal })
        wake?.()
        signal.addEventListener('abort', () => { reject(signal.reason) })
      })
    } finally {
      active--
    }
  }
  const next = async (): Promise<Call> => {
    const seen = calls.length
    while (calls.length === seen) await new Promise<void>((resolve) => { wake = resolve })
    return calls[calls.length - 1] as Call
  }
  return { announce, calls, running: () => active, next }
}

/** Whether `p` has settled once pending callbacks have run. */
async function settled (p: Promise<unknown>): Promise<boolean> {
  let done = false
  void p.then(() => { done = true })
  for (let i = 0; i < 20; i++) await Promise.resolve()
  await new Promise(resolve => setImmediate(resolve))
  return done
}

const bytes = (n: number): Uint8Array => new Uint8Array([n])

describe('Announcer', () => {
  it('announces only the newest record of a name that waits behind a running announcement', async () => {
    const dht = heldDht()
    const announcer = new Announcer(dht.announce, { concurrency: 1, maxPending: 10, timeoutMs: 60_000 })
    const first = announcer.add('a', bytes(1))
    const call1 = dht.calls[0] as Call
    const second = announcer.add('a', bytes(2))
    const third = announcer.add('a', bytes(3))
    expect(dht.calls).toHaveLength(1)
    const next = dht.next()
    call1.release()
    await first
    const call2 = await next
    expect(call2.record).toEqual(bytes(3))
    // Record 2 was replaced by 3: its waiter settles with 3's announcement, not before.
    expect(await settled(second)).toBe(false)
    call2.release()
    await Promise.all([second, third])
    expect(dht.calls.map(c => c.record[0])).toEqual([1, 3])
  })

  it('runs at most `concurrency` announcements at once, oldest name first', async () => {
    const dht = heldDht()
    const announcer = new Announcer(dht.announce, { concurrency: 2, maxPending: 10, timeoutMs: 60_000 })
    const all = ['a', 'b', 'c', 'd', 'e'].map((name, i) => announcer.add(name, bytes(i)))
    expect(dht.running()).toBe(2)
    expect(announcer.size).toBe(5)
    expect(dht.calls.map(c => c.name)).toEqual(['a', 'b'])
    let max = dht.running()
    for (let i = 0; i < 5; i++) {
      const more = dht.calls.length < 5 ? dht.next() : undefined
      ;(dht.calls[i] as Call).release()
      await more
      max = Math.max(max, dht.running())
    }
    await Promise.all(all)
    expect(max).toBe(2)
    expect(dht.calls.map(c => c.name)).toEqual(['a', 'b', 'c', 'd', 'e'])
  })

  it('leaves a new name beyond `maxPending` to the periodic re-announcement and settles its waiter at once', async () => {
    const dht = heldDht()
    const announcer = new Announcer(dht.announce, { concurrency: 1, maxPending: 2, timeoutMs: 60_000 })
    void announcer.add('running', bytes(0))
    void announcer.add('a', bytes(1))
    void announcer.add('b', bytes(2))
    const refused = announcer.add('c', bytes(3))
    expect(await settled(refused)).toBe(true)
    // A name already waiting still takes its newer record.
    void announcer.add('a', bytes(4))
    expect(announcer.size).toBe(3)
    announcer.stop()
    ;(dht.calls[0] as Call).release()
    expect(dht.calls.map(c => c.name)).toEqual(['running'])
  })

  it('starts a spaced record no sooner than `spacingMs` after the name\'s last announcement, unless a record that must not wait replaces it', async () => {
    const dht = heldDht()
    const announcer = new Announcer(dht.announce, { concurrency: 4, maxPending: 10, timeoutMs: 60_000 })
    const first = announcer.add('a', bytes(1), 300)
    ;(dht.calls[0] as Call).release()
    await first
    const started = Date.now()
    const next = dht.next()
    const second = announcer.add('a', bytes(2), 300)
    void announcer.add('a', bytes(3), 300)
    expect(dht.calls).toHaveLength(1)
    const call = await next
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    expect(call.record).toEqual(bytes(3))
    call.release()
    await second
    // Spaced again, until a record that must not wait joins it.
    const urgent = dht.next()
    void announcer.add('a', bytes(4), 60_000)
    expect(dht.calls).toHaveLength(2)
    void announcer.add('a', bytes(5))
    expect((await urgent).record).toEqual(bytes(5))
    ;(dht.calls[2] as Call).release()
    announcer.stop()
  })

  it('aborts an announcement that runs past `timeoutMs` and moves on', async () => {
    const dht = heldDht()
    const announcer = new Announcer(dht.announce, { concurrency: 1, maxPending: 10, timeoutMs: 20 })
    const first = announcer.add('a', bytes(1))
    const second = announcer.add('b', bytes(2))
    await first
    expect(dht.calls[0]?.signal.aborted).toBe(true)
    const call = dht.calls[1] ?? await dht.next()
    expect(call.name).toBe('b')
    call.release()
    await second
  })
})

describe('a PUT and the DHT', () => {
  it('does not wait for the DHT when a peered hub heard the record', async () => {
    const dht = heldDht()
    const published: string[] = []
    const hub = makeHub({ announceWaitMs: 60_000 }, {
      announce: dht.announce,
      cluster: { publish: async (name) => { published.push(name); return 1 } }
    })
    const space = await makeSpace()
    expect((await upload(hub, space.blocks)).status).toBe(200)
    const res = await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))
    expect(res.status).toBe(200)
    // Answered while the announcement still runs: it was started, and is not awaited.
    expect(dht.calls.map(c => c.name)).toEqual([space.name])
    expect(dht.running()).toBe(1)
    expect(published).toEqual([space.name])
    ;(dht.calls[0] as Call).release()
  })

  it('announces a name that peered hubs hear at most once per `announceSpacingMs`, with its newest record', async () => {
    const dht = heldDht()
    const hub = makeHub({ announceSpacingMs: 300 }, {
      announce: dht.announce,
      cluster: { publish: async () => 1 }
    })
    const space = await makeSpace()
    expect((await upload(hub, space.blocks)).status).toBe(200)
    const records = await Promise.all([1, 2, 3].map(async seq => createRecord(space.key, space.root.cid, seq)))
    expect((await putRecord(hub, space.name, records[0] as Uint8Array)).status).toBe(200)
    ;(dht.calls[0] as Call).release()
    const next = dht.next()
    expect((await putRecord(hub, space.name, records[1] as Uint8Array)).status).toBe(200)
    expect((await putRecord(hub, space.name, records[2] as Uint8Array)).status).toBe(200)
    expect(dht.calls).toHaveLength(1)
    expect((await next).record).toEqual(records[2])
    ;(dht.calls[1] as Call).release()
  })

  it('waits for the DHT announcement when no peered hub heard the record', async () => {
    const dht = heldDht()
    const hub = makeHub({ announceWaitMs: 60_000 }, {
      announce: dht.announce,
      cluster: { publish: async () => 0 }
    })
    const space = await makeSpace()
    expect((await upload(hub, space.blocks)).status).toBe(200)
    const started = dht.next()
    const put = putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))
    const call = await started
    expect(await settled(put)).toBe(false)
    call.release()
    expect((await put).status).toBe(200)
  })

  it('waits at most `announceWaitMs` for a DHT that does not answer', async () => {
    const dht = heldDht()
    const hub = makeHub({ announceWaitMs: 50 }, { announce: dht.announce })
    const space = await makeSpace()
    expect((await upload(hub, space.blocks)).status).toBe(200)
    expect((await putRecord(hub, space.name, await createRecord(space.key, space.root.cid, 1))).status).toBe(200)
    expect(dht.running()).toBe(1)
    ;(dht.calls[0] as Call).release()
  })
})

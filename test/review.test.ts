/**
 * Adversarial checks of the write path: an acknowledged write must never be lost or left behind,
 * whatever interleaves with it (a state write in flight, a publish whose answer was lost).
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { fileState, memoryState, memoryStore, openSpace, StoreError } from '../src/index.js'
import type { Space, SpaceOptions, SpaceStateStore, Store } from '../src/index.js'
import { account, KEY_A } from './helpers/signers.js'

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 5 }) })

const open: Space[] = []
afterEach(async () => { for (const s of open.splice(0)) await s.close().catch(() => {}) })

async function device (store: Store, state: SpaceStateStore, extra: Partial<SpaceOptions> = {}): Promise<Space> {
  const space = await openSpace({ signer: account(KEY_A), store, state, retryDelayMs: 0, ...extra })
  open.push(space)
  return space
}

/** A state whose `addPending` waits until `release()`: a slow disk, made deterministic. */
function gatedState (inner: SpaceStateStore): SpaceStateStore & { gate: () => void, release: () => void, started: Promise<void> } {
  let gated = false
  let open: () => void = () => {}
  let opened = Promise.resolve()
  let markStarted: () => void = () => {}
  const out = {
    durable: inner.durable,
    get: inner.get.bind(inner),
    put: inner.put.bind(inner),
    removePending: inner.removePending.bind(inner),
    started: Promise.resolve(),
    gate () {
      gated = true
      opened = new Promise<void>(resolve => { open = resolve })
      out.started = new Promise<void>(resolve => { markStarted = resolve })
    },
    release () { gated = false; open() },
    async addPending (name: string, entries: Parameters<SpaceStateStore['addPending']>[1]) {
      if (gated) { markStarted(); await opened }
      return inner.addPending(name, entries)
    }
  }
  return out
}

/** A device on a memory store whose state's writes can be held (`state.gate()`). */
async function gatedDevice (): Promise<{ store: Store, state: ReturnType<typeof gatedState>, a: Space }> {
  const store = memoryStore()
  const state = gatedState(memoryState())
  return { store, state, a: await device(store, state) }
}

describe('writes made while the state is being written', () => {
  it('a write back to the current value, made while an earlier write is being made durable, is kept', async () => {
    const { store, state, a } = await gatedDevice()
    await a.set('k', 1)
    await a.flush()
    state.gate()
    const first = a.set('k', 2)
    await state.started // the first write's state write is under way
    const second = a.set('k', 1)
    state.release()
    await Promise.all([first, second])
    expect(await a.get('k')).toBe(1)
    await a.flush()
    const b = await device(store, memoryState(), { deviceId: 'reader' })
    expect(await b.get('k')).toBe(1)
  })

  it('a patch made while an earlier write is being made durable applies on top of it', async () => {
    const { state, a } = await gatedDevice()
    await a.set('o', { x: 1 })
    state.gate()
    const first = a.set('o', { x: 1, y: 2 })
    await state.started
    const second = a.patch({ o: { z: 3 } })
    state.release()
    await Promise.all([first, second])
    expect(await a.get('o')).toEqual({ x: 1, y: 2, z: 3 })
  })
})

/** `network` as a conditional store whose record writes go through `putRecord`. */
function conditionalStore (network: Store, putRecord: Store['putRecord']): Store {
  return {
    conditional: true,
    putBlocks: async (blocks, o) => network.putBlocks(blocks, o),
    getBlock: async (cid, o) => network.getBlock(cid, o),
    getRecord: async (name, o) => network.getRecord(name, o),
    putRecord
  }
}

describe('a publish whose answer was lost', () => {
  it('settles its writes once the store is seen to hold them', async () => {
    const network = memoryStore()
    let loseAnswer = false
    const store = conditionalStore(network, async (name, record, o) => {
      await network.putRecord(name, record, o)
      // the hub took it, but the answer never came back (a timeout, a dropped connection)
      if (loseAnswer) { loseAnswer = false; throw new StoreError('connection reset') }
    })
    const state = memoryState()
    const a = await device(store, state)
    await a.flush()
    loseAnswer = true
    await a.set('k', 'v')
    // the background publish may already have met the failure; a flush either retries past it or reports it
    await a.flush().catch((err: Error) => { expect(err).toMatchObject({ name: 'StoreError', message: 'connection reset' }) })
    expect(loseAnswer).toBe(false) // the store took the version and the answer was lost
    await a.flush()
    expect(a.pending).toBe(0)
    expect((await state.get(a.name))?.pending).toEqual([])
    const closing = a.close()
    open.splice(open.indexOf(a), 1)
    await expect(closing).resolves.toEqual({ unpublished: [] })
  })
})

describe('a state that fails after the store took a version', () => {
  it('settles the writes the store took even when recording the version seen fails', async () => {
    const store = memoryStore()
    const inner = memoryState()
    let failPut = false
    const state: SpaceStateStore = {
      durable: true,
      get: async (n) => inner.get(n),
      addPending: async (n, e) => inner.addPending(n, e),
      removePending: async (n, e) => inner.removePending(n, e),
      async put (n, seen) {
        if (failPut) { failPut = false; throw new StoreError('disk full') }
        return inner.put(n, seen)
      }
    }
    const a = await device(store, state)
    await a.flush()
    failPut = true
    await a.set('k', 'v')
    // the background publish may already have met the failure; a flush either retries past it or reports it
    await a.flush().catch((err: Error) => { expect(err).toMatchObject({ name: 'StoreError', message: 'disk full' }) })
    expect(failPut).toBe(false) // the store took the version, then the state refused to record it
    const reader = await device(store, memoryState(), { deviceId: 'reader' })
    expect(await reader.get('k')).toBe('v')
    expect(a.pending).toBe(0)
    await a.close()
    open.splice(open.indexOf(a), 1)
    expect((await inner.get(a.name))?.pending).toEqual([])
  })
})

describe('close() while a write is being made durable', () => {
  it('reports a write that became durable during close() instead of dropping it silently', async () => {
    const { state, a } = await gatedDevice()
    await a.set('before', 1)
    // Published first, so close() has nothing to publish and reaches its wait for the state at once;
    // with a publish still running, the write below could be applied and published before close() ends.
    await a.flush()
    state.gate()
    const closing = a.close()
    open.splice(open.indexOf(a), 1)
    await Promise.resolve() // close() is past its first wait for the state
    const write = a.set('k', 'v')
    await state.started
    const outcome = closing.then(() => 'resolved', (err: Error) => err)
    // Nothing but the gated state is pending: one turn of the event loop lets close() reach its last wait.
    await new Promise(resolve => setImmediate(resolve))
    state.release()
    await write
    const result = await outcome
    // The write resolved, the state is memory only and nothing published it: close() must say so.
    expect(result).toMatchObject({ name: 'UnpublishedWritesError', keys: ['k'] })
  })
})

describe('a flush aborted by its caller', () => {
  it('does not strand the writes of other callers that joined it', async () => {
    const network = memoryStore()
    let hold: (() => void) | undefined
    const store = conditionalStore(network, async (name, record, o) => {
      if (hold === undefined) await new Promise<void>(resolve => { hold = resolve })
      return network.putRecord(name, record, o)
    })
    const a = await device(store, memoryState(), { retryDelayMs: 20 })
    await a.set('x', 1) // its publish waits in putRecord
    while (hold === undefined) await new Promise(resolve => setTimeout(resolve, 1))
    const controller = new AbortController()
    const y = a.set('y', 2)
    const mine = a.flush({ signal: controller.signal }) // queues the next publish, with the caller's signal
    await y // its background publish joins that one
    controller.abort()
    ;(hold as () => void)()
    await expect(mine).rejects.toMatchObject({ name: 'AbortedError' })
    const published = new Promise<void>(resolve => { a.on('pending', e => { if (e.count === 0) resolve() }) })
    if (a.pending > 0) await published
    const reader = await device(network, memoryState(), { deviceId: 'reader' })
    expect(await reader.get('y')).toBe(2)
  }, 10_000)
})

describe('fileState lock files', () => {
  it('lets one writer at a time take over a lock left by a crashed process', async () => {
    // A pid that has exited: its lock is stale, and every waiting writer judges it so at once.
    const deadPid = spawnSync(process.execPath, ['-e', '0']).pid as number
    for (let round = 0; round < 20; round++) {
      const dir = mkdtempSync(join(tmpdir(), 'userspace-review-'))
      dirs.push(dir)
      const name = 'k51review'
      writeFileSync(join(dir, `${name}.lock`), String(deadPid))
      const writers = [...Array(6).keys()].map(async i => fileState(dir).addPending(name, [{ section: 'private', key: `k${i}`, stamp: 1, device: 'd', json: '1' }]))
      await Promise.all(writers)
      const keys = (await fileState(dir).get(name))?.pending.map(e => e.key).sort()
      expect(keys).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5'])
    }
  })
})

/**
 * What a user can rely on when the network fails or the process dies: a write that `set` acknowledged
 * is kept on the device and reaches every device in the end, whatever happens between (the hub going
 * down, a crash, a reload, `close()`); a race between devices is merged, never an error; an expired
 * record is the last version, renewed by its owner; a stale record never replaces a newer one; and
 * input that would brick a space for other readers is refused before anything is written.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { ConflictError, fileState, layeredStore, memoryState, memoryStore, openSpace, StoreError, UntrustedHubError } from '../src/index.js'
import { lineLogger } from '../src/logger.js'
import type { Json, MemoryStore, Space, SpaceOptions, SpaceStateStore, Store } from '../src/index.js'
import { readRecord } from '../src/store/record.js'
import { account, KEY_A, nonDeterministicSigner } from './helpers/signers.js'
import { makeHub, storeFor } from './helpers/hub-app.js'
import { versionOwner } from '../src/space/root.js'

const dirs: string[] = []
function tempDir (): string {
  const dir = mkdtempSync(join(tmpdir(), 'userspace-durable-'))
  dirs.push(dir)
  return dir
}
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 5 }) })

const open: Space[] = []
afterEach(async () => { for (const s of open.splice(0)) await s.close().catch(() => {}) })

/** A device's link to the network: a store it can be cut off from, for good when `dead`. */
interface Link extends Store { online: boolean, dead: boolean }
function link (network: MemoryStore): Link {
  const check = (): void => { if (l.dead || !l.online) throw new StoreError('offline') }
  const l: Link = {
    online: true,
    dead: false,
    conditional: true,
    async putBlocks (blocks, o) { check(); return network.putBlocks(blocks, o) },
    async getBlock (cid, o) { check(); return network.getBlock(cid, o) },
    async putRecord (name, record, o) { check(); return network.putRecord(name, record, o) },
    async getRecord (name, o) { check(); return network.getRecord(name, o) }
  }
  return l
}

async function device (store: Store, state: SpaceStateStore, extra: Partial<SpaceOptions> = {}): Promise<Space> {
  const space = await openSpace({ signer: account(KEY_A), store, state, retryDelayMs: 0, ...extra })
  open.push(space)
  return space
}

describe('pending writes are durable on the device', () => {
  it('a write made with the store down survives a crash and is published by the next open', async () => {
    const network = memoryStore()
    const dir = tempDir()
    const first = link(network)
    const a = await device(first, fileState(dir))
    await a.set('before', 1)
    await a.flush()
    first.online = false
    await a.set('offline', 'kept')          // resolves: durable in the state file
    await a.public.set('nick', 'al')
    expect(a.pending).toBe(2)
    first.dead = true                       // the process dies: this instance never publishes again

    const again = await device(link(network), fileState(dir))
    expect(await again.get('offline')).toBe('kept')
    await again.flush()
    expect(again.pending).toBe(0)
    const other = await device(network, memoryState())
    expect(await other.getAll()).toEqual({ before: 1, offline: 'kept' })
    expect(await other.public.get('nick')).toBe('al')
    await again.close()
    expect((await fileState(dir).get(a.name))?.pending).toEqual([])
  })

  it('flush() resolves once the state file records the published version and no longer lists its writes', async () => {
    const dir = tempDir()
    const a = await device(memoryStore(), fileState(dir))
    for (let i = 0; i < 3; i++) {
      await a.set('k', i)
      // one pending entry, its key sealed (see "sealed in the device state" below)
      expect((await fileState(dir).get(a.name))?.pending.map(e => e.key)).toEqual([expect.stringMatching(/^k:[\w-]{22}$/)])
      await a.flush()
      // read by another instance, as another process would: nothing of this publish is left to write
      const state = await fileState(dir).get(a.name)
      expect(state).toMatchObject({ sequence: a.sequence, root: a.root?.toString(), pending: [] })
    }
  })

  it('keeps pending writes while the store is down across several reopens, and a newer write elsewhere wins', async () => {
    const network = memoryStore()
    const dir = tempDir()
    const l = link(network)
    const offline = await device(l, fileState(dir))
    l.online = false
    await offline.set('k', 'old')
    await offline.set('mine', 1)
    expect(await offline.close()).toEqual({ unpublished: ['k', 'mine'] }) // durable state: kept
    const elsewhere = await device(network, memoryState(), { now: () => Date.now() + 60_000 })
    await elsewhere.set('k', 'newer')
    await elsewhere.flush()
    const back = await device(link(network), fileState(dir))
    await back.flush()
    expect(await back.getAll()).toEqual({ k: 'newer', mine: 1 })
    await back.close()
    expect((await fileState(dir).get(back.name))?.pending).toEqual([])
  })

  it('state files never lose one process\'s pending writes to another\'s', async () => {
    const dir = tempDir()
    const s1 = fileState(dir)
    const s2 = fileState(dir)
    const entry = (key: string, stamp: number): { section: 'private', key: string, stamp: number, device: string, json: string } =>
      ({ section: 'private', key, stamp, device: 'd', json: String(stamp) })
    await Promise.all([
      ...Array.from({ length: 20 }, async (_, i) => s1.addPending('k51x', [entry(`a${i}`, i + 1)])),
      ...Array.from({ length: 20 }, async (_, i) => s2.addPending('k51x', [entry(`b${i}`, i + 1)]))
    ])
    expect((await s1.get('k51x'))?.pending).toHaveLength(40)
    await s2.addPending('k51x', [entry('a1', 1000)])
    await s1.removePending('k51x', [entry('a1', 2)])          // an older entry: the newer stays
    expect((await s1.get('k51x'))?.pending.find(e => e.key === 'a1')?.stamp).toBe(1000)
    await s1.put('k51x', { sequence: 5, root: 'r5' })
    await s2.put('k51x', { sequence: 3, root: 'r3' })         // a lower sequence never replaces a higher
    expect(await s1.get('k51x')).toMatchObject({ sequence: 5, root: 'r5' })
    await expect(s1.get('../etc')).rejects.toMatchObject({ name: 'InvalidInputError' })
  })
})

describe('a write racing a merge', () => {
  it('a later entry merged while the write was being made durable is not overwritten by it', async () => {
    const network = memoryStore()
    const inner = memoryState()
    let release!: () => void
    const gate = new Promise<void>((resolve) => { release = resolve })
    let slow = false
    const state: SpaceStateStore = {
      ...inner,
      durable: false,
      addPending: async (n, e) => { if (slow) await gate; return inner.addPending(n, e) }
    }
    const a = await device(network, state)
    const heard = new Promise<void>((resolve) => { a.subscribe(() => { resolve() }) })
    const b = await device(network, memoryState(), { now: () => Date.now() + 60_000 })
    slow = true
    const writing = a.set('k', 'from a, earlier')
    await b.set('k', 'from b, later'); await b.flush()
    await heard
    release()
    await writing
    expect(await a.get('k')).toBe('from b, later')
    await a.flush()
    expect(a.pending).toBe(0)
  })
})

describe('memoryStore is a conditional store', () => {
  it('refuses a lower sequence, or the same one with another value, and keeps what it had', async () => {
    const network = memoryStore()
    const space = await device(network, memoryState())
    await space.set('a', 1); await space.flush()
    const first = network.records.get(space.name)!
    await space.set('a', 2); await space.flush()
    const second = network.records.get(space.name)!
    await expect(network.putRecord(space.name, first)).rejects.toMatchObject({ name: 'ConflictError' })
    const other = memoryStore()
    const fork = await device(other, memoryState())
    await fork.set('b', 1); await fork.flush()
    await fork.set('b', 2); await fork.flush()      // sequence 2 with another root
    await expect(network.putRecord(space.name, other.records.get(space.name)!)).rejects.toMatchObject({ name: 'EquivocationError' })
    expect(network.records.get(space.name)).toBe(second)
    await network.putRecord(space.name, second)     // the same record again is fine
  })
})

describe('fileState locks', () => {
  it('takes over a lock left by a process that died, and waits for (then names) a live holder', async () => {
    const { writeFileSync } = await import('node:fs')
    const { spawnSync } = await import('node:child_process')
    const dir = tempDir()
    const state = fileState(dir)
    await state.put('k51x', { sequence: 1, root: 'r1' })
    const dead = spawnSync(process.execPath, ['-e', '0']).pid as number // exited: its pid names no process
    writeFileSync(join(dir, 'k51x.lock'), String(dead))
    await state.put('k51x', { sequence: 2, root: 'r2' })
    expect(await state.get('k51x')).toMatchObject({ sequence: 2 })
    writeFileSync(join(dir, 'k51x.lock'), String(process.pid)) // alive: a real holder
    await expect(state.put('k51x', { sequence: 3, root: 'r3' })).rejects.toMatchObject({ name: 'StoreError' })
    expect(await state.get('k51x')).toMatchObject({ sequence: 2 })
  }, 20_000)
})

describe('close()', () => {
  it('rejects with UnpublishedWritesError naming the keys when nothing durable keeps them', async () => {
    const l = link(memoryStore())
    const space = await device(l, memoryState())
    l.online = false
    await space.set('queued', 2)
    await space.public.set('bio', 'x')
    expect(await space.get('queued')).toBe(2)
    const err = await space.close().catch((e: unknown) => e)
    expect(err).toMatchObject({ name: 'UnpublishedWritesError', keys: ['queued', 'public:bio'] })
  })

  it('publishes what is pending before it resolves', async () => {
    const network = memoryStore()
    const space = await device(network, memoryState())
    await space.set('queued', 2)
    expect(await space.close()).toEqual({ unpublished: [] })
    expect(await (await device(network, memoryState())).get('queued')).toBe(2)
  })

  it('resolves listing what stays pending when a durable state keeps it', async () => {
    const l = link(memoryStore())
    const space = await device(l, fileState(tempDir()))
    l.online = false
    await space.set('queued', 2)
    expect(await space.close()).toEqual({ unpublished: ['queued'] })
  })
})

describe('races between devices', () => {
  it('two devices publishing the same sequence both resolve, and both writes end up everywhere', async () => {
    const network = memoryStore()
    const a = await device(network, memoryState())
    await a.set('base', 0)
    await a.flush()
    const b = await device(network, memoryState())
    const events: string[] = []
    const conflicts: unknown[] = []
    a.on('error', e => events.push(e.name)); b.on('error', e => events.push(e.name))
    a.on('conflict', e => conflicts.push(e))
    // both build sequence 2 on sequence 1 without seeing each other
    await Promise.all([a.set('from-a', 1), b.set('from-b', 2)])
    await Promise.all([a.flush(), b.flush()])
    await a.refresh(); await b.refresh()
    expect(await a.getAll()).toEqual({ base: 0, 'from-a': 1, 'from-b': 2 })
    expect(await b.getAll()).toEqual({ base: 0, 'from-a': 1, 'from-b': 2 })
    expect(a.pending + b.pending).toBe(0)
    expect(events).toEqual([])
    expect(readRecord(network.records.get(a.name)!).sequence).toBe(3n)
  })

  it('against a conditional store, a publish costs no resolve', async () => {
    const network = memoryStore()
    let resolves = 0
    const counting: Store = { ...link(network), getRecord: async (n, o) => { resolves++; return network.getRecord(n, o) } }
    const space = await device(counting, memoryState())
    const before = resolves
    for (let i = 0; i < 5; i++) { await space.set(`k${i}`, i); await space.flush() }
    expect(resolves).toBe(before)
  })
})

describe('expired records', () => {
  it('the owner opens an expired space, reads the last version and renews it with a higher sequence', async () => {
    const network = memoryStore()
    const signer = privateKeyToAccount(generatePrivateKey())
    const first = await openSpace({ signer, store: network, recordLifetimeMs: 300 })
    await first.set('kept', 'yes')
    await first.public.set('name', 'Alice')
    await first.close()
    await new Promise(resolve => setTimeout(resolve, 400))
    const stale = readRecord(network.records.get(first.name)!)
    expect(stale.validUntilMs).toBeLessThan(Date.now())

    const expired: unknown[] = []
    const again = await openSpace({ signer, store: network, onProgress: () => {} })
    open.push(again)
    again.on('expired', e => expired.push(e))
    expect(await again.get('kept')).toBe('yes')
    await again.flush()
    const renewed = readRecord(network.records.get(first.name)!)
    expect(renewed.sequence).toBe(stale.sequence + 1n)
    expect(renewed.validUntilMs).toBeGreaterThan(Date.now() + 300 * 24 * 3600 * 1000)
  })
})

describe('rollback protection by default', () => {
  it('a fresh open with the default state refuses an older record than one seen before', async () => {
    const network = memoryStore()
    let replay: Uint8Array | undefined
    const store: Store = {
      putBlocks: network.putBlocks.bind(network),
      getBlock: network.getBlock.bind(network),
      putRecord: async (n, r, o) => network.putRecord(n, r, o),
      getRecord: async (n, o) => replay ?? network.getRecord(n, o)
    }
    const signer = account(KEY_A)
    const first = await openSpace({ signer, store })       // default state: a file in the state directory
    await first.set('token', 'secret'); await first.flush()
    const old = network.records.get(first.name)!
    await first.remove('token'); await first.flush()
    await first.close()
    replay = old
    const again = await openSpace({ signer, store })
    open.push(again)
    const rollbacks: unknown[] = []
    again.on('rollback', e => rollbacks.push(e))
    expect(await again.get('token')).toBeUndefined()
    expect(again.sequence).toBe(2)
    await again.refresh()
    expect(rollbacks).toEqual([{ sequence: 1, seen: 2 }])
  })
})

describe('input that would brick a space is refused and changes nothing', () => {
  const bad: Array<[string, (s: Space) => Promise<unknown>]> = [
    ['a lone high surrogate as a key', async s => s.set('\ud800', 1)],
    ['a lone low surrogate as a public key', async s => s.public.set('x\udc00', 1)],
    ['a lone surrogate in a string value', async s => s.set('k', 'half an emoji \ud83d')],
    ['a lone surrogate in a nested key', async s => s.set('k', { ok: { ['\udfff']: 1 } })],
    ['a lone surrogate in a patch key', async s => s.patch({ k: { ['\ud800']: 1 } })],
    ['a lone surrogate in a public patch value', async s => s.public.patch({ k: ['\ud800'] })]
  ]
  for (const [what, write] of bad) {
    it(`refuses ${what} with InvalidInputError`, async () => {
      const network = memoryStore()
      const space = await device(network, memoryState())
      await space.set('keep', 1); await space.flush()
      const record = network.records.get(space.name)
      await expect(write(space)).rejects.toMatchObject({ name: 'InvalidInputError' })
      expect(space.pending).toBe(0)
      expect(network.records.get(space.name)).toBe(record)
      expect(await space.getAll()).toEqual({ keep: 1 })
    })
  }

  it('refuses writes from a clock past 2100, so no stamp can leave the safe-integer range', async () => {
    const network = memoryStore()
    const year2300 = Date.UTC(2300, 0, 1)
    const space = await device(network, memoryState(), { now: () => year2300 })
    await expect(space.set('k', 1)).rejects.toMatchObject({ name: 'InvalidInputError' })
    expect(space.pending).toBe(0)
    expect(network.records.size).toBe(0)
  })

  it('well-formed emoji and other scripts are fine', async () => {
    const space = await device(memoryStore(), memoryState())
    await space.set('🦊', { 'ключ': '名前 👩‍👩‍👧' })
    expect(await space.get('🦊')).toEqual({ 'ключ': '名前 👩‍👩‍👧' })
  })
})

describe('no-op writes publish nothing', () => {
  it('setting an unchanged value or removing a missing key makes no new version', async () => {
    const network = memoryStore()
    const space = await device(network, memoryState())
    await space.set('k', { a: 1 }); await space.flush()
    const sequence = space.sequence
    await space.set('k', { a: 1 })
    await space.remove('missing')
    await space.patch({ k: { a: 1 }, gone: null })
    await space.flush()
    expect(space.sequence).toBe(sequence)
    expect(space.pending).toBe(0)
  })
})

describe('property: every acknowledged write reaches both devices', () => {
  type Step =
    | { op: 'set', d: number, key: string }
    | { op: 'close' | 'crash', d: number }
    | { op: 'down' | 'up' }
  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ op: fc.constant('set' as const), d: fc.nat(1), key: fc.constantFrom('a', 'b', 'c') }),
    fc.record({ op: fc.constantFrom('close' as const, 'crash' as const), d: fc.nat(1) }),
    fc.record({ op: fc.constantFrom('down' as const, 'up' as const) })
  )

  it('over random interleavings of set / close / crash / hub down / hub up on two devices with file state', async () => {
    await fc.assert(fc.asyncProperty(fc.array(step, { maxLength: 14 }), async (steps) => {
      const network = memoryStore()
      let t = 1_700_000_000_000
      const now = (): number => ++t
      const dirsOf = [tempDir(), tempDir()]
      let hubUp = true
      const links: Link[] = []
      const spaces: Space[] = []
      // Opening needs the network (a device with no local copy): a device that restarts while the
      // hub is down comes back once it is up.
      const waiting = new Set<number>()
      const start = async (d: number): Promise<void> => {
        if (!hubUp) { waiting.add(d); return }
        const l = link(network)
        links[d] = l
        spaces[d] = await openSpace({ signer: account(KEY_A), store: l, state: fileState(dirsOf[d]), retryDelayMs: 0, now, deviceId: `device-${d}` })
        waiting.delete(d)
      }
      await start(0); await start(1)
      const last = new Map<string, number>()
      let n = 0
      for (const s of steps) {
        if (!('d' in s)) {
          hubUp = s.op === 'up'
          for (const l of links) if (!l.dead) l.online = hubUp
          if (hubUp) for (const d of [...waiting]) await start(d)
          continue
        }
        if (waiting.has(s.d)) continue
        if (s.op === 'set') {
          const value = ++n
          await spaces[s.d]!.set(s.key, value)    // acknowledged: it must survive
          last.set(s.key, value)
          await spaces[s.d]!.flush().catch((err: Error) => { if (err.name !== 'StoreError') throw err })
          continue
        }
        if (s.op === 'close') await spaces[s.d]!.close()
        if (s.op === 'crash') links[s.d]!.dead = true
        await start(s.d)
      }
      hubUp = true
      for (const l of links) if (!l.dead) l.online = true
      for (const d of [...waiting]) await start(d)
      for (const space of spaces) await space.flush()
      for (const space of spaces) await space.refresh()
      const expected = Object.fromEntries(last) as Record<string, Json>
      for (const space of spaces) expect(await space.getAll()).toEqual(expected)
      for (const space of spaces) await space.close()
    }), { numRuns: 30 })
  })
})

describe('taking an address back (rebind)', () => {
  it('a wallet bound elsewhere re-binds its address to its real space on the hub, with a dated binding', async () => {
    const hub = makeHub()
    const victim = account(KEY_A)
    // A binding signed elsewhere: the same wallet, through a signature that derives another space.
    const elsewhere = await openSpace({ signer: nonDeterministicSigner(KEY_A), store: storeFor(hub), state: memoryState() })
    await elsewhere.set('bait', 1); await elsewhere.flush(); await elsewhere.close()
    expect(await storeFor(hub).lookupAddress?.(victim.address)).toBe(elsewhere.name)

    await expect(openSpace({ signer: victim, store: storeFor(hub), state: memoryState() })).rejects.toMatchObject({ name: 'NonDeterministicSignerError' })
    const real = await openSpace({ signer: victim, store: storeFor(hub), state: memoryState(), rebind: true })
    open.push(real)
    await real.flush()
    expect(await storeFor(hub).lookupAddress?.(victim.address)).toBe(real.name)
    expect((await versionOwner(real.root!, async cid => await storeFor(hub).getBlock(cid))).issuedAt).toBeGreaterThan(0)
    // and from now on it opens without the option
    const again = await openSpace({ signer: victim, store: storeFor(hub), state: memoryState() })
    open.push(again)
    expect(again.name).toBe(real.name)
    // a wallet that signs differently each time can never take the address with rebind
    await expect(openSpace({ signer: nonDeterministicSigner(KEY_A), store: storeFor(hub), state: memoryState(), rebind: true }))
      .rejects.toMatchObject({ name: 'NonDeterministicSignerError' })
    expect(await storeFor(hub).lookupAddress?.(victim.address)).toBe(real.name)
  })
})

describe('history after retention', () => {
  it('lists what is stored and marks the version whose parent was dropped as truncated', async () => {
    const network = memoryStore()
    const space = await device(network, memoryState())
    for (let i = 0; i < 4; i++) { await space.set('v', i); await space.flush() }
    const full = await space.history()
    expect(full.map(v => v.sequence)).toEqual([4, 3, 2, 1])
    network.blocks.delete(full[2]!.root.toString())           // sequence 2 dropped, as a hub's retention would
    const trimmed = await space.history()
    expect(trimmed.map(v => [v.sequence, v.truncated === true])).toEqual([[4, false], [3, true]])
  })
})

describe('fileState never takes a lock from a live holder', () => {
  it('an old lock whose process is alive is waited for, not taken over', async () => {
    const { writeFileSync, utimesSync } = await import('node:fs')
    const dir = tempDir()
    const state = fileState(dir)
    await state.put('k51y', { sequence: 1, root: 'r1' })
    const lockPath = join(dir, 'k51y.lock')
    writeFileSync(lockPath, String(process.pid))                 // a live holder, paused for 30 s
    const past = new Date(Date.now() - 30_000)
    utimesSync(lockPath, past, past)
    await expect(state.put('k51y', { sequence: 2, root: 'r2' })).rejects.toMatchObject({ name: 'StoreError' })
    expect(await state.get('k51y')).toMatchObject({ sequence: 1 })
    const { readFileSync } = await import('node:fs')
    expect(readFileSync(lockPath, 'utf8')).toBe(String(process.pid)) // still the holder's
  }, 20_000)
})

describe('a publish that loses a race to a version holding everything', () => {
  it('ends with space:publish:end (the winner is the published version), not silence', async () => {
    const network = memoryStore()
    const a = await device(network, memoryState())
    await a.set('base', 0); await a.flush()
    let release!: () => void
    const gate = new Promise<void>((resolve) => { release = resolve })
    let uploading!: () => void
    const started = new Promise<void>((resolve) => { uploading = resolve })
    const slow: Store = { ...link(network), putBlocks: async (blocks, o) => { uploading(); await gate; return network.putBlocks(blocks, o) } }
    const events: string[] = []
    // b's clock runs a second behind a's, so a's write is the later one even when both land in the same millisecond
    const b = await device(slow, memoryState(), { onProgress: e => { events.push(e.type) }, now: () => Date.now() - 1000 })
    await b.set('k', 'from b, earlier')            // its publish waits at the upload
    await started
    await a.set('k', 'from a, later'); await a.flush() // a later write to the same key wins the sequence
    release()
    await b.flush()
    expect(await b.get('k')).toBe('from a, later')
    expect(b.pending).toBe(0)
    expect(events.slice(events.indexOf('space:publish:race'))).toEqual(['space:publish:race', 'space:publish:end'])
  })
})

describe('bounded retries and honest failures', () => {
  it('a store that refuses every record as a conflict stops the publish after 8 attempts, writes kept', async () => {
    const network = memoryStore()
    let puts = 0
    const refusing: Store = {
      ...link(network),
      putRecord: async () => { puts++; throw new ConflictError('always behind') }
    }
    let failed!: () => void
    const backgroundFailed = new Promise<void>((resolve) => { failed = resolve })
    const space = await device(refusing, memoryState(), { onProgress: e => { if (e.type === 'space:publish:error') failed() } })
    await space.set('k', 1)
    await backgroundFailed                          // the publish the write started gave up
    expect(puts).toBe(8)
    await expect(space.flush()).rejects.toMatchObject({ name: 'ConflictError' })
    expect(puts).toBe(16)                           // and so does each later one
    expect(space.pending).toBe(1)
    expect(await space.get('k')).toBe(1)
  })

  it('layeredStore falls back to the local record when the hub is unreachable, never when it lies', async () => {
    const local = memoryStore()
    const space = await device(local, memoryState())
    await space.set('k', 1); await space.flush()
    const failing = (err: Error): Store => ({
      putBlocks: async () => { throw err },
      getBlock: async () => { throw err },
      putRecord: async () => { throw err },
      getRecord: async () => { throw err }
    })
    const offline = layeredStore(local, failing(new StoreError('unreachable')))
    expect(await offline.getRecord(space.name, { nocache: true })).toBe(local.records.get(space.name))
    const lying = layeredStore(local, failing(new UntrustedHubError('hub sent a 300 MiB record')))
    await expect(lying.getRecord(space.name, { nocache: true })).rejects.toMatchObject({ name: 'UntrustedHubError' })
  })
})

describe('pending writes sealed in the device state', () => {
  /** Every byte of the state files in `dir`, as text. */
  const stateText = (dir: string): string => readdirSync(dir).map(f => readFileSync(join(dir, f), 'latin1')).join('\n')

  it('keeps neither the keys nor the values of pending writes in a state file, and still publishes them after a crash', async () => {
    const network = memoryStore()
    const dir = tempDir()
    const l = link(network)
    const a = await device(l, fileState(dir))
    l.online = false
    await a.set('private-key-PLAINTEXT-1', 'private-value-PLAINTEXT-2')
    await a.public.set('public-key-PLAINTEXT-3', { v: 'public-value-PLAINTEXT-4' })
    await a.remove('removed-key-PLAINTEXT-5')
    l.dead = true
    const text = stateText(dir)
    expect(text).toMatch(/u1:/)
    expect(text).not.toMatch(/PLAINTEXT/)
    // the next open reads them back and publishes them
    const again = await device(link(network), fileState(dir))
    expect(await again.get('private-key-PLAINTEXT-1')).toBe('private-value-PLAINTEXT-2')
    await again.flush()
    const other = await device(network, memoryState())
    expect(await other.getAll()).toEqual({ 'private-key-PLAINTEXT-1': 'private-value-PLAINTEXT-2' })
    expect(await other.public.get('public-key-PLAINTEXT-3')).toEqual({ v: 'public-value-PLAINTEXT-4' })
    expect((await fileState(dir).get(a.name))?.pending).toEqual([])
  })

  it('removes, and reports, a pending write changed on disk or moved to another key', async () => {
    const network = memoryStore()
    const dir = tempDir()
    const l = link(network)
    const a = await device(l, fileState(dir))
    l.online = false
    await a.set('first', 1)
    await a.set('second', 2)
    await a.set('third', 3)
    l.dead = true
    const [one, two, three] = (await fileState(dir).get(a.name))?.pending ?? []
    // another process's view of the state: one entry's sealed text changed, another's id swapped for
    // a third entry's (its sealed text then names a key that id does not stand for)
    const tampered = { ...one!, json: one!.json!.slice(0, -6) + (one!.json!.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA') }
    const moved = { ...two!, key: three!.key, stamp: three!.stamp + 1 }
    const state = fileState(dir)
    await state.removePending(a.name, [one!, two!])
    await state.addPending(a.name, [tampered])
    await state.removePending(a.name, [three!])
    await state.addPending(a.name, [moved])
    expect((await state.get(a.name))?.pending).toHaveLength(2)
    const lines: string[] = []
    const again = await device(link(network), fileState(dir), { logger: lineLogger((line) => { lines.push(line) }) })
    // reported to listeners added once the space is open, too
    const errors: Error[] = []
    again.on('error', (err) => { errors.push(err) })
    await again.flush()
    // neither went out, the open said why, and the state holds neither any more
    expect(await again.getAll()).toEqual({})
    expect(lines.filter(l => /a pending write of k51\w+ in the device state could not be opened and was removed/.test(l))).toHaveLength(2)
    await expect.poll(() => errors.length).toBe(2)
    expect(again.pending).toBe(0)
    expect((await fileState(dir).get(a.name))?.pending).toEqual([])
  })

  it('reads a pending write an earlier version kept in plain text, seals it in its place, and publishes it', async () => {
    const network = memoryStore()
    const dir = tempDir()
    const a = await device(network, fileState(dir))
    await a.flush()
    const name = a.name
    await a.close()
    await fileState(dir).addPending(name, [{ section: 'private', key: 'legacy', stamp: Date.now() * 1000, device: 'an-earlier-device', json: '"kept in plain text"' }])
    expect(stateText(dir)).toMatch(/kept in plain text/)
    const again = await device(network, fileState(dir))
    expect(await again.get('legacy')).toBe('kept in plain text')
    // sealed in its place as soon as it was read (its old line stays in the journal until the journal is next rewritten whole)
    expect(JSON.stringify(await fileState(dir).get(name))).not.toMatch(/kept in plain text|legacy/)
    await again.flush()
    expect((await fileState(dir).get(name))?.pending).toEqual([])
    const other = await device(network, memoryState())
    expect(await other.get('legacy')).toBe('kept in plain text')
  })
})


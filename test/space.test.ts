import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as dagCbor from '@ipld/dag-cbor'
import vectors from './fixtures/vectors.json' with { type: 'json' }
import { openSpace, memoryState, memoryStore, readPublic, UnavailableError } from '../src/index.js'
import type { Json, MemoryStore, Space, Store } from '../src/index.js'
import { utf8 } from '../src/crypto/bytes.js'
import { associatedData, open as openEnvelope } from '../src/crypto/envelope.js'
import { currentBlocks, decodeCurrent, decodeRoot, versionOwner } from '../src/space/root.js'
import { readRecord } from '../src/store/record.js'
import { MAX_BLOCK_BYTES } from '../src/store/blocks.js'
import { mergePatch } from './helpers/merge-patch.js'
import { account, highS, KEY_A, KEY_B, nonDeterministicSigner, provider, rewritingSigner, vZeroOne } from './helpers/signers.js'

/** The name KEY_A's signature of the version-1 open message derives. Changing the format changes it. */
const NAME_A = 'k51qzi5uqu5djtge0ytuuxft6nytrerco6wntnw00rdwln2gfimils7jf1wmmb'

async function open (store: Store = memoryStore(), key = KEY_A, extra: Record<string, unknown> = {}): Promise<Space> {
  return openSpace({ signer: account(key), store, ...extra })
}

/** The bucket CIDs of the version under `root`, in bucket order. */
async function bucketsOf (store: Store, root: CID): Promise<CID[]> {
  const state = await currentBlocks(decodeRoot(await store.getBlock(root)).current, async c => store.getBlock(c))
  return state.filter(b => b.cid.code === raw.code).map(b => b.cid)
}

/** A snapshot of everything a store holds, to prove a refused write changed nothing. */
function snapshot (store: MemoryStore): string {
  return JSON.stringify([[...store.blocks.keys()].sort(), [...store.records.entries()].map(([k, v]) => [k, Buffer.from(v).toString('hex')])])
}

describe('openSpace', () => {
  it('derives the documented name from the version-1 open message (format vector)', async () => {
    const space = await open()
    expect(space.name).toBe(NAME_A)
    expect(space.address).toBe(account(KEY_A).address)
    expect(space.sequence).toBe(0)
  })

  it('works with a viem account, an EIP-1193 provider and every encoding of the signature', async () => {
    const store = memoryStore()
    const first = await open(store)
    await first.set('theme', 'dark')
    await first.flush()
    const signers = [
      provider(KEY_A),
      rewritingSigner(KEY_A, vZeroOne),
      rewritingSigner(KEY_A, highS),
      rewritingSigner(KEY_A, s => vZeroOne(highS(s)))
    ]
    for (const signer of signers) {
      const space = await openSpace({ signer, store })
      expect(space.name).toBe(first.name)
      expect(await space.get('theme')).toBe('dark')
    }
  })

  it('asks for one signature to open an existing space, two to create one', async () => {
    const store = memoryStore()
    const creator = rewritingSigner(KEY_A, s => s)
    const space = await openSpace({ signer: creator, store })
    expect(creator.count).toBe(2)
    await space.set('a', 1)
    await space.flush()
    const opener = rewritingSigner(KEY_A, s => s)
    await openSpace({ signer: opener, store })
    expect(opener.count).toBe(1)
  })

  it('refuses a signature that does not recover to the signer address', async () => {
    const liar = { address: account(KEY_A).address, signMessage: async (message: string) => account(KEY_B).signMessage({ message }) }
    await expect(openSpace({ signer: liar, store: memoryStore() })).rejects.toMatchObject({ name: 'SignerMismatchError' })
  })

  it('reports a rejected signature request as SignerError', async () => {
    await expect(openSpace({ signer: provider(KEY_A, { reject: true }), store: memoryStore() })).rejects.toMatchObject({ name: 'SignerError' })
  })

  it('refuses a wallet that does not sign deterministically when asked to check', async () => {
    await expect(openSpace({ signer: nonDeterministicSigner(KEY_A), store: memoryStore(), checkDeterministic: true }))
      .rejects.toMatchObject({ name: 'NonDeterministicSignerError' })
  })

  for (const answer of ['names another space', 'fails'] as const) {
    it(`asks for the record while the address lookup runs, and calls it off when the lookup ${answer}`, async () => {
    const base = memoryStore()
    let recordSignal: AbortSignal | undefined
    let lookupStarted = false
    const store = {
      ...base,
      putBlocks: base.putBlocks.bind(base),
      getBlock: base.getBlock.bind(base),
      putRecord: base.putRecord.bind(base),
      lookupAddress: async () => {
        lookupStarted = true
        // the record request is already out when the answer comes
        await new Promise(resolve => setImmediate(resolve))
        expect(recordSignal).toBeDefined()
        if (answer === 'fails') throw new UnavailableError('the hub is down')
        return 'k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8'
      },
      getRecord: async (_name: string, options?: { signal?: AbortSignal }) => {
        recordSignal = options?.signal
        await new Promise((_resolve, reject) => { options?.signal?.addEventListener('abort', () => { reject(new Error('aborted')) }) })
        return undefined
      }
    }
    await expect(openSpace({ signer: account(KEY_A), store, state: memoryState() })).rejects.toMatchObject({ name: answer === 'fails' ? 'UnavailableError' : 'NonDeterministicSignerError' })
    expect(lookupStarted).toBe(true)
    expect(recordSignal?.aborted).toBe(true)
    })
  }

  it('needs a store', async () => {
    await expect(openSpace({ signer: account(KEY_A) })).rejects.toMatchObject({ name: 'InvalidInputError' })
  })
})

describe('get / set / remove / getAll / patch', () => {
  it('stores any JSON value and reads it back after re-opening', async () => {
    const store = memoryStore()
    const space = await open(store)
    const values: Record<string, Json> = {
      s: 'text ✓ 🦊', n: 42, f: -0.5, t: true, z: null, a: [1, 'two', [3]], o: { nested: { deep: [{}] } }, e: ''
    }
    for (const [k, v] of Object.entries(values)) await space.set(k, v)
    expect(await space.getAll()).toEqual(values)
    await space.remove('n')
    await space.flush()
    expect(await space.get('n')).toBeUndefined()
    const again = await open(store)
    expect(await again.getAll()).toEqual({ ...values, n: undefined })
    expect(Object.keys(await again.getAll())).not.toContain('n')
  })

  it('returns copies: changing a returned object does not change the space', async () => {
    const space = await open()
    await space.set('o', { a: 1 })
    await space.flush()
    const got = await space.get('o') as { a: number }
    got.a = 2
    expect(await space.get('o')).toEqual({ a: 1 })
  })

  it('publishes a signed record per change with an increasing sequence', async () => {
    const store = memoryStore()
    const space = await open(store)
    await space.set('a', 1)
    await space.flush()
    const first = readRecord(store.records.get(space.name)!)
    await space.set('b', 2)
    await space.flush()
    const second = readRecord(store.records.get(space.name)!)
    expect(second.sequence).toBe(first.sequence + 1n)
    expect(second.validUntilMs - Date.now()).toBeGreaterThan(300 * 24 * 3600 * 1000)
    const root = decodeRoot(store.blocks.get(second.cid!.toString())!)
    expect(root.sequence).toBe(Number(second.sequence))
    expect(root.parents.map(String)).toEqual([first.cid!.toString()])
    expect((await versionOwner(second.cid!, async cid => store.blocks.get(cid.toString())!)).address).toBe(space.address)
  })

  describe('RFC 7396 Appendix A through patch', () => {
    for (const [i, c] of vectors.mergePatch.cases.entries()) {
      it(`example ${i + 1} under one key`, async () => {
        const space = await open()
        await space.set('doc', c.target as Json)
        await space.flush()
        await space.patch({ doc: c.patch as Json })
        await space.flush()
        expect(await space.get('doc')).toEqual(c.result === null ? undefined : c.result)
      })
      const isObject = (x: unknown): boolean => typeof x === 'object' && x !== null && !Array.isArray(x)
      if (isObject(c.target) && isObject(c.patch)) {
        it(`example ${i + 1} on the whole map`, async () => {
          const space = await open()
          for (const [k, v] of Object.entries(c.target)) await space.set(k, v as Json)
          await space.patch(c.patch as unknown as Record<string, Json>)
          await space.flush()
          expect(await space.getAll()).toEqual(c.result)
        })
      }
    }
  })

  const badWrites: Array<[string, (s: Space) => Promise<unknown>, string]> = [
    ['empty key', async s => s.set('', 1), 'InvalidInputError'],
    ['number key', async s => s.set(1 as unknown as string, 1), 'InvalidInputError'],
    ['undefined value', async s => s.set('k', undefined as unknown as Json), 'InvalidInputError'],
    ['function value', async s => s.set('k', (() => 1) as unknown as Json), 'InvalidInputError'],
    ['BigInt value', async s => s.set('k', 10n as unknown as Json), 'InvalidInputError'],
    ['symbol value', async s => s.set('k', Symbol('x') as unknown as Json), 'InvalidInputError'],
    ['NaN', async s => s.set('k', Number.NaN), 'InvalidInputError'],
    ['Infinity inside an object', async s => s.set('k', { a: [Infinity] }), 'InvalidInputError'],
    ['a Date', async s => s.set('k', new Date() as unknown as Json), 'InvalidInputError'],
    ['a Map', async s => s.set('k', new Map() as unknown as Json), 'InvalidInputError'],
    ['a sparse array', async s => s.set('k', [1, , 3] as unknown as Json), 'InvalidInputError'], // eslint-disable-line no-sparse-arrays
    ['undefined inside an object', async s => s.set('k', { a: undefined } as unknown as Json), 'InvalidInputError'],
    ['a cycle', async s => { const o: Record<string, unknown> = {}; o.self = o; return s.set('k', o as Json) }, 'InvalidInputError'],
    ['a value over the limit', async s => s.set('k', 'x'.repeat(70 * 1024)), 'TooLargeError'],
    ['a key over 1024 characters', async s => s.set('k'.repeat(1025), 1), 'InvalidInputError'],
    ['patch that is an array', async s => s.patch([1] as unknown as Record<string, Json>), 'InvalidInputError'],
    ['patch that is null', async s => s.patch(null as unknown as Record<string, Json>), 'InvalidInputError'],
    ['patch with a bad value in a later key', async s => s.patch({ ok: 1, bad: { x: 1n } } as unknown as Record<string, Json>), 'InvalidInputError'],
    ['patch with __proto__ inside', async s => s.patch(JSON.parse('{"ok":{"__proto__":{"x":1}}}')), 'InvalidInputError'],
    ['public value that is a function', async s => s.public.set('k', (() => 1) as unknown as Json), 'InvalidInputError'],
    ['public value over the limit', async s => s.public.set('k', 'x'.repeat(70 * 1024)), 'TooLargeError']
  ]
  for (const [what, write, name] of badWrites) {
    it(`refuses ${what} with ${name} and changes nothing`, async () => {
      const store = memoryStore()
      const space = await open(store)
      await space.set('keep', { me: true })
      await space.flush()
      await space.public.set('profile', 'p')
      await space.flush()
      const before = snapshot(store)
      await expect(write(space)).rejects.toMatchObject({ name })
      expect(snapshot(store)).toBe(before)
      expect(await space.getAll()).toEqual({ keep: { me: true } })
      expect(await space.public.getAll()).toEqual({ profile: 'p' })
      expect(space.sequence).toBe(2)
    })
  }

  it('refuses a write that would take the space over its limit, and changes nothing', async () => {
    const store = memoryStore()
    const space = await open(store, KEY_A, { maxSpaceBytes: 2000 })
    await space.set('a', 'x'.repeat(1500))
    await space.flush()
    const before = snapshot(store)
    await expect(space.patch({ b: 'y'.repeat(400), c: 'z'.repeat(400) })).rejects.toMatchObject({ name: 'TooLargeError' })
    expect(snapshot(store)).toBe(before)
    expect(await space.keys()).toEqual(['a'])
  })

  it('refuses reads and writes after close', async () => {
    const space = await open()
    await space.close()
    await expect(space.get('a')).rejects.toMatchObject({ name: 'ClosedError' })
    await expect(space.set('a', 1)).rejects.toMatchObject({ name: 'ClosedError' })
  })
})

describe('public section', () => {
  it('is plaintext dag-cbor anyone can read by name, with a verified owner', async () => {
    const store = memoryStore()
    const space = await open(store)
    await space.public.set('name', 'Alice')
    await space.flush()
    await space.public.set('avatar', { url: 'ipfs://bafy' })
    await space.flush()
    await space.set('secret', 'hidden')
    await space.flush()
    const profile = await readPublic({ name: space.name, store })
    expect(profile.data).toEqual({ name: 'Alice', avatar: { url: 'ipfs://bafy' } })
    expect(profile.address).toBe(space.address)
    const root = decodeRoot(store.blocks.get(profile.root.toString())!)
    const current = decodeCurrent(store.blocks.get(root.current.toString())!)
    // the profile is plain JSON (codec 0x0200) that any IPFS tool reads; the stamps sit beside it
    expect(current.public!.code).toBe(0x0200)
    expect(JSON.parse(new TextDecoder().decode(store.blocks.get(current.public!.toString())!))).toEqual({ name: 'Alice', avatar: { url: 'ipfs://bafy' } })
    const clock = dagCbor.decode(store.blocks.get(current.clock!.toString())!) as { entries: Record<string, unknown[]> }
    expect(clock.entries.name?.slice(1)).toEqual([space.deviceId, true])
  })
})

describe('model-based: any sequence of operations equals a plain Map', () => {
  const namesUnsafeKey = (value: unknown): boolean => typeof value === 'object' && value !== null && !Array.isArray(value) &&
    Object.entries(value).some(([k, v]) => k === '__proto__' || k === 'constructor' || k === 'prototype' || namesUnsafeKey(v))
  const key = fc.constantFrom('a', 'b', 'c', 'io.example.app', 'ключ', 'k e y')
  const value: fc.Arbitrary<Json> = fc.jsonValue({ maxDepth: 2 }).map(v => JSON.parse(JSON.stringify(v)) as Json)
  const op = fc.oneof(
    fc.record({ op: fc.constant('set' as const), key, value }),
    fc.record({ op: fc.constant('remove' as const), key }),
    fc.record({ op: fc.constant('patch' as const), patch: fc.dictionary(key, fc.oneof(fc.constant(null), value), { maxKeys: 3 }) }),
    fc.record({ op: fc.constant('reopen' as const) })
  )
  it('matches after every step and after re-opening from the store alone', async () => {
    await fc.assert(fc.asyncProperty(fc.array(op, { maxLength: 12 }), async (ops) => {
      const store = memoryStore()
      let space = await open(store)
      const model = new Map<string, Json>()
      for (const step of ops) {
        if (step.op === 'set') { await space.set(step.key, step.value); model.set(step.key, step.value) }
        if (step.op === 'remove') { await space.remove(step.key); model.delete(step.key) }
        if (step.op === 'patch') {
          // a merge patch may not name these keys at any depth (prototype pollution): refused whole, nothing changes
          if (namesUnsafeKey(step.patch)) {
            await expect(space.patch(step.patch)).rejects.toMatchObject({ name: 'InvalidInputError' })
            expect(await space.getAll()).toEqual(Object.fromEntries(model))
            continue
          }
          await space.patch(step.patch)
          await space.flush()
          for (const [k, v] of Object.entries(step.patch)) {
            if (v === null) model.delete(k)
            else model.set(k, mergePatch(model.get(k) ?? null, v))
          }
        }
        // another device: what this one wrote is published when it closes
        if (step.op === 'reopen') { await space.close(); space = await open(store) }
        expect(await space.getAll()).toEqual(Object.fromEntries(model))
      }
      await space.close()
      const fresh = await open(store)
      expect(await fresh.getAll()).toEqual(Object.fromEntries(model))
    }), { numRuns: 40 })
  })
})


describe('integrity and secrecy', () => {
  async function filledStore (): Promise<{ store: MemoryStore, space: Space }> {
    const store = memoryStore()
    const space = await open(store)
    await space.patch({ 'wallet.seedHint': 'PLAINTEXT-VALUE-ONE', 'PLAINTEXT-KEY-TWO': { nested: 'PLAINTEXT-VALUE-THREE' } })
    await space.flush()
    await space.set('bulk', 'PLAINTEXT-VALUE-FOUR '.repeat(50))
    await space.flush()
    return { store, space }
  }

  it('flipping any byte of any private block fails reading with IntegrityError, never wrong data', async () => {
    const { store } = await filledStore()
    const record = readRecord(store.records.values().next().value!)
    const privateCids = (await bucketsOf(store, record.cid!)).map(String)
    await fc.assert(fc.asyncProperty(fc.nat(privateCids.length - 1), fc.nat(), fc.integer({ min: 1, max: 255 }), async (which, at, bit) => {
      const cid = privateCids[which]!
      const original = store.blocks.get(cid)!
      const tampered = original.slice()
      tampered[at % tampered.length]! ^= bit
      store.blocks.set(cid, tampered)
      try {
        await expect(open(store)).rejects.toMatchObject({ name: 'IntegrityError' })
      } finally {
        store.blocks.set(cid, original)
      }
    }), { numRuns: 25 })
  })

  it('a store that recomputes the CID of a tampered block is caught by the AEAD', async () => {
    const { store, space } = await filledStore()
    const record = readRecord(store.records.get(space.name)!)
    const bucket = store.blocks.get((await bucketsOf(store, record.cid!))[0]!.toString())!
    const tampered = bucket.slice()
    tampered[40]! ^= 1
    // decrypting the tampered bucket directly: authentication fails
    const keyless = (await import('../src/crypto/envelope.js'))
    expect(() => keyless.open(new Uint8Array(32), associatedData(2, space.name, 'bucket 0/1'), tampered)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
  })

  it("another user's keys cannot read the private blocks", async () => {
    const { store, space } = await filledStore()
    const other = await open(memoryStore(), KEY_B)
    const record = readRecord(store.records.get(space.name)!)
    const buckets = await bucketsOf(store, record.cid!)
    const bucket = store.blocks.get(buckets[0]!.toString())!
    const place = `bucket 0/${buckets.length}`
    // B's keys are derived from B's signature; try them on A's block, under both names
    const { deriveKeys, OPEN_MESSAGE } = await import('../src/crypto/keys.js')
    const { normalizeSignature } = await import('../src/crypto/eip191.js')
    const bKeys = deriveKeys(normalizeSignature(OPEN_MESSAGE, await account(KEY_B).signMessage({ message: OPEN_MESSAGE }), account(KEY_B).address))
    expect(() => openEnvelope(bKeys.dataKey, associatedData(2, space.name, place), bucket)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    expect(() => openEnvelope(bKeys.dataKey, associatedData(2, other.name, place), bucket)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
  })

  it('no plaintext private key or value reaches the store', async () => {
    const { store } = await filledStore()
    const needles = ['PLAINTEXT-VALUE-ONE', 'PLAINTEXT-KEY-TWO', 'PLAINTEXT-VALUE-THREE', 'PLAINTEXT-VALUE-FOUR', 'wallet.seedHint', 'bulk'].map(utf8)
    const haystacks = [...store.blocks.values(), ...store.records.values()]
    expect(haystacks.length).toBeGreaterThan(3)
    for (const hay of haystacks) {
      for (const needle of needles) expect(indexOf(hay, needle)).toBe(-1)
    }
  })
})

function indexOf (hay: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(hay).indexOf(Buffer.from(needle))
}

describe('buckets', () => {
  it('splits a large private map so that one set re-encrypts one bucket and no block exceeds 1 MiB', async () => {
    const store = memoryStore()
    const space = await open(store)
    const patch: Record<string, Json> = {}
    for (let i = 0; i < 3000; i++) patch[`key-${i}`] = { i, text: 'v'.repeat(80) }
    await space.patch(patch)
    await space.flush()
    const current = (): CID => readRecord(store.records.get(space.name)!).cid!
    const before = await bucketsOf(store, current())
    expect(before.length).toBeGreaterThan(8)
    const blocksBefore = new Set(store.blocks.keys())
    await space.set('key-7', 'changed')
    await space.flush()
    const added = [...store.blocks.keys()].filter(k => !blocksBefore.has(k)).map(k => CID.parse(k))
    expect(added.filter(c => c.code === raw.code)).toHaveLength(1) // one bucket
    // the root, the current node and one index node per level of the tree above the bucket
    const depth = Math.ceil(Math.log2(before.length) / 2)
    expect(added.filter(c => c.code === dagCbor.code)).toHaveLength(2 + depth)
    const after = await bucketsOf(store, current())
    expect(after.filter((c, i) => !c.equals(before[i]!))).toHaveLength(1)
    for (const bytes of store.blocks.values()) expect(bytes.length).toBeLessThanOrEqual(MAX_BLOCK_BYTES)
    const fresh = await open(store)
    expect(Object.keys(await fresh.getAll())).toHaveLength(3000)
    expect(await fresh.get('key-7')).toBe('changed')
  })

  it('keeps every block under 1 MiB for a multi-megabyte space of large values', async () => {
    const store = memoryStore()
    const space = await open(store)
    const patch: Record<string, Json> = {}
    for (let i = 0; i < 60; i++) patch[`big-${i}`] = 'b'.repeat(60 * 1024)
    await space.patch(patch)
    await space.flush()
    for (const bytes of store.blocks.values()) expect(bytes.length).toBeLessThanOrEqual(MAX_BLOCK_BYTES)
    const fresh = await open(store)
    expect((await fresh.get('big-59') as string).length).toBe(60 * 1024)
  })
})

describe('history', () => {
  it('lists past versions and reads one', async () => {
    const space = await open()
    await space.set('v', 1)
    await space.flush()
    const first = space.root!
    await space.set('v', 2)
    await space.flush()
    await space.public.set('p', 'x')
    await space.flush()
    const history = await space.history()
    expect(history.map(h => h.sequence)).toEqual([3, 2, 1])
    expect(history.every(h => h.device === space.deviceId)).toBe(true)
    const past = await space.at(first)
    expect(past.getAll()).toEqual({ v: 1 })
    expect(past.public.getAll()).toEqual({})
    await expect(space.at('not-a-cid')).rejects.toMatchObject({ name: 'InvalidInputError' })
  })
})

describe('privateKeySigner', () => {
  it('signs exactly as a viem account does, and opens the same space', async () => {
    const { privateKeySigner } = await import('../src/space/local-signer.js')
    const local = privateKeySigner(KEY_A)
    expect(local.address).toBe(account(KEY_A).address)
    expect(await local.signMessage('hello world')).toBe(await account(KEY_A).signMessage({ message: 'hello world' }))
    const space = await openSpace({ signer: local, store: memoryStore() })
    expect(space.name).toBe(NAME_A)
    expect(() => privateKeySigner('0x1234')).toThrow(expect.objectContaining({ name: 'InvalidInputError' }))
    expect(() => privateKeySigner('0x' + '00'.repeat(32))).toThrow(expect.objectContaining({ name: 'InvalidInputError' }))
  })
})

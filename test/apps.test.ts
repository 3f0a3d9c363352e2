/**
 * Scoped app access in Node: namespace key derivation (labels, frozen vectors), grants (scope,
 * signature, what a grant can and cannot decrypt), read-only access, and revocation, on a memory
 * store with real spaces.
 */
import { describe, expect, it } from 'vitest'
import vectors from './fixtures/app-keys.json' with { type: 'json' }
import { IDBFactory } from 'fake-indexeddb'
import { openSpace, memoryStore, verifyGrant, keepGrant, loadGrant, forgetGrant } from '../src/index.js'
import type { Grant, MemoryStore, Space, Store } from '../src/index.js'
import { bytesToHex } from '../src/crypto/bytes.js'
import { normalizeSignature } from '../src/crypto/eip191.js'
import { APP_KEY_PURPOSES, appKeyLabel, deriveAppKeys, deriveAppsRoot, deriveKeys, KEY_LABELS, OPEN_MESSAGE } from '../src/crypto/keys.js'
import { namespaceIdentity, openNamespace } from '../src/apps/subspace.js'
import { decodeKeys } from '../src/apps/grant.js'
import { checkNamespace } from '../src/apps/scope.js'
import { account, KEY_A } from './helpers/signers.js'

const ORIGIN = 'https://app.example'

async function master (store: Store): Promise<Space> {
  return openSpace({ signer: account(KEY_A), store })
}

function snapshot (store: MemoryStore): string {
  return JSON.stringify([[...store.blocks.keys()].sort(), [...store.records.entries()].map(([k, v]) => [k, Buffer.from(v).toString('hex')])])
}

async function caught (p: Promise<unknown>): Promise<Error> {
  try { await p } catch (err) { return err as Error }
  throw new Error('expected a rejection')
}

describe('namespace keys', () => {
  it('one label per purpose, namespace and epoch', () => {
    const labels = new Set<string>()
    for (const ns of ['io.example.app', 'io.example.ap', 'profile', '@example/app']) {
      for (const epoch of [0, 1, 10]) {
        for (const purpose of Object.values(APP_KEY_PURPOSES)) labels.add(appKeyLabel(ns, epoch, purpose))
      }
    }
    expect(labels.size).toBe(4 * 3 * 4)
    expect(appKeyLabel('io.example.app', 0, APP_KEY_PURPOSES.ipnsSeed)).toBe('userspace/v1/app/io.example.app/0/ipns-ed25519-seed')
    expect(appKeyLabel('io.example.app', 3, APP_KEY_PURPOSES.dataKey)).toBe('userspace/v1/app/io.example.app/3/xchacha20poly1305-data')
    // never one of the master space's labels
    for (const l of Object.values(KEY_LABELS)) expect(labels.has(l)).toBe(false)
    expect(() => appKeyLabel('io.example.app', -1, 'x')).toThrow(RangeError)
    expect(() => appKeyLabel('io.example.app', 1.5, 'x')).toThrow(RangeError)
  })

  it('derives the frozen vectors, and no two namespaces or epochs share a key', async () => {
    const a = account(KEY_A)
    const sig = normalizeSignature(OPEN_MESSAGE, await a.signMessage({ message: OPEN_MESSAGE }), a.address)
    const root = deriveAppsRoot(sig)
    expect(bytesToHex(root)).toBe(vectors.appsRoot)
    const master = deriveKeys(sig)
    const all = new Set<string>([bytesToHex(master.ipnsSeed), bytesToHex(master.dataKey), bytesToHex(master.bucketKey), bytesToHex(root)])
    for (const c of vectors.cases) {
      const k = deriveAppKeys(root, c.namespace, c.epoch)
      expect({ ipnsSeed: bytesToHex(k.ipnsSeed), dataKey: bytesToHex(k.dataKey), bucketKey: bytesToHex(k.bucketKey), ownerKey: bytesToHex(k.ownerKey) })
        .toEqual({ ipnsSeed: c.ipnsSeed, dataKey: c.dataKey, bucketKey: c.bucketKey, ownerKey: c.ownerKey })
      expect(await namespaceIdentity(k)).toEqual({ name: c.name, address: c.address })
      for (const key of [k.ipnsSeed, k.dataKey, k.bucketKey, k.ownerKey]) all.add(bytesToHex(key))
    }
    expect(all.size).toBe(4 + vectors.cases.length * 4)
  })

  it('app ids: reverse-DNS or npm package names, nothing else', () => {
    for (const ok of ['io.example.app', 'com.example.my-app', 'example-app', '@example/app', 'profile']) expect(checkNamespace(ok)).toBe(ok)
    for (const bad of ['', 'IO.Example.App', 'io..app', '.app', '_app', 'a b', '*', 'io.example.app/../x', 'https://app.example', 'x'.repeat(215), '@scope/', 'ünï']) {
      expect(() => checkNamespace(bad), bad).toThrow(expect.objectContaining({ name: 'InvalidScopeError' }))
    }
  })
})

describe('grants', () => {
  it('give the app its own namespace to write and the shared one to read, signed by the master key', async () => {
    const store = memoryStore()
    const space = await master(store)
    await space.public.set('name', 'Alice')
    const grant = await space.grant('io.example.app', { origin: ORIGIN, read: ['profile'] })
    expect(grant.namespaces.map(n => [n.namespace, n.access, n.epoch])).toEqual([['io.example.app', 'write', 0], ['profile', 'read', 0]])
    const profile = grant.namespaces[1]
    expect(profile?.ipnsSeed).toBeUndefined()
    expect(profile?.ownerKey).toBeUndefined()
    expect(await verifyGrant(JSON.parse(JSON.stringify(grant)))).toEqual(grant)
    // no master secret anywhere in it
    const text = JSON.stringify(grant)
    expect(text).not.toContain(Buffer.from((space as unknown as { derived: { dataKey: Uint8Array } }).derived.dataKey).toString('base64'))

    const app = await openSpace({ grant, store })
    expect(app.name).toBe(grant.namespaces[0]?.name)
    await app.set('score', 42)
    await app.flush()
    expect(await (await openSpace({ grant, store })).get('score')).toBe(42)

    const listed = await space.apps()
    expect(listed).toEqual([expect.objectContaining({ app: 'io.example.app', origin: ORIGIN, read: ['profile'], write: [], current: true })])
  })

  it('a tampered grant is refused (IntegrityError): origin, app id or a swapped name', async () => {
    const space = await master(memoryStore())
    const grant = await space.grant('io.example.app', { origin: ORIGIN })
    expect((await caught(verifyGrant({ ...grant, origin: 'https://evil.example' }))).name).toBe('IntegrityError')
    const other = await space.grant('io.other.app', { origin: 'https://other.example' })
    const swapped: Grant = { ...grant, namespaces: [{ ...grant.namespaces[0]!, name: other.namespaces[0]!.name }] }
    expect((await caught(verifyGrant(swapped))).name).toBe('IntegrityError')
    expect((await caught(verifyGrant({ ...grant, signature: other.signature }))).name).toBe('IntegrityError')
    expect((await caught(verifyGrant({ ...grant, namespaces: [] }))).name).toBe('InvalidInputError')
    // Keys are not signed (they must not be): write keys that do not derive the stated name are found out.
    const wrongKeys: Grant = { ...grant, namespaces: [{ ...grant.namespaces[0]!, ipnsSeed: other.namespaces[0]!.ipnsSeed }] }
    expect((await caught(verifyGrant(wrongKeys))).name).toBe('IntegrityError')
    const wrongOwner: Grant = { ...grant, namespaces: [{ ...grant.namespaces[0]!, ownerKey: other.namespaces[0]!.ownerKey }] }
    expect((await caught(verifyGrant(wrongOwner))).name).toBe('IntegrityError')
  })

  it("cannot decrypt another namespace's data with any key it holds", async () => {
    const store = memoryStore()
    const space = await master(store)
    const other = await space.grant('io.other.app', { origin: 'https://other.example' })
    const otherApp = await openSpace({ grant: other, store })
    await otherApp.set('secret', 'only for io.other.app')
    await otherApp.flush()
    const grant = await space.grant('io.example.app', { origin: ORIGIN, read: ['profile'] })
    const target = other.namespaces[0]!
    for (const n of grant.namespaces) {
      const keys = decodeKeys(n)
      // every key the grant holds, tried as the read key of io.other.app's namespace
      const err = await caught(openNamespace(store, { dataKey: keys.dataKey, bucketKey: keys.bucketKey }, { name: target.name, address: target.address }, {}))
      expect(err.name).toBe('IntegrityError')
    }
    // and the grant cannot name it
    expect((await caught(openSpace({ grant, store, namespace: 'io.other.app' }))).name).toBe('InvalidInputError')
  })

  it('a read grant reads the shared namespace and every write is refused (ReadOnlyGrantError), changing nothing', async () => {
    const store = memoryStore()
    const space = await master(store)
    const writer = await space.grant('io.profile.editor', { origin: 'https://editor.example', write: ['profile'], approveForeignWrite: true })
    const editor = await openSpace({ grant: writer, store, namespace: 'profile' })
    await editor.set('name', 'Alice')
    await editor.flush()
    const grant = await space.grant('io.example.app', { origin: ORIGIN, read: ['profile'] })
    const profile = await openSpace({ grant, store, namespace: 'profile' })
    expect(await profile.get('name')).toBe('Alice')
    const before = snapshot(store)
    for (const write of [async () => profile.set('name', 'Mallory'), async () => profile.remove('name'), async () => profile.patch({ name: 'M' }), async () => profile.public.set('x', 1)]) {
      expect((await caught(write())).name).toBe('ReadOnlyGrantError')
    }
    expect(snapshot(store)).toBe(before)
  })

  it('refuses unknown scope words, malformed ids and origins, foreign writes without approval, and another origin for the same app', async () => {
    const store = memoryStore()
    const space = await master(store)
    const before = snapshot(store)
    const cases: Array<[() => Promise<unknown>, string]> = [
      [async () => space.grant('io.example.app', { origin: ORIGIN, admin: true } as never), 'InvalidScopeError'],
      [async () => space.grant('IO.EXAMPLE', { origin: ORIGIN }), 'InvalidScopeError'],
      [async () => space.grant('io.example.app', { origin: 'https://app.example/path' }), 'InvalidScopeError'],
      [async () => space.grant('io.example.app', { origin: 'null' }), 'InvalidScopeError'],
      [async () => space.grant('io.example.app', { origin: ORIGIN, read: ['*'] }), 'InvalidScopeError'],
      [async () => space.grant('io.example.app', { origin: ORIGIN, write: ['io.other.app'] }), 'ApprovalRequiredError']
    ]
    for (const [p, name] of cases) expect((await caught(p())).name).toBe(name)
    expect(snapshot(store)).toBe(before)
    await space.grant('io.example.app', { origin: ORIGIN })
    const err = await caught(space.grant('io.example.app', { origin: 'https://evil.example' }))
    expect(err.name).toBe('OriginMismatchError')
    // the same origin may ask again (a new device of the app)
    expect((await space.grant('io.example.app', { origin: ORIGIN })).origin).toBe(ORIGIN)
    // a granted namespace cannot grant
    const app = await openSpace({ grant: await space.grant('io.example.app', { origin: ORIGIN }), store })
    expect((await caught(app.grant('io.x.y', { origin: ORIGIN }))).name).toBe('InvalidInputError')
  })
})

describe('kept grants', () => {
  it('keep the IPNS key non-extractable, still publish with it, and refuse a key that is not the name\'s', async () => {
    const store = memoryStore()
    const space = await master(store)
    const grant = await space.grant('io.example.app', { origin: ORIGIN, read: ['profile'] })
    const indexedDB = new IDBFactory()
    const kept = await keepGrant(grant, { indexedDB })
    expect(kept.nonExtractable).toBe(true)
    const loaded = await loadGrant('io.example.app', { indexedDB })
    const key = loaded?.signingKeys['io.example.app']
    expect(key?.extractable).toBe(false)
    // browsers say InvalidAccessError, Node InvalidAccessException
    expect((await caught(crypto.subtle.exportKey('pkcs8', key as CryptoKey))).name).toMatch(/^InvalidAccess(Error|Exception)$/)
    expect(JSON.stringify(loaded?.grant)).not.toContain(grant.namespaces[0]?.ipnsSeed as string)
    const app = await openSpace({ grant: loaded as NonNullable<typeof loaded>, store })
    await app.set('kept', true)
    await app.flush()
    expect(await (await openSpace({ grant, store })).get('kept')).toBe(true)
    // Another namespace's key in its place is found out before anything is signed.
    const other = await keepGrant(await space.grant('io.other.app', { origin: 'https://other.example' }), { indexedDB })
    const swapped = { ...kept, signingKeys: { 'io.example.app': other.signingKeys['io.other.app'] as CryptoKey } }
    expect((await caught(openSpace({ grant: swapped, store }))).name).toBe('IntegrityError')
    await forgetGrant('io.example.app', { indexedDB })
    expect(await loadGrant('io.example.app', { indexedDB })).toBeUndefined()
  })
})

describe('revocation', () => {
  it('moves the namespace to a new epoch with the data, and the old grant reads nothing written afterwards', async () => {
    const store = memoryStore()
    const space = await master(store)
    const old = await space.grant('io.example.app', { origin: ORIGIN, read: ['profile'] })
    const reader = await space.grant('io.reader.app', { origin: 'https://reader.example', read: ['io.example.app'] })
    const app = await openSpace({ grant: old, store })
    await app.set('before', 1)
    await app.flush()

    const moved = await space.revoke('io.example.app')
    expect(moved.map(m => [m.namespace, m.epoch])).toEqual([['io.example.app', 1], ['profile', 1]])
    expect(moved[0]?.name).not.toBe(old.namespaces[0]?.name)
    expect((await space.apps()).map(a => [a.app, a.current])).toEqual([['io.reader.app', false]])

    // The owner grants again (say the app is trusted again, elsewhere): the data moved with the namespace.
    const fresh = await space.grant('io.example.app', { origin: 'https://new.example' })
    expect(fresh.namespaces[0]?.epoch).toBe(1)
    const again = await openSpace({ grant: fresh, store })
    expect(await again.get('before')).toBe(1)
    await again.set('after', 'new secret')
    await again.flush()

    // The revoked app still opens its old namespace: it has what it read, never the new write.
    const revoked = await openSpace({ grant: old, store })
    expect(await revoked.get('before')).toBe(1)
    expect(await revoked.get('after')).toBeUndefined()
    // Its keys cannot open or decrypt the new namespace.
    const keys = decodeKeys(old.namespaces[0]!)
    const target = fresh.namespaces[0]!
    expect((await caught(openNamespace(store, keys, { name: target.name, address: target.address }, {}))).name).toBe('IntegrityError')
    expect((await caught(openNamespace(store, { dataKey: keys.dataKey, bucketKey: keys.bucketKey }, { name: target.name, address: target.address }, {}))).name).toBe('IntegrityError')
    // The other app's stale read grant does not see it either.
    const stale = await openSpace({ grant: reader, store, namespace: 'io.example.app' })
    expect(await stale.get('after')).toBeUndefined()

    expect((await caught(space.revoke('io.unknown.app'))).name).toBe('NotFoundError')
  })

  it('a device that missed a revocation never grants the old epoch again', async () => {
    const store = memoryStore()
    const stale = await master(store) // opened before, hears nothing of what follows
    const current = await master(store)
    await current.grant('io.example.app', { origin: ORIGIN, read: ['profile'] })
    await current.revoke('io.example.app')
    const grant = await stale.grant('io.reader.app', { origin: 'https://reader.example', read: ['profile'] })
    expect(grant.namespaces.find(n => n.namespace === 'profile')?.epoch).toBe(1)
    await current.refresh()
    expect(await current.get('userspace:namespace:profile')).toMatchObject({ epoch: 1 })
  })

  it('another device of the owner sees the grants and can revoke', async () => {
    const store = memoryStore()
    const first = await master(store)
    await first.grant('io.example.app', { origin: ORIGIN })
    await first.close()
    const second = await master(store)
    expect((await second.apps()).map(a => a.app)).toEqual(['io.example.app'])
    await second.revoke('io.example.app')
    expect(await second.apps()).toEqual([])
  })
})

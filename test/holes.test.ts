/**
 * One test per single-line check that guards a space's integrity: each builds the forgery that the
 * check stops (a root bound to another wallet, a record and root that disagree on the sequence, a
 * block that is not what its CID says, an export whose record or owner binding is wrong) and asserts the named error and that nothing was written or believed.
 * Deleting the check makes its test fail.
 */
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { hexToBytes } from '../src/crypto/bytes.js'
import { normalizeSignature } from '../src/crypto/eip191.js'
import { deriveKeys, OPEN_MESSAGE, ownerStatement } from '../src/crypto/keys.js'
import { openSpace } from '../src/space/space.js'
import { readPublic } from '../src/space/read-public.js'
import { decodeCurrent, decodeRoot, encodeCurrent, encodeOwner, encodeRoot } from '../src/space/root.js'
import { EXPORT_TYPE, importSpace } from '../src/space/transfer.js'
import { cborBlock, encodeCar, getVerifiedBlock, rawBlock } from '../src/store/blocks.js'
import { memoryStore } from '../src/store/memory.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import { account, KEY_A, KEY_B } from './helpers/signers.js'
import type { Current, OwnerBinding, Root } from '../src/space/root.js'
import type { Block, Store } from '../src/store/interface.js'
import type { PrivateKey } from '@libp2p/interface'

/** The IPNS key a wallet's open signature derives, as openSpace derives it. */
async function ipnsKeyOf (walletKey: string): Promise<PrivateKey> {
  const wallet = account(walletKey)
  const signature = normalizeSignature(OPEN_MESSAGE, await wallet.signMessage({ message: OPEN_MESSAGE }), wallet.address)
  return await generateKeyPairFromSeed('Ed25519', deriveKeys(signature).ipnsSeed)
}

/** An owner binding of `name` to `claimed`, signed by the wallet `signerKey` (forged when they differ). */
async function binding (name: string, claimed: string, signerKey: string): Promise<OwnerBinding> {
  const signature = await account(signerKey).signMessage({ message: ownerStatement(claimed, name) })
  return { address: claimed, signature: hexToBytes(signature) }
}

/**
 * A root bound by `owner`, over `state` (by default an empty version: no buckets, no public
 * section), with `blocks`: the root, its current node and the binding block.
 */
async function root (fields: Partial<Root> & { owner: OwnerBinding, state?: Omit<Current, 'owner'> }): Promise<Block & { blocks: Block[] }> {
  const { owner, state, ...rest } = fields
  const binding = await encodeOwner(owner)
  const current = await encodeCurrent({ ...(state ?? { buckets: 0, private: null, public: null, clock: null }), owner: binding.cid })
  const block = await encodeRoot({ version: 2, sequence: 1, parents: [], updatedAt: Date.now(), device: 'test', public: null, ...rest, current: current.cid })
  return { ...block, blocks: [block, current, binding] }
}

/** Publishes `blocks` and a record of `sequence` pointing at `target`, signed with `key`. */
async function publish (store: Store, key: PrivateKey, target: CID, sequence: number, blocks: Block[]): Promise<void> {
  await store.putBlocks(blocks)
  await store.putRecord(nameOfKey(key), await createRecord(key, target, sequence))
}

/** Wallet A's real space with one private and one public entry (one version or two: the second write may join the first publish or follow it). */
async function spaceOfA (store: Store): Promise<{ name: string, key: PrivateKey, root: Root, rootCid: CID }> {
  const space = await openSpace({ signer: account(KEY_A), store })
  await space.set('k', 'v')
  await space.public.set('nick', 'alice')
  await space.flush()
  const name = space.name
  const rootCid = space.root as CID
  await space.close()
  return { name, key: await ipnsKeyOf(KEY_A), root: decodeRoot(await store.getBlock(rootCid)), rootCid }
}

describe('opening a space refuses a version its owner did not make', () => {
  it('refuses a root bound to another wallet, though that binding is validly signed (checkOwner)', async () => {
    const store = memoryStore()
    const a = await spaceOfA(store)
    const b = account(KEY_B).address
    // Wallet B's genuine binding of A's name: valid on its own, wrong for this space.
    const next = a.root.sequence + 1
    const forged = await root({ ...a.root, sequence: next, parents: [a.rootCid], owner: await binding(a.name, b, KEY_B), state: decodeCurrent(await store.getBlock(a.root.current)) })
    await publish(store, a.key, forged.cid, next, forged.blocks)
    const err = await openSpace({ signer: account(KEY_A), store }).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'SignerMismatchError' })
    expect((err as Error).message).toContain(b)
  })

  it('refuses a record whose sequence is not its root\'s (a replayed old root under a new sequence)', async () => {
    const store = memoryStore()
    const a = await spaceOfA(store)
    await store.putRecord(a.name, await createRecord(a.key, a.rootCid, 5))
    await expect(openSpace({ signer: account(KEY_A), store })).rejects.toMatchObject({ name: 'IntegrityError' })
  })

  it('refuses a root of storage format 1 (FormatError), naming the format', async () => {
    const store = memoryStore()
    const a = await spaceOfA(store)
    const next = a.root.sequence + 1
    const old = await cborBlock({ version: 1, sequence: next, parents: [a.rootCid], updatedAt: Date.now(), device: 'test', public: null, private: [], owner: await binding(a.name, account(KEY_A).address, KEY_A) })
    await publish(store, a.key, old.cid, next, [old])
    const err = await openSpace({ signer: account(KEY_A), store }).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'FormatError' })
    expect((err as Error).message).toContain('format 1')
  })
})

/** A store that answers `cid` with other bytes, whatever it holds. */
function swapping (store: Store, cid: CID, bytes: Uint8Array): Store {
  return {
    putBlocks: store.putBlocks.bind(store),
    putRecord: store.putRecord.bind(store),
    getRecord: store.getRecord.bind(store),
    getBlock: async (c, o) => c.equals(cid) ? bytes : await store.getBlock(c, o)
  }
}

describe('blocks are checked against their CIDs, whatever the store does', () => {
  it('getVerifiedBlock refuses bytes that do not hash to the CID', async () => {
    const store = memoryStore()
    const block = await rawBlock(new Uint8Array([1, 2, 3]))
    await store.putBlocks([block])
    expect(await getVerifiedBlock(store, block.cid)).toEqual(block.bytes)
    const lying = swapping(store, block.cid, new Uint8Array([9, 9, 9]))
    await expect(getVerifiedBlock(lying, block.cid)).rejects.toMatchObject({ name: 'IntegrityError' })
  })

  it('readPublic refuses a public section a store swapped for another valid one', async () => {
    const store = memoryStore()
    const a = await spaceOfA(store)
    // A real public section of another space, valid in every way but its CID.
    const elsewhere = memoryStore()
    const mallory = await openSpace({ signer: account(KEY_B), store: elsewhere })
    await mallory.public.set('nick', 'mallory')
    await mallory.flush()
    await mallory.close()
    const profileOf = async (st: Store, rootCid: CID): Promise<CID> => decodeCurrent(await st.getBlock(decodeRoot(await st.getBlock(rootCid)).current)).public as CID
    const other = await elsewhere.getBlock(await profileOf(elsewhere, mallory.root as CID))
    const lying = swapping(store, await profileOf(store, a.rootCid), other)
    await expect(readPublic({ name: a.name, store: lying })).rejects.toMatchObject({ name: 'IntegrityError' })
    expect((await readPublic({ name: a.name, store })).data).toEqual({ nick: 'alice' })
  })
})

describe('readPublic proves the owner, it does not take the root\'s word', () => {
  it('refuses a root that claims wallet A with a signature by wallet B', async () => {
    const store = memoryStore()
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const alice = account(KEY_A).address
    const forged = await root({ owner: await binding(name, alice, KEY_B) })
    await publish(store, key, forged.cid, 1, forged.blocks)
    await expect(readPublic({ name, store })).rejects.toMatchObject({ name: 'SignerMismatchError' })
  })

  it('refuses wallet A\'s genuine binding of another space, replayed here', async () => {
    const store = memoryStore()
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const alice = account(KEY_A).address
    const replayed = await root({ owner: await binding('k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w', alice, KEY_A) })
    await publish(store, key, replayed.cid, 1, replayed.blocks)
    await expect(readPublic({ name, store })).rejects.toMatchObject({ name: 'SignerMismatchError' })
  })
})

/** A space export CAR: manifest first, then `blocks`. */
async function exportCar (name: string, record: Uint8Array, manifestRoot: CID, blocks: Block[]): Promise<Uint8Array> {
  const manifest = await cborBlock({ type: EXPORT_TYPE, version: 1, name, record, root: manifestRoot })
  return encodeCar([manifest, ...blocks])
}

async function isEmpty (store: Store, name: string, blocks: Block[]): Promise<boolean> {
  if (await store.getRecord(name) !== undefined) return false
  for (const block of blocks) {
    if (await store.getBlock(block.cid).then(() => true, () => false)) return false
  }
  return true
}

describe('importSpace checks before it writes', () => {
  it('refuses an export whose owner binding is forged, and stores nothing', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const forged = await root({ owner: await binding(name, account(KEY_A).address, KEY_B) })
    const car = await exportCar(name, await createRecord(key, forged.cid, 1), forged.cid, forged.blocks)
    const target = memoryStore()
    await expect(importSpace(target, car)).rejects.toMatchObject({ name: 'SignerMismatchError' })
    expect(await isEmpty(target, name, forged.blocks)).toBe(true)
  })

  it('refuses an export whose record points at another root than the exported one, and stores nothing', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const owner = await binding(name, account(KEY_A).address, KEY_A)
    const first = await root({ owner })
    const second = await root({ owner, sequence: 2, parents: [first.cid] })
    // The manifest says `second`, the signed record says `first`.
    const car = await exportCar(name, await createRecord(key, first.cid, 1), second.cid, [second, ...first.blocks])
    const target = memoryStore()
    await expect(importSpace(target, car)).rejects.toMatchObject({ name: 'IntegrityError' })
    expect(await isEmpty(target, name, [first, second])).toBe(true)
    // The honest file imports.
    const honest = await exportCar(name, await createRecord(key, second.cid, 2), second.cid, [second, ...first.blocks])
    // the two roots, and the current node and binding they share
    expect(await importSpace(target, honest)).toMatchObject({ name, sequence: 2, blocks: 4 })
  })
})

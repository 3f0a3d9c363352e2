/**
 * Reading anyone's public section without a signature: resolve the name (or look the address up in
 * a hub's index), check the record's signature and the owner binding, and decode the plaintext
 * public block. Nothing private is touched; no key is needed.
 */
import { InvalidInputError, NotFoundError, SignerMismatchError } from '../errors.js'
import { checksumAddress } from '../crypto/eip191.js'
import { canonicalName, validateRecord } from '../store/record.js'
import { getVerifiedBlock } from '../store/blocks.js'
import { decodeRoot, verifyOwner } from './root.js'
import { PublicSection } from './section.js'
import type { Json } from './json.js'
import type { AbortOptions, Store } from '../store/interface.js'
import type { CID } from 'multiformats/cid'

export interface ReadPublicOptions extends AbortOptions {
  /** The owner's wallet address (needs a store with an address index, such as a hub). */
  address?: string
  /** The space's IPNS name (`k51…`). */
  name?: string
  store?: Store
  /** A hub URL, instead of `store`. */
  hub?: string
}

export interface PublicProfile {
  name: string
  /** the owner's address, verified from the owner binding */
  address: string
  sequence: number
  updatedAt: number
  root: CID
  data: Record<string, Json>
}

export async function readPublic (options: ReadPublicOptions): Promise<PublicProfile> {
  let store = options.store
  if (store === undefined && typeof options.hub === 'string') {
    const { hubStore } = await import('../store/hub.js')
    store = hubStore(options.hub)
  }
  if (store === undefined) throw new InvalidInputError('readPublic expected "store" or "hub"')
  let name = options.name
  if (name === undefined) {
    if (options.address === undefined) throw new InvalidInputError('readPublic expected "address" or "name"')
    const address = checksumAddress(options.address)
    name = await store.lookupAddress?.(address, options)
    if (name === undefined) throw new NotFoundError(`no space is bound to ${address}`)
  }
  name = canonicalName(name)
  const record = await store.getRecord(name, { ...options, nocache: true })
  if (record === undefined) throw new NotFoundError(`no record for ${name}`)
  const info = await validateRecord(name, record)
  if (info.cid === undefined) throw new NotFoundError(`the record of ${name} does not point at an /ipfs/ root`)
  const root = decodeRoot(await getVerifiedBlock(store, info.cid, options))
  const address = verifyOwner(root.owner, name)
  if (options.address !== undefined && address !== checksumAddress(options.address)) {
    throw new SignerMismatchError(`the space ${name} is bound to ${address}, not to ${options.address}`)
  }
  const section = new PublicSection()
  if (root.public !== null) section.absorb(PublicSection.decode(await getVerifiedBlock(store, root.public, options)))
  return { name, address, sequence: root.sequence, updatedAt: root.updatedAt, root: info.cid, data: section.getAll() }
}

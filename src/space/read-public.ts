/**
 * Reading anyone's public section without a signature: resolve the name (or look the address up in
 * a hub's index), check the record's signature and the owner binding, and read the plaintext
 * public profile (plain JSON at `<root>/public`) with its clock. Nothing private is touched; no key is needed. An expired record is still the last
 * version its owner signed: it is read and reported as expired, not refused.
 */
import { InvalidInputError, NotFoundError, SignerMismatchError, UntrustedHubError } from '../errors.js'
import { checksumAddress } from '../crypto/eip191.js'
import { canonicalName, validateRecord } from '../store/record.js'
import { getVerifiedBlock } from '../store/blocks.js'
import { checkCurrent, decodeCurrent, decodeOwner, decodeRoot, verifyOwner } from './root.js'
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
  /** The clock that decides whether the record has expired. @default systemClock */
  nowMs?: () => number
}

export interface PublicProfile {
  name: string
  /** the owner's address, verified from the owner binding */
  address: string
  sequence: number
  updatedAt: number
  root: CID
  data: Record<string, Json>
  /**
   * True when the record's validity has passed (its owner has not opened the space for the record's
   * lifetime): this is the last version they signed, and stores may stop carrying it.
   */
  expired: boolean
  /** When the record's validity ends (or ended), in ms since the epoch. */
  validUntilMs: number
}

export async function readPublic (options: ReadPublicOptions): Promise<PublicProfile> {
  let store = options.store
  if (store === undefined && typeof options.hub === 'string') {
    const { hubStore } = await import('../store/hub.js')
    store = hubStore(options.hub)
  }
  if (store === undefined) throw new InvalidInputError('readPublic expected "store" or "hub", got neither')
  let name = options.name
  const fromIndex = name === undefined
  if (name === undefined) {
    if (options.address === undefined) throw new InvalidInputError('readPublic expected "address" or "name", got neither')
    const address = checksumAddress(options.address)
    name = await store.lookupAddress?.(address, options)
    if (name === undefined) throw new NotFoundError(`no space is bound to ${address}`)
  }
  name = canonicalName(name)
  const record = await store.getRecord(name, { ...options, nocache: true })
  if (record === undefined) throw new NotFoundError(`no record for ${name}`)
  const info = await validateRecord(name, record, { allowExpired: true, nowMs: options.nowMs })
  if (info.cid === undefined) throw new NotFoundError(`the record of ${name} does not point at an /ipfs/ root`)
  const root = decodeRoot(await getVerifiedBlock(store, info.cid, options))
  const current = decodeCurrent(await getVerifiedBlock(store, root.current, options))
  checkCurrent(root, current)
  const [ownerBytes, profile, clock] = await Promise.all([current.owner, current.public, current.clock].map(async cid => cid === null ? undefined : await getVerifiedBlock(store, cid, options)))
  // The owner is what the binding's signature proves, never what the root claims.
  const address = verifyOwner(decodeOwner(ownerBytes as Uint8Array), name)
  if (options.address !== undefined && address !== checksumAddress(options.address)) {
    const message = `the space ${name} is bound to ${address}, not to ${options.address}`
    // A name the caller gave is the caller's mistake; a name the store's index gave is the store's lie.
    throw fromIndex ? new UntrustedHubError(`the store's address index named ${name} for ${options.address}, but ${message}`) : new SignerMismatchError(message)
  }
  const section = new PublicSection()
  if (current.public !== null && current.clock !== null) {
    // The profile is plain JSON any IPFS tool reads; its clock is checked against it all the same.
    section.absorb({ cid: current.public, bytes: profile as Uint8Array }, { cid: current.clock, bytes: clock as Uint8Array })
  }
  return {
    name,
    address,
    sequence: root.sequence,
    updatedAt: root.updatedAt,
    root: info.cid,
    data: section.getAll(),
    expired: info.expired,
    validUntilMs: info.validUntilMs
  }
}

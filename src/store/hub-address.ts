/**
 * The hub's address index (wallet address → IPNS name), believed only once the named space's owner
 * binding names that address. An index entry is a claim, a binding is a proof: a hub whose index
 * contradicts the binding is lying or broken (UntrustedHubError), never a verdict on the wallet.
 */
import { hexToBytes } from '../crypto/bytes.js'
import { InvalidInputError, StoreError, UntrustedHubError, describeValue } from '../errors.js'
import { JSON_TYPE, addressPath } from '../protocol.js'
import { canonicalName, validateRecord } from './record.js'
// The root codec lives with the space; the hub store needs it for one check: that the space an
// address-index answer names is bound to that address.
import { verifyOwner, versionOwner } from '../space/root.js'
import type { HubReader } from './hub-reads.js'
import type { HubTransport } from './hub-transport.js'
import type { AbortOptions, LookupAddressOptions } from './interface.js'

/**
 * The name the hub's address index gives for `address`, believed only once the named space's
 * owner binding names that address: the binding's `signature` when the answer carries it, else
 * the binding the space's current version links (four more requests: record, root, current node
 * and binding).
 */
export async function lookupAddress (transport: HubTransport, reader: HubReader, address: string, options: LookupAddressOptions = {}): Promise<string | undefined> {
  if (typeof address !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(address)) {
    throw new InvalidInputError(`"address" expected 0x-prefixed 20-byte hex, got ${typeof address === 'string' ? `"${address.slice(0, 50)}"` : typeof address}`)
  }
  const body = await transport.call(addressPath(address), { headers: { accept: JSON_TYPE } }, options,
    async (res, signal) => await transport.readJson(res, 'the address lookup', signal), true)
  if (body === undefined) return undefined
  const claimed = (body as { name?: unknown } | null)?.name
  let name: string
  try {
    if (typeof claimed !== 'string') throw new InvalidInputError('no name')
    name = canonicalName(claimed)
  } catch (err) {
    throw new UntrustedHubError(`hub ${transport.base} answered the address lookup of ${address} without a valid IPNS name`, { cause: err })
  }
  // The expected name needs no proof here: whoever reads that space checks its binding anyway.
  if (name === options.expected) return name
  const signature = (body as { signature?: unknown }).signature
  if (signature === undefined) {
    await checkBinding(transport, reader, address, name, options)
    return name
  }
  // The hub sent the binding's signature with its answer: checked here, with no further request.
  try {
    if (typeof signature !== 'string') throw new InvalidInputError(`"signature" expected hex, got ${describeValue(signature)}`)
    verifyOwner({ address, signature: hexToBytes(signature, 'signature') }, name)
  } catch (err) {
    throw new UntrustedHubError(`hub ${transport.base} says ${address} owns ${name}, but sent a signature that does not bind them: ${(err as Error).message}`, { cause: err })
  }
  return name
}

/** Throws UntrustedHubError unless the space `name`, as this hub serves it, is bound to `address`. */
async function checkBinding (transport: HubTransport, reader: HubReader, address: string, name: string, options: AbortOptions): Promise<void> {
  const claim = `hub ${transport.base} says ${address} owns ${name}`
  const record = await reader.getRecord(name, options)
  if (record === undefined) throw new UntrustedHubError(`${claim}, but has no record of ${name}`)
  let owner: string
  try {
    const info = await validateRecord(name, record, { allowExpired: true })
    if (info.cid === undefined) throw new InvalidInputError(`the record points at ${info.value.slice(0, 100)}`)
    owner = verifyOwner(await versionOwner(info.cid, async cid => await reader.getBlock(cid, options)), name)
  } catch (err) {
    if (err instanceof StoreError || (err as Error).name === 'AbortedError') throw err
    throw new UntrustedHubError(`${claim}, but serves no valid owner binding for it: ${(err as Error).message}`, { cause: err })
  }
  if (owner.toLowerCase() !== address.toLowerCase()) {
    throw new UntrustedHubError(`${claim}, but the owner binding of ${name} names ${owner}`)
  }
}

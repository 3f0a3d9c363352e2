/**
 * `openSpace({ grant })`: an app opens its own namespace (or, with `namespace`, one it may read)
 * with the keys a grant holds — no wallet, no master signature. The grant is verified first (shape,
 * the master key's signature, write keys against the names they claim).
 */
import { InvalidInputError } from '../errors.js'
import { verifyGrant } from './grant.js'
import { decodeKeys } from './grant.js'
import { checkNamespace } from './scope.js'
import { openNamespace } from './subspace.js'
import type { Grant } from './grant.js'
import type { KeptGrant } from '../connect/keep.js'
import type { NamespaceOpenOptions } from './subspace.js'
import type { Space } from '../space/types.js'
import type { Store } from '../store/interface.js'

export interface GrantedSpaceOptions extends NamespaceOpenOptions {
  /** The grant the connect page (or `space.grant`) issued, as an object or its JSON, or as `keepGrant` kept it. */
  grant: Grant | string | KeptGrant
  /** Which namespace of the grant to open. @default the app's own namespace (`grant.app`) */
  namespace?: string
  store?: Store
  /** @default grant.hub */
  hub?: string
  helia?: unknown
}

export async function openGranted (options: GrantedSpaceOptions, store: Store): Promise<Space> {
  const kept = typeof options.grant === 'object' && 'signingKeys' in options.grant ? options.grant : undefined
  const signingKeys = kept?.signingKeys ?? {}
  const grant = await verifyGrant(kept?.grant ?? options.grant, signingKeys)
  const ns = options.namespace === undefined ? grant.app : checkNamespace(options.namespace, 'namespace')
  const entry = grant.namespaces.find(n => n.namespace === ns)
  if (entry === undefined) throw new InvalidInputError(`the grant for ${grant.app} holds no keys for ${ns} (it holds: ${grant.namespaces.map(n => n.namespace).join(', ')})`)
  const { grant: _grant, namespace: _ns, store: _store, hub: _hub, helia: _helia, ...rest } = options
  return openNamespace(store, decodeKeys(entry, Object.hasOwn(signingKeys, ns) ? signingKeys[ns] : undefined), { name: entry.name, address: entry.address }, rest)
}

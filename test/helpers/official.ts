/**
 * The official IPFS clients, built the way their READMEs show, for tests against a hub: the
 * delegated routing v1 client with its defaults, and a helia node over HTTP (`@helia/http`) whose
 * only router is the hub.
 */
import { delegatedRoutingV1HttpApiClient } from '@helia/delegated-routing-v1-http-api-client'
import { withHTTP } from '@helia/http'
import { defaultLogger } from '@libp2p/logger'
import { createHeliaLight } from 'helia'
import { collect } from '../../src/hub/bytes.js'
import type { DelegatedRoutingV1HttpApiClient } from '@helia/delegated-routing-v1-http-api-client'
import type { CID } from 'multiformats/cid'

/** The routing client for `url`, default options. */
export function createDelegatedRoutingV1HttpApiClient (url: string): DelegatedRoutingV1HttpApiClient {
  return delegatedRoutingV1HttpApiClient({ url })({ logger: defaultLogger() })
}

/**
 * A started `@helia/http` node with `url` as its only delegated router and no recursive gateway.
 * `allowInsecure` and `allowLocal` let its gateway client use a plain-HTTP loopback hub (its
 * defaults accept only https and public addresses).
 */
export async function createHeliaHTTP (url: string): Promise<{ get: (cid: CID) => Promise<Uint8Array>, stop: () => Promise<void> }> {
  const helia = withHTTP(createHeliaLight(), { delegatedRouters: [url], recursiveGateways: [], allowInsecure: true, allowLocal: true })
  await helia.start()
  return {
    get: async (cid) => collect(helia.blockstore.get(cid, { signal: AbortSignal.timeout(20_000) })),
    stop: async () => { await helia.stop() }
  }
}

/**
 * Whether a (platform, identity) pair may be written under an avatar. For platform "nextid" the
 * identity must be the avatar's own key, checked locally before any signature; other platforms ask
 * a ProofService when one is configured (kv_server always asks the public one; a self-hosted hub
 * has none by default).
 */
import { InvalidInputError, StoreError, UserSpaceError } from '../../errors.js'
import { compressedHex } from './chain.js'
import { sameKey } from './transfer.js'

export interface ProofServiceQuery {
  platform: string
  identity: string
  /** the avatar's compressed public key, `0x` hex (how ProofService names a persona) */
  avatar: string
}

/**
 * Whether ProofService binds `identity` on `platform` to the avatar. kv_server asks
 * `GET {proof}/v1/proof?platform=nextid&identity=<avatar>` and looks for the pair among the proofs.
 */
export type ProofServiceCheck = (query: ProofServiceQuery, options?: { signal?: AbortSignal }) => Promise<boolean>

/** For platform "nextid" the identity is the avatar's own key (checked locally, before any signature). */
export function checkNextIdIdentity (publicKey: Uint8Array, platform: string, identity: string): void {
  if (platform === 'nextid' && !sameKey(identity, publicKey)) {
    throw new InvalidInputError('"identity" must be the avatar\'s own public key when "platform" is "nextid"')
  }
}

/** Other platforms ask the ProofService, when one is configured. */
export async function checkProof (proofService: ProofServiceCheck | undefined, publicKey: Uint8Array, platform: string, identity: string, signal?: AbortSignal): Promise<void> {
  if (platform === 'nextid' || proofService === undefined) return
  const avatar = compressedHex(publicKey)
  let bound: boolean
  try {
    bound = await proofService({ platform, identity, avatar }, { signal })
  } catch (err) {
    if (err instanceof UserSpaceError) throw err
    throw new StoreError(`ProofService check failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  // kv_server's wording, which its clients may match on.
  if (bound !== true) throw new InvalidInputError(`Proof not found under this persona: ProofService binds no ${platform} identity ${JSON.stringify(identity)} to ${avatar}`)
}

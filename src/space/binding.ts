/**
 * The owner binding: the wallet's signature over a dated statement naming the space, which is how
 * hubs list an address's space. Also the determinism check: a wallet that signs the open message
 * differently each time would derive another space, and must not be bound to one.
 */
import { normalizeSignature } from '../crypto/eip191.js'
import { ownerStatement } from '../crypto/keys.js'
import { NonDeterministicSignerError } from '../errors.js'
import { nameOfKey } from '../store/record.js'
import { keysFromWallet } from './wallet-keys.js'
import type { SpaceContext } from './context.js'
import type { SpaceOptions } from './types.js'

/** Asks the wallet for the open signature once more: a wallet that signs differently derives another space. */
export async function checkDeterministic (ctx: SpaceContext): Promise<void> {
  const again = await keysFromWallet(ctx.wallet, ctx.address)
  const other = nameOfKey(again.ipnsKey)
  if (other !== ctx.name) {
    throw new NonDeterministicSignerError(`the wallet ${ctx.address} signed the same message twice with different results (${ctx.name} ≠ ${other}): it does not sign deterministically, so it cannot keep a UserSpace`)
  }
}

/**
 * Asks the wallet to sign a dated (version 2) owner binding: what hubs list as the address's space,
 * newest binding first.
 */
export async function signBinding (ctx: SpaceContext, options: SpaceOptions): Promise<void> {
  options.onProgress?.({ type: 'space:open:owner-binding' })
  const issuedAt = Math.floor(ctx.now())
  const statement = ownerStatement(ctx.address, ctx.name, issuedAt)
  const signature = normalizeSignature(statement, await ctx.wallet.signMessage(statement), ctx.address)
  ctx.head.owner = { address: ctx.address, signature: signature.bytes, issuedAt }
}

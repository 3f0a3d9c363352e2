/**
 * The keys a space derives from one wallet signature of the open message: the Ed25519 IPNS key (with
 * fast signing) and the symmetric keys for data and buckets.
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { normalizeSignature } from '../crypto/eip191.js'
import { deriveAppsRoot, deriveKeys, OPEN_MESSAGE } from '../crypto/keys.js'
import { withFastSigning } from '../crypto/ed25519.js'
import type { WalletAdapter } from './signer.js'
import type { PrivateKey } from '@libp2p/interface'

export interface DerivedKeys {
  ipnsKey: PrivateKey
  dataKey: Uint8Array
  bucketKey: Uint8Array
  /** The root of app namespace keys (scoped app access); only a space opened by the wallet has it. */
  appsRoot?: Uint8Array
}

export async function keysFromWallet (wallet: WalletAdapter, address: string): Promise<DerivedKeys> {
  const signature = normalizeSignature(OPEN_MESSAGE, await wallet.signMessage(OPEN_MESSAGE), address)
  const keys = deriveKeys(signature)
  const ipnsKey = await withFastSigning(await generateKeyPairFromSeed('Ed25519', keys.ipnsSeed), keys.ipnsSeed)
  return { ipnsKey, dataKey: keys.dataKey, bucketKey: keys.bucketKey, appsRoot: deriveAppsRoot(signature) }
}

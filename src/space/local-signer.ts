/**
 * A signer from a raw secp256k1 private key, for command-line tools, servers and tests — anywhere
 * there is no wallet. It signs EIP-191 personal messages exactly as wallets do (RFC 6979
 * deterministic nonces, low s, v = 27/28), so a space opened with it is the same space the wallet
 * holding that key would open.
 */
import * as secp from '@noble/secp256k1'
import { addressOfPublicKey, hashPersonalMessage } from '../crypto/eip191.js'
import { bytesToHex, hexToBytes } from '../crypto/bytes.js'
import { InvalidInputError, describeValue } from '../errors.js'
import type { MessageSigner } from './signer.js'

export interface LocalSigner extends MessageSigner {
  address: string
  signMessage: (message: string) => Promise<string>
}

export function privateKeySigner (privateKey: string | Uint8Array): LocalSigner {
  const key = typeof privateKey === 'string' ? hexToBytes(privateKey.trim(), 'privateKey') : privateKey
  if (!(key instanceof Uint8Array) || key.length !== 32 || !secp.utils.isValidSecretKey(key)) {
    throw new InvalidInputError(`"privateKey" expected a 32-byte secp256k1 private key (64 hex digits), got ${key instanceof Uint8Array && key.length === 32 ? 'a value outside the curve order' : describeValue(key)}`)
  }
  const address = addressOfPublicKey(secp.getPublicKey(key, false))
  return {
    address,
    async signMessage (message: string): Promise<string> {
      const sig = await secp.signAsync(hashPersonalMessage(message), key, { prehash: false, format: 'recovered' })
      // noble's recovered format is recovery ‖ r ‖ s; wallets return r ‖ s ‖ v with v = 27 + recovery
      return '0x' + bytesToHex(sig.subarray(1)) + (27 + (sig[0] as number)).toString(16)
    }
  }
}

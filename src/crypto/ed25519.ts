/**
 * Ed25519 signing for IPNS records through WebCrypto (Node ≥ 20 and current browsers), with the key
 * imported once. @libp2p/crypto re-imports the key on every signature in Node (about twice the cost
 * of the signature itself) and falls back to pure-JS signing where WebCrypto lacks Ed25519; we keep
 * its key object for everything but `sign`, and use it as the fallback.
 */
import { concatBytes } from './bytes.js'
import type { PrivateKey } from '@libp2p/interface'

/** RFC 8410 PKCS#8 prefix for a 32-byte Ed25519 seed. */
const PKCS8_ED25519_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20])

export async function withFastSigning (key: PrivateKey, seed: Uint8Array): Promise<PrivateKey> {
  const subtle = globalThis.crypto?.subtle
  if (subtle === undefined || key.type !== 'Ed25519') return key
  let cryptoKey: CryptoKey
  try {
    cryptoKey = await subtle.importKey('pkcs8', concatBytes(PKCS8_ED25519_PREFIX, seed) as Uint8Array<ArrayBuffer>, { name: 'Ed25519' }, false, ['sign'])
  } catch {
    return key // no Ed25519 in this WebCrypto
  }
  return new Proxy(key, {
    get (target, prop, receiver) {
      if (prop === 'sign') {
        return async (data: Uint8Array | { subarray: () => Uint8Array }) => {
          const bytes = data instanceof Uint8Array ? data : data.subarray()
          return new Uint8Array(await subtle.sign('Ed25519', cryptoKey, bytes as Uint8Array<ArrayBuffer>))
        }
      }
      return Reflect.get(target, prop, receiver)
    }
  })
}

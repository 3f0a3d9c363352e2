/**
 * Ed25519 signing for IPNS records with the key imported once: synchronously through Node's native
 * `crypto.sign` where the runtime has it (reached through `process.getBuiltinModule`, which no
 * bundler follows), else through WebCrypto (current browsers). @libp2p/crypto re-imports the key on
 * every signature in Node (about twice the cost of the signature itself), and WebCrypto's sign is a
 * thread-pool job whose wait, on a busy machine, costs more than the signature; we keep the
 * @libp2p/crypto key object for everything but `sign`, and use it as the last fallback.
 */
import { concatBytes } from './bytes.js'
import type { PrivateKey } from '@libp2p/interface'

/** RFC 8410 PKCS#8 prefix for a 32-byte Ed25519 seed. */
const PKCS8_ED25519_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20])

type Sign = (data: Uint8Array) => Uint8Array | Promise<Uint8Array>

interface NodeCrypto {
  createPrivateKey(options: { key: Uint8Array, format: 'der', type: 'pkcs8' }): unknown
  sign(algorithm: null, data: Uint8Array, key: unknown): Uint8Array
}

/** A synchronous native signer for `seed`, when the runtime has node:crypto with Ed25519. */
export function nativeSigner (seed: Uint8Array): Sign | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
  try {
    const crypto = proc?.getBuiltinModule?.('node:crypto') as NodeCrypto | undefined
    if (crypto === undefined) return undefined
    const key = crypto.createPrivateKey({ key: concatBytes(PKCS8_ED25519_PREFIX, seed), format: 'der', type: 'pkcs8' })
    return (data) => crypto.sign(null, data, key)
  } catch {
    return undefined
  }
}

async function webCryptoSigner (seed: Uint8Array): Promise<Sign | undefined> {
  const subtle = globalThis.crypto?.subtle
  if (subtle === undefined) return undefined
  try {
    const cryptoKey = await subtle.importKey('pkcs8', concatBytes(PKCS8_ED25519_PREFIX, seed) as Uint8Array<ArrayBuffer>, { name: 'Ed25519' }, false, ['sign'])
    return async (data) => new Uint8Array(await subtle.sign('Ed25519', cryptoKey, data as Uint8Array<ArrayBuffer>))
  } catch {
    return undefined // no Ed25519 in this WebCrypto
  }
}

export async function withFastSigning (key: PrivateKey, seed: Uint8Array): Promise<PrivateKey> {
  if (key.type !== 'Ed25519') return key
  const sign = nativeSigner(seed) ?? await webCryptoSigner(seed)
  if (sign === undefined) return key
  return new Proxy(key, {
    get (target, prop, receiver) {
      if (prop === 'sign') {
        return async (data: Uint8Array | { subarray: () => Uint8Array }) => sign(data instanceof Uint8Array ? data : data.subarray())
      }
      return Reflect.get(target, prop, receiver)
    }
  })
}

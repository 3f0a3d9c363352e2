/**
 * Test wallets: real secp256k1 keys behind the signer shapes UserSpace accepts (a viem account, an
 * EIP-1193 provider) plus wallets that misbehave in the ways real ones do.
 */
import * as secp from '@noble/secp256k1'
import { privateKeyToAccount } from 'viem/accounts'
import { bytesToHex, hexToBytes, utf8 } from '../../src/crypto/bytes.js'
import { hashPersonalMessage } from '../../src/crypto/eip191.js'
import type { Eip1193Provider, MessageSigner } from '../../src/space/signer.js'

export const KEY_A = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
export const KEY_B = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
export const KEY_C = '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a'

export function account (key: string = KEY_A): ReturnType<typeof privateKeyToAccount> {
  return privateKeyToAccount(key as `0x${string}`)
}

/** An EIP-1193 provider backed by a viem account, as `window.ethereum` would be. */
export function provider (key: string = KEY_A, opts: { reject?: boolean } = {}): Eip1193Provider & { calls: string[] } {
  const acct = account(key)
  const calls: string[] = []
  return {
    calls,
    async request ({ method, params }) {
      calls.push(method)
      if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [acct.address.toLowerCase()]
      if (method === 'personal_sign') {
        if (opts.reject === true) throw Object.assign(new Error('User rejected the request.'), { code: 4001 })
        const [data, from] = params as [string, string]
        if (from.toLowerCase() !== acct.address.toLowerCase()) throw new Error('unknown account')
        return acct.signMessage({ message: { raw: data as `0x${string}` } })
      }
      throw new Error(`unsupported method ${method}`)
    }
  }
}

/** A `{ address, signMessage }` signer that rewrites every signature (other v encodings, high s…). */
export function rewritingSigner (key: string, rewrite: (sig: Uint8Array) => Uint8Array): MessageSigner & { count: number } {
  const acct = account(key)
  const signer = {
    count: 0,
    address: acct.address,
    async signMessage (message: string): Promise<string> {
      signer.count++
      return '0x' + bytesToHex(rewrite(hexToBytes(await acct.signMessage({ message }))))
    }
  }
  return signer
}

/** Signs with random nonces (as some hardware, MPC and contract wallets effectively do). */
export function nonDeterministicSigner (key: string = KEY_A): MessageSigner {
  const acct = account(key)
  const sk = hexToBytes(key)
  return {
    address: acct.address,
    async signMessage (message: string): Promise<string> {
      const sig = await secp.signAsync(hashPersonalMessage(utf8(message)), sk, { prehash: false, extraEntropy: true, format: 'recovered' })
      // noble's recovered format is recovery ‖ r ‖ s; wallets send r ‖ s ‖ v
      return '0x' + bytesToHex(sig.subarray(1)) + (27 + (sig[0] as number)).toString(16)
    }
  }
}

export const N = secp.Point.CURVE().n

/** (r, s, v) → (r, n − s, v ^ 1): the high-s twin of a signature, which recovers the same key. */
export function highS (sig: Uint8Array): Uint8Array {
  const out = sig.slice()
  const s = BigInt('0x' + bytesToHex(sig.subarray(32, 64)))
  out.set(hexToBytes((N - s).toString(16).padStart(64, '0')), 32)
  const v = sig[64] as number
  out[64] = v >= 27 ? (v === 27 ? 28 : 27) : (v ^ 1)
  return out
}

export function vZeroOne (sig: Uint8Array): Uint8Array {
  const out = sig.slice()
  const v = sig[64] as number
  if (v >= 27) out[64] = v - 27
  return out
}

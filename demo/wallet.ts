/**
 * The demo wallet: a secp256k1 key kept in this browser's localStorage, for trying UserSpace without
 * a wallet extension. It signs EIP-191 personal messages the way wallets do (RFC 6979 deterministic
 * nonces, low s, v = 27/28), so the space it opens is the one a real wallet with the same key would
 * open. The key sits unencrypted in localStorage: it is for trying things out, never for funds.
 */
import * as secp from '@noble/secp256k1'
import { privateKeySigner } from '../src/space/local-signer.js'

const KEY = 'userspace-demo:key'
const OLD_KEYS = 'userspace-demo:old-keys'

export interface DemoWallet {
  address: string
  signMessage(message: string): Promise<string>
}

export function walletFromKey (hex: string): DemoWallet {
  // the library's signer: EIP-191 exactly as wallets sign it
  return privateKeySigner(parseKey(hex))
}

/** The 32-byte key in `hex` (with or without 0x, spaces around ignored); throws a readable Error. */
export function parseKey (hex: string): Uint8Array {
  const body = hex.trim().replace(/^0x/i, '')
  if (!/^[0-9a-fA-F]{64}$/.test(body)) throw new Error('A private key is 64 hexadecimal digits (32 bytes), optionally starting with 0x.')
  const key = secp.etc.hexToBytes(body.toLowerCase())
  if (!secp.utils.isValidSecretKey(key)) throw new Error('This is not a valid secp256k1 private key.')
  return key
}

export function storedKey (): string | undefined {
  const key = localStorage.getItem(KEY) ?? undefined
  try {
    if (key !== undefined) parseKey(key)
    return key
  } catch {
    return undefined
  }
}

/**
 * Saves `hex` as the demo key. The replaced key joins the list of previous keys (`oldKeys()`), which
 * is never trimmed: a key is the only way into its space, so "New key" must never lose one.
 */
export function saveKey (hex: string): string {
  const normalized = '0x' + toHex(parseKey(hex))
  const previous = storedKey()
  const old = oldKeys().filter(k => k !== normalized && k !== previous)
  if (previous !== undefined && previous !== normalized) old.push(previous)
  localStorage.setItem(OLD_KEYS, JSON.stringify(old))
  localStorage.setItem(KEY, normalized)
  return normalized
}

/** Keys this browser used before the current one, oldest first (valid ones only). */
export function oldKeys (): string[] {
  let list: unknown
  try {
    list = JSON.parse(localStorage.getItem(OLD_KEYS) ?? '[]')
  } catch {
    return []
  }
  if (!Array.isArray(list)) return []
  return list.filter((k): k is string => {
    if (typeof k !== 'string') return false
    try { parseKey(k); return true } catch { return false }
  })
}

export function newKey (): string {
  return saveKey('0x' + toHex(secp.utils.randomSecretKey()))
}

function toHex (bytes: Uint8Array): string {
  return secp.etc.bytesToHex(bytes)
}

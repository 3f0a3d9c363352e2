/**
 * Deterministic Ed25519 IPNS keys for tests: each file takes its own tag so that names never collide
 * across files, and each call gives the next key of that file, the same on every run.
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { nameOfKey } from '../../src/store/record.js'
import type { PrivateKey } from '@libp2p/interface'

export function ipnsKeySource (tag: number): () => Promise<{ key: PrivateKey, name: string }> {
  let counter = 0
  return async () => {
    const seed = new Uint8Array(32)
    seed[0] = tag
    seed[1] = ++counter
    const key = await generateKeyPairFromSeed('Ed25519', seed)
    return { key, name: nameOfKey(key) }
  }
}

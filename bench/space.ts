/**
 * Benchmark: `set` and `get` on the memory store for spaces of 10, 1 000 and 10 000 keys, printed
 * beside the crypto floor measured in the same run — one Ed25519 signature, plus encrypting and
 * hashing the bytes that this `set` had to encrypt (the bucket it changed).
 *
 * Run: npm run bench:space   (builds, then runs node dist/bench/space.js)
 */
import '../src/polyfill.js'
import * as os from 'node:os'
import { performance } from 'node:perf_hooks'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { withFastSigning } from '../src/crypto/ed25519.js'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { randomBytes } from '@noble/ciphers/utils.js'
import { sha256 } from 'multiformats/hashes/sha2'
import { privateKeyToAccount } from 'viem/accounts'
import { openSpace, memoryStore } from '../src/index.js'
import type { Json, MemoryStore } from '../src/index.js'
import { readRecord } from '../src/store/record.js'
import { decodeRoot } from '../src/space/root.js'

const SIZES = [10, 1_000, 10_000]
const SET_RUNS = 200
const GET_BATCH = 10_000
const GET_RUNS = 15

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

function fmt (ms: number): string {
  return ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`
}

/** The size of the private block the latest `set` wrote (the one bucket that changed). */
function changedBucketBytes (store: MemoryStore, name: string, previous: Set<string>): number {
  const root = decodeRoot(store.blocks.get(readRecord(store.records.get(name)!).cid!.toString())!)
  const fresh = root.private.map(String).filter(c => !previous.has(c))
  return fresh.reduce((n, c) => n + store.blocks.get(c)!.length, 0)
}

async function main (): Promise<void> {
  const signer = privateKeyToAccount('0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80')
  // the same Ed25519 signing path the space uses (WebCrypto, key imported once)
  const seed = randomBytes(32)
  const edKey = await withFastSigning(await generateKeyPairFromSeed('Ed25519', seed), seed)
  const recordData = randomBytes(180) // about what an IPNS V2 signature covers
  const aeadKey = randomBytes(32)

  console.log(`machine: ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, ${os.platform()} ${os.arch()}`)
  console.log(`set: median of ${SET_RUNS}; get: median of ${GET_RUNS} batches of ${GET_BATCH}`)
  console.log('')
  console.log('keys    | set (median) | crypto floor | set / floor | bucket bytes | get (median)')
  console.log('--------|--------------|--------------|-------------|--------------|-------------')
  const setMedians = new Map<number, number>()
  for (const size of SIZES) {
    const store = memoryStore()
    const space = await openSpace({ signer, store })
    const patch: Record<string, Json> = {}
    for (let i = 0; i < size; i++) patch[`key-${i}`] = { i, label: `value number ${i}`, on: i % 2 === 0 }
    await space.patch(patch)
    await space.flush()

    const setTimes: number[] = []
    const floorTimes: number[] = []
    let bucketBytes = 0
    for (let r = 0; r < SET_RUNS + 20; r++) {
      const key = `key-${(r * 7919) % size}`
      const before = new Set(decodeRoot(store.blocks.get(readRecord(store.records.get(space.name)!).cid!.toString())!).private.map(String))
      const t0 = performance.now()
      // set resolves once durable on the device; flush is the publish this compares with the floor
      await space.set(key, { i: r, label: `changed ${r}`, on: true })
      await space.flush()
      const t1 = performance.now()
      bucketBytes = changedBucketBytes(store, space.name, before)
      // the floor for this very set, measured right after it: 1 signature + seal + hash of those bytes
      const plaintext = new Uint8Array(Math.max(0, bucketBytes - 41)).fill(r)
      const f0 = performance.now()
      await edKey.sign(recordData)
      const sealed = xchacha20poly1305(aeadKey, randomBytes(24)).encrypt(plaintext)
      await sha256.digest(sealed)
      const f1 = performance.now()
      if (r >= 20) { setTimes.push(t1 - t0); floorTimes.push(f1 - f0) }
    }

    const getTimes: number[] = []
    for (let r = 0; r < GET_RUNS; r++) {
      const t0 = performance.now()
      for (let i = 0; i < GET_BATCH; i++) await space.get(`key-${i % size}`)
      getTimes.push((performance.now() - t0) / GET_BATCH)
    }
    const set = median(setTimes)
    const floor = median(floorTimes)
    setMedians.set(size, set)
    console.log(`${String(size).padEnd(7)} | ${fmt(set).padEnd(12)} | ${fmt(floor).padEnd(12)} | ${(set / floor).toFixed(2).padEnd(11)} | ${String(bucketBytes).padEnd(12)} | ${fmt(median(getTimes))}`)
    await space.close()
  }
  console.log('')
  console.log(`set on 10 000 keys / set on 10 keys: ${(setMedians.get(10_000)! / setMedians.get(10)!).toFixed(2)}`)
}

main().catch((err) => { console.error(err); process.exitCode = 1 })

/**
 * Benchmark of the storage format on the memory store: `set` (+ `flush`, the publish) and `get` for
 * spaces of 10 to 100 000 keys, printed beside the crypto floor measured in the same run (one
 * Ed25519 signature, plus encrypting and hashing the bytes this `set` sealed); the bytes of new
 * blocks each single-key update adds to the store (what a hub or a helia blockstore keeps per
 * update); and the time to open a space (from the wallet signature to the map in memory), from the
 * memory store and through a real `userspace serve` process on loopback. The floor is measured
 * twice: with the paths the space takes in Node (native Ed25519, ChaCha20-Poly1305 and the one-shot
 * sha2-256 that names its blocks), and with the JavaScript ones a browser takes (WebCrypto
 * signature, @noble/ciphers).
 *
 * Run: npm run bench:space   (builds, then runs node dist/bench/space.js)
 *      BENCH_SIZES=10,10000 BENCH_SET_RUNS=50 for a quick run; BENCH_HUB_SIZES=10000,100000 (the
 *      default) are opened through a hub process, BENCH_HUB_SIZES= skips that
 */
import '../src/polyfill.js'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import * as os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { performance } from 'node:perf_hooks'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { withFastSigning } from '../src/crypto/ed25519.js'
import { randomBytes } from '@noble/ciphers/utils.js'
import { associatedData, seal } from '../src/crypto/envelope.js'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { privateKeyToAccount } from 'viem/accounts'
import { memoryState, openSpace, memoryStore } from '../src/index.js'
import type { Json, MemoryStore } from '../src/index.js'
import type { Block } from '../src/store/interface.js'
import { cidString, rawBlock, rawBlockNow } from '../src/store/blocks.js'

const SIZES = (process.env.BENCH_SIZES ?? '10,1000,10000,100000').split(',').map(Number)
const SET_RUNS = Number(process.env.BENCH_SET_RUNS ?? 200)
const OPEN_RUNS = Number(process.env.BENCH_OPEN_RUNS ?? 7)
/**
 * Opens through a hub left untimed first (printed apart): the first reads the version's blocks from
 * the hub's disk (its memory cache holds only what a publish keeps), and the next few run while V8
 * is still optimising the open path (one run: 2 662, 393, 435, 253, 321, 281, 261 ms).
 */
const OPEN_WARMUP = 2
/** Sets timed one after another before their floors are (see the loop). */
const SET_BLOCK = 20
/**
 * Sets (and floors) run untimed first, per size. V8 takes a couple of thousand calls to settle on the
 * write path: medians per 500 sets + flushes in one loop (one-off runs) were 169, 87, 82, 64, 70,
 * 72, 64… µs at 10 keys and 195, 134, 102, 103, 109… µs at 10 000, so a warm-up of 600 timed part
 * of the warm-up.
 */
const SET_WARMUP = Number(process.env.BENCH_SET_WARMUP ?? 2000)
const GET_BATCH = 10_000
const GET_RUNS = 15
const HUB_SIZES = (process.env.BENCH_HUB_SIZES ?? '10000,100000').split(',').filter(s => s !== '').map(Number)
const BIN = fileURLToPath(new URL('../../bin/userspace.js', import.meta.url))

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

function fmt (ms: number): string {
  return ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`
}

/**
 * A memory store that remembers the blocks each publish hands it. Which of them are new (the store
 * did not hold them) is worked out after the timing, by `newBlocks`: checked inside `putBlocks`,
 * the bench's own lookups (a CID's text and a probe of a map of every block, per block) were timed
 * as part of each `set`.
 */
function countingStore (): MemoryStore & { handed: Block[] } {
  const store = memoryStore() as MemoryStore & { handed: Block[] }
  const put = store.putBlocks.bind(store)
  store.handed = []
  store.putBlocks = async (blocks, options) => {
    store.handed.push(...blocks)
    await put(blocks, options)
  }
  return store
}

/** The blocks in `handed` that are not in `seen` (the store's blocks so far), which it then holds. */
function newBlocks (handed: Block[], seen: Set<string>): Block[] {
  const fresh: Block[] = []
  for (const b of handed) {
    // cidString, as the store keys blocks: `toString()` would leave a rope cached on every CID the space keeps
    const key = cidString(b.cid)
    if (!seen.has(key)) { seen.add(key); fresh.push(b) }
  }
  return fresh
}

async function main (): Promise<void> {
  const signer = privateKeyToAccount('0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80')
  // the same Ed25519 signing and sealing paths the space uses (native in Node, key imported once)
  const seed = randomBytes(32)
  const edKey = await withFastSigning(await generateKeyPairFromSeed('Ed25519', seed), seed)
  const recordData = randomBytes(180) // about what an IPNS V2 signature covers
  const aeadKey = randomBytes(32)
  const ad = associatedData(2, 'k51qzi5uqu5djtge0ytuuxft6nytrerco6wntnw00rdwln2gfimils7jf1wmmb', 'bucket 0/1')

  console.log(`machine: ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, ${os.platform()} ${os.arch()}, load ${os.loadavg().map(l => l.toFixed(1)).join(' ')}`)
  console.log(`set: median of ${SET_RUNS}; get: median of ${GET_RUNS} batches of ${GET_BATCH}; open: median of ${OPEN_RUNS}`)
  // Opens through a hub run first, as a new device's would: in a process that does not yet hold the
  // memory stores and spaces of the runs below (a full garbage collection of that heap landed in the
  // middle of an open and added ~50 ms to it).
  const hubLines: string[] = []
  for (const size of HUB_SIZES) hubLines.push(await openThroughHub(signer, size))
  console.log('')
  console.log('keys    | set + flush  | crypto floor | set / floor | JS floor | set / JS floor | new blocks per update (bytes: median / max) | sealed | get      | open (wall, CPU of the process)')
  console.log('--------|--------------|--------------|-------------|----------|----------------|---------------------------------------------|--------|----------|---------')
  const jsKey = await generateKeyPairFromSeed('Ed25519', seed)
  const subtle = globalThis.crypto.subtle
  const pkcs8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...seed])
  const webKey = await subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']).catch(() => undefined)
  const jsSign = async (data: Uint8Array): Promise<unknown> => webKey === undefined ? jsKey.sign(data) : subtle.sign('Ed25519', webKey, data as Uint8Array<ArrayBuffer>)
  const setMedians = new Map<number, number>()
  for (const size of SIZES) {
    const store = countingStore()
    const space = await openSpace({ signer, store })
    const patch: Record<string, Json> = {}
    for (let i = 0; i < size; i++) patch[`key-${i}`] = { i, label: `value number ${i}`, on: i % 2 === 0 }
    await space.patch(patch)
    await space.flush()
    const seen = new Set(store.blocks.keys())

    const setTimes: number[] = []
    const floorTimes: number[] = []
    const jsFloorTimes: number[] = []
    const perUpdate: number[] = []
    const sealed: number[] = []
    // Sets, their floors and the JavaScript floors are timed in alternating blocks of SET_BLOCK
    // rather than one of each in turn: run one after another, each path slowed the next (a 10-key
    // set + flush took ~90 µs in a loop of its own, 115–210 µs with a noble seal and ~240 µs with a
    // WebCrypto signature run between two sets, in one-off runs of the same code). Each block re-runs the floors for the
    // sizes its sets sealed, so every set still has its own floor.
    for (let r = 0; r < SET_RUNS + SET_WARMUP; r += SET_BLOCK) {
      const blockSealed: number[] = []
      for (let k = r; k < r + SET_BLOCK; k++) {
        const key = `key-${(k * 7919) % size}`
        store.handed = []
        const t0 = performance.now()
        // set resolves once durable on the device; flush is the publish this compares with the floor
        await space.set(key, { i: k, label: `changed ${k}`, on: true })
        await space.flush()
        const t1 = performance.now()
        const added = newBlocks(store.handed, seen)
        const bytes = added.reduce((n, b) => n + b.bytes.length, 0)
        const sealedBytes = added.filter(b => b.cid.code === raw.code).reduce((n, b) => n + b.bytes.length, 0)
        blockSealed.push(sealedBytes)
        if (k >= SET_WARMUP) { setTimes.push(t1 - t0); perUpdate.push(bytes); sealed.push(sealedBytes) }
      }
      // the floor for each set of the block: 1 signature + seal + hash of the bytes that set sealed
      // (an envelope is 1 version byte + 24 nonce + 4 length + the text + 16 tag; sealed without padding)
      const plaintexts = blockSealed.map((n, i) => new Uint8Array(Math.max(0, n - 45)).fill(r + i))
      for (const [i, plaintext] of plaintexts.entries()) {
        const f0 = performance.now()
        await edKey.sign(recordData)
        const sealedNow = seal(aeadKey, ad, plaintext, undefined, n => n)
        // named as the space names a bucket (a native one-shot hash in Node)
        if (rawBlockNow(sealedNow) === undefined) await rawBlock(sealedNow)
        const f1 = performance.now()
        if (r + i >= SET_WARMUP) floorTimes.push(f1 - f0)
      }
      // what a browser pays for the same: WebCrypto's signature, @noble/ciphers' seal
      for (const [i, plaintext] of plaintexts.entries()) {
        const j0 = performance.now()
        await jsSign(recordData)
        await sha256.digest(xchacha20poly1305(aeadKey, randomBytes(24), ad).encrypt(plaintext))
        const j1 = performance.now()
        if (r + i >= SET_WARMUP) jsFloorTimes.push(j1 - j0)
      }
    }

    const getTimes: number[] = []
    for (let r = 0; r < GET_RUNS; r++) {
      const t0 = performance.now()
      for (let i = 0; i < GET_BATCH; i++) await space.get(`key-${i % size}`)
      getTimes.push((performance.now() - t0) / GET_BATCH)
    }
    await space.close()

    // Open: a new device (no state) opening the space from the store, signature to map in memory.
    const openTimes: number[] = []
    const openCpu: number[] = []
    for (let r = 0; r < OPEN_RUNS; r++) {
      const c0 = process.cpuUsage()
      const t0 = performance.now()
      const fresh = await openSpace({ signer, store })
      openTimes.push(performance.now() - t0)
      const c = process.cpuUsage(c0)
      openCpu.push((c.user + c.system) / 1000)
      if ((await fresh.keys()).length !== size) throw new Error(`opened ${(await fresh.keys()).length} keys, expected ${size}`)
      await fresh.close()
    }

    const set = median(setTimes)
    const floor = median(floorTimes)
    const jsFloor = median(jsFloorTimes)
    setMedians.set(size, set)
    const updateBytes = `${median(perUpdate)} / ${Math.max(...perUpdate)} (mean ${Math.round(perUpdate.reduce((n, b) => n + b, 0) / perUpdate.length)})`
    console.log(`${String(size).padEnd(7)} | ${fmt(set).padEnd(12)} | ${fmt(floor).padEnd(12)} | ${(set / floor).toFixed(2).padEnd(11)} | ${fmt(jsFloor).padEnd(8)} | ${(set / jsFloor).toFixed(2).padEnd(14)} | ${updateBytes.padEnd(43)} | ${String(median(sealed)).padEnd(6)} | ${fmt(median(getTimes)).padEnd(8)} | ${fmt(median(openTimes))} (CPU ${fmt(median(openCpu))})`)
  }
  console.log('')
  for (const line of hubLines) console.log(line)
  if (setMedians.has(10) && setMedians.has(10_000)) console.log(`set on 10 000 keys / set on 10 keys: ${(setMedians.get(10_000)! / setMedians.get(10)!).toFixed(2)}`)
}

/**
 * Opens a space of `size` keys through a real `userspace serve` process on loopback (its own data
 * directory, removed after): wall time and this process's CPU, signature to map in memory.
 */
async function openThroughHub (signer: ReturnType<typeof privateKeyToAccount>, size: number): Promise<string> {
  const dir = await mkdtemp(join(os.tmpdir(), 'userspace-bench-space-'))
  const child = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dir, '--rate-limit', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    let out = ''
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    const deadline = Date.now() + 30_000
    while (/listening on (\S+)/.exec(out) === null) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`hub did not start: ${out}`)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    const hub = (/listening on (\S+)/.exec(out) as RegExpExecArray)[1] as string
    const state = memoryState()
    const space = await openSpace({ signer, hub, state })
    const patch: Record<string, Json> = {}
    for (let i = 0; i < size; i++) patch[`key-${i}`] = { i, label: `value number ${i}`, on: i % 2 === 0 }
    await space.patch(patch)
    await space.flush()
    await space.close()
    const wall: number[] = []
    const cpu: number[] = []
    const untimed: number[] = []
    for (let r = 0; r < OPEN_WARMUP + OPEN_RUNS; r++) {
      const c0 = process.cpuUsage()
      const t0 = performance.now()
      // a new device: no state, nothing cached
      const fresh = await openSpace({ signer, hub, state: memoryState() })
      if (r < OPEN_WARMUP) {
        untimed.push(performance.now() - t0)
        await fresh.close()
        continue
      }
      wall.push(performance.now() - t0)
      const c = process.cpuUsage(c0)
      cpu.push((c.user + c.system) / 1000)
      if ((await fresh.keys()).length !== size) throw new Error(`opened ${(await fresh.keys()).length} keys through the hub, expected ${size}`)
      await fresh.close()
    }
    return `open ${size} keys through a hub process (loopback): ${fmt(median(wall))} wall, CPU of this process ${fmt(median(cpu))} (median of ${OPEN_RUNS}; all: ${wall.map(t => t.toFixed(0)).join(' ')} ms; untimed before them: ${untimed.map(t => t.toFixed(0)).join(' ')} ms, the first with the hub reading the blocks from disk)`
  } finally {
    child.kill('SIGTERM')
    await new Promise(resolve => child.once('exit', resolve))
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((err) => { console.error(err); process.exitCode = 1 })

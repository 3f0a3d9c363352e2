/**
 * Benchmark: heap held per CID or name kept as a map key, side by side in one run: the text
 * multiformats' `toString()` writes (built one character at a time, which V8 keeps as a rope of one
 * node per character) against `cidString` / `nameText` (the same text, flat), then what the hub's
 * upload tracking (HubStorage, up to 262 144 blocks between two collections) and the memory store
 * hold per block and per `set`, and a garbage-collection pass over 300 000 unreferenced landed blocks
 * (its time and the heap it leaves). Needs `--expose-gc` (the npm script passes it).
 *
 * Run: npm run bench:keys   (builds, then runs node --expose-gc dist/bench/keys.js)
 */
import '../src/polyfill.js'
import * as os from 'node:os'
import { MemoryDatastore } from 'datastore-core'
import { CID } from 'multiformats/cid'
import { base36 } from 'multiformats/bases/base36'
import { identity } from 'multiformats/hashes/identity'
import { MemoryBlockstore } from 'blockstore-core'
import { createHub } from '../src/hub/app.js'
import { HubStorage } from '../src/hub/storage.js'
import { cidString, rawBlockNow } from '../src/store/blocks.js'
import { nameText } from '../src/store/record.js'
import { memoryState, memoryStore, openSpace, privateKeySigner } from '../src/index.js'

const KEYS = 100_000
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')
const heap = (): number => { gc(); gc(); return process.memoryUsage().heapUsed }
const perKey = (bytes: number, n: number): string => `${(bytes / n).toFixed(0)} B`

/** Heap a map of `n` keys made by `key(i)` holds, the objects the keys are made from not counted. */
function mapHeap (n: number, key: (i: number) => string): number {
  const map = new Map<string, number>()
  const before = heap()
  for (let i = 0; i < n; i++) map.set(key(i), i)
  const after = heap()
  if (map.size !== n) throw new Error('keys collided')
  return after - before
}

const rawCid = (i: number): CID => {
  const bytes = new Uint8Array(8)
  new DataView(bytes.buffer).setUint32(0, i)
  return (rawBlockNow(bytes) as { cid: CID }).cid
}
const nameCid = (i: number): CID => {
  const key = new Uint8Array(36)
  key.set([8, 1, 18, 32])
  new DataView(key.buffer).setUint32(4, i)
  return CID.createV1(0x72, identity.digest(key))
}

async function main (): Promise<void> {
  console.log(`machine: ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, node ${process.version}, ${os.platform()} ${os.arch()}, load ${os.loadavg().map(l => l.toFixed(1)).join(' ')}`)
  // CIDs made before each count, so only the keys are measured; each key is taken from a fresh copy
  // that is dropped at once, as at the stores' key sites (toString() also caches its text on the CID)
  const cids = Array.from({ length: KEYS }, (_, i) => rawCid(i))
  const names = Array.from({ length: KEYS }, (_, i) => nameCid(i))
  const fresh = (cid: CID | undefined): CID => CID.decode((cid as CID).bytes)
  console.log(`\nheap per map key, ${KEYS} keys | toString() | flat`)
  console.log(`block CID (base32)  | ${perKey(mapHeap(KEYS, i => fresh(cids[i]).toString()), KEYS)} | ${perKey(mapHeap(KEYS, i => cidString(fresh(cids[i]))), KEYS)}`)
  console.log(`name (k51…, base36) | ${perKey(mapHeap(KEYS, i => fresh(names[i]).toString(base36)), KEYS)} | ${perKey(mapHeap(KEYS, i => nameText(fresh(names[i]))), KEYS)}`)

  // The hub's tracking of uploads no record claims yet, as `landed` fills it.
  const storage = new HubStorage(new MemoryDatastore(), {})
  await storage.ready
  const before = heap()
  for (let i = 0; i < KEYS; i += 100) await storage.landed('203.0.113.7', cids.slice(i, i + 100).map(cid => ({ cid: fresh(cid), size: 8 })), Date.now())
  const tracked = heap() - before
  console.log(`\nhub upload tracking: ${perKey(tracked, KEYS)} per block (${(tracked / 2 ** 20).toFixed(1)} MiB for ${KEYS}, the datastore's copy of the entries included); landed bytes ${storage.landedBytes}`)

  // A collection pass over landed blocks no record references, all in their grace period (what a
  // full hub's pass meets: at the default 10 GiB budget, up to 2.6 million blocks of 4 KiB).
  const landedN = 300_000
  const datastore = new MemoryDatastore()
  const hub = createHub({ blockstore: new MemoryBlockstore(), datastore }, { rateLimit: 0, gcGraceMs: 3_600_000, maxStorageBytes: 1e15 })
  let landing: HubStorage | undefined = new HubStorage(datastore, {})
  await landing.ready
  for (let i = 0; i < landedN; i += 256) {
    const batch = []
    for (let j = i; j < Math.min(landedN, i + 256); j++) batch.push({ cid: fresh(rawCid(j)), size: 8 })
    await landing.landed('203.0.113.7', batch, Date.now())
  }
  landing = undefined
  const base = heap()
  const t0 = performance.now()
  const report = await hub.collectGarbage(Date.now())
  const passMs = performance.now() - t0
  const kept = heap() - base
  console.log(`collection pass over ${landedN} unreferenced landed blocks: ${passMs.toFixed(0)} ms; heap kept after it (their pending charges) ${(kept / 2 ** 20).toFixed(0)} MiB, ${perKey(kept, landedN)} per block; ${report.pendingBlocks} pending`)

  // The memory store keeps every block of every version: heap per set + flush at 1 000 keys.
  const store = memoryStore()
  const space = await openSpace({ signer: privateKeySigner('02'.padStart(64, '0')), store, state: memoryState() })
  const fill: Record<string, { i: number }> = {}
  for (let i = 0; i < 1000; i++) fill[`key-${i}`] = { i }
  await space.patch(fill)
  await space.flush()
  const sets = 2000
  const start = heap()
  for (let k = 0; k < sets; k++) {
    await space.set(`key-${(k * 7919) % 1000}`, { i: k })
    await space.flush()
  }
  const grown = heap() - start
  console.log(`memory store, 1 000 keys: ${perKey(grown, sets)} of heap per set + flush (${store.blocks.size} blocks held; their bytes are outside the heap)`)
  await space.close()
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })

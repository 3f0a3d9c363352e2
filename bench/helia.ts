/**
 * Benchmark: spaces on real helia nodes on loopback (TCP, LAN kad-dht, bitswap), in one process.
 * A hub-like node 1, node 2 dialled to it, and readers that are given node 2 only, so that every
 * read goes through the DHT and bitswap:
 *
 * - publish: `putRecord` of a signed record on node 1 (local store + DHT put);
 * - resolve: `getRecord(name, { nocache: true })` on node 3;
 * - cold open: a brand-new node with empty stores opens a 1 000-key space and reads it all
 *   (`openSpace` + `getAll`: wallet signature, DHT record lookup, the version's state in one
 *   DAG_PROTOCOL answer from a connected peer, else bitswap, decryption); once given node 2 only,
 *   once given node 1 (which holds the space, as a hub would); the node's own start is reported apart;
 * - set → visible: `await a.set(k, v)` and `flush()` on node 1 until `await b.refresh()` on node 3 shows it.
 *
 * Medians of RUNS runs after WARMUP unrecorded ones. Run: `npx tsc -p . ; node dist/bench/helia.js`
 */
import '../src/polyfill.js'
import * as os from 'node:os'
import { performance } from 'node:perf_hooks'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { privateKeyToAccount } from 'viem/accounts'
import { openSpace } from '../src/index.js'
import { rawBlock } from '../src/store/blocks.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { heliaStore } from '../src/store/helia.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import type { Json, Space, Store } from '../src/index.js'
import type { HeliaNode } from '../src/store/helia-node.js'

const RUNS = 15
const WARMUP = 2
const KEYS = 1_000
/** Targets from the design brief. */
const TARGET_COLD_OPEN_MS = 300
const TARGET_SET_VISIBLE_MS = 200

const KEY = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] ?? NaN : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2
}

function range (xs: number[]): string {
  return `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`
}

async function time (fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

async function runs (fn: (run: number) => Promise<number>): Promise<number[]> {
  const out: number[] = []
  for (let r = 0; r < WARMUP + RUNS; r++) {
    const ms = await fn(r)
    if (r >= WARMUP) out.push(ms)
  }
  return out
}

/** Wraps a store to add the time spent in each kind of call to `totals` (cold-open breakdown). */
function timedStore (store: Store, totals: Map<string, number>): Store {
  const timed = <A extends unknown[], R>(label: string, fn: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    const t0 = performance.now()
    try { return await fn(...args) } finally { totals.set(label, (totals.get(label) ?? 0) + performance.now() - t0) }
  }
  let blocks = 0
  const getBlock = store.getBlock.bind(store)
  const getDag = store.getDag?.bind(store)
  return {
    putBlocks: timed('putBlocks', store.putBlocks.bind(store)),
    // A space reads a version's state with one getDag where the store has it (DAG_PROTOCOL on helia).
    ...(getDag === undefined ? {} : { getDag: timed('getDag', getDag) }),
    // The first block a space reads is its root; the rest are its sections.
    getBlock: async (...args) => timed(blocks++ === 0 ? 'getBlock:first' : 'getBlock:rest', getBlock)(...args),
    putRecord: timed('putRecord', store.putRecord.bind(store)),
    getRecord: timed('getRecord', store.getRecord.bind(store))
  }
}

const peersOf = (node: HeliaNode): string[] => node.libp2p.getMultiaddrs().map(String).filter(a => !a.includes('/ws'))

async function main (): Promise<void> {
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu'
  console.log(`machine: ${cpu}, ${os.cpus().length} cores, node ${process.version}, ${os.platform()} ${os.arch()}`)
  console.log(`loopback, one process; median of ${RUNS} runs after ${WARMUP} warm-up runs (min–max in brackets)`)
  // Other work on the machine moves these figures by 2x or more: say how busy it was.
  const load = (): string => os.loadavg().map(l => l.toFixed(2)).join(' ')
  console.log(`load average at start: ${load()}`)
  console.log('')

  const started: HeliaNode[] = []
  const spaces: Space[] = []
  const node = async (options: Parameters<typeof createHeliaNode>[0]): Promise<HeliaNode> => {
    const n = await createHeliaNode(options)
    started.push(n)
    return n
  }
  try {
    const node1 = await node({ dhtServer: true })
    const node2 = await node({ dhtServer: true, peers: peersOf(node1) })
    const node3 = await node({ dhtServer: true, peers: peersOf(node2) })
    const store1 = heliaStore(node1)
    const store3 = heliaStore(node3)
    const results: Array<[string, number[], string?]> = []

    // publish and resolve: one record per run, with a fresh name each time for resolve, so that
    // nothing is cached anywhere but where the DHT put it.
    const publishKey = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(1))
    const publishName = nameOfKey(publishKey)
    const { cid } = await rawBlock(new TextEncoder().encode('bench root'))
    results.push(['publish (putRecord, DHT put)', await runs(async (r) => {
      const record = await createRecord(publishKey, cid, r + 1)
      return time(async () => store1.putRecord(publishName, record))
    })])

    const resolveRecords: Array<{ name: string, record: Uint8Array }> = []
    for (let r = 0; r < WARMUP + RUNS; r++) {
      const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(10 + r))
      const record = await createRecord(key, cid, 1)
      await store1.putRecord(nameOfKey(key), record)
      resolveRecords.push({ name: nameOfKey(key), record })
    }
    results.push(['resolve (getRecord nocache, node 3)', await runs(async (r) => {
      const { name } = resolveRecords[r] ?? { name: '' }
      let found: Uint8Array | undefined
      const ms = await time(async () => { found = await store3.getRecord(name, { nocache: true }) })
      if (found === undefined) throw new Error(`resolve ${r} found nothing`)
      return ms
    })])

    // The 1 000-key space, written once by device A on node 1.
    const signer = privateKeyToAccount(KEY)
    const a = await openSpace({ signer, store: store1 })
    spaces.push(a)
    const patch: Record<string, Json> = {}
    for (let i = 0; i < KEYS; i++) patch[`key-${i}`] = { i, label: `value number ${i}`, on: i % 2 === 0 }
    await a.patch(patch)
    await a.flush()

    // Cold open, twice: through a node that never held the space (DHT to find node 1, then a new
    // connection to it), and connected straight to the node that holds it, as a device to its hub.
    const coldOpen = async (label: string, via: HeliaNode, note?: string): Promise<void> => {
      const nodeStarts: number[] = []
      const recordTimes: number[] = []
      const rootTimes: number[] = []
      const dagTimes: number[] = []
      const bucketTimes: number[] = []
      results.push([label, await runs(async () => {
        const t0 = performance.now()
        const fresh = await createHeliaNode({ peers: peersOf(via) })
        nodeStarts.push(performance.now() - t0)
        try {
          let count = 0
          const totals = new Map<string, number>()
          const ms = await time(async () => {
            const space = await openSpace({ signer, store: timedStore(heliaStore(fresh), totals) })
            count = Object.keys(await space.getAll()).length
            await space.close()
          })
          if (count !== KEYS) throw new Error(`cold open read ${count} keys, expected ${KEYS}`)
          recordTimes.push(totals.get('getRecord') ?? 0)
          rootTimes.push(totals.get('getBlock:first') ?? 0)
          dagTimes.push(totals.get('getDag') ?? 0)
          bucketTimes.push(totals.get('getBlock:rest') ?? 0)
          return ms
        } finally {
          await stopHeliaNode(fresh)
        }
      }), note])
      results.push(['  of which getRecord (DHT)', recordTimes.slice(WARMUP)])
      results.push(['  of which getDag, the version\'s state (one DAG_PROTOCOL answer)', dagTimes.slice(WARMUP)])
      results.push(['  of which getBlock, root (bitswap)', rootTimes.slice(WARMUP)])
      results.push(['  of which getBlock, buckets (bitswap)', bucketTimes.slice(WARMUP)])
      results.push(['  (new node start with one peer, not included)', nodeStarts.slice(WARMUP)])
    }
    await coldOpen(`cold open, ${KEYS} keys, new node given node 2 only`, node2, `target < ${TARGET_COLD_OPEN_MS} ms`)
    await coldOpen(`cold open, ${KEYS} keys, new node given node 1 (its hub)`, node1)

    const b = await openSpace({ signer, store: store3 })
    spaces.push(b)
    const setTimes: number[] = []
    const refreshTimes: number[] = []
    results.push(['set → visible on node 3 (set + refresh)', await runs(async (r) => {
      const key = `key-${(r * 389) % KEYS}`
      const value = { changed: r, at: Date.now() }
      const t0 = performance.now()
      await a.set(key, value)
      await a.flush()
      const t1 = performance.now()
      await b.refresh()
      const t2 = performance.now()
      if (JSON.stringify(await b.get(key)) !== JSON.stringify(value)) throw new Error(`run ${r}: not visible after refresh`)
      if (r >= WARMUP) { setTimes.push(t1 - t0); refreshTimes.push(t2 - t1) }
      return t2 - t0
    }), `target < ${TARGET_SET_VISIBLE_MS} ms`])
    results.push(['  of which set (publish on node 1)', setTimes])
    results.push(['  of which refresh (node 3)', refreshTimes])

    const width = Math.max(...results.map(([label]) => label.length))
    for (const [label, xs, note] of results) {
      console.log(`${label.padEnd(width)}  ${median(xs).toFixed(1).padStart(7)} ms  [${range(xs)}]${note === undefined ? '' : `  ${note}`}`)
    }
    console.log(`load average at end: ${load()}`)
  } finally {
    for (const space of spaces) await space.close()
    for (const n of started.reverse()) await stopHeliaNode(n)
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})

/**
 * Benchmark: how fast a change reaches another device, and what merging costs.
 *
 * 1. Live latency: device A and device B open one space through a hub on loopback (started in this
 *    process, embedded storage in a temp directory); B subscribes; the time from A's `set` resolving
 *    to B's subscriber firing (B's map already merged), median of several runs.
 * 2. Merge: two devices holding the same 1 000-key space diverge offline (each changes 500 other
 *    keys); the time for one of them to `refresh()` — resolve, fetch and decrypt the other's buckets,
 *    merge per key, and publish the merged version — median of several runs, on a memory store.
 *
 * Run: npm run build && node dist/bench/sync.js
 */
import '../src/polyfill.js'
import * as os from 'node:os'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { openSpace, memoryStore, StoreError, privateKeySigner } from '../src/index.js'
import type { Json, Store } from '../src/index.js'
import { startHub } from '../src/hub/server.js'

const KEY = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
const LIVE_RUNS = 30
const MERGE_RUNS = 15

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

async function live (): Promise<{ median: number, p90: number }> {
  const dir = await mkdtemp(join(os.tmpdir(), 'userspace-bench-'))
  const hub = await startHub({ port: 0, directory: dir, rateLimit: 0 })
  try {
    const signer = privateKeySigner(KEY)
    const a = await openSpace({ signer, hub: hub.url })
    await a.set('warm', 0)
    await a.flush()
    const b = await openSpace({ signer, hub: hub.url })
    let pending: { resolve: (t: number) => void, value: number } | undefined
    b.subscribe(() => {
      void b.get('counter').then((v) => { if (pending !== undefined && v === pending.value) pending.resolve(performance.now()) })
    })
    await new Promise(resolve => setTimeout(resolve, 300)) // let the event stream connect
    const times: number[] = []
    for (let i = 0; i < LIVE_RUNS + 3; i++) {
      const heard = new Promise<number>((resolve) => { pending = { resolve, value: i } })
      // from the call: set resolves once durable here, before the publish
      const done = performance.now()
      await a.set('counter', i)
      const at = await Promise.race([heard, new Promise<number>((_resolve, reject) => setTimeout(() => reject(new Error('not heard within 5 s')), 5000))])
      if (i >= 3) times.push(Math.max(0, at - done))
    }
    await a.close(); await b.close()
    const sorted = [...times].sort((x, y) => x - y)
    return { median: median(times), p90: sorted[Math.floor(sorted.length * 0.9)]! }
  } finally {
    await hub.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

function offlineSwitch (network: Store): Store & { online: boolean } {
  const s = {
    online: true,
    putBlocks: async (b: any, o: any) => { if (!s.online) throw new StoreError('offline'); return network.putBlocks(b, o) },
    getBlock: async (c: any, o: any) => { if (!s.online) throw new StoreError('offline'); return network.getBlock(c, o) },
    putRecord: async (n: string, r: Uint8Array, o: any) => { if (!s.online) throw new StoreError('offline'); return network.putRecord(n, r, o) },
    getRecord: async (n: string, o: any) => { if (!s.online) throw new StoreError('offline'); return network.getRecord(n, o) }
  }
  return s
}

async function merge (): Promise<number> {
  const times: number[] = []
  const signer = privateKeySigner(KEY)
  for (let run = 0; run < MERGE_RUNS + 2; run++) {
    const network = memoryStore()
    const la = offlineSwitch(network)
    const lb = offlineSwitch(network)
    const a = await openSpace({ signer, store: la, retryDelayMs: 0 })
    const base: Record<string, Json> = {}
    for (let i = 0; i < 1000; i++) base[`key-${i}`] = { i, label: `value ${i}` }
    await a.patch(base)
    const b = await openSpace({ signer, store: lb, retryDelayMs: 0 })
    lb.online = false
    const fromA: Record<string, Json> = {}
    const fromB: Record<string, Json> = {}
    for (let i = 0; i < 1000; i++) (i % 2 === 0 ? fromA : fromB)[`key-${i}`] = { i, label: `changed ${run}` }
    await a.patch(fromA)
    await b.patch(fromB).catch(() => {})
    lb.online = true
    const t0 = performance.now()
    await b.refresh()
    const t = performance.now() - t0
    const all = await b.getAll()
    if (Object.keys(all).length !== 1000 || (all['key-0'] as { label: string }).label !== `changed ${run}` || (all['key-1'] as { label: string }).label !== `changed ${run}`) {
      throw new Error('merge lost a write')
    }
    if (run >= 2) times.push(t)
  }
  return median(times)
}

async function main (): Promise<void> {
  console.log(`machine: ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, node ${process.version}, ${os.platform()} ${os.arch()}`)
  const l = await live()
  console.log(`live: set on A → B's subscriber fires, through a hub on loopback: median ${l.median.toFixed(1)} ms, p90 ${l.p90.toFixed(1)} ms (${LIVE_RUNS} runs; target < 100 ms)`)
  const m = await merge()
  console.log(`merge: two diverged 1 000-key spaces (500 keys changed on each), refresh incl. publish: median ${m.toFixed(1)} ms (${MERGE_RUNS} runs; target < 20 ms)`)
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })

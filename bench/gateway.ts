/**
 * The trustless gateway's CAR builder and the providers route, in process (`createHub` on memory
 * stores, `app.request()`, no socket): a space-shaped DAG — VERSIONS roots chained by `parents`,
 * each with a public section and BUCKETS private raw buckets of BUCKET_BYTES — read as
 * `/ipfs/<root>?format=car` (dag-scope=all: the whole history) and as
 * `/ipfs/<root>/private?format=car` (the current buckets only: a path), plus `providers` answers per
 * second. Each figure is the median of RUNS. Run: `npm run build && node dist/bench/gateway.js`.
 *
 * Environment: BENCH_VERSIONS (default 20), BENCH_BUCKETS (default 256), BENCH_BUCKET_BYTES
 * (default 4096), BENCH_RUNS (default 5).
 */
import '../src/polyfill.js'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { createHub } from '../src/hub/app.js'
import { cborBlock, encodeCar, rawBlock } from '../src/store/blocks.js'
import type { CID } from 'multiformats/cid'

const VERSIONS = Number(process.env.BENCH_VERSIONS ?? 20)
const BUCKETS = Number(process.env.BENCH_BUCKETS ?? 256)
const BUCKET_BYTES = Number(process.env.BENCH_BUCKET_BYTES ?? 4096)
const RUNS = Number(process.env.BENCH_RUNS ?? 5)

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

async function main (): Promise<void> {
  const { app } = createHub({ blockstore: new MemoryBlockstore(), datastore: new MemoryDatastore() }, {
    rateLimit: 0, maxCarBytes: 1024 * 1024 * 1024, maxDagBlocks: 1_000_000, maxDagLinks: 10_000_000, maxBodyBytes: 1024 * 1024 * 1024, maxUploadBlocks: 1_000_000
  })
  let parents: CID[] = []
  let root: CID | undefined
  for (let v = 0; v < VERSIONS; v++) {
    const buckets = await Promise.all(Array.from({ length: BUCKETS }, async () => rawBlock(crypto.getRandomValues(new Uint8Array(BUCKET_BYTES)))))
    const pub = await cborBlock({ version: 1, entries: { nick: [v, 'bench', 'n'] } })
    const block = await cborBlock({ version: 1, sequence: v + 1, parents, public: pub.cid, private: buckets.map(b => b.cid) })
    const res = await app.request('/api/v1/blocks', { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: encodeCar([block, pub, ...buckets]) as Uint8Array<ArrayBuffer> })
    if (res.status !== 200) throw new Error(`upload failed: ${res.status} ${await res.text()}`)
    parents = [block.cid]
    root = block.cid
  }
  if (root === undefined) throw new Error('no versions')

  const measure = async (path: string): Promise<{ ms: number, bytes: number }> => {
    const times: number[] = []
    let bytes = 0
    for (let i = 0; i < RUNS; i++) {
      const start = performance.now()
      const res = await app.request(path)
      if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`)
      bytes = (await res.arrayBuffer()).byteLength
      times.push(performance.now() - start)
    }
    return { ms: median(times), bytes }
  }
  const line = (what: string, r: { ms: number, bytes: number }): void => {
    console.log(`${what.padEnd(48)} ${r.ms.toFixed(1).padStart(8)} ms  ${(r.bytes / 1024 / 1024).toFixed(2).padStart(8)} MiB  ${(r.bytes / 1024 / 1024 / (r.ms / 1000)).toFixed(0).padStart(6)} MiB/s`)
  }
  console.log(`space: ${VERSIONS} versions × (${BUCKETS} buckets × ${BUCKET_BYTES} B + public), median of ${RUNS}`)
  line('GET /ipfs/<root>?format=car (all: history)', await measure(`/ipfs/${root.toString()}?format=car`))
  line('GET /ipfs/<root>/private?format=car (current)', await measure(`/ipfs/${root.toString()}/private?format=car`))
  line('GET /ipfs/<root>/public?format=car', await measure(`/ipfs/${root.toString()}/public?format=car`))
  line('GET /ipfs/<root>?format=car&dag-scope=block', await measure(`/ipfs/${root.toString()}?format=car&dag-scope=block`))

  const n = 2_000
  const start = performance.now()
  for (let i = 0; i < n; i++) {
    const res = await app.request(`/routing/v1/providers/${root.toString()}`)
    await res.arrayBuffer()
  }
  const seconds = (performance.now() - start) / 1000
  console.log(`GET /routing/v1/providers/<cid> (sequential)        ${(n / seconds).toFixed(0)} answers/s`)
}

await main()

/**
 * Benchmark: what distrust of the hub costs the client, and what it saves.
 *
 * 1. Address lookup: `hubStore.lookupAddress` (the index answer plus the named space's record and
 *    root, owner binding checked) against the bare index request, and `openSpace` end to end, through
 *    a hub on loopback started in this process; medians of several runs.
 * 2. A gzip bomb (256 KiB on the wire, 256 MiB decoded) served as a block: time to refusal and peak
 *    growth of the process's resident memory, against reading the same answer whole with
 *    `arrayBuffer()` as the client used to.
 *
 * Run: npm run build && node dist/bench/hub-client.js
 */
import '../src/polyfill.js'
import { createServer } from 'node:http'
import * as os from 'node:os'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { gzipSync } from 'node:zlib'
import { CID } from 'multiformats/cid'
import { openSpace, privateKeySigner } from '../src/index.js'
import { startHub } from '../src/hub/server.js'
import { hubStore } from '../src/store/hub.js'
import type { Store } from '../src/store/interface.js'

const KEY = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80'
const RUNS = 30

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

async function timeIt (runs: number, fn: () => Promise<unknown>): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    const t = performance.now()
    await fn()
    times.push(performance.now() - t)
  }
  return median(times)
}

async function lookups (): Promise<void> {
  const dir = await mkdtemp(join(os.tmpdir(), 'userspace-bench-'))
  const hub = await startHub({ port: 0, directory: dir, rateLimit: 0 })
  try {
    const signer = privateKeySigner(KEY)
    const space = await openSpace({ signer, hub: hub.url })
    await space.public.set('nick', 'alice')
    await space.close()
    const store = hubStore(hub.url) as Required<Store>
    const bare = await timeIt(RUNS, async () => { await (await fetch(`${hub.url}/api/v1/address/${space.address}`)).json() })
    const verified = await timeIt(RUNS, async () => await store.lookupAddress(space.address))
    const open = await timeIt(RUNS, async () => { await (await openSpace({ signer, hub: hub.url })).close() })
    console.log(`address lookup, index answer only:          ${bare.toFixed(2)} ms (median of ${RUNS})`)
    console.log(`address lookup, owner binding checked:      ${verified.toFixed(2)} ms`)
    console.log(`openSpace through the hub, end to end:      ${open.toFixed(2)} ms`)
  } finally {
    await hub.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

async function bomb (): Promise<void> {
  const member = gzipSync(Buffer.alloc(16 * 1024 * 1024), { level: 9 })
  const body = Buffer.concat(Array.from({ length: 16 }, () => member))
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': String(body.byteLength) })
    res.end(body)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const cid = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
  const measure = async (label: string, fn: () => Promise<unknown>): Promise<void> => {
    globalThis.gc?.()
    const base = process.memoryUsage().rss
    let peak = 0
    const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss - base) }, 1)
    const t = performance.now()
    const outcome = await fn().then(() => 'read', (err: Error) => err.name)
    const ms = performance.now() - t
    peak = Math.max(peak, process.memoryUsage().rss - base)
    clearInterval(timer)
    console.log(`${label}: ${outcome} in ${ms.toFixed(0)} ms, peak RSS growth ${(peak / 1048576).toFixed(0)} MiB`)
  }
  try {
    console.log(`gzip bomb: ${(body.byteLength / 1024).toFixed(0)} KiB on the wire, 256 MiB decoded`)
    await measure('  hubStore.getBlock (capped reader)', async () => await hubStore(url).getBlock(cid))
    await measure('  fetch + arrayBuffer (whole body) ', async () => await (await fetch(url)).arrayBuffer())
  } finally {
    server.closeAllConnections()
    server.close()
  }
}

await lookups()
await bomb()

/**
 * Hub clusters on loopback, with real `userspace serve` processes (LevelDB and file blockstore in a
 * temp dir, rate limit off):
 *
 * - `propagation`: three peered hubs; a record PUT at hub 1, timed from the PUT's first byte until
 *   hub 2's event stream delivers it (the path a subscriber on another hub takes), median and p90
 *   over BENCH_SAMPLES records; beside it the PUT's own latency (which includes the wait for the
 *   replica to hold the version).
 * - `load`: BENCH_WRITERS writers, each PUTting new versions of its own space for BENCH_SECONDS,
 *   against one lone hub, then spread over three peered hubs (writer i on hub i mod 3): PUTs per
 *   second and p50/p99 latency. In the cluster every PUT also waits for its replica (`replicas` 2).
 *
 * Records are signed before the clock starts, so the bench process spends its CPU on HTTP only; it
 * still shares the machine's cores with the hubs, and with whatever else runs on it. Beside the
 * rates, each load phase reports the CPU time its hub processes used per PUT (from /proc, on
 * Linux), which depends much less on what else the machine is doing.
 * Run: `npm run build && node dist/bench/cluster.js`.
 * Environment: BENCH_SAMPLES (default 40), BENCH_WRITERS (default 24), BENCH_SECONDS (default 5),
 * BENCH_ONLY (default `propagation,load`; `load` is `lone,cluster`), BENCH_HUB_NODE_ARGS (node flags
 * for the hub processes, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`), BENCH_HUB_ARGS (more `serve`
 * flags, e.g. `--verify-threads 0`).
 */
import '../src/polyfill.js'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { Agent, request as httpRequest } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { hexToBytes } from '../src/crypto/bytes.js'
import { ownerStatement } from '../src/crypto/keys.js'
import { encodeCurrent, encodeOwner, encodeRoot } from '../src/space/root.js'
import { encodeCar, rawBlock } from '../src/store/blocks.js'
import { readEvents } from '../src/store/hub.js'
import { createRecord, nameOfKey } from '../src/store/record.js'
import type { ChildProcess } from 'node:child_process'
import type { PrivateKey } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 40)
const WRITERS = Number(process.env.BENCH_WRITERS ?? 24)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ONLY = new Set((process.env.BENCH_ONLY ?? 'propagation,load').split(',').map(p => p.trim()).flatMap(p => p === 'load' ? ['lone', 'cluster'] : [p]))
const HUB_NODE_ARGS = (process.env.BENCH_HUB_NODE_ARGS ?? '').split(' ').filter(a => a !== '')
const HUB_ARGS = (process.env.BENCH_HUB_ARGS ?? '').split(' ').filter(a => a !== '')
/** Records signed per writer before a load phase: a hard cap on the phase's work. */
const RECORDS_PER_WRITER = 500
const BIN = fileURLToPath(new URL('../../bin/userspace.js', import.meta.url))
const agent = new Agent({ keepAlive: true, maxSockets: 256 })

interface Hub { child: ChildProcess, url: string, multiaddr: string, output: () => string }

async function startHub (dir: string, peers: string[] = [], joined = 0): Promise<Hub> {
  const args = [...HUB_NODE_ARGS, BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dir, '--rate-limit', '0', ...HUB_ARGS, ...peers.flatMap(p => ['--peer', p])]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  const hears = (): number => Number([...out.matchAll(/\((\d+) other hubs\)/g)].at(-1)?.[1] ?? 0)
  const deadline = Date.now() + 60_000
  while (!/^data: /m.test(out) || hears() < joined) {
    if (child.exitCode !== null) throw new Error(`hub exited: ${out}`)
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`hub did not start: ${out}`) }
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  const url = /listening on (http:\/\/\S+)/.exec(out)?.[1] as string
  const multiaddr = /^multiaddr: (\S+)/m.exec(out)?.[1] as string
  return { child, url, multiaddr, output: () => out }
}

/** Three peered hubs, each hearing the other two on the cluster topic. */
async function startCluster (tmp: string): Promise<Hub[]> {
  const h1 = await startHub(join(tmp, 'c1'))
  const h2 = await startHub(join(tmp, 'c2'), [h1.multiaddr])
  const h3 = await startHub(join(tmp, 'c3'), [h1.multiaddr, h2.multiaddr], 2)
  const hubs = [h1, h2, h3]
  for (const h of hubs) {
    while (Number([...h.output().matchAll(/\((\d+) other hubs\)/g)].at(-1)?.[1] ?? 0) < 2) await new Promise(resolve => setTimeout(resolve, 25))
  }
  return hubs
}

async function stop (hubs: Hub[]): Promise<void> {
  // BENCH_DEBUG=1 prints what each hub logged (peer dials, cluster joins, replication waits).
  if (process.env.BENCH_DEBUG === '1') for (const h of hubs) console.log(`--- ${h.url}\n${h.output()}`)
  await Promise.all(hubs.map(async h => new Promise<void>((resolve) => {
    if (h.child.exitCode !== null) { resolve(); return }
    h.child.once('exit', () => { resolve() })
    h.child.kill('SIGTERM')
  })))
}

interface Space { key: PrivateKey, name: string, root: CID, car: Uint8Array }

/** A space version with a real owner binding: root, current node, one private bucket. */
async function makeSpace (): Promise<Space> {
  const key = await generateKeyPair('Ed25519')
  const name = nameOfKey(key)
  const account = privateKeyToAccount(generatePrivateKey())
  const signature = hexToBytes(await account.signMessage({ message: ownerStatement(account.address, name) }))
  const priv = await rawBlock(crypto.getRandomValues(new Uint8Array(512)))
  const owner = await encodeOwner({ address: account.address, signature })
  const current = await encodeCurrent({ buckets: 1, private: priv.cid, public: null, clock: null, owner: owner.cid })
  const root = await encodeRoot({ version: 2, sequence: 1, parents: [], updatedAt: Date.now(), device: 'bench', public: null, current: current.cid })
  return { key, name, root: root.cid, car: encodeCar([root, current, owner, priv]) }
}

async function send (url: string, method: string, type: string, body: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent, headers: { 'content-type': type, 'content-length': body.byteLength } }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function putRecord (hub: string, space: Space, record: Uint8Array): Promise<number> {
  return send(`${hub}/routing/v1/ipns/${space.name}`, 'PUT', 'application/vnd.ipfs.ipns-record', record)
}

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN
}

function summary (values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b)
  return `median ${percentile(sorted, 0.5).toFixed(1)} ms, p90 ${percentile(sorted, 0.9).toFixed(1)} ms, p99 ${percentile(sorted, 0.99).toFixed(1)} ms (n=${sorted.length})`
}

async function propagation (tmp: string): Promise<void> {
  const hubs = await startCluster(tmp)
  try {
    const [h1, h2] = hubs as [Hub, Hub, Hub]
    const space = await makeSpace()
    if (await send(`${h1.url}/api/v1/blocks`, 'POST', 'application/vnd.ipld.car', space.car) !== 200) throw new Error('upload refused')
    const records = await Promise.all(Array.from({ length: SAMPLES + 1 }, async (_, i) => createRecord(space.key, space.root, i + 1)))
    // Sequence 1 first, so that hub 2 holds the space (and its stream sends it on connect).
    if (await putRecord(h1.url, space, records[0] as Uint8Array) !== 200) throw new Error('PUT refused')
    const controller = new AbortController()
    const res = await fetch(`${h2.url}/api/v1/events/${space.name}`, { signal: controller.signal })
    const events = readEvents(res.body as ReadableStream<Uint8Array>)
    const next = async (sequence: number): Promise<void> => {
      for (;;) {
        const { value, done } = await events.next()
        if (done === true) throw new Error('event stream ended')
        if (value.event === 'record' && Number(value.id) >= sequence) return
      }
    }
    await next(1)
    const heard: number[] = []
    const puts: number[] = []
    for (let i = 2; i <= SAMPLES + 1; i++) {
      const start = performance.now()
      const put = putRecord(h1.url, space, records[i - 1] as Uint8Array).then(status => { puts.push(performance.now() - start); return status })
      await next(i)
      heard.push(performance.now() - start)
      if (await put !== 200) throw new Error('PUT refused')
    }
    controller.abort()
    console.log(`hub 1 PUT → hub 2 event stream: ${summary(heard)}`)
    console.log(`PUT at hub 1 (stored, announced, replica holds it): ${summary(puts)}`)
  } finally {
    await stop(hubs)
  }
}

/** CPU time (user + system) a process has used, in ms; undefined where /proc is not there. */
async function cpuMs (pid: number | undefined): Promise<number | undefined> {
  try {
    // Fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 a second on Linux); the command
    // name (field 2) is in parentheses and may hold spaces.
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return undefined
  }
}

async function hubsCpuMs (hubs: Hub[]): Promise<number | undefined> {
  const each = await Promise.all(hubs.map(async h => cpuMs(h.child.pid)))
  return each.some(ms => ms === undefined) ? undefined : each.reduce<number>((a, b) => a + (b ?? 0), 0)
}

async function load (hubs: Hub[], spaces: Space[], records: Uint8Array[][], label: string): Promise<void> {
  const urls = hubs.map(h => h.url)
  for (const [i, space] of spaces.entries()) {
    const url = urls[i % urls.length] as string
    if (await send(`${url}/api/v1/blocks`, 'POST', 'application/vnd.ipld.car', space.car) !== 200) throw new Error('upload refused')
  }
  const latencies: number[] = []
  let errors = 0
  const cpuBefore = await hubsCpuMs(hubs)
  const deadline = performance.now() + SECONDS * 1000
  const started = performance.now()
  await Promise.all(spaces.map(async (space, w) => {
    const mine = records[w] as Uint8Array[]
    // Each writer keeps to one hub (the one it uploaded to), as a device does until that hub fails.
    const url = urls[w % urls.length] as string
    for (let i = 0; i < mine.length && performance.now() < deadline; i++) {
      const t = performance.now()
      const status = await putRecord(url, space, mine[i] as Uint8Array)
      if (status === 200) latencies.push(performance.now() - t)
      else errors++
    }
  }))
  const seconds = (performance.now() - started) / 1000
  const cpuAfter = await hubsCpuMs(hubs)
  const cpu = cpuBefore === undefined || cpuAfter === undefined || latencies.length === 0 ? '' : `, hubs' CPU ${((cpuAfter - cpuBefore) / latencies.length).toFixed(1)} ms per PUT`
  console.log(`${label}: ${(latencies.length / seconds).toFixed(0)} PUT/s, ${summary(latencies)}, ${errors} refused${cpu}`)
}

async function main (): Promise<void> {
  console.log(`cluster bench: ${cpus().length} cores, load ${loadavg().map(l => l.toFixed(1)).join(' ')}`)
  const tmp = await mkdtemp(join(tmpdir(), 'userspace-bench-cluster-'))
  try {
    if (ONLY.has('propagation')) await propagation(join(tmp, 'p'))
    if (ONLY.has('lone') || ONLY.has('cluster')) {
      const spaces = await Promise.all(Array.from({ length: WRITERS }, makeSpace))
      const sign = async (): Promise<Uint8Array[][]> => Promise.all(spaces.map(async s => Promise.all(Array.from({ length: RECORDS_PER_WRITER }, async (_, i) => createRecord(s.key, s.root, i + 1)))))
      if (ONLY.has('lone')) {
        const lone = [await startHub(join(tmp, 'lone'))]
        try {
          await load(lone, spaces, await sign(), `${WRITERS} writers, one hub`)
        } finally {
          await stop(lone)
        }
      }
      if (ONLY.has('cluster')) {
        const cluster = await startCluster(join(tmp, 'l'))
        try {
          // Fresh sequences from 1 again: these hubs have never seen the spaces.
          await load(cluster, spaces, await sign(), `${WRITERS} writers over three peered hubs`)
        } finally {
          await stop(cluster)
        }
      }
    }
    console.log(`load after: ${loadavg().map(l => l.toFixed(1)).join(' ')}`)
  } finally {
    agent.destroy()
    await rm(tmp, { recursive: true, force: true })
  }
}

await main()

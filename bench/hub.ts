/**
 * Hub throughput on loopback: requests per second and p50/p99 latency for IPNS PUT, IPNS GET, block
 * GET and Next.ID POST /v1/kv under concurrent load, next to what signature verification alone
 * allows on one core (IPNS record validation; secp256k1 recovery), measured in the same run.
 *
 * The hub runs as a real `userspace serve` process (LevelDB and file blockstore in a temp dir, rate
 * limit off); the load comes from this process over keep-alive HTTP/1.1. Every phase is bounded in
 * requests and in time. Run: `npm run build && node dist/bench/hub.js`.
 *
 * Attack phases (each against its own `startHub` process with default limits, rate limit off so
 * that the other limits are what is measured): a bystander's `/healthz` p50/p99 alone and while
 * strangers send fat-DAG CAR requests and record PUTs (`walk`) and open event streams (`streams`);
 * RSS per concurrent stalled CAR request (`car`); garbage-collection throughput (`gc`, in this
 * process); and IPNS PUT throughput with and without fsync (`fsync`).
 *
 * Environment: BENCH_SECONDS (per phase, default 5), BENCH_CONCURRENCY (default 32),
 * BENCH_ONLY (phases to run, default `put,get,block,kv,walk,streams,car,gc,fsync`), BENCH_HUB_ARGS
 * (extra `serve` flags, e.g. `--verify-threads 0`), BENCH_HUB_NODE_ARGS (extra node flags for the
 * hub process, e.g. `--cpu-prof`).
 */
import { hubScript } from '../test/helpers/hub-process.js'
import '../src/polyfill.js'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { Agent, request as httpRequest } from 'node:http'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { hexToBytes, toBase64 } from '../src/crypto/bytes.js'
import { recoverPersonalSigner } from '../src/crypto/eip191.js'
import { ownerStatement } from '../src/crypto/keys.js'
import { encodeCurrent, encodeOwner, encodeRoot } from '../src/space/root.js'
import { cborBlock, encodeCar, rawBlock } from '../src/store/blocks.js'
import { hubStore } from '../src/store/hub.js'
import { createRecord, nameOfKey, validateRecord } from '../src/store/record.js'
import type { ChildProcess } from 'node:child_process'
import type { Block } from '../src/store/interface.js'
import type { CID } from 'multiformats/cid'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32)
const PHASE_MS = SECONDS * 1000
/** Which phases run: put, get, block, kv. */
const ONLY = new Set((process.env.BENCH_ONLY ?? 'put,get,block,kv,walk,streams,car,gc,fsync').split(',').map(p => p.trim()))
/** Hard caps on prepared work, whatever the machine. */
const MAX_PUTS = 40_000
const MAX_KV_POSTS = 4_000
const BIN = fileURLToPath(new URL('../../bin/userspace.js', import.meta.url))

interface Result {
  name: string
  requests: number
  errors: number
  seconds: number
  latenciesMs: number[]
}

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, noDelay: true })

async function request (base: URL, method: string, path: string, headers: Record<string, string> = {}, body?: Uint8Array | string): Promise<{ status: number, body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: base.hostname, port: base.port, method, path, headers, agent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * Runs `next()` from CONCURRENCY workers until it returns undefined or the phase's time is up;
 * `next(worker)` returns the request to make (or undefined when that worker is done).
 */
async function load (name: string, next: (worker: number) => (() => Promise<boolean>) | undefined): Promise<Result> {
  const latenciesMs: number[] = []
  let errors = 0
  const started = performance.now()
  const deadline = started + PHASE_MS
  await Promise.all(Array.from({ length: CONCURRENCY }, async (_, worker) => {
    while (performance.now() < deadline) {
      const job = next(worker)
      if (job === undefined) return
      const t = performance.now()
      let ok = false
      try { ok = await job() } catch { ok = false }
      latenciesMs.push(performance.now() - t)
      if (!ok) errors++
    }
  }))
  return { name, requests: latenciesMs.length, errors, seconds: (performance.now() - started) / 1000, latenciesMs }
}

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number
}

/** Calls `fn` for about `ms` milliseconds and returns calls per second. */
async function rate (ms: number, fn: (i: number) => unknown): Promise<number> {
  const start = performance.now()
  let n = 0
  while (performance.now() - start < ms) { await fn(n); n++ }
  return n / ((performance.now() - start) / 1000)
}

async function startHub (dir: string): Promise<{ child: ChildProcess, url: URL }> {
  const nodeArgs = (process.env.BENCH_HUB_NODE_ARGS ?? '').split(' ').filter(a => a !== '')
  const serveArgs = (process.env.BENCH_HUB_ARGS ?? '').split(' ').filter(a => a !== '')
  const child = spawn(process.execPath, [...nodeArgs, BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dir, '--rate-limit', '0', ...serveArgs], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  const deadline = Date.now() + 30_000
  while (!/^data: /m.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`hub did not start: ${out}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  const url = /listening on (\S+)/.exec(out)?.[1]
  if (url === undefined) throw new Error(`unexpected hub output: ${out}`)
  return { child, url: new URL(url) }
}

interface BenchSpace { name: string, root: CID, records: Uint8Array[] }

async function main (): Promise<void> {
  const cpu = cpus()
  console.log(`machine: ${cpu[0]?.model ?? 'unknown cpu'}, ${cpu.length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}, ${process.platform}/${process.arch}`)
  console.log(`load: ${CONCURRENCY} concurrent keep-alive HTTP/1.1 connections, ≤ ${SECONDS} s per phase, loopback\n`)

  // --- what verification alone allows (one core, this process) ---
  const key = await generateKeyPair('Ed25519')
  const block = await rawBlock(new Uint8Array([1]))
  const sample = await Promise.all(Array.from({ length: 200 }, async (_, i) => createRecord(key, block.cid, i + 1)))
  const verifyRate = await rate(2000, async i => validateRecord(nameOfKey(key), sample[i % sample.length] as Uint8Array))
  const wallet = privateKeyToAccount(generatePrivateKey())
  const signed = await wallet.signMessage({ message: 'bench' })
  const recoverRate = await rate(2000, () => recoverPersonalSigner('bench', signed))
  console.log(`IPNS record validation alone: ${verifyRate.toFixed(0)}/s; secp256k1 personal_sign recovery alone: ${recoverRate.toFixed(0)}/s\n`)

  const dir = await mkdtemp(join(tmpdir(), 'userspace-bench-'))
  const { child, url } = await startHub(dir)
  try {
    const store = hubStore(url.href)

    // --- prepare spaces: a real root (owner binding, public and private blocks) per name, uploaded ---
    const names = CONCURRENCY * 4
    const perName = 1 + Math.max(1, Math.ceil(Math.min(MAX_PUTS, verifyRate * SECONDS * 1.2) / names))
    process.stdout.write(`preparing ${names} spaces × ${perName} records… `)
    const spaces: BenchSpace[] = []
    for (let i = 0; i < names; i++) {
      const ipnsKey = await generateKeyPair('Ed25519')
      const name = nameOfKey(ipnsKey)
      const owner = privateKeyToAccount(generatePrivateKey())
      const signature = hexToBytes(await owner.signMessage({ message: ownerStatement(owner.address, name) }))
      const priv = await rawBlock(crypto.getRandomValues(new Uint8Array(4096)))
      const binding = await encodeOwner({ address: owner.address, signature })
      const pub = await encodeCurrent({ buckets: 1, private: priv.cid, public: null, clock: null, owner: binding.cid })
      const root = await encodeRoot({ version: 2, sequence: 1, parents: [], updatedAt: Date.now(), device: 'bench', public: null, current: pub.cid })
      await store.putBlocks([root, pub, binding, priv])
      const records: Uint8Array[] = []
      for (let s = 1; s <= perName; s++) records.push(await createRecord(ipnsKey, root.cid, s))
      // The first record of a name is published here: the hub verifies a name's owner binding
      // (a secp256k1 recovery) once, and the timed phase measures the writes that follow.
      const first = records.shift() as Uint8Array
      await store.putRecord(name, first)
      spaces.push({ name, root: root.cid, records })
    }
    console.log('done')

    const results: Result[] = []

    // IPNS PUT: each worker owns some names and publishes their sequences in order, taking its
    // names in turn (one name's records must arrive in sequence order; different names need not).
    const cursors = spaces.map(() => 0)
    const turns = Array.from({ length: CONCURRENCY }, () => 0)
    if (ONLY.has('put')) results.push(await load('IPNS PUT /routing/v1/ipns/{name}', (worker) => {
      const owned = spaces.map((_, i) => i).filter(i => i % CONCURRENCY === worker)
      for (let k = 0; k < owned.length; k++) {
        const turn = turns[worker] ?? 0
        turns[worker] = turn + 1
        const i = owned[turn % owned.length] as number
        const space = spaces[i] as BenchSpace
        const s = cursors[i] as number
        if (s >= space.records.length) continue
        cursors[i] = s + 1
        return async () => (await request(url, 'PUT', `/routing/v1/ipns/${space.name}`, { 'content-type': 'application/vnd.ipfs.ipns-record' }, space.records[s])).status === 200
      }
      return undefined
    }))

    let n = 0
    if (ONLY.has('get')) results.push(await load('IPNS GET /routing/v1/ipns/{name}', () => {
      const space = spaces[n++ % spaces.length] as BenchSpace
      return async () => (await request(url, 'GET', `/routing/v1/ipns/${space.name}`, { accept: 'application/vnd.ipfs.ipns-record' })).status === 200
    }))

    n = 0
    if (ONLY.has('block')) results.push(await load('block GET /ipfs/{cid}?format=raw', () => {
      const space = spaces[n++ % spaces.length] as BenchSpace
      return async () => (await request(url, 'GET', `/ipfs/${space.root.toString()}?format=raw`)).status === 200
    }))

    // Next.ID: one signed first write per avatar, prepared (payload fetched and signed) beforehand,
    // so that the timed phase measures the hub's POST /v1/kv alone.
    const health = await request(url, 'GET', '/healthz')
    if (!ONLY.has('kv')) {
      // skipped
    } else if (health.status === 200) {
      const posts = Math.max(CONCURRENCY, Math.min(MAX_KV_POSTS, Math.ceil(recoverRate * SECONDS * 1.2)))
      process.stdout.write(`preparing ${posts} Next.ID writes… `)
      const bodies: string[] = []
      for (let i = 0; i < posts; i++) {
        const avatar = privateKeyToAccount(generatePrivateKey())
        const fields = { avatar: avatar.publicKey, platform: 'twitter', identity: `bench${i}`, patch: { bench: { i } } }
        const res = await request(url, 'POST', '/v1/kv/payload', { 'content-type': 'application/json' }, JSON.stringify(fields))
        if (res.status !== 200) throw new Error(`payload refused: ${res.status} ${res.body.toString()}`)
        const payload = JSON.parse(res.body.toString()) as { uuid: string, sign_payload: string, created_at: number }
        const signature = toBase64(hexToBytes(await avatar.signMessage({ message: payload.sign_payload })))
        bodies.push(JSON.stringify({ ...fields, uuid: payload.uuid, created_at: payload.created_at, signature }))
      }
      console.log('done')
      let next = 0
      results.push(await load('Next.ID POST /v1/kv', () => {
        const body = bodies[next++]
        if (body === undefined) return undefined
        return async () => (await request(url, 'POST', '/v1/kv', { 'content-type': 'application/json' }, body)).status === 201
      }))
    } else {
      console.log('Next.ID KV API not mounted: skipped')
    }

    console.log('')
    console.log('operation                              requests  errors    req/s   p50 ms   p99 ms')
    for (const r of results) {
      const sorted = [...r.latenciesMs].sort((a, b) => a - b)
      console.log(`${r.name.padEnd(38)} ${String(r.requests).padStart(8)} ${String(r.errors).padStart(7)} ${(r.requests / r.seconds).toFixed(0).padStart(8)} ${percentile(sorted, 0.5).toFixed(2).padStart(8)} ${percentile(sorted, 0.99).toFixed(2).padStart(8)}`)
    }
    // Measured again after the load, on the same core budget: the mean of both runs is the
    // reference (a shared machine drifts).
    const verifyAfter = await rate(2000, async i => validateRecord(nameOfKey(key), sample[i % sample.length] as Uint8Array))
    const recoverAfter = await rate(2000, () => recoverPersonalSigner('bench', signed))
    const verifyRef = (verifyRate + verifyAfter) / 2
    const recoverRef = (recoverRate + recoverAfter) / 2
    const put = results.find(r => r.name.startsWith('IPNS PUT'))
    const kv = results.find(r => r.name.startsWith('Next.ID'))
    console.log('')
    console.log(`verification alone, after the load: IPNS ${verifyAfter.toFixed(0)}/s, secp256k1 ${recoverAfter.toFixed(0)}/s`)
    if (put !== undefined) console.log(`IPNS PUT: ${(100 * (put.requests / put.seconds) / verifyRef).toFixed(0)} % of record validation alone (${verifyRef.toFixed(0)}/s; target ≥ 70 %)`)
    if (kv !== undefined) console.log(`Next.ID POST: ${(100 * (kv.requests / kv.seconds) / recoverRef).toFixed(0)} % of secp256k1 recovery alone (${recoverRef.toFixed(0)}/s; target ≥ 70 %)`)
  } finally {
    agent.destroy()
    child.kill('SIGTERM')
    await new Promise(resolve => child.once('exit', resolve))
    await rm(dir, { recursive: true, force: true })
  }
  await attacks(verifyRate)
}

// --- attack phases -----------------------------------------------------------------------------

const HUB_ENTRY = new URL('../src/hub/index.js', import.meta.url).href

/** `startHub(options)` in its own process (so its RSS and event loop are its own). */
async function startScriptHub (options: Record<string, unknown>): Promise<{ child: ChildProcess, url: URL, dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'userspace-bench-attack-'))
  const script = hubScript(HUB_ENTRY)
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, HUB_OPTIONS: JSON.stringify({ host: '127.0.0.1', port: 0, directory: dir, republishIntervalMs: 0, gcIntervalMs: 0, rateLimit: 0, ...options }) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  let out = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  const deadline = Date.now() + 30_000
  while (!/^url /m.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`hub did not start: ${out}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return { child, url: new URL(/^url (\S+)/m.exec(out)?.[1] as string), dir }
}

async function stopScriptHub (hub: { child: ChildProcess, dir: string }): Promise<void> {
  hub.child.kill('SIGTERM')
  await new Promise(resolve => hub.child.once('exit', resolve))
  await rm(hub.dir, { recursive: true, force: true })
}

function rssOf (pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find(l => l.startsWith('VmRSS:')) ?? ''
  return Number(/(\d+)/.exec(line)?.[1] ?? 0) * 1024
}

/** A bystander's GET latencies (ms), one request every 10 ms, for `ms`. */
async function bystander (base: URL, ms: number): Promise<number[]> {
  const own = new Agent({ keepAlive: true, maxSockets: 1 })
  const latencies: number[] = []
  const end = performance.now() + ms
  try {
    while (performance.now() < end) {
      const t = performance.now()
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest({ host: base.hostname, port: base.port, path: '/healthz', agent: own }, (res) => { res.resume(); res.on('end', resolve) })
        req.on('error', reject)
        req.end()
      })
      latencies.push(performance.now() - t)
      await new Promise(resolve => setTimeout(resolve, 10))
    }
  } finally {
    own.destroy()
  }
  return latencies
}

function summary (latencies: number[]): string {
  const sorted = [...latencies].sort((a, b) => a - b)
  return `p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p99 ${percentile(sorted, 0.99).toFixed(1)} ms (${sorted.length} requests)`
}

async function postCar (base: URL, blocks: Block[]): Promise<number> {
  return (await request(base, 'POST', '/api/v1/blocks', { 'content-type': 'application/vnd.ipld.car' }, encodeCar(blocks))).status
}

async function attacks (verifyRate: number): Promise<void> {
  if (ONLY.has('walk') || ONLY.has('streams')) {
    const hub = await startScriptHub({})
    try {
      console.log('')
      console.log(`bystander GET /healthz, idle hub: ${summary(await bystander(hub.url, PHASE_MS / 2))}`)
      if (ONLY.has('walk')) {
        // 16 dag-cbor blocks of ~1 MiB, each repeating links to the earlier ones 24 000 times.
        const blocks: Block[] = [await rawBlock(new Uint8Array([0]))]
        for (let i = 0; i < 16; i++) {
          const targets = blocks.map(b => b.cid)
          blocks.push(await cborBlock({ i, links: Array.from({ length: 24_000 }, (_, n) => targets[n % targets.length]) }))
        }
        const top = await cborBlock({ all: blocks.map(b => b.cid) })
        for (let i = 0; i < blocks.length; i += 4) await postCar(hub.url, blocks.slice(i, i + 4))
        await postCar(hub.url, [top])
        const key = await generateKeyPair('Ed25519')
        const record = await createRecord(key, top.cid, 1)
        const statuses = new Map<number, number>()
        let attacking = true
        const attackers = Array.from({ length: 4 }, async (_, w) => {
          while (attacking) {
            const res = w % 2 === 0
              ? await request(hub.url, 'GET', `/ipfs/${top.cid.toString()}?format=car`)
              : await request(hub.url, 'PUT', `/routing/v1/ipns/${nameOfKey(key)}`, { 'content-type': 'application/vnd.ipfs.ipns-record' }, record)
            statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
          }
        })
        const during = await bystander(hub.url, PHASE_MS)
        attacking = false
        await Promise.all(attackers)
        console.log(`bystander during fat-DAG CAR + PUT attack (4 attackers, 16 × 1 MiB blocks of 24 000 links): ${summary(during)}; attack answers ${[...statuses].map(([k, v]) => `${k}×${v}`).join(', ')}`)
      }
      if (ONLY.has('streams')) {
        // One client tries to take every event-stream slot.
        const opened: Array<{ destroy: () => void }> = []
        const statuses = new Map<number, number>()
        const started = performance.now()
        for (let i = 0; i < 2_000; i++) {
          const status = await new Promise<number>((resolve) => {
            const req = httpRequest({ host: hub.url.hostname, port: hub.url.port, path: `/api/v1/events/${nameOfKey(key0)}`, agent: false }, (res) => {
              resolve(res.statusCode ?? 0)
              if (res.statusCode === 200) opened.push(req)
              else res.resume()
            })
            req.on('error', () => { resolve(0) })
            req.end()
          })
          statuses.set(status, (statuses.get(status) ?? 0) + 1)
        }
        const during = await bystander(hub.url, PHASE_MS / 2)
        console.log(`event-stream flood from one client (2 000 attempts in ${((performance.now() - started) / 1000).toFixed(1)} s): ${[...statuses].map(([k, v]) => `${k}×${v}`).join(', ')}; bystander ${summary(during)}`)
        for (const req of opened) req.destroy()
      }
    } finally {
      await stopScriptHub(hub)
    }
  }

  if (ONLY.has('car')) {
    const hub = await startScriptHub({ maxCarStreamsPerClient: 64, maxCarStreams: 16 })
    try {
      const leaves = await Promise.all(Array.from({ length: 12 }, async (_, i) => rawBlock(new Uint8Array(randomBytes(1024 * 1024 - 64)).fill(i, 0, 1))))
      const node = await cborBlock({ leaves: leaves.map(l => l.cid) })
      for (let i = 0; i < leaves.length; i += 4) await postCar(hub.url, leaves.slice(i, i + 4))
      await postCar(hub.url, [node])
      await new Promise(resolve => setTimeout(resolve, 500))
      const before = rssOf(hub.child.pid as number)
      const concurrent = 16
      const stalled: Array<{ destroy: () => void }> = []
      await Promise.all(Array.from({ length: concurrent }, async () => new Promise<void>((resolve) => {
        const req = httpRequest({ host: hub.url.hostname, port: hub.url.port, path: `/ipfs/${node.cid.toString()}?format=car`, agent: false }, (res) => {
          // Read one chunk, then stall: the hub must not buffer the rest.
          res.once('data', () => { res.pause(); resolve() })
        })
        req.on('error', () => { resolve() })
        req.end()
        stalled.push(req)
      })))
      await new Promise(resolve => setTimeout(resolve, 500))
      const after = rssOf(hub.child.pid as number)
      console.log(`${concurrent} concurrent stalled CAR requests of a 12 MiB DAG: RSS +${((after - before) / 2 ** 20).toFixed(1)} MiB, ${((after - before) / concurrent / 2 ** 20).toFixed(2)} MiB per request (target < 5 MiB)`)
      for (const req of stalled) req.destroy()
    } finally {
      await stopScriptHub(hub)
    }
  }

  if (ONLY.has('gc')) {
    const { startHub } = await import(HUB_ENTRY) as typeof import('../src/hub/index.js')
    const dir = await mkdtemp(join(tmpdir(), 'userspace-bench-gc-'))
    const hub = await startHub({ host: '127.0.0.1', port: 0, directory: dir, republishIntervalMs: 0, gcIntervalMs: 0, rateLimit: 0, gcGraceMs: 0, maxPendingBytesPerClient: 2 ** 40, nextId: false })
    try {
      const base = new URL(hub.url)
      const count = 4_000
      const blocks = await Promise.all(Array.from({ length: count }, async (_, i) => rawBlock(new TextEncoder().encode(`stray block ${i} ${Math.random()}`))))
      for (let i = 0; i < blocks.length; i += 1_000) await postCar(base, blocks.slice(i, i + 1_000))
      const report = await hub.collectGarbage()
      console.log(`garbage collection: ${report.deletedBlocks} unreferenced blocks deleted in ${report.durationMs.toFixed(0)} ms (${(report.deletedBlocks / (report.durationMs / 1000)).toFixed(0)} blocks/s)`)
    } finally {
      await hub.stop()
      await rm(dir, { recursive: true, force: true })
    }
  }

  if (ONLY.has('fsync')) {
    const rates: Record<string, number> = {}
    for (const fsync of [true, false]) {
      const hub = await startScriptHub({ fsync })
      try {
        const store = hubStore(hub.url.href)
        const names = CONCURRENCY
        const perName = Math.max(2, Math.ceil(Math.min(20_000, verifyRate * SECONDS) / names))
        const spaces: Array<{ name: string, records: Uint8Array[] }> = []
        for (let i = 0; i < names; i++) {
          const ipnsKey = await generateKeyPair('Ed25519')
          const block = await rawBlock(new TextEncoder().encode(`fsync ${i}`))
          await store.putBlocks([block])
          const records: Uint8Array[] = []
          for (let s = 1; s <= perName; s++) records.push(await createRecord(ipnsKey, block.cid, s))
          spaces.push({ name: nameOfKey(ipnsKey), records })
        }
        const cursor = spaces.map(() => 0)
        const result = await load(`IPNS PUT, fsync ${fsync ? 'on' : 'off'}`, (worker) => {
          const space = spaces[worker] as { name: string, records: Uint8Array[] }
          const s = cursor[worker] as number
          if (s >= space.records.length) return undefined
          cursor[worker] = s + 1
          return async () => (await request(hub.url, 'PUT', `/routing/v1/ipns/${space.name}`, { 'content-type': 'application/vnd.ipfs.ipns-record' }, space.records[s])).status === 200
        })
        const sorted = [...result.latenciesMs].sort((a, b) => a - b)
        rates[String(fsync)] = result.requests / result.seconds
        console.log(`${result.name}: ${(result.requests / result.seconds).toFixed(0)}/s (${result.errors} errors), p50 ${percentile(sorted, 0.5).toFixed(2)} ms, p99 ${percentile(sorted, 0.99).toFixed(2)} ms, ${(100 * (result.requests / result.seconds) / verifyRate).toFixed(0)} % of record validation alone`)
      } finally {
        await stopScriptHub(hub)
      }
    }
    console.log(`fsync costs IPNS PUT ${(100 * (1 - (rates.true ?? 0) / (rates.false ?? 1))).toFixed(0)} % of its throughput`)
  }
}

/** A name for the event-stream flood (any valid name will do). */
const key0 = await generateKeyPair('Ed25519')

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})

/**
 * Hub throughput on loopback: requests per second and p50/p99 latency for IPNS PUT, IPNS GET, block
 * GET and Next.ID POST /v1/kv under concurrent load, next to what signature verification alone
 * allows on one core (IPNS record validation; secp256k1 recovery), measured in the same run.
 *
 * The hub runs as a real `userspace serve` process (LevelDB and file blockstore in a temp dir, rate
 * limit off); the load comes from this process over keep-alive HTTP/1.1. Every phase is bounded in
 * requests and in time. Run: `npm run build && node dist/bench/hub.js`.
 * Environment: BENCH_SECONDS (per phase, default 5), BENCH_CONCURRENCY (default 32),
 * BENCH_ONLY (phases to run, default `put,get,block,kv`), BENCH_HUB_ARGS (extra `serve` flags, e.g.
 * `--verify-threads 0`), BENCH_HUB_NODE_ARGS (extra node flags for the hub process, e.g. `--cpu-prof`).
 */
import '../src/polyfill.js'
import { spawn } from 'node:child_process'
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
import { encodeRoot } from '../src/space/root.js'
import { cborBlock, rawBlock } from '../src/store/blocks.js'
import { hubStore } from '../src/store/hub.js'
import { createRecord, nameOfKey, validateRecord } from '../src/store/record.js'
import type { ChildProcess } from 'node:child_process'
import type { CID } from 'multiformats/cid'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32)
const PHASE_MS = SECONDS * 1000
/** Which phases run: put, get, block, kv. */
const ONLY = new Set((process.env.BENCH_ONLY ?? 'put,get,block,kv').split(',').map(p => p.trim()))
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
      const pub = await cborBlock({ nick: `bench-${i}` })
      const priv = await rawBlock(crypto.getRandomValues(new Uint8Array(4096)))
      const root = await encodeRoot({ version: 1, sequence: 1, parents: [], updatedAt: Date.now(), device: 'bench', public: pub.cid, private: [priv.cid], owner: { address: owner.address, signature } })
      await store.putBlocks([root, pub, priv])
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
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})

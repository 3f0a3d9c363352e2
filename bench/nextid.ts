/**
 * Next.ID KV API under load and under attack, against real hub processes on loopback (`startHub`
 * with a LevelDB datastore and file blockstore in a temp dir on disk, rate limit off):
 *
 * 1. what signature checking alone allows on one core: personal_sign recovery through the hub's
 *    path (@noble/curves) and through @noble/secp256k1, for comparison;
 * 2. POST /v1/kv throughput (first writes of fresh avatars, prepared beforehand) with every write
 *    fsynced before its 201 (the default) and without (`syncWrites: false`), each as a share of
 *    recovery alone;
 * 3. an attack: a stranger sends refused POSTs (well-formed signatures not made by the avatar,
 *    `created_at` at the far end of the window, so the stale-head diagnosis does all it may) at an
 *    avatar with a 20-link chain, ~40/s and then as fast as 8 connections go, while the avatar
 *    writes; its latency (payload, sign, POST) is compared with no attack.
 *
 * Run: `npm run bench:nextid`. Environment: BENCH_SECONDS (per throughput phase, default 5),
 * BENCH_CONCURRENCY (default 32), BENCH_ONLY (phases, default `sync,nosync,attack`), BENCH_DATA_DIR
 * (default the OS temp dir; it must be on a real disk for the fsync figures to mean anything),
 * BENCH_HUB_NODE_ARGS (node flags for the hub processes, e.g. `--cpu-prof`).
 * The same file runs the hub child process (`node dist/bench/nextid.js serve <dir> <sync 1|0>`).
 */
import '../src/polyfill.js'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { Agent, request as httpRequest } from 'node:http'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as secp from '@noble/secp256k1'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { bytesToHex, toBase64, utf8 } from '../src/crypto/bytes.js'
import { hashPersonalMessage, recoverPersonalSigner } from '../src/crypto/eip191.js'
import { signedBy } from '../src/hub/nextid/chain.js'
import type { ChildProcess } from 'node:child_process'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32)
const ONLY = new Set((process.env.BENCH_ONLY ?? 'sync,nosync,attack').split(',').map(p => p.trim()))
/** Hard caps on prepared work, whatever the machine. */
const MAX_POSTS = 6_000
const OWN_WRITES = 30
/** How long each attack row lasts, at least. */
const ATTACK_MS = 5_000
const ATTACK_RATE_PER_S = 40
const SELF = fileURLToPath(import.meta.url)
/** Where the hubs keep their data. It must be a real disk, not a tmpfs, for fsync to cost what it costs. */
const DATA_ROOT = process.env.BENCH_DATA_DIR ?? tmpdir()

interface Key { secretKey: Uint8Array, publicKey: Uint8Array, compressed: string }

function makeKey (seed: string): Key {
  const secretKey = keccak_256(utf8(seed))
  return { secretKey, publicKey: secp.getPublicKey(secretKey, false), compressed: '0x' + bytesToHex(secp.getPublicKey(secretKey, true)) }
}

async function personalSign (key: Key, message: string): Promise<string> {
  const recovered = await secp.signAsync(hashPersonalMessage(message), key.secretKey, { prehash: false, format: 'recovered' })
  // noble's recovered layout is v‖r‖s; the wire's is r‖s‖v.
  const out = new Uint8Array(65)
  out.set(recovered.subarray(1), 0)
  out[64] = (recovered[0] as number) + 27
  return toBase64(out)
}

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, noDelay: true })

async function post (base: URL, path: string, body: string): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: base.hostname, port: base.port, method: 'POST', path, headers: { 'content-type': 'application/json' }, agent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number
}

function summary (ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b)
  return `p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p99 ${percentile(sorted, 0.99).toFixed(1)} ms, max ${(sorted.at(-1) ?? NaN).toFixed(1)} ms (n=${sorted.length})`
}

/** Calls per second of wall time, and CPU ms (user + system, this process) per call. */
async function rate (ms: number, fn: (i: number) => unknown): Promise<{ perSecond: number, cpuMs: number }> {
  const start = performance.now()
  const cpu = process.cpuUsage()
  let n = 0
  while (performance.now() - start < ms) { await fn(n); n++ }
  const used = process.cpuUsage(cpu)
  return { perSecond: n / ((performance.now() - start) / 1000), cpuMs: (used.user + used.system) / 1000 / n }
}

/**
 * CPU ms (user + system) a process has used so far, from /proc (Linux): a machine shared with other
 * work slows every phase, but CPU per request stays comparable with CPU per recovery.
 */
async function processCpuMs (pid: number | undefined): Promise<number> {
  if (pid === undefined || process.platform !== 'linux') return NaN
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime and stime are fields 14 and 15 of the file, in clock ticks (USER_HZ, 100 on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10
}

async function startChild (dir: string, sync: boolean): Promise<{ child: ChildProcess, url: URL }> {
  const nodeArgs = (process.env.BENCH_HUB_NODE_ARGS ?? '').split(' ').filter(a => a !== '')
  const child = spawn(process.execPath, [...nodeArgs, SELF, 'serve', dir, sync ? '1' : '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  const deadline = Date.now() + 30_000
  while (!/listening on /.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`hub did not start: ${out}`) }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return { child, url: new URL(/listening on (\S+)/.exec(out)?.[1] as string) }
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

/** The hub child: a real hub on a data directory, Next.ID writes fsynced or not. */
async function serveChild (dir: string, sync: boolean): Promise<void> {
  const { startHub } = await import('../src/hub/server.js')
  const hub = await startHub({ host: '127.0.0.1', port: 0, directory: dir, rateLimit: 0, republishIntervalMs: 0, nextId: { syncWrites: sync } })
  console.log(`listening on ${hub.url}`)
  process.once('SIGTERM', () => { hub.stop().then(() => process.exit(0), () => process.exit(1)) })
}

/** Payload, signature and POST body of one write (the client's part of a Next.ID write). */
async function prepareWrite (url: URL, key: Key, identity: string, patch: unknown): Promise<string> {
  const fields = { avatar: key.compressed, platform: 'twitter', identity, patch }
  const res = await post(url, '/v1/kv/payload', JSON.stringify(fields))
  if (res.status !== 200) throw new Error(`payload refused: ${res.status} ${res.body}`)
  const payload = JSON.parse(res.body) as { uuid: string, sign_payload: string, created_at: number }
  return JSON.stringify({ ...fields, uuid: payload.uuid, created_at: payload.created_at, signature: await personalSign(key, payload.sign_payload) })
}

interface Throughput { perSecond: number, cpuMsPerPost: number }

async function throughput (label: string, sync: boolean, recoverRate: number): Promise<Throughput> {
  const dir = await mkdtemp(join(DATA_ROOT, 'userspace-bench-nextid-'))
  const { child, url } = await startChild(dir, sync)
  try {
    const posts = Math.max(CONCURRENCY, Math.min(MAX_POSTS, Math.ceil(recoverRate * SECONDS * 1.2)))
    process.stdout.write(`${label}: preparing ${posts} first writes of fresh avatars… `)
    const bodies: string[] = []
    for (let i = 0; i < posts; i++) bodies.push(await prepareWrite(url, makeKey(`bench ${label} ${i} ${Math.random()}`), `bench${i}`, { bench: { i } }))
    console.log('done')
    const latencies: number[] = []
    let errors = 0
    let next = 0
    const started = performance.now()
    const cpuBefore = await processCpuMs(child.pid)
    const deadline = started + SECONDS * 1000
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const body = bodies[next++]
        if (body === undefined) return
        const t = performance.now()
        const res = await post(url, '/v1/kv', body)
        latencies.push(performance.now() - t)
        if (res.status !== 201) errors++
      }
    }))
    const perSecond = latencies.length / ((performance.now() - started) / 1000)
    const cpuMsPerPost = (await processCpuMs(child.pid) - cpuBefore) / latencies.length
    console.log(`${label}: ${perSecond.toFixed(0)} POST/s, hub CPU ${cpuMsPerPost.toFixed(2)} ms per POST, ${errors} errors, ${summary(latencies)}`)
    return { perSecond, cpuMsPerPost }
  } finally {
    await stopChild(child)
    await rm(dir, { recursive: true, force: true })
  }
}

/** A POST body whose signature has the right form but is not the avatar's. */
function strangerBody (target: Key): string {
  const signature = crypto.getRandomValues(new Uint8Array(65))
  signature[0] = 1
  signature[32] = 1
  signature[64] = 27
  // The far end of the window: every link accepted in it is a diagnosis candidate.
  const createdAt = Math.floor(Date.now() / 1000) - 9 * 60
  return JSON.stringify({ avatar: target.compressed, platform: 'twitter', identity: 'victim', uuid: randomUUID(), created_at: createdAt, signature: toBase64(signature), patch: { stranger: true } })
}

async function attack (): Promise<void> {
  const dir = await mkdtemp(join(DATA_ROOT, 'userspace-bench-nextid-'))
  const { child, url } = await startChild(dir, true)
  const victim = makeKey(`bench victim ${Math.random()}`)
  const ownWrite = async (i: number): Promise<{ totalMs: number, postMs: number }> => {
    const t = performance.now()
    const body = await prepareWrite(url, victim, 'victim', { i })
    const p = performance.now()
    const res = await post(url, '/v1/kv', body)
    if (res.status !== 201) throw new Error(`own write refused: ${res.status} ${res.body}`)
    return { totalMs: performance.now() - t, postMs: performance.now() - p }
  }
  const measure = async (label: string, from: number): Promise<void> => {
    const total: number[] = []
    const postOnly: number[] = []
    const until = performance.now() + ATTACK_MS
    // At least OWN_WRITES writes, and for at least ATTACK_MS: the stranger must be sending throughout.
    for (let i = 0; i < 10 * OWN_WRITES && (i < OWN_WRITES || performance.now() < until); i++) {
      const { totalMs, postMs } = await ownWrite(from + i)
      total.push(totalMs)
      postOnly.push(postMs)
    }
    console.log(`  ${label.padEnd(36)} own write (payload + sign + POST): ${summary(total)}`)
    console.log(`  ${''.padEnd(36)} own POST alone:                    ${summary(postOnly)}`)
  }
  try {
    for (let i = 0; i < 20; i++) await ownWrite(i)
    console.log(`attack on an avatar with a 20-link chain (own writes one after another, ≥ ${OWN_WRITES} and ≥ ${ATTACK_MS / 1000} s per row):`)
    await measure('no attack', 100)

    // ~40 refused POSTs/s, each on its own schedule (not waiting for the previous answer).
    let stop = false
    const statuses = new Map<number, number>()
    const strangerMs: number[] = []
    const inFlight: Array<Promise<void>> = []
    const paced = (async () => {
      const end = Date.now() + 120_000
      for (let n = 0; !stop && Date.now() < end; n++) {
        const t = performance.now()
        inFlight.push(post(url, '/v1/kv', strangerBody(victim)).then(res => {
          strangerMs.push(performance.now() - t)
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        }))
        await new Promise(resolve => setTimeout(resolve, 1000 / ATTACK_RATE_PER_S))
      }
    })()
    const attackStart = performance.now()
    await new Promise(resolve => setTimeout(resolve, 500))
    await measure(`${ATTACK_RATE_PER_S} refused POSTs/s`, 200)
    stop = true
    await paced
    await Promise.all(inFlight)
    const sent = [...statuses.values()].reduce((a, b) => a + b, 0)
    console.log(`  stranger: ${(sent / ((performance.now() - attackStart) / 1000)).toFixed(0)} POST/s sent, statuses ${JSON.stringify(Object.fromEntries(statuses))}, ${summary(strangerMs)}`)

    // As fast as 8 connections go: the hub's CPU, not the avatar's lock, is what a stranger can take.
    stop = false
    statuses.clear()
    strangerMs.length = 0
    const floodStart = performance.now()
    const flood = Promise.all(Array.from({ length: 8 }, async () => {
      const end = Date.now() + 120_000
      while (!stop && Date.now() < end) {
        const t = performance.now()
        const res = await post(url, '/v1/kv', strangerBody(victim))
        strangerMs.push(performance.now() - t)
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
      }
    }))
    await measure('flood, 8 connections', 300)
    stop = true
    await flood
    const flooded = [...statuses.values()].reduce((a, b) => a + b, 0)
    console.log(`  stranger: ${(flooded / ((performance.now() - floodStart) / 1000)).toFixed(0)} POST/s refused, statuses ${JSON.stringify(Object.fromEntries(statuses))}, ${summary(strangerMs)}`)
  } finally {
    await stopChild(child)
    await rm(dir, { recursive: true, force: true })
  }
}

async function main (): Promise<void> {
  const cpu = cpus()
  console.log(`machine: ${cpu[0]?.model ?? 'unknown cpu'}, ${cpu.length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}, ${process.platform}/${process.arch}, load ${loadavg().map(l => l.toFixed(2)).join(' ')}`)
  console.log(`load: ${CONCURRENCY} keep-alive connections, ≤ ${SECONDS} s per throughput phase, loopback; data on ${DATA_ROOT}\n`)

  const key = makeKey('bench verify')
  const message = '{"version":"1","uuid":"' + randomUUID() + '","avatar":"' + bytesToHex(key.publicKey) + '","platform":"twitter","identity":"bench","patch":{"a":1},"created_at":1700000000,"previous":null}'
  const signature = Uint8Array.from(Buffer.from(await personalSign(key, message), 'base64'))
  const measureRecovery = async (): Promise<{ curves: { perSecond: number, cpuMs: number }, noble: { perSecond: number, cpuMs: number } }> => ({
    curves: await rate(2000, () => { if (!signedBy(message, signature, key.publicKey)) throw new Error('bench signature does not verify') }),
    noble: await rate(2000, () => recoverPersonalSigner(message, signature))
  })
  const before = await measureRecovery()
  console.log(`signature check alone (one core): hub path (@noble/curves) ${before.curves.perSecond.toFixed(0)}/s (${before.curves.cpuMs.toFixed(2)} ms CPU each), @noble/secp256k1 ${before.noble.perSecond.toFixed(0)}/s (${before.noble.cpuMs.toFixed(2)} ms)\n`)

  const results: Array<[string, Throughput]> = []
  if (ONLY.has('sync')) results.push(['fsynced (default)', await throughput('fsynced', true, before.curves.perSecond)])
  if (ONLY.has('nosync')) results.push(['syncWrites: false', await throughput('not fsynced', false, before.curves.perSecond)])
  if (ONLY.has('attack')) { console.log(''); await attack() }

  const after = await measureRecovery()
  const reference = (before.curves.perSecond + after.curves.perSecond) / 2
  const referenceCpuMs = (before.curves.cpuMs + after.curves.cpuMs) / 2
  console.log(`\nsignature check alone, after the load: ${after.curves.perSecond.toFixed(0)}/s, ${after.curves.cpuMs.toFixed(2)} ms CPU each (@noble/secp256k1 ${after.noble.perSecond.toFixed(0)}/s); reference (mean) ${reference.toFixed(0)}/s, ${referenceCpuMs.toFixed(2)} ms`)
  for (const [label, { perSecond, cpuMsPerPost }] of results) {
    console.log(`Next.ID POST, ${label}: ${perSecond.toFixed(0)}/s = ${(100 * perSecond / reference).toFixed(0)} % of signature checking alone by wall time; ` +
      `${(100 * referenceCpuMs / cpuMsPerPost).toFixed(0)} % by CPU time (the check's CPU / the hub's CPU per POST; target ≥ 70 %)`)
  }
}

if (process.argv[2] === 'serve') {
  serveChild(process.argv[3] as string, process.argv[4] === '1').catch((err) => { console.error(err); process.exit(1) })
} else {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  }).finally(() => { agent.destroy() })
}

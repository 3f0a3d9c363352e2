/**
 * Benchmark: write on device A → readable on device B through a real hub process (`userspace
 * serve` on loopback), on a 1 000-key space, with where the time goes: A's `set` (durable in its
 * state file), the hub (from A's publish request leaving to B's event stream delivering the
 * record), and B (from that event to its `change` listener, the version merged). Each device keeps
 * its own state file, as the default does. The phases come from the requests and event chunks each
 * device's fetch sees, so nothing in the library is changed to measure them.
 *
 * Run: `npm run build && node dist/bench/visible.js`. Environment: BENCH_RUNS (default 30),
 * BENCH_KEYS (default 1000). For a before/after, run it from a worktree of each commit, alternately.
 */
import '../src/polyfill.js'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import * as os from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { fileState, hubStore, openSpace, privateKeySigner } from '../src/index.js'
import type { Json } from '../src/index.js'
import type { ChildProcess } from 'node:child_process'

const RUNS = Number(process.env.BENCH_RUNS ?? 30)
const KEYS = Number(process.env.BENCH_KEYS ?? 1000)
const WAIT_MS = 30_000
/** The repository root, from dist/bench/ once built. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** `userspace serve` on a free loopback port; resolves with its URL once it listens. */
async function startHub (dir: string): Promise<{ child: ChildProcess, url: string }> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/userspace.js'), 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dir, '--rate-limit', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout?.setEncoding('utf8')
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: string) => { out += chunk; if (/^data: /m.test(out)) resolve() })
    child.once('exit', () => { reject(new Error(`hub exited: ${out}`)) })
  })
  const url = /listening on (\S+)/.exec(out)?.[1]
  if (url === undefined) throw new Error(`unexpected hub output: ${out}`)
  // Keep reading: a full pipe would stall the hub.
  child.stdout?.resume()
  return { child, url }
}

async function stopHub (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill()
  await exited
}

type Mark = [what: string, atMs: number]
let t0 = 0
const marks: Mark[] = []
const mark = (what: string): void => { if (t0 !== 0) marks.push([what, performance.now() - t0]) }

/** A fetch that notes when each request leaves and when each event-stream chunk arrives. */
function watchedFetch (who: string): typeof globalThis.fetch {
  return async (input, init) => {
    const url = String(input)
    const method = init?.method ?? 'GET'
    mark(`${who} ${method} ${new URL(url).pathname.split('/').slice(0, 4).join('/')}`)
    const res = await globalThis.fetch(input, init)
    if (!url.includes('/api/v1/events/') || res.body === null) return res
    const reader = res.body.getReader()
    const body = new ReadableStream<Uint8Array>({
      async pull (controller) {
        const { value, done } = await reader.read()
        if (done) { controller.close(); return }
        mark(`${who} event chunk`)
        controller.enqueue(value)
      },
      async cancel () { await reader.cancel() }
    })
    return new Response(body, { status: res.status, headers: res.headers })
  }
}

const median = (xs: number[]): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}
const p90 = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(0.9 * s.length) - 1)] as number
}
const at = (m: Mark[], prefix: string): number => m.find(([w]) => w.startsWith(prefix))?.[1] ?? Number.NaN

async function main (): Promise<void> {
  const cpus = os.cpus()
  console.log(`machine: ${cpus[0]?.model ?? 'unknown cpu'}, ${cpus.length} cores, node ${process.version}, ${process.platform}/${process.arch}`)
  console.log(`load average before: ${os.loadavg().map(l => l.toFixed(2)).join(' ')}`)
  const tmp = await mkdtemp(join(os.tmpdir(), 'userspace-bench-visible-'))
  const hub = await startHub(join(tmp, 'hub'))
  try {
    const signer = privateKeySigner('42'.repeat(32))
    const a = await openSpace({ signer, store: hubStore(hub.url, { fetch: watchedFetch('A') }), state: fileState(join(tmp, 'a')) })
    const fill: Record<string, Json> = {}
    for (let i = 0; i < KEYS; i++) fill[`key-${i}`] = { i, label: `value number ${i}`, r: 0 }
    await a.patch(fill)
    await a.flush()
    const b = await openSpace({ signer, store: hubStore(hub.url, { fetch: watchedFetch('B') }), state: fileState(join(tmp, 'b')) })
    let pending: { key: string, r: string, resolve: () => void } | undefined
    b.subscribe(() => {
      mark('B change')
      const p = pending
      if (p !== undefined) void b.get(p.key).then((v) => { if ((v as { r?: string } | undefined)?.r === p.r) p.resolve() })
    })
    // The stream is live once B has heard the current record (its first event chunk after `ready`).
    await new Promise(resolve => setTimeout(resolve, 500))
    const total: number[] = []
    const phases = { set: [] as number[], hub: [] as number[], b: [] as number[], requestsOfB: [] as number[] }
    for (let run = 0; run < RUNS + 3; run++) {
      const key = `key-${(run * 7919) % KEYS}`
      const r = `visible-${run}`
      marks.length = 0
      const seen = new Promise<void>((resolve, reject) => {
        pending = { key, r, resolve }
        setTimeout(() => { reject(new Error(`run ${run}: B did not see the write within ${WAIT_MS} ms`)) }, WAIT_MS).unref()
      })
      t0 = performance.now()
      await a.set(key, { i: run, r })
      mark('A set resolved')
      await seen
      const ms = performance.now() - t0
      t0 = 0
      // The publish's own answer and state write follow; the next run starts from a settled device.
      await a.flush()
      if (run < 3) continue
      total.push(ms)
      const post = at(marks, 'A POST /api/v1/publish')
      const event = marks.find(([w, t]) => w === 'B event chunk' && t > post)?.[1] ?? Number.NaN
      phases.set.push(at(marks, 'A set resolved'))
      phases.hub.push(event - post)
      phases.b.push(at(marks, 'B change') - event)
      phases.requestsOfB.push(marks.filter(([w]) => w.startsWith('B GET') || w.startsWith('B POST')).length)
    }
    await a.close()
    await b.close()
    console.log(`${KEYS}-key space, ${RUNS} runs: write on A → readable on B through a hub process, median ${median(total).toFixed(1)} ms, p90 ${p90(total).toFixed(1)} ms`)
    console.log(`  medians: A's set ${median(phases.set).toFixed(1)} ms; hub, publish request → event at B ${median(phases.hub).toFixed(1)} ms; B, event → change ${median(phases.b).toFixed(1)} ms; requests B made per update ${median(phases.requestsOfB)}`)
  } finally {
    await stopHub(hub.child)
    await rm(tmp, { recursive: true, force: true })
  }
  console.log(`load average after: ${os.loadavg().map(l => l.toFixed(2)).join(' ')}`)
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })

/**
 * Benchmark: cold open of a space on a new helia node, at several space sizes. A holder node keeps
 * the spaces on disk (blocks in files, datastore in LevelDB), as a hub or another device would; for
 * each run a brand-new node (its own empty directory) is dialled to it and opens the space with
 * `openSpace` + `getAll` (record, version, every bucket decrypted), its state in a new state file;
 * `openSpace` alone is reported too.
 * The new node's start is not counted. Prints the machine, the load before and after, and the
 * median and range of the runs per size.
 *
 * The holder runs in a process of its own by default, as a hub or another device would: the
 * reader's process then does only the reader's work (in one process, the holder's DAG walk, framing
 * and connection encryption share the reader's thread). BENCH_HOLDER=inline keeps it in this process.
 *
 * Run after a build: `node dist/bench/helia-open.js`. Environment: BENCH_SIZES (default
 * `1000,100000`), BENCH_RUNS (cold opens per size, default 5), BENCH_HOLDER (`process`, the
 * default, or `inline`), BENCH_CPU_PROFILE (a file: the reader's `openSpace` calls of the last size
 * are profiled with V8's sampling profiler and written there, for Chrome DevTools).
 */
import '../src/polyfill.js'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import * as os from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { Session } from 'node:inspector/promises'
import { writeFile } from 'node:fs/promises'
import { fileState, memoryState, openSpace, privateKeySigner } from '../src/index.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { heliaStore } from '../src/store/helia.js'
import type { Json } from '../src/index.js'

const SIZES = (process.env.BENCH_SIZES ?? '1000,100000').split(',').map(s => Number.parseInt(s, 10)).filter(n => Number.isInteger(n) && n > 0)
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const INLINE = process.env.BENCH_HOLDER === 'inline'
const PROFILE = process.env.BENCH_CPU_PROFILE

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] ?? NaN : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2
}
const load = (): string => os.loadavg().map(l => l.toFixed(2)).join(' ')
const ms = (v: number): string => v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`

const signerOf = (i: number): ReturnType<typeof privateKeySigner> => privateKeySigner((i + 1).toString(16).padStart(64, '0'))

/** A holder node on `directory` with a space of each size written to it (by the signer of its index). */
async function startHolder (directory: string): Promise<{ peers: string[], stop: () => Promise<void> }> {
  const holder = await createHeliaNode({ directory, dhtServer: true })
  for (const [i, n] of SIZES.entries()) {
    const fill: Record<string, Json> = {}
    for (let k = 0; k < n; k++) fill[`key-${k}`] = { i: k, label: `value number ${k}`, on: k % 2 === 0 }
    const writer = await openSpace({ signer: signerOf(i), store: heliaStore(holder), state: memoryState() })
    await writer.patch(fill)
    await writer.flush()
    await writer.close()
  }
  return { peers: holder.libp2p.getMultiaddrs().map(String).filter(a => !a.includes('/ws')), stop: async () => { await stopHeliaNode(holder) } }
}

/** The same holder in a child process (this file with `--holder <dir>`); it stops when its stdin ends. */
async function spawnHolder (directory: string): Promise<{ peers: string[], stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--holder', directory], { stdio: ['pipe', 'pipe', 'inherit'], env: process.env })
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
  const lines = createInterface({ input: child.stdout })
  const peers = await new Promise<string[]>((resolve, reject) => {
    lines.once('line', (line) => { resolve(JSON.parse(line) as string[]) })
    child.once('exit', (code) => { reject(new Error(`the holder process exited with ${code}`)) })
  })
  return { peers, stop: async () => { child.stdin.end(); await exited } }
}

async function main (): Promise<void> {
  const cpus = os.cpus()
  console.log(`machine: ${cpus[0]?.model ?? 'unknown cpu'}, ${cpus.length} cores, node ${process.version}, ${process.platform}/${process.arch}`)
  console.log(`load average before: ${load()}`)
  console.log(`sizes ${SIZES.join(' / ')} keys; ${RUNS} cold opens per size; holder and readers on disk, loopback; holder ${INLINE ? 'in this process' : 'in its own process'}`)
  const tmp = await mkdtemp(join(os.tmpdir(), 'userspace-bench-open-'))
  let dirs = 0
  const newDir = (): string => join(tmp, `d${dirs++}`)
  const holder = INLINE ? await startHolder(newDir()) : await spawnHolder(newDir())
  const peers = holder.peers
  const rows: string[] = []
  const session = PROFILE === undefined ? undefined : new Session()
  if (session !== undefined) {
    session.connect()
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: 100 })
  }
  try {
    for (const [i, n] of SIZES.entries()) {
      const profiled = session !== undefined && i === SIZES.length - 1
      const signer = signerOf(i)
      const times: number[] = []
      const opens: number[] = []
      const cpus: number[] = []
      const starts: number[] = []
      for (let r = 0; r < RUNS; r++) {
        const t0 = performance.now()
        const reader = await createHeliaNode({ directory: newDir(), peers })
        starts.push(performance.now() - t0)
        try {
          if (profiled) await session.post('Profiler.start')
          const t1 = performance.now()
          const c1 = process.cpuUsage()
          const space = await openSpace({ signer, store: heliaStore(reader), state: fileState(newDir()) })
          opens.push(performance.now() - t1)
          const c2 = process.cpuUsage(c1)
          cpus.push((c2.user + c2.system) / 1000)
          if (profiled) {
            const { profile } = await session.post('Profiler.stop')
            await writeFile(`${PROFILE}.${r}.cpuprofile`, JSON.stringify(profile))
          }
          const count = Object.keys(await space.getAll()).length
          times.push(performance.now() - t1)
          await space.close()
          if (count !== n) throw new Error(`cold open read ${count} keys, expected ${n}`)
        } finally {
          await stopHeliaNode(reader)
        }
      }
      rows.push(`| ${n} | ${ms(median(opens))} (${ms(median(cpus))}) | ${ms(median(times))} | ${ms(Math.min(...times))}–${ms(Math.max(...times))} | ${ms(median(starts))} |`)
      console.log(`${n} keys done`)
    }
  } finally {
    await holder.stop()
    await rm(tmp, { recursive: true, force: true, maxRetries: 5 }).catch((err: Error) => { console.error(`could not remove ${tmp}: ${err.message}`) })
  }
  console.log("\n| keys | open (openSpace), median wall (the reader process's CPU) | cold open + read all (getAll), median | range | node start (not counted) |\n| --- | --- | --- | --- | --- |")
  for (const row of rows) console.log(row)
  console.log(`\nload average after: ${load()}`)
}

async function holderMain (directory: string): Promise<void> {
  const holder = await startHolder(directory)
  process.stdout.write(JSON.stringify(holder.peers) + '\n')
  process.stdin.resume()
  await new Promise(resolve => process.stdin.once('end', resolve))
  await holder.stop()
}

const holderAt = process.argv.indexOf('--holder')
;(holderAt >= 0 ? holderMain(process.argv[holderAt + 1] as string) : main()).catch((err) => {
  console.error(err)
  process.exitCode = 1
})

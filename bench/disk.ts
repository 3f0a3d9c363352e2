/**
 * Benchmark: disk bytes a single-key update adds, at 10 000 and 100 000 keys, on helia (the writing
 * node and its DHT peer, both on disk, plus the device's state file) and through a real `userspace
 * serve` process (the hub's data directory plus the device's state file). File sizes (apparent
 * bytes), summed before and after BENCH_UPDATES updates (default 20) of one key each, each followed
 * by `flush()`, with a pause before each sum for background writes (DHT puts, provider records).
 * LevelDB's log grows with every write until it is compacted, and so does the device's state
 * journal (two lines per update, rewritten whole past 16 KiB), so these are the bytes a run of
 * updates adds, not what stays after compaction; the parts are printed too. Beside them, what
 * stays: the same sums over copies of the folders in which every LevelDB was compacted (its log
 * written out as tables, overwritten records dropped) and every journal rewritten whole, as both
 * do by themselves over a longer run. And the bytes
 * the file system allocates for the same files (blocks and datastores are LevelDB: its log and
 * tables; earlier versions kept one file per block, each at least one file-system block).
 *
 * Run after a build: `node dist/bench/disk.js`. Environment: BENCH_SIZES (default `10000,100000`),
 * BENCH_UPDATES.
 */
import '../src/polyfill.js'
import { spawn } from 'node:child_process'
import { cp, mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import * as os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LevelDatastore } from 'datastore-level'
import { fileState, hubStore, openSpace, privateKeySigner } from '../src/index.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { heliaStore } from '../src/store/helia.js'
import type { Json, Space } from '../src/index.js'

const SIZES = (process.env.BENCH_SIZES ?? '10000,100000').split(',').map(s => Number.parseInt(s, 10)).filter(n => Number.isInteger(n) && n > 0)
const UPDATES = Number(process.env.BENCH_UPDATES ?? 20)
/** Pause before each sum, for the background writes of the updates (DHT puts, provider records). */
const SETTLE_MS = 3000
/** The repository root, from dist/bench/ once built. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url))

const load = (): string => os.loadavg().map(l => l.toFixed(2)).join(' ')
const value = (i: number, r: number): Json => ({ i, label: `value number ${i}`, on: i % 2 === 0, r })

/** File sizes under `dir` (apparent bytes), or with `allocated` the bytes the file system allocates for them. */
async function bytesUnder (dir: string, allocated = false): Promise<number> {
  let total = 0
  let entries
  try { entries = await readdir(dir, { withFileTypes: true }) } catch { return 0 }
  for (const e of entries) {
    const path = join(dir, e.name)
    if (e.isDirectory()) total += await bytesUnder(path, allocated)
    else if (e.isFile()) total += await stat(path).then(s => allocated ? s.blocks * 512 : s.size, () => 0)
  }
  return total
}

/** Folders under `dir` (itself included) that hold a LevelDB (a `CURRENT` file). */
async function levelFolders (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  const found = entries.some(e => e.isFile() && e.name === 'CURRENT') ? [dir] : []
  for (const e of entries) if (e.isDirectory()) found.push(...await levelFolders(join(dir, e.name)))
  return found
}

/**
 * What stays of the files under `dirs`: the bytes of a copy of them in which every LevelDB is
 * compacted (its log written out as tables, overwritten and deleted entries dropped, as LevelDB
 * does once its 4 MiB log fills) and every state journal is rewritten whole (as fileState does
 * once its lines pass 16 KiB). The folders themselves are left as they are.
 */
async function settledBytes (dirs: Record<string, string>, scratch: string): Promise<Map<string, number>> {
  await rm(scratch, { recursive: true, force: true })
  const parts = new Map<string, number>()
  try {
    for (const [i, [label, dir]] of Object.entries(dirs).entries()) {
      const copy = join(scratch, String(i))
      await cp(dir, copy, { recursive: true }).catch(() => {})
      for (const folder of await levelFolders(copy)) {
        const db = new LevelDatastore(folder)
        await db.open()
        // LevelDB writes its memtable (the log's entries) out as a table before compacting the range
        // (classic-level, Node's LevelDB, has it; `level`'s types cover the browser's too, which has not)
        await (db.db as unknown as { compactRange: (start: string, end: string) => Promise<void> }).compactRange('\u0000', '\uffff')
        await db.close()
      }
      const journals = (await readdir(copy).catch(() => [])).filter(f => f.endsWith('.log') && !f.startsWith('LOG'))
      for (const file of journals) {
        // The journal's state, written whole as a new journal (what a rewrite leaves). A fileState
        // rewrites once its lines pass twice the state it started from: after a large patch that
        // first state held every pending write, and a copy would not be rewritten at all.
        const name = file.slice(0, -'.log'.length)
        const seen = await fileState(copy).get(name)
        await rm(join(copy, file))
        if (seen === undefined) continue
        const fresh = fileState(copy)
        await fresh.put(name, { sequence: seen.sequence, root: seen.root })
        if (seen.pending.length > 0) await fresh.addPending(name, seen.pending)
      }
      for (const [part, bytes] of await bytesByPart(copy, label)) parts.set(part, bytes)
    }
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
  return parts
}

/** Bytes under each first-level entry of `dir` (a folder summed whole), keyed `<label>/<entry>`. */
async function bytesByPart (dir: string, label: string): Promise<Map<string, number>> {
  const parts = new Map<string, number>()
  let entries
  try { entries = await readdir(dir, { withFileTypes: true }) } catch { return parts }
  for (const e of entries) {
    const path = join(dir, e.name)
    const bytes = e.isDirectory() ? await bytesUnder(path) : e.isFile() ? await stat(path).then(s => s.size, () => 0) : 0
    const part = e.isDirectory() ? `${label}/${e.name}/` : `${label}/(files)`
    parts.set(part, (parts.get(part) ?? 0) + bytes)
  }
  return parts
}

/** Bytes per update: in all, by part, allocated by the file system, and what stays once compacted (in all, by part). */
interface PerUpdate { total: number, parts: Map<string, number>, allocated: number, settled: number, settledParts: Map<string, number> }

/**
 * Fills `space` with `size` keys, then returns the bytes each single-key update adds under `dirs`
 * (label → folder): in all, and per first-level part of each folder.
 */
async function perUpdate (space: Space, size: number, dirs: Record<string, string>): Promise<PerUpdate> {
  const fill: Record<string, Json> = {}
  for (let k = 0; k < size; k++) fill[`key-${k}`] = value(k, 0)
  await space.patch(fill)
  await space.flush()
  // One update first, unmeasured: the state journal, which the patch left holding every write it
  // added and removed, is rewritten whole on the next change once nothing is pending.
  await space.set('warm-up', 0)
  await space.flush()
  const sum = async (): Promise<{ all: Map<string, number>, settled: Map<string, number> }> => {
    await new Promise(resolve => setTimeout(resolve, SETTLE_MS))
    const all = new Map<string, number>()
    for (const [label, dir] of Object.entries(dirs)) for (const [part, bytes] of await bytesByPart(dir, label)) all.set(part, bytes)
    let allocated = 0
    for (const dir of Object.values(dirs)) allocated += await bytesUnder(dir, true)
    all.set(ALLOCATED, allocated)
    return { all, settled: await settledBytes(dirs, `${Object.values(dirs)[0] as string}-settled`) }
  }
  const before = await sum()
  for (let u = 0; u < UPDATES; u++) {
    await space.set(`key-${(u * 7919) % size}`, value(u, 1e6 + u))
    await space.flush()
  }
  const after = await sum()
  const [parts, total] = perPart(before.all, after.all)
  const [settledParts, settled] = perPart(before.settled, after.settled)
  const allocated = ((after.all.get(ALLOCATED) ?? 0) - (before.all.get(ALLOCATED) ?? 0)) / UPDATES
  return { total, parts, allocated, settled, settledParts }
}

/** What each part added per update between two sums, and the total of the parts. */
function perPart (before: Map<string, number>, after: Map<string, number>): [Map<string, number>, number] {
  const parts = new Map<string, number>()
  let total = 0
  for (const part of new Set([...before.keys(), ...after.keys()])) {
    if (part === ALLOCATED) continue
    const added = ((after.get(part) ?? 0) - (before.get(part) ?? 0)) / UPDATES
    parts.set(part, added)
    total += added
  }
  return [parts, total]
}

/** The key under which a sum carries the allocated bytes of all its folders. */
const ALLOCATED = '(allocated)'

const partsLine = (parts: Map<string, number>): string =>
  [...parts].filter(([, b]) => Math.abs(b) >= 1).sort((x, y) => y[1] - x[1]).map(([p, b]) => `${p} ${b.toFixed(0)} B`).join(', ')

async function startHub (dir: string): Promise<{ url: string, stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/userspace.js'), 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dir, '--rate-limit', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8')
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: string) => { out += chunk; if (/^data: /m.test(out)) resolve() })
    child.once('exit', () => { reject(new Error(`hub exited: ${out}`)) })
  })
  child.stdout.resume()
  const url = /listening on (\S+)/.exec(out)?.[1]
  if (url === undefined) throw new Error(`unexpected hub output: ${out}`)
  const exited = new Promise(resolve => child.once('exit', resolve))
  return { url, stop: async () => { if (child.exitCode === null) { child.kill(); await exited } } }
}

async function main (): Promise<void> {
  const cpus = os.cpus()
  console.log(`machine: ${cpus[0]?.model ?? 'unknown cpu'}, ${cpus.length} cores, node ${process.version}, ${process.platform}/${process.arch}`)
  console.log(`load average before: ${load()}`)
  console.log(`${UPDATES} single-key updates per size, each flushed; file sizes summed ${SETTLE_MS / 1000} s after the last`)
  const tmp = await mkdtemp(join(os.tmpdir(), 'userspace-bench-disk-'))
  const rows: string[] = []
  try {
    for (const [i, size] of SIZES.entries()) {
      const dir = (name: string): string => join(tmp, `${size}-${name}`)
      const a = await createHeliaNode({ directory: dir('a'), dhtServer: true })
      const b = await createHeliaNode({ directory: dir('b'), dhtServer: true, peers: a.libp2p.getMultiaddrs().map(String).filter(x => !x.includes('/ws')) })
      let helia: PerUpdate
      try {
        const space = await openSpace({ signer: privateKeySigner((2 * i + 1).toString(16).padStart(64, '0')), store: heliaStore(a), state: fileState(dir('state-a')) })
        helia = await perUpdate(space, size, { writer: dir('a'), peer: dir('b'), state: dir('state-a') })
        await space.close()
      } finally {
        await stopHeliaNode(b)
        await stopHeliaNode(a)
      }
      const hub = await startHub(dir('hub'))
      let viaHub: PerUpdate
      try {
        const space = await openSpace({ signer: privateKeySigner((2 * i + 2).toString(16).padStart(64, '0')), store: hubStore(hub.url), state: fileState(dir('state-hub')) })
        viaHub = await perUpdate(space, size, { hub: dir('hub'), state: dir('state-hub') })
        await space.close()
      } finally {
        await hub.stop()
      }
      rows.push(`| ${size} | ${helia.total.toFixed(0)} B | ${viaHub.total.toFixed(0)} B | ${helia.settled.toFixed(0)} B | ${viaHub.settled.toFixed(0)} B | ${(helia.allocated / 1024).toFixed(1)} KiB | ${(viaHub.allocated / 1024).toFixed(1)} KiB |`)
      console.log(`${size} keys, bytes per update by part. helia: ${partsLine(helia.parts)}`)
      console.log(`${size} keys, bytes per update by part. hub: ${partsLine(viaHub.parts)}`)
      console.log(`${size} keys, what stays per update by part. helia: ${partsLine(helia.settledParts)}`)
      console.log(`${size} keys, what stays per update by part. hub: ${partsLine(viaHub.settledParts)}`)
    }
  } finally {
    await rm(tmp, { recursive: true, force: true, maxRetries: 5 })
  }
  console.log('\n| keys | helia (both nodes + state file) | hub process (hub data + state file) | what stays once compacted: helia | hub | allocated by the file system: helia | hub |\n| --- | --- | --- | --- | --- | --- | --- |')
  for (const row of rows) console.log(row)
  console.log(`\nload average after: ${load()}`)
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1) })

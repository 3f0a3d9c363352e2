/**
 * Benchmark: UserSpace beside OrbitDB 4 (`@orbitdb/core`, keyvalue database), in one process, on the
 * same helia nodes on loopback (TCP, noise, yamux, identify, a LAN kad-dht, bitswap, gossipsub with
 * `allowPublishToZeroTopicPeers` as OrbitDB's own test setup has it), every node keeping its blocks
 * and datastore on disk in a temp directory. UserSpace runs twice: on those helia nodes
 * (`heliaStore`) and through a real hub process (`node bin/userspace.js serve`). Measured side by side:
 * `set`/`put` latency at several space sizes (UserSpace's `set` resolves once the write is durable on
 * the device; `set`+`flush` also waits until it is published), write on one device → readable on
 * another, cold open of a 1 000-key space on a new node (OrbitDB's without the DHT, as its own tests
 * run), disk bytes added per single-key update, and the heap and RSS a 10 000-key space adds.
 *
 * Setup, from the repository root: `npm install --prefix bench/orbitdb`, then `npm run bench:orbitdb`.
 * OrbitDB is a dependency of this folder only; helia and libp2p come from the package's own install.
 * Environment: BENCH_KEYS (space sizes, default `10,1000,10000`), BENCH_SAMPLES (writes timed per
 * size, default 40), BENCH_RUNS (write→visible runs, default 15), BENCH_COLD_RUNS (cold opens per
 * column, default 3), BENCH_SETTLE_MS (pause before each write→visible column, default 5000). A quick
 * run: `BENCH_KEYS=10,100,1000 BENCH_SAMPLES=10 BENCH_RUNS=5 BENCH_COLD_RUNS=1`.
 */
// OrbitDB 4 and libp2p call Promise.withResolvers (Node 22); this must load before them.
import '../../dist/src/polyfill.js'
import { spawn } from 'node:child_process'
import { setMaxListeners } from 'node:events'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import * as os from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { LevelDatastore } from 'datastore-level'
import * as dagCbor from '@ipld/dag-cbor'
import { createHeliaLight } from 'helia'
import { ipnsSelector } from 'ipns/selector'
import { ipnsValidator } from 'ipns/validator'
import { fileState, openSpace, privateKeySigner } from '../../dist/src/index.js'
import { heliaStore } from '../../dist/src/store/helia.js'
import { DiskBlockstore } from '../../dist/src/store/level-blocks.js'
import { BITSWAP_DEBOUNCE_MS, quietDatastore } from '../../dist/src/store/helia-node.js'

let createOrbitDB, gossipsub
try {
  ({ createOrbitDB } = await import('@orbitdb/core'));
  ({ gossipsub } = await import('@libp2p/gossipsub'))
} catch (err) {
  console.error(`cannot load OrbitDB (${err.message}); install this benchmark's dependencies first: npm install --prefix bench/orbitdb`)
  process.exit(1)
}

// A cold open hangs more than ten abort listeners on one signal (OrbitDB's fetches, bitswap, the
// DHT); Node's leak warning for that would only interleave with the table.
setMaxListeners(100)

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const intList = (v, d) => (v ?? d).split(',').map(s => Number.parseInt(s, 10)).filter(n => Number.isInteger(n) && n > 0)
const KEYS = intList(process.env.BENCH_KEYS, '10,1000,10000')
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 40)
const RUNS = Number(process.env.BENCH_RUNS ?? 15)
const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 3)
/** Writes per disk measurement; the bytes added are divided by this. */
const DISK_UPDATES = 20
/** The cold-open and write→visible space size. */
const OPEN_KEYS = Math.min(1000, Math.max(...KEYS))
const MEM_KEYS = Math.max(...KEYS)
/** No single wait in this benchmark may take longer. */
const WAIT_MS = 300_000
/**
 * Pause before each write→visible column, once the previous column's writes are published: their
 * background work (helia's DHT puts, OrbitDB's replication) shares this process's event loop and
 * thread pool and would otherwise be timed in the next column (measured: the hub column 102–248 ms
 * right after the helia column, 56–65 ms with this pause).
 */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 5000)

// ---------- small helpers ----------

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]
}
const median = xs => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
const ms = v => Number.isNaN(v) ? '—' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`
const bytes = v => Number.isNaN(v) ? '—' : Math.abs(v) >= 2 ** 20 ? `${(v / 2 ** 20).toFixed(1)} MiB` : Math.abs(v) >= 1024 ? `${(v / 1024).toFixed(1)} KiB` : `${Math.round(v)} B`
const ratio = (us, orbit) => Number.isFinite(us / orbit) ? `${(us / orbit).toFixed(2)}×` : '—'
const load = () => os.loadavg().map(l => l.toFixed(2)).join(' ')
const value = (i, r) => ({ i, label: `value number ${i}`, on: i % 2 === 0, r })

async function time (fn) {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

/** Resolves when `check()` is true, re-checking whenever `subscribe` calls back; rejects after WAIT_MS. */
function until (subscribe, check, what) {
  return new Promise((resolve, reject) => {
    let done = false
    let unsubscribe = () => {}
    const timer = setTimeout(() => finish(new Error(`timed out waiting for ${what}`)), WAIT_MS)
    const finish = (err) => {
      if (done) return
      done = true
      clearTimeout(timer)
      unsubscribe()
      err === undefined ? resolve() : reject(err)
    }
    const test = () => { Promise.resolve(check()).then(ok => { if (ok) finish() }, finish) }
    unsubscribe = subscribe(test)
    test()
  })
}

/** Apparent and allocated bytes of every file under `dir`. */
async function diskUsage (dir) {
  let apparent = 0
  let allocated = 0
  const walk = async (d) => {
    let entries
    try { entries = await readdir(d, { withFileTypes: true }) } catch { return }
    for (const e of entries) {
      const p = join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.isFile()) {
        try {
          const s = await stat(p)
          apparent += s.size
          allocated += s.blocks * 512
        } catch {}
      }
    }
  }
  await walk(dir)
  return { apparent, allocated }
}

async function diskPerUpdate (dirs, update) {
  const sum = async () => (await Promise.all(dirs.map(diskUsage))).reduce((a, b) => ({ apparent: a.apparent + b.apparent, allocated: a.allocated + b.allocated }))
  const before = await sum()
  for (let u = 0; u < DISK_UPDATES; u++) await update(u)
  const after = await sum()
  return { apparent: (after.apparent - before.apparent) / DISK_UPDATES, allocated: (after.allocated - before.allocated) / DISK_UPDATES }
}

function memory () {
  globalThis.gc?.()
  globalThis.gc?.()
  const m = process.memoryUsage()
  return { heap: m.heapUsed, rss: m.rss }
}

// ---------- nodes and the hub ----------

const tmp = await mkdtemp(join(os.tmpdir(), 'userspace-bench-orbitdb-'))
let dirCount = 0
const newDir = () => join(tmp, `d${dirCount++}`)
const stoppers = []

/**
 * A helia node like OrbitDB's test nodes and UserSpace's own: TCP, noise, yamux, identify, bitswap
 * (batching as createHeliaNode does), gossipsub, stores on disk (blocks in LevelDB as createHeliaNode
 * keeps them; the datastore in LevelDB under createHeliaNode's quietDatastore), and (unless `dht` is
 * false) the LAN DHT that UserSpace needs for IPNS.
 * OrbitDB's own test nodes run no DHT; its cold open runs on such a node, since with a DHT every
 * missing block also starts a provider lookup (on this machine kind, under load, 113 ms a block
 * fetched one by one against 72 ms without).
 */
async function startNode (dir, peers = [], { dht = true } = {}) {
  // blocks in LevelDB, as createHeliaNode keeps them (and as OrbitDB's own storage does)
  const blockstore = new DiskBlockstore(join(dir, 'blockstore'), false)
  const level = new LevelDatastore(join(dir, 'datastore'))
  await blockstore.open()
  await level.open()
  // As createHeliaNode gives libp2p its LevelDB: peer-store entries written at most every 30 s, a
  // record the DHT put would store again unchanged not rewritten.
  const datastore = quietDatastore(level)
  // OrbitDB pins its log entries, which walks their dag-cbor links; a light helia knows only raw and dag-pb.
  const helia = withBitswap(withLibp2pLight(createHeliaLight({ blockstore, datastore: level, codecs: [dagCbor] }), {
    datastore,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    // libp2p limits inbound connections per host; every node here is on loopback.
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }),
      ...(dht ? { dht: lanDHT() } : {})
    }
  }), { sendWantlistDebounce: BITSWAP_DEBOUNCE_MS, sendBlocksDebounce: BITSWAP_DEBOUNCE_MS })
  await helia.start()
  for (const p of peers) await helia.libp2p.dial(p, { signal: AbortSignal.timeout(10_000) })
  if (dht && peers.length > 0) {
    // A query made before identify has put the peer in the routing table asks no one and finds
    // nothing (UserSpace would then open an empty space); createHeliaNode waits the same way.
    const deadline = Date.now() + 10_000
    while (helia.libp2p.services.dht.routingTable.size < 1) {
      if (Date.now() > deadline) throw new Error('the DHT routing table stayed empty')
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  }
  const stop = async () => {
    await helia.stop()
    await datastore.close()
    await level.close()
    await blockstore.close()
  }
  return { helia, dir, stop, addrs: () => helia.libp2p.getMultiaddrs() }
}

/** As UserSpace's createHeliaNode configures it: loopback addresses kept, IPNS records accepted. */
function lanDHT () {
  return kadDHT({
        protocol: '/ipfs/lan/kad/1.0.0',
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        allowQueryWithZeroPeers: true,
        validators: { ipns: async (key, value) => { await ipnsValidator(key, value) } },
        selectors: { ipns: (key, records) => ipnsSelector(key, records) }
  })
}

async function startHub (dir) {
  const child = spawn(process.execPath, [join(ROOT, 'bin/userspace.js'), 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dir, '--rate-limit', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', chunk => { out += chunk })
  await until(cb => { child.stdout.on('data', cb); child.on('exit', cb); return () => { child.stdout.off('data', cb); child.off('exit', cb) } }, () => {
    if (child.exitCode !== null) throw new Error(`hub exited: ${out}`)
    return /^data: /m.test(out)
  }, 'the hub to start')
  const url = /listening on (\S+)/.exec(out)?.[1]
  if (url === undefined) throw new Error(`unexpected hub output: ${out}`)
  return { child, url, dir }
}

// ---------- OrbitDB and UserSpace behind one interface ----------

/** Keys of distinct spaces: one wallet per UserSpace space (each its own IPNS name). */
let walletCount = 0
const nextWallet = () => privateKeySigner((++walletCount).toString(16).padStart(64, '0'))

async function orbitPeer (node, id) {
  const directory = join(node.dir, `orbitdb-${id}`)
  const orbitdb = await createOrbitDB({ ipfs: node.helia, id, directory })
  stoppers.push(async () => orbitdb.stop())
  return { orbitdb, directory }
}

/** Waits until the OrbitDB keyvalue `db` holds `count` keys (counted by walking it, as a reader would). */
async function orbitHasKeys (db, count) {
  const has = async () => {
    let n = 0
    for await (const _ of db.iterator()) n++ // eslint-disable-line no-unused-vars
    return n >= count
  }
  await until(cb => { db.events.on('update', cb); db.events.on('join', cb); return () => { db.events.off('update', cb); db.events.off('join', cb) } }, has, `${count} keys in OrbitDB`)
}

async function openUserSpace ({ signer, store, hub, stateDir }) {
  const space = await openSpace({ signer, store, hub, state: fileState(stateDir) })
  stoppers.push(async () => { await space.close().catch(() => {}) })
  return space
}

// ---------- main ----------

const results = { set: [], visible: {}, cold: {}, disk: [], mem: {} }

async function main () {
  const cpus = os.cpus()
  console.log(`machine: ${cpus[0]?.model ?? 'unknown cpu'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}, ${process.platform}/${process.arch}`)
  console.log(`load average before: ${load()}`)
  console.log(`sizes ${KEYS.join(' / ')} keys; ${SAMPLES} timed writes per size; ${RUNS} write→visible runs; ${COLD_RUNS} cold opens; disk over ${DISK_UPDATES} updates${globalThis.gc === undefined ? '; no --expose-gc, memory figures are rough' : ''}`)
  const started = performance.now()

  const a = await startNode(newDir())
  stoppers.push(a.stop)
  const b = await startNode(newDir(), a.addrs())
  stoppers.push(b.stop)
  const hub = await startHub(newDir())
  stoppers.push(async () => { hub.child.kill(); await new Promise(resolve => hub.child.exitCode !== null ? resolve() : hub.child.once('exit', resolve)) })
  const orbitA = await orbitPeer(a, 'a')
  const storeA = heliaStore(a.helia)
  const stateA = newDir()
  const stateHubA = newDir()
  console.log(`nodes and hub up in ${ms(performance.now() - started)}\n`)

  const openSpaces = {}
  for (const n of KEYS) {
    process.stdout.write(`${n} keys: filling…`)
    const row = { n }
    // OrbitDB: one keyvalue database, filled by `put`, one key at a time (it has no batch write).
    const memOrbit0 = memory()
    const db = await orbitA.orbitdb.open(`bench-${n}`, { type: 'keyvalue' })
    for (let i = 0; i < n; i++) await db.put(`key-${i}`, value(i, 0))
    const memOrbit1 = memory()
    if (n === MEM_KEYS) results.mem.orbit = { heap: memOrbit1.heap - memOrbit0.heap, rss: memOrbit1.rss - memOrbit0.rss }

    // UserSpace: one space per column, filled with one patch.
    const fill = {}
    for (let i = 0; i < n; i++) fill[`key-${i}`] = value(i, 0)
    const memUs0 = memory()
    const signerHelia = nextWallet()
    const sh = await openUserSpace({ signer: signerHelia, store: storeA, stateDir: stateA })
    await sh.patch(fill)
    await sh.flush()
    const memUs1 = memory()
    if (n === MEM_KEYS) results.mem.helia = { heap: memUs1.heap - memUs0.heap, rss: memUs1.rss - memUs0.rss }
    const signerHub = nextWallet()
    const memHub0 = memory()
    const su = await openUserSpace({ signer: signerHub, hub: hub.url, stateDir: stateHubA })
    await su.patch(fill)
    await su.flush()
    const memHub1 = memory()
    if (n === MEM_KEYS) results.mem.hub = { heap: memHub1.heap - memHub0.heap, rss: memHub1.rss - memHub0.rss }
    openSpaces[n] = { db, sh, su, signerHelia, signerHub }

    process.stdout.write(' timing…')
    let r = 1
    const key = () => `key-${Math.floor(Math.random() * n)}`
    const sample = async (fn) => {
      const out = []
      for (let s = 0; s < SAMPLES + 3; s++) {
        const k = key()
        const t = await time(() => fn(k, value(0, r++)))
        if (s >= 3) out.push(t)
      }
      return out
    }
    row.orbit = await sample((k, v) => db.put(k, v))
    row.helia = await sample((k, v) => sh.set(k, v))
    await sh.flush()
    // The `set` inside set+flush starts with nothing left to publish: what one write costs when no
    // publish shares the event loop (flush() resolves once the state file has recorded the publish).
    const quietHelia = []
    const quietHub = []
    row.heliaFlush = await sample(async (k, v) => { quietHelia.push(await time(() => sh.set(k, v))); await sh.flush() })
    row.hub = await sample((k, v) => su.set(k, v))
    await su.flush()
    row.hubFlush = await sample(async (k, v) => { quietHub.push(await time(() => su.set(k, v))); await su.flush() })
    row.heliaQuiet = quietHelia.slice(3)
    row.hubQuiet = quietHub.slice(3)
    results.set.push(row)

    if (n >= 1000) {
      process.stdout.write(' disk…')
      const disk = { n }
      // Both helia nodes count: what a write makes its peer store (a DHT record, a provider record) is its cost too.
      disk.orbit = await diskPerUpdate([a.dir, b.dir], u => db.put(key(), value(1, 1e6 + u)))
      disk.helia = await diskPerUpdate([a.dir, b.dir, stateA], async u => { await sh.set(key(), value(1, 1e6 + u)); await sh.flush() })
      disk.hub = await diskPerUpdate([hub.dir, stateHubA], async u => { await su.set(key(), value(1, 1e6 + u)); await su.flush() })
      results.disk.push(disk)
    }
    console.log(' done')
  }

  // Write on A → readable on B, on the OPEN_KEYS-key spaces. B first opens each and catches up.
  process.stdout.write(`write on A → readable on B (${OPEN_KEYS}-key spaces)…`)
  const open = openSpaces[OPEN_KEYS]
  const orbitB = await orbitPeer(b, 'b')
  const dbB = await orbitB.orbitdb.open(open.db.address, { type: 'keyvalue' })
  await orbitHasKeys(dbB, OPEN_KEYS)
  const shB = await openUserSpace({ signer: open.signerHelia, store: heliaStore(b.helia), stateDir: newDir() })
  const suB = await openUserSpace({ signer: open.signerHub, hub: hub.url, stateDir: newDir() })
  const visible = async (write, subscribe, read) => {
    const out = []
    for (let run = 0; run < RUNS + 2; run++) {
      const k = `key-${run % OPEN_KEYS}`
      const v = value(run, `visible-${run}`)
      const t0 = performance.now()
      const seen = until(subscribe, async () => (await read(k))?.r === v.r, 'a write to become visible')
      await write(k, v)
      await seen
      if (run >= 2) out.push(performance.now() - t0)
    }
    return out
  }
  const settle = async () => {
    await Promise.all([open.sh.flush(), open.su.flush()])
    await new Promise(resolve => setTimeout(resolve, SETTLE_MS))
  }
  await settle()
  results.visible.orbit = await visible((k, v) => open.db.put(k, v),
    cb => { dbB.events.on('update', cb); return () => dbB.events.off('update', cb) }, k => dbB.get(k))
  await settle()
  results.visible.helia = await visible((k, v) => open.sh.set(k, v), cb => shB.subscribe(cb), k => shB.get(k))
  await settle()
  results.visible.hub = await visible((k, v) => open.su.set(k, v), cb => suB.subscribe(cb), k => suB.get(k))
  console.log(' done')

  // Cold open of the OPEN_KEYS-key spaces on a new node (empty stores), reading every key.
  process.stdout.write(`cold open of ${OPEN_KEYS} keys on a new node…`)
  const cold = { orbit: [], helia: [], hub: [], nodeStart: [] }
  for (let run = 0; run < COLD_RUNS; run++) {
    const co = await startNode(newDir(), a.addrs(), { dht: false })
    try {
      const orbitC = await createOrbitDB({ ipfs: co.helia, id: `c${run}`, directory: join(co.dir, 'orbitdb') })
      try {
        cold.orbit.push(await time(async () => {
          const dbC = await orbitC.open(open.db.address, { type: 'keyvalue' })
          await orbitHasKeys(dbC, OPEN_KEYS)
          const all = await dbC.all()
          if (all.length !== OPEN_KEYS) throw new Error(`OrbitDB cold open read ${all.length} keys`)
        }))
      } finally {
        await orbitC.stop()
      }
    } finally {
      await co.stop()
    }
    const t0 = performance.now()
    const c = await startNode(newDir(), a.addrs())
    cold.nodeStart.push(performance.now() - t0)
    try {
      cold.helia.push(await time(async () => {
        const space = await openSpace({ signer: open.signerHelia, store: heliaStore(c.helia), state: fileState(newDir()) })
        const all = await space.getAll()
        if (Object.keys(all).length !== OPEN_KEYS) throw new Error(`UserSpace cold open read ${Object.keys(all).length} keys`)
        await space.close()
      }))
    } finally {
      await c.stop()
    }
    cold.hub.push(await time(async () => {
      const space = await openSpace({ signer: open.signerHub, hub: hub.url, state: fileState(newDir()) })
      const all = await space.getAll()
      if (Object.keys(all).length !== OPEN_KEYS) throw new Error(`UserSpace cold open through the hub read ${Object.keys(all).length} keys`)
      await space.close()
    }))
  }
  results.cold = cold
  console.log(' done\n')

  report(performance.now() - started)
}

function report (elapsedMs) {
  const table = (head, rows) => {
    const all = [head, ...rows]
    const widths = head.map((_, i) => Math.max(...all.map(r => String(r[i]).length)))
    for (const [j, r] of all.entries()) {
      console.log('| ' + r.map((c, i) => String(c).padEnd(widths[i])).join(' | ') + ' |')
      if (j === 0) console.log('| ' + widths.map(w => '-'.repeat(w)).join(' | ') + ' |')
    }
    console.log('')
  }
  console.log('write latency, back to back, median / p90 (ratio = UserSpace median ÷ OrbitDB put median)')
  table(['keys', 'OrbitDB put', 'US set (helia)', 'ratio', 'US set+flush (helia)', 'ratio', 'US set (hub)', 'ratio', 'US set+flush (hub)', 'ratio'],
    results.set.map(r => {
      const o = median(r.orbit)
      const cell = xs => `${ms(median(xs))} / ${ms(quantile(xs, 0.9))}`
      return [r.n, cell(r.orbit), cell(r.helia), ratio(median(r.helia), o), cell(r.heliaFlush), ratio(median(r.heliaFlush), o), cell(r.hub), ratio(median(r.hub), o), cell(r.hubFlush), ratio(median(r.hubFlush), o)]
    }))

  console.log('`set` issued right after `flush()` resolved (nothing left to publish, no state write of the publish queued ahead of it), median / p90')
  table(['keys', 'OrbitDB put', 'US set (helia)', 'ratio', 'US set (hub)', 'ratio'], results.set.map(r => {
    const o = median(r.orbit)
    const cell = xs => `${ms(median(xs))} / ${ms(quantile(xs, 0.9))}`
    return [r.n, cell(r.orbit), cell(r.heliaQuiet), ratio(median(r.heliaQuiet), o), cell(r.hubQuiet), ratio(median(r.hubQuiet), o)]
  }))

  const v = results.visible
  const c = results.cold
  console.log(`write on A → readable on B, ${OPEN_KEYS}-key space, median of ${RUNS} (p90), each column ${SETTLE_MS / 1000} s after the previous one's writes were published; cold open of ${OPEN_KEYS} keys on a new node (OrbitDB's without a DHT), median of ${COLD_RUNS} (node start ${ms(median(c.nodeStart))}, not counted)`)
  table(['', 'OrbitDB', 'UserSpace (helia)', 'ratio', 'UserSpace (hub)', 'ratio'], [
    ['write → visible', `${ms(median(v.orbit))} (${ms(quantile(v.orbit, 0.9))})`, `${ms(median(v.helia))} (${ms(quantile(v.helia, 0.9))})`, ratio(median(v.helia), median(v.orbit)), `${ms(median(v.hub))} (${ms(quantile(v.hub, 0.9))})`, ratio(median(v.hub), median(v.orbit))],
    ['cold open + read all', ms(median(c.orbit)), ms(median(c.helia)), ratio(median(c.helia), median(c.orbit)), ms(median(c.hub)), ratio(median(c.hub), median(c.orbit))]
  ])

  console.log(`disk bytes added per single-key update (file sizes; allocated blocks in brackets), mean of ${DISK_UPDATES}; UserSpace after flush, its state file included; OrbitDB and helia columns = both helia nodes, hub column = hub data + client state`)
  table(['keys', 'OrbitDB', 'UserSpace (helia)', 'ratio', 'UserSpace (hub)', 'ratio'], results.disk.map(d => [
    d.n, `${bytes(d.orbit.apparent)} (${bytes(d.orbit.allocated)})`, `${bytes(d.helia.apparent)} (${bytes(d.helia.allocated)})`, ratio(d.helia.apparent, d.orbit.apparent),
    `${bytes(d.hub.apparent)} (${bytes(d.hub.allocated)})`, ratio(d.hub.apparent, d.orbit.apparent)
  ]))

  const m = results.mem
  if (m.orbit !== undefined) {
    console.log(`memory added by a ${MEM_KEYS}-key space (after gc; heap / RSS; the process holds every space made so far)`)
    table(['', 'OrbitDB', 'UserSpace (helia)', 'ratio', 'UserSpace (hub)', 'ratio'], [
      ['heap', bytes(m.orbit.heap), bytes(m.helia.heap), ratio(m.helia.heap, m.orbit.heap), bytes(m.hub.heap), ratio(m.hub.heap, m.orbit.heap)],
      ['RSS', bytes(m.orbit.rss), bytes(m.helia.rss), ratio(m.helia.rss, m.orbit.rss), bytes(m.hub.rss), ratio(m.hub.rss, m.orbit.rss)]
    ])
  }
  console.log(`load average after: ${load()}; total ${ms(elapsedMs)}`)
}

let failed = false
try {
  await main()
} catch (err) {
  failed = true
  console.error(err)
} finally {
  for (const stop of stoppers.reverse()) await stop().catch(err => console.error('while stopping:', err.message))
  await rm(tmp, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)

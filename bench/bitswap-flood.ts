/**
 * Benchmark of a helia node's bitswap limits under a flood: ATTACKERS peers each send want-lists
 * at RATE entries a second (each within its own rate, together past the rate for all peers) to a
 * node that holds 20 blocks, while an honest peer fetches those blocks one by one. Prints the honest
 * fetch times (median, worst) with and without the flood, side by side in one run, and how many of
 * the flooding streams the node reset. With the reserve for light peers (src/store/peer-rate.ts)
 * the honest fetches should stay near their time without a flood.
 *
 * Run: npm run bench:flood   (builds, then runs node dist/bench/bitswap-flood.js)
 *      BENCH_ATTACKERS (default 4), BENCH_RATE (entries a second each, default 7000),
 *      BENCH_WARMUP_MS (flood before the fetches start, default 6000), BENCH_ROUNDS (default 2)
 */
import '../src/polyfill.js'
import * as os from 'node:os'
import { performance } from 'node:perf_hooks'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { BITSWAP_PROTOCOL, BITSWAP_ENTRIES_PER_SECOND, BITSWAP_PEER_ENTRIES_PER_SECOND } from '../src/store/bitswap-guard.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import type { HeliaNode } from '../src/store/helia-node.js'
import type { Stream } from '@libp2p/interface'
import { want, wantlist, framed } from '../test/helpers/bitswap-wire.js'

const ATTACKERS = Number(process.env.BENCH_ATTACKERS ?? 4)
const RATE = Number(process.env.BENCH_RATE ?? 7000)
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 6000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const BLOCKS = 20
const FETCH_GAP_MS = 200
const FETCH_TIMEOUT_MS = 3000

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

interface Flood { stop: () => Promise<void>, sent: () => number, resets: () => number }

/** Each attacker sends a want-list of RATE / 10 entries every 100 ms, dialing again when reset. */
function flood (server: HeliaNode, attackers: HeliaNode[]): Flood {
  let stopped = false
  let seed = 1
  let sent = 0
  let resets = 0
  const run = async (node: HeliaNode): Promise<void> => {
    while (!stopped) {
      let stream: Stream
      try {
        stream = await node.libp2p.dialProtocol(server.libp2p.peerId, BITSWAP_PROTOCOL, { signal: AbortSignal.timeout(5000) })
      } catch {
        resets++
        await sleep(50)
        continue
      }
      while (!stopped && stream.status === 'open') {
        const per = Math.round(RATE / 10)
        stream.send(framed(wantlist(Array.from({ length: per }, () => want(seed++)))))
        sent += per
        await sleep(100)
      }
      if (stream.status !== 'open') resets++
      else stream.abort(new Error('bench done'))
    }
  }
  const runs = attackers.map(run)
  return {
    stop: async () => { stopped = true; await Promise.allSettled(runs) },
    sent: () => sent,
    resets: () => resets
  }
}

/** Fetches each block through bitswap, one after another; returns the times of those fetched and the failures. */
async function fetchAll (honest: HeliaNode, cids: CID[]): Promise<{ times: number[], failed: number }> {
  const times: number[] = []
  let failed = 0
  for (const cid of cids) {
    const t0 = performance.now()
    try {
      // helia 7's blockstore.get is a stream of chunks: the block arrives as it is read
      for await (const chunk of honest.blockstore.get(cid, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) })) void chunk
      times.push(performance.now() - t0)
    } catch {
      failed++
    }
    await sleep(FETCH_GAP_MS)
  }
  return { times, failed }
}

async function main (): Promise<void> {
  console.log(`machine: ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, node ${process.version}, load ${os.loadavg().map(l => l.toFixed(1)).join(' ')}`)
  console.log(`${ATTACKERS} flooding peers at ${RATE} entries a second each (${ATTACKERS * RATE} together; limits: ${BITSWAP_PEER_ENTRIES_PER_SECOND} a peer, ${BITSWAP_ENTRIES_PER_SECOND} all peers); an honest peer fetches ${BLOCKS} blocks, ${FETCH_GAP_MS} ms apart`)
  console.log('')
  console.log('round | flood | honest fetch: median | worst     | failed | flood entries sent | flood streams reset')
  console.log('------|-------|----------------------|-----------|--------|--------------------|--------------------')
  for (let round = 1; round <= ROUNDS; round++) {
    for (const flooding of [false, true]) {
      const server = await createHeliaNode()
      const peers = server.libp2p.getMultiaddrs().map(String).filter(a => !a.includes('/ws'))
      const attackers: HeliaNode[] = []
      const honest = await createHeliaNode({ peers })
      const cids: CID[] = []
      for (let i = 0; i < BLOCKS; i++) {
        const bytes = new TextEncoder().encode(`block ${round} ${i} ${flooding ? 'f' : 'q'}`)
        const cid = CID.createV1(raw.code, await sha256.digest(bytes))
        await server.blockstore.put(cid, bytes)
        cids.push(cid)
      }
      let attack: Flood | undefined
      if (flooding) {
        for (let i = 0; i < ATTACKERS; i++) attackers.push(await createHeliaNode({ peers }))
        attack = flood(server, attackers)
        await sleep(WARMUP_MS)
      }
      const { times, failed } = await fetchAll(honest, cids)
      await attack?.stop()
      console.log(`${String(round).padEnd(5)} | ${(flooding ? 'yes' : 'no').padEnd(5)} | ${`${median(times).toFixed(1)} ms`.padEnd(20)} | ${`${Math.max(...times).toFixed(1)} ms`.padEnd(9)} | ${String(failed).padEnd(6)} | ${String(attack?.sent() ?? 0).padEnd(18)} | ${attack?.resets() ?? 0}`)
      for (const node of [honest, ...attackers, server]) await stopHeliaNode(node)
    }
  }
}

main().then(() => process.exit(0), (err: Error) => { console.error(err); process.exit(1) })

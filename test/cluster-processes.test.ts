/**
 * Three real hub processes (`userspace serve`, built by `npm run build`) peered on 127.0.0.1: a
 * device writes through `failoverStore` while another listens on a different hub; the hub taking the
 * writes is killed with SIGKILL mid-run and restarted later. Every write acknowledged by `flush()`
 * stays readable through the surviving hubs, writes carry on through them, and the restarted hub is
 * redialled by its peers and hears the writes again. The generous timeout is for a loaded 2-core
 * machine (three Node processes starting libp2p at once): it ran in 85 s at a load average of 15.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { failoverStore, hubStore, memoryState, openSpace } from '../src/index.js'
import { account, KEY_C } from './helpers/signers.js'
import { startHubProcess, stopProcess } from './helpers/hub-process.js'
import type { HubProcess } from './helpers/hub-process.js'

let tmp: string
const running = new Set<HubProcess>()

async function start (dir: string, extra: string[] = [], hubs = 0): Promise<HubProcess> {
  const hub = await startHubProcess(join(tmp, dir), extra)
  running.add(hub)
  // Joined: it hears the other hubs on the cluster topic (seconds alone; far longer beside a full test run).
  const deadline = Date.now() + 45_000
  while (otherHubs(hub) < hubs) {
    if (Date.now() > deadline) throw new Error(`hub did not join ${hubs} hubs: ${hub.output()}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  return hub
}

/** How many other hubs a hub last said it hears on the cluster topic. */
function otherHubs (hub: HubProcess): number {
  const counts = [...hub.output().matchAll(/^cluster: (?:joined|left) by \S+ \((\d+) other hubs?\)/gm)]
  return Number(counts.at(-1)?.[1] ?? 0)
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'userspace-cluster-'))
})

afterAll(async () => {
  await Promise.all([...running].map(async hub => stopProcess(hub.child, 'SIGKILL')))
  await rm(tmp, { recursive: true, force: true })
})

it('three hubs: acknowledged writes survive SIGKILL of the hub taking them, writes carry on, subscribers on another hub hear them, and the restarted hub rejoins', async () => {
  const h1 = await start('h1')
  // The third hub reads its peers from a file, as an operator would write it down.
  const peersFile = join(tmp, 'peers.txt')
  const h2 = await start('h2', ['--peer', h1.multiaddrs[0] as string])
  await writeFile(peersFile, `# the cluster\n${h1.multiaddrs[0] as string}\n${h2.multiaddrs[0] as string}\n`)
  const h3 = await start('h3', ['--peers-file', peersFile], 2)
  for (const h of [h1, h2]) {
    while (otherHubs(h) < 2) await new Promise(resolve => setTimeout(resolve, 25))
  }

  const signer = account(KEY_C)
  const writer = await openSpace({ signer, store: failoverStore([h1.url, h2.url, h3.url], { timeoutMs: 5_000 }), state: memoryState() })
  const listener = await openSpace({ signer, store: hubStore(h3.url), state: memoryState() })
  let heard = -1
  listener.subscribe(() => { void listener.get('last').then(v => { if (typeof v === 'number' && v > heard) heard = v }) })

  const acknowledged: number[] = []
  for (let i = 0; i < 10; i++) {
    if (i === 5) {
      // The hub the writer is using dies without a word.
      await stopProcess(h1.child, 'SIGKILL')
      running.delete(h1)
    }
    await writer.set(`k${i}`, i)
    await writer.set('last', i)
    await writer.flush()
    acknowledged.push(i)
  }
  expect(acknowledged).toHaveLength(10)
  await expect.poll(() => heard, { timeout: 5_000, interval: 20 }).toBe(9)

  // A device that never saw the space reads every acknowledged write through each surviving hub.
  for (const h of [h2, h3]) {
    const reader = await openSpace({ signer, store: hubStore(h.url), state: memoryState() })
    const all = await reader.getAll()
    for (const i of acknowledged) expect(all[`k${i}`]).toBe(i)
    await reader.close()
  }

  // Restarted on its directory with the cluster's peers file, as the README runs every hub: same peer
  // id and ports, and it dials the others at once (the others' redial of it is covered in cluster.test.ts,
  // whose backoff may by now be tens of seconds long).
  // The operator's file lists every hub of the cluster by now, as the README writes it.
  await writeFile(peersFile, `# the cluster\n${h1.multiaddrs[0] as string}\n${h2.multiaddrs[0] as string}\n${h3.multiaddrs[0] as string}\n`)
  const again = await start('h1', ['--peers-file', peersFile], 2)
  expect(again.peerId).toBe(h1.peerId)
  const onRestarted = await openSpace({ signer, store: hubStore(again.url), state: memoryState() })
  let heardThere = -1
  onRestarted.subscribe(() => { void onRestarted.get('last').then(v => { if (typeof v === 'number' && v > heardThere) heardThere = v }) })
  await new Promise(resolve => setTimeout(resolve, 300)) // the event stream connects
  await writer.set('last', 10)
  await writer.flush()
  await expect.poll(() => heardThere, { timeout: 5_000, interval: 20 }).toBe(10)
  expect((await onRestarted.getAll()).k0).toBe(0)

  await writer.close()
  await listener.close()
  await onRestarted.close()
}, 150_000)

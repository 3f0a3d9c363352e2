/**
 * Live updates through a real hub process: device B's subscriber hears device A's `set` within a
 * second, with B's map already merged, for several changes in a row.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { openSpace } from '../src/index.js'
import type { Json } from '../src/index.js'
import { account, KEY_C } from './helpers/signers.js'
import { startHubProcess, stopProcess } from './helpers/hub-process.js'
import type { HubProcess } from './helpers/hub-process.js'

let tmp: string
let hub: HubProcess

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'userspace-live-'))
  hub = await startHubProcess(join(tmp, 'hub'))
})

afterAll(async () => {
  if (hub !== undefined) await stopProcess(hub.child)
  await rm(tmp, { recursive: true, force: true })
})

it("device B's subscriber hears device A's set through a hub within 1 s, already merged", async () => {
  const a = await openSpace({ signer: account(KEY_C), hub: hub.url })
  await a.set('volume', 0)
  await a.flush()
  const b = await openSpace({ signer: account(KEY_C), hub: hub.url })
  const heard: Array<{ value: Json | undefined, keys: string[] }> = []
  b.subscribe((event) => { void b.get('volume').then(value => heard.push({ value, keys: event.keys })) })
  await new Promise(resolve => setTimeout(resolve, 200)) // the event stream connects
  for (let i = 1; i <= 3; i++) {
    await a.set('volume', i)
    await a.flush()
    await expect.poll(() => heard.find(h => h.value === i), { timeout: 1000, interval: 5 }).toBeDefined()
    const event = heard.find(h => h.value === i)!
    expect(event.keys).toEqual(['volume'])
  }
  await a.close()
  await b.close()
})

/**
 * Smoke test against real hub processes (`node bin/userspace.js serve`, built by `npm run build`):
 * devices in this process and in child processes write and read through a hub, hear each other's
 * changes over the event stream, read through a second hub that only knows the first over libp2p,
 * and find every acknowledged write after the hub is killed with SIGKILL and restarted.
 * Everything listens on 127.0.0.1 on ports the processes pick; every process started here is
 * killed by pid in afterAll.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memoryState, openSpace } from '../src/index.js'
import { hubStore } from '../src/store/hub.js'
import type { Space, ChangeEvent } from '../src/index.js'
import type { ChildProcess } from 'node:child_process'
import { ROOT, BIN, startHubProcess as startHub, stopProcess } from './helpers/hub-process.js'
import type { HubProcess } from './helpers/hub-process.js'

const DIST_INDEX = new URL('../dist/src/index.js', import.meta.url).href
const DIST_POLYFILL = new URL('../dist/src/polyfill.js', import.meta.url).href

const children = new Set<ChildProcess>()
const spaces = new Set<Space>()
let tmp: string

/** Starts `userspace serve --port 0` (shared helper) and remembers it so afterAll stops it. */
async function startHubProcess (dataDir: string, extra: string[] = []): Promise<HubProcess> {
  const hub = await startHub(dataDir, extra)
  children.add(hub.child)
  expect(hub.multiaddrs.length).toBeGreaterThan(0)
  expect(hub.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
  expect(hub.url).not.toMatch(/:0$/)
  return hub
}

/** Runs a device in a separate Node process: `body` is the inside of an async function with `space`. */
async function runDevice (hubUrl: string, walletKey: string, body: string): Promise<string> {
  const script = `
    await import(${JSON.stringify(DIST_POLYFILL)})
    const { openSpace } = await import(${JSON.stringify(DIST_INDEX)})
    const { privateKeyToAccount } = await import('viem/accounts')
    const space = await openSpace({ signer: privateKeyToAccount(process.env.WALLET_KEY), hub: process.env.HUB_URL })
    try { ${body} } finally { await space.close() }
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, HUB_URL: hubUrl, WALLET_KEY: walletKey },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  children.add(child)
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  const code = await new Promise<number | null>(resolve => child.once('exit', (c) => { resolve(c) }))
  if (code !== 0) throw new Error(`device process exited with ${String(code)}: ${err}`)
  return out
}

async function open (walletKey: `0x${string}`, hub: string): Promise<Space> {
  const space = await openSpace({ signer: privateKeyToAccount(walletKey), hub })
  spaces.add(space)
  return space
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

async function waitFor (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('dist/ is missing: run `npm run build` (npm test does) before this test')
  }
  tmp = await mkdtemp(join(tmpdir(), 'userspace-smoke-'))
})

afterAll(async () => {
  for (const space of spaces) await space.close().catch(() => {})
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try { process.kill(child.pid, 'SIGKILL') } catch {}
    }
  }
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true })
})

describe('userspace serve', () => {
  it('two devices in two processes write through one hub; the first hears the second live', async () => {
    const hub = await startHubProcess(join(tmp, 'one'))
    const walletKey = generatePrivateKey()
    const a = await open(walletKey, hub.url)
    const changes: ChangeEvent[] = []
    a.subscribe((event) => { changes.push(event) })
    await a.set('from-a', { n: 1 })
    await a.flush()

    const out = await runDevice(hub.url, walletKey, `
      console.log('read ' + JSON.stringify(await space.get('from-a')))
      await space.set('from-b', 'hello')
      await space.flush()
      console.log('wrote')
    `)
    expect(out).toContain('read {"n":1}')
    expect(out).toContain('wrote')

    await waitFor('the change event from device B', () => changes.some(c => c.keys.includes('from-b')))
    expect(await a.get('from-b')).toBe('hello')

    // The hub indexed the owner address
    expect(await hubStore(hub.url).lookupAddress?.(a.address)).toBe(a.name)
    expect(await stopProcess(hub.child)).toBe(0)
  })

  it('a space written through one hub reads and writes through another that joins later and only peers with it', async () => {
    const first = await startHubProcess(join(tmp, 'h1'))
    const walletKey = generatePrivateKey()

    const writer = await open(walletKey, first.url)
    await writer.set('greeting', 'written at hub 1')
    await writer.flush()
    await writer.public.set('nick', 'alice')
    await writer.flush()

    // Hub 2 joins after the writes, knowing nothing but hub 1's address (and counts libp2p peers alone)
    const second = await startHubProcess(join(tmp, 'h2'), ['--peer', first.multiaddrs[0] as string, '--peer-groups', 'off'])
    await expect.poll(() => second.output(), { timeout: 5_000 }).toMatch(/^peer groups: off /m)
    expect(first.output()).not.toMatch(/^peer groups: /m)

    const reader = await open(walletKey, second.url)
    expect(await reader.get('greeting')).toBe('written at hub 1')
    expect(await reader.public.get('nick')).toBe('alice')

    // And back: a write through hub 2 is read through hub 1
    await reader.set('reply', 'written at hub 2')
    await reader.flush()
    const third = await open(walletKey, first.url)
    expect(await third.get('reply')).toBe('written at hub 2')
    expect(await third.get('greeting')).toBe('written at hub 1')
  }, 60_000)

  it('keeps every acknowledged write when killed with SIGKILL and restarted on the same data', async () => {
    const dir = join(tmp, 'durable')
    const hub = await startHubProcess(dir)
    const walletKey = generatePrivateKey()
    const space = await open(walletKey, hub.url)
    const written: Record<string, number> = {}
    for (let i = 0; i < 8; i++) {
      await space.set(`k${i}`, i)
      await space.flush()
      written[`k${i}`] = i
    }
    const record = await hubStore(hub.url).getRecord(space.name)
    await stopProcess(hub.child, 'SIGKILL')
    await space.close()

    const again = await startHubProcess(dir)
    expect(again.peerId).toBe(hub.peerId)
    expect(await hubStore(again.url).getRecord(space.name)).toEqual(record)
    const reopened = await open(walletKey, again.url)
    expect(await reopened.getAll()).toEqual(written)
    expect(await hubStore(again.url).lookupAddress?.(reopened.address)).toBe(reopened.name)
  }, 60_000)

  it('a write made while the hub is down is kept through close() and published when the hub is back', async () => {
    const dir = join(tmp, 'down')
    const first = await startHubProcess(dir)
    const port = new URL(first.url).port
    const walletKey = generatePrivateKey()
    const signer = privateKeyToAccount(walletKey)
    const a = await openSpace({ signer, hub: first.url }) // the default state: a file, per device
    await a.set('before', 1)
    await a.flush()
    expect(await stopProcess(first.child)).toBe(0)
    await a.set('queued', 2)
    expect(await a.get('queued')).toBe(2)
    expect(await a.close()).toEqual({ unpublished: ['queued'] })

    const back = await startHubProcess(dir, ['--port', port])
    const again = await open(walletKey, back.url)  // the same device opens again: it publishes
    await again.flush()
    expect(again.pending).toBe(0)
    const other = await openSpace({ signer, hub: back.url, state: memoryState() }) // another device
    spaces.add(other)
    expect(await other.getAll()).toEqual({ before: 1, queued: 2 })
    expect(await stopProcess(back.child)).toBe(0)
  })

  it('refuses oversized and malformed bodies over a real socket, and keeps serving', async () => {
    const hub = await startHubProcess(join(tmp, 'bodies'))
    const space = await open(generatePrivateKey(), hub.url)
    await space.set('kept', true)
    await space.flush()
    const base = new URL(hub.url)
    // A body sent in chunks with no Content-Length, larger than a record may be
    const chunked = await new Promise<{ status: number, body: string }>((resolve, reject) => {
      const req = httpRequest({ host: base.hostname, port: base.port, method: 'PUT', path: `/routing/v1/ipns/${space.name}`, headers: { 'content-type': 'application/vnd.ipfs.ipns-record', 'transfer-encoding': 'chunked' } }, (res) => {
        let body = ''
        res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      })
      req.on('error', reject)
      for (let i = 0; i < 20; i++) req.write(new Uint8Array(1024))
      req.end()
    })
    // Over the IPNS spec's 10 KiB: not a valid record (400, as the routing spec lists for PUT).
    expect(chunked.status).toBe(400)
    expect(JSON.parse(chunked.body)).toMatchObject({ name: 'InvalidRecordError' })

    const garbage = await fetch(`${hub.url}/api/v1/blocks`, { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: 'not a car' })
    expect(garbage.status).toBe(400)
    const record = await fetch(`${hub.url}/routing/v1/ipns/${space.name}`, { method: 'PUT', headers: { 'content-type': 'application/vnd.ipfs.ipns-record' }, body: new Uint8Array(100) })
    expect(record.status).toBe(400)
    expect(await space.get('kept')).toBe(true)
    const reader = await open(generatePrivateKey(), hub.url)
    await reader.set('still', 'serving')
    await reader.flush()
    expect(await stopProcess(hub.child)).toBe(0)
  })

  it('refuses unknown flags and commands with exit code 2', async () => {
    const run = async (args: string[]): Promise<{ code: number | null, err: string }> => {
      const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
      children.add(child)
      let err = ''
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
      const code = await new Promise<number | null>(resolve => child.once('exit', (c) => { resolve(c) }))
      return { code, err }
    }
    const flag = await run(['serve', '--no-such-flag'])
    expect(flag.code).toBe(2)
    expect(flag.err).toMatch(/no-such-flag/)
    const command = await run(['frobnicate'])
    expect(command.code).toBe(2)
    expect(command.err).toMatch(/unknown command/)
    expect((await run(['serve', '--port', 'eighty'])).code).toBe(2)
    const groups = await run(['serve', '--peer-groups', 'maybe'])
    expect(groups.code).toBe(2)
    expect(groups.err).toMatch(/--peer-groups expected on or off, got "maybe"/)
    expect((await run(['--help'])).code).toBe(0)
  })
})

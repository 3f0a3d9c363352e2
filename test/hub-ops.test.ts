/**
 * Operating a hub and the CLI: the data-directory lock, libp2p addresses that survive a restart,
 * `--peer` dialled in the background with retries, and CLI errors that name the user's mistake
 * instead of printing a stack. Hubs run in this process (`startHub`, `main(argv, io)`) on 127.0.0.1,
 * on ports they pick; each test stops what it starts.
 */
import { spawn } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { main } from '../src/cli/main.js'
import { EXIT_CODE } from '../src/errors.js'
import { startHub } from '../src/hub/server.js'
import { lineLogger } from '../src/logger.js'
import { createHubApp } from '../src/hub/app.js'
import { createNextIdApp } from '../src/hub/nextid.js'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { openSpace, privateKeySigner } from '../src/index.js'
import { hubStore } from '../src/store/hub.js'
import { DiskBlockstore } from '../src/store/level-blocks.js'
import { LevelDatastore } from 'datastore-level'
import { LANDED_PREFIX } from '../src/hub/storage.js'
import { ROOT } from './helpers/hub-process.js'
import type { CliIO } from '../src/cli/main.js'
import type { RunningHub } from '../src/hub/server.js'

let tmp: string
const hubs = new Set<RunningHub>()

beforeAll(async () => { tmp = await mkdtemp(join(tmpdir(), 'userspace-ops-')) })
afterAll(async () => {
  await Promise.all([...hubs].map(async hub => hub.stop()))
  await rm(tmp, { recursive: true, force: true })
})

async function hubOn (directory: string, options: Parameters<typeof startHub>[0] = {}): Promise<RunningHub> {
  const hub = await startHub({ port: 0, directory, rateLimit: 0, verifyThreads: 0, republishIntervalMs: 0, nextId: false, ...options })
  hubs.add(hub)
  return hub
}

async function stop (hub: RunningHub): Promise<void> {
  await hub.stop()
  hubs.delete(hub)
}

/** A CliIO that records what the command prints. */
function captureIO (env: Record<string, string> = {}): CliIO & { stdout: string[], stderr: string[] } {
  const stdout: string[] = []
  const stderr: string[] = []
  return { stdout, stderr, out: l => { stdout.push(l) }, err: l => { stderr.push(l) }, env, stopSignal: async () => new Promise<string>(() => {}) }
}

/** The pid of a process that has exited. */
async function deadPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise(resolve => child.once('exit', resolve))
  return child.pid as number
}

describe('the data directory', () => {
  it('refuses a second hub on a directory in use with DataDirectoryLockedError naming the process, and frees it on stop', async () => {
    const directory = join(tmp, 'locked')
    const first = await hubOn(directory)
    const refused = await startHub({ port: 0, directory }).then(() => undefined, (err: Error) => err)
    expect(refused?.name).toBe('DataDirectoryLockedError')
    expect(refused?.message).toContain(String(process.pid))
    expect(EXIT_CODE.DataDirectoryLockedError).toBe(12)
    await stop(first)
    const second = await hubOn(directory)
    expect(second.peerId).toBe(first.peerId)
    await stop(second)
  })

  it('takes over a lock left by a process that has died, or by an earlier process with this pid', async () => {
    for (const pid of [await deadPid(), process.pid]) {
      const directory = join(tmp, `stale-${pid}`)
      await mkdir(directory, { recursive: true })
      await writeFile(join(directory, 'hub.pid'), `${pid}\n`)
      const hub = await hubOn(directory)
      expect(await readFile(join(directory, 'hub.pid'), 'utf8')).toBe(`${process.pid}\n`)
      await stop(hub)
    }
  })

  it('names the process holding the directory when it is another one', async () => {
    const directory = join(tmp, 'held')
    await mkdir(directory, { recursive: true })
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
    try {
      await writeFile(join(directory, 'hub.pid'), `${holder.pid}\n`)
      const err = await startHub({ port: 0, directory }).then(() => undefined, (e: Error) => e)
      expect(err?.name).toBe('DataDirectoryLockedError')
      expect(err?.message).toContain(`another hub (process ${holder.pid})`)
    } finally {
      holder.kill('SIGKILL')
    }
  })
})

describe('blocks on disk', () => {
  it('keeps blocks in LevelDB, each put fsynced before an upload is acknowledged (and not with fsync off)', async () => {
    const syncs: boolean[] = []
    const put = DiskBlockstore.prototype.put
    const spy = vi.spyOn(DiskBlockstore.prototype, 'put').mockImplementation(async function (this: DiskBlockstore, ...args: Parameters<DiskBlockstore['put']>) {
      syncs.push((this as unknown as { sync: boolean }).sync)
      return put.apply(this, args)
    })
    try {
      for (const fsync of [true, false]) {
        syncs.length = 0
        const directory = join(tmp, `disk-${fsync}`)
        const hub = await hubOn(directory, { fsync })
        const space = await openSpace({ signer: privateKeySigner(new Uint8Array(32).fill(8)), store: hubStore(hub.url) })
        await space.set('k', 'v')
        await space.flush()
        await space.close()
        expect(syncs.length).toBeGreaterThan(0)
        expect(new Set(syncs)).toEqual(new Set([fsync]))
        await stop(hub)
        expect((await readdir(join(directory, 'blockstore'))).includes('CURRENT')).toBe(true)
        // what it stored is recorded in compact entries (the blockstore finds blocks by their multihash start)
        const datastore = new LevelDatastore(join(directory, 'datastore'))
        await datastore.open()
        const headers: string[] = []
        for await (const { value } of datastore.query({ prefix: LANDED_PREFIX.slice(0, -1) })) headers.push(new TextDecoder().decode(value.subarray(0, value.indexOf(0x0a))))
        await datastore.close()
        expect(headers.length).toBeGreaterThan(0)
        expect(headers.every(h => h.endsWith(' s12'))).toBe(true)
      }
    } finally {
      spy.mockRestore()
    }
  })
})

describe('libp2p identity and addresses', () => {
  it('keeps its peer id and multiaddrs across restarts, and picks new ports when the old ones are taken', async () => {
    const directory = join(tmp, 'stable')
    const first = await hubOn(directory)
    await stop(first)
    const again = await hubOn(directory)
    expect(again.peerId).toBe(first.peerId)
    expect([...again.multiaddrs].sort()).toEqual([...first.multiaddrs].sort())
    await stop(again)

    // Someone else took the TCP port meanwhile.
    const port = Number(/\/tcp\/(\d+)\/p2p\//.exec(first.multiaddrs.find(a => !a.includes('/ws/')) ?? '')?.[1])
    const squatter = createServer()
    await new Promise<void>(resolve => squatter.listen(port, '127.0.0.1', resolve))
    const lines: string[] = []
    try {
      const moved = await hubOn(directory, { logger: lineLogger(l => { lines.push(l) }) })
      expect(moved.peerId).toBe(first.peerId)
      expect(moved.multiaddrs.some(a => a.includes(`/tcp/${port}/`))).toBe(false)
      expect(lines.join('\n')).toMatch(/picking new ports/)
      await stop(moved)
    } finally {
      squatter.close()
    }
  })
})

describe('--peer', () => {
  it('starts while the peer is down, says so, and connects once it is up', async () => {
    const peerDir = join(tmp, 'peer')
    const peer = await hubOn(peerDir)
    const address = peer.multiaddrs[0] as string
    await stop(peer)

    const lines: string[] = []
    const hub = await hubOn(join(tmp, 'dialer'), { peers: [address], peerRetryMinMs: 100, peerRetryMaxMs: 400, logger: lineLogger(l => { lines.push(l) }) })
    await expect.poll(() => lines.join('\n'), { timeout: 10_000 }).toMatch(/cannot reach .*retrying in/)

    // Same directory, same ports: the address the dialer was given is valid again.
    const back = await hubOn(peerDir)
    expect(back.multiaddrs).toContain(address)
    await expect.poll(() => lines.join('\n'), { timeout: 20_000 }).toContain(`peer: connected to ${address}`)
    expect(hub.helia.libp2p.getConnections().some(c => c.remotePeer.toString() === back.peerId)).toBe(true)
  })

  it('refuses a malformed peer address at start with InvalidInputError', async () => {
    const err = await startHub({ port: 0, directory: false, peers: ['not a multiaddr'] }).then(() => undefined, (e: Error) => e)
    expect(err?.name).toBe('InvalidInputError')
  })
})

describe('CLI errors and --json', () => {
  it('export to a folder that does not exist: exit 2, the path named, no stack trace, no network', async () => {
    const io = captureIO()
    const code = await main(['export', '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266', '-o', join(tmp, 'missing', 'dir', 'x.car'), '--hub', 'http://127.0.0.1:9'], io)
    expect(code).toBe(2)
    expect(io.stderr.join('\n')).toMatch(/cannot write .*x\.car: the folder .*missing\/dir does not exist/)
    expect(io.stderr.join('\n')).not.toMatch(/\n\s+at /)
  })

  it('export and import print JSON with --json', async () => {
    const hub = await hubOn(join(tmp, 'json'))
    const space = await openSpace({ signer: privateKeySigner(new Uint8Array(32).fill(7)), store: hubStore(hub.url) })
    await space.set('io.example.app', { theme: 'dark' })
    await space.flush()
    const file = join(tmp, 'space.car')
    const out = captureIO()
    const exportCode = await main(['export', space.name, '-o', file, '--json', '--hub', hub.url], out)
    expect(exportCode, out.stderr.join('\n')).toBe(0)
    const exported = JSON.parse(out.stdout.join('\n')) as Record<string, unknown>
    expect(exported).toMatchObject({ name: space.name, sequence: space.sequence, file })
    expect(exported.bytes).toBe((await readFile(file)).length)
    const into = captureIO()
    expect(await main(['import', file, '--json', '--hub', hub.url], into)).toBe(0)
    expect(JSON.parse(into.stdout.join('\n'))).toMatchObject({ name: space.name, sequence: space.sequence, hub: hub.url })
    await space.close()
  })

  it('bin/userspace.js without a build says to run the build, with no stack trace', async () => {
    const clone = join(tmp, 'unbuilt')
    await mkdir(join(clone, 'bin'), { recursive: true })
    await copyFile(join(ROOT, 'bin', 'userspace.js'), join(clone, 'bin', 'userspace.js'))
    await writeFile(join(clone, 'package.json'), '{"type":"module"}\n')
    const child = spawn(process.execPath, [join(clone, 'bin', 'userspace.js'), 'serve'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
    expect(code).toBe(1)
    expect(stderr).toMatch(/^userspace: .*dist\/src\/cli\/main\.js is missing: run `npm run build` in /)
    expect(stderr).not.toMatch(/\n\s+at /)
  })
  it('a command whose reader went away (`| head`) ends as it would have, with no stack trace', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'userspace.js'), 'serve', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] })
    // the reader leaves before the command writes anything: every write meets a closed pipe (EPIPE)
    child.stdout.destroy()
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
    expect(stderr).toBe('')
    expect(code).toBe(0)
  })
})

describe('error bodies', () => {
  it('carry a name for refusals raised as HTTP statuses: 415, 406, 400 and the Next.ID routes', async () => {
    const datastore = new MemoryDatastore()
    const blockstore = new MemoryBlockstore()
    const app = createHubApp({ datastore, blockstore, routes: [createNextIdApp({ datastore, blockstore })] }, { rateLimit: 0 })
    const name = 'k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8'
    const cases: Array<[string, RequestInit, number, string]> = [
      [`/routing/v1/ipns/${name}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' }, 406, 'NotAcceptableError'],
      ['/api/v1/blocks', { method: 'POST', body: 'x' }, 415, 'UnsupportedMediaTypeError'],
      ['/ipfs/bafkqaaa', {}, 400, 'InvalidInputError'],
      ['/ipfs/bafkqaaa', { headers: { accept: 'text/html' } }, 406, 'NotAcceptableError'],
      ['/v1/kv/payload', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' }, 415, 'UnsupportedMediaTypeError'],
      ['/api/v1/nextid/import', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }, 415, 'UnsupportedMediaTypeError']
    ]
    for (const [path, init, status, errorName] of cases) {
      const res = await app.request(path, init)
      expect(res.status, path).toBe(status)
      const body = await res.json() as { message?: unknown, name?: unknown }
      expect(body.name, path).toBe(errorName)
      expect(typeof body.message, path).toBe('string')
    }
  })
})

/**
 * The `userspace` command as a new user runs it from the README, in process through `main(argv, io)`
 * against hubs started in this process (the same code as the binary, without seconds of process
 * start per command); one test runs the real binary to check that exit codes reach the shell.
 * Moving a space and a Next.ID avatar chain from one hub to a fresh one.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openSpace } from '../src/index.js'
import { EXIT_CODE } from '../src/errors.js'
import { account, KEY_A } from './helpers/signers.js'
import { runCli } from './helpers/hub-process.js'
import { runMain } from './helpers/cli.js'
import { startHub } from '../src/hub/index.js'
import type { RunningHub } from '../src/hub/index.js'

let tmp: string
let hub1: RunningHub
let hub2: RunningHub
const env = (hub: RunningHub): Record<string, string> => ({ USERSPACE_PRIVATE_KEY: KEY_A, USERSPACE_HUB: hub.url })

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'userspace-cli-'))
  ;[hub1, hub2] = await Promise.all([startTestHub(join(tmp, 'hub1')), startTestHub(join(tmp, 'hub2'))])
})

afterAll(async () => {
  await Promise.all([hub1, hub2].filter(Boolean).map(async h => { await h.stop() }))
  await rm(tmp, { recursive: true, force: true })
})

async function startTestHub (directory: string): Promise<RunningHub> {
  return await startHub({ host: '127.0.0.1', port: 0, directory, listen: ['/ip4/127.0.0.1/tcp/0'], verifyThreads: 0 })
}

describe('userspace get / set / remove / ls / patch', () => {
  it('works on a space through a hub, with JSON in and out', async () => {
    expect((await runMain(['set', 'io.example.app', '{"theme":"dark","volume":3}'], env(hub1))).code).toBe(0)
    const got = await runMain(['get', 'io.example.app'], env(hub1))
    expect(got.code).toBe(0)
    expect(JSON.parse(got.stdout)).toEqual({ theme: 'dark', volume: 3 })
    expect((await runMain(['patch', '{"io.example.app":{"volume":null},"other":true}'], env(hub1))).code).toBe(0)
    expect((await runMain(['set', 'name', '-', '--public'], env(hub1), '"Alice"')).code).toBe(0)
    const ls = await runMain(['ls', '--json'], env(hub1))
    expect(JSON.parse(ls.stdout)).toEqual({ 'io.example.app': { theme: 'dark' }, other: true })
    expect((await runMain(['remove', 'other', '--json'], env(hub1))).stdout).toMatch(/"sequence":\d+/)
    expect((await runMain(['ls'], env(hub1))).stdout.trim().split('\n')).toEqual(['io.example.app'])
    // the library sees the same space
    const space = await openSpace({ signer: account(KEY_A), hub: hub1.url })
    expect(await space.getAll()).toEqual({ 'io.example.app': { theme: 'dark' } })
    expect(await space.public.get('name')).toBe('Alice')
    await space.close()
  })

  it('reads the key from a key file, and never from an argument', async () => {
    const keyFile = join(tmp, 'wallet.key')
    await writeFile(keyFile, KEY_A + '\n', { mode: 0o600 })
    const got = await runMain(['get', 'io.example.app', '--key-file', keyFile, '--hub', hub1.url])
    expect(got.code).toBe(0)
    const noKey = await runMain(['get', 'io.example.app', '--hub', hub1.url], { USERSPACE_PRIVATE_KEY: '' })
    expect(noKey.code).toBe(2)
    expect(noKey.stderr).toMatch(/USERSPACE_PRIVATE_KEY|--key-file/)
    expect((await runMain(['get', 'io.example.app', '--key', KEY_A, '--hub', hub1.url])).code).toBe(2)
  })

  it('exits with the code of each error', async () => {
    expect((await runMain(['get', 'missing-key'], env(hub1))).code).toBe(EXIT_CODE.NotFoundError)
    // the real binary hands the same code to the shell
    expect((await runCli(['get', 'missing-key'], env(hub1))).code).toBe(EXIT_CODE.NotFoundError)
    const bad = await runMain(['set', 'k', '{not json'], env(hub1))
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/must be JSON/)
    expect((await runMain(['set', 'k', '1'], { ...env(hub1), USERSPACE_PRIVATE_KEY: '0x1234' })).code).toBe(EXIT_CODE.InvalidInputError)
    expect((await runMain(['ls'], { ...env(hub1), USERSPACE_HUB: 'http://127.0.0.1:9' })).code).toBe(EXIT_CODE.StoreError)
    expect((await runMain(['frobnicate'])).code).toBe(2)
    const help = await runMain(['export', '--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/Examples:\n\s+userspace export/)
  })
})

describe('userspace inspect', () => {
  it("shows anyone's space by address without a key", async () => {
    const address = account(KEY_A).address
    const res = await runMain(['inspect', address, '--json', '--hub', hub1.url], { USERSPACE_PRIVATE_KEY: '' })
    expect(res.code, res.stderr).toBe(0)
    const info = JSON.parse(res.stdout)
    expect(info.owner).toBe(address)
    expect(info.public).toEqual({ name: 'Alice' })
    expect(info.history.length).toBe(info.sequence)
    expect(JSON.stringify(info)).not.toMatch(/dark/) // private data stays private
  })
})

describe('moving a space between hubs', () => {
  it('export from hub 1, import into a fresh hub 2, open there: same map, same history', async () => {
    const file = join(tmp, 'space.car')
    const address = account(KEY_A).address
    const exported = await runMain(['export', address, '-o', file, '--hub', hub1.url, '--progress'])
    expect(exported.code, exported.stderr).toBe(0)
    expect(exported.stderr).toMatch(/export read\s+\[[#.]+\] \d+\/\d+ blocks/)
    const imported = await runMain(['import', file, '--hub', hub2.url, '--progress'])
    expect(imported.code, imported.stderr).toBe(0)
    expect(imported.stderr).toMatch(/import upload\s+\[#+\] (\d+)\/\1 blocks/)
    const there = await openSpace({ signer: account(KEY_A), hub: hub2.url })
    const here = await openSpace({ signer: account(KEY_A), hub: hub1.url })
    expect(await there.getAll()).toEqual(await here.getAll())
    expect((await there.history()).map(h => h.root.toString())).toEqual((await here.history()).map(h => h.root.toString()))
    await there.close(); await here.close()
  })

  it('refuses a tampered CAR with a clear message and imports nothing', async () => {
    const file = join(tmp, 'space.car')
    const car = await readFile(file)
    car[car.length - 10]! ^= 0xff
    const tampered = join(tmp, 'tampered.car')
    await writeFile(tampered, car)
    const fresh = await startTestHub(join(tmp, 'hub3'))
    try {
      const res = await runMain(['import', tampered, '--hub', fresh.url])
      expect(res.code).toBe(EXIT_CODE.IntegrityError)
      expect(res.stderr).toMatch(/does not match its CID/)
      const name = (await runMain(['inspect', account(KEY_A).address, '--hub', fresh.url])).code
      expect(name).toBe(EXIT_CODE.NotFoundError)
    } finally {
      await fresh.stop()
    }
  })
})

describe('moving a Next.ID avatar chain between hubs', () => {
  it('export --avatar from hub 1, import into hub 2: the same signed profile', async () => {
    const secp = await import('@noble/secp256k1')
    const { bytesToHex, hexToBytes, toBase64 } = await import('../src/crypto/bytes.js')
    const { privateKeySigner } = await import('../src/space/local-signer.js')
    const avatar = '0x' + bytesToHex(secp.getPublicKey(hexToBytes(KEY_A), true))
    const signer = privateKeySigner(KEY_A)
    for (const patch of [{ name: 'alice' }, { bio: 'hello', name: null }]) {
      const payload = await (await fetch(`${hub1.url}/v1/kv/payload`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ avatar, platform: 'nextid', identity: avatar, patch })
      })).json() as { uuid: string, sign_payload: string, created_at: number }
      const signature = toBase64(hexToBytes(await signer.signMessage(payload.sign_payload)))
      const res = await fetch(`${hub1.url}/v1/kv`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ avatar, platform: 'nextid', identity: avatar, uuid: payload.uuid, created_at: payload.created_at, signature, patch })
      })
      expect(res.status, await res.clone().text()).toBe(201)
    }
    const file = join(tmp, 'avatar.car')
    const exported = await runMain(['export', '--avatar', avatar, '-o', file, '--hub', hub1.url])
    expect(exported.code, exported.stderr).toBe(0)
    const imported = await runMain(['import', file, '--hub', hub2.url])
    expect(imported.code, imported.stderr).toBe(0)
    expect(imported.stdout).toMatch(/2 signed patches/)
    const one = await (await fetch(`${hub1.url}/v1/kv?avatar=${avatar}`)).text()
    const two = await (await fetch(`${hub2.url}/v1/kv?avatar=${avatar}`)).text()
    expect(two).toBe(one)
    expect(JSON.parse(two).proofs[0].content).toEqual({ bio: 'hello' })
  })
})

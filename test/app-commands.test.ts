/**
 * `userspace apps` and `userspace revoke`, run in process (`main(argv, io)`) against a real hub
 * process, with the owner's key like the other space commands.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as secp from '@noble/secp256k1'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memoryState, openSpace, privateKeySigner } from '../src/index.js'
import { EXIT_CODE } from '../src/errors.js'
import { main } from '../src/cli/main.js'
import { startHubProcess, stopProcess } from './helpers/hub-process.js'
import type { HubProcess } from './helpers/hub-process.js'
import type { CliIO } from '../src/cli/main.js'

let tmp: string
let hub: HubProcess
const key = '0x' + secp.etc.bytesToHex(secp.utils.randomSecretKey())

async function cli (args: string[]): Promise<{ code: number, out: string[], err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  const io: CliIO = { out: l => out.push(l), err: l => err.push(l), env: { USERSPACE_PRIVATE_KEY: key, USERSPACE_HUB: hub.url }, stopSignal: async () => new Promise(() => {}) }
  return { code: await main(args, io), out, err }
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'userspace-apps-cli-'))
  hub = await startHubProcess(join(tmp, 'hub'))
})

afterAll(async () => {
  if (hub !== undefined) await stopProcess(hub.child)
  await rm(tmp, { recursive: true, force: true })
})

describe('userspace apps / revoke', () => {
  it('lists the grants a connect page issued, and revokes one so its grant no longer sees new writes', async () => {
    expect(await cli(['apps'])).toMatchObject({ code: 0, out: ['no app holds a grant'] })
    const owner = await openSpace({ signer: privateKeySigner(key), hub: hub.url, state: memoryState() })
    const grant = await owner.grant('io.example.app', { origin: 'https://app.example', read: ['profile'] })
    await owner.close()

    const listed = await cli(['apps', '--json'])
    expect(listed.code).toBe(0)
    expect(JSON.parse(listed.out[0] as string)).toEqual([expect.objectContaining({ app: 'io.example.app', origin: 'https://app.example', read: ['profile'], current: true })])
    expect((await cli(['apps'])).out[0]).toMatch(/^io\.example\.app\thttps:\/\/app\.example\treads profile\tissued /)

    const revoked = await cli(['revoke', 'io.example.app', '--json'])
    expect(revoked.code).toBe(0)
    const moved = JSON.parse(revoked.out[0] as string).moved as Array<{ namespace: string, epoch: number, name: string }>
    expect(moved.map(m => [m.namespace, m.epoch])).toEqual([['io.example.app', 1], ['profile', 1]])
    expect(moved[0]?.name).not.toBe(grant.namespaces[0]?.name)
    expect((await cli(['apps'])).out).toEqual(['no app holds a grant'])

    // The revoked grant still opens its old namespace, which no longer receives anything.
    const again = await openSpace({ signer: privateKeySigner(key), hub: hub.url, state: memoryState() })
    const fresh = await again.grant('io.example.app', { origin: 'https://app.example' })
    const current = await openSpace({ grant: fresh, hub: hub.url, state: memoryState() })
    await current.set('after', 1)
    await current.close()
    await again.close()
    const old = await openSpace({ grant, hub: hub.url, state: memoryState() })
    expect(await old.get('after')).toBeUndefined()
    await old.close()
  })

  it('refuses an unknown app and a malformed id with their exit codes, and needs a key', async () => {
    expect((await cli(['revoke', 'io.unknown.app'])).code).toBe(EXIT_CODE.NotFoundError)
    expect((await cli(['revoke', 'Not An App'])).code).toBe(EXIT_CODE.InvalidScopeError)
    expect((await cli(['revoke'])).code).toBe(2)
    const help = await cli(['revoke', '--help'])
    expect(help.code).toBe(0)
    expect(help.out.join('\n')).toMatch(/userspace revoke io\.example\.app/)
  })
})

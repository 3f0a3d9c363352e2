/**
 * Scoped app access in real Chromium with two (and three) origins: the hub (connect page, demo
 * wallet) and the example dapp served by a second static server on another port. The dapp connects
 * through the hub's /connect, gets exactly its scope, writes its namespace and reads the shared
 * profile; no message to its origin and nothing in its storage holds the master signature or keys;
 * a request from a third origin for the same app is refused; bad requests are refused with a named
 * error and grant nothing; after revocation the dapp cannot read what is written afterwards.
 */
import { createServer } from 'node:http'
import { readFile, stat } from 'node:fs/promises'
import { join, resolve, sep } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { hubStore, memoryState, openSpace, parseGrant, privateKeySigner } from '../src/index.js'
import type { Grant, Space } from '../src/index.js'
import { normalizeSignature } from '../src/crypto/eip191.js'
import { deriveAppsRoot, deriveKeys, OPEN_MESSAGE } from '../src/crypto/keys.js'
import { decodeKeys } from '../src/apps/grant.js'
import { openNamespace } from '../src/apps/subspace.js'
import { CONNECT_REQUEST } from '../src/connect/messages.js'
import { DemoHarness, demoKey, openDemo } from './helpers/demo-browser.js'
import { ROOT } from './helpers/hub-process.js'
import type { DemoHub } from './helpers/demo-browser.js'
import type { Server } from 'node:http'
import type { BrowserContext, Page } from 'playwright-core'

const DIST = join(ROOT, 'dist', 'demo')
const APP = 'io.example.dapp'
const h = new DemoHarness()
let hub: DemoHub
const servers: Server[] = []

/** A static server for dist/demo on 127.0.0.1 and a port of its own: another origin than the hub. */
async function staticOrigin (): Promise<string> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
    const file = resolve(DIST, '.' + path)
    if (!file.startsWith(DIST + sep)) { res.writeHead(404).end(); return }
    stat(file).then(async (info) => {
      if (!info.isFile()) throw new Error('not a file')
      const type = file.endsWith('.html') ? 'text/html' : file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css' : 'application/octet-stream'
      res.writeHead(200, { 'Content-Type': type }).end(await readFile(file))
    }).catch(() => { res.writeHead(404).end() })
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return `http://127.0.0.1:${address.port}`
}

let dappOrigin: string
let evilOrigin: string
let context: BrowserContext
let key: string
let owner: Space
let hubPage: Page
/** The grant the dapp received in the first test. */
let dappGrant: Grant
/** Every secret the master signature gives, as the dapp's origin could see it (hex and base64). */
let secrets: string[]

beforeAll(async () => {
  await h.start()
  hub = await h.startHub()
  dappOrigin = await staticOrigin()
  evilOrigin = await staticOrigin()
  hubPage = await h.newPage({ serviceWorkers: 'block' })
  context = hubPage.context()
  // Record every message any page on the dapp's or the third origin receives, before its scripts run.
  await context.addInitScript((origins: string[]) => {
    if (!origins.includes(location.origin)) return
    const seen: string[] = [];
    (window as unknown as { seenMessages: string[] }).seenMessages = seen
    window.addEventListener('message', (e) => { seen.push(JSON.stringify(e.data)) }, true)
  }, [dappOrigin, evilOrigin])
  await openDemo(hubPage, hub.url)
  key = await demoKey(hubPage)
  const signer = privateKeySigner(key)
  const signature = normalizeSignature(OPEN_MESSAGE, await signer.signMessage(OPEN_MESSAGE), signer.address)
  const master = deriveKeys(signature)
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
  const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64')
  secrets = [signature.r, signature.s, signature.bytes, master.ipnsSeed, master.dataKey, master.bucketKey, deriveAppsRoot(signature)].flatMap(b => [hex(b), b64(b)])
  // The owner, elsewhere (a wallet with full access), fills the shared profile through an editor
  // grant and keeps a secret in another app's namespace.
  owner = await openSpace({ signer, hub: hub.url, state: memoryState() })
  const editor = await owner.grant('io.example.editor', { origin: 'https://editor.example', write: ['profile'], approveForeignWrite: true })
  const profile = await openSpace({ grant: editor, hub: hub.url, namespace: 'profile', state: memoryState() })
  await profile.set('name', 'Alice')
  await profile.close()
  const other = await openSpace({ grant: await owner.grant('io.other.app', { origin: 'https://other.example' }), hub: hub.url, state: memoryState() })
  await other.set('secret', 'for io.other.app only')
  await other.close()
}, 120_000)

afterAll(async () => {
  await owner?.close().catch(() => {})
  for (const s of servers) s.closeAllConnections()
  await Promise.all(servers.map(async s => new Promise(resolve => s.close(resolve))))
  await h.close()
})

afterEach(() => {
  expect(h.pageErrors.splice(0)).toEqual([])
})

async function dappPage (origin: string): Promise<Page> {
  const page = await context.newPage()
  page.on('pageerror', (err) => { h.pageErrors.push(err.message) })
  await page.goto(`${origin}/dapp.html?connect=${encodeURIComponent(hub.url + '/connect')}`)
  return page
}

/** Clicks Connect on a dapp page and returns the connect popup, unlocked with the demo wallet. */
async function connectPopup (page: Page): Promise<Page> {
  const popupOpened = context.waitForEvent('page')
  await page.locator('#connect').click()
  const popup = await popupOpened
  await popup.locator('button[data-wallet=demo]').click()
  return popup
}

/** The grant the dapp's origin received from the connect page (the messages it saw). */
async function receivedGrant (page: Page): Promise<Grant | undefined> {
  const seen = await page.evaluate(() => (window as unknown as { seenMessages: string[] }).seenMessages)
  const answer = seen.map(m => JSON.parse(m) as { type?: string, grant?: unknown }).find(m => m?.type === 'userspace:connect:grant')
  return answer === undefined ? undefined : parseGrant(answer.grant)
}

/** What the dapp kept (keepGrant): the grant without its IPNS seed, and whether its key can be exported. */
async function keptGrant (page: Page): Promise<{ grant: Grant, extractable: boolean, exported: string } | undefined> {
  return page.evaluate(async (app) => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => { const r = indexedDB.open('userspace-grants'); r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error) })
    const kept = await new Promise<{ grant: Grant, signingKeys: Record<string, CryptoKey> } | undefined>((resolve, reject) => {
      const r = db.transaction('grants').objectStore('grants').get(app); r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error)
    })
    db.close()
    if (kept === undefined) return undefined
    const key = kept.signingKeys[app] as CryptoKey
    const exported = await crypto.subtle.exportKey('pkcs8', key).then(() => 'exported', (err: Error) => err.name)
    return { grant: kept.grant, extractable: key.extractable, exported }
  }, APP)
}

/** Everything the page's origin holds: messages it received, localStorage, sessionStorage, IndexedDB. */
async function originDump (page: Page): Promise<string> {
  return page.evaluate(async () => {
    const bytes = (v: Uint8Array): string => Array.from(v, b => b.toString(16).padStart(2, '0')).join('') + ' ' + btoa(String.fromCharCode(...v))
    const replacer = (_k: string, v: unknown): unknown => v instanceof Uint8Array ? bytes(v) : v instanceof ArrayBuffer ? bytes(new Uint8Array(v)) : v
    const out: string[] = [...(window as unknown as { seenMessages: string[] }).seenMessages]
    out.push(JSON.stringify({ ...localStorage }), JSON.stringify({ ...sessionStorage }))
    for (const info of await indexedDB.databases()) {
      const db = await new Promise<IDBDatabase>((resolve, reject) => { const r = indexedDB.open(info.name as string); r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error) })
      for (const name of Array.from(db.objectStoreNames)) {
        const all = await new Promise<unknown[]>((resolve, reject) => { const r = db.transaction(name).objectStore(name).getAll(); r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error) })
        out.push(JSON.stringify(all, replacer))
      }
      db.close()
    }
    return out.join('\n')
  })
}

describe('connecting a dapp on another origin', () => {
  it('gets exactly its scope through the connect page, and the master signature never reaches its origin', async () => {
    const page = await dappPage(dappOrigin)
    const popup = await connectPopup(page)
    await popup.locator('#consent').waitFor({ state: 'visible' })
    // The consent screen names the app, the origin the browser reported, and the scope.
    expect(await popup.locator('#req-app').textContent()).toBe(APP)
    expect(await popup.locator('#req-origin').textContent()).toBe(dappOrigin)
    expect(await popup.locator('#req-read').textContent()).toBe('profile')
    await popup.locator('#approve').click()
    await page.locator('#own').waitFor({ state: 'visible' })
    await page.locator('#note').fill('hello from the dapp')
    await page.locator('#note-form button').click()
    await page.waitForFunction(() => document.querySelector<HTMLElement>('#own')?.dataset.saved === 'hello from the dapp')
    await page.waitForFunction(() => (document.querySelector('#profile')?.textContent ?? '').includes('Alice'))

    const grant = await receivedGrant(page)
    expect(grant?.origin).toBe(dappOrigin)
    dappGrant = grant as Grant
    // Kept with its IPNS signing key non-extractable, and without the seed.
    const kept = await keptGrant(page)
    expect(kept).toMatchObject({ extractable: false, exported: 'InvalidAccessError' })
    expect(JSON.stringify(kept?.grant)).not.toContain(grant?.namespaces[0]?.ipnsSeed as string)
    expect(await page.locator('#state').getAttribute('data-non-extractable')).toBe('true')
    expect(grant?.namespaces.map(n => [n.namespace, n.access])).toEqual([[APP, 'write'], ['profile', 'read']])
    // The owner sees the dapp's write in its namespace.
    const own = await openSpace({ grant: grant as Grant, hub: hub.url, state: memoryState() })
    expect(await own.get('note')).toBe('hello from the dapp')
    await own.close()

    // The main page on the hub shows the granted app (live, from the connect page's publish).
    await hubPage.waitForFunction((app) => (document.querySelector('#granted-list')?.textContent ?? '').includes(app), APP, { timeout: 15_000 })

    // No secret of the master signature in anything the dapp's origin received or stored...
    const dump = await originDump(page)
    expect(dump).toContain('userspace:connect:grant') // (the instrumentation saw the answer)
    for (const secret of secrets) expect(dump.toLowerCase()).not.toContain(secret.toLowerCase())
    // ...and none of its keys decrypts another app's namespace.
    const other = (await owner.apps()).find(a => a.app === 'io.other.app')
    expect(other).toBeDefined()
    const otherEntry = await owner.get('userspace:namespace:io.other.app') as { name: string, address: string }
    for (const n of grant?.namespaces ?? []) {
      const keys = decodeKeys(n)
      await expect(openNamespace(hubStore(hub.url), { dataKey: keys.dataKey, bucketKey: keys.bucketKey }, otherEntry, { state: memoryState() }))
        .rejects.toMatchObject({ name: 'IntegrityError' })
    }
  })

  it('the same request from a third origin is refused (OriginMismatchError) and gets no grant', async () => {
    const page = await dappPage(evilOrigin)
    const popup = await connectPopup(page)
    await popup.locator('#refused').waitFor({ state: 'visible' })
    expect(await popup.locator('#refused').getAttribute('data-error')).toBe('OriginMismatchError')
    await page.locator('#messages [data-error=OriginMismatchError]').waitFor()
    expect(await receivedGrant(page)).toBeUndefined()
    expect(await keptGrant(page)).toBeUndefined()
    expect(await originDump(page)).not.toContain('userspace:connect:grant')
    await owner.refresh()
    expect((await owner.apps()).find(a => a.app === APP)?.origin).toBe(dappOrigin)
  })

  it('bad requests get a named refusal and grant nothing', async () => {
    const page = await dappPage(dappOrigin)
    await owner.refresh()
    const before = JSON.stringify(await owner.apps())
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ app: APP, read: ['profile'], admin: true }, 'InvalidScopeError'],
      [{ app: APP, read: ['*'] }, 'InvalidScopeError'],
      [{ app: 'IO.Example.Dapp', read: [] }, 'InvalidScopeError'],
      [{ app: 'io.example.dapp/../other', read: [] }, 'InvalidScopeError'],
      [{ app: APP, read: ['profile'], origin: 'https://trusted.example' }, 'OriginMismatchError']
    ]
    for (const [request, name] of cases) {
      // A hand-made opener: the popup says ready, gets the crafted request, answers.
      const answer = await page.evaluate(async ({ url, hubOrigin, request, type }) => {
        const popup = window.open(url, '_blank', 'popup') as Window
        return new Promise<unknown>((resolve) => {
          window.addEventListener('message', function onMessage (e) {
            if (e.source !== popup || e.origin !== hubOrigin) return
            const data = e.data as { type: string }
            if (data.type === 'userspace:connect:ready') popup.postMessage({ type, id: 'request-0001', ...request }, hubOrigin)
            else { window.removeEventListener('message', onMessage); popup.close(); resolve(data) }
          })
        })
      }, { url: hub.url + '/connect', hubOrigin: hub.url, request, type: CONNECT_REQUEST })
      expect(answer, JSON.stringify(request)).toMatchObject({ type: 'userspace:connect:refused', id: 'request-0001', error: { name } })
    }
    await owner.refresh()
    expect(JSON.stringify(await owner.apps())).toBe(before)
  })

  it('a write to another app\'s namespace needs the extra approval', async () => {
    const page = await dappPage(dappOrigin)
    const answer = page.evaluate(async ({ url, hubOrigin, type }) => {
      const popup = window.open(url, '_blank', 'popup') as Window
      return new Promise<unknown>((resolve) => {
        window.addEventListener('message', (e) => {
          if (e.source !== popup || e.origin !== hubOrigin) return
          const data = e.data as { type: string }
          if (data.type === 'userspace:connect:ready') popup.postMessage({ type, id: 'request-0002', app: 'io.example.dapp', write: ['io.other.app'] }, hubOrigin)
          else resolve(data)
        })
      })
    }, { url: hub.url + '/connect', hubOrigin: hub.url, type: CONNECT_REQUEST })
    const popup = await context.waitForEvent('page')
    await popup.locator('button[data-wallet=demo]').click()
    await popup.locator('#foreign-write').waitFor({ state: 'visible' })
    expect(await popup.locator('#foreign-list').textContent()).toBe('io.other.app')
    await popup.locator('#approve').click() // without ticking the extra approval
    expect(await answer).toMatchObject({ type: 'userspace:connect:refused', error: { name: 'ApprovalRequiredError' } })
    await owner.refresh()
    expect((await owner.apps()).find(a => a.app === APP)?.write).toEqual([])
  })

  it('after revocation on the connect page, the dapp cannot read what is written afterwards', async () => {
    const page = await dappPage(dappOrigin) // reopens with the grant it kept
    await page.waitForFunction(() => (document.querySelector('#profile')?.textContent ?? '').includes('Alice'))
    const grant = (await keptGrant(page))?.grant as Grant
    // The kept, non-extractable key still publishes the dapp's namespace.
    await page.locator('#note').fill('written with the kept key')
    await page.locator('#note-form button').click()
    await page.waitForFunction(() => document.querySelector<HTMLElement>('#own')?.dataset.saved === 'written with the kept key')
    const own = await openSpace({ grant: dappGrant, hub: hub.url, state: memoryState() })
    expect(await own.get('note')).toBe('written with the kept key')
    await own.close()

    const lobby = await context.newPage()
    await lobby.goto(hub.url + '/connect')
    await lobby.locator('button[data-wallet=demo]').click()
    await lobby.locator(`#app-list li[data-app="${APP}"] button.revoke`).click()
    await lobby.locator(`#app-list li[data-app="${APP}"]`).waitFor({ state: 'detached' })

    // The owner's editor connects again (its profile keys moved on) and writes the profile.
    await owner.refresh()
    const editor = await owner.grant('io.example.editor', { origin: 'https://editor.example', write: ['profile'], approveForeignWrite: true })
    const profileNow = editor.namespaces.find(n => n.namespace === 'profile')
    expect(profileNow?.epoch).toBe(1)
    const profile = await openSpace({ grant: editor, hub: hub.url, namespace: 'profile', state: memoryState() })
    expect(await profile.get('name')).toBe('Alice') // moved with the namespace
    await profile.set('name', 'Bob')
    await profile.close()

    await page.locator('#refresh').click()
    await page.waitForFunction(() => document.querySelector<HTMLElement>('#shared')?.dataset.refreshed !== undefined)
    expect(await page.locator('#profile').textContent()).toContain('Alice')
    expect(await page.locator('#profile').textContent()).not.toContain('Bob')
    // The keys it kept open neither the new profile nor its own moved namespace.
    const oldProfile = decodeKeys(grant.namespaces.find(n => n.namespace === 'profile') as Grant['namespaces'][number])
    await expect(openNamespace(hubStore(hub.url), oldProfile, { name: profileNow?.name as string, address: profileNow?.address as string }, { state: memoryState() }))
      .rejects.toMatchObject({ name: 'IntegrityError' })
  })
})

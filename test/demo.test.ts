/**
 * The demo page in real Chromium (Debian's /usr/bin/chromium through playwright-core), served by a
 * real hub process (`node bin/userspace.js serve`, which finds the built page in dist/demo):
 * two browser contexts sharing one demo-wallet key see each other's edits live, a reload shows the
 * data before the hub answers, the public profile, merge-patch box, history and past versions work,
 * bad JSON changes nothing, a rejected signature and a tampered block read as plain words, and an
 * edit made while the hub is down is kept (shown pending) and published once it is back on the same
 * data and port. Screenshots go to test-results/demo.png and test-results/demo-phone.png.
 *
 * Everything listens on 127.0.0.1; the hub and the browser started here are killed by pid in
 * afterAll. Without chromium the suite fails and says how to install it; it never skips.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readPublic } from '../src/index.js'
import type { ChildProcess } from 'node:child_process'
import type { Browser, BrowserContext, BrowserServer, Page } from 'playwright-core'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'bin', 'userspace.js')
const RESULTS = join(ROOT, 'test-results')
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic']

interface Hub { child: ChildProcess, url: string, port: number, output: () => string }

let tmp: string
let hub: Hub
let server: BrowserServer | undefined
let browser: Browser
const children = new Set<ChildProcess>()
const contexts = new Set<BrowserContext>()
/** Uncaught page errors: none are expected. */
const pageErrors: string[] = []

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

async function startHub (dataDir: string, port = 0): Promise<Hub> {
  const child = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', String(port), '--data', dataDir, '--rate-limit', '0'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  children.add(child)
  let out = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  const deadline = Date.now() + 30_000
  while (!/^demo: /m.test(out)) {
    if (child.exitCode !== null) throw new Error(`hub exited with ${child.exitCode}: ${out}`)
    if (Date.now() > deadline) throw new Error(`hub did not start within 30 s: ${out}`)
    await sleep(25)
  }
  const url = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(out)
  if (url === null) throw new Error(`unexpected hub output: ${out}`)
  return { child, url: url[1] as string, port: Number(url[2]), output: () => out }
}

async function stopHub (h: Hub): Promise<void> {
  const { child } = h
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

async function newPage (options: { phone?: boolean } = {}): Promise<Page> {
  const context = await browser.newContext(options.phone === true
    ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }
    : { viewport: { width: 1280, height: 900 } })
  contexts.add(context)
  const page = await context.newPage()
  page.on('pageerror', (err) => { pageErrors.push(err.message) })
  return page
}

async function openDemo (page: Page): Promise<void> {
  await page.goto(hub.url)
  await page.locator('#use-demo').click()
  await page.locator('#account').waitFor({ state: 'visible', timeout: 15_000 })
}

async function openWithKey (page: Page, key: string, url = hub.url): Promise<void> {
  await page.goto(url)
  await page.locator('#show-paste').click()
  await page.locator('#paste-key').fill(key)
  await page.locator('#paste-form button[type=submit]').click()
  await page.locator('#account').waitFor({ state: 'visible', timeout: 15_000 })
}

async function demoKey (page: Page): Promise<string> {
  await page.locator('#show-key').click()
  const key = (await page.locator('#private-key').textContent()) ?? ''
  await page.locator('#show-key').click()
  expect(key).toMatch(/^0x[0-9a-f]{64}$/)
  return key
}

async function setEntry (page: Page, section: 'private' | 'public', key: string, json: string): Promise<void> {
  const form = page.locator(`#${section} form.editor`)
  await form.locator('input[name=key]').fill(key)
  await form.locator('textarea[name=value]').fill(json)
  await form.locator('button[type=submit]').click()
}

function entry (page: Page, section: 'private' | 'public', key: string): ReturnType<Page['locator']> {
  return page.locator(`#${section} li[data-key="${key}"] .entry-value`)
}

async function entries (page: Page, section: 'private' | 'public'): Promise<Record<string, unknown>> {
  return page.$$eval(`#${section} li.entry`, items => Object.fromEntries(items.map(li => [
    (li as HTMLElement).dataset.key, JSON.parse(li.querySelector('.entry-value')?.textContent ?? 'null')
  ])))
}

async function waitSynced (page: Page, timeout = 10_000): Promise<void> {
  await page.waitForFunction(() => document.querySelector<HTMLElement>('#sync')?.dataset.state === 'synced', undefined, { timeout })
}

async function syncState (page: Page): Promise<{ conn: string, sync: string, pending: string, text: string }> {
  return page.evaluate(() => {
    const conn = document.querySelector<HTMLElement>('#conn')
    const sync = document.querySelector<HTMLElement>('#sync')
    return { conn: conn?.dataset.state ?? '', sync: sync?.dataset.state ?? '', pending: sync?.dataset.pending ?? '', text: `${conn?.textContent ?? ''} / ${sync?.textContent ?? ''}` }
  })
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}. The demo test drives a real browser: install it with \`apt-get install chromium\` (Debian/Ubuntu; .ci/run does), or point CHROMIUM_PATH at a Chromium or Chrome binary.`)
  }
  if (!existsSync(join(ROOT, 'dist', 'demo', 'index.html')) || !existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('dist/ or dist/demo is missing: run `npm run build` (npm test does) before this test')
  }
  tmp = await mkdtemp(join(tmpdir(), 'userspace-demo-'))
  await mkdir(RESULTS, { recursive: true })
  hub = await startHub(join(tmp, 'hub'))
  expect(hub.output()).toMatch(/^demo: .*dist[/\\]demo$/m)
  server = await chromium.launchServer({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
  browser = await chromium.connect(server.wsEndpoint())
}, 60_000)

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => {})
  await browser?.close().catch(() => {})
  const pid = server?.process().pid
  await server?.close().catch(() => {})
  if (pid !== undefined) { try { process.kill(pid, 'SIGKILL') } catch {} }
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try { process.kill(child.pid, 'SIGKILL') } catch {}
    }
  }
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true })
})

describe('demo page in Chromium', () => {
  let a: Page
  let b: Page
  let key: string
  /** the version that first held "theme" */
  let themeVersion: number

  it('the hub serves the built page', async () => {
    const res = await fetch(hub.url + '/')
    expect(res.status).toBe(200)
    const html = await res.text()
    expect(html).toContain('<title>UserSpace</title>')
    const script = /src="\.?\/?(assets\/[^"]+\.js)"/.exec(html)?.[1]
    expect(script).toBeDefined()
    const js = await fetch(`${hub.url}/${script as string}`)
    expect(js.status).toBe(200)
    expect(js.headers.get('content-type')).toMatch(/javascript/)
  })

  it('a demo wallet writes entries; a second browser with the pasted key sees and changes them live', async () => {
    a = await newPage()
    await openDemo(a)
    expect(await a.locator('#wallet-kind').textContent()).toBe('demo wallet')
    expect(await a.locator('#ipns-name').textContent()).toMatch(/^k51/)
    key = await demoKey(a)

    await setEntry(a, 'private', 'theme', '"dark"')
    await expect.poll(async () => entry(a, 'private', 'theme').textContent()).toBe('"dark"')
    await waitSynced(a)
    themeVersion = Number(/^\d+/.exec((await a.locator('#version').textContent()) ?? '')?.[0])
    expect(themeVersion).toBeGreaterThan(0)
    await setEntry(a, 'private', 'io.example.app', '{"volume": 3, "tags": ["a", "b"]}')
    await waitSynced(a)
    expect(await entries(a, 'private')).toEqual({ theme: 'dark', 'io.example.app': { volume: 3, tags: ['a', 'b'] } })

    b = await newPage()
    await openWithKey(b, key)
    expect(await b.locator('#address').textContent()).toBe(await a.locator('#address').textContent())
    expect(await b.locator('#ipns-name').textContent()).toBe(await a.locator('#ipns-name').textContent())
    await expect.poll(async () => entries(b, 'private')).toEqual({ theme: 'dark', 'io.example.app': { volume: 3, tags: ['a', 'b'] } })

    // A writes; B shows it without a reload within 2 s of A's publish.
    await setEntry(a, 'private', 'color', '"teal"')
    await waitSynced(a)
    const published = Date.now()
    await entry(b, 'private', 'color').waitFor({ state: 'visible', timeout: 2_000 })
    expect(await entry(b, 'private', 'color').textContent()).toBe('"teal"')
    expect(Date.now() - published).toBeLessThan(2_000)

    // B removes one; A sees it gone without a reload.
    await b.locator('#private li[data-key="theme"] button.danger').click()
    await waitSynced(b)
    const removed = Date.now()
    await a.locator('#private li[data-key="theme"]').waitFor({ state: 'detached', timeout: 2_000 })
    expect(Date.now() - removed).toBeLessThan(2_000)
    expect(await entries(a, 'private')).toEqual({ 'io.example.app': { volume: 3, tags: ['a', 'b'] }, color: 'teal' })
  }, 60_000)

  it('edits an entry in place', async () => {
    await a.locator('#private li[data-key="color"] button', { hasText: 'Edit' }).click()
    const form = a.locator('#private form.editor')
    expect(await form.locator('input[name=key]').inputValue()).toBe('color')
    expect(await form.locator('textarea[name=value]').inputValue()).toBe('"teal"')
    await form.locator('textarea[name=value]').fill('{"r": 0, "g": 128, "b": 128}')
    await form.locator('button[type=submit]').click()
    await waitSynced(a)
    expect(await entries(a, 'private')).toMatchObject({ color: { r: 0, g: 128, b: 128 } })
    await expect.poll(async () => entries(b, 'private'), { timeout: 2_000 }).toMatchObject({ color: { r: 0, g: 128, b: 128 } })
  }, 30_000)

  it('bad JSON shows an error and changes nothing', async () => {
    const before = await entries(a, 'private')
    const version = await a.locator('#version').textContent()
    await setEntry(a, 'private', 'theme', '{bad json')
    const error = a.locator('#private .form-error')
    await expect.poll(async () => error.textContent()).toMatch(/not valid JSON/)
    await setEntry(a, 'private', 'theme', 'light')
    await expect.poll(async () => error.textContent()).toMatch(/double quotes/)
    expect(await entries(a, 'private')).toEqual(before)
    expect(await a.locator('#version').textContent()).toBe(version)

    const patchError = a.locator('#patch .form-error')
    await a.locator('#patch textarea[name=patch]').fill('{"theme": ')
    await a.locator('#patch button[type=submit]').click()
    await expect.poll(async () => patchError.textContent()).toMatch(/not valid JSON/)
    await a.locator('#patch textarea[name=patch]').fill('[1, 2]')
    await a.locator('#patch button[type=submit]').click()
    await expect.poll(async () => patchError.textContent()).toMatch(/JSON object/)
    await sleep(300)
    expect(await entries(a, 'private')).toEqual(before)
    expect(await a.locator('#version').textContent()).toBe(version)
    expect((await syncState(a)).pending).toBe('0')
  }, 30_000)

  it('the public profile is readable by anyone and the merge-patch box patches either section', async () => {
    await setEntry(a, 'public', 'name', '"Alice"')
    await setEntry(a, 'public', 'bio', '"Writes things down."')
    await waitSynced(a)
    await expect.poll(async () => entries(b, 'public'), { timeout: 2_000 }).toEqual({ name: 'Alice', bio: 'Writes things down.' })

    await a.locator('#patch textarea[name=patch]').fill('{"io.example.app": {"volume": null, "muted": true}, "color": null, "lang": "en"}')
    await a.locator('#patch button[type=submit]').click()
    await waitSynced(a)
    const expected = { 'io.example.app': { tags: ['a', 'b'], muted: true }, lang: 'en' }
    await expect.poll(async () => entries(a, 'private')).toEqual(expected)
    await expect.poll(async () => entries(b, 'private'), { timeout: 2_000 }).toEqual(expected)

    await a.locator('#patch select[name=section]').selectOption('public')
    await a.locator('#patch textarea[name=patch]').fill('{"bio": null, "links": {"site": "https://example.org"}}')
    await a.locator('#patch button[type=submit]').click()
    await waitSynced(a)
    await expect.poll(async () => entries(a, 'public')).toEqual({ name: 'Alice', links: { site: 'https://example.org' } })

    // Anyone (here: Node, no key) reads the profile by address through the hub.
    const address = (await a.locator('#address').textContent()) ?? ''
    const profile = await readPublic({ address, hub: hub.url })
    expect(profile.data).toEqual({ name: 'Alice', links: { site: 'https://example.org' } })
    expect(profile.name).toBe(await a.locator('#ipns-name').textContent())
  }, 30_000)

  it('lists the history and shows a past version', async () => {
    await a.locator('#reload-history').click()
    const versions = a.locator('#history li.version')
    await expect.poll(async () => versions.count()).toBeGreaterThanOrEqual(6)
    const sequences = await versions.evaluateAll(items => items.map(li => Number((li as HTMLElement).dataset.sequence)))
    expect(sequences).toEqual([...sequences].sort((x, y) => y - x))
    // That version held only "theme".
    await a.locator(`#history li.version[data-sequence="${themeVersion}"] button`).click()
    await a.locator('#version-view').waitFor({ state: 'visible' })
    expect(JSON.parse((await a.locator('#version-private').textContent()) ?? '')).toEqual({ theme: 'dark' })
    expect(JSON.parse((await a.locator('#version-public').textContent()) ?? '')).toEqual({})
    expect(await a.locator('#version-title').textContent()).toMatch(new RegExp(`^Version ${themeVersion} `))
    // The current entries are untouched by viewing.
    expect(await entries(a, 'private')).toEqual({ 'io.example.app': { tags: ['a', 'b'], muted: true }, lang: 'en' })
    await a.locator('#close-version').click()
    await a.locator('#version-view').waitFor({ state: 'hidden' })
  }, 30_000)

  it('a reload shows everything from IndexedDB before the hub answers', async () => {
    const expected = await entries(a, 'private')
    // The hub answers nothing about records or addresses for 5 s: the page must not wait for it.
    let held = 0
    await a.route(/\/(routing\/v1\/ipns|api\/v1\/address|ipfs)\//, async (route) => {
      held++
      await sleep(5_000)
      await route.continue().catch(() => {})
    })
    const start = Date.now()
    await a.reload()
    await a.locator('#account').waitFor({ state: 'visible', timeout: 4_000 })
    await expect.poll(async () => entries(a, 'private'), { timeout: 4_000 }).toEqual(expected)
    expect(Date.now() - start).toBeLessThan(4_500)
    expect(await entries(a, 'public')).toEqual({ name: 'Alice', links: { site: 'https://example.org' } })
    expect(held).toBeGreaterThan(0)
    await a.unroute(/\/(routing\/v1\/ipns|api\/v1\/address|ipfs)\//)
    await waitSynced(a, 15_000)
  }, 30_000)

  it('takes screenshots (desktop and phone width)', async () => {
    await a.screenshot({ path: join(RESULTS, 'demo.png'), fullPage: true })
    const phone = await newPage({ phone: true })
    await openWithKey(phone, key)
    await expect.poll(async () => entries(phone, 'public')).toEqual({ name: 'Alice', links: { site: 'https://example.org' } })
    await waitSynced(phone)
    // every version so far is listed (the page shows up to 30), the newest first
    const sequence = Number((await phone.locator('#version').textContent())?.split(' ')[0])
    expect(sequence).toBeGreaterThanOrEqual(5)
    await expect.poll(async () => phone.locator('#history li.version').count()).toBeGreaterThanOrEqual(Math.min(30, sequence))
    expect(await phone.locator('#history li.version').first().getAttribute('data-sequence')).toBe(String(sequence))
    // Nothing may stick out sideways on a phone.
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
    expect(overflow).toBeLessThanOrEqual(0)
    await phone.screenshot({ path: join(RESULTS, 'demo-phone.png'), fullPage: true })
    await phone.context().close()
  }, 30_000)

  it('a rejected signature reads as plain words', async () => {
    const page = await newPage()
    await page.addInitScript(() => {
      (window as unknown as { ethereum: unknown }).ethereum = {
        async request ({ method }: { method: string }) {
          if (method === 'eth_requestAccounts' || method === 'eth_accounts') return ['0x1111111111111111111111111111111111111111']
          throw Object.assign(new Error('User rejected the request.'), { code: 4001 })
        }
      }
    })
    await page.goto(hub.url)
    await page.locator('#connect-injected').click()
    const message = page.locator('#messages .message.error')
    await message.waitFor({ state: 'visible' })
    expect(await message.textContent()).toMatch(/Signature rejected/)
    expect(await page.locator('#account').isHidden()).toBe(true)
    expect(await page.locator('#connect').isVisible()).toBe(true)
    await page.context().close()
  }, 30_000)

  it('a tampered block from the hub is refused with an integrity message', async () => {
    const page = await newPage()
    await page.route(/\/ipfs\//, async (route) => {
      const res = await route.fetch()
      const body = Buffer.from(await res.body())
      body[body.length - 1] = (body[body.length - 1] ?? 0) ^ 0xff
      await route.fulfill({ response: res, body })
    })
    await page.goto(hub.url)
    await page.locator('#show-paste').click()
    await page.locator('#paste-key').fill(key)
    await page.locator('#paste-form button[type=submit]').click()
    const message = page.locator('#messages .message.error')
    await message.waitFor({ state: 'visible', timeout: 15_000 })
    expect(await message.textContent()).toMatch(/Integrity check failed/)
    expect(await page.locator('#account').isHidden()).toBe(true)
    await page.context().close()
  }, 30_000)

  it('a hub that cannot be reached, with nothing in this browser yet, reads as plain words', async () => {
    const page = await newPage()
    // The page from this hub, talking to a port where nothing listens.
    await page.goto(`${hub.url}/?hub=http://127.0.0.1:9`)
    expect(await page.locator('#hub-url').textContent()).toBe('http://127.0.0.1:9')
    await page.locator('#use-demo').click()
    const message = page.locator('#messages .message.error')
    await message.waitFor({ state: 'visible', timeout: 15_000 })
    expect(await message.textContent()).toMatch(/The hub cannot be reached/)
    expect(await page.locator('#account').isHidden()).toBe(true)
    await page.context().close()
  }, 30_000)

  it('keeps an edit made while the hub is down and publishes it when the hub is back', async () => {
    await waitSynced(a)
    await stopHub(hub)
    await setEntry(a, 'private', 'offline-note', '"written while the hub was down"')
    await expect.poll(async () => entry(a, 'private', 'offline-note').textContent()).toBe('"written while the hub was down"')
    await a.waitForFunction(() => document.querySelector<HTMLElement>('#sync')?.dataset.state === 'pending', undefined, { timeout: 10_000 })
    await a.waitForFunction(() => document.querySelector<HTMLElement>('#conn')?.dataset.state === 'offline', undefined, { timeout: 10_000 })
    const state = await syncState(a)
    expect(state.pending).toBe('1')
    expect(state.text).toMatch(/Offline/)
    expect(await a.locator('#messages').textContent()).toMatch(/Working offline/)
    await a.screenshot({ path: join(RESULTS, 'demo-offline.png') })

    hub = await startHub(join(tmp, 'hub'), hub.port)
    await waitSynced(a, 20_000)
    expect((await syncState(a)).conn).toBe('online')

    const fresh = await newPage()
    await openWithKey(fresh, key)
    await expect.poll(async () => entries(fresh, 'private'), { timeout: 5_000 }).toMatchObject({ 'offline-note': 'written while the hub was down', lang: 'en' })
    await fresh.context().close()
  }, 60_000)

  it('had no uncaught errors in any page', () => {
    expect(pageErrors).toEqual([])
  })
})

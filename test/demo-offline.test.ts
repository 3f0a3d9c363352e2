/**
 * The demo page with its hub down, in real Chromium against real hub processes
 * (test/helpers/demo-browser.ts). Every test starts its own hub and stops it, then brings it back on
 * the same port with the same data folder, as an operator restarting it would: the page loads from
 * its service worker while the hub is down, shows the space from IndexedDB, keeps edits made
 * offline (also across a reload) and publishes them when the hub is back, where another device
 * reads them; a new build of the page replaces the cached one.
 */
import { cp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  DemoHarness, RESULTS, demoKey, entries, entry, messages, openDemo, openWithKey, setEntry, syncState, waitForShell, waitSynced
} from './helpers/demo-browser.js'
import { ROOT } from './helpers/hub-process.js'
import type { Page } from 'playwright-core'

const h = new DemoHarness()

beforeAll(async () => { await h.start() }, 120_000)
afterAll(async () => { await h.close() })
afterEach(() => {
  const errors = h.pageErrors.splice(0)
  expect(errors).toEqual([])
})

async function waitState (page: Page, selector: '#sync' | '#conn', state: string, timeout = 10_000): Promise<void> {
  await page.waitForFunction(([s, want]) => document.querySelector<HTMLElement>(s as string)?.dataset.state === want, [selector, state], { timeout })
}

describe('demo page with the hub down', () => {
  it('loads from its service worker while the hub is down and shows the space from IndexedDB', async () => {
    let hub = await h.startHub()
    const a = await h.newPage()
    await openDemo(a, hub.url)
    await setEntry(a, 'private', 'theme', '"dark"')
    await setEntry(a, 'public', 'name', '"Alice"')
    await waitSynced(a)
    await waitForShell(a)

    await h.stopHub(hub)
    const response = await a.reload()
    expect(response?.fromServiceWorker()).toBe(true)
    await a.locator('#account').waitFor({ state: 'visible', timeout: 15_000 })
    await expect.poll(async () => entries(a, 'private')).toEqual({ theme: 'dark' })
    expect(await entries(a, 'public')).toEqual({ name: 'Alice' })
    await waitState(a, '#conn', 'offline')
    // Nothing waits to be published, so there is nothing to warn about beyond being offline.
    expect((await syncState(a)).pending).toBe('0')
    expect((await messages(a)).filter(m => m.kind === 'error')).toEqual([])
    // The page and its files only: nothing else of the hub is answered from the cache, neither a
    // request nor another page of the hub opened in the tab.
    expect(await a.evaluate(async () => (await fetch('/routing/v1/ipns/k51none').catch((err: Error) => err.name)) === 'TypeError')).toBe(true)
    const tab = await a.context().newPage()
    await expect(tab.goto(`${hub.url}/healthz`)).rejects.toThrow(/ERR_CONNECTION_REFUSED/)
    await tab.close()

    hub = await h.startHub({ dataDir: hub.dataDir, port: hub.port })
    await waitState(a, '#conn', 'online', 20_000)
    await h.stopHub(hub)
  }, 120_000)

  it('keeps an edit made while the hub is down and publishes it when the hub is back', async () => {
    let hub = await h.startHub()
    const a = await h.newPage()
    await openDemo(a, hub.url)
    const key = await demoKey(a)
    await setEntry(a, 'private', 'lang', '"en"')
    await waitSynced(a)

    await h.stopHub(hub)
    await setEntry(a, 'private', 'offline-note', '"written while the hub was down"')
    await expect.poll(async () => entry(a, 'private', 'offline-note').textContent()).toBe('"written while the hub was down"')
    await waitState(a, '#sync', 'pending')
    await waitState(a, '#conn', 'offline')
    const state = await syncState(a)
    expect(state.pending).toBe('1')
    expect(state.text).toMatch(/Offline/)
    expect(await a.locator('#messages').textContent()).toMatch(/Working offline/)
    await a.screenshot({ path: join(RESULTS, 'demo-offline.png') })

    hub = await h.startHub({ dataDir: hub.dataDir, port: hub.port })
    await waitSynced(a, 20_000)
    expect((await syncState(a)).conn).toBe('online')

    const fresh = await h.newPage()
    await openWithKey(fresh, key, hub.url)
    await expect.poll(async () => entries(fresh, 'private'), { timeout: 5_000 }).toEqual({ 'offline-note': 'written while the hub was down', lang: 'en' })
    await h.stopHub(hub)
  }, 120_000)

  it('edits offline, reloads with the hub down, and the edits reach another device once the hub restarts', async () => {
    let hub = await h.startHub()
    const a = await h.newPage()
    await openDemo(a, hub.url)
    const key = await demoKey(a)
    await setEntry(a, 'private', 'before', '"published"')
    await waitSynced(a)
    await waitForShell(a)

    await h.stopHub(hub)
    await setEntry(a, 'private', 'offline-1', '"first"')
    await setEntry(a, 'public', 'offline-2', '"second"')
    await waitState(a, '#conn', 'offline')
    await expect.poll(async () => (await syncState(a)).pending).toBe('2')
    // Kept on this device: the page says so and does not hold the tab open.
    expect(await a.locator('#messages').textContent()).toMatch(/saved in this browser, also across reloads/)

    const response = await a.reload()
    expect(response?.fromServiceWorker()).toBe(true)
    await a.locator('#account').waitFor({ state: 'visible', timeout: 15_000 })
    await expect.poll(async () => entries(a, 'private'), { timeout: 5_000 }).toEqual({ before: 'published', 'offline-1': 'first' })
    expect(await entries(a, 'public')).toEqual({ 'offline-2': 'second' })
    await expect.poll(async () => (await syncState(a)).pending).toBe('2')

    hub = await h.startHub({ dataDir: hub.dataDir, port: hub.port })
    await waitSynced(a, 30_000)
    const b = await h.newPage()
    await openWithKey(b, key, hub.url)
    await expect.poll(async () => entries(b, 'private'), { timeout: 5_000 }).toEqual({ before: 'published', 'offline-1': 'first' })
    expect(await entries(b, 'public')).toEqual({ 'offline-2': 'second' })
    for (const page of [a, b]) expect((await messages(page)).filter(m => m.kind === 'error')).toEqual([])
    await h.stopHub(hub)
  }, 150_000)

  it('a new build of the page replaces the cached one: online at once, offline after the next visit', async () => {
    // A copy of the built page that this test can change, as a redeploy would.
    const demoDir = join(h.tmp, 'demo-build')
    await cp(join(ROOT, 'dist', 'demo'), demoDir, { recursive: true })
    const hub = await h.startHub({ demoDir })
    const a = await h.newPage()
    await a.goto(hub.url)
    await waitForShell(a)
    expect(await a.title()).toBe('UserSpace')

    // The next build: another page, hence another service worker version.
    const index = join(demoDir, 'index.html')
    await writeFile(index, (await readFile(index, 'utf8')).replace('<title>UserSpace</title>', '<title>UserSpace next</title>'))
    const sw = join(demoDir, 'sw.js')
    const before = await readFile(sw, 'utf8')
    const after = before.replace(/^const SHELL_VERSION = "[0-9a-f]+";$/m, 'const SHELL_VERSION = "0123456789abcdef";')
    expect(after).not.toBe(before)
    await writeFile(sw, after)

    // A reachable hub serves its current page right away (network first).
    await a.reload()
    expect(await a.title()).toBe('UserSpace next')
    // The new worker takes over and caches the new page; the old cache is dropped.
    await expect.poll(async () => a.evaluate(async () => caches.keys()), { timeout: 15_000 }).toEqual(['userspace-demo-shell-0123456789abcdef'])
    await h.stopHub(hub)
    const offline = await a.reload()
    expect(offline?.fromServiceWorker()).toBe(true)
    expect(await a.title()).toBe('UserSpace next')
  }, 120_000)
})

/**
 * The demo page in real Chromium, served by a real hub process (test/helpers/demo-browser.ts).
 * Each test opens its own demo wallet (its own space) in fresh browser contexts, so any one of them
 * runs alone (`-t`) or in any order: two devices see each other's edits live, a reload shows the
 * data before the hub answers, the public profile, merge patches, history, restore and every undo
 * work, bad JSON changes nothing, two devices saving at once see no error, a rejected signature and
 * a tampered block read as plain words, and the footer says what the hub really sees. Tests that
 * stop the hub are in demo-offline.test.ts. Screenshots go to test-results/.
 */
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { decode as decodeCbor } from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { readPublic } from '../src/index.js'
import { readRecord } from '../src/store/record.js'
import { currentBlocks, decodeRoot, versionOwner } from '../src/space/root.js'
import {
  DemoHarness, RESULTS, demoKey, entries, entry, fillEntry, messages, openDemo, openWithKey, setEntry, sleep, syncState, waitSynced
} from './helpers/demo-browser.js'
import type { DemoHub } from './helpers/demo-browser.js'
import type { Page, Route } from 'playwright-core'

const h = new DemoHarness()
let hub: DemoHub

beforeAll(async () => {
  await h.start()
  hub = await h.startHub()
}, 120_000)

afterAll(async () => { await h.close() })

afterEach(() => {
  // Uncaught errors in any page fail the test that caused them.
  const errors = h.pageErrors.splice(0)
  expect(errors).toEqual([])
})

/** A new device with a new demo wallet, its space opened; returns the page and the wallet's key. */
async function newSpace (options: { serviceWorkers?: 'allow' | 'block' } = {}): Promise<{ page: Page, key: string }> {
  const page = await h.newPage(options)
  await openDemo(page, hub.url)
  return { page, key: await demoKey(page) }
}

async function secondDevice (key: string, options: { serviceWorkers?: 'allow' | 'block' } = {}): Promise<Page> {
  const page = await h.newPage(options)
  await openWithKey(page, key, hub.url)
  return page
}

async function version (page: Page): Promise<number> {
  return Number(/^\d+/.exec((await page.locator('#version').textContent()) ?? '')?.[0] ?? 0)
}

describe('demo page in Chromium', () => {
  it('the hub serves the built page and its service worker, which lists exactly the built files', async () => {
    const res = await fetch(hub.url + '/')
    expect(res.status).toBe(200)
    const html = await res.text()
    expect(html).toContain('<title>UserSpace</title>')
    const script = /src="\.?\/?(assets\/[^"]+\.js)"/.exec(html)?.[1]
    expect(script).toBeDefined()
    const js = await fetch(`${hub.url}/${script as string}`)
    expect(js.status).toBe(200)
    expect(js.headers.get('content-type')).toMatch(/javascript/)

    const sw = await fetch(`${hub.url}/sw.js`)
    expect(sw.status).toBe(200)
    expect(sw.headers.get('content-type')).toMatch(/javascript/)
    const code = await sw.text()
    const files = JSON.parse(/^const SHELL_FILES = (\[.*\]);$/m.exec(code)?.[1] ?? 'null') as string[]
    expect(files).toContain('index.html')
    expect(files).toContain(script)
    expect(code).toMatch(/^const SHELL_VERSION = "[0-9a-f]{16}";$/m)
    // Every listed file is served (an install that cannot fetch one fails as a whole).
    for (const file of files) expect((await fetch(`${hub.url}/${file}`)).status).toBe(200)
  })

  it('a demo wallet writes entries; a second browser with the pasted key sees and changes them live', async () => {
    const { page: a, key } = await newSpace()
    expect(await a.locator('#wallet-kind').textContent()).toBe('demo wallet')
    expect(await a.locator('#ipns-name').textContent()).toMatch(/^k51/)

    await setEntry(a, 'private', 'theme', '"dark"')
    await expect.poll(async () => entry(a, 'private', 'theme').textContent()).toBe('"dark"')
    await waitSynced(a)
    expect(await version(a)).toBeGreaterThan(0)
    await setEntry(a, 'private', 'io.example.app', '{"volume": 3, "tags": ["a", "b"]}')
    await waitSynced(a)
    expect(await entries(a, 'private')).toEqual({ theme: 'dark', 'io.example.app': { volume: 3, tags: ['a', 'b'] } })

    const b = await secondDevice(key)
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
  }, 120_000)

  it('edits an entry in place', async () => {
    const { page: a } = await newSpace()
    await setEntry(a, 'private', 'color', '"teal"')
    await waitSynced(a)
    await a.locator('#private li[data-key="color"] button', { hasText: 'Edit' }).click()
    const form = a.locator('#private form.editor')
    expect(await form.locator('input[name=key]').inputValue()).toBe('color')
    expect(await form.locator('textarea[name=value]').inputValue()).toBe('"teal"')
    await form.locator('textarea[name=value]').fill('{"r": 0, "g": 128, "b": 128}')
    await form.locator('button[type=submit]').click()
    // The page still says "synced" from before until the edit's own write starts: wait on the entry.
    await expect.poll(async () => entries(a, 'private'), { timeout: 10_000 }).toEqual({ color: { r: 0, g: 128, b: 128 } })
    await waitSynced(a)
  }, 60_000)

  it('bad JSON shows an error and changes nothing', async () => {
    const { page: a } = await newSpace()
    await setEntry(a, 'private', 'lang', '"en"')
    await waitSynced(a)
    const before = await entries(a, 'private')
    const published = await a.locator('#version').textContent()
    await setEntry(a, 'private', 'theme', '{bad json')
    const error = a.locator('#private .form-error')
    await expect.poll(async () => error.textContent()).toMatch(/not valid JSON/)
    await setEntry(a, 'private', 'theme', 'light')
    await expect.poll(async () => error.textContent()).toMatch(/double quotes/)
    expect(await entries(a, 'private')).toEqual(before)
    expect(await a.locator('#version').textContent()).toBe(published)

    const patchError = a.locator('#patch .form-error')
    await a.locator('#patch textarea[name=patch]').fill('{"theme": ')
    await a.locator('#patch button[type=submit]').click()
    await expect.poll(async () => patchError.textContent()).toMatch(/not valid JSON/)
    await a.locator('#patch textarea[name=patch]').fill('[1, 2]')
    await a.locator('#patch button[type=submit]').click()
    await expect.poll(async () => patchError.textContent()).toMatch(/JSON object/)
    await sleep(300)
    expect(await entries(a, 'private')).toEqual(before)
    expect(await a.locator('#version').textContent()).toBe(published)
    expect((await syncState(a)).pending).toBe('0')
  }, 60_000)

  it('the public profile is readable by anyone and the merge-patch box patches either section', async () => {
    const { page: a, key } = await newSpace()
    await setEntry(a, 'private', 'io.example.app', '{"volume": 3, "tags": ["a", "b"]}')
    await setEntry(a, 'private', 'color', '"teal"')
    await setEntry(a, 'public', 'name', '"Alice"')
    await setEntry(a, 'public', 'bio', '"Writes things down."')
    await waitSynced(a)
    const b = await secondDevice(key)
    await expect.poll(async () => entries(b, 'public')).toEqual({ name: 'Alice', bio: 'Writes things down.' })

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
  }, 90_000)

  it('lists the history, shows a past version, restores it as a new version, and undoes the restore', async () => {
    const { page: a, key } = await newSpace()
    await setEntry(a, 'private', 'theme', '"dark"')
    await setEntry(a, 'public', 'name', '"Alice"')
    await waitSynced(a)
    const themeVersion = await version(a)
    await setEntry(a, 'private', 'theme', '"light"')
    await waitSynced(a)
    await setEntry(a, 'private', 'lang', '"en"')
    await waitSynced(a)
    await a.locator('#public li[data-key="name"] button.danger').click()
    await waitSynced(a)
    const latest = await version(a)
    const now = { theme: 'light', lang: 'en' }
    expect(await entries(a, 'private')).toEqual(now)

    await a.locator('#reload-history').click()
    const versions = a.locator('#history li.version')
    // Every version the page holds by now (a background publish may have added one since `latest`).
    await expect.poll(async () => (await versions.count()) === await version(a) && await version(a) >= latest).toBe(true)
    const sequences = await versions.evaluateAll(items => items.map(li => Number((li as HTMLElement).dataset.sequence)))
    expect(sequences).toEqual([...sequences].sort((x, y) => y - x))
    await a.locator(`#history li.version[data-sequence="${themeVersion}"] button`).click()
    await a.locator('#version-view').waitFor({ state: 'visible' })
    expect(JSON.parse((await a.locator('#version-private').textContent()) ?? '')).toEqual({ theme: 'dark' })
    expect(JSON.parse((await a.locator('#version-public').textContent()) ?? '')).toEqual({ name: 'Alice' })
    expect(await a.locator('#version-title').textContent()).toMatch(new RegExp(`^Version ${themeVersion} `))
    // Viewing changes nothing.
    expect(await entries(a, 'private')).toEqual(now)

    // Restore: the space holds that version's entries again, published as a new version that a
    // second device sees; the versions in between are still in the history.
    await a.locator('#restore-version').click()
    await expect.poll(async () => entries(a, 'private')).toEqual({ theme: 'dark' })
    expect(await entries(a, 'public')).toEqual({ name: 'Alice' })
    await waitSynced(a)
    const restored = await version(a)
    expect(restored).toBeGreaterThan(latest)
    expect(await a.locator('#version-view').isHidden()).toBe(true)
    const b = await secondDevice(key)
    await expect.poll(async () => entries(b, 'private')).toEqual({ theme: 'dark' })
    expect(await entries(b, 'public')).toEqual({ name: 'Alice' })
    await a.locator('#reload-history').click()
    await expect.poll(async () => versions.count()).toBe(restored)

    // Undo the restore: back to what was there before it.
    const notice = a.locator('#messages .message', { hasText: `Restored version ${themeVersion}` })
    await notice.locator('button.action', { hasText: 'Undo' }).click()
    await expect.poll(async () => entries(a, 'private')).toEqual(now)
    expect(await entries(a, 'public')).toEqual({})
    await waitSynced(a)
    await expect.poll(async () => entries(b, 'private'), { timeout: 5_000 }).toEqual(now)
    expect(await notice.count()).toBe(0)
    expect((await messages(a)).filter(m => m.kind === 'error')).toEqual([])
  }, 120_000)

  it('Remove takes effect at once and offers an undo that puts the entry back everywhere', async () => {
    const { page: a, key } = await newSpace()
    await setEntry(a, 'private', 'io.example.app', '{"volume": 3, "tags": ["a", "b"]}')
    await setEntry(a, 'public', 'name', '"Alice"')
    await waitSynced(a)
    const b = await secondDevice(key)
    await expect.poll(async () => entries(b, 'private')).toEqual({ 'io.example.app': { volume: 3, tags: ['a', 'b'] } })

    await a.locator('#private li[data-key="io.example.app"] button.danger').click()
    await a.locator('#private li[data-key="io.example.app"]').waitFor({ state: 'detached' })
    const notice = a.locator('#messages .message', { hasText: 'Removed “io.example.app”' })
    await notice.waitFor({ state: 'visible' })
    await waitSynced(a)
    await b.locator('#private li[data-key="io.example.app"]').waitFor({ state: 'detached', timeout: 5_000 })

    await notice.locator('button.action', { hasText: 'Undo' }).click()
    await expect.poll(async () => entries(a, 'private')).toEqual({ 'io.example.app': { volume: 3, tags: ['a', 'b'] } })
    await waitSynced(a)
    await expect.poll(async () => entries(b, 'private'), { timeout: 5_000 }).toEqual({ 'io.example.app': { volume: 3, tags: ['a', 'b'] } })
    expect(await notice.count()).toBe(0)

    // The public profile too.
    await a.locator('#public li[data-key="name"] button.danger').click()
    const publicNotice = a.locator('#messages .message', { hasText: 'Removed “name”' })
    await publicNotice.locator('button.action').click()
    await expect.poll(async () => entries(a, 'public')).toEqual({ name: 'Alice' })
    await waitSynced(a)
    expect(await entries(a, 'private')).toEqual({ 'io.example.app': { volume: 3, tags: ['a', 'b'] } })
  }, 90_000)

  it('"New key" keeps the replaced key: Undo brings it back, and every previous key stays one click away', async () => {
    const { page: a } = await newSpace()
    const firstAddress = (await a.locator('#address').textContent()) ?? ''
    const firstName = (await a.locator('#ipns-name').textContent()) ?? ''
    await setEntry(a, 'private', 'kept', '"still here"')
    await waitSynced(a)
    await a.locator('#disconnect').click()
    await a.locator('#connect').waitFor({ state: 'visible' })
    expect(await a.locator('#demo-address').textContent()).toBe(firstAddress)
    expect(await a.locator('#old-keys').isHidden()).toBe(true)

    await a.locator('#new-key').click()
    const secondAddress = (await a.locator('#demo-address').textContent()) ?? ''
    expect(secondAddress).toMatch(/^0x[0-9a-fA-F]{40}$/)
    expect(secondAddress).not.toBe(firstAddress)
    expect(await a.locator('#old-keys').isVisible()).toBe(true)
    expect(await a.locator('#old-keys li code').allTextContents()).toEqual([firstAddress])
    const notice = a.locator('#messages .message', { hasText: 'New demo key' })
    expect(await notice.textContent()).toContain(firstAddress)
    await notice.locator('button.action', { hasText: 'Undo' }).click()
    expect(await a.locator('#demo-address').textContent()).toBe(firstAddress)
    expect(await a.locator('#old-keys li code').allTextContents()).toEqual([secondAddress])

    // Many new keys later, the first one is still listed (nothing is trimmed) and opens its space.
    for (let i = 0; i < 22; i++) await a.locator('#new-key').click()
    expect(await a.locator('#old-key-count').textContent()).toBe('23')
    const listed = await a.locator('#old-keys li code').allTextContents()
    expect(listed).toContain(firstAddress)
    expect(listed).toContain(secondAddress)
    expect(new Set(listed).size).toBe(23)
    await a.locator('#old-keys summary').click()
    await a.locator('#old-keys li', { hasText: firstAddress }).locator('button').click()
    expect(await a.locator('#demo-address').textContent()).toBe(firstAddress)
    await a.locator('#use-demo').click()
    await a.locator('#account').waitFor({ state: 'visible', timeout: 15_000 })
    expect(await a.locator('#ipns-name').textContent()).toBe(firstName)
    await expect.poll(async () => entries(a, 'private')).toEqual({ kept: 'still here' })
  }, 90_000)

  it('a reload shows everything from IndexedDB before the hub answers', async () => {
    // No service worker here: playwright's routing does not see requests a service worker answers.
    const { page: a } = await newSpace({ serviceWorkers: 'block' })
    await setEntry(a, 'private', 'theme', '"dark"')
    await setEntry(a, 'public', 'name', '"Alice"')
    await waitSynced(a)
    // The hub answers nothing about records, addresses or blocks until the test lets it: the page
    // must show the data before any of those answers comes back.
    let held = 0
    let answered = 0
    let answer!: () => void
    const answers = new Promise<void>(resolve => { answer = resolve })
    const slow = /\/(routing\/v1\/ipns|api\/v1\/address|ipfs)\//
    await a.route(slow, async (route) => {
      held++
      await answers
      answered++
      await route.continue().catch(() => {})
    })
    await a.reload()
    await a.locator('#account').waitFor({ state: 'visible', timeout: 15_000 })
    await expect.poll(async () => entries(a, 'private'), { timeout: 15_000 }).toEqual({ theme: 'dark' })
    expect(answered).toBe(0)
    expect(await entries(a, 'public')).toEqual({ name: 'Alice' })
    expect(held).toBeGreaterThan(0)
    answer()
    await a.unroute(slow)
    await waitSynced(a, 40_000)
  }, 90_000)

  it('two devices saving at the same moment see no error, and both writes end up on both', async () => {
    for (const sameKey of [false, true]) {
      const { page: a, key } = await newSpace({ serviceWorkers: 'block' })
      await setEntry(a, 'private', 'base', '1')
      await waitSynced(a)
      const b = await secondDevice(key, { serviceWorkers: 'block' })
      await expect.poll(async () => entries(b, 'private')).toEqual({ base: 1 })
      await waitSynced(b)

      // Hold both devices' record uploads until both have built on the same version, then let them
      // go together: the hub takes one and refuses the other, as when two devices save at once.
      const statuses: number[] = []
      let release!: () => void
      const bothHeld = new Promise<void>(resolve => { release = resolve })
      let heldCount = 0
      // A version goes up in one request (POST /api/v1/publish/{name}), or as blocks + a record PUT.
      const isPublish = (method: string, url: string): boolean =>
        (method === 'POST' && /\/api\/v1\/publish\//.test(url)) || (method === 'PUT' && /\/routing\/v1\/ipns\//.test(url))
      const hold = async (route: Route): Promise<void> => {
        if (!isPublish(route.request().method(), route.request().url())) { await route.continue(); return }
        if (++heldCount === 2) release()
        await bothHeld
        await route.continue()
      }
      for (const page of [a, b]) {
        await page.route(/\/api\/v1\/publish\/|\/routing\/v1\/ipns\//, hold)
        page.on('response', (res) => { if (isPublish(res.request().method(), res.url())) statuses.push(res.status()) })
      }
      await fillEntry(a, 'private', sameKey ? 'shared' : 'from-a', '"a"')
      await fillEntry(b, 'private', sameKey ? 'shared' : 'from-b', '"b"')
      await Promise.all([a, b].map(async page => page.locator('#private form.editor button[type=submit]').click()))
      await bothHeld

      // The race happened: the hub refused one of the two uploads.
      await expect.poll(() => statuses.length >= 2).toBe(true)
      expect(statuses).toContain(409)
      expect(statuses.some(status => status >= 200 && status < 300)).toBe(true)
      // Both settle within seconds, with nothing pending and nothing shown as an error.
      await Promise.all([waitSynced(a, 30_000), waitSynced(b, 30_000)]).catch(async (err: Error) => { throw new Error(`${err.message}: ${JSON.stringify([await syncState(a), await syncState(b), await messages(a), await messages(b), statuses])}`) })
      const expected = sameKey ? undefined : { base: 1, 'from-a': 'a', 'from-b': 'b' }
      if (expected !== undefined) {
        await expect.poll(async () => entries(a, 'private'), { timeout: 5_000 }).toEqual(expected)
        await expect.poll(async () => entries(b, 'private'), { timeout: 5_000 }).toEqual(expected)
      } else {
        // The same key converges to one value on both devices.
        await expect.poll(async () => JSON.stringify(await entries(a, 'private')) === JSON.stringify(await entries(b, 'private')), { timeout: 5_000 }).toBe(true)
        expect(['a', 'b']).toContain((await entries(a, 'private')).shared)
      }
      for (const page of [a, b]) {
        expect((await syncState(page)).pending).toBe('0')
        // Not an error, not a notice: an ordinary race is none of the user's business.
        expect(await messages(page)).toEqual([])
      }
      await a.context().close()
      await b.context().close()
    }
  }, 150_000)

  it('an older version from the hub is ignored; it is reported only when the hub still offers it when asked again', async () => {
    const { page: a } = await newSpace({ serviceWorkers: 'block' })
    const name = (await a.locator('#ipns-name').textContent()) ?? ''
    await setEntry(a, 'private', 'theme', '"dark"')
    await waitSynced(a)
    const old = Buffer.from(await (await fetch(`${hub.url}/routing/v1/ipns/${name}`, { headers: { accept: 'application/vnd.ipfs.ipns-record' } })).arrayBuffer())
    expect(readRecord(old).sequence).toBe(BigInt(await version(a)))
    await setEntry(a, 'private', 'theme', '"light"')
    await waitSynced(a)
    await setEntry(a, 'private', 'lang', '"en"')
    await waitSynced(a)
    const latest = await version(a)
    const now = { theme: 'light', lang: 'en' }

    // A live update arrives late, with the old version (as when a stream connects just before a
    // publish): ignored without a word, since the hub itself has the newest.
    const stale = `event: ready\ndata: ${name}\n\nevent: record\ndata: ${old.toString('base64')}\n\n`
    const events = /\/api\/v1\/events\//
    const records = /\/routing\/v1\/ipns\//
    let staleSent = 0
    let askedAfter = 0
    await a.route(events, async (route) => {
      if (staleSent++ > 0) { await route.continue(); return }
      await route.fulfill({ status: 200, body: stale, headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } })
    })
    a.on('request', (req) => { if (staleSent > 0 && req.method() === 'GET' && records.test(req.url())) askedAfter++ })
    await a.reload()
    await a.locator('#account').waitFor({ state: 'visible', timeout: 15_000 })
    await expect.poll(() => staleSent, { timeout: 10_000 }).toBeGreaterThanOrEqual(1)
    await expect.poll(() => askedAfter, { timeout: 10_000 }).toBeGreaterThanOrEqual(1)
    await waitSynced(a, 30_000)
    await sleep(500)
    expect(await messages(a)).toEqual([])
    expect(await entries(a, 'private')).toEqual(now)

    // The hub keeps offering the old version: the page says so, and keeps the newer one.
    staleSent = 0
    await a.route(records, async (route) => {
      if (route.request().method() !== 'GET') { await route.continue(); return }
      await route.fulfill({ status: 200, body: old, headers: { 'content-type': 'application/vnd.ipfs.ipns-record' } })
    })
    await a.reload()
    const notice = a.locator('#messages .message', { hasText: 'Old version ignored' })
    await notice.waitFor({ state: 'visible', timeout: 15_000 })
    expect(await notice.textContent()).toContain(`older than version ${latest}`)
    expect(await entries(a, 'private')).toEqual(now)
    expect(await version(a)).toBe(latest)
    await a.unroute(records)
    await a.unroute(events)
  }, 90_000)

  it('the footer says what the hub can see, and the hub\'s copy shows exactly that and no more', async () => {
    const { page: a } = await newSpace()
    const footer = (await a.locator('#privacy').textContent()) ?? ''
    for (const claim of [/wallet address/, /when each version was saved/, /ids of the devices/, /sizes/, /public profile/]) expect(footer).toMatch(claim)
    expect(footer).not.toMatch(/only sizes/)

    await setEntry(a, 'private', 'secret-key-name', '"a secret value"')
    await waitSynced(a)
    const name = (await a.locator('#ipns-name').textContent()) ?? ''
    const address = (await a.locator('#address').textContent()) ?? ''
    const device = (await a.locator('#device-id').textContent()) ?? ''
    // What the hub holds, read the way anyone can: the record, the root block and every private bucket.
    const record = new Uint8Array(await (await fetch(`${hub.url}/routing/v1/ipns/${name}`, { headers: { accept: 'application/vnd.ipfs.ipns-record' } })).arrayBuffer())
    const rootCid = readRecord(record).cid as CID
    const rootBytes = new Uint8Array(await (await fetch(`${hub.url}/ipfs/${rootCid.toString()}?format=raw`)).arrayBuffer())
    const root = decodeRoot(rootBytes)
    const owner = await versionOwner(rootCid, async cid => new Uint8Array(await (await fetch(`${hub.url}/ipfs/${cid.toString()}?format=raw`)).arrayBuffer()))
    expect(owner.address.toLowerCase()).toBe(address.toLowerCase())
    expect(root.device).toBe(device)
    expect(Math.abs(root.updatedAt - Date.now())).toBeLessThan(60_000)
    const state = await currentBlocks(root.current, async cid => new Uint8Array(await (await fetch(`${hub.url}/ipfs/${cid.toString()}?format=raw`)).arrayBuffer()))
    expect(state.filter(b => b.cid.code === 0x55).length).toBeGreaterThan(0)
    const seen = [rootBytes, ...state.map(b => b.bytes)]
    const text = seen.map(b => Buffer.from(b).toString('latin1')).join('\n')
    expect(text).not.toContain('secret-key-name')
    expect(text).not.toContain('a secret value')
    // The root is plain dag-cbor: nothing in it names the key.
    expect(JSON.stringify(decodeCbor(rootBytes), (_k, v: unknown) => v instanceof Uint8Array ? '' : v instanceof CID ? v.toString() : v)).not.toContain('secret')
  }, 60_000)

  it('takes screenshots (desktop and phone width)', async () => {
    const { page: a, key } = await newSpace()
    await setEntry(a, 'private', 'io.example.app', '{"volume": 3, "tags": ["a", "b"]}')
    await setEntry(a, 'public', 'name', '"Alice"')
    await waitSynced(a)
    await setEntry(a, 'private', 'lang', '"en"')
    await waitSynced(a)
    await a.screenshot({ path: join(RESULTS, 'demo.png'), fullPage: true })
    const phone = await h.newPage({ phone: true })
    await openWithKey(phone, key, hub.url)
    await expect.poll(async () => entries(phone, 'public')).toEqual({ name: 'Alice' })
    await waitSynced(phone)
    // every version so far is listed, the newest first
    const sequence = await version(phone)
    expect(sequence).toBeGreaterThanOrEqual(2)
    await expect.poll(async () => phone.locator('#history li.version').count()).toBe(sequence)
    expect(await phone.locator('#history li.version').first().getAttribute('data-sequence')).toBe(String(sequence))
    // Nothing may stick out sideways on a phone.
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
    expect(overflow).toBeLessThanOrEqual(0)
    await phone.screenshot({ path: join(RESULTS, 'demo-phone.png'), fullPage: true })
  }, 90_000)

  it('a rejected signature reads as plain words', async () => {
    const page = await h.newPage()
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
  }, 60_000)

  it('a tampered block from the hub is refused with an integrity message', async () => {
    const { page: owner, key } = await newSpace()
    await setEntry(owner, 'private', 'theme', '"dark"')
    await waitSynced(owner)
    const page = await h.newPage({ serviceWorkers: 'block' })
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
  }, 60_000)

  it('a hub that cannot be reached, with nothing in this browser yet, reads as plain words', async () => {
    const page = await h.newPage()
    // The page from this hub, talking to a port where nothing listens.
    await page.goto(`${hub.url}/?hub=http://127.0.0.1:9`)
    expect(await page.locator('#hub-url').textContent()).toBe('http://127.0.0.1:9')
    await page.locator('#use-demo').click()
    const message = page.locator('#messages .message.error')
    await message.waitFor({ state: 'visible', timeout: 15_000 })
    expect(await message.textContent()).toMatch(/The hub cannot be reached/)
    expect(await page.locator('#account').isHidden()).toBe(true)
  }, 60_000)
})

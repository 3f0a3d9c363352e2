/**
 * Drives the demo page in real Chromium (Debian's /usr/bin/chromium through playwright-core) against
 * real hub processes (`node bin/userspace.js serve`, which serves the built page from dist/demo).
 * One `DemoHarness` per test file: it starts hubs on 127.0.0.1 (a port of their own, or the port a
 * stopped hub had, to bring "the same hub" back), one browser, and one context per simulated device;
 * `close()` kills what it started, by pid. Without chromium or a build it fails and says why.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { expect } from 'vitest'
import { ROOT, BIN } from './hub-process.js'
import type { ChildProcess } from 'node:child_process'
import type { Browser, BrowserContext, BrowserContextOptions, BrowserServer, Locator, Page } from 'playwright-core'

export const RESULTS = join(ROOT, 'test-results')
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
/** How long a hub process may take to print that it serves the page. */
const HUB_START_MS = 60_000
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic']

export type Section = 'private' | 'public'

export interface DemoHub { child: ChildProcess, url: string, port: number, dataDir: string, output: () => string }

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

export class DemoHarness {
  tmp = ''
  browser: Browser | undefined
  private server: BrowserServer | undefined
  private readonly children = new Set<ChildProcess>()
  private readonly contexts = new Set<BrowserContext>()
  /** Uncaught page errors: none are expected. */
  readonly pageErrors: string[] = []

  async start (): Promise<void> {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is not installed at ${CHROMIUM}. The demo test drives a real browser: install it with \`apt-get install chromium\` (Debian/Ubuntu; .ci/run does), or point CHROMIUM_PATH at a Chromium or Chrome binary.`)
    }
    if (!existsSync(join(ROOT, 'dist', 'demo', 'index.html')) || !existsSync(join(ROOT, 'dist', 'demo', 'sw.js')) || !existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))) {
      throw new Error('dist/ or dist/demo is missing: run `npm run build` (npm test does) before this test')
    }
    this.tmp = await mkdtemp(join(tmpdir(), 'userspace-demo-'))
    await mkdir(RESULTS, { recursive: true })
    this.server = await chromium.launchServer({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
    this.browser = await chromium.connect(this.server.wsEndpoint())
  }

  async close (): Promise<void> {
    for (const context of this.contexts) await context.close().catch(() => {})
    await this.browser?.close().catch(() => {})
    const pid = this.server?.process().pid
    await this.server?.close().catch(() => {})
    if (pid !== undefined) { try { process.kill(pid, 'SIGKILL') } catch {} }
    for (const child of this.children) {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try { process.kill(child.pid, 'SIGKILL') } catch {}
      }
    }
    if (this.tmp !== '') await rm(this.tmp, { recursive: true, force: true })
  }

  /**
   * Starts a hub on `port` (0: one it picks) keeping its data in `dataDir` (default: a new folder),
   * serving the built page, or the page in `demoDir`.
   */
  async startHub (options: { dataDir?: string, port?: number, demoDir?: string } = {}): Promise<DemoHub> {
    const dataDir = options.dataDir ?? await mkdtemp(join(this.tmp, 'hub-'))
    const demo = options.demoDir === undefined ? [] : ['--demo', options.demoDir]
    const child = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', String(options.port ?? 0), '--data', dataDir, '--rate-limit', '0', ...demo], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe']
    })
    this.children.add(child)
    let out = ''
    // Started once it prints where its page is (after "listening on"); generous, for a loaded machine.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { done(new Error(`hub did not start within ${HUB_START_MS / 1000} s: ${out}`)) }, HUB_START_MS)
      const onData = (chunk: string): void => {
        out += chunk
        if (/^demo: /m.test(out)) done()
      }
      const onExit = (code: number | null): void => { done(new Error(`hub exited with ${String(code)}: ${out}`)) }
      const done = (err?: Error): void => {
        clearTimeout(timer)
        child.off('exit', onExit)
        if (err === undefined) resolve()
        else reject(err)
      }
      child.stdout?.setEncoding('utf8').on('data', onData)
      child.stderr?.setEncoding('utf8').on('data', onData)
      child.once('exit', onExit)
    })
    const url = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(out)
    if (url === null) throw new Error(`unexpected hub output: ${out}`)
    if (options.demoDir === undefined) expect(out).toMatch(/^demo: .*dist[/\\]demo$/m)
    return { child, url: url[1] as string, port: Number(url[2]), dataDir, output: () => out }
  }

  async stopHub (hub: DemoHub): Promise<void> {
    const { child } = hub
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGTERM')
    await exited
  }

  /** A browser context (one device: its own IndexedDB, localStorage and service worker) and a page in it. */
  async newPage (options: { phone?: boolean, serviceWorkers?: 'allow' | 'block' } = {}): Promise<Page> {
    if (this.browser === undefined) throw new Error('start() the harness first')
    const contextOptions: BrowserContextOptions = options.phone === true
      ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }
      : { viewport: { width: 1280, height: 900 } }
    contextOptions.serviceWorkers = options.serviceWorkers ?? 'allow'
    const context = await this.browser.newContext(contextOptions)
    this.contexts.add(context)
    const page = await context.newPage()
    page.on('pageerror', (err) => { this.pageErrors.push(err.message) })
    return page
  }
}

/** Opens the page at `url` with a new demo wallet. */
export async function openDemo (page: Page, url: string): Promise<void> {
  await page.goto(url)
  await page.locator('#use-demo').click()
  await page.locator('#account').waitFor({ state: 'visible', timeout: 15_000 })
}

/** Opens the page at `url` with the demo key `key` pasted in, as a second device of the same wallet. */
export async function openWithKey (page: Page, key: string, url: string): Promise<void> {
  await page.goto(url)
  await page.locator('#show-paste').click()
  await page.locator('#paste-key').fill(key)
  await page.locator('#paste-form button[type=submit]').click()
  await page.locator('#account').waitFor({ state: 'visible', timeout: 15_000 })
}

export async function demoKey (page: Page): Promise<string> {
  await page.locator('#show-key').click()
  const key = (await page.locator('#private-key').textContent()) ?? ''
  await page.locator('#show-key').click()
  expect(key).toMatch(/^0x[0-9a-f]{64}$/)
  return key
}

export async function fillEntry (page: Page, section: Section, key: string, json: string): Promise<void> {
  const form = page.locator(`#${section} form.editor`)
  await form.locator('input[name=key]').fill(key)
  await form.locator('textarea[name=value]').fill(json)
}

/**
 * Sets an entry through the page's editor and waits until the page shows it: the write is then
 * durable in the browser and counted as pending, so a `waitSynced` after it waits for its publish
 * (the sync state may still read "synced" from before while the click is being handled).
 */
export async function setEntry (page: Page, section: Section, key: string, json: string): Promise<void> {
  await fillEntry(page, section, key, json)
  await page.locator(`#${section} form.editor button[type=submit]`).click()
  let want: string
  try { want = JSON.stringify(JSON.parse(json)) } catch { return } // the page refuses it: nothing to wait for
  await page.waitForFunction(([s, k, w]) => {
    const shown = Array.from(document.querySelectorAll<HTMLElement>(`#${s as string} li.entry`)).find(li => li.dataset.key === k)
    const text = shown?.querySelector('.entry-value')?.textContent
    return text != null && JSON.stringify(JSON.parse(text)) === w
  }, [section, key, want], { timeout: 15_000 }).catch((err: Error) => {
    throw new Error(`the page did not show ${section} "${key}" = ${json} within 15 s`, { cause: err })
  })
}

export function entry (page: Page, section: Section, key: string): Locator {
  return page.locator(`#${section} li[data-key="${key}"] .entry-value`)
}

export async function entries (page: Page, section: Section): Promise<Record<string, unknown>> {
  return page.$$eval(`#${section} li.entry`, items => Object.fromEntries(items.map(li => [
    (li as HTMLElement).dataset.key, JSON.parse(li.querySelector('.entry-value')?.textContent ?? 'null')
  ])))
}

export async function waitSynced (page: Page, timeout = 10_000): Promise<void> {
  await page.waitForFunction(() => document.querySelector<HTMLElement>('#sync')?.dataset.state === 'synced', undefined, { timeout })
}

export async function syncState (page: Page): Promise<{ conn: string, sync: string, pending: string, text: string }> {
  return page.evaluate(() => {
    const conn = document.querySelector<HTMLElement>('#conn')
    const sync = document.querySelector<HTMLElement>('#sync')
    return { conn: conn?.dataset.state ?? '', sync: sync?.dataset.state ?? '', pending: sync?.dataset.pending ?? '', text: `${conn?.textContent ?? ''} / ${sync?.textContent ?? ''}` }
  })
}

/** The text of every message (toast) on the page, errors and notices alike. */
export async function messages (page: Page): Promise<Array<{ kind: string, text: string }>> {
  return page.$$eval('#messages .message', items => items.map(m => ({ kind: m.classList.contains('error') ? 'error' : 'info', text: m.textContent ?? '' })))
}

/** Waits until the page's service worker is active and controls it, so it could load offline. */
export async function waitForShell (page: Page): Promise<void> {
  await page.evaluate(async () => { await navigator.serviceWorker.ready })
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 10_000 })
}

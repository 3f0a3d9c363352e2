/**
 * Runs before every test file: the Node polyfill, and a fresh state directory for every test, so
 * the default file-backed space state (rollback protection and unpublished writes) of one test never
 * leaks into another. Child processes that tests start inherit it through the environment.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach } from 'vitest'
import '../../src/polyfill.js'

// One for the file (hooks such as beforeAll run before beforeEach), then one per test.
const fileDir = mkdtempSync(join(tmpdir(), 'userspace-state-'))
process.env.USERSPACE_STATE_DIR = fileDir
let dir: string | undefined

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'userspace-state-'))
  process.env.USERSPACE_STATE_DIR = dir
})

afterEach(() => {
  // a space still publishing in the background may be writing its state: retry, never fail a test on it
  if (dir !== undefined) try { rmSync(dir, { recursive: true, force: true, maxRetries: 5 }) } catch {}
  dir = undefined
  process.env.USERSPACE_STATE_DIR = fileDir
})

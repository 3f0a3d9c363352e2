/**
 * fileState's durability order, observed at the file-system calls: a state change is fsynced in a
 * temporary file, renamed over the state file, and the directory is fsynced, so the rename survives a
 * power cut before the write is acknowledged.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it, vi } from 'vitest'
import { fileState } from '../src/index.js'

const calls: string[] = []
vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>()
  return {
    ...actual,
    async open (path: string, flags: string) {
      const handle = await actual.open(path, flags)
      return {
        writeFile: async (data: string) => handle.writeFile(data),
        sync: async () => { calls.push(`sync ${path}`); return handle.sync() },
        close: async () => handle.close()
      }
    },
    async rename (from: string, to: string) { calls.push(`rename ${to}`); return actual.rename(from, to) }
  }
})

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

it('fsyncs the directory after renaming the state file into place', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'userspace-review-fsync-'))
  dirs.push(dir)
  await fileState(dir).addPending('k51fsync', [{ section: 'private', key: 'k', stamp: 1, device: 'd', json: '1' }])
  const renamed = calls.indexOf(`rename ${dir}/k51fsync.json`)
  expect(renamed).toBeGreaterThan(0)
  expect(calls.slice(0, renamed).some(c => c.startsWith(`sync ${dir}/k51fsync.`) && c.endsWith('.tmp'))).toBe(true)
  expect(calls.slice(renamed + 1)).toContain(`sync ${dir}`)
})

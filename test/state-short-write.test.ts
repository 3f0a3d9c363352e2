/**
 * A state file is renamed into place only once all of it is written: on a disk that fills up, a
 * write takes what fits and only the next one fails (ENOSPC). The change then fails and the state
 * before it stays whole.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it, vi } from 'vitest'
import { fileState } from '../src/index.js'

let diskFull = false
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>()
  const paths = new Map<number, string>()
  let cut = false
  return {
    ...actual,
    openSync (path: string, flags: string) {
      const fd = actual.openSync(path, flags)
      paths.set(fd, path)
      return fd
    },
    closeSync (fd: number) { paths.delete(fd); actual.closeSync(fd) },
    writeSync (fd: number, data: Uint8Array, offset = 0, length = data.byteLength - offset) {
      if (diskFull && (paths.get(fd) ?? '').endsWith('.tmp')) {
        // the first write takes half and reports no error; the next finds the disk full
        if (cut) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
        cut = true
        return actual.writeSync(fd, data, offset, length >> 1)
      }
      return actual.writeSync(fd, data, offset, length)
    }
  }
})

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

const entry = (key: string): { section: 'private', key: string, stamp: number, device: string, json: string } =>
  ({ section: 'private', key, stamp: 1, device: 'd', json: JSON.stringify('x'.repeat(200)) })

it('a write cut short by a full disk fails the change (StoreError) and leaves the state before it whole', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'userspace-short-write-'))
  dirs.push(dir)
  const state = fileState(dir)
  await state.addPending('k51short', [entry('a')])
  diskFull = true
  await expect(state.addPending('k51short', [entry('b')])).rejects.toMatchObject({ name: 'StoreError' })
  diskFull = false
  expect(await state.get('k51short')).toEqual({ sequence: 0, root: '', pending: [entry('a')] })
  // and the next change, with room again, lands
  await state.addPending('k51short', [entry('c')])
  expect((await state.get('k51short'))?.pending.map(e => e.key)).toEqual(['a', 'c'])
})

/**
 * fileState's durability, observed at the file-system calls. A space's first change writes its
 * journal whole: a temporary file, fsynced, renamed into place, then the directory fsynced, so the
 * rename survives a power cut before the write is acknowledged. Every later change is one appended
 * line and one fdatasync of the journal, and changes started together are one line. Only the syncs
 * wait for the thread pool; the small steps are synchronous. On a disk that fills up, a write takes
 * what fits and only the next one fails (ENOSPC); a sync can fail too (EIO): the change then fails,
 * its line is cut off again, and the state before it stays whole.
 */
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeEach, expect, it, vi } from 'vitest'
import { fileState } from '../src/index.js'

const calls: string[] = []
/** How lock files came into being. */
const locks: string[] = []
/** How writes to journals end: in full, cut short then ENOSPC, taking nothing, or whole but unsynced. */
let logWrites: 'whole' | 'disk full' | 'nothing' | 'sync fails' = 'whole'
/** Renames refused, as Windows refuses one over a file another process holds open. */
let refuseRenames = false
/** Another writer appends a line to the journal (without the lock) while a temporary file is synced. */
let intrude = false
/** fdatasyncs run a few milliseconds late, as on a busy thread pool; those whose fd no longer names the file they were asked for are listed. */
let slowSyncs = false
const misdirected: string[] = []
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>()
  const paths = new Map<number, string>()
  let cut = false
  return {
    ...actual,
    openSync (path: string, flags: string) {
      if (path.endsWith('.lock') && flags === 'wx') locks.push(`create ${path}`)
      const fd = actual.openSync(path, flags)
      paths.set(fd, path)
      return fd
    },
    closeSync (fd: number) { paths.delete(fd); actual.closeSync(fd) },
    fsync (fd: number, callback: (err: Error | null) => void) {
      calls.push(`sync ${paths.get(fd) ?? '?'}`)
      const path = paths.get(fd) ?? ''
      if (intrude && path.endsWith('.tmp')) actual.appendFileSync(path.replace(/\.\d+\.tmp$/, '.log'), 'INTRUDER\n')
      actual.fsync(fd, callback)
    },
    fdatasync (fd: number, callback: (err: Error | null) => void) {
      const path = paths.get(fd) ?? '?'
      calls.push(`datasync ${path}`)
      if (logWrites === 'sync fails') { callback(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })); return }
      if (!slowSyncs) { actual.fdatasync(fd, callback); return }
      setTimeout(() => {
        if (paths.get(fd) !== path) misdirected.push(path)
        actual.fdatasync(fd, callback)
      }, 5)
    },
    linkSync (existing: string, path: string) {
      locks.push(`link ${path} naming ${actual.readFileSync(existing, 'utf8')}`)
      actual.linkSync(existing, path)
    },
    renameSync (from: string, to: string) {
      calls.push(`rename ${to}`)
      if (refuseRenames) throw Object.assign(new Error('EPERM: operation not permitted, rename'), { code: 'EPERM' })
      actual.renameSync(from, to)
    },
    writeSync (fd: number, data: Uint8Array, offset = 0, length = data.byteLength - offset) {
      const path = paths.get(fd) ?? ''
      if (path.endsWith('.log')) calls.push(`append ${path}`)
      if (logWrites !== 'whole' && logWrites !== 'sync fails' && path.endsWith('.log')) {
        if (logWrites === 'nothing') return 0
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
beforeEach(() => { intrude = false; calls.length = 0; locks.length = 0; logWrites = 'whole'; refuseRenames = false; slowSyncs = false; misdirected.length = 0 })

function tempDir (): string {
  const dir = mkdtempSync(join(tmpdir(), 'userspace-review-fsync-'))
  dirs.push(dir)
  return dir
}

const entry = (key: string): { section: 'private', key: string, stamp: number, device: string, json: string } =>
  ({ section: 'private', key, stamp: 1, device: 'd', json: JSON.stringify('x'.repeat(200)) })

it('writes a new journal whole (fsync, rename, directory fsync), then each change is one append and one fdatasync', async () => {
  const dir = tempDir()
  const state = fileState(dir)
  await state.addPending('k51fsync', [entry('k')])
  expect(calls).toHaveLength(3)
  expect(calls[0]).toMatch(new RegExp(`^sync ${dir}/k51fsync\\.\\d+\\.tmp$`))
  expect(calls[1]).toBe(`rename ${dir}/k51fsync.log`)
  expect(calls[2]).toBe(`sync ${dir}`)
  calls.length = 0
  await state.addPending('k51fsync', [entry('l')])
  expect(calls).toEqual([`append ${dir}/k51fsync.log`, `datasync ${dir}/k51fsync.log`])
  // another instance (another process's view) appends to the same journal and reads both
  calls.length = 0
  await fileState(dir).put('k51fsync', { sequence: 2, root: 'r2' })
  expect(calls).toEqual([`append ${dir}/k51fsync.log`, `datasync ${dir}/k51fsync.log`])
  expect(await state.get('k51fsync')).toEqual({ sequence: 2, root: 'r2', pending: [entry('k'), entry('l')] })
})

it('makes changes started in the same tick one line (a publish records its version and settles its writes together)', async () => {
  const dir = tempDir()
  const state = fileState(dir)
  await state.addPending('k51group', [entry('a'), entry('b')])
  calls.length = 0
  await Promise.all([state.put('k51group', { sequence: 3, root: 'bafyroot' }), state.removePending('k51group', [entry('a')])])
  expect(calls).toEqual([`append ${dir}/k51group.log`, `datasync ${dir}/k51group.log`])
  expect(await state.get('k51group')).toEqual({ sequence: 3, root: 'bafyroot', pending: [entry('b')] })
})

for (const mode of ['disk full', 'nothing', 'sync fails'] as const) {
  const how = { 'disk full': 'is cut short by a full disk', nothing: 'takes nothing', 'sync fails': 'cannot be synced' }[mode]
  it(`an append that ${how} fails the change (StoreError) and leaves the journal as it was`, async () => {
    const dir = tempDir()
    const state = fileState(dir)
    await state.addPending('k51short', [entry('a')])
    const size = statSync(join(dir, 'k51short.log')).size
    logWrites = mode
    await expect(state.addPending('k51short', [entry('b')])).rejects.toMatchObject({ name: 'StoreError' })
    logWrites = 'whole'
    // nothing of the failed change is left to be read later, by this process or another
    expect(statSync(join(dir, 'k51short.log')).size).toBe(size)
    expect(await state.get('k51short')).toEqual({ sequence: 0, root: '', pending: [entry('a')] })
    // and the next change, with room again, lands
    await state.addPending('k51short', [entry('c')])
    expect((await fileState(dir).get('k51short'))?.pending.map(e => e.key)).toEqual(['a', 'c'])
  })
}

it('appends when the journal cannot be replaced, leaves no temporary file, and compacts once it can', async () => {
  const dir = tempDir()
  const state = fileState(dir, { compactBytes: 512 })
  await state.addPending('k51refused', [entry('a')])
  refuseRenames = true
  for (let i = 0; i < 6; i++) await state.addPending('k51refused', [entry(`k${i}`)])
  expect(calls.filter(c => c.startsWith('rename ')).length).toBeGreaterThan(0)
  expect(readdirSync(dir).filter(f => f.endsWith('.tmp'))).toEqual([])
  expect((await state.get('k51refused'))?.pending).toHaveLength(7)
  refuseRenames = false
  const inode = statSync(join(dir, 'k51refused.log')).ino
  calls.length = 0
  await state.addPending('k51refused', [entry('last')])
  expect(calls.filter(c => c.startsWith('rename '))).toEqual([`rename ${dir}/k51refused.log`])   // rewritten whole
  expect(statSync(join(dir, 'k51refused.log')).ino).not.toBe(inode)
  expect((await fileState(dir).get('k51refused'))?.pending).toHaveLength(8)
})

it('never closes a journal whose change is waiting for its sync, however many spaces change at once', async () => {
  const dir = tempDir()
  const state = fileState(dir)
  const names = Array.from({ length: 100 }, (_, i) => `k51busy${i}`)
  await Promise.all(names.map(async name => state.addPending(name, [entry('a')])))
  slowSyncs = true
  await Promise.all(names.map(async name => state.addPending(name, [entry('b')])))
  slowSyncs = false
  expect(misdirected).toEqual([])
  for (const name of names) expect((await fileState(dir).get(name))?.pending.map(e => e.key)).toEqual(['a', 'b'])
})

it('a lock file comes into being already naming its holder (written first, then linked into place)', async () => {
  const dir = tempDir()
  await fileState(dir).addPending('k51lock', [entry('a')])
  expect(locks).toEqual([`link ${dir}/k51lock.lock naming ${process.pid}`])
  expect(readdirSync(dir).sort()).toEqual(['k51lock.log'])
})

it('cuts and appends nothing when the journal is not as it was read under the lock (a writer without it)', async () => {
  const dir = tempDir()
  const state = fileState(dir, { compactBytes: 64 })
  await state.addPending('k51intruded', [entry('a')])
  refuseRenames = true                                               // the journal outgrows its state, and is not replaced
  for (const key of ['c', 'd', 'e', 'f']) await state.addPending('k51intruded', [entry(key)])
  appendFileSync(join(dir, 'k51intruded.log'), '[["add"')            // a line cut short by a crash
  refuseRenames = true                                               // so the change falls back to appending after its rewrite
  intrude = true                                                     // and another writer appends meanwhile
  await expect(state.addPending('k51intruded', [entry('b')])).rejects.toMatchObject({ name: 'StoreError' })
  intrude = false
  refuseRenames = false
  expect(readFileSync(join(dir, 'k51intruded.log'), 'utf8')).toContain('INTRUDER')
})

/**
 * fileState's durability, observed at the file-system calls: a state change is written whole and
 * fsynced in a temporary file, renamed over the state file, and the directory is fsynced, so the
 * rename survives a power cut before the write is acknowledged. Only those two fsyncs wait for the
 * thread pool; the small steps are synchronous, and changes started together are one write. On a
 * disk that fills up, a write takes what fits and only the next one fails (ENOSPC): the change then
 * fails and the state before it stays whole.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeEach, expect, it, vi } from 'vitest'
import { fileState } from '../src/index.js'

const calls: string[] = []
/** How writes to temporary files end: in full, cut short then ENOSPC, or taking nothing. */
let tmpWrites: 'whole' | 'disk full' | 'nothing' = 'whole'
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
    fsync (fd: number, callback: (err: Error | null) => void) {
      calls.push(`sync ${paths.get(fd) ?? '?'}`)
      actual.fsync(fd, callback)
    },
    renameSync (from: string, to: string) { calls.push(`rename ${to}`); actual.renameSync(from, to) },
    writeSync (fd: number, data: Uint8Array, offset = 0, length = data.byteLength - offset) {
      if (tmpWrites !== 'whole' && (paths.get(fd) ?? '').endsWith('.tmp')) {
        if (tmpWrites === 'nothing') return 0
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
beforeEach(() => { calls.length = 0; tmpWrites = 'whole' })

function tempDir (): string {
  const dir = mkdtempSync(join(tmpdir(), 'userspace-review-fsync-'))
  dirs.push(dir)
  return dir
}

const entry = (key: string): { section: 'private', key: string, stamp: number, device: string, json: string } =>
  ({ section: 'private', key, stamp: 1, device: 'd', json: JSON.stringify('x'.repeat(200)) })

it('fsyncs the temporary file, renames it into place, then fsyncs the directory: two fsyncs, in that order', async () => {
  const dir = tempDir()
  await fileState(dir).addPending('k51fsync', [entry('k')])
  expect(calls).toHaveLength(3)
  expect(calls[0]).toMatch(new RegExp(`^sync ${dir}/k51fsync\\.\\d+\\.tmp$`))
  expect(calls[1]).toBe(`rename ${dir}/k51fsync.json`)
  expect(calls[2]).toBe(`sync ${dir}`)
})

it('makes changes started in the same tick one write (a publish records its version and settles its writes together)', async () => {
  const dir = tempDir()
  const state = fileState(dir)
  await state.addPending('k51group', [entry('a'), entry('b')])
  calls.length = 0
  await Promise.all([state.put('k51group', { sequence: 3, root: 'bafyroot' }), state.removePending('k51group', [entry('a')])])
  expect(calls.filter(c => c.startsWith('rename '))).toEqual([`rename ${dir}/k51group.json`])
  expect(await state.get('k51group')).toEqual({ sequence: 3, root: 'bafyroot', pending: [entry('b')] })
})

for (const mode of ['disk full', 'nothing'] as const) {
  it(`a write that ${mode === 'disk full' ? 'is cut short by a full disk' : 'takes nothing'} fails the change (StoreError), renames nothing and leaves the state before it whole`, async () => {
    const dir = tempDir()
    const state = fileState(dir)
    await state.addPending('k51short', [entry('a')])
    calls.length = 0
    tmpWrites = mode
    await expect(state.addPending('k51short', [entry('b')])).rejects.toMatchObject({ name: 'StoreError' })
    tmpWrites = 'whole'
    expect(calls.filter(c => c.startsWith('rename '))).toEqual([])
    expect(await state.get('k51short')).toEqual({ sequence: 0, root: '', pending: [entry('a')] })
    // and the next change, with room again, lands
    await state.addPending('k51short', [entry('c')])
    expect((await state.get('k51short'))?.pending.map(e => e.key)).toEqual(['a', 'c'])
  })
}

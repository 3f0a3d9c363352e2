/**
 * fileState's journal on a real file system: a line cut short by a crash is skipped and never
 * swallows the next change, a journal compacted by one process is followed by another that had it
 * open, a state file of earlier versions is carried over, and a process killed (SIGKILL) while it
 * writes loses none of the changes it had acknowledged.
 */
import { spawn } from 'node:child_process'
import { appendFileSync, chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { fileState } from '../src/index.js'
import { ROOT } from './helpers/hub-process.js'

const dirs: string[] = []
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

function tempDir (): string {
  const dir = mkdtempSync(join(tmpdir(), 'userspace-journal-'))
  dirs.push(dir)
  return dir
}

const entry = (key: string, stamp = 1): { section: 'private', key: string, stamp: number, device: string, json: string } =>
  ({ section: 'private', key, stamp, device: 'd', json: JSON.stringify(`value of ${key}`) })
const keys = async (dir: string, name: string): Promise<string[] | undefined> =>
  (await fileState(dir).get(name))?.pending.map(e => e.key).sort()

describe('fileState journal', () => {
  it('skips a line cut short by a crash, and the next change (from a process that had read the file, or a new one) is a line of its own', async () => {
    const dir = tempDir()
    const name = 'k51torn'
    const writer = fileState(dir)
    await writer.addPending(name, [entry('a')])
    await writer.addPending(name, [entry('b')])
    // another process died halfway through its line
    appendFileSync(join(dir, `${name}.log`), '[["add",[["private","lost",1,"d"')
    expect(await keys(dir, name)).toEqual(['a', 'b'])
    await writer.addPending(name, [entry('c')])
    expect(await keys(dir, name)).toEqual(['a', 'b', 'c'])
    appendFileSync(join(dir, `${name}.log`), '[["remove",[')
    await fileState(dir).addPending(name, [entry('d')])
    await writer.put(name, { sequence: 4, root: 'r4' })
    expect(await fileState(dir).get(name)).toMatchObject({ sequence: 4, root: 'r4' })
    expect(await keys(dir, name)).toEqual(['a', 'b', 'c', 'd'])
  })

  it('writes a removal as the entries it removed, without their values, and reads back exactly what was kept', async () => {
    const dir = tempDir()
    const name = 'k51removal'
    const path = join(dir, `${name}.log`)
    const state = fileState(dir)
    const big = { ...entry('big', 5), json: JSON.stringify('v'.repeat(2_000)) }
    await state.addPending(name, [big, entry('same-stamp', 7), entry('newer', 1)])
    await state.addPending(name, [entry('newer', 9)])
    const size = statSync(path).size
    await state.removePending(name, [
      big,                                                      // removed
      { ...entry('same-stamp', 7), json: '"another value"' },  // not the pending entry: kept
      entry('newer', 1),                                        // an older write than the pending one: kept
      entry('absent', 3)                                        // nothing to remove
    ])
    expect(statSync(path).size - size).toBeLessThan(200)        // the 2 000-character value is not written again
    const expected = [entry('same-stamp', 7), entry('newer', 9)]
    expect((await state.get(name))?.pending).toEqual(expected)
    // the same, replayed by another process, and after a crash of this one's cache
    expect((await fileState(dir).get(name))?.pending).toEqual(expected)
    await fileState(dir).put(name, { sequence: 1, root: 'r1' })
    expect((await fileState(dir).get(name))?.pending).toEqual(expected)
  })

  it('never reads a line cut short right before its newline, even one that parses, and the next change cuts it off', async () => {
    const dir = tempDir()
    const name = 'k51cutvalid'
    const path = join(dir, `${name}.log`)
    const reader = fileState(dir)
    await fileState(dir).put(name, { sequence: 5, root: 'r5' })
    expect(await reader.get(name)).toMatchObject({ sequence: 5 })   // this instance has it open now
    appendFileSync(path, '[["seen",9,"r9"]]')                    // a whole change, but no newline: never acknowledged
    expect(await fileState(dir).get(name)).toMatchObject({ sequence: 5, root: 'r5' })
    await reader.addPending(name, [entry('after')])
    expect(readFileSync(path, 'utf8')).not.toContain('r9')
    expect(await fileState(dir).get(name)).toMatchObject({ sequence: 5, root: 'r5', pending: [entry('after')] })
  })

  it('keeps at most 64 journals open, and reads a closed one again when it changes', async () => {
    const dir = tempDir()
    const state = fileState(dir)
    const open = (): number => readdirSync('/proc/self/fd').length
    const before = open()
    for (let i = 0; i < 80; i++) await state.addPending(`k51many${i}`, [entry('a')])
    expect(open() - before).toBeLessThanOrEqual(64)
    // the first, closed meanwhile, is read again: its change lands beside what it had
    await state.addPending('k51many0', [entry('b')])
    expect(await keys(dir, 'k51many0')).toEqual(['a', 'b'])
  })

  it('skips a damaged line, or a damaged change in a line, and keeps the changes after it', async () => {
    const dir = tempDir()
    const name = 'k51damaged'
    await fileState(dir).addPending(name, [entry('a')])
    appendFileSync(join(dir, `${name}.log`), [
      '\u0000\u0000\u0000\u0000',
      '[["add","not a list"]]',
      '["not", "a change"]',
      '{"neither":"a state nor changes"}',
      '[["add",[["private","bad","not a stamp","d"]]],["add",[["private","good",1,"d","1"]]],["seen","x","r"]]'
    ].join('\n') + '\n')
    await fileState(dir).addPending(name, [entry('b')])
    expect(await keys(dir, name)).toEqual(['a', 'b', 'good'])
    expect(await fileState(dir).get(name)).toMatchObject({ sequence: 0, root: '' })
  })

  it('is compacted once its changes outgrow the state, and a process that had it open follows the new file', async () => {
    const dir = tempDir()
    const name = 'k51compact'
    const path = join(dir, `${name}.log`)
    const a = fileState(dir, { compactBytes: 2_000 })
    const b = fileState(dir, { compactBytes: 1_000_000 })
    await a.addPending(name, [entry('first')])
    await b.addPending(name, [entry('from-b-0')])           // b now holds the journal open
    const inode = statSync(path).ino
    for (let i = 0; i < 40; i++) {
      await a.addPending(name, [entry(`k${i}`)])
      await a.removePending(name, [entry(`k${i}`)])
    }
    expect(statSync(path).ino).not.toBe(inode)              // rewritten whole at least once
    expect(statSync(path).size).toBeLessThan(2_000 + 3 * 1_000)
    // b's next change lands in the file that is there now, not the one it had open
    await b.addPending(name, [entry('from-b-1')])
    expect(await keys(dir, name)).toEqual(['first', 'from-b-0', 'from-b-1'])
    await a.put(name, { sequence: 9, root: 'r9' })
    expect(await b.get(name)).toMatchObject({ sequence: 9, root: 'r9' })
    expect(await keys(dir, name)).toEqual(['first', 'from-b-0', 'from-b-1'])
  })

  it('is compacted once its lines pass compactBytes plus the state now, when that state is small, however large the state it started from', async () => {
    const dir = tempDir()
    const name = 'k51drained'
    const path = join(dir, `${name}.log`)
    const state = fileState(dir, { compactBytes: 2_000 })
    const many = Array.from({ length: 500 }, (_, i) => entry(`key-${i}`))
    await state.addPending(name, many)                      // the journal starts with a state of ~40 KB
    await state.removePending(name, many)                   // all published: nothing pending
    for (let i = 1; i <= 10; i++) await state.put(name, { sequence: i, root: `r${i}` })
    expect(statSync(path).size).toBeLessThan(2_000)
    expect(await fileState(dir).get(name)).toEqual({ sequence: 10, root: 'r10', pending: [] })
    // one write still pending: weighed as it is now, not as the 500 it started from
    const more = Array.from({ length: 500 }, (_, i) => entry(`more-${i}`))
    await state.addPending(name, more)
    await state.put(name, { sequence: 11, root: 'r11' })     // written whole: the state it starts from holds 500
    await state.removePending(name, more.slice(1))
    for (let i = 12; i <= 20; i++) await state.put(name, { sequence: i, root: `r${i}` })
    expect(statSync(path).size).toBeLessThan(2_000 + 1_000)
    expect((await fileState(dir).get(name))?.pending.map(e => e.key)).toEqual(['more-0'])
  })

  it('removes a temporary file a process left when it stopped mid-rewrite, at the next rewrite', async () => {
    const dir = tempDir()
    const name = 'k51crashed'
    const state = fileState(dir, { compactBytes: 100 })
    await state.addPending(name, [entry('a')])
    writeFileSync(join(dir, `${name}.4194303.tmp`), '{"state":{"sequence":0,"root":"","pending":[]}}\n')
    writeFileSync(join(dir, `k51other.4194303.tmp`), 'another journal\'s, left alone\n')
    const inode = statSync(join(dir, `${name}.log`)).ino
    for (let i = 0; i < 20; i++) await state.addPending(name, [entry(`k${i}`)])
    expect(statSync(join(dir, `${name}.log`)).ino).not.toBe(inode)     // rewritten whole since
    expect(readdirSync(dir).filter(f => f.endsWith('.tmp')).sort()).toEqual(['k51other.4194303.tmp'])
  })

  it('keeps pending writes (plain text until published) in a folder and files only their owner may read', async () => {
    // a state folder it creates, and the journal both as first written and as rewritten whole
    const dir = join(tempDir(), 'nested', 'state')
    const name = 'k51private'
    const state = fileState(dir, { compactBytes: 500 })
    await state.addPending(name, [entry('secret')])
    const mode = (path: string): number => statSync(path).mode & 0o777
    expect(mode(dir)).toBe(0o700)
    expect(mode(join(dir, `${name}.log`))).toBe(0o600)
    const inode = statSync(join(dir, `${name}.log`)).ino
    for (let i = 0; i < 20; i++) await state.addPending(name, [entry(`k${i}`)])
    expect(statSync(join(dir, `${name}.log`)).ino).not.toBe(inode)
    expect(mode(join(dir, `${name}.log`))).toBe(0o600)
  })

  it('narrows a journal that others could read (as earlier versions wrote it) to its owner, and leaves an existing folder as it is', async () => {
    const dir = tempDir()
    chmodSync(dir, 0o755)
    const name = 'k51older'
    const state = fileState(dir, { compactBytes: 500 })
    await state.addPending(name, [entry('a')])
    chmodSync(join(dir, `${name}.log`), 0o644)
    // another process (a new fileState) opens it and narrows it
    await fileState(dir).addPending(name, [entry('b')])
    expect(statSync(join(dir, `${name}.log`)).mode & 0o777).toBe(0o600)
    expect(statSync(dir).mode & 0o777).toBe(0o755)
    // a temporary file a crash left with this process id and a wider mode: the rewrite narrows it too
    writeFileSync(join(dir, `${name}.${process.pid}.tmp`), 'left over', { mode: 0o644 })
    chmodSync(join(dir, `${name}.${process.pid}.tmp`), 0o644)
    const inode = statSync(join(dir, `${name}.log`)).ino
    const again = fileState(dir, { compactBytes: 500 })
    for (let i = 0; i < 20; i++) await again.addPending(name, [entry(`k${i}`)])
    expect(statSync(join(dir, `${name}.log`)).ino).not.toBe(inode)
    expect(statSync(join(dir, `${name}.log`)).mode & 0o777).toBe(0o600)
    expect(await keys(dir, name)).toEqual(['a', 'b', ...Array.from({ length: 20 }, (_, i) => `k${i}`)].sort())
  })

  it('carries over a whole-state file written by earlier versions and then removes it', async () => {
    const dir = tempDir()
    const name = 'k51earlier'
    writeFileSync(join(dir, `${name}.json`), JSON.stringify({ sequence: 7, root: 'r7', pending: [entry('old')] }))
    expect(await fileState(dir).get(name)).toEqual({ sequence: 7, root: 'r7', pending: [entry('old')] })
    await fileState(dir).addPending(name, [entry('new')])
    expect(existsSync(join(dir, `${name}.json`))).toBe(false)
    expect(await fileState(dir).get(name)).toEqual({ sequence: 7, root: 'r7', pending: [entry('old'), entry('new')] })
    expect(readFileSync(join(dir, `${name}.log`), 'utf8').split('\n')).toHaveLength(2)   // one line, then the end
  })

  it('a process killed while it writes loses none of the changes it acknowledged', async () => {
    const dir = tempDir()
    const name = 'k51killed'
    // A separate process (the built library) adds one key after another, printing each once its
    // change resolved, and is killed with SIGKILL in the middle of its writes.
    const script = `
      import { fileState } from ${JSON.stringify(join(ROOT, 'dist/src/index.js'))}
      const state = fileState(${JSON.stringify(dir)}, { compactBytes: 4096 })
      for (let i = 0; ; i++) {
        const e = i => ({ section: 'private', key: 'k' + i, stamp: 1, device: 'd', json: JSON.stringify('x'.repeat(i % 300)) })
        await state.addPending(${JSON.stringify(name)}, [e(i)])
        if (i % 3 === 2) await state.removePending(${JSON.stringify(name)}, [e(i - 2)])
        process.stdout.write('k' + i + '\\n')
      }`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    await new Promise<void>((resolve, reject) => {
      const check = setInterval(() => {
        if (out.split('\n').length > 400) { clearInterval(check); child.kill('SIGKILL'); resolve() }
      }, 5)
      child.once('exit', code => { clearInterval(check); reject(new Error(`writer exited early with ${code}`)) })
    })
    await new Promise(resolve => child.once('exit', resolve))
    const acknowledged = out.split('\n').filter(line => line !== '')
    const kept = new Set(await keys(dir, name))
    expect(acknowledged.length).toBeGreaterThanOrEqual(400)
    for (const key of acknowledged) {
      const i = Number(key.slice(1))
      // Every third key is removed right after the key two places later is added, and that key is
      // printed once both changes resolved; without the print, the removal may or may not have landed.
      if (i % 3 !== 0) expect(kept.has(key), key).toBe(true)
      else if (acknowledged.includes(`k${i + 2}`)) expect(kept.has(key), `${key} was removed`).toBe(false)
    }
    // and the journal, as the crash left it, takes the next change
    await fileState(dir).addPending(name, [entry('after')])
    expect(await keys(dir, name)).toContain('after')
  })
})

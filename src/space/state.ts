/**
 * What a device remembers of each space between runs: the newest version it has seen (rollback
 * protection) and the writes it made that no store has taken yet (pending writes). A Space writes a
 * pending entry here before `set` resolves and removes it once a store has accepted a version that
 * holds it, so a write survives a crash, a reload or a closed tab and goes out on the next open.
 *
 * Three implementations: `memoryState()` (this process only), `idbState()` (IndexedDB, the browser
 * default; see store/idb.ts) and `fileState(dir)` (one journal file per space, each change appended and
 * synced, the Node default).
 * Every operation is a merge, never a blind overwrite, so several tabs or processes sharing one state
 * cannot erase each other's pending writes: `put` keeps the higher sequence, `addPending` keeps the
 * winning entry per key, `removePending` removes only the exact entries given.
 */
import { systemClock } from '../clock.js'
import { InvalidInputError, StoreError } from '../errors.js'
import { sameEntry, wins } from './entries.js'
import type { Entry } from './entries.js'
import type { IdbStore } from '../store/idb.js'

/** A write made on this device that no store has accepted yet. */
export interface PendingEntry extends Entry {
  section: 'private' | 'public'
  key: string
}

/** The newest version of a space a device has seen. */
export interface SeenVersion {
  sequence: number
  root: string
}

export interface SpaceState extends SeenVersion {
  /** unpublished writes, at most one per section and key */
  pending: PendingEntry[]
}

/** Where a device keeps, per space name, the newest version it has seen and its unpublished writes. */
export interface SpaceStateStore {
  /**
   * True when what this store keeps survives the process (a file, IndexedDB). `close()` on a space
   * whose writes could not be published resolves when they are kept durably, and rejects otherwise.
   */
  readonly durable: boolean
  get(name: string): Promise<SpaceState | undefined>
  /** Records a version seen; a lower sequence never replaces a higher one. */
  put(name: string, seen: SeenVersion): Promise<void>
  /** Adds unpublished writes (per section and key, the winning entry is kept). */
  addPending(name: string, entries: PendingEntry[]): Promise<void>
  /** Removes exactly these entries (an entry written since is kept). */
  removePending(name: string, entries: PendingEntry[]): Promise<void>
}

/** The merge rules every state store applies, on plain data. */
export function mergeSeen (current: SpaceState | undefined, seen: SeenVersion): SpaceState {
  checkSeen(seen)
  if (current !== undefined && current.sequence > seen.sequence) return current
  return { sequence: seen.sequence, root: seen.root, pending: current?.pending ?? [] }
}

export function mergePending (current: SpaceState | undefined, add: PendingEntry[], remove: PendingEntry[]): SpaceState {
  const pending = new Map<string, PendingEntry>()
  for (const e of current?.pending ?? []) pending.set(slotOf(e), e)
  for (const e of add) {
    checkPending(e)
    const old = pending.get(slotOf(e))
    if (old === undefined || wins(e, old)) pending.set(slotOf(e), copyPending(e))
  }
  for (const e of remove) {
    const old = pending.get(slotOf(e))
    if (old !== undefined && sameEntry(old, e)) pending.delete(slotOf(e))
  }
  return { sequence: current?.sequence ?? 0, root: current?.root ?? '', pending: [...pending.values()] }
}

/** Reads a stored state back, dropping anything malformed (a damaged file is not trusted blindly). */
export function readState (value: unknown): SpaceState | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const v = value as Partial<SpaceState>
  if (!Number.isSafeInteger(v.sequence) || typeof v.root !== 'string') return undefined
  const pending = Array.isArray(v.pending) ? v.pending.filter(isPending).map(copyPending) : []
  return { sequence: v.sequence as number, root: v.root, pending }
}

function slotOf (e: PendingEntry): string {
  return `${e.section}\u0000${e.key}`
}

function copyPending (e: PendingEntry): PendingEntry {
  const out: PendingEntry = { section: e.section, key: e.key, stamp: e.stamp, device: e.device }
  if (e.json !== undefined) out.json = e.json
  return out
}

function isPending (e: unknown): e is PendingEntry {
  const p = e as PendingEntry
  return typeof p === 'object' && p !== null && (p.section === 'private' || p.section === 'public') &&
    typeof p.key === 'string' && Number.isSafeInteger(p.stamp) && typeof p.device === 'string' &&
    (p.json === undefined || typeof p.json === 'string')
}

function checkSeen (seen: SeenVersion): void {
  if (!Number.isSafeInteger(seen?.sequence) || seen.sequence < 0 || typeof seen.root !== 'string') {
    throw new InvalidInputError(`"seen" expected { sequence: non-negative integer, root: string }, got sequence ${String(seen?.sequence).slice(0, 40)} and a root of type ${typeof seen?.root}`)
  }
}

function checkPending (e: PendingEntry): void {
  if (!isPending(e)) throw new InvalidInputError(`"pending" expected entries { section, key, stamp, device, json? }, got ${typeof e === 'object' && e !== null ? `{ ${Object.keys(e).slice(0, 8).join(', ')} }` : String(e)}`)
}

/** State kept in this process only: rollback protection while it runs, nothing after. */
export function memoryState (): SpaceStateStore {
  const states = new Map<string, SpaceState>()
  return {
    durable: false,
    async get (name) {
      const s = states.get(name)
      return s === undefined ? undefined : { ...s, pending: s.pending.map(copyPending) }
    },
    async put (name, seen) { states.set(name, mergeSeen(states.get(name), seen)) },
    async addPending (name, entries) { states.set(name, mergePending(states.get(name), entries, [])) },
    async removePending (name, entries) { states.set(name, mergePending(states.get(name), [], entries)) }
  }
}

/**
 * The directory Node processes keep state in when none is given: `$USERSPACE_STATE_DIR`, else
 * `$XDG_STATE_HOME/userspace`, else `~/.local/state/userspace` (XDG's place for state that should
 * survive restarts but is not configuration); on Windows `%LOCALAPPDATA%\userspace`.
 */
export function defaultStateDir (env: Record<string, string | undefined>, home: string, platform: string): string {
  if (env.USERSPACE_STATE_DIR !== undefined && env.USERSPACE_STATE_DIR !== '') return env.USERSPACE_STATE_DIR
  if (platform === 'win32' && env.LOCALAPPDATA !== undefined) return `${env.LOCALAPPDATA}\\userspace`
  const base = env.XDG_STATE_HOME !== undefined && env.XDG_STATE_HOME !== '' ? env.XDG_STATE_HOME : `${home}/.local/state`
  return `${base}/userspace`
}

/**
 * The parts of `node:fs` a file state uses. The small steps (open, read, append, stat, rename,
 * unlink) are synchronous: each takes microseconds, while an async call waits for a turn of the event
 * loop, and a busy loop (a space publishing in the background) made each state change ~20 such
 * waits. Only the syncs, which wait for the disk, go to the thread pool.
 */
interface NodeFs {
  mkdirSync(path: string, options: { recursive: true, mode?: number }): unknown
  readFileSync(path: string, encoding: 'utf8'): string
  openSync(path: string, flags: string, mode?: number): number
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number
  writeSync(fd: number, data: string | Uint8Array, offset?: number, length?: number): number
  closeSync(fd: number): void
  fsync(fd: number, callback: (err: Error | null) => void): void
  fdatasync(fd: number, callback: (err: Error | null) => void): void
  ftruncateSync(fd: number, length: number): void
  renameSync(from: string, to: string): void
  linkSync(existing: string, path: string): void
  unlinkSync(path: string): void
  readdirSync(path: string): string[]
  statSync(path: string): { mtimeMs: number, ino: number, size: number }
  fstatSync(fd: number): { ino: number, size: number, mode: number }
  fchmodSync(fd: number, mode: number): void
}

/** Loaded lazily and by a computed name, so browser bundles never see `node:` modules. */
let loadedFs: Promise<NodeFs> | undefined
async function nodeFs (): Promise<NodeFs> {
  loadedFs ??= (async () => {
    const name = 'node:fs'
    try {
      return await import(/* @vite-ignore */ /* webpackIgnore: true */ name) as NodeFs
    } catch (err) {
      loadedFs = undefined
      throw new StoreError('fileState needs Node.js (node:fs)', { cause: err })
    }
  })()
  return loadedFs
}

/**
 * Narrows a journal that others may read (one an earlier version created 0644, or a temporary file
 * left by a crash) to its owner. A file this process may not change keeps its mode.
 */
function keepPrivate (fs: NodeFs, fd: number): void {
  try {
    if ((fs.fstatSync(fd).mode & 0o077) !== 0) fs.fchmodSync(fd, PRIVATE_FILE_MODE)
  } catch {}
}

function fsyncFd (fs: NodeFs, fd: number): Promise<void> {
  return new Promise((resolve, reject) => { fs.fsync(fd, err => { if (err === null) resolve(); else reject(err) }) })
}

function fdatasyncFd (fs: NodeFs, fd: number): Promise<void> {
  return new Promise((resolve, reject) => { fs.fdatasync(fd, err => { if (err === null) resolve(); else reject(err) }) })
}

/** How long a lock file may live before it is taken to belong to a crashed process. */
const STALE_LOCK_MS = 10_000
/** A lock naming a live process is taken over only past this age: that pid must be someone else's now. */
const REUSED_PID_LOCK_MS = 10 * 60_000
const LOCK_WAIT_MS = 5_000
/** Journals a fileState keeps open (the least recently changed beyond are closed, and read again when needed). */
const MAX_OPEN_JOURNALS = 64
/**
 * Journals hold pending writes as they are given (a space seals their keys and values first, see
 * sealed-state.ts): they are readable and writable by their owner only (POSIX modes; the umask may
 * only narrow them), and so is a state folder this creates.
 */
const PRIVATE_FILE_MODE = 0o600
const PRIVATE_DIR_MODE = 0o700

/** A journal could not be written anew; the one there is as it was. */
class RenameFailed extends Error {
  constructor (cause: unknown) {
    super(`cannot replace the journal: ${(cause as Error)?.message ?? String(cause)}`, { cause })
  }
}
/**
 * A journal is rewritten whole (compacted) once the lines appended after its first (the state it
 * started from) pass this many bytes plus the size of that state. @default 16 KiB
 */
export const STATE_COMPACT_BYTES = 16 * 1024
/** A state with at most this many pending writes is weighed as it is now (cheap); a larger one by the size it was last written at. */
const SMALL_STATE_ENTRIES = 64

/**
 * State in `dir`, one journal `<name>.log` per space: its first line is a whole state, each later
 * line one change (or the changes committed together), appended and fdatasynced before the change
 * resolves. Each change is made under a lock file (`<name>.lock`, created exclusively), so two
 * processes never erase each other's pending writes; a line cut short by a crash (text after the last
 * newline) is never read, and the next change cuts it off before it appends. Once the changes
 * outgrow the state the file is compacted: the state is written whole to a temporary file, fsynced
 * and renamed over the journal, and the directory fsynced (when that cannot be done, the change is
 * appended and compaction waits for a later one). A `<name>.json` left by earlier
 * versions (the state written whole on every change) is read and replaced by the journal on the
 * first change.
 */
export interface FileStateOptions {
  /** The clock a lock file's age is judged by (against its modification time). @default systemClock */
  nowMs?: () => number
  /** @default STATE_COMPACT_BYTES */
  compactBytes?: number
}

/**
 * One line of a journal: a whole state `{"state":{…}}` (the first line), or the changes committed
 * together, in order, as a list: `[["add",[entry…]],["drop",[entry…]],["seen",sequence,root]]`, an
 * entry `[section,key,stamp,device]` with its JSON value last when it has one (a tombstone has none).
 * A removal is written as the pending entries it removed, each without its value
 * (`[section,key,stamp,device]`): a line is applied to the state every earlier line made, the one
 * its writer applied it to, so naming what went is enough, and a value was often most of a line.
 * Lists rather than objects: a line is written per change, and field names were half of it.
 */
type Change = ['seen', SeenVersion] | ['add', PendingEntry[]] | ['remove', PendingEntry[]]
type PackedEntry = [PendingEntry['section'], string, number, string] | [PendingEntry['section'], string, number, string, string]
type PackedChange = ['seen', number, string] | ['add' | 'drop', PackedEntry[]]
/** A removal as the journal keeps it: what it removed, by place, stamp and device. */
type Drop = ['drop', PackedEntry[]]

/** `c` as a journal line holds it; a removal as the entries it removed from `before`. */
function pack (c: Change, before: SpaceState | undefined): PackedChange {
  if (c[0] === 'seen') return ['seen', c[1].sequence, c[1].root]
  if (c[0] === 'add') return ['add', c[1].map(e => e.json === undefined ? [e.section, e.key, e.stamp, e.device] : [e.section, e.key, e.stamp, e.device, e.json])]
  const held = new Map((before?.pending ?? []).map(e => [slotOf(e), e]))
  return ['drop', c[1].filter(e => { const old = held.get(slotOf(e)); return old !== undefined && sameEntry(old, e) }).map(e => [e.section, e.key, e.stamp, e.device])]
}

/** A packed change back, or undefined when it is not one (a damaged line). */
function unpack (c: unknown): Change | Drop | undefined {
  if (!Array.isArray(c)) return undefined
  if (c[0] === 'seen') return ['seen', { sequence: c[1], root: c[2] }]
  if (c[0] === 'drop') return Array.isArray(c[1]) && (c[1] as unknown[]).every(Array.isArray) ? c as Drop : undefined
  if (c[0] !== 'add' || !Array.isArray(c[1])) return undefined
  const entries: PendingEntry[] = []
  for (const e of c[1] as unknown[]) {
    if (!Array.isArray(e)) return undefined
    const entry = { section: e[0], key: e[1], stamp: e[2], device: e[3] } as PendingEntry
    if (e.length > 4) entry.json = e[4]
    entries.push(entry)
  }
  return ['add', entries]
}

/** Removes the pending entries a journal's removal names (same place, stamp and device). */
function applyDrop (current: SpaceState | undefined, drop: Drop): SpaceState | undefined {
  if (current === undefined) return current
  const gone = new Set<string>()
  for (const [section, key, stamp, device] of drop[1]) gone.add(JSON.stringify([section, key, stamp, device]))
  const pending = current.pending.filter(e => !gone.has(JSON.stringify([e.section, e.key, e.stamp, e.device])))
  return pending.length === current.pending.length ? current : { ...current, pending }
}

function applyChange (current: SpaceState | undefined, change: Change): SpaceState {
  switch (change[0]) {
    case 'seen': return mergeSeen(current, change[1])
    case 'add': return mergePending(current, change[1], [])
    case 'remove': return mergePending(current, [], change[1])
  }
}

/**
 * Reads journal text onto `state`: every complete line in order; a line that does not parse (damaged)
 * is skipped, and so is a change that does not apply. Text after the last newline is a line cut
 * short by a crash (its change was never acknowledged) and is not read, even when it parses: the
 * next writer cuts it off.
 */
function replay (state: SpaceState | undefined, text: string): SpaceState | undefined {
  const lines = text.split('\n')
  lines.pop()
  for (const line of lines) {
    if (line === '') continue
    let parsed: unknown
    try { parsed = JSON.parse(line) } catch { continue }
    if (Array.isArray(parsed)) {
      for (const packed of parsed as unknown[]) {
        const c = unpack(packed)
        if (c === undefined) continue
        if (c[0] === 'drop') state = applyDrop(state, c)
        else try { state = applyChange(state, c) } catch {}
      }
    } else if (typeof parsed === 'object' && parsed !== null && 'state' in parsed) {
      state = readState(parsed.state) ?? state
    }
  }
  return state
}

/** What one fileState knows of a journal it has read: reading it again starts where this ends. */
interface OpenJournal {
  fd: number
  ino: number
  /** bytes of complete lines read or written so far */
  offset: number
  /** bytes after them: a line cut short by a crash, cut off before the next append */
  tail: number
  /** bytes of the state the file started from (its first line) */
  baseBytes: number
  state: SpaceState | undefined
}

export function fileState (dir?: string, options: FileStateOptions = {}): SpaceStateStore {
  const nowMs = options.nowMs ?? systemClock
  const compactBytes = options.compactBytes ?? STATE_COMPACT_BYTES
  let resolvedDir: Promise<string> | undefined
  const directory = async (): Promise<string> => {
    resolvedDir ??= (async () => {
      let d = dir
      if (d === undefined) {
        const osName = 'node:os'
        const os = await import(/* @vite-ignore */ /* webpackIgnore: true */ osName) as { homedir(): string }
        d = defaultStateDir(process.env, os.homedir(), process.platform)
      }
      const fs = await nodeFs()
      // Pending writes sit here until published (sealed by the space): only the user may enter
      // (folders this creates; an existing one keeps its mode, which may be a shared folder's).
      fs.mkdirSync(d, { recursive: true, mode: PRIVATE_DIR_MODE })
      return d
    })()
    return resolvedDir
  }
  // Changes from this process are group-committed: those queued while a write is under way go into
  // the next write together (one line, one sync); the lock file orders writes with other processes.
  interface Queued { change: Change, packed?: PackedChange, resolve: () => void, reject: (err: unknown) => void }
  const queues = new Map<string, Queued[]>()
  const journals = new Map<string, OpenJournal>()

  const fileOf = async (name: string): Promise<string> => {
    if (!/^[a-z0-9]{1,200}$/i.test(name)) throw new InvalidInputError(`"name" expected an IPNS name (letters and digits), got "${name.slice(0, 80)}"`)
    return `${await directory()}/${name}`
  }

  /** The state a `<name>.json` of earlier versions holds, if there is one. */
  const readWhole = (fs: NodeFs, path: string): SpaceState | undefined => {
    let text: string
    try {
      text = fs.readFileSync(`${path}.json`, 'utf8')
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return undefined
      throw new StoreError(`cannot read ${path}.json`, { cause: err })
    }
    try { return readState(JSON.parse(text)) } catch { return undefined }
  }

  const read = (fs: NodeFs, path: string): SpaceState | undefined => {
    let text: string
    try {
      text = fs.readFileSync(`${path}.log`, 'utf8')
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return readWhole(fs, path)
      throw new StoreError(`cannot read ${path}.log`, { cause: err })
    }
    return replay(undefined, text)
  }

  const forget = (fs: NodeFs, name: string): void => {
    const j = journals.get(name)
    if (j === undefined) return
    journals.delete(name)
    try { fs.closeSync(j.fd) } catch {}
  }

  /** Keeps `j` as the open journal of `name`, closing the least recently used past MAX_OPEN_JOURNALS. */
  const keep = (fs: NodeFs, name: string, j: OpenJournal): void => {
    journals.delete(name)
    journals.set(name, j)
    if (journals.size <= MAX_OPEN_JOURNALS) return
    for (const [other] of journals) {
      if (journals.size <= MAX_OPEN_JOURNALS) break
      // A journal whose changes are being written (waiting for their sync) stays open: its file
      // descriptor would otherwise be closed under the sync, and reused by another file.
      if (other === name || queues.has(other)) continue
      forget(fs, other)
    }
  }

  /**
   * Writes `state` whole as a new journal (temporary file, fsync, rename, directory fsync) and opens
   * it. Throws `RenameFailed` when the file is as it was (nothing renamed): the caller may append instead.
   */
  const rewrite = async (fs: NodeFs, name: string, path: string, state: SpaceState): Promise<void> => {
    const line = new TextEncoder().encode(JSON.stringify({ state }) + '\n')
    const tmp = `${path}.${process.pid}.tmp`
    // A temporary file of this journal that is still there was left by a process that stopped
    // mid-rewrite (a rewrite holds the lock, as this one does): it may hold pending writes, so it goes.
    const dir = await directory()
    const stale = new RegExp(`^${name.replace(/[^\w]/g, '\\$&')}\\.\\d+\\.tmp$`)
    try { for (const file of fs.readdirSync(dir)) if (stale.test(file)) fs.unlinkSync(`${dir}/${file}`) } catch {}
    try {
      const fd = fs.openSync(tmp, 'w', PRIVATE_FILE_MODE)
      keepPrivate(fs, fd)
      try {
        writeAll(fs, fd, line)
        await fsyncFd(fs, fd)
      } finally {
        fs.closeSync(fd)
      }
      // Windows refuses to rename over a file another process holds open (EPERM).
      fs.renameSync(tmp, `${path}.log`)
    } catch (err) {
      try { fs.unlinkSync(tmp) } catch {}
      throw new RenameFailed(err)
    }
    forget(fs, name)
    // The rename is durable only once the directory is: without this a power cut after `set`
    // resolved can bring the old file back, and the write with it is gone.
    await syncDirectory(fs, dir)
    const opened = fs.openSync(`${path}.log`, 'a+', PRIVATE_FILE_MODE)
    keep(fs, name, { fd: opened, ino: fs.fstatSync(opened).ino, offset: line.byteLength, tail: 0, baseBytes: line.byteLength, state })
  }

  /**
   * The journal of `name` as it is now, read under the lock: from where this process left it when
   * the file is the same one (only other processes' later lines are read), else whole; undefined
   * when there is none yet.
   */
  const current = (fs: NodeFs, name: string, path: string): OpenJournal | undefined => {
    let ino: number
    try {
      ino = fs.statSync(`${path}.log`).ino
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') throw err
      forget(fs, name)
      return undefined
    }
    let j = journals.get(name)
    // Another process compacted it (a new file, a new inode: the old one stays ours while we hold
    // it open, so the number cannot have been reused), or it was never read here.
    if (j !== undefined && j.ino !== ino) { forget(fs, name); j = undefined }
    if (j === undefined) {
      const fd = fs.openSync(`${path}.log`, 'a+', PRIVATE_FILE_MODE)
      keepPrivate(fs, fd)
      j = { fd, ino: fs.fstatSync(fd).ino, offset: 0, tail: 0, baseBytes: 0, state: undefined }
    }
    keep(fs, name, j)
    const size = fs.fstatSync(j.fd).size
    if (size < j.offset) { forget(fs, name); return current(fs, name, path) }
    j.tail = 0
    if (size > j.offset) {
      const bytes = new Uint8Array(size - j.offset)
      let got = 0
      while (got < bytes.byteLength) {
        const n = fs.readSync(j.fd, bytes, got, bytes.byteLength - got, j.offset + got)
        if (n <= 0) break
        got += n
      }
      // Only complete lines are taken; what follows the last newline is a line cut short.
      const end = bytes.subarray(0, got).lastIndexOf(0x0a) + 1
      if (j.offset === 0 && end > 0) j.baseBytes = bytes.indexOf(0x0a) + 1
      j.state = replay(j.state, new TextDecoder().decode(bytes.subarray(0, end)))
      j.offset += end
      j.tail = size - j.offset
    }
    return j
  }

  const change = async (name: string, c: Change): Promise<void> => {
    const path = await fileOf(name)
    return new Promise<void>((resolve, reject) => {
      let queue = queues.get(name)
      if (queue !== undefined) { queue.push({ change: c, resolve, reject }); return }
      queue = [{ change: c, resolve, reject }]
      queues.set(name, queue)
      void drain(name, path, queue)
    })
  }

  const drain = async (name: string, path: string, queue: Queued[]): Promise<void> => {
    // Changes started in the same tick as the first (a publish records its version and settles its
    // writes together) join it before the batch is taken.
    await nodeFs().catch(() => {})
    while (queue.length > 0) {
      const batch = queue.splice(0)
      const applied: Queued[] = []
      let fs: NodeFs | undefined
      try {
        fs = await nodeFs()
        await lock(fs, `${path}.lock`, nowMs)
        try {
          const j = current(fs, name, path)
          let next = j === undefined ? readWhole(fs, path) : j.state
          for (const q of batch) {
            // A change with bad input is refused alone; the others in the batch still land.
            try {
              const before = next
              next = applyChange(next, q.change)
              q.packed = pack(q.change, before)
              applied.push(q)
            } catch (err) { q.reject(err) }
          }
          if (applied.length > 0 && next !== undefined) {
            let compacted = false
            // Past twice the state (a rewrite costs what the state weighs, so it is paid for by as
            // many bytes of lines): the state it started from, or the state now when that one is
            // small (after a large patch settles, its lines go soon, not after as many more).
            // (the state now is weighed only once the lines pass the threshold: not on every change)
            const weighs = (): number => next.pending.length <= SMALL_STATE_ENTRIES ? Math.min(j?.baseBytes ?? 0, JSON.stringify(next).length) : j?.baseBytes ?? 0
            if (j === undefined || (j.offset - j.baseBytes > compactBytes && j.offset - j.baseBytes > compactBytes + weighs())) {
              try {
                await rewrite(fs, name, path, next)
                compacted = true
              } catch (err) {
                // A journal that cannot be replaced now (a full disk, a file another process holds
                // open on Windows) takes the change as a line; a new one cannot do without.
                if (j === undefined || !(err instanceof RenameFailed)) throw err
              }
              // The journal now holds what a `<name>.json` of earlier versions did.
              if (compacted && j === undefined) { try { fs.unlinkSync(`${path}.json`) } catch {} }
            }
            if (!compacted && j !== undefined) {
              // The file as it was read under this lock, or someone wrote without it (a lock taken
              // over from a process presumed dead): nothing is cut or appended then.
              if (fs.fstatSync(j.fd).size !== j.offset + j.tail) {
                forget(fs, name)
                throw new StoreError(`${path}.log changed while this process held its lock`)
              }
              // A line cut short by a crash (never acknowledged) is cut off first, so that it can
              // neither swallow this line nor be read as one once this line ends it.
              if (j.tail > 0) { fs.ftruncateSync(j.fd, j.offset); j.tail = 0 }
              const bytes = new TextEncoder().encode(JSON.stringify(applied.map(q => q.packed)) + '\n')
              try {
                writeAll(fs, j.fd, bytes)
                await fdatasyncFd(fs, j.fd)
              } catch (err) {
                // A change that fails leaves no line to be read later (a full disk can take half).
                try { fs.ftruncateSync(j.fd, j.offset) } catch {}
                forget(fs, name)
                throw err
              }
              j.offset += bytes.byteLength
              j.state = next
            }
          }
        } finally {
          // Only our own lock: one taken over from us (we were presumed dead) belongs to another now.
          if (readOr(fs, `${path}.lock`, '') === String(process.pid)) { try { fs.unlinkSync(`${path}.lock`) } catch {} }
        }
        for (const q of applied) q.resolve()
      } catch (err) {
        const failure = new StoreError(`cannot write the state of ${name} in ${await directory().catch(() => '?')}`, { cause: err })
        for (const q of applied.length > 0 ? applied : batch) q.reject(failure)
      }
    }
    queues.delete(name)
  }

  return {
    durable: true,
    async get (name) {
      const path = await fileOf(name)
      return read(await nodeFs(), path)
    },
    // Copied as they are queued: the journal line is written later, and holds only the fields read back.
    async put (name, seen) { await change(name, ['seen', { sequence: seen?.sequence, root: seen?.root }]) },
    async addPending (name, entries) { await change(name, ['add', entries.map(e => isPending(e) ? copyPending(e) : e)]) },
    async removePending (name, entries) { await change(name, ['remove', entries.map(e => isPending(e) ? copyPending(e) : e)]) }
  }
}

async function lock (fs: NodeFs, path: string, nowMs: () => number): Promise<void> {
  // A wait, not a date: measured on the monotonic timer, whatever the clock says.
  const deadline = performance.now() + LOCK_WAIT_MS
  for (let wait = 2; ; wait = Math.min(wait * 2, 100)) {
    try {
      takeLock(fs, path)
      return
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err
    }
    if (removeStaleLock(fs, path, nowMs)) continue
    if (performance.now() > deadline) throw new StoreError(`the state lock ${path} is held by another process`)
    await new Promise(resolve => setTimeout(resolve, wait))
  }
}

/**
 * Creates the lock file at `path` naming this process, or throws EEXIST. The pid is written to a
 * file of this process's first and linked into place, so a lock never exists empty: created empty
 * and then written, a process killed in between left a lock that every other process waited on for
 * its whole stale period. Where hard links are refused (some file systems), created exclusively.
 */
function takeLock (fs: NodeFs, path: string): void {
  const pid = new TextEncoder().encode(String(process.pid))
  const mine = `${path}.${process.pid}`
  let fd = fs.openSync(mine, 'w')
  try { writeAll(fs, fd, pid) } finally { fs.closeSync(fd) }
  try {
    fs.linkSync(mine, path)
    return
  } catch (err) {
    // Held by another; any other failure is a file system without hard links (Windows reports
    // FAT's as EISDIR or UNKNOWN), which gets the lock created exclusively instead.
    if ((err as { code?: string }).code === 'EEXIST') throw err
  } finally {
    try { fs.unlinkSync(mine) } catch {}
  }
  fd = fs.openSync(path, 'wx')
  try { writeAll(fs, fd, pid) } finally { fs.closeSync(fd) }
}

/**
 * Removes the lock at `path` when its process is gone (killed mid-write) or it is very old. Judging
 * and removing happen under a second lock file: two processes that both judged the same lock stale
 * could otherwise both remove "it", the second removing the lock the first just took, and both
 * would write. Returns true when the lock is gone.
 */
function removeStaleLock (fs: NodeFs, path: string, nowMs: () => number): boolean {
  const guard = `${path}.takeover`
  try {
    fs.closeSync(fs.openSync(guard, 'wx'))
  } catch (err) {
    if ((err as { code?: string }).code !== 'EEXIST') return false
    // A guard is held for a moment; one this old was left by a process that died holding it.
    try { if (nowMs() - fs.statSync(guard).mtimeMs > STALE_LOCK_MS) fs.unlinkSync(guard) } catch {}
    return false
  }
  try {
    let text: string
    try {
      text = fs.readFileSync(path, 'utf8')
    } catch (err) {
      return (err as { code?: string }).code === 'ENOENT'
    }
    const owner = Number.parseInt(text, 10)
    const named = Number.isSafeInteger(owner) && owner > 0
    const age = nowMs() - fs.statSync(path).mtimeMs
    // A live holder keeps its lock however slow its write (a paused laptop, a slow fsync); only a
    // lock far older than any write (its pid reused by another process) is taken from a live pid.
    if (named && alive(owner) && age <= REUSED_PID_LOCK_MS) return false
    // A lock without a pid is being written right now, or was left empty by a crash.
    if (!named && age <= STALE_LOCK_MS) return false
    fs.unlinkSync(path)
    return true
  } catch {
    return false
  } finally {
    try { fs.unlinkSync(guard) } catch {}
  }
}

async function syncDirectory (fs: NodeFs, dir: string): Promise<void> {
  let fd
  try {
    fd = fs.openSync(dir, 'r')
  } catch (err) {
    // Windows cannot open a directory for fsync (and makes renames durable itself).
    if (['EISDIR', 'EPERM', 'EACCES'].includes((err as { code?: string }).code ?? '')) return
    throw err
  }
  try { await fsyncFd(fs, fd) } finally { fs.closeSync(fd) }
}

/**
 * Writes all of `bytes` at `fd`: one write may take only part of them (a disk nearly full takes what
 * fits, and only the next write fails with ENOSPC), and a state file cut short must never be renamed
 * into place.
 */
function writeAll (fs: NodeFs, fd: number, bytes: Uint8Array): void {
  let written = 0
  while (written < bytes.byteLength) {
    const n = fs.writeSync(fd, bytes, written, bytes.byteLength - written)
    if (n <= 0) throw new StoreError(`wrote ${written} of ${bytes.byteLength} bytes of a state file`)
    written += n
  }
}

function readOr (fs: NodeFs, path: string, fallback: string): string {
  try { return fs.readFileSync(path, 'utf8') } catch { return fallback }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM'
  }
}

/**
 * The state a space uses when none is given: IndexedDB where there is one (browsers), a file in
 * the user's state directory in Node, memory elsewhere.
 */
export async function defaultState (): Promise<SpaceStateStore> {
  if (typeof globalThis.indexedDB !== 'undefined') {
    const { idbStore } = await import('../store/idb.js')
    return idbState(idbStore('userspace'))
  }
  if (typeof process !== 'undefined' && typeof process.versions?.node === 'string') return fileState()
  return memoryState()
}

/** The state kept in an `idbStore`'s database (each change one IndexedDB transaction, atomic across tabs). */
export function idbState (store: Pick<IdbStore, 'readState' | 'updateState'>): SpaceStateStore {
  return {
    durable: true,
    async get (name) { return readState(await store.readState(name)) },
    async put (name, seen) { await store.updateState(name, current => mergeSeen(readState(current), seen)) },
    async addPending (name, entries) { await store.updateState(name, current => mergePending(readState(current), entries, [])) },
    async removePending (name, entries) { await store.updateState(name, current => mergePending(readState(current), [], entries)) }
  }
}

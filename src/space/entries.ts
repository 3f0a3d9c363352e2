/**
 * Entries and their merge rule. Every key holds its latest entry: a hybrid logical clock stamp, the
 * writing device's id, and the value's JSON text (absent for a removal: a tombstone). Merge is per
 * key: the entry with the higher stamp wins; equal stamps are ordered by device id, then by value
 * text, so every device picks the same winner and all of them converge. Removes follow the same rule
 * as sets: the later of a concurrent remove and set wins.
 */
import { systemClock } from '../clock.js'
import { FormatError, InvalidInputError } from '../errors.js'

/**
 * Writes are refused while the device clock reads past this (2100-01-01): stamps then stay below
 * half the safe-integer range, so a logical counter can move past any stamp ever written without
 * leaving the range every reader accepts. A device clock years ahead still cannot hide later writes:
 * the clock of every device that sees its stamps moves past them.
 */
export const MAX_CLOCK_MS = Date.UTC(2100, 0, 1)

export interface Entry {
  /** HLC stamp: milliseconds × 1000 + a logical counter */
  stamp: number
  device: string
  /** the value's JSON text; undefined for a tombstone */
  json?: string
}

/** True when `a` beats `b` under the merge rule (a total order over distinct entries). */
export function wins (a: Entry, b: Entry): boolean {
  if (a.stamp !== b.stamp) return a.stamp > b.stamp
  if (a.device !== b.device) return a.device > b.device
  return (a.json ?? '') > (b.json ?? '')
}

export function sameEntry (a: Entry, b: Entry): boolean {
  return a.stamp === b.stamp && a.device === b.device && a.json === b.json
}

/**
 * A hybrid logical clock (Kulkarni et al. 2014) packed into one safe integer: wall-clock
 * milliseconds × 1000 plus a counter. Stamps never go backwards, stay close to real time, and
 * move past any stamp seen from another device.
 */
export class HybridClock {
  private last = 0

  constructor (private readonly now: () => number = systemClock) {}

  next (): number {
    const now = this.now()
    if (!(now <= MAX_CLOCK_MS)) throw new InvalidInputError(`the device clock reads ${String(now)} ms since 1970, past ${MAX_CLOCK_MS} (2100-01-01): fix the clock to write`)
    const stamp = Math.max(Math.floor(now) * 1000, this.last + 1)
    if (!Number.isSafeInteger(stamp)) throw new InvalidInputError('the space\'s stamps have reached the safe-integer limit')
    this.last = stamp
    return stamp
  }

  observe (stamp: number): void {
    if (stamp > this.last) this.last = stamp
  }
}

/**
 * An entry's size as the sections count it (limits and bucket sizing): the length of its line
 * `[key, stamp, device, value]`. Counted, not stored; it only has to be the same for the same entry.
 */
export function entrySize (keyJson: string, entry: Entry): number {
  return keyJson.length + String(entry.stamp).length + entry.device.length + (entry.json === undefined ? 0 : entry.json.length + 1) + 7
}

/**
 * A private bucket's plaintext (format 2): line 0 is the JSON array of the device ids the bucket's
 * entries name; every further line is one entry, `<key as a JSON string> TAB <stamp> TAB <device
 * index> [TAB <value JSON>]` (no value: a tombstone), lines separated by LF. JSON text never holds a
 * raw TAB or LF, so a line splits without a JSON parser, and a value's text is kept as it is (parsed
 * only when read).
 */
export function bucketText (entries: Array<[string, Entry]>): string {
  const devices: string[] = []
  const deviceIndex = new Map<string, number>()
  const lines: string[] = ['']
  for (const [key, entry] of entries) {
    let d = deviceIndex.get(entry.device)
    if (d === undefined) { d = devices.length; devices.push(entry.device); deviceIndex.set(entry.device, d) }
    const head = `${JSON.stringify(key)}\t${entry.stamp}\t${d}`
    lines.push(entry.json === undefined ? head : `${head}\t${entry.json}`)
  }
  lines[0] = JSON.stringify(devices)
  return lines.join('\n')
}

/** A bucket's first line: the JSON array of the device ids its entries name, and where it ends. */
function deviceTable (text: string): string[] & { end: number } {
  let end = text.indexOf('\n')
  if (end < 0) end = text.length
  let devices: unknown
  try {
    devices = JSON.parse(text.slice(0, end))
  } catch {
    throw new FormatError('private bucket has no device table')
  }
  if (!Array.isArray(devices) || !devices.every(d => typeof d === 'string')) throw new FormatError('private bucket has a malformed device table')
  return Object.assign(devices as string[], { end })
}

/**
 * Reads a bucket's plaintext, calling `each` per entry (`json` undefined: a tombstone). Keys, stamps
 * and device indexes are checked; value texts are kept unparsed (a malformed one is a FormatError
 * when read).
 */
export function readBucket (text: string, each: (key: string, stamp: number, device: string, json: string | undefined, size: number) => void): void {
  // Walks the text with indexOf rather than split: no array of line strings for a large bucket.
  const devices = deviceTable(text)
  let end = devices.end
  while (end < text.length) {
    const start = end + 1
    end = text.indexOf('\n', start)
    if (end < 0) end = text.length
    const t1 = text.indexOf('\t', start)
    const t2 = t1 < 0 || t1 >= end ? -1 : text.indexOf('\t', t1 + 1)
    if (t2 < 0 || t2 >= end) throw new FormatError('private bucket has a malformed entry')
    let t3 = text.indexOf('\t', t2 + 1)
    if (t3 >= end) t3 = -1
    const keyJson = text.slice(start, t1)
    const key = readKey(keyJson)
    const stamp = digits(text, t1 + 1, t2)
    const device = devices[digits(text, t2 + 1, t3 < 0 ? end : t3)] as string | undefined
    if (!Number.isSafeInteger(stamp) || device === undefined) throw new FormatError('private bucket has a malformed entry')
    const json = t3 < 0 ? undefined : text.slice(t3 + 1, end)
    if (json?.length === 0) throw new FormatError('private bucket has a malformed entry')
    each(key, stamp, device, json, keyJson.length + (t2 - t1 - 1) + device.length + (json === undefined ? 0 : json.length + 1) + 7)
  }
}

/**
 * Reads a bucket's keys only, calling `each(key)` per entry, and checks every line as `readBucket`
 * does (keys, stamps, device indexes) without building entries. Returns the entry count, the
 * entries' total size (as `entrySize` counts it) and the highest stamp.
 */
export function scanBucket (text: string, each: (key: string) => void): { entries: number, bytes: number, highest: number } {
  const devices = deviceTable(text)
  let end = devices.end
  let entries = 0
  let bytes = 0
  let highest = 0
  while (end < text.length) {
    const start = end + 1
    end = text.indexOf('\n', start)
    if (end < 0) end = text.length
    const t1 = text.indexOf('\t', start)
    const t2 = t1 < 0 || t1 >= end ? -1 : text.indexOf('\t', t1 + 1)
    if (t2 < 0 || t2 >= end) throw new FormatError('private bucket has a malformed entry')
    let t3 = text.indexOf('\t', t2 + 1)
    if (t3 >= end) t3 = -1
    const stamp = digits(text, t1 + 1, t2)
    const device = devices[digits(text, t2 + 1, t3 < 0 ? end : t3)] as string | undefined
    if (!Number.isSafeInteger(stamp) || device === undefined || t3 + 1 === end) throw new FormatError('private bucket has a malformed entry')
    each(readKey(text.slice(start, t1)))
    entries++
    if (stamp > highest) highest = stamp
    bytes += (t1 - start) + (t2 - t1 - 1) + device.length + (t3 < 0 ? 0 : end - t3) + 7
  }
  return { entries, bytes, highest }
}

/** The non-negative integer written in decimal (no leading zero) in text[from, to), NaN when it is not one. */
function digits (text: string, from: number, to: number): number {
  if (to <= from || to - from > 16 || (to - from > 1 && text.charCodeAt(from) === 48)) return NaN
  let n = 0
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i) - 48
    if (c < 0 || c > 9) return NaN
    n = n * 10 + c
  }
  return n
}

/** A key from its JSON string text: most keys need no escapes and are sliced, not parsed. */
function readKey (keyJson: string): string {
  const last = keyJson.length - 1
  if (last < 1 || keyJson.charCodeAt(0) !== 34 || keyJson.charCodeAt(last) !== 34) throw new FormatError('private bucket has a malformed key')
  if (keyJson.indexOf('\\') < 0) {
    if (keyJson.indexOf('"', 1) !== last) throw new FormatError('private bucket has a malformed key')
    return keyJson.slice(1, last)
  }
  let key: unknown
  try { key = JSON.parse(keyJson) } catch { throw new FormatError('private bucket has a malformed key') }
  if (typeof key !== 'string') throw new FormatError('private bucket has a malformed key')
  return key
}

/**
 * The public section's two blocks (format 2): `profile` is the plain JSON document `{ key: value }`
 * of the live keys (codec json, what any IPFS tool reads); `clock` (dag-cbor) is what merging needs
 * beside it: `{ version: 2, entries: { key: [stamp, device, live] } }`, tombstones included. They
 * must agree: every live key in the clock is in the profile and nothing else is.
 */
export function readPublicBlocks (profile: unknown, clock: unknown): Array<[string, Entry]> {
  if (typeof profile !== 'object' || profile === null || Array.isArray(profile)) throw new FormatError('public profile is not a JSON object')
  const c = clock as { version?: unknown, entries?: unknown }
  if (typeof c !== 'object' || c === null || c.version !== 2 || typeof c.entries !== 'object' || c.entries === null || Array.isArray(c.entries)) {
    throw new FormatError('public clock block has an unknown format')
  }
  const values = profile as Record<string, unknown>
  const out: Array<[string, Entry]> = []
  let live = 0
  for (const [key, stamp] of Object.entries(c.entries as Record<string, unknown>)) {
    if (!Array.isArray(stamp) || stamp.length !== 3 || !Number.isSafeInteger(stamp[0]) || (stamp[0] as number) < 0 || typeof stamp[1] !== 'string' || typeof stamp[2] !== 'boolean') {
      throw new FormatError('public clock block has a malformed entry')
    }
    const entry: Entry = { stamp: stamp[0] as number, device: stamp[1] }
    const has = Object.prototype.hasOwnProperty.call(values, key)
    if (stamp[2] !== has) throw new FormatError(`public clock block and profile disagree about "${key.slice(0, 80)}"`)
    if (has) { entry.json = JSON.stringify(values[key]); live++ }
    out.push([key, entry])
  }
  if (live !== Object.keys(values).length) throw new FormatError('public profile holds keys its clock block does not stamp')
  return out
}

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
 * A key as a bucket line writes it: as it is, unless it starts with a double quote or holds a TAB or
 * an LF, which a line cannot carry raw; those are written as a JSON string (which starts with a
 * double quote, so a reader tells the two apart by the first character).
 */
export function keyText (key: string): string {
  return key.charCodeAt(0) === 34 || key.includes('\t') || key.includes('\n') ? JSON.stringify(key) : key
}

/**
 * An entry's size as the sections count it (limits and bucket sizing): about the length of its
 * bucket line, with the stamp counted in decimal. Counted, not stored; it only has to be the same
 * for the same entry, whether written here or read back from a bucket.
 */
export function entrySize (keyText: string, entry: Entry): number {
  return keyText.length + decimalLength(entry.stamp) + entry.device.length + (entry.json === undefined ? 0 : entry.json.length + 1) + 7
}

/** Digits of a non-negative integer in decimal, without making a string. */
function decimalLength (n: number): number {
  let digits = 1
  for (let p = 10; n >= p && digits < 17; p *= 10) digits++
  return digits
}

/**
 * A private section's totals, carried by one bucket of each version (its first line names them) so
 * that an open need not decrypt every bucket: the entry count, the entries' size (as `entrySize`
 * counts it) and the highest stamp.
 */
export interface BucketTotals {
  entries: number
  bytes: number
  highest: number
}

/**
 * A private bucket's plaintext (format 2): line 0 is a JSON array, the bucket's base stamp (at most
 * the lowest stamp of its entries: the lowest when the bucket is written whole, 0 when it has none;
 * see `editBucketLines`) followed by the device ids its entries name (written whole: each once, in
 * order of first use) and,
 * in the one bucket of a version that carries them, the section's totals as a last element
 * `[entries, bytes, highest]`; every further line is one entry, `<key> TAB <stamp − base, in base
 * 36>[:<device index>] [TAB <value JSON>]` (no value: a tombstone; no device index: device 0, the
 * usual case of a bucket one device wrote), lines separated by LF. The key is written as `keyText`
 * says. Stamps are 16 decimal digits; written from the base in base 36 they take 4 to 10 characters.
 * JSON text never holds a raw TAB or LF, so a line splits without a JSON parser, and a value's text
 * is kept as it is (parsed only when read).
 */
export function bucketText (entries: Array<[string, Entry]>, totals?: BucketTotals): string {
  return bucketLinesText(bucketLines(entries), totals)
}

/**
 * A bucket's entry lines as a writer keeps them between publishes, so that the next one rewrites
 * only the lines of the keys written since (`editBucketLines`) instead of every line of the bucket:
 * at 100 000 keys, visiting a bucket's ~24 entries (spread over a large heap) was the costliest step
 * of a `set` after the signature. `body` is the lines after line 0, each behind its LF; `base` and
 * `devices` are what line 0 says of them. `edits` counts the lines rewritten since the bucket was
 * last written whole.
 */
export interface BucketLines {
  base: number
  devices: string[]
  body: string
  lines: number
  edits: number
}

/** The lines of a bucket holding `entries`, written whole (base: their lowest stamp). */
export function bucketLines (entries: Array<[string, Entry]>): BucketLines {
  const devices: string[] = []
  const deviceIndex = new Map<string, number>()
  let base = entries.length === 0 ? 0 : Infinity
  for (const [, entry] of entries) if (entry.stamp < base) base = entry.stamp
  const lines: string[] = ['']
  for (const [key, entry] of entries) {
    let d = deviceIndex.get(entry.device)
    if (d === undefined) { d = devices.length; devices.push(entry.device); deviceIndex.set(entry.device, d) }
    lines.push(entryLine(keyText(key), entry.stamp - base, d, entry.json))
  }
  return { base, devices, body: lines.join('\n'), lines: entries.length, edits: 0 }
}

function entryLine (key: string, delta: number, device: number, json: string | undefined): string {
  const head = device === 0 ? `${key}\t${delta.toString(36)}` : `${key}\t${delta.toString(36)}:${device}`
  return json === undefined ? head : `${head}\t${json}`
}

/**
 * Rewrites the line of `key` (appends one for a key the bucket did not hold) to say `entry`, keeping
 * the base and the other lines: the base then stays at most the lowest stamp, which is all a reader
 * needs (stamps are base + a non-negative offset). Returns false, changing nothing, when the bucket
 * should be written whole instead: the entry is older than the base, or the bucket has had as many
 * lines rewritten as it holds since it was last written whole (so a base left behind by the keys
 * written since costs a few characters per line, for a bounded time, and whole writes stay one in
 * every `lines` edits; a bucket that held no line, whose base says nothing, is always written whole). Only for lines this module wrote:
 * another writer's text may say a key in another form (quoted, say), which this would not find.
 */
export function editBucketLines (b: BucketLines, key: string, entry: Entry): boolean {
  if (b.edits >= b.lines || entry.stamp < b.base) return false
  const text = keyText(key)
  let d = b.devices.indexOf(entry.device)
  if (d < 0) { d = b.devices.length; b.devices.push(entry.device) }
  const line = entryLine(text, entry.stamp - b.base, d, entry.json)
  // A line starts after an LF with the key's text and a TAB; neither appears raw in a key's text
  // or in JSON, so this finds the key's own line and no other.
  const at = b.body.indexOf(`\n${text}\t`)
  if (at < 0) {
    b.body = `${b.body}\n${line}`
    b.lines++
  } else {
    let end = b.body.indexOf('\n', at + 1)
    if (end < 0) end = b.body.length
    b.body = `${b.body.slice(0, at + 1)}${line}${b.body.slice(end)}`
  }
  b.edits++
  return true
}

/** A bucket's plaintext from its lines: line 0 (base, devices, the totals it carries), then the entry lines. */
export function bucketLinesText (b: BucketLines, totals?: BucketTotals): string {
  const table = JSON.stringify(totals === undefined ? [b.base, ...b.devices] : [b.base, ...b.devices, [totals.entries, totals.bytes, totals.highest]])
  // one flat string (a join copies the edited body once), not a rope for the encoder to flatten
  return [table, b.body].join('')
}

const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0

/** A bucket's first line: its base stamp, the device ids its entries name, the totals it carries, and where the line ends. */
function deviceTable (text: string): { base: number, devices: string[], totals: BucketTotals | undefined, end: number } {
  let end = text.indexOf('\n')
  if (end < 0) end = text.length
  let table: unknown
  try {
    table = JSON.parse(text.slice(0, end))
  } catch {
    throw new FormatError('private bucket has no device table')
  }
  if (!Array.isArray(table) || !isCount(table[0])) throw new FormatError('private bucket has a malformed device table')
  const last: unknown = table.length > 1 ? table[table.length - 1] : undefined
  let totals: BucketTotals | undefined
  if (Array.isArray(last)) {
    if (last.length !== 3 || !last.every(isCount)) throw new FormatError('private bucket has malformed totals')
    totals = { entries: last[0] as number, bytes: last[1] as number, highest: last[2] as number }
  }
  const devices = table.slice(1, totals === undefined ? table.length : -1)
  if (!devices.every(d => typeof d === 'string')) throw new FormatError('private bucket has a malformed device table')
  return { base: table[0] as number, devices: devices as string[], totals, end }
}

/** The totals a bucket's first line carries, or undefined when it carries none (FormatError when the line is malformed). */
export function bucketTotals (text: string): BucketTotals | undefined {
  return deviceTable(text).totals
}

/**
 * The one walker over a bucket's entry lines: checks each line's shape, stamp and device index and
 * calls `line` with the line's bounds as offsets into `text` (`valueAt` -1: a tombstone) and its size
 * as `entrySize` counts it. Walks with
 * indexOf rather than split, so a large bucket makes no array of line strings.
 */
function eachLine (text: string, line: (start: number, keyEnd: number, stamp: number, device: string, valueAt: number, end: number, size: number) => void): void {
  const { base, devices, end: tableEnd } = deviceTable(text)
  let end = tableEnd
  while (end < text.length) {
    const start = end + 1
    end = text.indexOf('\n', start)
    if (end < 0) end = text.length
    const t1 = text.indexOf('\t', start)
    if (t1 <= start || t1 >= end) throw new FormatError('private bucket has a malformed entry')
    let t2 = text.indexOf('\t', t1 + 1)
    if (t2 >= end) t2 = -1
    const fieldEnd = t2 < 0 ? end : t2
    // The stamp field is short: walked by hand to its ':' rather than searched with indexOf, which
    // could run on into later lines.
    let colon = t1 + 1
    while (colon < fieldEnd && text.charCodeAt(colon) !== 58) colon++
    const stamp = base + base36(text, t1 + 1, colon)
    // Device 0 is written by leaving the index out, so ":0" is not a form a writer makes.
    const index = colon === fieldEnd ? 0 : digits(text, colon + 1, fieldEnd)
    const device = index === 0 && colon !== fieldEnd ? undefined : devices[index]
    // An empty value (a TAB ending the line) is neither a value nor a tombstone.
    if (!Number.isSafeInteger(stamp) || device === undefined || t2 + 1 === end) throw new FormatError('private bucket has a malformed entry')
    line(start, t1, stamp, device, t2 < 0 ? -1 : t2 + 1, end, (t1 - start) + decimalLength(stamp) + device.length + (t2 < 0 ? 0 : end - t2) + 7)
  }
}

/**
 * Reads a bucket's plaintext, calling `each` per entry (`json` undefined: a tombstone). Keys, stamps
 * and device indexes are checked; value texts are kept unparsed (a malformed one is a FormatError
 * when read).
 */
export function readBucket (text: string, each: (key: string, stamp: number, device: string, json: string | undefined, size: number) => void): void {
  eachLine(text, (start, keyEnd, stamp, device, valueAt, end, size) => {
    each(readKey(text, start, keyEnd), stamp, device, valueAt < 0 ? undefined : text.slice(valueAt, end), size)
  })
}

/**
 * Checks every line of a bucket as `readBucket` does (keys, stamps, device indexes) without
 * building entries, calling `each(key)` per entry when given. Returns the entry count, the entries'
 * total size (as `entrySize` counts it) and the highest stamp.
 */
export function scanBucket (text: string, each?: (key: string) => void): { entries: number, bytes: number, highest: number } {
  let entries = 0
  let bytes = 0
  let highest = 0
  eachLine(text, (start, keyEnd, stamp, _device, _valueAt, _end, size) => {
    // Without a listener a plain key needs no string of its own (an open of 100 000 keys made one
    // per key only to drop it); a quoted key is still parsed, to check it.
    if (each !== undefined) each(readKey(text, start, keyEnd))
    else if (text.charCodeAt(start) === 34) readKey(text, start, keyEnd)
    entries++
    if (stamp > highest) highest = stamp
    bytes += size
  })
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

/** The non-negative integer written in base 36 (0-9, a-z; no leading zero, at most 11 digits) in text[from, to), NaN when it is not one. */
function base36 (text: string, from: number, to: number): number {
  if (to <= from || to - from > 11 || (to - from > 1 && text.charCodeAt(from) === 48)) return NaN
  let n = 0
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i)
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 122 ? c - 87 : -1
    if (d < 0) return NaN
    n = n * 36 + d
  }
  return n
}

/** A key from its text in text[start, end) (`keyText`'s form; never empty, as `checkKey` requires): raw keys are sliced, quoted ones parsed as JSON. */
function readKey (text: string, start: number, end: number): string {
  if (end <= start) throw new FormatError('private bucket has a malformed key')
  if (text.charCodeAt(start) !== 34) return text.slice(start, end)
  let key: unknown
  try { key = JSON.parse(text.slice(start, end)) } catch { throw new FormatError('private bucket has a malformed key') }
  if (typeof key !== 'string' || key.length === 0) throw new FormatError('private bucket has a malformed key')
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

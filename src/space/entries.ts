/**
 * Entries and their merge rule. Every key holds its latest entry: a hybrid logical clock stamp, the
 * writing device's id, and the value's JSON text (absent for a removal: a tombstone). Merge is per
 * key: the entry with the higher stamp wins; equal stamps are ordered by device id, then by value
 * text, so every device picks the same winner and all of them converge. Removes follow the same rule
 * as sets: the later of a concurrent remove and set wins.
 */
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

  constructor (private readonly now: () => number = Date.now) {}

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

/** One entry as a line of a bucket's JSON array: `[key, stamp, device, value]` (no value: tombstone). */
export function entryLine (key: string, entry: Entry): string {
  const head = `[${JSON.stringify(key)},${entry.stamp},${JSON.stringify(entry.device)}`
  return entry.json === undefined ? head + ']' : `${head},${entry.json}]`
}

/** Parses a bucket's plaintext (`{"v":1,"e":[lines…]}`) into entries. */
export function parseBucket (text: string): Array<[string, Entry]> {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    throw new FormatError('private bucket is not JSON')
  }
  const lines = (doc as { v?: unknown, e?: unknown })?.e
  if ((doc as { v?: unknown })?.v !== 1 || !Array.isArray(lines)) throw new FormatError('private bucket has an unknown format')
  return lines.map(line => readLine(line))
}

export function bucketText (lines: string[]): string {
  return `{"v":1,"e":[${lines.join(',')}]}`
}

function readLine (line: unknown): [string, Entry] {
  if (!Array.isArray(line) || (line.length !== 3 && line.length !== 4)) throw new FormatError('private bucket has a malformed entry')
  const [key, stamp, device] = line as [unknown, unknown, unknown]
  if (typeof key !== 'string' || !Number.isSafeInteger(stamp) || typeof device !== 'string') {
    throw new FormatError('private bucket has a malformed entry')
  }
  const entry: Entry = { stamp: stamp as number, device }
  if (line.length === 4) entry.json = JSON.stringify(line[3])
  return [key, entry]
}

/** Public section entries as stored in dag-cbor: `{ key: [stamp, device, value?] }`. */
export function readPublicEntries (value: unknown): Array<[string, Entry]> {
  const map = (value as { version?: unknown, entries?: unknown })
  if (map?.version !== 1 || typeof map.entries !== 'object' || map.entries === null) {
    throw new FormatError('public section has an unknown format')
  }
  const out: Array<[string, Entry]> = []
  for (const [key, line] of Object.entries(map.entries as Record<string, unknown>)) {
    if (!Array.isArray(line) || (line.length !== 2 && line.length !== 3) || !Number.isSafeInteger(line[0]) || typeof line[1] !== 'string') {
      throw new FormatError('public section has a malformed entry')
    }
    const entry: Entry = { stamp: line[0] as number, device: line[1] as string }
    if (line.length === 3) entry.json = JSON.stringify(line[2])
    out.push([key, entry])
  }
  return out
}

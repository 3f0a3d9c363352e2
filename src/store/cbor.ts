/**
 * A direct DAG-CBOR encoder for the shapes the space format writes on every publish (maps with
 * string keys, safe integers, strings, bytes, CIDs, null, booleans, arrays): the root, the current
 * node, index nodes and owner bindings. It writes the same bytes as `@ipld/dag-cbor`'s `encode`
 * (a property test holds them equal) without building a token list first, which costs more than the
 * hashing of the block. Anything else (floats, bigints, undefined, cycles…) returns undefined and
 * the caller falls back to `@ipld/dag-cbor`.
 */
import { CID } from 'multiformats/cid'
import { blockBytes } from '../crypto/bytes.js'

const utf8 = new TextEncoder()
/** Nesting beyond this goes to the full encoder, which has its own limits. */
const MAX_DEPTH = 64

class Unsupported extends Error {}

/** The DAG-CBOR bytes of `value`, or undefined when its shape is not one this encoder handles. */
export function encodeDagCbor (value: unknown): Uint8Array | undefined {
  const out = new Output()
  try {
    write(out, value, 0)
  } catch (err) {
    if (err instanceof Unsupported) return undefined
    throw err
  }
  return out.bytes()
}

/**
 * The buffer every encoding is written into before its bytes are copied out: encoding is synchronous
 * and never re-entered, so one buffer serves every call (it grows, never shrinks).
 */
let scratch = new Uint8Array(1024)

/**
 * The DAG-CBOR bytes of a list of links (a bucket index node), written straight into a buffer of
 * their exact size: the same bytes `encodeDagCbor` writes for the list, without walking it as a
 * generic value. A publish writes one such node per level of the index.
 */
export function encodeLinks (links: CID[]): Uint8Array {
  let size = headLength(links.length)
  for (const cid of links) size += 2 + headLength(cid.bytes.length + 1) + 1 + cid.bytes.length
  const out = new Output(blockBytes(size))
  out.head(4, links.length)
  for (const cid of links) writeLink(out, cid)
  return out.written()
}

function headLength (n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9
}

/** DAG-CBOR links: tag 42 over the CID's bytes behind a 0x00 (identity multibase) prefix. */
function writeLink (out: Output, cid: CID): void {
  out.byte(0xd8); out.byte(42)
  out.head(2, cid.bytes.length + 1)
  out.byte(0)
  out.raw(cid.bytes)
}

class Output {
  private at = 0

  /** Writes into `buf` (the shared scratch buffer unless given one of the exact size). */
  constructor (private buf: Uint8Array = scratch) {}

  private room (n: number): void {
    if (this.at + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.at + n))
    next.set(this.buf.subarray(0, this.at))
    // a grown scratch buffer is kept for the next encoding up to 1 MiB (a block's limit)
    if (this.buf === scratch && next.length <= 1024 * 1024) scratch = next
    this.buf = next
  }

  byte (b: number): void {
    this.room(1)
    this.buf[this.at++] = b
  }

  raw (bytes: Uint8Array): void {
    this.room(bytes.length)
    this.buf.set(bytes, this.at)
    this.at += bytes.length
  }

  /** A head: major type and argument in the shortest form (RFC 8949 §3.1, DAG-CBOR's rule). */
  head (major: number, n: number): void {
    const m = major << 5
    this.room(headLength(n))
    const b = this.buf
    if (n < 24) {
      b[this.at++] = m | n
    } else if (n < 0x100) {
      b[this.at++] = m | 24; b[this.at++] = n
    } else if (n < 0x10000) {
      b[this.at++] = m | 25; b[this.at++] = n >>> 8; b[this.at++] = n & 0xff
    } else if (n < 0x100000000) {
      b[this.at++] = m | 26
      b[this.at++] = n >>> 24; b[this.at++] = (n >>> 16) & 0xff; b[this.at++] = (n >>> 8) & 0xff; b[this.at++] = n & 0xff
    } else {
      const hi = Math.floor(n / 0x100000000)
      const lo = n >>> 0
      b[this.at++] = m | 27
      b[this.at++] = hi >>> 24; b[this.at++] = (hi >>> 16) & 0xff; b[this.at++] = (hi >>> 8) & 0xff; b[this.at++] = hi & 0xff
      b[this.at++] = lo >>> 24; b[this.at++] = (lo >>> 16) & 0xff; b[this.at++] = (lo >>> 8) & 0xff; b[this.at++] = lo & 0xff
    }
  }

  /**
   * A text string. ASCII (every key and most strings the format writes) goes in one byte per
   * character with no encoder call; anything else through TextEncoder.
   */
  text (value: string): void {
    const n = value.length
    if (!isAscii(value)) {
      const bytes = utf8.encode(value)
      this.head(3, bytes.length)
      return this.raw(bytes)
    }
    this.head(3, n)
    this.room(n)
    const b = this.buf
    let at = this.at
    for (let i = 0; i < n; i++) b[at++] = value.charCodeAt(i)
    this.at = at
  }

  bytes (): Uint8Array {
    const out = blockBytes(this.at)
    out.set(this.buf.subarray(0, this.at))
    return out
  }

  /** The buffer itself, when it was given at its exact size. */
  written (): Uint8Array {
    return this.buf !== scratch && this.at === this.buf.length ? this.buf : this.buf.slice(0, this.at)
  }
}

function write (out: Output, value: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new Unsupported()
  if (value === null) return out.byte(0xf6)
  if (value === true) return out.byte(0xf5)
  if (value === false) return out.byte(0xf4)
  if (typeof value === 'number') {
    // integers only; DAG-CBOR writes every other number as a float64
    if (!Number.isSafeInteger(value)) throw new Unsupported()
    return value >= 0 ? out.head(0, value) : out.head(1, -1 - value)
  }
  if (typeof value === 'string') {
    // a lone surrogate has no UTF-8 form; leave its handling to the full encoder
    if (!value.isWellFormed()) throw new Unsupported()
    return out.text(value)
  }
  if (value instanceof Uint8Array) {
    out.head(2, value.length)
    return out.raw(value)
  }
  if (Array.isArray(value)) {
    out.head(4, value.length)
    for (const item of value) write(out, item, depth + 1)
    return
  }
  if (typeof value !== 'object') throw new Unsupported()
  const cid = CID.asCID(value)
  if (cid !== null) return writeLink(out, cid)
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) throw new Unsupported()
  const keys = Object.keys(value)
  let ascii = true
  for (const key of keys) {
    if (!key.isWellFormed()) throw new Unsupported()
    // dag-cbor refuses undefined; let it say so
    if ((value as Record<string, unknown>)[key] === undefined) throw new Unsupported()
    if (ascii && !isAscii(key)) ascii = false
  }
  out.head(5, keys.length)
  if (ascii) {
    // DAG-CBOR map order: shorter keys first, then bytewise (RFC 7049 canonical); for ASCII keys
    // the UTF-16 code units compared by `<` are the bytes
    // objects built in this order (the format's own) are only checked, not sorted
    if (!inAsciiKeyOrder(keys)) keys.sort(compareAsciiKeys)
    for (const key of keys) {
      out.text(key)
      write(out, (value as Record<string, unknown>)[key], depth + 1)
    }
    return
  }
  const entries = keys.map((key): [Uint8Array, unknown] => [utf8.encode(key), (value as Record<string, unknown>)[key]])
  entries.sort(([a], [b]) => a.length - b.length || compareBytes(a, b))
  for (const [key, v] of entries) {
    out.head(3, key.length)
    out.raw(key)
    write(out, v, depth + 1)
  }
}

function compareAsciiKeys (a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0)
}

function inAsciiKeyOrder (keys: string[]): boolean {
  for (let i = 1; i < keys.length; i++) if (compareAsciiKeys(keys[i - 1] as string, keys[i] as string) > 0) return false
  return true
}

function isAscii (value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0x7f) return false
  return true
}

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number)
  return 0
}

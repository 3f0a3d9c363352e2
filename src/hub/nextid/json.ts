/**
 * The JSON dialect of the Next.ID KV Service. kv_server (Rust) signs `serde_json::to_string` of its
 * payload, so a patch must print here exactly as serde_json 1.0.96 with ryu 1.0.13 prints it
 * (the versions pinned in kv_server's Cargo.lock): object keys sorted by code point (a `BTreeMap`
 * over UTF-8 bytes), no whitespace, the same string escapes, and ryu's float format.
 *
 * The parser keeps only values that survive JSON → JavaScript → dag-cbor → JavaScript unchanged,
 * so that a stored patch re-prints to the bytes that were signed:
 * - integers within ±(2^53 − 1), without fraction or exponent (serde_json reads `1.0` and `1e2` as
 *   floats and prints `1.0` and `100.0`, which a JavaScript number cannot remember);
 * - floats that are not integral (`0.5`, `1.5e-7`), which dag-cbor stores as float64;
 * - no negative zero (serde_json prints `-0.0`), no lone surrogates (serde_json refuses them),
 *   nesting at most 127 deep (serde_json's default recursion limit).
 * Objects are built without a prototype, so `__proto__` is an ordinary key.
 */
import { InvalidInputError } from '../../errors.js'

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject
export interface JsonObject { [key: string]: JsonValue }

/** serde_json refuses the 128th level of nesting ("recursion limit exceeded"). */
export const MAX_JSON_DEPTH = 127

const TWO_53 = 2 ** 53

export function isJsonObject (value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array)
}

function emptyObject (): JsonObject {
  return Object.create(null) as JsonObject
}

/** Why a number cannot be carried, or undefined when it can. */
function numberProblem (value: number): string | undefined {
  if (!Number.isFinite(value)) return 'is not finite'
  if (Object.is(value, -0)) return 'is negative zero'
  if (Number.isInteger(value)) return Number.isSafeInteger(value) ? undefined : 'is an integer outside ±(2^53 − 1)'
  return undefined
}

/**
 * Parses RFC 8259 JSON text strictly (see the module comment for what is refused). Throws
 * InvalidInputError naming `what` and the position.
 */
export function parseJson (text: string, what = 'body'): JsonValue {
  const parser = new Parser(text, what)
  parser.skipSpace()
  const value = parser.value(1)
  parser.skipSpace()
  if (parser.pos !== text.length) parser.fail('unexpected data after the JSON value')
  return value
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y
// eslint-disable-next-line no-control-regex -- JSON forbids raw control characters in strings: this is the check
const PLAIN = /[^"\\\u0000-\u001f]*/y

class Parser {
  pos = 0
  constructor (private readonly text: string, private readonly what: string) {}

  fail (problem: string): never {
    throw new InvalidInputError(`"${this.what}" is not valid JSON: ${problem} at position ${this.pos}`)
  }

  skipSpace (): void {
    const t = this.text
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos)
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break
      this.pos++
    }
  }

  value (depth: number): JsonValue {
    const c = this.text[this.pos]
    switch (c) {
      case '{': return this.object(depth)
      case '[': return this.array(depth)
      case '"': return this.string()
      case 't': return this.literal('true', true)
      case 'f': return this.literal('false', false)
      case 'n': return this.literal('null', null)
      case undefined: return this.fail('unexpected end')
      default:
        if (c === '-' || (c >= '0' && c <= '9')) return this.number()
        return this.fail(`unexpected character ${JSON.stringify(c)}`)
    }
  }

  literal<T extends boolean | null> (word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('unexpected token')
    this.pos += word.length
    return value
  }

  number (): number {
    NUMBER.lastIndex = this.pos
    const match = NUMBER.exec(this.text)
    if (match === null) return this.fail('malformed number')
    const lexeme = match[0]
    const value = Number(lexeme)
    const isFloat = match[1] !== undefined || match[2] !== undefined
    const problem = numberProblem(value)
    if (problem !== undefined) this.fail(`number ${lexeme.slice(0, 40)} ${problem}`)
    if (isFloat && Number.isInteger(value)) {
      this.fail(`number ${lexeme.slice(0, 40)} has an integral value but a fraction or exponent; write it as an integer`)
    }
    this.pos += lexeme.length
    return value
  }

  string (): string {
    const t = this.text
    this.pos++ // opening quote
    let out = ''
    for (;;) {
      PLAIN.lastIndex = this.pos
      const run = PLAIN.exec(t)
      if (run !== null && run[0].length > 0) {
        out += run[0]
        this.pos += run[0].length
      }
      const c = t[this.pos]
      if (c === '"') {
        this.pos++
        // Text from a strict UTF-8 decode has no lone surrogates; a caller's own string might.
        if (!out.isWellFormed()) this.fail('lone surrogate in string')
        return out
      }
      if (c === undefined) this.fail('unterminated string')
      if (c !== '\\') this.fail('control character in string')
      const e = t[this.pos + 1]
      this.pos += 2
      switch (e) {
        case '"': out += '"'; break
        case '\\': out += '\\'; break
        case '/': out += '/'; break
        case 'b': out += '\b'; break
        case 'f': out += '\f'; break
        case 'n': out += '\n'; break
        case 'r': out += '\r'; break
        case 't': out += '\t'; break
        case 'u': {
          const unit = this.hex4()
          if (unit >= 0xdc00 && unit <= 0xdfff) this.fail('lone trailing surrogate in \\u escape')
          if (unit >= 0xd800 && unit <= 0xdbff) {
            if (t[this.pos] !== '\\' || t[this.pos + 1] !== 'u') this.fail('lone leading surrogate in \\u escape')
            this.pos += 2
            const low = this.hex4()
            if (low < 0xdc00 || low > 0xdfff) this.fail('lone leading surrogate in \\u escape')
            out += String.fromCharCode(unit, low)
          } else {
            out += String.fromCharCode(unit)
          }
          break
        }
        default:
          this.pos -= 1
          this.fail('invalid escape')
      }
    }
  }

  hex4 (): number {
    const digits = this.text.slice(this.pos, this.pos + 4)
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) this.fail('invalid \\u escape')
    this.pos += 4
    return parseInt(digits, 16)
  }

  array (depth: number): JsonValue[] {
    if (depth > MAX_JSON_DEPTH) this.fail(`nesting deeper than ${MAX_JSON_DEPTH}`)
    this.pos++
    const out: JsonValue[] = []
    this.skipSpace()
    if (this.text[this.pos] === ']') { this.pos++; return out }
    for (;;) {
      this.skipSpace()
      out.push(this.value(depth + 1))
      this.skipSpace()
      const c = this.text[this.pos]
      this.pos++
      if (c === ']') return out
      if (c !== ',') { this.pos--; this.fail('expected "," or "]"') }
    }
  }

  object (depth: number): JsonObject {
    if (depth > MAX_JSON_DEPTH) this.fail(`nesting deeper than ${MAX_JSON_DEPTH}`)
    this.pos++
    const out = emptyObject()
    this.skipSpace()
    if (this.text[this.pos] === '}') { this.pos++; return out }
    for (;;) {
      this.skipSpace()
      if (this.text[this.pos] !== '"') this.fail('expected a string key')
      const key = this.string()
      this.skipSpace()
      if (this.text[this.pos] !== ':') this.fail('expected ":"')
      this.pos++
      this.skipSpace()
      // A repeated key keeps its last value, as serde_json's map does.
      out[key] = this.value(depth + 1)
      this.skipSpace()
      const c = this.text[this.pos]
      this.pos++
      if (c === '}') return out
      if (c !== ',') { this.pos--; this.fail('expected "," or "}"') }
    }
  }
}

/**
 * Checks that a JavaScript value (from an API caller or a decoded block) is JSON this dialect can
 * carry, and returns a copy built from prototype-less objects. Throws InvalidInputError.
 */
export function toJsonValue (value: unknown, what = 'value', depth = 1): JsonValue {
  if (value === null || typeof value === 'boolean') return value
  if (typeof value === 'number') {
    const problem = numberProblem(value)
    if (problem !== undefined) throw new InvalidInputError(`"${what}" number ${value} ${problem}`)
    return value
  }
  if (typeof value === 'string') {
    if (!value.isWellFormed()) throw new InvalidInputError(`"${what}" contains a lone surrogate`)
    return value
  }
  if (typeof value !== 'object') throw new InvalidInputError(`"${what}" expected a JSON value, got ${typeof value}`)
  if (depth > MAX_JSON_DEPTH) throw new InvalidInputError(`"${what}" is nested deeper than ${MAX_JSON_DEPTH}`)
  if (Array.isArray(value)) return value.map((item, i) => toJsonValue(item, `${what}[${i}]`, depth + 1))
  const proto = Object.getPrototypeOf(value) as unknown
  if (proto !== Object.prototype && proto !== null) {
    throw new InvalidInputError(`"${what}" expected a JSON value, got ${(value as { constructor?: { name?: string } }).constructor?.name ?? 'an object'}`)
  }
  const out = emptyObject()
  for (const key of Object.keys(value)) {
    if (!key.isWellFormed()) throw new InvalidInputError(`"${what}" has a key with a lone surrogate`)
    out[key] = toJsonValue((value as Record<string, unknown>)[key], `${what}.${key}`, depth + 1)
  }
  return out
}

/**
 * Orders strings by Unicode code point, which is the UTF-8 byte order Rust's `BTreeMap<String, _>`
 * uses. JavaScript's `<` compares UTF-16 code units and puts U+10000… before U+E000…U+FFFF.
 */
export function compareCodePoints (a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) return fixup(x) - fixup(y)
  }
  return a.length - b.length
}

function fixup (unit: number): number {
  if (unit >= 0xe000) return unit - 0x800
  if (unit >= 0xd800) return unit + 0x2000
  return unit
}

/**
 * Prints a number as serde_json does: integers plainly; floats through ryu 1.0.13, which writes
 * decimals for 1e-5 ≤ |x| < 1e16 and exponents (`1.5e-6`, no `+`) elsewhere. For the floats this
 * dialect carries (non-integral, |x| < 2^53) that differs from JavaScript only in [1e-6, 1e-5).
 */
export function formatNumber (value: number): string {
  const problem = numberProblem(value)
  if (problem !== undefined) throw new InvalidInputError(`number ${value} ${problem}`)
  if (Number.isInteger(value)) return String(value)
  if (Math.abs(value) >= TWO_53) throw new InvalidInputError(`number ${value} is too large`)
  const abs = Math.abs(value)
  if (abs >= 1e-6 && abs < 1e-5) return value.toExponential() // shortest digits, as ryu
  return String(value)
}

/** serde_json's string escapes are JSON.stringify's for well-formed strings. */
function formatString (value: string): string {
  if (!value.isWellFormed()) throw new InvalidInputError('string contains a lone surrogate')
  return JSON.stringify(value)
}

/** serde_json::to_string of a `serde_json::Value`: sorted keys at every level, no whitespace. */
export function canonicalJson (value: JsonValue): string {
  if (value === null) return 'null'
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  if (typeof value === 'number') return formatNumber(value)
  if (typeof value === 'string') return formatString(value)
  if (Array.isArray(value)) return '[' + value.map(canonicalJson).join(',') + ']'
  const keys = Object.keys(value).sort(compareCodePoints)
  return '{' + keys.map(k => formatString(k) + ':' + canonicalJson(value[k] as JsonValue)).join(',') + '}'
}

/**
 * RFC 7396 JSON merge patch (section 2): a non-object patch replaces the target; an object patch
 * removes the keys it maps to null and merges the rest recursively. kv_server applies the same
 * algorithm (json-patch's `merge`). Written here rather than taken from json-merge-patch because
 * that package stops at the first `__proto__`, `constructor` or `prototype` key and silently
 * drops the rest of the patch, while kv_server stores such keys like any other.
 */
export function mergePatch (target: JsonValue | undefined, patch: JsonValue): JsonValue {
  if (!isJsonObject(patch)) return patch
  const out = emptyObject()
  if (target !== undefined && isJsonObject(target)) {
    for (const key of Object.keys(target)) out[key] = target[key] as JsonValue
  }
  for (const key of Object.keys(patch)) {
    const value = patch[key] as JsonValue
    if (value === null) delete out[key]
    else out[key] = mergePatch(out[key], value)
  }
  return out
}

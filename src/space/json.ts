/**
 * What a space accepts as a key and a value, checked before anything changes: keys are non-empty
 * strings; values are JSON (null, booleans, finite numbers, strings, arrays, plain objects). Anything
 * JSON.stringify would silently drop or mangle — undefined, functions, symbols, BigInt, NaN, Dates,
 * class instances, cycles — is refused with a named error instead of being lost. Keys and strings
 * must be well-formed Unicode: a lone surrogate (half of an emoji cut in two) has no UTF-8 form, so
 * encoders replace it with U+FFFD and two different keys would collide in every reader.
 */
import { InvalidInputError, TooLargeError } from '../errors.js'

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** Longest key, in UTF-16 code units. @default 1024 */
export const MAX_KEY_LENGTH = 1024

export function checkKey (key: unknown): string {
  if (typeof key !== 'string') throw new InvalidInputError(`"key" expected string, got ${typeName(key)}`)
  if (key.length === 0) throw new InvalidInputError('"key" expected a non-empty string, got an empty string')
  if (key.length > MAX_KEY_LENGTH) throw new InvalidInputError(`"key" expected at most ${MAX_KEY_LENGTH} characters, got length=${key.length}`)
  checkUnicode(key, 'key')
  return key
}

/** Checks that `value` is JSON and returns its JSON text, refusing it when over `maxBytes`. */
export function checkValue (value: unknown, maxBytes: number, path = 'value'): string {
  checkJson(value, path, new Set())
  const text = JSON.stringify(value)
  // UTF-8 length without encoding: every UTF-16 unit is at most 3 bytes, so only measure when close.
  if (text.length * 3 > maxBytes) {
    const bytes = new TextEncoder().encode(text).length
    if (bytes > maxBytes) throw new TooLargeError(`"${path}" is ${bytes} bytes of JSON, over the ${maxBytes}-byte limit`)
  }
  return text
}

function checkJson (value: unknown, path: string, ancestors: Set<object>): void {
  switch (typeof value) {
    case 'string':
      checkUnicode(value, path)
      return
    case 'boolean':
      return
    case 'number':
      if (!Number.isFinite(value)) throw new InvalidInputError(`"${path}" is ${String(value)}, which JSON cannot represent`)
      return
    case 'object': {
      if (value === null) return
      if (ancestors.has(value)) throw new InvalidInputError(`"${path}" refers back to itself (a cycle), which JSON cannot represent`)
      ancestors.add(value)
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          if (!(i in value)) throw new InvalidInputError(`"${path}[${i}]" is a hole in a sparse array, which JSON cannot represent`)
          checkJson(value[i], `${path}[${i}]`, ancestors)
        }
      } else {
        const proto = Object.getPrototypeOf(value)
        if (proto !== Object.prototype && proto !== null) {
          throw new InvalidInputError(`"${path}" is a ${(value as object).constructor?.name ?? 'non-plain object'}, not a plain JSON object`)
        }
        for (const k of Object.keys(value)) {
          checkUnicode(k, `${path}.${k}`, 'has a key with')
          checkJson((value as Record<string, unknown>)[k], `${path}.${k}`, ancestors)
        }
      }
      ancestors.delete(value)
      return
    }
    default:
      throw new InvalidInputError(`"${path}" is ${typeName(value)}, which JSON cannot represent`)
  }
}

function checkUnicode (text: string, path: string, what = 'contains'): void {
  if (!text.isWellFormed()) {
    throw new InvalidInputError(`"${path.slice(0, 200).toWellFormed()}" ${what} a lone surrogate (a broken UTF-16 pair), which has no UTF-8 form`)
  }
}

function typeName (value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'bigint') return 'a BigInt'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'symbol') return 'a symbol'
  if (value === undefined) return 'undefined'
  return typeof value
}

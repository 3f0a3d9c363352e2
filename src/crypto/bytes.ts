/**
 * Byte helpers with boundary checks in noble's style: a wrong type is a TypeError-like
 * InvalidInputError naming the argument, a wrong size says what was expected and what came.
 */
import { bytesToHex, hexToBytes as nobleHexToBytes, concatBytes, utf8ToBytes } from '@noble/hashes/utils.js'
import { InvalidInputError } from '../errors.js'

export { bytesToHex, concatBytes, utf8ToBytes }

export function hexToBytes (hex: string, what = 'hex'): Uint8Array {
  if (typeof hex !== 'string') throw new InvalidInputError(`"${what}" expected hex string, got ${typeof hex}`)
  const body = hex.startsWith('0x') || hex.startsWith('0X') ? hex.slice(2) : hex
  if (body.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(body)) {
    throw new InvalidInputError(`"${what}" expected hex string, got "${hex.slice(0, 20)}${hex.length > 20 ? '…' : ''}"`)
  }
  return nobleHexToBytes(body)
}

export function abytes (value: unknown, length: number | undefined, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new InvalidInputError(`"${what}" expected Uint8Array, got ${typeof value}`)
  if (length !== undefined && value.length !== length) {
    throw new InvalidInputError(`"${what}" expected Uint8Array of length ${length}, got length=${value.length}`)
  }
  return value
}

/**
 * `text` as a flat string, for short strings kept as keys. multiformats 13's base encoders build
 * their text one character at a time (`out += …`), and V8 keeps such a string as a rope of one node
 * per character (~1.6 KB of heap for a 59-character CID, against ~120 B flat) for as long as it
 * lives. Longer strings than `MAX_FLAT_TEXT` are returned as they are.
 */
export function flatText (text: string): string {
  if (text.length > MAX_FLAT_TEXT) return text
  const codes = new Array<number>(text.length)
  for (let i = 0; i < text.length; i++) codes[i] = text.charCodeAt(i)
  return String.fromCharCode.apply(null, codes)
}
const MAX_FLAT_TEXT = 1024

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export function utf8 (text: string): Uint8Array {
  return encoder.encode(text)
}

export function fromUtf8 (bytes: Uint8Array): string {
  return decoder.decode(bytes)
}

export function toBase64 (bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(binary)
}

/** Strict base64 (standard alphabet, padding optional): anything else is an InvalidInputError. */
export function fromBase64 (text: string, what = 'base64'): Uint8Array {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.replace(/=+$/, '').length % 4 === 1) {
    throw new InvalidInputError(`"${what}" expected base64, got ${typeof text === 'string' ? `"${text.slice(0, 20)}"` : typeof text}`)
  }
  const binary = atob(text.padEnd(Math.ceil(text.length / 4) * 4, '='))
  const out = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i)
  return out
}

/** Chunk size, and the largest length cut from a chunk (longer ones get arrays of their own). */
const CHUNK_BYTES = 16 * 1024
const MAX_CUT_BYTES = 2 * 1024
let chunk: Uint8Array | undefined
let chunkAt = 0
/**
 * Cutting is for Node without IndexedDB only. A browser (or an Electron renderer) stores blocks in
 * IndexedDB, whose structured clone keeps a view's whole buffer: a 165-byte node cut from a chunk
 * would be stored as 16 KiB.
 */
const cutting = typeof (globalThis as { process?: { getBuiltinModule?: unknown } }).process?.getBuiltinModule === 'function' &&
  typeof (globalThis as { indexedDB?: unknown }).indexedDB === 'undefined'

/**
 * A zeroed byte array of `length` for a block a publish writes (an index node, the current node,
 * the root, the record), cut in Node from a shared 16 KiB chunk. Each array over 64 bytes is an
 * allocation outside V8's heap, which V8 also counts as external memory pressure: a `set` of a
 * 10 000-key space made ~10 of them, and cutting the index nodes alone from chunks moved its median
 * from 131–144 µs to 103–116 µs in alternated one-off runs (the p25 moved 3 µs: the cost showed up
 * as collections). A chunk lives while any block cut from it does; blocks of one publish share one.
 */
export function blockBytes (length: number): Uint8Array {
  if (!cutting || length > MAX_CUT_BYTES) return new Uint8Array(length)
  if (chunk === undefined || chunkAt + length > CHUNK_BYTES) {
    chunk = new Uint8Array(CHUNK_BYTES)
    chunkAt = 0
  }
  const out = chunk.subarray(chunkAt, chunkAt + length)
  chunkAt += length
  return out
}

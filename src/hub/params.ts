/**
 * Parsing of route parameters and content negotiation: IPNS names, CIDs, content paths and the
 * trustless gateway's request options (`format` and `Accept`, the CAR parameters `order`, `dups`,
 * `version`, `dag-scope`, `entity-bytes`, `Range`, `If-None-Match`, `Cache-Control: only-if-cached`).
 * Every value is parsed strictly: a malformed one is a 400 naming the parameter, never a 500.
 */
import { CID } from 'multiformats/cid'
import { InvalidInputError, NotAcceptableError, UserSpaceError } from '../errors.js'
import { canonicalName } from '../store/record.js'
import { CAR_TYPE, IPNS_RECORD_TYPE, RAW_TYPE } from '../protocol.js'
import type { Context } from 'hono'

/** How many spellings of names the parser remembers. */
const KNOWN_NAMES = 10_000
/** Segments a content path may have (each one may cost a block read). */
export const MAX_PATH_SEGMENTS = 32
/** Bytes of one decoded path segment. */
const MAX_SEGMENT_BYTES = 256

/** Names as clients write them → canonical `k51…` form (parsing a CID costs more than a lookup). */
const canonicalNames = new Map<string, string>()

export function parseName (raw: string): string {
  const known = canonicalNames.get(raw)
  if (known !== undefined) return known
  let name: string
  try {
    name = canonicalName(raw)
  } catch (err) {
    if (err instanceof UserSpaceError) throw err
    throw new InvalidInputError(`"name" expected an IPNS name (k51…), got "${raw.slice(0, 80)}"`)
  }
  if (canonicalNames.size >= KNOWN_NAMES) canonicalNames.clear()
  canonicalNames.set(raw, name)
  return name
}

export function parseCid (raw: string): CID {
  try {
    return CID.parse(raw)
  } catch {
    throw new InvalidInputError(`"cid" expected a CID, got "${raw.slice(0, 80)}"`)
  }
}

/**
 * The segments after `/ipfs/{cid}` or `/ipns/{name}` in a raw (percent-encoded) URL path, decoded.
 * A trailing slash adds nothing; empty segments in the middle, `.` and `..` are refused.
 */
export function parseContentPath (rawPath: string, prefix: '/ipfs/' | '/ipns/'): { id: string, segments: string[] } {
  const rest = rawPath.slice(prefix.length)
  const parts = rest.split('/')
  const id = parts.shift() ?? ''
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop()
  if (parts.length > MAX_PATH_SEGMENTS) throw new InvalidInputError(`"path" has over ${MAX_PATH_SEGMENTS} segments`)
  const segments = parts.map((part) => {
    let segment: string
    try {
      segment = decodeURIComponent(part)
    } catch {
      throw new InvalidInputError(`"path" segment "${part.slice(0, 40)}" is not valid percent-encoding`)
    }
    if (segment === '' || segment === '.' || segment === '..') throw new InvalidInputError(`"path" has an empty, "." or ".." segment`)
    if (segment.length > MAX_SEGMENT_BYTES) throw new InvalidInputError(`"path" segment is over ${MAX_SEGMENT_BYTES} characters`)
    return segment
  })
  return { id, segments }
}

/** What a trustless gateway request asks for. */
export type ResponseFormat = 'raw' | 'car' | 'ipns-record'
export type DagScope = 'block' | 'entity' | 'all'

export interface CarOptions {
  /** Only `dfs` is produced; `unk` asks for any order, so `dfs` serves it too. */
  order: 'dfs'
  dups: 'y' | 'n'
  scope: DagScope
  /** `entity-bytes=from:to` as given (`to` may be `*`), when present. */
  entityBytes?: { from: number, to: number | '*' }
}

export interface Negotiated {
  format: ResponseFormat
  /** True when the format came from `Accept`, not from `?format=` (then Content-Location says which). */
  fromAccept: boolean
  /** CAR parameters taken from the `Accept` entry that won, if any. */
  acceptOrder?: string
  acceptDups?: string
}

interface MediaRange { type: string, params: Map<string, string>, q: number, index: number }

/** `Accept` parsed into media ranges, best first (by q, then by position). Bounded: at most 32 entries. */
function parseAccept (header: string): MediaRange[] {
  const ranges: MediaRange[] = []
  for (const [index, entry] of header.split(',').slice(0, 32).entries()) {
    const [type = '', ...rawParams] = entry.split(';').map(s => s.trim())
    const params = new Map<string, string>()
    let q = 1
    for (const param of rawParams) {
      const eq = param.indexOf('=')
      if (eq === -1) continue
      const key = param.slice(0, eq).trim().toLowerCase()
      const value = param.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase()
      if (key === 'q') {
        const parsed = Number(value)
        q = Number.isFinite(parsed) && parsed >= 0 && parsed <= 1 ? parsed : 0
      } else {
        params.set(key, value)
      }
    }
    if (type !== '' && q > 0) ranges.push({ type: type.toLowerCase(), params, q, index })
  }
  return ranges.sort((a, b) => b.q - a.q || a.index - b.index)
}

/** True when a CAR media range asks only for parameters this gateway can give. */
function carRangeSupported (range: MediaRange): boolean {
  const version = range.params.get('version')
  const order = range.params.get('order')
  const dups = range.params.get('dups')
  return (version === undefined || version === '1') &&
    (order === undefined || order === 'dfs' || order === 'unk') &&
    (dups === undefined || dups === 'y' || dups === 'n')
}

/**
 * The response format: `?format=` first (as the specs say), else the best `Accept` entry this
 * route can give. No usable `Accept` at all is a 400 (a strict trustless gateway, as the spec
 * says); an `Accept` naming only formats it cannot give is a 406.
 */
export function negotiate (c: Context, allowed: readonly ResponseFormat[]): Negotiated {
  const format = c.req.query('format')
  const accept = parseAccept(c.req.header('accept') ?? '')
  if (format !== undefined) {
    if (!(allowed as readonly string[]).includes(format)) {
      throw new InvalidInputError(`"format" expected ${allowed.join(' or ')} here, got "${format.slice(0, 40)}"`)
    }
    // Accept may still carry the CAR parameters (ipfs/gateway-conformance: "?format=car respects
    // Accept header order and dups params").
    const car = format === 'car' ? accept.find(r => r.type === CAR_TYPE && carRangeSupported(r)) : undefined
    return { format: format as ResponseFormat, fromAccept: false, acceptOrder: car?.params.get('order'), acceptDups: car?.params.get('dups') }
  }
  const types: Record<ResponseFormat, string> = { raw: RAW_TYPE, car: CAR_TYPE, 'ipns-record': IPNS_RECORD_TYPE }
  let sawSpecific = false
  for (const range of accept) {
    if (range.type === '*/*' || range.type === 'application/*') continue
    sawSpecific = true
    for (const f of allowed) {
      if (range.type !== types[f]) continue
      if (f === 'car' && !carRangeSupported(range)) continue
      return { format: f, fromAccept: true, acceptOrder: range.params.get('order'), acceptDups: range.params.get('dups') }
    }
  }
  const wanted = allowed.map(f => types[f]).join(' or ')
  if (!sawSpecific) throw new InvalidInputError(`this is a trustless gateway: send Accept: ${wanted} (or ?format=${allowed.join('|')})`)
  throw new NotAcceptableError(`this route serves ${wanted} (CAR: version=1, order=dfs|unk, dups=y|n); ask for one of them`)
}

/** One of `values`, from the query parameter `key`, or undefined when absent; anything else is a 400. */
function choice<T extends string> (c: Context, key: string, values: readonly T[]): T | undefined {
  const raw = c.req.query(key)
  if (raw === undefined) return undefined
  if (!(values as readonly string[]).includes(raw)) {
    throw new InvalidInputError(`"${key}" expected ${values.join(', ')}, got "${raw.slice(0, 40)}"`)
  }
  return raw as T
}

const ENTITY_BYTES = /^(-?(?:0|[1-9][0-9]{0,15})):(\*|-?(?:0|[1-9][0-9]{0,15}))$/

/** The CAR options of a request: query parameters first, then the `Accept` entry's, then defaults. */
export function carOptions (c: Context, negotiated: Negotiated): CarOptions {
  // Checked, not needed: the only version is 1, and dfs serves both orders.
  choice(c, 'car-version', ['1'] as const)
  choice(c, 'car-order', ['dfs', 'unk'] as const)
  const dups = choice(c, 'car-dups', ['y', 'n'] as const) ?? (negotiated.acceptDups as 'y' | 'n' | undefined) ?? 'n'
  let scope = choice(c, 'dag-scope', ['block', 'entity', 'all'] as const) ?? 'all'
  const rawBytes = c.req.query('entity-bytes')
  let entityBytes: CarOptions['entityBytes']
  if (rawBytes !== undefined) {
    const match = ENTITY_BYTES.exec(rawBytes)
    if (match === null) throw new InvalidInputError(`"entity-bytes" expected from:to (integers, to may be *), got "${rawBytes.slice(0, 40)}"`)
    const from = Number(match[1])
    const to = match[2] === '*' ? '*' : Number(match[2])
    // Both ends from the start, with the first after the last: empty for any entity.
    if (to !== '*' && from >= 0 && to >= 0 && to < from) throw new InvalidInputError(`"entity-bytes" range ${rawBytes} ends before it starts`)
    entityBytes = { from, to }
    // The spec: entity-bytes implies dag-scope=entity.
    scope = 'entity'
  }
  return { order: 'dfs', dups, scope, entityBytes }
}

/**
 * A single `Range: bytes=…` over a body of `size` bytes: `{ start, end }` (inclusive), 'unsatisfiable',
 * or undefined to send the whole body (no Range, a malformed one, or several ranges — RFC 9110 lets
 * a server ignore Range).
 */
export function parseRange (header: string | undefined, size: number): { start: number, end: number } | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined
  const match = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim())
  if (match === null) return undefined
  const [, first = '', last = ''] = match
  if (first === '' && last === '') return undefined
  if (first === '') {
    const suffix = Number(last)
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(first)
  if (start >= size) return 'unsatisfiable'
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
  if (end < start) return undefined
  return { start, end }
}

/** True when `If-None-Match` lists `etag` (weak comparison, as RFC 9110 asks for this header) or is `*`. */
export function ifNoneMatch (c: Context, etag: string): boolean {
  const header = c.req.header('if-none-match')
  if (header === undefined) return false
  const bare = etag.replace(/^W\//, '')
  return header.split(',').slice(0, 64).some((tag) => {
    const t = tag.trim()
    return t === '*' || t.replace(/^W\//, '') === bare
  })
}

/** True when the request says `Cache-Control: only-if-cached` (answer from local blocks only). */
export function onlyIfCached (c: Context): boolean {
  return /(^|,)\s*only-if-cached\s*(,|$)/i.test(c.req.header('cache-control') ?? '')
}

/** `attachment` with a file name, in the ASCII and RFC 8187 forms the path gateway spec asks for. */
export function contentDisposition (filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_')
  if (ascii === filename) return `attachment; filename="${filename}"`
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`
}

/** The `?filename=` of a request, bounded, or the default. */
export function filenameOf (c: Context, fallback: string): string {
  const given = c.req.query('filename')
  if (given === undefined) return fallback
  if (given === '' || given.length > 255) throw new InvalidInputError(`"filename" expected 1–255 characters, got ${given.length}`)
  return given
}

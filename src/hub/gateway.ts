/**
 * The hub's trustless gateway (ipfs/specs `http-gateways/trustless-gateway.md`, with the headers of
 * `path-gateway.md`): `GET`/`HEAD /ipfs/{cid}[/{path}]` as a raw block (`Range` supported) or as a
 * CAR (`order=dfs`, `dups=y|n`, `dag-scope`, `entity-bytes`, paths), and `/ipns/{name}[/{path}]` as
 * the signed record (`?format=ipns-record`) or as the raw block or CAR its value points at. Every
 * response carries a strong ETag (a CAR is only ever sent complete and in one deterministic order),
 * answers `If-None-Match` with 304, and `Cache-Control: only-if-cached` with local blocks only (412
 * when they are not all here).
 */
import { systemClock } from '../clock.js'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { base32 } from 'multiformats/bases/base32'
import { InvalidInputError, NotFoundError } from '../errors.js'
import { CAR_TYPE, IPNS_RECORD_TYPE, RAW_TYPE } from '../protocol.js'
import { clientKey } from './client.js'
import {
  carOptions, contentDisposition, filenameOf, ifNoneMatch, negotiate, onlyIfCached, parseCid, parseContentPath, parseName, parseRange
} from './params.js'
import { recordHeaders } from './routing.js'
import { cidString } from '../store/blocks.js'
import type { HubBlocks } from './blocks.js'
import type { HubAppOptions } from './options.js'
import type { CarOptions, Negotiated } from './params.js'
import type { HubRecords } from './records.js'
import type { Context, Hono } from 'hono'
import type { CID } from 'multiformats/cid'

/** `Cache-Control` of every response under `/ipfs/` (the path gateway spec's MUST). */
const IMMUTABLE = 'public, max-age=29030400, immutable'
/** CIDs longer than this (identity hashes of inline data) leave `X-Ipfs-Roots` out. */
const MAX_HEADER_CID_BYTES = 128

interface Served {
  cid: CID
  segments: string[]
  /** The content path as requested, for X-Ipfs-Path. */
  path: string
  /** Cache-Control: immutable under /ipfs/, the record's TTL under /ipns/. */
  cacheControl: string
}

/** Mounts the gateway routes on `app`. */
export function mountGateway (app: Hono, blocks: HubBlocks, records: HubRecords, options: HubAppOptions): void {
  app.on(['GET', 'HEAD'], '/ipfs/*', async (c) => {
    // The path as sent (still percent-encoded): each segment is decoded exactly once.
    const raw = new URL(c.req.url).pathname
    const { id, segments } = parseContentPath(raw, '/ipfs/')
    const cid = parseCid(id)
    const negotiated = negotiate(c, ['raw', 'car'])
    return serve(c, negotiated, { cid, segments, path: raw, cacheControl: IMMUTABLE }, blocks, options)
  })

  app.on(['GET', 'HEAD'], '/ipns/*', async (c) => {
    const raw = new URL(c.req.url).pathname
    const { id, segments } = parseContentPath(raw, '/ipns/')
    const name = parseName(id)
    const negotiated = negotiate(c, ['ipns-record', 'raw', 'car'])
    const cached = onlyIfCached(c)
    const record = cached ? await records.stored(name) : await records.getRecord(name, false)
    if (record === undefined) throw new NotFoundError(`no IPNS record for ${name}`)
    const info = records.infoOf(name, record)
    const headers = recordHeaders(record, info, (options.nowMs ?? systemClock)(), options)
    if (negotiated.format === 'ipns-record') {
      if (segments.length > 0) throw new InvalidInputError('an IPNS record is asked for by name alone, without a path')
      const all = {
        ...headers,
        'Content-Type': IPNS_RECORD_TYPE,
        'Content-Disposition': contentDisposition(filenameOf(c, `${name}.ipns-record`)),
        'X-Content-Type-Options': 'nosniff',
        ...(negotiated.fromAccept ? { 'Content-Location': withFormat(c, 'ipns-record') } : {})
      }
      if (ifNoneMatch(c, headers.ETag)) return c.body(null, 304, all)
      if (c.req.method === 'HEAD') return c.body(null, 200, all)
      return c.body(record as Uint8Array<ArrayBuffer>, 200, all)
    }
    // A record's value is `/ipfs/<cid>[/path]`; the request's path continues it.
    const value = info.value.startsWith('/ipfs/') ? parseContentPath(info.value, '/ipfs/') : undefined
    if (value === undefined || info.cid === undefined) throw new NotFoundError(`the record of ${name} points at ${info.value.slice(0, 100)}, not at /ipfs/`)
    // Mutable: cached for the record's TTL, never as immutable.
    const cacheControl = headers['Cache-Control']
    return serve(c, negotiated, { cid: info.cid, segments: [...value.segments, ...segments], path: raw, cacheControl }, blocks, options)
  })
}

async function serve (c: Context, negotiated: Negotiated, target: Served, blocks: HubBlocks, options: HubAppOptions): Promise<Response> {
  const localOnly = onlyIfCached(c)
  const { cid, segments } = target
  const common: Record<string, string> = {
    'Cache-Control': target.cacheControl,
    'X-Content-Type-Options': 'nosniff',
    'X-Ipfs-Path': target.path,
    Vary: 'Accept'
  }
  if (negotiated.format === 'raw') {
    // The spec: a raw block is asked for by CID alone.
    if (segments.length > 0) throw new InvalidInputError('a raw block is asked for by CID alone; paths need ?format=car')
    const etag = `"${cid.toString()}.raw"`
    const headers: Record<string, string> = {
      ...common,
      'Content-Type': RAW_TYPE,
      ETag: etag,
      'Accept-Ranges': 'bytes',
      'X-Ipfs-Roots': cid.toString(),
      'Content-Disposition': contentDisposition(filenameOf(c, `${cid.toString()}.bin`)),
      ...(negotiated.fromAccept ? { 'Content-Location': withFormat(c, 'raw') } : {})
    }
    if (ifNoneMatch(c, etag) && await holds(blocks, cid)) return c.body(null, 304, headers)
    const bytes = await blocks.getBlock(cid, { localOnly, signal: c.req.raw.signal })
    const range = parseRange(c.req.header('range'), bytes.byteLength)
    if (range === 'unsatisfiable') {
      return c.body(null, 416, { ...headers, 'Content-Range': `bytes */${bytes.byteLength}` })
    }
    if (range !== undefined) {
      const part = bytes.subarray(range.start, range.end + 1)
      const partial = {
        ...headers,
        ETag: `"${cid.toString()}.raw.${range.start}-${range.end}"`,
        'Content-Range': `bytes ${range.start}-${range.end}/${bytes.byteLength}`,
        'Content-Length': String(part.byteLength)
      }
      if (c.req.method === 'HEAD') return c.body(null, 206, partial)
      return c.body(part as Uint8Array<ArrayBuffer>, 206, partial)
    }
    const full = { ...headers, 'Content-Length': String(bytes.byteLength) }
    if (c.req.method === 'HEAD') return c.body(null, 200, full)
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, full)
  }

  const car = carOptions(c, negotiated)
  const etag = await carEtag(cid, segments, car)
  const headers: Record<string, string> = {
    ...common,
    'Content-Type': `${CAR_TYPE}; version=1; order=${car.order}; dups=${car.dups}`,
    ETag: etag,
    'Accept-Ranges': 'none',
    'Content-Disposition': contentDisposition(filenameOf(c, `${cid.toString()}.car`)),
    ...(negotiated.fromAccept ? { 'Content-Location': withFormat(c, 'car', car) } : {})
  }
  // The same request always gets the same complete bytes (blocks are content-addressed), so a match
  // needs no walk; only the root is checked, as the spec's rule of thumb for only-if-cached says.
  if (ifNoneMatch(c, etag) && await holds(blocks, cid)) return c.body(null, 304, { ...headers, 'X-Ipfs-Roots': cid.toString() })
  const built = await blocks.getCar(cid, segments, car, clientKey(c, options), { localOnly, signal: c.req.raw.signal })
  const all: Record<string, string> = { ...headers, 'Content-Length': String(built.bytes) }
  // A path may step through an identity CID of a stranger's megabyte: no header carries that.
  if (built.roots.every(r => r.bytes.byteLength <= MAX_HEADER_CID_BYTES)) all['X-Ipfs-Roots'] = built.roots.map(cidString).join(',')
  if (c.req.method === 'HEAD') {
    // No body will be read: give the CAR slot back now.
    await built.body.cancel()
    built.release()
    return c.body(null, 200, all)
  }
  return c.body(built.body as ReadableStream<Uint8Array<ArrayBuffer>>, 200, all)
}

/** True when the hub holds `cid` here and now (identity CIDs always). */
async function holds (blocks: HubBlocks, cid: CID): Promise<boolean> {
  if (cid.multihash.code === identity.code) return true
  return (await blocks.localBlock(cid)) !== undefined
}

/**
 * A CAR's ETag: the root, then everything that shapes the bytes (scope, order, dups, the range
 * asked for and, hashed, the path), so that no two different responses share one.
 */
async function carEtag (cid: CID, segments: string[], car: CarOptions): Promise<string> {
  let tag = `${cid.toString()}.car.${car.scope}.${car.order}.${car.dups}`
  if (car.entityBytes !== undefined) tag += `.${car.entityBytes.from}-${car.entityBytes.to}`
  if (segments.length > 0) {
    const digest = await sha256.digest(new TextEncoder().encode(segments.join('/')))
    tag += `.p${base32.baseEncode(digest.digest).slice(0, 16)}`
  }
  return `"${tag}"`
}

/** This request's URL (path and query) with `format` set, for Content-Location. */
function withFormat (c: Context, format: string, car?: CarOptions): string {
  const url = new URL(c.req.url)
  url.searchParams.set('format', format)
  if (car !== undefined) url.searchParams.set('car-dups', car.dups)
  if (car !== undefined) url.searchParams.set('car-order', car.order)
  return url.pathname + url.search
}

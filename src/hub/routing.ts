/**
 * The hub's Delegated Routing V1 API (ipfs/specs `routing/http-routing-v1.md`):
 * - `GET /routing/v1/providers/{cid}`: the hub itself, in the `peer` schema, for blocks it holds —
 *   its HTTP gateway (`transport-ipfs-gateway-http`, at `publicUrl`) and, on a networked hub, its
 *   libp2p addresses (`transport-bitswap`); nobody for blocks it does not hold (200, empty list);
 * - `GET`/`PUT /routing/v1/ipns/{name}`: IPNS records with an ETag derived from the record,
 *   `Cache-Control` from its TTL (bounded) and remaining validity, `Expires`, `Vary: Accept`;
 * - every other routing route is a 501 (peers, DHT) or a 400 (unknown paths), as the spec says.
 * Answers only from what the hub holds: a providers request never causes network I/O.
 */
import { systemClock } from '../clock.js'
import { createHash } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import { base32 } from 'multiformats/bases/base32'
import { identity } from 'multiformats/hashes/identity'
import { InvalidInputError, InvalidRecordError, NotAcceptableError, NotFoundError, NotImplementedError, TooLargeError } from '../errors.js'
import { IPNS_RECORD_TYPE, JSON_TYPE, NDJSON_TYPE } from '../protocol.js'
import { MAX_RECORD_BYTES } from '../store/record.js'
import { readBody } from './middleware/body.js'
import { DEFAULT_MAX_RECORD_CACHE_SECONDS } from './options.js'
import { ifNoneMatch, onlyIfCached, parseCid, parseName } from './params.js'
import type { HubBlocks } from './blocks.js'
import type { HubAppOptions, HubComponents } from './options.js'
import type { HubRecords } from './records.js'
import type { RecordInfo } from '../store/record.js'
import type { Context, Hono } from 'hono'

/** The transfer protocol names of the routing spec's `peer` schema. */
export const GATEWAY_PROTOCOL = 'transport-ipfs-gateway-http'
export const BITSWAP_PROTOCOL = 'transport-bitswap'
/** max-age of a providers answer naming the hub, and of one naming nobody (the spec's examples). */
const PROVIDERS_MAX_AGE_SECONDS = 300
const NO_PROVIDERS_MAX_AGE_SECONDS = 15
/** max-age when a record carries no TTL (the spec's default). */
const DEFAULT_RECORD_MAX_AGE_SECONDS = 60

/** Mounts the routing routes on `app`; `peerId` and `addrs` describe this hub in provider records. */
export function mountRouting (app: Hono, blocks: HubBlocks, records: HubRecords, components: HubComponents, options: HubAppOptions, peerId: string): void {
  app.get('/routing/v1/providers/:cid', async (c) => {
    const cid = parseCid(c.req.param('cid'))
    const held = cid.multihash.code === identity.code || (await blocks.localBlock(cid)) !== undefined
    const providers = held ? filterProviders([selfRecord(c, components, options, peerId)], c) : []
    const headers: Record<string, string> = {
      'Cache-Control': `public, max-age=${providers.length > 0 ? PROVIDERS_MAX_AGE_SECONDS : NO_PROVIDERS_MAX_AGE_SECONDS}`,
      'Last-Modified': new Date((options.nowMs ?? systemClock)()).toUTCString(),
      Vary: 'Accept'
    }
    if (wantsNdjson(c)) {
      const body = providers.map(p => JSON.stringify(p) + '\n').join('')
      return c.body(body, 200, { ...headers, 'Content-Type': NDJSON_TYPE })
    }
    return c.body(JSON.stringify({ Providers: providers }), 200, { ...headers, 'Content-Type': JSON_TYPE })
  })

  app.get('/routing/v1/ipns/:name', async (c) => {
    const name = parseName(c.req.param('name'))
    acceptsRecord(c)
    const cacheControl = c.req.header('cache-control') ?? ''
    const nocache = /no-cache|no-store|max-age=0/i.test(cacheControl) || c.req.header('pragma') === 'no-cache'
    const record = onlyIfCached(c) ? await records.stored(name) : await records.getRecord(name, nocache)
    if (record === undefined) throw new NotFoundError(`no IPNS record for ${name}`)
    const headers = { ...recordHeaders(record, records.infoOf(name, record), (options.nowMs ?? systemClock)(), options), 'Content-Type': IPNS_RECORD_TYPE }
    if (ifNoneMatch(c, headers.ETag)) return c.body(null, 304, headers)
    return c.body(record as Uint8Array<ArrayBuffer>, 200, headers)
  })

  app.put('/routing/v1/ipns/:name', async (c) => {
    const name = parseName(c.req.param('name'))
    // The spec lists 406 for a body of another type, and 400 for a record that is not valid (one
    // over the IPNS spec's 10 KiB is not).
    const given = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
    if (given !== IPNS_RECORD_TYPE) {
      throw new NotAcceptableError(`Content-Type expected ${IPNS_RECORD_TYPE}, got ${given === '' || given === undefined ? 'none' : `"${given.slice(0, 80)}"`}; retry with Content-Type: ${IPNS_RECORD_TYPE}`)
    }
    const maxRecordBytes = Math.min(options.maxRecordBytes ?? MAX_RECORD_BYTES, MAX_RECORD_BYTES)
    let bytes: Uint8Array
    try {
      bytes = await readBody(c, maxRecordBytes, 'IPNS record')
    } catch (err) {
      if (err instanceof TooLargeError) throw new InvalidRecordError(err.message, { cause: err })
      throw err
    }
    try {
      await records.putRecord(name, bytes)
    } catch (err) {
      // Over the record size limit is an invalid record; over the name's quota stays a 413.
      if (err instanceof TooLargeError && /IPNS record is/.test(err.message)) throw new InvalidRecordError(err.message, { cause: err })
      throw err
    }
    return c.body(null, 200)
  })

  const notImplemented = (what: string) => () => {
    throw new NotImplementedError(`this hub does not implement ${what}; it answers /routing/v1/providers and /routing/v1/ipns`)
  }
  app.all('/routing/v1/peers/*', notImplemented('peer routing'))
  app.all('/routing/v1/dht/*', notImplemented('DHT routing'))
  app.all('/routing/v1/providers/*', notImplemented('this method on providers'))
  app.all('/routing/v1/ipns/*', notImplemented('this method on IPNS records'))
  app.all('/routing/v1/*', (c) => {
    throw new InvalidInputError(`no routing route ${c.req.method} ${c.req.path.slice(0, 100)}`)
  })
}

/** A `peer` schema record for this hub. */
function selfRecord (c: Context, components: HubComponents, options: HubAppOptions, peerId: string): { Schema: 'peer', ID: string, Addrs: string[], Protocols: string[] } {
  const base = options.publicUrl ?? new URL(c.req.url).origin
  const addrs = [urlToMultiaddr(base)]
  const protocols = [GATEWAY_PROTOCOL]
  const libp2p = components.libp2pAddrs?.() ?? []
  if (libp2p.length > 0) {
    addrs.push(...libp2p)
    protocols.push(BITSWAP_PROTOCOL)
  }
  return { Schema: 'peer', ID: peerId, Addrs: addrs, Protocols: protocols }
}

/**
 * The multiaddr of an http(s) origin (`/ip4/…/tcp/…/http`, `/dns/…/tcp/443/https`), as stock
 * clients turn it back into a URL. Throws InvalidInputError for anything else (a path included:
 * clients ask for `/ipfs/…` at the origin).
 */
export function urlToMultiaddr (url: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new InvalidInputError(`"publicUrl" expected an http(s) URL, got "${url.slice(0, 100)}"`)
  }
  if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.username !== '' || parsed.search !== '' || parsed.hash !== '' || (parsed.pathname !== '/' && parsed.pathname !== '')) {
    throw new InvalidInputError(`"publicUrl" expected an http(s) origin without path, query or credentials, got "${url.slice(0, 100)}"`)
  }
  const scheme = parsed.protocol === 'https:' ? 'https' : 'http'
  const port = parsed.port !== '' ? parsed.port : scheme === 'https' ? '443' : '80'
  const host = parsed.hostname
  const hostPart = /^\d{1,3}(\.\d{1,3}){3}$/.test(host)
    ? `/ip4/${host}`
    : host.startsWith('[') ? `/ip6/${host.slice(1, -1)}` : `/dns/${host}`
  const text = `${hostPart}/tcp/${port}/${scheme}`
  try {
    return multiaddr(text).toString()
  } catch (err) {
    throw new InvalidInputError(`"publicUrl" ${url.slice(0, 100)} has no multiaddr form`, { cause: err })
  }
}

/** IPIP-484 filters (`filter-protocols`, `filter-addrs`) applied to provider records. */
function filterProviders (providers: Array<{ Schema: 'peer', ID: string, Addrs: string[], Protocols: string[] }>, c: Context): typeof providers {
  const list = (key: string): string[] | undefined => {
    const raw = c.req.query(key)
    if (raw === undefined) return undefined
    const items = raw.split(',').map(s => s.trim().toLowerCase()).filter(s => s !== '')
    if (items.length > 32 || items.some(s => s.length > 63)) throw new InvalidInputError(`"${key}" expected at most 32 names of at most 63 characters, got ${items.length} names, the longest ${Math.max(...items.map(s => s.length))} characters`)
    return items
  }
  const protocols = list('filter-protocols')
  const addrFilters = list('filter-addrs')
  const out: typeof providers = []
  for (const p of providers) {
    if (protocols !== undefined) {
      const has = p.Protocols.map(s => s.toLowerCase())
      const match = protocols.some(f => f === 'unknown' ? has.length === 0 : has.includes(f))
      if (!match) continue
    }
    let addrs = p.Addrs
    if (addrFilters !== undefined) {
      const positive = addrFilters.filter(f => !f.startsWith('!') && f !== 'unknown')
      const negative = addrFilters.filter(f => f.startsWith('!')).map(f => f.slice(1))
      addrs = addrs.filter((a) => {
        const names = multiaddr(a).getComponents().map(x => x.name.toLowerCase())
        if (negative.some(n => names.includes(n))) return false
        return positive.length === 0 || positive.some(n => names.includes(n))
      })
      if (addrs.length === 0) continue
    }
    out.push({ ...p, Addrs: addrs })
  }
  return out
}

function wantsNdjson (c: Context): boolean {
  return (c.req.header('accept') ?? '').toLowerCase().includes(NDJSON_TYPE)
}

/** The IPNS GET's negotiation: the record type (or a wildcard) must be acceptable, else 406. */
function acceptsRecord (c: Context): void {
  const accept = (c.req.header('accept') ?? '').toLowerCase()
  const ok = accept.split(',').some((entry) => {
    const [type = '', ...params] = entry.split(';').map(s => s.trim())
    if (params.some(p => /^q\s*=\s*0(\.0*)?$/.test(p))) return false
    return type === IPNS_RECORD_TYPE || type === '*/*' || type === 'application/*'
  })
  if (!ok) throw new NotAcceptableError(`retry with Accept: ${IPNS_RECORD_TYPE}`)
}

/**
 * The caching headers of a record (routing spec, IPNS GET): an ETag from its bytes; `max-age` its
 * TTL (60 s without one), at most `maxRecordCacheSeconds` and never past its validity;
 * `stale-while-revalidate`/`stale-if-error` the validity left; `Expires` the validity's end. An
 * expired record (still the last version its owner signed, and verifiable by anyone) is sent with
 * `max-age=0` and an `Expires` in the past, so no cache keeps it.
 */
export function recordHeaders (record: Uint8Array, info: RecordInfo, nowMs: number, options: HubAppOptions): { ETag: string, 'Cache-Control': string, Expires: string, Vary: string } {
  const cap = options.maxRecordCacheSeconds ?? DEFAULT_MAX_RECORD_CACHE_SECONDS
  const validSeconds = Number.isFinite(info.validUntilMs) ? Math.max(0, Math.floor((info.validUntilMs - nowMs) / 1000)) : 0
  const ttlSeconds = info.ttlMs > 0 ? Math.floor(info.ttlMs / 1000) : DEFAULT_RECORD_MAX_AGE_SECONDS
  const maxAge = Math.max(0, Math.min(ttlSeconds, cap, validSeconds))
  const cacheControl = validSeconds > 0
    ? `public, max-age=${maxAge}, stale-while-revalidate=${validSeconds}, stale-if-error=${validSeconds}`
    : 'public, max-age=0, must-revalidate'
  return {
    ETag: `"${etagOf(record)}"`,
    'Cache-Control': cacheControl,
    Expires: new Date(Number.isFinite(info.validUntilMs) ? info.validUntilMs : 0).toUTCString(),
    Vary: 'Accept'
  }
}

/** A record's ETag: base32 SHA-256 of its protobuf bytes. */
function etagOf (record: Uint8Array): string {
  return base32.baseEncode(createHash('sha256').update(record).digest())
}

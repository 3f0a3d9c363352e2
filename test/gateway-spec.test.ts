/**
 * The hub against the trustless gateway and delegated routing specs, table-driven through
 * `app.request()`. The `conformance` cases mirror ipfs/gateway-conformance (commit 22c7644, named per
 * case) on its own fixtures (test/fixtures/gateway-conformance/); the `spec` cases cover what the
 * spec text says and the conformance suite does not (304, only-if-cached, holes, strict parameters,
 * providers, 501s, IPNS caching headers). Every CAR is parsed and hash-verified with @ipld/car.
 *
 * Conformance cases that cannot run here: every UnixFS pathing case through a HAMT-sharded directory
 * (the hub does not walk HAMTs), the `entity-bytes` ranges of chunked UnixFS files (the hub sends the
 * whole file: a superset of the blocks asked for), and the deserialized-response cases (a hub is a
 * strict trustless gateway).
 */
import { readFileSync } from 'node:fs'
import { CarBlockIterator } from '@ipld/car/iterator'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { base32 } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { encode as dagCborEncode } from '@ipld/dag-cbor'
import { beforeAll, describe, expect, it } from 'vitest'
import { CAR_TYPE, IPNS_RECORD_TYPE, RAW_TYPE } from '../src/protocol.js'
import { cborBlock, rawBlock } from '../src/store/blocks.js'
import { createRecord, nameOfKey, validateRecord } from '../src/store/record.js'
import { bytesOf, expectRefusal, makeHub, putRecord, upload } from './helpers/hub-app.js'
import type { Hub } from './helpers/hub-app.js'

const FIXTURES = new URL('./fixtures/gateway-conformance/', import.meta.url)
const CONFORMANCE = 'ipfs/gateway-conformance@22c7644'

const DUPS_ROOT = 'bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy'
const ASCII = 'bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm'
const HELLO = 'bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4'
const MULTIBLOCK = 'bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa'
/** The chunks of multiblock.txt, in order (the conformance test lists them). */
const CHUNKS = [
  'bafkreie5noke3mb7hqxukzcy73nl23k6lxszxi5w3dtmuwz62wnvkpsscm',
  'bafkreih4ephajybraj6wnxsbwjwa77fukurtpl7oj7t7pfq545duhot7cq',
  'bafkreigu7buvm3cfunb35766dn7tmqyh2um62zcio63en2btvxuybgcpue',
  'bafkreicll3huefkc3qnrzeony7zcfo7cr3nbx64hnxrqzsixpceg332fhe',
  'bafkreifst3pqztuvj57lycamoi7z34b4emf7gawxs74nwrc2c7jncmpaqm'
]
const CBOR_DIR = 'bafybeia264q44a3kmfc2otctzu4egp2k235o3t7mslz2yjraymp4nv6asi'
const DOCUMENT = 'bafyreidy4q6mmetut5jzc54ambsfnatbyoujmwbfzyyolqw24majazwgha'
const SUBDIR_ROOT = 'bafybeietjm63oynimmv5yyqay33nui4y4wx6u3peezwetxgiwvfmelutzu'
const SUBDIR = 'bafybeiggghzz6dlue3m6nb2dttnbrygxh3lrjl5764f2m4gq7dgzdt55o4'
const IDENTITY = 'bafkqaf3imvwgy3zaneqgc3janfxgy2lomvscay3jmqfa'
/** The trustless gateway spec's probe: the empty identity CID. */
const PROBE = 'bafkqaaa'
/** The IPNS record spec's V1+V2 vector (valid, TTL 30 min). */
const V1V2_NAME = 'k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w'
const V1V2_RECORD = new Uint8Array(readFileSync(new URL(`./fixtures/ipns/fixtures_ipns_records_${V1V2_NAME}_v1-v2.ipns-record`, import.meta.url)))

/** The blocks of a CAR response, each verified against its CID; identity CIDs must never appear. */
async function carBlocks (res: Response): Promise<string[]> {
  const iterator = await CarBlockIterator.fromBytes(await bytesOf(res))
  const cids: string[] = []
  for await (const { cid, bytes } of iterator) {
    expect(cid.multihash.code, `identity block ${cid.toString()} in a CAR`).not.toBe(identity.code)
    const digest = await sha256.digest(bytes)
    expect(digest.bytes, `block ${cid.toString()} does not match its CID`).toEqual(cid.multihash.bytes)
    cids.push(cid.toString())
  }
  return cids
}

interface Case {
  name: string
  source: string
  path: string | (() => string)
  headers?: Record<string, string>
  method?: string
  status: number
  /** Headers that must equal (string) or match (RegExp). */
  expectHeaders?: Record<string, string | RegExp | null>
  /** The CAR's blocks, exactly and in order. */
  blocks?: string[] | (() => string[])
  body?: Uint8Array
  errorName?: string
}

let hub: Hub
let holeRoot: CID

beforeAll(async () => {
  hub = makeHub({ publicUrl: 'https://hub.example.org' })
  for (const file of ['dir-with-duplicate-files.car', 'dir-with-dag-cbor-with-links.car', 'subdir-with-two-single-block-files.car']) {
    const res = await hub.app.request('/api/v1/blocks', { method: 'POST', headers: { 'content-type': CAR_TYPE }, body: readFileSync(new URL(file, FIXTURES)) })
    expect(res.status).toBe(200)
  }
  // A dag-cbor DAG with a hole: the root is here, one child is not.
  const present = await rawBlock(new Uint8Array([1, 2, 3]))
  const absent = await rawBlock(new Uint8Array([4, 5, 6]))
  const root = await cborBlock({ here: present.cid, gone: absent.cid })
  expect((await upload(hub, [present, root])).status).toBe(200)
  holeRoot = root.cid
  expect((await putRecord(hub, V1V2_NAME, V1V2_RECORD)).status).toBe(200)
})

const car = (accept = `${CAR_TYPE}`): Record<string, string> => ({ accept })

const cases: Case[] = [
  // --- tests/trustless_gateway_car_test.go ---
  {
    name: 'GET default CAR response of UnixFS file on a path with DAG-CBOR as root CID',
    source: `${CONFORMANCE} TestTrustlessCarPathing`,
    path: `/ipfs/${DOCUMENT}/files/single?format=car`,
    status: 200,
    blocks: [DOCUMENT, HELLO]
  },
  {
    name: 'GET default CAR response for non-existing file (the 404 branch: the hub checks the path before sending)',
    source: `${CONFORMANCE} TestTrustlessCarPathing`,
    path: `/ipfs/${SUBDIR_ROOT}/subdir/i-do-not-exist?format=car`,
    status: 404,
    errorName: 'NotFoundError'
  },
  {
    name: 'GET CAR with dag-scope=block of UnixFS directory on a path',
    source: `${CONFORMANCE} TestTrustlessCarDagScopeBlock`,
    path: `/ipfs/${SUBDIR_ROOT}/subdir?format=car&dag-scope=block`,
    status: 200,
    blocks: [SUBDIR_ROOT, SUBDIR]
  },
  {
    name: 'GET CAR with dag-scope=block of UnixFS file on a path',
    source: `${CONFORMANCE} TestTrustlessCarDagScopeBlock`,
    path: `/ipfs/${SUBDIR_ROOT}/subdir/ascii.txt?format=car&dag-scope=block`,
    status: 200,
    blocks: [SUBDIR_ROOT, SUBDIR, ASCII]
  },
  {
    name: 'GET CAR with dag-scope=entity of DAG-CBOR with Links',
    source: `${CONFORMANCE} TestTrustlessCarDagScopeEntity`,
    path: `/ipfs/${CBOR_DIR}/document?format=car&dag-scope=entity`,
    status: 200,
    blocks: [CBOR_DIR, DOCUMENT]
  },
  {
    name: 'GET CAR with dag-scope=entity of a chunked UnixFS file',
    source: `${CONFORMANCE} TestTrustlessCarDagScopeEntity`,
    path: `/ipfs/${MULTIBLOCK}?format=car&dag-scope=entity`,
    status: 200,
    blocks: [MULTIBLOCK, ...CHUNKS]
  },
  {
    name: 'GET CAR with dag-scope=all of UnixFS directory with multiple files',
    source: `${CONFORMANCE} TestTrustlessCarDagScopeAll`,
    path: `/ipfs/${SUBDIR_ROOT}/subdir?format=car&dag-scope=all`,
    status: 200,
    blocks: [SUBDIR_ROOT, SUBDIR, ASCII, HELLO]
  },
  {
    name: 'GET CAR with entity-bytes of a UnixFS directory (ignored: same blocks as dag-scope=entity)',
    source: `${CONFORMANCE} TestTrustlessCarEntityBytes`,
    path: `/ipfs/${SUBDIR_ROOT}/subdir?format=car&entity-bytes=0:*`,
    status: 200,
    blocks: [SUBDIR_ROOT, SUBDIR]
  },
  {
    name: 'GET CAR with order=dfs and dups=y of UnixFS Directory With Duplicate Files',
    source: `${CONFORMANCE} TestTrustlessCarOrderAndDuplicates`,
    path: `/ipfs/${DUPS_ROOT}`,
    headers: car(`${CAR_TYPE}; version=1; order=dfs; dups=y`),
    status: 200,
    expectHeaders: { 'content-type': `${CAR_TYPE}; version=1; order=dfs; dups=y` },
    blocks: [DUPS_ROOT, ASCII, ASCII, HELLO, MULTIBLOCK, ...CHUNKS]
  },
  {
    name: 'GET CAR with order=dfs and dups=n of UnixFS Directory With Duplicate Files',
    source: `${CONFORMANCE} TestTrustlessCarOrderAndDuplicates`,
    path: `/ipfs/${DUPS_ROOT}`,
    headers: car(`${CAR_TYPE}; version=1; order=dfs; dups=n`),
    status: 200,
    expectHeaders: { 'content-type': `${CAR_TYPE}; version=1; order=dfs; dups=n` },
    blocks: [DUPS_ROOT, ASCII, HELLO, MULTIBLOCK, ...CHUNKS]
  },
  {
    name: 'GET CAR smoke-test with order=unk of UnixFS Directory (an explicit order comes back)',
    source: `${CONFORMANCE} TestTrustlessCarOrderAndDuplicates`,
    path: `/ipfs/${DUPS_ROOT}`,
    headers: car(`${CAR_TYPE}; version=1; order=unk`),
    status: 200,
    expectHeaders: { 'content-type': /order=dfs/ },
    blocks: [DUPS_ROOT, ASCII, HELLO, MULTIBLOCK, ...CHUNKS]
  },
  {
    name: 'GET CAR with order=dfs and dups=y of identity CID (no block sent)',
    source: `${CONFORMANCE} TestTrustlessCarOrderAndDuplicates`,
    path: `/ipfs/${IDENTITY}`,
    headers: car(`${CAR_TYPE}; dups=y`),
    status: 200,
    expectHeaders: { 'content-type': /dups=y/ },
    blocks: []
  },
  {
    name: 'GET CAR with ?format=car respects Accept header order and dups params',
    source: `${CONFORMANCE} TestTrustlessCarOrderAndDuplicates`,
    path: `/ipfs/${DUPS_ROOT}?format=car`,
    headers: car(`${CAR_TYPE}; version=1; order=dfs; dups=y`),
    status: 200,
    expectHeaders: { 'content-type': /order=dfs; dups=y/ },
    blocks: [DUPS_ROOT, ASCII, ASCII, HELLO, MULTIBLOCK, ...CHUNKS]
  },
  {
    name: 'GET CAR with ?car-order=dfs takes precedence over order=unk in Accept',
    source: `${CONFORMANCE} TestTrustlessCarOrderAndDuplicates`,
    path: `/ipfs/${DUPS_ROOT}?format=car&car-order=dfs`,
    headers: car(`${CAR_TYPE}; order=unk`),
    status: 200,
    expectHeaders: { 'content-type': /order=dfs/ }
  },
  {
    name: 'GET CAR with ?car-dups=y takes precedence over dups=n in Accept',
    source: `${CONFORMANCE} TestTrustlessCarOrderAndDuplicates`,
    path: `/ipfs/${DUPS_ROOT}?format=car&car-dups=y`,
    headers: car(`${CAR_TYPE}; dups=n`),
    status: 200,
    expectHeaders: { 'content-type': /dups=y/ },
    blocks: [DUPS_ROOT, ASCII, ASCII, HELLO, MULTIBLOCK, ...CHUNKS]
  },
  {
    name: 'GET with format=car query parameter takes precedence over Accept header',
    source: `${CONFORMANCE} TestTrustlessCarFormatPrecedence`,
    path: `/ipfs/${ASCII}?format=car`,
    headers: { accept: RAW_TYPE },
    status: 200,
    expectHeaders: { 'content-type': /^application\/vnd\.ipld\.car; version=1/ },
    blocks: [ASCII]
  },
  {
    name: 'GET with format=raw query parameter takes precedence over Accept header',
    source: `${CONFORMANCE} TestTrustlessCarFormatPrecedence`,
    path: `/ipfs/${ASCII}?format=raw`,
    headers: { accept: CAR_TYPE },
    status: 200,
    expectHeaders: { 'content-type': RAW_TYPE }
  },
  // --- tests/trustless_gateway_raw_test.go ---
  {
    name: 'GET with application/vnd.ipld.raw header returns expected response headers',
    source: `${CONFORMANCE} TestTrustlessRaw`,
    path: `/ipfs/${ASCII}`,
    headers: { accept: RAW_TYPE },
    status: 200,
    expectHeaders: {
      'content-type': RAW_TYPE,
      'content-length': '31',
      'content-disposition': /^attachment;/,
      'x-content-type-options': 'nosniff',
      etag: `"${ASCII}.raw"`,
      'x-ipfs-path': `/ipfs/${ASCII}`,
      'x-ipfs-roots': ASCII,
      'cache-control': 'public, max-age=29030400, immutable',
      // Accept chose the format: the URL with ?format says which, so caches keep them apart.
      'content-location': `/ipfs/${ASCII}?format=raw`,
      vary: 'Accept'
    }
  },
  {
    name: 'GET with application/vnd.ipld.raw header and filename param returns expected Content-Disposition header with custom filename',
    source: `${CONFORMANCE} TestTrustlessRaw`,
    path: `/ipfs/${ASCII}?filename=foobar.bin`,
    headers: { accept: RAW_TYPE },
    status: 200,
    expectHeaders: { 'content-disposition': 'attachment; filename="foobar.bin"' }
  },
  {
    name: 'GET with application/vnd.ipld.raw with range request includes correct bytes',
    source: `${CONFORMANCE} TestTrustlessRawRanges`,
    path: `/ipfs/${ASCII}?format=raw`,
    headers: { range: 'bytes=6-16' },
    status: 206,
    expectHeaders: { 'content-range': 'bytes 6-16/31', 'content-length': '11' },
    body: new TextEncoder().encode('application')
  },
  // --- tests/trustless_gateway_ipns_test.go ---
  {
    name: 'GET IPNS Record (V1+V2) with format=ipns-record has expected HTTP headers and valid key',
    source: `${CONFORMANCE} TestGatewayIPNSRecord`,
    path: `/ipns/${V1V2_NAME}?format=ipns-record`,
    status: 200,
    expectHeaders: {
      'content-disposition': /^attachment;/,
      'content-type': IPNS_RECORD_TYPE,
      'cache-control': /^public, max-age=1800,/
    },
    body: V1V2_RECORD
  },
  {
    name: "GET IPNS Record (V1+V2) with 'Accept: application/vnd.ipfs.ipns-record' has expected HTTP headers and valid key",
    source: `${CONFORMANCE} TestGatewayIPNSRecord`,
    path: `/ipns/${V1V2_NAME}`,
    headers: { accept: IPNS_RECORD_TYPE },
    status: 200,
    expectHeaders: { 'content-type': IPNS_RECORD_TYPE, 'cache-control': /^public, max-age=1800,/, 'content-location': `/ipns/${V1V2_NAME}?format=ipns-record` },
    body: V1V2_RECORD
  },
  {
    name: "GET IPNS Record with explicit ?filename= succeeds with modified Content-Disposition header",
    source: `${CONFORMANCE} TestGatewayIPNSRecord`,
    path: `/ipns/${V1V2_NAME}?format=ipns-record&filename=${encodeURIComponent('testтест.ipns-record')}`,
    status: 200,
    expectHeaders: { 'content-disposition': 'attachment; filename="test____.ipns-record"; filename*=UTF-8\'\'test%D1%82%D0%B5%D1%81%D1%82.ipns-record' }
  },
  // --- the spec text, beyond the conformance suite ---
  {
    name: 'probe: GET /ipfs/bafkqaaa as a raw block is 200 with an empty body',
    source: 'trustless-gateway.md, Dedicated Probe Paths',
    path: `/ipfs/${PROBE}?format=raw`,
    status: 200,
    body: new Uint8Array(0)
  },
  {
    name: 'probe: GET /ipfs/bafkqaaa as a CAR is a valid CAR with no blocks',
    source: 'trustless-gateway.md, Dedicated Probe Paths',
    path: `/ipfs/${PROBE}?format=car`,
    status: 200,
    blocks: []
  },
  {
    name: 'a path in a raw block request is a 400',
    source: 'trustless-gateway.md: for block requests only /ipfs/{cid} is supported',
    path: `/ipfs/${SUBDIR_ROOT}/subdir?format=raw`,
    status: 400,
    errorName: 'InvalidInputError'
  },
  {
    name: 'a dag-cbor path ending inside a block sends that block, and with dag-scope=all the DAG its links lead to',
    source: 'path-gateway.md pathing; trustless-gateway.md dag-scope=all',
    path: `/ipfs/${DOCUMENT}/files?format=car&dag-scope=all`,
    status: 200,
    blocks: [DOCUMENT, HELLO, MULTIBLOCK, ...CHUNKS]
  },
  {
    name: 'a dag-cbor path ending inside a block with dag-scope=block sends that block only',
    source: 'trustless-gateway.md dag-scope=block',
    path: `/ipfs/${DOCUMENT}/files?format=car&dag-scope=block`,
    status: 200,
    blocks: [DOCUMENT]
  },
  {
    name: 'a DAG with a block the hub cannot get is a 404 before any byte, never a partial 200',
    source: 'trustless-gateway.md, Streaming and Missing Child Blocks (the hub knows before streaming)',
    path: () => `/ipfs/${holeRoot.toString()}?format=car`,
    status: 404,
    errorName: 'NotFoundError'
  },
  {
    name: 'the same DAG with dag-scope=block is complete, so it is served',
    source: 'trustless-gateway.md dag-scope=block',
    path: () => `/ipfs/${holeRoot.toString()}?format=car&dag-scope=block`,
    status: 200,
    blocks: () => [holeRoot.toString()]
  },
  { name: 'car-version=2 is a 400', source: 'trustless-gateway.md car-version', path: `/ipfs/${ASCII}?format=car&car-version=2`, status: 400, errorName: 'InvalidInputError' },
  { name: 'car-dups=maybe is a 400', source: 'trustless-gateway.md car-dups', path: `/ipfs/${ASCII}?format=car&car-dups=maybe`, status: 400, errorName: 'InvalidInputError' },
  { name: 'a malformed entity-bytes is a 400', source: 'trustless-gateway.md entity-bytes', path: `/ipfs/${ASCII}?format=car&entity-bytes=1-2`, status: 400, errorName: 'InvalidInputError' },
  { name: 'an entity-bytes range that ends before it starts is a 400', source: 'trustless-gateway.md entity-bytes', path: `/ipfs/${ASCII}?format=car&entity-bytes=9:3`, status: 400, errorName: 'InvalidInputError' },
  { name: 'a CAR of version 2 in Accept is a 406', source: 'trustless-gateway.md CAR format signaling', path: `/ipfs/${ASCII}`, headers: car(`${CAR_TYPE}; version=2`), status: 406, errorName: 'NotAcceptableError' },
  { name: 'no Accept and no ?format is a 400 (strict trustless gateway)', source: 'trustless-gateway.md Accept', path: `/ipfs/${ASCII}`, status: 400, errorName: 'InvalidInputError' },
  { name: 'a range outside a raw block is a 416', source: 'path-gateway.md Range; RFC 9110', path: `/ipfs/${ASCII}?format=raw`, headers: { range: 'bytes=31-' }, status: 416, expectHeaders: { 'content-range': 'bytes */31' } },
  {
    name: '/ipns/{name} as a raw block serves what the record points at, cached for the TTL, not as immutable',
    source: 'trustless-gateway.md GET /ipns/{key}; path-gateway.md Cache-Control for /ipns/',
    path: `/ipns/${V1V2_NAME}?format=raw`,
    status: 200,
    expectHeaders: { 'cache-control': /^public, max-age=1800, stale-while-revalidate=\d+/, 'x-ipfs-path': `/ipns/${V1V2_NAME}` },
    // The record points at an identity CID: its block is the CID's own digest.
    body: CID.parse('bafkqaddwgevxmmraojswg33smq').multihash.digest
  },
  { name: 'an IPNS record with a path is a 400', source: 'path-gateway.md Accept: ipns-record with a path', path: `/ipns/${V1V2_NAME}/x?format=ipns-record`, status: 400, errorName: 'InvalidInputError' },
  { name: 'a path of over 32 segments is a 400', source: 'trustless-gateway.md Path Validation (deeply nested paths)', path: `/ipfs/${DOCUMENT}/${Array.from({ length: 33 }, () => 'a').join('/')}?format=car`, status: 400, errorName: 'InvalidInputError' },
  { name: 'a path segment of over 256 characters is a 400', source: 'trustless-gateway.md Path Validation', path: `/ipfs/${DOCUMENT}/${'a'.repeat(257)}?format=car`, status: 400, errorName: 'InvalidInputError' },
  { name: 'a providers filter of over 32 names is a 400', source: 'http-routing-v1.md filter-protocols (names are bounded)', path: `/routing/v1/providers/${ASCII}?filter-protocols=${Array.from({ length: 33 }, (_, i) => `p${i}`).join(',')}`, status: 400, errorName: 'InvalidInputError' },
  { name: 'a path with an empty segment is a 400', source: 'trustless-gateway.md Path Validation', path: `/ipfs/${DOCUMENT}/files//single?format=car`, status: 400, errorName: 'InvalidInputError' }
]

describe('trustless gateway, table of spec and conformance cases', () => {
  for (const c of cases) {
    it(`${c.name} [${c.source}]`, async () => {
      const path = typeof c.path === 'function' ? c.path() : c.path
      const res = await hub.app.request(path, { method: c.method ?? 'GET', headers: c.headers ?? {} })
      if (c.status >= 400 && c.status !== 416) {
        await expectRefusal(res, c.status, c.errorName)
        if (c.expectHeaders !== undefined) for (const [k, v] of Object.entries(c.expectHeaders)) expect(res.headers.get(k)).toEqual(v)
        return
      }
      expect(res.status, await res.clone().text().catch(() => '')).toBe(c.status)
      for (const [key, want] of Object.entries(c.expectHeaders ?? {})) {
        const got = res.headers.get(key)
        if (want instanceof RegExp) expect(got, key).toMatch(want)
        else expect(got, key).toBe(want)
      }
      if (c.blocks !== undefined) {
        expect(await carBlocks(res)).toEqual(typeof c.blocks === 'function' ? c.blocks() : c.blocks)
      } else if (c.body !== undefined) {
        expect(await bytesOf(res)).toEqual(c.body)
      }
    })
  }
})

describe('trustless gateway caching', () => {
  it('answers If-None-Match with the ETag it sent by a 304 without a body (raw, CAR, IPNS record)', async () => {
    for (const path of [`/ipfs/${ASCII}?format=raw`, `/ipfs/${DUPS_ROOT}?format=car`, `/ipfs/${DOCUMENT}/files?format=car`, `/ipns/${V1V2_NAME}?format=ipns-record`, `/routing/v1/ipns/${V1V2_NAME}`]) {
      const headers = { accept: IPNS_RECORD_TYPE }
      const first = await hub.app.request(path, { headers })
      expect(first.status, path).toBe(200)
      const etag = first.headers.get('etag') as string
      expect(etag, path).toMatch(/^"[^"]+"$/)
      await first.arrayBuffer()
      const again = await hub.app.request(path, { headers: { ...headers, 'if-none-match': `W/"other", ${etag}` } })
      expect(again.status, path).toBe(304)
      expect(await again.text()).toBe('')
      const other = await hub.app.request(path, { headers: { ...headers, 'if-none-match': '"something-else"' } })
      expect(other.status, path).toBe(200)
      await other.arrayBuffer()
    }
  })

  it('gives every CAR variant its own ETag (scope, dups, entity-bytes, path)', async () => {
    const etags = new Set<string>()
    for (const query of ['', '&dag-scope=block', '&dag-scope=entity', '&car-dups=y', '&entity-bytes=0:*', '&entity-bytes=0:10']) {
      const res = await hub.app.request(`/ipfs/${CBOR_DIR}?format=car${query}`)
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      etags.add(res.headers.get('etag') as string)
    }
    const pathed = await hub.app.request(`/ipfs/${CBOR_DIR}/document?format=car`)
    etags.add(pathed.headers.get('etag') as string)
    await pathed.arrayBuffer()
    expect(etags.size).toBe(7)
  })

  it('answers only-if-cached from local blocks: 200 for what it holds, 412 (no fetch) for what it lacks', async () => {
    let fetched = 0
    const networked = makeHub({}, { fetchBlock: async () => { fetched++; throw new Error('offline') } })
    const here = await rawBlock(new Uint8Array([7]))
    const missing = await rawBlock(new Uint8Array([8]))
    const parent = await cborBlock({ child: missing.cid })
    expect((await upload(networked, [here, parent])).status).toBe(200)
    const cached = { 'cache-control': 'only-if-cached' }
    const ok = await networked.app.request(`/ipfs/${here.cid.toString()}?format=raw`, { headers: cached })
    expect(ok.status).toBe(200)
    expect(await bytesOf(ok)).toEqual(here.bytes)
    await expectRefusal(await networked.app.request(`/ipfs/${missing.cid.toString()}?format=raw`, { headers: cached }), 412, 'PreconditionFailedError')
    await expectRefusal(await networked.app.request(`/ipfs/${parent.cid.toString()}?format=car`, { headers: cached }), 412, 'PreconditionFailedError')
    expect(fetched).toBe(0)
    // Without it, the hub asks the network (and, failing, answers 404).
    await expectRefusal(await networked.app.request(`/ipfs/${missing.cid.toString()}?format=raw`), 404, 'NotFoundError')
    expect(fetched).toBe(1)
  })

  it('answers HEAD for a CAR with its headers and no body, and gives its CAR slot back', async () => {
    const slotted = makeHub({ maxCarStreamsPerClient: 1 })
    const block = await cborBlock({ a: 1 })
    expect((await upload(slotted, [block])).status).toBe(200)
    for (let i = 0; i < 3; i++) {
      const head = await slotted.app.request(`/ipfs/${block.cid.toString()}?format=car`, { method: 'HEAD' })
      expect(head.status).toBe(200)
      expect(head.headers.get('content-type')).toBe(`${CAR_TYPE}; version=1; order=dfs; dups=n`)
      expect(Number(head.headers.get('content-length'))).toBeGreaterThan(block.bytes.byteLength)
      expect((await head.arrayBuffer()).byteLength).toBe(0)
    }
    const get = await slotted.app.request(`/ipfs/${block.cid.toString()}?format=car`)
    expect(get.status).toBe(200)
    expect(await carBlocks(get)).toEqual([block.cid.toString()])
  })

  it('never sends an identity CID linked inside a DAG, but walks what it links to', async () => {
    const local = makeHub()
    const leaf = await rawBlock(new Uint8Array([12]))
    const inline = CID.createV1(0x71, identity.digest(dagCborEncode({ leaf: leaf.cid })))
    const top = await cborBlock({ inline })
    expect((await upload(local, [leaf, top])).status).toBe(200)
    const res = await local.app.request(`/ipfs/${top.cid.toString()}?format=car&car-dups=y`)
    expect(await carBlocks(res)).toEqual([top.cid.toString(), leaf.cid.toString()])
  })

  it('keeps the byte cap (maxCarBytes) on paths: over it is a 413 before any byte', async () => {
    const capped = makeHub({ maxCarBytes: 1000 })
    const big = await rawBlock(new Uint8Array(900).fill(1))
    const big2 = await rawBlock(new Uint8Array(900).fill(2))
    const top = await cborBlock({ x: { a: big.cid, b: big2.cid } })
    expect((await upload(capped, [big, big2, top])).status).toBe(200)
    expect(await carBlocks(await capped.app.request(`/ipfs/${top.cid.toString()}/x/a?format=car`))).toEqual([top.cid.toString(), big.cid.toString()])
    await expectRefusal(await capped.app.request(`/ipfs/${top.cid.toString()}/x?format=car`), 413, 'TooLargeError')
  })

  it('keeps the CAR caps on paths and dups=y: a DAG that repeats a child is refused (413) once dups would pass the cap', async () => {
    const capped = makeHub({ maxDagBlocks: 10 })
    const leaf = await rawBlock(new Uint8Array([9]))
    // 8 links to one leaf: 9 blocks with dups=y... times two levels is 73 sends.
    const mid = await cborBlock(Array.from({ length: 8 }, () => leaf.cid))
    const top = await cborBlock({ x: Array.from({ length: 8 }, () => mid.cid) })
    expect((await upload(capped, [leaf, mid, top])).status).toBe(200)
    const once = await capped.app.request(`/ipfs/${top.cid.toString()}/x?format=car`)
    expect(await carBlocks(once)).toEqual([top.cid.toString(), mid.cid.toString(), leaf.cid.toString()])
    await expectRefusal(await capped.app.request(`/ipfs/${top.cid.toString()}/x?format=car&car-dups=y`), 413, 'TooLargeError')
  })
})

describe('delegated routing v1', () => {
  it('names the hub as the provider of a block it holds, in the peer schema with its gateway address', async () => {
    const res = await hub.app.request(`/routing/v1/providers/${ASCII}`, { headers: { accept: 'application/json' } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/json')
    expect(res.headers.get('vary')).toBe('Accept')
    expect(res.headers.get('cache-control')).toMatch(/^public, max-age=\d+/)
    const body = await res.json() as { Providers: Array<{ Schema: string, ID: string, Addrs: string[], Protocols: string[] }> }
    expect(body.Providers).toHaveLength(1)
    const [p] = body.Providers
    expect(p?.Schema).toBe('peer')
    expect(p?.ID).toMatch(/^12D3KooW/)
    expect(p?.Addrs).toEqual(['/dns/hub.example.org/tcp/443/https'])
    expect(p?.Protocols).toEqual(['transport-ipfs-gateway-http'])
    // The same peer id on every answer of one hub.
    const again = await (await hub.app.request(`/routing/v1/providers/${HELLO}`)).json() as typeof body
    expect(again.Providers[0]?.ID).toBe(p?.ID)
  })

  it('answers 200 with no providers for a block it does not hold, and streams ndjson when asked', async () => {
    const unknown = (await rawBlock(new Uint8Array([99]))).cid.toString()
    const res = await hub.app.request(`/routing/v1/providers/${unknown}`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ Providers: [] })
    const nd = await hub.app.request(`/routing/v1/providers/${ASCII}`, { headers: { accept: 'application/x-ndjson' } })
    expect(nd.headers.get('content-type')).toBe('application/x-ndjson')
    const lines = (await nd.text()).trim().split('\n').map(l => JSON.parse(l) as { Schema: string })
    expect(lines).toHaveLength(1)
    expect(lines[0]?.Schema).toBe('peer')
  })

  it('applies filter-protocols and filter-addrs (IPIP-484)', async () => {
    const get = async (query: string): Promise<unknown[]> => ((await (await hub.app.request(`/routing/v1/providers/${ASCII}?${query}`)).json()) as { Providers: unknown[] }).Providers
    expect(await get('filter-protocols=transport-bitswap')).toHaveLength(0)
    expect(await get('filter-protocols=transport-bitswap,transport-ipfs-gateway-http')).toHaveLength(1)
    expect(await get('filter-addrs=https')).toHaveLength(1)
    expect(await get('filter-addrs=!https')).toHaveLength(0)
    expect(await get('filter-addrs=webrtc-direct')).toHaveLength(0)
  })

  it('answers 501 for the routes it does not implement and 400 for unknown routing paths', async () => {
    const peer = '12D3KooWLQzUv2FHWGVPXTXSZpdHs7oHbXub2G5WC8Tx4NQhyd2d'
    await expectRefusal(await hub.app.request(`/routing/v1/peers/${peer}`), 501, 'NotImplementedError')
    await expectRefusal(await hub.app.request(`/routing/v1/dht/closest/peers/${peer}`), 501, 'NotImplementedError')
    await expectRefusal(await hub.app.request(`/routing/v1/providers/${ASCII}`, { method: 'PUT', body: '{}' }), 501, 'NotImplementedError')
    await expectRefusal(await hub.app.request('/routing/v1/nothing-here'), 400, 'InvalidInputError')
    await expectRefusal(await hub.app.request('/routing/v1/providers/not-a-cid'), 400, 'InvalidInputError')
  })

  it('serves IPNS records with an ETag from the record, max-age from the TTL, and Expires from the validity', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const target = await rawBlock(new Uint8Array([1]))
    const record = await createRecord(key, target.cid, 1, { ttlMs: 120_000 })
    expect((await putRecord(hub, name, record)).status).toBe(200)
    const res = await hub.app.request(`/routing/v1/ipns/${name}`, { headers: { accept: IPNS_RECORD_TYPE } })
    expect(res.status).toBe(200)
    const cache = res.headers.get('cache-control') as string
    expect(cache).toMatch(/^public, max-age=120, stale-while-revalidate=\d+, stale-if-error=\d+$/)
    const { validUntilMs } = await validateRecord(name, record)
    expect(Math.abs(Date.parse(res.headers.get('expires') as string) - validUntilMs)).toBeLessThan(1000)
    // Derived from the record's bytes: its SHA-256, base32.
    expect(res.headers.get('etag')).toBe(`"${base32.baseEncode((await sha256.digest(record)).digest)}"`)
    expect(res.headers.get('vary')).toBe('Accept')
    await expectRefusal(await hub.app.request(`/routing/v1/ipns/${name}`, { headers: { accept: 'application/json' } }), 406, 'NotAcceptableError')
  })

  it('bounds max-age by maxRecordCacheSeconds and by the validity left', async () => {
    const bounded = makeHub({ maxRecordCacheSeconds: 30 })
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const record = await createRecord(key, (await rawBlock(new Uint8Array([2]))).cid, 1, { ttlMs: 3_600_000, lifetimeMs: 20_000 })
    expect((await putRecord(bounded, name, record)).status).toBe(200)
    const res = await bounded.app.request(`/routing/v1/ipns/${name}`, { headers: { accept: IPNS_RECORD_TYPE } })
    expect(res.headers.get('cache-control')).toMatch(/^public, max-age=(30|19|20), /)
  })

  it('serves an expired record (the last version its owner signed) with max-age=0 and an Expires in the past', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = nameOfKey(key)
    const record = await createRecord(key, (await rawBlock(new Uint8Array([3]))).cid, 1, { lifetimeMs: 400 })
    expect((await putRecord(hub, name, record)).status).toBe(200)
    const { validUntilMs } = await validateRecord(name, record)
    while (Date.now() <= validUntilMs) await new Promise(resolve => setTimeout(resolve, Math.max(10, validUntilMs - Date.now() + 5)))
    const res = await hub.app.request(`/routing/v1/ipns/${name}`, { headers: { accept: IPNS_RECORD_TYPE } })
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('public, max-age=0, must-revalidate')
    expect(Date.parse(res.headers.get('expires') as string)).toBeLessThanOrEqual(Date.now())
    expect(await bytesOf(res)).toEqual(record)
  })
})

describe('gateway paths over dag-cbor', () => {
  it('walks list indexes and nested maps, and 404s a missing key or an index past the end', async () => {
    const a = await rawBlock(new Uint8Array([10]))
    const b = await rawBlock(new Uint8Array([11]))
    const inner = await cborBlock({ list: [a.cid, { deep: b.cid }], 'a b%/c': a.cid })
    const outer = await cborBlock({ inner: inner.cid, n: 5 })
    const local = makeHub()
    expect((await upload(local, [a, b, inner, outer])).status).toBe(200)
    const blocks = async (path: string): Promise<string[]> => carBlocks(await local.app.request(`/ipfs/${outer.cid.toString()}/${path}`, { headers: { accept: CAR_TYPE } }))
    expect(await blocks('inner/list/0')).toEqual([outer.cid, inner.cid, a.cid].map(String))
    expect(await blocks('inner/list/1/deep')).toEqual([outer.cid, inner.cid, b.cid].map(String))
    expect(await blocks('inner')).toEqual([outer.cid, inner.cid, a.cid, b.cid].map(String))
    expect(await blocks('n')).toEqual([outer.cid.toString()])
    // Segments are percent-decoded once: a key with a space, a percent sign and a slash.
    expect(await blocks(`inner/${encodeURIComponent('a b%/c')}`)).toEqual([outer.cid, inner.cid, a.cid].map(String))
    for (const missing of ['nope', 'inner/list/2', 'inner/list/01', 'n/x', 'inner/list/0/beyond-a-raw-block']) {
      await expectRefusal(await local.app.request(`/ipfs/${outer.cid.toString()}/${missing}?format=car`), 404, 'NotFoundError')
    }
  })
})

/**
 * `POST /api/v1/publish/{name}`: a space's new version in one request. The body is a CARv1 whose
 * single root is the marshalled IPNS record, carried as a block of the `ipns-record` codec (0x0300);
 * every other block is one of the version's blocks. The hub checks them exactly as the separate
 * routes do — each block as an upload (blocks.ts), the record as a PUT (records.ts), the version's
 * root and quota with the new blocks in view — and stores all of it or nothing: a stale sequence is a
 * 409 like PUT's, and then no block is stored or charged. Bounded like an upload: the body cap, the
 * per-upload block cap, the per-client pending quota and the hub's budget, and the rate limiter in
 * front of every route.
 */
import { InvalidInputError, TooLargeError } from '../errors.js'
import { CAR_TYPE, IPNS_RECORD_CODEC } from '../protocol.js'
import { MAX_RECORD_BYTES } from '../store/record.js'
import { clientKey } from './client.js'
import { readBody, requireContentType } from './middleware/body.js'
import { DEFAULT_HUB_MAX_BODY_BYTES } from './options.js'
import { parseName } from './params.js'
import type { HubBlocks } from './blocks.js'
import type { Env, HubAppOptions } from './options.js'
import type { HubRecords } from './records.js'
import type { Context } from 'hono'

export function publishHandler (parts: { records: HubRecords, blocks: HubBlocks }, options: HubAppOptions): (c: Context<Env>) => Promise<Response> {
  const maxRecordBytes = Math.min(options.maxRecordBytes ?? MAX_RECORD_BYTES, MAX_RECORD_BYTES)
  return async (c) => {
    const name = parseName(c.req.param('name') ?? '')
    requireContentType(c, CAR_TYPE)
    const body = await readBody(c, options.maxBodyBytes ?? DEFAULT_HUB_MAX_BODY_BYTES, 'request body')
    const { roots, blocks } = await parts.blocks.verifyCar(body)
    const root = roots.length === 1 ? roots[0] : undefined
    if (root?.code !== IPNS_RECORD_CODEC) {
      throw new InvalidInputError(`a publish CAR has exactly one root, the IPNS record as a block of codec 0x${IPNS_RECORD_CODEC.toString(16)}; got ${roots.length} root(s)${root === undefined ? '' : ` of codec 0x${root.code.toString(16)}`}`)
    }
    const record = blocks.find(b => b.cid.equals(root))
    if (record === undefined) throw new InvalidInputError(`the publish CAR names the record ${root.toString()} as its root but does not carry it`)
    if (record.bytes.byteLength > maxRecordBytes) {
      throw new TooLargeError(`IPNS record is ${record.bytes.byteLength} bytes, over the ${maxRecordBytes}-byte limit`)
    }
    const others = blocks.filter(b => b !== record)
    if (others.some(b => b.cid.code === IPNS_RECORD_CODEC)) throw new InvalidInputError('a publish CAR carries one IPNS record, not several')
    await parts.records.publish(name, record.bytes, others, clientKey(c, options))
    return c.body(null, 200)
  }
}

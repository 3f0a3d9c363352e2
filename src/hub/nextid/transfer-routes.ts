/**
 * Routes that move an avatar's chain between hubs (not part of the Next.ID API): `GET
 * /api/v1/nextid/export?avatar=` streams it as a CAR whose root is the head, `POST
 * /api/v1/nextid/import` takes such a CAR, one import at a time, every block checked against its
 * CID before `importAvatarChain` verifies the chain.
 */
import { CarReader } from '@ipld/car'
import { IntegrityError, InvalidInputError, NotFoundError, RateLimitError, TooLargeError } from '../../errors.js'
import { CAR_TYPE as CAR } from '../../protocol.js'
import { verifyBlock } from '../../store/blocks.js'
import { readBody, requireContentType } from '../middleware/body.js'
import { importAvatarChain, streamAvatarChain } from './transfer.js'
import type { NextIdConfig } from './options.js'
import type { Block } from '../../store/interface.js'
import type { Context, Hono } from 'hono'
import type { CID } from 'multiformats/cid'

export function addTransferRoutes (app: Hono, config: NextIdConfig): void {
  app.get('/api/v1/nextid/export', async c => {
    const param = c.req.query('avatar')
    if (param === undefined) throw new InvalidInputError('Param missing: avatar')
    const stream = await streamAvatarChain({ ...config, signal: c.req.raw.signal }, param)
    if (stream === null) throw new NotFoundError(`this hub has no chain for avatar ${param.slice(0, 140)}`)
    return c.body(stream, 200, { 'Content-Type': `${CAR}; version=1` })
  })

  let importing = false
  app.post('/api/v1/nextid/import', async c => {
    requireContentType(c, CAR)
    // One import at a time, counted before its body is read: n concurrent uploads would otherwise
    // hold n × maxImportBytes before the import itself refused all but one.
    if (importing) {
      c.header('Retry-After', '1')
      throw new RateLimitError('another chain import is running on this hub; retry shortly')
    }
    importing = true
    try {
      return await importCar(c, config)
    } finally {
      importing = false
    }
  })
}

async function importCar (c: Context, config: NextIdConfig): Promise<Response> {
  const bytes = await readBody(c, config.maxImportBytes, 'CAR')
  let reader: CarReader
  try {
    reader = await CarReader.fromBytes(bytes)
  } catch (err) {
    throw new InvalidInputError(`body is not a CAR: ${(err as Error).message}`, { cause: err })
  }
  const roots = await reader.getRoots()
  if (roots.length !== 1) throw new InvalidInputError(`an avatar chain CAR has one root (its head), this one has ${roots.length}`)
  const blocks: Block[] = []
  for await (const block of reader.blocks()) {
    if (blocks.length >= config.maxChainLinks) throw new TooLargeError(`the CAR has more than ${config.maxChainLinks} blocks, the most this hub keeps per avatar`)
    if (!(await verifyBlock(block.cid, block.bytes))) throw new IntegrityError(`block ${block.cid.toString()} does not match its CID`)
    blocks.push({ cid: block.cid, bytes: block.bytes })
  }
  try {
    await importAvatarChain({ ...config, signal: c.req.raw.signal }, blocks, roots[0] as CID)
  } catch (err) {
    if (err instanceof RateLimitError) c.header('Retry-After', '1')
    throw err
  }
  return c.json({ head: (roots[0] as CID).toString(), blocks: blocks.length }, 201)
}

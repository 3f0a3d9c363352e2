/**
 * Writes to a hub: blocks as CAR uploads (several when they are many, each all-or-nothing), records
 * through Delegated Routing V1, and both in one request (`POST /api/v1/publish/{name}`) where the hub
 * has that route. Every block is checked against its CID and the block size limit before it leaves.
 */
import { blockLength } from '@ipld/car/buffer-writer'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { IntegrityError, InvalidInputError, NotFoundError, throwIfAborted } from '../errors.js'
import { BLOCKS_PATH, CAR_TYPE, IPNS_RECORD_CODEC, IPNS_RECORD_TYPE, JSON_TYPE, ipnsRecordPath, publishPath } from '../protocol.js'
import { MAX_BLOCK_BYTES, cidLabel, encodeCar, verifyBlock } from './blocks.js'
import { MAX_RECORD_BYTES } from './record.js'
import type { HubTransport } from './hub-transport.js'
import type { AbortOptions, Block } from './interface.js'

/** Largest CAR sent in one upload; more blocks go in several uploads. @default 8 MiB */
export const DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 * 1024
/** Most blocks sent in one upload or publish (the hub's default per-request limit). @default 4 096 */
export const DEFAULT_MAX_UPLOAD_BLOCKS = 4_096

export interface HubWriterOptions {
  /** @default DEFAULT_MAX_UPLOAD_BYTES (8 MiB; the hub's default body limit is 16 MiB) */
  maxUploadBytes?: number
  /** @default DEFAULT_MAX_UPLOAD_BLOCKS (4 096, the hub's default) */
  maxUploadBlocks?: number
}

export class HubWriter {
  /** Set once the hub answered the one-request publish route with 404 (a hub that predates it). */
  private publishUnsupported = false

  constructor (private readonly transport: HubTransport, private readonly options: HubWriterOptions) {}

  async putBlocks (blocks: Block[], options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    await this.checkBlocks(blocks)
    await this.uploadInParts(blocks, options)
  }

  async putRecord (name: string, record: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.transport.call(ipnsRecordPath(this.transport.pathName(name)), {
      method: 'PUT',
      headers: { 'content-type': IPNS_RECORD_TYPE },
      body: record as Uint8Array<ArrayBuffer>
    }, options, async () => undefined)
  }

  /**
   * Blocks and record in one request (`POST /api/v1/publish/{name}`, a CAR whose root is the record
   * as an `ipns-record` block). Blocks beyond `maxUploadBytes` go first in plain uploads; the last
   * part travels with the record, so the hub checks the record with every block in view.
   */
  async publish (name: string, record: Uint8Array, blocks: Block[], options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    if (!(record instanceof Uint8Array) || record.byteLength > MAX_RECORD_BYTES) {
      throw new InvalidInputError(`"record" expected a Uint8Array of at most ${MAX_RECORD_BYTES} bytes, got ${record instanceof Uint8Array ? `${record.byteLength} bytes` : typeof record}`)
    }
    await this.checkBlocks(blocks)
    if (this.publishUnsupported) {
      await this.uploadInParts(blocks, options)
      await this.putRecord(name, record, options)
      return
    }
    const recordBlock: Block = { cid: CID.createV1(IPNS_RECORD_CODEC, await sha256.digest(record)), bytes: record }
    const max = this.options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES
    let size = blockLength(recordBlock)
    let split = blocks.length
    const maxBlocks = this.options.maxUploadBlocks ?? DEFAULT_MAX_UPLOAD_BLOCKS
    // The record counts as one of the request's blocks.
    while (split > 0 && blocks.length - split + 2 <= maxBlocks && size + blockLength(blocks[split - 1] as Block) <= max) size += blockLength(blocks[--split] as Block)
    await this.uploadInParts(blocks.slice(0, split), options)
    const car = encodeCar([recordBlock, ...blocks.slice(split)], [recordBlock.cid])
    try {
      await this.transport.call(publishPath(this.transport.pathName(name)), {
        method: 'POST',
        headers: { 'content-type': CAR_TYPE, accept: JSON_TYPE },
        body: car
      }, options, async () => undefined)
    } catch (err) {
      // The route never answers 404 for a name: a hub that predates it does. Use the two standard
      // routes with it from now on.
      if (!(err instanceof NotFoundError)) throw err
      this.transport.log('hub %s has no one-request publish route: publishing with an upload and a record PUT from now on', this.transport.base)
      this.publishUnsupported = true
      await this.uploadInParts(blocks.slice(split), options)
      await this.putRecord(name, record, options)
    }
  }

  private async checkBlocks (blocks: Block[]): Promise<void> {
    for (const block of blocks) {
      if (block.bytes.byteLength > MAX_BLOCK_BYTES) {
        throw new InvalidInputError(`block ${cidLabel(block.cid)} is ${block.bytes.byteLength} bytes, over the ${MAX_BLOCK_BYTES}-byte limit`)
      }
      if (!(await verifyBlock(block.cid, block.bytes))) {
        throw new IntegrityError(`block ${cidLabel(block.cid)} does not match its CID`)
      }
    }
  }

  private async uploadInParts (blocks: Block[], options: AbortOptions): Promise<void> {
    // Usually one CAR. Several when the blocks are many: each upload is all-or-nothing, and a
    // later failure leaves only unreferenced blocks behind (nothing points at them until a record does).
    const max = this.options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES
    let batch: Block[] = []
    let size = 0
    for (const block of blocks) {
      const length = blockLength(block)
      if (batch.length > 0 && (size + length > max || batch.length >= (this.options.maxUploadBlocks ?? DEFAULT_MAX_UPLOAD_BLOCKS))) {
        await this.upload(batch, options)
        batch = []
        size = 0
      }
      batch.push(block)
      size += length
    }
    if (batch.length > 0) await this.upload(batch, options)
  }

  private async upload (blocks: Block[], options: AbortOptions): Promise<void> {
    const car = encodeCar(blocks)
    await this.transport.call(BLOCKS_PATH, {
      method: 'POST',
      headers: { 'content-type': CAR_TYPE, accept: JSON_TYPE },
      body: car as Uint8Array<ArrayBuffer>
    }, options, async () => undefined)
  }
}

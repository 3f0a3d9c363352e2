/**
 * Reads from a hub: raw blocks (`GET /ipfs/{cid}?format=raw`, at most `fetchConcurrency` at once),
 * a version's DAG as one trustless-gateway CAR, and IPNS records through Delegated Routing V1.
 * Every block is checked against its CID here, whatever the hub did; every body is capped.
 */
import { CID } from 'multiformats/cid'
import { AbortedError, IntegrityError, StoreError, TooLargeError, UntrustedHubError } from '../errors.js'
import { CAR_TYPE, IPNS_RECORD_TYPE, RAW_TYPE, ipfsPath, ipnsRecordPath } from '../protocol.js'
import { MAX_BLOCK_BYTES, cidLabel, cidString, refuseUnheld, verifyBlock } from './blocks.js'
import { readCar } from './car-read.js'
import { cappedChunks } from './hub-body.js'
import { Limiter } from './limiter.js'
import { DEFAULT_FETCH_CONCURRENCY, DEFAULT_MAX_DAG_BLOCKS, DEFAULT_MAX_DAG_BYTES } from './limits.js'
import { MAX_RECORD_BYTES } from './record.js'
import type { HubTransport } from './hub-transport.js'
import type { AbortOptions, Block, GetDagOptions, GetRecordOptions } from './interface.js'

export interface HubReaderOptions {
  /** Block requests in flight at once. @default DEFAULT_FETCH_CONCURRENCY (32) */
  fetchConcurrency?: number
  /** @default DEFAULT_MAX_DAG_BYTES (64 MiB) */
  maxDagBytes?: number
  /** @default DEFAULT_MAX_DAG_BLOCKS (65 536) */
  maxDagBlocks?: number
}

/** Bytes of blocks from version events a reader holds for the reads that follow them, newest kept. */
export const PUSHED_CACHE_BYTES = 512 * 1024

export class HubReader {
  private readonly fetchSlots: Limiter
  /** Verified blocks that came with version events, by CID string, oldest first. */
  private readonly pushed = new Map<string, Uint8Array>()
  private pushedBytes = 0

  constructor (private readonly transport: HubTransport, private readonly options: HubReaderOptions) {
    this.fetchSlots = new Limiter(options.fetchConcurrency ?? DEFAULT_FETCH_CONCURRENCY)
  }

  /**
   * Keeps blocks a version event brought (already checked against their CIDs), so that merging the
   * version reads them here instead of asking the hub; the oldest go beyond PUSHED_CACHE_BYTES.
   */
  remember (blocks: Block[]): void {
    for (const block of blocks) {
      const key = cidString(block.cid)
      if (this.pushed.has(key)) continue
      this.pushed.set(key, block.bytes)
      this.pushedBytes += block.bytes.byteLength
    }
    for (const [key, bytes] of this.pushed) {
      if (this.pushedBytes <= PUSHED_CACHE_BYTES) break
      this.pushed.delete(key)
      this.pushedBytes -= bytes.byteLength
    }
  }

  async getBlock (cid: CID, options: AbortOptions = {}): Promise<Uint8Array> {
    const pushed = this.pushed.get(cidString(cid))
    if (pushed !== undefined) return pushed
    const { transport } = this
    // A space read block by block asks for every bucket at once: at most `fetchConcurrency` go out together.
    // A CID no block can have (a stranger's link with a megabyte digest) is not asked for.
    refuseUnheld(cid)
    const bytes = await this.fetchSlots.run(options.signal, async () => await transport.call(`${ipfsPath(cidString(cid))}?format=raw`, {
      headers: { accept: RAW_TYPE }
    }, options, async (res, signal) => await transport.read(res, MAX_BLOCK_BYTES, `block ${cidLabel(cid)}`, signal)),
    () => new AbortedError(`request to ${transport.base} was aborted`))
    if (!(await verifyBlock(cid, bytes))) {
      throw new IntegrityError(`block ${cidLabel(cid)} from ${transport.base} does not match its CID`)
    }
    return bytes
  }

  /**
   * One trustless-gateway CAR (`GET /ipfs/{cid}[/{path}]?format=car&dag-scope=all`), read as a stream
   * and held to the caps: at most `maxDagBytes` (counted after content decoding) and `maxDagBlocks`,
   * each block at most MAX_BLOCK_BYTES, hashed with sha2-256 and matching its CID, all within the
   * request timeout. A hub that sends more, or a block that does not match, is an UntrustedHubError;
   * nothing it sent is returned then.
   */
  async getDag (cid: CID, options: GetDagOptions = {}): Promise<Block[]> {
    const base = this.transport.base
    const path = options.path === undefined || options.path === '' ? '' : '/' + options.path.split('/').map(encodeURIComponent).join('/')
    const maxBytes = this.options.maxDagBytes ?? DEFAULT_MAX_DAG_BYTES
    const maxBlocks = this.options.maxDagBlocks ?? DEFAULT_MAX_DAG_BLOCKS
    return await this.transport.call(`${ipfsPath(cid.toString())}${path}?format=car&dag-scope=all`, {
      headers: { accept: CAR_TYPE }
    }, options, async (res, signal) => {
      const declared = Number(res.headers.get('content-length') ?? Number.NaN)
      if (res.headers.get('content-encoding') === null && declared > maxBytes) {
        throw new UntrustedHubError(`hub ${base} offers a CAR of ${declared} bytes for ${cidLabel(cid)}, over the ${maxBytes}-byte limit`)
      }
      if (res.body === null) throw new UntrustedHubError(`hub ${base} answered the CAR of ${cidLabel(cid)} with no body`)
      const blocks: Block[] = []
      const chunks = cappedChunks(res.body, maxBytes, signal)
      try {
        await readCar(chunks, { maxBlockBytes: MAX_BLOCK_BYTES }, (block) => {
          if (blocks.length >= maxBlocks) throw new TooLargeError(`the CAR holds over ${maxBlocks} blocks`)
          blocks.push(block)
        })
      } catch (err) {
        if (signal.aborted) throw err
        if (err instanceof StoreError) throw err
        throw new UntrustedHubError(`hub ${base} sent a bad CAR for ${cidLabel(cid)}: ${(err as Error).message}`, { cause: err })
      } finally {
        // The parser may stop with the body half read: release it.
        await chunks.return(undefined)
      }
      return blocks
    })
  }

  async getRecord (name: string, options: GetRecordOptions = {}): Promise<Uint8Array | undefined> {
    const { transport } = this
    return await transport.call(ipnsRecordPath(transport.pathName(name)), {
      headers: { accept: IPNS_RECORD_TYPE },
      // `no-store` makes browsers and Node send `Cache-Control: no-cache`, which also tells the hub
      // to ask the network for a newer record; it adds no header of ours, so no CORS preflight.
      cache: options.nocache === true ? 'no-store' : 'default'
    }, options, async (res, signal) => await transport.read(res, MAX_RECORD_BYTES, `the record of ${name}`, signal), true)
  }
}

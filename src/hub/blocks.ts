/**
 * The hub's blocks: local reads through a small in-memory cache, network fetches (verified and
 * kept), the trustless gateway's CAR builder, and CAR uploads (every block verified before any is
 * stored).
 */
import { systemClock } from '../clock.js'
import { CarBufferReader } from '@ipld/car/buffer-reader'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { varint } from 'multiformats'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { IntegrityError, InvalidInputError, NotFoundError, PreconditionFailedError, TooLargeError } from '../errors.js'
import { MAX_BLOCK_BYTES, cidKey, cidLabel, encodeCar, isHeldHash, multihashKey, verifyBlock } from '../store/blocks.js'
import { collect } from './bytes.js'
import {
  DEFAULT_HUB_FETCH_TIMEOUT_MS, DEFAULT_HUB_MAX_CAR_BYTES, DEFAULT_MAX_CAR_STREAMS, DEFAULT_MAX_CAR_STREAMS_PER_CLIENT,
  DEFAULT_HUB_MAX_DAG_BLOCKS, DEFAULT_MAX_DAG_LINKS, DEFAULT_HUB_MAX_UPLOAD_BLOCKS
} from './options.js'
import { Slots } from './slots.js'
import { costOf } from './storage.js'
import type { HubStorage } from './storage.js'
import { planCar } from './car-plan.js'
import type { WalkCaps } from './walk.js'
import type { HubAppOptions, HubComponents } from './options.js'
import type { CarOptions } from './params.js'
import type { Blockstore } from 'interface-blockstore'

/** Who blocks fetched from the network for a reader are charged to. */
const NETWORK_CLIENT = 'network'
/**
 * Block files checked or written at once when storing an upload: a version's blocks go to disk
 * together instead of one file operation after another (each a write and a rename on the file
 * blockstore), and an upload of thousands of blocks holds at most this many files open.
 */
const STORE_CONCURRENCY = 16
/** Blocks up to this size are kept in the in-memory block cache. */
const SMALL_BLOCK_BYTES = 64 * 1024
/** Total size of the in-memory block cache. */
const SMALL_BLOCK_CACHE_BYTES = 16 * 1024 * 1024
/** Errors of a local read that mean "not here": a plain blockstore's, and helia's when offline. */
const LOCAL_MISS = new Set(['NotFoundError', 'BlockNotFoundWhileOfflineError'])
/** Blocks a CAR response reads ahead of the client, at most. */
const READ_AHEAD_BLOCKS = 32
/**
 * Bytes a CAR response reads ahead of the client, at most (a single larger block is still read):
 * what a stalled reader can make the hub hold, beside its socket buffers. Small-block CARs (a
 * space's buckets, ~1.5 KiB) are bounded by the block count long before this.
 */
const READ_AHEAD_BYTES = 1024 * 1024
/** A CAR response's chunk: frames of blocks already read are joined up to about this many bytes. */
const FRAME_CHUNK_BYTES = 64 * 1024

/** Local and network blocks, with the caches that keep record PUTs from re-reading them. */
export class HubBlocks {
  readonly blockstore: Blockstore
  private readonly fetchBlock: HubComponents['fetchBlock']
  private readonly syncBlocks: HubComponents['syncBlocks']
  private readonly options: HubAppOptions
  private readonly nowMs: () => number
  /**
   * Block sizes (blocks never change), so quota checks do not re-read big blocks. Keyed by
   * `multihashKey` (binary, no base32 per lookup; a block is its multihash, as the blockstore keeps
   * it, whatever codec names it), as are the cache and the stores in flight below.
   */
  private readonly sizes = new Map<string, number>()
  /** Blocks an upload or fetch is storing now (by `multihashKey`), settled with whether it stored them. */
  private readonly storing = new Map<string, Promise<boolean>>()
  /** Recently used small blocks, newest last, at most SMALL_BLOCK_CACHE_BYTES in all. */
  private readonly smallBlocks = new Map<string, Uint8Array>()
  private smallBlockBytes = 0
  private readonly carSlots: Slots

  constructor (components: Pick<HubComponents, 'blockstore' | 'fetchBlock' | 'syncBlocks'>, options: HubAppOptions, readonly storage: HubStorage) {
    this.blockstore = components.blockstore
    this.fetchBlock = components.fetchBlock
    this.syncBlocks = components.syncBlocks
    this.options = options
    this.nowMs = options.nowMs ?? systemClock
    this.carSlots = new Slots('CAR responses', options.maxCarStreams ?? DEFAULT_MAX_CAR_STREAMS, options.maxCarStreamsPerClient ?? DEFAULT_MAX_CAR_STREAMS_PER_CLIENT)
  }

  /** Whether a request is storing the block `key` (a `multihashKey`) names: a collection leaves it. */
  isStoring (key: string): boolean {
    return this.storing.has(key)
  }

  /**
   * A block's bytes: an identity CID's digest, a local block, or (unless `localOnly`) one fetched
   * from the network. Missing: NotFoundError, or PreconditionFailedError when `localOnly`.
   */
  async getBlock (cid: CID, options: { localOnly?: boolean, signal?: AbortSignal } = {}): Promise<Uint8Array> {
    if (cid.multihash.code === identity.code) return cid.multihash.digest
    const bytes = options.localOnly === true
      ? await this.localBlock(cid)
      : await this.readBlock(cid, this.options.fetchTimeoutMs ?? DEFAULT_HUB_FETCH_TIMEOUT_MS, options.signal)
    if (bytes === undefined) throw missingBlock(cid, 'block', options.localOnly === true)
    return bytes
  }

  /** The caps of one DAG walk, from the options. */
  walkCaps (maxBytes: number): WalkCaps {
    return {
      maxLinks: this.options.maxDagLinks ?? DEFAULT_MAX_DAG_LINKS,
      maxBlocks: this.options.maxDagBlocks ?? DEFAULT_HUB_MAX_DAG_BLOCKS,
      maxBytes
    }
  }

  /**
   * A CARv1 of `cid`, the blocks that resolve `segments` below it and the blocks `options` asks for
   * at their end (see car-plan.ts), streamed block by block. The plan runs first (reading the blocks
   * that link, sizing the leaves) so that a DAG over a cap is a 413, and one with a block the hub
   * cannot get a 404 (412 when `localOnly`), before any byte is sent; the body then reads one block
   * at a time as the client takes them, and holds a CAR slot until it ends.
   */
  async getCar (cid: CID, segments: string[], options: CarOptions, client: string, io: { localOnly?: boolean, signal?: AbortSignal } = {}): Promise<{ body: ReadableStream<Uint8Array>, bytes: number, roots: CID[], release: () => void }> {
    const release = this.carSlots.acquire(client)
    try {
      const max = this.options.maxCarBytes ?? DEFAULT_HUB_MAX_CAR_BYTES
      // A wait, not a date: measured on the monotonic timer (whole ms: AbortSignal.timeout takes integers).
      const deadline = performance.now() + (this.options.fetchTimeoutMs ?? DEFAULT_HUB_FETCH_TIMEOUT_MS)
      const remaining = (): number => io.localOnly === true ? 0 : Math.max(0, Math.floor(deadline - performance.now()))
      const plan = await planCar(cid, segments, options, {
        read: async (c) => this.readBlock(c, remaining(), io.signal),
        size: async (c) => this.sizes.get(multihashKey(c)) ?? (await this.readBlock(c, remaining(), io.signal))?.byteLength,
        missing: (c, role) => missingBlock(c, role, io.localOnly === true)
      }, this.walkCaps(max), `the CAR for ${cid.toString()}${segments.length > 0 ? '/' + segments.join('/') : ''}`)
      const header = encodeCar([], [cid])
      let bytes = header.byteLength
      plan.cids.forEach((c, i) => { bytes += blockFrameLength(c, plan.sizes[i] as number) })
      // Blocks are read ahead of the writer, a bounded window at a time: one file read after another
      // left the disk idle between frames (5 500 blocks of a 100 000-key space took most of a second).
      // Each read settles into `done` (a value, never a rejection: a read still in flight when the
      // client goes away rejects nothing), so a pull can tell which are ready without waiting.
      const ahead: Array<{ read: Promise<void>, done?: Uint8Array | Error }> = []
      let aheadBytes = 0
      let queued = 0
      const fill = (): void => {
        while (queued < plan.cids.length && (ahead.length === 0 || (ahead.length < READ_AHEAD_BLOCKS && aheadBytes + (plan.sizes[queued] as number) <= READ_AHEAD_BYTES))) {
          const next = plan.cids[queued] as CID
          aheadBytes += plan.sizes[queued] as number
          queued++
          const slot: { read: Promise<void>, done?: Uint8Array | Error } = { read: Promise.resolve() }
          slot.read = this.localBlock(next).then(
            block => { slot.done = block ?? new NotFoundError(`block ${next.toString()} is gone`) },
            err => { slot.done = err as Error }
          )
          ahead.push(slot)
        }
      }
      let index = -1
      const body = new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          try {
            if (index === -1) { index = 0; fill(); controller.enqueue(header); return }
            if (index >= plan.cids.length) { release(); controller.close(); return }
            // One chunk per pull: the next block, then every block after it already read, up to
            // FRAME_CHUNK_BYTES. A frame per chunk made a write per block (5 500 for a 100 000-key
            // space), each a syscall here and a read on the client.
            await (ahead[0] as { read: Promise<void> }).read
            const ready: Array<{ cid: CID, bytes: Uint8Array }> = []
            let length = 0
            while (ahead.length > 0 && (ready.length === 0 || length < FRAME_CHUNK_BYTES)) {
              const block = (ahead[0] as { done?: Uint8Array | Error }).done
              if (block === undefined) break
              // A block collected since the plan ends the CAR early (after the frames before it);
              // the client, verifying, sees it.
              if (block instanceof Error) {
                if (ready.length > 0) break
                throw block
              }
              ahead.shift()
              const cid = plan.cids[index] as CID
              aheadBytes -= plan.sizes[index] as number
              index++
              ready.push({ cid, bytes: block })
              length += blockFrameLength(cid, block.byteLength)
              fill()
            }
            controller.enqueue(blockFrames(ready, length))
          } catch (err) {
            release()
            controller.error(err)
          }
        },
        cancel: () => { release() }
      }, { highWaterMark: 0 })
      return { body, bytes, roots: plan.roots, release }
    } catch (err) {
      release()
      throw err
    }
  }

  /** Verifies every block of a CAR, then stores them all; nothing is stored when one fails. */
  async putCar (body: Uint8Array, client: string): Promise<CID[]> {
    const { blocks } = await this.verifyCar(body)
    await this.storeVerified(blocks, client)
    return blocks.map(b => b.cid)
  }

  /**
   * Parses a CAR body and checks every block as an upload is checked (count, size, sha2-256, bytes
   * against CID), storing nothing. Returns the header's roots and the distinct blocks, in order.
   */
  async verifyCar (body: Uint8Array): Promise<{ roots: CID[], blocks: Array<{ cid: CID, bytes: Uint8Array }> }> {
    // Counted before parsing: the parser decodes every block's CID, and a 16 MiB body of 1-byte
    // blocks holds ~440 000 of them.
    const maxBlocks = this.options.maxUploadBlocks ?? DEFAULT_HUB_MAX_UPLOAD_BLOCKS
    const count = countCarFrames(body, maxBlocks + 1)
    if (count > maxBlocks) throw new TooLargeError(`the CAR holds over ${maxBlocks} blocks, the limit per upload; send it in parts`)
    let reader
    try {
      reader = CarBufferReader.fromBytes(body)
    } catch (err) {
      throw new InvalidInputError(`body is not a CAR: ${(err as Error).message}`, { cause: err })
    }
    const maxBlockBytes = Math.min(this.options.maxBlockBytes ?? MAX_BLOCK_BYTES, MAX_BLOCK_BYTES)
    const blocks = reader.blocks()
    const unique = new Map<string, { cid: CID, bytes: Uint8Array }>()
    let checked = 0
    for (const block of blocks) {
      // Hashing 16 MiB takes a while on a busy core: let other requests in now and then.
      if (++checked % 64 === 0) await new Promise<void>((resolve) => { setImmediate(resolve) })
      const cid = CID.asCID(block.cid) as CID
      if (block.bytes.byteLength > maxBlockBytes) {
        throw new TooLargeError(`block ${cidLabel(cid)} is ${block.bytes.byteLength} bytes, over the ${maxBlockBytes}-byte limit`)
      }
      if (cid.multihash.code !== sha256.code) {
        throw new InvalidInputError(`block ${cidLabel(cid)} is not hashed with sha2-256`)
      }
      if (!(await verifyBlock(cid, block.bytes))) {
        throw new IntegrityError(`block ${cidLabel(cid)} does not match its CID`)
      }
      unique.set(cidKey(cid), { cid, bytes: block.bytes })
    }
    return { roots: reader.getRoots().map(r => CID.asCID(r) as CID), blocks: [...unique.values()] }
  }

  /** Stores verified blocks, charging the ones the hub did not have to `client` (refused over a quota before any is stored). */
  async storeVerified (unique: Array<{ cid: CID, bytes: Uint8Array }>, client: string): Promise<void> {
    // A block another request is storing right now is that request's: stored, charged and recorded
    // once (two uploads of the same blocks at once each recorded and counted them before). This one
    // waits for it, and stores what it did not. The rest are marked as this one's before anything
    // is looked at: a block another request has put but not yet synced (or will delete again when
    // its sync fails) must never count as held.
    const others: Array<{ block: { cid: CID, bytes: Uint8Array }, stored: Promise<boolean> }> = []
    const mine: Array<{ cid: CID, bytes: Uint8Array }> = []
    // One block on disk per multihash: the same bytes sent under two codecs are stored and charged once.
    const seen = new Set<string>()
    for (const block of unique) {
      const key = multihashKey(block.cid)
      if (seen.has(key)) continue
      seen.add(key)
      const other = this.storing.get(key)
      if (other === undefined) mine.push(block)
      else others.push({ block, stored: other })
    }
    let settle: (stored: boolean) => void = () => {}
    const marked = new Promise<boolean>(resolve => { settle = resolve })
    for (const block of mine) this.storing.set(multihashKey(block.cid), marked)
    let stored = false
    try {
      // Marked, so no later deletion takes them (see collectGarbage); one under way ends first.
      await this.storage.deletionOf(mine.map(b => multihashKey(b.cid)))
      // Only blocks the hub does not have yet cost disk, and they are charged to the uploader.
      const held = await inGroups(mine, async (block) => await this.blockstore.has(block.cid))
      // Held ones are not recorded again, but a collection leaves them their grace period (see
      // HubStorage.touch); when it cannot note more, they are recorded as landed again, charged to
      // this uploader as new ones are (anyone can re-send held blocks for free to fill it).
      const untracked = new Set(this.storage.touch(mine.filter((_block, i) => held[i] === true).map(b => b.cid), this.nowMs()))
      await this.storeOwn(mine.filter((_block, i) => held[i] !== true), client)
      if (untracked.size > 0) await this.recordAgain(mine.filter(b => untracked.has(b.cid)), client)
      stored = true
    } finally {
      for (const block of mine) if (this.storing.get(multihashKey(block.cid)) === marked) this.storing.delete(multihashKey(block.cid))
      settle(stored)
    }
    if (others.length > 0) {
      const done = await Promise.all(others.map(async o => await o.stored))
      // The other request may have failed: what it did not store is this one's to store.
      const missing = others.filter((_o, i) => done[i] !== true).map(o => o.block)
      if (missing.length > 0) await this.storeVerified(missing, client)
    }
    for (const { cid, bytes } of unique) {
      // The record PUT that follows an upload reads its root and public section: keep them at hand.
      if (cid.code === dagCbor.code) this.keepSmall(multihashKey(cid), bytes)
      this.noteSize(multihashKey(cid), bytes.byteLength)
    }
  }

  /**
   * Stores, syncs and records `fresh` (blocks this request has marked in `storing` and the hub
   * lacks), charged to `client`. On a failure after they were put, they are deleted again: a block
   * put but neither synced nor recorded would be counted nowhere and never collected, and every
   * later upload of it would be answered without storing it.
   */
  private async storeOwn (fresh: Array<{ cid: CID, bytes: Uint8Array }>, client: string): Promise<void> {
    if (fresh.length === 0) return
    let putting = false
    let release: () => void = () => {}
    try {
      release = await this.storage.admit(client, fresh.reduce((n, b) => n + costOf(b.bytes.byteLength), 0))
      putting = true
      await inGroups(fresh, async ({ cid, bytes }) => { await this.blockstore.put(cid, bytes) })
      // Acknowledged means on disk: the record PUT that follows may point at these.
      await this.syncBlocks?.(fresh.map(b => b.cid))
      await this.storage.landed(client, fresh.map(b => ({ cid: b.cid, size: b.bytes.byteLength })), this.nowMs())
    } catch (err) {
      if (putting) {
        await inGroups(fresh, async ({ cid }) => { await this.blockstore.delete(cid) }).catch(() => {})
        for (const { cid } of fresh) this.forget(cid)
      }
      throw err
    } finally {
      // Recorded by `landed` (and charged there), or failed: the reservation is over either way.
      release()
    }
  }

  /** Records held blocks as landed again (see storeVerified), admitted and charged to `client` as new ones are. */
  private async recordAgain (held: Array<{ cid: CID, bytes: Uint8Array }>, client: string): Promise<void> {
    const release = await this.storage.admit(client, held.reduce((n, b) => n + costOf(b.bytes.byteLength), 0))
    try {
      await this.storage.landed(client, held.map(b => ({ cid: b.cid, size: b.bytes.byteLength })), this.nowMs())
    } finally {
      release()
    }
  }

  /**
   * Keeps a verified block the network gave (a reader's fetch, a replica's), charged to no client
   * and collected like an upload when nothing references it, while the budget has room; once, when
   * an upload or another fetch is storing it at the same time.
   */
  async keepFromNetwork (cid: CID, bytes: Uint8Array): Promise<void> {
    const key = multihashKey(cid)
    // Another request storing it decides first; when it fails, one that started meanwhile does.
    for (let other = this.storing.get(key); other !== undefined; other = this.storing.get(key)) {
      if (await other) return
    }
    // Marked before `has`, as uploads are (see storeVerified).
    let settle: (stored: boolean) => void = () => {}
    const mine = new Promise<boolean>(resolve => { settle = resolve })
    this.storing.set(key, mine)
    let stored = false
    try {
      // As an upload does (see storeVerified): an upload waiting on this one trusts its answer.
      await this.storage.deletionOf([key])
      if (await this.blockstore.has(cid)) { stored = true; return }
      if (!this.storage.hasRoomFor(costOf(bytes.byteLength))) return
      await this.blockstore.put(cid, bytes)
      try {
        await this.storage.landed(NETWORK_CLIENT, [{ cid, size: bytes.byteLength }], this.nowMs())
      } catch (err) {
        await Promise.resolve(this.blockstore.delete(cid)).catch(() => {})
        this.forget(cid)
        throw err
      }
      stored = true
    } finally {
      if (this.storing.get(key) === mine) this.storing.delete(key)
      settle(stored)
    }
  }

  /** A local block, or undefined. */
  async localBlock (cid: CID): Promise<Uint8Array | undefined> {
    if (cid.multihash.code === identity.code) return cid.multihash.digest
    if (!isHeldHash(cid)) return undefined
    const key = multihashKey(cid)
    const cached = this.smallBlocks.get(key)
    if (cached !== undefined) return cached
    // No `has` first (helia's blockstore checks it itself): `offline` keeps helia from going to the
    // network for a block that is not here, which it reports as BlockNotFoundWhileOfflineError.
    let bytes: Uint8Array
    try {
      bytes = await collect(this.blockstore.get(cid, { offline: true } as Parameters<Blockstore['get']>[1]))
    } catch (err) {
      if (LOCAL_MISS.has((err as Error).name)) return undefined
      throw err
    }
    this.keepSmall(key, bytes)
    return bytes
  }

  /**
   * Keeps a small block in memory (roots and public sections: what every record PUT and most
   * gateway reads touch). Blocks are content-addressed, so a cached block is never stale.
   */
  private keepSmall (key: string, bytes: Uint8Array): void {
    if (bytes.byteLength > SMALL_BLOCK_BYTES) return
    if (this.smallBlocks.has(key)) this.smallBlocks.delete(key)
    else this.smallBlockBytes += bytes.byteLength
    this.smallBlocks.set(key, bytes)
    while (this.smallBlockBytes > SMALL_BLOCK_CACHE_BYTES) {
      const [oldest, value] = this.smallBlocks.entries().next().value as [string, Uint8Array]
      this.smallBlocks.delete(oldest)
      this.smallBlockBytes -= value.byteLength
    }
  }

  /**
   * A local block, else one fetched from the network within `timeoutMs` (sooner when `signal`
   * fires: the request that wanted it went away), verified and kept.
   */
  async readBlock (cid: CID, timeoutMs: number, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    const local = await this.localBlock(cid)
    if (local !== undefined || !isHeldHash(cid) || this.fetchBlock === undefined || timeoutMs <= 0 || signal?.aborted === true) return local
    let bytes: Uint8Array
    try {
      const timeout = AbortSignal.timeout(timeoutMs)
      bytes = await this.fetchBlock(cid, { signal: signal === undefined ? timeout : AbortSignal.any([timeout, signal]) })
    } catch {
      return undefined
    }
    const max = Math.min(this.options.maxBlockBytes ?? MAX_BLOCK_BYTES, MAX_BLOCK_BYTES)
    if (bytes.byteLength > max || !(await verifyBlock(cid, bytes))) return undefined
    await this.keepFromNetwork(cid, bytes)
    this.keepSmall(multihashKey(cid), bytes)
    return bytes
  }

  /** Drops a deleted block from the caches. */
  forget (cid: CID): void {
    const key = multihashKey(cid)
    const cached = this.smallBlocks.get(key)
    if (cached !== undefined) { this.smallBlocks.delete(key); this.smallBlockBytes -= cached.byteLength }
    this.sizes.delete(key)
  }

  async blockSize (cid: CID): Promise<number> {
    const key = multihashKey(cid)
    const known = this.sizes.get(key)
    if (known !== undefined) return known
    const bytes = await this.localBlock(cid)
    if (bytes === undefined) return 0
    this.noteSize(key, bytes.byteLength)
    return bytes.byteLength
  }

  private noteSize (key: string, size: number): void {
    if (this.sizes.size > 100_000) this.sizes.clear()
    this.sizes.set(key, size)
  }
}

/** The refusal for a block the hub cannot give: 404, or 412 when only local blocks may be used. */
function missingBlock (cid: CID, role: string, localOnly: boolean): Error {
  return localOnly
    ? new PreconditionFailedError(`${role} ${role === 'block' ? cidLabel(cid) + ' ' : ''}is not on this hub (only-if-cached: nothing fetched)`)
    : new NotFoundError(`${role === 'block' ? `block ${cidLabel(cid)}` : role} not found on this hub`)
}

/**
 * Block sections in a CARv1 body, counting up to `stop` (reads only the length prefixes). Malformed
 * bodies are left to the CAR parser to refuse.
 */
function countCarFrames (body: Uint8Array, stop: number): number {
  let pos = 0
  let frames = -1 // the header comes first
  while (pos < body.byteLength && frames < stop) {
    let length: number
    let read: number
    try {
      [length, read] = varint.decode(body, pos)
    } catch {
      return Math.max(0, frames)
    }
    pos += read + length
    frames++
  }
  return Math.max(0, frames)
}

/** Bytes of one CARv1 block section: varint(length) ‖ CID ‖ block. */
function blockFrameLength (cid: CID, size: number): number {
  const length = cid.bytes.byteLength + size
  return varint.encodingLength(length) + length
}

/** CARv1 block sections, one after another in one buffer of `length` bytes. */
function blockFrames (blocks: Array<{ cid: CID, bytes: Uint8Array }>, length: number): Uint8Array {
  const out = new Uint8Array(length)
  let at = 0
  for (const { cid, bytes } of blocks) {
    const frame = cid.bytes.byteLength + bytes.byteLength
    varint.encodeTo(frame, out, at)
    at += varint.encodingLength(frame)
    out.set(cid.bytes, at)
    out.set(bytes, at + cid.bytes.byteLength)
    at += frame
  }
  return out
}

/** `fn` over `items`, STORE_CONCURRENCY at a time; the results in order. */
async function inGroups<T, R> (items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = []
  for (let i = 0; i < items.length; i += STORE_CONCURRENCY) out.push(...await Promise.all(items.slice(i, i + STORE_CONCURRENCY).map(fn)))
  return out
}

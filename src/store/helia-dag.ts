/**
 * A version's whole state in one libp2p round trip: a small request/response protocol between helia
 * nodes that carries a trustless-gateway CAR request and its answer over one stream. A node that
 * opens a space asks a connected peer for `/ipfs/<root>/current?format=car&dag-scope=all` and gets
 * every block in one streamed CAR, instead of one bitswap round trip per level of the bucket index
 * and a block request per bucket. Isomorphic: it only uses libp2p's stream API and helia's blockstore.
 *
 * Wire (DAG_PROTOCOL): the request is an unsigned varint length and that many bytes of UTF-8 path,
 * at most MAX_DAG_REQUEST_BYTES. The answer is an unsigned varint status, as in HTTP (200, 400, 404,
 * 413, 429, 503); after 200 comes a CARv1 whose root is the requested CID, holding that block and
 * every block below the path, each once; after any other status a short UTF-8 message. The stream
 * ends after the answer. A path's segments name map keys inside the root block (as far as its first
 * link), as the space's `current` field is read; the CAR then holds the DAG below the links found
 * there, and nothing the path does not reach (no history behind `parents`).
 *
 * The server answers only from blocks it holds (never from the network), so serving costs what
 * bitswap serving the same blocks would, and is bounded for strangers: a few streams per connection
 * and per peer, a few responses node-wide, a deadline per request and per response, caps on blocks,
 * links and bytes per answer, a small read-ahead, and a peer that stops reading is cut off. A block
 * it lacks ends the stream with a reset, never a clean end.
 *
 * The client never trusts an answer: the stream is held to the caller's signal and a deadline, the
 * body to a byte cap, the CAR to a block cap, every block to MAX_BLOCK_BYTES and to its CID (sha2-256);
 * an answer without the requested root, or with any bad block, is thrown away whole.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { decode as decodeVarint, encode as encodeVarint, encodingLength } from 'uint8-varint'
import { AbortedError, IntegrityError, NotFoundError, RateLimitError, StoreError, TooLargeError, UnavailableError } from '../errors.js'
import { MAX_BLOCK_BYTES, canonicalLinkList, cidKey, cidLabel, encodeCar, refuseUnheld } from './blocks.js'
import { readCar } from './car-read.js'
import { DAG_PROTOCOL } from '../protocol.js'
import type { Block } from './interface.js'
import type { Helia } from '@helia/interface'
import { setMaxListeners } from '@libp2p/interface'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'

export { DAG_PROTOCOL }

/** Longest request path, in bytes. @default 1 KiB */
export const MAX_DAG_REQUEST_BYTES = 1024
/** Longest error message in an answer, in bytes. */
const MAX_DAG_MESSAGE_BYTES = 1024
/** Distinct blocks one answer holds (a version of 4 096 buckets is under 5 500). @default 8 192, as a hub */
export const DEFAULT_DAG_SERVE_MAX_BLOCKS = 8_192
/** Bytes of blocks one answer holds. @default 64 MiB, as a hub's CAR */
export const DEFAULT_DAG_SERVE_MAX_BYTES = 64 * 1024 * 1024
/** Links one answer's walk examines, repeats included. @default 65 536, as a hub */
export const DEFAULT_DAG_SERVE_MAX_LINKS = 65_536
/** Answers streaming at once, node-wide (503 beyond). @default 8, as a hub's CAR streams */
export const DEFAULT_DAG_SERVE_MAX_STREAMS = 8
/** Answers streaming at once to one peer, over all its connections (429 beyond). @default 2 */
export const DEFAULT_DAG_SERVE_MAX_STREAMS_PER_PEER = 2
/** Time a peer has to send its request. @default 5 s */
export const DAG_REQUEST_TIMEOUT_MS = 5_000
/** Time one answer may take, a slow reader included; past it the stream is reset. @default 30 s */
export const DEFAULT_DAG_SERVE_TIMEOUT_MS = 30_000
/** Connected peers a client asks in turn before it falls back to bitswap. @default 3 */
export const DEFAULT_DAG_PEERS = 3
/** Blocks read from the blockstore ahead of the one being sent. */
const READ_AHEAD_BLOCKS = 16
/** Bytes of read blocks held ahead of the stream; with blocks over 64 KiB only one is read ahead. */
const READ_AHEAD_BYTES = 1024 * 1024
/** Frames are gathered up to this many bytes per `send`. */
const SEND_BATCH_BYTES = 64 * 1024

export interface DagServerOptions {
  /** @default DEFAULT_DAG_SERVE_MAX_BLOCKS */
  maxBlocks?: number
  /** @default DEFAULT_DAG_SERVE_MAX_BYTES */
  maxBytes?: number
  /** @default DEFAULT_DAG_SERVE_MAX_LINKS */
  maxLinks?: number
  /** @default DEFAULT_DAG_SERVE_MAX_STREAMS */
  maxStreams?: number
  /** @default DEFAULT_DAG_SERVE_MAX_STREAMS_PER_PEER */
  maxStreamsPerPeer?: number
  /** @default DEFAULT_DAG_SERVE_TIMEOUT_MS */
  timeoutMs?: number
  /** @default DAG_REQUEST_TIMEOUT_MS */
  requestTimeoutMs?: number
}

/** A request, parsed: the root and the path segments inside it. */
export interface DagRequest {
  cid: CID
  segments: string[]
}

/** The request path for `cid` and `path` (`current`, `a/b`): the trustless gateway's own form. */
export function dagRequestPath (cid: CID, path?: string): string {
  const segments = (path ?? '').split('/').filter(s => s !== '').map(encodeURIComponent)
  return `/ipfs/${cid.toString()}${segments.map(s => '/' + s).join('')}?format=car&dag-scope=all`
}

/** Parses a request path, or throws a message for a 400 (only whole-DAG CAR requests are served). */
export function parseDagRequest (path: string): DagRequest {
  const match = /^\/ipfs\/([^/?#]+)((?:\/[^/?#]+)*)\?format=car&dag-scope=all$/.exec(path)
  if (match === null) throw new Error('expected /ipfs/<cid>[/<segment>…]?format=car&dag-scope=all')
  let cid: CID
  try { cid = CID.parse(match[1] as string) } catch { throw new Error('the path does not start with a CID') }
  const segments = (match[2] ?? '').split('/').filter(s => s !== '').map((s) => {
    try { return decodeURIComponent(s) } catch { throw new Error('a path segment is not valid percent-encoding') }
  })
  if (segments.length > 8) throw new Error('the path has over 8 segments')
  return { cid, segments }
}

/**
 * The CIDs in the dag-cbor block at `cid`, all of them or those inside the value at `segments` (a
 * path reaching a CID continues in no further block: its links are what is wanted). A segment the
 * block does not hold is a NotFoundError; other codecs have no links here (raw blocks are leaves).
 */
export function linksAt (cid: CID, bytes: Uint8Array, segments: string[]): CID[] {
  if (cid.code !== dagCbor.code) return []
  if (segments.length === 0) {
    const list = canonicalLinkList(bytes)
    if (list !== undefined) return list
  }
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch {
    return []
  }
  for (const segment of segments) {
    if (typeof value !== 'object' || value === null || CID.asCID(value) !== null) throw new NotFoundError(`no "${segment}" in ${cid.toString()}`)
    value = Object.hasOwn(value, segment) ? (value as Record<string, unknown>)[segment] : undefined
    if (value === undefined) throw new NotFoundError(`no "${segment}" in ${cid.toString()}`)
  }
  const links: CID[] = []
  const visit = (v: unknown): void => {
    const link = CID.asCID(v)
    if (link !== null) { links.push(link); return }
    if (Array.isArray(v)) { for (const item of v) visit(item); return }
    if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) for (const item of Object.values(v)) visit(item)
  }
  visit(value)
  return links
}

type Libp2pLike = Pick<Libp2p, 'handle' | 'dialProtocol' | 'getConnections' | 'peerStore'>

/** The node's libp2p, when it runs one (a helia built without libp2p has none). */
export function libp2pOf (helia: Helia): Libp2pLike | undefined {
  if (helia.status !== 'started') return undefined
  let libp2p: Partial<Libp2pLike> | undefined
  try {
    libp2p = (helia as { libp2p?: Partial<Libp2pLike> }).libp2p
  } catch {
    return undefined
  }
  return typeof libp2p?.handle === 'function' && typeof libp2p.dialProtocol === 'function' ? libp2p as Libp2pLike : undefined
}

/** The DAG server of each libp2p node (one handler per node, whichever store registered it). */
const servers = new WeakMap<object, DagServer>()

/**
 * Answers DAG_PROTOCOL requests on `helia`'s libp2p from its blockstore (see the module doc). Once
 * per node: later calls return the same server. A node without libp2p, or not started, serves
 * nothing (undefined).
 */
export async function serveDags (helia: Helia, options: DagServerOptions = {}): Promise<DagServer | undefined> {
  const libp2p = libp2pOf(helia)
  if (libp2p === undefined) return undefined
  const running = servers.get(libp2p)
  if (running !== undefined) return running
  const server = new DagServer(helia, options)
  servers.set(libp2p, server)
  try {
    await libp2p.handle(DAG_PROTOCOL, (stream: Stream, connection: Connection) => { server.handle(stream, connection) }, {
      // A peer's answers stream one or two at a time; more streams on one connection are refused by libp2p.
      maxInboundStreams: server.caps.maxStreamsPerPeer,
      maxOutboundStreams: server.caps.maxStreamsPerPeer
    })
  } catch (err) {
    servers.delete(libp2p)
    throw err
  }
  return server
}

/** The DAG server running on `helia`'s libp2p node, if any. */
export function dagServerOf (helia: Helia): DagServer | undefined {
  const libp2p = libp2pOf(helia)
  return libp2p === undefined ? undefined : servers.get(libp2p)
}

/** Blocks up to this size are kept in a server's memory cache. */
const SMALL_BLOCK_BYTES = 64 * 1024
/** Total size of a server's memory cache of small blocks. @default 16 MiB, as a hub's */
const SMALL_BLOCK_CACHE_BYTES = 16 * 1024 * 1024

/** One node's DAG_PROTOCOL handler, its limits and its cache of recently stored or served small blocks. */
export class DagServer {
  readonly caps: Required<DagServerOptions>
  private active = 0
  private readonly perPeer = new Map<string, number>()
  /** Small blocks by CID bytes, newest last, at most SMALL_BLOCK_CACHE_BYTES together. */
  private readonly cache = new Map<string, Uint8Array>()
  private cacheBytes = 0

  constructor (private readonly helia: Helia, options: DagServerOptions) {
    this.caps = {
      maxBlocks: options.maxBlocks ?? DEFAULT_DAG_SERVE_MAX_BLOCKS,
      maxBytes: options.maxBytes ?? DEFAULT_DAG_SERVE_MAX_BYTES,
      maxLinks: options.maxLinks ?? DEFAULT_DAG_SERVE_MAX_LINKS,
      maxStreams: options.maxStreams ?? DEFAULT_DAG_SERVE_MAX_STREAMS,
      maxStreamsPerPeer: options.maxStreamsPerPeer ?? DEFAULT_DAG_SERVE_MAX_STREAMS_PER_PEER,
      timeoutMs: options.timeoutMs ?? DEFAULT_DAG_SERVE_TIMEOUT_MS,
      requestTimeoutMs: options.requestTimeoutMs ?? DAG_REQUEST_TIMEOUT_MS
    }
  }

  /**
   * Keeps verified blocks the node has just stored (a version it published) in memory, so that the
   * first peer to open that version is answered without a file read per block.
   */
  remember (blocks: Block[]): void {
    for (const block of blocks) this.cacheBlock(cidKey(block.cid), block.bytes)
  }

  private cacheBlock (key: string, bytes: Uint8Array): void {
    if (bytes.byteLength > SMALL_BLOCK_BYTES) return
    const held = this.cache.get(key)
    if (held !== undefined) {
      this.cache.delete(key)
      this.cache.set(key, held)
      return
    }
    this.cache.set(key, bytes)
    this.cacheBytes += bytes.byteLength
    for (const [old, oldBytes] of this.cache) {
      if (this.cacheBytes <= SMALL_BLOCK_CACHE_BYTES) break
      this.cache.delete(old)
      this.cacheBytes -= oldBytes.byteLength
    }
  }

  /** A block this node holds (the cache, else its blockstore, never the network), within MAX_BLOCK_BYTES. */
  async read (cid: CID, signal: AbortSignal): Promise<Uint8Array> {
    refuseUnheld(cid)
    const key = cidKey(cid)
    const cached = this.cache.get(key)
    if (cached !== undefined) return cached
    const parts: Uint8Array[] = []
    let length = 0
    for await (const chunk of this.helia.blockstore.get(cid, { offline: true, signal })) {
      length += chunk.byteLength
      if (length > MAX_BLOCK_BYTES) throw new TooLargeError(`block ${cidLabel(cid)} is over the ${MAX_BLOCK_BYTES}-byte limit`)
      parts.push(chunk)
    }
    const bytes = parts.length === 1 ? parts[0] as Uint8Array : concat(parts)
    this.cacheBlock(key, bytes)
    return bytes
  }

  handle (stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(this.caps.timeoutMs)
    const onAbort = (): void => { stream.abort(new Error('the answer took too long')) }
    signal.addEventListener('abort', onAbort, { once: true })
    const run = async (): Promise<void> => {
      const path = await readRequest(stream, AbortSignal.any([signal, AbortSignal.timeout(this.caps.requestTimeoutMs)]))
      if (path === undefined) return
      // Counted from here on, so that a peer that sends no request holds no slot beyond its stream.
      if (this.active >= this.caps.maxStreams) { await answer(stream, 503, 'busy', signal); return }
      if ((this.perPeer.get(peer) ?? 0) >= this.caps.maxStreamsPerPeer) { await answer(stream, 429, 'too many answers to this peer at once', signal); return }
      this.active++
      this.perPeer.set(peer, (this.perPeer.get(peer) ?? 0) + 1)
      try {
        let request: DagRequest
        try {
          request = parseDagRequest(path)
        } catch (err) {
          await answer(stream, 400, (err as Error).message, signal)
          return
        }
        await sendDag(this, stream, request, this.caps, signal)
      } finally {
        this.active--
        const left = (this.perPeer.get(peer) ?? 1) - 1
        if (left === 0) this.perPeer.delete(peer)
        else this.perPeer.set(peer, left)
      }
    }
    run().catch((err: unknown) => {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }).finally(() => { signal.removeEventListener('abort', onAbort) })
  }
}

/** Reads the length-prefixed request path, or undefined (stream aborted) when it is malformed or late. */
async function readRequest (stream: Stream, signal: AbortSignal): Promise<string | undefined> {
  const onAbort = (): void => { stream.abort(new Error('no request in time')) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    let buffer = new Uint8Array(0)
    for await (const chunk of stream) {
      const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
      const joined = new Uint8Array(buffer.byteLength + bytes.byteLength)
      joined.set(buffer)
      joined.set(bytes, buffer.byteLength)
      buffer = joined
      if (buffer.byteLength > MAX_DAG_REQUEST_BYTES + 2) break
      const length = varintAt(buffer)
      if (length === undefined) continue
      if (length.value > MAX_DAG_REQUEST_BYTES) break
      if (buffer.byteLength >= length.size + length.value) {
        return new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(length.size, length.size + length.value))
      }
    }
  } catch {
    // malformed UTF-8, a reset, or the deadline: no answer
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
  stream.abort(new Error('bad request'))
  return undefined
}

/** A varint at the start of `bytes`, or undefined when it is not complete yet (or over 4 bytes: too big anyway). */
function varintAt (bytes: Uint8Array): { value: number, size: number } | undefined {
  for (let i = 0; i < Math.min(bytes.byteLength, 4); i++) {
    if (((bytes[i] as number) & 0x80) === 0) {
      const value = decodeVarint(bytes)
      return { value, size: encodingLength(value) }
    }
  }
  return bytes.byteLength >= 4 ? { value: Number.MAX_SAFE_INTEGER, size: 4 } : undefined
}

/** An answer without a CAR: the status and a short message, then the end of the stream. */
async function answer (stream: Stream, status: number, message: string, signal: AbortSignal): Promise<void> {
  const text = new TextEncoder().encode(message).subarray(0, MAX_DAG_MESSAGE_BYTES)
  stream.send(concat([encodeVarint(status), text]))
  await stream.close({ signal })
}

/**
 * Streams the CAR of `request` from the node's own blockstore, breadth first, each block once, read
 * a few blocks ahead. A missing block or a cap reached before the first byte is a 404 or 413; past
 * it, the stream is reset (the reader must not take a cut answer for a whole one).
 */
async function sendDag (server: DagServer, stream: Stream, request: DagRequest, caps: { maxBlocks: number, maxBytes: number, maxLinks: number }, signal: AbortSignal): Promise<void> {
  const read = async (cid: CID): Promise<Uint8Array> => await server.read(cid, signal)
  let rootBytes: Uint8Array
  let start: CID[]
  try {
    rootBytes = await read(request.cid)
    start = linksAt(request.cid, rootBytes, request.segments)
  } catch (err) {
    await answer(stream, (err as { name?: unknown }).name === 'TooLargeError' ? 413 : 404, `${request.cid.toString()}: ${(err as Error).message}`, signal)
    return
  }
  let links = start.length
  if (links > caps.maxLinks) { await answer(stream, 413, `over ${caps.maxLinks} links`, signal); return }

  let batch: Uint8Array[] = [encodeVarint(200), encodeCar([], [request.cid])]
  let batchBytes = 0
  let sentAny = false
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return
    sentAny = true
    const bytes = concat(batch)
    batch = []
    batchBytes = 0
    if (!stream.send(bytes)) await stream.onDrain({ signal })
  }
  const frame = (cid: CID, bytes: Uint8Array): void => {
    batch.push(encodeVarint(cid.bytes.byteLength + bytes.byteLength), cid.bytes, bytes)
    batchBytes += bytes.byteLength + cid.bytes.byteLength + 8
  }

  try {
    await streamBlocks()
  } catch (err) {
    // A cap or a missing block found before the first byte went out is a plain answer; after it, a reset.
    const name = (err as { name?: unknown }).name
    if (sentAny || (name !== 'TooLargeError' && !isMissing(err))) throw err
    await answer(stream, name === 'TooLargeError' ? 413 : 404, `${request.cid.toString()}: ${(err as Error).message}`, signal)
    return
  }
  await stream.close({ signal })

  async function streamBlocks (): Promise<void> {
    frame(request.cid, rootBytes)
    let sentBytes = rootBytes.byteLength
    const seen = new Set<string>([cidKey(request.cid)])
    const queue: CID[] = []
    const enqueue = (found: CID[]): void => {
      for (const link of found) {
        const key = cidKey(link)
        if (seen.has(key)) continue
        seen.add(key)
        queue.push(link)
      }
      if (seen.size > caps.maxBlocks) throw new TooLargeError(`over ${caps.maxBlocks} blocks`)
    }
    enqueue(start)
    // Read-ahead: block i is sent while blocks i+1… are being read. Each read is settled or failed on
    // its own; its failure is seen when its turn comes.
    const reads = new Map<number, { promise: Promise<Uint8Array>, done: boolean }>()
    let started = 0
    let aheadBytes = 0
    let largest = 0
    const startReads = (from: number): void => {
      const window = largest > 64 * 1024 ? 1 : READ_AHEAD_BLOCKS
      while (started < queue.length && started < from + window && aheadBytes < READ_AHEAD_BYTES) {
        const entry = { promise: read(queue[started] as CID), done: false }
        entry.promise.then((bytes) => { entry.done = true; aheadBytes += bytes.byteLength }, () => { entry.done = true })
        reads.set(started++, entry)
      }
    }
    for (let i = 0; i < queue.length; i++) {
      startReads(i)
      const entry = reads.get(i) as { promise: Promise<Uint8Array>, done: boolean }
      // Nothing ready to send behind it: what is gathered goes out before the wait.
      if (!entry.done && batchBytes > 0) await flush()
      const bytes = await entry.promise
      reads.delete(i)
      aheadBytes -= bytes.byteLength
      largest = Math.max(largest, bytes.byteLength)
      const cid = queue[i] as CID
      sentBytes += bytes.byteLength
      if (sentBytes > caps.maxBytes) throw new TooLargeError(`over ${caps.maxBytes} bytes`)
      if (cid.code === dagCbor.code) {
        const found = linksAt(cid, bytes, [])
        links += found.length
        if (links > caps.maxLinks) throw new TooLargeError(`over ${caps.maxLinks} links`)
        enqueue(found)
      }
      frame(cid, bytes)
      if (batchBytes >= SEND_BATCH_BYTES) await flush()
    }
    await flush()
  }
}

/** True for a blockstore's "no such block" (a plain one's, or helia's offline miss). */
function isMissing (err: unknown): boolean {
  const name = (err as { name?: unknown })?.name
  return name === 'NotFoundError' || name === 'BlockNotFoundWhileOfflineError'
}

export interface FetchDagOptions {
  signal: AbortSignal
  /** Most blocks accepted. */
  maxBlocks: number
  /** Most bytes of CAR accepted. */
  maxBytes: number
}

/** The error for an answer other than 200, by status: 404 NotFoundError, 413 TooLargeError, 429 RateLimitError, 503 UnavailableError, else StoreError. */
function refusal (status: number, message: string): Error {
  switch (status) {
    case 404: return new NotFoundError(message)
    case 413: return new TooLargeError(message)
    case 429: return new RateLimitError(message)
    case 503: return new UnavailableError(message)
    default: return new StoreError(message)
  }
}

/**
 * Asks `peer` for the DAG under `cid` and `path` (see the module doc) and returns its blocks, each
 * checked against its CID. Throws TooLargeError past
 * the caps, IntegrityError for a bad block or an answer without the root, the error of the status for a
 * refusal (see `refusal`), and whatever libp2p throws
 * when the peer cannot be reached, does not speak the protocol or resets the stream.
 */
export async function fetchDag (libp2p: Libp2pLike, peer: PeerId, cid: CID, path: string | undefined, options: FetchDagOptions): Promise<Block[]> {
  const { signal } = options
  // libp2p hangs a listener per step of the dial on this signal.
  setMaxListeners(Infinity, signal)
  const stream = await libp2p.dialProtocol(peer, DAG_PROTOCOL, { signal })
  const onAbort = (): void => { stream.abort(new Error('the request was aborted')) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    const request = new TextEncoder().encode(dagRequestPath(cid, path))
    stream.send(concat([encodeVarint(request.byteLength), request]))
    await stream.close({ signal })
    // The body, capped, with the status varint taken off the front.
    let status: number | undefined
    let received = 0
    let messageBytes: Uint8Array = new Uint8Array(0)
    const source = stream[Symbol.asyncIterator]()
    let head: Uint8Array = new Uint8Array(0)
    while (status === undefined) {
      const next = await source.next()
      if (next.done === true) throw new StoreError(`${peer.toString()} closed the stream before answering`)
      const chunk = next.value instanceof Uint8Array ? next.value : next.value.subarray()
      received += chunk.byteLength
      head = concat([head, chunk])
      const length = varintAt(head)
      if (length === undefined) continue
      status = length.value
      head = head.subarray(length.size)
    }
    if (status !== 200) {
      messageBytes = head
      for (let next = await source.next(); next.done !== true && messageBytes.byteLength < MAX_DAG_MESSAGE_BYTES; next = await source.next()) {
        messageBytes = concat([messageBytes, next.value instanceof Uint8Array ? next.value : next.value.subarray()])
      }
      const message = new TextDecoder().decode(messageBytes.subarray(0, MAX_DAG_MESSAGE_BYTES))
      throw refusal(status, `${peer.toString()} answered ${status}: ${message}`)
    }
    const first = head
    const body = async function * (): AsyncGenerator<Uint8Array> {
      if (received > options.maxBytes) throw new TooLargeError(`the answer from ${peer.toString()} is over ${options.maxBytes} bytes`)
      if (first.byteLength > 0) yield first
      for (let next = await source.next(); next.done !== true; next = await source.next()) {
        // A copy: the blocks read from it are views of it, kept after the stream has moved on, and
        // the stream's own buffers may be reused under them.
        const chunk = next.value.slice()
        received += chunk.byteLength
        if (received > options.maxBytes) throw new TooLargeError(`the answer from ${peer.toString()} is over ${options.maxBytes} bytes`)
        yield chunk
      }
    }
    const blocks: Block[] = []
    const seen = new Set<string>()
    let count = 0
    let hasRoot = false
    await readCar(body(), {
      maxBlockBytes: MAX_BLOCK_BYTES,
      onRoots: (roots) => {
        if (roots.length !== 1 || !(roots[0] as CID).equals(cid)) throw new IntegrityError(`${peer.toString()} answered with another root than ${cid.toString()}`)
      }
    }, (block) => {
      if (++count > options.maxBlocks) throw new TooLargeError(`the answer from ${peer.toString()} holds over ${options.maxBlocks} blocks`)
      hasRoot ||= block.cid.equals(cid)
      // A repeat is counted (above) but kept once.
      const key = cidKey(block.cid)
      if (seen.has(key)) return
      seen.add(key)
      blocks.push(block)
    })
    if (!hasRoot) throw new IntegrityError(`the answer from ${peer.toString()} lacks the block ${cid.toString()}`)
    return blocks
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    if (signal.aborted) throw new AbortedError(`the request to ${peer.toString()} was aborted`, { cause: err })
    throw err
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/**
 * Connected peers to ask, at most `limit`: those identify says speak DAG_PROTOCOL first, then those
 * not identified yet; peers known not to speak it are left out.
 */
export async function dagPeers (libp2p: Libp2pLike, limit: number): Promise<PeerId[]> {
  const known: PeerId[] = []
  const unknown: PeerId[] = []
  const seen = new Set<string>()
  for (const connection of libp2p.getConnections()) {
    if (connection.status !== 'open') continue
    const id = connection.remotePeer
    if (seen.has(id.toString())) continue
    seen.add(id.toString())
    const protocols = (await libp2p.peerStore.get(id).catch(() => undefined))?.protocols ?? []
    if (protocols.includes(DAG_PROTOCOL)) known.push(id)
    else if (protocols.length === 0) unknown.push(id)
  }
  return [...known, ...unknown].slice(0, limit)
}

function concat (parts: Uint8Array[]): Uint8Array {
  let length = 0
  for (const part of parts) length += part.byteLength
  const out = new Uint8Array(length)
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.byteLength
  }
  return out
}

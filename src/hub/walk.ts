/**
 * The DAG walk of the per-name quota and garbage collection (gateway CARs walk depth first, in
 * car-plan.ts, with the link scanner below): breadth first over an array with a read index (no
 * `shift()`), each link marked when it is queued
 * (so a block that repeats one link 24 000 times queues it once), and stopped at per-walk caps on
 * links examined, blocks visited and bytes summed. Only dag-cbor blocks are read for their links;
 * other blocks are leaves whose size is asked for.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'

/** Caps of one walk. */
export interface WalkCaps {
  /** Links examined, repeated ones included. */
  maxLinks: number
  /** Distinct blocks visited. */
  maxBlocks: number
  /** Bytes of the blocks visited. */
  maxBytes: number
}

export interface WalkIo {
  /** The bytes of a dag-cbor block, or undefined when the hub cannot get it. */
  read(cid: CID): Promise<Uint8Array | undefined>
  /** The size of a leaf block, or undefined when the hub does not have it. */
  size(cid: CID): Promise<number | undefined>
}

export interface Walked {
  /** Blocks the hub has, in walk order (the roots first). */
  cids: CID[]
  /** Their sizes, index for index. */
  sizes: number[]
  bytes: number
  /** Which cap stopped the walk, when one did. */
  over?: 'links' | 'blocks' | 'bytes'
}

/**
 * CPU a walk spends before it lets other requests in (a turn of the event loop), so a long walk
 * never starves them. Measured in time, not blocks: a turn every 16 blocks cost a walk of 5 500
 * blocks from memory more than it spent walking (52 ms against 21 ms with no turns).
 */
export const YIELD_AFTER_MS = 4

/** Lets other requests in once the current slice has run YIELD_AFTER_MS (a turn of the event loop). */
export class Slices {
  private started = performance.now()

  async next (): Promise<void> {
    if (performance.now() - this.started < YIELD_AFTER_MS) return
    await new Promise<void>((resolve) => { setImmediate(resolve) })
    this.started = performance.now()
  }
}
/** A dag-cbor block larger than this is followed by a turn of the event loop. */
const YIELD_AFTER_BYTES = 64 * 1024

/**
 * Walks the DAG under `roots`. `follow: false` visits the roots only. On a cap, stops and says
 * which in `over` (the blocks visited so far are returned).
 */
export async function walkDag (roots: CID[], io: WalkIo, caps: WalkCaps, follow = true): Promise<Walked> {
  // CID bytes, decoded to a CID only when visited: a block may link 24 000 distinct CIDs.
  const queue: Array<Uint8Array | undefined> = []
  const marked = new Set<string>()
  const out: Walked = { cids: [], sizes: [], bytes: 0 }
  let links = 0
  const enqueue = (block: Uint8Array, start: number, end: number): boolean => {
    if (++links > caps.maxLinks) return false
    const key = keyOfBytes(block, start, end)
    if (marked.has(key)) return true
    marked.add(key)
    queue.push(block.subarray(start, end))
    return true
  }
  for (const root of roots) {
    if (!enqueue(root.bytes, 0, root.bytes.byteLength)) { out.over = 'links'; return out }
  }
  const slices = new Slices()
  for (let i = 0; i < queue.length; i++) {
    const cidBytes = queue[i] as Uint8Array
    queue[i] = undefined // the walk only moves forward: let the queue's entries go
    if (out.cids.length >= caps.maxBlocks) { out.over = 'blocks'; break }
    await slices.next()
    let cid: CID
    try {
      cid = CID.decode(cidBytes)
    } catch {
      continue // not a CID: nothing to visit
    }
    let size: number | undefined
    let bytes: Uint8Array | undefined
    if (cid.code === dagCbor.code && follow) {
      bytes = await io.read(cid)
      size = bytes?.byteLength
    } else {
      size = await io.size(cid)
    }
    if (size === undefined) continue
    if (out.bytes + size > caps.maxBytes) { out.bytes += size; out.over = 'bytes'; break }
    out.cids.push(cid)
    out.sizes.push(size)
    out.bytes += size
    if (bytes !== undefined) {
      const block = bytes
      if (!forEachLink(block, (start, end) => enqueue(block, start, end))) { out.over = 'links'; break }
      // A big block's scan is one slice of CPU: let other requests in before the next.
      if (block.byteLength > YIELD_AFTER_BYTES) await new Promise<void>((resolve) => { setImmediate(resolve) })
    }
  }
  return out
}

/**
 * Calls `take(start, end)` with the position in `bytes` of every CID linked from a dag-cbor block
 * (CBOR tag 42 over a byte string; the range leaves out its leading 0x00), stopping when `take`
 * returns false; returns false when stopped. It scans the CBOR without building its value:
 * `dagCbor.decode` builds a CID object per link, which for a 1 MiB block of 24 000 links held the
 * event loop for over half a second; this allocates nothing per item. A block that is not
 * well-formed CBOR has no links.
 */
export function forEachLink (bytes: Uint8Array, take: (start: number, end: number) => boolean): boolean {
  const found: number[] = [] // start, end pairs, handed to `take` once the whole block scanned well
  const stack: number[] = []
  const length = bytes.length
  let pos = 0
  let pending = 1 // items still to read at this level
  let linkNext = false
  while (pending > 0 || stack.length > 0) {
    if (pending === 0) { pending = stack.pop() as number; continue }
    pending--
    if (pos >= length) return true
    const first = bytes[pos++] as number
    const major = first >> 5
    const info = first & 0x1f
    let value = info
    if (info >= 24) {
      const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0
      if (size === 0 || pos + size > length) return true
      value = 0
      for (let i = 0; i < size; i++) value = value * 256 + (bytes[pos++] as number)
    }
    const wasLink = linkNext
    linkNext = false
    if (major === 2 || major === 3) {
      if (pos + value > length) return true
      if (wasLink && major === 2 && value > 1 && bytes[pos] === 0) found.push(pos + 1, pos + value)
      pos += value
    } else if (major === 4 || major === 5) {
      const items = major === 4 ? value : value * 2
      if (items > length - pos) return true
      stack.push(pending)
      pending = items
    } else if (major === 6) {
      linkNext = value === 42
      pending++
    }
    // Majors 0, 1 and 7 (integers, simple values, floats) are complete with their head.
  }
  if (pos !== length) return true
  for (let i = 0; i < found.length; i += 2) if (!take(found[i] as number, found[i + 1] as number)) return false
  return true
}

/** A cheap map key for a CID's bytes (no base encoding). */
function keyOfBytes (bytes: Uint8Array, start = 0, end = bytes.byteLength): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1', start, end)
}

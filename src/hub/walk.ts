/**
 * The one DAG walk every hub feature uses (gateway CARs, the per-name quota, garbage collection):
 * breadth first over an array with a read index (no `shift()`), each link marked when it is queued
 * (so a block that repeats one link 24 000 times queues it once), and stopped at per-walk caps on
 * links examined, blocks visited and bytes summed. Only dag-cbor blocks are read for their links;
 * other blocks are leaves whose size is asked for.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { TooLargeError } from '../errors.js'

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

/** Blocks visited between two turns of the event loop, so a long walk never starves other requests. */
const YIELD_EVERY_BLOCKS = 16

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
  const enqueue = (cidBytes: Uint8Array): boolean => {
    if (++links > caps.maxLinks) return false
    const key = keyOfBytes(cidBytes)
    if (marked.has(key)) return true
    marked.add(key)
    queue.push(cidBytes)
    return true
  }
  for (const root of roots) {
    if (!enqueue(root.bytes)) { out.over = 'links'; return out }
  }
  for (let i = 0; i < queue.length; i++) {
    const cidBytes = queue[i] as Uint8Array
    queue[i] = undefined // the walk only moves forward: let the queue's entries go
    if (out.cids.length >= caps.maxBlocks) { out.over = 'blocks'; break }
    if (i > 0 && i % YIELD_EVERY_BLOCKS === 0) await new Promise<void>((resolve) => { setImmediate(resolve) })
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
    if (bytes !== undefined && !forEachLink(bytes, enqueue)) { out.over = 'links'; break }
  }
  return out
}

/** Like walkDag, but a cap is a TooLargeError (413) naming it. */
export async function walkDagOrRefuse (roots: CID[], io: WalkIo, caps: WalkCaps, what: string, follow = true): Promise<Walked> {
  const walked = await walkDag(roots, io, caps, follow)
  if (walked.over === 'links') throw new TooLargeError(`${what} has over ${caps.maxLinks} links; the hub walks no more per request`)
  if (walked.over === 'blocks') throw new TooLargeError(`${what} has over ${caps.maxBlocks} blocks; the hub walks no more per request`)
  if (walked.over === 'bytes') throw new TooLargeError(`${what} is over the ${caps.maxBytes}-byte limit`)
  return walked
}

/**
 * Calls `take` with the bytes of every CID linked from a dag-cbor block (CBOR tag 42), stopping when
 * it returns false; returns false when stopped. It scans the CBOR without building its value:
 * `dagCbor.decode` builds a CID object per link, which for a 1 MiB block of 24 000 links held the
 * event loop for over half a second. A block that is not well-formed CBOR has no links.
 */
export function forEachLink (bytes: Uint8Array, take: (cidBytes: Uint8Array) => boolean): boolean {
  const found: Uint8Array[] = []
  let pos = 0
  let pending = 1 // items still to read at the top level
  const stack: number[] = []
  let linkNext = false
  const head = (): { major: number, value: number } | undefined => {
    if (pos >= bytes.length) return undefined
    const first = bytes[pos++] as number
    const major = first >> 5
    const info = first & 0x1f
    if (info < 24) return { major, value: info }
    const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0
    if (size === 0 || pos + size > bytes.length) return undefined
    let value = 0
    for (let i = 0; i < size; i++) value = value * 256 + (bytes[pos++] as number)
    return { major, value }
  }
  while (pending > 0 || stack.length > 0) {
    if (pending === 0) { pending = stack.pop() as number; continue }
    pending--
    const h = head()
    if (h === undefined) return true
    const wasLink = linkNext
    linkNext = false
    switch (h.major) {
      case 0: case 1: case 7:
        // Floats carry their bytes in the head's value; simple values and integers are done.
        break
      case 2: case 3:
        if (pos + h.value > bytes.length) return true
        // A CID is tag 42 over a byte string with a leading 0x00 (the identity multibase).
        if (wasLink && h.major === 2 && h.value > 1 && bytes[pos] === 0) found.push(bytes.subarray(pos + 1, pos + h.value))
        pos += h.value
        break
      case 4: case 5: {
        const items = h.major === 4 ? h.value : h.value * 2
        if (items > bytes.length - pos) return true
        stack.push(pending)
        pending = items
        break
      }
      case 6:
        linkNext = h.value === 42
        pending++
        break
    }
  }
  if (pos !== bytes.length) return true
  for (const cid of found) if (!take(cid)) return false
  return true
}

/** A cheap map key for a CID's bytes (no base encoding). */
function keyOfBytes (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}

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
  const queue: CID[] = []
  const marked = new Set<string>()
  const out: Walked = { cids: [], sizes: [], bytes: 0 }
  let links = 0
  const enqueue = (cid: CID): boolean => {
    if (++links > caps.maxLinks) return false
    const key = keyOf(cid)
    if (marked.has(key)) return true
    marked.add(key)
    queue.push(cid)
    return true
  }
  for (const root of roots) {
    if (!enqueue(root)) { out.over = 'links'; return out }
  }
  for (let i = 0; i < queue.length; i++) {
    const cid = queue[i] as CID
    queue[i] = undefined as unknown as CID // the walk only moves forward: let the queue's CIDs go
    if (out.cids.length >= caps.maxBlocks) { out.over = 'blocks'; break }
    if (i > 0 && i % YIELD_EVERY_BLOCKS === 0) await new Promise<void>((resolve) => { setImmediate(resolve) })
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
 * Calls `take` with every CID linked from a dag-cbor block, stopping when it returns false.
 * Returns false when stopped. A block that does not decode has no links.
 */
export function forEachLink (bytes: Uint8Array, take: (cid: CID) => boolean): boolean {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch {
    return true
  }
  let going = true
  const visit = (node: unknown, depth: number): void => {
    if (!going || depth > 64 || node === null || typeof node !== 'object') return
    const cid = CID.asCID(node)
    if (cid !== null) { going = take(cid); return }
    if (node instanceof Uint8Array) return
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      visit(child, depth + 1)
      if (!going) return
    }
  }
  visit(value, 0)
  return going
}

/** A cheap map key for a CID: its bytes as a latin1 string (no base encoding). */
function keyOf (cid: CID): string {
  return Buffer.from(cid.bytes.buffer, cid.bytes.byteOffset, cid.bytes.byteLength).toString('latin1')
}

/**
 * What a trustless gateway CAR holds, worked out before its first byte: the blocks that resolve a
 * content path (`/ipfs/{cid}/a/b`), then the blocks `dag-scope` asks for at its end, in depth-first
 * order, with or without duplicates, never identity CIDs (ipfs/specs, trustless gateway). Any block
 * the hub cannot get is an error here (404, or 412 under only-if-cached), so a CAR is never served
 * incomplete under a strong ETag. Every walk is capped in links examined, blocks sent and bytes.
 *
 * Path segments name map keys and list indexes inside dag-cbor, dag-json and json blocks (IPLD data
 * model pathing), and link names inside dag-pb (plain UnixFS directories; HAMT-sharded ones are not
 * walked). dag-cbor blocks are read with a cursor over their bytes: no object is built per item.
 */
import * as dagCbor from '@ipld/dag-cbor'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import { NotFoundError, TooLargeError } from '../errors.js'
import { cidAt } from '../store/blocks.js'
import { Slices, forEachLink } from './walk.js'
import type { CarOptions } from './params.js'
import type { WalkCaps } from './walk.js'

const DAG_JSON = 0x0129
const JSON_CODE = 0x0200
const RAW_CODE = 0x55

/** A linking block larger than this is followed by a turn of the event loop. */
const YIELD_AFTER_BYTES = 64 * 1024

export interface PlanIo {
  /** A block's bytes, or undefined when the hub cannot get it. */
  read(cid: CID): Promise<Uint8Array | undefined>
  /** A leaf block's size, or undefined when the hub cannot get it. */
  size(cid: CID): Promise<number | undefined>
  /** The error for a block the hub cannot get (NotFoundError, or PreconditionFailedError offline). */
  missing(cid: CID, role: string): Error
}

export interface CarPlan {
  /** Blocks to send, in order (repeats when dups=y); identity CIDs left out. */
  cids: CID[]
  sizes: number[]
  bytes: number
  /** The CIDs the path resolved through: the root, then each block a segment led to. */
  roots: CID[]
}

/** A position inside a block: a whole block, or one value inside it ([start, end) of its bytes). */
interface Position { cid: CID, bytes: Uint8Array, start: number, end: number, json?: unknown }

/** Plans the CAR for `root` + `segments` with `options` within `caps`; `what` names it in refusals. */
export async function planCar (root: CID, segments: string[], options: CarOptions, io: PlanIo, caps: WalkCaps, what: string): Promise<CarPlan> {
  const plan: CarPlan = { cids: [], sizes: [], bytes: 0, roots: [root] }
  const seen = new Set<string>()
  let links = 0
  const emit = (cid: CID, size: number): void => {
    if (cid.multihash.code === identity.code) return
    if (options.dups === 'n') {
      const key = keyOf(cid.bytes)
      if (seen.has(key)) return
      seen.add(key)
    }
    if (plan.cids.length >= caps.maxBlocks) throw new TooLargeError(`${what} has over ${caps.maxBlocks} blocks; the hub sends no more per request`)
    if (plan.bytes + size > caps.maxBytes) throw new TooLargeError(`${what} is over the ${caps.maxBytes}-byte limit`)
    plan.cids.push(cid)
    plan.sizes.push(size)
    plan.bytes += size
  }
  const countLinks = (n: number): void => {
    links += n
    if (links > caps.maxLinks) throw new TooLargeError(`${what} has over ${caps.maxLinks} links; the hub walks no more per request`)
  }
  const load = async (cid: CID, role: string): Promise<Uint8Array> => {
    const bytes = await readAny(cid, io)
    if (bytes === undefined) throw io.missing(cid, role)
    return bytes
  }

  // Path: every block a segment passes through is sent first.
  let at: Position = await whole(root, await load(root, 'the root block'))
  emit(root, at.bytes.byteLength)
  let endsOnLink = false
  for (const [i, segment] of segments.entries()) {
    const next = step(at, segment)
    if (next === undefined) throw new NotFoundError(`${what}: "${segments.slice(0, i + 1).join('/')}" does not exist`)
    endsOnLink = next instanceof CID
    if (next instanceof CID) {
      at = await whole(next, await load(next, `the block at "${segments.slice(0, i + 1).join('/')}"`))
      plan.roots.push(next)
      // The block a path ends at is the scope's first block, sent below.
      if (i < segments.length - 1) emit(next, at.bytes.byteLength)
    } else {
      at = next
    }
  }

  // Scope at the end of the path: a whole block (the root, or one a link led to) or a value inside
  // a block already sent (then only dag-scope=all adds anything: the DAG its links lead to).
  if (segments.length > 0 && !endsOnLink) {
    if (options.scope !== 'all') return plan
  } else {
    if (segments.length > 0) emit(at.cid, at.bytes.byteLength)
    if (options.scope === 'block' || (options.scope === 'entity' && !isUnixfsFile(at))) return plan
  }
  const start = linksIn(at, countLinks)

  // Depth first, children in link order: a stack of CID bytes with each block's links pushed in
  // reverse. A CID is decoded only when popped and not yet sent: a block repeating one link 24 000
  // times then costs one decode, not 24 000 (which held the event loop for a tenth of a second).
  const stack: Uint8Array[] = [...start].reverse()
  // With dups=n a block already planned is skipped when popped: nothing is read ahead for it either.
  const ahead = new LookAhead(io, options.dups === 'n' ? entry => seen.has(keyOf(entry)) : () => false)
  const slices = new Slices()
  while (stack.length > 0) {
    ahead.prime(stack)
    const cidBytes = stack.pop() as Uint8Array
    if (options.dups === 'n' && seen.has(keyOf(cidBytes))) { ahead.take(cidBytes); continue }
    const started = ahead.take(cidBytes)
    let cid: CID
    if (started !== undefined) {
      cid = started.cid
    } else {
      try { cid = exactCid(cidBytes) } catch { continue }
    }
    await slices.next()
    const early = started?.read
    if (hasLinks(cid.code)) {
      const bytes = (early !== undefined ? await early as Uint8Array | undefined : undefined) ?? await load(cid, 'block')
      emit(cid, bytes.byteLength)
      const children = linksIn(await whole(cid, bytes), countLinks)
      for (let i = children.length - 1; i >= 0; i--) stack.push(children[i] as Uint8Array)
      // A big block's scan was one slice of CPU: let other requests in before the next.
      if (bytes.byteLength > YIELD_AFTER_BYTES) await new Promise<void>((resolve) => { setImmediate(resolve) })
    } else {
      const size = cid.multihash.code === identity.code ? 0 : (early !== undefined ? await early as number | undefined : undefined) ?? await io.size(cid)
      if (size === undefined) throw io.missing(cid, 'block')
      emit(cid, size)
    }
  }
  return plan
}

/** Reads (blocks that link) and sizes (leaves) started ahead of the walk, at most this many at once. */
const LOOK_AHEAD = 16

/**
 * Starts the reads the walk will need next: the top entries of its stack, in the order it will pop
 * them, at most LOOK_AHEAD in flight. One read after another left the disk idle between them: a
 * version of 100 000 keys is ~5 500 blocks, each a file on the hub. A read started for a block the
 * walk then skips (a duplicate) is dropped; nothing started is ever more than LOOK_AHEAD blocks.
 */
class LookAhead {
  /** Keyed by the stack entry itself (a view into its parent block), not by CID: no key is built per scan. */
  private readonly started = new Map<Uint8Array, { cid: CID, read: Promise<Uint8Array | number | undefined> }>()
  /** Entries found skippable (once planned, a block stays planned): not judged again on each scan. */
  private readonly skipped = new WeakSet<Uint8Array>()

  constructor (private readonly io: PlanIo, private readonly skip: (entry: Uint8Array) => boolean) {}

  prime (stack: Uint8Array[]): void {
    const low = Math.max(0, stack.length - LOOK_AHEAD)
    for (let i = stack.length - 1; i >= low && this.started.size < LOOK_AHEAD; i--) {
      const entry = stack[i] as Uint8Array
      if (this.started.has(entry) || this.skipped.has(entry)) continue
      if (this.skip(entry)) { this.skipped.add(entry); continue }
      let cid: CID
      try { cid = exactCid(entry) } catch { continue }
      if (cid.multihash.code === identity.code) continue
      // Settled into a value: a walk that stops early (a cap, a missing block) leaves no rejection behind.
      const read = hasLinks(cid.code) ? this.io.read(cid) : this.io.size(cid)
      this.started.set(entry, { cid, read: read.catch(() => undefined) })
    }
  }

  /** The read started for this stack entry, with its decoded CID, if any (undefined from the read: read again, so the error is the walk's own). */
  take (entry: Uint8Array): { cid: CID, read: Promise<Uint8Array | number | undefined> } | undefined {
    const read = this.started.get(entry)
    if (read !== undefined) this.started.delete(entry)
    return read
  }
}

/**
 * The CID that is all of `bytes` (a link's bytes inside its parent block): a view of them where it
 * can be (no fresh array per link), else decoded in full; throws as `CID.decode` does.
 */
function exactCid (bytes: Uint8Array): CID {
  const view = cidAt(bytes, 0)
  return view !== undefined && view.bytes.byteLength === bytes.byteLength ? view : CID.decode(bytes)
}

/** Codecs whose blocks can link to others (the ones the walk reads). */
function hasLinks (code: number): boolean {
  return code === dagCbor.code || code === dagPb.code || code === DAG_JSON
}

async function readAny (cid: CID, io: PlanIo): Promise<Uint8Array | undefined> {
  // An identity CID carries its block in its digest: nothing to fetch, nothing to send.
  if (cid.multihash.code === identity.code) return cid.multihash.digest
  return io.read(cid)
}

async function whole (cid: CID, bytes: Uint8Array): Promise<Position> {
  const at: Position = { cid, bytes, start: 0, end: bytes.byteLength }
  if (cid.code === DAG_JSON || cid.code === JSON_CODE) at.json = parseJson(bytes)
  return at
}

function parseJson (bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    return undefined
  }
}

/**
 * One path segment from `at`: a CID when the segment's value is a link, a narrower position when it
 * is a value inside the same block, undefined when there is no such key or index.
 */
function step (at: Position, segment: string): Position | CID | undefined {
  const code = at.cid.code
  if (code === dagCbor.code) {
    const found = cborChild(at.bytes, at.start, segment)
    if (found === undefined) return undefined
    return cborLink(at.bytes, found.start, found.end) ?? { ...at, start: found.start, end: found.end }
  }
  if (code === DAG_JSON || code === JSON_CODE) {
    const value = at.json
    let child: unknown
    if (Array.isArray(value)) {
      if (!/^(0|[1-9][0-9]*)$/.test(segment)) return undefined
      child = value[Number(segment)]
    } else if (typeof value === 'object' && value !== null && Object.hasOwn(value, segment)) {
      if (code === DAG_JSON && jsonLink(value) !== undefined) return undefined
      child = (value as Record<string, unknown>)[segment]
    }
    if (child === undefined) return undefined
    const link = code === DAG_JSON ? jsonLink(child) : undefined
    if (link !== undefined) return link
    // Same block, narrower value: bytes stay whole, the value is what later steps read.
    return { ...at, start: -1, end: -1, json: child }
  }
  if (code === dagPb.code && at.start === 0) {
    let node
    try { node = dagPb.decode(at.bytes) } catch { return undefined }
    const link = node.Links.find(l => l.Name === segment)
    return link === undefined ? undefined : CID.asCID(link.Hash) ?? undefined
  }
  // raw and unknown codecs have no inner structure to walk.
  return undefined
}

/**
 * The links inside the value at `at` (the whole block, or one value in it), as CID bytes (decoded
 * later, once), counted against the cap.
 */
function linksIn (at: Position, count: (n: number) => void): Uint8Array[] {
  const code = at.cid.code
  const out: Uint8Array[] = []
  if (code === dagCbor.code) {
    const bytes = at.start === 0 && at.end === at.bytes.byteLength ? at.bytes : at.bytes.subarray(at.start, at.end)
    forEachLink(bytes, (s, e) => { count(1); out.push(bytes.subarray(s, e)); return true })
  } else if (code === dagPb.code) {
    if (at.start !== 0) return out
    let node
    try { node = dagPb.decode(at.bytes) } catch { return out }
    count(node.Links.length)
    for (const l of node.Links) { const c = CID.asCID(l.Hash); if (c !== null) out.push(c.bytes) }
  } else if (code === DAG_JSON) {
    const links: CID[] = []
    collectJsonLinks(at.json, links, count, 0)
    for (const c of links) out.push(c.bytes)
  }
  return out
}

/** A dag-json link (`{"/": "<cid>"}`), or undefined. */
function jsonLink (value: unknown): CID | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const keys = Object.keys(value)
  const target = (value as Record<string, unknown>)['/']
  if (keys.length !== 1 || typeof target !== 'string') return undefined
  try { return CID.parse(target) } catch { return undefined }
}

function collectJsonLinks (value: unknown, out: CID[], count: (n: number) => void, depth: number): void {
  if (depth > 256 || typeof value !== 'object' || value === null) return
  const link = jsonLink(value)
  if (link !== undefined) { count(1); out.push(link); return }
  for (const child of Array.isArray(value) ? value : Object.values(value)) collectJsonLinks(child, out, count, depth + 1)
}

/** True for a dag-pb UnixFS file (or raw node): its entity is the whole DAG below it. */
function isUnixfsFile (at: Position): boolean {
  if (at.cid.code === RAW_CODE) return true
  if (at.cid.code !== dagPb.code) return false
  let node
  try { node = dagPb.decode(at.bytes) } catch { return false }
  const data = node.Data
  // UnixFS Data: field 1 (varint) is the type; 0 raw, 2 file.
  if (data === undefined || data.byteLength < 2 || data[0] !== 0x08) return false
  return data[1] === 0 || data[1] === 2
}

// --- A cursor over dag-cbor bytes (strict, definite lengths only, as dag-cbor requires). ---

interface Head { major: number, value: number, next: number }

function head (bytes: Uint8Array, pos: number): Head | undefined {
  if (pos >= bytes.length) return undefined
  const first = bytes[pos] as number
  const major = first >> 5
  const info = first & 0x1f
  let next = pos + 1
  let value = info
  if (info >= 24) {
    const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0
    if (size === 0 || next + size > bytes.length) return undefined
    value = 0
    for (let i = 0; i < size; i++) value = value * 256 + (bytes[next++] as number)
  }
  return { major, value, next }
}

/** The end of the item at `pos`, or undefined when the bytes are not well formed. */
function skip (bytes: Uint8Array, pos: number): number | undefined {
  let pending = 1
  while (pending > 0) {
    pending--
    const h = head(bytes, pos)
    if (h === undefined) return undefined
    pos = h.next
    if (h.major === 2 || h.major === 3) {
      if (pos + h.value > bytes.length) return undefined
      pos += h.value
    } else if (h.major === 4 || h.major === 5) {
      const items = h.major === 4 ? h.value : h.value * 2
      if (items > bytes.length - pos) return undefined
      pending += items
    } else if (h.major === 6) {
      pending++
    }
  }
  return pos
}

/** The [start, end) of the value under map key or list index `segment` in the item at `pos`. */
function cborChild (bytes: Uint8Array, pos: number, segment: string): { start: number, end: number } | undefined {
  const h = head(bytes, pos)
  if (h === undefined) return undefined
  if (h.major === 5) {
    const want = new TextEncoder().encode(segment)
    let p = h.next
    for (let i = 0; i < h.value; i++) {
      const k = head(bytes, p)
      if (k === undefined) return undefined
      const keyEnd = skip(bytes, p)
      if (keyEnd === undefined) return undefined
      const valueEnd = skip(bytes, keyEnd)
      if (valueEnd === undefined) return undefined
      if (k.major === 3 && k.value === want.length && equalAt(bytes, k.next, want)) return { start: keyEnd, end: valueEnd }
      p = valueEnd
    }
    return undefined
  }
  if (h.major === 4) {
    if (!/^(0|[1-9][0-9]{0,9})$/.test(segment)) return undefined
    const index = Number(segment)
    if (index >= h.value) return undefined
    let p = h.next
    for (let i = 0; i < index; i++) {
      const end = skip(bytes, p)
      if (end === undefined) return undefined
      p = end
    }
    const end = skip(bytes, p)
    return end === undefined ? undefined : { start: p, end }
  }
  return undefined
}

/** The CID when the item at [start, end) is a dag-cbor link (tag 42 over 0x00 ‖ CID bytes). */
function cborLink (bytes: Uint8Array, start: number, end: number): CID | undefined {
  const tag = head(bytes, start)
  if (tag === undefined || tag.major !== 6 || tag.value !== 42) return undefined
  const body = head(bytes, tag.next)
  if (body === undefined || body.major !== 2 || body.value < 2 || body.next + body.value !== end || bytes[body.next] !== 0) return undefined
  try { return CID.decode(bytes.subarray(body.next + 1, end)) } catch { return undefined }
}

function equalAt (bytes: Uint8Array, pos: number, want: Uint8Array): boolean {
  for (let i = 0; i < want.length; i++) if (bytes[pos + i] !== want[i]) return false
  return true
}

function keyOf (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}

/**
 * A streaming CARv1 reader for what a reader is sent (a hub's trustless-gateway CAR, a peer's
 * DAG_PROTOCOL answer): frames are cut from the chunks as they arrive, each block is checked against
 * its CID (sha2-256) and handed on at once, with no promise per block where the runtime hashes
 * natively. @ipld/car's async iterator awaits several reads per block: for the 5 463 blocks of a
 * 100 000-key version it took ~50 ms against ~15 ms here (same chunks, same checks).
 *
 * Bounded: a frame longer than a CID plus `maxBlockBytes` is refused as soon as its length prefix
 * is read, before any of it is held; at most one frame is held across chunks. The caller caps the
 * chunks' total and the block count.
 *
 * Blocks are views of the chunks, not copies: a source must hand over chunks it will not write to
 * again (fetch's body does; a libp2p stream's buffers may be reused, so copy those first).
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { IntegrityError, TooLargeError } from '../errors.js'
import { verifyBlock, verifyBlockNow } from './blocks.js'
import type { Block } from './interface.js'

/** Bytes a CID may take in a frame (a CIDv1 with a 64-byte digest is ~70). */
const MAX_CID_BYTES = 128
/** Bytes of a CAR header: a version and a few roots. */
const MAX_HEADER_BYTES = 4096

export interface ReadCarOptions {
  /** Largest block accepted; a larger frame is a TooLargeError. */
  maxBlockBytes: number
  /** Called with the header's roots before any block. */
  onRoots?(roots: CID[]): void
}

/**
 * Reads a CARv1 from `chunks`, calling `onBlock` with every block, in order, once it matches its
 * CID. Returns the header's roots. A malformed CAR is an Error, a block that does not match its CID
 * an IntegrityError, a frame over the limit a TooLargeError; the blocks handed on before it stay
 * the caller's to drop.
 */
export async function readCar (chunks: AsyncIterable<Uint8Array>, options: ReadCarOptions, onBlock: (block: Block) => void): Promise<CID[]> {
  const maxFrame = options.maxBlockBytes + MAX_CID_BYTES
  let roots: CID[] | undefined
  // buf[pos..] is what is left of the chunks read so far; `held` are chunks kept back until the
  // frame they complete has all its bytes (joined once, not once per chunk).
  let buf: Uint8Array = new Uint8Array(0)
  let pos = 0
  const held: Uint8Array[] = []
  let heldBytes = 0
  let need = 0
  for await (const chunk of chunks) {
    if (chunk.byteLength === 0) continue
    if (buf.byteLength - pos + heldBytes + chunk.byteLength < need) {
      held.push(chunk)
      heldBytes += chunk.byteLength
      continue
    }
    buf = pos === buf.byteLength && held.length === 0 ? chunk : join(buf.subarray(pos), held, chunk)
    pos = 0
    held.length = 0
    heldBytes = 0
    need = 0
    for (;;) {
      const prefix = readVarint(buf, pos)
      if (prefix === undefined) { need = buf.byteLength - pos + 1; break }
      const [length, prefixBytes] = prefix
      const limit = roots === undefined ? MAX_HEADER_BYTES : maxFrame
      if (length > limit) {
        throw roots === undefined
          ? new Error(`CAR header of ${length} bytes`)
          : new TooLargeError(`a CAR frame of ${length} bytes is over the ${options.maxBlockBytes}-byte block limit`)
      }
      const start = pos + prefixBytes
      const end = start + length
      if (end > buf.byteLength) { need = end - pos; break }
      const frame = buf.subarray(start, end)
      pos = end
      if (roots === undefined) {
        roots = readHeader(frame)
        options.onRoots?.(roots)
        continue
      }
      let cid: CID
      let bytes: Uint8Array
      try {
        [cid, bytes] = CID.decodeFirst(frame) as [CID, Uint8Array]
      } catch (err) {
        throw new Error(`CAR frame with a bad CID: ${(err as Error).message}`, { cause: err })
      }
      if (bytes.byteLength > options.maxBlockBytes) throw new TooLargeError(`block ${cid.toString()} is over the ${options.maxBlockBytes}-byte limit`)
      if (!(verifyBlockNow(cid, bytes) ?? await verifyBlock(cid, bytes))) throw new IntegrityError(`block ${cid.toString()} does not match its CID`)
      onBlock({ cid, bytes })
    }
  }
  if (roots === undefined) throw new Error('CAR has no header')
  if (pos !== buf.byteLength || heldBytes > 0) throw new Error('CAR ends inside a frame')
  return roots
}

function join (rest: Uint8Array, held: Uint8Array[], last: Uint8Array): Uint8Array {
  let length = rest.byteLength + last.byteLength
  for (const h of held) length += h.byteLength
  const out = new Uint8Array(length)
  out.set(rest, 0)
  let at = rest.byteLength
  for (const h of held) { out.set(h, at); at += h.byteLength }
  out.set(last, at)
  return out
}

/** An unsigned LEB128 varint at `pos`: [value, bytes], undefined when the bytes end first. */
function readVarint (bytes: Uint8Array, pos: number): [number, number] | undefined {
  let value = 0
  let scale = 1
  for (let i = 0; i < 8; i++) {
    if (pos + i >= bytes.byteLength) return undefined
    const b = bytes[pos + i] as number
    value += (b & 0x7f) * scale
    if (b < 0x80) return [value, i + 1]
    scale *= 128
  }
  throw new Error('CAR frame length is not a varint of at most 8 bytes')
}

/** `{ version: 1, roots: [CID, …] }`, as dag-cbor. */
function readHeader (bytes: Uint8Array): CID[] {
  let header: unknown
  try {
    header = dagCbor.decode(bytes)
  } catch (err) {
    throw new Error('CAR header is not dag-cbor', { cause: err })
  }
  const { version, roots } = (typeof header === 'object' && header !== null ? header : {}) as { version?: unknown, roots?: unknown }
  if (version !== 1) throw new Error(`CAR version ${String(version)}; version 1 expected`)
  if (!Array.isArray(roots)) throw new Error('CAR header has no roots')
  return roots.map(r => {
    const cid = CID.asCID(r)
    if (cid === null) throw new Error('CAR header root is not a CID')
    return cid
  })
}
